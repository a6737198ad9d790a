// The payee's watchtower: when a buyer starts closing a channel this node holds a voucher for,
// it redeems the latest voucher at once, well inside the challenge window. On start it checks
// every such channel's state first, so a node that was offline during a close still redeems.
import { encodeFunctionData, parseEventLogs } from "viem";
import type { Hex } from "viem";
import type { Logger } from "pino";
import { CHANNEL_CLOSED, channelIdOf, getChannel, paymentChannelsAbi } from "../chain/index.ts";
import type { ChainReader, ChannelKey, ChannelState } from "../chain/index.ts";
import type { VoucherVault } from "../payments/index.ts";
import type { Store } from "../store/index.ts";
import { CallRefused } from "./tx-sender.ts";
import type { TxSender } from "./tx-sender.ts";

export interface WatchtowerOptions {
  store: Store;
  reader: ChainReader;
  sender: TxSender;
  vault: VoucherVault;
  log: Logger;
  pollMs: number;
  /** Most blocks asked for in one eth_getLogs call. */
  blockRange: number;
  now?: () => number;
}

/** What the watchtower did about one closing channel. */
export interface RedeemOutcome {
  channelId: Hex;
  state: "redeemed" | "nothing_to_redeem" | "closed" | "failed";
  cumulativeAmount: bigint;
  paid: bigint;
  txHash: Hex | null;
}

export const WATCHTOWER_CURSOR = "settlement.watchtowerCursor";
/** Channel ids per eth_getLogs topic filter; more channels take several calls. */
const TOPICS_PER_CALL = 256;
/** Outcomes kept for status; the oldest is dropped first. */
const OUTCOMES_MAX = 256;

export class Watchtower {
  readonly #options: WatchtowerOptions;
  readonly #now: () => number;
  readonly #outcomes: RedeemOutcome[] = [];
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #polling: Promise<unknown> = Promise.resolve();

  constructor(options: WatchtowerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** The latest redeem outcomes, oldest first (at most OUTCOMES_MAX). */
  outcomes(): readonly RedeemOutcome[] {
    return this.#outcomes;
  }

  /** Checks every channel's state, then follows CloseStarted every `pollMs`. */
  start(): void {
    const tick = () => {
      if (this.#stopped) return;
      this.#timer = setTimeout(() => {
        this.#polling = this.poll().catch(this.#warn).finally(tick);
      }, this.#options.pollMs);
      this.#timer.unref();
    };
    this.#polling = this.checkAll().catch(this.#warn).finally(tick);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#polling;
  }

  /**
   * Reads every channel's state: a closing one with a voucher above what it paid is redeemed,
   * a closed one's paid amount is recorded. Sets the log cursor to the head when it has none.
   */
  async checkAll(): Promise<RedeemOutcome[]> {
    const { reader, store } = this.#options;
    const head = await reader.publicClient.getBlockNumber({ cacheTime: 0 });
    const outcomes: RedeemOutcome[] = [];
    for (const key of this.#options.vault.channels()) {
      const state = await getChannel(reader, channelIdOf(key));
      if (state.closesAt === 0n) continue;
      outcomes.push(await this.#redeemRefusalsRecorded(key, state));
    }
    if (store.meta.get(WATCHTOWER_CURSOR) === undefined)
      store.meta.set(WATCHTOWER_CURSOR, (head + 1n).toString());
    return outcomes;
  }

  /** Reads CloseStarted of this node's channels since the cursor and redeems where behind. */
  async poll(): Promise<RedeemOutcome[]> {
    const { reader, store, blockRange } = this.#options;
    const head = await reader.publicClient.getBlockNumber({ cacheTime: 0 });
    const saved = store.meta.get(WATCHTOWER_CURSOR);
    let from = saved === undefined ? head : BigInt(saved);
    const keys = new Map(this.#options.vault.channels().map((key) => [channelIdOf(key), key]));
    const outcomes: RedeemOutcome[] = [];
    while (from <= head) {
      const to = from + BigInt(blockRange) - 1n < head ? from + BigInt(blockRange) - 1n : head;
      for (const channelId of await this.#closesStarted([...keys.keys()], from, to)) {
        const key = keys.get(channelId);
        if (key) outcomes.push(await this.#redeemRefusalsRecorded(key, await getChannel(reader, channelId)));
      }
      store.meta.set(WATCHTOWER_CURSOR, (to + 1n).toString());
      from = to + 1n;
    }
    return outcomes;
  }

  async #closesStarted(channelIds: readonly Hex[], fromBlock: bigint, toBlock: bigint): Promise<Hex[]> {
    const { reader } = this.#options;
    const found: Hex[] = [];
    for (let i = 0; i < channelIds.length; i += TOPICS_PER_CALL) {
      const logs = await reader.publicClient.getLogs({
        address: reader.deployment.paymentChannels,
        event: closeStartedEvent,
        args: { channelId: channelIds.slice(i, i + TOPICS_PER_CALL) },
        fromBlock,
        toBlock,
      });
      const parsed = parseEventLogs({ abi: paymentChannelsAbi, logs, eventName: "CloseStarted" });
      found.push(...parsed.map((log) => log.args.channelId));
    }
    return found;
  }

  /**
   * A redeem the contract refuses (a bad voucher in the ledger) is recorded as failed and does
   * not hold up the other channels; chain errors throw, and the pass is retried from its cursor.
   */
  async #redeemRefusalsRecorded(key: ChannelKey, state: ChannelState): Promise<RedeemOutcome> {
    try {
      return await this.#redeemIfBehind(key, state);
    } catch (error) {
      if (!(error instanceof CallRefused)) throw error;
      const channelId = channelIdOf(key);
      const cumulativeAmount = this.#options.vault.latest(channelId)?.cumulativeAmount ?? 0n;
      this.#options.log.warn({ channelId, refusal: error.errorName }, "redeem refused by the contract");
      return this.#record({ channelId, state: "failed", cumulativeAmount, paid: state.paid, txHash: null });
    }
  }

  async #redeemIfBehind(key: ChannelKey, state: ChannelState): Promise<RedeemOutcome> {
    const { vault, reader, sender, log } = this.#options;
    const channelId = channelIdOf(key);
    const held = vault.latest(channelId);
    const cumulativeAmount = held?.cumulativeAmount ?? 0n;
    const payable = cumulativeAmount < state.deposit ? cumulativeAmount : state.deposit;
    const base = { channelId, cumulativeAmount, paid: state.paid, txHash: null };
    if (state.closesAt === CHANNEL_CLOSED) {
      vault.recordPaid(channelId, state.paid);
      return this.#record({ ...base, state: payable > state.paid ? "closed" : "nothing_to_redeem" });
    }
    if (!held || payable <= state.paid) {
      vault.recordPaid(channelId, state.paid);
      return this.#record({ ...base, state: "nothing_to_redeem" });
    }
    const nowSeconds = BigInt(Math.floor(this.#now() / 1000));
    log.info(
      {
        channelId,
        closesAt: state.closesAt.toString(),
        secondsLeft: (state.closesAt - nowSeconds).toString(),
      },
      "channel closing: redeeming",
    );
    const data = encodeFunctionData({
      abi: paymentChannelsAbi,
      functionName: "redeem",
      args: [held.key, held.cumulativeAmount, held.signature],
    });
    const outcome = await sender.send(`redeem:${channelId}:${held.cumulativeAmount}`, null, {
      to: reader.deployment.paymentChannels,
      data,
    });
    const after = await getChannel(reader, channelId);
    vault.recordPaid(channelId, after.paid);
    return this.#record({
      ...base,
      paid: after.paid,
      txHash: outcome.hash,
      state: outcome.state === "mined" ? "redeemed" : "failed",
    });
  }

  #record(outcome: RedeemOutcome): RedeemOutcome {
    this.#outcomes.push(outcome);
    if (this.#outcomes.length > OUTCOMES_MAX) this.#outcomes.shift();
    if (outcome.state !== "nothing_to_redeem")
      this.#options.log.info(
        {
          channelId: outcome.channelId,
          state: outcome.state,
          paid: outcome.paid.toString(),
          tx: outcome.txHash,
        },
        "watchtower outcome",
      );
    return outcome;
  }

  readonly #warn = (error: unknown): void => {
    this.#options.log.warn({ err: (error as Error).message }, "watchtower pass failed");
  };
}

const closeStartedEvent = paymentChannelsAbi.find(
  (item): item is Extract<(typeof paymentChannelsAbi)[number], { type: "event"; name: "CloseStarted" }> =>
    item.type === "event" && item.name === "CloseStarted",
)!;
