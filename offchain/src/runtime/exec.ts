import { DATA_LIMITS } from "../protocol/limits.ts";
import { Instrumented } from "./instrument.ts";
import { WASI_MODULE } from "./policy.ts";
import { createWasi, HostOutOfFuel, OutputLimitExceeded, ProcExit, type Grant } from "./wasi.ts";

export type ResultStatus = "ok" | "exit" | "trap" | "out_of_fuel" | "policy_rejected";

/** What one run produced, before the output is content-addressed. */
export type RunOutcome =
  | {
      kind: "result";
      status: ResultStatus;
      exitCode?: number;
      reason?: string;
      fuelUsed: bigint;
      output: Uint8Array;
      stderr: Uint8Array;
    }
  | { kind: "no_result"; reason: "host_error" | "output_too_large"; detail: string };

export interface RunRequest {
  module: WebAssembly.Module;
  /** The memory the module declared, when it imports it from the host. */
  memory?: { initial: number; maximum?: number };
  hasStart: boolean;
  entry: string;
  input: Uint8Array;
  fuelLimit: bigint;
  memoryPages: number;
  seed: Uint8Array;
  args: string[];
  env: Record<string, string>;
  grants: Grant[];
  stdoutLimit: number;
  stderrLimit: number;
  maxFileBytes: number;
}

type Exports = Record<string, unknown>;

/**
 * Runs one job to completion in the calling thread: a fresh instance, its own memory,
 * the deterministic WASI shim. Works on instrumented modules (fuel, call depth) and,
 * for benchmarks, on plain ones.
 */
export function runModule(request: RunRequest): RunOutcome {
  let memory: WebAssembly.Memory | undefined;
  let exports: Exports | undefined;
  const fuel = () => exports?.[Instrumented.fuelExport] as WebAssembly.Global | undefined;
  const wasi = createWasi({
    input: request.input,
    args: request.args,
    env: request.env,
    seed: request.seed,
    grants: request.grants,
    stdoutLimit: request.stdoutLimit,
    stderrLimit: request.stderrLimit,
    maxFileBytes: request.maxFileBytes,
    fuelLimit: request.fuelLimit,
    memory: () => memory,
    fuel,
  });
  const finish = (status: ResultStatus, extra: { exitCode?: number; reason?: string } = {}): RunOutcome => {
    const left = (fuel()?.value as bigint | undefined) ?? request.fuelLimit;
    const fuelUsed = status === "out_of_fuel" || left < 0n ? request.fuelLimit : request.fuelLimit - left;
    return {
      kind: "result",
      status,
      ...extra,
      fuelUsed,
      output: wasi.stdout.bytes(),
      stderr: wasi.stderr.bytes(),
    };
  };

  try {
    if (request.memory) {
      const maximum = Math.min(request.memory.maximum ?? request.memoryPages, request.memoryPages);
      memory = new WebAssembly.Memory({ initial: request.memory.initial, maximum });
    }
    const imports: WebAssembly.Imports = { [WASI_MODULE]: wasi.imports };
    if (memory) imports[Instrumented.memoryModule] = { [Instrumented.memoryName]: memory };
    const instance = new WebAssembly.Instance(request.module, imports);
    exports = instance.exports as Exports;
    memory ??= exports.memory instanceof WebAssembly.Memory ? exports.memory : undefined;
    const global = fuel();
    if (global) global.value = request.fuelLimit;
    if (request.hasStart) (exports[Instrumented.startExport] as () => void)();
    const entry = exports[request.entry];
    if (typeof entry !== "function")
      return finish("trap", { reason: `entry "${request.entry}" is not an exported function` });
    entry();
    return finish("ok");
  } catch (error) {
    return classify(error, finish, exports);
  }
}

function outputLimitDetail(limit: number): string {
  const named = limit === DATA_LIMITS.outputBytes ? " (DATA_LIMITS.outputBytes)" : "";
  return `the output is above the ${limit}-byte output limit${named}`;
}

function classify(
  error: unknown,
  finish: (status: ResultStatus, extra?: { exitCode?: number; reason?: string }) => RunOutcome,
  exports: Exports | undefined,
): RunOutcome {
  if (error instanceof ProcExit)
    return error.code === 0 ? finish("ok", { exitCode: 0 }) : finish("exit", { exitCode: error.code });
  if (error instanceof HostOutOfFuel) return finish("out_of_fuel", { reason: "out of fuel" });
  // The output (stdout) is the job's result: one above the limit could not travel, so there is none.
  if (error instanceof OutputLimitExceeded && error.stream === "stdout")
    return { kind: "no_result", reason: "output_too_large", detail: outputLimitDetail(error.limit) };
  if (error instanceof OutputLimitExceeded) return finish("trap", { reason: error.message });
  if (error instanceof WebAssembly.RuntimeError) {
    const fuel = exports?.[Instrumented.fuelExport] as WebAssembly.Global | undefined;
    const stack = exports?.[Instrumented.stackExport] as WebAssembly.Global | undefined;
    if (fuel && (fuel.value as bigint) < 0n) return finish("out_of_fuel", { reason: "out of fuel" });
    if (stack && (stack.value as number) < 0) return finish("trap", { reason: "call stack exhausted" });
    return finish("trap", { reason: error.message });
  }
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return { kind: "no_result", reason: "host_error", detail };
}
