import type { Address, Hex } from "viem";

/** Job priorities, most urgent first. */
export const JOB_PRIORITIES = ["critical", "high", "normal", "low", "background"] as const;
export type JobPriority = (typeof JOB_PRIORITIES)[number];

/** Event types that end a job's progress stream. */
export const TERMINAL_EVENT_TYPES: ReadonlySet<string> = new Set(["completed", "failed"]);
export const TERMINAL_JOB_STATES: ReadonlySet<string> = new Set(["completed", "failed"]);

/** One progress step of a job (announced, bid_received, assigned, running, receipt, completed, failed, …). */
export interface ApiJobEvent {
  jobId: Hex;
  type: string;
  reason?: string;
  [field: string]: unknown;
}

export interface ApiJobView {
  jobId: Hex;
  state: string;
  events: ApiJobEvent[];
  [field: string]: unknown;
}

export interface SubmitJobRequest {
  module: Uint8Array;
  input: Uint8Array;
  fuelLimit?: bigint;
  memoryPages?: number;
  timeoutMs?: number;
  maxPricePerMegaFuel?: bigint;
  priority?: JobPriority;
  deadlineMs?: number;
  entry?: string;
}

/**
 * What the API needs from a running node: the subset of the node's CellNode that it
 * serves. Any CellNode satisfies it structurally.
 */
export interface ApiNode {
  readonly peerId: string;
  readonly did: string;
  readonly operator: Address;
  multiaddrs(): string[];
  readonly chainInfo: { chainId: number | bigint; rpcUrl: string; contracts: Record<string, Address> };
  submitJob(request: SubmitJobRequest): Promise<{ jobId: Hex }>;
  getJob(jobId: Hex): ApiJobView | undefined;
  listJobs(): ApiJobView[];
  peers(): unknown[];
  /** Slash submissions of evidence the node verified (GET /slashes); a node without them serves none. */
  slashes?(): { pending: unknown[]; history: unknown[] };
  on(event: "job", listener: (event: ApiJobEvent) => void): unknown;
  off?(event: "job", listener: (event: ApiJobEvent) => void): unknown;
}
