import type { Address, Hex } from "viem";
import { decideBid } from "../market/index.ts";
import { decideCredit, maxCost } from "../payments/index.ts";
import type { BuyerCredit, CreditLimits } from "../payments/index.ts";
import type { DonorPolicy, SignedJob } from "../market/index.ts";
import { ReceiptStatus, bidFromWire, bidToWire, cidToBytes32, jobSpecFromWire } from "../protocol/index.ts";
import type {
  AssignRequest,
  AssignResponse,
  BidMessage,
  BidOffer,
  ExecutorState,
  JobAnnounce,
  ReasonCode,
  Receipt,
  ReceiptAck,
  ReceiptDelivery,
  StatusResponse,
} from "../protocol/index.ts";
import type { ExecutionResult, Job as RuntimeJob, NoResult } from "../runtime/index.ts";

/**
 * The donor's decisions as a state machine: `step(state, event)` returns the effects to
 * perform, and the shell (donor.ts) performs them and feeds their outcomes back as events.
 * No I/O, no timers, no clock: time comes in the events. The state is updated in place and
 * returned (copying maps of up to OFFER_LIMIT entries on every event would cost more than
 * the jobs); the outcome depends only on the state and the event.
 */

/**
 * Bids kept for assignment, over all buyers. A buyer assigns within its bid round, so a
 * donor needs only its last few seconds of bids; each holds the announced job (~2 KB).
 * Eviction: expired bids first, then the oldest bid of the buyer holding the most.
 */
export const OFFER_LIMIT = 1_024;
/** Ids of bids dropped from the cache, so a late assignment is told "expired", not "no such bid". FIFO. */
export const DROPPED_OFFER_LIMIT = 4_096;
/** Buyers whose announce rate is tracked; windows of past seconds leave first, then the oldest. */
export const ANNOUNCE_WINDOW_LIMIT = 4_096;
/**
 * Signed receipts waiting for their buyer's acknowledgement, in memory; the store keeps
 * them all. Eviction: an entry leaves when the buyer answers (accepted or refused: both are
 * final), after REDELIVERY_ATTEMPTS failed deliveries, or, the oldest first, when more than
 * OUTBOX_LIMIT wait. Its receipt stays stored, and a status probe still returns it.
 */
export const OUTBOX_LIMIT = 4_096;
export const REDELIVERY_ATTEMPTS = 20;
/** Deliveries of "no result": not durable, the buyer can also learn the outcome by probing. */
export const NO_RESULT_ATTEMPTS = 4;
/** Failed jobs kept in memory while their "no result" is delivered; the oldest leave first. */
export const FAILED_LIMIT = 1_024;
const RETRY_BASE_MS = 400;
const RETRY_MAX_MS = 60_000;
const DETAIL_MAX = 500;

export interface DonorMachineConfig {
  /** This node's operator address: the executor of its bids and receipts. */
  operator: Address;
  policy: DonorPolicy;
  /** Announced jobs considered per buyer and second (a window per whole second); more are ignored. */
  announcedJobsPerBuyerPerSecond: number;
  /** Bids kept per buyer until assigned; a newer bid pushes out that buyer's oldest. */
  outstandingBidsPerBuyer: number;
  /**
   * Inline output bytes (base64) the outbox keeps for redelivery, over all receipts; past
   * it a receipt that failed a delivery is sent again without its output, which the buyer
   * then fetches by CID. Default OUTBOX_INLINE_BYTES.
   */
  outboxInlineBytes?: number;
  /** When set, this donor bids only for buyers whose credit with its payee covers the job (payments/credit.ts). */
  credit?: CreditLimits;
}

/** 64 MiB of inline outputs held for redelivery at most (the outbox holds up to 4,096 receipts). */
export const OUTBOX_INLINE_BYTES = 64 * 1024 * 1024;

/** A bid this node made: the job as announced (its id checked), kept until assigned or dropped. */
interface Offer {
  buyer: string;
  job: SignedJob;
  announce: JobAnnounce;
  bid: BidMessage;
}

/** A job between acceptance and its outcome. Phases before "failed" hold a slot. */
type Phase = "verifying" | "fetching" | "running" | "persisting" | "failed";

interface Execution {
  job: SignedJob;
  /** The price of this node's bid: what the job earns per mega-fuel. */
  pricePerMegaFuel: bigint;
  announce: JobAnnounce;
  buyerPeer: string;
  phase: Phase;
  holdsSlot: boolean;
  /** Assign requests answered once the spec's signature is checked. */
  waiting: number[];
  inlineInput?: Uint8Array;
  startedAt?: number;
  reason?: ReasonCode;
  detail?: string;
  attempts: number;
  delivering: boolean;
}

/** A stored receipt whose buyer has not acknowledged it. */
export interface OutboxEntry {
  jobId: Hex;
  buyerPeer: string;
  /** The receipt's row in the store. */
  rowId: number;
  delivery: Extract<ReceiptDelivery, { type: "receipt" }>;
}

interface Pending extends OutboxEntry {
  attempts: number;
  delivering: boolean;
}

export interface DonorMachineState {
  config: DonorMachineConfig;
  stopping: boolean;
  busySlots: number;
  offers: Map<Hex, Offer>;
  offersByBuyer: Map<string, Set<Hex>>;
  droppedOffers: Set<Hex>;
  announceWindows: Map<string, { second: number; count: number }>;
  executions: Map<Hex, Execution>;
  outbox: Map<Hex, Pending>;
}

export type DonorTimer = { kind: "redeliver"; jobId: Hex };

export type DonorEvent =
  | {
      type: "announced";
      now: number;
      buyer: string;
      jobs: JobAnnounce[];
      staked: boolean;
      /** Each spec buyer's credit with this payee, by lower-case address (when credit is checked). */
      credit?: ReadonlyMap<string, BuyerCredit>;
    }
  | {
      type: "bid_signed";
      now: number;
      buyer: string;
      announce: JobAnnounce;
      job: SignedJob;
      bid: BidMessage;
      signature: Hex;
      peerKey: Hex;
    }
  | { type: "bid_refused"; buyer: string; jobId: Hex; reason: ReasonCode; detail: string }
  | { type: "assigned"; now: number; from: string; requests: { id: number; request: AssignRequest }[] }
  | { type: "spec_checked"; jobId: Hex; valid: boolean }
  | { type: "blocks_fetched"; now: number; jobId: Hex; module: Uint8Array; input: Uint8Array }
  | { type: "fetch_failed"; jobId: Hex; detail: string }
  | { type: "executed"; now: number; jobId: Hex; result: ExecutionResult | NoResult }
  | { type: "execution_threw"; jobId: Hex; detail: string }
  | { type: "receipt_persisted"; jobId: Hex; rowId: number; delivery: OutboxEntry["delivery"] }
  | { type: "persist_failed"; jobId: Hex; detail: string }
  | { type: "delivery_acked"; now: number; jobId: Hex; ack: ReceiptAck }
  | { type: "delivery_failed"; now: number; jobId: Hex; detail: string }
  | { type: "timer_fired"; now: number; timer: DonorTimer }
  | { type: "restored"; now: number; outbox: OutboxEntry[] }
  /** The job's buyer (`from`, authenticated by the connection) cancels it. */
  | { type: "cancel_requested"; jobId: Hex; from: string }
  | { type: "stopping" };

export type LogLevel = "debug" | "info" | "warn";

export type DonorEffect =
  | { type: "sign_bid"; buyer: string; announce: JobAnnounce; bid: BidMessage }
  | { type: "send_offer"; buyer: string; offer: BidOffer }
  | { type: "answer_assign"; requestId: number; response: AssignResponse }
  | { type: "check_spec"; jobId: Hex; job: SignedJob }
  | { type: "fetch_blocks"; jobId: Hex; announce: JobAnnounce; inlineInput?: Uint8Array }
  | { type: "run"; jobId: Hex; job: RuntimeJob }
  /** Stop the job's run (its worker), if one is under way. */
  | { type: "abort_run"; jobId: Hex }
  | {
      type: "persist_receipt";
      jobId: Hex;
      buyerPeer: string;
      pricePerMegaFuel: bigint;
      job: SignedJob;
      announce: JobAnnounce;
      receipt: Receipt;
      output: Uint8Array;
      outputCid: string;
    }
  | { type: "record_failure"; jobId: Hex; job: SignedJob; announce: JobAnnounce; reason: ReasonCode }
  | { type: "deliver"; jobId: Hex; buyerPeer: string; delivery: ReceiptDelivery }
  | { type: "leave_outbox"; jobId: Hex; rowId: number; why: "acknowledged" | "given_up" | "crowded_out" }
  | { type: "schedule"; at: number; timer: DonorTimer }
  | { type: "log"; level: LogLevel; message: string; fields: Record<string, unknown> }
  | { type: "misbehaved"; peerId: string; reason: string; detail: string };

export interface StepResult {
  state: DonorMachineState;
  effects: DonorEffect[];
}

export function initialDonorState(config: DonorMachineConfig): DonorMachineState {
  return {
    config,
    stopping: false,
    busySlots: 0,
    offers: new Map(),
    offersByBuyer: new Map(),
    droppedOffers: new Set(),
    announceWindows: new Map(),
    executions: new Map(),
    outbox: new Map(),
  };
}

export function step(state: DonorMachineState, event: DonorEvent): StepResult {
  const effects: DonorEffect[] = [];
  HANDLERS[event.type](state, event as never, effects);
  return { state, effects };
}

/** Slots not taken by accepted jobs, as advertised and sent with bids. */
export function freeSlots(state: DonorMachineState): number {
  return Math.max(0, state.config.policy.slots - state.busySlots);
}

/** The answer to a status probe for a job this node holds in memory, else undefined. */
export function statusOf(state: DonorMachineState, jobId: Hex): StatusResponse | undefined {
  const pending = state.outbox.get(jobId);
  if (pending) return doneStatus(pending.delivery);
  const execution = state.executions.get(jobId);
  if (!execution) return undefined;
  const status: StatusResponse = { type: "status", jobId, state: wireState(execution.phase) };
  if (execution.phase === "failed") return { ...status, reason: execution.reason, detail: execution.detail };
  return status;
}

/** A status answer for a finished job: its signed receipt, without the inline output. */
export function doneStatus(delivery: OutboxEntry["delivery"]): StatusResponse {
  const { receipt, signature, outputCid } = delivery;
  return { type: "status", jobId: receipt.jobId, state: "done", receipt: { receipt, signature, outputCid } };
}

function wireState(phase: Phase): ExecutorState {
  if (phase === "verifying") return "accepted";
  if (phase === "persisting") return "running";
  return phase;
}

type Handler<T extends DonorEvent["type"]> = (
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: T }>,
  effects: DonorEffect[],
) => void;

const HANDLERS: { [T in DonorEvent["type"]]: Handler<T> } = {
  announced: onAnnounced,
  bid_signed: onBidSigned,
  bid_refused: (_state, event, effects) => {
    decline(effects, event.buyer, event.jobId, event.reason, event.detail);
    if (event.reason === "bad_spec" || event.reason === "bad_signature")
      effects.push({ type: "misbehaved", peerId: event.buyer, reason: "bad_announce", detail: event.detail });
  },
  assigned: onAssigned,
  spec_checked: onSpecChecked,
  blocks_fetched: onBlocksFetched,
  fetch_failed: (state, event, effects) => {
    if (inPhase(state, event.jobId, "fetching"))
      fail(state, effects, event.jobId, "fetch_failed", event.detail);
  },
  executed: onExecuted,
  execution_threw: (state, event, effects) => {
    if (inPhase(state, event.jobId, "running"))
      fail(state, effects, event.jobId, "internal_error", `the runtime threw: ${event.detail}`);
  },
  receipt_persisted: onReceiptPersisted,
  persist_failed: (state, event, effects) => {
    if (inPhase(state, event.jobId, "persisting"))
      fail(state, effects, event.jobId, "internal_error", `the receipt could not be stored: ${event.detail}`);
  },
  delivery_acked: onDeliveryAcked,
  delivery_failed: onDeliveryFailed,
  timer_fired: onTimerFired,
  restored: onRestored,
  cancel_requested: onCancelRequested,
  stopping: (state) => {
    state.stopping = true;
  },
};

// ── bids ─────────────────────────────────────────────────────────────────────────────

function onAnnounced(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "announced" }>,
  effects: DonorEffect[],
): void {
  if (state.stopping) return;
  const { buyer, now } = event;
  const own = event.jobs.filter((announce) => announce.buyerPeer === buyer);
  if (own.length < event.jobs.length)
    effects.push({
      type: "misbehaved",
      peerId: buyer,
      reason: "bad_announce",
      detail: `${event.jobs.length - own.length} announced jobs name another buyer`,
    });
  const allowed = takeAnnounceAllowance(state, buyer, now, own.length);
  if (allowed < own.length)
    log(effects, "debug", "ignored announced jobs over the buyer's rate", {
      buyer,
      ignored: own.length - allowed,
    });
  // What this event's bids commit per spec buyer, before their offers are held.
  const reserved = new Map<string, bigint>();
  for (const announce of own.slice(0, allowed)) considerJob(state, effects, buyer, announce, event, reserved);
}

/** How many of `wanted` jobs the buyer may still announce in the current second. */
function takeAnnounceAllowance(state: DonorMachineState, buyer: string, now: number, wanted: number): number {
  const second = Math.floor(now / 1000);
  const windows = state.announceWindows;
  let window = windows.get(buyer);
  if (!window || window.second !== second) {
    windows.delete(buyer);
    if (windows.size >= ANNOUNCE_WINDOW_LIMIT) evictAnnounceWindows(windows, second);
    window = { second, count: 0 };
    windows.set(buyer, window);
  }
  const allowed = Math.max(0, Math.min(wanted, state.config.announcedJobsPerBuyerPerSecond - window.count));
  window.count += allowed;
  return allowed;
}

function evictAnnounceWindows(windows: DonorMachineState["announceWindows"], second: number): void {
  for (const [buyer, window] of windows) if (window.second !== second) windows.delete(buyer);
  while (windows.size >= ANNOUNCE_WINDOW_LIMIT) windows.delete(windows.keys().next().value!);
}

function considerJob(
  state: DonorMachineState,
  effects: DonorEffect[],
  buyer: string,
  announce: JobAnnounce,
  event: { now: number; staked: boolean; credit?: ReadonlyMap<string, BuyerCredit> },
  reserved: Map<string, bigint>,
): void {
  const { jobId } = announce;
  if (state.executions.has(jobId) || state.outbox.has(jobId))
    return decline(effects, buyer, jobId, "duplicate_operator", "this node already has the job");
  const spec = jobSpecFromWire(announce.spec);
  // The policy is cheap and declines most jobs of a busy donor: it goes before hashing the spec.
  const decision = decideBid(state.config.policy, spec, {
    staked: event.staked,
    busySlots: state.busySlots,
    now: event.now,
  });
  if (decision.type === "decline") return decline(effects, buyer, jobId, decision.reason, decision.detail);
  const limits = state.config.credit;
  if (limits) {
    const specBuyer = spec.buyer.toLowerCase();
    const credit = event.credit?.get(specBuyer) ?? { unspentDeposit: 0n, unpaid: 0n };
    const cost = maxCost(decision.pricePerMegaFuel, spec.fuelLimit);
    const committed = committedFor(state, specBuyer) + (reserved.get(specBuyer) ?? 0n);
    const verdict = decideCredit(credit, cost, committed, limits);
    if (verdict.type === "decline") return decline(effects, buyer, jobId, verdict.reason, verdict.detail);
    reserved.set(specBuyer, (reserved.get(specBuyer) ?? 0n) + cost);
  }
  const bid: BidMessage = {
    jobId,
    executor: state.config.operator,
    pricePerMegaFuel: decision.pricePerMegaFuel,
    expiresAt: decision.expiresAt,
  };
  effects.push({ type: "sign_bid", buyer, announce, bid });
}

/**
 * The most that the jobs this node bid on or runs for `specBuyer` can still cost: at stake
 * until their receipts count as owed (up to OFFER_LIMIT bids and the slots' jobs are summed).
 */
function committedFor(state: DonorMachineState, specBuyer: string): bigint {
  const buyer = specBuyer.toLowerCase();
  let committed = 0n;
  for (const execution of state.executions.values())
    if (execution.holdsSlot && execution.job.spec.buyer.toLowerCase() === buyer)
      committed += maxCost(execution.pricePerMegaFuel, execution.job.spec.fuelLimit);
  for (const offer of state.offers.values())
    if (offer.job.spec.buyer.toLowerCase() === buyer)
      committed += maxCost(offer.bid.pricePerMegaFuel, offer.job.spec.fuelLimit);
  return committed;
}

function onBidSigned(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "bid_signed" }>,
  effects: DonorEffect[],
): void {
  if (state.stopping) return;
  rememberOffer(
    state,
    { buyer: event.buyer, job: event.job, announce: event.announce, bid: event.bid },
    event.now,
  );
  effects.push({
    type: "send_offer",
    buyer: event.buyer,
    offer: {
      type: "bid",
      bid: bidToWire(event.bid),
      signature: event.signature,
      peerKey: event.peerKey,
      freeSlots: freeSlots(state),
    },
  });
}

function decline(
  effects: DonorEffect[],
  buyer: string,
  jobId: Hex,
  reason: ReasonCode,
  detail: string,
): void {
  effects.push({
    type: "send_offer",
    buyer,
    offer: { type: "decline", jobId, reason, detail: clip(detail) },
  });
}

/**
 * Offers are kept in the order they were made. A buyer holds at most its quota (its
 * oldest leaves for a newer one); over the global bound the expired leave first, then the
 * oldest of the buyer holding the most, so one buyer's flood cannot push out another's.
 */
function rememberOffer(state: DonorMachineState, offer: Offer, now: number): void {
  dropOffer(state, offer.job.jobId, false); // a re-announced job: the newest bid counts
  state.droppedOffers.delete(offer.job.jobId);
  state.offers.set(offer.job.jobId, offer);
  let own = state.offersByBuyer.get(offer.buyer);
  if (!own) state.offersByBuyer.set(offer.buyer, (own = new Set()));
  own.add(offer.job.jobId);
  while (own.size > state.config.outstandingBidsPerBuyer) dropOffer(state, own.values().next().value!, true);
  for (const [jobId, kept] of state.offers) {
    if (kept.bid.expiresAt > BigInt(now)) break;
    dropOffer(state, jobId, true);
  }
  while (state.offers.size > OFFER_LIMIT) {
    const largest = largestHolder(state.offersByBuyer);
    dropOffer(state, largest.values().next().value!, true);
  }
}

function largestHolder(byBuyer: Map<string, Set<Hex>>): Set<Hex> {
  let largest: Set<Hex> | undefined;
  for (const own of byBuyer.values()) if (!largest || own.size > largest.size) largest = own;
  return largest!;
}

function dropOffer(state: DonorMachineState, jobId: Hex, remember: boolean): Offer | undefined {
  const offer = state.offers.get(jobId);
  if (!offer) return undefined;
  state.offers.delete(jobId);
  const own = state.offersByBuyer.get(offer.buyer);
  own?.delete(jobId);
  if (own?.size === 0) state.offersByBuyer.delete(offer.buyer);
  if (remember) {
    state.droppedOffers.add(jobId);
    if (state.droppedOffers.size > DROPPED_OFFER_LIMIT)
      state.droppedOffers.delete(state.droppedOffers.values().next().value!);
  }
  return offer;
}

// ── assignment ───────────────────────────────────────────────────────────────────────

function onAssigned(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "assigned" }>,
  effects: DonorEffect[],
): void {
  for (const { id, request } of event.requests) {
    const response = assign(state, effects, request, event.from, event.now, id);
    if (response) effects.push({ type: "answer_assign", requestId: id, response });
  }
}

/**
 * Decides one assignment; the slot is taken here, synchronously, so a batch of
 * assignments cannot all pass the slot check together. Undefined: the answer waits for
 * the check of the spec's signature.
 */
function assign(
  state: DonorMachineState,
  effects: DonorEffect[],
  request: AssignRequest,
  from: string,
  now: number,
  requestId: number,
): AssignResponse | undefined {
  const { jobId } = request;
  const reject = (reason: ReasonCode, detail: string, misbehaviour?: string): AssignResponse => {
    if (misbehaviour) effects.push({ type: "misbehaved", peerId: from, reason: misbehaviour, detail });
    return { type: "reject", jobId, reason, detail };
  };
  if (state.stopping) return reject("shutting_down", "the node is stopping");
  const known = state.executions.get(jobId) ?? state.outbox.get(jobId);
  if (known) {
    if (known.buyerPeer !== from)
      return reject("bad_spec", "the assignment does not come from the job's buyer", "assign_not_from_buyer");
    if ("phase" in known && known.phase === "verifying") {
      known.waiting.push(requestId);
      return undefined;
    }
    return { type: "accept", jobId };
  }
  const offer = state.offers.get(jobId);
  if (!offer) {
    if (state.droppedOffers.has(jobId)) return reject("bid_rejected_expired", "the bid is no longer held");
    return reject("bid_rejected_signature", "this node made no such bid", "assign_without_bid");
  }
  const bid = bidFromWire(request.bid);
  if (bid.jobId !== jobId || bid.executor.toLowerCase() !== state.config.operator.toLowerCase())
    return reject("bid_rejected_signature", "this node made no such bid", "assign_without_bid");
  if (offer.buyer !== from)
    return reject("bad_spec", "the assignment does not come from the job's buyer", "assign_not_from_buyer");
  if (bid.pricePerMegaFuel !== offer.bid.pricePerMegaFuel)
    return reject("bid_rejected_price", "the price is not the one this node bid", "assign_wrong_price");
  if (offer.bid.expiresAt <= BigInt(now)) return reject("bid_rejected_expired", "the bid has expired");
  if (state.busySlots >= state.config.policy.slots)
    return reject("slots_full", `all ${state.config.policy.slots} slots are busy`);

  dropOffer(state, jobId, false);
  state.busySlots++;
  state.executions.set(jobId, {
    job: offer.job,
    pricePerMegaFuel: offer.bid.pricePerMegaFuel,
    announce: offer.announce,
    buyerPeer: from,
    phase: "verifying",
    holdsSlot: true,
    waiting: [requestId],
    inlineInput: request.inputBase64 === undefined ? undefined : Buffer.from(request.inputBase64, "base64"),
    attempts: 0,
    delivering: false,
  });
  // The job id was checked to be the spec's hash when this node bid.
  effects.push({ type: "check_spec", jobId, job: offer.job });
  return undefined;
}

function onSpecChecked(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "spec_checked" }>,
  effects: DonorEffect[],
): void {
  const execution = state.executions.get(event.jobId);
  if (execution?.phase !== "verifying") return;
  const answer = (response: AssignResponse) => {
    for (const requestId of execution.waiting) effects.push({ type: "answer_assign", requestId, response });
    execution.waiting = [];
  };
  if (!event.valid) {
    releaseSlot(state, execution);
    state.executions.delete(event.jobId);
    answer({
      type: "reject",
      jobId: event.jobId,
      reason: "bad_signature",
      detail: "the spec is not signed by its buyer",
    });
    effects.push({
      type: "misbehaved",
      peerId: execution.buyerPeer,
      reason: "bad_spec_signature",
      detail: `job ${event.jobId}`,
    });
    return;
  }
  answer({ type: "accept", jobId: event.jobId });
  if (state.stopping) return fail(state, effects, event.jobId, "shutting_down", "the node is stopping");
  execution.phase = "fetching";
  effects.push({
    type: "fetch_blocks",
    jobId: event.jobId,
    announce: execution.announce,
    inlineInput: execution.inlineInput,
  });
  execution.inlineInput = undefined;
}

// ── execution ────────────────────────────────────────────────────────────────────────

function onBlocksFetched(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "blocks_fetched" }>,
  effects: DonorEffect[],
): void {
  const execution = state.executions.get(event.jobId);
  if (execution?.phase !== "fetching") return;
  execution.phase = "running";
  execution.startedAt = event.now;
  const { spec } = execution.job;
  effects.push({
    type: "run",
    jobId: event.jobId,
    job: {
      module: event.module,
      input: event.input,
      entry: spec.entry,
      fuelLimit: spec.fuelLimit,
      memoryPages: spec.memoryPages,
      timeoutMs: spec.timeoutMs,
    },
  });
}

function onExecuted(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "executed" }>,
  effects: DonorEffect[],
): void {
  const execution = state.executions.get(event.jobId);
  if (execution?.phase !== "running") return;
  const { result } = event;
  if (result.kind === "no_result")
    return fail(state, effects, event.jobId, "no_result", `${result.reason}: ${result.detail}`);
  let outputDigest: Hex;
  try {
    outputDigest = cidToBytes32(result.outputCid);
  } catch (err) {
    return fail(state, effects, event.jobId, "internal_error", `bad output CID: ${String(err)}`);
  }
  const { job } = execution;
  const receipt: Receipt = {
    jobId: job.jobId,
    executor: state.config.operator,
    moduleCid: job.spec.moduleCid,
    inputCid: job.spec.inputCid,
    outputCid: outputDigest,
    fuelUsed: result.fuelUsed,
    status: ReceiptStatus[result.status],
    startedAt: BigInt(execution.startedAt ?? event.now),
    finishedAt: BigInt(event.now),
  };
  execution.phase = "persisting";
  effects.push({
    type: "persist_receipt",
    jobId: event.jobId,
    buyerPeer: execution.buyerPeer,
    pricePerMegaFuel: execution.pricePerMegaFuel,
    job,
    announce: execution.announce,
    receipt,
    output: result.output,
    outputCid: result.outputCid,
  });
}

/** The receipt is on disk: the slot is free, and the receipt waits in the outbox until acknowledged. */
function onReceiptPersisted(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "receipt_persisted" }>,
  effects: DonorEffect[],
): void {
  const execution = state.executions.get(event.jobId);
  if (execution?.phase !== "persisting") return;
  releaseSlot(state, execution);
  state.executions.delete(event.jobId);
  addToOutbox(state, effects, {
    jobId: event.jobId,
    buyerPeer: execution.buyerPeer,
    rowId: event.rowId,
    delivery: event.delivery,
  });
}

/** Ends a job without a result, whatever phase it was in: the slot is released, the buyer told. */
function fail(
  state: DonorMachineState,
  effects: DonorEffect[],
  jobId: Hex,
  reason: ReasonCode,
  detail: string,
): void {
  const execution = state.executions.get(jobId);
  if (!execution || execution.phase === "failed") return;
  releaseSlot(state, execution);
  for (const requestId of execution.waiting)
    effects.push({
      type: "answer_assign",
      requestId,
      response: { type: "reject", jobId, reason, detail: clip(detail) },
    });
  execution.waiting = [];
  execution.phase = "failed";
  execution.reason = reason;
  execution.detail = clip(detail);
  log(effects, "info", "job ended without a result", { jobId, reason, detail: execution.detail });
  effects.push({ type: "record_failure", jobId, job: execution.job, announce: execution.announce, reason });
  boundFailed(state);
  deliverNoResult(state, effects, jobId, execution);
}

/**
 * Can `from` cancel the job now? Only its buyer, and only before the receipt is being
 * signed: a job that finished keeps its receipt.
 */
export function cancellable(state: DonorMachineState, jobId: Hex, from: string): boolean {
  const execution = state.executions.get(jobId);
  return (
    execution !== undefined &&
    execution.buyerPeer === from &&
    (execution.phase === "verifying" || execution.phase === "fetching" || execution.phase === "running")
  );
}

/**
 * The buyer no longer needs the job: its run stops, its slot frees, and it ends `cancelled`
 * without a receipt (and without a "no result" delivery: the buyer knows).
 */
function onCancelRequested(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "cancel_requested" }>,
  effects: DonorEffect[],
): void {
  const { jobId } = event;
  if (!cancellable(state, jobId, event.from)) return;
  const execution = state.executions.get(jobId)!;
  if (execution.phase === "running") effects.push({ type: "abort_run", jobId });
  releaseSlot(state, execution);
  for (const requestId of execution.waiting)
    effects.push({
      type: "answer_assign",
      requestId,
      response: { type: "reject", jobId, reason: "cancelled", detail: "the buyer cancelled the job" },
    });
  state.executions.delete(jobId);
  log(effects, "info", "job cancelled by its buyer", { jobId });
  effects.push({
    type: "record_failure",
    jobId,
    job: execution.job,
    announce: execution.announce,
    reason: "cancelled",
  });
}

/** Whether the job is in the phase an outcome belongs to; news of another phase is stale. */
function inPhase(state: DonorMachineState, jobId: Hex, phase: Phase): boolean {
  return state.executions.get(jobId)?.phase === phase;
}

function releaseSlot(state: DonorMachineState, execution: Execution): void {
  if (!execution.holdsSlot) return;
  execution.holdsSlot = false;
  state.busySlots--;
}

function boundFailed(state: DonorMachineState): void {
  let failed = 0;
  for (const execution of state.executions.values()) if (execution.phase === "failed") failed++;
  for (const [jobId, execution] of state.executions) {
    if (failed <= FAILED_LIMIT) return;
    if (execution.phase !== "failed") continue;
    state.executions.delete(jobId);
    failed--;
  }
}

// ── delivery ─────────────────────────────────────────────────────────────────────────

function deliverNoResult(
  state: DonorMachineState,
  effects: DonorEffect[],
  jobId: Hex,
  execution: Execution,
): void {
  if (state.stopping) return;
  execution.delivering = true;
  effects.push({
    type: "deliver",
    jobId,
    buyerPeer: execution.buyerPeer,
    delivery: { type: "no_result", jobId, reason: execution.reason!, detail: execution.detail },
  });
}

function addToOutbox(state: DonorMachineState, effects: DonorEffect[], entry: OutboxEntry): void {
  if (state.outbox.has(entry.jobId)) return;
  const pending: Pending = { ...entry, attempts: 0, delivering: false };
  state.outbox.set(entry.jobId, pending);
  while (state.outbox.size > OUTBOX_LIMIT) {
    const oldest = state.outbox.values().next().value!;
    state.outbox.delete(oldest.jobId);
    effects.push({ type: "leave_outbox", jobId: oldest.jobId, rowId: oldest.rowId, why: "crowded_out" });
  }
  deliverReceipt(state, effects, pending);
}

function deliverReceipt(state: DonorMachineState, effects: DonorEffect[], pending: Pending): void {
  if (state.stopping || pending.delivering) return;
  pending.delivering = true;
  effects.push({
    type: "deliver",
    jobId: pending.jobId,
    buyerPeer: pending.buyerPeer,
    delivery: pending.delivery,
  });
}

function onDeliveryAcked(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "delivery_acked" }>,
  effects: DonorEffect[],
): void {
  const { jobId, ack } = event;
  if (!ack.accepted) log(effects, "warn", "buyer refused the delivery", { jobId, reason: ack.reason });
  const pending = state.outbox.get(jobId);
  if (pending) {
    state.outbox.delete(jobId);
    effects.push({ type: "leave_outbox", jobId, rowId: pending.rowId, why: "acknowledged" });
    return;
  }
  if (state.executions.get(jobId)?.phase === "failed") state.executions.delete(jobId);
}

function onDeliveryFailed(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "delivery_failed" }>,
  effects: DonorEffect[],
): void {
  const { jobId, now } = event;
  const target = state.outbox.get(jobId) ?? failedExecution(state, jobId);
  if (!target) return;
  target.delivering = false;
  target.attempts++;
  const isReceipt = "rowId" in target;
  // Inline outputs (up to 256 KB each) held for redelivery are bounded in total: past the
  // budget a waiting receipt goes again without its output, which the buyer fetches by CID.
  if (
    isReceipt &&
    target.delivery.outputBase64 !== undefined &&
    outboxInlineBytes(state) > inlineBudget(state)
  )
    target.delivery = { ...target.delivery, outputBase64: undefined };
  const bound = isReceipt ? REDELIVERY_ATTEMPTS : NO_RESULT_ATTEMPTS;
  log(effects, "debug", "delivery failed", { jobId, attempt: target.attempts, detail: event.detail });
  if (target.attempts < bound) {
    if (!state.stopping)
      effects.push({
        type: "schedule",
        at: now + retryDelay(target.attempts),
        timer: { kind: "redeliver", jobId },
      });
    return;
  }
  log(effects, "warn", "gave up delivering to the buyer", { jobId, attempts: target.attempts });
  if (isReceipt) {
    state.outbox.delete(jobId);
    effects.push({ type: "leave_outbox", jobId, rowId: target.rowId, why: "given_up" });
  } else state.executions.delete(jobId);
}

function outboxInlineBytes(state: DonorMachineState): number {
  let bytes = 0;
  for (const entry of state.outbox.values()) bytes += entry.delivery.outputBase64?.length ?? 0;
  return bytes;
}

function inlineBudget(state: DonorMachineState): number {
  return state.config.outboxInlineBytes ?? OUTBOX_INLINE_BYTES;
}

function failedExecution(state: DonorMachineState, jobId: Hex): Execution | undefined {
  const execution = state.executions.get(jobId);
  return execution?.phase === "failed" ? execution : undefined;
}

/** Exponential backoff after the n-th failed delivery: 0.8 s, 1.6 s, … up to a minute. */
export function retryDelay(failures: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(failures, 20));
}

function onTimerFired(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "timer_fired" }>,
  effects: DonorEffect[],
): void {
  const { jobId } = event.timer;
  const pending = state.outbox.get(jobId);
  if (pending) return deliverReceipt(state, effects, pending);
  const execution = failedExecution(state, jobId);
  if (execution && !execution.delivering) deliverNoResult(state, effects, jobId, execution);
}

/** Receipts stored but not acknowledged before a restart go out again. */
function onRestored(
  state: DonorMachineState,
  event: Extract<DonorEvent, { type: "restored" }>,
  effects: DonorEffect[],
): void {
  for (const entry of event.outbox) addToOutbox(state, effects, entry);
  if (event.outbox.length > 0)
    log(effects, "info", "redelivering stored receipts", { count: event.outbox.length });
}

function log(
  effects: DonorEffect[],
  level: LogLevel,
  message: string,
  fields: Record<string, unknown>,
): void {
  effects.push({ type: "log", level, message, fields });
}

function clip(detail: string): string {
  return detail.slice(0, DETAIL_MAX);
}
