import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { Address, Hex } from "viem";
import { keccak256, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { CHANNEL_CLOSED, channelIdOf, signVoucher, voucherDigest } from "../../offchain/src/chain/index.ts";
import { cellDomain, voucherDigestIn } from "../../offchain/src/protocol/index.ts";
import type { ChannelKey } from "../../offchain/src/chain/index.ts";
import { PayeeLedger, VOUCHER_REFUSALS, checkVoucher } from "../../offchain/src/payments/index.ts";
import type {
  PayeeChannelView,
  JobEarning,
  VoucherBatch,
  VoucherClaim,
  VoucherFacts,
  VoucherRefusal,
} from "../../offchain/src/payments/index.ts";
import { DatabaseSync } from "node:sqlite";
import {
  DATABASE_FILE,
  EARNING_WRITE_OFF_MS,
  PAYEE_EARNINGS_MAX,
  openStore,
} from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";

const CHAIN_ID = 31337;
const PAYMENT_CHANNELS: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const buyer = privateKeyToAccount(keccak256(toHex("payee-test-buyer")));
const stranger = privateKeyToAccount(keccak256(toHex("payee-test-stranger")));
const PAYEE: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const OTHER_PAYEE: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

const jobId = (n: number): Hex => toHex(n, { size: 32 });
const keyOf = (nonce: bigint, payee: Address = PAYEE): ChannelKey => ({
  buyer: buyer.address,
  signer: buyer.address,
  payee,
  nonce,
});

// ── the pure decision ─────────────────────────────────────────────────────────────

describe("checkVoucher", () => {
  const open: PayeeChannelView = { deposit: 1_000n, paid: 0n, closesAt: 0n };
  const earnings = (entries: [number, Partial<JobEarning>][]) =>
    new Map(
      entries.map(([n, earning]) => [
        jobId(n),
        { signer: buyer.address, amount: 100n, paid: false, ...earning } as JobEarning,
      ]),
    );
  const claim = (cumulativeAmount: bigint, jobs = [1], payee = PAYEE): VoucherClaim => ({
    key: keyOf(1n, payee),
    cumulativeAmount,
    jobs: jobs.map(jobId),
  });
  const facts = (overrides: Partial<VoucherFacts> = {}): VoucherFacts => ({
    payee: PAYEE,
    signatureValid: true,
    channel: open,
    earnings: earnings([
      [1, {}],
      [2, {}],
    ]),
    ...overrides,
  });
  const reasonOf = (held: bigint | undefined, voucher: VoucherClaim, given: VoucherFacts) => {
    const decision = checkVoucher(held, voucher, given);
    return decision.type === "refuse" ? decision.reason : "accepted";
  };

  it("accepts an increase its named jobs earned, and says how much it adds", () => {
    assert.deepEqual(checkVoucher(50n, claim(250n, [1, 2]), facts()), { type: "accept", increase: 200n });
    assert.deepEqual(checkVoucher(undefined, claim(100n), facts()), { type: "accept", increase: 100n });
  });

  const cases: [VoucherRefusal, bigint | undefined, VoucherClaim, Partial<VoucherFacts>][] = [
    ["bad_signature", undefined, claim(100n), { signatureValid: false }],
    ["wrong_payee", undefined, claim(100n, [1], OTHER_PAYEE), {}],
    ["unknown_channel", undefined, claim(100n), { channel: undefined }],
    ["channel_closed", undefined, claim(100n), { channel: { ...open, closesAt: 1_900_000_000n } }],
    ["channel_closed", undefined, claim(100n), { channel: { ...open, closesAt: CHANNEL_CLOSED } }],
    ["duplicate", 100n, claim(100n), {}],
    ["not_increasing", 150n, claim(100n), {}],
    ["not_increasing", undefined, claim(100n), { channel: { ...open, paid: 120n } }],
    ["over_deposit", undefined, claim(1_001n), { channel: { ...open, deposit: 1_000n } }],
    ["over_owed", undefined, claim(101n), {}],
    ["over_owed", 50n, claim(251n, [1, 2]), {}],
    ["unknown_job", undefined, claim(100n, [9]), {}],
    ["unknown_job", undefined, claim(100n), { earnings: earnings([[1, { paid: true }]]) }],
    ["unknown_job", undefined, claim(100n), { earnings: earnings([[1, { signer: stranger.address }]]) }],
    ["unknown_job", undefined, claim(200n, [1, 1]), {}],
  ];
  for (const [reason, held, voucher, overrides] of cases)
    it(`refuses with ${reason}: held ${held}, voucher ${voucher.cumulativeAmount} ${JSON.stringify(overrides, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)).slice(0, 60)}`, () => {
      const decision = checkVoucher(held, voucher, facts(overrides));
      assert.equal(decision.type, "refuse");
      assert.equal(decision.type === "refuse" && decision.reason, reason);
      assert.ok(decision.type === "refuse" && decision.detail.length > 0);
    });

  it("has a test for every refusal but `unavailable` (a failed commit, tested below)", () => {
    const tested = new Set(cases.map(([reason]) => reason));
    assert.deepEqual(
      VOUCHER_REFUSALS.filter((reason) => !tested.has(reason)),
      ["unavailable"],
    );
    assert.equal(reasonOf(undefined, claim(100n), facts()), "accepted");
  });
});

// ── the ledger over a real store, with real signatures ───────────────────────────

const dirs: string[] = [];
after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** The chain's view of channels, as the channel book would give it. */
class Channels {
  readonly views = new Map<Hex, PayeeChannelView>();
  lookups = 0;
  open(key: ChannelKey, deposit: bigint): Hex {
    const channelId = channelIdOf(key);
    this.views.set(channelId, { deposit, paid: 0n, closesAt: 0n });
    return channelId;
  }
  async channel(channelId: Hex): Promise<PayeeChannelView | undefined> {
    this.lookups++;
    return this.views.get(channelId);
  }
}

function ledgerIn(dir = mkdtempSync(join(tmpdir(), "cell-payee-"))) {
  dirs.push(dir);
  const store = openStore(dir);
  const channels = new Channels();
  const ledger = new PayeeLedger({
    store,
    channels,
    payee: PAYEE,
    chainId: CHAIN_ID,
    paymentChannels: PAYMENT_CHANNELS,
  });
  return { dir, store, channels, ledger };
}

function earn(store: Store, jobs: number[], amount = 100n, signer: Address = buyer.address): void {
  store.transaction(() => {
    for (const n of jobs) store.payeeLedger.addEarning({ jobId: jobId(n), signer, amount });
  });
}

async function voucher(
  key: ChannelKey,
  cumulativeAmount: bigint,
  jobs: number[],
  signer = buyer,
): Promise<VoucherBatch["vouchers"][number]> {
  const signature = await signVoucher(signer, CHAIN_ID, PAYMENT_CHANNELS, {
    channelId: channelIdOf(key),
    cumulativeAmount,
  });
  return {
    key: { ...key, nonce: key.nonce.toString() },
    cumulativeAmount: cumulativeAmount.toString(),
    signature,
    jobs: jobs.map(jobId),
  };
}

const batch = (...vouchers: VoucherBatch["vouchers"]): VoucherBatch => ({ type: "vouchers", vouchers });
const outcome = (result: { status: string; reason?: string }) =>
  result.status === "accepted" ? "accepted" : result.reason;

describe("payee ledger", () => {
  it("accepts a voucher for jobs it ran, stores it, and the jobs no longer count as unpaid", async () => {
    const { dir, store, channels, ledger } = ledgerIn();
    const key = keyOf(7n);
    const channelId = channels.open(key, 1_000n);
    earn(store, [1, 2, 3]);
    assert.equal(ledger.unpaid(buyer.address), 300n);
    const { results } = await ledger.receive(batch(await voucher(key, 200n, [1, 2])));
    assert.deepEqual(results, [{ status: "accepted", channelId, cumulativeAmount: "200" }]);
    assert.equal(ledger.unpaid(buyer.address), 100n);
    store.close();

    const reopened = openStore(dir);
    try {
      const held = reopened.payeeLedger.voucher(channelId);
      assert.equal(held?.cumulativeAmount, 200n);
      assert.equal(reopened.payeeLedger.earning(jobId(1))?.paidBy, channelId);
      assert.equal(reopened.payeeLedger.earning(jobId(3))?.paidBy, null);
      assert.equal(reopened.payeeLedger.unpaid(buyer.address), 100n);
    } finally {
      reopened.close();
    }
  });

  it("refuses forged, replayed, lower, over-deposit and over-owed vouchers with their reasons", async () => {
    const { store, channels, ledger } = ledgerIn();
    const key = keyOf(8n);
    channels.open(key, 250n);
    earn(store, [1, 2, 3, 4]);
    const first = await voucher(key, 100n, [1]);
    assert.equal(outcome((await ledger.receive(batch(first))).results[0]!), "accepted");
    const { results } = await ledger.receive(
      batch(
        await voucher(key, 200n, [2], stranger), // forged: not the channel's signer
        first, // replayed
        await voucher(key, 50n, [2]), // lower
        await voucher(key, 300n, [2, 3, 4]), // above the deposit of 250
        await voucher(key, 250n, [2]), // 150 more for a job that earned 100
        await voucher(key, 200n, [1]), // a job already paid
        await voucher(keyOf(9n), 100n, [2]), // no such channel
        await voucher(keyOf(8n, OTHER_PAYEE), 100n, [2]), // another payee's channel
      ),
    );
    assert.deepEqual(results.map(outcome), [
      "bad_signature",
      "duplicate",
      "not_increasing",
      "over_deposit",
      "over_owed",
      "unknown_job",
      "unknown_channel",
      "wrong_payee",
    ]);
    assert.equal(ledger.latest(channelIdOf(key))?.cumulativeAmount, 100n, "nothing refused was stored");
  });

  it("never looks up the channel of a voucher its signer did not sign", async () => {
    const { channels, ledger } = ledgerIn();
    const { results } = await ledger.receive(batch(await voucher(keyOf(13n), 100n, [1], stranger)));
    assert.equal(outcome(results[0]!), "bad_signature");
    assert.equal(channels.lookups, 0);
  });

  it("decides a batch in order: a later voucher of a channel builds on an earlier one", async () => {
    const { store, channels, ledger } = ledgerIn();
    const key = keyOf(10n);
    const channelId = channels.open(key, 10_000n);
    earn(store, [1, 2]);
    const { results } = await ledger.receive(
      batch(await voucher(key, 100n, [1]), await voucher(key, 200n, [2]), await voucher(key, 300n, [1])),
    );
    assert.deepEqual(results.map(outcome), ["accepted", "accepted", "unknown_job"]);
    assert.equal(ledger.latest(channelId)?.cumulativeAmount, 200n);
    assert.deepEqual(
      ledger.unsettled(10).map((held) => held.channelId),
      [channelId],
    );
    ledger.recordPaid(channelId, 200n);
    assert.equal(ledger.paidOnChain(channelId), 200n);
    assert.deepEqual(ledger.unsettled(10), [], "a voucher the chain paid is settled");
    assert.deepEqual(ledger.channels(), [key]);
  });

  it("decides batches received at once on each other's vouchers, and commits them together", async () => {
    const { dir, store, channels, ledger } = ledgerIn();
    const key = keyOf(12n);
    const channelId = channels.open(key, 10_000n);
    earn(store, [1, 2, 3]);
    const first = await voucher(key, 100n, [1]);
    const [a, b, c] = await Promise.all([
      ledger.receive(batch(first)),
      ledger.receive(batch(first, await voucher(key, 200n, [2]))),
      ledger.receive(batch(await voucher(key, 250n, [1, 3]))),
    ]);
    assert.deepEqual(
      [...a.results, ...b.results, ...c.results].map(outcome),
      ["accepted", "duplicate", "accepted", "unknown_job"],
      "a replay and a second payment of a job are refused while the first is still being committed",
    );
    store.close();
    const reopened = openStore(dir);
    try {
      assert.equal(reopened.payeeLedger.voucher(channelId)?.cumulativeAmount, 200n);
      assert.equal(reopened.payeeLedger.unpaid(buyer.address), 100n);
    } finally {
      reopened.close();
    }
  });

  it("hashes vouchers and channel ids as the contract does", async () => {
    const key = keyOf(2n ** 63n + 5n);
    const digest = voucherDigestIn(cellDomain(CHAIN_ID, PAYMENT_CHANNELS), {
      channelId: channelIdOf(key),
      cumulativeAmount: 12_345n,
    });
    assert.equal(
      digest,
      voucherDigest(CHAIN_ID, PAYMENT_CHANNELS, { channelId: channelIdOf(key), cumulativeAmount: 12_345n }),
    );
    const { channels, ledger, store } = ledgerIn();
    channels.open(key, 1_000n);
    earn(store, [1]);
    // Mixed-case addresses on the wire name the same channel.
    const signed = await voucher(key, 100n, [1]);
    const { results } = await ledger.receive(
      batch({
        ...signed,
        key: {
          ...signed.key,
          payee: PAYEE.toLowerCase() as Address,
          buyer: buyer.address.toUpperCase().replace("0X", "0x") as Address,
        },
      }),
    );
    assert.deepEqual(results, [{ status: "accepted", channelId: channelIdOf(key), cumulativeAmount: "100" }]);
  });

  it("answers `unavailable`, and holds nothing, when the store cannot take the voucher", async () => {
    const { dir, store, channels, ledger } = ledgerIn();
    const key = keyOf(11n);
    const channelId = channels.open(key, 1_000n);
    earn(store, [1]);
    // Another connection makes every voucher write fail, as a full disk would.
    const saboteur = new DatabaseSync(join(dir, DATABASE_FILE));
    saboteur.exec(
      "CREATE TRIGGER no_room BEFORE INSERT ON payee_vouchers BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    );
    saboteur.close();
    const { results } = await ledger.receive(batch(await voucher(key, 100n, [1])));
    assert.equal(outcome(results[0]!), "unavailable");
    assert.equal(ledger.latest(channelId), undefined);
    assert.equal(ledger.unpaid(buyer.address), 100n, "the job is still owed");
  });
});

describe("payee ledger bounds", () => {
  it("keeps at most PAYEE_EARNINGS_MAX earnings: paid ones leave first, then unpaid ones past the write-off age", () => {
    const dir = mkdtempSync(join(tmpdir(), "cell-payee-bound-"));
    dirs.push(dir);
    let now = 1_800_000_000_000;
    const store = openStore(dir, { now: () => now });
    try {
      const repo = store.payeeLedger;
      const channelId = channelIdOf(keyOf(1n));
      store.transaction(() => {
        for (let n = 1; n <= 5; n++) repo.addEarning({ jobId: jobId(n), signer: buyer.address, amount: 1n });
        repo.markPaid([1, 2, 3, 4, 5].map(jobId), channelId, buyer.address);
        for (let n = 6; n <= PAYEE_EARNINGS_MAX; n++) {
          now += 1;
          repo.addEarning({ jobId: jobId(n), signer: buyer.address, amount: 1n });
        }
      });
      assert.equal(repo.unpaid(buyer.address), BigInt(PAYEE_EARNINGS_MAX - 5));
      now += EARNING_WRITE_OFF_MS + 1;
      store.transaction(() => {
        for (let n = 1; n <= 7; n++)
          repo.addEarning({ jobId: jobId(PAYEE_EARNINGS_MAX + n), signer: buyer.address, amount: 1n });
        repo.trimEarnings();
      });
      assert.equal(repo.earning(jobId(1)), undefined, "paid rows went first");
      assert.equal(repo.earning(jobId(6)), undefined, "then the oldest unpaid past the write-off age");
      assert.equal(repo.earning(jobId(7)), undefined);
      assert.ok(repo.earning(jobId(8)));
      assert.ok(repo.earning(jobId(PAYEE_EARNINGS_MAX + 7)));
      assert.equal(repo.unpaid(buyer.address), BigInt(PAYEE_EARNINGS_MAX), "every row left is unpaid");
    } finally {
      store.close();
    }
  });
});
