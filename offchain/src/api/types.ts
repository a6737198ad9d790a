import type { Address, Hex } from "viem";
import type { ExplorerSource } from "./explorer.ts";

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

/** How a job's result is checked: a quorum of its replicas, or spot checks at a rate. */
export const VERIFICATION_MODES = ["quorum", "spot"] as const;
export type VerificationMode = (typeof VERIFICATION_MODES)[number];

/** One executor attempt of a replicated job and the receipt it voted with. */
export interface ApiReplicaView {
  slot: number;
  attempt: number;
  peerId: string;
  operator: Address;
  state: "assigning" | "assigned" | "running" | "voted" | "silent";
  receipt?: { status: string; outputCid: Hex; fuelUsed: string };
  /** Whether its receipt agrees with the accepted result (once decided). */
  agrees?: boolean;
}

export interface ApiVerdictView {
  outcome: "accepted" | "no_quorum";
  /** Agreeing receipts needed: q(n). */
  quorum: number;
  /** Each result voted for and how many distinct operators signed it, most first. */
  tally: { status: string; outputCid: Hex; fuelUsed: string; votes: number }[];
  dissenters: { peerId: string; operator: Address }[];
  /** Operators that signed two different receipts (neither counted). */
  equivocators: Address[];
}

export interface ApiJobView {
  jobId: Hex;
  state: string;
  events: ApiJobEvent[];
  verification?: { mode: VerificationMode; rate?: number };
  replicas?: ApiReplicaView[];
  verdict?: ApiVerdictView;
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
  /** Executors on distinct operators; a result needs q(n) agreeing receipts (default 1). */
  replicas?: number;
  verification?: VerificationMode;
  /** Probability of a spot check (spot mode only; default 0.1). */
  spotRate?: number;
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
  /** The operator key's proof that `donor` may register this node (POST /registration/proof). */
  registrationProof?(donor: Address, nonce: bigint): Promise<unknown>;
  submitJob(request: SubmitJobRequest): Promise<{ jobId: Hex }>;
  getJob(jobId: Hex): ApiJobView | undefined;
  listJobs(): ApiJobView[];
  peers(): unknown[];
  /** Slash submissions of evidence the node verified (GET /slashes); a node without them serves none. */
  slashes?(): { pending: unknown[]; history: unknown[] };
  /** Payment channels the node pays through (GET /payments/channels); a node without them serves none. */
  paymentChannels?(): unknown[];
  /** Epoch settlement and receipt proofs; a node without a payee ledger serves none. */
  settlement?: ApiSettlement;
  /** The chain index (GET /explorer/…, no token: public chain data); absent when the node runs no indexer. */
  readonly explorer?: ExplorerSource | undefined;
  on(event: "job", listener: (event: ApiJobEvent) => void): unknown;
  off?(event: "job", listener: (event: ApiJobEvent) => void): unknown;
}

/** What the settlement routes need (settlement/SettlementService satisfies it). */
export interface ApiSettlement {
  settleNow(): Promise<unknown>;
  /** Settles the held zk vouchers by proof (docs/zk.md). */
  settleZkNow(): Promise<unknown>;
  /** True when the node settles zk vouchers (`settlement.zk.enabled`). */
  readonly zkEnabled: boolean;
  settlements(page: { before?: number; limit?: number }): unknown[];
  receiptProof(
    jobId: Hex,
  ): { epoch: number; submitter: Address; root: Hex; receipt: unknown; proof: Hex[] } | undefined;
}
