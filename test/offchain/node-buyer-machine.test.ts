// The buyer's job state machine, driven event by event with a fake clock: no network,
// no timers, no sleeps. Each test reads the effects the machine asks for.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Address, Hex } from "viem";
import { buildJobSpec, toAnnounce } from "../../offchain/src/market/index.ts";
import { testBuyerSettings } from "../support/buyer-settings.ts";
import { ReceiptStatus, cidOf, cidToBytes32 } from "../../offchain/src/protocol/index.ts";
import type { StatusResponse } from "../../offchain/src/protocol/index.ts";
import {
  MAX_ROUND_ANSWERS,
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
} from "../../offchain/src/node/buyer-machine.ts";
import type { SignedReceipt } from "../../offchain/src/node/buyer-receipts.ts";
import { jobView } from "../../offchain/src/node/buyer-view.ts";

const settings: BuyerSettings = testBuyerSettings();

const JOB_ID = `0x${"ab".repeat(32)}` as Hex;
const MODULE = new TextEncoder().encode("module");
const INPUT = new TextEncoder().encode("input");
const OUTPUT = new TextEncoder().encode("output");
const [moduleCid, inputCid, outputCid] = (
  await Promise.all([cidOf(MODULE), cidOf(INPUT), cidOf(OUTPUT)])
).map(String) as [string, string, string];
const operators: Record<string, Address> = {
  A: "0x000000000000000000000000000000000000000a",
  B: "0x000000000000000000000000000000000000000b",
  C: "0x000000000000000000000000000000000000000c",
  D: "0x000000000000000000000000000000000000000d",
};

function freshJob(deadline = 60_000): BuyerJobState {
  const spec = buildJobSpec({
    buyer: "0x00000000000000000000000000000000000000bb",
    moduleCid: cidToBytes32(moduleCid),
    inputCid: cidToBytes32(inputCid),
    maxPricePerMegaFuel: 100n,
    fuelLimit: 1_000n,
    timeoutMs: 1_000,
    deadlineMs: deadline,
    now: 0,
  });
  const signature = `0x${"11".repeat(65)}` as Hex;
  const announce = toAnnounce(
    { jobId: JOB_ID, spec, signature },
    { moduleCid, inputCid, moduleSize: MODULE.length, inputSize: INPUT.length, buyerPeer: "buyer" },
  );
  return newJobState(JOB_ID, spec, signature, announce);
}

/** Drives one job; `now` is the fake clock, every effect is recorded. */
class Driver {
  job: BuyerJobState;
  now = 0;
  effects: BuyerEffect[] = [];

  constructor(job = freshJob()) {
    this.job = job;
  }

  send(event: DistributiveOmit<BuyerEvent, "now">): BuyerEffect[] {
    const result = step(this.job, { ...event, now: this.now } as BuyerEvent, settings);
    this.job = result.job;
    this.effects.push(...result.effects);
    return result.effects;
  }

  at(now: number): this {
    this.now = now;
    return this;
  }

  tick(now: number): BuyerEffect[] {
    this.now = now;
    return this.send({ type: "tick" });
  }

  /** Offers and stake-checks a bid from `peer` in the open round. */
  bid(peer: string, price: bigint): BuyerEffect[] {
    const offer = {
      type: "bid" as const,
      bid: {
        jobId: JOB_ID,
        executor: operators[peer]!,
        pricePerMegaFuel: String(price),
        expiresAt: "99999999",
      },
      signature: `0x${"22".repeat(65)}` as Hex,
      peerKey: `0x${"33".repeat(32)}` as Hex,
      freeSlots: 1,
    };
    const offered = this.send({
      type: "offer_received",
      from: peer,
      offer,
      donor: { operator: operators[peer]!, staked: true },
    });
    const check = offered.find((effect) => effect.type === "check_bid");
    if (!check) return offered;
    return [
      ...offered,
      ...this.send({
        type: "bid_checked",
        from: peer,
        round: check.round,
        candidate: candidate(peer, price, this.now),
      }),
    ];
  }

  /** Submits and starts a placement that expects `donors`. */
  placed(donors: string[]): this {
    this.send({ type: "submitted" });
    this.send({ type: "place", expected: donors });
    return this;
  }

  /** Runs the placement through to an accepted assignment of `peer` (the only bidder). */
  assigned(peer: string, donors = [peer]): number {
    this.placed(donors);
    this.bid(peer, 10n);
    this.send({ type: "bid_signature_checked", round: this.job.round!.number, peerId: peer, valid: true });
    const attempt = activeAttempts(this.job)[0]!.number;
    this.send({ type: "assign_answered", attempt, response: { type: "accept", jobId: JOB_ID } });
    return attempt;
  }

  of<T extends BuyerEffect["type"]>(type: T): Extract<BuyerEffect, { type: T }>[] {
    return this.effects.filter((effect): effect is Extract<BuyerEffect, { type: T }> => effect.type === type);
  }

  events(): string[] {
    return jobView(this.job).events.map((event) => `${event.type}${event.reason ? `:${event.reason}` : ""}`);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function candidate(peer: string, price: bigint, now: number): BidCandidate {
  return {
    peerId: peer,
    operator: operators[peer]!,
    pricePerMegaFuel: price,
    expiresAt: 99_999_999n,
    staked: true,
    stake: 0n,
    lastSeen: now,
    freeSlots: 1,
    bid: {
      jobId: JOB_ID,
      executor: operators[peer]!,
      pricePerMegaFuel: String(price),
      expiresAt: "99999999",
    },
    signature: `0x${"22".repeat(65)}` as Hex,
  };
}

function receiptFrom(
  peer: string,
  options: { inline?: boolean; fuelUsed?: string; status?: number } = {},
): SignedReceipt {
  return {
    receipt: {
      jobId: JOB_ID,
      executor: operators[peer]!,
      moduleCid: cidToBytes32(moduleCid),
      inputCid: cidToBytes32(inputCid),
      outputCid: cidToBytes32(outputCid),
      fuelUsed: options.fuelUsed ?? "500",
      status: options.status ?? 0,
      startedAt: "1",
      finishedAt: "2",
    },
    signature: `0x${"44".repeat(65)}` as Hex,
    outputCid,
    outputBase64: options.inline === false ? undefined : Buffer.from(OUTPUT).toString("base64"),
  };
}

const running = (jobId = JOB_ID): StatusResponse => ({ type: "status", jobId, state: "running" });

describe("buyer machine: placement and bid rounds", () => {
  it("announces a submitted job and queues it for placement", () => {
    const driver = new Driver();
    const effects = driver.send({ type: "submitted" });
    assert.equal(driver.job.state, "announced");
    assert.deepEqual(
      effects.map((effect) => effect.type),
      ["store_state", "emit", "store_event", "queue"],
    );
  });

  it("announces a job no donor is known for to all, then parks it with no_bid when no one bids", () => {
    const driver = new Driver();
    driver.send({ type: "submitted" });
    const effects = driver.send({ type: "place", expected: [] });
    assert.deepEqual(
      effects.filter((effect) => effect.type === "announce" || effect.type === "request_bids"),
      [{ type: "announce" }],
      "a discovery announcement, and no donor asked directly",
    );
    assert.equal(driver.job.state, "announced", "the round waits for donors it does not know");
    assert.equal(nextWakeAt(driver.job), settings.bidTimeoutMs);
    const parked = driver.tick(settings.bidTimeoutMs);
    assert.equal(driver.job.state, "queued");
    assert.equal(driver.job.reason, "no_bid");
    const queue = parked.find((effect) => effect.type === "queue");
    assert.deepEqual(queue && [queue.notBefore, queue.reason], [settings.bidTimeoutMs + 200, "no_bid"]);
    assert.equal(driver.of("placement_ended").length, 1);
  });

  it("parks with the reason the known donors were passed over for when none could be asked", () => {
    const driver = new Driver();
    driver.send({ type: "submitted" });
    driver.send({ type: "place", expected: [], passedOver: { bid_rejected_price: 5, executor_silent: 2 } });
    driver.tick(settings.bidTimeoutMs);
    assert.equal(driver.job.reason, "bid_rejected_price");
    const queued = driver.job.events.findLast((event) => event.type === "queued");
    assert.match(queued?.detail ?? "", /bid_rejected_price.*executor_silent/);
  });

  it("asks only its candidates, directly, and announces nothing when it knows enough donors", () => {
    const driver = new Driver();
    driver.send({ type: "submitted" });
    const effects = driver.send({ type: "place", expected: ["A", "B", "C", "D", "E", "F"] });
    const asked = effects.filter((effect) => effect.type === "request_bids");
    assert.deepEqual(
      asked.map((effect) => effect.peers),
      [["A", "B", "C", "D"]],
      "never more than the candidate limit, best first",
    );
    assert.equal(driver.of("announce").length, 0, "no gossip when enough donors are known");
    assert.deepEqual(driver.job.round?.expected, ["A", "B", "C", "D"]);
    for (const peer of ["A", "B", "C"])
      driver.at(5).send({
        type: "offer_received",
        from: peer,
        offer: { type: "decline", reason: "slots_full" },
        donor: { operator: operators[peer]!, staked: true },
      });
    driver.at(6).bid("D", 40n);
    assert.equal(
      driver.of("check_bid_signature").at(-1)?.candidate.peerId,
      "D",
      "selection starts once every candidate answered",
    );
  });

  it("counts a candidate its bid request did not reach as answered, with its reason", () => {
    const driver = new Driver();
    driver.send({ type: "submitted" });
    driver.send({ type: "place", expected: ["A", "B", "C", "D"] });
    for (const peer of ["A", "B", "C", "D"])
      driver.at(3).send({ type: "bid_request_failed", round: 1, from: peer, detail: "dial failed" });
    assert.equal(driver.job.state, "queued", "no need to wait for the round's end");
    assert.equal(driver.job.reason, "unreachable");
    driver.send({ type: "bid_request_failed", round: 1, from: "A", detail: "again" });
    assert.equal(driver.of("queue").length, 2, "a repeated failure changes nothing");
  });

  it("also announces to all when it knows fewer donors than it would ask, and waits for strangers when the known decline", () => {
    const driver = new Driver();
    driver.send({ type: "submitted" });
    const effects = driver.send({ type: "place", expected: ["A", "B"] });
    assert.deepEqual(
      effects.filter((effect) => effect.type === "request_bids").map((effect) => effect.peers),
      [["A", "B"]],
    );
    assert.equal(driver.of("announce").length, 1);
    for (const peer of ["A", "B"])
      driver.at(5).send({
        type: "offer_received",
        from: peer,
        offer: { type: "decline", reason: "slots_full" },
        donor: { operator: operators[peer]!, staked: true },
      });
    assert.equal(driver.job.round?.closed, false, "an unknown donor may still bid");
    assert.equal(driver.tick(1_000).length, 0);
    const chosen = driver.at(1_100).bid("C", 30n);
    assert.equal(
      chosen.find((effect) => effect.type === "check_bid_signature")?.candidate.peerId,
      "C",
      "the stranger's bid is taken",
    );
  });

  it("announces nothing when the known donors it did not ask are full of its own jobs", () => {
    const driver = new Driver();
    driver.send({ type: "submitted" });
    const effects = driver.send({ type: "place", expected: ["A"], passedOver: { slots_full: 3 } });
    assert.deepEqual(
      effects.filter((effect) => effect.type === "request_bids").map((effect) => effect.peers),
      [["A"]],
    );
    assert.equal(driver.of("announce").length, 0, "enough donors are known, only busy");
    driver.at(4).bid("A", 40n);
    assert.equal(
      driver.of("check_bid_signature").at(-1)?.candidate.peerId,
      "A",
      "selection starts once the one candidate answered",
    );
  });

  it("reads at most MAX_ROUND_ANSWERS answers in a round, however many strangers bid", () => {
    const driver = new Driver();
    driver.send({ type: "submitted" });
    driver.send({ type: "place", expected: ["A"] });
    let checks = 0;
    for (let i = 0; i < MAX_ROUND_ANSWERS + 50; i++) {
      const effects = driver.send({
        type: "offer_received",
        from: `sybil-${i}`,
        offer: {
          type: "bid",
          bid: { jobId: JOB_ID, executor: operators.D!, pricePerMegaFuel: "1", expiresAt: "99999999" },
          signature: `0x${"22".repeat(65)}` as Hex,
          peerKey: `0x${"33".repeat(32)}` as Hex,
          freeSlots: 1,
        },
        donor: undefined,
      });
      checks += effects.filter((effect) => effect.type === "check_bid").length;
    }
    assert.equal(checks, MAX_ROUND_ANSWERS);
    assert.equal(driver.job.round?.answered.length, MAX_ROUND_ANSWERS);
  });

  it("waits the bid window after the first bid and picks the cheaper later bid over the faster one", () => {
    const driver = new Driver().placed(["A", "B", "C"]);
    assert.equal(driver.of("announce").length, 1);
    driver.at(10).bid("A", 50n);
    assert.equal(nextWakeAt(driver.job), 60, "selection waits for the bid window");
    assert.equal(driver.of("check_bid_signature").length, 0);
    driver.at(40).bid("B", 20n);
    assert.equal(driver.tick(59).length, 0, "nothing happens before the window ends");
    const effects = driver.tick(60);
    const chosen = effects.find((effect) => effect.type === "check_bid_signature");
    assert.equal(chosen?.candidate.peerId, "B");
    assert.equal(driver.of("store_bid").length, 0, "no bid is written before one binds an executor");
    driver.send({ type: "bid_signature_checked", round: 1, peerId: "B", valid: true });
    assert.deepEqual(
      driver.of("store_bid").map((effect) => effect.candidate.peerId),
      ["B"],
      "only the chosen bid is written",
    );
  });

  it("waits for a stake check still out when the bid window ends, then selects", () => {
    const driver = new Driver().placed(["A", "B", "C"]);
    driver.at(10).bid("A", 50n);
    const offer = {
      type: "bid" as const,
      bid: { jobId: JOB_ID, executor: operators.B!, pricePerMegaFuel: "20", expiresAt: "99999999" },
      signature: `0x${"22".repeat(65)}` as Hex,
      peerKey: `0x${"33".repeat(32)}` as Hex,
      freeSlots: 1,
    };
    driver
      .at(30)
      .send({ type: "offer_received", from: "B", offer, donor: { operator: operators.B!, staked: true } });
    assert.equal(nextWakeAt(driver.job), 2_000, "no wake-up at the window's end while a check is out");
    assert.equal(driver.tick(60).length, 0);
    driver.at(70).send({ type: "bid_checked", from: "B", round: 1, candidate: candidate("B", 20n, 70) });
    assert.equal(driver.of("check_bid_signature").at(-1)?.candidate.peerId, "B");
  });

  it("selects at once when every expected donor has answered", () => {
    const driver = new Driver().placed(["A", "B"]);
    driver.at(5).bid("A", 50n);
    driver.at(6).send({
      type: "offer_received",
      from: "B",
      offer: { type: "decline", reason: "slots_full" },
      donor: { operator: operators.B!, staked: true },
    });
    assert.equal(driver.of("check_bid_signature").at(-1)?.candidate.peerId, "A");
  });

  it("records a bid that comes after the selection as late", () => {
    const driver = new Driver().placed(["A", "B"]);
    driver.at(5).bid("A", 50n);
    driver.tick(55);
    assert.equal(driver.job.round?.closed, true);
    const late = driver.at(70).bid("B", 1n);
    assert.ok(!late.some((effect) => effect.type === "check_bid"), "a late bid costs no stake lookup");
    assert.ok(driver.events().includes("bid_rejected:bid_late"));
    assert.equal(driver.job.totals.late, 1);
  });

  it("drops a bid from an unstaked bidder in an open round and reports the bidder", () => {
    const driver = new Driver().placed(["A"]);
    const offer = {
      type: "bid" as const,
      bid: { jobId: JOB_ID, executor: operators.D!, pricePerMegaFuel: "1", expiresAt: "99999999" },
      signature: `0x${"22".repeat(65)}` as Hex,
      peerKey: `0x${"33".repeat(32)}` as Hex,
      freeSlots: 9,
    };
    const [check] = driver.send({ type: "offer_received", from: "D", offer, donor: undefined });
    assert.equal(check?.type, "check_bid");
    driver.send({
      type: "bid_checked",
      from: "D",
      round: 1,
      refusal: { reason: "bid_unstaked", detail: "not active" },
    });
    assert.deepEqual(
      driver.of("misbehaved").map((effect) => [effect.peerId, effect.reason]),
      [["D", "bid_unstaked"]],
    );
    assert.equal(driver.job.round?.candidates.length, 0);
    assert.ok(!jobView(driver.job).events.some((event) => event.peerId === "D"));
  });

  it("drops a bid whose stake cannot be read without reporting the bidder", () => {
    const driver = new Driver().placed(["A"]);
    const offer = {
      type: "bid" as const,
      bid: { jobId: JOB_ID, executor: operators.A!, pricePerMegaFuel: "1", expiresAt: "99999999" },
      signature: `0x${"22".repeat(65)}` as Hex,
      peerKey: `0x${"33".repeat(32)}` as Hex,
      freeSlots: 1,
    };
    driver.send({ type: "offer_received", from: "A", offer, donor: undefined });
    driver.send({
      type: "bid_checked",
      from: "A",
      round: 1,
      refusal: { reason: "stake_unknown", detail: "the chain cannot be read" },
    });
    assert.equal(driver.of("misbehaved").length, 0);
    assert.equal(driver.job.round?.candidates.length ?? 0, 0);
  });

  it("parks with the donors' own reason when all decline, and with timeout when no one answers", () => {
    const declined = new Driver().placed(["A", "B"]);
    for (const peer of ["A", "B"])
      declined.send({
        type: "offer_received",
        from: peer,
        offer: { type: "decline", reason: "timeout_too_long" },
        donor: { operator: operators[peer]!, staked: true },
      });
    assert.equal(declined.job.state, "announced", "a discovery round waits for donors it did not ask");
    declined.tick(settings.bidTimeoutMs);
    assert.equal(declined.job.reason, "timeout_too_long");
    assert.equal(declined.events().filter((event) => event === "bid_rejected:timeout_too_long").length, 2);

    const silent = new Driver().placed(["A"]);
    assert.equal(silent.tick(1_999).length, 0);
    silent.tick(2_000);
    assert.equal(silent.job.state, "queued");
    assert.equal(silent.job.reason, "timeout");
  });

  it("skips a bid with a bad signature, reports its sender, and tries the next", () => {
    const driver = new Driver().placed(["A", "B"]);
    driver.at(1).bid("A", 10n);
    driver.at(2).bid("B", 20n);
    driver.send({ type: "bid_signature_checked", round: 1, peerId: "A", valid: false });
    assert.deepEqual(
      driver.of("misbehaved").map((effect) => [effect.peerId, effect.reason]),
      [["A", "bid_rejected_signature"]],
    );
    assert.equal(driver.of("check_bid_signature").at(-1)?.candidate.peerId, "B");
  });

  it("tries the next bid when an executor refuses the assignment", () => {
    const driver = new Driver().placed(["A", "B"]);
    driver.at(1).bid("A", 10n);
    driver.at(2).bid("B", 20n);
    driver.send({ type: "bid_signature_checked", round: 1, peerId: "A", valid: true });
    const attempt = driver.of("assign").at(-1)!.attempt;
    driver.send({
      type: "assign_answered",
      attempt,
      response: { type: "reject", jobId: JOB_ID, reason: "slots_full" },
    });
    assert.deepEqual(activeAttempts(driver.job), []);
    assert.equal(driver.of("check_bid_signature").at(-1)?.candidate.peerId, "B");
    assert.equal(driver.of("store_assignment").length, 0, "a refused assignment leaves no assignment row");
  });
});

describe("buyer machine: the executor at work", () => {
  it("confirms an accepted assignment, records it, and probes the executor every heartbeat", () => {
    const driver = new Driver();
    driver.assigned("A");
    assert.equal(driver.job.state, "assigned");
    assert.deepEqual(
      driver.of("store_assignment").map((effect) => [effect.state, effect.insert]),
      [["assigned", true]],
    );
    assert.equal(nextWakeAt(driver.job), 400);
    const [probe] = driver.tick(400);
    assert.equal(probe?.type, "probe");
    assert.equal(driver.tick(500).length, 0, "no second probe while one is out");
    driver.send({ type: "probe_answered", attempt: 1, status: running() });
    assert.equal(driver.job.state, "running");
  });

  it("reassigns an executor that misses two probes in a row", () => {
    const driver = new Driver();
    driver.assigned("A");
    driver.tick(400);
    driver.send({ type: "probe_failed", attempt: 1 });
    driver.tick(800);
    driver.send({ type: "probe_failed", attempt: 1 });
    assert.equal(driver.job.state, "queued");
    assert.equal(driver.job.reason, "executor_silent");
    assert.deepEqual(driver.job.excluded, ["A"]);
    assert.equal(driver.of("queue").at(-1)?.notBefore, 800 + 200);
    assert.deepEqual(driver.of("store_assignment").at(-1) && [driver.of("store_assignment").at(-1)!.state], [
      "failed",
    ]);
  });

  it("reassigns an executor that misses its deadline", () => {
    const driver = new Driver();
    driver.assigned("A");
    const deadline = activeAttempts(driver.job)[0]!.deadline;
    assert.equal(deadline, 2_000, "timeout plus delivery grace");
    driver.tick(400);
    driver.send({ type: "probe_answered", attempt: 1, status: running() });
    driver.tick(2_001);
    assert.equal(driver.job.reason, "deadline_missed");
    assert.equal(driver.of("store_assignment").at(-1)?.state, "timed_out");
  });

  it("reassigns on the executor's own failure report, and fails the job once attempts run out", () => {
    const driver = new Driver();
    driver.assigned("A");
    driver.send({ type: "no_result_delivered", from: "A", reason: "no_result", ack: 1 });
    assert.equal(driver.of("ack").at(-1)?.accepted, true);
    assert.equal(driver.job.state, "queued");
    for (const peer of ["B", "C"]) {
      driver.send({ type: "place", expected: [peer] });
      driver.bid(peer, 10n);
      driver.send({
        type: "bid_signature_checked",
        round: driver.job.round!.number,
        peerId: peer,
        valid: true,
      });
      driver.send({
        type: "assign_answered",
        attempt: activeAttempts(driver.job)[0]!.number,
        response: { type: "accept", jobId: JOB_ID },
      });
      driver.send({ type: "no_result_delivered", from: peer, reason: "no_result", ack: 2 });
    }
    assert.equal(driver.job.state, "failed");
    assert.equal(driver.job.reason, "attempts_exhausted");
  });
});

describe("buyer machine: races", () => {
  it("takes a receipt that arrives before the executor's acceptance, and ignores the acceptance after", () => {
    const driver = new Driver().placed(["A"]);
    driver.bid("A", 10n);
    driver.send({ type: "bid_signature_checked", round: 1, peerId: "A", valid: true });
    const receipt = receiptFrom("A");
    driver.send({ type: "receipt_delivered", from: "A", receipt, ack: 1 });
    driver.send({ type: "receipt_verified", attempt: 1, receipt, output: OUTPUT, ack: 1 });
    assert.equal(driver.job.state, "completed");
    assert.equal(driver.of("placement_ended").length, 1, "the placement ends with the job");
    const after = driver.send({
      type: "assign_answered",
      attempt: 1,
      response: { type: "accept", jobId: JOB_ID },
    });
    assert.deepEqual(after, []);
    assert.deepEqual(
      driver.of("store_assignment").map((effect) => [effect.state, effect.insert]),
      [
        ["assigned", true],
        ["completed", false],
      ],
    );
    assert.equal(driver.events().filter((event) => event === "assigned").length, 1);
  });

  it("ignores the answers of an attempt given up on, and the stale stake checks of an earlier round", () => {
    const driver = new Driver();
    driver.assigned("A");
    driver.tick(400);
    driver.send({
      type: "probe_answered",
      attempt: 1,
      status: { type: "status", jobId: JOB_ID, state: "unknown" },
    });
    assert.equal(driver.job.reason, "executor_silent");
    assert.deepEqual(driver.send({ type: "probe_answered", attempt: 1, status: running() }), []);
    assert.deepEqual(driver.send({ type: "probe_failed", attempt: 1 }), []);
    driver.at(1_000).send({ type: "place", expected: ["B"] });
    const stale = driver.send({
      type: "bid_checked",
      from: "C",
      round: 1,
      candidate: candidate("C", 1n, 1_000),
    });
    assert.deepEqual(stale, []);
    assert.equal(driver.job.round?.candidates.length, 0);
  });

  it("does not place a job twice while a placement is under way", () => {
    const driver = new Driver().placed(["A"]);
    const again = driver.send({ type: "place", expected: ["A"] });
    assert.deepEqual(
      again.map((effect) => effect.type),
      ["placement_ended"],
    );
    assert.equal(driver.of("announce").length, 1);
  });

  it("fails a job whose deadline passes while it waits, once, and ends a placement under way", () => {
    const driver = new Driver().placed(["A"]);
    driver.send({ type: "expired", detail: "deadline" });
    assert.equal(driver.job.state, "failed");
    assert.equal(driver.of("placement_ended").length, 1);
    assert.deepEqual(driver.send({ type: "expired", detail: "again" }), []);
    assert.deepEqual(driver.bid("A", 1n), [], "a settled job takes no more bids");
  });
});

describe("buyer machine: receipts", () => {
  it("completes the job on a valid delivered receipt with inline output, and acknowledges it", () => {
    const driver = new Driver();
    driver.assigned("A");
    const receipt = receiptFrom("A");
    const [verify] = driver.send({ type: "receipt_delivered", from: "A", receipt, ack: 7 });
    assert.equal(verify?.type, "verify_receipt");
    driver.send({ type: "receipt_verified", attempt: 1, receipt, output: OUTPUT, ack: 7 });
    assert.equal(driver.job.state, "completed");
    assert.equal(driver.job.result?.outputBase64, Buffer.from(OUTPUT).toString("base64"));
    assert.deepEqual(
      driver.of("ack").map((effect) => [effect.ack, effect.accepted]),
      [[7, true]],
    );
    assert.ok(driver.of("store_result").length === 1);
    assert.equal(nextWakeAt(driver.job), undefined);
  });

  it("refuses a receipt that fails the pure checks, reports the executor and reassigns", () => {
    const driver = new Driver();
    driver.assigned("A");
    driver.send({
      type: "receipt_delivered",
      from: "A",
      receipt: receiptFrom("A", { fuelUsed: "5000" }),
      ack: 3,
    });
    assert.deepEqual(
      driver.of("ack").map((effect) => [effect.accepted, effect.reason]),
      [[false, "receipt_invalid"]],
    );
    assert.equal(driver.of("misbehaved").at(-1)?.reason, "receipt_invalid");
    assert.equal(driver.job.reason, "receipt_invalid");
  });

  it("refuses an out_of_fuel receipt that does not report the whole fuel limit", () => {
    const driver = new Driver();
    driver.assigned("A");
    driver.send({
      type: "receipt_delivered",
      from: "A",
      receipt: receiptFrom("A", { status: ReceiptStatus.out_of_fuel, fuelUsed: "999" }),
      ack: 5,
    });
    assert.deepEqual(
      driver.of("ack").map((effect) => [effect.accepted, effect.reason]),
      [[false, "receipt_invalid"]],
    );
    const details = jobView(driver.job).events.map((event) => event.detail ?? "");
    assert.ok(
      details.some((detail) => detail.includes("out_of_fuel receipt must report the whole fuel limit 1000")),
      `no event names the range error: ${details.join(" | ")}`,
    );
  });

  it("refuses a receipt from a peer that never had the job as unknown_job", () => {
    const driver = new Driver();
    driver.assigned("A");
    driver.send({ type: "receipt_delivered", from: "B", receipt: receiptFrom("B"), ack: 4 });
    assert.deepEqual(
      driver.of("ack").map((effect) => [effect.accepted, effect.reason]),
      [[false, "unknown_job"]],
    );
  });

  it("takes the receipt of an executor whose assignment timed out but which accepted, cancelling the newer attempt", () => {
    const driver = new Driver().placed(["A", "B"]);
    driver.at(1).bid("A", 10n);
    driver.at(2).bid("B", 20n);
    driver.send({ type: "bid_signature_checked", round: 1, peerId: "A", valid: true });
    driver.at(100).send({ type: "assign_failed", attempt: 1, reason: "timeout", detail: "no answer" });
    assert.deepEqual(
      driver.of("store_assignment").map((effect) => [effect.attempt.number, effect.state, effect.insert]),
      [[1, "timed_out", true]],
      "the unanswered assignment is recorded",
    );
    driver.send({ type: "bid_signature_checked", round: 1, peerId: "B", valid: true });
    driver.send({ type: "assign_answered", attempt: 2, response: { type: "accept", jobId: JOB_ID } });
    assert.equal(activeAttempts(driver.job)[0]?.peerId, "B");

    const receipt = receiptFrom("A");
    const [verify] = driver.at(300).send({ type: "receipt_delivered", from: "A", receipt, ack: 9 });
    assert.equal(verify?.type, "verify_receipt", "not refused as unknown_job");
    driver.send({ type: "receipt_verified", attempt: 1, receipt, output: OUTPUT, ack: 9 });
    assert.equal(driver.job.state, "completed");
    assert.equal(driver.job.receipt?.message.executor, operators.A);
    const rows = driver
      .of("store_assignment")
      .map((effect) => [effect.attempt.number, effect.state, effect.insert]);
    assert.deepEqual(rows.slice(-3), [
      [2, "cancelled", false],
      [1, "assigned", false],
      [1, "completed", false],
    ]);
    assert.deepEqual(
      driver.of("cancel").map((cancel) => [cancel.peerId, cancel.attempt]),
      [["B", 2]],
      "the superseded executor is told to stop",
    );
  });

  it("completes the job from a status probe that answers done with the receipt, fetching the output by CID", () => {
    const driver = new Driver();
    driver.assigned("A");
    driver.tick(400);
    const { outputBase64: _inline, ...signed } = receiptFrom("A", { inline: false });
    const status: StatusResponse = {
      type: "status",
      jobId: JOB_ID,
      state: "done",
      receipt: { receipt: signed.receipt, signature: signed.signature, outputCid: signed.outputCid },
    };
    const [verify] = driver.send({ type: "probe_answered", attempt: 1, status });
    assert.equal(verify?.type, "verify_receipt");
    assert.equal(verify?.type === "verify_receipt" && verify.ack, undefined);
    const [fetch] = driver.send({ type: "receipt_verified", attempt: 1, receipt: signed });
    assert.deepEqual(fetch?.type === "fetch_output" && [fetch.peerId, fetch.receipt.outputCid], [
      "A",
      outputCid,
    ]);
    driver.send({ type: "output_fetched", attempt: 1, receipt: signed, output: OUTPUT });
    assert.equal(driver.job.state, "completed");
    assert.equal(driver.of("ack").length, 0);
  });

  it("refuses a probe's receipt that is not the executor's, like a delivered one", () => {
    const driver = new Driver();
    driver.assigned("A");
    driver.tick(400);
    const forged = receiptFrom("B");
    driver.send({
      type: "probe_answered",
      attempt: 1,
      status: {
        type: "status",
        jobId: JOB_ID,
        state: "done",
        receipt: { receipt: forged.receipt, signature: forged.signature, outputCid },
      },
    });
    assert.equal(driver.of("verify_receipt").length, 0);
    assert.equal(driver.of("misbehaved").at(-1)?.reason, "receipt_invalid");
    assert.equal(driver.job.reason, "receipt_invalid");
  });

  it("settles once when the same receipt comes twice", () => {
    const driver = new Driver();
    driver.assigned("A");
    const receipt = receiptFrom("A");
    driver.send({ type: "receipt_delivered", from: "A", receipt, ack: 1 });
    driver.send({ type: "receipt_delivered", from: "A", receipt, ack: 2 });
    driver.send({ type: "receipt_verified", attempt: 1, receipt, output: OUTPUT, ack: 1 });
    driver.send({ type: "receipt_verified", attempt: 1, receipt, output: OUTPUT, ack: 2 });
    assert.equal(driver.of("store_result").length, 1);
    assert.deepEqual(
      driver.of("ack").map((effect) => effect.accepted),
      [true, true],
    );
    assert.equal(driver.events().filter((event) => event === "completed").length, 1);
  });
});

describe("buyer machine: restart", () => {
  it("resumes watching the executor of an active assignment and accepts its receipt", () => {
    const stored = freshJob();
    stored.state = "running";
    const restored = restoreJobState(
      stored,
      [
        { attempt: 1, peerId: "A", operator: operators.A!, state: "timed_out", deadline: 5_000 },
        { attempt: 2, peerId: "B", operator: operators.B!, state: "running", deadline: 9_000 },
      ],
      3_000,
      settings,
    );
    assert.deepEqual(restored.effects, [], "not placed again");
    const driver = new Driver(restored.job);
    assert.equal(activeAttempts(driver.job)[0]?.peerId, "B");
    assert.equal(driver.job.lastAttempt, 2);
    assert.equal(nextWakeAt(driver.job), 3_000);
    const [probe] = driver.tick(3_000);
    assert.deepEqual(probe?.type === "probe" && [probe.peerId, probe.attempt], ["B", 2]);
    const receipt = receiptFrom("B");
    driver.send({ type: "receipt_delivered", from: "B", receipt, ack: 1 });
    driver.send({ type: "receipt_verified", attempt: 2, receipt, output: OUTPUT, ack: 1 });
    assert.equal(driver.job.state, "completed");

    const earlier = new Driver(restored.job);
    const [verify] = earlier.send({
      type: "receipt_delivered",
      from: "A",
      receipt: receiptFrom("A"),
      ack: 2,
    });
    assert.equal(verify?.type, "verify_receipt", "an earlier attempt's receipt is still taken");
  });

  it("queues a job again when no assignment is active", () => {
    const stored = freshJob();
    stored.state = "assigned";
    const restored = restoreJobState(
      stored,
      [{ attempt: 1, peerId: "A", operator: operators.A!, state: "failed", deadline: 5_000 }],
      3_000,
      settings,
    );
    assert.equal(restored.job.state, "queued");
    assert.deepEqual(
      restored.effects.map((effect) => effect.type),
      ["queue"],
    );
    assert.deepEqual(restored.job.excluded, ["A"]);
  });
});

describe("buyer machine: views", () => {
  it("shows a settled job's events in the same order as the store gives them back after a restart", () => {
    const driver = new Driver().placed(["A", "B", "C"]);
    driver.at(1).bid("A", 10n);
    driver.at(2).bid("B", 20n);
    driver.tick(60);
    driver.send({ type: "bid_signature_checked", round: 1, peerId: "A", valid: true });
    driver.at(70).send({ type: "assign_answered", attempt: 1, response: { type: "accept", jobId: JOB_ID } });
    driver.at(80).bid("C", 5n); // late
    const receipt = receiptFrom("A");
    driver.at(90).send({ type: "receipt_delivered", from: "A", receipt, ack: 1 });
    driver.send({ type: "receipt_verified", attempt: 1, receipt, output: OUTPUT, ack: 1 });
    const live = jobView(driver.job).events.map((event) => `${event.type}@${event.at}`);

    const reread = freshJob();
    reread.state = "completed";
    reread.events = driver.of("store_event").map((effect) => effect.event);
    const restored = jobView(reread).events.map((event) => `${event.type}@${event.at}`);
    assert.deepEqual(restored, live);
    assert.deepEqual(live, [
      "announced@0",
      "bid_received@1",
      "bid_received@2",
      "assigned@70",
      "bid_rejected@80",
      "receipt@90",
      "bid_rounds@90",
      "completed@90",
    ]);
  });
});

describe("buyer machine: bounds", () => {
  it("keeps a bounded bid history however often a job is placed again", () => {
    const driver = new Driver(freshJob(10_000_000));
    driver.send({ type: "submitted" });
    const donors = ["A", "B", "C", "D"];
    for (let round = 0; round < 100; round++) {
      driver.at(round * 3_000).send({ type: "place", expected: donors });
      for (const peer of donors) driver.bid(peer, 500n); // above the job's price limit: all rejected
    }
    const view = jobView(driver.job);
    const bids = view.events.filter((event) => event.type === "bid_received");
    assert.equal(bids.length, 4, "only the last round's bids");
    assert.ok(view.events.length <= settings.maxEvents + 10, `${view.events.length} events`);
    assert.equal(driver.job.totals.rounds, 99);
    assert.equal(driver.job.totals.bids, 396);
    assert.ok(view.events.some((event) => event.type === "bid_rounds"));
    assert.equal(driver.of("store_bid").length, 0, "no bid bound an executor, so none is written");
    const stored = driver.of("store_event").filter((effect) => effect.event.type === "bid_received");
    assert.equal(stored.length, 0, "bid events are written only when the job settles");

    driver.send({ type: "expired", detail: "deadline" });
    const written = driver.of("store_event").map((effect) => effect.event.type);
    assert.equal(written.filter((type) => type === "bid_received").length, 4);
    assert.equal(written.filter((type) => type === "bid_rounds").length, 1);
    assert.equal(written.at(-1), "failed");
    assert.ok(written.length <= settings.maxEvents + 10, `${written.length} events written`);
  });
});
