// The verdict rule over random vote sets (fast-check): at most one result, never one with
// fewer than q agreeing operators, q honest votes always win, and the order of arrival
// changes nothing.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { quorumSize, tally, voteKey } from "../../offchain/src/quorum/index.ts";
import type { Verdict, Vote } from "../../offchain/src/quorum/index.ts";

const RESULTS = [
  { status: 0, outputCid: "0xaa", fuelUsed: "100" },
  { status: 0, outputCid: "0xbb", fuelUsed: "100" },
  { status: 0, outputCid: "0xaa", fuelUsed: "101" },
  { status: 2, outputCid: "0xaa", fuelUsed: "100" },
];

const operatorName = fc.integer({ min: 0, max: 11 }).map((i) => `0x${i.toString(16).padStart(40, "0")}`);
const vote: fc.Arbitrary<Vote> = fc.record({
  operator: operatorName,
  receipt: fc.constantFrom(...RESULTS),
});
const voteSets = fc.record({
  n: fc.integer({ min: 1, max: 10 }),
  votes: fc.array(vote, { maxLength: 16 }),
  stillRunning: fc.integer({ min: 0, max: 10 }),
});

/** Operators that signed exactly one result. */
function honestCounts(votes: readonly Vote[]): Map<string, Set<string>> {
  const keysByOperator = new Map<string, Set<string>>();
  for (const { operator, receipt } of votes)
    keysByOperator.set(operator, (keysByOperator.get(operator) ?? new Set()).add(voteKey(receipt)));
  const votersByKey = new Map<string, Set<string>>();
  for (const [operator, keys] of keysByOperator) {
    if (keys.size !== 1) continue;
    const key = [...keys][0]!;
    votersByKey.set(key, (votersByKey.get(key) ?? new Set()).add(operator));
  }
  return votersByKey;
}

function canonical(verdict: Verdict<Vote>): unknown {
  const operators = (votes: readonly Vote[]) => votes.map((v) => v.operator).sort();
  const equivocators = verdict.equivocations.map((e) => e.operator).sort();
  if (verdict.kind === "accepted")
    return {
      kind: verdict.kind,
      key: verdict.key,
      agreeing: operators(verdict.agreeing),
      dissenting: operators(verdict.dissenting),
      equivocators,
    };
  return { kind: verdict.kind, tally: verdict.tally, equivocators };
}

describe("quorum size", () => {
  it("is max(2f+1, ⌊n/2⌋+1) with f = ⌊(n−1)/3⌋", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 10].map(quorumSize), [1, 2, 2, 3, 3, 4, 5, 7]);
    assert.throws(() => quorumSize(0), /replicas must be a positive integer, got 0/);
  });

  it("is always a strict majority of n", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 255 }), (n) => 2 * quorumSize(n) > n));
  });
});

describe("tally", () => {
  it("never accepts a result fewer than q distinct operators signed, and accepts at most one", () => {
    fc.assert(
      fc.property(voteSets, ({ n, votes, stillRunning }) => {
        const verdict = tally(votes, { n, stillRunning });
        if (verdict.kind !== "accepted") return;
        const voters = honestCounts(votes);
        const agreeingOperators = new Set(verdict.agreeing.map((v) => v.operator));
        assert.equal(agreeingOperators.size, verdict.agreeing.length, "one vote per operator");
        assert.ok(agreeingOperators.size >= quorumSize(n));
        assert.deepEqual(agreeingOperators, voters.get(verdict.key));
        const otherQuorums = [...voters].filter(
          ([key, set]) => key !== verdict.key && set.size >= quorumSize(n),
        );
        assert.deepEqual(otherQuorums, []);
        for (const dissent of verdict.dissenting) assert.notEqual(voteKey(dissent.receipt), verdict.key);
      }),
    );
  });

  it("accepts once some result has q honest operators and at most n voted", () => {
    fc.assert(
      fc.property(voteSets, ({ n, votes, stillRunning }) => {
        const operators = new Set(votes.map((v) => v.operator));
        fc.pre(operators.size <= n);
        const q = quorumSize(n);
        const decided = [...honestCounts(votes)].find(([, set]) => set.size >= q);
        const verdict = tally(votes, { n, stillRunning });
        if (decided) {
          assert.equal(verdict.kind, "accepted");
          assert.equal(verdict.kind === "accepted" && verdict.key, decided[0]);
        } else assert.notEqual(verdict.kind, "accepted");
      }),
    );
  });

  it("lets q honest votes win against every other replica of n lying, equivocating or silent", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }).chain((n) =>
          fc.record({
            n: fc.constant(n),
            liars: fc.array(fc.array(fc.constantFrom(...RESULTS.slice(1)), { minLength: 1, maxLength: 3 }), {
              maxLength: n - quorumSize(n),
            }),
            seed: fc.integer(),
          }),
        ),
        ({ n, liars, seed }) => {
          const q = quorumSize(n);
          const honest: Vote[] = Array.from({ length: q }, (_, i) => ({
            operator: `honest-${i}`,
            receipt: RESULTS[0]!,
          }));
          const lies: Vote[] = liars.flatMap((receipts, i) =>
            receipts.map((receipt) => ({ operator: `liar-${i}`, receipt })),
          );
          const votes = shuffle([...honest, ...lies], seed);
          const verdict = tally(votes, { n, stillRunning: 0 });
          assert.equal(verdict.kind, "accepted");
          assert.equal(verdict.kind === "accepted" && verdict.key, voteKey(RESULTS[0]!));
        },
      ),
    );
  });

  it("decides the same whatever order the votes came in", () => {
    fc.assert(
      fc.property(voteSets, fc.integer(), ({ n, votes, stillRunning }, seed) => {
        const first = tally(votes, { n, stillRunning });
        const second = tally(shuffle(votes, seed), { n, stillRunning });
        assert.deepEqual(canonical(second), canonical(first));
      }),
    );
  });

  it("calls a quorum impossible exactly when the leader and every replica still running fall short of q", () => {
    fc.assert(
      fc.property(voteSets, ({ n, votes, stillRunning }) => {
        const verdict = tally(votes, { n, stillRunning });
        if (verdict.kind === "accepted") return;
        const q = quorumSize(n);
        const leading = verdict.tally[0]?.votes ?? 0;
        const conflicting = verdict.tally.filter((entry) => entry.votes >= q).length > 1;
        assert.equal(
          verdict.kind === "impossible",
          conflicting ? stillRunning < q : leading + stillRunning < q,
        );
      }),
    );
  });

  it("counts a timeout as no vote: 2 of 3 agree with the third silent", () => {
    const votes: Vote[] = [
      { operator: "a", receipt: RESULTS[0]! },
      { operator: "b", receipt: RESULTS[0]! },
    ];
    const verdict = tally(votes, { n: 3, stillRunning: 0 });
    assert.equal(verdict.kind, "accepted");
  });

  it("waits while the replicas still running could decide, and gives up once they cannot", () => {
    const votes: Vote[] = [
      { operator: "a", receipt: RESULTS[0]! },
      { operator: "b", receipt: RESULTS[1]! },
    ];
    assert.equal(tally(votes, { n: 4, stillRunning: 2 }).kind, "pending");
    const stuck = tally(votes, { n: 4, stillRunning: 1 });
    assert.equal(stuck.kind, "impossible");
    assert.deepEqual(stuck.kind === "impossible" && stuck.tally.map((entry) => entry.votes), [1, 1]);
  });

  it("reports an operator's two different receipts and counts neither", () => {
    const votes: Vote[] = [
      { operator: "a", receipt: RESULTS[0]! },
      { operator: "A", receipt: RESULTS[1]! },
      { operator: "b", receipt: RESULTS[0]! },
      { operator: "b", receipt: RESULTS[0]! },
    ];
    const verdict = tally(votes, { n: 3, stillRunning: 0 });
    assert.equal(verdict.kind, "impossible");
    assert.deepEqual(
      verdict.equivocations.map((e) => [e.operator, voteKey(e.a.receipt), voteKey(e.b.receipt)]),
      [["a", voteKey(RESULTS[0]!), voteKey(RESULTS[1]!)]],
    );
    assert.deepEqual(verdict.kind === "impossible" && verdict.tally, [
      { key: voteKey(RESULTS[0]!), votes: 1 },
    ]);
  });
});

/** A deterministic shuffle (the seed comes from fast-check, so failures replay). */
function shuffle<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
