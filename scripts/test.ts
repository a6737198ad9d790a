// `npm test`: the contract suite under Hardhat, then the off-chain suite under node:test.
// Prints one closing line `N passed, N failed` over both and exits non-zero on any failure.
import { spawn } from "node:child_process";

interface SuiteResult {
  passed: number;
  failed: number;
  exitCode: number;
}

function run(command: string, args: string[], parse: (out: string) => { passed: number; failed: number }) {
  return new Promise<SuiteResult>((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"], env: process.env });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      process.stdout.write(chunk);
      output += chunk.toString();
    });
    child.on("close", (code) => resolve({ ...parse(output), exitCode: code ?? 1 }));
  });
}

function lastNumber(output: string, pattern: RegExp): number {
  const matches = [...output.matchAll(pattern)];
  const last = matches.at(-1);
  return last ? Number(last[1]) : 0;
}

const stripAnsi = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, "");

// Solidity tests run on the OP Stack simulation too (TypeScript tests get it from hardhat.config.ts).
const contracts = await run("hardhat", ["test", "--chain-type", "op"], (out) => ({
  passed: lastNumber(stripAnsi(out), /(\d+) passing/g),
  failed: lastNumber(stripAnsi(out), /(\d+) failing/g),
}));
const offchain = await run(
  process.execPath,
  [
    "--test",
    "--test-concurrency=1",
    "--test-reporter=spec",
    "test/offchain/**/*.test.ts",
    "test/e2e/**/*.test.ts",
  ],
  (out) => ({
    passed: lastNumber(stripAnsi(out), /ℹ pass (\d+)/g),
    failed: lastNumber(stripAnsi(out), /ℹ fail (\d+)/g),
  }),
);

const passed = contracts.passed + offchain.passed;
const failed = contracts.failed + offchain.failed;
const exitCode = contracts.exitCode || offchain.exitCode;
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(exitCode !== 0 || failed > 0 ? 1 : 0);
