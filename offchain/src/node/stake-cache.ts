import type { Address, Hex } from "viem";
import { KeyedRateLimiter, TokenBucket } from "../p2p/token-bucket.ts";

/** Reads DonorRegistry: is `operator` active with this peer key? */
export type DonorLookup = (operator: Address, peerKey: Hex) => Promise<boolean>;

/** What is known of a donor's stake: "unknown" when the chain could not be (or was not) read. */
export type StakeStatus = "active" | "inactive" | "unknown";

export interface StakeCacheOptions {
  now?: () => number;
  /** After an answer expires, a failed or refused read falls back to it for this long (default 5 × ttlMs). */
  staleMs?: number;
  /** Chain reads per second on behalf of one peer (default 1, burst 5). */
  readsPerSecondPerPeer?: number;
  readBurstPerPeer?: number;
  /** Chain reads per second for all pairs not known to be active (default 50, burst 100). */
  readsPerSecond?: number;
  readBurst?: number;
  /** Answers kept (default 10,000). */
  maxEntries?: number;
}

interface Entry {
  active: boolean;
  /** Trusted without a read until then. */
  freshUntil: number;
  /** Used when a read fails or is refused, until then. */
  keepUntil: number;
}

/**
 * Cached DonorRegistry reads. A positive answer is trusted for `ttlMs`; a negative one
 * for a fifth of that, so a freshly staked donor is seen soon. Concurrent lookups of one
 * pair share a single chain read.
 *
 * A failed read is not a "no": it answers with the last known answer while that is
 * younger than `staleMs` past its expiry, and "unknown" otherwise, so an RPC outage does
 * not turn real donors into unstaked ones. Reads are rate-limited per requesting peer (the
 * peer key when no requester is named), and reads of pairs not known to be active also in
 * total, so a flood of fake adverts or bids cannot make this node hammer its RPC, nor keep
 * a real donor's answer from being refreshed; a refused read is answered like a failed one.
 *
 * Bounds: `maxEntries` answers, the least recently read dropped first; reads under way are
 * bounded by the total read rate; the per-peer limiter keeps at most 4,096 peers (least
 * recently asking dropped first).
 */
export class StakeCache {
  readonly #lookup: DonorLookup;
  readonly #ttlMs: number;
  readonly #staleMs: number;
  readonly #maxEntries: number;
  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Promise<StakeStatus>>();
  readonly #now: () => number;
  readonly #perPeer: KeyedRateLimiter;
  readonly #total: TokenBucket;
  #refusedReads = 0;

  constructor(lookup: DonorLookup, ttlMs: number, options: StakeCacheOptions | (() => number) = {}) {
    const opts = typeof options === "function" ? { now: options } : options;
    this.#lookup = lookup;
    this.#ttlMs = ttlMs;
    this.#now = opts.now ?? Date.now;
    this.#staleMs = opts.staleMs ?? 5 * ttlMs;
    this.#maxEntries = opts.maxEntries ?? 10_000;
    this.#perPeer = new KeyedRateLimiter(opts.readsPerSecondPerPeer ?? 1, opts.readBurstPerPeer ?? 5, {
      now: this.#now,
    });
    this.#total = new TokenBucket(opts.readsPerSecond ?? 50, opts.readBurst ?? 100, this.#now);
  }

  /** The last known answer without a chain read, if still fresh. */
  peek(operator: Address, peerKey: Hex): boolean | undefined {
    const entry = this.#entries.get(keyOf(operator, peerKey));
    return entry && entry.freshUntil > this.#now() ? entry.active : undefined;
  }

  /**
   * The stake of `operator` with `peerKey`: fresh from the cache, else read from the chain
   * on behalf of `requester` (the peer whose message asked for it; defaults to the key).
   */
  async status(operator: Address, peerKey: Hex, requester?: string): Promise<StakeStatus> {
    const key = keyOf(operator, peerKey);
    const entry = this.#entries.get(key);
    if (entry !== undefined && entry.freshUntil > this.#now()) return statusOf(entry.active);
    const pending = this.#pending.get(key);
    if (pending) return pending;
    if (!this.#mayRead(requester ?? peerKey.toLowerCase(), entry?.active === true)) {
      this.#refusedReads++;
      return this.#fallback(key);
    }
    const read = this.#read(key, operator, peerKey).finally(() => this.#pending.delete(key));
    this.#pending.set(key, read);
    return read;
  }

  /** True only when the operator is known to be active with this key ("unknown" is not active). */
  async isActive(operator: Address, peerKey: Hex, requester?: string): Promise<boolean> {
    return (await this.status(operator, peerKey, requester)) === "active";
  }

  /** Chain reads refused by the rate limits so far. */
  get refusedReads(): number {
    return this.#refusedReads;
  }

  /** A pair last seen active is refreshed outside the total cap: identities without stake cannot crowd it out. */
  #mayRead(requester: string, knownActive: boolean): boolean {
    return this.#perPeer.tryTake(requester) && (knownActive || this.#total.tryTake());
  }

  async #read(key: string, operator: Address, peerKey: Hex): Promise<StakeStatus> {
    let active: boolean;
    try {
      active = await this.#lookup(operator, peerKey);
    } catch {
      return this.#fallback(key);
    }
    const freshUntil = this.#now() + (active ? this.#ttlMs : Math.ceil(this.#ttlMs / 5));
    this.#entries.delete(key);
    this.#entries.set(key, { active, freshUntil, keepUntil: freshUntil + this.#staleMs });
    if (this.#entries.size > this.#maxEntries)
      this.#entries.delete(this.#entries.keys().next().value as string);
    return statusOf(active);
  }

  #fallback(key: string): StakeStatus {
    const entry = this.#entries.get(key);
    return entry !== undefined && entry.keepUntil > this.#now() ? statusOf(entry.active) : "unknown";
  }
}

function statusOf(active: boolean): StakeStatus {
  return active ? "active" : "inactive";
}

function keyOf(operator: Address, peerKey: Hex): string {
  return `${operator.toLowerCase()}:${peerKey.toLowerCase()}`;
}
