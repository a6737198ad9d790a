// Deterministic, metered WebAssembly execution: policy check, fuel instrumentation, a
// warm worker pool and a deterministic WASI shim.
export { createRuntime } from "./runtime.ts";
export type { ExecutionResult, Job, NoResult, Runtime, RuntimeOptions } from "./runtime.ts";
export type { ResultStatus, RunOutcome, RunRequest } from "./exec.ts";
export { checkPolicy, DEFAULT_POLICY_LIMITS, WASI_SIGNATURES } from "./policy.ts";
export type { ModuleInfo, PolicyLimits, PolicyVerdict } from "./policy.ts";
export { instrument, Instrumented } from "./instrument.ts";
export type { FuelMode, InstrumentedModule, InstrumentOptions } from "./instrument.ts";
export { PolicyError } from "./wasm-binary.ts";
/** Runs one prepared module in the calling thread (benchmarks and tests). */
export { runModule } from "./exec.ts";
export { WORKER_RESOURCE_LIMITS, WORKER_SOURCE } from "./pool.ts";
export * as fuelSchedule from "./costs.ts";
