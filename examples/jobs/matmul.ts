// Matrix multiply: input "<n>"; multiplies two fixed n×n f64 matrices and prints the
// trace and the sum of the product (decimal, and the sum's IEEE-754 bits in hex).
import { parseLeadingInt, print, readInput } from "./lib/wasi";

export function _start(): void {
  const n = i32(parseLeadingInt(readInput()));
  const a = new Float64Array(n * n);
  const b = new Float64Array(n * n);
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      unchecked((a[i * n + j] = f64((i * 7 + j * 3) % 17) / 17.0 - 0.5));
      unchecked((b[i * n + j] = f64((i * 5 + j * 11) % 13) / 13.0 - 0.5));
    }
  }
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = unchecked(a[i * n + k]);
      const row = i * n;
      const brow = k * n;
      for (let j = 0; j < n; j++) unchecked((c[row + j] += aik * unchecked(b[brow + j])));
    }
  }
  let trace = 0.0;
  let sum = 0.0;
  for (let i = 0; i < n; i++) trace += unchecked(c[i * n + i]);
  for (let index = 0; index < n * n; index++) sum += unchecked(c[index]);
  print(
    "n=" +
      n.toString() +
      " trace=" +
      trace.toString() +
      " sum=" +
      sum.toString() +
      " bits=" +
      reinterpret<u64>(sum).toString(16) +
      "\n",
  );
}
