// The trust book over a real SQLite store: verdicts feed reputation and quarantine, evidence
// and sightings quarantine, invalid evidence counts against its sender, everything survives
// a close and reopen of the store, and its tables stay within their bounds.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Address, Hex } from "viem";
import { openStore, type Store } from "../../offchain/src/store/index.ts";
import { NEUTRAL_SCORE, TrustBook, type TrustSettings } from "../../offchain/src/trust/index.ts";
import type { ReplicaReceipt, SilentReplica, VerdictReport } from "../../offchain/src/quorum/report.ts";
import type { JobSpecMessage, ReceiptWire } from "../../offchain/src/protocol/index.ts";
import { loadConfig } from "../../offchain/src/node/index.ts";
import { freshDirs } from "../support/fresh-dirs.ts";

const MIN = 60_000;
const freshDir = freshDirs("cell-trust-", "trust");
const MODULE: Hex = `0x${"11".repeat(32)}`;
const operator = (n: number): Address => `0x${n.toString(16).padStart(40, "0")}`;
const peer = (n: number) => `12D3KooWpeer${n}`;
const jobId = (n: number): Hex => `0x${n.toString(16).padStart(64, "0")}`;
const OUTPUT: Hex = `0x${"22".repeat(32)}`;
const LIE: Hex = `0x${"66".repeat(32)}`;

const spec: JobSpecMessage = {
  buyer: operator(99),
  moduleCid: MODULE,
  inputCid: `0x${"33".repeat(32)}`,
  entry: "_start",
  fuelLimit: 1_000_000n,
  memoryPages: 16,
  timeoutMs: 10_000,
  replicas: 4,
  maxPricePerMegaFuel: 1_000n,
  minReputation: 0,
  deadline: 0n,
  priority: 2,
  channel: `0x${"00".repeat(32)}`,
  salt: `0x${"44".repeat(32)}`,
};

function replica(n: number, job: Hex, outputCid = OUTPUT, latencyMs = 200): ReplicaReceipt {
  const receipt: ReceiptWire = {
    jobId: job,
    executor: operator(n),
    moduleCid: MODULE,
    inputCid: spec.inputCid,
    outputCid,
    fuelUsed: "1000",
    status: 0,
    startedAt: "1",
    finishedAt: "2",
  };
  return {
    peerId: peer(n),
    operator: operator(n),
    receipt,
    signature: `0x${"ab".repeat(65)}`,
    latencyMs,
    pricePerMegaFuel: 1_000n,
  };
}

function verdict(job: number, fields: Partial<VerdictReport> = {}): VerdictReport {
  return {
    jobId: jobId(job),
    spec,
    outcome: "accepted",
    quorum: 3,
    agreeing: [1, 2, 3].map((n) => replica(n, jobId(job))),
    dissenting: [],
    silent: [],
    decidedAt: 0,
    ...fields,
  };
}

interface Harness {
  store: Store;
  book: TrustBook;
  clock: { now: number };
  warnings: string[];
  reopen(): Harness;
}

function open(dir: string, settings: Partial<TrustSettings> = {}, clock = { now: 1_000 }): Harness {
  const store = openStore(dir, { now: () => clock.now });
  const warnings: string[] = [];
  const log = { info: () => {}, warn: (_: object, message: string) => void warnings.push(message) };
  const book = new TrustBook({ store, now: () => clock.now, log }, settings);
  return {
    store,
    book,
    clock,
    warnings,
    reopen() {
      store.close();
      return open(dir, settings, clock);
    },
  };
}

describe("trust book", () => {
  it("quarantines an outvoted liar at once, by operator and by peer id, and raises the agreeing ones", () => {
    const { book, store } = open(freshDir());
    book.onVerdict(verdict(1, { dissenting: [replica(4, jobId(1), LIE)] }));
    assert.equal(book.isBlocked(operator(4)), true);
    assert.equal(book.isBlocked(operator(4).toUpperCase().replace("0X", "0x")), true);
    assert.equal(book.isBlocked(peer(4)), true);
    assert.equal(book.isBlocked(operator(1)), false);
    assert.ok(book.reputation(operator(1)) > NEUTRAL_SCORE);
    assert.ok(book.reputation(operator(4)) < NEUTRAL_SCORE);
    const [liar] = book.view(operator(4));
    assert.equal(liar!.status, "quarantined");
    assert.equal(liar!.strikes, 1);
    assert.equal(liar!.until, 1_000 + 5 * MIN);
    assert.equal(liar!.peerId, peer(4));
    assert.match(liar!.reason!, /outvoted/);
    assert.deepEqual(
      liar!.evidence.map((e) => [e.kind, e.jobId]),
      [["outvote", jobId(1)]],
    );
    assert.equal(liar!.stats!.dissents, 1);
    assert.equal(liar!.suspicion, 0.95, "the score of a verified outvote, not the weighted 0.45");
    store.close();
  });

  it("keeps reputation, quarantine, strikes and slash notes across a restart", () => {
    let h = open(freshDir());
    h.book.onVerdict(verdict(1, { dissenting: [replica(4, jobId(1), LIE)] }));
    h.book.onSlashed(operator(4), { jobId: jobId(1), kind: "outvote", tx: `0x${"77".repeat(32)}` });
    h.book.onInvalidEvidence("12D3KooWforger", "bad signature");
    const before = { honest: h.book.reputation(operator(1)), liar: h.book.reputation(operator(4)) };
    const moduleScore = h.book.reputation(operator(1), MODULE);
    h = h.reopen();
    assert.equal(h.book.isBlocked(operator(4)), true);
    assert.equal(h.book.isBlocked(peer(4)), true);
    assert.equal(h.book.reputation(operator(1)), before.honest);
    assert.equal(h.book.reputation(operator(4)), before.liar);
    assert.equal(h.book.reputation(operator(1), MODULE), moduleScore);
    const [liar] = h.book.view(operator(4));
    assert.equal(liar!.strikes, 1);
    assert.deepEqual(
      liar!.slashes.map((s) => [s.kind, s.jobId]),
      [["outvote", jobId(1)]],
    );
    const forger = h.book.view().find((v) => v.subject === "12D3KooWforger");
    assert.ok(forger!.suspicion > 0);
    assert.equal(h.warnings.length, 0);
    // time passes while the node is down: the quarantine ends, observation follows
    h.clock.now += 5 * MIN;
    h = h.reopen();
    assert.equal(h.book.isBlocked(operator(4)), false);
    assert.equal(h.book.view(operator(4))[0]!.status, "observation");
    h.store.close();
  });

  it("quarantines on an equivocation sighting and on verified evidence, counting one job once", () => {
    const { book, store } = open(freshDir());
    const receipt = replica(5, jobId(2));
    book.onEquivocation({
      jobId: jobId(2),
      operator: operator(5),
      peerId: peer(5),
      a: receipt,
      b: { ...receipt, receipt: { ...receipt.receipt, outputCid: LIE } },
      seenAt: 1_000,
    });
    assert.equal(book.isBlocked(peer(5)), true);
    assert.match(book.view(operator(5))[0]!.reason!, /two different receipts/);

    book.onVerifiedEvidence({ kind: "outvote", operator: operator(6), jobId: jobId(3) });
    book.onVerifiedEvidence({ kind: "outvote", operator: operator(6), jobId: jobId(3) });
    const [outvoted] = book.view(operator(6));
    assert.equal(outvoted!.status, "quarantined");
    assert.equal(outvoted!.evidence.length, 1);
    assert.equal(outvoted!.stats!.dissents, 1);
    store.close();
  });

  it("counts invalid evidence against its sender, and a second one in observation is a strike", () => {
    const { book, store, clock } = open(freshDir());
    book.onInvalidEvidence(peer(7), "unstaked signers");
    assert.equal(book.isBlocked(peer(7)), false);
    const [sender] = book.view().filter((v) => v.subject === peer(7));
    assert.equal(sender!.suspicion, 0.15 * 0.25 + 0.1);
    assert.match(sender!.evidence[0]!.detail!, /unstaked signers/);
    book.onVerdict(
      verdict(4, {
        agreeing: [replica(7, jobId(4)), replica(2, jobId(4)), replica(3, jobId(4))],
        dissenting: [replica(8, jobId(4), LIE)],
      }),
    );
    book.onVerdict(
      verdict(5, {
        agreeing: [replica(1, jobId(5)), replica(2, jobId(5)), replica(3, jobId(5))],
        dissenting: [replica(7, jobId(5), LIE)],
      }),
    );
    assert.equal(book.isBlocked(peer(7)), true); // the peer is now linked to its operator
    clock.now += 5 * MIN;
    book.onInvalidEvidence(peer(7), "wrong spec digest");
    const [struck] = book.view(operator(7));
    assert.equal(struck!.strikes, 2);
    assert.equal(struck!.until, clock.now + 15 * MIN);
    store.close();
  });

  it("counts a forged message as a network anomaly against its peer", () => {
    const { book, store } = open(freshDir());
    book.onProtocolAbuse(peer(9), "receipt_invalid: signature does not recover the executor");
    const [abuser] = book.view().filter((v) => v.subject === peer(9));
    assert.equal(abuser!.status, "clear");
    assert.equal(abuser!.evidence[0]!.kind, "network_anomaly");
    assert.match(abuser!.evidence[0]!.detail!, /receipt_invalid/);
    store.close();
  });

  it("counts silent replicas: timeouts lower reputation, cancellations do not; no quorum counts no dissent", () => {
    const { book, store } = open(freshDir());
    const silent = (n: number, why: SilentReplica["why"]): SilentReplica => ({
      peerId: peer(n),
      operator: operator(n),
      why,
    });
    book.onVerdict(
      verdict(6, { silent: [silent(4, "timeout"), silent(5, "cancelled"), silent(6, "no_result")] }),
    );
    assert.ok(book.reputation(operator(4)) < NEUTRAL_SCORE);
    assert.equal(book.reputation(operator(5)), NEUTRAL_SCORE);
    assert.ok(book.reputation(operator(6)) < NEUTRAL_SCORE);
    assert.ok(book.reputation(operator(6)) > book.reputation(operator(4)));
    book.onVerdict(
      verdict(7, {
        outcome: "no_quorum",
        agreeing: [],
        dissenting: [replica(8, jobId(7)), replica(9, jobId(7), LIE)],
      }),
    );
    assert.equal(book.reputation(operator(9)), NEUTRAL_SCORE);
    assert.equal(book.isBlocked(operator(9)), false);
    store.close();
  });

  it("stays within its bounds: evicts the least recently seen clear subject first, and old reputation rows", () => {
    const dir = freshDir();
    let h = open(dir, { maxSubjects: 3, maxReputationRows: 4 });
    h.book.onVerdict(
      verdict(1, { agreeing: [replica(1, jobId(1))], quorum: 1, dissenting: [replica(2, jobId(1), LIE)] }),
    );
    h.clock.now += 1;
    h.book.onVerdict(verdict(2, { agreeing: [replica(3, jobId(2))], quorum: 1 }));
    h.clock.now += 1;
    h.book.onVerdict(verdict(3, { agreeing: [replica(4, jobId(3))], quorum: 1 }));
    const subjects = h.book.view().map((v) => v.subject);
    assert.equal(subjects.length, 3);
    assert.ok(subjects.includes(operator(2)), "the quarantined one stays");
    assert.ok(!subjects.includes(operator(1)), "the least recently seen clear one went");
    h = h.reopen();
    assert.equal(h.book.view().length, 3);
    assert.equal(h.book.isBlocked(operator(2)), true);
    // 4 rows of reputation at most: operators 3 and 4 (overall + module) are the newest
    assert.equal(h.book.reputation(operator(1)), NEUTRAL_SCORE);
    assert.ok(h.book.reputation(operator(4)) > NEUTRAL_SCORE);
    assert.equal(h.store.trust.allReputation().length, 4);
    h.store.close();
  });
});

describe("trust settings in the node config", () => {
  it("takes a trust section, keeps the defaults for the rest, and refuses settings that cannot work", async () => {
    const config = await loadConfig(undefined, { passphrase: "pw", trust: { quarantineMs: [1_000, 2_000] } });
    assert.deepEqual(config.trust, { quarantineMs: [1_000, 2_000] });
    const book = new TrustBook(
      { store: openStore(":memory:"), now: () => 0, log: { info() {}, warn() {} } },
      config.trust,
    );
    assert.deepEqual(book.settings.quarantineMs, [1_000, 2_000]);
    assert.equal(book.settings.observationMs, 10 * MIN);
    await assert.rejects(
      loadConfig(undefined, {
        passphrase: "pw",
        trust: {
          weights: {
            consensusViolations: 0.5,
            equivocations: 0.5,
            resultInconsistencies: 0.5,
            networkAnomalies: 0,
            timingAnomalies: 0,
            recentBehaviour: 0,
          },
        },
      }),
      /trust.*weights must sum to 1/s,
    );
    await assert.rejects(
      loadConfig(undefined, { passphrase: "pw", trust: { quarantineThreshold: 2 } }),
      /trust/,
    );
  });
});
