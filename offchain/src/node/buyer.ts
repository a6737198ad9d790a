import { EventEmitter } from "node:events";
import type { Address, Hex } from "viem";
import { RequestCoalescer } from "../p2p/index.ts";
import {
  DEFAULT_BACKOFF,
  JobScheduler,
  backoffDelay,
  buildJobSpec,
  planRetry,
  priorityName,
  selectExecutors,
  signJob,
  toAnnounce,
} from "../market/index.ts";
import type { Candidate, QueuedJob } from "../market/index.ts";
import {
  CID,
  INLINE_INPUT_MAX_BYTES,
  JobAnnounceSchema,
  PROTOCOL_ASSIGN,
  PROTOCOL_STATUS,
  ReceiptStatus,
  bidFromWire,
  cidOf,
  cidToBytes32,
  jobSpecFromWire,
  receiptFromWire,
  verifyBid,
  verifyReceipt,
} from "../protocol/index.ts";
import type {
  AssignRequest,
  AssignResponse,
  BidAck,
  BidBatch,
  BidOffer,
  BidWire,
  JobAnnounce,
  JobSpecMessage,
  PriorityName,
  ReasonCode,
  ReceiptAck,
  ReceiptDelivery,
  ReceiptWire,
} from "../protocol/index.ts";
import type { JobRow } from "../store/index.ts";
import type { NodeContext } from "./context.ts";
import { detach, errorMessage, putKnownBlock } from "./context.ts";
import { Announcer } from "./announcer.ts";
import { MARKET_BATCHING, protocolSpecs } from "./protocols.ts";
import { peerKeyMatches } from "./peer-book.ts";
import type { PeerBook } from "./peer-book.ts";
import type { JobEvent, JobResultView, JobView, JobViewState, SubmitJobRequest } from "./types.ts";

const LIVENESS_MS = 15_000;
const TICK_MS = 250;
const MISSED_PROBES_SILENT = 2;
const BID_GRACE_MS = 2;
/** Finished jobs kept in memory; older ones are read back from the store when asked for. */
const RECENT_FINISHED_JOBS = 256;
const WRITE_BATCH_MS = 25;

interface Attempt {
  number: number;
  peerId: string;
  operator: Address;
  pricePerMegaFuel: bigint;
  assignmentId?: number;
  deadline: number;
  missedProbes: number;
  probing: boolean;
  /** The executor accepted (a receipt may come before its acceptance is seen). */
  confirmed: boolean;
  timer?: NodeJS.Timeout;
}

interface BuyerJob {
  jobId: Hex;
  spec: JobSpecMessage;
  signature: Hex;
  announce: JobAnnounce;
  priority: PriorityName;
  deadline: number;
  state: JobViewState;
  reason?: ReasonCode;
  events: JobEvent[];
  attempts: number;
  placementTries: number;
  excluded: Set<string>;
  current?: Attempt;
  /** Attempts given up on; a valid receipt from one of them still completes the job. */
  past: Attempt[];
  result?: JobResultView;
  receipt?: { message: ReceiptWire; signature: Hex };
  /** Set while the job is announced and its bids are coming in. */
  bidding?: BidRound;
}

/** Why a donor did not take a job; a donor's own decline names the donor. */
type Refusal = { reason: ReasonCode; detail: string; decline?: { peerId: string; operator: Address } };
type BidCandidate = Candidate & { bid: BidWire; signature: Hex };

/** The answers to one announcement of a job. */
interface BidRound {
  /** Staked donors known able to run the job: once all have answered, selection need not wait. */
  expected: ReadonlySet<string>;
  /** Expected donors yet to answer. */
  awaiting: number;
  answered: Set<string>;
  answers: (BidCandidate | Refusal)[];
  closed: boolean;
  grace?: NodeJS.Timeout;
  timer?: NodeJS.Timeout;
  finish(): void;
}

/**
 * The buying half of a node: signs and announces jobs, asks known donors for bids,
 * picks and assigns an executor, watches it, reassigns with backoff when it goes silent
 * or misses its deadline, and verifies and stores the receipt. A job that cannot be
 * placed waits in the scheduler with its reason.
 */
export class Buyer {
  readonly #ctx: NodeContext;
  readonly #peers: PeerBook;
  readonly #jobs = new Map<Hex, BuyerJob>();
  readonly #scheduler = new JobScheduler<BuyerJob>();
  readonly #events = new EventEmitter();
  /** Placements under way (asking for bids, assigning). */
  #inFlight = 0;
  /** Jobs this buyer has with each executor right now. */
  readonly #busy = new Map<string, number>();
  readonly #finished: Hex[] = [];
  readonly #pendingWrites: (() => void)[] = [];
  readonly #pendingStates = new Map<Hex, { state: JobViewState; reason: ReasonCode | null }>();
  #writeTimer: NodeJS.Timeout | undefined;
  #tick: NodeJS.Timeout | undefined;
  #stopped = false;

  readonly #announcer: Announcer;
  readonly #assignments: RequestCoalescer<AssignRequest, AssignResponse>;

  constructor(ctx: NodeContext, peers: PeerBook) {
    this.#ctx = ctx;
    this.#peers = peers;
    this.#announcer = new Announcer(ctx.mesh, ctx.log);
    this.#assignments = new RequestCoalescer({
      ...MARKET_BATCHING,
      send: async (peerId, assignments) => {
        const { results } = await ctx.mesh.request(
          peerId,
          PROTOCOL_ASSIGN,
          protocolSpecs.assign,
          { type: "assign_batch", assignments },
          { timeoutMs: ctx.config.buyer.assignTimeoutMs },
        );
        return results;
      },
    });
    this.#events.setMaxListeners(0);
  }

  start(): void {
    this.#restore();
    this.#tick = setInterval(() => this.#onTick(), TICK_MS);
    this.#tick.unref();
    this.#pump();
  }

  stop(): void {
    this.#stopped = true;
    this.#announcer.stop();
    clearInterval(this.#tick);
    for (const job of this.#jobs.values()) {
      if (job.current) clearInterval(job.current.timer);
      job.bidding?.finish();
    }
    this.#flushWrites();
  }

  on(listener: (event: JobEvent) => void): void {
    this.#events.on("job", listener);
  }

  off(listener: (event: JobEvent) => void): void {
    this.#events.off("job", listener);
  }

  get(jobId: Hex): JobView | undefined {
    const job = this.#jobs.get(jobId);
    if (job) return toView(job);
    const row = this.#ctx.store.jobs.get(jobId);
    const stored = row?.role === "buyer" ? restoreJob(row, this.#ctx.store) : undefined;
    return stored && toView(stored);
  }

  /** This node's jobs, newest first (at most `limit`). */
  list(limit = 1_000): JobView[] {
    return this.#ctx.store.jobs
      .list({ role: "buyer", limit })
      .map((row) => this.get(row.jobId as Hex))
      .filter((view): view is JobView => view !== undefined);
  }

  async submit(request: SubmitJobRequest): Promise<{ jobId: Hex }> {
    const ctx = this.#ctx;
    const [moduleCid, inputCid] = (await Promise.all([cidOf(request.module), cidOf(request.input)])).map(
      String,
    ) as [string, string];
    const spec = buildJobSpec({
      buyer: ctx.operatorAddress,
      moduleCid: cidToBytes32(moduleCid),
      inputCid: cidToBytes32(inputCid),
      maxPricePerMegaFuel: request.maxPricePerMegaFuel ?? ctx.config.buyer.maxPricePerMegaFuel,
      fuelLimit: request.fuelLimit ?? ctx.config.buyer.defaultFuel,
      memoryPages: request.memoryPages,
      timeoutMs: request.timeoutMs,
      priority: request.priority,
      deadlineMs: request.deadlineMs,
      entry: request.entry,
      now: ctx.now(),
    });
    const signed = await signJob(ctx.operator, ctx.domain, spec);
    const announce = toAnnounce(signed, {
      moduleCid,
      inputCid,
      moduleSize: request.module.byteLength,
      inputSize: request.input.byteLength,
      buyerPeer: ctx.mesh.peerId,
      providerAddrs: ctx.mesh.multiaddrs().slice(0, 8),
    });
    const job = newJob(signed.jobId, spec, signed.signature, announce);
    // Placement starts while the commit is pending: the commit runs before this node reads
    // any answer from the network, and submitJob returns only once it is stored (safe
    // against a crash of the node; a job is no money, so it does not wait for an fsync).
    const stored = ctx.store.commit(
      () => {
        if (!ctx.store.blocks.has(moduleCid)) putKnownBlock(ctx, moduleCid, request.module);
        putKnownBlock(ctx, inputCid, request.input);
        ctx.store.jobs.insert({
          jobId: job.jobId,
          role: "buyer",
          spec: { announce },
          state: "queued",
          priority: job.priority,
          deadline: job.deadline,
        });
      },
      { durable: false },
    );
    this.#jobs.set(job.jobId, job);

    ctx.provider.add(moduleCid);
    // An inline input travels with the assignment; a DHT walk for it would only cost CPU.
    if (request.input.length > INLINE_INPUT_MAX_BYTES) ctx.provider.add(inputCid);
    this.#setState(job, "announced");
    this.#emit(job, { type: "announced" });
    this.#scheduler.enqueue(queued(job));
    this.#pump();
    if (job.state === "announced" && this.#scheduler.has(job.jobId)) this.#markWaiting(job);
    try {
      await stored;
    } catch (err) {
      this.#fail(job, "internal_error", `the job could not be stored: ${errorMessage(err)}`);
      throw err;
    }
    return { jobId: job.jobId };
  }

  /** Executor → buyer: a receipt or an execution without result. */
  async onDelivery(delivery: ReceiptDelivery, from: string): Promise<ReceiptAck> {
    const jobId = delivery.type === "receipt" ? delivery.receipt.jobId : delivery.jobId;
    const job = this.#jobs.get(jobId);
    const ack = (accepted: boolean, reason?: ReasonCode): ReceiptAck => ({
      type: "ack",
      jobId,
      accepted,
      reason,
    });
    if (!job) return ack(false, "unknown_job");
    if (job.state === "completed" || job.state === "failed") return ack(true);
    // A receipt from an executor given up on (silent, late) still completes the job.
    const attempt =
      job.current?.peerId === from ? job.current : job.past.find((past) => past.peerId === from);
    if (!attempt) return ack(false, "unknown_job");
    const isCurrent = attempt === job.current;

    if (delivery.type === "no_result") {
      if (isCurrent)
        this.#executorFailed(job, delivery.reason, delivery.detail ?? "the executor produced no result");
      return ack(true);
    }
    const refusal = await this.#checkReceipt(job, attempt, delivery);
    if (refusal) {
      if (isCurrent) this.#executorFailed(job, "receipt_invalid", refusal);
      return ack(false, "receipt_invalid");
    }
    return ack(true);
  }

  // ── placement ──────────────────────────────────────────────────────────────────────

  #onTick(): void {
    for (const expired of this.#scheduler.expire(this.#ctx.now())) {
      this.#fail(
        expired.item,
        "deadline_missed",
        `still waiting (${expired.reason ?? "not placed"}) when the deadline passed`,
      );
    }
    this.#pump();
  }

  /**
   * Starts placements while known donors have free slots (at least one placement runs
   * regardless, so a job that cannot be placed learns why); the rest wait in the
   * scheduler, most urgent first.
   */
  #pump(): void {
    const limit = Math.min(this.#ctx.config.buyer.maxInFlight, Math.max(1, this.#freeSlots()));
    while (!this.#stopped && this.#inFlight < limit) {
      const next = this.#scheduler.next(this.#ctx.now());
      if (!next) return;
      this.#inFlight++;
      detach(
        this.#ctx.log,
        "placing a job",
        this.#place(next.item).finally(() => {
          this.#inFlight--;
          queueMicrotask(() => this.#pump());
        }),
      );
    }
  }

  #freeSlots(): number {
    const now = this.#ctx.now();
    let free = 0;
    for (const donor of this.#peers.all()) {
      if (donor.staked && now - donor.lastSeen <= LIVENESS_MS)
        free += Math.max(0, donor.slots - this.#busyWith(donor.peerId));
    }
    return free;
  }

  #busyWith(peerId: string): number {
    return this.#busy.get(peerId) ?? 0;
  }

  #setCurrent(job: BuyerJob, attempt: Attempt): void {
    if (job.current) this.#clearCurrent(job);
    job.current = attempt;
    this.#busy.set(attempt.peerId, this.#busyWith(attempt.peerId) + 1);
  }

  #clearCurrent(job: BuyerJob): void {
    const attempt = job.current;
    if (!attempt) return;
    job.current = undefined;
    const left = this.#busyWith(attempt.peerId) - 1;
    if (left > 0) this.#busy.set(attempt.peerId, left);
    else this.#busy.delete(attempt.peerId);
    queueMicrotask(() => this.#pump());
  }

  async #place(job: BuyerJob): Promise<void> {
    const ctx = this.#ctx;
    const donors = this.#peers.candidates(job.spec, {
      now: ctx.now(),
      livenessMs: LIVENESS_MS,
      exclude: job.excluded,
      busy: (peerId) => this.#busyWith(peerId),
    });
    if (donors.length === 0) return this.#park(job, "no_bid", "no staked donor able to run the job is known");

    const answers = await this.#callForBids(job, new Set(donors.map((donor) => donor.peerId)));
    const candidates = answers.filter((answer): answer is BidCandidate => !("reason" in answer));
    const refusals = answers.filter((answer): answer is Refusal => "reason" in answer);
    const excludeOperators = new Set<string>();
    while (!this.#stopped) {
      const selection = selectExecutors(candidates, {
        replicas: job.spec.replicas,
        maxPricePerMegaFuel: job.spec.maxPricePerMegaFuel,
        minReputation: job.spec.minReputation,
        now: ctx.now(),
        livenessMs: LIVENESS_MS,
        excludePeers: job.excluded,
        excludeOperators,
      });
      for (const rejected of selection.rejected) {
        if (excludeOperators.has(rejected.candidate.operator.toLowerCase())) continue;
        this.#emit(job, {
          type: "bid_rejected",
          reason: rejected.reason,
          detail: rejected.detail,
          peerId: rejected.candidate.peerId,
          operator: rejected.candidate.operator,
        });
        refusals.push(rejected);
      }
      const chosen = selection.chosen[0] as BidCandidate | undefined;
      if (!chosen) break;
      if (!(await verifyBid(ctx.domain, bidFromWire(chosen.bid), chosen.signature))) {
        // Only the chosen bid's signature is checked: it is the one that binds the executor.
        const detail = "the bid is not signed by its executor";
        this.#emit(job, {
          type: "bid_rejected",
          reason: "bid_rejected_signature",
          detail,
          peerId: chosen.peerId,
          operator: chosen.operator,
        });
        refusals.push({ reason: "bid_rejected_signature", detail });
        candidates.splice(candidates.indexOf(chosen), 1);
        continue;
      }
      const outcome = await this.#assign(job, chosen);
      if (outcome === undefined) return;
      refusals.push(outcome);
      excludeOperators.add(chosen.operator.toLowerCase());
      candidates.splice(candidates.indexOf(chosen), 1);
    }
    for (const { reason, detail, decline } of refusals)
      if (decline) this.#emit(job, { type: "bid_rejected", reason, detail, ...decline });
    const reason = parkReason(refusals);
    this.#park(job, reason, `no donor took the job (${summarize(refusals)})`);
  }

  /**
   * Announces the job and collects the donors' answers; returns once every expected donor
   * has answered, `BID_GRACE_MS` after the first usable bid (so one slow donor does not
   * hold up the job), or after `bidTimeoutMs`. Later answers are dropped (the job has
   * moved on).
   */
  #callForBids(job: BuyerJob, expected: ReadonlySet<string>): Promise<(BidCandidate | Refusal)[]> {
    return new Promise((resolve) => {
      const round: BidRound = {
        expected,
        awaiting: expected.size,
        answered: new Set(),
        answers: [],
        closed: false,
        finish: () => {
          if (round.closed) return;
          round.closed = true;
          clearTimeout(round.grace);
          clearTimeout(round.timer);
          if (job.bidding === round) job.bidding = undefined;
          if (round.awaiting > 0 && round.answers.every((answer) => "reason" in answer))
            round.answers.push({ reason: "timeout", detail: "no bid came in time" });
          resolve(round.answers);
        },
      };
      round.timer = setTimeout(round.finish, this.#ctx.config.buyer.bidTimeoutMs);
      job.bidding = round;
      this.#announcer.announce(job.announce);
    });
  }

  /** Donor → buyer: bids and declines for jobs this node announced. */
  onBids(batch: BidBatch, from: string): BidAck {
    for (const offer of batch.offers) {
      const jobId = offer.type === "bid" ? offer.bid.jobId : offer.jobId;
      const job = this.#jobs.get(jobId);
      const round = job?.bidding;
      if (!job || !round || round.answered.has(from) || job.excluded.has(from)) continue;
      round.answered.add(from);
      this.#peers.touch(from, this.#ctx.now());
      detach(this.#ctx.log, "reading a bid", this.#takeOffer(job, round, offer, from));
    }
    return { type: "ack", received: batch.offers.length };
  }

  async #takeOffer(job: BuyerJob, round: BidRound, offer: BidOffer, from: string): Promise<void> {
    const answer = await this.#readOffer(job, round, offer, from).catch((err: unknown): Refusal => ({
      reason: "internal_error",
      detail: errorMessage(err),
    }));
    // Answers of peers that are not staked donors neither count nor end the round.
    if (round.closed || answer === undefined) return;
    round.answers.push(answer);
    if (round.expected.has(from)) round.awaiting--;
    if (round.awaiting === 0) return round.finish();
    if (!("reason" in answer) && round.grace === undefined)
      round.grace = setTimeout(round.finish, BID_GRACE_MS);
  }

  async #readOffer(
    job: BuyerJob,
    round: BidRound,
    offer: BidOffer,
    from: string,
  ): Promise<BidCandidate | Refusal | undefined> {
    const ctx = this.#ctx;
    // Only a staked donor's answers count and become job events: anyone else's are dropped unrecorded.
    const ignored = (detail: string): undefined => {
      ctx.log.debug({ jobId: job.jobId, from, detail }, "ignored a bid");
      return undefined;
    };
    if (offer.type === "decline") {
      const donor = this.#peers.get(from);
      if (!donor?.staked) return ignored("a decline from a peer not known as a staked donor");
      // Recorded only if the job finds no executor: a busy donor declines most jobs that others take.
      const detail = `declined by the donor: ${offer.detail ?? offer.reason}`;
      return { reason: offer.reason, detail, decline: { peerId: from, operator: donor.operator } };
    }
    if (!peerKeyMatches(offer.peerKey, from)) return ignored("the bid's peer key is not the bidder's");
    const bid = bidFromWire(offer.bid);
    if (!(await ctx.stakes.isActive(bid.executor, offer.peerKey)))
      return ignored("the bidder is not an active staked donor");
    if (round.closed) return { reason: "timeout", detail: "the bid came after the selection" };
    this.#emit(job, {
      type: "bid_received",
      peerId: from,
      operator: bid.executor,
      pricePerMegaFuel: bid.pricePerMegaFuel.toString(),
    });
    this.#write(() =>
      ctx.store.bids.insert(
        {
          jobId: job.jobId,
          bidder: from,
          operator: bid.executor,
          pricePerMegaFuel: bid.pricePerMegaFuel,
          message: offer.bid,
          signature: offer.signature,
        },
        { ifAbsent: true },
      ),
    );
    return {
      peerId: from,
      operator: bid.executor,
      pricePerMegaFuel: bid.pricePerMegaFuel,
      expiresAt: bid.expiresAt,
      staked: true,
      stake: 0n,
      lastSeen: ctx.now(),
      freeSlots: offer.freeSlots,
      bid: offer.bid,
      signature: offer.signature,
    };
  }

  /** Assigns the job; resolves undefined once assigned (or settled meanwhile), or the executor's refusal. */
  async #assign(job: BuyerJob, chosen: BidCandidate): Promise<Refusal | undefined> {
    const ctx = this.#ctx;
    const attempt = this.#newAttempt(job, chosen);
    const refused = (reason: ReasonCode, detail: string): Refusal => {
      if (job.current === attempt) this.#clearCurrent(job);
      this.#emit(job, {
        type: "bid_rejected",
        reason,
        detail,
        peerId: chosen.peerId,
        operator: chosen.operator,
      });
      return { reason, detail };
    };
    let response;
    try {
      response = await this.#assignments.request(chosen.peerId, {
        type: "assign",
        jobId: job.jobId,
        bid: chosen.bid,
        bidSignature: chosen.signature,
        attempt: Math.min(attempt.number, 64),
        inputBase64: this.#inlineInput(job),
      });
    } catch (err) {
      return refused(requestFailureReason(err), `assignment failed: ${errorMessage(err)}`);
    }
    if (response.jobId !== job.jobId) return refused("bad_spec", "the executor answered for another job");
    if (response.type === "reject")
      return refused(
        response.reason,
        `the executor refused the assignment: ${response.detail ?? response.reason}`,
      );
    if (job.current !== attempt || this.#stopped) return undefined;
    this.#confirm(job, attempt);
    attempt.timer = setInterval(() => this.#watch(job, attempt), ctx.config.buyer.heartbeatMs);
    attempt.timer.unref();
    return undefined;
  }

  /** A small input travels with the assignment, saving the executor a block fetch. */
  #inlineInput(job: BuyerJob): string | undefined {
    if (job.announce.inputSize > INLINE_INPUT_MAX_BYTES) return undefined;
    const input = this.#ctx.store.blocks.get(job.announce.inputCid);
    return input && Buffer.from(input).toString("base64");
  }

  #newAttempt(job: BuyerJob, chosen: BidCandidate): Attempt {
    const ctx = this.#ctx;
    const attempt: Attempt = {
      number: job.attempts + 1,
      peerId: chosen.peerId,
      operator: chosen.operator,
      pricePerMegaFuel: chosen.pricePerMegaFuel,
      deadline: Math.min(job.deadline, ctx.now() + job.spec.timeoutMs + ctx.config.buyer.deliveryGraceMs),
      missedProbes: 0,
      probing: false,
      confirmed: false,
    };
    this.#setCurrent(job, attempt);
    return attempt;
  }

  #confirm(job: BuyerJob, attempt: Attempt): void {
    if (attempt.confirmed) return;
    const ctx = this.#ctx;
    attempt.confirmed = true;
    job.attempts = attempt.number;
    this.#setState(job, "assigned");
    this.#emit(job, {
      type: "assigned",
      peerId: attempt.peerId,
      operator: attempt.operator,
      pricePerMegaFuel: attempt.pricePerMegaFuel.toString(),
      attempt: attempt.number,
    });
    this.#write(() => {
      const row = ctx.store.assignments.insert({
        jobId: job.jobId,
        executor: attempt.peerId,
        operator: attempt.operator,
        attempt: attempt.number,
        deadline: attempt.deadline,
      });
      attempt.assignmentId = row.id;
    });
  }

  /** Liveness probe and deadline check of the current executor. */
  #watch(job: BuyerJob, attempt: Attempt): void {
    if (job.current !== attempt) return clearInterval(attempt.timer);
    if (!attempt.confirmed) return;
    const ctx = this.#ctx;
    if (ctx.now() > attempt.deadline)
      return this.#executorFailed(job, "deadline_missed", "the executor did not deliver before its deadline");
    if (attempt.probing) return;
    attempt.probing = true;
    const probe = ctx.mesh
      .request(
        attempt.peerId,
        PROTOCOL_STATUS,
        protocolSpecs.status,
        { type: "status", jobId: job.jobId },
        { timeoutMs: ctx.config.buyer.heartbeatMs },
      )
      .then((status) => {
        if (job.current !== attempt) return;
        attempt.missedProbes = 0;
        if (status.state === "running" && job.state === "assigned") {
          this.#setState(job, "running");
          this.#emit(job, { type: "running", peerId: attempt.peerId });
        } else if (status.state === "unknown") {
          this.#executorFailed(job, "executor_silent", "the executor no longer knows the job");
        } else if (status.state === "failed") {
          this.#executorFailed(
            job,
            status.reason ?? "no_result",
            status.detail ?? "the executor reports the job failed",
          );
        }
      })
      .catch(() => {
        if (job.current !== attempt) return;
        attempt.missedProbes++;
        if (attempt.missedProbes >= MISSED_PROBES_SILENT)
          this.#executorFailed(
            job,
            "executor_silent",
            `${attempt.missedProbes} status probes went unanswered`,
          );
      })
      .finally(() => (attempt.probing = false));
    detach(ctx.log, "status probe", probe);
  }

  #executorFailed(job: BuyerJob, reason: ReasonCode, detail: string): void {
    const attempt = job.current;
    if (!attempt) return;
    this.#confirm(job, attempt);
    clearInterval(attempt.timer);
    this.#clearCurrent(job);
    job.past.push(attempt);
    job.excluded.add(attempt.peerId);
    this.#updateAssignment(attempt, reason === "deadline_missed" ? "timed_out" : "failed", reason);
    const plan = planRetry(
      attempt.number,
      reason,
      { now: this.#ctx.now(), deadline: job.deadline },
      { maxAttempts: this.#ctx.config.buyer.maxAttempts, backoff: DEFAULT_BACKOFF },
    );
    if (plan.type === "give_up") return this.#fail(job, plan.reason, `${plan.detail}; last: ${detail}`);
    this.#emit(job, { type: "reassigned", reason, detail, peerId: attempt.peerId, attempt: attempt.number });
    this.#setState(job, "queued", reason);
    this.#scheduler.park(queued(job), reason, plan.at, detail);
  }

  /** A new job that the scheduler holds back: every known donor slot is taken, or no donor is known. */
  #markWaiting(job: BuyerJob): void {
    const donorsKnown = this.#peers.all().some((donor) => donor.staked);
    const reason: ReasonCode = donorsKnown ? "slots_full" : "no_bid";
    const detail = donorsKnown
      ? "every known donor slot is taken; waiting in the queue"
      : "no staked donor is known yet";
    this.#setState(job, "queued", reason);
    this.#emit(job, { type: "queued", reason, detail });
  }

  /** The job could not be placed now: it waits with its reason, backing off, until its deadline. */
  #park(job: BuyerJob, reason: ReasonCode, detail: string): void {
    if (job.state === "completed" || job.state === "failed") return;
    job.placementTries++;
    const at = this.#ctx.now() + backoffDelay(job.placementTries, { ...DEFAULT_BACKOFF, maxMs: 2_000 });
    if (at >= job.deadline)
      return this.#fail(job, "deadline_missed", `could not be placed before its deadline: ${detail}`);
    if (job.state !== "queued" || job.reason !== reason) this.#emit(job, { type: "queued", reason, detail });
    this.#setState(job, "queued", reason);
    this.#scheduler.park(queued(job), reason, at, detail);
  }

  #fail(job: BuyerJob, reason: ReasonCode, detail: string): void {
    if (job.state === "completed" || job.state === "failed") return;
    if (job.current) clearInterval(job.current.timer);
    this.#clearCurrent(job);
    this.#scheduler.remove(job.jobId);
    this.#setState(job, "failed", reason);
    this.#retire(job);
    this.#emit(job, { type: "failed", reason, detail });
  }

  // ── receipts ───────────────────────────────────────────────────────────────────────

  async #checkReceipt(
    job: BuyerJob,
    attempt: Attempt,
    delivery: Extract<ReceiptDelivery, { type: "receipt" }>,
  ): Promise<string | undefined> {
    const ctx = this.#ctx;
    const receipt = receiptFromWire(delivery.receipt);
    if (receipt.executor.toLowerCase() !== attempt.operator.toLowerCase())
      return "the receipt is not from the assigned executor";
    if (receipt.moduleCid !== job.spec.moduleCid || receipt.inputCid !== job.spec.inputCid)
      return "the receipt names another module or input";
    if (receipt.fuelUsed > job.spec.fuelLimit) return "the receipt claims more fuel than the limit";
    let outputCid: CID;
    try {
      outputCid = CID.parse(delivery.outputCid);
      if (cidToBytes32(outputCid) !== receipt.outputCid) return "the output CID is not the signed one";
    } catch (err) {
      return `bad output CID: ${errorMessage(err)}`;
    }
    if (!(await verifyReceipt(ctx.domain, receipt, delivery.signature)))
      return "the receipt is not signed by its executor";
    let output: Uint8Array;
    if (delivery.outputBase64 !== undefined) {
      output = Buffer.from(delivery.outputBase64, "base64");
      if ((await cidOf(output)).toString() !== outputCid.toString())
        return "the inline output does not hash to its CID";
    } else {
      try {
        output = await ctx.mesh.fetchBlock(outputCid, { from: [attempt.peerId], timeoutMs: 10_000 });
      } catch (err) {
        return `could not fetch the output: ${errorMessage(err)}`;
      }
    }
    if (job.state === "completed" || job.state === "failed") return undefined; // settled meanwhile
    this.#complete(job, attempt, delivery, output);
    return undefined;
  }

  /** A late receipt of an earlier attempt settled the job: the running attempt, or the wait for one, ends. */
  #dropCurrent(job: BuyerJob): void {
    this.#scheduler.remove(job.jobId);
    const running = job.current;
    if (!running) return;
    clearInterval(running.timer);
    this.#clearCurrent(job);
    this.#updateAssignment(running, "cancelled", "receipt_from_earlier_executor");
  }

  #complete(
    job: BuyerJob,
    attempt: Attempt,
    delivery: Extract<ReceiptDelivery, { type: "receipt" }>,
    output: Uint8Array,
  ): void {
    const ctx = this.#ctx;
    this.#confirm(job, attempt);
    clearInterval(attempt.timer);
    if (job.current !== attempt) this.#dropCurrent(job);
    this.#clearCurrent(job);
    job.receipt = { message: delivery.receipt, signature: delivery.signature };
    job.result = {
      status: statusName(delivery.receipt.status),
      fuelUsed: delivery.receipt.fuelUsed,
      outputCid: delivery.outputCid,
      outputBase64: Buffer.from(output).toString("base64"),
    };
    this.#write(() => {
      putKnownBlock(ctx, delivery.outputCid, output);
      ctx.store.receipts.put({
        jobId: job.jobId,
        executor: delivery.receipt.executor,
        message: delivery.receipt,
        signature: delivery.signature,
      });
      ctx.store.jobs.update(job.jobId, { result: job.result });
    });
    this.#updateAssignment(attempt, "completed", null);
    this.#emit(job, { type: "receipt", peerId: attempt.peerId, operator: attempt.operator });
    this.#setState(job, "completed");
    this.#retire(job);
    this.#emit(job, { type: "completed" });
  }

  // ── state, events and persistence ─────────────────────────────────────────────────

  /** Finished jobs stay in memory while recent; older ones are read back from the store. */
  #retire(job: BuyerJob): void {
    this.#finished.push(job.jobId);
    while (this.#finished.length > RECENT_FINISHED_JOBS) this.#jobs.delete(this.#finished.shift()!);
  }

  /** A job's state row is written once per batch, with the latest state the batch saw. */
  #setState(job: BuyerJob, state: JobViewState, reason?: ReasonCode): void {
    job.state = state;
    job.reason = reason;
    const queuedAlready = this.#pendingStates.has(job.jobId);
    this.#pendingStates.set(job.jobId, { state, reason: reason ?? null });
    if (queuedAlready) return;
    this.#write(() => {
      const latest = this.#pendingStates.get(job.jobId);
      this.#pendingStates.delete(job.jobId);
      if (latest) this.#ctx.store.jobs.update(job.jobId, latest);
    });
  }

  #emit(job: BuyerJob, fields: Omit<JobEvent, "jobId" | "at">): void {
    const event: JobEvent = { jobId: job.jobId, at: this.#ctx.now(), ...fields };
    job.events.push(event);
    const { jobId, type, reason, peerId, at, ...data } = event;
    this.#write(() =>
      this.#ctx.store.jobEvents.append({
        jobId,
        kind: type,
        reason: reason ?? null,
        peer: peerId ?? null,
        at,
        data,
      }),
    );
    this.#events.emit("job", event);
  }

  #updateAssignment(
    attempt: Attempt,
    state: "completed" | "failed" | "timed_out" | "cancelled",
    reason: string | null,
  ): void {
    this.#write(() => {
      if (attempt.assignmentId !== undefined)
        this.#ctx.store.assignments.update(attempt.assignmentId, { state, reason });
    });
  }

  /**
   * Progress records (events, bids, assignments, states, receipts) are written in one
   * commit every WRITE_BATCH_MS: an fsync blocks the event loop, so one per job step would
   * cost more than the step. A crash loses at most that window; a job whose completion was
   * lost is placed again after a restart.
   */
  #write(write: () => void): void {
    this.#pendingWrites.push(write);
    this.#writeTimer ??= setTimeout(() => this.#flushWrites(), WRITE_BATCH_MS);
  }

  #flushWrites(): void {
    clearTimeout(this.#writeTimer);
    this.#writeTimer = undefined;
    const writes = this.#pendingWrites.splice(0);
    if (writes.length === 0) return;
    const committed = this.#ctx.store.commit(
      () => {
        for (const write of writes) {
          try {
            write();
          } catch (err) {
            this.#ctx.log.warn({ err: errorMessage(err) }, "a job state write was refused");
          }
        }
      },
      { durable: false },
    );
    committed.catch((err: unknown) =>
      this.#ctx.log.error({ err: errorMessage(err) }, "could not persist job state"),
    );
  }

  /** Reloads this node's jobs after a restart; unfinished ones are placed again. */
  #restore(): void {
    const { store } = this.#ctx;
    const unfinished = store.jobs.byState(["queued", "announced", "assigned", "running"], { role: "buyer" });
    for (const row of unfinished) {
      const job = restoreJob(row, store);
      if (!job) continue;
      this.#jobs.set(job.jobId, job);
      job.state = "queued";
      this.#scheduler.enqueue(queued(job));
    }
    const recent = store.jobs.list({ role: "buyer", limit: RECENT_FINISHED_JOBS }).reverse();
    for (const row of recent) {
      if (this.#jobs.has(row.jobId as Hex)) continue;
      const job = restoreJob(row, store);
      if (!job) continue;
      this.#jobs.set(job.jobId, job);
      this.#finished.push(job.jobId);
    }
  }
}

function newJob(jobId: Hex, spec: JobSpecMessage, signature: Hex, announce: JobAnnounce): BuyerJob {
  return {
    jobId,
    spec,
    signature,
    announce,
    priority: priorityName(spec.priority),
    deadline: Number(spec.deadline),
    state: "queued",
    events: [],
    attempts: 0,
    placementTries: 0,
    excluded: new Set(),
    past: [],
  };
}

function restoreJob(row: JobRow, store: NodeContext["store"]): BuyerJob | undefined {
  const parsed = JobAnnounceSchema.safeParse((row.spec as { announce?: unknown } | null)?.announce);
  if (!parsed.success) return undefined;
  const announce = parsed.data;
  const job = newJob(announce.jobId, jobSpecFromWire(announce.spec), announce.signature, announce);
  job.state = row.state === "cancelled" ? "failed" : row.state;
  job.reason = (row.reason as ReasonCode | null) ?? undefined;
  job.events = store.jobEvents.list(row.jobId).map((event) => ({
    ...((event.data ?? {}) as object),
    jobId: announce.jobId,
    type: event.kind as JobEvent["type"],
    at: event.at,
    reason: (event.reason as ReasonCode | null) ?? undefined,
    peerId: event.peer ?? undefined,
  }));
  job.attempts = store.assignments.latestAttempt(row.jobId);
  const receipt = store.receipts.forJob(row.jobId).at(-1);
  if (receipt)
    job.receipt = { message: receipt.message as unknown as ReceiptWire, signature: receipt.signature };
  if (row.result) job.result = row.result as unknown as JobResultView;
  return job;
}

function queued(job: BuyerJob): QueuedJob<BuyerJob> {
  return { jobId: job.jobId, priority: job.priority, deadline: job.deadline, item: job };
}

function toView(job: BuyerJob): JobView {
  return {
    jobId: job.jobId,
    state: job.state,
    priority: job.priority,
    spec: job.announce.spec,
    signature: job.signature,
    reason: job.reason,
    executor: job.current ? { peerId: job.current.peerId, operator: job.current.operator } : undefined,
    attempts: job.attempts,
    events: [...job.events],
    result: job.result,
    receipt: job.receipt,
  };
}

function statusName(status: number): string {
  return Object.entries(ReceiptStatus).find(([, value]) => value === status)?.[0] ?? `status_${status}`;
}

function requestFailureReason(err: unknown): ReasonCode {
  const code = (err as { code?: string }).code;
  return code === "timeout" ? "timeout" : "unreachable";
}

/**
 * Why a job waits: the reason most donors gave when declining it (a donor that did not
 * answer in time says less about the job), else the most frequent other refusal.
 */
function parkReason(refusals: readonly Refusal[]): ReasonCode {
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
