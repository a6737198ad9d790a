import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import {
  checkPolicy,
  createRuntime,
  instrument,
  runModule,
  type Runtime,
} from "../../offchain/src/runtime/index.ts";
import { runtimeWorkerBundle } from "../../offchain/src/node/index.ts";
import { cidOf, DATA_LIMITS } from "../../offchain/src/protocol/index.ts";
import { ensureJobs, type JobName } from "../../scripts/build-jobs.ts";
import { fixture, watToWasm } from "./fixtures/wat/compile.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytesOf = (value: string) => new TextEncoder().encode(value);

let jobs: Record<JobName, Uint8Array>;
let runtime: Runtime;

before(async () => {
  const paths = await ensureJobs();
  const entries = Object.entries(paths).map(([name, path]): [string, Uint8Array] => [
    name,
    readFileSync(path),
  ]);
  jobs = Object.fromEntries(entries) as Record<JobName, Uint8Array>;
  // The worker as donors run it: bundled like the node (runtime-hostile and
  // runtime-determinism run its TypeScript, the default).
  const workerEntry = await runtimeWorkerBundle();
  assert.ok(workerEntry?.pathname.includes("/node_modules/.cache/cell/bundle-"), String(workerEntry));
  runtime = await createRuntime({ poolSize: 2, workerEntry });
});
after(() => runtime.close());

function job(module: Uint8Array, input = "", extra: Partial<Parameters<Runtime["execute"]>[0]> = {}) {
  return {
    module,
    input: bytesOf(input),
    fuelLimit: 10_000_000_000n,
    memoryPages: 256,
    timeoutMs: 20_000,
    ...extra,
  };
}

async function expectResult(promise: ReturnType<Runtime["execute"]>) {
  const result = await promise;
  if (result.kind !== "result")
    assert.fail(`expected a result, got no result: ${result.reason} (${result.detail})`);
  return result;
}

/** Runs a module in this thread without instrumentation, as a reference. */
function runPlain(bytes: Uint8Array, input: string) {
  const outcome = runModule({
    module: new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>),
    hasStart: false,
    entry: "_start",
    input: bytesOf(input),
    fuelLimit: 1n,
    memoryPages: 256,
    seed: new Uint8Array(32),
    args: ["job"],
    env: {},
    grants: [],
    stdoutLimit: 1 << 20,
    stderrLimit: 1 << 20,
    maxFileBytes: 0,
  });
  assert.equal(outcome.kind, "result");
  return outcome.kind === "result" ? outcome : undefined!;
}

describe("example jobs", () => {
  test("sha256 chain matches node:crypto", async () => {
    const result = await expectResult(runtime.execute(job(jobs.sha256, "500\nthe quick brown fox")));
    let digest = createHash("sha256").update("the quick brown fox").digest();
    for (let round = 1; round < 500; round++) digest = createHash("sha256").update(digest).digest();
    assert.equal(result.status, "ok");
    assert.equal(text(result.output), `${digest.toString("hex")}\n`);
    assert.equal(result.outputCid, (await cidOf(result.output)).toString());
    assert.ok(result.fuelUsed > 0n);
  });

  test("sieve counts primes", async () => {
    const result = await expectResult(runtime.execute(job(jobs.sieve, "100000")));
    assert.equal(text(result.output), "primes<=100000 count=9592 largest=99991\n");
  });

  test("word count", async () => {
    const result = await expectResult(
      runtime.execute(job(jobs.wordcount, "one two  three\nfour\n\nfive six")),
    );
    assert.equal(text(result.output), "3 6 29\n");
  });

  test("instrumentation preserves each job's output", async () => {
    const inputs: Record<JobName, string> = {
      sha256: "50\nabc",
      sieve: "20000",
      matmul: "24",
      wordcount: "a b c\nd e\n",
    };
    for (const [name, input] of Object.entries(inputs) as [JobName, string][]) {
      const metered = await expectResult(runtime.execute(job(jobs[name], input)));
      const plain = runPlain(jobs[name], input);
      assert.equal(metered.status, "ok", name);
      assert.deepEqual(metered.output, plain.output, name);
    }
  });

  test("fuel grows with the work and is repeatable", async () => {
    const small = await expectResult(runtime.execute(job(jobs.sieve, "10000")));
    const large = await expectResult(runtime.execute(job(jobs.sieve, "100000")));
    const again = await expectResult(runtime.execute(job(jobs.sieve, "100000")));
    assert.ok(large.fuelUsed > small.fuelUsed * 5n);
    assert.equal(again.fuelUsed, large.fuelUsed);
  });

  test("fuel is the same whether kept in a local or in the global", () => {
    for (const name of ["sha256", "matmul"] as const) {
      const input = name === "sha256" ? "20\nx" : "16";
      const fuel = (["local", "global"] as const).map((fuelMode) => {
        const instrumented = instrument(jobs[name], { fuelMode });
        const outcome = runModule({
          module: new WebAssembly.Module(instrumented.bytes as Uint8Array<ArrayBuffer>),
          ...(instrumented.memory ? { memory: instrumented.memory } : {}),
          hasStart: instrumented.hasStart,
          entry: "_start",
          input: bytesOf(input),
          fuelLimit: 1_000_000_000n,
          memoryPages: 256,
          seed: new Uint8Array(32),
          args: [],
          env: {},
          grants: [],
          stdoutLimit: 1 << 20,
          stderrLimit: 1 << 20,
          maxFileBytes: 0,
        });
        assert.equal(outcome.kind === "result" && outcome.status, "ok");
        return outcome.kind === "result" ? outcome.fuelUsed : -1n;
      });
      assert.equal(fuel[0], fuel[1], name);
    }
  });
});

describe("fuel", () => {
  test("a fuel limit just below the need runs out; at the need it completes", async () => {
    const full = await expectResult(runtime.execute(job(jobs.sieve, "5000")));
    const exact = await expectResult(runtime.execute(job(jobs.sieve, "5000", { fuelLimit: full.fuelUsed })));
    const short = await expectResult(
      runtime.execute(job(jobs.sieve, "5000", { fuelLimit: full.fuelUsed - 1n })),
    );
    assert.equal(exact.status, "ok");
    assert.equal(short.status, "out_of_fuel");
    assert.equal(short.fuelUsed, full.fuelUsed - 1n);
  });

  test("host calls are charged by bytes", async () => {
    const small = await expectResult(runtime.execute(job(jobs.wordcount, "x".repeat(10))));
    const large = await expectResult(runtime.execute(job(jobs.wordcount, "x".repeat(10_010))));
    // 10,000 more bytes read: at least one fuel per byte on top of the per-byte loop.
    assert.ok(large.fuelUsed - small.fuelUsed >= 10_000n);
  });

  test("bulk memory operations are charged by size", async () => {
    const fill = (bytes: number) =>
      watToWasm(
        `(module (memory 2) (func (export "_start") (memory.fill (i32.const 0) (i32.const 7) (i32.const ${bytes}))))`,
      );
    const small = await expectResult(runtime.execute(job(fill(8))));
    const large = await expectResult(runtime.execute(job(fill(80_008))));
    assert.equal(large.fuelUsed - small.fuelUsed, 10_000n);
  });
});

describe("WASI shim", () => {
  test("args, environment, virtual clock and seeded randomness are fixed by the job", async () => {
    const module = fixture("wasi-env");
    const spec = { args: ["job", "--flag"], env: { B: "2", A: "1" }, seed: new Uint8Array(32).fill(9) };
    const first = await expectResult(runtime.execute(job(module, "", spec)));
    const second = await expectResult(runtime.execute(job(module, "", spec)));
    const reseeded = await expectResult(
      runtime.execute(job(module, "", { ...spec, seed: new Uint8Array(32).fill(1) })),
    );
    assert.equal(first.status, "exit");
    assert.equal(first.exitCode, 7);
    assert.deepEqual(first.output, second.output);
    assert.equal(first.fuelUsed, second.fuelUsed);
    const out = Buffer.from(first.output);
    assert.equal(out.subarray(0, 13).toString(), "job\0--flag\0A=");
    assert.equal(out.subarray(13, 18).toString(), "1\0B=2");
    const monotonic = out.readBigUInt64LE(19);
    const realtime = out.readBigUInt64LE(27);
    assert.ok(monotonic > 0n && monotonic < first.fuelUsed, "monotonic clock counts fuel");
    assert.ok(realtime > 1_704_067_200_000_000_000n);
    assert.notDeepEqual(
      out.subarray(35),
      Buffer.from(reseeded.output).subarray(35),
      "randomness follows the seed",
    );
    const expected = createHash("sha256").update(spec.seed).update(Buffer.alloc(8)).digest().subarray(0, 16);
    assert.deepEqual(out.subarray(35), expected);
  });

  test("stderr is captured apart from the output", async () => {
    const module = watToWasm(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory 1) (data (i32.const 16) "outerr")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (i32.store (i32.const 0) (i32.const 19))
        (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))`);
    const result = await expectResult(runtime.execute(job(module)));
    assert.equal(text(result.output), "out");
    assert.equal(text(result.stderr), "err");
    assert.equal(result.outputCid, (await cidOf(bytesOf("out"))).toString());
  });

  test("a trap keeps the output written before it", async () => {
    const result = await expectResult(runtime.execute(job(fixture("trap"))));
    assert.equal(result.status, "trap");
    assert.match(result.reason ?? "", /divi/);
    assert.equal(text(result.output), "before\n");
  });

  test("a named export can be the entry point; a missing one is refused", async () => {
    const module = watToWasm(`(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (func (export "main") (call $exit (i32.const 5))))`);
    const named = await expectResult(runtime.execute(job(module, "", { entry: "main" })));
    assert.equal(named.status, "exit");
    assert.equal(named.exitCode, 5);
    const missing = await expectResult(runtime.execute(job(module)));
    assert.equal(missing.status, "policy_rejected");
    assert.match(missing.reason ?? "", /entry "_start"/);
  });

  test("an output at the output limit is a result; one byte more is no result, naming the limit", async () => {
    // Reads a little-endian length from stdin and writes that many bytes to stdout at once.
    const writer = watToWasm(`(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 258)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16))
        (i32.store (i32.const 4) (i32.const 4))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.load (i32.const 16)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);
    const length = (bytes: number) => {
      const input = Buffer.alloc(4);
      input.writeUInt32LE(bytes);
      return { input: new Uint8Array(input), memoryPages: 258 };
    };
    const atLimit = await expectResult(
      runtime.execute({ ...job(writer), ...length(DATA_LIMITS.outputBytes) }),
    );
    assert.equal(atLimit.status, "ok");
    assert.equal(atLimit.output.length, DATA_LIMITS.outputBytes);
    const over = await runtime.execute({ ...job(writer), ...length(DATA_LIMITS.outputBytes + 1) });
    assert.equal(over.kind, "no_result");
    assert.equal(over.kind === "no_result" && over.reason, "output_too_large");
    assert.match(
      over.kind === "no_result" ? over.detail : "",
      new RegExp(`above the ${DATA_LIMITS.outputBytes}-byte output limit \\(DATA_LIMITS.outputBytes\\)`),
    );
  });

  test("a runtime looser than the data limits is refused", async () => {
    await assert.rejects(
      createRuntime({ stdoutLimit: DATA_LIMITS.outputBytes + 1 }),
      /stdoutLimit must be an integer in 0\.\.\d+ \(DATA_LIMITS.outputBytes\)/,
    );
  });

  test("invalid job parameters are refused with the field named", async () => {
    await assert.rejects(runtime.execute(job(jobs.sieve, "1", { fuelLimit: 0n })), /fuelLimit/);
    await assert.rejects(runtime.execute(job(jobs.sieve, "1", { memoryPages: 1e9 })), /memoryPages/);
    await assert.rejects(runtime.execute(job(jobs.sieve, "1", { timeoutMs: -1 })), /timeoutMs/);
    const grants = [{ hostPath: "/nonexistent/cell-grant", guestPath: "/data" }];
    await assert.rejects(
      runtime.execute(job(jobs.sieve, "1", { grants })),
      /\/nonexistent\/cell-grant is not a directory/,
    );
  });
});

describe("policy and instrumentation", () => {
  test("accepts the example jobs and names the reason of every refusal", () => {
    for (const bytes of Object.values(jobs)) assert.equal(checkPolicy(bytes).ok, true);
    const cases: [Uint8Array, RegExp][] = [
      [Uint8Array.of(1, 2, 3), /invalid module|magic/],
      [fixture("simd"), /SIMD/],
      [fixture("atomics"), /threads/],
      [fixture("shared-memory"), /shared memory/],
      [fixture("memory64"), /memory64/],
      [fixture("exceptions"), /exception handling/],
      [fixture("tail-call"), /tail calls/],
      [fixture("disallowed-import"), /sock_accept/],
      [fixture("env-import"), /"env" "now"/],
      [fixture("huge-initial-memory"), /60000 pages/],
      [
        watToWasm(`(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32))))`),
        /wrong signature/,
      ],
      [watToWasm(`(module (memory (export "__cell_fuel") 1))`), /reserved prefix/],
      [watToWasm(`(module (import "wasi_snapshot_preview1" "x" (memory 1)))`), /importing a memory/],
    ];
    for (const [bytes, reason] of cases) {
      const verdict = checkPolicy(bytes);
      assert.equal(verdict.ok, false);
      if (!verdict.ok) assert.match(verdict.reason, reason);
    }
    assert.match(
      (checkPolicy(new Uint8Array(64), { ...limits(), maxModuleBytes: 10 }) as { reason: string }).reason,
      /above the cap of 10/,
    );
  });

  test("instrumentation is deterministic and moves memory and start to the host", () => {
    const first = instrument(jobs.sha256);
    const second = instrument(jobs.sha256);
    assert.deepEqual(first.bytes, second.bytes);
    assert.equal(first.hasStart, true);
    assert.deepEqual(first.memory, { initial: 1 });
    const module = new WebAssembly.Module(first.bytes as Uint8Array<ArrayBuffer>);
    assert.deepEqual(
      WebAssembly.Module.imports(module).filter((entry) => entry.kind === "memory"),
      [{ module: "cell", name: "memory", kind: "memory" }],
    );
    const exports = WebAssembly.Module.exports(module).map((entry) => entry.name);
    assert.ok(exports.includes("__cell_fuel") && exports.includes("__cell_start"));
  });

  test("policy rejections are results, cached by CID", async () => {
    const module = fixture("simd");
    const first = await expectResult(runtime.execute(job(module)));
    const second = await expectResult(runtime.execute(job(module)));
    assert.equal(first.status, "policy_rejected");
    assert.equal(first.fuelUsed, 0n);
    assert.deepEqual(second, first);
    const prepared = await runtime.prepare(module);
    assert.equal(prepared.cid, (await cidOf(module)).toString());
    assert.equal(prepared.ok, false);
  });
});

function limits() {
  return {
    maxModuleBytes: 1 << 20,
    maxMemoryPages: 1024,
    maxTableElements: 1000,
    maxFunctions: 1000,
    maxLocalsPerFunction: 1000,
  };
}

describe("control flow through the instrumentation", () => {
  const exits = watToWasm(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    ;; Leaves by return, by br to the function label, by br_table to it, and by falling off.
    (func $pick (param $n i32) (result i32 i32)
      (if (i32.eq (local.get $n) (i32.const 0)) (then (return (i32.const 10) (i32.const 11))))
      (if (i32.eq (local.get $n) (i32.const 1)) (then (br 1 (i32.const 20) (i32.const 21))))
      (block $b (result i32 i32)
        (br_table $b 1 (i32.const 30) (i32.add (local.get $n) (i32.const 28)) (i32.sub (local.get $n) (i32.const 2)))))
    (func $depth (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n))
        (then (return (i32.const 0)))
        (else (i32.add (i32.const 1) (call $depth (i32.sub (local.get $n) (i32.const 1)))))))
    (func (export "_start") (local $i i32) (local $sum i32)
      (loop $each
        (call $pick (local.get $i))
        (local.set $sum (i32.add (local.get $sum)))
        (local.set $sum (i32.add (local.get $sum)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $each (i32.lt_u (local.get $i) (i32.const 4))))
      ;; 200 × recursion 2000 deep: only fits the depth budget if every exit releases it.
      (local.set $i (i32.const 0))
      (loop $again
        (local.set $sum (i32.add (local.get $sum) (call $depth (i32.const 2000))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $again (i32.lt_u (local.get $i) (i32.const 200))))
      (i32.store (i32.const 100) (local.get $sum))
      (i32.store (i32.const 0) (i32.const 100))
      (i32.store (i32.const 4) (i32.const 4))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);

  test("every way out of a function keeps results, fuel and the depth budget right", async () => {
    const plain = runPlain(exits, "");
    for (const fuelMode of ["auto", "local", "global"] as const) {
      const instrumented = instrument(exits, { fuelMode });
      assert.ok(WebAssembly.validate(instrumented.bytes as Uint8Array<ArrayBuffer>), fuelMode);
    }
    const metered = await expectResult(runtime.execute(job(exits)));
    assert.equal(metered.status, "ok");
    const expected = 10 + 11 + 20 + 21 + 30 + 30 + 30 + 31 + 200 * 2000;
    assert.equal(Buffer.from(metered.output).readUInt32LE(0), expected);
    assert.deepEqual(metered.output, plain.output);
  });
});
