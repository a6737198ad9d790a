import { EventEmitter } from "node:events";
import type { Hex } from "viem";
import { DEFAULT_BACKOFF, JobScheduler, buildJobSpec, candidateLimit, toAnnounce } from "../market/index.ts";
import { CID, INLINE_INPUT_MAX_BYTES, bidFromWire, cidOf, cidToBytes32 } from "../protocol/index.ts";
import type { BidAck, BidBatch, ReasonCode, ReceiptAck, ReceiptDelivery } from "../protocol/index.ts";
import {
  activeAttempts,
  isFinal,
  isPlacing,
  newJobState,
  nextWakeAt,
  openSlots,
  restoreJobState,
  step,
} from "./buyer-machine.ts";
import type {
  BidCandidate,
  BuyerEffect,
  BuyerEvent,
  BuyerJobState,
  BuyerSettings,
  Step,
  Verification,
} from "./buyer-machine.ts";
import { BuyerJournal } from "./buyer-journal.ts";
import { jobView } from "./buyer-view.ts";
import type { BuyerPorts } from "./buyer-ports.ts";
import { peerKeyMatches } from "./peer-book.ts";
import type { JobEvent, JobView, SubmitJobRequest } from "./types.ts";
import { detach, errorMessage } from "./util.ts";

const TICK_MS = 250;
/** Donors whose bid requests are counted one by one. */
const MAX_COUNTED_PEERS = 4_096;
/** Finished jobs kept in memory; older ones are read back from the store when asked for. */
const RECENT_FINISHED_JOBS = 256;
const OUTPUT_FETCH_TIMEOUT_MS = 10_000;
/** Probability of a spot check when the submitter names none. */
const DEFAULT_SPOT_RATE = 0.1;
/** Replicas a spot job's spec signs: the smallest quorum that can outvote a liar on-chain. */
const SPOT_SPEC_REPLICAS = 4;
/**
 * How long a cancel waits for the executor's own answer: the last replica of a short job has
 * mostly finished when the verdict comes, and its receipt on its way makes the cancel moot.
 */
const CANCEL_DELAY_MS = 50;

/**
 * The buying half of a node: the shell around the job state machine (buyer-machine.ts).
 * It feeds the machine what happens (submissions, bids, answers, time) and carries out
 * what the machine asks for (announce, assign, probe, verify, fetch, write, emit). A job
 * that cannot be placed waits in the scheduler with its reason.
 */
export class Buyer {
  readonly #ports: BuyerPorts;
  readonly #settings: BuyerSettings;
  /**
   * Unfinished jobs (at most `buyer.maxUnfinishedJobs`: submit refuses more), plus the
   * `RECENT_FINISHED_JOBS` latest finished ones (oldest evicted first).
   */
  readonly #jobs = new Map<Hex, BuyerJobState>();
  /** Bounded by the unfinished jobs: a job is in it only while it waits to be placed. */
  readonly #scheduler = new JobScheduler<Hex>();
  readonly #events = new EventEmitter();
  /** Placements under way (asking for bids, assigning). */
  #inFlight = 0;
  /** Jobs this buyer has with each executor right now; an entry goes when its count reaches 0. */
  readonly #busy = new Map<string, number>();
  readonly #finished: Hex[] = [];
  /** One wake-up per unfinished job, cleared when the job settles. */
  readonly #wakes = new Map<Hex, { at: number; timer: NodeJS.Timeout }>();
  /**
   * Cancels waiting out CANCEL_DELAY_MS, by job and executor peer. Each entry lives at most
   * CANCEL_DELAY_MS, so the map holds at most the replicas settled in that time.
   */
  readonly #pendingCancels = new Map<string, NodeJS.Timeout>();
  /** Deliveries waiting for their answer; each is answered once its receipt is judged. */
  readonly #acks = new Map<number, (ack: { accepted: boolean; reason?: ReasonCode }) => void>();
  #ackSeq = 0;
  readonly #stats = {
    placements: 0,
    bidRequestsSent: 0,
    bidRequestsFailed: 0,
    discoveryRounds: 0,
    cancelsSent: 0,
    cancelsStopped: 0,
    cancelsSpared: 0,
  };
  /**
   * Jobs asked of each donor (for tests and benchmarks). Bound: `MAX_COUNTED_PEERS` entries;
   * a new donor beyond it pushes out the one counted first.
   */
  readonly #bidRequestsTo = new Map<string, number>();
  readonly #journal: BuyerJournal;
  #tick: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(ports: BuyerPorts) {
    this.#ports = ports;
    this.#journal = new BuyerJournal(ports.store, ports.log);
    const { config } = ports;
    this.#settings = {
      bidTimeoutMs: config.bidTimeoutMs,
      bidWindowMs: config.bidWindowMs,
      heartbeatMs: config.heartbeatMs,
      missedProbesSilent: 2,
      deliveryGraceMs: config.deliveryGraceMs,
      maxAttempts: config.maxAttempts,
      livenessMs: config.donorLivenessMs,
      minCandidates: config.minCandidates,
      candidatesPerReplica: config.candidatesPerReplica,
      backoff: DEFAULT_BACKOFF,
      placementBackoff: { ...DEFAULT_BACKOFF, maxMs: 2_000 },
      maxStoredBids: 64,
      maxEvents: 128,
      maxPastAttempts: 64,
      maxExtraReplicas: config.maxExtraReplicas,
      random: Math.random,
      ...(ports.trust
        ? { reputation: (operator, moduleCid) => ports.trust!.reputation(operator, moduleCid) }
        : {}),
    };
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
    this.#ports.network.stop();
    clearInterval(this.#tick);
    for (const { timer } of this.#wakes.values()) clearTimeout(timer);
    this.#wakes.clear();
    for (const timer of this.#pendingCancels.values()) clearTimeout(timer);
    this.#pendingCancels.clear();
    for (const resolve of this.#acks.values()) resolve({ accepted: false, reason: "shutting_down" });
    this.#acks.clear();
    this.#journal.close();
  }

  /**
   * What a job paid an executor (after its verdict, so also for a job no longer in memory):
   * shown to listeners and kept with the job's events.
   */
  notePayment(jobId: Hex, fields: Pick<JobEvent, "peerId" | "operator" | "detail">): void {
    const event: JobEvent = { jobId, type: "paid", at: this.#ports.clock.now(), ...fields };
    const job = this.#jobs.get(jobId);
    if (job && job.events.length < this.#settings.maxEvents) job.events.push(event);
    this.#events.emit("job", event);
    this.#journal.write(jobId, { type: "store_event", event });
  }

  on(listener: (event: JobEvent) => void): void {
    this.#events.on("job", listener);
  }

  off(listener: (event: JobEvent) => void): void {
    this.#events.off("job", listener);
  }

  get(jobId: Hex): JobView | undefined {
    const job = this.#jobs.get(jobId);
    if (job) return jobView(job);
    const row = this.#ports.store.jobs.get(jobId);
    const stored = row?.role === "buyer" ? this.#journal.storedJob(row) : undefined;
    return stored && jobView(stored);
  }

  /** This node's jobs, newest first (at most `limit`). */
  list(limit = 1_000): JobView[] {
    return this.#ports.store.jobs
      .list({ role: "buyer", limit })
      .map((row) => this.get(row.jobId as Hex))
      .filter((view): view is JobView => view !== undefined);
  }

  async submit(request: SubmitJobRequest): Promise<{ jobId: Hex }> {
    const { config, clock, network, store, signer } = this.#ports;
    const unfinished = this.#jobs.size - this.#finished.length;
    if (unfinished >= config.maxUnfinishedJobs)
      throw new Error(
        `this node has ${unfinished} unfinished jobs, the most buyer.maxUnfinishedJobs allows; submit again once some finish`,
      );
    const verification = verificationOf(request);
    const [moduleCid, inputCid] = (await Promise.all([cidOf(request.module), cidOf(request.input)])).map(
      String,
    ) as [string, string];
    const spec = buildJobSpec({
      buyer: signer.address,
      moduleCid: cidToBytes32(moduleCid),
      inputCid: cidToBytes32(inputCid),
      maxPricePerMegaFuel: request.maxPricePerMegaFuel ?? config.maxPricePerMegaFuel,
      fuelLimit: request.fuelLimit ?? config.defaultFuel,
      memoryPages: request.memoryPages,
      timeoutMs: request.timeoutMs,
      priority: request.priority,
      deadlineMs: request.deadlineMs,
      entry: request.entry,
      replicas: verification.mode === "spot" ? SPOT_SPEC_REPLICAS : (request.replicas ?? 1),
      now: clock.now(),
    });
    const signed = await signer.signJob(spec);
    const announce = toAnnounce(signed, {
      moduleCid,
      inputCid,
      moduleSize: request.module.byteLength,
      inputSize: request.input.byteLength,
      buyerPeer: network.peerId,
      providerAddrs: network.multiaddrs().slice(0, 8),
    });
    const job = newJobState(signed.jobId, spec, signed.signature, announce, verification);
    // Placement starts while the commit is pending: the commit runs before this node reads
    // any answer from the network, and submitJob returns only once it is stored (safe
    // against a crash of the node; a job is no money, so it does not wait for an fsync).
    const stored = store.commit(
      () => {
        if (!store.blocks.has(moduleCid)) this.#journal.putBlock(moduleCid, request.module);
        this.#journal.putBlock(inputCid, request.input);
        store.jobs.insert({
          jobId: job.jobId,
          role: "buyer",
          spec: verification.mode === "spot" ? { announce, verification } : { announce },
          state: "queued",
          priority: job.priority,
          deadline: job.deadline,
        });
      },
      { durable: false },
    );
    this.#jobs.set(job.jobId, job);
    network.provide(moduleCid);
    // An inline input travels with the assignment; a DHT walk for it would only cost CPU.
    if (request.input.length > INLINE_INPUT_MAX_BYTES) network.provide(inputCid);
    this.#dispatch(job.jobId, { type: "submitted", now: clock.now() });
    this.#pump();
    this.#holdBack(job.jobId);
    try {
      await stored;
    } catch (err) {
      this.#dispatch(job.jobId, { type: "store_failed", now: clock.now(), detail: errorMessage(err) });
      throw err;
    }
    return { jobId: job.jobId };
  }

  /** Donor → buyer: bids and declines for jobs this node announced. */
  onBids(batch: BidBatch, from: string): BidAck {
    const { clock, donors } = this.#ports;
    if (donors.isBlocked(from)) return { type: "ack", received: 0 }; // quarantined or banned
    for (const offer of batch.offers) {
      const jobId = offer.type === "bid" ? offer.bid.jobId : offer.jobId;
      if (this.#blocked(from, offer.type === "bid" ? offer.bid.executor : undefined)) continue;
      if (!this.#jobs.has(jobId)) {
        this.#unknownJobOffer(jobId, from);
        continue;
      }
      donors.touch(from, clock.now());
      const known = donors.get(from);
      this.#dispatch(jobId, {
        type: "offer_received",
        now: clock.now(),
        from,
        offer:
          offer.type === "bid"
            ? { ...offer }
            : { type: "decline", reason: offer.reason, detail: offer.detail },
        donor: known && { operator: known.operator, staked: known.staked },
      });
    }
    return { type: "ack", received: batch.offers.length };
  }

  /** Executor → buyer: a receipt or an execution without result; answered once judged. */
  async onDelivery(delivery: ReceiptDelivery, from: string): Promise<ReceiptAck> {
    const jobId = delivery.type === "receipt" ? delivery.receipt.jobId : delivery.jobId;
    if (!this.#jobs.has(jobId) || this.#stopped)
      return { type: "ack", jobId, accepted: false, reason: "unknown_job" };
    const ack = ++this.#ackSeq;
    const answer = new Promise<{ accepted: boolean; reason?: ReasonCode }>((resolve) =>
      this.#acks.set(ack, resolve),
    );
    const now = this.#ports.clock.now();
    this.#ports.donors.touch(from, now);
    this.#spareCancel(jobId, from);
    this.#dispatch(
      jobId,
      delivery.type === "receipt"
        ? { type: "receipt_delivered", now, from, ack, receipt: { ...delivery } }
        : { type: "no_result_delivered", now, from, ack, reason: delivery.reason, detail: delivery.detail },
    );
    const { accepted, reason } = await answer;
    return { type: "ack", jobId, accepted, reason };
  }

  // ── the machine ────────────────────────────────────────────────────────────────────

  #dispatch(jobId: Hex, event: BuyerEvent): void {
    const job = this.#jobs.get(jobId);
    if (!job) {
      // The job settled and left memory: an answer owed to a delivery is "accepted".
      if ("ack" in event && event.ack !== undefined) this.#answer(event.ack, true);
      return;
    }
    this.#apply(job, step(job, event, this.#settings));
  }

  #apply(before: BuyerJobState, { job, effects }: Step): void {
    this.#jobs.set(job.jobId, job);
    this.#trackBusy(before, job);
    for (const effect of effects) this.#run(job, effect);
    if (isFinal(job) && !isFinal(before)) this.#retire(job.jobId);
    this.#arm(job);
  }

  #run(job: BuyerJobState, effect: BuyerEffect): void {
    const { network } = this.#ports;
    switch (effect.type) {
      case "announce":
        this.#stats.discoveryRounds++;
        return network.announce(job.announce);
      case "request_bids":
        return this.#requestBids(job, effect);
      case "queue":
        if (effect.reason === undefined) this.#scheduler.enqueue(queued(job), effect.notBefore);
        else this.#scheduler.park(queued(job), effect.reason, effect.notBefore, effect.detail);
        return queueMicrotask(() => this.#pump());
      case "unqueue":
        this.#scheduler.remove(job.jobId);
        return;
      case "placement_ended":
        this.#inFlight--;
        return queueMicrotask(() => this.#pump());
      case "check_bid":
        return detach(this.#ports.log, "checking a bid", this.#checkBid(job.jobId, effect));
      case "check_bid_signature":
        return detach(
          this.#ports.log,
          "checking a bid signature",
          this.#checkBidSignature(job.jobId, effect),
        );
      case "assign":
        return detach(this.#ports.log, "assigning a job", this.#assign(job, effect));
      case "probe":
        return detach(this.#ports.log, "status probe", this.#probe(job.jobId, effect));
      case "verify_receipt":
        return detach(this.#ports.log, "verifying a receipt", this.#verifyReceipt(job.jobId, effect));
      case "fetch_output":
        return detach(this.#ports.log, "fetching an output", this.#fetchOutput(job.jobId, effect));
      case "ack":
        return this.#answer(effect.ack, effect.accepted, effect.reason);
      case "emit":
        this.#events.emit("job", effect.event);
        return;
      case "misbehaved":
        return this.#ports.misbehaved(effect.peerId, effect.reason, effect.detail);
      case "cancel":
        return this.#cancelSoon(job.jobId, effect);
      case "verdict":
        return this.#tell("verdict", () => this.#ports.verdictListener?.onVerdict(effect.report));
      case "equivocation":
        return this.#tell("equivocation", () => this.#ports.verdictListener?.onEquivocation(effect.sighting));
      default:
        return this.#journal.write(job.jobId, effect);
    }
  }

  /** Re-arms the job's single wake-up for the machine's next time-based step. */
  #arm(job: BuyerJobState): void {
    const at = this.#stopped ? undefined : nextWakeAt(job);
    const armed = this.#wakes.get(job.jobId);
    if (armed?.at === at) return;
    if (armed) clearTimeout(armed.timer);
    if (at === undefined) {
      this.#wakes.delete(job.jobId);
      return;
    }
    const timer = setTimeout(
      () => {
        this.#wakes.delete(job.jobId);
        this.#dispatch(job.jobId, { type: "tick", now: this.#ports.clock.now() });
      },
      Math.max(0, at - this.#ports.clock.now()),
    );
    timer.unref();
    this.#wakes.set(job.jobId, { at, timer });
  }

  /** A quarantined or banned donor: not asked to bid, its bids dropped. */
  #blocked(peerId: string, operator?: string): boolean {
    const trust = this.#ports.trust;
    return (
      trust !== undefined &&
      (trust.isBlocked(peerId) || (operator !== undefined && trust.isBlocked(operator)))
    );
  }

  /** A listener's failure is logged: it never stops the job's own steps. */
  #tell(what: string, call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#ports.log.warn({ err: errorMessage(err) }, `the verdict listener failed on a ${what}`);
    }
  }

  /** Cancels an execution CANCEL_DELAY_MS from now unless its executor answers first. */
  #cancelSoon(jobId: Hex, effect: Extract<BuyerEffect, { type: "cancel" }>): void {
    const key = `${jobId} ${effect.peerId}`;
    clearTimeout(this.#pendingCancels.get(key));
    const timer = setTimeout(() => {
      this.#pendingCancels.delete(key);
      detach(this.#ports.log, "cancelling an execution", this.#cancel(jobId, effect));
    }, CANCEL_DELAY_MS);
    timer.unref();
    this.#pendingCancels.set(key, timer);
  }

  /** The executor answered (a receipt or no result): a cancel still waiting is not needed. */
  #spareCancel(jobId: Hex, from: string): void {
    const key = `${jobId} ${from}`;
    const timer = this.#pendingCancels.get(key);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#pendingCancels.delete(key);
    this.#stats.cancelsSpared++;
  }

  /** Best effort: an executor that does not hear the cancel finishes and its receipt is ignored. */
  async #cancel(jobId: Hex, { attempt, peerId }: Extract<BuyerEffect, { type: "cancel" }>): Promise<void> {
    const stopped = await this.#ports.network.cancel(peerId, jobId, attempt).catch(() => false);
    this.#stats.cancelsSent++;
    if (stopped) this.#stats.cancelsStopped++;
  }

  #answer(ack: number, accepted: boolean, reason?: ReasonCode): void {
    const resolve = this.#acks.get(ack);
    this.#acks.delete(ack);
    resolve?.({ accepted, reason });
  }

  // ── effects that wait on the network or on crypto ──────────────────────────────────

  #requestBids(job: BuyerJobState, { round, peers }: Extract<BuyerEffect, { type: "request_bids" }>): void {
    const { network, clock } = this.#ports;
    for (const peerId of peers) {
      this.#stats.bidRequestsSent++;
      this.#countRequest(peerId);
      network.requestBids(peerId, job.announce).then(
        (offers) => {
          if (offers.length > 0) this.onBids({ type: "bids", offers }, peerId);
        },
        (err: unknown) => {
          this.#stats.bidRequestsFailed++;
          this.#dispatch(job.jobId, {
            type: "bid_request_failed",
            now: clock.now(),
            round,
            from: peerId,
            detail: errorMessage(err),
          });
        },
      );
    }
  }

  #countRequest(peerId: string): void {
    const count = this.#bidRequestsTo.get(peerId) ?? 0;
    if (count === 0 && this.#bidRequestsTo.size >= MAX_COUNTED_PEERS)
      this.#bidRequestsTo.delete(this.#bidRequestsTo.keys().next().value!);
    this.#bidRequestsTo.set(peerId, count + 1);
  }

  /** Placement counters: placements started, bid requests sent (in all and per donor), discovery announcements. */
  stats(): BuyerStats {
    return {
      ...this.#stats,
      discovery: this.#ports.network.announceStats(),
      bidRequestsTo: Object.fromEntries(this.#bidRequestsTo),
    };
  }

  async #checkBid(jobId: Hex, effect: Extract<BuyerEffect, { type: "check_bid" }>): Promise<void> {
    const { clock, stakes } = this.#ports;
    const { offer, from, round } = effect;
    const checked = (fields: Pick<Extract<BuyerEvent, { type: "bid_checked" }>, "candidate" | "refusal">) =>
      this.#dispatch(jobId, { type: "bid_checked", now: clock.now(), from, round, ...fields });
    if (!peerKeyMatches(offer.peerKey, from))
      return checked({
        refusal: { reason: "bid_rejected_signature", detail: "the bid's peer key is not the bidder's" },
      });
    const bid = bidFromWire(offer.bid);
    if (bid.jobId !== jobId)
      return checked({ refusal: { reason: "bad_spec", detail: "the bid names another job" } });
    const stake = await stakes.status(bid.executor, offer.peerKey, from);
    if (stake === "unknown")
      return checked({
        refusal: { reason: "stake_unknown", detail: "the bidder's stake cannot be read right now" },
      });
    if (stake === "inactive")
      return checked({
        refusal: { reason: "bid_unstaked", detail: "the bidder is not an active staked donor" },
      });
    const candidate: BidCandidate = {
      peerId: from,
      operator: bid.executor,
      pricePerMegaFuel: bid.pricePerMegaFuel,
      expiresAt: bid.expiresAt,
      staked: true,
      stake: 0n,
      lastSeen: clock.now(),
      freeSlots: offer.freeSlots,
      bid: offer.bid,
      signature: offer.signature,
    };
    checked({ candidate });
  }

  async #checkBidSignature(
    jobId: Hex,
    { round, candidate }: Extract<BuyerEffect, { type: "check_bid_signature" }>,
  ): Promise<void> {
    const valid = await this.#ports.signer.verifyBid(candidate.bid, candidate.signature).catch(() => false);
    this.#dispatch(jobId, {
      type: "bid_signature_checked",
      now: this.#ports.clock.now(),
      round,
      peerId: candidate.peerId,
      valid,
    });
  }

  async #assign(
    job: BuyerJobState,
    { attempt, candidate }: Extract<BuyerEffect, { type: "assign" }>,
  ): Promise<void> {
    const { network, clock } = this.#ports;
    try {
      const response = await network.assign(candidate.peerId, {
        type: "assign",
        jobId: job.jobId,
        bid: candidate.bid,
        bidSignature: candidate.signature,
        attempt: Math.min(attempt, 64),
        inputBase64: this.#inlineInput(job),
      });
      this.#dispatch(job.jobId, { type: "assign_answered", now: clock.now(), attempt, response });
    } catch (err) {
      const reason = (err as { code?: string }).code === "timeout" ? "timeout" : "unreachable";
      this.#dispatch(job.jobId, {
        type: "assign_failed",
        now: clock.now(),
        attempt,
        reason,
        detail: errorMessage(err),
      });
    }
  }

  async #probe(jobId: Hex, { attempt, peerId }: Extract<BuyerEffect, { type: "probe" }>): Promise<void> {
    const { network, clock, config } = this.#ports;
    try {
      const status = await network.status(peerId, jobId, config.heartbeatMs);
      this.#dispatch(jobId, { type: "probe_answered", now: clock.now(), attempt, status });
    } catch {
      this.#dispatch(jobId, { type: "probe_failed", now: clock.now(), attempt });
    }
  }

  /** The receipt's signature, and the inline output's hash: the checks that cost CPU. */
  async #verifyReceipt(jobId: Hex, effect: Extract<BuyerEffect, { type: "verify_receipt" }>): Promise<void> {
    const { signer, clock } = this.#ports;
    const { attempt, receipt, ack } = effect;
    const refused = (detail: string) =>
      this.#dispatch(jobId, { type: "receipt_refused", now: clock.now(), attempt, detail, ack });
    if (!(await signer.verifyReceipt(receipt.receipt, receipt.signature).catch(() => false)))
      return refused("the receipt is not signed by its executor");
    let output: Uint8Array | undefined;
    if (receipt.outputBase64 !== undefined) {
      output = Buffer.from(receipt.outputBase64, "base64");
      if ((await cidOf(output)).toString() !== CID.parse(receipt.outputCid).toString())
        return refused("the inline output does not hash to its CID");
    }
    this.#dispatch(jobId, { type: "receipt_verified", now: clock.now(), attempt, receipt, output, ack });
  }

  async #fetchOutput(jobId: Hex, effect: Extract<BuyerEffect, { type: "fetch_output" }>): Promise<void> {
    const { network, clock } = this.#ports;
    const { attempt, peerId, receipt, ack } = effect;
    try {
      const output = await network.fetchBlock(
        CID.parse(receipt.outputCid),
        [peerId],
        OUTPUT_FETCH_TIMEOUT_MS,
      );
      this.#dispatch(jobId, { type: "output_fetched", now: clock.now(), attempt, receipt, output, ack });
    } catch (err) {
      this.#dispatch(jobId, {
        type: "output_failed",
        now: clock.now(),
        attempt,
        detail: errorMessage(err),
        ack,
      });
    }
  }

  /** A small input travels with the assignment, saving the executor a block fetch. */
  #inlineInput(job: BuyerJobState): string | undefined {
    if (job.announce.inputSize > INLINE_INPUT_MAX_BYTES) return undefined;
    const input = this.#ports.store.blocks.get(job.announce.inputCid);
    return input && Buffer.from(input).toString("base64");
  }

  /** A bid for a job this node never announced counts against its sender; one for a job that left memory does not. */
  #unknownJobOffer(jobId: Hex, from: string): void {
    const row = this.#ports.store.jobs.get(jobId);
    if (row?.role === "buyer") return;
    this.#ports.misbehaved(
      from,
      "bid_unknown_job",
      `an offer for job ${jobId}, which this node never announced`,
    );
  }

  // ── placement ──────────────────────────────────────────────────────────────────────

  #onTick(): void {
    const now = this.#ports.clock.now();
    for (const expired of this.#scheduler.expire(now)) {
      const detail = `still waiting (${expired.reason ?? "not placed"}) when the deadline passed`;
      this.#dispatch(expired.item, { type: "expired", now, detail });
    }
    this.#pump();
  }

  /**
   * Starts placements while known donors have free slots (at least one placement runs
   * regardless, so a job that cannot be placed learns why); the rest wait in the
   * scheduler, most urgent first.
   */
  #pump(): void {
    const { config, clock, donors } = this.#ports;
    const limit = Math.min(config.maxInFlight, Math.max(1, this.#freeSlots()));
    while (!this.#stopped && this.#inFlight < limit) {
      const next = this.#scheduler.next(clock.now());
      if (!next) return;
      const job = this.#jobs.get(next.item);
      if (!job) continue;
      const needed = Math.max(1, openSlots(job).length);
      const { chosen, passedOver } = donors.candidates(job.spec, {
        now: clock.now(),
        livenessMs: this.#settings.livenessMs,
        exclude: new Set([...job.excluded, ...activeAttempts(job).map((attempt) => attempt.peerId)]),
        limit: candidateLimit(needed, config),
        needed,
        busy: (peerId) => this.#busyWith(peerId),
        random: this.#settings.random,
        reputation:
          this.#settings.reputation &&
          ((operator) => this.#settings.reputation!(operator, job.announce.moduleCid)),
      });
      this.#inFlight++;
      this.#stats.placements++;
      const expected = chosen
        .filter((donor) => !this.#blocked(donor.peerId, donor.operator))
        .map((donor) => donor.peerId);
      this.#dispatch(job.jobId, { type: "place", now: clock.now(), expected, passedOver });
    }
  }

  /** A new job the scheduler holds back learns why: every known donor slot is taken, or no donor is known. */
  #holdBack(jobId: Hex): void {
    const job = this.#jobs.get(jobId);
    if (!job || job.state !== "announced" || !this.#scheduler.has(jobId) || isPlacing(job)) return;
    const donorsKnown = this.#ports.donors.all().some((donor) => donor.staked);
    this.#dispatch(jobId, {
      type: "held",
      now: this.#ports.clock.now(),
      reason: donorsKnown ? "slots_full" : "no_bid",
      detail: donorsKnown
        ? "every known donor slot is taken; waiting in the queue"
        : "no staked donor is known yet",
    });
  }

  #freeSlots(): number {
    const now = this.#ports.clock.now();
    let free = 0;
    for (const donor of this.#ports.donors.all()) {
      if (donor.staked && now - donor.lastSeen <= this.#settings.livenessMs)
        free += Math.max(0, donor.slots - this.#busyWith(donor.peerId));
    }
    return free;
  }

  #busyWith(peerId: string): number {
    return this.#busy.get(peerId) ?? 0;
  }

  /** Counts the executors a step put to work and those it freed. */
  #trackBusy(before: BuyerJobState, after: BuyerJobState): void {
    const was = activeAttempts(before).map((attempt) => attempt.peerId);
    const is = activeAttempts(after).map((attempt) => attempt.peerId);
    if (was.length === is.length && was.every((peerId, i) => peerId === is[i])) return;
    for (const peerId of is) this.#busy.set(peerId, this.#busyWith(peerId) + 1);
    let freed = false;
    for (const peerId of was) {
      const left = this.#busyWith(peerId) - 1;
      if (left > 0) this.#busy.set(peerId, left);
      else this.#busy.delete(peerId);
      freed ||= !is.includes(peerId);
    }
    if (freed) queueMicrotask(() => this.#pump());
  }

  /** Finished jobs stay in memory while recent; older ones are read back from the store. */
  #retire(jobId: Hex): void {
    const wake = this.#wakes.get(jobId);
    if (wake) clearTimeout(wake.timer);
    this.#wakes.delete(jobId);
    this.#finished.push(jobId);
    while (this.#finished.length > RECENT_FINISHED_JOBS) this.#jobs.delete(this.#finished.shift()!);
  }

  /**
   * Reloads this node's jobs after a restart. An unfinished job whose executor still owes
   * its receipt keeps that executor (probed again, its receipt accepted); the others are
   * placed again.
   */
  #restore(): void {
    const { store, clock } = this.#ports;
    const unfinished = store.jobs.byState(["queued", "announced", "assigned", "running"], { role: "buyer" });
    for (const row of unfinished) {
      const job = this.#journal.storedJob(row);
      if (!job) continue;
      this.#jobs.set(job.jobId, job);
      const assignments = this.#journal.assignments(row.jobId);
      this.#apply(job, restoreJobState(job, assignments, clock.now(), this.#settings));
    }
    const recent = store.jobs.list({ role: "buyer", limit: RECENT_FINISHED_JOBS }).reverse();
    for (const row of recent) {
      if (this.#jobs.has(row.jobId as Hex)) continue;
      const job = this.#journal.storedJob(row);
      if (!job) continue;
      this.#jobs.set(job.jobId, job);
      this.#finished.push(job.jobId);
    }
  }
}

export interface BuyerStats {
  /** Placements started (one bid round each). */
  placements: number;
  /** Bid requests sent (one per job and donor asked), and those that did not arrive. */
  bidRequestsSent: number;
  bidRequestsFailed: number;
  /** Rounds that also announced the job to all, as too few suitable donors were known. */
  discoveryRounds: number;
  /** Jobs gossiped for discovery, and jobs its rate limit left out. */
  discovery: { announced: number; dropped: number };
  /** Bid requests sent to each donor. */
  bidRequestsTo: Record<string, number>;
  /** Cancels sent to executors of replicated or reassigned jobs, and those that stopped a run. */
  cancelsSent: number;
  cancelsStopped: number;
  /** Cancels not sent: the executor's answer came within CANCEL_DELAY_MS. */
  cancelsSpared: number;
}

/** A submission's verification: spot checks at their rate, else a quorum of its replicas. */
function verificationOf(request: SubmitJobRequest): Verification {
  if (request.verification !== "spot") return { mode: "quorum" };
  const rate = request.spotRate ?? DEFAULT_SPOT_RATE;
  if (!(rate >= 0 && rate <= 1)) throw new Error(`spotRate must be within [0, 1], got ${rate}`);
  return { mode: "spot", rate, phase: "first" };
}

function queued(job: BuyerJobState) {
  return { jobId: job.jobId, priority: job.priority, deadline: job.deadline, item: job.jobId };
}
