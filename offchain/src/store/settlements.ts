import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { Address, Hex } from "viem";
import {
  decodeJson,
  encodeJson,
  num,
  numOrNull,
  oneOf,
  requireAddress,
  requireHex,
  requireText,
  str,
  strOrNull,
  type JsonObject,
  type JsonValue,
  type SqlRow,
} from "./codec.ts";
import { jobIdOf } from "./job-key.ts";

/** pending: broadcast, not yet final; mined: final with `success`; reverted: final, failed; replaced: another attempt of its nonce won. */
export const TX_STATES = ["pending", "mined", "reverted", "replaced"] as const;
export type TxState = (typeof TX_STATES)[number];

/** One signed attempt of a transaction, journalled before it was broadcast. */
export interface JournalTx {
  hash: Hex;
  /** What it is for, e.g. `settle:1234`, `withdraw:…`, `redeem:0x…`; fee bumps share it. */
  purpose: string;
  epoch: number | null;
  nonce: number;
  raw: Hex;
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
  state: TxState;
  blockNumber: number | null;
  sentAt: number;
  updatedAt: number;
}

export type NewJournalTx = Omit<JournalTx, "state" | "blockNumber" | "updatedAt">;

/** pending: built and (about to be) sent; settled: mined; failed: reverted or given up. */
export const EPOCH_STATES = ["pending", "settled", "failed"] as const;
export type EpochState = (typeof EPOCH_STATES)[number];

/** A voucher an epoch settles, as stored (amounts as decimal strings in the row). */
export interface EpochVoucher {
  key: { buyer: Address; signer: Address; payee: Address; nonce: bigint };
  channelId: Hex;
  cumulativeAmount: bigint;
  signature: Hex;
}

export interface EpochRow {
  epoch: number;
  /** Merkle root of the receipts it anchors; null when it anchors none. */
  root: Hex | null;
  receiptCount: number;
  /** Highest receipts.id under the root (0 when none): the next epoch starts after it. */
  lastReceiptId: number;
  vouchers: EpochVoucher[];
  state: EpochState;
  txHash: Hex | null;
  /** What the batch paid in all (BatchSettled.total), once settled. */
  settledTotal: bigint | null;
  /** Vouchers of the batch that paid something, once settled. */
  paidCount: number | null;
  detail: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface NewEpoch {
  epoch: number;
  root: Hex | null;
  lastReceiptId: number;
  vouchers: readonly EpochVoucher[];
  /** Receipts under the root, in leaf order (index = position given to buildReceiptTree). */
  members: readonly { jobId: Hex; executor: Address; receipt: JsonObject }[];
}

/** A receipt of this node not yet under any epoch's root. */
export interface UnanchoredReceipt {
  id: number;
  jobId: Hex;
  message: JsonValue;
}

/** Journalled transactions kept; beyond it the final ones updated longest ago are deleted. */
export const SETTLEMENT_TXS_MAX = 10_000;
/** Epochs kept (an hour each: over five years); beyond it the oldest final epochs go, with their members. */
export const SETTLEMENT_EPOCHS_MAX = 50_000;
/** Receipts one epoch anchors at most; the rest wait for the next epoch. */
export const RECEIPTS_PER_EPOCH_MAX = 65_536;
/** Epoch membership rows kept; beyond it the oldest final epochs go (their proofs can no longer be built here). */
export const SETTLEMENT_MEMBERS_MAX = 2_000_000;

/** The repository's row bounds (the defaults above; tests use small ones). */
export interface SettlementBounds {
  txs: number;
  epochs: number;
  members: number;
  receiptsPerEpoch: number;
}

export const DEFAULT_SETTLEMENT_BOUNDS: SettlementBounds = {
  txs: SETTLEMENT_TXS_MAX,
  epochs: SETTLEMENT_EPOCHS_MAX,
  members: SETTLEMENT_MEMBERS_MAX,
  receiptsPerEpoch: RECEIPTS_PER_EPOCH_MAX,
};

const TX_COLUMNS =
  "hash, purpose, epoch, nonce, raw, max_fee_per_gas, max_priority_fee_per_gas, state, block_number, sent_at, updated_at";
const EPOCH_COLUMNS =
  "epoch, root, receipt_count, last_receipt_id, vouchers, voucher_count, state, tx_hash, settled_total, paid_count, detail, created_at, updated_at";

/**
 * The settler's durable state: the transaction journal, the epochs it settled and which receipt
 * is under which epoch's root. Bounds: SETTLEMENT_TXS_MAX, SETTLEMENT_EPOCHS_MAX and
 * SETTLEMENT_MEMBERS_MAX rows; on insert, the oldest final rows are deleted first (a pending
 * transaction or epoch is never deleted).
 */
export class SettlementsRepository {
  readonly #db: DatabaseSync;
  readonly #now: () => number;
  readonly #bounds: SettlementBounds;
  readonly #insertTx: StatementSync;
  readonly #txState: StatementSync;
  readonly #pendingTxs: StatementSync;
  readonly #txsOf: StatementSync;
  readonly #trimTxs: StatementSync;
  readonly #insertEpoch: StatementSync;
  readonly #insertMember: StatementSync;
  readonly #getEpoch: StatementSync;
  readonly #listEpochs: StatementSync;
  readonly #pendingEpochs: StatementSync;
  readonly #updateEpoch: StatementSync;
  readonly #lastReceiptId: StatementSync;
  readonly #unanchored: StatementSync;
  readonly #membership: StatementSync;
  readonly #members: StatementSync;
  readonly #countEpochs: StatementSync;
  readonly #countMembers: StatementSync;
  readonly #oldestFinalEpoch: StatementSync;
  readonly #deleteEpoch: StatementSync;
  readonly #deleteMembers: StatementSync;

  constructor(db: DatabaseSync, now: () => number, bounds: SettlementBounds = DEFAULT_SETTLEMENT_BOUNDS) {
    this.#db = db;
    this.#now = now;
    this.#bounds = bounds;
    this.#insertTx = db.prepare(
      `INSERT INTO settlement_txs (${TX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', NULL, ?, ?)`,
    );
    this.#txState = db.prepare(
      "UPDATE settlement_txs SET state = ?, block_number = ?, updated_at = ? WHERE hash = ?",
    );
    this.#pendingTxs = db.prepare(
      `SELECT ${TX_COLUMNS} FROM settlement_txs WHERE state = 'pending' ORDER BY nonce, sent_at`,
    );
    this.#txsOf = db.prepare(
      `SELECT ${TX_COLUMNS} FROM settlement_txs WHERE purpose = ? ORDER BY sent_at, hash`,
    );
    this.#trimTxs = db.prepare(
      `DELETE FROM settlement_txs WHERE hash IN (SELECT hash FROM settlement_txs WHERE state != 'pending'
       ORDER BY updated_at ASC LIMIT max(0, (SELECT COUNT(*) FROM settlement_txs) - ?))`,
    );
    this.#insertEpoch = db.prepare(
      `INSERT INTO settlement_epochs (${EPOCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL, NULL, ?, ?)`,
    );
    this.#insertMember = db.prepare(
      "INSERT INTO settlement_members (job_id, executor, epoch, leaf_index, receipt) VALUES (?, ?, ?, ?, ?)",
    );
    this.#getEpoch = db.prepare(`SELECT ${EPOCH_COLUMNS} FROM settlement_epochs WHERE epoch = ?`);
    this.#listEpochs = db.prepare(
      `SELECT ${EPOCH_COLUMNS} FROM settlement_epochs WHERE epoch < ? ORDER BY epoch DESC LIMIT ?`,
    );
    this.#pendingEpochs = db.prepare(
      `SELECT ${EPOCH_COLUMNS} FROM settlement_epochs WHERE state = 'pending' ORDER BY epoch`,
    );
    this.#updateEpoch = db.prepare(
      `UPDATE settlement_epochs SET state = ?, tx_hash = coalesce(?, tx_hash), settled_total = ?, paid_count = ?,
       detail = ?, updated_at = ? WHERE epoch = ?`,
    );
    this.#lastReceiptId = db.prepare(
      "SELECT coalesce(MAX(last_receipt_id), 0) AS id FROM settlement_epochs WHERE state != 'failed'",
    );
    this.#unanchored = db.prepare(
      `SELECT id, ${jobIdOf("receipts")}, message FROM receipts
       WHERE executor = ? AND id > ? AND stored_at < ? ORDER BY id ASC LIMIT ?`,
    );
    this.#membership = db.prepare(
      "SELECT epoch, leaf_index, receipt FROM settlement_members WHERE job_id = ? AND executor = ?",
    );
    this.#members = db.prepare("SELECT receipt FROM settlement_members WHERE epoch = ? ORDER BY leaf_index");
    this.#countEpochs = db.prepare("SELECT COUNT(*) AS n FROM settlement_epochs");
    this.#countMembers = db.prepare("SELECT COUNT(*) AS n FROM settlement_members");
    this.#oldestFinalEpoch = db.prepare(
      "SELECT epoch FROM settlement_epochs WHERE state != 'pending' ORDER BY epoch ASC LIMIT 1",
    );
    this.#deleteEpoch = db.prepare("DELETE FROM settlement_epochs WHERE epoch = ?");
    this.#deleteMembers = db.prepare("DELETE FROM settlement_members WHERE epoch = ?");
  }

  // ------------------------------------------------------------ transaction journal

  /** Journals a signed transaction (before it is broadcast). */
  journalTx(tx: NewJournalTx): JournalTx {
    const now = this.#now();
    this.#insertTx.run(
      requireHex(tx.hash, "settlements.journalTx: hash", 32),
      requireText(tx.purpose, "settlements.journalTx: purpose", 128),
      tx.epoch,
      tx.nonce,
      requireHex(tx.raw, "settlements.journalTx: raw", 256 * 1024),
      tx.maxFeePerGas.toString(),
      tx.maxPriorityFeePerGas.toString(),
      tx.sentAt,
      now,
    );
    this.#trimTxs.run(this.#bounds.txs);
    return { ...tx, state: "pending", blockNumber: null, updatedAt: now };
  }

  setTxState(hash: Hex, state: TxState, blockNumber: number | null = null): void {
    this.#txState.run(
      oneOf(state, TX_STATES, "settlements.setTxState: state"),
      blockNumber,
      this.#now(),
      hash,
    );
  }

  /** Attempts still pending, by nonce. */
  pendingTxs(): JournalTx[] {
    return (this.#pendingTxs.all() as SqlRow[]).map(toJournalTx);
  }

  /** Every attempt of one purpose, oldest first. */
  txsOf(purpose: string): JournalTx[] {
    return (this.#txsOf.all(purpose) as SqlRow[]).map(toJournalTx);
  }

  // ------------------------------------------------------------ epochs

  /**
   * Records an epoch about to be settled with its receipts' membership, in one transaction.
   * Throws when the epoch is already recorded: an epoch is settled by one transaction.
   */
  recordEpoch(epoch: NewEpoch): EpochRow {
    if (epoch.members.length > this.#bounds.receiptsPerEpoch)
      throw new Error(
        `settlements.recordEpoch: ${epoch.members.length} receipts, at most ${this.#bounds.receiptsPerEpoch}`,
      );
    const now = this.#now();
    this.#inTransaction(() => {
      this.#insertEpoch.run(
        epoch.epoch,
        epoch.root,
        epoch.members.length,
        epoch.lastReceiptId,
        encodeJson(epoch.vouchers, "settlements.recordEpoch: vouchers"),
        epoch.vouchers.length,
        now,
        now,
      );
      epoch.members.forEach((member, index) =>
        this.#insertMember.run(
          member.jobId,
          requireAddress(member.executor, "settlements.recordEpoch: executor"),
          epoch.epoch,
          index,
          encodeJson(member.receipt, "settlements.recordEpoch: receipt"),
        ),
      );
      this.#trimEpochs();
    });
    return this.epoch(epoch.epoch)!;
  }

  epoch(epoch: number): EpochRow | undefined {
    const row = this.#getEpoch.get(epoch) as SqlRow | undefined;
    return row && toEpochRow(row);
  }

  /** Epochs newest first, below `before` (paging), at most `limit`. */
  epochs(options: { before?: number; limit?: number } = {}): EpochRow[] {
    const limit = Math.min(Math.max(options.limit ?? 50, 1), 1000);
    return (this.#listEpochs.all(options.before ?? Number.MAX_SAFE_INTEGER, limit) as SqlRow[]).map(
      toEpochRow,
    );
  }

  /** Epochs recorded and not yet settled or failed (a crash may have left them in flight). */
  pendingEpochs(): EpochRow[] {
    return (this.#pendingEpochs.all() as SqlRow[]).map(toEpochRow);
  }

  markEpochSent(epoch: number, txHash: Hex): void {
    const row = this.#requireEpoch(epoch);
    this.#updateEpoch.run("pending", txHash, null, null, row.detail, this.#now(), epoch);
  }

  markEpochSettled(epoch: number, outcome: { txHash: Hex; total: bigint; paidCount: number }): void {
    this.#requireEpoch(epoch);
    this.#updateEpoch.run(
      "settled",
      outcome.txHash,
      outcome.total.toString(),
      outcome.paidCount,
      null,
      this.#now(),
      epoch,
    );
  }

  /** A failed epoch's receipts are anchored again by a later epoch (its membership is dropped). */
  markEpochFailed(epoch: number, detail: string): void {
    this.#requireEpoch(epoch);
    this.#inTransaction(() => {
      this.#updateEpoch.run("failed", null, null, null, detail.slice(0, 1024), this.#now(), epoch);
      this.#deleteMembers.run(epoch);
    });
  }

  // ------------------------------------------------------------ receipts and membership

  /**
   * This node's receipts (executor `executor`) stored before `storedBefore` and after the last
   * receipt an epoch anchored, oldest first, at most `limit`.
   */
  unanchoredReceipts(
    executor: Address,
    storedBefore: number,
    limit = Number.MAX_SAFE_INTEGER,
  ): UnanchoredReceipt[] {
    const after = num(this.#lastReceiptId.get() as SqlRow, "id");
    const rows = this.#unanchored.all(
      executor,
      after,
      storedBefore,
      Math.min(limit, this.#bounds.receiptsPerEpoch),
    );
    return (rows as SqlRow[]).map((row) => ({
      id: num(row, "id"),
      jobId: str(row, "job_id") as Hex,
      message: decodeJson(str(row, "message")),
    }));
  }

  /** Which epoch anchored the receipt of `executor` for `jobId`, and its leaf index. */
  membership(
    jobId: Hex,
    executor: Address,
  ): { epoch: number; leafIndex: number; receipt: JsonValue } | undefined {
    const row = this.#membership.get(jobId, executor) as SqlRow | undefined;
    if (!row) return undefined;
    return {
      epoch: num(row, "epoch"),
      leafIndex: num(row, "leaf_index"),
      receipt: decodeJson(str(row, "receipt")),
    };
  }

  /** The receipts under an epoch's root, in leaf order. */
  epochReceipts(epoch: number): JsonValue[] {
    return (this.#members.all(epoch) as SqlRow[]).map((row) => decodeJson(str(row, "receipt")));
  }

  #requireEpoch(epoch: number): EpochRow {
    const row = this.epoch(epoch);
    if (!row) throw new Error(`settlements: epoch ${epoch} is not recorded`);
    return row;
  }

  #trimEpochs(): void {
    const count = (statement: StatementSync) => num(statement.get() as SqlRow, "n");
    while (
      count(this.#countEpochs) > this.#bounds.epochs ||
      count(this.#countMembers) > this.#bounds.members
    ) {
      const oldest = this.#oldestFinalEpoch.get() as SqlRow | undefined;
      if (!oldest) return;
      this.#deleteMembers.run(num(oldest, "epoch"));
      this.#deleteEpoch.run(num(oldest, "epoch"));
    }
  }

  /** Joins a surrounding transaction (group commit) or opens its own. */
  #inTransaction(fn: () => void): void {
    if (this.#db.isTransaction) return fn();
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      fn();
      this.#db.exec("COMMIT");
    } catch (error) {
      this.#db.exec("ROLLBACK");
      throw error;
    }
  }
}

function toJournalTx(row: SqlRow): JournalTx {
  return {
    hash: str(row, "hash") as Hex,
    purpose: str(row, "purpose"),
    epoch: numOrNull(row, "epoch"),
    nonce: num(row, "nonce"),
    raw: str(row, "raw") as Hex,
    maxFeePerGas: BigInt(str(row, "max_fee_per_gas")),
    maxPriorityFeePerGas: BigInt(str(row, "max_priority_fee_per_gas")),
    state: str(row, "state") as TxState,
    blockNumber: numOrNull(row, "block_number"),
    sentAt: num(row, "sent_at"),
    updatedAt: num(row, "updated_at"),
  };
}

function toEpochRow(row: SqlRow): EpochRow {
  const settledTotal = strOrNull(row, "settled_total");
  const vouchers = decodeJson(str(row, "vouchers")) as unknown as {
    key: { buyer: Address; signer: Address; payee: Address; nonce: string };
    channelId: Hex;
    cumulativeAmount: string;
    signature: Hex;
  }[];
  return {
    epoch: num(row, "epoch"),
    root: strOrNull(row, "root") as Hex | null,
    receiptCount: num(row, "receipt_count"),
    lastReceiptId: num(row, "last_receipt_id"),
    vouchers: vouchers.map((voucher) => ({
      ...voucher,
      key: { ...voucher.key, nonce: BigInt(voucher.key.nonce) },
      cumulativeAmount: BigInt(voucher.cumulativeAmount),
    })),
    state: str(row, "state") as EpochState,
    txHash: strOrNull(row, "tx_hash") as Hex | null,
    settledTotal: settledTotal === null ? null : BigInt(settledTotal),
    paidCount: numOrNull(row, "paid_count"),
    detail: strOrNull(row, "detail"),
    createdAt: num(row, "created_at"),
    updatedAt: num(row, "updated_at"),
  };
}
