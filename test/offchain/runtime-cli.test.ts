import assert from "node:assert/strict";
import { runCell as cell } from "../support/cell-cli.ts";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { watToWasm } from "./fixtures/wat/compile.ts";

let sieve: string;
let dir: string;

before(async () => {
  sieve = (await ensureJobs(["sieve"])).sieve;
  dir = mkdtempSync(join(tmpdir(), "cell-run-"));
  writeFileSync(join(dir, "limit.txt"), "1000");
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("cell run --json prints one JSON object with the result", async () => {
  const { code, stdout } = await cell(["run", sieve, "--input", join(dir, "limit.txt"), "--json"]);
  assert.equal(code, 0);
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 1);
  const result = JSON.parse(lines[0]!) as Record<string, string>;
  assert.equal(result.status, "ok");
  assert.match(result.fuelUsed!, /^[1-9][0-9]*$/);
  assert.match(result.outputCid!, /^bafkrei/);
  assert.equal(Buffer.from(result.output!, "base64").toString(), "primes<=1000 count=168 largest=997\n");
});

test("cell run reports out of fuel with exit code 3, has help, and names bad flags", async () => {
  const starved = await cell(["run", sieve, "--input", join(dir, "limit.txt"), "--fuel", "500"]);
  assert.equal(starved.code, 3);
  assert.match(starved.stdout, /status\s+out_of_fuel/);
  assert.match(starved.stdout, /fuel used\s+500/);
  const help = await cell(["run", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--fuel <n>\s+fuel limit \(default: 10000000000\)/);
  assert.match(
    help.stdout,
    /Exit codes: 0 the job finished with status ok; 1 usage or other error; 2 the job\nfailed/,
  );
  const bad = await cell(["run", sieve, "--fuel", "lots"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--fuel must be a positive integer/);
});

test("cell run exits 2 when the job yields no result (wall-clock timeout)", async () => {
  const spin = join(dir, "spin.wasm");
  const source = readFileSync(new URL("./fixtures/wat/infinite-loop.wat", import.meta.url), "utf8");
  writeFileSync(spin, watToWasm(source));
  const timedOut = await cell(["run", spin, "--timeout", "200"]);
  assert.equal(timedOut.code, 2, timedOut.stderr);
  assert.match(timedOut.stdout, /^no result: /);
});
