import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_DONOR_POLICY,
  buildJobSpec,
  decideBid,
  maxCost,
  selectExecutors,
} from "../../offchain/src/market/index.ts";
import type { Candidate, DonorPolicy } from "../../offchain/src/market/index.ts";

const now = 1_800_000_000_000;
const buyer = "0x1111111111111111111111111111111111111111";
const policy: DonorPolicy = {
  ...DEFAULT_DONOR_POLICY,
  pricePerMegaFuel: 1_000n,
  slots: 2,
  maxFuel: 1_000_000_000n,
};

function spec(overrides: Partial<Parameters<typeof buildJobSpec>[0]> = {}) {
  return buildJobSpec({
    buyer,
    moduleCid: `0x${"01".repeat(32)}`,
    inputCid: `0x${"02".repeat(32)}`,
    maxPricePerMegaFuel: 2_000n,
    now,
    ...overrides,
  });
}

const ready = { staked: true, busySlots: 0, now };

describe("donor bidding policy", () => {
  it("bids its asking price, expiring no later than the job's deadline", () => {
    const decision = decideBid(policy, spec(), ready);
    assert.equal(decision.type, "bid");
    if (decision.type !== "bid") return;
    assert.equal(decision.pricePerMegaFuel, 1_000n);
    assert.equal(decision.expiresAt, BigInt(now + policy.bidTtlMs));
    const tight = decideBid(policy, spec({ deadlineMs: now + 5_000 }), ready);
    assert.equal(tight.type === "bid" && tight.expiresAt, BigInt(now + 5_000));
  });

  const cases: [string, Parameters<typeof decideBid>, string][] = [
    ["unstaked", [policy, spec(), { ...ready, staked: false }], "not_staked"],
    ["past deadline", [policy, spec({ deadlineMs: now - 1 }), ready], "deadline_missed"],
    [
      "author not accepted",
      [{ ...policy, acceptedAuthors: ["0x2222222222222222222222222222222222222222"] }, spec(), ready],
      "author_not_accepted",
    ],
    ["too much fuel", [policy, spec({ fuelLimit: 2_000_000_000n }), ready], "fuel_too_high"],
    ["too much memory", [policy, spec({ memoryPages: 5000 }), ready], "memory_too_high"],
    ["too long", [policy, spec({ timeoutMs: 10 * 60_000 }), ready], "timeout_too_long"],
    ["too cheap", [policy, spec({ maxPricePerMegaFuel: 999n }), ready], "bid_rejected_price"],
    ["slots full", [policy, spec(), { ...ready, busySlots: 2 }], "slots_full"],
  ];
  for (const [name, args, reason] of cases) {
    it(`declines when ${name}: ${reason}`, () => {
      const decision = decideBid(...args);
      assert.equal(decision.type, "decline");
      assert.equal(decision.type === "decline" && decision.reason, reason);
      assert.ok(decision.type === "decline" && decision.detail.length > 0);
    });
  }

  it("accepts a listed author regardless of address case", () => {
    const decision = decideBid(
      { ...policy, acceptedAuthors: [buyer.toUpperCase().replace("0X", "0x") as `0x${string}`] },
      spec(),
      ready,
    );
    assert.equal(decision.type, "bid");
  });

  it("max cost rounds up to a whole base unit", () => {
    assert.equal(maxCost(1_000n, 1_000_000n), 1_000n);
    assert.equal(maxCost(1n, 1n), 1n);
    assert.equal(maxCost(3n, 500_000n), 2n);
  });
});

function candidate(overrides: Partial<Candidate>): Candidate {
  return {
    peerId: "peer-a",
    operator: "0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    pricePerMegaFuel: 1_000n,
    expiresAt: BigInt(now + 10_000),
    staked: true,
    stake: 100n,
    lastSeen: now,
    freeSlots: 1,
    ...overrides,
  };
}

const options = { replicas: 1, maxPricePerMegaFuel: 2_000n, minReputation: 0, now, livenessMs: 30_000 };

describe("buyer selection", () => {
  it("prefers the cheapest, then reputation, stake and free slots", () => {
    const cheap = candidate({
      peerId: "cheap",
      operator: "0x0000000000000000000000000000000000000001",
      pricePerMegaFuel: 500n,
    });
    const pricey = candidate({
      peerId: "pricey",
      operator: "0x0000000000000000000000000000000000000002",
      pricePerMegaFuel: 900n,
    });
    assert.deepEqual(
      selectExecutors([pricey, cheap], options).chosen.map((c) => c.peerId),
      ["cheap"],
    );

    const rich = candidate({
      peerId: "rich",
      operator: "0x0000000000000000000000000000000000000003",
      stake: 1_000n,
    });
    const poor = candidate({
      peerId: "poor",
      operator: "0x0000000000000000000000000000000000000004",
      stake: 10n,
    });
    assert.deepEqual(
      selectExecutors([poor, rich], options).chosen.map((c) => c.peerId),
      ["rich"],
    );

    const reputation = (operator: string) => (operator.endsWith("4") ? 60_000 : 10_000);
    assert.deepEqual(
      selectExecutors([poor, rich], { ...options, reputation }).chosen.map((c) => c.peerId),
      ["poor"],
    );
  });

  it("never picks two executors of one operator", () => {
    const a = candidate({ peerId: "a" });
    const b = candidate({ peerId: "b" });
    const c = candidate({ peerId: "c", operator: "0xcccccccccccccccccccccccccccccccccccccccc" });
    const selection = selectExecutors([a, b, c], { ...options, replicas: 3 });
    assert.deepEqual(
      selection.chosen.map((x) => x.peerId),
      ["a", "c"],
    );
    assert.deepEqual(
      selection.rejected.map((r) => [r.candidate.peerId, r.reason]),
      [["b", "duplicate_operator"]],
    );
  });

  it("passes over unstaked, expired, overpriced, low-reputation, silent and excluded bidders with reasons", () => {
    const bids = [
      candidate({ peerId: "unstaked", staked: false }),
      candidate({ peerId: "expired", expiresAt: BigInt(now) }),
      candidate({ peerId: "pricey", pricePerMegaFuel: 3_000n }),
      candidate({ peerId: "silent", lastSeen: now - 60_000 }),
      candidate({ peerId: "excluded" }),
    ];
    const selection = selectExecutors(bids, { ...options, excludePeers: new Set(["excluded"]) });
    assert.equal(selection.chosen.length, 0);
    assert.deepEqual(
      selection.rejected.map((r) => [r.candidate.peerId, r.reason]),
      [
        ["unstaked", "not_staked"],
        ["expired", "bid_rejected_expired"],
        ["pricey", "bid_rejected_price"],
        ["silent", "executor_silent"],
        ["excluded", "duplicate_operator"],
      ],
    );
    const lowRep = selectExecutors([candidate({})], { ...options, minReputation: 40_000 });
    assert.equal(lowRep.rejected[0]?.reason, "bid_rejected_reputation");
  });

  it("is deterministic for equal bids", () => {
    const x = candidate({ peerId: "x", operator: "0x0000000000000000000000000000000000000009" });
    const y = candidate({ peerId: "y", operator: "0x0000000000000000000000000000000000000008" });
    assert.deepEqual(
      selectExecutors([y, x], options).chosen.map((c) => c.peerId),
      ["x"],
    );
    assert.deepEqual(
      selectExecutors([x, y], options).chosen.map((c) => c.peerId),
      ["x"],
    );
  });
});
