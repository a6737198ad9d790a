import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import {
  createRuntime,
  type ExecutionResult,
  type Job,
  type NoResult,
  type Runtime,
} from "../../offchain/src/runtime/index.ts";
import { deepStackRecursion, fixture, watToWasm } from "./fixtures/wat/compile.ts";

// Each hostile module gets its defined status, and the pool keeps working afterwards.

const HELLO = watToWasm(`(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory 1) (data (i32.const 16) "alive")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 5))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);

let runtime: Runtime;
let sandbox: string;

before(async () => {
  runtime = await createRuntime({ poolSize: 2, stdoutLimit: 1024 * 1024 });
  sandbox = mkdtempSync(join(tmpdir(), "cell-runtime-"));
  mkdirSync(join(sandbox, "granted/sub"), { recursive: true });
  writeFileSync(join(sandbox, "granted/inside.txt"), "inside the grant\n");
  writeFileSync(join(sandbox, "granted/sub/nested.txt"), "nested\n");
  writeFileSync(join(sandbox, "secret.txt"), "host secret\n");
  symlinkSync(join(sandbox, "secret.txt"), join(sandbox, "granted/link-out.txt"));
});
after(async () => {
  await runtime.close();
  rmSync(sandbox, { recursive: true, force: true });
});
afterEach(async () => {
  const results = await Promise.all([run(HELLO), run(HELLO), run(HELLO)]);
  for (const result of results) {
    assert.equal(result.kind === "result" && result.status, "ok", "the pool still runs jobs");
    assert.equal(result.kind === "result" && new TextDecoder().decode(result.output), "alive");
  }
});

function run(module: Uint8Array, extra: Partial<Job> = {}): Promise<ExecutionResult | NoResult> {
  return runtime.execute({
    module,
    input: new Uint8Array(0),
    fuelLimit: 50_000_000n,
    memoryPages: 16,
    timeoutMs: 10_000,
    ...extra,
  });
}

async function result(module: Uint8Array, extra: Partial<Job> = {}): Promise<ExecutionResult> {
  const outcome = await run(module, extra);
  if (outcome.kind !== "result") assert.fail(`expected a result, got ${outcome.reason}: ${outcome.detail}`);
  return outcome;
}

describe("runaway computation", () => {
  test("an infinite loop runs out of fuel, using exactly the limit", async () => {
    const outcome = await result(fixture("infinite-loop"), { fuelLimit: 1_000_000n });
    assert.equal(outcome.status, "out_of_fuel");
    assert.equal(outcome.fuelUsed, 1_000_000n);
  });

  test("an infinite loop with huge fuel hits the wall-clock timeout: no result", async () => {
    const started = performance.now();
    const looping = run(fixture("infinite-loop"), { fuelLimit: 1n << 62n, timeoutMs: 300 });
    // Jobs queued meanwhile, some of them behind the looping one on its worker, all finish.
    const others = await Promise.all(Array.from({ length: 6 }, () => run(HELLO)));
    const outcome = await looping;
    assert.equal(outcome.kind, "no_result");
    assert.equal(outcome.kind === "no_result" && outcome.reason, "timeout");
    assert.ok(performance.now() - started < 5_000);
    for (const other of others) assert.equal(other.kind === "result" && other.status, "ok");
  });

  test("an infinite loop in the start function runs out of fuel", async () => {
    const outcome = await result(fixture("start-loop"), { fuelLimit: 200_000n });
    assert.equal(outcome.status, "out_of_fuel");
  });

  test("unbounded recursion traps on the call-depth limit, with repeatable fuel", async () => {
    const first = await result(fixture("deep-recursion"));
    const second = await result(fixture("deep-recursion"));
    assert.equal(first.status, "trap");
    assert.equal(first.reason, "call stack exhausted");
    assert.equal(first.fuelUsed, second.fuelUsed);
  });

  test("recursion holding many operands per frame also traps on the call-depth limit", async () => {
    const outcome = await result(deepStackRecursion(2000), { fuelLimit: 1n << 40n });
    assert.equal(outcome.status, "trap");
    assert.equal(outcome.reason, "call stack exhausted");
  });
});

describe("memory", () => {
  test("a memory bomb stops at the job's cap", async () => {
    const outcome = await result(fixture("memory-bomb"), { memoryPages: 16 });
    assert.equal(outcome.status, "exit");
    assert.equal(outcome.exitCode, 3);
    assert.equal(Buffer.from(outcome.output).readUInt32LE(0), 16);
  });

  test("one huge memory.grow is charged by size and runs out of fuel", async () => {
    const outcome = await result(fixture("huge-grow"), { memoryPages: 16 });
    assert.equal(outcome.status, "out_of_fuel");
  });

  test("huge initial memory is refused before running", async () => {
    const outcome = await result(fixture("huge-initial-memory"));
    assert.equal(outcome.status, "policy_rejected");
    assert.match(outcome.reason ?? "", /initial memory of 60000 pages/);
    const small = await result(watToWasm(`(module (memory 100) (func (export "_start")))`), {
      memoryPages: 16,
    });
    assert.equal(small.status, "policy_rejected");
    assert.match(small.reason ?? "", /100 pages is above the job's cap of 16/);
  });

  test("a declared maximum above the job's cap is refused", async () => {
    const outcome = await result(fixture("declared-max-memory"), { memoryPages: 16 });
    assert.equal(outcome.status, "policy_rejected");
    assert.match(outcome.reason ?? "", /maximum memory of 50000 pages/);
  });
});

describe("host files", () => {
  const read = (path: string, grants: Job["grants"] = []) =>
    result(fixture("read-file"), { input: new TextEncoder().encode(path), grants });
  const grant = () => [{ hostPath: join(sandbox, "granted"), guestPath: "/data" }];

  test("without a grant there is no directory to open from", async () => {
    const outcome = await read("secret.txt");
    assert.equal(outcome.status, "exit");
    assert.equal(new TextDecoder().decode(outcome.output), "errno=08");
  });

  test("a granted file can be read", async () => {
    const outcome = await read("inside.txt", grant());
    assert.equal(outcome.status, "ok");
    assert.equal(new TextDecoder().decode(outcome.output), "inside the grant\n");
    const nested = await read("sub/../sub/nested.txt", grant());
    assert.equal(new TextDecoder().decode(nested.output), "nested\n");
  });

  test("granted files count against the donor's file budget", async () => {
    const small = await createRuntime({ poolSize: 1, maxFileBytes: 8 });
    try {
      const outcome = await small.execute({
        module: fixture("read-file"),
        input: new TextEncoder().encode("inside.txt"),
        grants: grant(),
        fuelLimit: 10_000_000n,
        memoryPages: 16,
        timeoutMs: 10_000,
      });
      assert.equal(outcome.kind === "result" && new TextDecoder().decode(outcome.output), "errno=22");
    } finally {
      await small.close();
    }
  });

  test("escaping the grant with .., an absolute path or a symlink is refused", async () => {
    for (const path of ["../secret.txt", "sub/../../secret.txt", "/etc/passwd", "link-out.txt"]) {
      const outcome = await read(path, grant());
      assert.equal(outcome.status, "exit", path);
      assert.equal(new TextDecoder().decode(outcome.output), "errno=76", path);
    }
  });
});

describe("imports and features", () => {
  for (const [name, reason] of [
    ["disallowed-import", /sock_accept/],
    ["env-import", /"env" "now"/],
    ["simd", /SIMD/],
    ["shared-memory", /shared memory/],
    ["atomics", /threads/],
    ["exceptions", /exception handling/],
    ["tail-call", /tail calls/],
    ["memory64", /memory64/],
  ] as const) {
    test(`${name} is refused by the policy`, async () => {
      const outcome = await result(fixture(name));
      assert.equal(outcome.status, "policy_rejected");
      assert.match(outcome.reason ?? "", reason);
      assert.equal(outcome.fuelUsed, 0n);
    });
  }
});

describe("visible bits and output", () => {
  test("NaNs are canonical wherever their bits become visible; constant payloads are kept", async () => {
    const outcome = await result(fixture("nan"));
    assert.equal(outcome.status, "ok");
    const out = Buffer.from(outcome.output);
    assert.equal(out.readUInt32LE(0), 0x7fc00000, "f32 store");
    assert.equal(out.readUInt32LE(4), 0x7fc00000, "i32.reinterpret_f32");
    assert.equal(out.readUInt32LE(8), 0x3f800000, "copysign takes the canonical (positive) sign");
    assert.equal(out.readBigUInt64LE(12), 0x7ff8000000000000n, "f64 store");
    assert.equal(out.readUInt32LE(20), 0x7fa00001, "a constant NaN is stored bit for bit");
    assert.equal(out.readUInt32LE(24), 0x7fc00000, "arithmetic on a payload NaN");
  });

  test("an output flood ends without a result at the output limit", async () => {
    const outcome = await run(fixture("output-flood"), { fuelLimit: 1n << 40n });
    assert.equal(outcome.kind, "no_result");
    assert.equal(outcome.kind === "no_result" && outcome.reason, "output_too_large");
    assert.match(outcome.kind === "no_result" ? outcome.detail : "", /above the 1048576-byte output limit/);
  });
});
