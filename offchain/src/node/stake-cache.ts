import type { Address, Hex } from "viem";

/** Reads DonorRegistry: is `operator` active with this peer key? */
export type DonorLookup = (operator: Address, peerKey: Hex) => Promise<boolean>;

const MAX_ENTRIES = 10_000;

interface Entry {
  active: boolean;
  until: number;
}

/**
 * Cached DonorRegistry reads. A positive answer is trusted for `ttlMs`; a negative one
 * for a fifth of that, so a freshly staked donor is seen soon. Concurrent lookups of one
 * pair share a single chain read; a failed read counts as "not active" and is not cached.
 */
export class StakeCache {
  readonly #lookup: DonorLookup;
  readonly #ttlMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #pending = new Map<string, Promise<boolean>>();
  readonly #now: () => number;

  constructor(lookup: DonorLookup, ttlMs: number, now: () => number = Date.now) {
    this.#lookup = lookup;
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  /** The last known answer without a chain read, if still fresh. */
  peek(operator: Address, peerKey: Hex): boolean | undefined {
    const entry = this.#entries.get(keyOf(operator, peerKey));
    return entry && entry.until > this.#now() ? entry.active : undefined;
  }

  async isActive(operator: Address, peerKey: Hex): Promise<boolean> {
    const cached = this.peek(operator, peerKey);
    if (cached !== undefined) return cached;
    const key = keyOf(operator, peerKey);
    const pending = this.#pending.get(key);
    if (pending) return pending;
    const read = this.#read(key, operator, peerKey).finally(() => this.#pending.delete(key));
    this.#pending.set(key, read);
    return read;
  }

  async #read(key: string, operator: Address, peerKey: Hex): Promise<boolean> {
    let active: boolean;
    try {
      active = await this.#lookup(operator, peerKey);
    } catch {
      return false;
    }
    const ttl = active ? this.#ttlMs : Math.ceil(this.#ttlMs / 5);
    this.#entries.delete(key);
    this.#entries.set(key, { active, until: this.#now() + ttl });
    if (this.#entries.size > MAX_ENTRIES) this.#entries.delete(this.#entries.keys().next().value as string);
    return active;
  }
}

function keyOf(operator: Address, peerKey: Hex): string {
  return `${operator.toLowerCase()}:${peerKey.toLowerCase()}`;
}
