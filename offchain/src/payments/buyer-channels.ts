// The buyer's channels: one open channel per payee, found or opened lazily, with what was
// signed on it, its spend rate and time to empty, and top-ups by policy.
import type { Address, Hex } from "viem";
import type { ChannelKey } from "../chain/index.ts";
import type { BuyerChannelRow, Store, UnackedJob } from "../store/index.ts";

/** A channel on-chain, as the buyer's chain port reports it. */
export interface ChainChannel {
  key: ChannelKey;
  channelId: Hex;
  deposit: bigint;
  /** What the channel has paid to date (redeemed or settled). */
  paid: bigint;
}

/** What the channel manager needs from the chain; the node binds it to PaymentChannels and the operator key. */
export interface ChannelChainPort {
  /** Opens a channel from the operator (buyer and signer) to `payee` with `deposit`, by permit. */
  open(payee: Address, deposit: bigint): Promise<ChainChannel>;
  /** Open, not closing, channels to `payee` whose signer is the operator (opened by the node or a wallet). */
  findOpen(payee: Address): Promise<ChainChannel[]>;
  /** Adds `amount` to the channel; resolves with its new deposit. */
  topUp(key: ChannelKey, amount: bigint): Promise<bigint>;
}

export interface ChannelLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface BuyerChannelSettings {
  /** Operator address: the signer of every voucher (and the buyer of channels the node opens). */
  operator: Address;
  /** Base units a new channel is opened with. */
  deposit: bigint;
  /** Top up when the unspent deposit falls below this fraction of the deposit. */
  topUpBelow: number;
  /** Base units a top-up adds; 0 never tops up. */
  topUpAmount: bigint;
  /** Warn when the unspent deposit falls below this fraction of the deposit. */
  lowBalanceFraction: number;
  /** How long a payee whose channel could not be opened waits before the next try (default 30 s). */
  openRetryMs?: number;
  /** The window the spend rate is measured over (default one hour). */
  spendWindowMs?: number;
}

/** What `pay` did with a job's amount. */
export type PayOutcome =
  { status: "recorded"; channel: BuyerChannelRow } | { status: "owed" } | { status: "paid_before" };

/** A channel as `GET /payments/channels` and `cell payments status` show it. */
export interface ChannelView {
  payee: Address;
  channelId: Hex;
  buyer: Address;
  signer: Address;
  nonce: bigint;
  state: "open" | "closed";
  deposit: bigint;
  /** Cumulative amount signed to date. */
  spent: bigint;
  /** Cumulative amount the payee acknowledged as stored. */
  acknowledged: bigint;
  remaining: bigint;
  /** Spend over the measuring window, scaled to one hour (base units). */
  spendPerHour: bigint;
  /** Seconds until the deposit runs out at the current rate; null while nothing is being spent. */
  secondsToEmpty: number | null;
  /** Unspent deposit below `lowBalanceFraction` of the deposit. */
  low: boolean;
}

/** The voucher a channel owes its payee now: the newest cumulative amount the oldest unacknowledged jobs reach. */
export interface DueVoucher {
  key: ChannelKey;
  channelId: Hex;
  cumulativeAmount: bigint;
  jobs: Hex[];
}

/** Payees with a recent failed open remembered; beyond it the oldest is forgotten (it may retry early). */
const OPEN_FAILURES_MAX = 4_096;
/** Spend windows kept; beyond it the least recently used is dropped (its rate restarts from zero). */
const SPEND_WINDOWS_MAX = 10_000;
/** Buckets of one spend window. */
const SPEND_BUCKETS = 60;
const HOUR_MS = 3_600_000;
const FRACTION_SCALE = 1_000_000n;

/**
 * The buyer's channel manager. One open per payee is in flight at a time; a payee's channel is
 * reused from the store, else from the chain (a wallet-opened channel whose signer is the
 * operator is preferred), else opened with the configured deposit. Every cumulative amount is
 * committed durably before anyone may sign it.
 */
export class BuyerChannels {
  readonly #chain: ChannelChainPort;
  readonly #store: Pick<Store, "buyerChannels" | "commit">;
  readonly #now: () => number;
  readonly #log: ChannelLog;
  readonly #settings: Required<BuyerChannelSettings>;
  /** Opens under way, one per payee (lowercase); removed when they settle. */
  readonly #opening = new Map<string, Promise<BuyerChannelRow>>();
  /** Payee (lowercase) → unix ms before which no new open is tried. */
  readonly #openFailedUntil = new Map<string, number>();
  /** Channel → spend buckets, least recently used first. */
  readonly #spend = new Map<Hex, SpendWindow>();
  /** Channels with a top-up under way: never two at once. */
  readonly #toppingUp = new Map<Hex, Promise<void>>();
  /** Channels reported low; cleared when they are no longer low (bounded by the open channels). */
  readonly #warnedLow = new Set<Hex>();
  /** Told when a top-up raised a channel's deposit (jobs above the old deposit may now be sent). */
  #onToppedUp: ((channel: BuyerChannelRow) => void) | undefined;

  constructor(
    ports: {
      chain: ChannelChainPort;
      store: Pick<Store, "buyerChannels" | "commit">;
      clock: { now(): number };
      log: ChannelLog;
    },
    settings: BuyerChannelSettings,
  ) {
    this.#chain = ports.chain;
    this.#store = ports.store;
    this.#now = () => ports.clock.now();
    this.#log = ports.log;
    this.#settings = { openRetryMs: 30_000, spendWindowMs: HOUR_MS, ...settings };
  }

  /** The open channel to `payee`, found or opened; concurrent calls share one open. */
  ensure(payee: Address): Promise<BuyerChannelRow> {
    const known = this.#store.buyerChannels.openTo(payee);
    if (known) return Promise.resolve(known);
    const id = payee.toLowerCase();
    const inFlight = this.#opening.get(id);
    if (inFlight) return inFlight;
    const retryAt = this.#openFailedUntil.get(id) ?? 0;
    if (retryAt > this.#now())
      return Promise.reject(
        new Error(
          `opening a channel to ${payee} failed recently; next try at ${new Date(retryAt).toISOString()}`,
        ),
      );
    const opening = this.#findOrOpen(payee).finally(() => this.#opening.delete(id));
    this.#opening.set(id, opening);
    return opening;
  }

  /**
   * Adds a job's amount to the payee's channel, with anything owed to it from before, and
   * commits it durably. With no channel to be had now the job is durably owed instead, and
   * moves onto the channel once one opens (`placeOwed`).
   */
  async pay(payee: Address, jobId: Hex, amount: bigint, payeePeer?: string): Promise<PayOutcome> {
    let channel: BuyerChannelRow;
    try {
      channel = await this.ensure(payee);
    } catch {
      // the failed open was logged once; the job waits, durably, for the payee's channel
      await this.#store.commit(() => this.#store.buyerChannels.owe(payee, jobId, amount, payeePeer));
      return { status: "owed" };
    }
    const { moved, cumulativeAmount } = await this.#store.commit(() => ({
      moved: this.#store.buyerChannels.moveOwed(payee, channel.channelId),
      cumulativeAmount: this.#store.buyerChannels.addJob(channel.channelId, jobId, amount, payeePeer),
    }));
    const spent = moved.reduce((sum, job) => sum + job.amount, cumulativeAmount === undefined ? 0n : amount);
    if (spent === 0n && cumulativeAmount === undefined) return { status: "paid_before" };
    return { status: "recorded", channel: this.#afterSpend(channel.channelId, spent) };
  }

  /**
   * Tries again to open channels to payees owed jobs, and moves their jobs onto them. Returns
   * the channels that got jobs, with the peer to send their vouchers to.
   */
  async placeOwed(): Promise<{ channel: BuyerChannelRow; payeePeer: string | null }[]> {
    const placed: { channel: BuyerChannelRow; payeePeer: string | null }[] = [];
    for (const { payee, payeePeer } of this.#store.buyerChannels.owedPayees()) {
      const channel = await this.ensure(payee).catch(() => undefined);
      if (!channel) continue;
      const moved = await this.#store.commit(() =>
        this.#store.buyerChannels.moveOwed(payee, channel.channelId),
      );
      const spent = moved.reduce((sum, job) => sum + job.amount, 0n);
      if (moved.length > 0) placed.push({ channel: this.#afterSpend(channel.channelId, spent), payeePeer });
    }
    return placed;
  }

  /** Payees owed jobs while they have no channel. */
  hasOwed(): boolean {
    return this.#store.buyerChannels.owedPayees(1).length > 0;
  }

  #afterSpend(channelId: Hex, amount: bigint): BuyerChannelRow {
    this.#recordSpend(channelId, amount);
    const channel = this.#store.buyerChannels.get(channelId)!;
    this.#checkBalance(channel);
    return channel;
  }

  /**
   * The voucher the channel's payee should get now: the oldest unacknowledged jobs, at most
   * `maxJobs`, up to the last one whose cumulative amount the deposit covers.
   */
  dueVoucher(channelId: Hex, maxJobs: number): DueVoucher | undefined {
    const channel = this.#store.buyerChannels.get(channelId);
    if (!channel) return undefined;
    const jobs = coveredPrefix(this.#store.buyerChannels.unacked(channelId, maxJobs), channel.deposit);
    const last = jobs.at(-1);
    if (!last) return undefined;
    return {
      key: channel.key,
      channelId,
      cumulativeAmount: last.cumulative,
      jobs: jobs.map((job) => job.jobId),
    };
  }

  /** The payee stored the voucher of `cumulativeAmount` (durably noted). */
  acknowledge(channelId: Hex, cumulativeAmount: bigint): Promise<void> {
    return this.#store.commit(() => this.#store.buyerChannels.acknowledge(channelId, cumulativeAmount));
  }

  /**
   * The payee says the channel is closing or closed: no voucher is signed on it again, and its
   * unacknowledged jobs are owed to the payee, for its next channel (durably noted).
   */
  async retire(channelId: Hex): Promise<number> {
    const owed = await this.#store.commit(() => this.#store.buyerChannels.retire(channelId));
    this.#spend.delete(channelId);
    this.#warnedLow.delete(channelId);
    this.#log.warn(
      { channelId, owed },
      "payment channel closed: its unacknowledged jobs go to the next channel",
    );
    return owed;
  }

  /** Channels with jobs whose vouchers the payee has not acknowledged (to resend after a restart). */
  unacknowledged(): BuyerChannelRow[] {
    return this.#store.buyerChannels.withUnacked();
  }

  /** Every channel this node pays through, with spend rate and time to empty. */
  views(): ChannelView[] {
    return this.#store.buyerChannels.list().map((channel) => this.#view(channel));
  }

  /** Sets who is told when a top-up raised a channel's deposit (the voucher sender). */
  onToppedUp(listener: (channel: BuyerChannelRow) => void): void {
    this.#onToppedUp = listener;
  }

  /** Resolves when every top-up under way has ended (for an orderly stop and tests). */
  async idle(): Promise<void> {
    await Promise.all([...this.#toppingUp.values(), ...this.#opening.values()].map((p) => p.catch(() => {})));
  }

  async #findOrOpen(payee: Address): Promise<BuyerChannelRow> {
    try {
      const retired = (channel: ChainChannel) =>
        this.#store.buyerChannels.get(channel.channelId)?.state === "closed";
      const found = pickReusable(
        (await this.#chain.findOpen(payee)).filter((channel) => !retired(channel)),
        this.#settings.operator,
      );
      if (found) {
        this.#log.info(
          { payee, channelId: found.channelId, deposit: found.deposit },
          "reusing a payment channel",
        );
        return await this.#remember(found, found.paid);
      }
      const opened = await this.#chain.open(payee, this.#settings.deposit);
      this.#log.info(
        { payee, channelId: opened.channelId, deposit: opened.deposit },
        "payment channel opened",
      );
      return await this.#remember(opened, 0n);
    } catch (error) {
      const retryAt = this.#noteOpenFailure(payee.toLowerCase());
      this.#log.warn(
        { payee, err: (error as Error).message, retryAt: new Date(retryAt).toISOString() },
        "could not open a payment channel: jobs its donor earns are owed until one opens",
      );
      throw error;
    }
  }

  #remember(channel: ChainChannel, alreadyPaid: bigint): Promise<BuyerChannelRow> {
    return this.#store.commit(
      () =>
        this.#store.buyerChannels.get(channel.channelId) ??
        this.#store.buyerChannels.insert({ ...channel, cumulative: alreadyPaid }),
    );
  }

  /** Remembers a failed open; returns when the payee may be tried again. */
  #noteOpenFailure(payee: string): number {
    const retryAt = this.#now() + this.#settings.openRetryMs;
    this.#openFailedUntil.delete(payee);
    this.#openFailedUntil.set(payee, retryAt);
    if (this.#openFailedUntil.size > OPEN_FAILURES_MAX)
      this.#openFailedUntil.delete(this.#openFailedUntil.keys().next().value!);
    return retryAt;
  }

  #recordSpend(channelId: Hex, amount: bigint): void {
    const window = this.#spend.get(channelId) ?? new SpendWindow(this.#settings.spendWindowMs);
    this.#spend.delete(channelId);
    this.#spend.set(channelId, window);
    if (this.#spend.size > SPEND_WINDOWS_MAX) this.#spend.delete(this.#spend.keys().next().value!);
    window.add(this.#now(), amount);
  }

  #checkBalance(channel: BuyerChannelRow): void {
    const remaining = channel.deposit - channel.cumulative;
    const low = below(remaining, channel.deposit, this.#settings.lowBalanceFraction);
    if (low && !this.#warnedLow.has(channel.channelId)) {
      this.#warnedLow.add(channel.channelId);
      this.#log.warn(
        { payee: channel.key.payee, channelId: channel.channelId, remaining, deposit: channel.deposit },
        "payment channel is running low",
      );
    } else if (!low) this.#warnedLow.delete(channel.channelId);
    if (this.#settings.topUpAmount > 0n && below(remaining, channel.deposit, this.#settings.topUpBelow))
      this.#topUp(channel);
  }

  #topUp(channel: BuyerChannelRow): void {
    if (this.#toppingUp.has(channel.channelId)) return;
    const amount = this.#settings.topUpAmount;
    const done = this.#chain
      .topUp(channel.key, amount)
      .then(async (deposit) => {
        await this.#store.commit(() => this.#store.buyerChannels.setDeposit(channel.channelId, deposit));
        this.#log.info(
          { payee: channel.key.payee, channelId: channel.channelId, amount, deposit },
          "payment channel topped up",
        );
        const updated = this.#store.buyerChannels.get(channel.channelId);
        if (!updated) return;
        if (!below(updated.deposit - updated.cumulative, updated.deposit, this.#settings.lowBalanceFraction))
          this.#warnedLow.delete(channel.channelId);
        this.#onToppedUp?.(updated);
      })
      .catch((error: unknown) =>
        this.#log.warn(
          { payee: channel.key.payee, channelId: channel.channelId, amount, err: (error as Error).message },
          "payment channel top-up failed",
        ),
      )
      .finally(() => this.#toppingUp.delete(channel.channelId));
    this.#toppingUp.set(channel.channelId, done);
  }

  #view(channel: BuyerChannelRow): ChannelView {
    const remaining = channel.deposit > channel.cumulative ? channel.deposit - channel.cumulative : 0n;
    const spendPerHour = this.#spend.get(channel.channelId)?.perHour(this.#now()) ?? 0n;
    return {
      payee: channel.key.payee,
      channelId: channel.channelId,
      buyer: channel.key.buyer,
      signer: channel.key.signer,
      nonce: channel.key.nonce,
      state: channel.state,
      deposit: channel.deposit,
      spent: channel.cumulative,
      acknowledged: channel.acked,
      remaining,
      spendPerHour,
      secondsToEmpty: secondsToEmpty(remaining, spendPerHour),
      low: below(remaining, channel.deposit, this.#settings.lowBalanceFraction),
    };
  }
}

/** Seconds until `remaining` is spent at `perHour`; null at a rate of zero. */
export function secondsToEmpty(remaining: bigint, perHour: bigint): number | null {
  if (perHour <= 0n) return null;
  return Number((remaining * 3_600n) / perHour);
}

/** `amount < fraction × total`, in integers. */
function below(amount: bigint, total: bigint, fraction: number): boolean {
  const scaled = BigInt(Math.round(fraction * Number(FRACTION_SCALE)));
  return amount * FRACTION_SCALE < total * scaled;
}

/** The leading jobs whose cumulative amounts the deposit covers. */
function coveredPrefix(jobs: UnackedJob[], deposit: bigint): UnackedJob[] {
  const end = jobs.findIndex((job) => job.cumulative > deposit);
  return end === -1 ? jobs : jobs.slice(0, end);
}

/** A wallet-opened channel (buyer ≠ operator) first, then the one with most unspent deposit. */
function pickReusable(channels: ChainChannel[], operator: Address): ChainChannel | undefined {
  const fromWallet = (channel: ChainChannel) => channel.key.buyer.toLowerCase() !== operator.toLowerCase();
  return [...channels].sort((a, b) => {
    if (fromWallet(a) !== fromWallet(b)) return fromWallet(a) ? -1 : 1;
    const left = a.deposit - a.paid;
    const right = b.deposit - b.paid;
    return left === right ? 0 : left > right ? -1 : 1;
  })[0];
}

/** Amounts spent per bucket of `windowMs / SPEND_BUCKETS` over the last `windowMs` (SPEND_BUCKETS buckets at most). */
export class SpendWindow {
  readonly #bucketMs: number;
  readonly #windowMs: number;
  readonly #buckets: { start: number; amount: bigint }[] = [];
  #firstAt: number | undefined;

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
    this.#bucketMs = Math.max(1, Math.floor(windowMs / SPEND_BUCKETS));
  }

  add(now: number, amount: bigint): void {
    this.#firstAt ??= now;
    const start = now - (now % this.#bucketMs);
    const last = this.#buckets.at(-1);
    if (last && last.start === start) last.amount += amount;
    else this.#buckets.push({ start, amount });
    this.#trim(now);
  }

  /**
   * The spend of the window scaled to one hour. A window younger than itself is measured over
   * its own age (at least one bucket), so a fresh channel shows a rate at once.
   */
  perHour(now: number): bigint {
    this.#trim(now);
    if (this.#firstAt === undefined || this.#buckets.length === 0) return 0n;
    const total = this.#buckets.reduce((sum, bucket) => sum + bucket.amount, 0n);
    const measuredMs = Math.min(this.#windowMs, Math.max(this.#bucketMs, now - this.#firstAt));
    return (total * BigInt(HOUR_MS)) / BigInt(measuredMs);
  }

  #trim(now: number): void {
    while (this.#buckets.length > 0 && this.#buckets[0]!.start + this.#windowMs <= now) this.#buckets.shift();
    while (this.#buckets.length > SPEND_BUCKETS) this.#buckets.shift();
  }
}
