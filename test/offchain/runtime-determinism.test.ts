import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { before, test } from "node:test";
import { createRuntime } from "../../offchain/src/runtime/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { deepStackRecursion, fixture } from "./fixtures/wat/compile.ts";

// Same module + input → the same (status, outputCid, fuelUsed) in separate processes and
// under each V8 tier. This file doubles as the child: with CELL_RUNTIME_CHILD set it runs
// a fixed set of jobs and prints their results as one JSON line.

const CHILD_FLAG = "CELL_RUNTIME_CHILD";

async function childMain(): Promise<void> {
  const paths = await ensureJobs();
  const runtime = await createRuntime({ poolSize: 1 });
  const cases: [string, Uint8Array, string, bigint][] = [
    ["sha256", readFileSync(paths.sha256), "300\ndeterminism", 10n ** 10n],
    ["sieve", readFileSync(paths.sieve), "200000", 10n ** 10n],
    ["matmul", readFileSync(paths.matmul), "40", 10n ** 10n],
    ["wordcount", readFileSync(paths.wordcount), "to be or not to be\nthat is the question\n", 10n ** 10n],
    ["matmul-out-of-fuel", readFileSync(paths.matmul), "40", 1_000_000n],
    ["nan", fixture("nan"), "", 10n ** 6n],
    ["deep-recursion", fixture("deep-recursion"), "", 10n ** 9n],
    ["deep-stack-recursion", deepStackRecursion(2000), "", 10n ** 9n],
    ["wasi-env", fixture("wasi-env"), "", 10n ** 6n],
  ];
  const results: Record<string, unknown> = {};
  try {
    for (const [name, module, input, fuelLimit] of cases) {
      const result = await runtime.execute({
        module,
        input: new TextEncoder().encode(input),
        fuelLimit,
        memoryPages: 256,
        timeoutMs: 30_000,
      });
      results[name] =
        result.kind === "result"
          ? {
              status: result.status,
              exitCode: result.exitCode,
              fuelUsed: result.fuelUsed.toString(),
              outputCid: result.outputCid,
            }
          : result;
    }
  } finally {
    await runtime.close();
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

function runChild(v8Flags: string[]): Promise<Record<string, unknown>> {
  const file = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...v8Flags, file], {
      env: { ...process.env, [CHILD_FLAG]: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`child ${v8Flags.join(" ")} exited ${code}: ${stderr}`));
      resolve(JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<string, unknown>);
    });
  });
}

if (process.env[CHILD_FLAG]) {
  await childMain();
} else {
  before(() => ensureJobs());

  test("identical status, output and fuel across processes and V8 tiers", async () => {
    const variants = [[], [], ["--no-liftoff"], ["--liftoff", "--no-wasm-tier-up"]];
    const runs: Record<string, unknown>[] = [];
    for (const flags of variants) runs.push(await runChild(flags));
    const [reference, ...others] = runs;
    assert.ok(reference);
    for (const [name, value] of Object.entries(reference)) {
      assert.equal((value as { kind?: string }).kind, undefined, `${name} produced a result`);
    }
    assert.equal((reference.nan as { status: string }).status, "ok");
    assert.equal((reference["deep-recursion"] as { status: string }).status, "trap");
    assert.equal((reference["deep-stack-recursion"] as { status: string }).status, "trap");
    assert.equal((reference["matmul-out-of-fuel"] as { status: string }).status, "out_of_fuel");
    others.forEach((run, index) =>
      assert.deepEqual(run, reference, `run ${index + 1} (${variants[index + 1]!.join(" ") || "default"})`),
    );
  });
}
