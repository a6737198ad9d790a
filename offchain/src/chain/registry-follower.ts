import { setTimeout as sleep } from "node:timers/promises";
import type { Address, Hex } from "viem";
import { donorRegistryAbi } from "./abis.ts";
import type { ChainReader } from "./clients.ts";
import { RegistryView } from "./registry-view.ts";
import type { RegistryEvent, StakeStatus } from "./registry-view.ts";

export interface RegistryFollowerOptions {
  /** How often the chain's head is read and new registry events fetched. */
  pollMs: number;
  /** A view not caught up for longer than this answers "unknown" (see RegistryView). */
  staleMs: number;
  /** Most blocks asked for in one eth_getLogs call. */
  blockRange: number;
  /** Blocks behind the head that are followed, so a reorganisation shallower than this is never seen. */
  confirmations: number;
  maxDonors?: number;
  maxStakers?: number;
  now?: () => number;
  /** Told of every failed poll with how many failed in a row; the next poll retries. */
  onError?: (err: unknown, failuresInARow: number) => void;
}

/**
 * Follows DonorRegistry's events into a RegistryView: the first poll replays the registry's
 * logs from the deployment block, and every `pollMs` after that one eth_blockNumber is read
 * and, when the chain moved, the new blocks' logs are fetched, at most `blockRange` blocks a
 * call (a refused call is retried with half the range, down to one block, for the rest of
 * that poll). An idle chain therefore costs one request a poll, however many donors there are, and
 * stake lookups never touch the RPC. A failed poll changes nothing; the view answers from
 * what it has until it is `staleMs` behind, then "unknown" until a poll succeeds again.
 * A head below the view's (a restarted devnet, a reorganisation deeper than `confirmations`)
 * makes the view start over from the deployment block.
 */
export class RegistryFollower {
  readonly #reader: ChainReader;
  readonly #options: RegistryFollowerOptions;
  readonly #view: RegistryView;
  readonly #now: () => number;
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #failuresInARow = 0;
  #firstSync: Promise<void>;
  #markSynced!: () => void;

  constructor(reader: ChainReader, options: RegistryFollowerOptions) {
    if (options.blockRange < 1) throw new Error(`blockRange must be at least 1, got ${options.blockRange}`);
    this.#reader = reader;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#view = new RegistryView(options);
    this.#firstSync = new Promise((resolve) => (this.#markSynced = resolve));
  }

  /** Peer keys of up to `limit` active operators, from the view alone. */
  activePeerKeys(limit: number): Hex[] {
    return this.#view.activePeerKeys(limit, this.#now());
  }

  /** The stake of `operator` with `peerKey`, from the view alone. */
  status(operator: Address, peerKey: Hex): StakeStatus {
    return this.#view.status(operator, peerKey, this.#now());
  }

  /** The last block whose events the view holds. */
  get head(): bigint | undefined {
    return this.#view.head;
  }

  /** True while the view caught up with the chain within the staleness bound. */
  get fresh(): boolean {
    return this.#view.isFresh(this.#now());
  }

  /** Starts polling; the first poll begins at once. */
  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  /** Polls in a row whose chain head was below the view's. */
  #pollsBehind = 0;

  /** Resolves once the view first caught up with the chain, or after `timeoutMs` (false then). */
  async synced(timeoutMs: number): Promise<boolean> {
    const timeout = sleep(timeoutMs, false, { signal: this.#stop.signal, ref: false }).catch(() => false);
    return Promise.race([this.#firstSync.then(() => true), timeout]);
  }

  /** One poll: reads the head and applies every new block's events up to it (less the confirmations). */
  async poll(): Promise<void> {
    const { publicClient, deployment } = this.#reader;
    const latest = await publicClient.getBlockNumber({ cacheTime: 0 });
    const target = latest - BigInt(this.#options.confirmations);
    if (this.#view.head !== undefined && target < this.#view.head) {
      // One answer below the view's head may come from a lagging node behind a load
      // balancer: skip the poll. Twice in a row, the chain went back (a restarted devnet, a
      // deep reorganisation): rebuild from the deployment block.
      if (++this.#pollsBehind < 2) return;
      this.#view.reset();
    }
    this.#pollsBehind = 0;
    let from = this.#view.head === undefined ? deployment.deployBlock : this.#view.head + 1n;
    let range = BigInt(this.#options.blockRange);
    while (from <= target) {
      const to = minBig(from + range - 1n, target);
      let logs;
      try {
        logs = await publicClient.getContractEvents({
          address: deployment.donorRegistry,
          abi: donorRegistryAbi,
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
      for (const log of logs) {
        const event = registryEventOf(log);
        if (event) this.#view.apply(event);
      }
      this.#view.advanceTo(to, false, this.#now());
      from = to + 1n;
    }
    if (target >= 0n) this.#view.advanceTo(target, true, this.#now());
    if (this.#view.minStake === undefined && target >= deployment.deployBlock)
      await this.#readMinStake(target);
    this.#markSynced();
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.poll();
        this.#failuresInARow = 0;
      } catch (err) {
        if (!signal.aborted) this.#options.onError?.(err, ++this.#failuresInARow);
      }
      await sleep(this.#options.pollMs, undefined, { signal }).catch(() => undefined);
    }
  }

  /** The deployment block given was later than the registry's constructor: its parameters are read once. */
  async #readMinStake(block: bigint): Promise<void> {
    const { publicClient, deployment } = this.#reader;
    const params = await publicClient.readContract({
      address: deployment.donorRegistry,
      abi: donorRegistryAbi,
      functionName: "params",
      blockNumber: block,
    });
    this.#view.apply({ type: "params", minStake: params.minStake });
  }
}

interface DecodedLog {
  eventName: string;
  args: unknown;
}

/** The registry event a decoded log stands for; undefined for events that change no stake. */
export function registryEventOf(log: DecodedLog): RegistryEvent | undefined {
  const args = log.args as Record<string, unknown>;
  switch (log.eventName) {
    case "ParamsUpdated":
      return { type: "params", minStake: (args.params as { minStake: bigint }).minStake };
    case "Staked":
      return { type: "staked", donor: args.donor as Address, bonded: args.bonded as bigint };
    case "Registered":
      return {
        type: "registered",
        donor: args.donor as Address,
        operator: args.operator as Address,
        peerKey: args.peerKey as Hex,
      };
    case "OperatorRotated":
      return {
        type: "rotated",
        donor: args.donor as Address,
        operator: args.newOperator as Address,
        peerKey: args.peerKey as Hex,
      };
    case "Jailed":
      return { type: "jailed", operator: args.operator as Address };
    case "UnbondRequested":
      return { type: "unbond", donor: args.donor as Address, amount: args.amount as bigint };
    case "Slashed":
    case "CourtSlashed":
      // A slash the JuryCourt decides takes from bonded stake first, like any other.
      return { type: "slashed", donor: args.donor as Address, amount: args.amount as bigint };
    default:
      return undefined;
  }
}

function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
