import { backoffDelay, candidateLimit, planRetry, selectExecutors } from "../market/index.ts";
import type { Address } from "viem";
import type { AssignResponse, ReasonCode, StatusResponse } from "../protocol/index.ts";
import { quorumSize, tally, voteKey } from "../quorum/index.ts";
import type { ReplicaReceipt, SilentReplica, TallyEntry, Verdict } from "../quorum/index.ts";
import { receiptRefusal } from "./buyer-receipts.ts";
import type { SignedReceipt } from "./buyer-receipts.ts";
import type {
  Attempt,
  BidCandidate,
  BidRound,
  BuyerEffect,
  BuyerEvent,
  BuyerJobState,
  BuyerSettings,
  KnownDonor,
  Offer,
  PassedOver,
  Refusal,
  ReplicaSlot,
  ReplicaVote,
  RoundTotals,
  Step,
} from "./buyer-state.ts";
import { statusName, verdictView } from "./buyer-view.ts";
import type { JobEvent, JobViewState } from "./types.ts";

import { activeAttempts, isReplicated, openSlots } from "./buyer-state.ts";
export { activeAttempts, isReplicated, newJobState, openSlots } from "./buyer-state.ts";
export type * from "./buyer-state.ts";

/**
 * A job read back after a restart. An unfinished job resumes watching every executor whose
 * assignment is still active (probing it and accepting its receipt), one per replica slot;
 * earlier assignments stay known so their receipts count too. Slots without an active
 * executor are placed again. Votes received before the restart are not restored: their
 * slots run again.
 */
export function restoreJobState(
  job: BuyerJobState,
  assignments: readonly {
    attempt: number;
    peerId: string;
    operator: Address;
    state: string;
    deadline: number;
  }[],
  now: number,
  settings: BuyerSettings,
): Step {
  const effects: BuyerEffect[] = [];
  const next = cloneJob(job);
  const ordered = [...assignments].sort((a, b) => a.attempt - b.attempt);
  next.lastAttempt = Math.max(next.lastAttempt, ...ordered.map((row) => row.attempt), 0);
  next.attempts = ordered.length;
  const attemptOf = (row: (typeof ordered)[number], slot: number): Attempt => ({
    number: row.attempt,
    slot,
    peerId: row.peerId,
    operator: row.operator,
    pricePerMegaFuel: 0n,
    deadline: row.deadline,
    confirmed: row.state === "assigned" || row.state === "running",
    missedProbes: 0,
    probing: false,
    nextProbeAt: now,
  });
  const isActiveRow = (row: (typeof ordered)[number]) => row.state === "assigned" || row.state === "running";
  // With one replica only the latest assignment can be active; with more, the latest active ones.
  const active =
    next.slots.length === 1
      ? ordered.slice(-1).filter(isActiveRow)
      : ordered.filter(isActiveRow).slice(-next.slots.length);
  next.past = ordered
    .filter((row) => !active.includes(row))
    .map((row) => attemptOf(row, 0))
    .slice(-settings.maxPastAttempts);
  next.excluded = [...new Set(next.past.map((attempt) => attempt.peerId))];
  if (isFinal(next)) return { job: next, effects };
  next.slots = next.slots.map((slot) => ({ index: slot.index, attempts: 0 }));
  active.forEach((row, index) => {
    const slot = next.slots[index]!;
    slot.current = attemptOf(row, index);
    slot.attempts = 1;
  });
  if (active.length > 0) {
    next.state =
      active.some((row) => row.state === "running") || job.state === "running" ? "running" : "assigned";
    next.reason = undefined;
  } else next.state = "queued";
  if (active.length < next.slots.length) effects.push({ type: "queue", notBefore: 0, reason: next.reason });
  return { job: next, effects };
}

// ── transitions ─────────────────────────────────────────────────────────────────────

/** The buyer's job state machine: no I/O, no timers; time comes in with the events. */
/** Answers read per bid round (candidates asked plus strangers in a discovery round); later ones are ignored. */
export const MAX_ROUND_ANSWERS = 128;

export function step(job: BuyerJobState, event: BuyerEvent, settings: BuyerSettings): Step {
  const machine = new Transition(cloneJob(job), settings, event.now);
  machine.apply(event);
  return { job: machine.job, effects: machine.effects };
}

/**
 * The bid window ends a round early only once its usable bids could fill every open slot:
 * with fewer, the round waits for the donors it asked (up to its timeout), so a replicated
 * job is not placed part now and part a round later, when its first replicas may already
 * have decided without the rest.
 */
function windowCounts(job: BuyerJobState): boolean {
  return (job.round?.candidates.length ?? 0) >= openSlots(job).length;
}

/** When the job next needs a `tick`, if it waits on time at all. */
export function nextWakeAt(job: BuyerJobState): number | undefined {
  if (isFinal(job)) return undefined;
  const times: number[] = [];
  const round = job.round;
  // While a bid's stake check is out, its answer (not the clock) moves selection on.
  if (round && !round.closed)
    times.push(
      round.checking.length === 0 && windowCounts(job)
        ? (round.windowEndsAt ?? round.closesAt)
        : round.closesAt,
      round.closesAt,
    );
  for (const attempt of activeAttempts(job)) {
    if (!attempt.confirmed) continue;
    times.push(attempt.deadline + 1);
    if (!attempt.probing) times.push(attempt.nextProbeAt);
  }
  return times.length === 0 ? undefined : Math.min(...times);
}

export function isFinal(job: Pick<BuyerJobState, "state">): boolean {
  return job.state === "completed" || job.state === "failed";
}

/** Is a placement (bid round or selection) of the job under way? */
export function isPlacing(job: BuyerJobState): boolean {
  return (
    job.round !== undefined &&
    (!job.round.closed || job.round.verifying.length > 0 || job.round.assigning.length > 0)
  );
}

class Transition {
  readonly effects: BuyerEffect[] = [];

  readonly job: BuyerJobState;
  readonly settings: BuyerSettings;
  readonly now: number;

  constructor(job: BuyerJobState, settings: BuyerSettings, now: number) {
    this.job = job;
    this.settings = settings;
    this.now = now;
  }

  apply(event: BuyerEvent): void {
    switch (event.type) {
      case "submitted":
        return this.submitted();
      case "place":
        return this.place(event.expected, event.passedOver);
      case "tick":
        return this.tick();
      case "offer_received":
        return this.offerReceived(event.from, event.offer, event.donor);
      case "bid_request_failed":
        return this.bidRequestFailed(event.round, event.from, event.detail);
      case "bid_checked":
        return this.bidChecked(event.from, event.round, event.candidate, event.refusal);
      case "bid_signature_checked":
        return this.bidSignatureChecked(event.round, event.peerId, event.valid);
      case "assign_answered":
        return this.assignAnswered(event.attempt, event.response);
      case "assign_failed":
        return this.assignFailed(event.attempt, event.reason, event.detail);
      case "probe_answered":
        return this.probeAnswered(event.attempt, event.status);
      case "probe_failed":
        return this.probeFailed(event.attempt);
      case "receipt_delivered":
        return this.receiptDelivered(event.from, event.receipt, event.ack);
      case "no_result_delivered":
        return this.noResultDelivered(event.from, event.reason, event.detail, event.ack);
      case "receipt_verified":
        return this.receiptVerified(event.attempt, event.receipt, event.output, event.ack);
      case "receipt_refused":
        return this.receiptRefused(event.attempt, event.detail, event.ack);
      case "output_fetched":
        return this.outputFetched(event.attempt, event.receipt, event.output, event.ack);
      case "output_failed":
        return this.outputFailed(event.attempt, event.detail, event.ack);
      case "held":
        return this.held(event.reason, event.detail);
      case "expired":
        return this.fail("deadline_missed", event.detail);
      case "store_failed":
        return this.fail("internal_error", `the job could not be stored: ${event.detail}`);
    }
  }

  // ── placement ──

  submitted(): void {
    this.setState("announced");
    this.emit({ type: "announced" });
    this.effects.push({ type: "queue", notBefore: 0 });
  }

  held(reason: ReasonCode, detail: string): void {
    if (this.job.state !== "announced") return;
    this.setState("queued", reason);
    this.emit({ type: "queued", reason, detail });
  }

  place(expected: string[], passedOver: PassedOver = {}): void {
    const job = this.job;
    if (isFinal(job) || openSlots(job).length === 0 || isPlacing(job)) {
      this.effects.push({ type: "placement_ended" });
      return;
    }
    const limit = candidateLimit(openSlots(job).length, this.settings);
    const taken = this.takenPeers();
    const usable = expected.filter((peerId) => !taken.has(peerId)).slice(0, limit);
    // donors passed over because this buyer's jobs fill them are known: no need to look for more
    const known = usable.length + (passedOver.slots_full ?? 0);
    this.openRound(usable, known < limit);
    if (usable.length === 0) this.job.round!.refusals.push(...unknownDonorRefusals(passedOver));
  }

  /**
   * Asks the chosen donors to bid; when fewer than the candidate limit are known, the job is
   * also announced to all so that donors this node does not know yet can bid.
   */
  openRound(expected: string[], discovery: boolean): void {
    const job = this.job;
    const previous = job.round;
    if (previous) this.addToTotals(previous);
    job.round = {
      number: (previous?.number ?? 0) + 1,
      expected,
      discovery,
      answered: [],
      awaiting: expected.length,
      candidates: [],
      refusals: [],
      closesAt: this.now + this.settings.bidTimeoutMs,
      checking: [],
      closed: false,
      refusedOperators: [],
      verifying: [],
      assigning: [],
      events: [],
    };
    const round = job.round;
    if (expected.length > 0)
      this.effects.push({ type: "request_bids", round: round.number, peers: expected });
    if (discovery) this.effects.push({ type: "announce" });
  }

  /** A donor that could not be asked counts as answered, with its reason. */
  bidRequestFailed(roundNumber: number, from: string, detail: string): void {
    const round = this.job.round;
    if (!round || round.number !== roundNumber || round.closed || round.answered.includes(from)) return;
    if (!round.expected.includes(from)) return;
    round.answered.push(from);
    round.refusals.push({
      reason: "unreachable",
      detail: `the bid request did not reach ${from}: ${detail}`,
    });
    this.answered(from);
  }

  addToTotals(round: BidRound): void {
    const totals = this.job.totals;
    totals.rounds++;
    totals.bids += round.events.filter((event) => event.type === "bid_received").length;
    totals.declines += round.refusals.filter((refusal) => refusal.decline).length;
  }

  offerReceived(from: string, offer: Offer, donor: KnownDonor): void {
    const job = this.job;
    const round = job.round;
    if (this.takenPeers().has(from) || isFinal(job)) return;
    if (!round || round.closed) {
      if (offer.type === "bid") this.lateBid(from, donor);
      return;
    }
    // Bounded: strangers may answer a discovery round, but only so many are read.
    if (round.answered.length >= MAX_ROUND_ANSWERS || round.answered.includes(from)) return;
    if (offer.type === "decline") {
      // Only a staked donor's decline counts; it becomes an event only if no one takes the job.
      if (!donor?.staked) return;
      round.answered.push(from);
      const detail = `declined by the donor: ${offer.detail ?? offer.reason}`;
      round.refusals.push({
        reason: offer.reason,
        detail,
        decline: { peerId: from, operator: donor.operator },
      });
      return this.answered(from);
    }
    round.answered.push(from);
    round.checking.push(from);
    this.effects.push({ type: "check_bid", round: round.number, from, offer });
  }

  /** A bid after selection: counted, and an event when it comes from a known staked donor. */
  lateBid(from: string, donor: KnownDonor): void {
    const job = this.job;
    job.totals.late++;
    if (!donor?.staked || !job.round) return;
    this.roundEvent({
      type: "bid_rejected",
      reason: "bid_late",
      detail: "the bid came after the selection",
      peerId: from,
      operator: donor.operator,
    });
  }

  bidChecked(
    from: string,
    roundNumber: number,
    candidate?: BidCandidate,
    refusal?: { reason: ReasonCode; detail: string },
  ): void {
    const job = this.job;
    const round = job.round;
    if (!round || round.number !== roundNumber) return;
    round.checking = round.checking.filter((peerId) => peerId !== from);
    if (!candidate) {
      const { reason, detail } = refusal ?? { reason: "bid_unstaked", detail: "the bid was not usable" };
      if (reason === "bid_unstaked") job.totals.unstaked++;
      // A stake that cannot be read says nothing against the bidder.
      if (reason !== "stake_unknown") this.effects.push({ type: "misbehaved", peerId: from, reason, detail });
      return round.closed ? undefined : this.answered(from);
    }
    if (round.closed || isFinal(job))
      return this.lateBid(from, { operator: candidate.operator, staked: true });
    this.roundEvent({
      type: "bid_received",
      peerId: from,
      operator: candidate.operator,
      pricePerMegaFuel: candidate.pricePerMegaFuel.toString(),
    });
    round.candidates.push(candidate);
    round.windowEndsAt ??= this.now + this.settings.bidWindowMs;
    this.answered(from);
  }

  answered(from: string): void {
    const round = this.job.round!;
    if (round.expected.includes(from)) round.awaiting--;
    this.maybeSelect();
  }

  tick(): void {
    const job = this.job;
    if (isFinal(job)) return;
    this.maybeSelect();
    this.watch();
  }

  /** Selection starts once every expected donor answered, the bid window passed, or the round timed out. */
  maybeSelect(): void {
    const round = this.job.round;
    if (!round || round.closed) return;
    // A discovery round whose asked donors all answered without a usable bid may still hear
    // from donors it did not ask: it waits for the bid window or the round's end.
    const allAnswered = round.awaiting <= 0 && (!round.discovery || round.candidates.length > 0);
    const windowPassed =
      round.windowEndsAt !== undefined && this.now >= round.windowEndsAt && windowCounts(this.job);
    const due = this.now >= round.closesAt || (round.checking.length === 0 && (allAnswered || windowPassed));
    if (!due) return;
    round.closed = true;
    if (round.candidates.length === 0 && round.awaiting > 0)
      round.refusals.push({ reason: "timeout", detail: "no bid came in time" });
    if (round.candidates.length === 0 && round.refusals.length === 0)
      round.refusals.push({ reason: "no_bid", detail: "no staked donor able to run the job is known" });
    this.selectNext();
  }

  /** Chooses executors for the open slots not yet being filled, all at once. */
  selectNext(): void {
    const job = this.job;
    const round = job.round!;
    if (isFinal(job)) return;
    const wanted = openSlots(job).length - round.verifying.length;
    if (wanted <= 0) return this.settlePlacement();
    const selection = selectExecutors(round.candidates, {
      replicas: wanted,
      maxPricePerMegaFuel: job.spec.maxPricePerMegaFuel,
      minReputation: job.spec.minReputation,
      now: this.now,
      livenessMs: this.settings.livenessMs,
      excludePeers: this.takenPeers(),
      excludeOperators: new Set([...round.refusedOperators, ...this.usedOperators()]),
      random: this.settings.random,
      reputation: this.reputation(),
    });
    for (const rejected of selection.rejected) {
      round.candidates = round.candidates.filter((candidate) => candidate !== rejected.candidate);
      if (round.refusedOperators.includes(rejected.candidate.operator.toLowerCase())) continue;
      this.roundEvent({
        type: "bid_rejected",
        reason: rejected.reason,
        detail: rejected.detail,
        peerId: rejected.candidate.peerId,
        operator: rejected.candidate.operator,
      });
      round.refusals.push({ reason: rejected.reason, detail: rejected.detail });
    }
    const chosen = selection.chosen as BidCandidate[];
    if (chosen.length === 0) return this.settlePlacement();
    for (const candidate of chosen) {
      round.candidates = round.candidates.filter((other) => other !== candidate);
      // Only the chosen bids' signatures are checked: they are the ones that bind executors.
      round.verifying.push(candidate);
      this.effects.push({ type: "check_bid_signature", round: round.number, candidate });
    }
  }

  /**
   * Once no chosen bid is being checked or assigned, the placement ends: done when every
   * open slot got an executor, else the job waits for another round with the best reason.
   */
  settlePlacement(): void {
    const round = this.job.round!;
    if (round.verifying.length > 0 || round.assigning.length > 0) return;
    if (openSlots(this.job).length === 0) return void this.effects.push({ type: "placement_ended" });
    this.noneTook();
  }

  /** Donors' reputation for this job's module, when the node has a trust layer. */
  reputation(): ((operator: Address) => number) | undefined {
    const { reputation } = this.settings;
    const moduleCid = this.job.announce.moduleCid;
    return reputation && ((operator) => reputation(operator, moduleCid));
  }

  /** Peers that have or had the job: not asked to bid or chosen again. */
  takenPeers(): Set<string> {
    const job = this.job;
    const peers = new Set(job.excluded);
    for (const attempt of activeAttempts(job)) peers.add(attempt.peerId);
    for (const vote of job.votes) peers.add(vote.peerId);
    for (const candidate of job.round?.verifying ?? []) peers.add(candidate.peerId);
    return peers;
  }

  /** Operators already executing or chosen for a replicated job (never two replicas on one operator). */
  usedOperators(): string[] {
    const job = this.job;
    if (!isReplicated(job)) return [];
    return [...activeAttempts(job), ...job.past, ...job.votes, ...(job.round?.verifying ?? [])].map((entry) =>
      entry.operator.toLowerCase(),
    );
  }

  bidSignatureChecked(roundNumber: number, peerId: string, valid: boolean): void {
    const job = this.job;
    const round = job.round;
    const chosen = round?.verifying.find((candidate) => candidate.peerId === peerId);
    if (!round || round.number !== roundNumber || !chosen) return;
    round.verifying = round.verifying.filter((candidate) => candidate !== chosen);
    if (!valid) {
      const detail = "the bid is not signed by its executor";
      this.roundEvent({
        type: "bid_rejected",
        reason: "bid_rejected_signature",
        detail,
        peerId,
        operator: chosen.operator,
      });
      round.refusals.push({ reason: "bid_rejected_signature", detail });
      this.effects.push({ type: "misbehaved", peerId, reason: "bid_rejected_signature", detail });
      return this.selectNext();
    }
    this.assign(chosen);
  }

  assign(chosen: BidCandidate): void {
    const job = this.job;
    const slot = openSlots(job)[0];
    if (!slot) return this.settlePlacement();
    const attempt: Attempt = {
      number: job.lastAttempt + 1,
      slot: slot.index,
      peerId: chosen.peerId,
      operator: chosen.operator,
      pricePerMegaFuel: chosen.pricePerMegaFuel,
      deadline: Math.min(job.deadline, this.now + job.spec.timeoutMs + this.settings.deliveryGraceMs),
      confirmed: false,
      missedProbes: 0,
      probing: false,
      nextProbeAt: this.now + this.settings.heartbeatMs,
    };
    job.lastAttempt = attempt.number;
    slot.current = attempt;
    job.round!.assigning.push(attempt.number);
    // Only the bids that bind an executor are written; the others live on as round events.
    if (job.storedBids < this.settings.maxStoredBids) {
      job.storedBids++;
      this.effects.push({ type: "store_bid", candidate: chosen });
    }
    this.effects.push({ type: "assign", attempt: attempt.number, candidate: chosen });
  }

  assignAnswered(number: number, response: AssignResponse): void {
    const job = this.job;
    const attempt = this.attempt(number);
    if (!attempt) return;
    const assigning = this.stopAssigning(number);
    if (response.jobId !== job.jobId)
      return this.assignRefused(attempt, "bad_spec", "the executor answered for another job", assigning);
    if (response.type === "reject")
      return this.assignRefused(
        attempt,
        response.reason,
        `the executor refused the assignment: ${response.detail ?? response.reason}`,
        assigning,
      );
    if (assigning) this.settlePlacement();
    this.confirm(attempt);
  }

  /** Is attempt `number`'s assignment request one of the round's in flight? It no longer is. */
  stopAssigning(number: number): boolean {
    const round = this.job.round;
    if (!round?.assigning.includes(number)) return false;
    round.assigning = round.assigning.filter((other) => other !== number);
    return true;
  }

  assignRefused(attempt: Attempt, reason: ReasonCode, detail: string, assigning: boolean): void {
    const job = this.job;
    if (attempt.confirmed || !assigning) return;
    const slot = this.slotOf(attempt);
    if (slot?.current === attempt) slot.current = undefined;
    const round = job.round!;
    this.roundEvent({
      type: "bid_rejected",
      reason,
      detail,
      peerId: attempt.peerId,
      operator: attempt.operator,
    });
    round.refusals.push({ reason, detail });
    round.refusedOperators.push(attempt.operator.toLowerCase());
    if (isFinal(job)) return this.settlePlacement();
    this.selectNext();
  }

  /**
   * The assignment request got no answer: the executor may have accepted, so the attempt
   * is recorded and kept (its receipt still completes the job) while the next bid is tried.
   */
  assignFailed(number: number, reason: ReasonCode, detail: string): void {
    const job = this.job;
    const attempt = this.attempt(number);
    if (!attempt) return;
    const assigning = this.stopAssigning(number);
    if (attempt.confirmed) return;
    attempt.unanswered = true;
    this.retireAttempt(attempt);
    this.effects.push({ type: "store_assignment", attempt, state: "timed_out", reason, insert: true });
    if (!assigning) return;
    if (isFinal(job)) return this.settlePlacement();
    const round = job.round!;
    const full = `assignment failed: ${detail}`;
    this.roundEvent({
      type: "bid_rejected",
      reason,
      detail: full,
      peerId: attempt.peerId,
      operator: attempt.operator,
    });
    round.refusals.push({ reason, detail: full });
    round.refusedOperators.push(attempt.operator.toLowerCase());
    this.selectNext();
  }

  /** No bid of the round led to an assignment: the job waits with the most telling reason. */
  noneTook(): void {
    const round = this.job.round!;
    for (const { reason, detail, decline } of round.refusals)
      if (decline) this.roundEvent({ type: "bid_rejected", reason, detail, ...decline });
    this.park(parkReason(round.refusals), `no donor took the job (${summarize(round.refusals)})`);
  }

  /** The job could not be placed now: it waits with its reason, backing off, until its deadline. */
  park(reason: ReasonCode, detail: string): void {
    const job = this.job;
    this.effects.push({ type: "placement_ended" });
    if (isFinal(job)) return;
    job.placementTries++;
    const at =
      this.now + backoffDelay(job.placementTries, this.settings.placementBackoff, this.settings.random);
    if (job.votes.length > 0 && (at >= job.deadline || job.placementTries >= this.settings.maxAttempts)) {
      // Replicas that cannot be placed give no vote, and no fresh operator is around to add
      // more: the votes in hand decide, or there is no quorum.
      for (const slot of openSlots(job)) slot.gaveUp = reason;
      job.addedReplicas = Math.max(job.addedReplicas, this.maxExtraReplicas());
      return this.decide();
    }
    if (at >= job.deadline)
      return this.fail("deadline_missed", `could not be placed before its deadline: ${detail}`);
    // While other replicas work, the job stays assigned or running: only the missing slots wait.
    if (activeAttempts(job).length === 0 && job.votes.length === 0) {
      if (job.state !== "queued" || job.reason !== reason) this.emit({ type: "queued", reason, detail });
      this.setState("queued", reason);
    }
    this.effects.push({ type: "queue", notBefore: at, reason, detail });
  }

  // ── the executor at work ──

  confirm(attempt: Attempt): void {
    if (attempt.confirmed) return;
    const job = this.job;
    // An assignment that went unanswered is in the store already (as timed out).
    const stored = attempt.unanswered === true;
    attempt.confirmed = true;
    attempt.unanswered = false;
    attempt.acceptedAt = this.now;
    attempt.nextProbeAt = this.now + this.settings.heartbeatMs;
    job.attempts++;
    const slot = this.slotOf(attempt);
    if (slot) slot.attempts++;
    // A replicated job counts the rounds that placed no one since its last executor was found.
    if (isReplicated(job)) job.placementTries = 0;
    const isCurrent = slot?.current === attempt;
    this.effects.push({
      type: "store_assignment",
      attempt: { ...attempt },
      state: "assigned",
      insert: !stored,
    });
    if (!isCurrent || isFinal(job)) return;
    if (job.state !== "running") this.setState("assigned");
    this.emit({
      type: "assigned",
      peerId: attempt.peerId,
      operator: attempt.operator,
      pricePerMegaFuel: attempt.pricePerMegaFuel.toString(),
      attempt: attempt.number,
    });
  }

  /** Deadline and liveness of every executor at work. */
  watch(): void {
    for (const attempt of activeAttempts(this.job)) {
      if (isFinal(this.job)) return;
      if (!attempt.confirmed) continue;
      if (this.now > attempt.deadline) {
        this.executorFailed(attempt, "deadline_missed", "the executor did not deliver before its deadline");
        continue;
      }
      if (attempt.probing || this.now < attempt.nextProbeAt) continue;
      attempt.probing = true;
      attempt.nextProbeAt = this.now + this.settings.heartbeatMs;
      this.effects.push({ type: "probe", attempt: attempt.number, peerId: attempt.peerId });
    }
  }

  probeAnswered(number: number, status: StatusResponse): void {
    const job = this.job;
    const attempt = this.attempt(number);
    if (!attempt) return;
    attempt.probing = false;
    if (status.jobId !== job.jobId || isFinal(job)) return;
    if (status.state === "done" && status.receipt) {
      const { receipt, signature, outputCid } = status.receipt;
      return this.checkReceipt(attempt, { receipt, signature, outputCid }, undefined);
    }
    if (!this.isActive(attempt)) return;
    attempt.missedProbes = 0;
    if (status.state === "running" && !attempt.running && (job.state === "assigned" || isReplicated(job))) {
      attempt.running = true;
      this.setState("running");
      this.effects.push({
        type: "store_assignment",
        attempt: { ...attempt },
        state: "running",
        insert: false,
      });
      this.emit({ type: "running", peerId: attempt.peerId });
    } else if (status.state === "unknown") {
      this.executorFailed(attempt, "executor_silent", "the executor no longer knows the job");
    } else if (status.state === "failed") {
      this.executorFailed(
        attempt,
        status.reason ?? "no_result",
        status.detail ?? "the executor reports the job failed",
      );
    }
  }

  probeFailed(number: number): void {
    const attempt = this.attempt(number);
    if (!attempt) return;
    attempt.probing = false;
    if (!this.isActive(attempt)) return;
    attempt.missedProbes++;
    if (attempt.missedProbes >= this.settings.missedProbesSilent)
      this.executorFailed(
        attempt,
        "executor_silent",
        `${attempt.missedProbes} status probes went unanswered`,
      );
  }

  /**
   * An executor at work failed: its slot is tried again on another donor (with its own
   * attempts and backoff); once the slot's attempts run out, a single-replica job fails and
   * a replicated one counts the slot as no vote.
   */
  executorFailed(attempt: Attempt, reason: ReasonCode, detail: string): void {
    const job = this.job;
    const slot = this.slotOf(attempt);
    if (!slot || slot.current !== attempt) return;
    this.confirm(attempt);
    this.retireAttempt(attempt);
    this.effects.push({
      type: "store_assignment",
      attempt,
      state: reason === "deadline_missed" ? "timed_out" : "failed",
      reason,
      insert: false,
    });
    // An executor given up on may still be running: its late receipt still counts, and it
    // is told to stop only once the job settles.
    if (reason === "deadline_missed" || reason === "executor_silent") attempt.mayRun = true;
    this.noVote(attempt, reason);
    const plan = planRetry(
      slot.attempts,
      reason,
      { now: this.now, deadline: job.deadline },
      { maxAttempts: this.settings.maxAttempts, backoff: this.settings.backoff },
      this.settings.random,
    );
    if (plan.type === "give_up") {
      if (!isReplicated(job)) return this.fail(plan.reason, `${plan.detail}; last: ${detail}`);
      slot.gaveUp = plan.reason;
      return this.decide();
    }
    this.emit({ type: "reassigned", reason, detail, peerId: attempt.peerId, attempt: attempt.number });
    if (activeAttempts(job).length === 0 && job.votes.length === 0) this.setState("queued", reason);
    this.effects.push({ type: "queue", notBefore: plan.at, reason, detail });
  }

  /** A replicated job remembers (bounded) which replica gave no vote, and why. */
  noVote(attempt: Attempt, reason: ReasonCode | "cancelled"): void {
    const job = this.job;
    if (!isReplicated(job)) return;
    const why: SilentReplica["why"] =
      reason === "cancelled"
        ? "cancelled"
        : reason === "deadline_missed" || reason === "executor_silent" || reason === "timeout"
          ? "timeout"
          : reason === "unreachable"
            ? "unreachable"
            : "no_result";
    job.silent.push({ peerId: attempt.peerId, operator: attempt.operator, why });
    if (job.silent.length > this.settings.maxPastAttempts) job.silent.shift();
  }

  /** The attempt is given up on: remembered (bounded) so its late receipt still counts. */
  retireAttempt(attempt: Attempt): void {
    const job = this.job;
    const slot = this.slotOf(attempt);
    if (slot?.current === attempt) slot.current = undefined;
    if (!job.past.includes(attempt)) job.past.push(attempt);
    if (job.past.length > this.settings.maxPastAttempts) job.past.shift();
    if (!job.excluded.includes(attempt.peerId)) job.excluded.push(attempt.peerId);
  }

  // ── receipts ──

  receiptDelivered(from: string, receipt: SignedReceipt, ack: number): void {
    const job = this.job;
    if (job.state === "completed") return this.ack(ack, true);
    if (job.state === "failed") return this.ack(ack, true);
    const attempt = this.attemptOf(from);
    if (!attempt) return this.ack(ack, false, "unknown_job");
    this.checkReceipt(attempt, receipt, ack);
  }

  checkReceipt(attempt: Attempt, receipt: SignedReceipt, ack: number | undefined): void {
    const job = this.job;
    const refusal = receiptRefusal(job, attempt.operator, receipt);
    if (refusal) return this.receiptRefused(attempt.number, refusal, ack);
    this.effects.push({
      type: "verify_receipt",
      attempt: attempt.number,
      peerId: attempt.peerId,
      receipt,
      ack,
    });
  }

  noResultDelivered(from: string, reason: ReasonCode, detail: string | undefined, ack: number): void {
    const job = this.job;
    if (isFinal(job)) return this.ack(ack, true);
    const attempt = this.attemptOf(from);
    if (!attempt) return this.ack(ack, false, "unknown_job");
    this.ack(ack, true);
    if (this.isActive(attempt))
      this.executorFailed(attempt, reason, detail ?? "the executor produced no result");
  }

  receiptRefused(number: number, detail: string, ack: number | undefined): void {
    const job = this.job;
    const attempt = this.attempt(number);
    if (ack !== undefined) this.ack(ack, false, "receipt_invalid");
    if (!attempt) return;
    this.effects.push({ type: "misbehaved", peerId: attempt.peerId, reason: "receipt_invalid", detail });
    if (this.isActive(attempt) && !isFinal(job)) this.executorFailed(attempt, "receipt_invalid", detail);
  }

  receiptVerified(
    number: number,
    receipt: SignedReceipt,
    output: Uint8Array | undefined,
    ack: number | undefined,
  ): void {
    const job = this.job;
    const attempt = this.attempt(number);
    if (!attempt || isFinal(job)) {
      if (ack !== undefined) this.ack(ack, true);
      return;
    }
    if (output === undefined) {
      this.effects.push({ type: "fetch_output", attempt: number, peerId: attempt.peerId, receipt, ack });
      return;
    }
    this.outputFetched(number, receipt, output, ack);
  }

  outputFetched(number: number, receipt: SignedReceipt, output: Uint8Array, ack: number | undefined): void {
    const job = this.job;
    const attempt = this.attempt(number);
    if (ack !== undefined) this.ack(ack, true);
    if (!attempt || isFinal(job)) return;
    if (!isReplicated(job)) return this.complete(attempt, receipt, output);
    this.vote(attempt, receipt, output);
  }

  outputFailed(number: number, detail: string, ack: number | undefined): void {
    const job = this.job;
    const attempt = this.attempt(number);
    const full = `could not fetch the output: ${detail}`;
    if (ack !== undefined) this.ack(ack, false, "receipt_invalid");
    if (attempt && this.isActive(attempt) && !isFinal(job))
      this.executorFailed(attempt, "receipt_invalid", full);
  }

  /** A single-replica job takes its first verified receipt. */
  complete(attempt: Attempt, receipt: SignedReceipt, output: Uint8Array): void {
    const job = this.job;
    for (const running of activeAttempts(job)) {
      if (running === attempt) continue;
      // A late receipt of an earlier attempt settled the job: the newer attempt is cancelled.
      this.effects.push({
        type: "store_assignment",
        attempt: running,
        state: "cancelled",
        reason: "receipt_from_earlier_executor",
        insert: false,
      });
      this.effects.push({ type: "cancel", attempt: running.number, peerId: running.peerId });
    }
    if (!attempt.confirmed) this.confirm(attempt);
    for (const slot of job.slots) slot.current = undefined;
    this.settle(attempt, receipt, output);
  }

  /** The job's result is decided: written, shown and the job completed (a vote was recorded already). */
  settle(attempt: Attempt, receipt: SignedReceipt, output: Uint8Array, voted = false): void {
    const job = this.job;
    this.endPlacement();
    this.effects.push({ type: "unqueue" });
    this.cancelGivenUp(attempt);
    job.receipt = { message: receipt.receipt, signature: receipt.signature };
    job.result = {
      status: statusName(receipt.receipt.status),
      fuelUsed: receipt.receipt.fuelUsed,
      outputCid: receipt.outputCid,
      outputBase64: Buffer.from(output).toString("base64"),
    };
    this.effects.push({ type: "store_result", receipt, output, result: job.result });
    if (!voted) {
      this.effects.push({ type: "store_assignment", attempt, state: "completed", insert: false });
      this.emit({ type: "receipt", peerId: attempt.peerId, operator: attempt.operator });
    }
    this.finish("completed");
    this.emit({ type: "completed" });
  }

  // ── replicas and the verdict ──

  /**
   * A replica's verified receipt is its vote: kept and stored, and the verdict is decided
   * again. A second, different receipt of one operator is an equivocation: reported, and
   * neither of its receipts counts.
   */
  vote(attempt: Attempt, receipt: SignedReceipt, output: Uint8Array): void {
    const job = this.job;
    const key = voteKey(receipt.receipt);
    const operator = attempt.operator.toLowerCase();
    const earlier = job.votes.filter((vote) => vote.operator.toLowerCase() === operator);
    if (earlier.some((vote) => voteKey(vote.receipt) === key) || earlier.length >= 2) return;
    if (!attempt.confirmed) this.confirm(attempt);
    const vote: ReplicaVote = {
      peerId: attempt.peerId,
      operator: attempt.operator,
      attempt: attempt.number,
      slot: attempt.slot,
      receipt: receipt.receipt,
      signature: receipt.signature,
      outputCid: receipt.outputCid,
      output,
      latencyMs: attempt.acceptedAt === undefined ? 0 : Math.max(0, this.now - attempt.acceptedAt),
      pricePerMegaFuel: attempt.pricePerMegaFuel,
    };
    job.votes.push(vote);
    this.effects.push({ type: "store_receipt", vote });
    const first = earlier[0];
    if (first)
      this.effects.push({
        type: "equivocation",
        sighting: {
          jobId: job.jobId,
          operator: attempt.operator,
          peerId: attempt.peerId,
          a: { receipt: first.receipt, signature: first.signature },
          b: { receipt: receipt.receipt, signature: receipt.signature },
          seenAt: this.now,
        },
      });
    this.emit({
      type: "receipt",
      peerId: attempt.peerId,
      operator: attempt.operator,
      attempt: attempt.number,
    });
    this.effects.push({ type: "store_assignment", attempt, state: "completed", insert: false });
    const slot = this.slotOf(attempt);
    if (slot && slot.votedBy === undefined) {
      // A late receipt of the slot's earlier executor fills it: the newer executor stops.
      const superseded = slot.current !== attempt ? slot.current : undefined;
      slot.votedBy = attempt.number;
      if (superseded) this.cancelAttempt(superseded, "receipt_from_earlier_executor");
    }
    // Kept with the attempts given up on, so a second receipt of the executor is still read.
    this.retireAttempt(attempt);
    this.decide();
  }

  /** Counts the votes: accept, fail without a quorum, add replicas, or wait for more. */
  decide(): void {
    const job = this.job;
    if (isFinal(job)) return;
    const spot = job.verification.mode === "spot" ? job.verification : undefined;
    if (spot && spot.phase !== "escalated") return this.decideSpot(spot);
    const n = this.quorumReplicas();
    const verdict = tally(job.votes, { n, stillRunning: this.stillRunning() });
    if (verdict.kind === "accepted") return this.accept(verdict, quorumSize(n));
    if (verdict.kind === "pending") return;
    const leading = verdict.tally[0]?.votes ?? 0;
    const missing = quorumSize(n) - leading - this.stillRunning();
    const room = this.maxExtraReplicas() - job.addedReplicas;
    if (missing > room) return this.noQuorum(verdict);
    this.addReplicas(
      missing,
      `the replicas still running cannot reach a quorum (${tallyText(verdict.tally)})`,
    );
  }

  /**
   * Spot mode: one replica runs; once its receipt is verified, a second donor re-executes
   * with probability `rate` (drawn only now, so the first cannot know). Agreement decides;
   * disagreement (or a check that gives no vote) escalates to a full quorum.
   */
  decideSpot(spot: Extract<BuyerJobState["verification"], { mode: "spot" }>): void {
    const job = this.job;
    if (spot.phase === "first") {
      const gaveUp = job.slots[0]?.gaveUp;
      if (gaveUp !== undefined) return this.fail(gaveUp, "the replica's attempts ran out");
      const first = tally(job.votes, { n: 1, stillRunning: 0 });
      if (first.kind !== "accepted") return;
      const only = first.agreeing[0]!;
      if (this.settings.random() >= spot.rate)
        return this.settle(this.attemptFor(only), ...voteResult(only), true);
      spot.phase = "check";
      return this.addReplicas(1, "spot check: a second donor re-executes the job");
    }
    const checked = tally(job.votes, { n: 2, stillRunning: this.stillRunning() });
    if (checked.kind === "accepted") return this.accept(checked, 2);
    if (checked.kind === "pending") return;
    spot.phase = "escalated";
    this.addReplicas(
      this.quorumReplicas() - job.slots.length,
      "the spot check disagreed: a full quorum decides",
    );
    this.decide();
  }

  /** Replicas still able to vote: at work, or waiting to be placed. */
  stillRunning(): number {
    return this.job.slots.filter((slot) => slot.votedBy === undefined && slot.gaveUp === undefined).length;
  }

  /** The n of q(n): the spec's replicas; a spot job that escalates is decided by at least 4 (the smallest that can outvote on-chain). */
  quorumReplicas(): number {
    const job = this.job;
    return job.verification.mode === "spot" ? Math.max(4, job.spec.replicas) : job.spec.replicas;
  }

  maxExtraReplicas(): number {
    return this.settings.maxExtraReplicas ?? this.quorumReplicas();
  }

  addReplicas(count: number, detail: string): void {
    const job = this.job;
    if (count <= 0) return;
    for (let i = 0; i < count; i++) job.slots.push({ index: job.slots.length, attempts: 0 });
    job.addedReplicas += count;
    this.emit({ type: "replicas_added", detail: `${count} added: ${detail}` });
    if (!isPlacing(job)) this.effects.push({ type: "queue", notBefore: this.now });
  }

  accept(verdict: Extract<Verdict<ReplicaVote>, { kind: "accepted" }>, quorum: number): void {
    const job = this.job;
    const winner = verdict.agreeing[0]!;
    this.cancelRemaining();
    this.report("accepted", quorum, verdict, tallyOf(job.votes, verdict));
    this.settle(this.attemptFor(winner), ...voteResult(winner), true);
  }

  noQuorum(verdict: Extract<Verdict<ReplicaVote>, { kind: "impossible" }>): void {
    const job = this.job;
    const quorum = quorumSize(job.spec.replicas);
    this.cancelRemaining();
    const counted = job.votes.filter(
      (vote) => !verdict.equivocations.some((e) => e.operator === vote.operator.toLowerCase()),
    );
    this.report("no_quorum", quorum, { agreeing: [], dissenting: counted, ...verdict }, verdict.tally);
    this.fail("no_quorum", `no result reached ${quorum} agreeing receipts: ${tallyText(verdict.tally)}`);
  }

  report(
    outcome: "accepted" | "no_quorum",
    quorum: number,
    votes: Pick<Verdict<ReplicaVote> & { kind: "accepted" }, "agreeing" | "dissenting" | "equivocations">,
    entries: TallyEntry[],
  ): void {
    const job = this.job;
    const { agreeing, dissenting } = votes;
    const replica = (vote: ReplicaVote): ReplicaReceipt => ({
      peerId: vote.peerId,
      operator: vote.operator,
      receipt: vote.receipt,
      signature: vote.signature,
      latencyMs: vote.latencyMs,
      pricePerMegaFuel: vote.pricePerMegaFuel,
    });
    job.verdict = {
      outcome,
      quorum,
      tally: entries,
      dissenters: dissenting.map((vote) => ({ peerId: vote.peerId, operator: vote.operator })),
      equivocators: votes.equivocations.map((equivocation) => equivocation.a.operator),
    };
    this.emit({
      type: "verdict",
      detail: `${outcome}: ${tallyText(entries)} (quorum ${quorum}, ${dissenting.length} dissenting)`,
      verdict: verdictView(job.verdict),
    });
    this.effects.push({
      type: "verdict",
      report: {
        jobId: job.jobId,
        spec: job.spec,
        outcome,
        quorum,
        agreeing: agreeing.map(replica),
        dissenting: dissenting.map(replica),
        silent: [...job.silent],
        decidedAt: this.now,
      },
    });
  }

  /** Executors given up on that may still run the job are told to stop, once it settles. */
  cancelGivenUp(except?: Attempt): void {
    for (const attempt of this.job.past) {
      if (!attempt.mayRun || attempt.number === except?.number) continue;
      attempt.mayRun = false;
      this.effects.push({ type: "cancel", attempt: attempt.number, peerId: attempt.peerId });
    }
  }

  /** Replicas still at work once the verdict is in are cancelled. */
  cancelRemaining(): void {
    for (const attempt of activeAttempts(this.job)) this.cancelAttempt(attempt, "verdict_reached");
  }

  cancelAttempt(attempt: Attempt, reason: string): void {
    const slot = this.slotOf(attempt);
    if (slot?.current === attempt) slot.current = undefined;
    if (attempt.confirmed || attempt.unanswered) {
      this.effects.push({ type: "store_assignment", attempt, state: "cancelled", reason, insert: false });
    }
    this.effects.push({ type: "cancel", attempt: attempt.number, peerId: attempt.peerId });
    this.noVote(attempt, "cancelled");
    this.retireAttempt(attempt);
  }

  /** The attempt a vote came from (kept while its job is unfinished). */
  attemptFor(vote: ReplicaVote): Attempt {
    return (
      this.attempt(vote.attempt) ?? {
        number: vote.attempt,
        slot: vote.slot,
        peerId: vote.peerId,
        operator: vote.operator,
        pricePerMegaFuel: 0n,
        deadline: 0,
        confirmed: true,
        missedProbes: 0,
        probing: false,
        nextProbeAt: 0,
      }
    );
  }

  fail(reason: ReasonCode, detail: string): void {
    const job = this.job;
    if (isFinal(job)) return;
    for (const slot of job.slots) slot.current = undefined;
    this.endPlacement();
    this.effects.push({ type: "unqueue" });
    this.cancelGivenUp();
    this.finish("failed", reason);
    this.emit({ type: "failed", reason, detail });
  }

  /** The job settles: the bid history is written once, summarized, with the last round's bids. */
  finish(state: "completed" | "failed", reason?: ReasonCode): void {
    const job = this.job;
    this.setState(state, reason);
    const round = job.round;
    const totals = { ...job.totals };
    if (round) {
      totals.rounds++;
      totals.bids += round.events.filter((event) => event.type === "bid_received").length;
      totals.declines += round.refusals.filter((refusal) => refusal.decline).length;
    }
    if (totals.rounds > 1 || totals.late > 0 || totals.unstaked > 0) {
      job.summary = this.summaryEvent(totals);
      this.store(job.summary);
    }
    for (const event of round?.events ?? []) this.effects.push({ type: "store_event", event });
  }

  summaryEvent(totals: RoundTotals): JobEvent {
    return {
      jobId: this.job.jobId,
      type: "bid_rounds",
      at: this.now,
      detail:
        `${totals.rounds} bid rounds: ${totals.bids} bids, ${totals.declines} declines, ` +
        `${totals.late} late, ${totals.unstaked} from unstaked peers`,
    };
  }

  // ── helpers ──

  /** A placement under way ends with the job: later bids and answers find it closed. */
  endPlacement(): void {
    const round = this.job.round;
    if (!round || !isPlacing(this.job)) return;
    round.closed = true;
    round.assigning = [];
    round.verifying = [];
    this.effects.push({ type: "placement_ended" });
  }

  attempt(number: number): Attempt | undefined {
    const job = this.job;
    const active = activeAttempts(job).find((attempt) => attempt.number === number);
    return active ?? job.past.find((attempt) => attempt.number === number);
  }

  /** The executor's attempt: the one at work, else its latest given up on. */
  attemptOf(peerId: string): Attempt | undefined {
    const job = this.job;
    const active = activeAttempts(job).find((attempt) => attempt.peerId === peerId);
    return active ?? job.past.findLast((attempt) => attempt.peerId === peerId);
  }

  slotOf(attempt: Attempt): ReplicaSlot | undefined {
    return this.job.slots[attempt.slot];
  }

  /** Is the attempt its slot's executor at work (not given up on, not superseded)? */
  isActive(attempt: Attempt): boolean {
    return this.slotOf(attempt)?.current === attempt;
  }

  ack(ack: number, accepted: boolean, reason?: ReasonCode): void {
    this.effects.push({ type: "ack", ack, accepted, reason });
  }

  setState(state: JobViewState, reason?: ReasonCode): void {
    const job = this.job;
    if (job.state === state && job.reason === reason) return;
    job.state = state;
    job.reason = reason;
    this.effects.push({ type: "store_state", state, reason });
  }

  emit(fields: Omit<JobEvent, "jobId" | "at">): void {
    const event: JobEvent = { jobId: this.job.jobId, at: this.now, ...fields };
    const events = this.job.events;
    events.push(event);
    if (events.length > this.settings.maxEvents) events.splice(1, 1);
    this.effects.push({ type: "emit", event });
    const final = event.type === "completed" || event.type === "failed";
    if (final || this.job.storedEvents < this.settings.maxEvents) this.store(event);
  }

  store(event: JobEvent): void {
    this.job.storedEvents++;
    this.effects.push({ type: "store_event", event });
  }

  /** An event of the current bid round: shown and sent to listeners, written only when the job settles. */
  roundEvent(fields: Omit<JobEvent, "jobId" | "at">): void {
    const round = this.job.round;
    if (!round) return;
    const event: JobEvent = { jobId: this.job.jobId, at: this.now, ...fields };
    if (round.events.length < this.settings.maxEvents) round.events.push(event);
    this.effects.push({ type: "emit", event });
  }
}

// ── pure helpers ────────────────────────────────────────────────────────────────────

function cloneAttempt(attempt: Attempt): Attempt {
  return { ...attempt };
}

/** A copy the transition may change: every nested collection it writes to is copied. */
function cloneJob(job: BuyerJobState): BuyerJobState {
  return {
    ...job,
    events: [...job.events],
    excluded: [...job.excluded],
    slots: job.slots.map((slot) => ({ ...slot, current: slot.current && cloneAttempt(slot.current) })),
    past: job.past.map(cloneAttempt),
    verification: { ...job.verification },
    votes: [...job.votes],
    silent: [...job.silent],
    round: job.round && {
      ...job.round,
      expected: job.round.expected,
      answered: [...job.round.answered],
      candidates: [...job.round.candidates],
      refusals: [...job.round.refusals],
      checking: [...job.round.checking],
      refusedOperators: [...job.round.refusedOperators],
      verifying: [...job.round.verifying],
      assigning: [...job.round.assigning],
      events: [...job.round.events],
    },
    totals: { ...job.totals },
  };
}

/** Why no known donor was asked, most frequent reason first (one refusal per reason). */
function unknownDonorRefusals(passedOver: PassedOver): Refusal[] {
  return (Object.entries(passedOver) as [ReasonCode, number][])
    .filter(([, count]) => count > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, count]) => ({ reason, detail: `${count} known donors passed over: ${reason}` }));
}

/**
 * Why a job waits: the reason most donors gave when declining it (a donor that did not
 * answer in time says less about the job), else the most frequent other refusal.
 */
export function parkReason(refusals: readonly Refusal[]): ReasonCode {
  const declines = refusals.filter((refusal) => refusal.decline !== undefined);
  const counts = new Map<ReasonCode, number>();
  for (const { reason } of declines.length > 0 ? declines : refusals)
    counts.set(reason, (counts.get(reason) ?? 0) + 1);
  let best: ReasonCode = "no_bid";
  let bestCount = 0;
  for (const [reason, count] of counts) if (count > bestCount) [best, bestCount] = [reason, count];
  return best;
}

function summarize(refusals: readonly Refusal[]): string {
  if (refusals.length === 0) return "no answers";
  const counts = new Map<string, number>();
  for (const refusal of refusals) counts.set(refusal.reason, (counts.get(refusal.reason) ?? 0) + 1);
  return [...counts].map(([reason, count]) => `${count}× ${reason}`).join(", ");
}

/** Votes per result, most first (the tally of an accepted verdict, from its votes). */
function tallyOf(
  votes: readonly ReplicaVote[],
  verdict: Pick<Extract<Verdict<ReplicaVote>, { kind: "accepted" }>, "equivocations">,
): TallyEntry[] {
  const equivocators = new Set(verdict.equivocations.map((equivocation) => equivocation.operator));
  const pending = tally(
    votes.filter((vote) => !equivocators.has(vote.operator.toLowerCase())),
    { n: 255, stillRunning: 255 },
  );
  return pending.kind === "accepted" ? [] : pending.tally;
}

function tallyText(entries: readonly TallyEntry[]): string {
  if (entries.length === 0) return "no votes";
  return entries
    .map((entry) => {
      const [status, outputCid, fuel] = entry.key.split("/");
      return `${entry.votes}× (status ${status}, output ${outputCid?.slice(0, 10)}…, fuel ${fuel})`;
    })
    .join(", ");
}

/** A vote as the signed receipt and output a job completes with. */
function voteResult(vote: ReplicaVote): [SignedReceipt, Uint8Array] {
  return [{ receipt: vote.receipt, signature: vote.signature, outputCid: vote.outputCid }, vote.output];
}
