// Follows the PaymentChannels channels that pay this node from the contract's events, and answers
// what a buyer's credit with this payee is.
import { isAddressEqual } from "viem";
import type { Address, Hex } from "viem";
import { CHANNEL_CLOSED, PollLoop, getChannel, paymentChannelsAbi } from "../chain/index.ts";
import type { ChainReader, ChannelKey } from "../chain/index.ts";
import type { Store } from "../store/index.ts";
import type { BuyerCredit } from "./credit.ts";
import type { PayeeChannelView, PayeeChannels } from "./payee-ledger.ts";

/** The meta key of the next block the channel book reads: a restarted node misses no event. */
export const CHANNEL_CURSOR_KEY = "payments.channelCursor";
/** Channels looked up on-chain and not found, remembered this long (an RPC call saved per voucher). */
const MISSING_TTL_MS = 5_000;
/** Channels remembered as missing; past it the oldest entry leaves. */
const MISSING_MAX = 1_024;
/**
 * On-chain lookups under way at once; a voucher for an unread channel beyond it is refused as
 * unknown (sent again, it finds the channel read from its events). Vouchers naming made-up
 * channels therefore cost the RPC at most this many calls at a time.
 */
const LOOKUPS_MAX = 4;

export interface ChannelBookOptions {
  reader: ChainReader;
  store: Store;
  /** This node's payee address. */
  payee: Address;
  pollMs: number;
  /** Most blocks asked for in one eth_getLogs call. */
  blockRange: number;
  /** Blocks behind the head that are followed. */
  confirmations: number;
  now?: () => number;
  log?: { warn(fields: object, message: string): void };
  /** Told of each channel event this book applied (the watchtower listens for closes). */
  onEvent?: (event: ChannelEvent) => void;
}

export type ChannelEvent =
  | { type: "opened"; channelId: Hex; key: ChannelKey; deposit: bigint }
  | { type: "topped_up"; channelId: Hex; deposit: bigint }
  | { type: "paid"; channelId: Hex; paid: bigint }
  | { type: "close_started"; channelId: Hex; closesAt: bigint }
  | { type: "closed"; channelId: Hex; paid: bigint };

/**
 * This payee's channels, kept in the store from ChannelOpened (payee = this node),
 * ChannelToppedUp, ChannelPaid, CloseStarted and ChannelClosed, read every `pollMs` from a
 * block cursor in `store.meta`. A channel a voucher names before its events were read is
 * looked up on-chain once and added.
 */
export class ChannelBook implements PayeeChannels {
  readonly #options: ChannelBookOptions;
  readonly #now: () => number;
  readonly #loop: PollLoop;
  /** Channel ids not found on-chain, with when; bounded by MISSING_MAX, oldest out first. */
  readonly #missing = new Map<Hex, number>();
  /** Lookups under way, by channel id; at most LOOKUPS_MAX. */
  readonly #lookups = new Map<Hex, Promise<PayeeChannelView | undefined>>();
  #synced = false;
  #pollsBehind = 0;

  constructor(options: ChannelBookOptions) {
    if (options.blockRange < 1) throw new Error(`blockRange must be at least 1, got ${options.blockRange}`);
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#loop = new PollLoop(() => this.#pollLogged(), options.pollMs);
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** True once a poll reached the chain's head. */
  get synced(): boolean {
    return this.#synced;
  }

  /** A buyer's standing with this payee, from the store alone. */
  creditOf(signer: Address): BuyerCredit {
    const repo = this.#options.store.payeeLedger;
    let unspentDeposit = 0n;
    for (const channel of repo.channelsOfSigner(signer)) {
      if (channel.closesAt !== 0n || !isAddressEqual(channel.key.payee, this.#options.payee)) continue;
      const held = repo.voucher(channel.channelId)?.cumulativeAmount ?? 0n;
      const spent = held > channel.paid ? held : channel.paid;
      if (channel.deposit > spent) unspentDeposit += channel.deposit - spent;
    }
    return { unspentDeposit, unpaid: repo.unpaid(signer) };
  }

  async channel(channelId: Hex, key: ChannelKey): Promise<PayeeChannelView | undefined> {
    const known = this.#options.store.payeeLedger.channel(channelId);
    if (known) return known;
    const missingSince = this.#missing.get(channelId);
    if (missingSince !== undefined && this.#now() - missingSince < MISSING_TTL_MS) return undefined;
    const underway = this.#lookups.get(channelId);
    if (underway) return underway;
    if (this.#lookups.size >= LOOKUPS_MAX) return undefined;
    const lookup = this.#lookUp(channelId, key).finally(() => this.#lookups.delete(channelId));
    this.#lookups.set(channelId, lookup);
    return lookup;
  }

  async #lookUp(channelId: Hex, key: ChannelKey): Promise<PayeeChannelView | undefined> {
    const state = await getChannel(this.#options.reader, channelId);
    if (state.deposit === 0n) {
      this.#missing.delete(channelId);
      if (this.#missing.size >= MISSING_MAX) this.#missing.delete(this.#missing.keys().next().value!);
      this.#missing.set(channelId, this.#now());
      return undefined;
    }
    await this.#options.store.commit(
      () => this.#options.store.payeeLedger.putChannel({ channelId, key, ...state }),
      {
        durable: false,
      },
    );
    return state;
  }

  async #pollLogged(): Promise<void> {
    try {
      await this.poll();
    } catch (err) {
      this.#options.log?.warn({ err: (err as Error).message }, "reading PaymentChannels' events failed");
    }
  }

  /** Reads every new block's channel events up to the head (less the confirmations). */
  async poll(): Promise<void> {
    const { reader, store, confirmations } = this.#options;
    const { publicClient, deployment } = reader;
    const target = (await publicClient.getBlockNumber({ cacheTime: 0 })) - BigInt(confirmations);
    if (this.#wentBack(target)) return;
    let from = this.#cursor() ?? deployment.deployBlock;
    let range = BigInt(this.#options.blockRange);
    while (from <= target) {
      const to = from + range - 1n < target ? from + range - 1n : target;
      let logs;
      try {
        logs = await publicClient.getContractEvents({
          address: deployment.paymentChannels,
          abi: paymentChannelsAbi,
          fromBlock: from,
          toBlock: to,
          strict: true,
        });
      } catch (err) {
        // Providers cap a call's block range or result count: halve the range, down to one block.
        if (to === from) throw err;
        range = (to - from + 1n) / 2n;
        continue;
      }
      const events = logs.map((log) => channelEventOf(log)).filter((event) => event !== undefined);
      const applied = await store.commit(
        () => {
          const done = events.filter((event) => this.#apply(event));
          store.meta.set(CHANNEL_CURSOR_KEY, (to + 1n).toString());
          return done;
        },
        { durable: false },
      );
      for (const event of applied) this.#options.onEvent?.(event);
      from = to + 1n;
    }
    this.#synced = true;
  }

  /**
   * A head below the cursor once may be a lagging RPC node behind a load balancer: that poll is
   * skipped. Twice in a row, the chain went back (a restarted devnet, a deep reorganisation):
   * the channels are read again from the deployment block.
   */
  #wentBack(target: bigint): boolean {
    const cursor = this.#cursor();
    if (cursor === undefined || target + 1n >= cursor) {
      this.#pollsBehind = 0;
      return false;
    }
    if (++this.#pollsBehind < 2) return true;
    this.#pollsBehind = 0;
    const { store } = this.#options;
    store.transaction(() => {
      store.payeeLedger.clearChannels();
      store.meta.delete(CHANNEL_CURSOR_KEY);
    });
    this.#options.log?.warn(
      { cursor: cursor.toString(), head: target.toString() },
      "the chain went back: channels read again",
    );
    return false;
  }

  #cursor(): bigint | undefined {
    const saved = this.#options.store.meta.get(CHANNEL_CURSOR_KEY);
    return saved === undefined ? undefined : BigInt(saved);
  }

  /** Applies one event to the store; false when it concerns no channel of this payee. */
  #apply(event: ChannelEvent): boolean {
    const repo = this.#options.store.payeeLedger;
    if (event.type === "opened") {
      if (!isAddressEqual(event.key.payee, this.#options.payee)) return false;
      this.#missing.delete(event.channelId);
      repo.putChannel({
        channelId: event.channelId,
        key: event.key,
        deposit: event.deposit,
        paid: 0n,
        closesAt: 0n,
      });
      return true;
    }
    const channel = repo.channel(event.channelId);
    if (!channel) return false;
    const state = { deposit: channel.deposit, paid: channel.paid, closesAt: channel.closesAt };
    if (event.type === "topped_up") state.deposit = event.deposit;
    if (event.type === "paid" || event.type === "closed") {
      state.paid = event.paid;
      repo.setPaidOnChain(event.channelId, event.paid);
    }
    if (event.type === "close_started") state.closesAt = event.closesAt;
    if (event.type === "closed") state.closesAt = CHANNEL_CLOSED;
    repo.updateChannel(event.channelId, state);
    return true;
  }
}

interface DecodedLog {
  eventName: string;
  args: unknown;
}

/** The channel event a decoded PaymentChannels log stands for; undefined for the others. */
export function channelEventOf(log: DecodedLog): ChannelEvent | undefined {
  const args = log.args as Record<string, unknown>;
  const channelId = args.channelId as Hex;
  switch (log.eventName) {
    case "ChannelOpened":
      return {
        type: "opened",
        channelId,
        key: {
          buyer: args.buyer as Address,
          signer: args.signer as Address,
          payee: args.payee as Address,
          nonce: BigInt(args.nonce as bigint),
        },
        deposit: args.deposit as bigint,
      };
    case "ChannelToppedUp":
      return { type: "topped_up", channelId, deposit: args.deposit as bigint };
    case "ChannelPaid":
      return { type: "paid", channelId, paid: args.paid as bigint };
    case "CloseStarted":
      return { type: "close_started", channelId, closesAt: args.closesAt as bigint };
    case "ChannelClosed":
      return { type: "closed", channelId, paid: args.paid as bigint };
    default:
      return undefined;
  }
}
