// Prime sieve: input "<limit>"; prints how many primes are ≤ limit and the largest.
import { parseLeadingInt, print, readInput } from "./lib/wasi";

export function _start(): void {
  const limit = i32(parseLeadingInt(readInput()));
  const composite = new Uint8Array(limit + 1);
  let count = 0;
  let largest = 0;
  for (let candidate = 2; candidate <= limit; candidate++) {
    if (unchecked(composite[candidate])) continue;
    count++;
    largest = candidate;
    for (let multiple = candidate * candidate; multiple <= limit && multiple > 0; multiple += candidate) {
      unchecked((composite[multiple] = 1));
    }
  }
  print(
    "primes<=" + limit.toString() + " count=" + count.toString() + " largest=" + largest.toString() + "\n",
  );
}
