import { createHash } from "node:crypto";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { CID, MAX_BLOCK_BYTES, cidOf } from "../protocol/index.ts";

const RAW_CODEC = 0x55;
const SHA2_256 = 0x12;
export { MAX_BLOCK_BYTES };

/** A block's last use is rewritten at most this often, so reads seldom write. */
const USE_GRANULARITY_MS = 60_000;

/** Job states in which a job still needs its blocks. */
const UNFINISHED_STATES = "('queued', 'announced', 'assigned', 'running')";

/**
 * What the collector keeps. A block referenced by an unfinished job, a signed receipt
 * (listed in the receipts table) and a receipt batch are never deleted; every other
 * block is a cache entry.
 */
export interface BlockRetention {
  /** Total bytes of blocks kept; above it, cache entries go, least recently used first. Default 1 GiB. */
  maxBytes: number;
  /** A module, input or stray block unused this long is deleted. Default 1 hour. */
  idleMs: number;
  /**
   * A job's output is kept this long after the job finished (its buyer fetches it from the
   * executor), unless the total is above maxBytes: then it goes after every other cache
   * entry. Default 24 hours.
   */
  outputMs: number;
}

export const DEFAULT_BLOCK_RETENTION: BlockRetention = {
  maxBytes: 1024 * 1024 * 1024,
  idleMs: 60 * 60_000,
  outputMs: 24 * 60 * 60_000,
};

export interface CollectionReport {
  deleted: number;
  freedBytes: number;
  /** Bytes of all blocks kept. */
  totalBytes: number;
}

/** The jobs that reference a block, with the block's part in each. */
export interface BlockReference {
  jobId: string;
  role: string;
  state: string;
  kind: "module" | "input" | "output";
  /** The job's buyer peer, as announced; null when the job row holds no announce. */
  buyerPeer: string | null;
}

/** Content-addressed blocks (CIDv1, raw, sha2-256), durable once put resolves. */
export interface Blockstore {
  /** Stores bytes and returns their CID string. */
  put(bytes: Uint8Array): Promise<string>;
  /**
   * Stores bytes that arrived under `cid`; throws when they do not hash to it. `pin` keeps
   * the block from collection for good: only the node's own receipt batches are pinned,
   * never by what the bytes say (anyone can send bytes that look like a batch).
   */
  putWithCid(cid: string, bytes: Uint8Array, options?: { pin?: boolean }): Promise<string>;
  get(cid: string): Uint8Array | undefined;
  /** Up to `length` bytes from `offset`, with the block's size; undefined when not held. */
  read(cid: string, offset: number, length: number): { size: number; bytes: Uint8Array } | undefined;
  has(cid: string): boolean;
  size(cid: string): number | undefined;
  delete(cid: string): boolean;
  /** The jobs referencing `cid` (bounded by `limit`, newest first). */
  references(cid: string, limit?: number): BlockReference[];
  /** Whether `cid` is a signed receipt or a receipt batch: evidence anyone may fetch. */
  isEvidence(cid: string): boolean;
  totalBytes(): number;
  /** Deletes what the retention rules let go (see BlockRetention). */
  collect(retention?: Partial<BlockRetention>): CollectionReport;
}

export class SqliteBlockstore implements Blockstore {
  readonly #now: () => number;
  readonly #insert: StatementSync;
  readonly #insertMeta: StatementSync;
  readonly #get: StatementSync;
  readonly #read: StatementSync;
  readonly #size: StatementSync;
  readonly #touch: StatementSync;
  readonly #pin: StatementSync;
  readonly #delete: StatementSync;
  readonly #deleteMeta: StatementSync;
  readonly #references: StatementSync;
  readonly #evidence: StatementSync;
  readonly #total: StatementSync;
  readonly #idle: StatementSync;
  readonly #evictable: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#now = now;
    this.#insert = db.prepare(
      "INSERT INTO blocks (cid, bytes, size, stored_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    this.#insertMeta = db.prepare(
      `INSERT INTO block_meta (cid, size, stored_at, used_at, pinned) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT DO UPDATE SET used_at = excluded.used_at WHERE used_at < excluded.used_at - ${USE_GRANULARITY_MS}`,
    );
    this.#get = db.prepare(
      "SELECT b.bytes, m.used_at FROM blocks b JOIN block_meta m ON m.cid = b.cid WHERE b.cid = ?",
    );
    // substr reads the blob in SQLite's memory, the caller sees only the range.
    this.#read = db.prepare(
      `SELECT m.size, m.used_at, substr(b.bytes, ?, ?) AS bytes
       FROM block_meta m JOIN blocks b ON b.cid = m.cid WHERE m.cid = ?`,
    );
    this.#size = db.prepare("SELECT size FROM block_meta WHERE cid = ?");
    this.#touch = db.prepare("UPDATE block_meta SET used_at = ? WHERE cid = ? AND used_at < ?");
    this.#pin = db.prepare("UPDATE block_meta SET pinned = 1 WHERE cid = ?");
    this.#delete = db.prepare("DELETE FROM blocks WHERE cid = ?");
    this.#deleteMeta = db.prepare("DELETE FROM block_meta WHERE cid = ?");
    this.#references = db.prepare(
      `SELECT j.job_id, j.role, j.state, r.kind, j.spec ->> '$.announce.buyerPeer' AS buyer_peer
       FROM block_refs r JOIN jobs j ON j.id = r.job WHERE r.cid = ? ORDER BY r.job DESC LIMIT ?`,
    );
    this.#evidence = db.prepare(
      "SELECT (SELECT pinned FROM block_meta WHERE cid = ?) = 1 OR EXISTS (SELECT 1 FROM receipts WHERE cid = ?) AS yes",
    );
    this.#total = db.prepare("SELECT COALESCE(SUM(size), 0) AS total FROM block_meta");
    const collectable = `b.pinned = 0
      AND NOT EXISTS (SELECT 1 FROM block_refs r JOIN jobs j ON j.id = r.job
        WHERE r.cid = b.cid AND j.state IN ${UNFINISHED_STATES})
      AND NOT EXISTS (SELECT 1 FROM receipts WHERE cid = b.cid)`;
    const recentOutput = `EXISTS (SELECT 1 FROM block_refs r JOIN jobs j ON j.id = r.job
        WHERE r.cid = b.cid AND r.kind = 'output' AND j.updated_at >= ?)`;
    // Both scan block_meta (small rows, no index to keep up on every put) once a collection.
    this.#idle = db.prepare(
      `SELECT b.cid, b.size FROM block_meta b
       WHERE b.used_at < ? AND ${collectable} AND NOT ${recentOutput}`,
    );
    this.#evictable = db.prepare(
      `SELECT b.cid, b.size, ${recentOutput} AS recent_output FROM block_meta b
       WHERE ${collectable} ORDER BY recent_output ASC, b.used_at ASC`,
    );
  }

  async put(bytes: Uint8Array): Promise<string> {
    checkBytes(bytes, "blocks.put");
    const cid = (await cidOf(bytes)).toString();
    this.#store(cid, bytes);
    return cid;
  }

  async putWithCid(cid: string, bytes: Uint8Array, options: { pin?: boolean } = {}): Promise<string> {
    const parsed = parseBlockCid(cid, "blocks.putWithCid");
    checkBytes(bytes, "blocks.putWithCid");
    const digest = createHash("sha256").update(bytes).digest();
    if (!digest.equals(parsed.multihash.digest)) {
      throw new Error(
        `blocks.putWithCid: the ${bytes.length} bytes do not hash to ${parsed.toString()} (sha2-256 mismatch)`,
      );
    }
    const canonical = parsed.toString();
    this.#store(canonical, bytes, options.pin === true);
    return canonical;
  }

  get(cid: string): Uint8Array | undefined {
    const key = parseBlockCid(cid, "blocks.get").toString();
    const row = this.#get.get(key) as { bytes: Uint8Array; used_at: number } | undefined;
    if (row !== undefined) this.#used(key, row.used_at);
    return row?.bytes;
  }

  read(cid: string, offset: number, length: number): { size: number; bytes: Uint8Array } | undefined {
    const key = parseBlockCid(cid, "blocks.read").toString();
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
      throw new Error(`blocks.read: offset ${offset} and length ${length} must be non-negative integers`);
    const row = this.#read.get(offset + 1, length, key) as
      { size: number; used_at: number; bytes: Uint8Array | null } | undefined;
    if (row === undefined) return undefined;
    if (offset === 0) this.#used(key, row.used_at);
    return { size: row.size, bytes: row.bytes ?? new Uint8Array(0) };
  }

  has(cid: string): boolean {
    return this.size(cid) !== undefined;
  }

  size(cid: string): number | undefined {
    const row = this.#size.get(parseBlockCid(cid, "blocks.size").toString()) as { size: number } | undefined;
    return row?.size;
  }

  delete(cid: string): boolean {
    const key = parseBlockCid(cid, "blocks.delete").toString();
    this.#deleteMeta.run(key);
    return this.#delete.run(key).changes > 0;
  }

  references(cid: string, limit = 64): BlockReference[] {
    const rows = this.#references.all(parseBlockCid(cid, "blocks.references").toString(), limit) as {
      job_id: string;
      role: string;
      state: string;
      kind: BlockReference["kind"];
      buyer_peer: string | null;
    }[];
    return rows.map((row) => ({
      jobId: row.job_id,
      role: row.role,
      state: row.state,
      kind: row.kind,
      buyerPeer: row.buyer_peer,
    }));
  }

  isEvidence(cid: string): boolean {
    const key = parseBlockCid(cid, "blocks.isEvidence").toString();
    return (this.#evidence.get(key, key) as { yes: number }).yes === 1;
  }

  totalBytes(): number {
    return (this.#total.get() as { total: number }).total;
  }

  collect(retention: Partial<BlockRetention> = {}): CollectionReport {
    const rules = { ...DEFAULT_BLOCK_RETENTION, ...retention };
    const now = this.#now();
    const outputsSince = now - rules.outputMs;
    let deleted = 0;
    let freedBytes = 0;
    const drop = (row: { cid: string; size: number }): void => {
      this.#deleteMeta.run(row.cid);
      if (this.#delete.run(row.cid).changes === 0) return;
      deleted += 1;
      freedBytes += row.size;
    };
    for (const row of this.#idle.all(now - rules.idleMs, outputsSince) as { cid: string; size: number }[])
      drop(row);
    let total = this.totalBytes();
    if (total > rules.maxBytes) {
      for (const row of this.#evictable.all(outputsSince) as { cid: string; size: number }[]) {
        if (total <= rules.maxBytes) break;
        drop(row);
        total -= row.size;
      }
    }
    return { deleted, freedBytes, totalBytes: this.totalBytes() };
  }

  #store(cid: string, bytes: Uint8Array, pin = false): void {
    const now = this.#now();
    this.#insert.run(cid, bytes, bytes.length, now);
    this.#insertMeta.run(cid, bytes.length, now, now, pin ? 1 : 0);
    if (pin) this.#pin.run(cid);
  }

  /**
   * Records a use for the eviction order, at most once per USE_GRANULARITY_MS, so most reads
   * write nothing; a failed write (a busy database) only loses the hint.
   */
  #used(cid: string, usedAt: number): void {
    const now = this.#now();
    if (usedAt >= now - USE_GRANULARITY_MS) return;
    try {
      this.#touch.run(now, cid, now - USE_GRANULARITY_MS);
    } catch {
      // the use is recorded by the next read
    }
  }
}

/** Parses a CID string the blockstore can hold: CIDv1, raw codec, sha2-256. */
export function parseBlockCid(cid: string, where: string): CID {
  let parsed: CID;
  try {
    parsed = CID.parse(cid);
  } catch {
    throw new Error(`${where}: '${String(cid).slice(0, 100)}' is not a valid CID`);
  }
  if (parsed.version !== 1 || parsed.code !== RAW_CODEC || parsed.multihash.code !== SHA2_256) {
    throw new Error(`${where}: ${parsed.toString()} is not a CIDv1 raw sha2-256 block CID`);
  }
  return parsed;
}

function checkBytes(bytes: Uint8Array, where: string): void {
  if (!(bytes instanceof Uint8Array)) throw new Error(`${where}: bytes must be a Uint8Array`);
  if (bytes.length > MAX_BLOCK_BYTES)
    throw new Error(
      `${where}: block is ${bytes.length} bytes, above the ${MAX_BLOCK_BYTES}-byte block limit (the largest of DATA_LIMITS)`,
    );
}
