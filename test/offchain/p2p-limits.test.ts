import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KeyedRateLimiter, TokenBucket } from "../../offchain/src/p2p/index.ts";

describe("TokenBucket", () => {
  it("gives a burst, then tokens at the rate, on the clock it is given", () => {
    const clock = { now: 0 };
    const bucket = new TokenBucket(10, 3, () => clock.now);
    assert.deepEqual(
      [1, 2, 3, 4].map(() => bucket.tryTake()),
      [true, true, true, false],
    );
    assert.equal(bucket.msUntilToken(), 100);
    clock.now += 100;
    assert.equal(bucket.tryTake(), true);
    assert.equal(bucket.tryTake(), false);
    clock.now += 10_000;
    assert.equal(bucket.isFull(), true, "refills no further than the burst");
  });
});

describe("KeyedRateLimiter", () => {
  it("limits each key on its own", () => {
    const clock = { now: 0 };
    const limiter = new KeyedRateLimiter(1, 2, { now: () => clock.now });
    assert.deepEqual(
      ["a", "a", "a", "b"].map((key) => limiter.tryTake(key)),
      [true, true, false, true],
    );
    clock.now += 1_000;
    assert.equal(limiter.tryTake("a"), true);
  });

  it("keeps at most maxKeys buckets, dropping the least recently used, never the key in use", () => {
    const clock = { now: 0 };
    const limiter = new KeyedRateLimiter(1, 2, { now: () => clock.now, maxKeys: 3 });
    limiter.tryTake("flooder");
    limiter.tryTake("flooder");
    assert.equal(limiter.tryTake("flooder"), false, "the flooder's bucket is empty");
    for (let i = 0; i < 1_000; i++) {
      limiter.tryTake(`fresh-${i}`);
      assert.equal(limiter.tryTake("flooder"), false, "new keys cannot reset the bucket of a key in use");
      assert.ok(limiter.size <= 3);
    }
    assert.equal(limiter.size, 3);
    // once maxKeys other keys were used after it, a bucket is dropped and starts again full
    for (let i = 0; i < 3; i++) limiter.tryTake(`other-${i}`);
    assert.equal(limiter.tryTake("flooder"), true);
  });

  it("refuses a bound below one", () => {
    assert.throws(() => new KeyedRateLimiter(1, 1, { maxKeys: 0 }), /maxKeys must be a positive integer/);
  });
});
