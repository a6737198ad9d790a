// Selection with the trust layer: a quarantined operator and one whose reputation is below
// the job's minimum are neither asked to bid nor chosen; a better reputation wins a tie.
// Real trust book over an in-memory SQLite store, real peer book fed with adverts.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Address, Hex } from "viem";
import { selectExecutors, type Candidate } from "../../offchain/src/market/index.ts";
import { PeerBook } from "../../offchain/src/node/peer-book.ts";
import type { ReplicaReceipt, VerdictReport } from "../../offchain/src/quorum/report.ts";
import type { JobSpecMessage } from "../../offchain/src/protocol/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { NEUTRAL_SCORE, TrustBook } from "../../offchain/src/trust/index.ts";
import { testAdvert } from "../support/adverts.ts";

const MODULE: Hex = `0x${"11".repeat(32)}`;
const operator = (n: number): Address => `0x${n.toString(16).padStart(40, "0")}`;
const peer = (n: number) => `12D3KooWpeer${n}`;
const JOB: Hex = `0x${"01".repeat(32)}`;
const OUTPUT: Hex = `0x${"22".repeat(32)}`;
const LIE: Hex = `0x${"66".repeat(32)}`;
const MIN_REPUTATION = 20_000;

const spec = { moduleCid: MODULE, replicas: 3 } as JobSpecMessage;

function replica(n: number, outputCid = OUTPUT): ReplicaReceipt {
  return {
    peerId: peer(n),
    operator: operator(n),
    receipt: {
      jobId: JOB,
      executor: operator(n),
      moduleCid: MODULE,
      inputCid: MODULE,
      outputCid,
      fuelUsed: "10",
      status: 0,
      startedAt: "1",
      finishedAt: "2",
    },
    signature: `0x${"ab".repeat(65)}`,
    latencyMs: 100,
    pricePerMegaFuel: 1_000n,
  };
}

/** Operators 1–3 agreed, 4 lied (quarantined), 5 timed out five times (low reputation), 6 is new. */
function trustedBook(): TrustBook {
  const book = new TrustBook(
    { store: openStore(":memory:"), now: () => 1_000, log: { info() {}, warn() {} } },
    {},
  );
  const report: VerdictReport = {
    jobId: JOB,
    spec,
    outcome: "accepted",
    quorum: 3,
    agreeing: [1, 2, 3].map((n) => replica(n)),
    dissenting: [replica(4, LIE)],
    silent: [],
    decidedAt: 1_000,
  };
  book.onVerdict(report);
  for (let i = 0; i < 5; i++)
    book.onVerdict({
      ...report,
      agreeing: [],
      dissenting: [],
      outcome: "no_quorum",
      silent: [{ peerId: peer(5), operator: operator(5), why: "timeout" }],
    });
  return book;
}

describe("selection with trust", () => {
  it("feeds the fixture as intended", () => {
    const book = trustedBook();
    assert.equal(book.isBlocked(operator(4)), true);
    assert.equal(book.isBlocked(operator(5)), false);
    assert.ok(book.reputation(operator(5), MODULE) < MIN_REPUTATION);
    assert.ok(book.reputation(operator(1), MODULE) > NEUTRAL_SCORE);
    assert.equal(book.reputation(operator(6), MODULE), NEUTRAL_SCORE);
  });

  it("never asks a quarantined or low-reputation donor to bid", () => {
    const trust = trustedBook();
    const donors = new PeerBook({ trust });
    for (let n = 1; n <= 6; n++)
      donors.upsertFromAdvert(
        testAdvert({ peerId: peer(n), operator: operator(n), peerKey: `0x${"00".repeat(32)}` }),
        1_000,
        true,
      );
    const job = {
      fuelLimit: 1_000n,
      memoryPages: 16,
      maxPricePerMegaFuel: 10_000n,
      minReputation: MIN_REPUTATION,
      moduleCid: MODULE,
    };
    const { chosen, passedOver } = donors.candidates(job, {
      now: 1_000,
      livenessMs: 60_000,
      exclude: new Set(),
    });
    assert.deepEqual(chosen.map((d) => d.peerId).sort(), [1, 2, 3, 6].map(peer).sort());
    assert.deepEqual(passedOver, { bid_rejected_reputation: 2 });
    assert.equal(donors.isBlocked(peer(4)), true);
    assert.equal(donors.isBlocked(peer(5)), false);
  });

  it("never chooses a quarantined or low-reputation bidder, and prefers the better reputation at one price", () => {
    const trust = trustedBook();
    const candidate = (n: number): Candidate => ({
      peerId: peer(n),
      operator: operator(n),
      pricePerMegaFuel: 100n,
      expiresAt: 10_000n,
      staked: true,
      stake: 10n ** 18n,
      lastSeen: 1_000,
      freeSlots: 1,
    });
    const options = {
      replicas: 3,
      maxPricePerMegaFuel: 1_000n,
      minReputation: MIN_REPUTATION,
      now: 1_000,
      livenessMs: 60_000,
      moduleCid: MODULE,
      reputation: (op: Address, module?: string) => trust.reputation(op, module),
      blocked: (peerId: string, op: Address) => trust.isBlocked(peerId) || trust.isBlocked(op),
    };
    const { chosen, rejected } = selectExecutors([6, 5, 4, 3, 2, 1].map(candidate), options);
    assert.deepEqual(
      chosen.map((c) => c.peerId).sort(),
      [1, 2, 3].map(peer).sort(),
      "the new donor 6 loses the tie",
    );
    const reasons = new Map(rejected.map((r) => [r.candidate.peerId, r]));
    assert.match(reasons.get(peer(4))!.detail, /quarantined or banned/);
    assert.equal(reasons.get(peer(5))!.reason, "bid_rejected_reputation");
    assert.match(reasons.get(peer(5))!.detail, /reputation below/);
  });
});
