import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { describe, it } from "node:test";
import { keccak256, toHex } from "viem";
import type { Address, Hex } from "viem";
import { migrate } from "../../offchain/src/store/index.ts";
import { JobsRepository } from "../../offchain/src/store/jobs.ts";
import { ReceiptsRepository } from "../../offchain/src/store/receipts.ts";
import { SettlementsRepository } from "../../offchain/src/store/settlements.ts";
import type { NewEpoch } from "../../offchain/src/store/settlements.ts";

const EXECUTOR: Address = "0x00000000000000000000000000000000000000e1";
const OTHER: Address = "0x00000000000000000000000000000000000000e2";
const BOUNDS = { txs: 3, epochs: 2, members: 5, receiptsPerEpoch: 3 };

function setup() {
  const db = new DatabaseSync(":memory:");
  migrate(db);
  const clock = { now: 1_000 };
  const now = () => clock.now++;
  return {
    db,
    clock,
    settlements: new SettlementsRepository(db, now, BOUNDS),
    jobs: new JobsRepository(db, now),
    receipts: new ReceiptsRepository(db, now),
  };
}

function jobId(label: string): Hex {
  return keccak256(toHex(label));
}

function epochWith(epoch: number, jobs: string[], lastReceiptId = 0): NewEpoch {
  return {
    epoch,
    root: jobs.length > 0 ? jobId(`root-${epoch}`) : null,
    lastReceiptId,
    vouchers: [],
    members: jobs.map((job) => ({ jobId: jobId(job), executor: EXECUTOR, receipt: { jobId: jobId(job) } })),
  };
}

function journal(settlements: SettlementsRepository, purpose: string, nonce: number) {
  return settlements.journalTx({
    hash: keccak256(toHex(purpose)),
    purpose,
    epoch: null,
    nonce,
    raw: "0x02",
    maxFeePerGas: 10n,
    maxPriorityFeePerGas: 1n,
    sentAt: nonce,
  });
}

describe("settlements repository", () => {
  it("keeps at most `txs` journalled transactions, deleting the oldest final ones and never a pending one", () => {
    const { settlements } = setup();
    const pending = journal(settlements, "settle:1", 0);
    for (const [i, purpose] of ["withdraw:1", "withdraw:2", "withdraw:3", "withdraw:4"].entries()) {
      journal(settlements, purpose, i + 1);
      settlements.setTxState(keccak256(toHex(purpose)), "mined", i);
    }
    const kept = ["settle:1", "withdraw:1", "withdraw:2", "withdraw:3", "withdraw:4"].filter(
      (purpose) => settlements.txsOf(purpose).length > 0,
    );
    assert.deepEqual(kept, ["settle:1", "withdraw:3", "withdraw:4"]);
    assert.deepEqual(
      settlements.pendingTxs().map((tx) => tx.hash),
      [pending.hash],
    );
  });

  it("keeps at most `epochs` epochs: the oldest final one goes with its membership; pending ones stay", () => {
    const { settlements } = setup();
    settlements.recordEpoch(epochWith(1, ["a"]));
    settlements.markEpochSettled(1, { txHash: "0x01", total: 5n, paidCount: 1 });
    settlements.recordEpoch(epochWith(2, ["b"]));
    settlements.markEpochSettled(2, { txHash: "0x02", total: 6n, paidCount: 1 });
    settlements.recordEpoch(epochWith(3, ["c"]));
    assert.equal(settlements.epoch(1), undefined);
    assert.equal(settlements.membership(jobId("a"), EXECUTOR), undefined);
    assert.equal(settlements.membership(jobId("b"), EXECUTOR)?.epoch, 2);
    settlements.recordEpoch(epochWith(4, []));
    settlements.recordEpoch(epochWith(5, []));
    assert.deepEqual(
      settlements.epochs().map((row) => [row.epoch, row.state]),
      [
        [5, "pending"],
        [4, "pending"],
        [3, "pending"],
      ],
      "pending epochs are never evicted",
    );
  });

  it("keeps at most `members` membership rows by evicting the oldest final epochs", () => {
    const { settlements } = setup();
    settlements.recordEpoch(epochWith(1, ["a", "b", "c"]));
    settlements.markEpochSettled(1, { txHash: "0x01", total: 0n, paidCount: 0 });
    settlements.recordEpoch(epochWith(2, ["d", "e", "f"]));
    assert.equal(settlements.epoch(1), undefined);
    assert.deepEqual(
      settlements.epochReceipts(2),
      ["d", "e", "f"].map((job) => ({ jobId: jobId(job) })),
    );
  });

  it("refuses an epoch with more receipts than an epoch anchors, and an epoch recorded twice", () => {
    const { settlements } = setup();
    assert.throws(() => settlements.recordEpoch(epochWith(1, ["a", "b", "c", "d"])), /4 receipts, at most 3/);
    settlements.recordEpoch(epochWith(1, ["a"]));
    assert.throws(() => settlements.recordEpoch(epochWith(1, ["b"])), /UNIQUE|PRIMARY KEY|constraint/i);
  });

  it("lists this executor's receipts after the last anchored one, and again those of a failed epoch", () => {
    const { settlements, jobs, receipts } = setup();
    const ids = ["r1", "r2", "r3", "r4"].map((label) => {
      jobs.insert({ jobId: jobId(label), role: "executor", spec: {} });
      return receipts.put({ jobId: jobId(label), executor: EXECUTOR, message: { label }, signature: "0x11" })
        .row.id;
    });
    jobs.insert({ jobId: jobId("other"), role: "executor", spec: {} });
    receipts.put({ jobId: jobId("other"), executor: OTHER, message: { label: "other" }, signature: "0x11" });
    const labels = () =>
      settlements
        .unanchoredReceipts(EXECUTOR, Number.MAX_SAFE_INTEGER)
        .map((r) => (r.message as { label: string }).label);
    assert.deepEqual(labels(), ["r1", "r2", "r3"], "at most receiptsPerEpoch, only this executor's");
    settlements.recordEpoch(epochWith(7, ["r1", "r2"], ids[1]));
    assert.deepEqual(labels(), ["r3", "r4"]);
    settlements.markEpochFailed(7, "reverted");
    assert.deepEqual(labels(), ["r1", "r2", "r3"], "a failed epoch's receipts are anchored again");
    assert.equal(settlements.membership(jobId("r1"), EXECUTOR), undefined);
  });
});
