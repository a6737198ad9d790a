import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { Address, Hex } from "viem";
import {
  decodeJson,
  encodeJson,
  num,
  optionalText,
  requireAddress,
  requireHex,
  requireText,
  requireTimestamp,
  str,
  strOrNull,
  type JsonObject,
  type SqlRow,
} from "./codec.ts";
import { JOB_ROW, jobIdOf } from "./job-key.ts";

export interface ReceiptRow {
  id: number;
  jobId: string;
  /** The executor's operator address (the Receipt's `executor`). */
  executor: Address;
  /** The signed Receipt message, bigints as decimal strings. */
  message: JsonObject;
  signature: Hex;
  /** CID of the receipt's encoded block, when it was put in the blockstore. */
  cid: string | null;
  storedAt: number;
}

export interface NewReceipt {
  jobId: string;
  executor: string;
  /** The Receipt message; bigints are written as decimal strings. */
  message: Record<string, unknown>;
  signature: string;
  cid?: string | null;
  storedAt?: number;
}

const OWN_COLUMNS = "executor, message, signature, cid, stored_at";
/** A receipt's columns with its job's id. */
const COLUMNS = `id, ${jobIdOf("receipts")}, ${OWN_COLUMNS}`;

export class ReceiptsRepository {
  readonly #now: () => number;
  readonly #insert: StatementSync;
  readonly #find: StatementSync;
  readonly #forJob: StatementSync;
  readonly #byCid: StatementSync;
  readonly #list: StatementSync;
  readonly #setOutbox: StatementSync;
  readonly #outbox: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#now = now;
    this.#insert = db.prepare(
      `INSERT INTO receipts (job, ${OWN_COLUMNS})
       SELECT id, ?2, ?3, ?4, ?5, ?6 FROM jobs WHERE job_id = ?1
       ON CONFLICT DO NOTHING RETURNING id, ?1 AS job_id, ${OWN_COLUMNS}`,
    );
    this.#find = db.prepare(
      `SELECT ${COLUMNS} FROM receipts WHERE job = ${JOB_ROW} AND executor = ? AND signature = ?`,
    );
    this.#forJob = db.prepare(`SELECT ${COLUMNS} FROM receipts WHERE job = ${JOB_ROW} ORDER BY id ASC`);
    this.#byCid = db.prepare(`SELECT ${COLUMNS} FROM receipts WHERE cid = ? ORDER BY id ASC LIMIT 1`);
    this.#list = db.prepare(`SELECT ${COLUMNS} FROM receipts WHERE id > ? ORDER BY id ASC LIMIT ?`);
    this.#setOutbox = db.prepare("UPDATE receipts SET outbox_peer = ? WHERE id = ?");
    this.#outbox = db.prepare(
      `SELECT ${COLUMNS}, outbox_peer FROM receipts WHERE outbox_peer IS NOT NULL ORDER BY id ASC LIMIT ?`,
    );
  }

  /** Puts receipt `id` in the outbox: it is still to be delivered to `peerId`. */
  enqueueDelivery(id: number, peerId: string): void {
    this.#setOutbox.run(requireText(peerId, "receipts.enqueueDelivery: peerId", 256), id);
  }

  /** Takes receipt `id` out of the outbox (acknowledged, or given up on). */
  leaveOutbox(id: number): void {
    this.#setOutbox.run(null, id);
  }

  /** Receipts in the outbox with the peer each goes to, oldest first. */
  outbox(limit = -1): (ReceiptRow & { peerId: string })[] {
    return (this.#outbox.all(limit) as SqlRow[]).map((row) => ({
      ...toReceiptRow(row),
      peerId: str(row, "outbox_peer"),
    }));
  }

  /**
   * Stores a signed receipt for a stored job. Idempotent: the same (job, executor, signature) is stored once.
   * Two different receipts from one executor for one job are both kept (equivocation evidence).
   */
  put(receipt: NewReceipt): { row: ReceiptRow; inserted: boolean } {
    const jobId = requireText(receipt.jobId, "receipts.put: jobId", 256);
    const executor = requireAddress(receipt.executor, "receipts.put: executor");
    const signature = requireHex(receipt.signature, "receipts.put: signature");
    if (typeof receipt.message !== "object" || receipt.message === null || Array.isArray(receipt.message)) {
      throw new Error("receipts.put: message must be an object");
    }
    const inserted = this.#insert.get(
      jobId,
      executor,
      encodeJson(receipt.message, "receipts.put: message"),
      signature,
      optionalText(receipt.cid, "receipts.put: cid", 256),
      requireTimestamp(receipt.storedAt ?? this.#now(), "receipts.put: storedAt"),
    ) as SqlRow | undefined;
    if (inserted) return { row: toReceiptRow(inserted), inserted: true };
    const stored = this.#find.get(jobId, executor, signature) as SqlRow | undefined;
    if (!stored) throw new Error(`receipts.put: job ${jobId} is not in the store`);
    return { row: toReceiptRow(stored), inserted: false };
  }

  /** A job's receipts in the order they were stored. */
  forJob(jobId: string): ReceiptRow[] {
    return (this.#forJob.all(jobId) as SqlRow[]).map(toReceiptRow);
  }

  /** The first receipt stored for a job, optionally from one executor. */
  get(jobId: string, executor?: string): ReceiptRow | undefined {
    const receipts = this.forJob(jobId);
    if (executor === undefined) return receipts[0];
    const address = requireAddress(executor, "receipts.get: executor");
    return receipts.find((receipt) => receipt.executor === address);
  }

  byCid(cid: string): ReceiptRow | undefined {
    const row = this.#byCid.get(cid) as SqlRow | undefined;
    return row && toReceiptRow(row);
  }

  /** Receipts in storage order, paged by id. */
  list(options: { afterId?: number; limit?: number } = {}): ReceiptRow[] {
    return (this.#list.all(options.afterId ?? 0, options.limit ?? -1) as SqlRow[]).map(toReceiptRow);
  }
}

function toReceiptRow(row: SqlRow): ReceiptRow {
  return {
    id: num(row, "id"),
    jobId: str(row, "job_id"),
    executor: str(row, "executor") as Address,
    message: decodeJson(str(row, "message")) as JsonObject,
    signature: str(row, "signature") as Hex,
    cid: strOrNull(row, "cid"),
    storedAt: num(row, "stored_at"),
  };
}
