// Pays agreeing executors: after each accepted verdict, every agreeing replica's job amount is
// added to its payee's channel (durably), and the channel's newest voucher goes to the payee's
// node on /cell/voucher/1, coalesced per peer and resent until acknowledged.
import type { Address, Hex } from "viem";
import type {
  EquivocationSighting,
  ReplicaReceipt,
  VerdictListener,
  VerdictReport,
} from "../quorum/index.ts";
import type { ChannelKey } from "../chain/index.ts";
import type { BuyerChannels, DueVoucher } from "./buyer-channels.ts";
import { jobAmount } from "./pricing.ts";
import { VOUCHER_BATCH_MAX, VOUCHER_JOBS_MAX } from "./wire.ts";
import type { VoucherBatch, VoucherRefusal, VoucherResult, VoucherResults, ZkVoucherWire } from "./wire.ts";

/** A zk channel's voucher: the EIP-712 ZkVoucher signature and the EdDSA-Poseidon one. */
export interface ZkSignedVoucher {
  signature: Hex;
  zk: ZkVoucherWire;
}

export interface VoucherSenderPorts {
  channels: BuyerChannels;
  /** The payee (staking wallet) of an executor's operator key; undefined when it is not registered. */
  payeeOf(operator: Address): Promise<Address | undefined>;
  /**
   * The operator key's signature over Voucher(channelId, cumulativeAmount); for a ZkChannels
   * channel both of a zk voucher's signatures.
   */
  sign(channelId: Hex, cumulativeAmount: bigint, key: ChannelKey): Promise<Hex | ZkSignedVoucher>;
  /** Sends one batch to the payee's node and returns its answers. */
  send(peerId: string, batch: VoucherBatch): Promise<VoucherResults>;
  clock: { now(): number; after(delayMs: number, fire: () => void): () => void };
  /** Told of each job amount recorded on a channel (before its voucher is signed). */
  onPaid?(payment: {
    jobId: Hex;
    operator: Address;
    peerId: string;
    amount: bigint;
    channelId: Hex;
    cumulative: bigint;
  }): void;
  log: {
    debug(fields: object, message: string): void;
    info(fields: object, message: string): void;
    warn(fields: object, message: string): void;
  };
}

export interface VoucherSenderSettings {
  /** Vouchers due to one peer within this long leave in one request (default 20 ms). */
  coalesceMs?: number;
  /** First resend delay after a failure; it doubles up to `retryMaxMs` (defaults 1 s and 60 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Sends of one channel's voucher without an acknowledgement before it waits for the channel's next job (default 8). */
  maxAttempts?: number;
  /** How often payees owed jobs without a channel are tried again (default 30 s). */
  owedRetryMs?: number;
}

/** The payee holds this voucher or a newer one: nothing to resend. */
const HELD_BY_PAYEE: ReadonlySet<VoucherRefusal> = new Set(["duplicate", "not_increasing"]);

/**
 * A VerdictListener that pays. Dissenters, silent replicas and no-quorum verdicts are paid
 * nothing. Bounds: `#due` holds at most one entry per payee peer with unsent vouchers and each
 * entry at most one per channel; `#attempts` one per unacknowledged channel, deleted on
 * acknowledgement or when its attempts run out.
 */
export class VoucherSender implements VerdictListener {
  readonly #ports: VoucherSenderPorts;
  readonly #settings: Required<VoucherSenderSettings>;
  /** Peer → channels with a voucher due to it. */
  readonly #due = new Map<string, Set<Hex>>();
  /** Peer → cancel of its pending flush timer. */
  readonly #timers = new Map<string, () => void>();
  /** Peers with a request under way (one per peer at a time). */
  readonly #sending = new Set<string>();
  /** Channel → sends without an acknowledgement. */
  readonly #attempts = new Map<Hex, number>();
  /** Cancel of the timer that retries payees owed jobs. */
  #owedTimer: (() => void) | undefined;
  /** Payments under way (for `idle`). */
  readonly #working = new Set<Promise<unknown>>();
  #stopped = false;

  constructor(ports: VoucherSenderPorts, settings: VoucherSenderSettings = {}) {
    this.#ports = ports;
    ports.channels.onToppedUp((channel) => {
      if (channel.payeePeer !== null) this.#schedule(channel.payeePeer, channel.channelId, 0);
    });
    this.#settings = {
      coalesceMs: 20,
      retryMinMs: 1_000,
      retryMaxMs: 60_000,
      maxAttempts: 8,
      owedRetryMs: 30_000,
      ...settings,
    };
  }

  onVerdict(report: VerdictReport): void {
    if (report.outcome !== "accepted" || this.#stopped) return;
    for (const replica of report.agreeing) this.#track(this.#pay(report.jobId, replica));
  }

  onEquivocation(_sighting: EquivocationSighting): void {}

  /** Resends the vouchers a restarted node owes (channels with unacknowledged jobs), and retries owed jobs. */
  start(): void {
    for (const channel of this.#ports.channels.unacknowledged())
      if (channel.payeePeer !== null) this.#schedule(channel.payeePeer, channel.channelId, 0);
    if (this.#ports.channels.hasOwed()) this.#retryOwedLater(0);
  }

  stop(): void {
    this.#stopped = true;
    for (const cancel of this.#timers.values()) cancel();
    this.#timers.clear();
    this.#owedTimer?.();
    this.#owedTimer = undefined;
  }

  /** Tries the payees owed jobs again after `owedRetryMs` (one timer at a time). */
  #retryOwedLater(delayMs = this.#settings.owedRetryMs): void {
    if (this.#owedTimer || this.#stopped) return;
    this.#owedTimer = this.#ports.clock.after(delayMs, () => {
      this.#owedTimer = undefined;
      this.#track(this.#placeOwed());
    });
  }

  async #placeOwed(): Promise<void> {
    try {
      for (const { channel, payeePeer } of await this.#ports.channels.placeOwed())
        if (payeePeer !== null) this.#schedule(payeePeer, channel.channelId, this.#settings.coalesceMs);
    } catch (error) {
      this.#ports.log.warn({ err: (error as Error).message }, "could not place owed payments");
    }
    if (this.#ports.channels.hasOwed()) this.#retryOwedLater();
  }

  /** Resolves once every payment and send under way has ended. */
  async idle(): Promise<void> {
    while (this.#working.size > 0) await Promise.all(this.#working);
  }

  #track(work: Promise<unknown>): void {
    const tracked = work.finally(() => this.#working.delete(tracked));
    this.#working.add(tracked);
  }

  async #pay(jobId: Hex, replica: ReplicaReceipt): Promise<void> {
    const { operator, peerId } = replica;
    try {
      const amount = jobAmount(replica.pricePerMegaFuel, BigInt(replica.receipt.fuelUsed));
      if (amount === 0n) return;
      const payee = await this.#ports.payeeOf(operator);
      if (!payee) {
        this.#ports.log.warn({ jobId, operator }, "cannot pay an executor: its operator has no registration");
        return;
      }
      const paid = await this.#ports.channels.pay(payee, jobId, amount, peerId);
      if (paid.status === "owed") this.#retryOwedLater();
      if (paid.status !== "recorded") return;
      this.#ports.log.debug(
        { jobId, payee, channelId: paid.channel.channelId, amount, cumulative: paid.channel.cumulative },
        "job paid",
      );
      this.#ports.onPaid?.({
        jobId,
        operator,
        peerId,
        amount,
        channelId: paid.channel.channelId,
        cumulative: paid.channel.cumulative,
      });
      this.#schedule(peerId, paid.channel.channelId, this.#settings.coalesceMs);
    } catch (error) {
      this.#ports.log.warn({ jobId, operator, err: (error as Error).message }, "could not pay an executor");
    }
  }

  #schedule(peerId: string, channelId: Hex, delayMs: number): void {
    if (this.#stopped) return;
    let channels = this.#due.get(peerId);
    if (!channels) this.#due.set(peerId, (channels = new Set()));
    channels.add(channelId);
    if (this.#timers.has(peerId) || this.#sending.has(peerId)) return;
    this.#timers.set(
      peerId,
      this.#ports.clock.after(delayMs, () => {
        this.#timers.delete(peerId);
        this.#track(this.#flush(peerId));
      }),
    );
  }

  async #flush(peerId: string): Promise<void> {
    const due = this.#due.get(peerId);
    if (!due || this.#stopped) return;
    const channelIds = [...due].slice(0, VOUCHER_BATCH_MAX);
    for (const channelId of channelIds) due.delete(channelId);
    if (due.size === 0) this.#due.delete(peerId);
    this.#sending.add(peerId);
    const retry: Hex[] = [];
    const more: Hex[] = [];
    try {
      const vouchers = channelIds
        .map((channelId) => this.#ports.channels.dueVoucher(channelId, VOUCHER_JOBS_MAX))
        .filter((voucher): voucher is DueVoucher => voucher !== undefined);
      if (vouchers.length === 0) return;
      const results = await this.#exchange(peerId, vouchers);
      for (const voucher of vouchers) {
        const outcome = await this.#settle(peerId, voucher, results?.get(voucher.channelId.toLowerCase()));
        if (outcome === "retry") retry.push(voucher.channelId);
        if (outcome === "more") more.push(voucher.channelId);
      }
    } finally {
      this.#sending.delete(peerId);
      for (const channelId of more) this.#schedule(peerId, channelId, 0);
      for (const channelId of retry) this.#schedule(peerId, channelId, this.#backoff(channelId));
      const left = this.#due.get(peerId);
      if (left && left.size > 0 && !this.#timers.has(peerId)) this.#schedule(peerId, [...left][0]!, 0);
    }
  }

  /** Signs and sends the vouchers; their answers by channel id (lowercase), or undefined when the request failed. */
  async #exchange(peerId: string, vouchers: DueVoucher[]): Promise<Map<string, VoucherResult> | undefined> {
    const batch: VoucherBatch = {
      type: "vouchers",
      vouchers: await Promise.all(
        vouchers.map(async (voucher) => {
          const signed = await this.#ports.sign(voucher.channelId, voucher.cumulativeAmount, voucher.key);
          return {
            key: {
              buyer: voucher.key.buyer,
              signer: voucher.key.signer,
              payee: voucher.key.payee,
              nonce: voucher.key.nonce.toString(),
            },
            cumulativeAmount: voucher.cumulativeAmount.toString(),
            ...(typeof signed === "string" ? { signature: signed } : signed),
            jobs: voucher.jobs,
          };
        }),
      ),
    };
    try {
      const { results } = await this.#ports.send(peerId, batch);
      return new Map(results.map((result) => [result.channelId.toLowerCase(), result]));
    } catch (error) {
      this.#ports.log.warn(
        { peerId, vouchers: vouchers.length, err: (error as Error).message },
        "sending vouchers failed; they will be sent again",
      );
      return undefined;
    }
  }

  /** Applies one answer: acknowledged (and whether more is due), or to be sent again. */
  async #settle(
    peerId: string,
    voucher: DueVoucher,
    result: VoucherResult | undefined,
  ): Promise<"done" | "more" | "retry"> {
    const { channelId, cumulativeAmount } = voucher;
    if (result?.status === "accepted" || (result && HELD_BY_PAYEE.has(result.reason))) {
      if (result.status === "refused")
        this.#ports.log.info(
          { peerId, channelId, reason: result.reason },
          "the payee already holds this voucher",
        );
      await this.#ports.channels.acknowledge(channelId, cumulativeAmount);
      this.#attempts.delete(channelId);
      return this.#ports.channels.dueVoucher(channelId, 1) ? "more" : "done";
    }
    if (result)
      this.#ports.log.warn(
        { peerId, channelId, cumulativeAmount, reason: result.reason, detail: result.detail },
        "voucher refused",
      );
    if (result?.status === "refused" && result.reason === "channel_closed") {
      await this.#ports.channels.retire(channelId);
      this.#attempts.delete(channelId);
      this.#retryOwedLater(0);
      return "done";
    }
    const attempts = (this.#attempts.get(channelId) ?? 0) + 1;
    if (attempts >= this.#settings.maxAttempts) {
      this.#attempts.delete(channelId);
      this.#ports.log.warn(
        { peerId, channelId, cumulativeAmount, attempts },
        "voucher still not acknowledged; it goes again with the channel's next job",
      );
      return "done";
    }
    this.#attempts.set(channelId, attempts);
    return "retry";
  }

  #backoff(channelId: Hex): number {
    const attempts = this.#attempts.get(channelId) ?? 1;
    return Math.min(this.#settings.retryMaxMs, this.#settings.retryMinMs * 2 ** (attempts - 1));
  }
}
