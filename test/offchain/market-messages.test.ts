import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  AssignBatchSchema,
  AssignRequestSchema,
  BidBatchSchema,
  BidRequestAnswerSchema,
  BidRequestBatchSchema,
  DeliveryBatchSchema,
  MARKET_BATCH_MAX,
  BidOfferSchema,
  ANNOUNCE_BATCH_MAX_JOBS,
  CapabilityAdvertSchema,
  JobAnnounceBatchSchema,
  JobAnnounceSchema,
  MESSAGE_LIMITS,
  REASON_CODES,
  ReceiptDeliverySchema,
  StatusResponseSchema,
  Uint64StringSchema,
} from "../../offchain/src/protocol/index.ts";

const bytes32 = `0x${"ab".repeat(32)}`;
const address = `0x${"12".repeat(20)}`;
/** Of a valid form (r and a low s in range, v = 27); no key signed anything with it. */
const signature = `0x${"cd".repeat(32)}${"3d".repeat(32)}1b`;
const peerId = "12D3KooWGzxHqRmjGLBxqvDSkFnnYpNNmEtDMpgqsCBCZQxhYz9C";
const cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

function spec(overrides: Record<string, unknown> = {}) {
  return {
    buyer: address,
    moduleCid: bytes32,
    inputCid: bytes32,
    entry: "_start",
    fuelLimit: "1000000",
    memoryPages: 16,
    timeoutMs: 5000,
    replicas: 1,
    maxPricePerMegaFuel: "1000",
    minReputation: 0,
    deadline: "1900000000000",
    priority: 2,
    channel: bytes32,
    salt: bytes32,
    ...overrides,
  };
}

function announce(overrides: Record<string, unknown> = {}) {
  return {
    type: "job",
    jobId: bytes32,
    spec: spec(),
    signature,
    moduleCid: cid,
    inputCid: cid,
    moduleSize: 100,
    inputSize: 3,
    buyerPeer: peerId,
    providers: [peerId],
    providerAddrs: ["/ip4/127.0.0.1/tcp/4001"],
    ...overrides,
  };
}

function issuePaths(result: { success: boolean; error?: { issues: { path: PropertyKey[] }[] } }): string[] {
  return (result.error?.issues ?? []).map((issue) => issue.path.map(String).join("."));
}

describe("job announce schema", () => {
  it("accepts a well-formed announce and keeps its values", () => {
    const parsed = JobAnnounceSchema.parse(announce());
    assert.equal(parsed.spec.fuelLimit, "1000000");
    assert.equal(parsed.jobId, bytes32);
    assert.ok(JSON.stringify(parsed).length < MESSAGE_LIMITS.announce);
  });

  it("names the field that is wrong", () => {
    const result = JobAnnounceSchema.safeParse(announce({ spec: spec({ buyer: "0x1234" }) }));
    assert.equal(result.success, false);
    assert.deepEqual(issuePaths(result), ["spec.buyer"]);
  });

  it("rejects unknown fields, so nothing unparsed slips through", () => {
    const result = JobAnnounceSchema.safeParse(announce({ extra: "x" }));
    assert.equal(result.success, false);
  });

  it("caps strings and arrays", () => {
    assert.equal(JobAnnounceSchema.safeParse(announce({ providers: Array(9).fill(peerId) })).success, false);
    assert.equal(
      JobAnnounceSchema.safeParse(announce({ spec: spec({ entry: "a".repeat(65) }) })).success,
      false,
    );
    assert.equal(JobAnnounceSchema.safeParse(announce({ buyerPeer: "1".repeat(129) })).success, false);
    assert.equal(JobAnnounceSchema.safeParse(announce({ moduleCid: `b${"a".repeat(200)}` })).success, false);
  });

  it("rejects non-hex, wrong-length hex and bad export names", () => {
    assert.equal(JobAnnounceSchema.safeParse(announce({ jobId: `0x${"zz".repeat(32)}` })).success, false);
    assert.equal(JobAnnounceSchema.safeParse(announce({ signature: `0x${"cd".repeat(63)}` })).success, false);
    assert.equal(JobAnnounceSchema.safeParse(announce({ spec: spec({ entry: "run; rm" }) })).success, false);
  });

  it("checks integer ranges of the signed fields", () => {
    assert.equal(JobAnnounceSchema.safeParse(announce({ spec: spec({ replicas: 0 }) })).success, false);
    assert.equal(JobAnnounceSchema.safeParse(announce({ spec: spec({ priority: 5 }) })).success, false);
    assert.equal(JobAnnounceSchema.safeParse(announce({ spec: spec({ memoryPages: 1.5 }) })).success, false);
  });
});

describe("job announce batches", () => {
  it("carry one to ANNOUNCE_BATCH_MAX_JOBS well-formed announces", () => {
    assert.equal(JobAnnounceBatchSchema.safeParse({ type: "jobs", jobs: [announce()] }).success, true);
    assert.equal(JobAnnounceBatchSchema.safeParse({ type: "jobs", jobs: [] }).success, false);
    const full = Array.from({ length: ANNOUNCE_BATCH_MAX_JOBS }, () => announce());
    assert.equal(JobAnnounceBatchSchema.safeParse({ type: "jobs", jobs: full }).success, true);
    assert.equal(JSON.stringify({ type: "jobs", jobs: full }).length <= MESSAGE_LIMITS.announceBatch, true);
    assert.equal(
      JobAnnounceBatchSchema.safeParse({ type: "jobs", jobs: [...full, announce()] }).success,
      false,
    );
  });

  it("reject a batch with one bad announce, naming it", () => {
    const result = JobAnnounceBatchSchema.safeParse({
      type: "jobs",
      jobs: [announce(), announce({ jobId: "0x12" })],
    });
    assert.equal(result.success, false);
    assert.deepEqual(issuePaths(result), ["jobs.1.jobId"]);
  });
});

describe("bid requests", () => {
  it("carry one to MARKET_BATCH_MAX well-formed jobs, within the byte limit", () => {
    const full = Array.from({ length: MARKET_BATCH_MAX }, () => announce());
    assert.equal(BidRequestBatchSchema.safeParse({ type: "bid_requests", jobs: full }).success, true);
    assert.ok(JSON.stringify({ type: "bid_requests", jobs: full }).length <= MESSAGE_LIMITS.bidRequestBatch);
    assert.equal(BidRequestBatchSchema.safeParse({ type: "bid_requests", jobs: [] }).success, false);
    assert.equal(
      BidRequestBatchSchema.safeParse({ type: "bid_requests", jobs: [...full, announce()] }).success,
      false,
    );
    assert.equal(BidRequestBatchSchema.safeParse({ type: "jobs", jobs: [announce()] }).success, false);
    assert.equal(
      BidRequestBatchSchema.safeParse({ type: "bid_requests", jobs: [announce()], extra: 1 }).success,
      false,
    );
  });

  it("reject a request with one bad job, naming it, and answers with too many or bad offers", () => {
    const result = BidRequestBatchSchema.safeParse({
      type: "bid_requests",
      jobs: [announce(), announce({ jobId: "0x12" })],
    });
    assert.deepEqual(issuePaths(result), ["jobs.1.jobId"]);
    const decline = { type: "decline", jobId: `0x${"ab".repeat(32)}`, reason: "slots_full" } as const;
    assert.equal(BidRequestAnswerSchema.safeParse({ type: "bids", offers: [] }).success, true);
    assert.equal(BidRequestAnswerSchema.safeParse({ type: "bids", offers: [decline] }).success, true);
    assert.equal(
      BidRequestAnswerSchema.safeParse({
        type: "bids",
        offers: Array.from({ length: MARKET_BATCH_MAX + 1 }, () => decline),
      }).success,
      false,
    );
    assert.deepEqual(
      issuePaths(BidRequestAnswerSchema.safeParse({ type: "bids", offers: [{ ...decline, jobId: "0x12" }] })),
      ["offers.0.jobId"],
    );
  });
});

describe("decimal-string integers", () => {
  it("accept canonical decimals below 2^64", () => {
    assert.equal(Uint64StringSchema.safeParse("0").success, true);
    assert.equal(Uint64StringSchema.safeParse((2n ** 64n - 1n).toString()).success, true);
  });

  it("reject overflow, signs, leading zeros and numbers", () => {
    for (const bad of [(2n ** 64n).toString(), "-1", "01", "1e3", " 1", 5]) {
      assert.equal(Uint64StringSchema.safeParse(bad).success, false, `accepted ${String(bad)}`);
    }
  });
});

describe("bid, assign, status and receipt schemas", () => {
  const bid = { jobId: bytes32, executor: address, pricePerMegaFuel: "900", expiresAt: "1900000000000" };

  it("bid offers are a signed bid or a decline with a known reason", () => {
    assert.equal(
      BidOfferSchema.safeParse({ type: "bid", bid, signature, peerKey: bytes32, freeSlots: 1 }).success,
      true,
    );
    assert.equal(
      BidOfferSchema.safeParse({ type: "decline", jobId: bytes32, reason: "slots_full" }).success,
      true,
    );
    assert.equal(
      BidOfferSchema.safeParse({ type: "decline", jobId: bytes32, reason: "because" }).success,
      false,
    );
    assert.equal(
      BidOfferSchema.safeParse({
        type: "decline",
        jobId: bytes32,
        reason: "slots_full",
        detail: "x".repeat(513),
      }).success,
      false,
    );
  });

  it("bid batches carry 1 to MARKET_BATCH_MAX offers", () => {
    const offer = { type: "decline", jobId: bytes32, reason: "slots_full" };
    assert.equal(BidBatchSchema.safeParse({ type: "bids", offers: [offer] }).success, true);
    assert.equal(BidBatchSchema.safeParse({ type: "bids", offers: [] }).success, false);
    const tooMany = Array.from({ length: MARKET_BATCH_MAX + 1 }, () => offer);
    assert.equal(BidBatchSchema.safeParse({ type: "bids", offers: tooMany }).success, false);
  });

  it("assign requests name the job and carry the accepted bid", () => {
    const request = { type: "assign", jobId: bytes32, bid, bidSignature: signature, attempt: 1 };
    assert.equal(AssignRequestSchema.safeParse(request).success, true);
    assert.equal(AssignRequestSchema.safeParse({ ...request, attempt: -1 }).success, false);
    assert.equal(AssignRequestSchema.safeParse({ ...request, inputBase64: "aGVsbG8=" }).success, true);
    assert.equal(AssignRequestSchema.safeParse({ ...request, inputBase64: "A".repeat(6000) }).success, false);
    assert.equal(AssignRequestSchema.safeParse({ ...request, inputBase64: "%%%" }).success, false);
    assert.equal(AssignRequestSchema.safeParse({ ...request, job: announce() }).success, false);
    assert.equal(
      AssignBatchSchema.safeParse({ type: "assign_batch", assignments: [request, request] }).success,
      true,
    );
  });

  it("status responses name a known executor state", () => {
    assert.equal(
      StatusResponseSchema.safeParse({ type: "status", jobId: bytes32, state: "running" }).success,
      true,
    );
    assert.equal(
      StatusResponseSchema.safeParse({ type: "status", jobId: bytes32, state: "sleeping" }).success,
      false,
    );
  });

  it("receipt deliveries cap the inline output", () => {
    const receipt = {
      jobId: bytes32,
      executor: address,
      moduleCid: bytes32,
      inputCid: bytes32,
      outputCid: bytes32,
      fuelUsed: "1234",
      status: 0,
      startedAt: "1",
      finishedAt: "2",
    };
    const ok = { type: "receipt", receipt, signature, outputCid: cid, outputBase64: "aGVsbG8=" };
    assert.equal(ReceiptDeliverySchema.safeParse(ok).success, true);
    assert.equal(
      ReceiptDeliverySchema.safeParse({ ...ok, outputBase64: "A".repeat(400_000) }).success,
      false,
    );
    assert.equal(ReceiptDeliverySchema.safeParse({ ...ok, outputBase64: "not base64!" }).success, false);
    const noResult = { type: "no_result", jobId: bytes32, reason: "no_result" };
    assert.equal(ReceiptDeliverySchema.safeParse(noResult).success, true);
    assert.equal(
      DeliveryBatchSchema.safeParse({ type: "deliveries", deliveries: [ok, noResult] }).success,
      true,
    );
    assert.equal(DeliveryBatchSchema.safeParse({ type: "deliveries", deliveries: [] }).success, false);
  });

  it("capability adverts bound slots and runtime version", () => {
    const advert = {
      type: "caps",
      seq: 1,
      operator: address,
      peerId,
      peerKey: bytes32,
      pricePerMegaFuel: "1000",
      slots: 2,
      freeSlots: 2,
      fuelPerSecond: "100000000",
      maxFuel: "10000000000",
      maxMemoryPages: 1024,
      runtimeVersion: "cell-wasm/1",
      multiaddrs: ["/ip4/127.0.0.1/tcp/4001"],
      timestamp: "1900000000000",
    };
    assert.equal(CapabilityAdvertSchema.safeParse(advert).success, true);
    assert.equal(CapabilityAdvertSchema.safeParse({ ...advert, slots: 5000 }).success, false);
    assert.equal(CapabilityAdvertSchema.safeParse({ ...advert, seq: 0 }).success, false, "seq starts at 1");
    assert.equal(
      CapabilityAdvertSchema.safeParse({ ...advert, runtimeVersion: "v".repeat(33) }).success,
      false,
    );
  });

  it("reason codes cover every refusal the market names", () => {
    for (const code of [
      "no_bid",
      "bid_rejected_price",
      "bid_rejected_reputation",
      "not_staked",
      "policy_mismatch",
      "slots_full",
      "timeout",
      "executor_silent",
      "deadline_missed",
      "fetch_failed",
      "no_result",
    ]) {
      assert.ok((REASON_CODES as readonly string[]).includes(code), code);
    }
  });
});
