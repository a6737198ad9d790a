import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { Address, Hex } from "viem";
import {
  decodeJson,
  encodeJson,
  num,
  oneOf,
  requireAddress,
  requireHex,
  str,
  strOrNull,
  type JsonValue,
  type SqlRow,
} from "./codec.ts";

export const SLASH_KINDS = ["equivocation", "outvote"] as const;
export type SlashKind = (typeof SLASH_KINDS)[number];
/** Where the evidence came from: this node's own sighting or verdict, or verified gossip. */
export const SLASH_SOURCES = ["own", "gossip"] as const;
export type SlashSource = (typeof SLASH_SOURCES)[number];
/** pending: to be sent (again); done: settled on-chain (slashed, case opened, or a normal refusal); failed: given up. */
export const SLASH_STATES = ["pending", "done", "failed"] as const;
export type SlashState = (typeof SLASH_STATES)[number];

export interface SlashRow {
  /** `kind:jobId:operator`, lower case. */
  id: string;
  kind: SlashKind;
  jobId: Hex;
  operator: Address;
  source: SlashSource;
  /** The evidence message as gossiped (protocol EvidenceMessage). */
  evidence: JsonValue;
  state: SlashState;
  /** How it settled: `slashed`, `case_opened`, or the contract error (`AlreadySlashed`, …). */
  outcome: string | null;
  txHash: Hex | null;
  caseId: string | null;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface NewSlash {
  kind: SlashKind;
  jobId: Hex;
  operator: Address;
  source: SlashSource;
  evidence: unknown;
  /** When to send it first (unix ms); now by default. */
  notBefore?: number;
}

/** Most rows kept; beyond it the settled rows updated longest ago are deleted. */
export const SLASH_ROWS_MAX = 10_000;
/** Most rows waiting at once; evidence beyond it is refused until some settle. */
export const SLASH_PENDING_MAX = 1_000;

const COLUMNS =
  "id, kind, job_id, operator, source, evidence, state, outcome, tx_hash, case_id, attempts, next_attempt_at, last_error, created_at, updated_at";

export function slashId(kind: SlashKind, jobId: Hex, operator: Address): string {
  return `${kind}:${jobId}:${operator}`.toLowerCase();
}

/**
 * The slash submissions a node owes the chain: durable, so evidence is sent once across
 * restarts and retried until it settles. Bound: SLASH_PENDING_MAX waiting (more are refused),
 * SLASH_ROWS_MAX in all (the oldest settled rows are deleted on insert).
 */
export class SlashesRepository {
  readonly #now: () => number;
  readonly #insert: StatementSync;
  readonly #get: StatementSync;
  readonly #due: StatementSync;
  readonly #pendingCount: StatementSync;
  readonly #pendingEquivocation: StatementSync;
  readonly #nextDue: StatementSync;
  readonly #count: StatementSync;
  readonly #trim: StatementSync;
  readonly #settle: StatementSync;
  readonly #retry: StatementSync;
  readonly #progress: StatementSync;
  readonly #list: StatementSync;
  readonly #listByState: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#now = now;
    this.#insert = db.prepare(
      `INSERT INTO slash_submissions (id, kind, job_id, operator, source, evidence, state, next_attempt_at, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    );
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM slash_submissions WHERE id = ?`);
    this.#due = db.prepare(
      `SELECT ${COLUMNS} FROM slash_submissions WHERE state = 'pending' AND next_attempt_at <= ?
       ORDER BY next_attempt_at LIMIT ?`,
    );
    this.#nextDue = db.prepare(
      "SELECT MIN(next_attempt_at) AS at FROM slash_submissions WHERE state = 'pending'",
    );
    this.#pendingCount = db.prepare("SELECT COUNT(*) AS n FROM slash_submissions WHERE state = 'pending'");
    this.#pendingEquivocation = db.prepare(
      "SELECT 1 FROM slash_submissions WHERE state = 'pending' AND kind = 'equivocation' AND lower(operator) = lower(?) LIMIT 1",
    );
    this.#count = db.prepare("SELECT COUNT(*) AS n FROM slash_submissions");
    this.#trim = db.prepare(
      `DELETE FROM slash_submissions WHERE id IN (
         SELECT id FROM slash_submissions WHERE state != 'pending' ORDER BY updated_at LIMIT ?)`,
    );
    this.#settle = db.prepare(
      `UPDATE slash_submissions SET state = ?, outcome = ?, tx_hash = ?, case_id = ?, last_error = ?,
       attempts = attempts + 1, updated_at = ? WHERE id = ?`,
    );
    this.#retry = db.prepare(
      `UPDATE slash_submissions SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, updated_at = ?
       WHERE id = ? AND state = 'pending'`,
    );
    this.#progress = db.prepare(
      `UPDATE slash_submissions SET outcome = ?, tx_hash = COALESCE(?, tx_hash), case_id = COALESCE(?, case_id),
       next_attempt_at = ?, updated_at = ? WHERE id = ? AND state = 'pending'`,
    );
    this.#list = db.prepare(`SELECT ${COLUMNS} FROM slash_submissions ORDER BY updated_at DESC LIMIT ?`);
    this.#listByState = db.prepare(
      `SELECT ${COLUMNS} FROM slash_submissions WHERE state = ? ORDER BY updated_at DESC LIMIT ?`,
    );
  }

  /**
   * Queues a submission; returns it, or undefined when one for the same (kind, job, operator)
   * exists already, an equivocation of the operator waits already (the registry slashes an
   * equivocation once and jails: a leaked key signing pairs for many invented jobs fills no
   * queue), or SLASH_PENDING_MAX are waiting.
   */
  add(slash: NewSlash): SlashRow | undefined {
    const kind = oneOf(slash.kind, SLASH_KINDS, "slashes.add: kind");
    const jobId = requireHex(slash.jobId, "slashes.add: jobId", 32);
    const operator = requireAddress(slash.operator, "slashes.add: operator");
    const source = oneOf(slash.source, SLASH_SOURCES, "slashes.add: source");
    if ((this.#pendingCount.get() as { n: number }).n >= SLASH_PENDING_MAX) return undefined;
    if (kind === "equivocation" && this.#pendingEquivocation.get(operator) !== undefined) return undefined;
    const id = slashId(kind, jobId, operator);
    const now = this.#now();
    const evidence = encodeJson(slash.evidence, "slashes.add: evidence");
    const notBefore = slash.notBefore ?? now;
    const { changes } = this.#insert.run(id, kind, jobId, operator, source, evidence, notBefore, now, now);
    if (changes === 0) return undefined;
    const excess = (this.#count.get() as { n: number }).n - SLASH_ROWS_MAX;
    if (excess > 0) this.#trim.run(excess);
    return this.get(id);
  }

  get(id: string): SlashRow | undefined {
    const row = this.#get.get(id) as SqlRow | undefined;
    return row && toRow(row);
  }

  /** Waiting submissions whose next attempt is due at `now`, soonest first. */
  due(now: number, limit = 16): SlashRow[] {
    return (this.#due.all(now, limit) as SqlRow[]).map(toRow);
  }

  /** When the next waiting submission is due; undefined when none waits. */
  nextDueAt(): number | undefined {
    return (this.#nextDue.get() as { at: number | null }).at ?? undefined;
  }

  /** Records how a submission settled; it is not sent again. */
  settle(
    id: string,
    settled: {
      state: Exclude<SlashState, "pending">;
      outcome: string;
      txHash?: Hex;
      caseId?: string;
      error?: string;
    },
  ): void {
    this.#settle.run(
      oneOf(settled.state, ["done", "failed"] as const, "slashes.settle: state"),
      settled.outcome,
      settled.txHash ?? null,
      settled.caseId ?? null,
      settled.error ?? null,
      this.#now(),
      id,
    );
  }

  /** Counts a failed attempt and schedules the next at `nextAttemptAt`. */
  retryAt(id: string, nextAttemptAt: number, error: string): void {
    this.#retry.run(nextAttemptAt, error.slice(0, 1024), this.#now(), id);
  }

  /**
   * Records a step that leaves the submission waiting for a later one (an outvote claim whose
   * court case is open): its outcome so far, and when to look again. Counts no failed attempt.
   */
  progress(
    id: string,
    step: { outcome: string; txHash?: Hex; caseId?: string; nextAttemptAt: number },
  ): void {
    this.#progress.run(
      step.outcome,
      step.txHash ?? null,
      step.caseId ?? null,
      step.nextAttemptAt,
      this.#now(),
      id,
    );
  }

  /** The most recently updated submissions, of one state when given. */
  list(options: { state?: SlashState; limit?: number } = {}): SlashRow[] {
    const limit = Math.min(Math.max(options.limit ?? 100, 1), 1_000);
    const rows =
      options.state === undefined
        ? this.#list.all(limit)
        : this.#listByState.all(oneOf(options.state, SLASH_STATES, "slashes.list: state"), limit);
    return (rows as SqlRow[]).map(toRow);
  }
}

function toRow(row: SqlRow): SlashRow {
  return {
    id: str(row, "id"),
    kind: str(row, "kind") as SlashKind,
    jobId: str(row, "job_id") as Hex,
    operator: str(row, "operator") as Address,
    source: str(row, "source") as SlashSource,
    evidence: decodeJson(str(row, "evidence")),
    state: str(row, "state") as SlashState,
    outcome: strOrNull(row, "outcome"),
    txHash: strOrNull(row, "tx_hash") as Hex | null,
    caseId: strOrNull(row, "case_id"),
    attempts: num(row, "attempts"),
    nextAttemptAt: num(row, "next_attempt_at"),
    lastError: strOrNull(row, "last_error"),
    createdAt: num(row, "created_at"),
    updatedAt: num(row, "updated_at"),
  };
}
