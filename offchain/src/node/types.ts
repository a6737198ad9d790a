import type { Address, Hex } from "viem";
import type { ExplorerSource } from "../api/explorer.ts";
import type { JobSpecWire, PriorityName, ReasonCode, ReceiptWire } from "../protocol/index.ts";
import type { TrustView } from "../trust/index.ts";
import type { BuyerStats } from "./buyer.ts";
import type { MeshStats } from "../p2p/index.ts";
import type { SlashRow } from "../store/index.ts";
import type { ChannelView } from "../payments/index.ts";
import type { SettlementService } from "../settlement/index.ts";

export const JOB_EVENT_TYPES = [
  "queued",
  "announced",
  "bid_received",
  "bid_rejected",
  /** Totals of a job's earlier bid rounds (each round's bids are kept only until the next). */
  "bid_rounds",
  "assigned",
  "reassigned",
  "running",
  "receipt",
  /** Replicas added on fresh operators (the quorum was out of reach, or a spot check). */
  "replicas_added",
  /** The replicas' verdict: accepted or no quorum, with the tally. */
  "verdict",
  "completed",
  "failed",
  /** After an accepted verdict: an agreeing executor's pay, added to the voucher on its channel. */
  "paid",
] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

/** One step of a buyer's job; every refusal carries a reason code. */
export type JobEvent = {
  jobId: Hex;
  type: JobEventType;
  /** Unix ms. */
  at: number;
  reason?: ReasonCode;
  detail?: string;
  peerId?: string;
  operator?: Address;
  pricePerMegaFuel?: string;
  attempt?: number;
  /** On a `verdict` event: the decided verdict. */
  verdict?: VerdictView;
};

/** One result the replicas voted for, and how many distinct operators signed it. */
export type TallyView = { status: string; outputCid: Hex; fuelUsed: string; votes: number };

export type VerdictView = {
  outcome: "accepted" | "no_quorum";
  /** Agreeing receipts needed. */
  quorum: number;
  tally: TallyView[];
  dissenters: { peerId: string; operator: Address }[];
  /** Operators that signed two different receipts (neither counted). */
  equivocators: Address[];
};

/** One executor attempt of a replicated job, and the receipt it voted with. */
export type ReplicaView = {
  slot: number;
  attempt: number;
  peerId: string;
  operator: Address;
  state: "assigning" | "assigned" | "running" | "voted" | "silent";
  receipt?: { status: string; outputCid: Hex; fuelUsed: string };
  /** Whether its receipt agrees with the accepted result (once decided). */
  agrees?: boolean;
};

export const JOB_VIEW_STATES = ["queued", "announced", "assigned", "running", "completed", "failed"] as const;
export type JobViewState = (typeof JOB_VIEW_STATES)[number];

export type JobResultView = {
  status: string;
  fuelUsed: string;
  outputCid: string;
  outputBase64: string;
};

export type JobView = {
  jobId: Hex;
  state: JobViewState;
  priority: PriorityName;
  spec: JobSpecWire;
  signature: Hex;
  /** Why the job waits or failed, if it does. */
  reason?: ReasonCode;
  executor?: { peerId: string; operator: Address };
  attempts: number;
  events: JobEvent[];
  result?: JobResultView;
  receipt?: { message: ReceiptWire; signature: Hex };
  /** How the result is checked: by a quorum of `spec.replicas`, or by spot checks at `rate`. */
  verification?: { mode: "quorum" | "spot"; rate?: number };
  /** Replicated jobs: every executor attempt with its vote. */
  replicas?: ReplicaView[];
  verdict?: VerdictView;
};

export type PeerView = {
  peerId: string;
  connected: boolean;
  operator?: Address;
  peerKey?: Hex;
  /** Active in DonorRegistry with this peer key, as last read. */
  staked?: boolean;
  pricePerMegaFuel?: string;
  slots?: number;
  freeSlots?: number;
  runtimeVersion?: string;
  lastSeen?: number;
  multiaddrs: string[];
  penaltyScore: number;
  /** 0..65535, neutral 32768 (trust layer). */
  reputation?: number;
  /** Quarantine state, reason, evidence and slashes (trust layer), when there is any. */
  trust?: TrustView;
};

export interface SubmitJobRequest {
  module: Uint8Array;
  input: Uint8Array;
  fuelLimit?: bigint;
  memoryPages?: number;
  timeoutMs?: number;
  maxPricePerMegaFuel?: bigint;
  priority?: PriorityName;
  /** Absolute deadline, unix ms. */
  deadlineMs?: number;
  entry?: string;
  /** Executors on distinct operators that must agree (q(n) of them); default 1. */
  replicas?: number;
  /** "spot": one replica runs and a second re-executes with probability `spotRate` (default 0.1). */
  verification?: "quorum" | "spot";
  spotRate?: number;
}

export interface ChainInfo {
  chainId: number;
  rpcUrl: string;
  contracts: Record<string, Address>;
}

/** The operator key's EIP-712 OperatorRegistration signature for `donor` (DonorRegistry.register). */
export interface RegistrationProof {
  donor: Address;
  operator: Address;
  peerKey: Hex;
  nonce: bigint;
  signature: Hex;
}

export interface CellNode {
  readonly peerId: string;
  readonly did: string;
  readonly operator: Address;
  readonly chainInfo: ChainInfo;
  multiaddrs(): string[];
  /**
   * The operator key's proof of possession for `donor` registering this node (nonce 0) or
   * rotating to it (its registration nonce): a browser wallet cannot hold the operator key.
   */
  registrationProof(donor: Address, nonce?: bigint): Promise<RegistrationProof>;
  submitJob(request: SubmitJobRequest): Promise<{ jobId: Hex }>;
  getJob(jobId: Hex): JobView | undefined;
  listJobs(): JobView[];
  waitForJob(jobId: Hex, options?: { timeoutMs?: number }): Promise<JobView>;
  on(event: "job", listener: (event: JobEvent) => void): void;
  off(event: "job", listener: (event: JobEvent) => void): void;
  peers(): PeerView[];
  /** Inbound messages this node refused, by reason (malformed, too_large, rate_limited, …). */
  rejections(): Record<string, number>;
  /** Placement counters: bid requests this node sent as a buyer, and jobs it was asked to bid on as a donor. */
  stats(): NodeStats;
  /** Receipts this node signed as an executor, newest last. */
  executedReceipts(): { message: ReceiptWire; signature: Hex }[];
  /** Gossip and requests this node's mesh received and sent so far, and its open connections. */
  meshStats(): MeshStats;
  /** Slash submissions of evidence this node verified: those still waiting, and every one kept (newest first). */
  slashes(): { pending: SlashRow[]; history: SlashRow[] };
  /** Payment channels this node pays donors through, with spend rate and time to empty. */
  paymentChannels(): ChannelView[];
  /** Epoch settlement, watchtower and receipt proofs; present when the node holds a payee ledger or relays (startSettlement). */
  settlement?: SettlementService;
  /** The chain index the API serves under /explorer; set when `indexer.enabled`. */
  explorer?: ExplorerSource;
  stop(): Promise<void>;
}

export interface NodeStats {
  buyer: BuyerStats;
  /** Jobs this node was asked to bid on: directly as a candidate, and in discovery announcements. */
  donor: {
    bidRequests: number;
    announcedJobs: number;
    answeredInResponse: number;
    answeredLater: number;
    /** Slots taken by accepted jobs now. */
    busySlots: number;
    /** Jobs stopped because their buyer cancelled them. */
    cancelled: number;
  };
}
