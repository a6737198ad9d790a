// Follows the PaymentChannels and ZkChannels channels that pay this node from the contracts'
// events, and answers what a buyer's credit with this payee is.
import { isAddressEqual } from "viem";
import type { Address, Hex } from "viem";
import {
  CHANNEL_CLOSED,
  PollLoop,
  getChannel,
  paymentChannelsAbi,
  zkChannelOf,
  zkChannelsAbi,
} from "../chain/index.ts";
import type { ChainReader, ChannelKey } from "../chain/index.ts";
import type { Store } from "../store/index.ts";
import { zkChannelIdOf } from "../zk/index.ts";
import type { ZkPublicKey } from "../zk/index.ts";
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
  | { type: "opened"; channelId: Hex; key: ChannelKey; deposit: bigint; zk?: ZkPublicKey }
  | { type: "topped_up"; channelId: Hex; deposit: bigint }
  | { type: "paid"; channelId: Hex; paid: bigint }
  | { type: "close_started"; channelId: Hex; closesAt: bigint }
  | { type: "closed"; channelId: Hex; paid: bigint };

/**
 * This payee's channels, kept in the store from ChannelOpened (payee = this node),
 * ChannelToppedUp, ChannelPaid, CloseStarted and ChannelClosed, and from ZkChannels'
 * ZkChannelOpened, ZkToppedUp, ZkCloseStarted, ZkCloseFinalized, ZkWithdrawn and
 * ZkSettledBySignature (a zk channel under zkChannelIdOf(zkChannels, leaf), its leaf as its
 * key's nonce), read every `pollMs` from a block cursor in `store.meta`. A channel a voucher
 * names before its events were read is looked up on-chain once and added. Only PaymentChannels
 * events go to `onEvent` (the watchtower redeems PaymentChannels channels).
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

  async channel(channelId: Hex, key: ChannelKey, zkLeaf?: number): Promise<PayeeChannelView | undefined> {
    const known = this.#options.store.payeeLedger.channel(channelId);
    if (known) return known;
    const missingSince = this.#missing.get(channelId);
    if (missingSince !== undefined && this.#now() - missingSince < MISSING_TTL_MS) return undefined;
    const underway = this.#lookups.get(channelId);
    if (underway) return underway;
    if (this.#lookups.size >= LOOKUPS_MAX) return undefined;
    const lookup = (zkLeaf === undefined ? this.#lookUp(channelId, key) : this.#lookUpZk(channelId, zkLeaf))
      .catch((err: unknown) => {
        this.#options.log?.warn({ channelId, err: (err as Error).message }, "looking a channel up failed");
        return undefined;
      })
      .finally(() => this.#lookups.delete(channelId));
    this.#lookups.set(channelId, lookup);
    return lookup;
  }

  async #lookUp(channelId: Hex, key: ChannelKey): Promise<PayeeChannelView | undefined> {
    const state = await getChannel(this.#options.reader, channelId);
    if (state.deposit === 0n) return this.#noteMissing(channelId);
    await this.#options.store.commit(
      () => this.#options.store.payeeLedger.putChannel({ channelId, key, ...state }),
      {
        durable: false,
      },
    );
    return state;
  }

  #noteMissing(channelId: Hex): undefined {
    this.#missing.delete(channelId);
    if (this.#missing.size >= MISSING_MAX) this.#missing.delete(this.#missing.keys().next().value!);
    this.#missing.set(channelId, this.#now());
    return undefined;
  }

  /**
   * A ZkChannels leaf: its record (channelOf reverts for a leaf never opened) and its settlement
   * key from its ZkChannelOpened. Stored only when it pays this node.
   */
  async #lookUpZk(channelId: Hex, leaf: number): Promise<PayeeChannelView | undefined> {
    const { reader, store, payee } = this.#options;
    const zkChannels = reader.deployment.zkChannels;
    if (zkChannels === undefined || channelId !== zkChannelIdOf(zkChannels, leaf))
      return this.#noteMissing(channelId);
    const state = await zkChannelOf(reader, leaf).catch(() => undefined);
    if (!state) return this.#noteMissing(channelId);
    const [opened] = await reader.publicClient.getContractEvents({
      address: zkChannels,
      abi: zkChannelsAbi,
      eventName: "ZkChannelOpened",
      args: { leaf },
      fromBlock: reader.deployment.deployBlock,
      strict: true,
    });
    if (!opened) return this.#noteMissing(channelId);
    const channel = {
      channelId,
      key: { buyer: state.buyer, signer: state.signer, payee: state.payee, nonce: BigInt(leaf) },
      deposit: state.deposited,
      paid: state.withdrawn,
      closesAt: state.closeQueuedAt !== 0n ? CHANNEL_CLOSED : state.closesAt,
      zk: { ax: opened.args.ax, ay: opened.args.ay },
    };
    if (isAddressEqual(state.payee, payee))
      await store.commit(() => store.payeeLedger.putChannel(channel), { durable: false });
    return channel;
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
      let events: BookEvent[];
      try {
        events = await this.#eventsIn(from, to);
      } catch (err) {
        // Providers cap a call's block range or result count: halve the range, down to one block.
        if (to === from) throw err;
        range = (to - from + 1n) / 2n;
        continue;
      }
      const applied = await store.commit(
        () => {
          const done = events.filter(({ event }) => this.#apply(event));
          store.meta.set(CHANNEL_CURSOR_KEY, (to + 1n).toString());
          return done;
        },
        { durable: false },
      );
      for (const { event, zk } of applied) if (!zk) this.#options.onEvent?.(event);
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

  /** Both contracts' channel events in [from, to], in chain order. */
  async #eventsIn(from: bigint, to: bigint): Promise<BookEvent[]> {
    const { publicClient, deployment } = this.#options.reader;
    const range = { fromBlock: from, toBlock: to, strict: true } as const;
    const zkChannels = deployment.zkChannels;
    const [logs, zkLogs] = await Promise.all([
      publicClient.getContractEvents({
        address: deployment.paymentChannels,
        abi: paymentChannelsAbi,
        ...range,
      }),
      zkChannels === undefined
        ? []
        : publicClient.getContractEvents({ address: zkChannels, abi: zkChannelsAbi, ...range }),
    ]);
    const located = (log: { blockNumber: bigint; logIndex: number }) => ({
      blockNumber: log.blockNumber,
      logIndex: log.logIndex,
    });
    const events = [
      ...logs.map((log) => ({ event: channelEventOf(log), zk: false, ...located(log) })),
      ...zkLogs.map((log) => ({ event: zkChannelEventOf(log, zkChannels!), zk: true, ...located(log) })),
    ].filter((entry): entry is BookEvent & typeof entry => entry.event !== undefined);
    return events.sort((a, b) =>
      a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1,
    );
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
        ...(event.zk ? { zk: event.zk } : {}),
      });
      return true;
    }
    const channel = repo.channel(event.channelId);
    if (!channel) return false;
    const state = { deposit: channel.deposit, paid: channel.paid, closesAt: channel.closesAt };
    if (event.type === "topped_up") state.deposit = event.deposit;
    if ((event.type === "paid" || event.type === "closed") && event.paid > state.paid) {
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

/** A decoded event of either contract, with where it stands in the chain. */
interface BookEvent {
  event: ChannelEvent;
  /** From ZkChannels. */
  zk: boolean;
}

/**
 * The channel event a decoded ZkChannels log stands for; undefined for the others. A zk
 * channel is paid by ZkWithdrawn (the tree's paid amount) and ZkSettledBySignature; once its
 * CLOSE is queued (ZkCloseFinalized) it can be paid no more, which the book keeps as closed.
 */
export function zkChannelEventOf(log: DecodedLog, zkChannels: Address): ChannelEvent | undefined {
  const args = log.args as Record<string, unknown>;
  const leaf = args.leaf as number;
  const channelId = zkChannelIdOf(zkChannels, leaf);
  switch (log.eventName) {
    case "ZkChannelOpened":
      return {
        type: "opened",
        channelId,
        key: {
          buyer: args.buyer as Address,
          signer: args.signer as Address,
          payee: args.payee as Address,
          nonce: BigInt(leaf),
        },
        deposit: args.amount as bigint,
        zk: { ax: args.ax as bigint, ay: args.ay as bigint },
      };
    case "ZkToppedUp":
      return { type: "topped_up", channelId, deposit: args.deposited as bigint };
    case "ZkWithdrawn":
      return { type: "paid", channelId, paid: args.paid as bigint };
    case "ZkSettledBySignature":
      return { type: "paid", channelId, paid: args.cumulative as bigint };
    case "ZkCloseStarted":
      return { type: "close_started", channelId, closesAt: args.closesAt as bigint };
    case "ZkCloseFinalized":
      return { type: "close_started", channelId, closesAt: CHANNEL_CLOSED };
    default:
      return undefined;
  }
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
