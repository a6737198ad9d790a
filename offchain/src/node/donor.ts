import type { Hex } from "viem";
import { RequestCoalescer } from "../p2p/index.ts";
import { checkAnnouncedJob, decideBid } from "../market/index.ts";
import type { DonorPolicy, SignedJob } from "../market/index.ts";
import {
  CID,
  CapabilityAdvertSchema,
  INLINE_OUTPUT_MAX_BYTES,
  MARKET_BATCH_MAX,
  MESSAGE_LIMITS,
  PROTOCOL_ASSIGN,
  PROTOCOL_BID,
  PROTOCOL_RECEIPT,
  ReceiptStatus,
  TOPIC_CAPS,
  bidFromWire,
  bidToWire,
  cidOf,
  cidToBytes32,
  jobSpecFromWire,
  receiptToWire,
  signBid,
  signReceipt,
  verifyDigest,
} from "../protocol/index.ts";
import type {
  AssignRequest,
  AssignResponse,
  BidOffer,
  ExecutorState,
  JobAnnounce,
  JobAnnounceBatch,
  ReasonCode,
  Receipt,
  ReceiptAck,
  ReceiptDelivery,
  StatusRequest,
  StatusResponse,
} from "../protocol/index.ts";
import type { NodeContext } from "./context.ts";
import { MARKET_BATCHING, protocolSpecs } from "./protocols.ts";
import { detach, errorMessage, putKnownBlock, sleep } from "./context.ts";
import { ReceiptLog } from "./receipt-log.ts";

export const RUNTIME_VERSION = "cell-wasm/1";
/**
 * Bids kept for assignment. A buyer assigns within its bid round (milliseconds, at most
 * its bid timeout), so a busy donor needs only its last few seconds of bids; each holds
 * the announced job (~2 KB).
 */
const OFFER_LIMIT = 1_024;
const DELIVERY_ATTEMPTS = 4;
const DELIVERY_TIMEOUT_MS = 5_000;
/** Room in a delivery batch for everything but the inline outputs. */
const DELIVERY_ENVELOPE_BYTES = 2_048;
/** Signed receipts kept in memory for `executedReceipts()`; all of them are in the store. */
const RECENT_RECEIPTS = 1_000;

/** A bid this node made: the job as announced (its id checked), kept until assigned or expired. */
interface Offer {
  job: SignedJob;
  announce: JobAnnounce;
  expiresAt: bigint;
  pricePerMegaFuel: bigint;
}

interface Execution {
  job: SignedJob;
  announce: JobAnnounce;
  buyerPeer: string;
  /** The input, when it came with the assignment (hash-checked before use). */
  inlineInput?: Uint8Array;
  state: ExecutorState;
  reason?: ReasonCode;
  detail?: string;
}

/**
 * The executing half of a node: answers announced jobs with signed bids (or reasons not
 * to) by its policy, accepts assignments while it has free slots, fetches module and input
 * by CID, runs them, and delivers an EIP-712 receipt signed by its operator key to the
 * buyer. Bids and deliveries to one buyer travel in batches.
 */
export class Donor {
  readonly #ctx: NodeContext;
  readonly #policy: DonorPolicy;
  readonly #offers = new Map<Hex, Offer>();
  readonly #executions = new Map<Hex, Execution>();
  readonly #bids: RequestCoalescer<BidOffer, undefined>;
  readonly #deliveries: RequestCoalescer<ReceiptDelivery, ReceiptAck>;
  readonly #receipts: { message: ReturnType<typeof receiptToWire>; signature: Hex }[] = [];
  readonly #receiptLog: ReceiptLog;
  #advertTimer: NodeJS.Timeout | undefined;
  #stopping = false;

  constructor(ctx: NodeContext, policy: DonorPolicy) {
    this.#ctx = ctx;
    this.#policy = policy;
    this.#receiptLog = new ReceiptLog(ctx, ctx.config.donor.receiptBatchMs);
    this.#bids = new RequestCoalescer({
      ...MARKET_BATCHING,
      send: async (buyerPeer, offers) => {
        await ctx.mesh.request(buyerPeer, PROTOCOL_BID, protocolSpecs.bid, { type: "bids", offers });
        return offers.map(() => undefined);
      },
    });
    this.#deliveries = new RequestCoalescer({
      ...MARKET_BATCHING,
      maxWeight: MESSAGE_LIMITS.deliveryBatch - DELIVERY_ENVELOPE_BYTES * MARKET_BATCH_MAX,
      weigh: (delivery) => (delivery.type === "receipt" ? (delivery.outputBase64?.length ?? 0) : 0),
      send: async (buyerPeer, deliveries) => {
        const { acks } = await ctx.mesh.request(
          buyerPeer,
          PROTOCOL_RECEIPT,
          protocolSpecs.receipt,
          { type: "deliveries", deliveries },
          { timeoutMs: DELIVERY_TIMEOUT_MS },
        );
        return acks;
      },
    });
  }

  /** The newest batch of receipts this node signed, if any. */
  get receiptBatchHead(): { cid: string; sequence: number } | undefined {
    return this.#receiptLog.head;
  }

  get busySlots(): number {
    let busy = 0;
    for (const execution of this.#executions.values()) if (isBusy(execution.state)) busy++;
    return busy;
  }

  signedReceipts(): { message: ReturnType<typeof receiptToWire>; signature: Hex }[] {
    return [...this.#receipts];
  }

  async start(): Promise<void> {
    const { mesh } = this.#ctx;
    this.#receiptLog.start();
    await mesh.handle(PROTOCOL_ASSIGN, protocolSpecs.assign, async (batch, from) => ({
      type: "assign_results" as const,
      results: await Promise.all(batch.assignments.map((request) => this.#onAssign(request, from))),
    }));
    const advertise = () => detach(this.#ctx.log, "capability advert", this.#advertise());
    this.#advertTimer = setInterval(advertise, this.#ctx.config.donor.advertIntervalMs);
    this.#advertTimer.unref();
    advertise();
  }

  /** Answers status probes for the jobs this node executes (also when the donor half is off). */
  onStatus(request: StatusRequest): StatusResponse {
    const execution = this.#executions.get(request.jobId);
    if (execution)
      return { type: "status", jobId: request.jobId, state: execution.state, reason: execution.reason };
    const stored = this.#ctx.store.jobs.get(request.jobId);
    if (stored?.role === "executor") {
      const state: ExecutorState = stored.state === "completed" ? "done" : "failed";
      return {
        type: "status",
        jobId: request.jobId,
        state,
        reason: (stored.reason as ReasonCode | null) ?? undefined,
      };
    }
    return { type: "status", jobId: request.jobId, state: "unknown" };
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#advertTimer);
    await this.#receiptLog.stop();
  }

  async #advertise(): Promise<void> {
    if (this.#stopping) return;
    const ctx = this.#ctx;
    if (!(await ctx.stakes.isActive(ctx.operatorAddress, ctx.peerKeyHex))) return;
    const advert = {
      type: "caps" as const,
      operator: ctx.operatorAddress,
      peerId: ctx.mesh.peerId,
      peerKey: ctx.peerKeyHex,
      pricePerMegaFuel: this.#policy.pricePerMegaFuel.toString(),
      slots: this.#policy.slots,
      freeSlots: Math.max(0, this.#policy.slots - this.busySlots),
      fuelPerSecond: "100000000",
      maxFuel: this.#policy.maxFuel.toString(),
      maxMemoryPages: this.#policy.maxMemoryPages,
      runtimeVersion: RUNTIME_VERSION,
      multiaddrs: ctx.mesh.multiaddrs().slice(0, 8),
      timestamp: ctx.now().toString(),
    };
    await ctx.mesh.publish(TOPIC_CAPS, CapabilityAdvertSchema, advert, { maxBytes: MESSAGE_LIMITS.advert });
  }

  /**
   * Jobs a buyer announced (`buyer` is the gossip message's signed origin): each gets a
   * signed bid or a decline with its reason, sent back to the buyer together.
   */
  async onAnnounce(batch: JobAnnounceBatch, buyer: string): Promise<void> {
    if (this.#stopping) return;
    const jobs = batch.jobs.filter((job) => job.buyerPeer === buyer);
    if (jobs.length < batch.jobs.length)
      this.#ctx.log.debug({ buyer }, "ignored announced jobs whose buyer is not the announcer");
    const offers = await Promise.all(jobs.map((job) => this.#offer(job)));
    for (const offer of offers)
      this.#bids
        .request(buyer, offer)
        .catch((err: unknown) =>
          this.#ctx.log.debug({ buyer, err: errorMessage(err) }, "bids not delivered"),
        );
  }

  async #offer(announce: JobAnnounce): Promise<BidOffer> {
    const ctx = this.#ctx;
    const decline = (reason: ReasonCode, detail: string): BidOffer => ({
      type: "decline",
      jobId: announce.jobId,
      reason,
      detail,
    });
    if (this.#executions.has(announce.jobId))
      return decline("duplicate_operator", "this node already has the job");
    // The policy is cheap and declines most jobs of a busy donor: it goes before hashing the spec.
    const staked = await ctx.stakes.isActive(ctx.operatorAddress, ctx.peerKeyHex);
    const decision = decideBid(this.#policy, jobSpecFromWire(announce.spec), {
      staked,
      busySlots: this.busySlots,
      now: ctx.now(),
    });
    if (decision.type === "decline") return decline(decision.reason, decision.detail);
    const check = await checkAnnouncedJob(ctx.domain, announce, cidToBytes32, ctx.now(), {
      verifySignature: false,
    });
    if (!check.ok) return decline(check.reason, check.detail);

    const bid = {
      jobId: check.job.jobId,
      executor: ctx.operatorAddress,
      pricePerMegaFuel: decision.pricePerMegaFuel,
      expiresAt: decision.expiresAt,
    };
    const signature = await signBid(ctx.operator, ctx.domain, bid);
    this.#rememberOffer({ job: check.job, announce, ...bid });
    return {
      type: "bid",
      bid: bidToWire(bid),
      signature,
      peerKey: ctx.peerKeyHex,
      freeSlots: Math.max(0, this.#policy.slots - this.busySlots),
    };
  }

  async #onAssign(request: AssignRequest, from: string): Promise<AssignResponse> {
    const ctx = this.#ctx;
    const { jobId } = request;
    const reject = (reason: ReasonCode, detail: string): AssignResponse => ({
      type: "reject",
      jobId,
      reason,
      detail,
    });
    if (this.#stopping) return reject("shutting_down", "the node is stopping");
    const running = this.#executions.get(jobId);
    if (running) {
      if (running.buyerPeer !== from)
        return reject("bad_spec", "the assignment does not come from the job's buyer");
      return { type: "accept", jobId };
    }
    const bid = bidFromWire(request.bid);
    const offer = this.#offers.get(jobId);
    if (!offer || bid.jobId !== jobId || bid.executor.toLowerCase() !== ctx.operatorAddress.toLowerCase()) {
      return reject("bid_rejected_signature", "this node made no such bid");
    }
    if (offer.announce.buyerPeer !== from)
      return reject("bad_spec", "the assignment does not come from the job's buyer");
    if (bid.pricePerMegaFuel !== offer.pricePerMegaFuel)
      return reject("bid_rejected_price", "the price is not the one this node bid");
    if (offer.expiresAt <= BigInt(ctx.now())) return reject("bid_rejected_expired", "the bid has expired");
    if (this.busySlots >= this.#policy.slots)
      return reject("slots_full", `all ${this.#policy.slots} slots are busy`);
    // The job id was checked to be the spec's hash when this node bid.
    if (!(await verifyDigest(offer.job.jobId, offer.job.spec.buyer, offer.job.signature)))
      return reject("bad_signature", "the spec is not signed by its buyer");
    if (this.#executions.has(jobId)) return { type: "accept", jobId };

    const execution: Execution = {
      job: offer.job,
      announce: offer.announce,
      buyerPeer: from,
      inlineInput: request.inputBase64 === undefined ? undefined : Buffer.from(request.inputBase64, "base64"),
      state: "accepted",
    };
    this.#executions.set(jobId, execution);
    this.#offers.delete(jobId);
    detach(ctx.log, "execution", this.#execute(execution));
    return { type: "accept", jobId };
  }

  /** Offers are kept in the order they were made, so the oldest and the expired leave first. */
  #rememberOffer(offer: Offer): void {
    this.#offers.delete(offer.job.jobId); // a re-announced job: the newest bid counts
    this.#offers.set(offer.job.jobId, offer);
    const now = BigInt(this.#ctx.now());
    for (;;) {
      const oldest = this.#offers.values().next();
      if (oldest.done) return;
      if (this.#offers.size <= OFFER_LIMIT && oldest.value.expiresAt > now) return;
      this.#offers.delete(oldest.value.job.jobId);
    }
  }

  async #execute(execution: Execution): Promise<void> {
    const ctx = this.#ctx;
    const { job, announce } = execution;
    execution.state = "fetching";
    let module: Uint8Array;
    let input: Uint8Array;
    try {
      [module, input] = await Promise.all([
        this.#fetch(announce.moduleCid, announce, true),
        this.#input(execution),
      ]);
    } catch (err) {
      return this.#finishWithoutResult(execution, "fetch_failed", errorMessage(err));
    }

    execution.state = "running";
    const startedAt = BigInt(ctx.now());
    if (!ctx.runtime)
      return this.#finishWithoutResult(execution, "internal_error", "this node runs no runtime");
    const result = await ctx.runtime.execute({
      module,
      input,
      entry: job.spec.entry,
      fuelLimit: job.spec.fuelLimit,
      memoryPages: job.spec.memoryPages,
      timeoutMs: job.spec.timeoutMs,
    });
    const finishedAt = BigInt(ctx.now());
    if (result.kind === "no_result")
      return this.#finishWithoutResult(execution, "no_result", `${result.reason}: ${result.detail}`);

    const output = result.output;
    const outputCid = CID.parse(result.outputCid);
    const receipt: Receipt = {
      jobId: job.jobId,
      executor: ctx.operatorAddress,
      moduleCid: job.spec.moduleCid,
      inputCid: job.spec.inputCid,
      outputCid: cidToBytes32(outputCid),
      fuelUsed: result.fuelUsed,
      status: ReceiptStatus[result.status],
      startedAt,
      finishedAt,
    };
    const signature = await signReceipt(ctx.operator, ctx.domain, receipt);
    const delivery: ReceiptDelivery = {
      type: "receipt",
      receipt: receiptToWire(receipt),
      signature,
      outputCid: outputCid.toString(),
      outputBase64:
        output.byteLength <= INLINE_OUTPUT_MAX_BYTES ? Buffer.from(output).toString("base64") : undefined,
    };
    await this.#persistReceipt(execution, delivery, output);
    execution.state = "done";
    await this.#deliver(execution, delivery);
  }

  /** A block from the local store, else from the buyer or the job's providers; `keep` stores it (modules are reused). */
  async #input(execution: Execution): Promise<Uint8Array> {
    const inline = execution.inlineInput;
    if (inline && (await cidOf(inline)).toString() === execution.announce.inputCid) return inline;
    return this.#fetch(execution.announce.inputCid, execution.announce, false);
  }

  async #fetch(cidText: string, announce: JobAnnounce, keep: boolean): Promise<Uint8Array> {
    const local = this.#ctx.store.blocks.get(cidText);
    if (local) return local;
    const bytes = await this.#ctx.mesh.fetchBlock(CID.parse(cidText), {
      from: [...new Set([announce.buyerPeer, ...announce.providers])],
      timeoutMs: 10_000,
    });
    if (keep) await this.#ctx.store.blocks.putWithCid(cidText, bytes);
    return bytes;
  }

  async #finishWithoutResult(execution: Execution, reason: ReasonCode, detail: string): Promise<void> {
    execution.state = "failed";
    execution.reason = reason;
    execution.detail = detail.slice(0, 500);
    this.#ctx.log.info({ jobId: execution.job.jobId, reason, detail }, "job ended without a result");
    try {
      await this.#ctx.store.commit(() => this.#recordExecution(execution, "failed", { reason }), {
        durable: false,
      });
    } catch (err) {
      this.#ctx.log.warn({ err: errorMessage(err) }, "could not record the failed execution");
    }
    await this.#deliver(execution, {
      type: "no_result",
      jobId: execution.job.jobId,
      reason,
      detail: execution.detail,
    });
  }

  /** Sends the outcome to the buyer, retrying with backoff; the buyer can also learn it by probing status. */
  async #deliver(execution: Execution, delivery: ReceiptDelivery): Promise<void> {
    for (let attempt = 1; attempt <= DELIVERY_ATTEMPTS && !this.#stopping; attempt++) {
      try {
        const ack = await this.#deliveries.request(execution.buyerPeer, delivery);
        if (!ack.accepted)
          this.#ctx.log.warn({ jobId: execution.job.jobId, reason: ack.reason }, "buyer refused the receipt");
        break;
      } catch (err) {
        this.#ctx.log.debug(
          { jobId: execution.job.jobId, attempt, err: errorMessage(err) },
          "receipt delivery failed",
        );
        await sleep(200 * 2 ** attempt);
      }
    }
    this.#executions.delete(execution.job.jobId);
  }

  /**
   * Records an executed job in the caller's commit, with its outcome. Jobs are recorded
   * when they end: one that a crash cuts short leaves no row, its status answer is
   * "unknown", and its buyer reassigns it.
   */
  #recordExecution(
    execution: Execution,
    state: "completed" | "failed",
    outcome: { reason?: ReasonCode; result?: unknown },
  ): void {
    const { store } = this.#ctx;
    const { job, announce } = execution;
    const outcomeFields = { state, reason: outcome.reason ?? null, result: outcome.result };
    if (this.#recordedBefore(job.jobId)) store.jobs.update(job.jobId, outcomeFields);
    else
      store.jobs.insert({
        jobId: job.jobId,
        role: "executor",
        spec: { announce },
        priority: "normal",
        deadline: Number(job.spec.deadline),
        ...outcomeFields,
      });
  }

  /** Whether this node recorded the job already (it ran it before a restart, or ran it again). */
  #recordedBefore(jobId: Hex): boolean {
    return this.#ctx.store.jobs.has(jobId);
  }

  /** Output, receipt block and receipt row go to disk in one commit, before the receipt is delivered. */
  async #persistReceipt(
    execution: Execution,
    delivery: Extract<ReceiptDelivery, { type: "receipt" }>,
    output: Uint8Array,
  ): Promise<void> {
    const { store } = this.#ctx;
    const receiptBlock = new TextEncoder().encode(
      JSON.stringify({ receipt: delivery.receipt, signature: delivery.signature }),
    );
    const receiptCid = (await cidOf(receiptBlock)).toString();
    const stored = await store.commit(() => {
      putKnownBlock(this.#ctx, delivery.outputCid, output);
      putKnownBlock(this.#ctx, receiptCid, receiptBlock);
      // The job's row goes first: the receipt row points at it.
      this.#recordExecution(execution, "completed", {
        result: {
          outputCid: delivery.outputCid,
          fuelUsed: delivery.receipt.fuelUsed,
          status: delivery.receipt.status,
        },
      });
      const { row } = store.receipts.put({
        jobId: execution.job.jobId,
        executor: delivery.receipt.executor,
        message: delivery.receipt,
        signature: delivery.signature,
        cid: receiptCid,
      });
      return row;
    });
    this.#receipts.push({ message: delivery.receipt, signature: delivery.signature });
    if (this.#receipts.length > RECENT_RECEIPTS) this.#receipts.shift();
    this.#receiptLog.add(stored.id, execution.job.jobId, receiptCid);
    // A small output travels inline with the receipt; a DHT walk for it would only cost CPU.
    if (output.byteLength > INLINE_OUTPUT_MAX_BYTES) this.#ctx.provider.add(delivery.outputCid);
  }
}

function isBusy(state: ExecutorState): boolean {
  return state === "accepted" || state === "fetching" || state === "running";
}
