import { createHash } from "node:crypto";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { CID, cidOf } from "../protocol/index.ts";

const RAW_CODEC = 0x55;
const SHA2_256 = 0x12;
export const MAX_BLOCK_BYTES = 64 * 1024 * 1024;

/** Content-addressed blocks (CIDv1, raw, sha2-256), durable once put resolves. */
export interface Blockstore {
  /** Stores bytes and returns their CID string. */
  put(bytes: Uint8Array): Promise<string>;
  /** Stores bytes that arrived under `cid`; throws when they do not hash to it. */
  putWithCid(cid: string, bytes: Uint8Array): Promise<string>;
  get(cid: string): Uint8Array | undefined;
  has(cid: string): boolean;
  size(cid: string): number | undefined;
  delete(cid: string): boolean;
}

export class SqliteBlockstore implements Blockstore {
  readonly #now: () => number;
  readonly #insert: StatementSync;
  readonly #get: StatementSync;
  readonly #has: StatementSync;
  readonly #delete: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#now = now;
    this.#insert = db.prepare(
      "INSERT INTO blocks (cid, bytes, size, stored_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    this.#get = db.prepare("SELECT bytes FROM blocks WHERE cid = ?");
    this.#has = db.prepare("SELECT size FROM blocks WHERE cid = ?");
    this.#delete = db.prepare("DELETE FROM blocks WHERE cid = ?");
  }

  async put(bytes: Uint8Array): Promise<string> {
    checkBytes(bytes, "blocks.put");
    const cid = (await cidOf(bytes)).toString();
    this.#insert.run(cid, bytes, bytes.length, this.#now());
    return cid;
  }

  async putWithCid(cid: string, bytes: Uint8Array): Promise<string> {
    const parsed = parseBlockCid(cid, "blocks.putWithCid");
    checkBytes(bytes, "blocks.putWithCid");
    const digest = createHash("sha256").update(bytes).digest();
    if (!digest.equals(parsed.multihash.digest)) {
      throw new Error(
        `blocks.putWithCid: the ${bytes.length} bytes do not hash to ${parsed.toString()} (sha2-256 mismatch)`,
      );
    }
    const canonical = parsed.toString();
    this.#insert.run(canonical, bytes, bytes.length, this.#now());
    return canonical;
  }

  get(cid: string): Uint8Array | undefined {
    const row = this.#get.get(parseBlockCid(cid, "blocks.get").toString()) as
      { bytes: Uint8Array } | undefined;
    return row?.bytes;
  }

  has(cid: string): boolean {
    return this.size(cid) !== undefined;
  }

  size(cid: string): number | undefined {
    const row = this.#has.get(parseBlockCid(cid, "blocks.size").toString()) as { size: number } | undefined;
    return row?.size;
  }

  delete(cid: string): boolean {
    return this.#delete.run(parseBlockCid(cid, "blocks.delete").toString()).changes > 0;
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
    throw new Error(`${where}: block is ${bytes.length} bytes, more than the ${MAX_BLOCK_BYTES}-byte limit`);
}
