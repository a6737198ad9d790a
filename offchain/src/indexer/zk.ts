// The zk part of the indexer's pure core: ZkChannels logs (docs/zk.md, "Contract") become zk
// channel, channel event, proven batch and payout rows. A batch's transfers are decoded from its
// ZkBatchSettled event (the data-availability payload), so no transaction is read for them.
import { getAddress } from "viem";
import type { Address } from "viem";
import { unpackTransfers } from "../zk/encoding.ts";
import type { ChainLog, LogPlace } from "./core.ts";

export type ZkChannelStatus = "open" | "closing" | "closed" | "refunded";

/** A zk channel's balance as the index follows it: the contract's deposits and payouts, the tree's paid amount. */
export interface ZkChannelBalance {
  deposited: bigint;
  /** What payouts (withdraw, settleBySignature) sent to the payee. */
  withdrawn: bigint;
  /** What the proven batches say the channel paid (its leaf's `paid` in the tree). */
  paid: bigint;
  closesAt?: bigint;
  status: ZkChannelStatus;
}

export interface ZkChannelRow extends LogPlace {
  leaf: number;
  buyer: Address;
  payee: Address;
  signer: Address;
  ax: bigint;
  ay: bigint;
}

export interface ZkChannelEventRow extends LogPlace, ZkChannelBalance {
  /** 0 for the channel's own event; transfer index + 1 for a proven batch's payment. */
  position: number;
  leaf: number;
  kind: string;
  amount?: bigint;
}

export interface ZkTransferRow {
  leaf: number;
  cumulative: bigint;
}

export interface ZkBatchRow extends LogPlace {
  batch: bigint;
  submitter: Address;
  oldRoot: bigint;
  newRoot: bigint;
  /** Queue operations [queueFrom, queueTo) the proof consumed. */
  queueFrom: bigint;
  queueTo: bigint;
  /** The published transfers, unpacked: each sets its leaf's paid amount to `cumulative`. */
  transfers: ZkTransferRow[];
}

export const ZK_PAYOUT_KINDS = ["withdrawn", "signature", "refund"] as const;
export type ZkPayoutKind = (typeof ZK_PAYOUT_KINDS)[number];

export interface ZkPayoutRow extends LogPlace {
  leaf: number;
  kind: ZkPayoutKind;
  /** The payee (withdrawn, signature) or the buyer (refund). */
  to: Address;
  amount: bigint;
  /** The channel's withdrawn total after the payout (absent for a refund). */
  cumulative?: bigint;
}

export interface ZkRows {
  zkChannels: ZkChannelRow[];
  zkChannelEvents: ZkChannelEventRow[];
  zkBatches: ZkBatchRow[];
  zkPayouts: ZkPayoutRow[];
}

export function emptyZkRows(): ZkRows {
  return { zkChannels: [], zkChannelEvents: [], zkBatches: [], zkPayouts: [] };
}

/** The leaves whose earlier balance the zk logs need. */
export function zkLeavesOf(logs: readonly ChainLog[]): number[] {
  const leaves = new Set<number>();
  for (const log of logs) {
    if (log.source !== "zk") continue;
    if (typeof log.args.leaf === "number") leaves.add(log.args.leaf);
    if (log.eventName === "ZkBatchSettled")
      for (const transfer of transfersOf(log)) leaves.add(transfer.leaf);
  }
  return [...leaves];
}

const NO_ZK_CHANNEL: ZkChannelBalance = { deposited: 0n, withdrawn: 0n, paid: 0n, status: "open" };

/** Applies one ZkChannels log to `channels` and adds its rows. */
export function zkLog(
  channels: Map<number, ZkChannelBalance>,
  log: ChainLog,
  place: LogPlace,
  rows: ZkRows,
): void {
  if (log.eventName === "ZkBatchSettled") return batchLog(channels, log, place, rows);
  const args = log.args;
  if (typeof args.leaf !== "number") return;
  const leaf = args.leaf;
  if (log.eventName === "ZkChannelOpened")
    rows.zkChannels.push({
      ...place,
      leaf,
      buyer: getAddress(args.buyer as string),
      payee: getAddress(args.payee as string),
      signer: getAddress(args.signer as string),
      ax: args.ax as bigint,
      ay: args.ay as bigint,
    });
  const change = zkChange(log, channels.get(leaf) ?? NO_ZK_CHANNEL);
  if (!change) return;
  channels.set(leaf, change.after);
  rows.zkChannelEvents.push({
    ...place,
    position: 0,
    leaf,
    kind: change.kind,
    ...change.after,
    ...(change.amount === undefined ? {} : { amount: change.amount }),
  });
  if (change.payout) rows.zkPayouts.push({ ...place, leaf, ...change.payout });
}

interface ZkChange {
  after: ZkChannelBalance;
  kind: string;
  amount?: bigint;
  payout?: Omit<ZkPayoutRow, keyof LogPlace | "leaf">;
}

function zkChange(log: ChainLog, before: ZkChannelBalance): ZkChange | undefined {
  const args = log.args;
  const amount = args.amount as bigint;
  switch (log.eventName) {
    case "ZkChannelOpened":
      return { kind: "opened", amount, after: { ...NO_ZK_CHANNEL, deposited: amount } };
    case "ZkToppedUp":
      return { kind: "topped_up", amount, after: { ...before, deposited: args.deposited as bigint } };
    case "ZkCloseStarted":
      return {
        kind: "close_started",
        after: { ...before, status: "closing", closesAt: args.closesAt as bigint },
      };
    case "ZkCloseFinalized":
      // The CLOSE is queued: the channel can be paid no more.
      return { kind: "closed", after: { ...before, status: "closed" } };
    case "ZkWithdrawn":
      return payoutChange(before, "withdrawn", getAddress(args.payee as string), amount, args.paid as bigint);
    case "ZkSettledBySignature":
      return payoutChange(
        before,
        "signature",
        getAddress(args.payee as string),
        amount,
        args.cumulative as bigint,
      );
    case "ZkRefunded":
      return {
        kind: "refunded",
        amount,
        after: { ...before, status: "refunded" },
        payout: { kind: "refund", to: getAddress(args.buyer as string), amount },
      };
    default:
      return undefined;
  }
}

function payoutChange(
  before: ZkChannelBalance,
  kind: "withdrawn" | "signature",
  to: Address,
  amount: bigint,
  withdrawn: bigint,
): ZkChange {
  return {
    kind: kind === "withdrawn" ? "withdrawn" : "settled_by_signature",
    amount,
    after: { ...before, withdrawn },
    payout: { kind, to, amount, cumulative: withdrawn },
  };
}

/** The batch row, and a "proven" event for each leaf its transfers paid. */
function batchLog(
  channels: Map<number, ZkChannelBalance>,
  log: ChainLog,
  place: LogPlace,
  rows: ZkRows,
): void {
  const args = log.args;
  const transfers = transfersOf(log);
  rows.zkBatches.push({
    ...place,
    batch: args.batch as bigint,
    submitter: getAddress(args.submitter as string),
    oldRoot: args.oldRoot as bigint,
    newRoot: args.newRoot as bigint,
    queueFrom: args.queueFrom as bigint,
    queueTo: args.queueTo as bigint,
    transfers,
  });
  transfers.forEach((transfer, i) => {
    const before = channels.get(transfer.leaf) ?? NO_ZK_CHANNEL;
    const after = { ...before, paid: transfer.cumulative };
    channels.set(transfer.leaf, after);
    rows.zkChannelEvents.push({
      ...place,
      position: i + 1,
      leaf: transfer.leaf,
      kind: "proven",
      amount: transfer.cumulative - before.paid,
      ...after,
    });
  });
}

function transfersOf(log: ChainLog): ZkTransferRow[] {
  const packed = log.args.transfers;
  return Array.isArray(packed) ? unpackTransfers(packed as bigint[]) : [];
}
