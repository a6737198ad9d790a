import type { Hex } from "viem";
import { RequestCoalescer } from "../p2p/index.ts";
import type { BuyerCredit, CreditLimits } from "../payments/index.ts";
import { checkAnnouncedJob } from "../market/index.ts";
import type { DonorPolicy } from "../market/index.ts";
import {
  INLINE_OUTPUT_MAX_BYTES,
  MARKET_BATCH_MAX,
  MESSAGE_LIMITS,
  cidOf,
  cidToBytes32,
  receiptToWire,
  verifyDigest,
} from "../protocol/index.ts";
import type {
  AssignBatch,
  AssignResponse,
  AssignResults,
  BidOffer,
  BidRequestAnswer,
  BidRequestBatch,
  CapabilityAdvert,
  JobAnnounce,
  JobAnnounceBatch,
  ReceiptAck,
  ReceiptDelivery,
  CancelRequest,
  CancelResponse,
  StatusRequest,
  StatusResponse,
} from "../protocol/index.ts";
import { errorMessage } from "./context.ts";
import { OUTBOX_LIMIT, cancellable, freeSlots, initialDonorState, statusOf, step } from "./donor-machine.ts";
import type { DonorEffect, DonorEvent, DonorMachineState, DonorTimer } from "./donor-machine.ts";
import type { DonorPorts } from "./donor-ports.ts";
import { AdvertPublisher } from "./advert-publisher.ts";
import type { AdvertTerms, AdvertTiming } from "./advert-publisher.ts";
import { MARKET_BATCHING } from "./protocols.ts";

export const RUNTIME_VERSION = "cell-wasm/1";
const FETCH_TIMEOUT_MS = 10_000;
/** Room in a delivery batch for everything but the inline outputs. */
const DELIVERY_ENVELOPE_BYTES = 2_048;
/** Signed receipts kept in memory for `executedReceipts()`; all of them are in the store. */
const RECENT_RECEIPTS = 1_000;
/**
 * How long a bid request's response waits for its answers (a signature each); one not ready
 * by then goes on `/cell/bid/1`. Well below the buyers' default bid timeout (3 s).
 */
const BID_ANSWER_WAIT_MS = 500;

export interface DonorOptions {
  policy: DonorPolicy;
  adverts: AdvertTiming;
  announcedJobsPerBuyerPerSecond: number;
  outstandingBidsPerBuyer: number;
  /** Bid only for buyers whose credit covers the job (needs `ports.credit`). */
  credit?: CreditLimits;
}

type SignedReceipt = { message: ReturnType<typeof receiptToWire>; signature: Hex };

/**
 * The executing half of a node: answers announced jobs with signed bids (or reasons not
 * to) by its policy, accepts assignments while it has free slots, fetches module and input
 * by CID, runs them, and delivers an EIP-712 receipt signed by its operator key to the
 * buyer. Every decision is the donor machine's (donor-machine.ts); this shell feeds it
 * events and performs its effects through the ports. Bids and deliveries to one buyer
 * travel in batches.
 */
export class Donor {
  readonly #ports: DonorPorts;
  readonly #options: DonorOptions;
  readonly #state: DonorMachineState;
  readonly #bids: RequestCoalescer<BidOffer, undefined>;
  readonly #deliveries: RequestCoalescer<ReceiptDelivery, ReceiptAck>;
  /** Assign requests waiting for their answer; each is answered (the machine answers every request). */
  readonly #answers = new Map<number, (response: AssignResponse) => void>();
  /**
   * Bid requests waiting for their answers, by buyer then job. Bounded by the requests the
   * mesh lets each buyer have open (its stream limit) × MARKET_BATCH_MAX jobs; every entry
   * leaves when answered or after BID_ANSWER_WAIT_MS.
   */
  readonly #awaitedOffers = new Map<string, Map<Hex, (offer: BidOffer) => void>>();
  /** One redelivery timer per job; bounded by the outbox and the failed jobs the machine keeps. */
  readonly #timers = new Map<Hex, () => void>();
  readonly #receipts: SignedReceipt[] = [];
  /** Runs under way, to stop one its buyer cancels; bounded by the slots (an entry leaves when its run ends). */
  readonly #runs = new Map<Hex, AbortController>();
  #cancelled = 0;
  #nextRequestId = 0;
  /** Jobs this node was asked to bid on: directly (as a candidate), and in discovery announcements. */
  readonly #asked = { bidRequests: 0, announcedJobs: 0, answeredInResponse: 0, answeredLater: 0 };
  readonly #adverts: AdvertPublisher;
  #advert: CapabilityAdvert | undefined;
  #stopping = false;

  constructor(ports: DonorPorts, options: DonorOptions) {
    this.#ports = ports;
    this.#options = options;
    this.#state = initialDonorState({
      operator: ports.signer.address,
      policy: options.policy,
      announcedJobsPerBuyerPerSecond: options.announcedJobsPerBuyerPerSecond,
      outstandingBidsPerBuyer: options.outstandingBidsPerBuyer,
      credit: ports.credit ? options.credit : undefined,
    });
    const { network } = ports;
    this.#bids = new RequestCoalescer({
      ...MARKET_BATCHING,
      send: async (buyerPeer, offers) => {
        await network.sendBids(buyerPeer, offers);
        return offers.map(() => undefined);
      },
    });
    this.#deliveries = new RequestCoalescer({
      ...MARKET_BATCHING,
      maxWeight: MESSAGE_LIMITS.deliveryBatch - DELIVERY_ENVELOPE_BYTES * MARKET_BATCH_MAX,
      weigh: (delivery) => (delivery.type === "receipt" ? (delivery.outputBase64?.length ?? 0) : 0),
      send: (buyerPeer, deliveries) => network.sendDeliveries(buyerPeer, deliveries),
    });
    this.#adverts = this.#advertPublisher();
  }

  /** The newest batch of receipts this node signed, if any. */
  get receiptBatchHead(): { cid: string; sequence: number } | undefined {
    return this.#ports.jobs.receiptBatchHead;
  }

  get busySlots(): number {
    return this.#state.busySlots;
  }

  signedReceipts(): SignedReceipt[] {
    return [...this.#receipts];
  }

  /** Starts the receipt log, redelivers the receipts a restart left unacknowledged, and advertises. */
  start(): void {
    const { jobs, clock } = this.#ports;
    jobs.start();
    this.#dispatch({ type: "restored", now: clock.now(), outbox: jobs.outbox(OUTBOX_LIMIT) });
    this.#adverts.start();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#dispatch({ type: "stopping" });
    this.#adverts.stop();
    for (const cancel of this.#timers.values()) cancel();
    this.#timers.clear();
    await this.#ports.jobs.stop();
  }

  /**
   * Buyer → executor: stop a job. Only the job's buyer peer (authenticated by the
   * connection) may; `stopped` says whether a run was stopped (false once its receipt is
   * being signed, or for a job this node does not hold).
   */
  onCancel(request: CancelRequest, from: string): CancelResponse {
    const stopped = cancellable(this.#state, request.jobId, from);
    if (stopped) {
      this.#cancelled++;
      this.#dispatch({ type: "cancel_requested", jobId: request.jobId, from });
    }
    return { type: "cancelled", jobId: request.jobId, stopped };
  }

  /** Jobs this node stopped because their buyer cancelled them. */
  get cancelledJobs(): number {
    return this.#cancelled;
  }

  /** Answers status probes for the jobs this node executes (also when the donor half is off). */
  /** The advert this donor last published (undefined before the first: not staked yet). */
  currentAdvert(): CapabilityAdvert | undefined {
    return this.#advert;
  }

  onStatus(request: StatusRequest): StatusResponse {
    return (
      statusOf(this.#state, request.jobId) ??
      this.#ports.jobs.storedStatus(request.jobId) ?? {
        type: "status",
        jobId: request.jobId,
        state: "unknown",
      }
    );
  }

  /**
   * Jobs this node was asked to bid on, directly and by announcement, and how its answers
   * went: in a bid request's response, or later on `/cell/bid/1`.
   */
  get askedStats(): {
    bidRequests: number;
    announcedJobs: number;
    answeredInResponse: number;
    answeredLater: number;
  } {
    return { ...this.#asked };
  }

  /**
   * Jobs a buyer announced to all (`buyer` is the gossip message's signed origin): each gets
   * a signed bid or a decline with its reason, sent back to the buyer together.
   */
  async onAnnounce(batch: JobAnnounceBatch, buyer: string): Promise<void> {
    this.#asked.announcedJobs += batch.jobs.length;
    await this.#consider(batch.jobs, buyer);
  }

  /**
   * Jobs a buyer asked this node, one of its few candidates, to bid on: decided as announced
   * jobs are, and the bids and declines ready within BID_ANSWER_WAIT_MS go back in the response.
   */
  async onBidRequest(batch: BidRequestBatch, buyer: string): Promise<BidRequestAnswer> {
    this.#asked.bidRequests += batch.jobs.length;
    const awaited = this.#awaitedOffers.get(buyer) ?? new Map<Hex, (offer: BidOffer) => void>();
    this.#awaitedOffers.set(buyer, awaited);
    const offers: BidOffer[] = [];
    // A job already awaited by another open request of this buyer is answered there.
    const mine = batch.jobs.map(({ jobId }) => jobId).filter((jobId) => !awaited.has(jobId));
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<void>((resolve) => {
      let waiting = mine.length;
      for (const jobId of mine)
        awaited.set(jobId, (offer) => {
          awaited.delete(jobId);
          offers.push(offer);
          if (--waiting === 0) resolve();
        });
      if (waiting === 0) resolve();
      timer = setTimeout(resolve, BID_ANSWER_WAIT_MS);
    });
    try {
      await this.#consider(batch.jobs, buyer);
      await answered;
    } finally {
      clearTimeout(timer);
      for (const jobId of mine) awaited.delete(jobId);
      if (awaited.size === 0) this.#awaitedOffers.delete(buyer);
    }
    return { type: "bids", offers };
  }

  async #consider(jobs: JobAnnounce[], buyer: string): Promise<void> {
    if (this.#stopping) return;
    const staked = await this.#ports.stakes.selfActive();
    const credit = this.#creditOf(jobs);
    this.#dispatch({ type: "announced", now: this.#ports.clock.now(), buyer, jobs, staked, credit });
  }

  /** The credit of each job's buyer with this payee, when this donor checks credit. */
  #creditOf(jobs: JobAnnounce[]): Map<string, BuyerCredit> | undefined {
    const book = this.#ports.credit;
    if (!book || !this.#options.credit) return undefined;
    const credit = new Map<string, BuyerCredit>();
    for (const { spec } of jobs) {
      const signer = spec.buyer.toLowerCase();
      if (!credit.has(signer)) credit.set(signer, book.creditOf(spec.buyer));
    }
    return credit;
  }

  /** A buyer's assignments: one answer each, in order; slots are taken before anything is awaited. */
  async onAssign(batch: AssignBatch, from: string): Promise<AssignResults> {
    const requests = batch.assignments.map((request) => ({ id: this.#nextRequestId++, request }));
    const answers = requests.map(
      ({ id }) => new Promise<AssignResponse>((resolve) => this.#answers.set(id, resolve)),
    );
    this.#dispatch({ type: "assigned", now: this.#ports.clock.now(), from, requests });
    return { type: "assign_results", results: await Promise.all(answers) };
  }

  #dispatch(event: DonorEvent): void {
    const { effects } = step(this.#state, event);
    for (const effect of effects) this.#perform(effect);
  }

  /** Runs an effect's work; its outcome, success or failure, comes back as one event. */
  #settle(work: () => Promise<DonorEvent>, onError: (detail: string) => DonorEvent): void {
    let outcome: Promise<DonorEvent>;
    try {
      outcome = work();
    } catch (err) {
      outcome = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    outcome
      .catch((err: unknown) => onError(errorMessage(err)))
      .then((event) => this.#dispatch(event))
      .catch((err: unknown) => this.#ports.log.warn({ err: errorMessage(err) }, "donor event failed"));
  }

  #perform(effect: DonorEffect): void {
    const { log, misbehaved } = this.#ports;
    switch (effect.type) {
      case "sign_bid":
        return this.#signBid(effect);
      case "send_offer": {
        const jobId = effect.offer.type === "bid" ? effect.offer.bid.jobId : effect.offer.jobId;
        const awaited = this.#awaitedOffers.get(effect.buyer)?.get(jobId);
        if (awaited) {
          this.#asked.answeredInResponse++;
          return awaited(effect.offer);
        }
        this.#asked.answeredLater++;
        this.#bids
          .request(effect.buyer, effect.offer)
          .catch((err: unknown) =>
            log.debug({ buyer: effect.buyer, err: errorMessage(err) }, "bids not delivered"),
          );
        return;
      }
      case "answer_assign":
        this.#answers.get(effect.requestId)?.(effect.response);
        this.#answers.delete(effect.requestId);
        return;
      case "check_spec":
        return this.#settle(
          async () => ({
            type: "spec_checked",
            jobId: effect.jobId,
            valid: await verifyDigest(effect.jobId, effect.job.spec.buyer, effect.job.signature),
          }),
          () => ({ type: "spec_checked", jobId: effect.jobId, valid: false }),
        );
      case "fetch_blocks":
        return this.#fetchBlocks(effect);
      case "run":
        return this.#run(effect);
      case "abort_run":
        this.#runs.get(effect.jobId)?.abort();
        return;
      case "persist_receipt":
        return this.#persistReceipt(effect);
      case "record_failure":
        this.#ports.jobs
          .recordFailure(effect, effect.reason)
          .catch((err: unknown) =>
            log.warn({ err: errorMessage(err) }, "could not record the failed execution"),
          );
        return;
      case "deliver":
        return this.#settle(
          async () => ({
            type: "delivery_acked",
            now: this.#ports.clock.now(),
            jobId: effect.jobId,
            ack: await this.#deliveries.request(effect.buyerPeer, effect.delivery),
          }),
          (detail) => ({
            type: "delivery_failed",
            now: this.#ports.clock.now(),
            jobId: effect.jobId,
            detail,
          }),
        );
      case "leave_outbox":
        this.#ports.jobs
          .leaveOutbox(effect.rowId)
          .catch((err: unknown) => log.warn({ err: errorMessage(err) }, "could not update the outbox"));
        return;
      case "schedule":
        return this.#schedule(effect.at, effect.timer);
      case "log":
        return log[effect.level](effect.fields, effect.message);
      case "misbehaved":
        return misbehaved(effect.peerId, effect.reason, effect.detail);
    }
  }

  #signBid(effect: Extract<DonorEffect, { type: "sign_bid" }>): void {
    const { signer, clock } = this.#ports;
    const { buyer, announce, bid } = effect;
    this.#settle(
      async () => {
        const check = await checkAnnouncedJob(signer.domain, announce, cidToBytes32, clock.now(), {
          verifySignature: false,
        });
        if (!check.ok)
          return {
            type: "bid_refused",
            buyer,
            jobId: announce.jobId,
            reason: check.reason,
            detail: check.detail,
          };
        const signature = await signer.signBid(bid);
        return {
          type: "bid_signed",
          now: clock.now(),
          buyer,
          announce,
          job: check.job,
          bid,
          signature,
          peerKey: signer.peerKey,
        };
      },
      (detail) => ({ type: "bid_refused", buyer, jobId: announce.jobId, reason: "internal_error", detail }),
    );
  }

  #fetchBlocks(effect: Extract<DonorEffect, { type: "fetch_blocks" }>): void {
    const { jobId, announce, inlineInput } = effect;
    this.#settle(
      async () => {
        const [module, input] = await Promise.all([
          this.#fetch(announce.moduleCid, announce, true),
          this.#input(announce, inlineInput),
        ]);
        return { type: "blocks_fetched", now: this.#ports.clock.now(), jobId, module, input };
      },
      (detail) => ({ type: "fetch_failed", jobId, detail }),
    );
  }

  /** The input that came with the assignment when it hashes to the job's input CID, else fetched. */
  async #input(announce: JobAnnounce, inline: Uint8Array | undefined): Promise<Uint8Array> {
    if (inline && (await cidOf(inline)).toString() === announce.inputCid) return inline;
    return this.#fetch(announce.inputCid, announce, false);
  }

  /** A block from the local store, else from the buyer or the job's providers; `keep` stores it (modules are reused). */
  async #fetch(cid: string, announce: JobAnnounce, keep: boolean): Promise<Uint8Array> {
    const { jobs, network } = this.#ports;
    const local = jobs.block(cid);
    if (local) return local;
    const bytes = await network.fetchBlock(
      cid,
      [...new Set([announce.buyerPeer, ...announce.providers])],
      FETCH_TIMEOUT_MS,
    );
    if (keep) await jobs.keepBlock(cid, bytes);
    return bytes;
  }

  #run(effect: Extract<DonorEffect, { type: "run" }>): void {
    const { runtime, clock } = this.#ports;
    const { jobId } = effect;
    const controller = new AbortController();
    this.#runs.set(jobId, controller);
    this.#settle(
      async () => {
        try {
          if (!runtime) throw new Error("this node runs no runtime");
          const result = await runtime.execute(effect.job, { signal: controller.signal });
          return { type: "executed", now: clock.now(), jobId, result };
        } finally {
          if (this.#runs.get(jobId) === controller) this.#runs.delete(jobId);
        }
      },
      (detail) => ({ type: "execution_threw", jobId, detail }),
    );
  }

  /** Signs the receipt and puts it on disk (in the outbox) before it is delivered. */
  #persistReceipt(effect: Extract<DonorEffect, { type: "persist_receipt" }>): void {
    const { signer, jobs } = this.#ports;
    const { jobId, output } = effect;
    this.#settle(
      async () => {
        const signature = await signer.signReceipt(effect.receipt);
        const delivery = {
          type: "receipt" as const,
          receipt: receiptToWire(effect.receipt),
          signature,
          outputCid: effect.outputCid,
          outputBase64:
            output.byteLength <= INLINE_OUTPUT_MAX_BYTES ? Buffer.from(output).toString("base64") : undefined,
        };
        const rowId = await jobs.persistReceipt(effect, delivery, output);
        this.#receipts.push({ message: delivery.receipt, signature });
        if (this.#receipts.length > RECENT_RECEIPTS) this.#receipts.shift();
        return { type: "receipt_persisted", jobId, rowId, delivery };
      },
      (detail) => ({ type: "persist_failed", jobId, detail }),
    );
  }

  #schedule(at: number, timer: DonorTimer): void {
    if (this.#stopping) return;
    const { clock } = this.#ports;
    this.#timers.get(timer.jobId)?.();
    const cancel = clock.after(Math.max(0, at - clock.now()), () => {
      this.#timers.delete(timer.jobId);
      this.#dispatch({ type: "timer_fired", now: clock.now(), timer });
    });
    this.#timers.set(timer.jobId, cancel);
  }

  /** Adverts on change plus a heartbeat (advert-publisher.ts), while this donor is staked. */
  #advertPublisher(): AdvertPublisher {
    const { stakes, signer, network, clock, log } = this.#ports;
    const policy = this.#options.policy;
    const terms = (): AdvertTerms => ({
      pricePerMegaFuel: policy.pricePerMegaFuel,
      slots: policy.slots,
      freeSlots: freeSlots(this.#state),
      maxFuel: policy.maxFuel,
      maxMemoryPages: policy.maxMemoryPages,
      multiaddrs: network.multiaddrs().slice(0, 8),
    });
    const publish = (seq: number, said: AdvertTerms) => {
      this.#advert = {
        type: "caps",
        seq,
        operator: signer.address,
        peerId: network.peerId,
        peerKey: signer.peerKey,
        pricePerMegaFuel: said.pricePerMegaFuel.toString(),
        slots: said.slots,
        freeSlots: said.freeSlots,
        fuelPerSecond: "100000000",
        maxFuel: said.maxFuel.toString(),
        maxMemoryPages: said.maxMemoryPages,
        runtimeVersion: RUNTIME_VERSION,
        multiaddrs: [...said.multiaddrs],
        timestamp: clock.now().toString(),
      };
      return network.publishAdvert(this.#advert);
    };
    return new AdvertPublisher(
      {
        now: () => clock.now(),
        after: (delayMs, fire) => clock.after(delayMs, fire),
        terms,
        selfActive: () => stakes.selfActive(),
        publish,
        onError: (err) => log.warn({ err: errorMessage(err) }, "capability advert failed"),
      },
      this.#options.adverts,
    );
  }
}
