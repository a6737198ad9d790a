// Which donors a job asks to bid: bounded, weighted, fair to new donors, one per operator.
// Pure functions driven by a seeded draw: every run sees the same numbers.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Address } from "viem";
import {
  NEUTRAL_REPUTATION,
  candidateLimit,
  pickCandidates,
  seededRandom,
  selectExecutors,
} from "../../offchain/src/market/index.ts";
import type { Candidate, CandidateOptions, Prospect } from "../../offchain/src/market/index.ts";

const ATP = 10n ** 18n;
const job = { fuelLimit: 1_000n, memoryPages: 16, maxPricePerMegaFuel: 1_000n };

const operatorOf = (n: number): Address => `0x${n.toString(16).padStart(40, "0")}`;

function prospect(n: number, fields: Partial<Prospect> = {}): Prospect {
  return {
    peerId: `peer-${n}`,
    operator: operatorOf(n),
    pricePerMegaFuel: 100n,
    slots: 4,
    maxFuel: 1_000_000n,
    maxMemoryPages: 256,
    staked: true,
    lastSeen: 1_000,
    stake: 10n * ATP,
    ...fields,
  };
}

function options(random: () => number, fields: Partial<CandidateOptions> = {}): CandidateOptions {
  return { limit: 4, now: 1_000, livenessMs: 15_000, random, ...fields };
}

/** How often each peer is asked over `draws` seeded picks. */
function askedShares(prospects: Prospect[], draws: number, fields: Partial<CandidateOptions> = {}) {
  const random = seededRandom(42);
  const counts = new Map<string, number>();
  for (let i = 0; i < draws; i++)
    for (const chosen of pickCandidates(prospects, job, options(random, fields)).chosen)
      counts.set(chosen.peerId, (counts.get(chosen.peerId) ?? 0) + 1);
  return (peerId: string) => (counts.get(peerId) ?? 0) / draws;
}

describe("candidate selection", () => {
  it("is a few times the replica count, at least the minimum", () => {
    const settings = { minCandidates: 4, candidatesPerReplica: 3 };
    assert.equal(candidateLimit(1, settings), 4);
    assert.equal(candidateLimit(3, settings), 9);
  });

  it("never asks more than k donors, however many are known, and accounts for every one", () => {
    const random = seededRandom(1);
    const many = Array.from({ length: 500 }, (_, n) =>
      prospect(n, { staked: n % 10 !== 0, lastSeen: n % 7 === 0 ? -60_000 : 1_000 }),
    );
    for (let draw = 0; draw < 200; draw++) {
      const limit = 1 + (draw % 8);
      const set = pickCandidates(many, job, options(random, { limit }));
      assert.equal(set.chosen.length, limit);
      const passed = Object.values(set.passedOver).reduce((sum, count) => sum + count, 0);
      assert.equal(set.chosen.length + set.notAsked + passed, many.length);
    }
    const few = pickCandidates([prospect(1), prospect(2)], job, options(random, { limit: 6 }));
    assert.equal(few.chosen.length, 2, "fewer known than k: all of them");
  });

  it("keeps the reason of every donor it passes over", () => {
    const set = pickCandidates(
      [
        prospect(1, { staked: false }),
        prospect(2, { lastSeen: -20_000 }),
        prospect(3, { maxFuel: 10n }),
        prospect(4, { maxMemoryPages: 1 }),
        prospect(5, { pricePerMegaFuel: 5_000n }),
        prospect(6),
        prospect(7),
        prospect(8, { operator: operatorOf(7) }),
      ],
      { ...job, minReputation: 1_000 },
      options(seededRandom(3), {
        exclude: new Set(["peer-6"]),
        reputation: (operator) => (operator === operatorOf(7) ? NEUTRAL_REPUTATION : 0),
      }),
    );
    assert.deepEqual(set.passedOver, {
      not_staked: 1,
      executor_silent: 1,
      fuel_too_high: 1,
      memory_too_high: 1,
      bid_rejected_price: 1,
      duplicate_operator: 2,
    });
    assert.equal(set.chosen.length, 1);
    const lowReputation = pickCandidates(
      [prospect(9)],
      { ...job, minReputation: 1_000 },
      options(seededRandom(3), { reputation: () => 0 }),
    );
    assert.deepEqual(lowReputation.passedOver, { bid_rejected_reputation: 1 });
  });

  it("asks cheaper donors first", () => {
    const random = seededRandom(5);
    const donors = Array.from({ length: 12 }, (_, n) =>
      prospect(n, { pricePerMegaFuel: n < 2 ? 50n : 100n }),
    );
    for (let i = 0; i < 100; i++) {
      const chosen = pickCandidates(donors, job, options(random)).chosen.map((p) => p.peerId);
      assert.deepEqual(chosen.slice(0, 2).sort(), ["peer-0", "peer-1"]);
    }
  });

  it("never picks two donors of one operator, nor two executors of one operator", () => {
    const random = seededRandom(7);
    const shared = operatorOf(99);
    const donors = Array.from({ length: 12 }, (_, n) => prospect(n, n < 6 ? { operator: shared } : {}));
    for (let i = 0; i < 1_000; i++) {
      const chosen = pickCandidates(donors, job, options(random, { limit: 8 })).chosen;
      const operators = chosen.map((p) => p.operator.toLowerCase());
      assert.equal(new Set(operators).size, operators.length);
    }
    const bids: Candidate[] = donors.map((p) => ({
      ...p,
      stake: p.stake ?? 0n,
      expiresAt: 10_000n,
      freeSlots: 1,
    }));
    for (let i = 0; i < 200; i++) {
      const { chosen } = selectExecutors(bids, {
        replicas: 4,
        maxPricePerMegaFuel: 1_000n,
        minReputation: 0,
        now: 1_000,
        livenessMs: 15_000,
        random,
      });
      assert.equal(chosen.length, 4);
      assert.equal(new Set(chosen.map((c) => c.operator)).size, 4);
    }
  });

  it("weighs stake, reputation and the slots this buyer leaves free", () => {
    const donors = [
      prospect(0, { stake: 1_000n * ATP }),
      prospect(1, { operator: operatorOf(101) }),
      prospect(2),
      ...Array.from({ length: 13 }, (_, n) => prospect(n + 3)),
    ];
    const reputation = (operator: Address) => (operator === operatorOf(101) ? 65_535 : NEUTRAL_REPUTATION);
    const busy = (peerId: string) => (peerId === "peer-2" ? 3 : 0);
    const share = askedShares(donors, 10_000, { reputation, busy });
    const typical = share("peer-5");
    assert.ok(share("peer-0") > 1.3 * typical, `large stake ${share("peer-0")} vs ${typical}`);
    assert.ok(share("peer-1") > 1.3 * typical, `high reputation ${share("peer-1")} vs ${typical}`);
    assert.ok(share("peer-2") < 0.6 * typical, `busy ${share("peer-2")} vs ${typical}`);
  });

  it("does not ask a donor this buyer's jobs fill while enough others have a slot free, and counts it", () => {
    // peer-0 is the cheapest, but every one of its 4 slots runs this buyer's jobs
    const donors = [prospect(0, { pricePerMegaFuel: 50n }), prospect(1), prospect(2)];
    const busy = (peerId: string) => (peerId === "peer-0" ? 4 : 0);
    const one = pickCandidates(donors, job, options(seededRandom(3), { busy, needed: 1 }));
    assert.deepEqual(one.chosen.map((c) => c.peerId).sort(), ["peer-1", "peer-2"]);
    assert.equal(one.passedOver.slots_full, 1);
    assert.equal(one.notAsked, 0);

    // a job of 3 replicas cannot be placed on the 2 free donors alone: the full one is asked too, cheapest first
    const three = pickCandidates(donors, job, options(seededRandom(3), { busy, needed: 3 }));
    assert.equal(three.chosen[0]!.peerId, "peer-0");
    assert.equal(three.chosen.length, 3);
    assert.equal(three.passedOver.slots_full, undefined);
  });

  it("keeps at most k donors with a slot free, the rest counted as not asked", () => {
    const donors = Array.from({ length: 10 }, (_, n) => prospect(n));
    const busy = (peerId: string) => (["peer-0", "peer-1", "peer-2"].includes(peerId) ? 4 : 0);
    const { chosen, passedOver, notAsked } = pickCandidates(donors, job, options(seededRandom(5), { busy }));
    assert.equal(chosen.length, 4);
    assert.ok(chosen.every((c) => !["peer-0", "peer-1", "peer-2"].includes(c.peerId)));
    assert.equal(passedOver.slots_full, 3);
    assert.equal(notAsked, 3);
  });

  it("gives a new donor with an equal price its share of requests and of the work", () => {
    // 15 established donors (large stake, good reputation) and one that just joined: it
    // has no stake recorded yet and neutral reputation; only its weight is smaller.
    const established = Array.from({ length: 15 }, (_, n) => prospect(n, { stake: 10n * ATP }));
    const newcomer = prospect(15, { stake: undefined });
    const donors = [...established, newcomer];
    const random = seededRandom(2026);
    let asked = 0;
    let executed = 0;
    const draws = 10_000;
    for (let i = 0; i < draws; i++) {
      const { chosen } = pickCandidates(donors, job, options(random));
      if (!chosen.includes(newcomer)) continue;
      asked++;
      const bids: Candidate[] = chosen.map((p) => ({ ...p, expiresAt: 10_000n, freeSlots: 4, stake: 0n }));
      const selection = selectExecutors(bids, {
        replicas: 1,
        maxPricePerMegaFuel: 1_000n,
        minReputation: 0,
        now: 1_000,
        livenessMs: 15_000,
        random,
      });
      if (selection.chosen[0]?.peerId === newcomer.peerId) executed++;
    }
    // Weights: 1 for the newcomer, 1 + log2(11) ≈ 4.46 for each established donor.
    const askedShare = asked / draws;
    const executedShare = executed / draws;
    assert.ok(askedShare > 0.05 && askedShare < 0.08, `asked in ${askedShare} of jobs`);
    assert.ok(executedShare > 0.011 && executedShare < 0.023, `executed ${executedShare} of jobs`);

    // With the same weight as the others it gets an equal share: k/N asked, 1/N executed.
    const equal = [...established, prospect(15)];
    const share = askedShares(equal, draws)("peer-15");
    assert.ok(share > 0.23 && share < 0.27, `asked in ${share} of jobs, expected 0.25`);
  });
});
