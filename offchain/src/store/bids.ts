import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { Address, Hex } from "viem";
import {
  decodeJson,
  encodeJson,
  num,
  oneOf,
  optionalText,
  requireAddress,
  requireHex,
  requireText,
  requireTimestamp,
  requireUint,
  str,
  strOrNull,
  type JsonValue,
  type SqlRow,
} from "./codec.ts";
import { JOB_ROW, JOB_STORED } from "./job-key.ts";

export const BID_STATES = ["received", "accepted", "rejected", "expired"] as const;
export type BidState = (typeof BID_STATES)[number];

export interface BidRow {
  jobId: string;
  /** The bidding peer's PeerId. */
  bidder: string;
  operator: Address;
  pricePerMegaFuel: bigint;
  /** The signed Bid message as stored (bigints as decimal strings). */
  message: JsonValue;
  signature: Hex;
  state: BidState;
  reason: string | null;
  receivedAt: number;
  updatedAt: number;
}

export interface NewBid {
  jobId: string;
  bidder: string;
  operator: string;
  pricePerMegaFuel: bigint;
  message: unknown;
  signature: string;
  state?: BidState;
  reason?: string | null;
  receivedAt?: number;
}

const COLUMNS =
  "bidder, operator, price_per_mega_fuel, message, signature, state, reason, received_at, updated_at";

export class BidsRepository {
  readonly #now: () => number;
  readonly #jobs: StatementSync;
  readonly #insert: StatementSync;
  readonly #get: StatementSync;
  readonly #forJob: StatementSync;
  readonly #setState: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#now = now;
    this.#jobs = db.prepare(JOB_STORED);
    this.#insert = db.prepare(
      `INSERT INTO bids (job, ${COLUMNS})
       SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 FROM jobs WHERE job_id = ?1
       ON CONFLICT (job, bidder) DO NOTHING`,
    );
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM bids WHERE job = ${JOB_ROW} AND bidder = ?`);
    this.#forJob = db.prepare(`SELECT ${COLUMNS} FROM bids WHERE job = ${JOB_ROW}`);
    this.#setState = db.prepare(
      `UPDATE bids SET state = ?, reason = ?, updated_at = ? WHERE job = ${JOB_ROW} AND bidder = ?`,
    );
  }

  /**
   * Stores a bid for a stored job; one bid per (job, bidder). A second bid from the same
   * bidder for the same job is an error, or with `ifAbsent` is skipped. Returns whether the
   * bid was stored.
   */
  insert(bid: NewBid, options: { ifAbsent?: boolean } = {}): boolean {
    const jobId = requireText(bid.jobId, "bids.insert: jobId", 256);
    const bidder = requireText(bid.bidder, "bids.insert: bidder", 256);
    const now = this.#now();
    const { changes } = this.#insert.run(
      jobId,
      bidder,
      requireAddress(bid.operator, "bids.insert: operator"),
      requireUint(bid.pricePerMegaFuel, "bids.insert: pricePerMegaFuel").toString(),
      encodeJson(bid.message, "bids.insert: message"),
      requireHex(bid.signature, "bids.insert: signature"),
      oneOf(bid.state ?? "received", BID_STATES, "bids.insert: state"),
      optionalText(bid.reason, "bids.insert: reason"),
      requireTimestamp(bid.receivedAt ?? now, "bids.insert: receivedAt"),
      now,
    );
    if (changes > 0) return true;
    if (this.#jobs.get(jobId) === undefined) throw new Error(`bids.insert: job ${jobId} is not in the store`);
    if (options.ifAbsent) return false;
    throw new Error(`bids.insert: a bid from ${bidder} for job ${jobId} is already stored`);
  }

  get(jobId: string, bidder: string): BidRow | undefined {
    const row = this.#get.get(jobId, bidder) as SqlRow | undefined;
    return row && toBidRow(jobId, row);
  }

  /** A job's bids, cheapest first, then earliest. */
  forJob(jobId: string, options: { state?: BidState } = {}): BidRow[] {
    const bids = (this.#forJob.all(jobId) as SqlRow[])
      .map((row) => toBidRow(jobId, row))
      .filter((bid) => !options.state || bid.state === options.state);
    return bids.sort((a, b) =>
      a.pricePerMegaFuel < b.pricePerMegaFuel
        ? -1
        : a.pricePerMegaFuel > b.pricePerMegaFuel
          ? 1
          : a.receivedAt - b.receivedAt,
    );
  }

  setState(jobId: string, bidder: string, state: BidState, reason: string | null = null): BidRow {
    const { changes } = this.#setState.run(
      oneOf(state, BID_STATES, "bids.setState: state"),
      optionalText(reason, "bids.setState: reason"),
      this.#now(),
      jobId,
      bidder,
    );
    if (changes === 0) throw new Error(`bids.setState: no bid from ${bidder} for job ${jobId}`);
    return this.get(jobId, bidder) as BidRow;
  }
}

function toBidRow(jobId: string, row: SqlRow): BidRow {
  return {
    jobId,
    bidder: str(row, "bidder"),
    operator: str(row, "operator") as Address,
    pricePerMegaFuel: BigInt(str(row, "price_per_mega_fuel")),
    message: decodeJson(str(row, "message")),
    signature: str(row, "signature") as Hex,
    state: str(row, "state") as BidState,
    reason: strOrNull(row, "reason"),
    receivedAt: num(row, "received_at"),
    updatedAt: num(row, "updated_at"),
  };
}
