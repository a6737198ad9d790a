// The quarantine machine: suspicion score, strikes 1→2→3→ban, observation and relapse,
// decay. Pure: state + event + now → state, driven by a fake clock (plain numbers).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Hex } from "viem";
import {
  DEFAULT_TRUST_SETTINGS,
  advance,
  applySuspicion,
  blocksAt,
  initialSuspicion,
  suspicionScore,
  trustSettings,
  type SuspicionEvent,
  type SuspicionState,
} from "../../offchain/src/trust/index.ts";

const MIN = 60_000;
const settings = DEFAULT_TRUST_SETTINGS;
const JOB: Hex = `0x${"ab".repeat(32)}`;
const outvoted: SuspicionEvent = { type: "outvoted", jobId: JOB };
const equivocation: SuspicionEvent = { type: "equivocation", jobId: JOB };
const anomaly: SuspicionEvent = { type: "network_anomaly", detail: "bad signature" };

function run(events: Array<[number, SuspicionEvent]>, start?: SuspicionState): SuspicionState {
  let state = start;
  for (const [at, event] of events) state = applySuspicion(state, event, at, settings).state;
  return state!;
}

function statusAt(state: SuspicionState, now: number): string {
  return advance(state, now, settings).state.status;
}

describe("suspicion score", () => {
  it("weighs the components as configured and starts at zero", () => {
    const clear = initialSuspicion(0);
    assert.equal(suspicionScore(clear, settings.weights), 0);
    const all = {
      ...clear,
      components: {
        consensusViolations: 1,
        equivocations: 1,
        resultInconsistencies: 1,
        networkAnomalies: 1,
        timingAnomalies: 1,
      },
      recentBad: 1,
    };
    assert.ok(Math.abs(suspicionScore(all, settings.weights) - 1) < 1e-12);
    const onlyTiming = { ...clear, components: { ...clear.components, timingAnomalies: 1 } };
    assert.equal(suspicionScore(onlyTiming, settings.weights), 0.1);
  });

  it("quarantines on one verified outvote at once, with the score over the threshold", () => {
    const { state, score, changes } = applySuspicion(undefined, outvoted, 1_000, settings);
    assert.ok(score > settings.quarantineThreshold, `score ${score}`);
    assert.equal(state.status, "quarantined");
    assert.equal(state.strikes, 1);
    assert.equal(state.until, 1_000 + 5 * MIN);
    assert.match(state.reason!, /outvoted by a quorum/);
    assert.deepEqual(changes, [{ from: "clear", to: "quarantined", at: 1_000 }]);
    assert.deepEqual(state.evidence, [{ kind: "outvote", jobId: JOB, at: 1_000 }]);
  });

  it("quarantines on a verified equivocation at once", () => {
    const state = run([[0, equivocation]]);
    assert.equal(state.status, "quarantined");
    assert.equal(state.components.equivocations, 1);
  });

  it("does not quarantine on circumstantial signals alone: timeouts and anomalies stay below the threshold", () => {
    const events: Array<[number, SuspicionEvent]> = [];
    for (let i = 0; i < 30; i++) events.push([i, { type: "timing_anomaly" }], [i, anomaly]);
    const state = run(events);
    assert.equal(state.status, "clear");
    assert.equal(state.components.timingAnomalies, 1);
    assert.equal(state.components.networkAnomalies, 1);
    assert.ok(Math.abs(suspicionScore(state, settings.weights) - 0.35) < 1e-9);
  });

  it("quarantines when the weighted score alone exceeds the threshold", () => {
    const low = trustSettings({ quarantineThreshold: 0.2, verifiedOffenceScore: 0.95 });
    let state: SuspicionState | undefined;
    for (let i = 0; i < 2; i++) state = applySuspicion(state, anomaly, 0, low).state;
    assert.equal(state!.status, "clear"); // 0.15·0.5 + 0.1·1 = 0.175
    state = applySuspicion(state, anomaly, 0, low).state; // 0.15·0.75 + 0.1 = 0.2125
    assert.equal(state.status, "quarantined");
    assert.match(state.reason!, /bad signature/);
  });

  it("decays components with the suspicion half-life", () => {
    const state = run([[0, { type: "timing_anomaly" }]]);
    const later = advance(state, settings.suspicionHalfLifeMs, settings).state;
    assert.ok(Math.abs(later.components.timingAnomalies - settings.timingAnomalyStep / 2) < 1e-12);
    assert.ok(Math.abs(later.recentBad - 0.5) < 1e-12);
  });

  it("counts good outcomes in the recent-behaviour share", () => {
    const state = run([
      [0, { type: "good" }],
      [0, { type: "good" }],
      [0, { type: "good" }],
      [0, { type: "timing_anomaly" }],
    ]);
    const expected = 0.1 * 0.1 + 0.1 * (1 / 4);
    assert.ok(Math.abs(suspicionScore(state, settings.weights) - expected) < 1e-12);
  });
});

describe("quarantine machine", () => {
  it("goes quarantined → observation → released after 5 + 10 minutes", () => {
    const state = run([[0, outvoted]]);
    assert.equal(statusAt(state, 5 * MIN - 1), "quarantined");
    assert.equal(blocksAt(state, 5 * MIN - 1, settings), true);
    const observed = advance(state, 5 * MIN, settings);
    assert.equal(observed.state.status, "observation");
    assert.equal(observed.state.until, 15 * MIN);
    assert.equal(blocksAt(state, 5 * MIN, settings), false);
    const released = advance(state, 15 * MIN, settings);
    assert.equal(released.state.status, "clear");
    assert.equal(released.state.until, null);
    assert.deepEqual(
      released.changes.map((c) => [c.from, c.to, c.at]),
      [
        ["quarantined", "observation", 5 * MIN],
        ["observation", "clear", 15 * MIN],
      ],
    );
  });

  it("strike 1 → 2 → 3 → ban: 5 min, 15 min, 1 h, then banned for good", () => {
    const first = run([[0, outvoted]]);
    const second = run([[20 * MIN, outvoted]], first); // released at 15 min
    assert.equal(second.strikes, 2);
    assert.equal(second.until, 20 * MIN + 15 * MIN);
    assert.equal(statusAt(second, 35 * MIN), "observation");
    const third = run([[60 * MIN, equivocation]], second); // released at 45 min
    assert.equal(third.strikes, 3);
    assert.equal(third.status, "quarantined");
    assert.equal(third.until, 60 * MIN + 60 * MIN);
    const banned = advance(third, 120 * MIN, settings);
    assert.equal(banned.state.status, "banned");
    assert.equal(banned.state.until, null);
    assert.equal(blocksAt(third, 10_000 * MIN, settings), true);
    assert.equal(statusAt(third, 10_000 * MIN), "banned");
  });

  it("an offence in observation is the next strike at once, even a minor one", () => {
    const state = run([[0, outvoted]]);
    const relapse = applySuspicion(state, anomaly, 6 * MIN, settings);
    assert.equal(relapse.state.status, "quarantined");
    assert.equal(relapse.state.strikes, 2);
    assert.equal(relapse.state.until, 6 * MIN + 15 * MIN);
    assert.match(relapse.state.reason!, /during observation/);
    assert.deepEqual(
      relapse.changes.map((c) => c.to),
      ["observation", "quarantined"],
    );
  });

  it("a timeout in observation is no offence", () => {
    const state = run([
      [0, outvoted],
      [6 * MIN, { type: "timing_anomaly" }],
    ]);
    assert.equal(state.status, "observation");
    assert.equal(state.strikes, 1);
  });

  it("offences during a quarantine are recorded but give no new strike", () => {
    const state = run([
      [0, outvoted],
      [MIN, { type: "outvoted", jobId: `0x${"cd".repeat(32)}` }],
    ]);
    assert.equal(state.strikes, 1);
    assert.equal(state.until, 5 * MIN);
    assert.equal(state.evidence.length, 2);
  });

  it("catches up on a long absence in one step (restart after hours)", () => {
    const state = run([[0, outvoted]]);
    const { state: later, changes } = advance(state, 24 * 60 * MIN, settings);
    assert.equal(later.status, "clear");
    assert.equal(changes.length, 2);
    assert.ok(later.components.consensusViolations < 1e-6);
  });

  it("keeps at most 8 evidence notes, newest last", () => {
    const events: Array<[number, SuspicionEvent]> = [];
    for (let i = 0; i < 12; i++)
      events.push([i, { type: "outvoted", jobId: `0x${i.toString(16).padStart(64, "0")}` }]);
    const state = run(events);
    assert.equal(state.evidence.length, 8);
    assert.equal(state.evidence.at(-1)!.at, 11);
  });

  it("honours configured durations and ban strike", () => {
    const quick = trustSettings({ quarantineMs: [1_000], observationMs: 500, banAtStrike: 2 });
    let state = applySuspicion(undefined, outvoted, 0, quick).state;
    assert.equal(state.until, 1_000);
    state = applySuspicion(state, outvoted, 1_200, quick).state; // in observation
    assert.equal(state.strikes, 2);
    assert.equal(state.until, 2_200);
    assert.equal(advance(state, 2_200, quick).state.status, "banned");
  });

  it("refuses settings out of range with the setting's name", () => {
    assert.throws(() => trustSettings({ observationMs: 0 }), /observationMs/);
    assert.throws(() => trustSettings({ verifiedOffenceScore: 0.5 }), /verifiedOffenceScore/);
    assert.throws(
      () => trustSettings({ weights: { ...settings.weights, equivocations: 0.5 } }),
      /weights must sum to 1/,
    );
  });
});
