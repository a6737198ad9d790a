// Word count: prints "lines words bytes" of the input, like `wc`.
import { print, readInput } from "./lib/wasi";

export function _start(): void {
  const input = readInput();
  let lines = 0;
  let words = 0;
  let inWord = false;
  for (let index = 0; index < input.length; index++) {
    const byte = unchecked(input[index]);
    if (byte == 10) lines++;
    const space = byte == 32 || (byte >= 9 && byte <= 13);
    if (!space && !inWord) words++;
    inWord = !space;
  }
  print(lines.toString() + " " + words.toString() + " " + input.length.toString() + "\n");
}
