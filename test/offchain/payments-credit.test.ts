import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { Address, Hex } from "viem";
import { DEFAULT_DONOR_POLICY, buildJobSpec } from "../../offchain/src/market/index.ts";
import type { SignedJob } from "../../offchain/src/market/index.ts";
import { initialDonorState, step } from "../../offchain/src/node/donor-machine.ts";
import type { DonorEffect, DonorMachineState } from "../../offchain/src/node/donor-machine.ts";
import { DonorStore } from "../../offchain/src/node/donor-store.ts";
import { decideCredit, jobAmount, maxCost } from "../../offchain/src/payments/index.ts";
import type { BuyerCredit, CreditLimits } from "../../offchain/src/payments/index.ts";
import { bidToWire, cidToBytes32, jobSpecToWire, receiptToWire } from "../../offchain/src/protocol/index.ts";
import type { BidMessage, JobAnnounce } from "../../offchain/src/protocol/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";

const T0 = 1_800_000_000_000;
const OPERATOR: Address = "0x00000000000000000000000000000000000000Aa";
const BUYER: Address = "0x1111111111111111111111111111111111111111";
const SIGNATURE: Hex = `0x${"ab".repeat(65)}`;
const MODULE_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
const INPUT_CID = "bafkreiaxnnnb7qz2focittuqq3ya25q7rcv3bqynnczfzako47346wosmu";
const PRICE = 1_000n;
const FUEL_LIMIT = 2_000_000n;
/** ⌈1,000 × 2,000,000 / 10^6⌉ */
const JOB_MAX_COST = 2_000n;
const LIMITS: CreditLimits = { freeAllowance: 0n, maxUnpaid: 10_000n };

describe("decideCredit", () => {
  const credit = (unspentDeposit: bigint, unpaid = 0n): BuyerCredit => ({ unspentDeposit, unpaid });
  it("works when the unspent deposit covers what is owed, running and this job", () => {
    assert.equal(maxCost(PRICE, FUEL_LIMIT), JOB_MAX_COST);
    assert.deepEqual(decideCredit(credit(2_000n), JOB_MAX_COST, 0n, LIMITS), { type: "work" });
    assert.deepEqual(decideCredit(credit(5_000n, 1_000n), JOB_MAX_COST, 2_000n, LIMITS), { type: "work" });
  });
  it("asks for payment when no channel covers the job", () => {
    for (const [given, committed] of [
      [credit(0n), 0n],
      [credit(1_999n), 0n],
      [credit(5_000n, 1_000n), 2_001n],
    ] as const) {
      const decision = decideCredit(given, JOB_MAX_COST, committed, LIMITS);
      assert.equal(decision.type === "decline" && decision.reason, "payment_required");
    }
  });
  it("works within the free allowance without a channel", () => {
    const limits = { ...LIMITS, freeAllowance: 5_000n };
    assert.deepEqual(decideCredit(credit(0n, 3_000n), JOB_MAX_COST, 0n, limits), { type: "work" });
    const over = decideCredit(credit(0n, 3_001n), JOB_MAX_COST, 0n, limits);
    assert.equal(over.type === "decline" && over.reason, "payment_required");
  });
  it("declines a buyer owing more than the limit, whatever its deposit", () => {
    const decision = decideCredit(credit(10n ** 24n, 10_001n), JOB_MAX_COST, 0n, LIMITS);
    assert.equal(decision.type === "decline" && decision.reason, "payment_overdue");
    assert.match(decision.type === "decline" ? decision.detail : "", /10001/);
  });
});

let jobs = 0;
function announce(): JobAnnounce {
  jobs++;
  const spec = buildJobSpec({
    buyer: BUYER,
    moduleCid: cidToBytes32(MODULE_CID),
    inputCid: cidToBytes32(INPUT_CID),
    maxPricePerMegaFuel: 2_000n,
    now: T0,
    fuelLimit: FUEL_LIMIT,
    salt: `0x${jobs.toString(16).padStart(64, "0")}`,
  });
  return {
    type: "job",
    jobId: `0x${jobs.toString(16).padStart(64, "e")}`,
    spec: jobSpecToWire(spec),
    signature: SIGNATURE,
    moduleCid: MODULE_CID,
    inputCid: INPUT_CID,
    moduleSize: 100,
    inputSize: 10,
    buyerPeer: "buyer-peer",
    providers: [],
    providerAddrs: [],
  };
}

function machine(credit: CreditLimits | "off" = LIMITS): DonorMachineState {
  return initialDonorState({
    operator: OPERATOR,
    policy: { ...DEFAULT_DONOR_POLICY, slots: 4, pricePerMegaFuel: PRICE },
    announcedJobsPerBuyerPerSecond: 1_000,
    outstandingBidsPerBuyer: 512,
    credit: credit === "off" ? undefined : credit,
  });
}

/** What the donor answers an announced job: "bid" or the decline's reason. */
function answer(state: DonorMachineState, job: JobAnnounce, credit?: BuyerCredit): string {
  const { effects } = step(state, {
    type: "announced",
    now: T0,
    buyer: job.buyerPeer,
    jobs: [job],
    staked: true,
    credit: credit && new Map([[BUYER.toLowerCase(), credit]]),
  });
  return answerOf(effects);
}

/** Announces a job and signs the bid the machine asks for: the bid is held for assignment. */
function bidOn(state: DonorMachineState, job: JobAnnounce, credit: BuyerCredit): BidMessage {
  const { effects } = step(state, {
    type: "announced",
    now: T0,
    buyer: job.buyerPeer,
    jobs: [job],
    staked: true,
    credit: new Map([[BUYER.toLowerCase(), credit]]),
  });
  const sign = effects.find((effect) => effect.type === "sign_bid");
  assert.ok(sign?.type === "sign_bid", `no bid: ${answerOf(effects)}`);
  step(state, {
    type: "bid_signed",
    now: T0,
    buyer: job.buyerPeer,
    announce: job,
    job: signedJob(job),
    bid: sign.bid,
    signature: SIGNATURE,
    peerKey: `0x${"cd".repeat(32)}`,
  });
  return sign.bid;
}

function assign(state: DonorMachineState, bid: BidMessage): void {
  step(state, {
    type: "assigned",
    now: T0,
    from: "buyer-peer",
    requests: [
      {
        id: 1,
        request: {
          type: "assign",
          jobId: bid.jobId,
          bid: bidToWire(bid),
          bidSignature: SIGNATURE,
          attempt: 1,
        },
      },
    ],
  });
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

function answerOf(effects: DonorEffect[]): string {
  for (const effect of effects) {
    if (effect.type === "sign_bid") return "bid";
    if (effect.type === "send_offer" && effect.offer.type === "decline") return effect.offer.reason;
  }
  return "none";
}

describe("donor machine: credit", () => {
  it("declines with payment_required without a channel, and bids once one covers the job", () => {
    const state = machine();
    assert.equal(answer(state, announce()), "payment_required");
    assert.equal(answer(state, announce(), { unspentDeposit: 0n, unpaid: 0n }), "payment_required");
    assert.equal(answer(state, announce(), { unspentDeposit: JOB_MAX_COST, unpaid: 0n }), "bid");
  });
  it("declines with payment_overdue past the unpaid limit, and bids again once paid", () => {
    const state = machine();
    const rich = 10n ** 20n;
    assert.equal(answer(state, announce(), { unspentDeposit: rich, unpaid: 10_001n }), "payment_overdue");
    assert.equal(answer(state, announce(), { unspentDeposit: rich, unpaid: 0n }), "bid");
  });
  it("counts the jobs it bid on and runs for the buyer against its deposit", () => {
    const state = machine();
    const credit = { unspentDeposit: 2n * JOB_MAX_COST, unpaid: 0n };
    const first = bidOn(state, announce(), credit);
    assert.equal(answer(state, announce(), credit), "bid", "one bid held and this one: covered");
    bidOn(state, announce(), credit);
    assert.equal(answer(state, announce(), credit), "payment_required", "two bids held: no room for a third");
    assign(state, first);
    assert.equal(state.busySlots, 1);
    assert.equal(answer(state, announce(), credit), "payment_required", "one job running and one bid held");
    assert.equal(answer(state, announce(), { ...credit, unspentDeposit: 3n * JOB_MAX_COST }), "bid");
  });
  it("counts the earlier jobs of one announcement against the deposit", () => {
    const state = machine();
    const jobs = [announce(), announce(), announce()];
    const { effects } = step(state, {
      type: "announced",
      now: T0,
      buyer: "buyer-peer",
      jobs,
      staked: true,
      credit: new Map([[BUYER.toLowerCase(), { unspentDeposit: 2n * JOB_MAX_COST, unpaid: 0n }]]),
    });
    const answers = effects.flatMap((effect) =>
      effect.type === "sign_bid"
        ? ["bid"]
        : effect.type === "send_offer" && effect.offer.type === "decline"
          ? [effect.offer.reason]
          : [],
    );
    assert.deepEqual(answers, ["bid", "bid", "payment_required"]);
  });
  it("does not check credit when payments are off", () => {
    assert.equal(answer(machine("off"), announce()), "bid");
  });
});

describe("donor store: earnings", () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  it("records what a signed receipt earns at the bid's price, in the receipt's commit", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cell-earnings-"));
    dirs.push(dir);
    const store = openStore(dir);
    const donorStore = new DonorStore({
      store,
      log: { debug: () => {}, info: () => {}, warn: () => {} },
      executor: OPERATOR,
      provider: { add: () => {}, withdraw: () => {} },
      publishReceiptBatch: async () => {},
      receiptBatchMs: 60_000,
      recordEarnings: true,
    });
    const job = announce();
    const receipt = {
      jobId: job.jobId,
      executor: OPERATOR,
      moduleCid: cidToBytes32(MODULE_CID),
      inputCid: cidToBytes32(INPUT_CID),
      outputCid: cidToBytes32(MODULE_CID),
      fuelUsed: 1_234_567n,
      status: 0,
      startedAt: BigInt(T0),
      finishedAt: BigInt(T0),
    };
    await donorStore.persistReceipt(
      {
        job: signedJob(job),
        announce: job,
        buyerPeer: "buyer-peer",
        pricePerMegaFuel: PRICE,
      },
      { type: "receipt", receipt: receiptToWire(receipt), signature: SIGNATURE, outputCid: MODULE_CID },
      new Uint8Array([1]),
    );
    const earning = store.payeeLedger.earning(job.jobId);
    assert.equal(earning?.amount, jobAmount(PRICE, 1_234_567n));
    assert.equal(earning?.amount, 1_235n, "⌈1,000 × 1,234,567 / 10^6⌉");
    assert.equal(earning?.signer, BUYER);
    assert.equal(store.payeeLedger.unpaid(BUYER), 1_235n);
    await donorStore.stop();
    store.close();
  });
});
