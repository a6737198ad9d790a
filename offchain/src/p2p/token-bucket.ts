/** A token bucket: `burst` tokens at most, refilled at `ratePerSecond`. */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  #tokens: number;
  #updatedAt: number;

  constructor(ratePerSecond: number, burst: number) {
    if (!(ratePerSecond > 0) || !(burst >= 1))
      throw new Error(`invalid token bucket: rate ${ratePerSecond}/s, burst ${burst}`);
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.#tokens = burst;
    this.#updatedAt = performance.now();
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
    const now = performance.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#updatedAt) / 1000) * this.ratePerSecond);
    this.#updatedAt = now;
  }
}

const PRUNE_ABOVE = 4096;

/** One token bucket per key (a peer, or a peer on a protocol); full buckets are forgotten. */
export class KeyedRateLimiter {
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #ratePerSecond: number;
  readonly #burst: number;

  constructor(ratePerSecond: number, burst: number) {
    new TokenBucket(ratePerSecond, burst); // validates the parameters up front
    this.#ratePerSecond = ratePerSecond;
    this.#burst = burst;
  }

  tryTake(key: string): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= PRUNE_ABOVE) this.#pruneFull();
      bucket = new TokenBucket(this.#ratePerSecond, this.#burst);
      this.#buckets.set(key, bucket);
    }
    return bucket.tryTake();
  }

  #pruneFull(): void {
    for (const [key, bucket] of this.#buckets) if (bucket.isFull()) this.#buckets.delete(key);
  }
}
