import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { pino, type Logger } from "pino";
import { cidOf } from "../protocol/index.ts";
import { DATA_LIMITS, dataLimitProblem } from "../protocol/limits.ts";
import type { ResultStatus, RunOutcome } from "./exec.ts";
import { memoryCapVerdict, DEFAULT_POLICY_LIMITS, type PolicyLimits } from "./policy.ts";
import { WorkerPool, type PoolReply } from "./pool.ts";
import type { PrepareReply } from "./protocol.ts";
import type { Grant } from "./wasi.ts";

export interface Job {
  module: Uint8Array;
  input: Uint8Array;
  fuelLimit: bigint;
  memoryPages: number;
  timeoutMs: number;
  /** WASI `_start` unless named (an empty name means `_start`). */
  entry?: string;
  seed?: Uint8Array;
  args?: string[];
  env?: Record<string, string>;
  grants?: Grant[];
}

export interface ExecutionResult {
  kind: "result";
  status: ResultStatus;
  exitCode?: number;
  reason?: string;
  fuelUsed: bigint;
  output: Uint8Array;
  outputCid: string;
  stderr: Uint8Array;
}

/** A timeout or a host resource error: the job produced no result to vote on. */
export interface NoResult {
  kind: "no_result";
  /** `output_too_large`: stdout went above the output limit (DATA_LIMITS.outputBytes by default). */
  reason: "timeout" | "host_error" | "output_too_large";
  detail: string;
}

export interface RuntimeOptions {
  poolSize?: number;
  logger?: Logger;
  policy?: Partial<PolicyLimits>;
  /** At most DATA_LIMITS.inputBytes (the default). */
  maxInputBytes?: number;
  /** The output limit, at most DATA_LIMITS.outputBytes (the default): a larger output could not travel. */
  stdoutLimit?: number;
  stderrLimit?: number;
  maxFileBytes?: number;
  /** Instrumented modules kept by source CID. */
  cacheEntries?: number;
  /**
   * The worker threads' entry: by default `worker.ts` itself, whose TypeScript each worker
   * strips at start (~100 ms and ~10 MB more per worker than a JavaScript build of it).
   */
  workerEntry?: URL;
}

export interface Runtime {
  /**
   * Aborting `options.signal` ends the run at once with no result; its worker is replaced
   * unless the run ends on its own within CANCEL_GRACE_MS.
   */
  execute(job: Job, options?: { signal?: AbortSignal }): Promise<ExecutionResult | NoResult>;
  /** Policy check + instrumentation of a module (cached by CID), without running it. */
  prepare(
    module: Uint8Array,
    timeoutMs?: number,
  ): Promise<{ cid: string; ok: true } | { cid: string; ok: false; reason: string }>;
  /** Workers replaced so far (timeouts, cancelled runs past their grace, crashes). */
  replacedWorkers(): number;
  close(): Promise<void>;
}

const MAX_FUEL = (1n << 63n) - 1n;
const DEFAULTS = {
  poolSize: 2,
  maxInputBytes: DATA_LIMITS.inputBytes,
  stdoutLimit: DATA_LIMITS.outputBytes,
  stderrLimit: 1024 * 1024,
  maxFileBytes: 64 * 1024 * 1024,
  cacheEntries: 256,
};

type Prepared = Extract<PrepareReply, { ok: true }>;
type PrepareOutcome = { ok: true; module: Prepared } | { ok: false; result: ExecutionResult | NoResult };

export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const settings = { ...DEFAULTS, ...options };
  const limits: PolicyLimits = { ...DEFAULT_POLICY_LIMITS, ...options.policy };
  const logger = (options.logger ?? pino({ level: "silent" })).child({ domain: "runtime" });
  if (!Number.isInteger(settings.poolSize) || settings.poolSize < 1 || settings.poolSize > 256) {
    throw new RangeError(`poolSize must be an integer in 1..256, got ${settings.poolSize}`);
  }
  checkDataLimits(settings, limits);
  const pool = new WorkerPool(settings.poolSize, logger, options.workerEntry);
  try {
    await pool.ready();
  } catch (error) {
    await pool.close();
    throw new Error(
      `runtime workers failed to start: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  const cache = new Map<string, Promise<PrepareReply>>();
  const emptyCid = (await cidOf(new Uint8Array(0))).toString();

  const rejected = (reason: string): ExecutionResult => ({
    kind: "result",
    status: "policy_rejected",
    reason,
    fuelUsed: 0n,
    output: new Uint8Array(0),
    outputCid: emptyCid,
    stderr: new Uint8Array(0),
  });

  /** Instrumented bytes by source CID; concurrent requests share one preparation. */
  async function prepared(cid: string, module: Uint8Array, timeoutMs: number): Promise<PrepareOutcome> {
    let entry = cache.get(cid);
    if (entry) {
      cache.delete(cid);
      cache.set(cid, entry);
    } else {
      entry = pool.run<PrepareReply>({ type: "prepare", bytes: module, limits }, timeoutMs).then((reply) => {
        if (reply.kind !== "reply") throw reply;
        return reply.reply;
      });
      cache.set(cid, entry);
      entry.catch(() => cache.delete(cid));
      if (cache.size > settings.cacheEntries) cache.delete(cache.keys().next().value!);
    }
    try {
      const reply = await entry;
      if (!reply.ok) return { ok: false, result: rejected(reply.reason) };
      return { ok: true, module: reply };
    } catch (failure) {
      return { ok: false, result: noResult(failure as PoolReply<unknown>) };
    }
  }

  async function execute(
    job: Job,
    options: { signal?: AbortSignal } = {},
  ): Promise<ExecutionResult | NoResult> {
    checkJob(job, limits);
    const cid = (await cidOf(job.module)).toString();
    if (job.input.length > settings.maxInputBytes) {
      return rejected(
        dataLimitProblem("input", job.input.length) ??
          `input of ${job.input.length} bytes is above the cap of ${settings.maxInputBytes}`,
      );
    }
    const preparation = await prepared(cid, job.module, job.timeoutMs);
    if (!preparation.ok) return preparation.result;
    const module = preparation.module;
    const entry = job.entry || "_start";
    const memoryProblem = memoryCapVerdict(module.memory, job.memoryPages);
    if (memoryProblem) return rejected(memoryProblem);
    if (!module.functionExports.includes(entry))
      return rejected(`entry "${entry}" is not an exported function`);
    const reply = await pool.run<RunOutcome>(
      {
        type: "run",
        cid,
        bytes: module.bytes,
        ...(module.memory ? { memory: module.memory } : {}),
        hasStart: module.hasStart,
        entry,
        input: job.input,
        fuelLimit: job.fuelLimit,
        memoryPages: job.memoryPages,
        seed: job.seed ?? defaultSeed(job),
        args: job.args ?? ["job"],
        env: job.env ?? {},
        grants: job.grants ?? [],
        stdoutLimit: settings.stdoutLimit,
        stderrLimit: settings.stderrLimit,
        maxFileBytes: settings.maxFileBytes,
      },
      job.timeoutMs,
      options.signal,
    );
    if (reply.kind !== "reply") return noResult(reply);
    const outcome = reply.reply;
    if (outcome.kind === "no_result") {
      if (outcome.reason === "host_error")
        logger.warn({ cid, detail: outcome.detail }, "host error while running a job");
      return outcome;
    }
    return { ...outcome, outputCid: (await cidOf(outcome.output)).toString() };
  }

  return {
    execute,
    async prepare(module, timeoutMs = 30_000) {
      const cid = (await cidOf(module)).toString();
      const preparation = await prepared(cid, module, timeoutMs);
      if (preparation.ok) return { cid, ok: true };
      return {
        cid,
        ok: false,
        reason:
          preparation.result.kind === "result"
            ? (preparation.result.reason ?? "")
            : preparation.result.detail,
      };
    },
    replacedWorkers: () => pool.replacedWorkers,
    close: () => pool.close(),
  };
}

function noResult(reply: PoolReply<unknown>): NoResult {
  if (reply.kind === "timeout")
    return { kind: "no_result", reason: "timeout", detail: "wall-clock timeout; worker replaced" };
  return {
    kind: "no_result",
    reason: "host_error",
    detail: reply.kind === "crash" ? reply.detail : "unexpected reply",
  };
}

/** Without a seed, randomness is derived from the module and the input. */
function defaultSeed(job: Job): Uint8Array {
  return createHash("sha256").update("cell/seed/v1").update(job.module).update(job.input).digest();
}

/** The runtime may be stricter than the data limits, never looser: what it takes and makes must travel. */
function checkDataLimits(
  settings: { maxInputBytes: number; stdoutLimit: number },
  limits: PolicyLimits,
): void {
  const looser = [
    ["maxInputBytes", settings.maxInputBytes, DATA_LIMITS.inputBytes, "inputBytes"],
    ["stdoutLimit", settings.stdoutLimit, DATA_LIMITS.outputBytes, "outputBytes"],
    ["policy.maxModuleBytes", limits.maxModuleBytes, DATA_LIMITS.moduleBytes, "moduleBytes"],
  ] as const;
  for (const [option, value, limit, name] of looser) {
    if (!Number.isSafeInteger(value) || value < 0 || value > limit)
      throw new RangeError(`${option} must be an integer in 0..${limit} (DATA_LIMITS.${name}), got ${value}`);
  }
}

function checkJob(job: Job, limits: PolicyLimits): void {
  if (!(job.module instanceof Uint8Array)) throw new TypeError("job.module must be a Uint8Array");
  if (!(job.input instanceof Uint8Array)) throw new TypeError("job.input must be a Uint8Array");
  if (typeof job.fuelLimit !== "bigint" || job.fuelLimit <= 0n || job.fuelLimit > MAX_FUEL) {
    throw new RangeError(`job.fuelLimit must be a bigint in 1..2^63-1, got ${String(job.fuelLimit)}`);
  }
  if (!Number.isInteger(job.memoryPages) || job.memoryPages < 0 || job.memoryPages > limits.maxMemoryPages) {
    throw new RangeError(
      `job.memoryPages must be an integer in 0..${limits.maxMemoryPages}, got ${job.memoryPages}`,
    );
  }
  for (const grant of job.grants ?? []) {
    if (!statSync(grant.hostPath, { throwIfNoEntry: false })?.isDirectory()) {
      throw new TypeError(`job.grants: ${grant.hostPath} is not a directory on this host`);
    }
    if (!grant.guestPath) throw new TypeError(`job.grants: ${grant.hostPath} has an empty guestPath`);
  }
  if (!Number.isInteger(job.timeoutMs) || job.timeoutMs <= 0 || job.timeoutMs > 2 ** 31 - 1) {
    throw new RangeError(`job.timeoutMs must be a positive integer of milliseconds, got ${job.timeoutMs}`);
  }
}
