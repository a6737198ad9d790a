// Cancelling a replica: the donor machine stops a job its buyer cancels (and only its
// buyer), frees the slot and sends no receipt; the runtime stops the worker running it.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import type { Address, Hex } from "viem";
import { DEFAULT_DONOR_POLICY, buildJobSpec } from "../../offchain/src/market/index.ts";
import { bidToWire, cidToBytes32, jobSpecToWire } from "../../offchain/src/protocol/index.ts";
import type { JobAnnounce } from "../../offchain/src/protocol/index.ts";
import { cancellable, initialDonorState, statusOf, step } from "../../offchain/src/node/donor-machine.ts";
import type { DonorEffect, DonorEvent, DonorMachineState } from "../../offchain/src/node/donor-machine.ts";
import { createRuntime } from "../../offchain/src/runtime/index.ts";
import { fanOut } from "../../offchain/src/quorum/index.ts";
import type {
  EquivocationSighting,
  VerdictListener,
  VerdictReport,
} from "../../offchain/src/quorum/index.ts";
import { spinModule } from "../e2e/cluster.ts";

const T0 = 1_800_000_000_000;
const OPERATOR: Address = "0x00000000000000000000000000000000000000Aa";
const SIGNATURE: Hex = `0x${"ab".repeat(65)}`;
const MODULE_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
const INPUT_CID = "bafkreiaxnnnb7qz2focittuqq3ya25q7rcv3bqynnczfzako47346wosmu";

function announce(buyerPeer: string, salt: number): JobAnnounce {
  const spec = buildJobSpec({
    buyer: "0x1111111111111111111111111111111111111111",
    moduleCid: cidToBytes32(MODULE_CID),
    inputCid: cidToBytes32(INPUT_CID),
    maxPricePerMegaFuel: 2_000n,
    now: T0,
    fuelLimit: 1_000_000n,
    replicas: 4,
    salt: `0x${salt.toString(16).padStart(64, "0")}`,
  });
  return {
    type: "job",
    jobId: `0x${salt.toString(16).padStart(64, "e")}`,
    spec: jobSpecToWire(spec),
    signature: SIGNATURE,
    moduleCid: MODULE_CID,
    inputCid: INPUT_CID,
    moduleSize: 100,
    inputSize: 10,
    buyerPeer,
    providers: [],
    providerAddrs: [],
  };
}

/** A donor machine with one job of `buyer` taken up to its run. */
function running(buyer = "buyer-a"): {
  state: DonorMachineState;
  job: JobAnnounce;
  feed: (e: DonorEvent) => DonorEffect[];
} {
  const state = initialDonorState({
    operator: OPERATOR,
    policy: { ...DEFAULT_DONOR_POLICY, slots: 2, pricePerMegaFuel: 1_000n },
    announcedJobsPerBuyerPerSecond: 1_000,
    outstandingBidsPerBuyer: 512,
  });
  const feed = (event: DonorEvent) => step(state, event).effects;
  const job = announce(buyer, 7);
  const [sign] = feed({ type: "announced", now: T0, buyer, jobs: [job], staked: true });
  assert.equal(sign?.type, "sign_bid");
  const bid = sign.type === "sign_bid" ? sign.bid : undefined;
  const signed = {
    jobId: job.jobId,
    signature: job.signature,
    spec: {
      ...job.spec,
      fuelLimit: BigInt(job.spec.fuelLimit),
      maxPricePerMegaFuel: BigInt(job.spec.maxPricePerMegaFuel),
      deadline: BigInt(job.spec.deadline),
    },
  };
  feed({
    type: "bid_signed",
    now: T0,
    buyer,
    announce: job,
    job: signed,
    bid: bid!,
    signature: SIGNATURE,
    peerKey: `0x${"cd".repeat(32)}`,
  });
  feed({
    type: "assigned",
    now: T0,
    from: buyer,
    requests: [
      {
        id: 1,
        request: {
          type: "assign",
          jobId: job.jobId,
          bid: bidToWire(bid!),
          bidSignature: SIGNATURE,
          attempt: 1,
        },
      },
    ],
  });
  feed({ type: "spec_checked", jobId: job.jobId, valid: true });
  feed({
    type: "blocks_fetched",
    now: T0,
    jobId: job.jobId,
    module: new Uint8Array(1),
    input: new Uint8Array(1),
  });
  assert.equal(statusOf(state, job.jobId)?.state, "running");
  assert.equal(state.busySlots, 1);
  return { state, job, feed };
}

describe("donor machine: cancel", () => {
  it("stops a running job its buyer cancels: the run is aborted, the slot freed, nothing delivered", () => {
    const { state, job, feed } = running();
    const effects = feed({ type: "cancel_requested", jobId: job.jobId, from: "buyer-a" });
    assert.deepEqual(
      effects.filter((effect) => effect.type !== "log").map((effect) => effect.type),
      ["abort_run", "record_failure"],
    );
    const record = effects.find((effect) => effect.type === "record_failure");
    assert.equal(record?.type === "record_failure" && record.reason, "cancelled");
    assert.equal(state.busySlots, 0);
    assert.equal(statusOf(state, job.jobId), undefined);
    const late = feed({
      type: "executed",
      now: T0 + 1,
      jobId: job.jobId,
      result: { kind: "no_result", reason: "host_error", detail: "cancelled" },
    });
    assert.deepEqual(late, [], "the aborted run's end is ignored: no receipt, no delivery");
  });

  it("ignores a cancel from any peer but the job's buyer", () => {
    const { state, job, feed } = running();
    assert.equal(cancellable(state, job.jobId, "someone-else"), false);
    assert.deepEqual(feed({ type: "cancel_requested", jobId: job.jobId, from: "someone-else" }), []);
    assert.equal(state.busySlots, 1);
    assert.equal(statusOf(state, job.jobId)?.state, "running");
  });
});

describe("runtime: an aborted run", () => {
  it("stops the worker running it at once and keeps serving other jobs", { timeout: 60_000 }, async () => {
    const runtime = await createRuntime({ poolSize: 1, logger: pino({ level: "silent" }) });
    try {
      const long = await spinModule(3_000_000_000);
      const short = await spinModule(1_000);
      const controller = new AbortController();
      const job = {
        module: long,
        input: new Uint8Array(),
        fuelLimit: 100_000_000_000n,
        memoryPages: 16,
        timeoutMs: 60_000,
      };
      const started = Date.now();
      const run = runtime.execute(job, { signal: controller.signal });
      setTimeout(() => controller.abort(), 300);
      const result = await run;
      assert.deepEqual(
        [result.kind, result.kind === "no_result" && result.detail],
        ["no_result", "cancelled"],
      );
      assert.ok(Date.now() - started < 5_000, `stopped after ${Date.now() - started} ms`);
      const next = await runtime.execute({ ...job, module: short, fuelLimit: 1_000_000n });
      assert.equal(next.kind, "result", "a fresh worker runs the next job");
      assert.equal(runtime.replacedWorkers(), 1, "the long run's worker was replaced");
      const aborted = new AbortController();
      aborted.abort();
      const never = await runtime.execute({ ...job, module: short }, { signal: aborted.signal });
      assert.equal(never.kind, "no_result");
    } finally {
      await runtime.close();
    }
  });
});

describe("runtime: a cancelled short run", () => {
  it("keeps its worker when the run ends within the grace", { timeout: 60_000 }, async () => {
    const runtime = await createRuntime({ poolSize: 1, logger: pino({ level: "silent" }) });
    try {
      const job = {
        module: await spinModule(1_000),
        input: new Uint8Array(),
        fuelLimit: 1_000_000n,
        memoryPages: 16,
        timeoutMs: 60_000,
      };
      assert.equal((await runtime.execute(job)).kind, "result", "compiled and warm");
      for (let i = 0; i < 5; i++) {
        const controller = new AbortController();
        const run = runtime.execute(job, { signal: controller.signal });
        queueMicrotask(() => controller.abort());
        assert.equal((await run).kind, "no_result");
      }
      assert.equal((await runtime.execute(job)).kind, "result");
      assert.equal(
        runtime.replacedWorkers(),
        0,
        "no worker was replaced for a run that ended within its grace",
      );
    } finally {
      await runtime.close();
    }
  });
});

describe("fanOut", () => {
  it("hands every report to each listener, even when one throws", () => {
    const seen: string[] = [];
    const listener = (name: string, fail = false): VerdictListener => ({
      onVerdict: (report) => {
        seen.push(`${name}:${report.outcome}`);
        if (fail) throw new Error(`${name} failed`);
      },
      onEquivocation: (sighting) => void seen.push(`${name}:${sighting.operator}`),
    });
    const all = fanOut(listener("trust", true), listener("evidence"));
    assert.throws(() => all.onVerdict({ outcome: "accepted" } as VerdictReport), /trust failed/);
    all.onEquivocation({ operator: OPERATOR } as EquivocationSighting);
    assert.deepEqual(seen, [
      "trust:accepted",
      "evidence:accepted",
      `trust:${OPERATOR}`,
      `evidence:${OPERATOR}`,
    ]);
  });
});
