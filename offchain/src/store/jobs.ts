import type { DatabaseSync, StatementSync } from "node:sqlite";
import {
  decodeJson,
  decodeJsonOrNull,
  encodeJson,
  num,
  numOrNull,
  oneOf,
  optionalText,
  optionalTimestamp,
  requireText,
  str,
  strOrNull,
  type JsonValue,
  type SqlRow,
} from "./codec.ts";
import { StatementCache } from "./statements.ts";

export const JOB_STATES = [
  "queued",
  "announced",
  "assigned",
  "running",
  "completed",
  "failed",
  "cancelled",
] as const;
export type JobState = (typeof JOB_STATES)[number];
/** Most urgent first; stored as the index, so SQL orders by urgency. */
export const PRIORITIES = ["critical", "high", "normal", "low", "background"] as const;
export type Priority = (typeof PRIORITIES)[number];
/** "buyer": a job this node submitted; "executor": a job this node runs for someone else. */
export const JOB_ROLES = ["buyer", "executor"] as const;
export type JobRole = (typeof JOB_ROLES)[number];

export interface JobRow {
  jobId: string;
  role: JobRole;
  /** The spec as stored: bigints came back as decimal strings. */
  spec: JsonValue;
  state: JobState;
  priority: Priority;
  /** Unix ms, or null for none. */
  deadline: number | null;
  /** Why the job is in its state (a reason code), if any. */
  reason: string | null;
  result: JsonValue | null;
  createdAt: number;
  updatedAt: number;
}

export interface NewJob {
  jobId: string;
  role?: JobRole;
  /** Any JSON-able value; bigints are written as decimal strings. */
  spec: unknown;
  state?: JobState;
  priority?: Priority;
  deadline?: number | null;
  reason?: string | null;
  /** Any JSON-able value, as in JobPatch. */
  result?: unknown;
}

export interface JobPatch {
  state?: JobState;
  priority?: Priority;
  deadline?: number | null;
  reason?: string | null;
  result?: unknown;
}

export interface JobQuery {
  role?: JobRole;
  limit?: number;
  offset?: number;
}

const COLUMNS = "job_id, role, spec, state, priority, deadline, reason, result, created_at, updated_at";
/** Scheduler order: priority, then earliest deadline (none last), then oldest. */
const URGENCY = "priority ASC, deadline IS NULL, deadline ASC, created_at ASC, job_id ASC";

export class JobsRepository {
  readonly #statements: StatementCache;
  readonly #now: () => number;
  readonly #insert: StatementSync;
  readonly #get: StatementSync;
  readonly #has: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#statements = new StatementCache(db);
    this.#now = now;
    this.#insert = db.prepare(
      `INSERT INTO jobs (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (job_id) DO NOTHING`,
    );
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM jobs WHERE job_id = ?`);
    this.#has = db.prepare("SELECT 1 FROM jobs WHERE job_id = ?");
  }

  /** Stores a new job; a job id already stored is an error. */
  insert(job: NewJob): void {
    const jobId = requireText(job.jobId, "jobs.insert: jobId", 256);
    const now = this.#now();
    const { changes } = this.#insert.run(
      jobId,
      oneOf(job.role ?? "buyer", JOB_ROLES, "jobs.insert: role"),
      encodeJson(job.spec, "jobs.insert: spec"),
      oneOf(job.state ?? "queued", JOB_STATES, "jobs.insert: state"),
      priorityRank(job.priority ?? "normal", "jobs.insert: priority"),
      optionalTimestamp(job.deadline, "jobs.insert: deadline"),
      optionalText(job.reason, "jobs.insert: reason"),
      job.result === undefined || job.result === null ? null : encodeJson(job.result, "jobs.insert: result"),
      now,
      now,
    );
    if (changes === 0) throw new Error(`jobs.insert: job ${jobId} is already stored`);
  }

  get(jobId: string): JobRow | undefined {
    const row = this.#get.get(jobId) as SqlRow | undefined;
    return row && toJobRow(row);
  }

  /** Whether the job is stored, without reading it. */
  has(jobId: string): boolean {
    return this.#has.get(jobId) !== undefined;
  }

  /** Like get, but a missing job is an error. */
  require(jobId: string): JobRow {
    const job = this.get(jobId);
    if (!job) throw new Error(`job ${jobId} is not in the store`);
    return job;
  }

  /** Changes the patched fields (and updated_at); a job not in the store is an error. */
  update(jobId: string, patch: JobPatch): void {
    const sets: string[] = [];
    const values: Array<string | number | null> = [];
    const set = (column: string, value: string | number | null) => {
      sets.push(`${column} = ?`);
      values.push(value);
    };
    if (patch.state !== undefined) set("state", oneOf(patch.state, JOB_STATES, "jobs.update: state"));
    if (patch.priority !== undefined) set("priority", priorityRank(patch.priority, "jobs.update: priority"));
    if (patch.deadline !== undefined)
      set("deadline", optionalTimestamp(patch.deadline, "jobs.update: deadline"));
    if (patch.reason !== undefined) set("reason", optionalText(patch.reason, "jobs.update: reason"));
    if (patch.result !== undefined)
      set("result", patch.result === null ? null : encodeJson(patch.result, "jobs.update: result"));
    set("updated_at", this.#now());
    const { changes } = this.#statements
      .get(`UPDATE jobs SET ${sets.join(", ")} WHERE job_id = ?`)
      .run(...values, jobId);
    if (changes === 0) throw new Error(`jobs.update: job ${jobId} is not in the store`);
  }

  /** Jobs in the given state(s), most urgent first: priority, then earliest deadline. */
  byState(states: JobState | readonly JobState[], query: JobQuery = {}): JobRow[] {
    const list = (typeof states === "string" ? [states] : [...states]).map((s) =>
      oneOf(s, JOB_STATES, "jobs.byState: state"),
    );
    if (list.length === 0) return [];
    const where = [`state IN (${list.map(() => "?").join(", ")})`];
    const values: Array<string | number> = [...list];
    if (query.role) {
      where.push("role = ?");
      values.push(oneOf(query.role, JOB_ROLES, "jobs.byState: role"));
    }
    return this.#select(`WHERE ${where.join(" AND ")} ORDER BY ${URGENCY}`, values, query);
  }

  /** All jobs, the last stored first: a page is read from the end of the table, not sorted. */
  list(query: JobQuery = {}): JobRow[] {
    const values = query.role ? [oneOf(query.role, JOB_ROLES, "jobs.list: role")] : [];
    return this.#select(`${query.role ? "WHERE role = ?" : ""} ORDER BY id DESC`, values, query);
  }

  count(state?: JobState): number {
    const row = state
      ? this.#statements
          .get("SELECT COUNT(*) AS n FROM jobs WHERE state = ?")
          .get(oneOf(state, JOB_STATES, "jobs.count: state"))
      : this.#statements.get("SELECT COUNT(*) AS n FROM jobs").get();
    return num(row as SqlRow, "n");
  }

  #select(clause: string, values: Array<string | number>, query: JobQuery): JobRow[] {
    const limit = query.limit ?? -1;
    const offset = query.offset ?? 0;
    const rows = this.#statements
      .get(`SELECT ${COLUMNS} FROM jobs ${clause} LIMIT ? OFFSET ?`)
      .all(...values, limit, offset);
    return (rows as SqlRow[]).map(toJobRow);
  }
}

function priorityRank(priority: Priority, field: string): number {
  return PRIORITIES.indexOf(oneOf(priority, PRIORITIES, field));
}

function toJobRow(row: SqlRow): JobRow {
  return {
    jobId: str(row, "job_id"),
    role: str(row, "role") as JobRole,
    spec: decodeJson(str(row, "spec")),
    state: str(row, "state") as JobState,
    priority: PRIORITIES[num(row, "priority")] ?? "normal",
    deadline: numOrNull(row, "deadline"),
    reason: strOrNull(row, "reason"),
    result: decodeJsonOrNull(row.result),
    createdAt: num(row, "created_at"),
    updatedAt: num(row, "updated_at"),
  };
}
