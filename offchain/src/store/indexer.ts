// The chain index the explorer reads (migrations 11 and 14). Bound: the followed contracts' history
// from their deployment block, one row per event (plus one per settled voucher); nothing is
// evicted while its block stands. A reorganisation deletes every row from its first changed
// block on (rollbackFrom). Block hashes are kept for the last INDEXED_BLOCKS_KEPT blocks only.
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { toHex } from "viem";
import type { Address, Hex } from "viem";
import { encodeJson } from "./codec.ts";
import { StatementCache } from "./statements.ts";

/** Block hashes kept for the reorganisation check: deeper reorganisations rebuild the index. */
export const INDEXED_BLOCKS_KEPT = 1_024;
/** Largest page an explorer query returns. */
export const EXPLORER_PAGE_MAX = 500;

/** The rows of one indexed range, shaped like indexer/core.ts IndexRows (kept structural to avoid a store→indexer import). */
export interface IndexBatch {
  donorEvents: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    donor: Address;
    kind: string;
    operator?: Address;
    amount?: bigint;
    bonded: bigint;
    unbonding: bigint;
    data?: Record<string, unknown>;
  }[];
  slashes: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    donor: Address;
    kind: string;
    operator?: Address;
    jobId?: Hex;
    reporter?: Address;
    amount: bigint;
    reward?: bigint;
  }[];
  channels: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    channelId: Hex;
    buyer: Address;
    payee: Address;
    signer: Address;
    nonce: bigint;
  }[];
  channelEvents: readonly {
    block: number;
    logIndex: number;
    position: number;
    tx: Hex;
    channelId: Hex;
    kind: string;
    amount?: bigint;
    deposit: bigint;
    paid: bigint;
    closesAt?: bigint;
    status: string;
  }[];
  settlements: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    submitter: Address;
    vouchers: number;
    total: bigint;
    paidBitmap: readonly bigint[];
    decoded: boolean;
  }[];
  settlementVouchers: readonly {
    tx: Hex;
    block: number;
    position: number;
    channelId: Hex;
    buyer: Address;
    signer: Address;
    payee: Address;
    nonce: bigint;
    cumulativeAmount: bigint;
    paid: boolean;
  }[];
  payeeTotals: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    payee: Address;
    kind: string;
    amount: bigint;
  }[];
  anchors: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    submitter: Address;
    epoch: bigint;
    receiptRoot: Hex;
    receiptCount: bigint;
  }[];
  courtEvents: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    caseId: bigint;
    kind: string;
    account?: Address;
    data: Record<string, unknown>;
  }[];
  zkChannels: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    leaf: number;
    buyer: Address;
    payee: Address;
    signer: Address;
    ax: bigint;
    ay: bigint;
  }[];
  zkChannelEvents: readonly ({
    block: number;
    logIndex: number;
    position: number;
    tx: Hex;
    leaf: number;
    kind: string;
    amount?: bigint;
  } & ZkBalance)[];
  zkBatches: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    batch: bigint;
    submitter: Address;
    oldRoot: bigint;
    newRoot: bigint;
    queueFrom: bigint;
    queueTo: bigint;
    transfers: readonly { leaf: number; cumulative: bigint }[];
  }[];
  zkPayouts: readonly {
    block: number;
    logIndex: number;
    tx: Hex;
    leaf: number;
    kind: string;
    to: Address;
    amount: bigint;
    cumulative?: bigint;
  }[];
}

/** A zk channel's balance after an event (indexer/zk.ts ZkChannelBalance). */
export interface ZkBalance {
  deposited: bigint;
  withdrawn: bigint;
  paid: bigint;
  closesAt?: bigint;
  status: "open" | "closing" | "closed" | "refunded";
}

export interface Page<T> {
  items: T[];
  /** Pass as `cursor` for the next page; absent on the last page. */
  nextCursor?: string;
}

export interface PageQuery {
  limit: number;
  /** Opaque: the nextCursor of the previous page. */
  cursor?: string;
}

type Row = Record<string, unknown>;

const TABLES_BY_BLOCK = [
  "idx_block_times",
  "idx_donor_events",
  "idx_slashes",
  "idx_channels",
  "idx_channel_events",
  "idx_settlements",
  "idx_settlement_vouchers",
  "idx_payee_totals",
  "idx_anchors",
  "idx_court_events",
  "idx_zk_channels",
  "idx_zk_channel_events",
  "idx_zk_batches",
  "idx_zk_payouts",
] as const;

export class IndexerRepository {
  readonly #cache: StatementCache;
  readonly #insert: Record<keyof IndexBatch, StatementSync>;
  readonly #insertBlock: StatementSync;
  readonly #insertTime: StatementSync;

  constructor(db: DatabaseSync) {
    this.#cache = new StatementCache(db);
    const insert = (table: string, columns: string[]) =>
      db.prepare(
        `INSERT OR REPLACE INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`,
      );
    this.#insert = {
      donorEvents: insert("idx_donor_events", [
        "block",
        "log_index",
        "tx",
        "donor",
        "kind",
        "operator",
        "amount",
        "bonded",
        "unbonding",
        "data",
      ]),
      slashes: insert("idx_slashes", [
        "block",
        "log_index",
        "tx",
        "donor",
        "operator",
        "job_id",
        "kind",
        "reporter",
        "amount",
        "reward",
      ]),
      channels: insert("idx_channels", [
        "channel_id",
        "buyer",
        "payee",
        "signer",
        "nonce",
        "block",
        "log_index",
        "tx",
      ]),
      channelEvents: insert("idx_channel_events", [
        "block",
        "log_index",
        "position",
        "tx",
        "channel_id",
        "kind",
        "amount",
        "deposit",
        "paid",
        "closes_at",
        "state",
      ]),
      settlements: insert("idx_settlements", [
        "tx",
        "block",
        "log_index",
        "submitter",
        "vouchers",
        "total",
        "paid_bitmap",
        "decoded",
      ]),
      settlementVouchers: insert("idx_settlement_vouchers", [
        "tx",
        "position",
        "block",
        "channel_id",
        "buyer",
        "signer",
        "payee",
        "nonce",
        "cumulative_amount",
        "paid",
      ]),
      payeeTotals: insert("idx_payee_totals", ["block", "log_index", "tx", "payee", "kind", "amount"]),
      anchors: insert("idx_anchors", [
        "block",
        "log_index",
        "tx",
        "submitter",
        "epoch",
        "receipt_root",
        "receipt_count",
      ]),
      courtEvents: insert("idx_court_events", [
        "block",
        "log_index",
        "tx",
        "case_id",
        "kind",
        "account",
        "data",
      ]),
      zkChannels: insert("idx_zk_channels", [
        "leaf",
        "buyer",
        "payee",
        "signer",
        "ax",
        "ay",
        "block",
        "log_index",
        "tx",
      ]),
      zkChannelEvents: insert("idx_zk_channel_events", [
        "block",
        "log_index",
        "position",
        "tx",
        "leaf",
        "kind",
        "amount",
        "deposited",
        "withdrawn",
        "paid",
        "closes_at",
        "state",
      ]),
      zkBatches: insert("idx_zk_batches", [
        "block",
        "log_index",
        "tx",
        "batch",
        "submitter",
        "old_root",
        "new_root",
        "queue_from",
        "queue_to",
        "transfer_count",
        "transfers",
      ]),
      zkPayouts: insert("idx_zk_payouts", [
        "block",
        "log_index",
        "tx",
        "leaf",
        "kind",
        "to_address",
        "amount",
        "cumulative",
      ]),
    };
    this.#insertBlock = db.prepare("INSERT OR REPLACE INTO idx_blocks (number, hash) VALUES (?, ?)");
    this.#insertTime = db.prepare("INSERT OR REPLACE INTO idx_block_times (block, timestamp) VALUES (?, ?)");
  }

  /** Writes one range's rows and the hashes of its blocks (run inside a store transaction). */
  write(
    rows: IndexBatch,
    blocks: readonly { number: bigint; hash: Hex }[],
    times: ReadonlyMap<bigint, bigint> = new Map(),
  ): void {
    const ins = this.#insert;
    for (const r of rows.donorEvents)
      ins.donorEvents.run(
        r.block,
        r.logIndex,
        r.tx,
        r.donor,
        r.kind,
        r.operator ?? null,
        text(r.amount),
        `${r.bonded}`,
        `${r.unbonding}`,
        r.data ? encodeJson(r.data, "data") : null,
      );
    for (const r of rows.slashes)
      ins.slashes.run(
        r.block,
        r.logIndex,
        r.tx,
        r.donor,
        r.operator ?? null,
        r.jobId ?? null,
        r.kind,
        r.reporter ?? null,
        `${r.amount}`,
        text(r.reward),
      );
    for (const r of rows.channels)
      ins.channels.run(r.channelId, r.buyer, r.payee, r.signer, `${r.nonce}`, r.block, r.logIndex, r.tx);
    for (const r of rows.channelEvents)
      ins.channelEvents.run(
        r.block,
        r.logIndex,
        r.position,
        r.tx,
        r.channelId,
        r.kind,
        text(r.amount),
        `${r.deposit}`,
        `${r.paid}`,
        text(r.closesAt),
        r.status,
      );
    for (const r of rows.settlements)
      ins.settlements.run(
        r.tx,
        r.block,
        r.logIndex,
        r.submitter,
        r.vouchers,
        `${r.total}`,
        encodeJson(r.paidBitmap, "paidBitmap"),
        r.decoded ? 1 : 0,
      );
    for (const r of rows.settlementVouchers)
      ins.settlementVouchers.run(
        r.tx,
        r.position,
        r.block,
        r.channelId,
        r.buyer,
        r.signer,
        r.payee,
        `${r.nonce}`,
        `${r.cumulativeAmount}`,
        r.paid ? 1 : 0,
      );
    for (const r of rows.payeeTotals)
      ins.payeeTotals.run(r.block, r.logIndex, r.tx, r.payee, r.kind, `${r.amount}`);
    for (const r of rows.anchors)
      ins.anchors.run(
        r.block,
        r.logIndex,
        r.tx,
        r.submitter,
        `${r.epoch}`,
        r.receiptRoot,
        `${r.receiptCount}`,
      );
    for (const r of rows.courtEvents)
      ins.courtEvents.run(
        r.block,
        r.logIndex,
        r.tx,
        `${r.caseId}`,
        r.kind,
        r.account ?? null,
        encodeJson(r.data, "data"),
      );
    this.#writeZk(rows);
    for (const block of blocks) this.#insertBlock.run(Number(block.number), block.hash);
    for (const [block, timestamp] of times) this.#insertTime.run(Number(block), Number(timestamp));
    const newest = blocks.at(-1);
    if (newest !== undefined)
      this.#cache
        .get("DELETE FROM idx_blocks WHERE number <= ?")
        .run(Number(newest.number) - INDEXED_BLOCKS_KEPT);
  }

  #writeZk(rows: IndexBatch): void {
    const ins = this.#insert;
    for (const r of rows.zkChannels)
      ins.zkChannels.run(r.leaf, r.buyer, r.payee, r.signer, `${r.ax}`, `${r.ay}`, r.block, r.logIndex, r.tx);
    for (const r of rows.zkChannelEvents)
      ins.zkChannelEvents.run(
        r.block,
        r.logIndex,
        r.position,
        r.tx,
        r.leaf,
        r.kind,
        text(r.amount),
        `${r.deposited}`,
        `${r.withdrawn}`,
        `${r.paid}`,
        text(r.closesAt),
        r.status,
      );
    for (const r of rows.zkBatches)
      ins.zkBatches.run(
        r.block,
        r.logIndex,
        r.tx,
        Number(r.batch),
        r.submitter,
        fieldHex(r.oldRoot),
        fieldHex(r.newRoot),
        Number(r.queueFrom),
        Number(r.queueTo),
        r.transfers.length,
        encodeJson(
          r.transfers.map((t) => ({ leaf: t.leaf, cumulative: `${t.cumulative}` })),
          "transfers",
        ),
      );
    for (const r of rows.zkPayouts)
      ins.zkPayouts.run(r.block, r.logIndex, r.tx, r.leaf, r.kind, r.to, `${r.amount}`, text(r.cumulative));
  }

  /** Deletes every row of `block` and later blocks, and their hashes (a reorganisation). */
  rollbackFrom(block: bigint): void {
    const from = Number(block);
    for (const table of TABLES_BY_BLOCK) this.#cache.get(`DELETE FROM ${table} WHERE block >= ?`).run(from);
    this.#cache.get("DELETE FROM idx_blocks WHERE number >= ?").run(from);
  }

  /** The newest indexed block and its hash. */
  head(): { number: bigint; hash: Hex } | undefined {
    const row = this.#cache.get("SELECT number, hash FROM idx_blocks ORDER BY number DESC LIMIT 1").get() as
      { number: number; hash: Hex } | undefined;
    return row && { number: BigInt(row.number), hash: row.hash };
  }

  /** The kept block hashes below `block`, newest first (to find where a reorganisation began). */
  blocksBefore(block: bigint, limit: number): { number: bigint; hash: Hex }[] {
    const rows = this.#cache
      .get("SELECT number, hash FROM idx_blocks WHERE number < ? ORDER BY number DESC LIMIT ?")
      .all(Number(block), limit) as { number: number; hash: Hex }[];
    return rows.map((row) => ({ number: BigInt(row.number), hash: row.hash }));
  }

  /** The latest stake of each donor given (absent: none indexed). */
  stakesOf(donors: readonly Address[]): Map<Address, { bonded: bigint; unbonding: bigint }> {
    const latest = this.#cache.get(
      "SELECT bonded, unbonding FROM idx_donor_events WHERE donor = ? ORDER BY block DESC, log_index DESC LIMIT 1",
    );
    const found = new Map<Address, { bonded: bigint; unbonding: bigint }>();
    for (const donor of donors) {
      const row = latest.get(donor) as { bonded: string; unbonding: string } | undefined;
      if (row) found.set(donor, { bonded: BigInt(row.bonded), unbonding: BigInt(row.unbonding) });
    }
    return found;
  }

  /** The latest balance of each channel given (absent: none indexed). */
  channelsOf(
    ids: readonly Hex[],
  ): Map<Hex, { deposit: bigint; paid: bigint; closesAt?: bigint; status: "open" | "closing" | "closed" }> {
    const latest = this.#cache.get(
      "SELECT deposit, paid, closes_at, state FROM idx_channel_events WHERE channel_id = ? ORDER BY block DESC, log_index DESC, position DESC LIMIT 1",
    );
    const found = new Map<
      Hex,
      { deposit: bigint; paid: bigint; closesAt?: bigint; status: "open" | "closing" | "closed" }
    >();
    for (const id of ids) {
      const row = latest.get(id) as
        { deposit: string; paid: string; closes_at: string | null; state: string } | undefined;
      if (row)
        found.set(id, {
          deposit: BigInt(row.deposit),
          paid: BigInt(row.paid),
          ...(row.closes_at === null ? {} : { closesAt: BigInt(row.closes_at) }),
          status: row.state as "open" | "closing" | "closed",
        });
    }
    return found;
  }

  /** The latest balance of each zk channel leaf given (absent: none indexed). */
  zkChannelsOf(leaves: readonly number[]): Map<number, ZkBalance> {
    const latest = this.#cache.get(
      "SELECT deposited, withdrawn, paid, closes_at, state FROM idx_zk_channel_events WHERE leaf = ? ORDER BY block DESC, log_index DESC, position DESC LIMIT 1",
    );
    const found = new Map<number, ZkBalance>();
    for (const leaf of leaves) {
      const row = latest.get(leaf) as
        | { deposited: string; withdrawn: string; paid: string; closes_at: string | null; state: string }
        | undefined;
      if (row)
        found.set(leaf, {
          deposited: BigInt(row.deposited),
          withdrawn: BigInt(row.withdrawn),
          paid: BigInt(row.paid),
          ...(row.closes_at === null ? {} : { closesAt: BigInt(row.closes_at) }),
          status: row.state as ZkBalance["status"],
        });
    }
    return found;
  }

  /** Rows in the index, by table (for progress and benchmarks). */
  counts(): Record<string, number> {
    return Object.fromEntries(
      TABLES_BY_BLOCK.map((table) => [
        table,
        (this.#cache.get(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n,
      ]),
    );
  }

  // ---------------------------------------------------------------- explorer queries

  /** Each donor's current stake and operator, by address. */
  stakes(query: PageQuery & { donor?: Address }): Page<Row> {
    const rows = this.#cache
      .get(
        `SELECT d.donor, d.bonded, d.unbonding, d.block AS updatedBlock,
           (SELECT operator FROM idx_donor_events o WHERE o.donor = d.donor AND o.kind IN ('registered', 'rotated')
             ORDER BY o.block DESC, o.log_index DESC LIMIT 1) AS operator,
           (SELECT COUNT(*) FROM idx_slashes s WHERE s.donor = d.donor) AS slashes
         FROM idx_donor_events d
         WHERE (? IS NULL OR d.donor = ?) AND (? IS NULL OR d.donor > ?)
           AND NOT EXISTS (SELECT 1 FROM idx_donor_events e WHERE e.donor = d.donor
             AND (e.block > d.block OR (e.block = d.block AND e.log_index > d.log_index)))
         ORDER BY d.donor LIMIT ?`,
      )
      .all(
        query.donor ?? null,
        query.donor ?? null,
        query.cursor ?? null,
        query.cursor ?? null,
        query.limit + 1,
      ) as Row[];
    return pageByKey(rows, query.limit, (row) => row.donor as string);
  }

  /** A donor's events (newest first), current stake, slashes by kind and court events. */
  donor(
    donor: Address,
    page: PageQuery,
  ): {
    stake: Row | undefined;
    faults: Record<string, number>;
    history: Page<Row>;
    court: Row[];
  } {
    const [block, logIndex] = cursorParts(page.cursor);
    const history = this.#cache
      .get(
        `SELECT block, log_index AS logIndex, tx, kind, operator, amount, bonded, unbonding, data, (SELECT timestamp FROM idx_block_times t WHERE t.block = idx_donor_events.block) AS at
         FROM idx_donor_events WHERE donor = ? AND (block < ? OR (block = ? AND log_index < ?))
         ORDER BY block DESC, log_index DESC LIMIT ?`,
      )
      .all(donor, block, block, logIndex, page.limit + 1) as Row[];
    const stake = this.stakes({ limit: 1, donor }).items[0];
    const faults = Object.fromEntries(
      (
        this.#cache
          .get("SELECT kind, COUNT(*) AS n FROM idx_slashes WHERE donor = ? GROUP BY kind")
          .all(donor) as {
          kind: string;
          n: number;
        }[]
      ).map((row) => [row.kind, row.n]),
    );
    const court = this.#cache
      .get(
        `SELECT block, log_index AS logIndex, tx, case_id AS caseId, kind, data, (SELECT timestamp FROM idx_block_times t WHERE t.block = idx_court_events.block) AS at FROM idx_court_events
         WHERE account = ? ORDER BY block DESC, log_index DESC LIMIT ?`,
      )
      .all(donor, EXPLORER_PAGE_MAX) as Row[];
    return {
      stake,
      faults,
      history: pageByPlace(history.map(withData), page.limit),
      court: court.map(withData),
    };
  }

  /** Channels, newest first, with their current balance. */
  channels(query: PageQuery & { address?: Address; channel?: Hex }): Page<Row> {
    const [block, logIndex] = cursorParts(query.cursor);
    const rows = this.#cache
      .get(
        `SELECT c.channel_id AS channelId, c.buyer, c.payee, c.signer, c.nonce, c.block, c.log_index AS logIndex, c.tx, (SELECT timestamp FROM idx_block_times t WHERE t.block = c.block) AS at,
           e.deposit, e.paid, e.closes_at AS closesAt, e.state AS status, e.block AS updatedBlock
         FROM idx_channels c JOIN idx_channel_events e ON e.rowid = (
           SELECT rowid FROM idx_channel_events WHERE channel_id = c.channel_id
           ORDER BY block DESC, log_index DESC, position DESC LIMIT 1)
         WHERE (? IS NULL OR c.buyer = ? OR c.payee = ? OR c.signer = ?) AND (? IS NULL OR c.channel_id = ?)
           AND (c.block < ? OR (c.block = ? AND c.log_index < ?))
         ORDER BY c.block DESC, c.log_index DESC LIMIT ?`,
      )
      .all(
        ...repeat(query.address ?? null, 4),
        ...repeat(query.channel ?? null, 2),
        block,
        block,
        logIndex,
        query.limit + 1,
      ) as Row[];
    return pageByPlace(rows, query.limit);
  }

  /** A channel's events, oldest first (what it was paid and when). */
  channelEvents(channel: Hex, limit: number): Row[] {
    return this.#cache
      .get(
        `SELECT block, log_index AS logIndex, position, tx, kind, amount, deposit, paid, closes_at AS closesAt, state AS status,
           (SELECT timestamp FROM idx_block_times t WHERE t.block = idx_channel_events.block) AS at
         FROM idx_channel_events WHERE channel_id = ? ORDER BY block, log_index, position LIMIT ?`,
      )
      .all(channel, limit) as Row[];
  }

  /** Settlements, newest first, with their receipt anchor; filters: submitter, epoch, a payee or channel they paid. */
  settlements(
    query: PageQuery & { submitter?: Address; epoch?: bigint; payee?: Address; channel?: Hex },
  ): Page<Row> {
    const [block, logIndex] = cursorParts(query.cursor);
    const epoch = query.epoch === undefined ? null : `${query.epoch}`;
    const rows = this.#cache
      .get(
        `SELECT s.tx, s.block, s.log_index AS logIndex, s.submitter, s.vouchers, s.total, s.paid_bitmap AS paidBitmap,
           s.decoded, a.epoch, a.receipt_root AS receiptRoot, a.receipt_count AS receiptCount, (SELECT timestamp FROM idx_block_times t WHERE t.block = s.block) AS at
         FROM idx_settlements s LEFT JOIN idx_anchors a ON a.tx = s.tx
         WHERE (s.block < ? OR (s.block = ? AND s.log_index < ?))
           AND (? IS NULL OR s.submitter = ?) AND (? IS NULL OR a.epoch = ?)
           AND (? IS NULL OR EXISTS (SELECT 1 FROM idx_payee_totals p WHERE p.tx = s.tx AND p.payee = ?))
           AND (? IS NULL OR EXISTS (SELECT 1 FROM idx_settlement_vouchers v WHERE v.tx = s.tx AND v.channel_id = ?))
         ORDER BY s.block DESC, s.log_index DESC LIMIT ?`,
      )
      .all(
        block,
        block,
        logIndex,
        ...repeat(query.submitter ?? null, 2),
        ...repeat(epoch, 2),
        ...repeat(query.payee ?? null, 2),
        ...repeat(query.channel ?? null, 2),
        query.limit + 1,
      ) as Row[];
    return pageByPlace(rows.map(settlementOut), query.limit);
  }

  /** One settlement by transaction: its vouchers (paid or not) and what each payee was credited. */
  settlement(tx: Hex): Row | undefined {
    const row = this.#cache
      .get(
        `SELECT s.tx, s.block, s.log_index AS logIndex, s.submitter, s.vouchers, s.total, s.paid_bitmap AS paidBitmap,
           s.decoded, a.epoch, a.receipt_root AS receiptRoot, a.receipt_count AS receiptCount, (SELECT timestamp FROM idx_block_times t WHERE t.block = s.block) AS at
         FROM idx_settlements s LEFT JOIN idx_anchors a ON a.tx = s.tx WHERE s.tx = ?`,
      )
      .get(tx) as Row | undefined;
    if (!row) return undefined;
    const vouchers = (
      this.#cache
        .get(
          `SELECT position, channel_id AS channelId, buyer, signer, payee, nonce, cumulative_amount AS cumulativeAmount, paid
         FROM idx_settlement_vouchers WHERE tx = ? ORDER BY position`,
        )
        .all(tx) as Row[]
    ).map((v) => ({ ...v, paid: v.paid === 1 }));
    const payees = this.#cache
      .get("SELECT payee, amount FROM idx_payee_totals WHERE tx = ? AND kind = 'settled' ORDER BY log_index")
      .all(tx) as Row[];
    return { ...settlementOut(row), voucherList: vouchers, payees };
  }

  /** Slashes, newest first; filters: donor (or operator), kind. */
  slashes(query: PageQuery & { address?: Address; kind?: string }): Page<Row> {
    const [block, logIndex] = cursorParts(query.cursor);
    const rows = this.#cache
      .get(
        `SELECT block, log_index AS logIndex, tx, donor, operator, job_id AS jobId, kind, reporter, amount, reward,
           (SELECT timestamp FROM idx_block_times t WHERE t.block = idx_slashes.block) AS at
         FROM idx_slashes WHERE (block < ? OR (block = ? AND log_index < ?))
           AND (? IS NULL OR donor = ? OR operator = ?) AND (? IS NULL OR kind = ?)
         ORDER BY block DESC, log_index DESC LIMIT ?`,
      )
      .all(
        block,
        block,
        logIndex,
        ...repeat(query.address ?? null, 3),
        ...repeat(query.kind ?? null, 2),
        query.limit + 1,
      ) as Row[];
    return pageByPlace(rows, query.limit);
  }

  /** Receipt anchors, newest first; filters: epoch, submitter. */
  anchors(query: PageQuery & { epoch?: bigint; submitter?: Address }): Page<Row> {
    const [block, logIndex] = cursorParts(query.cursor);
    const epoch = query.epoch === undefined ? null : `${query.epoch}`;
    const rows = this.#cache
      .get(
        `SELECT block, log_index AS logIndex, tx, submitter, epoch, receipt_root AS receiptRoot, receipt_count AS receiptCount,
           (SELECT timestamp FROM idx_block_times t WHERE t.block = idx_anchors.block) AS at
         FROM idx_anchors WHERE (block < ? OR (block = ? AND log_index < ?))
           AND (? IS NULL OR epoch = ?) AND (? IS NULL OR submitter = ?)
         ORDER BY block DESC, log_index DESC LIMIT ?`,
      )
      .all(
        block,
        block,
        logIndex,
        ...repeat(epoch, 2),
        ...repeat(query.submitter ?? null, 2),
        query.limit + 1,
      ) as Row[];
    return pageByPlace(rows, query.limit);
  }

  /** ZkChannels channels, newest first, with their current balance; filters: payee, buyer, leaf. */
  zkChannels(query: PageQuery & { payee?: Address; buyer?: Address; leaf?: number }): Page<Row> {
    const [block, logIndex] = cursorParts(query.cursor);
    const rows = this.#cache
      .get(
        `SELECT c.leaf, c.buyer, c.payee, c.signer, c.block, c.log_index AS logIndex, c.tx,
           (SELECT timestamp FROM idx_block_times t WHERE t.block = c.block) AS at,
           e.deposited, e.paid, e.withdrawn, e.closes_at AS closesAt, e.state AS status, e.block AS updatedBlock
         FROM idx_zk_channels c JOIN idx_zk_channel_events e ON e.rowid = (
           SELECT rowid FROM idx_zk_channel_events WHERE leaf = c.leaf
           ORDER BY block DESC, log_index DESC, position DESC LIMIT 1)
         WHERE (? IS NULL OR c.payee = ?) AND (? IS NULL OR c.buyer = ?) AND (? IS NULL OR c.leaf = ?)
           AND (c.block < ? OR (c.block = ? AND c.log_index < ?))
         ORDER BY c.block DESC, c.log_index DESC LIMIT ?`,
      )
      .all(
        ...repeat(query.payee ?? null, 2),
        ...repeat(query.buyer ?? null, 2),
        ...repeat(query.leaf ?? null, 2),
        block,
        block,
        logIndex,
        query.limit + 1,
      ) as Row[];
    return pageByPlace(rows, query.limit);
  }

  /** Proven zk batches, newest first, with their published transfers; filter: submitter. */
  zkBatches(query: PageQuery & { submitter?: Address }): Page<Row> {
    const [block, logIndex] = cursorParts(query.cursor);
    const rows = this.#cache
      .get(
        `SELECT batch, block, log_index AS logIndex, tx, submitter, old_root AS oldRoot, new_root AS newRoot,
           queue_from AS queueFrom, queue_to AS queueTo, queue_to - queue_from AS queueOps,
           transfer_count AS transferCount, transfers,
           (SELECT timestamp FROM idx_block_times t WHERE t.block = idx_zk_batches.block) AS at
         FROM idx_zk_batches WHERE (block < ? OR (block = ? AND log_index < ?)) AND (? IS NULL OR submitter = ?)
         ORDER BY block DESC, log_index DESC LIMIT ?`,
      )
      .all(block, block, logIndex, ...repeat(query.submitter ?? null, 2), query.limit + 1) as Row[];
    return pageByPlace(
      rows.map((row) => ({ ...row, transfers: JSON.parse(row.transfers as string) as unknown })),
      query.limit,
    );
  }

  /** zk payouts (withdrawals, signature fallbacks, refunds), newest first; filters: the address paid, leaf. */
  zkPayouts(query: PageQuery & { payee?: Address; leaf?: number }): Page<Row> {
    const [block, logIndex] = cursorParts(query.cursor);
    const rows = this.#cache
      .get(
        `SELECT block, log_index AS logIndex, tx, leaf, kind, to_address AS "to", amount, cumulative,
           (SELECT timestamp FROM idx_block_times t WHERE t.block = idx_zk_payouts.block) AS at
         FROM idx_zk_payouts WHERE (block < ? OR (block = ? AND log_index < ?))
           AND (? IS NULL OR to_address = ?) AND (? IS NULL OR leaf = ?)
         ORDER BY block DESC, log_index DESC LIMIT ?`,
      )
      .all(
        block,
        block,
        logIndex,
        ...repeat(query.payee ?? null, 2),
        ...repeat(query.leaf ?? null, 2),
        query.limit + 1,
      ) as Row[];
    return pageByPlace(rows, query.limit);
  }
}

const NO_CURSOR = Number.MAX_SAFE_INTEGER;

/** A place cursor is "<block>-<logIndex>": rows before it come next. */
function cursorParts(cursor: string | undefined): [number, number] {
  if (cursor === undefined) return [NO_CURSOR, NO_CURSOR];
  const match = /^(\d{1,15})-(\d{1,9})$/.exec(cursor);
  if (!match)
    throw new Error(
      `cursor must be <block>-<logIndex> as given in nextCursor, got ${JSON.stringify(cursor)}`,
    );
  return [Number(match[1]), Number(match[2])];
}

function pageByPlace(rows: Row[], limit: number): Page<Row> {
  return pageByKey(rows, limit, (row) => `${row.block as number}-${row.logIndex as number}`);
}

function pageByKey(rows: Row[], limit: number, key: (row: Row) => string): Page<Row> {
  if (rows.length <= limit) return { items: rows };
  const items = rows.slice(0, limit);
  return { items, nextCursor: key(items.at(-1)!) };
}

function settlementOut(row: Row): Row {
  return { ...row, paidBitmap: JSON.parse(row.paidBitmap as string) as string[], decoded: row.decoded === 1 };
}

function withData(row: Row): Row {
  return typeof row.data === "string" ? { ...row, data: JSON.parse(row.data) as unknown } : row;
}

function repeat<T>(value: T, times: number): T[] {
  return Array.from({ length: times }, () => value);
}

/** A field element (a zk root) as 0x and 64 hex digits. */
function fieldHex(value: bigint): Hex {
  return toHex(value, { size: 32 });
}

function text(value: bigint | undefined): string | null {
  return value === undefined ? null : `${value}`;
}
