// Settlement relaying (docs/settlement.md): a payee hands its latest vouchers to a relayer over
// `/cell/relay/1`; the relayer checks and keeps them durably, and its epoch settler puts them in
// its own batches next to its own vouchers, so many small payees share one settle transaction.
import { Queue } from "@libp2p/utils";
import { encodeFunctionData } from "viem";
import type { Address, Hex, TypedDataDomain } from "viem";
import type { Logger } from "pino";
import { channelIdOf, paymentChannelsAbi } from "../chain/index.ts";
import type { ChannelKey } from "../chain/index.ts";
import type { HeldVoucher, VoucherVault } from "../payments/index.ts";
import { cellDomain, verifyDigest, voucherDigestIn } from "../protocol/index.ts";
import type { RelayVoucherRow, RelayVouchersRepository, Store } from "../store/index.ts";
import type { Withdrawal } from "./epoch-settler.ts";
import { RELAY_BATCH_MAX } from "./relay-wire.ts";
import type { RelayRefusal, RelayRequest, RelayResult, RelayResults, RelayedVoucher } from "./relay-wire.ts";

/** A channel as the chain shows it. */
export interface RelayChannelView {
  deposit: bigint;
  paid: bigint;
  /** 0 while open, a unix time while closing, 2^64-1 once closed. */
  closesAt: bigint;
}

export type RelayDecision = { type: "accept" } | { type: "refuse"; reason: RelayRefusal; detail: string };

/**
 * Decides one handed voucher. `held`: the cumulative amount the relayer already holds for the
 * channel (undefined: none); `channel`: the chain's view (undefined: no such channel). Pure.
 */
export function checkHanded(
  held: bigint | undefined,
  cumulativeAmount: bigint,
  facts: { signatureValid: boolean; channel: RelayChannelView | undefined },
): RelayDecision {
  if (!facts.signatureValid)
    return {
      type: "refuse",
      reason: "bad_signature",
      detail: "not signed by the channel's signer in a form the contract takes",
    };
  const channel = facts.channel;
  if (!channel || channel.deposit === 0n)
    return { type: "refuse", reason: "unknown_channel", detail: "no such channel on-chain" };
  if (channel.closesAt !== 0n)
    return {
      type: "refuse",
      reason: "channel_closed",
      detail: "the channel is closing or closed: redeem it directly",
    };
  const base = held !== undefined && held > channel.paid ? held : channel.paid;
  if (cumulativeAmount <= base)
    return {
      type: "refuse",
      reason: "not_increasing",
      detail: `${cumulativeAmount} is not above the ${base} already held or paid`,
    };
  return { type: "accept" };
}

/** Where the relayer reads a channel from the chain (chain/actions.ts getChannel in the node). */
export interface RelayChainPort {
  channel(channelId: Hex): Promise<RelayChannelView>;
}

export interface RelayDeskOptions {
  store: Store;
  chain: RelayChainPort;
  chainId: number;
  paymentChannels: Address;
  /** Chain lookups running at once; more wait, up to `lookupsWaiting`, past it a voucher is refused `full`. */
  lookupsAtOnce?: number;
  lookupsWaiting?: number;
  /** How long a channel read from the chain is reused. */
  channelCacheMs?: number;
  log: Logger;
  now?: () => number;
}

/** Channels cached; when full the cache starts over. */
const CHANNEL_CACHE_MAX = 4_096;

interface Decoded {
  key: ChannelKey;
  channelId: Hex;
  cumulativeAmount: bigint;
  signature: Hex;
}

/**
 * The relayer's half of `/cell/relay/1`: verifies each handed voucher's signature, reads its
 * channel on-chain (cached, a few lookups at once), keeps the highest per channel and commits
 * the accepted ones durably before it answers.
 */
export class RelayDesk {
  readonly #options: RelayDeskOptions;
  readonly #now: () => number;
  readonly #domain: TypedDataDomain;
  readonly #lookups: Queue<RelayChannelView>;
  readonly #cacheMs: number;
  /** Channel views by id with the time read; bounded by CHANNEL_CACHE_MAX, cleared when full. */
  readonly #cache = new Map<Hex, { view: RelayChannelView; at: number }>();
  /** Accepted amounts waiting for their commit; an entry leaves when its commit ends. */
  readonly #pending = new Map<Hex, bigint>();

  constructor(options: RelayDeskOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#domain = cellDomain(options.chainId, options.paymentChannels);
    const concurrency = options.lookupsAtOnce ?? 4;
    this.#lookups = new Queue({ concurrency, maxSize: concurrency + (options.lookupsWaiting ?? 1_024) });
    this.#cacheMs = options.channelCacheMs ?? 15_000;
  }

  async receive(request: RelayRequest, fromPeer?: string): Promise<RelayResults> {
    const decoded = request.vouchers.map(decode);
    const signatures = await Promise.all(decoded.map((voucher) => this.#verify(voucher)));
    const channels = await Promise.all(
      decoded.map((voucher, index) => (signatures[index] ? this.#channel(voucher.channelId) : undefined)),
    );
    const results = await this.#decideAndStore(decoded, signatures, channels);
    const refused = results.filter((result) => result.status === "refused").length;
    this.#options.log.info({ from: fromPeer, handed: results.length, refused }, "vouchers handed to relay");
    return { type: "relay_results", results };
  }

  #verify({ channelId, cumulativeAmount, key, signature }: Decoded): Promise<boolean> {
    return verifyDigest(
      voucherDigestIn(this.#domain, { channelId, cumulativeAmount }),
      key.signer,
      signature,
    );
  }

  /** The channel's view, "full" when too many lookups wait. */
  async #channel(channelId: Hex): Promise<RelayChannelView | "full"> {
    const cached = this.#cache.get(channelId);
    if (cached && this.#now() - cached.at < this.#cacheMs) return cached.view;
    if (this.#lookups.size >= this.#lookups.maxSize) return "full";
    const view = await this.#lookups.add(() => this.#options.chain.channel(channelId));
    if (this.#cache.size >= CHANNEL_CACHE_MAX) this.#cache.clear();
    this.#cache.set(channelId, { view, at: this.#now() });
    return view;
  }

  async #decideAndStore(
    decoded: Decoded[],
    signatures: boolean[],
    channels: (RelayChannelView | "full" | undefined)[],
  ): Promise<RelayResult[]> {
    const repo = this.#options.store.relayVouchers;
    const accepted: { voucher: Decoded; index: number }[] = [];
    const results: RelayResult[] = decoded.map((voucher, index) => {
      const { channelId } = voucher;
      const channel = channels[index];
      if (channel === "full")
        return { status: "refused", channelId, reason: "full", detail: "too many channel lookups waiting" };
      const held = this.#pending.get(channelId) ?? repo.voucher(channelId)?.cumulativeAmount;
      const decision = checkHanded(held, voucher.cumulativeAmount, {
        signatureValid: signatures[index]!,
        channel,
      });
      if (decision.type === "refuse")
        return { status: "refused", channelId, reason: decision.reason, detail: decision.detail };
      this.#pending.set(channelId, voucher.cumulativeAmount);
      accepted.push({ voucher, index });
      return { status: "accepted", channelId };
    });
    if (accepted.length === 0) return results;
    try {
      const receivedAt = this.#now();
      await this.#options.store.commit(() => {
        for (const { voucher } of accepted) repo.put({ ...voucher, receivedAt });
      });
    } catch (err) {
      const detail = `could not store the voucher: ${(err as Error).message}`.slice(0, 256);
      for (const { voucher, index } of accepted)
        results[index] = { status: "refused", channelId: voucher.channelId, reason: "full", detail };
    } finally {
      for (const { voucher } of accepted)
        if (this.#pending.get(voucher.channelId) === voucher.cumulativeAmount)
          this.#pending.delete(voucher.channelId);
    }
    return results;
  }
}

function decode(wire: RelayedVoucher): Decoded {
  const key: ChannelKey = {
    buyer: wire.key.buyer,
    signer: wire.key.signer,
    payee: wire.key.payee,
    nonce: BigInt(wire.key.nonce),
  };
  return {
    key,
    channelId: channelIdOf(key).toLowerCase() as Hex,
    cumulativeAmount: BigInt(wire.cumulativeAmount),
    signature: wire.signature,
  };
}

/**
 * What a relayer's settler works from: its own payee ledger (when it is a donor too) joined with
 * the vouchers payees handed it. Own vouchers go first in a batch; the watchtower guards only the
 * node's own channels (each payee watches its own).
 */
export class RelayVault implements VoucherVault {
  readonly #handed: RelayVouchersRepository;
  readonly #own: VoucherVault | undefined;

  constructor(handed: RelayVouchersRepository, own?: VoucherVault) {
    this.#handed = handed;
    this.#own = own;
  }

  unsettled(limit: number): HeldVoucher[] {
    const own = this.#own?.unsettled(limit) ?? [];
    const room = limit - own.length;
    return room > 0 ? [...own, ...this.#handed.unsettled(room).map(heldOf)] : own;
  }

  latest(channelId: Hex): HeldVoucher | undefined {
    const own = this.#own?.latest(channelId);
    if (own) return own;
    const handed = this.#handed.voucher(channelId);
    return handed && heldOf(handed);
  }

  channels(): ChannelKey[] {
    return this.#own?.channels() ?? [];
  }

  recordPaid(channelId: Hex, paid: bigint): void {
    this.#own?.recordPaid(channelId, paid);
    this.#handed.setPaidOnChain(channelId, paid);
  }

  paidOnChain(channelId: Hex): bigint {
    const own = this.#own?.paidOnChain(channelId) ?? 0n;
    const handed = this.#handed.voucher(channelId)?.paidOnChain ?? 0n;
    return own > handed ? own : handed;
  }
}

function heldOf(row: RelayVoucherRow): HeldVoucher {
  return {
    key: row.key,
    channelId: row.channelId,
    cumulativeAmount: row.cumulativeAmount,
    signature: row.signature,
    receivedAt: row.receivedAt,
  };
}

// ── the payee's side ──────────────────────────────────────────────────────────────────

/** The payee's ports: its relayer, the chain, and its operator key's transactions. */
export interface RelayClientPorts {
  /** Sends one hand-over to the relayer and returns its answer (throws when unreachable). */
  hand(request: RelayRequest): Promise<RelayResults>;
  channel(channelId: Hex): Promise<RelayChannelView>;
  withdrawable(channelId: Hex): Promise<bigint>;
  /** Sends (and waits for) a withdrawPaid call from the operator key; the transaction hash once mined. */
  withdraw(purpose: string, call: { to: Address; data: Hex }): Promise<Hex | undefined>;
}

export interface RelayClientOptions {
  vault: VoucherVault;
  ports: RelayClientPorts;
  paymentChannels: Address;
  /** Vouchers looked at per run (the settler's maxVouchersPerBatch). */
  maxVouchers: number;
  log: Logger;
  now?: () => number;
}

/** What one run of the payee's hand-over did. */
export interface HandOverOutcome {
  /** Channels the chain showed paid above what was known, recorded in the vault. */
  paid: number;
  handed: number;
  accepted: number;
  refused: { channelId: Hex; reason: RelayRefusal; detail: string }[];
  /** withdrawPaid transactions mined, with the amount they moved to the payee. */
  withdrawals: Withdrawal[];
  /** Why the relayer could not be reached, when it could not. */
  unreachable: string | null;
}

/** Answers (and channels waiting for a withdrawal) kept per channel; when full the oldest goes first. */
const ANSWERS_MAX = 4_096;

/**
 * A payee that settles through a relayer: each run records what the chain shows paid on its
 * unsettled channels, withdraws what those payments credited, and hands the rest to the relayer.
 * It sends no settle transaction of its own and anchors no receipts.
 */
export class RelayClient {
  readonly #options: RelayClientOptions;
  readonly #now: () => number;
  /** The relayer's last answer per channel; bounded by ANSWERS_MAX, oldest evicted first. */
  readonly #answers = new Map<Hex, RelayResult>();
  /**
   * Paid channels whose credit is not yet withdrawn, kept until a withdrawal is mined; bounded by
   * ANSWERS_MAX, oldest evicted first (its credit stays withdrawable by anyone on-chain).
   */
  readonly #toWithdraw = new Map<Hex, HeldVoucher>();
  #runs = 0;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: RelayClientOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** The relayer's last answer for a channel. */
  answer(channelId: Hex): RelayResult | undefined {
    return this.#answers.get(channelId.toLowerCase() as Hex);
  }

  /** One run at a time; a call during a run runs after it. */
  run(): Promise<HandOverOutcome> {
    const next = this.#queue.then(
      () => this.#run(),
      () => this.#run(),
    );
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #run(): Promise<HandOverOutcome> {
    const outcome: HandOverOutcome = {
      paid: 0,
      handed: 0,
      accepted: 0,
      refused: [],
      withdrawals: [],
      unreachable: null,
    };
    const run = ++this.#runs;
    const { vault, maxVouchers } = this.#options;
    const newlyPaid = await this.#recordPaid(vault.unsettled(maxVouchers));
    outcome.paid = newlyPaid.length;
    for (const voucher of newlyPaid) this.#remember(this.#toWithdraw, voucher.channelId, voucher);
    const withdrawal = await this.#withdraw(`relay-withdraw:${this.#now()}:${run}`);
    if (withdrawal) outcome.withdrawals.push(withdrawal);
    const unsettled = vault.unsettled(maxVouchers);
    for (let start = 0; start < unsettled.length; start += RELAY_BATCH_MAX) {
      const chunk = unsettled.slice(start, start + RELAY_BATCH_MAX);
      try {
        this.#record(outcome, await this.#options.ports.hand(handOver(chunk)));
        outcome.handed += chunk.length;
      } catch (err) {
        outcome.unreachable = (err as Error).message.slice(0, 256);
        this.#options.log.warn({ err: outcome.unreachable }, "the relayer could not be reached");
        break;
      }
    }
    return outcome;
  }

  /** Reads each unsettled channel; those the chain paid beyond what the vault knew are recorded. */
  async #recordPaid(unsettled: HeldVoucher[]): Promise<HeldVoucher[]> {
    const { vault, ports } = this.#options;
    const paid: HeldVoucher[] = [];
    for (const voucher of unsettled) {
      const view = await ports.channel(voucher.channelId);
      if (view.paid <= vault.paidOnChain(voucher.channelId)) continue;
      vault.recordPaid(voucher.channelId, view.paid);
      paid.push(voucher);
    }
    return paid;
  }

  /**
   * One withdrawPaid over the paid channels with something to withdraw (anyone may; the money
   * goes to the payee). A channel stays to withdraw until a withdrawal of it is mined.
   */
  async #withdraw(purpose: string): Promise<Withdrawal | undefined> {
    const { ports, paymentChannels } = this.#options;
    const due: HeldVoucher[] = [];
    let amount = 0n;
    for (const voucher of [...this.#toWithdraw.values()]) {
      const withdrawable = await ports.withdrawable(voucher.channelId);
      if (withdrawable === 0n) this.#toWithdraw.delete(voucher.channelId);
      else due.push(voucher);
      amount += withdrawable;
    }
    if (due.length === 0) return undefined;
    const keys: ChannelKey[] = due.map((voucher) => voucher.key);
    const data = encodeFunctionData({ abi: paymentChannelsAbi, functionName: "withdrawPaid", args: [keys] });
    const txHash = await ports.withdraw(purpose, { to: paymentChannels, data });
    if (!txHash) return undefined;
    for (const voucher of due) this.#toWithdraw.delete(voucher.channelId);
    return { payee: due[0]!.key.payee, amount, txHash };
  }

  /** Sets `key` last in a map bounded by ANSWERS_MAX, evicting the oldest entry when full. */
  #remember<V>(map: Map<Hex, V>, key: Hex, value: V): void {
    map.delete(key);
    if (map.size >= ANSWERS_MAX) map.delete(map.keys().next().value!);
    map.set(key, value);
  }

  #record(outcome: HandOverOutcome, answer: RelayResults): void {
    for (const result of answer.results) {
      const channelId = result.channelId.toLowerCase() as Hex;
      this.#remember(this.#answers, channelId, result);
      if (result.status === "accepted") outcome.accepted++;
      else outcome.refused.push({ channelId, reason: result.reason, detail: result.detail });
    }
    if (outcome.refused.length > 0)
      this.#options.log.warn({ refused: outcome.refused }, "the relayer refused vouchers");
  }
}

/** The wire form of a payee's latest vouchers. */
export function handOver(vouchers: readonly HeldVoucher[]): RelayRequest {
  return {
    type: "relay",
    vouchers: vouchers.map((voucher) => ({
      key: {
        buyer: voucher.key.buyer,
        signer: voucher.key.signer,
        payee: voucher.key.payee,
        nonce: voucher.key.nonce.toString(),
      },
      cumulativeAmount: voucher.cumulativeAmount.toString(),
      signature: voucher.signature,
    })),
  };
}
