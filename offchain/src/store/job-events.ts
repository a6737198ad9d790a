import type { DatabaseSync, StatementSync } from "node:sqlite";
import {
  decodeJsonOrNull,
  encodeJson,
  num,
  optionalText,
  requireText,
  requireTimestamp,
  str,
  strOrNull,
  type JsonValue,
  type SqlRow,
} from "./codec.ts";
import { JOB_ROW } from "./job-key.ts";

/** One entry of a job's append-only history (the database refuses updates and deletes). */
export interface JobEventRow {
  /** Global, strictly increasing sequence number. */
  seq: number;
  jobId: string;
  at: number;
  /** e.g. announced, bid_received, bid_rejected, assigned, reassigned, running, receipt, completed, failed, queued. */
  kind: string;
  /** Reason code for refusals, timeouts and failures. */
  reason: string | null;
  /** The peer the event concerns, if any. */
  peer: string | null;
  data: JsonValue | null;
}

export interface NewJobEvent {
  jobId: string;
  kind: string;
  reason?: string | null;
  peer?: string | null;
  data?: unknown;
  at?: number;
}

const COLUMNS = "seq, at, kind, reason, peer, data";

export class JobEventsRepository {
  readonly #now: () => number;
  readonly #insert: StatementSync;
  readonly #list: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#now = now;
    this.#insert = db.prepare(
      `INSERT INTO job_events (job, at, kind, reason, peer, data)
       SELECT id, ?2, ?3, ?4, ?5, ?6 FROM jobs WHERE job_id = ?1`,
    );
    this.#list = db.prepare(
      `SELECT ${COLUMNS} FROM job_events
       WHERE job = ${JOB_ROW} AND seq > ? ORDER BY seq ASC`,
    );
  }

  /** Appends an event to a stored job's history and returns its sequence number. */
  append(event: NewJobEvent): number {
    const jobId = requireText(event.jobId, "jobEvents.append: jobId", 256);
    const { changes, lastInsertRowid } = this.#insert.run(
      jobId,
      requireTimestamp(event.at ?? this.#now(), "jobEvents.append: at"),
      requireText(event.kind, "jobEvents.append: kind", 64),
      optionalText(event.reason, "jobEvents.append: reason"),
      optionalText(event.peer, "jobEvents.append: peer", 256),
      event.data === undefined || event.data === null
        ? null
        : encodeJson(event.data, "jobEvents.append: data"),
    );
    if (changes === 0) throw new Error(`jobEvents.append: job ${jobId} is not in the store`);
    return Number(lastInsertRowid);
  }

  /** A job's events in order; `afterSeq` returns only newer ones (for polling). */
  list(jobId: string, options: { afterSeq?: number } = {}): JobEventRow[] {
    return (this.#list.all(jobId, options.afterSeq ?? 0) as SqlRow[]).map((row) => toEventRow(jobId, row));
  }
}

function toEventRow(jobId: string, row: SqlRow): JobEventRow {
  return {
    seq: num(row, "seq"),
    jobId,
    at: num(row, "at"),
    kind: str(row, "kind"),
    reason: strOrNull(row, "reason"),
    peer: strOrNull(row, "peer"),
    data: decodeJsonOrNull(row.data),
  };
}
