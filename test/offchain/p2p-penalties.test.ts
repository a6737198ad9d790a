import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_PENALTY_POLICY, PenaltyBook } from "../../offchain/src/p2p/penalties.ts";

/** A penalty book on a clock the test moves; blocks are collected. */
function book(policy: Partial<typeof DEFAULT_PENALTY_POLICY> = {}) {
  const clock = { now: 1_000_000 };
  const blocked: string[] = [];
  const penalties = new PenaltyBook(
    { ...DEFAULT_PENALTY_POLICY, ...policy },
    (peerId) => blocked.push(peerId),
    () => clock.now,
  );
  const malformed = (peerId: string) =>
    penalties.record({ peerId, reason: "malformed", protocol: "/cell/bid/1", detail: "bad json" });
  return { penalties, clock, blocked, malformed };
}

describe("PenaltyBook", () => {
  it("blocks a peer whose score reaches the threshold, for blockMs", () => {
    const { penalties, clock, blocked, malformed } = book({ blockThreshold: 30, blockMs: 5_000 });
    malformed("a");
    malformed("a");
    assert.equal(penalties.of("a").score, 20);
    assert.equal(penalties.isBlocked("a"), false);
    malformed("a");
    assert.deepEqual(blocked, ["a"]);
    assert.equal(penalties.isBlocked("a"), true);
    assert.equal(penalties.of("a").counts.malformed, 3);
    clock.now += 5_001;
    assert.equal(penalties.isBlocked("a"), false);
  });

  it("halves a score every half-life, so rare offences never add up to a block", () => {
    const { penalties, clock, blocked, malformed } = book({ blockThreshold: 30, scoreHalfLifeMs: 1_000 });
    malformed("a");
    clock.now += 1_000;
    assert.equal(penalties.of("a").score, 5);
    clock.now += 1_000;
    assert.equal(penalties.of("a").score, 2.5);
    for (let i = 0; i < 50; i++) {
      malformed("a");
      clock.now += 1_000;
    }
    assert.deepEqual(blocked, [], "one offence a second decays faster than it adds up");
    assert.ok(penalties.of("a").score < 30);
  });

  it("keeps at most maxTrackedPeers records, forgetting the least recent offender but not a blocked one", () => {
    const { penalties, clock, malformed } = book({ maxTrackedPeers: 3, blockThreshold: 10 });
    malformed("blocked");
    assert.equal(penalties.isBlocked("blocked"), true);
    for (const peer of ["p1", "p2", "p3", "p4"]) {
      clock.now += 1;
      penalties.record({ peerId: peer, reason: "rate_limited", protocol: "/cell/bid/1", detail: "" });
    }
    assert.equal(penalties.tracked, 3);
    assert.equal(penalties.isBlocked("blocked"), true, "a blocked peer stays on record");
    assert.equal(penalties.of("p1").counts.rate_limited, 0, "the oldest unblocked record is gone");
    assert.equal(penalties.of("p4").counts.rate_limited, 1);
    assert.equal(penalties.totals().rate_limited, 4, "totals count every rejection");
  });
});
