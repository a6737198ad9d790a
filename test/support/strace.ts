// Tracing a process's system calls with strace, for the tests that require an fsync of the
// database between writing money or a receipt and acknowledging it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";

export const SYNC_CALLS = new Set(["fsync", "fdatasync"]);

export interface Syscall {
  name: string;
  /** The fd's path as strace -y shows it (`/…/cell.db-wal`, `pipe:[…]`). */
  path: string;
  text: string;
}

/** `1234  pwrite64(12</tmp/x/cell.db-wal>, "…", 4120, 0) = 4120` → name, path, first string argument. */
export function parseTrace(trace: string): Syscall[] {
  const calls: Syscall[] = [];
  for (const line of trace.split("\n")) {
    const match = /^(?:\d+\s+)?(\w+)\(\d+<([^>]*)>(?:, "((?:[^"\\]|\\.)*)")?/.exec(line);
    if (match) calls.push({ name: match[1]!, path: match[2]!, text: match[3] ?? "" });
  }
  return calls;
}

/** Fails the test, saying how to install it, when strace is missing. */
export function requireStrace(): void {
  const probe = spawnSync("strace", ["-V"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0)
    assert.fail(
      "this test traces system calls with strace, which is not installed: " +
        "install it with `sudo apt-get install -y strace` (npm run setup does so when run as root)",
    );
}
