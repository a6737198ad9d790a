import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Address, Hex } from "viem";
import { DEFAULT_DONOR_POLICY, buildJobSpec } from "../../offchain/src/market/index.ts";
import type { SignedJob } from "../../offchain/src/market/index.ts";
import {
  bidToWire,
  cidOf,
  cidToBytes32,
  jobSpecToWire,
  receiptToWire,
} from "../../offchain/src/protocol/index.ts";
import type {
  AssignRequest,
  AssignResponse,
  BidMessage,
  JobAnnounce,
  Receipt,
  ReceiptDelivery,
} from "../../offchain/src/protocol/index.ts";
import type { ExecutionResult } from "../../offchain/src/runtime/index.ts";
import {
  NO_RESULT_ATTEMPTS,
  OFFER_LIMIT,
  OUTBOX_LIMIT,
  REDELIVERY_ATTEMPTS,
  freeSlots,
  initialDonorState,
  retryDelay,
  statusOf,
  step,
} from "../../offchain/src/node/donor-machine.ts";
import type {
  DonorEffect,
  DonorEvent,
  DonorMachineConfig,
  DonorMachineState,
  OutboxEntry,
} from "../../offchain/src/node/donor-machine.ts";
import { DonorStore } from "../../offchain/src/node/donor-store.ts";
import { loadConfig } from "../../offchain/src/node/config.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { DEFAULT_POLICY_LIMITS } from "../../offchain/src/runtime/index.ts";

const T0 = 1_800_000_000_000;
const OPERATOR: Address = "0x00000000000000000000000000000000000000Aa";
const BUYER_ADDRESS: Address = "0x1111111111111111111111111111111111111111";
const SIGNATURE: Hex = `0x${"ab".repeat(65)}`;
const PEER_KEY: Hex = `0x${"cd".repeat(32)}`;
const MODULE_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
const INPUT_CID = "bafkreiaxnnnb7qz2focittuqq3ya25q7rcv3bqynnczfzako47346wosmu";

let OUTPUT: Uint8Array;
let OUTPUT_CID: string;
before(async () => {
  OUTPUT = new TextEncoder().encode("the output");
  OUTPUT_CID = (await cidOf(OUTPUT)).toString();
});

type Type = DonorEffect["type"];
type EffectOf<T extends Type> = Extract<DonorEffect, { type: T }>;

function config(overrides: Partial<DonorMachineConfig> = {}): DonorMachineConfig {
  return {
    operator: OPERATOR,
    policy: { ...DEFAULT_DONOR_POLICY, slots: 2, pricePerMegaFuel: 1_000n },
    announcedJobsPerBuyerPerSecond: 1_000,
    outstandingBidsPerBuyer: 512,
    ...overrides,
  };
}

let jobCounter = 0;
function announce(
  buyer = "buyer-a",
  overrides: { buyerPeer?: string; fuelLimit?: bigint } = {},
): JobAnnounce {
  jobCounter++;
  const spec = buildJobSpec({
    buyer: BUYER_ADDRESS,
    moduleCid: cidToBytes32(MODULE_CID),
    inputCid: cidToBytes32(INPUT_CID),
    maxPricePerMegaFuel: 2_000n,
    now: T0,
    fuelLimit: overrides.fuelLimit ?? 1_000_000n,
    salt: `0x${jobCounter.toString(16).padStart(64, "0")}`,
  });
  return {
    type: "job",
    jobId: `0x${jobCounter.toString(16).padStart(64, "f")}`,
    spec: jobSpecToWire(spec),
    signature: SIGNATURE,
    moduleCid: MODULE_CID,
    inputCid: INPUT_CID,
    moduleSize: 100,
    inputSize: 10,
    buyerPeer: overrides.buyerPeer ?? buyer,
    providers: [],
    providerAddrs: [],
  };
}

function signedJob(job: JobAnnounce): SignedJob {
  return {
    jobId: job.jobId,
    signature: job.signature,
    spec: {
      ...job.spec,
      fuelLimit: BigInt(job.spec.fuelLimit),
      maxPricePerMegaFuel: BigInt(job.spec.maxPricePerMegaFuel),
      deadline: BigInt(job.spec.deadline),
    },
  };
}

/** A machine driven by hand: every event's effects are kept, the clock is a plain number. */
class Driver {
  readonly state: DonorMachineState;
  effects: DonorEffect[] = [];
  now = T0;
  #requests = 0;

  constructor(overrides: Partial<DonorMachineConfig> = {}) {
    this.state = initialDonorState(config(overrides));
  }

  feed(event: DonorEvent): DonorEffect[] {
    this.effects = step(this.state, event).effects;
    return this.effects;
  }

  all<T extends Type>(type: T, effects = this.effects): EffectOf<T>[] {
    return effects.filter((effect): effect is EffectOf<T> => effect.type === type);
  }

  one<T extends Type>(type: T, effects = this.effects): EffectOf<T> {
    const found = this.all(type, effects);
    assert.equal(
      found.length,
      1,
      `expected one ${type} effect, got ${JSON.stringify(effects.map((e) => e.type))}`,
    );
    return found[0]!;
  }

  /** Announces a job and signs the bid the machine asks for; returns the bid. */
  bid(job: JobAnnounce, buyer = job.buyerPeer): BidMessage {
    this.feed({ type: "announced", now: this.now, buyer, jobs: [job], staked: true });
    const { bid } = this.one("sign_bid");
    this.feed({
      type: "bid_signed",
      now: this.now,
      buyer,
      announce: job,
      job: signedJob(job),
      bid,
      signature: SIGNATURE,
      peerKey: PEER_KEY,
    });
    return bid;
  }

  /** Sends assignments in one batch; returns the answers given at once, by request. */
  assign(from: string, requests: AssignRequest[]): Map<number, AssignResponse> {
    const ids = requests.map((request) => ({ id: this.#requests++, request }));
    this.feed({ type: "assigned", now: this.now, from, requests: ids });
    return answers(this.effects);
  }

  /** Bids on a job, has it assigned and its spec checked: the job is fetching. */
  accepted(job: JobAnnounce): void {
    const bid = this.bid(job);
    this.assign(job.buyerPeer, [assignment(bid)]);
    this.feed({ type: "spec_checked", jobId: job.jobId, valid: true });
    assert.equal(statusOf(this.state, job.jobId)?.state, "fetching");
  }

  /** A job run to its signed receipt, stored as row `rowId`: it waits in the outbox. */
  completed(job: JobAnnounce, rowId = 1, outputBase64?: string): ReceiptDeliveryOf {
    this.accepted(job);
    this.feed({
      type: "blocks_fetched",
      now: this.now,
      jobId: job.jobId,
      module: new Uint8Array(1),
      input: new Uint8Array(1),
    });
    this.feed({ type: "executed", now: this.now, jobId: job.jobId, result: okResult() });
    const { receipt } = this.one("persist_receipt");
    const delivery = { ...receiptDelivery(receipt), ...(outputBase64 === undefined ? {} : { outputBase64 }) };
    this.feed({ type: "receipt_persisted", jobId: job.jobId, rowId, delivery });
    return delivery;
  }
}

type ReceiptDeliveryOf = Extract<ReceiptDelivery, { type: "receipt" }>;

function answers(effects: DonorEffect[]): Map<number, AssignResponse> {
  const map = new Map<number, AssignResponse>();
  for (const effect of effects)
    if (effect.type === "answer_assign") map.set(effect.requestId, effect.response);
  return map;
}

function assignment(bid: BidMessage, overrides: Partial<BidMessage> = {}): AssignRequest {
  return {
    type: "assign",
    jobId: bid.jobId,
    bid: bidToWire({ ...bid, ...overrides }),
    bidSignature: SIGNATURE,
    attempt: 1,
  };
}

function okResult(): ExecutionResult {
  return {
    kind: "result",
    status: "ok",
    fuelUsed: 1234n,
    output: OUTPUT,
    outputCid: OUTPUT_CID,
    stderr: new Uint8Array(0),
  };
}

function receiptDelivery(receipt: Receipt): ReceiptDeliveryOf {
  return { type: "receipt", receipt: receiptToWire(receipt), signature: SIGNATURE, outputCid: OUTPUT_CID };
}

function reasonOf(response: AssignResponse | undefined): string | undefined {
  return response?.type === "reject" ? response.reason : response?.type;
}

describe("donor machine: bids", () => {
  it("asks for a bid at its price, then sends it with its free slots", () => {
    const driver = new Driver();
    const job = announce();
    driver.feed({ type: "announced", now: T0, buyer: "buyer-a", jobs: [job], staked: true });
    const { bid, buyer } = driver.one("sign_bid");
    assert.equal(buyer, "buyer-a");
    assert.deepEqual(bid, {
      jobId: job.jobId,
      executor: OPERATOR,
      pricePerMegaFuel: 1_000n,
      expiresAt: BigInt(T0 + DEFAULT_DONOR_POLICY.bidTtlMs),
    });
    driver.feed({
      type: "bid_signed",
      now: T0,
      buyer,
      announce: job,
      job: signedJob(job),
      bid,
      signature: SIGNATURE,
      peerKey: PEER_KEY,
    });
    const { offer } = driver.one("send_offer");
    assert.equal(offer.type, "bid");
    assert.equal(offer.type === "bid" && offer.freeSlots, 2);
    assert.equal(driver.state.offers.size, 1);
  });

  it("declines by policy without signing: unstaked, too much fuel, a job it already runs", () => {
    const driver = new Driver({ policy: { ...config().policy, maxFuel: 10n } });
    driver.feed({ type: "announced", now: T0, buyer: "buyer-a", jobs: [announce()], staked: false });
    assert.equal(driver.all("sign_bid").length, 0);
    assert.equal(reasonOfOffer(driver.one("send_offer")), "not_staked");
    driver.feed({
      type: "announced",
      now: T0,
      buyer: "buyer-a",
      jobs: [announce("buyer-a", { fuelLimit: 11n })],
      staked: true,
    });
    assert.equal(reasonOfOffer(driver.one("send_offer")), "fuel_too_high");

    const running = new Driver();
    const job = announce();
    running.accepted(job);
    running.feed({ type: "announced", now: T0, buyer: "buyer-a", jobs: [job], staked: true });
    assert.equal(reasonOfOffer(running.one("send_offer")), "duplicate_operator");
  });

  it("ignores jobs that name another buyer than the announcer, and reports the announcer", () => {
    const driver = new Driver();
    const own = announce("buyer-a");
    const foreign = announce("buyer-a", { buyerPeer: "buyer-b" });
    driver.feed({ type: "announced", now: T0, buyer: "buyer-a", jobs: [own, foreign], staked: true });
    assert.deepEqual(
      driver.all("sign_bid").map((effect) => effect.announce.jobId),
      [own.jobId],
    );
    const report = driver.one("misbehaved");
    assert.equal(report.peerId, "buyer-a");
    assert.equal(report.reason, "bad_announce");
  });

  it("declines and reports an announce whose spec does not check out", () => {
    const driver = new Driver();
    driver.feed({
      type: "bid_refused",
      buyer: "buyer-a",
      jobId: announce().jobId,
      reason: "bad_spec",
      detail: "job id is not the hash of its spec",
    });
    assert.equal(reasonOfOffer(driver.one("send_offer")), "bad_spec");
    assert.equal(driver.one("misbehaved").reason, "bad_announce");
    driver.feed({
      type: "bid_refused",
      buyer: "buyer-a",
      jobId: announce().jobId,
      reason: "deadline_missed",
      detail: "late",
    });
    assert.equal(driver.all("misbehaved").length, 0, "a late job is no misbehaviour");
  });

  it("considers at most the configured number of a buyer's jobs per second; other buyers are not affected", () => {
    const driver = new Driver({ announcedJobsPerBuyerPerSecond: 3 });
    const burst = Array.from({ length: 5 }, () => announce("buyer-a"));
    driver.feed({ type: "announced", now: T0, buyer: "buyer-a", jobs: burst, staked: true });
    assert.equal(driver.all("sign_bid").length, 3);
    driver.feed({
      type: "announced",
      now: T0 + 999,
      buyer: "buyer-a",
      jobs: [announce("buyer-a")],
      staked: true,
    });
    assert.equal(driver.all("sign_bid").length, 0, "the same second is used up");
    driver.feed({
      type: "announced",
      now: T0 + 999,
      buyer: "buyer-b",
      jobs: [announce("buyer-b")],
      staked: true,
    });
    assert.equal(driver.all("sign_bid").length, 1, "another buyer has its own allowance");
    driver.feed({
      type: "announced",
      now: T0 + 1_000,
      buyer: "buyer-a",
      jobs: [announce("buyer-a")],
      staked: true,
    });
    assert.equal(driver.all("sign_bid").length, 1, "the next second allows again");
  });

  it("keeps at most a buyer's quota of bids; its oldest leaves and assigning it is refused as expired", () => {
    const driver = new Driver({ outstandingBidsPerBuyer: 2 });
    const [first, second, third] = [announce(), announce(), announce()];
    const firstBid = driver.bid(first);
    driver.bid(second);
    driver.bid(third);
    assert.equal(driver.state.offers.size, 2);
    const answer = driver.assign("buyer-a", [assignment(firstBid)]);
    assert.equal(reasonOf([...answer.values()][0]), "bid_rejected_expired");
    assert.equal(
      driver.all("misbehaved").length,
      0,
      "a bid this node dropped is no misbehaviour of the buyer",
    );
  });

  it("a flooding buyer cannot push another buyer's bid out of the cache", () => {
    const driver = new Driver({
      outstandingBidsPerBuyer: OFFER_LIMIT,
      announcedJobsPerBuyerPerSecond: 100_000,
    });
    const quiet = announce("buyer-b");
    const quietBid = driver.bid(quiet);
    for (let i = 0; i < OFFER_LIMIT + 100; i++) driver.bid(announce("buyer-a"));
    assert.equal(driver.state.offers.size, OFFER_LIMIT);
    assert.ok(driver.state.offers.has(quiet.jobId));
    const answer = driver.assign("buyer-b", [assignment(quietBid)]);
    assert.equal(answer.size, 0, "the answer waits for the spec check");
    assert.equal(driver.one("check_spec").jobId, quiet.jobId);
  });

  it("expired bids leave the cache before anyone's live bid", () => {
    const driver = new Driver({ outstandingBidsPerBuyer: OFFER_LIMIT });
    const stale = announce("buyer-b");
    driver.bid(stale);
    driver.now = T0 + DEFAULT_DONOR_POLICY.bidTtlMs;
    driver.bid(announce("buyer-a"));
    assert.ok(!driver.state.offers.has(stale.jobId));
  });
});

function reasonOfOffer(effect: EffectOf<"send_offer">): string {
  return effect.offer.type === "decline" ? effect.offer.reason : "bid";
}

describe("donor machine: assignments", () => {
  it("a batch of more assignments than slots: exactly `slots` are accepted, the rest refused slots_full", () => {
    const driver = new Driver({ policy: { ...config().policy, slots: 3 } });
    const jobs = Array.from({ length: 7 }, () => announce());
    const bids = jobs.map((job) => driver.bid(job));
    const immediate = driver.assign(
      "buyer-a",
      bids.map((bid) => assignment(bid)),
    );
    assert.equal(driver.state.busySlots, 3, "slots are taken before the spec checks come back");
    assert.equal(driver.all("check_spec").length, 3);
    assert.deepEqual([...immediate.values()].map(reasonOf), Array(4).fill("slots_full"));
    const accepted = driver
      .all("check_spec")
      .flatMap((check) => driver.feed({ type: "spec_checked", jobId: check.jobId, valid: true }));
    assert.deepEqual([...answers(accepted).values()].map(reasonOf), ["accept", "accept", "accept"]);
    assert.equal(freeSlots(driver.state), 0);
  });

  it("refuses assignments it made no bid for, from another peer than the buyer, at another price, or expired", () => {
    const driver = new Driver();
    const job = announce();
    const bid = driver.bid(job);

    const none = driver.assign("buyer-a", [assignment({ ...bid, jobId: announce().jobId })]);
    assert.equal(reasonOf([...none.values()][0]), "bid_rejected_signature");
    assert.equal(driver.one("misbehaved").reason, "assign_without_bid");

    const otherExecutor = driver.assign("buyer-a", [assignment(bid, { executor: BUYER_ADDRESS })]);
    assert.equal(reasonOf([...otherExecutor.values()][0]), "bid_rejected_signature");

    const stranger = driver.assign("buyer-x", [assignment(bid)]);
    assert.equal(reasonOf([...stranger.values()][0]), "bad_spec");
    assert.deepEqual(driver.one("misbehaved").peerId, "buyer-x");
    assert.equal(driver.one("misbehaved").reason, "assign_not_from_buyer");

    const cheaper = driver.assign("buyer-a", [assignment(bid, { pricePerMegaFuel: 1n })]);
    assert.equal(reasonOf([...cheaper.values()][0]), "bid_rejected_price");

    driver.now = Number(bid.expiresAt);
    const late = driver.assign("buyer-a", [assignment(bid)]);
    assert.equal(reasonOf([...late.values()][0]), "bid_rejected_expired");
    assert.equal(driver.all("misbehaved").length, 0, "a late assignment is a race, not misbehaviour");
    assert.equal(driver.state.busySlots, 0);
  });

  it("a spec not signed by its buyer: the assignment is refused, the slot freed, the buyer reported", () => {
    const driver = new Driver();
    const job = announce();
    driver.assign("buyer-a", [assignment(driver.bid(job))]);
    assert.equal(statusOf(driver.state, job.jobId)?.state, "accepted");
    driver.feed({ type: "spec_checked", jobId: job.jobId, valid: false });
    assert.equal(reasonOf([...answers(driver.effects).values()][0]), "bad_signature");
    assert.equal(driver.one("misbehaved").reason, "bad_spec_signature");
    assert.equal(driver.state.busySlots, 0);
    assert.equal(statusOf(driver.state, job.jobId), undefined);
  });

  it("a repeated assignment is answered like the first: after the spec check, then at once", () => {
    const driver = new Driver();
    const job = announce();
    const bid = driver.bid(job);
    driver.assign("buyer-a", [assignment(bid)]);
    assert.equal(driver.assign("buyer-a", [assignment(bid)]).size, 0);
    driver.feed({ type: "spec_checked", jobId: job.jobId, valid: true });
    assert.deepEqual([...answers(driver.effects).values()].map(reasonOf), ["accept", "accept"]);
    assert.equal(driver.state.busySlots, 1);
    assert.deepEqual([...driver.assign("buyer-a", [assignment(bid)]).values()].map(reasonOf), ["accept"]);
    assert.deepEqual([...driver.assign("buyer-x", [assignment(bid)]).values()].map(reasonOf), ["bad_spec"]);
  });

  it("refuses everything once stopping, and ignores announcements", () => {
    const driver = new Driver();
    const bid = driver.bid(announce());
    driver.feed({ type: "stopping" });
    assert.equal(reasonOf([...driver.assign("buyer-a", [assignment(bid)]).values()][0]), "shutting_down");
    assert.deepEqual(
      driver.feed({ type: "announced", now: T0, buyer: "buyer-a", jobs: [announce()], staked: true }),
      [],
    );
  });
});

describe("donor machine: a job's life", () => {
  it("fetches (with the inline input), runs with the spec's limits, stores the receipt, then delivers it", () => {
    const driver = new Driver();
    const job = announce();
    const bid = driver.bid(job);
    driver.assign("buyer-a", [{ ...assignment(bid), inputBase64: Buffer.from("in").toString("base64") }]);
    driver.feed({ type: "spec_checked", jobId: job.jobId, valid: true });
    const fetch = driver.one("fetch_blocks");
    assert.deepEqual(fetch.inlineInput, Buffer.from("in"));

    driver.feed({
      type: "blocks_fetched",
      now: T0 + 10,
      jobId: job.jobId,
      module: new Uint8Array([1]),
      input: new Uint8Array([2]),
    });
    const run = driver.one("run");
    assert.equal(run.job.fuelLimit, 1_000_000n);
    assert.equal(run.job.memoryPages, Number(job.spec.memoryPages));
    assert.equal(statusOf(driver.state, job.jobId)?.state, "running");

    driver.feed({
      type: "executed",
      now: T0 + 50,
      jobId: job.jobId,
      result: { ...okResult(), status: "out_of_fuel" },
    });
    const persist = driver.one("persist_receipt");
    assert.equal(persist.receipt.startedAt, BigInt(T0 + 10));
    assert.equal(persist.receipt.finishedAt, BigInt(T0 + 50));
    assert.equal(persist.receipt.status, 3);
    assert.equal(persist.receipt.executor, OPERATOR);
    assert.equal(persist.receipt.outputCid, cidToBytes32(OUTPUT_CID));
    assert.equal(driver.state.busySlots, 1, "the slot is held until the receipt is on disk");
    assert.equal(driver.all("deliver").length, 0, "nothing is delivered before it is stored");

    const delivery = receiptDelivery(persist.receipt);
    driver.feed({ type: "receipt_persisted", jobId: job.jobId, rowId: 7, delivery });
    assert.equal(driver.state.busySlots, 0);
    assert.deepEqual(driver.one("deliver").delivery, delivery);
    const status = statusOf(driver.state, job.jobId);
    assert.equal(status?.state, "done");
    assert.equal(status?.receipt?.signature, SIGNATURE);

    driver.feed({
      type: "delivery_acked",
      now: T0 + 60,
      jobId: job.jobId,
      ack: { type: "ack", jobId: job.jobId, accepted: true },
    });
    assert.deepEqual(driver.one("leave_outbox"), {
      type: "leave_outbox",
      jobId: job.jobId,
      rowId: 7,
      why: "acknowledged",
    });
    assert.equal(statusOf(driver.state, job.jobId), undefined, "from here the store answers");
  });

  const failures: [string, (driver: Driver, jobId: Hex) => void, string][] = [
    [
      "the blocks cannot be fetched",
      (d, jobId) => d.feed({ type: "fetch_failed", jobId, detail: "no provider" }),
      "fetch_failed",
    ],
    [
      "the runtime throws",
      (d, jobId) => {
        d.feed({
          type: "blocks_fetched",
          now: T0,
          jobId,
          module: new Uint8Array(1),
          input: new Uint8Array(1),
        });
        d.feed({ type: "execution_threw", jobId, detail: "job.memoryPages must be an integer in 0..16384" });
      },
      "internal_error",
    ],
    [
      "the job yields no result",
      (d, jobId) => {
        d.feed({
          type: "blocks_fetched",
          now: T0,
          jobId,
          module: new Uint8Array(1),
          input: new Uint8Array(1),
        });
        d.feed({
          type: "executed",
          now: T0,
          jobId,
          result: { kind: "no_result", reason: "timeout", detail: "wall clock" },
        });
      },
      "no_result",
    ],
    [
      "the receipt cannot be stored",
      (d, jobId) => {
        d.feed({
          type: "blocks_fetched",
          now: T0,
          jobId,
          module: new Uint8Array(1),
          input: new Uint8Array(1),
        });
        d.feed({ type: "executed", now: T0, jobId, result: okResult() });
        d.feed({ type: "persist_failed", jobId, detail: "disk full" });
      },
      "internal_error",
    ],
  ];
  for (const [what, fail, reason] of failures) {
    it(`releases the slot and tells the buyer when ${what}`, () => {
      const driver = new Driver();
      const job = announce();
      driver.accepted(job);
      assert.equal(driver.state.busySlots, 1);
      fail(driver, job.jobId);
      assert.equal(driver.state.busySlots, 0);
      assert.equal(driver.one("record_failure").reason, reason);
      const { delivery } = driver.one("deliver");
      assert.equal(delivery.type === "no_result" && delivery.reason, reason);
      const status = statusOf(driver.state, job.jobId);
      assert.equal(status?.state, "failed");
      assert.equal(status?.reason, reason);
      // Late news of the same job changes nothing.
      driver.feed({
        type: "blocks_fetched",
        now: T0,
        jobId: job.jobId,
        module: new Uint8Array(1),
        input: new Uint8Array(1),
      });
      assert.deepEqual(driver.effects, []);
      assert.equal(driver.state.busySlots, 0);
    });
  }

  it("ignores outcomes that belong to another phase, and timers of jobs it no longer holds", () => {
    const driver = new Driver();
    const job = announce();
    driver.accepted(job);
    assert.deepEqual(driver.feed({ type: "execution_threw", jobId: job.jobId, detail: "stale" }), []);
    assert.deepEqual(driver.feed({ type: "persist_failed", jobId: job.jobId, detail: "stale" }), []);
    assert.equal(statusOf(driver.state, job.jobId)?.state, "fetching");
    assert.equal(driver.state.busySlots, 1);
    const unknown = announce().jobId;
    assert.deepEqual(
      driver.feed({ type: "timer_fired", now: T0, timer: { kind: "redeliver", jobId: unknown } }),
      [],
    );
    assert.deepEqual(driver.feed({ type: "fetch_failed", jobId: unknown, detail: "stale" }), []);
  });

  it("an assignment of a job whose receipt waits in the outbox is accepted again, not run again", () => {
    const driver = new Driver();
    const job = announce();
    const delivery = driver.completed(job);
    assert.equal(delivery.receipt.jobId, job.jobId);
    const again = driver.assign("buyer-a", [
      assignment({ jobId: job.jobId, executor: OPERATOR, pricePerMegaFuel: 1_000n, expiresAt: 1n }),
    ]);
    assert.deepEqual([...again.values()].map(reasonOf), ["accept"]);
    assert.equal(driver.all("check_spec").length, 0);
  });
});

describe("donor machine: delivery and the outbox", () => {
  it("keeps inline outputs for redelivery only within its byte budget", () => {
    const driver = new Driver({ outboxInlineBytes: 4 });
    const job = announce();
    driver.completed(job, 3, Buffer.from("output").toString("base64"));
    const first = driver.one("deliver").delivery;
    assert.equal(first.type === "receipt" && first.outputBase64, Buffer.from("output").toString("base64"));
    driver.feed({ type: "delivery_failed", now: T0, jobId: job.jobId, detail: "unreachable" });
    const { at } = driver.one("schedule");
    driver.feed({ type: "timer_fired", now: at, timer: { kind: "redeliver", jobId: job.jobId } });
    const again = driver.one("deliver").delivery;
    assert.equal(again.type, "receipt");
    assert.equal(
      again.type === "receipt" ? again.outputBase64 : "no receipt",
      undefined,
      "the buyer fetches it by CID",
    );
  });

  it("redelivers a receipt with growing backoff until the bound, then gives up on it", () => {
    const driver = new Driver();
    const job = announce();
    driver.completed(job, 3);
    let now = T0;
    for (let failure = 1; failure < REDELIVERY_ATTEMPTS; failure++) {
      driver.feed({ type: "delivery_failed", now, jobId: job.jobId, detail: "unreachable" });
      const { at } = driver.one("schedule");
      assert.equal(at, now + retryDelay(failure));
      now = at;
      driver.feed({ type: "timer_fired", now, timer: { kind: "redeliver", jobId: job.jobId } });
      driver.one("deliver");
    }
    assert.ok(retryDelay(REDELIVERY_ATTEMPTS) <= 60_000);
    driver.feed({ type: "delivery_failed", now, jobId: job.jobId, detail: "unreachable" });
    assert.equal(driver.all("schedule").length, 0);
    assert.deepEqual(driver.one("leave_outbox"), {
      type: "leave_outbox",
      jobId: job.jobId,
      rowId: 3,
      why: "given_up",
    });
  });

  it("a refused receipt leaves the outbox too: the refusal is the buyer's final answer", () => {
    const driver = new Driver();
    const job = announce();
    driver.completed(job);
    driver.feed({
      type: "delivery_acked",
      now: T0,
      jobId: job.jobId,
      ack: { type: "ack", jobId: job.jobId, accepted: false, reason: "unknown_job" },
    });
    assert.equal(driver.one("leave_outbox").why, "acknowledged");
    assert.equal(driver.one("log").level, "warn");
  });

  it("a timer that fires while a delivery is under way sends nothing twice", () => {
    const driver = new Driver();
    const job = announce();
    driver.completed(job);
    driver.feed({ type: "timer_fired", now: T0, timer: { kind: "redeliver", jobId: job.jobId } });
    assert.equal(driver.all("deliver").length, 0);
  });

  it("a failed job's 'no result' is retried a few times, then forgotten", () => {
    const driver = new Driver();
    const job = announce();
    driver.accepted(job);
    driver.feed({ type: "fetch_failed", jobId: job.jobId, detail: "gone" });
    for (let failure = 1; failure < NO_RESULT_ATTEMPTS; failure++) {
      driver.feed({ type: "delivery_failed", now: T0, jobId: job.jobId, detail: "unreachable" });
      driver.feed({
        type: "timer_fired",
        now: driver.one("schedule").at,
        timer: { kind: "redeliver", jobId: job.jobId },
      });
      driver.one("deliver");
    }
    driver.feed({ type: "delivery_failed", now: T0, jobId: job.jobId, detail: "unreachable" });
    assert.equal(driver.all("schedule").length, 0);
    assert.equal(statusOf(driver.state, job.jobId), undefined, "from here the store answers");
  });

  it("no retry is scheduled while stopping; the receipt stays in the stored outbox", () => {
    const driver = new Driver();
    const job = announce();
    driver.completed(job);
    driver.feed({ type: "stopping" });
    driver.feed({ type: "delivery_failed", now: T0, jobId: job.jobId, detail: "stopped" });
    assert.equal(driver.all("schedule").length, 0);
    assert.equal(driver.all("leave_outbox").length, 0);
  });

  it("after a restart, stored receipts are delivered again and answer status probes", () => {
    const driver = new Driver();
    const job = announce();
    const entry = outboxEntry(job.jobId, 9);
    driver.feed({ type: "restored", now: T0, outbox: [entry] });
    assert.deepEqual(driver.one("deliver"), {
      type: "deliver",
      jobId: job.jobId,
      buyerPeer: "buyer-a",
      delivery: entry.delivery,
    });
    assert.equal(statusOf(driver.state, job.jobId)?.receipt?.outputCid, OUTPUT_CID);
    driver.feed({
      type: "delivery_acked",
      now: T0,
      jobId: job.jobId,
      ack: { type: "ack", jobId: job.jobId, accepted: true },
    });
    assert.equal(driver.one("leave_outbox").rowId, 9);
  });

  it("holds at most OUTBOX_LIMIT receipts in memory; the oldest leaves first", () => {
    const driver = new Driver();
    const entries = Array.from({ length: OUTBOX_LIMIT + 1 }, (_, i) => outboxEntry(announce().jobId, i + 1));
    driver.feed({ type: "restored", now: T0, outbox: entries });
    assert.equal(driver.state.outbox.size, OUTBOX_LIMIT);
    assert.deepEqual(driver.one("leave_outbox"), {
      type: "leave_outbox",
      jobId: entries[0]!.jobId,
      rowId: 1,
      why: "crowded_out",
    });
  });
});

function outboxEntry(jobId: Hex, rowId: number): OutboxEntry {
  return {
    jobId,
    buyerPeer: "buyer-a",
    rowId,
    delivery: {
      type: "receipt",
      receipt: {
        jobId,
        executor: OPERATOR,
        moduleCid: cidToBytes32(MODULE_CID),
        inputCid: cidToBytes32(INPUT_CID),
        outputCid: cidToBytes32(OUTPUT_CID),
        fuelUsed: "1",
        status: 0,
        startedAt: "1",
        finishedAt: "2",
      },
      signature: SIGNATURE,
      outputCid: OUTPUT_CID,
    },
  };
}

describe("donor config", () => {
  it("refuses a memory cap above the runtime's, naming the field", async () => {
    const over = DEFAULT_POLICY_LIMITS.maxMemoryPages + 1;
    await assert.rejects(
      loadConfig(undefined, { donor: { maxMemoryPages: over } }),
      (err: Error) => /donor\.maxMemoryPages/.test(err.message) && /runtime's memory cap/.test(err.message),
    );
    const config = await loadConfig(undefined, {
      donor: { maxMemoryPages: DEFAULT_POLICY_LIMITS.maxMemoryPages },
    });
    assert.equal(config.donor.maxMemoryPages, DEFAULT_POLICY_LIMITS.maxMemoryPages);
  });

  it("has per-buyer announce and bid caps, bounded by the bid cache", async () => {
    const config = await loadConfig();
    assert.equal(config.donor.announcedJobsPerBuyerPerSecond, 1_000);
    assert.equal(config.donor.outstandingBidsPerBuyer, 512);
    await assert.rejects(
      loadConfig(undefined, { donor: { outstandingBidsPerBuyer: OFFER_LIMIT + 1 } }),
      /donor\.outstandingBidsPerBuyer/,
    );
  });
});

describe("donor store: the durable outbox", () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  function open(dir: string) {
    const store = openStore(dir);
    const provided: string[] = [];
    const jobs = new DonorStore({
      store,
      log: { debug: () => {}, info: () => {}, warn: () => {} },
      executor: OPERATOR,
      provider: { add: (cid) => provided.push(cid), withdraw: () => {} },
      publishReceiptBatch: async () => {},
      receiptBatchMs: 60_000,
    });
    return { store, jobs };
  }

  it("a stored receipt stays in the outbox across a restart until it leaves, and a status probe returns it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cell-donor-"));
    dirs.push(dir);
    const job = announce();
    const delivery = outboxEntry(job.jobId, 0).delivery;
    const first = open(dir);
    const rowId = await first.jobs.persistReceipt(
      { job: signedJob(job), announce: job, buyerPeer: "buyer-a" },
      delivery,
      OUTPUT,
    );
    await first.jobs.stop();
    first.store.close();

    const second = open(dir);
    const [entry, ...rest] = second.jobs.outbox(10);
    assert.equal(rest.length, 0);
    assert.equal(entry?.rowId, rowId);
    assert.equal(entry?.buyerPeer, "buyer-a");
    assert.deepEqual(entry?.delivery.receipt, delivery.receipt);
    assert.equal(entry?.delivery.outputBase64, Buffer.from(OUTPUT).toString("base64"));
    const status = second.jobs.storedStatus(job.jobId);
    assert.equal(status?.state, "done");
    assert.deepEqual(status?.receipt, {
      receipt: delivery.receipt,
      signature: SIGNATURE,
      outputCid: OUTPUT_CID,
    });

    await second.jobs.leaveOutbox(rowId);
    await second.jobs.stop();
    assert.deepEqual(second.jobs.outbox(10), []);
    assert.equal(
      second.jobs.storedStatus(job.jobId)?.receipt?.signature,
      SIGNATURE,
      "the receipt itself stays",
    );
    second.store.close();
  });

  it("acknowledged receipts leave the outbox in the next receipt's commit", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cell-donor-"));
    dirs.push(dir);
    const { store, jobs } = open(dir);
    const persist = (job: JobAnnounce) =>
      jobs.persistReceipt(
        { job: signedJob(job), announce: job, buyerPeer: "buyer-a" },
        outboxEntry(job.jobId, 0).delivery,
        OUTPUT,
      );
    const [first, second] = [announce(), announce()];
    const firstRow = await persist(first);
    await jobs.leaveOutbox(firstRow);
    assert.deepEqual(
      jobs.outbox(10).map((entry) => entry.rowId),
      [firstRow],
      "not written on its own",
    );
    const secondRow = await persist(second);
    assert.deepEqual(
      jobs.outbox(10).map((entry) => entry.rowId),
      [secondRow],
    );
    await jobs.stop();
    store.close();
  });

  it("a failed job answers 'failed' with its reason; an unknown one is not the store's", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cell-donor-"));
    dirs.push(dir);
    const { store, jobs } = open(dir);
    const job = announce();
    await jobs.recordFailure({ job: signedJob(job), announce: job }, "fetch_failed");
    assert.deepEqual(jobs.storedStatus(job.jobId), {
      type: "status",
      jobId: job.jobId,
      state: "failed",
      reason: "fetch_failed",
    });
    assert.equal(jobs.storedStatus(announce().jobId), undefined);
    store.close();
  });
});
