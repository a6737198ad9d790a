import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { Address, Hex } from "viem";
import {
  num,
  numOrNull,
  optionalTimestamp,
  requireAddress,
  requireHex,
  requireText,
  str,
  strOrNull,
  type SqlRow,
} from "./codec.ts";
import { StatementCache } from "./statements.ts";

export interface PeerRow {
  peerId: string;
  operator: Address | null;
  /** Ed25519 public key, 0x + 32 bytes, as registered on-chain. */
  peerKey: Hex | null;
  /** Last known multiaddrs. */
  addrs: string[];
  lastSeen: number | null;
  /** Placeholder score until the trust layer computes one. */
  reputation: number;
  /** Count of rejected or abusive messages from this peer. */
  penalties: number;
  updatedAt: number;
}

/** Fields left undefined keep their stored value. */
export interface PeerUpdate {
  peerId: string;
  operator?: string | null;
  peerKey?: string | null;
  addrs?: readonly string[];
  lastSeen?: number | null;
  reputation?: number;
}

const COLUMNS = "peer_id, operator, peer_key, addrs, last_seen, reputation, penalties, updated_at";
const MAX_ADDRS = 32;

export class PeersRepository {
  readonly #statements: StatementCache;
  readonly #now: () => number;
  readonly #get: StatementSync;
  readonly #ensure: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#statements = new StatementCache(db);
    this.#now = now;
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM peers WHERE peer_id = ?`);
    this.#ensure = db.prepare("INSERT INTO peers (peer_id, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING");
  }

  /** Inserts or merges what is known about a peer. */
  upsert(update: PeerUpdate): PeerRow {
    const peerId = requireText(update.peerId, "peers.upsert: peerId", 256);
    const sets: string[] = [];
    const values: Array<string | number | null> = [];
    const set = (column: string, value: string | number | null) => {
      sets.push(`${column} = ?`);
      values.push(value);
    };
    if (update.operator !== undefined)
      set(
        "operator",
        update.operator === null ? null : requireAddress(update.operator, "peers.upsert: operator"),
      );
    if (update.peerKey !== undefined)
      set(
        "peer_key",
        update.peerKey === null ? null : requireHex(update.peerKey, "peers.upsert: peerKey", 32),
      );
    if (update.addrs !== undefined) set("addrs", JSON.stringify(checkAddrs(update.addrs)));
    if (update.lastSeen !== undefined)
      set("last_seen", optionalTimestamp(update.lastSeen, "peers.upsert: lastSeen"));
    if (update.reputation !== undefined) set("reputation", checkReputation(update.reputation));
    return this.#write(peerId, sets, values);
  }

  get(peerId: string): PeerRow | undefined {
    const row = this.#get.get(peerId) as SqlRow | undefined;
    return row && toPeerRow(row);
  }

  /** Known peers, most recently seen first. */
  list(options: { limit?: number } = {}): PeerRow[] {
    const rows = this.#statements
      .get(`SELECT ${COLUMNS} FROM peers ORDER BY last_seen IS NULL, last_seen DESC, peer_id ASC LIMIT ?`)
      .all(options.limit ?? -1);
    return (rows as SqlRow[]).map(toPeerRow);
  }

  touch(peerId: string, at: number = this.#now()): PeerRow {
    return this.upsert({ peerId, lastSeen: at });
  }

  /** Adds `count` penalties and returns the peer with its new total. */
  penalize(peerId: string, count = 1): PeerRow {
    if (!Number.isSafeInteger(count) || count < 1)
      throw new Error(`peers.penalize: count must be a positive integer, got ${count}`);
    return this.#write(
      requireText(peerId, "peers.penalize: peerId", 256),
      ["penalties = penalties + ?"],
      [count],
    );
  }

  setReputation(peerId: string, reputation: number): PeerRow {
    return this.upsert({ peerId, reputation });
  }

  #write(peerId: string, sets: string[], values: Array<string | number | null>): PeerRow {
    const now = this.#now();
    this.#ensure.run(peerId, now);
    this.#statements
      .get(`UPDATE peers SET ${[...sets, "updated_at = ?"].join(", ")} WHERE peer_id = ?`)
      .run(...values, now, peerId);
    return this.get(peerId) as PeerRow;
  }
}

function checkAddrs(addrs: readonly string[]): string[] {
  if (!Array.isArray(addrs) || addrs.length > MAX_ADDRS)
    throw new Error(`peers.upsert: addrs must be an array of at most ${MAX_ADDRS} strings`);
  return addrs.map((addr, index) => requireText(addr, `peers.upsert: addrs[${index}]`, 512));
}

function checkReputation(value: number): number {
  if (!Number.isFinite(value)) throw new Error(`peers: reputation must be a finite number, got ${value}`);
  return value;
}

function toPeerRow(row: SqlRow): PeerRow {
  return {
    peerId: str(row, "peer_id"),
    operator: strOrNull(row, "operator") as Address | null,
    peerKey: strOrNull(row, "peer_key") as Hex | null,
    addrs: JSON.parse(str(row, "addrs")) as string[],
    lastSeen: numOrNull(row, "last_seen"),
    reputation: num(row, "reputation"),
    penalties: num(row, "penalties"),
    updatedAt: num(row, "updated_at"),
  };
}
