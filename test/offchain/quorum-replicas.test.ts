// Replicated jobs on the buyer's job state machine, driven event by event with a fake
// clock: replica slots, votes, the verdict, added replicas, cancels and spot checks.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Address, Hex } from "viem";
import { buildJobSpec, toAnnounce } from "../../offchain/src/market/index.ts";
import { testBuyerSettings } from "../support/buyer-settings.ts";
import { cidOf, cidToBytes32 } from "../../offchain/src/protocol/index.ts";
import {
  activeAttempts,
  newJobState,
  nextWakeAt,
  restoreJobState,
  step,
} from "../../offchain/src/node/buyer-machine.ts";
import type {
  BidCandidate,
  BuyerEffect,
  BuyerEvent,
  BuyerJobState,
  BuyerSettings,
  Verification,
} from "../../offchain/src/node/buyer-machine.ts";
import type { SignedReceipt } from "../../offchain/src/node/buyer-receipts.ts";
import { jobView } from "../../offchain/src/node/buyer-view.ts";
import { BuyerJournal } from "../../offchain/src/node/buyer-journal.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { pino } from "pino";

const settings: BuyerSettings = testBuyerSettings({ maxStoredBids: 16, maxEvents: 64, maxPastAttempts: 16 });

const JOB_ID = `0x${"cd".repeat(32)}` as Hex;
const encode = (text: string) => new TextEncoder().encode(text);
const MODULE = encode("module");
const INPUT = encode("input");
const RIGHT = encode("right");
const WRONG = encode("wrong");
const OTHER = encode("other");
const cids = new Map<Uint8Array, string>();
for (const bytes of [MODULE, INPUT, RIGHT, WRONG, OTHER]) cids.set(bytes, String(await cidOf(bytes)));
const PEERS = ["A", "B", "C", "D", "E", "F", "G", "H"];
const operatorOf = (peer: string): Address =>
  `0x${(PEERS.indexOf(peer) + 10).toString(16).padStart(40, "0")}` as Address;

function freshJob(replicas: number, verification?: Verification, minReputation = 0): BuyerJobState {
  const spec = buildJobSpec({
    buyer: "0x00000000000000000000000000000000000000bb",
    moduleCid: cidToBytes32(cids.get(MODULE)!),
    inputCid: cidToBytes32(cids.get(INPUT)!),
    maxPricePerMegaFuel: 100n,
    fuelLimit: 1_000n,
    timeoutMs: 1_000,
    deadlineMs: 60_000,
    replicas,
    minReputation,
    now: 0,
  });
  const signature = `0x${"11".repeat(64)}1b` as Hex;
  const announce = toAnnounce(
    { jobId: JOB_ID, spec, signature },
    {
      moduleCid: cids.get(MODULE)!,
      inputCid: cids.get(INPUT)!,
      moduleSize: MODULE.length,
      inputSize: INPUT.length,
      buyerPeer: "12D3KooWBuyerBuyerBuyerBuyerBuyerBuyerBuyer",
    },
  );
  return newJobState(JOB_ID, spec, signature, announce, verification);
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

class Driver {
  job: BuyerJobState;
  now = 0;
  effects: BuyerEffect[] = [];

  readonly options: Partial<BuyerSettings>;

  constructor(job: BuyerJobState, options: Partial<BuyerSettings> = {}) {
    this.job = job;
    this.options = options;
  }

  send(event: DistributiveOmit<BuyerEvent, "now">): BuyerEffect[] {
    const result = step(this.job, { ...event, now: this.now } as BuyerEvent, {
      ...settings,
      ...this.options,
    });
    this.job = result.job;
    this.effects.push(...result.effects);
    return result.effects;
  }

  /** One placement: every peer in `peers` bids and all chosen are assigned and accept. */
  place(peers: string[]): this {
    if (this.job.state === "queued" && this.job.events.length === 0) this.send({ type: "submitted" });
    const before = this.effects.length;
    this.send({ type: "place", expected: peers });
    for (const peer of peers) {
      const offered = this.send({
        type: "offer_received",
        from: peer,
        offer: {
          type: "bid",
          bid: { jobId: JOB_ID, executor: operatorOf(peer), pricePerMegaFuel: "10", expiresAt: "99999999" },
          signature: `0x${"22".repeat(65)}` as Hex,
          peerKey: `0x${"33".repeat(32)}` as Hex,
          freeSlots: 1,
        },
        donor: { operator: operatorOf(peer), staked: true },
      });
      const check = offered.find((effect) => effect.type === "check_bid");
      if (check)
        this.send({
          type: "bid_checked",
          from: peer,
          round: check.round,
          candidate: candidate(peer, this.now),
        });
    }
    for (const check of this.effects.slice(before).filter((e) => e.type === "check_bid_signature"))
      this.send({
        type: "bid_signature_checked",
        round: check.round,
        peerId: check.candidate.peerId,
        valid: true,
      });
    for (const assign of this.effects.slice(before).filter((e) => e.type === "assign"))
      this.send({
        type: "assign_answered",
        attempt: assign.attempt,
        response: { type: "accept", jobId: JOB_ID },
      });
    return this;
  }

  /** `peer` delivers a receipt for `output`, and it checks out. */
  deliver(peer: string, output: Uint8Array, fuelUsed = "500"): BuyerEffect[] {
    const receipt = receiptOf(peer, output, fuelUsed);
    const [verify] = this.send({ type: "receipt_delivered", from: peer, receipt, ack: 1 });
    assert.equal(verify?.type, "verify_receipt", `${peer}'s receipt goes to verification`);
    const attempt = verify.type === "verify_receipt" ? verify.attempt : 0;
    return this.send({ type: "receipt_verified", attempt, receipt, output, ack: 1 });
  }

  working(): string[] {
    return activeAttempts(this.job).map((attempt) => attempt.peerId);
  }

  of<T extends BuyerEffect["type"]>(type: T): Extract<BuyerEffect, { type: T }>[] {
    return this.effects.filter((effect): effect is Extract<BuyerEffect, { type: T }> => effect.type === type);
  }
}

function candidate(peer: string, now: number): BidCandidate {
  return {
    peerId: peer,
    operator: operatorOf(peer),
    pricePerMegaFuel: 10n,
    expiresAt: 99_999_999n,
    staked: true,
    stake: 0n,
    lastSeen: now,
    freeSlots: 1,
    bid: { jobId: JOB_ID, executor: operatorOf(peer), pricePerMegaFuel: "10", expiresAt: "99999999" },
    signature: `0x${"22".repeat(65)}` as Hex,
  };
}

function receiptOf(peer: string, output: Uint8Array, fuelUsed: string): SignedReceipt {
  const outputCid = cids.get(output)!;
  return {
    receipt: {
      jobId: JOB_ID,
      executor: operatorOf(peer),
      moduleCid: cidToBytes32(cids.get(MODULE)!),
      inputCid: cidToBytes32(cids.get(INPUT)!),
      outputCid: cidToBytes32(outputCid),
      fuelUsed,
      status: 0,
      startedAt: "1",
      finishedAt: "2",
    },
    signature: `0x${peer.charCodeAt(0).toString(16).repeat(65)}` as Hex,
    outputCid,
  };
}

describe("replicated jobs: placement", () => {
  it("places n replicas at once on distinct operators and never twice on one", () => {
    const driver = new Driver(freshJob(3)).place(["A", "B", "C", "D"]);
    assert.equal(driver.of("assign").length, 3);
    assert.deepEqual(driver.working().sort(), ["A", "B", "C"]);
    assert.deepEqual(
      driver.job.slots.map((slot) => slot.current?.slot),
      [0, 1, 2],
    );
    assert.equal(driver.job.state, "assigned");
    assert.equal(driver.of("placement_ended").length, 1, "one placement, ended once");
  });

  it("places the missing replicas in a later round when too few donors bid", () => {
    const driver = new Driver(freshJob(3)).place(["A"]);
    assert.deepEqual(driver.working(), ["A"]);
    assert.equal(driver.job.state, "assigned", "the job stays assigned while its other replicas wait");
    assert.equal(driver.of("queue").at(-1)?.reason, "no_bid", "the missing replicas wait for another round");
    driver.now = 2_500;
    driver.place(["A", "B", "C"]);
    assert.deepEqual(driver.working().sort(), ["A", "B", "C"]);
    assert.ok(!driver.of("request_bids").at(-1)?.peers.includes("A"), "A is not asked again");
  });
});

describe("replicated jobs: the bid window", () => {
  it("keeps a round open past its bid window while its bids cannot fill every replica, and places all at once", () => {
    const driver = new Driver(freshJob(2));
    driver.send({ type: "submitted" });
    driver.send({ type: "place", expected: ["A", "B"] });
    const bid = (peer: string, at: number) => {
      driver.now = at;
      const offered = driver.send({
        type: "offer_received",
        from: peer,
        offer: {
          type: "bid",
          bid: { jobId: JOB_ID, executor: operatorOf(peer), pricePerMegaFuel: "10", expiresAt: "99999999" },
          signature: `0x${"22".repeat(65)}` as Hex,
          peerKey: `0x${"33".repeat(32)}` as Hex,
          freeSlots: 1,
        },
        donor: { operator: operatorOf(peer), staked: true },
      });
      const check = offered.find((effect) => effect.type === "check_bid")!;
      driver.send({ type: "bid_checked", from: peer, round: check.round, candidate: candidate(peer, at) });
    };
    bid("A", 10);
    driver.now = 10 + settings.bidWindowMs + 1;
    driver.send({ type: "tick" });
    assert.equal(driver.of("check_bid_signature").length, 0, "one bid for two replicas: the round waits");
    assert.equal(nextWakeAt(driver.job), driver.job.round!.closesAt, "and wakes only at the round's end");
    bid("B", 500);
    assert.deepEqual(
      driver
        .of("check_bid_signature")
        .map((effect) => effect.candidate.peerId)
        .sort(),
      ["A", "B"],
      "both replicas are chosen in the one round",
    );
  });
});

describe("replicated jobs: reputation", () => {
  it("passes over donors below the spec's minReputation, by the module's reputation the trust layer gives", () => {
    const asked: string[] = [];
    const reputation = (operator: string, moduleCid: string) => {
      asked.push(moduleCid);
      return operator === operatorOf("B") ? 10_000 : 40_000;
    };
    const driver = new Driver(freshJob(2, undefined, 30_000), { reputation }).place(["A", "B", "C"]);
    assert.deepEqual(driver.working().sort(), ["A", "C"]);
    assert.ok(
      driver.job.round?.events.some(
        (event) => event.reason === "bid_rejected_reputation" && event.peerId === "B",
      ),
    );
    assert.ok(asked.every((moduleCid) => moduleCid === cids.get(MODULE)));
  });
});

describe("replicated jobs: verdicts", () => {
  it("n=3: accepts once 2 agree, cancels the third and reports the verdict", () => {
    const driver = new Driver(freshJob(3)).place(["A", "B", "C"]);
    driver.deliver("A", RIGHT);
    assert.equal(driver.job.state, "assigned", "one vote is not a quorum");
    driver.deliver("B", RIGHT);
    assert.equal(driver.job.state, "completed");
    assert.equal(driver.job.result?.outputCid, cids.get(RIGHT));
    assert.deepEqual(
      driver.of("cancel").map((cancel) => cancel.peerId),
      ["C"],
    );
    const [verdict] = driver.of("verdict");
    assert.equal(verdict?.report.outcome, "accepted");
    assert.equal(verdict?.report.quorum, 2);
    assert.deepEqual(
      verdict?.report.agreeing.map((vote) => vote.peerId),
      ["A", "B"],
    );
    assert.deepEqual(verdict?.report.dissenting, []);
    assert.deepEqual(
      verdict?.report.silent.map((silent) => [silent.peerId, silent.why]),
      [["C", "cancelled"]],
    );
    assert.equal(driver.of("store_receipt").length, 2, "every verified receipt is stored");
  });

  it("n=4 with one liar: the right result is accepted and the dissenter is named", () => {
    const driver = new Driver(freshJob(4)).place(["A", "B", "C", "D"]);
    driver.deliver("A", RIGHT);
    driver.deliver("B", WRONG);
    driver.deliver("C", RIGHT);
    assert.equal(driver.job.state, "assigned", "2 of q=3 so far");
    driver.deliver("D", RIGHT);
    assert.equal(driver.job.state, "completed");
    assert.equal(driver.job.result?.outputCid, cids.get(RIGHT));
    const report = driver.of("verdict")[0]!.report;
    assert.equal(report.quorum, 3);
    assert.deepEqual(
      report.dissenting.map((vote) => [vote.peerId, vote.receipt.outputCid]),
      [["B", cidToBytes32(cids.get(WRONG)!)]],
    );
    const view = jobView(driver.job);
    assert.deepEqual(view.verdict?.dissenters, [{ peerId: "B", operator: operatorOf("B") }]);
    assert.deepEqual(
      view.replicas?.map((replica) => [replica.peerId, replica.state, replica.agrees]),
      [
        ["A", "voted", true],
        ["B", "voted", false],
        ["C", "voted", true],
        ["D", "voted", true],
      ],
    );
    assert.deepEqual(
      view.verdict?.tally.map((entry) => entry.votes),
      [3, 1],
    );
  });

  it("n=4 with two colluding liars: adds replicas, and fails no_quorum with the tally when they give no quorum", () => {
    const driver = new Driver(freshJob(4), { maxExtraReplicas: 1 }).place(["A", "B", "C", "D"]);
    driver.deliver("A", RIGHT);
    driver.deliver("B", WRONG);
    driver.deliver("C", WRONG);
    driver.deliver("D", RIGHT);
    assert.notEqual(driver.job.state, "completed", "nothing is accepted at 2 against 2");
    assert.equal(driver.job.slots.length, 5, "a replica is added");
    assert.ok(driver.job.events.some((event) => event.type === "replicas_added"));
    assert.equal(driver.of("queue").at(-1)?.notBefore, driver.now);
    driver.place(["A", "B", "C", "D", "E"]);
    assert.deepEqual(driver.working(), ["E"], "only a fresh operator is assigned");
    driver.send({ type: "no_result_delivered", from: "E", reason: "no_result", ack: 3 });
    for (const peer of ["F", "G"]) {
      driver.place([peer]);
      driver.send({ type: "no_result_delivered", from: peer, reason: "no_result", ack: 4 });
    }
    assert.equal(driver.job.state, "failed");
    assert.equal(driver.job.reason, "no_quorum");
    const report = driver.of("verdict")[0]!.report;
    assert.equal(report.outcome, "no_quorum");
    assert.deepEqual(report.agreeing, []);
    assert.deepEqual(report.dissenting.map((vote) => vote.peerId).sort(), ["A", "B", "C", "D"]);
    const failed = driver.job.events.find((event) => event.type === "failed");
    assert.match(failed?.detail ?? "", /2× .*2× /, "the tally is in the failure");
  });

  it("n=4 with two liars: an honest added replica makes the quorum", () => {
    const driver = new Driver(freshJob(4)).place(["A", "B", "C", "D"]);
    for (const [peer, output] of [
      ["A", RIGHT],
      ["B", WRONG],
      ["C", WRONG],
      ["D", RIGHT],
    ] as const)
      driver.deliver(peer, output);
    driver.place(["E"]);
    driver.deliver("E", RIGHT);
    assert.equal(driver.job.state, "completed");
    assert.equal(driver.job.result?.outputCid, cids.get(RIGHT));
    assert.deepEqual(
      driver.of("verdict")[0]!.report.dissenting.map((vote) => vote.peerId),
      ["B", "C"],
    );
  });

  it("counts a replica that times out as no vote, and retries its slot on another donor", () => {
    const driver = new Driver(freshJob(3)).place(["A", "B", "C"]);
    driver.deliver("A", RIGHT);
    driver.now = 2_001;
    driver.send({ type: "tick" });
    assert.deepEqual(driver.working(), [], "B and C missed their deadline");
    assert.deepEqual(driver.of("cancel"), [], "their late receipts would still count");
    assert.equal(driver.job.state, "assigned");
    driver.now = 3_000;
    driver.place(["B", "C", "D", "E"]);
    assert.deepEqual(driver.working().sort(), ["D", "E"]);
    driver.deliver("D", RIGHT);
    assert.equal(driver.job.state, "completed");
    assert.deepEqual(
      driver
        .of("cancel")
        .map((cancel) => cancel.peerId)
        .sort(),
      ["B", "C", "E"],
      "the replica at work and the executors given up on are told to stop",
    );
    const report = driver.of("verdict")[0]!.report;
    assert.deepEqual(
      report.silent.map((silent) => [silent.peerId, silent.why]),
      [
        ["B", "timeout"],
        ["C", "timeout"],
        ["E", "cancelled"],
      ],
    );
  });

  it("reports an operator that signs two different receipts, and counts neither", () => {
    const driver = new Driver(freshJob(3)).place(["A", "B", "C"]);
    driver.deliver("A", RIGHT);
    driver.deliver("A", RIGHT, "501");
    const [sighting] = driver.of("equivocation");
    assert.equal(sighting?.sighting.operator, operatorOf("A"));
    assert.deepEqual(
      [sighting?.sighting.a.receipt.fuelUsed, sighting?.sighting.b.receipt.fuelUsed],
      ["500", "501"],
    );
    driver.deliver("B", RIGHT);
    assert.notEqual(driver.job.state, "completed", "A's vote does not count");
    driver.deliver("C", RIGHT);
    assert.equal(driver.job.state, "completed");
    assert.deepEqual(
      driver.of("verdict")[0]!.report.agreeing.map((vote) => vote.peerId),
      ["B", "C"],
    );
    assert.deepEqual(jobView(driver.job).verdict?.equivocators, [operatorOf("A")]);
  });

  it("restores every replica still at work after a restart and queues the missing ones", () => {
    const stored = freshJob(3);
    stored.state = "running";
    const restored = restoreJobState(
      stored,
      [
        { attempt: 1, peerId: "A", operator: operatorOf("A"), state: "running", deadline: 9_000 },
        { attempt: 2, peerId: "B", operator: operatorOf("B"), state: "failed", deadline: 9_000 },
        { attempt: 3, peerId: "C", operator: operatorOf("C"), state: "assigned", deadline: 9_000 },
      ],
      3_000,
      settings,
    );
    const driver = new Driver(restored.job);
    assert.deepEqual(driver.working(), ["A", "C"]);
    assert.deepEqual(driver.job.excluded, ["B"]);
    assert.deepEqual(
      restored.effects.map((effect) => effect.type),
      ["queue"],
    );
    driver.deliver("A", RIGHT);
    driver.deliver("C", RIGHT);
    assert.equal(driver.job.state, "completed");
  });
});

describe("replicated jobs: spot checks", () => {
  const spot = (rate: number): Verification => ({ mode: "spot", rate, phase: "first" });

  it("at rate 0 runs one replica and takes its receipt", () => {
    const driver = new Driver(freshJob(4, spot(0))).place(["A", "B", "C", "D"]);
    assert.deepEqual(driver.working(), ["A"], "one replica, though the spec signs 4");
    driver.deliver("A", RIGHT);
    assert.equal(driver.job.state, "completed");
    assert.equal(driver.of("assign").length, 1);
    assert.deepEqual(driver.of("verdict"), [], "no check, no verdict");
  });

  it("at rate 1 always checks on a second donor chosen after the first receipt, and accepts on agreement", () => {
    const driver = new Driver(freshJob(4, spot(1))).place(["A", "B"]);
    assert.deepEqual(driver.working(), ["A"]);
    driver.deliver("A", RIGHT);
    assert.notEqual(driver.job.state, "completed");
    assert.equal(driver.job.slots.length, 2);
    driver.place(["B"]);
    driver.deliver("B", RIGHT);
    assert.equal(driver.job.state, "completed");
    const report = driver.of("verdict")[0]!.report;
    assert.deepEqual([report.outcome, report.quorum, report.agreeing.length], ["accepted", 2, 2]);
  });

  it("escalates a disagreeing spot check to a full quorum of 4 that outvotes the liar", () => {
    const driver = new Driver(freshJob(4, spot(1))).place(["A"]);
    driver.deliver("A", WRONG);
    driver.place(["B"]);
    driver.deliver("B", RIGHT);
    assert.notEqual(driver.job.state, "completed");
    assert.equal(driver.job.slots.length, 4, "escalated to 4 replicas");
    driver.place(["C", "D"]);
    driver.deliver("C", RIGHT);
    driver.deliver("D", RIGHT);
    assert.equal(driver.job.state, "completed");
    assert.equal(driver.job.result?.outputCid, cids.get(RIGHT));
    const report = driver.of("verdict")[0]!.report;
    assert.equal(report.quorum, 3);
    assert.deepEqual(
      report.dissenting.map((vote) => vote.peerId),
      ["A"],
    );
  });
});

describe("replicated jobs: the store", () => {
  it("reads a finished job back with its agreeing receipt, every vote and the verdict", async () => {
    const driver = new Driver(freshJob(4)).place(["A", "B", "C", "D"]);
    for (const [peer, output] of [
      ["B", WRONG],
      ["A", RIGHT],
      ["C", RIGHT],
      ["D", RIGHT],
    ] as const)
      driver.deliver(peer, output);
    assert.equal(driver.job.state, "completed");
    const store = openStore(":memory:");
    const journal = new BuyerJournal(store, pino({ level: "silent" }));
    try {
      store.jobs.insert({
        jobId: JOB_ID,
        role: "buyer",
        spec: { announce: driver.job.announce },
        state: "queued",
        priority: "normal",
        deadline: driver.job.deadline,
      });
      for (const effect of driver.effects) journal.write(JOB_ID, effect);
      journal.flush();
      await store.commit(() => undefined, { durable: false });
      const reread = journal.storedJob(store.jobs.get(JOB_ID)!)!;
      assert.equal(reread.state, "completed");
      assert.equal(
        reread.receipt?.message.executor,
        operatorOf("A"),
        "the job's receipt agrees with its result",
      );
      assert.equal(store.receipts.forJob(JOB_ID).length, 4, "every replica's receipt is stored");
      const view = jobView(reread);
      assert.deepEqual(view.verdict, jobView(driver.job).verdict);
      assert.deepEqual(
        view.replicas?.map((replica) => [replica.peerId, replica.agrees]),
        [
          ["A", true],
          ["B", false],
          ["C", true],
          ["D", true],
        ],
      );
    } finally {
      journal.close();
      store.close();
    }
  });
});
