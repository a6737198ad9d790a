import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import type { Address, Hex } from "viem";
import pino from "pino";
import { applyOps, planZkBatch } from "../../offchain/src/settlement/zk-plan.ts";
import { ZkSettler } from "../../offchain/src/settlement/zk-settler.ts";
import type { HeldZkVoucher, ZkSettlerPorts, ZkSnapshot } from "../../offchain/src/settlement/zk-settler.ts";
import type { TxCall } from "../../offchain/src/settlement/tx-sender.ts";
import { ZkState } from "../../offchain/src/zk/index.ts";
import type { QueueOp, ZkLeaf } from "../../offchain/src/zk/index.ts";

const PAYEE: Address = "0x00000000000000000000000000000000000000aa";
const SIGNATURE = { r8x: 1n, r8y: 2n, s: 3n };

const open = (leaf: number, amount: bigint): QueueOp => ({
  kind: "open",
  leaf,
  amount,
  ax: 5n,
  ay: 6n,
  payee: PAYEE,
});
const voucher = (leaf: number, cumulativeAmount: bigint, receivedAt = leaf): HeldZkVoucher => ({
  channelId: `0x${leaf.toString(16).padStart(64, "0")}` as Hex,
  leaf,
  cumulativeAmount,
  signature: SIGNATURE,
  receivedAt,
  eip712Signature: "0x01",
});

describe("zk batch plan", () => {
  it("consumes the queue in order, at most its slots, and pays leaves the ops open", () => {
    const plan = planZkBatch({
      leaves: new Map(),
      pending: [open(0, 100n), open(1, 50n), open(2, 10n)],
      vouchers: [voucher(0, 40n), voucher(1, 60n), voucher(2, 5n)],
      queueSlots: 2,
      batchSize: 4,
    });
    assert.deepEqual(
      plan.ops.map((op) => op.leaf),
      [0, 1],
    );
    assert.deepEqual(
      plan.transfers.map((t) => t.leaf),
      [0],
    );
    assert.deepEqual(
      plan.waiting.map((w) => [w.leaf, w.reason.split(" ")[0]]),
      [
        [1, "above"],
        [2, "its"],
      ],
    );
  });

  it("takes the oldest vouchers first, up to the batch size, and skips what the tree already pays", () => {
    const leaves = new Map<number, ZkLeaf>(
      [0, 1, 2, 3].map((i) => [i, { ax: 1n, ay: 2n, payee: PAYEE, deposit: 100n, paid: 10n }]),
    );
    const plan = planZkBatch({
      leaves,
      pending: [],
      vouchers: [voucher(0, 20n, 30), voucher(1, 20n, 10), voucher(2, 10n, 5), voucher(3, 20n, 20)],
      queueSlots: 2,
      batchSize: 2,
    });
    assert.deepEqual(
      plan.transfers.map((t) => t.leaf),
      [1, 3],
    );
    assert.equal(plan.waiting[0]!.leaf, 2);
  });

  it("a top-up raises and a close freezes the deposit", () => {
    const leaves = new Map<number, ZkLeaf>([[0, { ax: 1n, ay: 2n, payee: PAYEE, deposit: 100n, paid: 30n }]]);
    const topped = applyOps(leaves, [{ kind: "topUp", leaf: 0, amount: 5n, ax: 0n, ay: 0n, payee: null }]);
    assert.equal(topped.get(0)!.deposit, 105n);
    const closed = applyOps(topped, [{ kind: "close", leaf: 0, amount: 0n, ax: 0n, ay: 0n, payee: null }]);
    assert.equal(closed.get(0)!.deposit, 30n);
    assert.throws(
      () => applyOps(leaves, [{ kind: "close", leaf: 9, amount: 0n, ax: 0n, ay: 0n, payee: null }]),
      /never opened/,
    );
  });
});

describe("zk settler", () => {
  function snapshotWith(paid: bigint): ZkSnapshot {
    const state = new ZkState(4);
    state.applyQueueOp(open(0, 100n));
    if (paid > 0n) state.applyTransfer(0n, { leaf: 0, cumulative: paid, signature: SIGNATURE }, true);
    return { state, pending: [] };
  }

  function harness(prove: ZkSettlerPorts["prove"]) {
    const sent: { purpose: string; call: TxCall }[] = [];
    const recorded: [Hex, bigint][] = [];
    let paid = 0n;
    const ports: ZkSettlerPorts = {
      snapshot: async () => snapshotWith(paid),
      prove,
      send: async (purpose, call) => {
        sent.push({ purpose, call });
        if (purpose.startsWith("zk-settle")) paid = 40n;
        return { state: "mined", hash: `0x${"ab".repeat(32)}`, blockNumber: 1n, attempts: 1 } as never;
      },
      settleCall: () => ({ to: PAYEE, data: "0x5e77" }),
      withdrawCall: () => ({ to: PAYEE, data: "0x3d" }),
      settleBySignatureCall: () => ({ to: PAYEE, data: "0x5b" }),
      withdrawn: async () => 0n,
    };
    const vouchers = [voucher(0, 40n)];
    const settler = new ZkSettler({
      ports,
      vault: {
        zkVouchers: () => vouchers.filter((v) => v.cumulativeAmount > paid),
        recordPaid: (id, p) => void recorded.push([id, p]),
      },
      payee: PAYEE,
      queueSlots: 2,
      batchSize: 2,
      maxBatches: 4,
      log: pino({ level: "silent" }),
    });
    return { settler, sent, recorded };
  }

  it("proves, settles, records what was paid and withdraws what the new root pays", async () => {
    const { settler, sent, recorded } = harness(async () => ({
      newRoot: 7n,
      transfers: [0n],
      proof: [],
      seconds: 1,
    }));
    const outcome = await settler.settleNow();
    assert.equal(outcome.state, "settled");
    assert.equal(outcome.batches.length, 1);
    assert.deepEqual(
      sent.map((s) => s.purpose),
      ["zk-settle:7", "zk-withdraw:0:40"],
    );
    assert.deepEqual(
      outcome.withdrawals.map((w) => w.amount),
      [40n],
    );
    assert.equal(recorded[0]![1], 40n);
  });

  it("falls back to the EIP-712 signatures when proving fails, and says why", async () => {
    const { settler, sent } = harness(async () => {
      throw new Error("witness: signature of leaf 0 does not verify");
    });
    const outcome = await settler.settleNow();
    assert.equal(outcome.state, "fallback");
    assert.match(outcome.detail!, /proving failed: witness: signature of leaf 0/);
    assert.deepEqual(
      sent.map((s) => s.purpose),
      ["zk-redeem:0:40"],
    );
    assert.equal(outcome.redeemed[0]!.cumulativeAmount, 40n);
  });
});
