import type { Logger } from "pino";
import { BlockNotFoundError, getAddress } from "viem";
import type { AbiEvent, Address, Hex } from "viem";
import { donorRegistryAbi, juryCourtAbi, paymentChannelsAbi, zkChannelsAbi } from "../chain/abis.ts";
import type { ChainReader } from "../chain/clients.ts";
import { PollLoop } from "../chain/poll-loop.ts";
import type { PageQuery, Store } from "../store/index.ts";
import { indexLogs, settlementBatchOf, stateKeysOf } from "./core.ts";
import type { ChainLog, LogSource, SettlementBatches } from "./core.ts";

export interface IndexerOptions {
  /** Blocks behind the head that are indexed; a reorganisation within them is never seen. */
  confirmations: number;
  /** Most blocks asked for in one eth_getLogs call; a refused call is retried with half. */
  blockRange: number;
  /** How often the head is read once caught up. */
  pollMs: number;
  logger?: Logger;
}

export interface IndexerStatus {
  deployBlock: string;
  /** Newest block whose events are in the store. */
  indexedBlock?: string;
  /** The chain's head at the last poll, and the block indexed up to (head − confirmations). */
  head?: string;
  target?: string;
  /** Blocks between the head and the indexed block. */
  lag?: string;
  confirmations: number;
  /** The current (or last) catch-up: from where, to where, how far (0–100). */
  backfill: { from: string; to: string; percent: number; done: boolean } | undefined;
  /** Logs indexed since this process started, and reorganisations rolled back. */
  events: number;
  rollbacks: number;
  lastError?: string;
}

/** Transactions (settlement calldata) or block headers (times) read at once. */
const READS_AT_ONCE = 16;
/** How often a long backfill logs its progress. */
const PROGRESS_LOG_MS = 5_000;
/** Kept block hashes compared per step when looking for where a reorganisation began. */
const FORK_SEARCH_STEP = 32;

const ABI_EVENTS: Record<LogSource, readonly AbiEvent[]> = {
  registry: eventsOf(donorRegistryAbi),
  channels: eventsOf(paymentChannelsAbi),
  court: eventsOf(juryCourtAbi),
  // The queue's own events are left out: a batch's queue range and the channel events say what they did.
  zk: eventsOf(zkChannelsAbi).filter((event) => event.name !== "ZkQueued"),
};

/**
 * Follows DonorRegistry, PaymentChannels, JuryCourt and (when deployed) ZkChannels from their
 * deployment block into the
 * store's index (store/indexer.ts): each poll checks that the newest indexed block is still on
 * the chain (a changed hash rolls back from where the chains part and re-reads), then reads the
 * logs of every new block up to head − confirmations, `blockRange` blocks per call, decodes
 * settlement batches from their transactions and writes each range's rows in one transaction.
 */
export class ChainIndexer {
  readonly #reader: ChainReader;
  readonly #store: Store;
  readonly #options: IndexerOptions;
  readonly #sources: Map<Address, LogSource>;
  readonly #loop: PollLoop;
  #head: bigint | undefined;
  #target: bigint | undefined;
  #backfill: IndexerStatus["backfill"];
  #events = 0;
  #rollbacks = 0;
  #lastError: string | undefined;
  #polling: Promise<void> | undefined;
  #progressLoggedAt = 0;

  constructor(reader: ChainReader, store: Store, options: IndexerOptions) {
    if (!Number.isInteger(options.blockRange) || options.blockRange < 1)
      throw new Error(`indexer blockRange must be a positive integer, got ${options.blockRange}`);
    if (!Number.isInteger(options.confirmations) || options.confirmations < 0)
      throw new Error(`indexer confirmations must be a non-negative integer, got ${options.confirmations}`);
    this.#reader = reader;
    this.#store = store;
    this.#options = options;
    const { donorRegistry, paymentChannels, juryCourt, zkChannels } = reader.deployment;
    this.#sources = new Map<Address, LogSource>([
      [getAddress(donorRegistry), "registry"],
      [getAddress(paymentChannels), "channels"],
      ...(juryCourt ? ([[getAddress(juryCourt), "court"]] as const) : []),
      ...(zkChannels ? ([[getAddress(zkChannels), "zk"]] as const) : []),
    ]);
    this.#loop = new PollLoop(() => this.#pollLogged(), options.pollMs);
  }

  start(): void {
    this.#loop.start();
  }

  async stop(): Promise<void> {
    await this.#loop.stop();
  }

  status(): IndexerStatus {
    const indexed = this.#store.indexer.head()?.number;
    return {
      deployBlock: `${this.#reader.deployment.deployBlock}`,
      ...(indexed === undefined ? {} : { indexedBlock: `${indexed}` }),
      ...(this.#head === undefined ? {} : { head: `${this.#head}` }),
      ...(this.#target === undefined ? {} : { target: `${this.#target}` }),
      ...(this.#head === undefined
        ? {}
        : { lag: `${this.#head - (indexed ?? this.#reader.deployment.deployBlock - 1n)}` }),
      confirmations: this.#options.confirmations,
      backfill: this.#backfill,
      events: this.#events,
      rollbacks: this.#rollbacks,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    };
  }

  /** One pass: the reorganisation check, then every new confirmed block. One pass runs at a time. */
  poll(): Promise<void> {
    this.#polling ??= this.#poll().finally(() => (this.#polling = undefined));
    return this.#polling;
  }

  async #pollLogged(): Promise<void> {
    try {
      await this.poll();
      this.#lastError = undefined;
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#options.logger?.warn({ err: this.#lastError }, "indexing the chain failed; retrying");
    }
  }

  async #poll(): Promise<void> {
    const client = this.#reader.publicClient;
    this.#head = await client.getBlockNumber({ cacheTime: 0 });
    this.#target = this.#head - BigInt(this.#options.confirmations);
    await this.#checkReorg();
    const indexed = this.#store.indexer.head()?.number;
    let from = indexed === undefined ? this.#reader.deployment.deployBlock : indexed + 1n;
    const start = from;
    let range = BigInt(this.#options.blockRange);
    // A stop ends a long backfill between two ranges; the next start goes on from there.
    while (from <= this.#target && !this.#loop.stopped) {
      const to = min(from + range - 1n, this.#target);
      try {
        await this.#indexRange(from, to);
      } catch (err) {
        // Providers cap a call's block range or result count: halve the range, down to one block.
        if (to === from) throw err;
        range = (to - from + 1n) / 2n;
        continue;
      }
      this.#reportProgress(start, to, this.#target);
      from = to + 1n;
    }
  }

  #reportProgress(start: bigint, done: bigint, target: bigint): void {
    const span = target - start + 1n;
    const percent = span <= 0n ? 100 : Number(((done - start + 1n) * 10_000n) / span) / 100;
    const finished = done >= target;
    this.#backfill = { from: `${start}`, to: `${target}`, percent, done: finished };
    // A long backfill logs its progress every PROGRESS_LOG_MS, and once when it is done.
    const now = Date.now();
    const long = target - start + 1n > BigInt(this.#options.blockRange);
    if (!long || (!finished && now - this.#progressLoggedAt < PROGRESS_LOG_MS)) return;
    this.#progressLoggedAt = now;
    this.#options.logger?.info(
      { indexedBlock: `${done}`, target: `${target}`, percent, events: this.#events },
      finished ? "indexed the chain up to its head" : "indexing the chain",
    );
  }

  /** Reads, decodes and stores the logs of blocks `from`..`to`. */
  async #indexRange(from: bigint, to: bigint): Promise<void> {
    const client = this.#reader.publicClient;
    const last = await client.getBlock({ blockNumber: to });
    const raw = await client.getLogs({
      address: [...this.#sources.keys()],
      events: Object.values(ABI_EVENTS).flat(),
      fromBlock: from,
      toBlock: to,
      strict: true,
    });
    const times = await this.#blockTimes(raw);
    const logs: ChainLog[] = raw.map((log) => ({
      source: this.#sources.get(getAddress(log.address))!,
      eventName: log.eventName,
      args: log.args as Record<string, unknown>,
      blockNumber: log.blockNumber,
      blockHash: log.blockHash,
      logIndex: log.logIndex,
      transactionHash: log.transactionHash,
    }));
    // A reorganisation while the range was read would mix two chains: read the range again.
    const lastAfter = await client.getBlock({ blockNumber: to });
    if (
      lastAfter.hash !== last.hash ||
      logs.some((log) => log.blockNumber === to && log.blockHash !== last.hash)
    )
      throw new Error(`block ${to} changed while its range was read`);
    const batches = await this.#settlementBatches(logs);
    const repo = this.#store.indexer;
    const keys = stateKeysOf(logs, batches);
    const { rows } = indexLogs(
      {
        stakes: repo.stakesOf(keys.donors),
        channels: repo.channelsOf(keys.channels),
        zkChannels: repo.zkChannelsOf(keys.zkLeaves),
      },
      logs,
      batches,
    );
    const blocks = new Map<bigint, Hex>(logs.map((log) => [log.blockNumber, log.blockHash]));
    blocks.set(to, last.hash);
    // The index can be read again from the chain: its commits skip the fsync (store.commit).
    await this.#store.commit(
      () =>
        repo.write(
          rows,
          [...blocks].map(([number, hash]) => ({ number, hash })),
          times,
        ),
      { durable: false },
    );
    this.#events += logs.length;
  }

  /** The time of each block with logs: from the logs where the node gives it, else from the block's header. */
  async #blockTimes(
    logs: readonly { blockNumber: bigint; blockTimestamp?: bigint | null | undefined }[],
  ): Promise<Map<bigint, bigint>> {
    const times = new Map<bigint, bigint>();
    const missing = new Set<bigint>();
    for (const log of logs)
      if (typeof log.blockTimestamp === "bigint") times.set(log.blockNumber, log.blockTimestamp);
      else missing.add(log.blockNumber);
    const numbers = [...missing].filter((number) => !times.has(number));
    for (let i = 0; i < numbers.length; i += READS_AT_ONCE) {
      const chunk = numbers.slice(i, i + READS_AT_ONCE);
      const headers = await Promise.all(
        chunk.map((blockNumber) => this.#reader.publicClient.getBlock({ blockNumber })),
      );
      for (const header of headers) times.set(header.number, header.timestamp);
    }
    return times;
  }

  /** The decoded batch of each settlement transaction among `logs`. */
  async #settlementBatches(logs: readonly ChainLog[]): Promise<SettlementBatches> {
    const txs = [
      ...new Set(logs.filter((log) => log.eventName === "BatchSettled").map((log) => log.transactionHash)),
    ];
    const batches = new Map<Hex, ReturnType<typeof settlementBatchOf>>();
    for (let i = 0; i < txs.length; i += READS_AT_ONCE) {
      const chunk = txs.slice(i, i + READS_AT_ONCE);
      const inputs = await Promise.all(
        chunk.map(async (hash) => (await this.#reader.publicClient.getTransaction({ hash })).input),
      );
      chunk.forEach((hash, j) => batches.set(hash, settlementBatchOf(inputs[j])));
    }
    return batches;
  }

  /** When the newest indexed block is no longer on the chain, rolls back to where the chains agree. */
  async #checkReorg(): Promise<void> {
    const repo = this.#store.indexer;
    const head = repo.head();
    if (head === undefined || (await this.#hashAt(head.number)) === head.hash) return;
    let forkFrom = this.#reader.deployment.deployBlock;
    let below = head.number;
    for (;;) {
      const kept = repo.blocksBefore(below, FORK_SEARCH_STEP);
      if (kept.length === 0) break;
      const hashes = await Promise.all(kept.map((block) => this.#hashAt(block.number)));
      const agreeing = kept.findIndex((block, i) => hashes[i] === block.hash);
      if (agreeing !== -1) {
        forkFrom = kept[agreeing]!.number + 1n;
        break;
      }
      below = kept.at(-1)!.number;
    }
    await this.#store.commit(() => repo.rollbackFrom(forkFrom), { durable: false });
    this.#rollbacks += 1;
    this.#options.logger?.warn(
      { from: `${forkFrom}`, indexedHead: `${head.number}` },
      "chain reorganisation: rolled back the index and reading again",
    );
  }

  async #hashAt(number: bigint): Promise<Hex | undefined> {
    try {
      return (await this.#reader.publicClient.getBlock({ blockNumber: number })).hash;
    } catch (err) {
      if (err instanceof BlockNotFoundError) return undefined;
      throw err;
    }
  }
}

/** What this node's trust layer thinks of an operator (reputation, quarantine), for the explorer. */
export type TrustLookup = (operator: Address) => unknown;

/**
 * Starts indexing the chain into `store` and returns what the API's explorer reads; the indexer
 * is stopped by the first of `cleanup`'s steps (before the store closes).
 */
export function startChainIndexer(
  reader: ChainReader,
  store: Store,
  options: IndexerOptions & { trustOf?: TrustLookup },
  cleanup: (() => Promise<void> | void)[],
): ReturnType<typeof explorerSourceOf> {
  const indexer = new ChainIndexer(reader, store, options);
  indexer.start();
  cleanup.unshift(() => indexer.stop());
  return explorerSourceOf(store, indexer, options.trustOf);
}

/**
 * The explorer's view (api/explorer.ts ExplorerSource): the store's index, this indexer's
 * progress and, for a donor, what `trustOf` says of its current operator.
 */
export function explorerSourceOf(store: Store, indexer: Pick<ChainIndexer, "status">, trustOf?: TrustLookup) {
  const repo = store.indexer;
  return {
    status: () => indexer.status(),
    stakes: repo.stakes.bind(repo),
    donor: (donor: Address, page: PageQuery) => {
      const found = repo.donor(donor, page);
      const operator = found.stake?.operator;
      const trust = trustOf && typeof operator === "string" ? trustOf(operator as Address) : undefined;
      return trust === undefined ? found : { ...found, trust };
    },
    channels: repo.channels.bind(repo),
    channelEvents: repo.channelEvents.bind(repo),
    settlements: repo.settlements.bind(repo),
    settlement: repo.settlement.bind(repo),
    slashes: repo.slashes.bind(repo),
    anchors: repo.anchors.bind(repo),
    zkChannels: repo.zkChannels.bind(repo),
    zkBatches: repo.zkBatches.bind(repo),
    zkPayouts: repo.zkPayouts.bind(repo),
  };
}

function eventsOf(abi: readonly { type: string }[]): AbiEvent[] {
  return abi.filter((item): item is AbiEvent => item.type === "event");
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
