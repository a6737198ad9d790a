import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { Address } from "viem";
import {
  num,
  oneOf,
  optionalText,
  requireAddress,
  requireText,
  requireTimestamp,
  str,
  strOrNull,
  type SqlRow,
} from "./codec.ts";
import { StatementCache } from "./statements.ts";
import { JOB_ROW, JOB_STORED, jobIdOf } from "./job-key.ts";

export const ASSIGNMENT_STATES = [
  "assigned",
  "running",
  "completed",
  "failed",
  "timed_out",
  "reassigned",
  "cancelled",
] as const;
export type AssignmentState = (typeof ASSIGNMENT_STATES)[number];
/** States in which an executor still owes an answer. */
export const ACTIVE_ASSIGNMENT_STATES: readonly AssignmentState[] = ["assigned", "running"];

export interface AssignmentRow {
  id: number;
  jobId: string;
  /** The executor's PeerId. */
  executor: string;
  operator: Address;
  /** 1 for the first placement, +1 per reassignment. */
  attempt: number;
  state: AssignmentState;
  /** Unix ms by which the executor must answer. */
  deadline: number;
  reason: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface NewAssignment {
  jobId: string;
  executor: string;
  operator: string;
  attempt: number;
  deadline: number;
  state?: AssignmentState;
}

export interface AssignmentPatch {
  state?: AssignmentState;
  deadline?: number;
  reason?: string | null;
}

const OWN_COLUMNS = "executor, operator, attempt, state, deadline, reason, created_at, updated_at";
/** An assignment's columns with its job's id, for statements on `assignments` alone (RETURNING). */
const COLUMNS = `id, ${jobIdOf("assignments")}, ${OWN_COLUMNS}`;
const ACTIVE = `state IN (${ACTIVE_ASSIGNMENT_STATES.map((s) => `'${s}'`).join(", ")})`;

export class AssignmentsRepository {
  readonly #statements: StatementCache;
  readonly #now: () => number;
  readonly #insert: StatementSync;
  readonly #get: StatementSync;
  readonly #update: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#statements = new StatementCache(db);
    this.#now = now;
    this.#insert = db.prepare(
      `INSERT INTO assignments (job, ${OWN_COLUMNS})
       SELECT id, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8 FROM jobs WHERE job_id = ?1
       ON CONFLICT DO NOTHING RETURNING id, ?1 AS job_id, ${OWN_COLUMNS}`,
    );
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM assignments WHERE id = ?`);
    // A null state or deadline keeps the stored one; the reason is set only when flagged,
    // since null is a value it can be set to.
    this.#update = db.prepare(
      `UPDATE assignments SET state = COALESCE(?1, state), deadline = COALESCE(?2, deadline),
         reason = IIF(?3, ?4, reason), updated_at = ?5
       WHERE id = ?6 RETURNING ${COLUMNS}`,
    );
  }

  /** Assigns a stored job; the same job, executor and attempt twice is an error. */
  insert(assignment: NewAssignment): AssignmentRow {
    const jobId = requireText(assignment.jobId, "assignments.insert: jobId", 256);
    const executor = requireText(assignment.executor, "assignments.insert: executor", 256);
    const attempt = assignment.attempt;
    if (!Number.isSafeInteger(attempt) || attempt < 1)
      throw new Error(`assignments.insert: attempt must be an integer ≥ 1, got ${attempt}`);
    const now = this.#now();
    const row = this.#insert.get(
      jobId,
      executor,
      requireAddress(assignment.operator, "assignments.insert: operator"),
      attempt,
      oneOf(assignment.state ?? "assigned", ASSIGNMENT_STATES, "assignments.insert: state"),
      requireTimestamp(assignment.deadline, "assignments.insert: deadline"),
      now,
      now,
    ) as SqlRow | undefined;
    if (row) return toAssignmentRow(row);
    if (this.#statements.get(JOB_STORED).get(jobId) === undefined)
      throw new Error(`assignments.insert: job ${jobId} is not in the store`);
    throw new Error(`assignments.insert: job ${jobId} attempt ${attempt} is already assigned to ${executor}`);
  }

  get(id: number): AssignmentRow | undefined {
    const row = this.#get.get(id) as SqlRow | undefined;
    return row && toAssignmentRow(row);
  }

  /** A job's assignments, by attempt. */
  forJob(jobId: string): AssignmentRow[] {
    return this.#all(`WHERE job = ${JOB_ROW} ORDER BY attempt ASC, id ASC`, jobId);
  }

  /** Assignments still waiting for an answer, earliest deadline first. */
  active(): AssignmentRow[] {
    return this.#all(`WHERE ${ACTIVE} ORDER BY deadline ASC, id ASC`);
  }

  /** Active assignments whose deadline is before `now`. */
  overdue(now: number = this.#now()): AssignmentRow[] {
    return this.#all(
      `WHERE ${ACTIVE} AND deadline < ? ORDER BY deadline ASC, id ASC`,
      requireTimestamp(now, "assignments.overdue: now"),
    );
  }

  /** The highest attempt number for a job, 0 when it was never assigned. */
  latestAttempt(jobId: string): number {
    const row = this.#statements
      .get(`SELECT MAX(attempt) AS attempt FROM assignments WHERE job = ${JOB_ROW}`)
      .get(jobId) as SqlRow;
    return (row.attempt as number | null) ?? 0;
  }

  /** Changes the patched fields (and updated_at) and returns the updated row. */
  update(id: number, patch: AssignmentPatch): AssignmentRow {
    const state =
      patch.state === undefined ? null : oneOf(patch.state, ASSIGNMENT_STATES, "assignments.update: state");
    const deadline =
      patch.deadline === undefined ? null : requireTimestamp(patch.deadline, "assignments.update: deadline");
    const setReason = patch.reason !== undefined;
    const reason = setReason ? optionalText(patch.reason, "assignments.update: reason") : null;
    const row = this.#update.get(state, deadline, setReason ? 1 : 0, reason, this.#now(), id) as
      SqlRow | undefined;
    if (!row) throw new Error(`assignments.update: assignment ${id} is not in the store`);
    return toAssignmentRow(row);
  }

  /**
   * Sets the state and reason of one attempt of a job, found by its key instead of its row
   * id; false when there is no such assignment.
   */
  updateAttempt(
    key: { jobId: string; executor: string; attempt: number },
    patch: { state: AssignmentState; reason: string | null },
  ): boolean {
    const { changes } = this.#statements
      .get(
        `UPDATE assignments SET state = ?, reason = ?, updated_at = ?
         WHERE job = ${JOB_ROW} AND executor = ? AND attempt = ?`,
      )
      .run(
        oneOf(patch.state, ASSIGNMENT_STATES, "assignments.updateAttempt: state"),
        optionalText(patch.reason, "assignments.updateAttempt: reason"),
        this.#now(),
        requireText(key.jobId, "assignments.updateAttempt: jobId", 256),
        requireText(key.executor, "assignments.updateAttempt: executor", 256),
        key.attempt,
      );
    return Number(changes) > 0;
  }

  #all(clause: string, ...values: Array<string | number>): AssignmentRow[] {
    return (
      this.#statements.get(`SELECT ${COLUMNS} FROM assignments ${clause}`).all(...values) as SqlRow[]
    ).map(toAssignmentRow);
  }
}

function toAssignmentRow(row: SqlRow): AssignmentRow {
  return {
    id: num(row, "id"),
    jobId: str(row, "job_id"),
    executor: str(row, "executor"),
    operator: str(row, "operator") as Address,
    attempt: num(row, "attempt"),
    state: str(row, "state") as AssignmentState,
    deadline: num(row, "deadline"),
    reason: strOrNull(row, "reason"),
    createdAt: num(row, "created_at"),
    updatedAt: num(row, "updated_at"),
  };
}
