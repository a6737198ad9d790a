import type { DatabaseSync, StatementSync } from "node:sqlite";

/**
 * Prepared statements by SQL text, for queries whose SQL depends on the arguments (the set
 * of patched columns, an optional filter). Each repository builds only a handful of shapes,
 * so the cache stays small; preparing costs far more than the lookup.
 */
export class StatementCache {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  get(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }
}
