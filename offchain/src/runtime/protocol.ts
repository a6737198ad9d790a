import type { RunRequest } from "./exec.ts";
import type { InstrumentedModule } from "./instrument.ts";
import type { PolicyLimits } from "./policy.ts";

/** Messages between the pool and its workers. */
export type WorkerRequest =
  | { type: "prepare"; id: number; bytes: Uint8Array; limits: PolicyLimits }
  | ({ type: "run"; id: number; cid: string; bytes: Uint8Array } & Omit<RunRequest, "module">);

export type PrepareReply =
  ({ ok: true; instrumentMs: number } & InstrumentedModule) | { ok: false; reason: string };
