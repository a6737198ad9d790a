// Which queued operations and which held zk vouchers go into the next proof (docs/zk.md). Pure:
// the settler gathers the chain's state and the vault's vouchers, this decides.
import type { Hex } from "viem";
import type { QueueOp, ZkLeaf, ZkSignature } from "../zk/index.ts";

/** A held zk voucher as the plan needs it. */
export interface ZkVoucherCandidate {
  channelId: Hex;
  leaf: number;
  cumulativeAmount: bigint;
  signature: ZkSignature;
  receivedAt: number;
}

export interface ZkPlanInput {
  /** The tree's leaves as the chain's current root has them. */
  leaves: ReadonlyMap<number, ZkLeaf>;
  /** Queued operations not yet consumed by a proof, in queue order. */
  pending: readonly QueueOp[];
  vouchers: readonly ZkVoucherCandidate[];
  queueSlots: number;
  batchSize: number;
}

export interface ZkBatchPlan {
  ops: QueueOp[];
  transfers: ZkVoucherCandidate[];
  /** Vouchers left out and why (a leaf not in the tree yet, nothing new, above the deposit). */
  waiting: { channelId: Hex; leaf: number; reason: string }[];
}

/**
 * The next batch: the oldest `queueSlots` pending operations (a proof must consume the queue in
 * order), then up to `batchSize` vouchers, oldest first, that raise their leaf's paid amount
 * within its deposit once those operations are applied. One voucher per leaf: the vault holds
 * only the latest.
 */
export function planZkBatch(input: ZkPlanInput): ZkBatchPlan {
  const ops = input.pending.slice(0, input.queueSlots);
  const leaves = applyOps(input.leaves, ops);
  const transfers: ZkVoucherCandidate[] = [];
  const waiting: ZkBatchPlan["waiting"] = [];
  const byAge = [...input.vouchers].sort((a, b) => a.receivedAt - b.receivedAt);
  for (const voucher of byAge) {
    const reason = whyNot(leaves.get(voucher.leaf), voucher.cumulativeAmount);
    if (reason !== undefined) waiting.push({ channelId: voucher.channelId, leaf: voucher.leaf, reason });
    else if (transfers.length < input.batchSize && !transfers.some((t) => t.leaf === voucher.leaf))
      transfers.push(voucher);
  }
  return { ops, transfers, waiting };
}

function whyNot(leaf: ZkLeaf | undefined, cumulative: bigint): string | undefined {
  if (leaf === undefined) return "its channel is not in the tree yet (its OPEN is still queued)";
  if (cumulative <= leaf.paid) return `the tree already pays ${leaf.paid}`;
  if (cumulative > leaf.deposit) return `above the ${leaf.deposit} the tree holds for it`;
  return undefined;
}

/** The leaves after `ops`, as the circuit applies them (docs/zk.md, "Queue"). */
export function applyOps(leaves: ReadonlyMap<number, ZkLeaf>, ops: readonly QueueOp[]): Map<number, ZkLeaf> {
  const next = new Map(leaves);
  for (const op of ops) {
    const leaf = next.get(op.leaf);
    if (op.kind === "open") {
      if (op.payee === null) throw new Error(`queued OPEN of leaf ${op.leaf} has no payee`);
      next.set(op.leaf, { ax: op.ax, ay: op.ay, payee: op.payee, deposit: op.amount, paid: 0n });
    } else if (leaf === undefined) {
      throw new Error(`queued ${op.kind} names leaf ${op.leaf}, which was never opened`);
    } else if (op.kind === "topUp") {
      next.set(op.leaf, { ...leaf, deposit: leaf.deposit + op.amount });
    } else {
      next.set(op.leaf, { ...leaf, deposit: leaf.paid });
    }
  }
  return next;
}
