import type { DatabaseSync, StatementSync } from "node:sqlite";
import { getAddress, type Hex } from "viem";
import { storedAmount } from "./payee-ledger.ts";
import type { ChannelKeyRow } from "./payee-ledger.ts";

/** Channels whose handed voucher a relayer keeps; beyond it settled rows go first, then the oldest. */
export const RELAY_VOUCHERS_MAX = 50_000;
/** Writes between two checks of the bound (the table may exceed it by this many). */
const TRIM_EVERY = 256;

/** The latest voucher a payee handed this node to settle for it. */
export interface RelayVoucherRow {
  channelId: Hex;
  key: ChannelKeyRow;
  cumulativeAmount: bigint;
  signature: Hex;
  paidOnChain: bigint;
  receivedAt: number;
}

type Row = Record<string, unknown>;

/**
 * Vouchers payees handed this node as their relayer, the highest per channel. Addresses are
 * stored lower case. Bound: RELAY_VOUCHERS_MAX rows, checked every TRIM_EVERY writes; past it settled
 * rows go first (least recently received first), then the least recently received.
 */
export class RelayVouchersRepository {
  readonly #statements: Record<string, StatementSync>;
  #sinceTrim = 0;

  constructor(db: DatabaseSync) {
    const prepare = (sql: string) => db.prepare(sql);
    this.#statements = {
      voucher: prepare("SELECT * FROM relay_vouchers WHERE channel_id = ?"),
      put: prepare(
        `INSERT INTO relay_vouchers (channel_id, buyer, signer, payee, nonce, cumulative, signature, paid_on_chain, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET
         cumulative = excluded.cumulative, signature = excluded.signature, received_at = excluded.received_at
         WHERE excluded.cumulative > relay_vouchers.cumulative`,
      ),
      setPaid: prepare(
        "UPDATE relay_vouchers SET paid_on_chain = ? WHERE channel_id = ? AND paid_on_chain < ?",
      ),
      unsettled: prepare(
        "SELECT * FROM relay_vouchers WHERE cumulative > paid_on_chain ORDER BY received_at LIMIT ?",
      ),
      count: prepare("SELECT COUNT(*) AS n FROM relay_vouchers"),
      trim: prepare(
        `DELETE FROM relay_vouchers WHERE channel_id IN (SELECT channel_id FROM relay_vouchers
         ORDER BY cumulative > paid_on_chain, received_at LIMIT ?)`,
      ),
    };
  }

  voucher(channelId: Hex): RelayVoucherRow | undefined {
    const row = this.#statements.voucher!.get(channelId.toLowerCase()) as Row | undefined;
    return row && voucherRow(row);
  }

  /** Keeps the voucher when it is above the one held for its channel (a lower one changes nothing). */
  put(voucher: Omit<RelayVoucherRow, "paidOnChain">): void {
    const { key } = voucher;
    this.#statements.put!.run(
      voucher.channelId.toLowerCase(),
      key.buyer.toLowerCase(),
      key.signer.toLowerCase(),
      key.payee.toLowerCase(),
      key.nonce.toString(),
      storedAmount(voucher.cumulativeAmount),
      voucher.signature,
      storedAmount(0n),
      voucher.receivedAt,
    );
    if (++this.#sinceTrim >= TRIM_EVERY) this.trim(RELAY_VOUCHERS_MAX);
  }

  /** Deletes rows beyond `max`: settled ones first, then the least recently received. */
  trim(max: number): void {
    this.#sinceTrim = 0;
    const { n } = this.#statements.count!.get() as { n: number };
    if (n > max) this.#statements.trim!.run(n - max);
  }

  /** Raises what the chain is known to have paid on a channel (never lowers it). */
  setPaidOnChain(channelId: Hex, paid: bigint): void {
    const stored = storedAmount(paid);
    this.#statements.setPaid!.run(stored, channelId.toLowerCase(), stored);
  }

  /** Vouchers above what the chain paid, least recently received first. */
  unsettled(limit: number): RelayVoucherRow[] {
    return (this.#statements.unsettled!.all(limit) as Row[]).map(voucherRow);
  }
}

function voucherRow(row: Row): RelayVoucherRow {
  return {
    channelId: row.channel_id as Hex,
    key: {
      buyer: getAddress(row.buyer as string),
      signer: getAddress(row.signer as string),
      payee: getAddress(row.payee as string),
      nonce: BigInt(row.nonce as string),
    },
    cumulativeAmount: BigInt(row.cumulative as string),
    signature: row.signature as Hex,
    paidOnChain: BigInt(row.paid_on_chain as string),
    receivedAt: row.received_at as number,
  };
}
