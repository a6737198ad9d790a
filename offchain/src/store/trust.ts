import type { DatabaseSync, StatementSync } from "node:sqlite";
import { num, requireText, requireTimestamp, str, strOrNull, type SqlRow } from "./codec.ts";

/** One operator's reputation counters, overall (module "") or on one module, as JSON. */
export interface TrustReputationRow {
  operator: string;
  module: string;
  stats: string;
  updatedAt: number;
}

/** One operator's or peer's suspicion and quarantine state, as JSON. */
export interface TrustSubjectRow {
  subject: string;
  peerId: string | null;
  operator: string | null;
  status: string;
  state: string;
  lastSeen: number;
}

const MAX_JSON = 64 * 1024;

/**
 * The trust layer's tables. The layer keeps them bounded and chooses what to evict; these
 * are plain upserts, deletes and full reads (at most its bound of rows).
 */
export class TrustRepository {
  readonly #putReputation: StatementSync;
  readonly #deleteReputation: StatementSync;
  readonly #allReputation: StatementSync;
  readonly #putSubject: StatementSync;
  readonly #deleteSubject: StatementSync;
  readonly #allSubjects: StatementSync;

  constructor(db: DatabaseSync) {
    this.#putReputation = db.prepare(
      `INSERT INTO trust_reputation (operator, module, stats, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (operator, module) DO UPDATE SET stats = excluded.stats, updated_at = excluded.updated_at`,
    );
    this.#deleteReputation = db.prepare("DELETE FROM trust_reputation WHERE operator = ? AND module = ?");
    this.#allReputation = db.prepare(
      "SELECT operator, module, stats, updated_at FROM trust_reputation ORDER BY updated_at",
    );
    this.#putSubject = db.prepare(
      `INSERT INTO trust_subjects (subject, peer_id, operator, status, state, last_seen) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (subject) DO UPDATE SET peer_id = excluded.peer_id, operator = excluded.operator,
         status = excluded.status, state = excluded.state, last_seen = excluded.last_seen`,
    );
    this.#deleteSubject = db.prepare("DELETE FROM trust_subjects WHERE subject = ?");
    this.#allSubjects = db.prepare(
      "SELECT subject, peer_id, operator, status, state, last_seen FROM trust_subjects ORDER BY last_seen",
    );
  }

  putReputation(row: TrustReputationRow): void {
    this.#putReputation.run(
      requireText(row.operator, "trust.putReputation: operator", 256),
      typeof row.module === "string" ? row.module : "",
      requireText(row.stats, "trust.putReputation: stats", MAX_JSON),
      requireTimestamp(row.updatedAt, "trust.putReputation: updatedAt"),
    );
  }

  deleteReputation(operator: string, module: string): void {
    this.#deleteReputation.run(operator, module);
  }

  /** Every reputation row, least recently updated first. */
  allReputation(): TrustReputationRow[] {
    return (this.#allReputation.all() as SqlRow[]).map((row) => ({
      operator: str(row, "operator"),
      module: str(row, "module"),
      stats: str(row, "stats"),
      updatedAt: num(row, "updated_at"),
    }));
  }

  putSubject(row: TrustSubjectRow): void {
    this.#putSubject.run(
      requireText(row.subject, "trust.putSubject: subject", 256),
      row.peerId,
      row.operator,
      requireText(row.status, "trust.putSubject: status", 32),
      requireText(row.state, "trust.putSubject: state", MAX_JSON),
      requireTimestamp(row.lastSeen, "trust.putSubject: lastSeen"),
    );
  }

  deleteSubject(subject: string): void {
    this.#deleteSubject.run(subject);
  }

  /** Every subject, least recently seen first. */
  allSubjects(): TrustSubjectRow[] {
    return (this.#allSubjects.all() as SqlRow[]).map((row) => ({
      subject: str(row, "subject"),
      peerId: strOrNull(row, "peer_id"),
      operator: strOrNull(row, "operator"),
      status: str(row, "status"),
      state: str(row, "state"),
      lastSeen: num(row, "last_seen"),
    }));
  }
}
