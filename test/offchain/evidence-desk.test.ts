// The evidence desk's logic on a fake clock: what it gossips and queues from a verdict, how it
// blames the sender of evidence that proves nothing, how it retries, settles and resumes after a
// restart. Signatures are real; the chain is a port (the devnet test covers the real one).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { BaseError, keccak256, toHex } from "viem";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { PrivateKeyAccount } from "viem/accounts";
import { EvidenceDesk } from "../../offchain/src/evidence/index.ts";
import type {
  EvidenceChain,
  EvidenceDeskPorts,
  EvidenceSettings,
  SlashSubmitter,
} from "../../offchain/src/evidence/index.ts";
import { cellDomain, jobIdOf, receiptToWire, signReceipt } from "../../offchain/src/protocol/index.ts";
import type { EvidenceMessage, JobSpecMessage, Receipt } from "../../offchain/src/protocol/index.ts";
import type { ReplicaReceipt, VerdictReport } from "../../offchain/src/quorum/report.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";
import { jobSpec } from "../support/contracts/fixture.ts";
import { freshDirs } from "../support/fresh-dirs.ts";

const log = pino({ level: "silent" });
const domain = cellDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
const operators = [0, 1, 2, 3, 4].map((i) => privateKeyToAccount(keccak256(toHex(`desk operator ${i}`))));
const TRUTH = keccak256(toHex("truth"));
const LIE = keccak256(toHex("lie"));
const freshDir = freshDirs("cell-desk-", "store");
const DISPUTE_WINDOW_MS = 60_000;

/** A clock whose time the test moves; timers fire when it passes them. */
class FakeClock {
  now = 1_000_000;
  #timers: { at: number; fire: () => void }[] = [];
  after = (delayMs: number, fire: () => void) => {
    const timer = { at: this.now + delayMs, fire };
    this.#timers.push(timer);
    return () => (this.#timers = this.#timers.filter((t) => t !== timer));
  };
  advance(ms: number): void {
    this.now += ms;
    const due = this.#timers.filter((t) => t.at <= this.now);
    this.#timers = this.#timers.filter((t) => t.at > this.now);
    for (const timer of due) timer.fire();
  }
}

class RevertError extends BaseError {
  readonly errorName: string;
  constructor(errorName: string) {
    super(`reverted with ${errorName}`);
    this.errorName = errorName;
  }
}

/** Registry of the five operators, all active; checkOutvote accepts anything. */
const chain: EvidenceChain = {
  operator: async (address: Address) =>
    operators.some((o) => o.address === address)
      ? { donor: address, accountableUntil: 0, jailedUntil: 0 }
      : undefined,
  checkOutvote: async () => undefined,
};

interface Harness {
  desk: EvidenceDesk;
  clock: FakeClock;
  store: Store;
  published: EvidenceMessage[];
  sent: string[];
  trust: { verified: string[]; invalid: [string, string][]; slashed: string[] };
  /** What the next submissions do: "ok", "down" (the chain unreachable) or a revert name. */
  outcomes: string[];
}

function harness(
  clock = new FakeClock(),
  store: Store = openStore(":memory:", { now: () => clock.now }),
  settings: Partial<EvidenceSettings> = { gossipSpreadMs: 0 },
): Harness {
  const published: EvidenceMessage[] = [];
  const sent: string[] = [];
  const outcomes: string[] = [];
  const trust = { verified: [] as string[], invalid: [] as [string, string][], slashed: [] as string[] };
  let caseDeadline = Number.MAX_SAFE_INTEGER;
  const attempt = async (what: string) => {
    sent.push(what);
    const outcome = outcomes.shift() ?? "ok";
    if (outcome === "down") throw new Error("connect ECONNREFUSED");
    if (outcome !== "ok") throw new RevertError(outcome);
  };
  const submit: SlashSubmitter = {
    equivocation: async (a) => {
      await attempt(`equivocation ${a.receipt.executor}`);
      return { txHash: keccak256(toHex(sent.length)) };
    },
    outvote: async (_spec, accused) => {
      await attempt(`outvote ${accused.receipt.executor}`);
      caseDeadline = clock.now + DISPUTE_WINDOW_MS;
      return { txHash: keccak256(toHex(sent.length)), caseId: 7n };
    },
    // A court whose only case is finalized once its dispute window has passed.
    advanceCase: async (_caseId, nowMs) => {
      if (nowMs <= caseDeadline) return { settled: false, nextAt: caseDeadline + 1 };
      sent.push("finalize 7");
      return { settled: true, outcome: "slashed" };
    },
    revertName: (err) => (err instanceof RevertError ? err.errorName : undefined),
  };
  const ports: EvidenceDeskPorts = {
    domain,
    chain,
    submit,
    publish: async (evidence) => void published.push(evidence),
    trust: {
      onVerifiedEvidence: (e) => trust.verified.push(`${e.kind} ${e.operator}`),
      onInvalidEvidence: (peer, detail) => trust.invalid.push([peer, detail]),
      onSlashed: (operator, note) => trust.slashed.push(`${note.kind} ${operator}`),
    },
    store,
    clock: { now: () => clock.now, after: clock.after },
    log,
    random: () => 0.5,
  };
  const desk = new EvidenceDesk(ports, settings);
  desk.start();
  return { desk, clock, store, published, sent, trust, outcomes };
}

const spec: JobSpecMessage = { ...jobSpec(4), salt: keccak256(toHex("desk")) };
const jobId = jobIdOf(domain, spec);

async function signed(operator: PrivateKeyAccount, outputCid: Hex) {
  const receipt: Receipt = {
    jobId,
    executor: operator.address,
    moduleCid: spec.moduleCid,
    inputCid: spec.inputCid,
    outputCid,
    fuelUsed: 10n,
    status: 0,
    startedAt: 1n,
    finishedAt: 2n,
  };
  return { receipt: receiptToWire(receipt), signature: await signReceipt(operator, domain, receipt) };
}

async function replica(operator: PrivateKeyAccount, outputCid: Hex): Promise<ReplicaReceipt> {
  return {
    peerId: `peer-${operator.address}`,
    operator: operator.address,
    latencyMs: 5,
    pricePerMegaFuel: 1_000n,
    ...(await signed(operator, outputCid)),
  };
}

async function equivocation(operator = operators[0]!): Promise<EvidenceMessage> {
  return { kind: "equivocation", a: await signed(operator, TRUTH), b: await signed(operator, LIE) };
}

/** Lets the desk's background work (verification, the durable queue write, the pump) run. */
async function drain(h: Harness): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    await h.desk.settled();
  }
}

describe("evidence desk", () => {
  it("turns each dissent from an accepted verdict into outvote evidence: gossiped, claimed once, finalized after the window", async () => {
    const h = harness();
    const report: VerdictReport = {
      jobId,
      spec,
      outcome: "accepted",
      quorum: 3,
      agreeing: await Promise.all(operators.slice(1, 4).map((o) => replica(o, TRUTH))),
      dissenting: [await replica(operators[0]!, LIE)],
      silent: [],
      decidedAt: h.clock.now,
    };
    h.desk.onVerdict(report);
    h.desk.onVerdict(report);
    await drain(h);
    assert.equal(h.published.length, 1, "gossiped once");
    const [evidence] = h.published;
    assert.equal(evidence?.kind, "outvote");
    assert.equal(evidence?.kind === "outvote" && evidence.quorum.length, 3);
    assert.deepEqual(h.sent, [`outvote ${operators[0]!.address}`]);
    const [row] = h.desk.history();
    assert.equal(row?.outcome, "case_opened");
    assert.equal(row?.state, "pending", "the slash waits for the dispute window");
    assert.equal(row?.caseId, "7");
    assert.equal(row?.source, "own");
    assert.deepEqual(h.trust.slashed, []);

    h.clock.advance(DISPUTE_WINDOW_MS);
    await drain(h);
    assert.equal(h.desk.history()[0]?.state, "pending", "not before the window has passed");
    h.clock.advance(1_000);
    await drain(h);
    assert.deepEqual(h.sent, [`outvote ${operators[0]!.address}`, "finalize 7"]);
    assert.equal(h.desk.history()[0]?.state, "done");
    assert.equal(h.desk.history()[0]?.outcome, "slashed");
    assert.equal(h.desk.history()[0]?.attempts, 1, "waiting for the window is no failed attempt");
    assert.deepEqual(h.trust.slashed, [`outvote ${operators[0]!.address}`]);
  });

  it("gossips and slashes an equivocation it saw itself", async () => {
    const h = harness();
    const { a, b } = (await equivocation()) as Extract<EvidenceMessage, { kind: "equivocation" }>;
    h.desk.onEquivocation({ jobId, operator: operators[0]!.address, peerId: "p", a, b, seenAt: h.clock.now });
    await drain(h);
    assert.equal(h.published.length, 1);
    assert.deepEqual(h.sent, [`equivocation ${operators[0]!.address}`]);
    assert.equal(h.desk.history()[0]?.outcome, "slashed");
  });

  it("acts on verified gossip once, and blames the sender of a forgery without acting", async () => {
    const h = harness();
    const evidence = await equivocation();
    const [first, concurrent] = await Promise.all([
      h.desk.receive(evidence, "honest-peer"),
      h.desk.receive(evidence, "relay-peer"),
    ]);
    assert.deepEqual(
      [first, concurrent],
      ["accept", "ignore"],
      "a copy arriving during the check waits for it",
    );
    assert.equal(await h.desk.receive(evidence, "late-peer"), "ignore", "a repeat is a lookup");
    const forged: EvidenceMessage = {
      kind: "equivocation",
      a: await signed(operators[1]!, TRUTH),
      b: {
        ...(await signed(operators[2]!, LIE)),
        receipt: { ...(await signed(operators[1]!, LIE)).receipt },
      },
    };
    assert.equal(await h.desk.receive(forged, "forger"), "reject");
    await drain(h);
    assert.deepEqual(h.trust.verified, [`equivocation ${operators[0]!.address}`]);
    assert.equal(h.trust.invalid.length, 1);
    assert.equal(h.trust.invalid[0]![0], "forger");
    assert.match(h.trust.invalid[0]![1], /receipt b's signature is not its executor/);
    assert.deepEqual(h.sent, [`equivocation ${operators[0]!.address}`], "only the verified one is submitted");
  });

  it("blames malformed bytes on their sender, naming what was wrong", async () => {
    const h = harness();
    await h.desk.onGossip(
      "junk-peer",
      new TextEncoder().encode(JSON.stringify({ kind: "equivocation", a: 1 })),
    );
    assert.equal(h.trust.invalid[0]?.[0], "junk-peer");
    assert.match(h.trust.invalid[0]?.[1] ?? "", /malformed evidence: a/);
  });

  it("retries a submission the chain did not take, with growing delays, until it goes through", async () => {
    const h = harness();
    h.outcomes.push("down", "down");
    await h.desk.receive(await equivocation(), "peer");
    await drain(h);
    assert.equal(h.sent.length, 1);
    assert.equal(h.desk.pending()[0]?.lastError, "connect ECONNREFUSED");
    h.clock.advance(1_999);
    await drain(h);
    assert.equal(h.sent.length, 1, "not before the first delay (2 s)");
    h.clock.advance(1);
    await drain(h);
    assert.equal(h.sent.length, 2);
    h.clock.advance(3_999);
    await drain(h);
    assert.equal(h.sent.length, 2, "the second delay is twice the first");
    h.clock.advance(1);
    await drain(h);
    assert.equal(h.sent.length, 3);
    assert.equal(h.desk.pending().length, 0);
    assert.equal(h.desk.history()[0]?.outcome, "slashed");
    assert.equal(h.desk.history()[0]?.attempts, 3);
  });

  it("takes AlreadySlashed as done and another revert as a failure named by its error, without retrying", async () => {
    const h = harness();
    h.outcomes.push("AlreadySlashed", "InvalidSignature");
    await h.desk.receive(await equivocation(operators[0]), "peer");
    await h.desk.receive(await equivocation(operators[1]), "peer");
    await drain(h);
    h.clock.advance(10 * 60_000);
    await drain(h);
    assert.equal(h.sent.length, 2);
    const byOperator = new Map(h.desk.history().map((row) => [row.operator, row]));
    assert.equal(byOperator.get(operators[0]!.address)?.state, "done");
    assert.equal(byOperator.get(operators[0]!.address)?.outcome, "AlreadySlashed");
    assert.equal(byOperator.get(operators[1]!.address)?.state, "failed");
    assert.equal(byOperator.get(operators[1]!.address)?.outcome, "InvalidSignature");
  });

  it("spreads submissions of gossiped evidence over a random wait; its own go at once", async () => {
    const h = harness(new FakeClock(), undefined, { gossipSpreadMs: 3_000 });
    await h.desk.receive(await equivocation(operators[0]), "peer");
    const { a, b } = (await equivocation(operators[1])) as Extract<EvidenceMessage, { kind: "equivocation" }>;
    h.desk.onEquivocation({ jobId, operator: operators[1]!.address, peerId: "p", a, b, seenAt: h.clock.now });
    await drain(h);
    assert.deepEqual(h.sent, [`equivocation ${operators[1]!.address}`], "its own at once");
    h.clock.advance(1_499);
    await drain(h);
    assert.equal(h.sent.length, 1, "the gossiped one waits its draw (0.5 × 3 s)");
    h.clock.advance(1);
    await drain(h);
    assert.deepEqual(h.sent.at(-1), `equivocation ${operators[0]!.address}`);
  });

  it("resumes a waiting submission after a restart, and does not queue the same evidence twice", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const first = harness(clock, openStore(dir, { now: () => clock.now }));
    first.outcomes.push("down");
    const evidence = await equivocation();
    await first.desk.receive(evidence, "peer");
    await drain(first);
    await first.desk.stop();
    first.store.close();

    const second = harness(clock, openStore(dir, { now: () => clock.now }));
    await second.desk.receive(evidence, "another-peer");
    await drain(second);
    assert.equal(second.sent.length, 0, "the row exists: no second submission, and it is not due yet");
    clock.advance(2_000);
    await drain(second);
    assert.deepEqual(second.sent, [`equivocation ${operators[0]!.address}`]);
    assert.equal(second.desk.history().length, 1);
    assert.equal(second.desk.history()[0]?.state, "done");
    await second.desk.stop();
    second.store.close();
  });
});
