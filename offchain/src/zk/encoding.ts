import type { Address } from "viem";
import { LEAF_INDEX_BITS, assertAmount } from "./field.ts";
import { hash2, hash5 } from "./poseidon.ts";

export const QueueKind = { open: 1, topUp: 2, close: 3 } as const;
export type QueueKindName = keyof typeof QueueKind;

/** One queued operation, as ZkChannels queued it (docs/zk.md, "Queue"). */
export interface QueueOp {
  kind: QueueKindName;
  leaf: number;
  /** OPEN: the first deposit; TOPUP: the amount added; CLOSE: 0. */
  amount: bigint;
  /** OPEN only; zero for TOPUP and CLOSE. */
  ax: bigint;
  ay: bigint;
  payee: Address | null;
}

/** A payment in a batch: leaf `leaf`'s cumulative paid amount becomes `cumulative`. */
export interface Transfer {
  leaf: number;
  cumulative: bigint;
}

const TRANSFER_BITS = 126n;

export function packQueueOp(op: QueueOp): bigint {
  assertAmount(op.amount, "queued amount");
  return BigInt(QueueKind[op.kind]) + (BigInt(op.leaf) << 8n) + (op.amount << 40n);
}

/** q_{n+1} from q_n and the operation. */
export function nextQueueHash(previous: bigint, op: QueueOp): bigint {
  const packed = packQueueOp(op);
  if (op.kind !== "open") return hash2(previous, packed);
  if (op.payee === null) throw new Error("an OPEN operation names its payee");
  return hash5(previous, packed, op.ax, op.ay, BigInt(op.payee));
}

export function packTransfer(transfer: Transfer | null): bigint {
  if (transfer === null) return 0n;
  if (transfer.leaf < 0 || transfer.leaf >= 2 ** LEAF_INDEX_BITS)
    throw new RangeError(`leaf index ${transfer.leaf} does not fit ${LEAF_INDEX_BITS} bits`);
  assertAmount(transfer.cumulative, "cumulative amount");
  if (transfer.cumulative === 0n) throw new RangeError("a transfer pays a positive cumulative amount");
  return BigInt(transfer.leaf) + (transfer.cumulative << BigInt(LEAF_INDEX_BITS));
}

/** The batch's published transfers: two per field element, `batchSize` slots, unused slots 0. */
export function packTransfers(transfers: readonly Transfer[], batchSize: number): bigint[] {
  if (transfers.length > batchSize)
    throw new RangeError(`${transfers.length} transfers exceed the batch size ${batchSize}`);
  const slots = Array.from({ length: batchSize }, (_, j) => packTransfer(transfers[j] ?? null));
  const pairs: bigint[] = [];
  for (let k = 0; k < Math.ceil(batchSize / 2); k++)
    pairs.push(slots[2 * k]! + ((slots[2 * k + 1] ?? 0n) << TRANSFER_BITS));
  return pairs;
}

export function unpackTransfers(pairs: readonly bigint[]): Transfer[] {
  const mask = (1n << TRANSFER_BITS) - 1n;
  const out: Transfer[] = [];
  for (const pair of pairs)
    for (const slot of [pair & mask, pair >> TRANSFER_BITS]) {
      if (slot === 0n) continue;
      const leaf = Number(slot & ((1n << BigInt(LEAF_INDEX_BITS)) - 1n));
      out.push({ leaf, cumulative: slot >> BigInt(LEAF_INDEX_BITS) });
    }
  return out;
}
