import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { AssignmentsRepository } from "./assignments.ts";
import { BidsRepository } from "./bids.ts";
import { BuyerChannelsRepository } from "./buyer-channels.ts";
import { SqliteBlockstore, type Blockstore } from "./blockstore.ts";
import { IndexerRepository } from "./indexer.ts";
import { JobEventsRepository } from "./job-events.ts";
import { JobsRepository } from "./jobs.ts";
import { TrustRepository } from "./trust.ts";
import { MetaRepository } from "./meta.ts";
import { migrate, readSchemaVersion, type Migration, MIGRATIONS } from "./migrations.ts";
import { PayeeLedgerRepository } from "./payee-ledger.ts";
import { PeersRepository } from "./peers.ts";
import { ReceiptsRepository } from "./receipts.ts";
import { SettlementsRepository } from "./settlements.ts";
import { RelayVouchersRepository } from "./relay-vouchers.ts";
import { SlashesRepository } from "./slashes.ts";

export const DATABASE_FILE = "cell.db";
const IN_MEMORY = ":memory:";

export interface StoreLogger {
  info(fields: object, message: string): void;
}

export interface OpenStoreOptions {
  /** Clock for timestamps (unix ms); defaults to Date.now. */
  now?: () => number;
  logger?: StoreLogger;
  /** For tests of the migration machinery; defaults to MIGRATIONS. */
  migrations?: readonly Migration[];
  /** Milliseconds to wait for another connection's write lock (default 5000). */
  busyTimeoutMs?: number;
}

export interface Store {
  /** Directory of the database, or ":memory:". */
  readonly location: string;
  /** Path of the SQLite file, or ":memory:". */
  readonly path: string;
  readonly jobs: JobsRepository;
  readonly jobEvents: JobEventsRepository;
  readonly bids: BidsRepository;
  readonly assignments: AssignmentsRepository;
  readonly receipts: ReceiptsRepository;
  readonly peers: PeersRepository;
  /** Reputation and quarantine state (offchain/src/trust). */
  readonly trust: TrustRepository;
  readonly meta: MetaRepository;
  readonly blocks: Blockstore;
  /** Slash submissions this node owes the chain (evidence it verified). */
  readonly slashes: SlashesRepository;
  /** Payment channels this node pays through as a buyer, and its unacknowledged vouchers' jobs. */
  readonly buyerChannels: BuyerChannelsRepository;
  /** The settler's transaction journal, epochs and receipt membership. */
  readonly settlements: SettlementsRepository;
  /** A donor's channels, vouchers and earnings (offchain/src/payments/payee-ledger.ts). */
  readonly payeeLedger: PayeeLedgerRepository;
  /** Vouchers payees handed this node to settle for them (offchain/src/settlement/relay.ts). */
  readonly relayVouchers: RelayVouchersRepository;
  /** The chain index the explorer reads (offchain/src/indexer). */
  readonly indexer: IndexerRepository;
  schemaVersion(): number;
  /** The connection's journal mode and synchronous level, e.g. { journalMode: "wal", synchronous: "full" }. */
  durability(): { journalMode: string; synchronous: string };
  /** Runs `fn` atomically (synchronous work only); nests as savepoints. */
  transaction<T>(fn: () => T): T;
  /**
   * Group commit: queues `fn` and runs it, together with every other write queued in the
   * same turn of the event loop, in one transaction (one fsync). Resolves once the commit
   * is on disk; a throwing `fn` rolls back only its own writes and rejects only its promise.
   * With `durable: false` the commit skips the fsync: it survives a crash of the process,
   * not of the machine, until the next durable commit or checkpoint syncs the log. For
   * progress that can be redone (job steps, indexes); statements that may reach a contract
   * are committed durably.
   */
  commit<T>(fn: () => T, options?: CommitOptions): Promise<T>;
  close(): void;
}

export interface CommitOptions {
  /** fsync before resolving (default true). */
  durable?: boolean;
}

/**
 * Opens (creating if needed) the node's store in `dir` (`<dir>/cell.db`), or an in-memory
 * one for ":memory:". Every write is committed with WAL and synchronous=FULL, so it is on
 * disk before the call returns.
 */
export function openStore(dir: string, options: OpenStoreOptions = {}): Store {
  if (typeof dir !== "string" || dir.length === 0)
    throw new Error('openStore: directory is empty (pass a path or ":memory:")');
  const path = dir === IN_MEMORY ? IN_MEMORY : join(dir, DATABASE_FILE);
  if (dir !== IN_MEMORY) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const db = openDatabase(path, options.busyTimeoutMs ?? 5000);
  const now = options.now ?? Date.now;
  try {
    const applied = migrate(db, options.migrations ?? MIGRATIONS, now);
    if (applied.length > 0) options.logger?.info({ path, applied }, "store migrated");
  } catch (error) {
    db.close();
    throw error;
  }
  return createStore(db, dir, path, now);
}

function openDatabase(path: string, busyTimeoutMs: number): DatabaseSync {
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { timeout: busyTimeoutMs });
  } catch (error) {
    throw new Error(`cannot open store ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    if (path !== IN_MEMORY) {
      const { journal_mode: mode } = db.prepare("PRAGMA journal_mode = WAL").get() as {
        journal_mode: string;
      };
      if (mode !== "wal") throw new Error(`journal_mode is '${mode}', expected 'wal'`);
    }
    // temp_store = MEMORY keeps savepoint journals in memory: group commit opens a savepoint
    // per queued write, and each one otherwise copies every page it touches to a temp file.
    db.exec("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;");
  } catch (error) {
    db.close();
    throw new Error(`cannot configure store ${path}: ${(error as Error).message}`, { cause: error });
  }
  return db;
}

const SYNCHRONOUS_LEVELS = ["off", "normal", "full", "extra"];

function readDurability(db: DatabaseSync): { journalMode: string; synchronous: string } {
  const { journal_mode: journalMode } = db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
  const { synchronous } = db.prepare("PRAGMA synchronous").get() as { synchronous: number };
  return { journalMode, synchronous: SYNCHRONOUS_LEVELS[synchronous] ?? String(synchronous) };
}

function createStore(db: DatabaseSync, location: string, path: string, now: () => number): Store {
  let open = true;
  const transaction = nestedTransactions(db);
  const commit = groupCommit(transaction, synchronousLevels(db), () => open);
  return {
    location,
    path,
    jobs: new JobsRepository(db, now),
    jobEvents: new JobEventsRepository(db, now),
    bids: new BidsRepository(db, now),
    assignments: new AssignmentsRepository(db, now),
    receipts: new ReceiptsRepository(db, now),
    peers: new PeersRepository(db, now),
    trust: new TrustRepository(db),
    meta: new MetaRepository(db),
    blocks: new SqliteBlockstore(db, now),
    slashes: new SlashesRepository(db, now),
    buyerChannels: new BuyerChannelsRepository(db, now),
    settlements: new SettlementsRepository(db, now),
    payeeLedger: new PayeeLedgerRepository(db, now),
    relayVouchers: new RelayVouchersRepository(db),
    indexer: new IndexerRepository(db),
    schemaVersion: () => readSchemaVersion(db),
    durability: () => readDurability(db),
    transaction,
    commit,
    close: () => {
      if (!open) return;
      commit.flush();
      open = false;
      db.close();
    },
  };
}

type Transaction = <T>(fn: () => T) => T;

interface TransactionControl {
  begin(): void;
  commit(): void;
  rollback(): void;
}

/**
 * store.transaction: BEGIN IMMEDIATE at the top, a savepoint per nested level. The control
 * statements are prepared once per level: group commit opens a savepoint per queued write.
 */
function nestedTransactions(db: DatabaseSync): Transaction {
  const levels: TransactionControl[] = [];
  let depth = 0;
  return <T>(fn: () => T): T => {
    const level = (levels[depth] ??= depth === 0 ? topLevel(db) : savepoint(db, `sp${depth}`));
    level.begin();
    depth += 1;
    try {
      const result = synchronous(fn());
      level.commit();
      return result;
    } catch (error) {
      level.rollback();
      throw error;
    } finally {
      depth -= 1;
    }
  };
}

function topLevel(db: DatabaseSync): TransactionControl {
  const begin = db.prepare("BEGIN IMMEDIATE");
  const commit = db.prepare("COMMIT");
  const rollback = db.prepare("ROLLBACK");
  return { begin: () => begin.run(), commit: () => commit.run(), rollback: () => rollback.run() };
}

function savepoint(db: DatabaseSync, name: string): TransactionControl {
  const begin = db.prepare(`SAVEPOINT ${name}`);
  const release = db.prepare(`RELEASE ${name}`);
  const rollbackTo = db.prepare(`ROLLBACK TO ${name}`);
  return {
    begin: () => begin.run(),
    commit: () => release.run(),
    // ROLLBACK TO undoes the writes but keeps the savepoint open; RELEASE then closes it.
    rollback: () => {
      rollbackTo.run();
      release.run();
    },
  };
}

interface QueuedWrite {
  fn: () => unknown;
  durable: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type GroupCommit = (<T>(fn: () => T, options?: CommitOptions) => Promise<T>) & { flush(): void };

/** Switches the connection between synchronous=NORMAL (no fsync per commit, in WAL mode) and FULL. */
function synchronousLevels(db: DatabaseSync): { relaxed(): void; full(): void } {
  const normal = db.prepare("PRAGMA synchronous = NORMAL");
  const full = db.prepare("PRAGMA synchronous = FULL");
  return { relaxed: () => normal.run(), full: () => full.run() };
}

function groupCommit(
  transaction: Transaction,
  levels: { relaxed(): void; full(): void },
  isOpen: () => boolean,
): GroupCommit {
  let queue: QueuedWrite[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const batch = queue;
    queue = [];
    if (batch.length === 0) return;
    const durable = batch.some((write) => write.durable);
    if (!durable) levels.relaxed();
    try {
      if (batch.length === 1) commitAlone(transaction, batch[0]!);
      else commitTogether(transaction, batch);
    } finally {
      if (!durable) levels.full();
    }
  };
  const enqueue = <T>(fn: () => T, options: CommitOptions = {}): Promise<T> => {
    if (!isOpen()) return Promise.reject(new Error("store.commit: the store is closed"));
    return new Promise<T>((resolve, reject) => {
      queue.push({
        fn,
        durable: options.durable ?? true,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
  };
  return Object.assign(enqueue, { flush });
}

/** A write alone in its batch is the whole transaction: rolling it back undoes nothing else. */
function commitAlone(transaction: Transaction, write: QueuedWrite): void {
  let writeFailed = false;
  let value: unknown;
  try {
    value = transaction(() => {
      try {
        return synchronous(write.fn());
      } catch (error) {
        writeFailed = true;
        throw error;
      }
    });
  } catch (error) {
    write.reject(writeFailed ? error : commitFailed(error));
    return;
  }
  write.resolve(value);
}

/** Each write in its own savepoint, so a failing one rolls back alone and the rest commit. */
function commitTogether(transaction: Transaction, batch: readonly QueuedWrite[]): void {
  const settled: Array<() => void> = [];
  try {
    transaction(() => {
      for (const write of batch) {
        try {
          const value = transaction(write.fn);
          settled.push(() => write.resolve(value));
        } catch (error) {
          settled.push(() => write.reject(error));
        }
      }
    });
  } catch (error) {
    const failure = commitFailed(error);
    for (const write of batch) write.reject(failure);
    return;
  }
  for (const settle of settled) settle();
}

function commitFailed(error: unknown): Error {
  return new Error(`store commit failed: ${(error as Error).message}`, { cause: error });
}

function synchronous<T>(result: T): T {
  if (result instanceof Promise) throw new Error("store.transaction: fn must be synchronous");
  return result;
}
