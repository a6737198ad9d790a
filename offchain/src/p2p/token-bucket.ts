/** A monotonic clock in milliseconds; tests pass a fake one. */
export type Clock = () => number;

const monotonic: Clock = () => performance.now();

/** A token bucket: `burst` tokens at most, refilled at `ratePerSecond`. */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #now: Clock;
  #tokens: number;
  #updatedAt: number;

  constructor(ratePerSecond: number, burst: number, now: Clock = monotonic) {
    if (!(ratePerSecond > 0) || !(burst >= 1))
      throw new Error(`invalid token bucket: rate ${ratePerSecond}/s, burst ${burst}`);
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.#now = now;
    this.#tokens = burst;
    this.#updatedAt = now();
  }

  /** Takes one token if available. */
  tryTake(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Milliseconds until one token is available (0 if one is available now). */
  msUntilToken(): number {
    this.#refill();
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) / this.ratePerSecond) * 1000);
  }

  /** True when the bucket is full, so forgetting it loses nothing. */
  isFull(): boolean {
    this.#refill();
    return this.#tokens >= this.burst;
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#updatedAt) / 1000) * this.ratePerSecond);
    this.#updatedAt = now;
  }
}

export const DEFAULT_MAX_KEYS = 4096;

/**
 * One token bucket per key (a peer, or a peer on a protocol).
 *
 * Bound: at most `maxKeys` buckets. Eviction: a new key at the bound drops the least
 * recently used bucket, which has refilled the longest and so is the one whose loss
 * forgives the least; a key in active use is never the one dropped, so churning through
 * new keys cannot reset a flooder's own bucket.
 */
export class KeyedRateLimiter {
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #ratePerSecond: number;
  readonly #burst: number;
  readonly #maxKeys: number;
  readonly #now: Clock;

  constructor(ratePerSecond: number, burst: number, options: { maxKeys?: number; now?: Clock } = {}) {
    new TokenBucket(ratePerSecond, burst); // validates the parameters up front
    this.#ratePerSecond = ratePerSecond;
    this.#burst = burst;
    this.#maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    if (!Number.isInteger(this.#maxKeys) || this.#maxKeys < 1)
      throw new Error(`maxKeys must be a positive integer, got ${this.#maxKeys}`);
    this.#now = options.now ?? monotonic;
  }

  tryTake(key: string): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
      bucket = new TokenBucket(this.#ratePerSecond, this.#burst, this.#now);
    } else {
      this.#buckets.delete(key);
    }
    this.#buckets.set(key, bucket);
    return bucket.tryTake();
  }

  /** Buckets kept. */
  get size(): number {
    return this.#buckets.size;
  }
}
