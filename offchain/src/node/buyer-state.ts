import type { Address, Hex } from "viem";
import { priorityName } from "../market/index.ts";
import type { BackoffOptions, Candidate } from "../market/index.ts";
import type {
  AssignResponse,
  BidWire,
  JobAnnounce,
  JobSpecMessage,
  PriorityName,
  ReasonCode,
  ReceiptWire,
  StatusResponse,
} from "../protocol/index.ts";
import type { EquivocationSighting, SilentReplica, TallyEntry, VerdictReport } from "../quorum/index.ts";
import type { SignedReceipt } from "./buyer-receipts.ts";
import type { JobEvent, JobResultView, JobViewState } from "./types.ts";

/*
 * The buyer job state machine's vocabulary: its settings, a job's state, the events it
 * takes and the effects it asks for (buyer-machine.ts has the transitions).
 */

// ── settings ────────────────────────────────────────────────────────────────────────

export interface BuyerSettings {
  /** How long an announced job collects bids when not every expected donor answers. */
  bidTimeoutMs: number;
  /** How long bids keep coming in after the first usable one before the best is chosen. */
  bidWindowMs: number;
  /** Liveness probe period of an assigned executor. */
  heartbeatMs: number;
  /** Probes in a row left unanswered before an executor counts as silent. */
  missedProbesSilent: number;
  /** Grace beyond a job's own timeout for fetching its blocks and delivering the receipt. */
  deliveryGraceMs: number;
  /** Executor attempts before a job fails. */
  maxAttempts: number;
  /** Donors not heard from for this long are passed over. */
  livenessMs: number;
  /** Donors asked to bid per job: max(minCandidates, candidatesPerReplica × replicas). */
  minCandidates: number;
  candidatesPerReplica: number;
  backoff: BackoffOptions;
  /** Backoff of a job that could not be placed. */
  placementBackoff: BackoffOptions;
  /** Chosen bids of one job written to the store (one per assignment, up to this many). */
  maxStoredBids: number;
  /** Events of one job kept (the first, `announced`, always stays). */
  maxEvents: number;
  /** Attempts given up on that are remembered (their late receipts still complete the job). */
  maxPastAttempts: number;
  /** A donor's reputation (0..65535) for selection and the spec's `minReputation`; neutral when absent. */
  reputation?: (operator: Address, moduleCid: string) => number;
  /** Replicas a job may add on fresh operators when its quorum can no longer be reached (undefined: the job's replica count). */
  maxExtraReplicas?: number;
  /** Uniform in [0, 1): spreads retries of many jobs and breaks ties between bids. Tests pass a constant or a seeded draw. */
  random: () => number;
}

// ── state ───────────────────────────────────────────────────────────────────────────

/** A usable bid: the bidder is an active staked donor with the bid's peer key. */
export type BidCandidate = Candidate & { bid: BidWire; signature: Hex };

/** Why a donor did not take a job; a donor's own decline names the donor. */
export interface Refusal {
  reason: ReasonCode;
  detail: string;
  decline?: { peerId: string; operator: Address };
}

export interface Attempt {
  /** Unique per job; also the assignment row's attempt number. */
  number: number;
  /** The replica slot the attempt fills. */
  slot: number;
  /** When the executor's acceptance was seen (unix ms; 0 when restored). */
  acceptedAt?: number;
  peerId: string;
  operator: Address;
  pricePerMegaFuel: bigint;
  /** Unix ms by which the receipt is due. */
  deadline: number;
  /** The executor accepted (a receipt may arrive before its acceptance is seen). */
  confirmed: boolean;
  /** The assignment request failed without an answer: the executor may be running the job. */
  unanswered?: boolean;
  missedProbes: number;
  probing: boolean;
  nextProbeAt: number;
  /** A probe found it running (replicated jobs record this per executor). */
  running?: boolean;
  /** Given up on (deadline, silence) while it may still run: cancelled once the job settles. */
  mayRun?: boolean;
}

/** The answers to one announcement of the job. */
export interface BidRound {
  number: number;
  /** The donors asked to bid (at most the candidate limit): once all have answered, selection need not wait. */
  expected: string[];
  /**
   * The job was also announced to all, as too few suitable donors are known: unknown donors
   * may bid too, so selection waits for the bid window or the round's end.
   */
  discovery: boolean;
  answered: string[];
  /** Expected donors yet to answer. */
  awaiting: number;
  candidates: BidCandidate[];
  refusals: Refusal[];
  /** Selection time when no bid comes (`bidTimeoutMs` after the announcement). */
  closesAt: number;
  /** Selection time once a usable bid came (`bidWindowMs` after the first). */
  windowEndsAt?: number;
  /** Bids whose stake check is under way; the round selects only once they are in. */
  checking: string[];
  /** Set once selection started: later bids are late. */
  closed: boolean;
  /** Operators refused during this selection (one bid per operator is tried). */
  refusedOperators: string[];
  /** The chosen bids whose signatures are being checked (at most one per slot to fill). */
  verifying: BidCandidate[];
  /** The attempts whose assignment requests are in flight (at most one per slot). */
  assigning: number[];
  /** Job events of this round (bids, rejections); replaced when the next round opens. */
  events: JobEvent[];
}

/** Totals of the bid rounds before the last, so a job placed many times keeps a bounded history. */
export interface RoundTotals {
  rounds: number;
  bids: number;
  declines: number;
  late: number;
  unstaked: number;
}

/**
 * One of a job's replicas: its executor attempts (each with its own retries and backoff)
 * until one delivers a verified receipt (its vote) or its attempts run out.
 */
export interface ReplicaSlot {
  index: number;
  /** Attempts of this slot that an executor accepted (retries are counted per slot). */
  attempts: number;
  current?: Attempt;
  /** The attempt whose verified receipt is this slot's vote. */
  votedBy?: number;
  /** The slot's attempts ran out: it will give no vote. */
  gaveUp?: ReasonCode;
}

/** A replica's verified receipt with its output, as the verdict counts it. */
export interface ReplicaVote {
  peerId: string;
  operator: Address;
  attempt: number;
  slot: number;
  receipt: ReceiptWire;
  signature: Hex;
  /** The output's CID (the receipt signs its bytes32 form). */
  outputCid: string;
  output: Uint8Array;
  latencyMs: number;
  /** The executor's bid price (per 10^6 fuel) its assignment was made at. */
  pricePerMegaFuel: bigint;
}

/** How the buyer checks a job's result: every replica votes, or one runs and a second checks it at random. */
export type Verification =
  | { mode: "quorum" }
  | {
      mode: "spot";
      /** Probability that a second donor re-executes, drawn after the first receipt is verified. */
      rate: number;
      /** first: one replica runs; check: a second re-executes; escalated: a full quorum decides. */
      phase: "first" | "check" | "escalated";
    };

/** The decided verdict, as shown. */
export interface VerdictSummary {
  outcome: VerdictReport["outcome"];
  quorum: number;
  tally: TallyEntry[];
  dissenters: { peerId: string; operator: Address }[];
  equivocators: Address[];
}

export interface BuyerJobState {
  jobId: Hex;
  spec: JobSpecMessage;
  announce: JobAnnounce;
  signature: Hex;
  priority: PriorityName;
  deadline: number;
  state: JobViewState;
  reason?: ReasonCode;
  /** Job events outside bid rounds, at most `maxEvents`. */
  events: JobEvent[];
  /** Events written to the store so far (writes stop at `maxEvents`, the final event excepted). */
  storedEvents: number;
  /** Attempts the executor accepted. */
  attempts: number;
  /** Highest attempt number handed out. */
  lastAttempt: number;
  placementTries: number;
  /** Peers that had the job (failed, silent, unanswered): not asked again. */
  excluded: string[];
  /** The job's replicas: `spec.replicas` (one at first in spot mode), plus any added for the quorum. */
  slots: ReplicaSlot[];
  /** Attempts given up on; a valid receipt from one of them still counts. */
  past: Attempt[];
  verification: Verification;
  /** Verified receipts (n > 1 or spot): at most two per operator, one per attempt. */
  votes: ReplicaVote[];
  /** Replicas that gave no vote, at most `maxPastAttempts` (oldest dropped). */
  silent: SilentReplica[];
  /** Replicas added because the quorum could no longer be reached. */
  addedReplicas: number;
  verdict?: VerdictSummary;
  round?: BidRound;
  totals: RoundTotals;
  /** The bid rounds' totals written when the job settled. */
  summary?: JobEvent;
  storedBids: number;
  result?: JobResultView;
  receipt?: { message: ReceiptWire; signature: Hex };
}

// ── events ──────────────────────────────────────────────────────────────────────────

/** Known donors not asked to bid, counted by reason. */
export type PassedOver = Partial<Record<ReasonCode, number>>;

/** What a donor offered, as the shell read it off the wire. */
export type Offer =
  | { type: "bid"; bid: BidWire; signature: Hex; peerKey: Hex; freeSlots: number }
  | { type: "decline"; reason: ReasonCode; detail?: string };

/** What the node's donor directory knows of a peer (undefined: not a known donor). */
export type KnownDonor = { operator: Address; staked: boolean } | undefined;

export type BuyerEvent =
  /** A newly submitted job; it waits in the scheduler until placed. */
  | { type: "submitted"; now: number }
  /** The scheduler let the job through: `expected` are the donors worth asking, best first. */
  | { type: "place"; now: number; expected: string[]; passedOver?: PassedOver }
  /** Time passed: bid windows, attempt deadlines and probe times are checked. */
  | { type: "tick"; now: number }
  | { type: "offer_received"; now: number; from: string; offer: Offer; donor: KnownDonor }
  /** A bid request of a `request_bids` effect did not reach the donor. */
  | { type: "bid_request_failed"; now: number; round: number; from: string; detail: string }
  /** The stake check of a bid asked for by a `check_bid` effect. */
  | {
      type: "bid_checked";
      now: number;
      from: string;
      round: number;
      candidate?: BidCandidate;
      refusal?: { reason: ReasonCode; detail: string };
    }
  /** The signature check of the chosen bid asked for by a `check_bid_signature` effect. */
  | { type: "bid_signature_checked"; now: number; round: number; peerId: string; valid: boolean }
  | { type: "assign_answered"; now: number; attempt: number; response: AssignResponse }
  | { type: "assign_failed"; now: number; attempt: number; reason: ReasonCode; detail: string }
  | { type: "probe_answered"; now: number; attempt: number; status: StatusResponse }
  | { type: "probe_failed"; now: number; attempt: number }
  /** A delivery from `from`; `ack` identifies the answer the shell owes the sender. */
  | { type: "receipt_delivered"; now: number; from: string; receipt: SignedReceipt; ack: number }
  | {
      type: "no_result_delivered";
      now: number;
      from: string;
      reason: ReasonCode;
      detail?: string;
      ack: number;
    }
  /** Signature (and inline output hash) checks asked for by a `verify_receipt` effect. */
  | {
      type: "receipt_verified";
      now: number;
      attempt: number;
      receipt: SignedReceipt;
      output?: Uint8Array;
      ack?: number;
    }
  | { type: "receipt_refused"; now: number; attempt: number; detail: string; ack?: number }
  | {
      type: "output_fetched";
      now: number;
      attempt: number;
      receipt: SignedReceipt;
      output: Uint8Array;
      ack?: number;
    }
  | { type: "output_failed"; now: number; attempt: number; detail: string; ack?: number }
  /** The scheduler holds a new job back (every known donor slot is taken, or none is known). */
  | { type: "held"; now: number; reason: ReasonCode; detail: string }
  /** The job's deadline passed while it waited in the scheduler. */
  | { type: "expired"; now: number; detail: string }
  /** The job's store row could not be written. */
  | { type: "store_failed"; now: number; detail: string };

// ── effects ─────────────────────────────────────────────────────────────────────────

export type AssignmentState = "assigned" | "running" | "completed" | "failed" | "timed_out" | "cancelled";

export type BuyerEffect =
  /** Gossip the job to all, for discovery of donors this node does not know (rate-limited by the shell). */
  | { type: "announce" }
  /** Ask these donors, and only them, to bid on the job. */
  | { type: "request_bids"; round: number; peers: string[] }
  /** Put the job (back) in the scheduler, not placed before `notBefore`. */
  | { type: "queue"; notBefore: number; reason?: ReasonCode; detail?: string }
  | { type: "unqueue" }
  /** The placement that `place` started is over (assigned, parked or failed). */
  | { type: "placement_ended" }
  | { type: "check_bid"; round: number; from: string; offer: Extract<Offer, { type: "bid" }> }
  | { type: "check_bid_signature"; round: number; candidate: BidCandidate }
  | { type: "assign"; attempt: number; candidate: BidCandidate }
  | { type: "probe"; attempt: number; peerId: string }
  | { type: "verify_receipt"; attempt: number; peerId: string; receipt: SignedReceipt; ack?: number }
  | { type: "fetch_output"; attempt: number; peerId: string; receipt: SignedReceipt; ack?: number }
  | { type: "ack"; ack: number; accepted: boolean; reason?: ReasonCode }
  | { type: "emit"; event: JobEvent }
  | { type: "store_event"; event: JobEvent }
  | { type: "store_state"; state: JobViewState; reason?: ReasonCode }
  | { type: "store_bid"; candidate: BidCandidate }
  | { type: "store_assignment"; attempt: Attempt; state: AssignmentState; reason?: string; insert: boolean }
  | { type: "store_result"; receipt: SignedReceipt; output: Uint8Array; result: JobResultView }
  | { type: "misbehaved"; peerId: string; reason: ReasonCode; detail: string }
  /** Every verified replica receipt is kept (jobs of more than one replica). */
  | { type: "store_receipt"; vote: ReplicaVote }
  /** Tell an executor still running the job to stop: the verdict is in, or its attempt was superseded. */
  | { type: "cancel"; attempt: number; peerId: string }
  | { type: "verdict"; report: VerdictReport }
  | { type: "equivocation"; sighting: EquivocationSighting };

export interface Step {
  job: BuyerJobState;
  effects: BuyerEffect[];
}

// ── construction ────────────────────────────────────────────────────────────────────

export function newJobState(
  jobId: Hex,
  spec: JobSpecMessage,
  signature: Hex,
  announce: JobAnnounce,
  verification: Verification = { mode: "quorum" },
): BuyerJobState {
  const replicas = verification.mode === "spot" ? 1 : spec.replicas;
  return {
    jobId,
    spec,
    signature,
    announce,
    priority: priorityName(spec.priority),
    deadline: Number(spec.deadline),
    state: "queued",
    events: [],
    storedEvents: 0,
    attempts: 0,
    lastAttempt: 0,
    placementTries: 0,
    excluded: [],
    slots: Array.from({ length: replicas }, (_, index) => ({ index, attempts: 0 })),
    past: [],
    verification,
    votes: [],
    silent: [],
    addedReplicas: 0,
    totals: { rounds: 0, bids: 0, declines: 0, late: 0, unstaked: 0 },
    storedBids: 0,
  };
}

/** The executors a job has at work or being assigned right now, one per slot. */
export function activeAttempts(job: Pick<BuyerJobState, "slots">): Attempt[] {
  const attempts: Attempt[] = [];
  for (const slot of job.slots) if (slot.current) attempts.push(slot.current);
  return attempts;
}

/** Slots without an executor that may still vote: a placement fills them. */
export function openSlots(job: Pick<BuyerJobState, "slots">): ReplicaSlot[] {
  return job.slots.filter((slot) => !slot.current && slot.votedBy === undefined && slot.gaveUp === undefined);
}

/** Does the job decide by a vote (more than one replica, or spot checks), or take its single receipt? */
export function isReplicated(job: Pick<BuyerJobState, "spec" | "verification">): boolean {
  return job.spec.replicas > 1 || job.verification.mode === "spot";
}
