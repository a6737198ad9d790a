// Reputation counters and score: neutral start, agreement raises, dissent lowers most,
// timeouts some, latency breaks ties, lazy exponential decay, module blend. Pure, fake clock.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_TRUST_SETTINGS,
  NEUTRAL_SCORE,
  blendedScore,
  decayStats,
  recordOutcome,
  reputationScore,
  type ReputationEvent,
  type ReputationStats,
} from "../../offchain/src/trust/index.ts";
import { NEUTRAL_REPUTATION } from "../../offchain/src/market/index.ts";

const settings = DEFAULT_TRUST_SETTINGS;
const DAY = 24 * 3_600_000;

function history(events: ReputationEvent[], at = 0): ReputationStats {
  let stats: ReputationStats | undefined;
  for (const event of events) stats = recordOutcome(stats, event, at, settings);
  return stats!;
}

const agree = (latencyMs = 1_000): ReputationEvent => ({ type: "agreement", latencyMs });
const times = (n: number, event: ReputationEvent) => Array.from({ length: n }, () => event);

describe("reputation score", () => {
  it("is neutral, on the selection scale, for an unknown operator", () => {
    assert.equal(NEUTRAL_SCORE, NEUTRAL_REPUTATION);
    assert.equal(reputationScore(undefined, 0, settings), NEUTRAL_REPUTATION);
  });

  it("rises with agreements and stays within 0..65535", () => {
    const some = reputationScore(history(times(3, agree())), 0, settings);
    const many = reputationScore(history(times(1_000, agree(0))), 0, settings);
    assert.ok(some > NEUTRAL_SCORE, `${some}`);
    assert.ok(many > some);
    assert.ok(many <= 65_535);
  });

  it("lowers most on a dissent, some on a timeout, least on a no-result", () => {
    const base = times(5, agree());
    const dissent = reputationScore(history([...base, { type: "dissent" }]), 0, settings);
    const timeout = reputationScore(history([...base, { type: "timeout" }]), 0, settings);
    const noResult = reputationScore(history([...base, { type: "no_result" }]), 0, settings);
    const clean = reputationScore(history(base), 0, settings);
    assert.ok(
      dissent < timeout && timeout < noResult && noResult < clean,
      `${dissent} ${timeout} ${noResult} ${clean}`,
    );
    const liar = reputationScore(history(times(3, { type: "dissent" })), 0, settings);
    assert.ok(liar < NEUTRAL_SCORE / 2, `${liar}`);
  });

  it("uses latency only as a tie-breaker", () => {
    const fast = reputationScore(history(times(5, agree(50))), 0, settings);
    const slow = reputationScore(history(times(5, agree(5_000))), 0, settings);
    assert.ok(fast > slow);
    assert.ok(fast - slow < 0.05 * 65_536);
    const slowHonest = reputationScore(history(times(5, agree(5_000))), 0, settings);
    const fastLiar = reputationScore(history([...times(5, agree(1)), { type: "dissent" }]), 0, settings);
    assert.ok(slowHonest > fastLiar);
  });

  it("keeps the latency as a moving average", () => {
    const stats = history([agree(1_000), agree(2_000)]);
    assert.equal(stats.latencyMs, 1_000 + settings.latencyAlpha * 1_000);
  });
});

describe("reputation decay", () => {
  it("halves the counters after one half-life, applied lazily from the last update", () => {
    const stats = history(times(4, agree()));
    const later = decayStats(stats, DAY, settings.reputationHalfLifeMs);
    assert.equal(later.agreements, 2);
    assert.equal(later.updatedAt, DAY);
    const next = recordOutcome(stats, { type: "dissent" }, DAY, settings);
    assert.equal(next.agreements, 2);
    assert.equal(next.dissents, 1);
  });

  it("lets an old dissent fade back towards neutral", () => {
    const liar = history([{ type: "dissent" }]);
    const now = reputationScore(liar, 0, settings);
    const weekLater = reputationScore(liar, 7 * DAY, settings);
    assert.ok(now < weekLater && weekLater <= NEUTRAL_SCORE);
    assert.ok(NEUTRAL_SCORE - weekLater < 300, `${weekLater}`);
  });

  it("does not decay on a clock that goes backwards", () => {
    const stats = history(times(2, agree()), DAY);
    assert.equal(decayStats(stats, 0, settings.reputationHalfLifeMs).agreements, 2);
  });
});

describe("per-module blend", () => {
  it("ignores the module until it has enough samples, then averages half and half", () => {
    const overall = history(times(20, agree()));
    const fewOnModule = history([{ type: "dissent" }]);
    assert.equal(blendedScore(overall, fewOnModule, 0, settings), reputationScore(overall, 0, settings));
    const badOnModule = history(times(settings.minModuleSamples, { type: "dissent" }));
    const blended = blendedScore(overall, badOnModule, 0, settings);
    const expected = Math.round(
      (reputationScore(overall, 0, settings) + reputationScore(badOnModule, 0, settings)) / 2,
    );
    assert.equal(blended, expected);
    assert.ok(blended < reputationScore(overall, 0, settings));
  });
});
