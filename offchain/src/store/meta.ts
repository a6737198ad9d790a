import type { DatabaseSync, StatementSync } from "node:sqlite";
import { decodeJson, encodeJson, requireText, type JsonValue } from "./codec.ts";

/** Small key/value settings of the node (e.g. last processed chain block). */
export class MetaRepository {
  readonly #get: StatementSync;
  readonly #set: StatementSync;
  readonly #delete: StatementSync;

  constructor(db: DatabaseSync) {
    this.#get = db.prepare("SELECT value FROM meta WHERE key = ?");
    this.#set = db.prepare(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    );
    this.#delete = db.prepare("DELETE FROM meta WHERE key = ?");
  }

  get(key: string): string | undefined {
    const row = this.#get.get(key) as { value: string } | undefined;
    return row?.value;
  }

  set(key: string, value: string): void {
    if (typeof value !== "string")
      throw new Error(`meta.set: value of '${key}' must be a string; use setJson for other values`);
    this.#set.run(requireText(key, "meta.set: key", 256), value);
  }

  delete(key: string): boolean {
    return this.#delete.run(key).changes > 0;
  }

  getJson(key: string): JsonValue | undefined {
    const text = this.get(key);
    return text === undefined ? undefined : decodeJson(text);
  }

  /** Stores any JSON-able value; bigints become decimal strings. */
  setJson(key: string, value: unknown): void {
    this.set(key, encodeJson(value, `meta '${key}'`));
  }
}
