import type { DatabaseSync } from "node:sqlite";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Ordered, append-only: never edit a released migration, add the next version. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "jobs, events, bids, assignments, receipts, peers, meta, blocks",
    sql: `
      CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;

      CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        deadline INTEGER,
        reason TEXT,
        result TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX jobs_by_state ON jobs (state, priority, deadline, created_at);

      CREATE TABLE job_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT,
        peer TEXT,
        data TEXT
      ) STRICT;
      CREATE INDEX job_events_by_job ON job_events (job_id, seq);
      CREATE TRIGGER job_events_no_update BEFORE UPDATE ON job_events
        BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END;
      CREATE TRIGGER job_events_no_delete BEFORE DELETE ON job_events
        BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END;

      CREATE TABLE bids (
        job_id TEXT NOT NULL,
        bidder TEXT NOT NULL,
        operator TEXT NOT NULL,
        price_per_mega_fuel TEXT NOT NULL,
        message TEXT NOT NULL,
        signature TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        received_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (job_id, bidder)
      ) STRICT;

      CREATE TABLE assignments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        executor TEXT NOT NULL,
        operator TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        state TEXT NOT NULL,
        deadline INTEGER NOT NULL,
        reason TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (job_id, executor, attempt)
      ) STRICT;
      CREATE INDEX assignments_by_job ON assignments (job_id, attempt);
      CREATE INDEX assignments_by_state ON assignments (state, deadline);

      CREATE TABLE receipts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        executor TEXT NOT NULL,
        message TEXT NOT NULL,
        signature TEXT NOT NULL,
        cid TEXT,
        stored_at INTEGER NOT NULL,
        UNIQUE (job_id, executor, signature)
      ) STRICT;
      CREATE INDEX receipts_by_job ON receipts (job_id);
      CREATE INDEX receipts_by_cid ON receipts (cid);

      CREATE TABLE peers (
        peer_id TEXT PRIMARY KEY,
        operator TEXT,
        peer_key TEXT,
        addrs TEXT NOT NULL DEFAULT '[]',
        last_seen INTEGER,
        reputation REAL NOT NULL DEFAULT 0,
        penalties INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE blocks (
        cid TEXT PRIMARY KEY,
        bytes BLOB NOT NULL,
        size INTEGER NOT NULL,
        stored_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 2,
    name: "drop indexes that repeat a unique key's leading job_id",
    // UNIQUE (job_id, executor, attempt) and UNIQUE (job_id, executor, signature) already
    // find a job's rows; the second index on job_id only cost a random page per write.
    sql: `
      DROP INDEX assignments_by_job;
      DROP INDEX receipts_by_job;
    `,
  },
  {
    version: 3,
    name: "a job's rows are keyed by the job's row number",
    // Job ids are hashes: every index that starts with one puts each job's row on a random
    // page, so a commit writes a page per index and job, and a large database reads them
    // from disk first. Keyed by jobs.id, which grows with every job, the rows of the jobs in
    // flight share the last pages of each index. Rows whose job row is missing get a
    // placeholder job (state 'failed', reason 'job_row_missing') instead of being dropped.
    sql: `
      ALTER TABLE jobs RENAME TO jobs_v2;
      DROP INDEX jobs_by_state;
      CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        deadline INTEGER,
        reason TEXT,
        result TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      INSERT INTO jobs (id, job_id, role, spec, state, priority, deadline, reason, result, created_at, updated_at)
        SELECT rowid, job_id, role, spec, state, priority, deadline, reason, result, created_at, updated_at
        FROM jobs_v2 ORDER BY rowid;
      INSERT INTO jobs (job_id, role, spec, state, priority, deadline, reason, result, created_at, updated_at)
        SELECT job_id, 'executor', 'null', 'failed', 2, NULL, 'job_row_missing', NULL, MIN(at), MIN(at)
        FROM (
          SELECT job_id, at FROM job_events
          UNION ALL SELECT job_id, received_at FROM bids
          UNION ALL SELECT job_id, created_at FROM assignments
          UNION ALL SELECT job_id, stored_at FROM receipts
        )
        WHERE job_id NOT IN (SELECT job_id FROM jobs)
        GROUP BY job_id ORDER BY MIN(at);
      DROP TABLE jobs_v2;
      CREATE INDEX jobs_by_state ON jobs (state, priority, deadline, created_at);

      ALTER TABLE job_events RENAME TO job_events_v2;
      CREATE TABLE job_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job INTEGER NOT NULL REFERENCES jobs (id),
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT,
        peer TEXT,
        data TEXT
      ) STRICT;
      INSERT INTO job_events (seq, job, at, kind, reason, peer, data)
        SELECT e.seq, j.id, e.at, e.kind, e.reason, e.peer, e.data
        FROM job_events_v2 e JOIN jobs j ON j.job_id = e.job_id ORDER BY e.seq;
      DROP TABLE job_events_v2;
      CREATE INDEX job_events_by_job ON job_events (job, seq);
      CREATE TRIGGER job_events_no_update BEFORE UPDATE ON job_events
        BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END;
      CREATE TRIGGER job_events_no_delete BEFORE DELETE ON job_events
        BEGIN SELECT RAISE(ABORT, 'job_events is append-only'); END;

      ALTER TABLE bids RENAME TO bids_v2;
      CREATE TABLE bids (
        job INTEGER NOT NULL REFERENCES jobs (id),
        bidder TEXT NOT NULL,
        operator TEXT NOT NULL,
        price_per_mega_fuel TEXT NOT NULL,
        message TEXT NOT NULL,
        signature TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        received_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (job, bidder)
      ) STRICT;
      INSERT INTO bids (job, bidder, operator, price_per_mega_fuel, message, signature, state, reason, received_at, updated_at)
        SELECT j.id, b.bidder, b.operator, b.price_per_mega_fuel, b.message, b.signature, b.state, b.reason,
          b.received_at, b.updated_at
        FROM bids_v2 b JOIN jobs j ON j.job_id = b.job_id ORDER BY b.rowid;
      DROP TABLE bids_v2;

      ALTER TABLE assignments RENAME TO assignments_v2;
      DROP INDEX assignments_by_state;
      CREATE TABLE assignments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job INTEGER NOT NULL REFERENCES jobs (id),
        executor TEXT NOT NULL,
        operator TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        state TEXT NOT NULL,
        deadline INTEGER NOT NULL,
        reason TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (job, executor, attempt)
      ) STRICT;
      INSERT INTO assignments (id, job, executor, operator, attempt, state, deadline, reason, created_at, updated_at)
        SELECT a.id, j.id, a.executor, a.operator, a.attempt, a.state, a.deadline, a.reason, a.created_at, a.updated_at
        FROM assignments_v2 a JOIN jobs j ON j.job_id = a.job_id ORDER BY a.id;
      DROP TABLE assignments_v2;
      CREATE INDEX assignments_by_state ON assignments (state, deadline);

      ALTER TABLE receipts RENAME TO receipts_v2;
      DROP INDEX receipts_by_cid;
      CREATE TABLE receipts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job INTEGER NOT NULL REFERENCES jobs (id),
        executor TEXT NOT NULL,
        message TEXT NOT NULL,
        signature TEXT NOT NULL,
        cid TEXT,
        stored_at INTEGER NOT NULL,
        UNIQUE (job, executor, signature)
      ) STRICT;
      INSERT INTO receipts (id, job, executor, message, signature, cid, stored_at)
        SELECT r.id, j.id, r.executor, r.message, r.signature, r.cid, r.stored_at
        FROM receipts_v2 r JOIN jobs j ON j.job_id = r.job_id ORDER BY r.id;
      DROP TABLE receipts_v2;
      CREATE INDEX receipts_by_cid ON receipts (cid);
    `,
  },
  {
    version: 4,
    name: "an executor's outbox of receipts its buyer has not acknowledged",
    // outbox_peer is the buyer a signed receipt still goes to; NULL once acknowledged (or
    // given up on). The partial index holds only the receipts waiting, oldest first.
    sql: `
      ALTER TABLE receipts ADD COLUMN outbox_peer TEXT;
      CREATE INDEX receipts_outbox ON receipts (id) WHERE outbox_peer IS NOT NULL;
    `,
  },
  {
    version: 5,
    name: "blocks keep their last use and the jobs that reference them, for garbage collection",
    // block_meta holds what the collector reads of every block, apart from the bytes: a
    // column after a large blob is only reached through its overflow pages, and rewriting
    // a row to record a use would copy the blob. The node's own receipt batches are pinned:
    // the chain of `previous` links from the head the receipt log recorded in meta (not
    // bytes that only look like a batch, which anyone can send); they chain an executor's
    // receipts and are never collected. block_refs is kept by
    // triggers on jobs: a job's module and input (from its announce) and output (from its
    // result), keyed by CID for the block server and the collector. Job rows are never
    // deleted (their events are append-only), so the delete trigger's scan does not run.
    sql: `
      CREATE TABLE block_meta (
        cid TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        stored_at INTEGER NOT NULL,
        used_at INTEGER NOT NULL,
        pinned INTEGER NOT NULL DEFAULT 0
      ) STRICT, WITHOUT ROWID;
      WITH RECURSIVE batches(cid) AS (
        SELECT value ->> '$.cid' FROM meta WHERE key = 'receipts.batchHead'
        UNION
        SELECT CAST(b.bytes AS TEXT) ->> '$.previous' FROM blocks b JOIN batches ON b.cid = batches.cid
      )
      INSERT INTO block_meta (cid, size, stored_at, used_at, pinned)
        SELECT cid, size, stored_at, stored_at, cid IN (SELECT cid FROM batches WHERE cid IS NOT NULL)
        FROM blocks;

      CREATE TABLE block_refs (
        cid TEXT NOT NULL,
        job INTEGER NOT NULL,
        kind TEXT NOT NULL,
        PRIMARY KEY (cid, job, kind)
      ) STRICT, WITHOUT ROWID;
      INSERT OR IGNORE INTO block_refs (cid, job, kind)
        SELECT spec ->> '$.announce.moduleCid', id, 'module' FROM jobs
          WHERE spec ->> '$.announce.moduleCid' IS NOT NULL
        UNION ALL SELECT spec ->> '$.announce.inputCid', id, 'input' FROM jobs
          WHERE spec ->> '$.announce.inputCid' IS NOT NULL
        UNION ALL SELECT result ->> '$.outputCid', id, 'output' FROM jobs
          WHERE result ->> '$.outputCid' IS NOT NULL;
      CREATE TRIGGER jobs_reference_blocks AFTER INSERT ON jobs BEGIN
        INSERT OR IGNORE INTO block_refs (cid, job, kind)
          SELECT NEW.spec ->> '$.announce.moduleCid', NEW.id, 'module'
            WHERE NEW.spec ->> '$.announce.moduleCid' IS NOT NULL
          UNION ALL SELECT NEW.spec ->> '$.announce.inputCid', NEW.id, 'input'
            WHERE NEW.spec ->> '$.announce.inputCid' IS NOT NULL
          UNION ALL SELECT NEW.result ->> '$.outputCid', NEW.id, 'output'
            WHERE NEW.result ->> '$.outputCid' IS NOT NULL;
      END;
      CREATE TRIGGER jobs_reference_output AFTER UPDATE OF result ON jobs
        WHEN NEW.result ->> '$.outputCid' IS NOT NULL BEGIN
        INSERT OR IGNORE INTO block_refs (cid, job, kind) VALUES (NEW.result ->> '$.outputCid', NEW.id, 'output');
      END;
      CREATE TRIGGER jobs_unreference_blocks BEFORE DELETE ON jobs BEGIN
        DELETE FROM block_refs WHERE job = OLD.id;
      END;
    `,
  },
  {
    version: 6,
    name: "reputation and quarantine state of operators and peers",
    // trust_reputation: one row per operator (module '') and per operator and module, the
    // decayed counters as JSON; trust_subjects: one row per operator (lowercase address) or
    // peer id with a suspicion/quarantine state as JSON. Both are bounded by the trust layer,
    // which evicts the least recently seen first (offchain/src/trust/book.ts).
    sql: `
      CREATE TABLE trust_reputation (
        operator TEXT NOT NULL,
        module TEXT NOT NULL,
        stats TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (operator, module)
      ) STRICT;
      CREATE TABLE trust_subjects (
        subject TEXT PRIMARY KEY,
        peer_id TEXT,
        operator TEXT,
        status TEXT NOT NULL,
        state TEXT NOT NULL,
        last_seen INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 7,
    name: "slash submissions: verified evidence this node sends to DonorRegistry, retried until settled",
    // One row per (kind, job, operator): the contract slashes a job's operator once, so a
    // second piece of evidence for the same pair is a duplicate. Rows waiting are read by
    // next_attempt_at; settled rows are kept for history and the oldest are deleted first
    // (store/slashes.ts bounds the table).
    sql: `
      CREATE TABLE slash_submissions (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        job_id TEXT NOT NULL,
        operator TEXT NOT NULL,
        source TEXT NOT NULL,
        evidence TEXT NOT NULL,
        state TEXT NOT NULL,
        outcome TEXT,
        tx_hash TEXT,
        case_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX slash_submissions_due ON slash_submissions (next_attempt_at) WHERE state = 'pending';
      CREATE INDEX slash_submissions_by_update ON slash_submissions (updated_at);
    `,
  },
  {
    version: 8,
    name: "payment channels this node pays through, and the jobs its unacknowledged vouchers pay",
    // buyer_channels: one row per channel this node signs vouchers on, at most one open per
    // payee; closed rows beyond BUYER_CHANNEL_ROWS_MAX go, least recently updated first.
    // buyer_voucher_jobs: one row per paid job (so a job is paid once), marked when its payee
    // acknowledged the voucher; beyond VOUCHER_JOB_ROWS_MAX the oldest go (an unacknowledged
    // one's amount stays in the cumulative amount). buyer_owed: jobs earned by a payee that has
    // no channel yet, moved onto its channel once one is open; beyond OWED_ROWS_MAX the oldest
    // go. Bounds in store/buyer-channels.ts.
    sql: `
      CREATE TABLE buyer_channels (
        channel_id TEXT PRIMARY KEY,
        payee TEXT NOT NULL,
        buyer TEXT NOT NULL,
        signer TEXT NOT NULL,
        nonce TEXT NOT NULL,
        deposit TEXT NOT NULL,
        cumulative TEXT NOT NULL,
        acked TEXT NOT NULL,
        payee_peer TEXT,
        state TEXT NOT NULL,
        opened_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX buyer_channels_by_payee ON buyer_channels (payee, state);
      CREATE INDEX buyer_channels_by_update ON buyer_channels (updated_at);
      CREATE TABLE buyer_voucher_jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        amount TEXT NOT NULL,
        cumulative TEXT NOT NULL,
        acked INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        UNIQUE (channel_id, job_id)
      ) STRICT;
      CREATE INDEX buyer_voucher_jobs_unacked ON buyer_voucher_jobs (channel_id, seq) WHERE acked = 0;
      CREATE TABLE buyer_owed (
        payee TEXT NOT NULL,
        job_id TEXT NOT NULL,
        amount TEXT NOT NULL,
        payee_peer TEXT,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (payee, job_id)
      ) STRICT;
    `,
  },
  {
    version: 9,
    name: "settlement: transaction journal, epochs and the receipts each epoch anchored",
    // settlement_txs: every signed transaction the node sent from its operator key, written
    // before it is broadcast; settlement_epochs: one row per epoch this node settled;
    // settlement_members: which receipt is under which epoch's root, with the receipt, so a
    // proof can be rebuilt. store/settlements.ts bounds all three (oldest finished rows go first).
    sql: `
      CREATE TABLE settlement_txs (
        hash TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        epoch INTEGER,
        nonce INTEGER NOT NULL,
        raw TEXT NOT NULL,
        max_fee_per_gas TEXT NOT NULL,
        max_priority_fee_per_gas TEXT NOT NULL,
        state TEXT NOT NULL,
        block_number INTEGER,
        sent_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX settlement_txs_by_purpose ON settlement_txs (purpose, sent_at);
      CREATE INDEX settlement_txs_pending ON settlement_txs (state) WHERE state = 'pending';
      CREATE INDEX settlement_txs_by_update ON settlement_txs (updated_at);

      CREATE TABLE settlement_epochs (
        epoch INTEGER PRIMARY KEY,
        root TEXT,
        receipt_count INTEGER NOT NULL,
        last_receipt_id INTEGER NOT NULL,
        vouchers TEXT NOT NULL,
        voucher_count INTEGER NOT NULL,
        state TEXT NOT NULL,
        tx_hash TEXT,
        settled_total TEXT,
        paid_count INTEGER,
        detail TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE settlement_members (
        job_id TEXT NOT NULL,
        executor TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        leaf_index INTEGER NOT NULL,
        receipt TEXT NOT NULL,
        PRIMARY KEY (job_id, executor)
      ) STRICT;
      CREATE INDEX settlement_members_by_epoch ON settlement_members (epoch, leaf_index);
    `,
  },
  {
    version: 10,
    name: "payee ledger: this payee's channels, the latest voucher of each, and what each job earned",
    // Amounts are 78-digit zero-padded decimals, so SQLite compares and orders them as numbers.
    // Bounds (store/payee-ledger.ts): payee_channels and payee_vouchers hold at most
    // PAYEE_CHANNELS_MAX rows each, evicting closed or settled rows updated longest ago first;
    // payee_earnings holds at most PAYEE_EARNINGS_MAX rows, evicting paid rows oldest first,
    // then unpaid rows older than the write-off age, then the oldest.
    sql: `
      CREATE TABLE payee_channels (
        channel_id TEXT PRIMARY KEY,
        buyer TEXT NOT NULL,
        signer TEXT NOT NULL,
        payee TEXT NOT NULL,
        nonce TEXT NOT NULL,
        deposit TEXT NOT NULL,
        paid TEXT NOT NULL,
        closes_at TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX payee_channels_by_signer ON payee_channels (signer);
      CREATE INDEX payee_channels_by_update ON payee_channels (updated_at);
      CREATE TABLE payee_vouchers (
        channel_id TEXT PRIMARY KEY,
        buyer TEXT NOT NULL,
        signer TEXT NOT NULL,
        payee TEXT NOT NULL,
        nonce TEXT NOT NULL,
        cumulative TEXT NOT NULL,
        signature TEXT NOT NULL,
        paid_on_chain TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX payee_vouchers_by_receipt ON payee_vouchers (received_at);
      CREATE INDEX payee_vouchers_by_update ON payee_vouchers (updated_at);
      CREATE TABLE payee_earnings (
        job_id TEXT PRIMARY KEY,
        signer TEXT NOT NULL,
        amount TEXT NOT NULL,
        earned_at INTEGER NOT NULL,
        paid_by TEXT,
        paid_at INTEGER
      ) STRICT;
      CREATE INDEX payee_earnings_unpaid ON payee_earnings (signer) WHERE paid_by IS NULL;
      CREATE INDEX payee_earnings_by_age ON payee_earnings (earned_at);
    `,
  },
  {
    version: 11,
    name: "chain index: registry, channel, settlement, anchor and court events for the explorer",
    // Bound: the chain's history of the followed contracts from their deployment block; a
    // row is never evicted while its block stands. Reorg rollback: every row carries its
    // block, and the indexer deletes the rows of every block from the first changed one on
    // (store/indexer.ts). idx_blocks keeps the hashes of the last blocks only (the reorg
    // window, store/indexer.ts INDEXED_BLOCKS_KEPT), the oldest deleted first; idx_block_times
    // keeps the time of every block that has indexed rows, like them.
    sql: `
      CREATE TABLE idx_blocks (
        number INTEGER PRIMARY KEY,
        hash TEXT NOT NULL
      ) STRICT;
      CREATE TABLE idx_block_times (
        block INTEGER PRIMARY KEY,
        timestamp INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE idx_donor_events (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        tx TEXT NOT NULL,
        donor TEXT NOT NULL,
        kind TEXT NOT NULL,
        operator TEXT,
        amount TEXT,
        bonded TEXT NOT NULL,
        unbonding TEXT NOT NULL,
        data TEXT,
        PRIMARY KEY (block, log_index)
      ) STRICT;
      CREATE INDEX idx_donor_events_by_donor ON idx_donor_events (donor, block, log_index);
      CREATE TABLE idx_slashes (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        tx TEXT NOT NULL,
        donor TEXT NOT NULL,
        operator TEXT,
        job_id TEXT,
        kind TEXT NOT NULL,
        reporter TEXT,
        amount TEXT NOT NULL,
        reward TEXT,
        PRIMARY KEY (block, log_index)
      ) STRICT;
      CREATE INDEX idx_slashes_by_donor ON idx_slashes (donor, block, log_index);
      CREATE TABLE idx_channels (
        channel_id TEXT PRIMARY KEY,
        buyer TEXT NOT NULL,
        payee TEXT NOT NULL,
        signer TEXT NOT NULL,
        nonce TEXT NOT NULL,
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        tx TEXT NOT NULL
      ) STRICT;
      CREATE INDEX idx_channels_by_order ON idx_channels (block, log_index);
      CREATE INDEX idx_channels_by_buyer ON idx_channels (buyer, block, log_index);
      CREATE INDEX idx_channels_by_payee ON idx_channels (payee, block, log_index);
      CREATE TABLE idx_channel_events (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        position INTEGER NOT NULL,
        tx TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount TEXT,
        deposit TEXT NOT NULL,
        paid TEXT NOT NULL,
        closes_at TEXT,
        state TEXT NOT NULL,
        PRIMARY KEY (block, log_index, position)
      ) STRICT;
      CREATE INDEX idx_channel_events_by_channel ON idx_channel_events (channel_id, block, log_index, position);
      CREATE TABLE idx_settlements (
        tx TEXT PRIMARY KEY,
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        submitter TEXT NOT NULL,
        vouchers INTEGER NOT NULL,
        total TEXT NOT NULL,
        paid_bitmap TEXT NOT NULL,
        decoded INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX idx_settlements_by_order ON idx_settlements (block, log_index);
      CREATE INDEX idx_settlements_by_submitter ON idx_settlements (submitter, block, log_index);
      CREATE TABLE idx_settlement_vouchers (
        tx TEXT NOT NULL,
        position INTEGER NOT NULL,
        block INTEGER NOT NULL,
        channel_id TEXT NOT NULL,
        buyer TEXT NOT NULL,
        signer TEXT NOT NULL,
        payee TEXT NOT NULL,
        nonce TEXT NOT NULL,
        cumulative_amount TEXT NOT NULL,
        paid INTEGER NOT NULL,
        PRIMARY KEY (tx, position)
      ) STRICT;
      CREATE INDEX idx_settlement_vouchers_by_block ON idx_settlement_vouchers (block);
      CREATE INDEX idx_settlement_vouchers_by_channel ON idx_settlement_vouchers (channel_id, block);
      CREATE TABLE idx_payee_totals (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        tx TEXT NOT NULL,
        payee TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount TEXT NOT NULL,
        PRIMARY KEY (block, log_index)
      ) STRICT;
      CREATE INDEX idx_payee_totals_by_tx ON idx_payee_totals (tx);
      CREATE INDEX idx_payee_totals_by_payee ON idx_payee_totals (payee, block, log_index);
      CREATE TABLE idx_anchors (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        tx TEXT NOT NULL,
        submitter TEXT NOT NULL,
        epoch TEXT NOT NULL,
        receipt_root TEXT NOT NULL,
        receipt_count TEXT NOT NULL,
        PRIMARY KEY (block, log_index)
      ) STRICT;
      CREATE INDEX idx_anchors_by_tx ON idx_anchors (tx);
      CREATE INDEX idx_anchors_by_epoch ON idx_anchors (epoch, block);
      CREATE TABLE idx_court_events (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        tx TEXT NOT NULL,
        case_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        account TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (block, log_index)
      ) STRICT;
      CREATE INDEX idx_court_events_by_case ON idx_court_events (case_id, block, log_index);
      CREATE INDEX idx_court_events_by_account ON idx_court_events (account, block, log_index);
    `,
  },
  {
    version: 12,
    name: "relayed vouchers: the latest voucher payees handed this node to settle for them",
    // Bound (store/relay-vouchers.ts): at most RELAY_VOUCHERS_MAX rows, one per channel; beyond
    // it settled rows (cumulative <= paid on chain) go first, then the oldest received.
    sql: `
      CREATE TABLE relay_vouchers (
        channel_id TEXT PRIMARY KEY,
        buyer TEXT NOT NULL,
        signer TEXT NOT NULL,
        payee TEXT NOT NULL,
        nonce TEXT NOT NULL,
        cumulative TEXT NOT NULL,
        signature TEXT NOT NULL,
        paid_on_chain TEXT NOT NULL,
        received_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX relay_vouchers_by_receipt ON relay_vouchers (received_at);
    `,
  },
  {
    version: 13,
    name: "zk channels: a ZkChannels channel's settlement key and a zk voucher's EdDSA signature",
    // Nullable columns on the bounded payee tables (no new bound): set on rows of ZkChannels
    // channels only. A zk channel's leaf is its key's nonce; zk_leaf marks a zk voucher.
    sql: `
      ALTER TABLE payee_channels ADD COLUMN zk_ax TEXT;
      ALTER TABLE payee_channels ADD COLUMN zk_ay TEXT;
      ALTER TABLE payee_vouchers ADD COLUMN zk_leaf INTEGER;
      ALTER TABLE payee_vouchers ADD COLUMN zk_r8x TEXT;
      ALTER TABLE payee_vouchers ADD COLUMN zk_r8y TEXT;
      ALTER TABLE payee_vouchers ADD COLUMN zk_s TEXT;
    `,
  },
  {
    version: 14,
    name: "chain index: ZkChannels channels, proven batches with their transfers, and payouts",
    // Bound: as migration 11's tables, the history of ZkChannels from its deployment block, one
    // row per event plus one channel event per transfer of a proven batch (at most the circuit's
    // batch size each); a row is never evicted while its block stands. Reorg rollback: every row
    // carries its block and is deleted with it (store/indexer.ts TABLES_BY_BLOCK).
    sql: `
      CREATE TABLE idx_zk_channels (
        leaf INTEGER PRIMARY KEY,
        buyer TEXT NOT NULL,
        payee TEXT NOT NULL,
        signer TEXT NOT NULL,
        ax TEXT NOT NULL,
        ay TEXT NOT NULL,
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        tx TEXT NOT NULL
      ) STRICT;
      CREATE INDEX idx_zk_channels_by_order ON idx_zk_channels (block, log_index);
      CREATE INDEX idx_zk_channels_by_buyer ON idx_zk_channels (buyer, block, log_index);
      CREATE INDEX idx_zk_channels_by_payee ON idx_zk_channels (payee, block, log_index);
      CREATE TABLE idx_zk_channel_events (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        position INTEGER NOT NULL,
        tx TEXT NOT NULL,
        leaf INTEGER NOT NULL,
        kind TEXT NOT NULL,
        amount TEXT,
        deposited TEXT NOT NULL,
        withdrawn TEXT NOT NULL,
        paid TEXT NOT NULL,
        closes_at TEXT,
        state TEXT NOT NULL,
        PRIMARY KEY (block, log_index, position)
      ) STRICT;
      CREATE INDEX idx_zk_channel_events_by_leaf ON idx_zk_channel_events (leaf, block, log_index, position);
      CREATE TABLE idx_zk_batches (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        tx TEXT NOT NULL,
        batch INTEGER NOT NULL,
        submitter TEXT NOT NULL,
        old_root TEXT NOT NULL,
        new_root TEXT NOT NULL,
        queue_from INTEGER NOT NULL,
        queue_to INTEGER NOT NULL,
        transfer_count INTEGER NOT NULL,
        transfers TEXT NOT NULL,
        PRIMARY KEY (block, log_index)
      ) STRICT;
      CREATE INDEX idx_zk_batches_by_submitter ON idx_zk_batches (submitter, block, log_index);
      CREATE TABLE idx_zk_payouts (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        tx TEXT NOT NULL,
        leaf INTEGER NOT NULL,
        kind TEXT NOT NULL,
        to_address TEXT NOT NULL,
        amount TEXT NOT NULL,
        cumulative TEXT,
        PRIMARY KEY (block, log_index)
      ) STRICT;
      CREATE INDEX idx_zk_payouts_by_to ON idx_zk_payouts (to_address, block, log_index);
      CREATE INDEX idx_zk_payouts_by_leaf ON idx_zk_payouts (leaf, block, log_index);
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.at(-1)?.version ?? 0;

/** Applies every migration newer than the database, each in its own transaction. */
export function migrate(
  db: DatabaseSync,
  migrations: readonly Migration[] = MIGRATIONS,
  now = Date.now,
): number[] {
  assertOrdered(migrations);
  db.exec(
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
  );
  const current = readSchemaVersion(db);
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new Error(
      `database schema version ${current} is newer than this software supports (${latest}); upgrade Cell`,
    );
  }
  const applied: number[] = [];
  for (const migration of migrations.filter((m) => m.version > current)) {
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(migration.sql);
      db.prepare("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)").run(
        migration.version,
        migration.name,
        now(),
      );
      db.exec("COMMIT");
    } catch (error) {
      db.exec("ROLLBACK");
      throw new Error(
        `migration ${migration.version} (${migration.name}) failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    applied.push(migration.version);
  }
  return applied;
}

export function readSchemaVersion(db: DatabaseSync): number {
  const row = db.prepare("SELECT MAX(version) AS version FROM schema_version").get() as
    { version: number | null } | undefined;
  return row?.version ?? 0;
}

function assertOrdered(migrations: readonly Migration[]): void {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(
        `migration '${migration.name}' has version ${migration.version}; versions must be 1, 2, 3… in order`,
      );
    }
  });
}
