import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, test } from "node:test";
import { CID } from "multiformats/cid";
import { sha256 } from "multiformats/hashes/sha2";
import { cidOf } from "../../offchain/src/protocol/index.ts";
import {
  DATABASE_FILE,
  LATEST_SCHEMA_VERSION,
  MIGRATIONS,
  migrate,
  openStore,
  type Migration,
  type Store,
} from "../../offchain/src/store/index.ts";
import { freshDirs } from "../support/fresh-dirs.ts";

const OPERATOR_A = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const OPERATOR_B = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const DAG_PB_CODEC = 0x70;
const SIGNATURE = `0x${"ab".repeat(65)}` as const;

const freshDir = freshDirs("cell-store-", "store");

/** A store whose clock the test moves. */
function clockedStore(dir = ":memory:", start = 1_000): { store: Store; clock: { now: number } } {
  const clock = { now: start };
  return { store: openStore(dir, { now: () => clock.now }), clock };
}

function withJobsClocked(...jobIds: string[]): { store: Store; clock: { now: number } } {
  const clocked = clockedStore();
  withJobs(clocked.store, ...jobIds);
  return clocked;
}

/** Stores minimal job rows: a job's events, bids, assignments and receipts need their job. */
function withJobs(store: Store, ...jobIds: string[]): Store {
  for (const jobId of jobIds) store.jobs.insert({ jobId, spec: {} });
  return store;
}

describe("migrations", () => {
  test("a new store is migrated to the latest version, WAL with synchronous=FULL", () => {
    const migrated: unknown[] = [];
    const dir = freshDir();
    const store = openStore(dir, { logger: { info: (fields) => migrated.push(fields) } });
    assert.equal(store.schemaVersion(), LATEST_SCHEMA_VERSION);
    assert.equal(LATEST_SCHEMA_VERSION, MIGRATIONS.length);
    assert.deepEqual(store.durability(), { journalMode: "wal", synchronous: "full" });
    assert.equal(store.path, join(dir, DATABASE_FILE));
    assert.equal(migrated.length, 1);
    store.close();

    const reopened = openStore(dir, { logger: { info: (fields) => migrated.push(fields) } });
    assert.equal(reopened.schemaVersion(), LATEST_SCHEMA_VERSION);
    assert.equal(migrated.length, 1, "reopening applies nothing");
    reopened.close();
  });

  test("a commit without fsync leaves the connection at synchronous=FULL for the next one", async () => {
    const store = openStore(freshDir());
    try {
      await store.commit(() => store.jobs.insert({ jobId: "relaxed", spec: {} }), { durable: false });
      assert.deepEqual(store.durability(), { journalMode: "wal", synchronous: "full" });
      const both = [
        store.commit(() => store.jobs.insert({ jobId: "a", spec: {} }), { durable: false }),
        store.commit(() => store.jobs.insert({ jobId: "b", spec: {} })),
      ];
      await Promise.all(both);
      assert.deepEqual(store.durability(), { journalMode: "wal", synchronous: "full" });
      assert.deepEqual(
        ["relaxed", "a", "b"].map((id) => store.jobs.has(id)),
        [true, true, true],
      );
    } finally {
      store.close();
    }
  });

  test("a later migration applies on reopen and keeps the data", () => {
    const dir = freshDir();
    const store = openStore(dir);
    store.meta.set("k", "v");
    store.close();

    const next: Migration = {
      version: MIGRATIONS.length + 1,
      name: "notes",
      sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL) STRICT;",
    };
    const upgraded = openStore(dir, { migrations: [...MIGRATIONS, next] });
    assert.equal(upgraded.schemaVersion(), next.version);
    assert.equal(upgraded.meta.get("k"), "v");
    upgraded.close();

    assert.throws(
      () => openStore(dir),
      new RegExp(
        `schema version ${next.version} is newer than this software supports \\(${LATEST_SCHEMA_VERSION}\\)`,
      ),
    );
  });

  test("a failing migration rolls back completely and names itself", () => {
    const dir = freshDir();
    const broken: Migration = {
      version: MIGRATIONS.length + 1,
      name: "half broken",
      sql: "CREATE TABLE half (id INTEGER PRIMARY KEY); INSERT INTO no_such_table VALUES (1);",
    };
    assert.throws(
      () => openStore(dir, { migrations: [...MIGRATIONS, broken] }),
      /migration \d+ \(half broken\) failed: .*no_such_table/,
    );
    const store = openStore(dir);
    assert.equal(store.schemaVersion(), LATEST_SCHEMA_VERSION);
    store.close();
    const raw = new DatabaseSync(join(dir, DATABASE_FILE));
    assert.equal(raw.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").get(), undefined);
    raw.close();
  });

  test("version 3 keys a job's rows by the job's row number and keeps every row of a version 2 store", () => {
    const dir = freshDir();
    mkdirSync(dir);
    const v2 = new DatabaseSync(join(dir, DATABASE_FILE));
    migrate(v2, MIGRATIONS.slice(0, 2), () => 1);
    v2.exec(`
      INSERT INTO jobs (job_id, role, spec, state, priority, created_at, updated_at)
        VALUES ('0xa', 'buyer', '{}', 'completed', 2, 10, 10), ('0xb', 'executor', '{}', 'completed', 2, 20, 20);
      INSERT INTO job_events (seq, job_id, at, kind) VALUES (7, '0xa', 11, 'announced'), (9, '0xa', 12, 'completed');
      INSERT INTO bids (job_id, bidder, operator, price_per_mega_fuel, message, signature, state, received_at, updated_at)
        VALUES ('0xa', 'p1', '${OPERATOR_A}', '5', '{}', '${SIGNATURE}', 'received', 11, 11),
               ('0xghost', 'p2', '${OPERATOR_B}', '6', '{}', '${SIGNATURE}', 'received', 5, 5);
      INSERT INTO assignments (id, job_id, executor, operator, attempt, state, deadline, created_at, updated_at)
        VALUES (4, '0xa', 'p1', '${OPERATOR_A}', 1, 'completed', 99, 11, 12);
      INSERT INTO receipts (id, job_id, executor, message, signature, cid, stored_at)
        VALUES (3, '0xb', '${OPERATOR_A}', '{"n":1}', '${SIGNATURE}', 'bafyr', 21);
    `);
    v2.close();

    const store = openStore(dir);
    assert.equal(store.schemaVersion(), LATEST_SCHEMA_VERSION);
    assert.deepEqual(store.receipts.outbox(), [], "receipts stored before the outbox are not sent again");
    assert.deepEqual(
      store.jobEvents.list("0xa").map((event) => [event.seq, event.kind]),
      [
        [7, "announced"],
        [9, "completed"],
      ],
    );
    assert.equal(store.jobEvents.append({ jobId: "0xb", kind: "receipt" }), 10, "seq keeps growing");
    assert.equal(store.bids.get("0xa", "p1")?.pricePerMegaFuel, 5n);
    assert.deepEqual(
      store.assignments.forJob("0xa").map((row) => [row.id, row.jobId, row.state]),
      [[4, "0xa", "completed"]],
    );
    assert.deepEqual(store.assignments.get(4)?.jobId, "0xa");
    assert.deepEqual([store.receipts.byCid("bafyr")?.id, store.receipts.byCid("bafyr")?.jobId], [3, "0xb"]);
    const ghost = store.jobs.require("0xghost");
    assert.deepEqual([ghost.state, ghost.reason], ["failed", "job_row_missing"]);
    assert.equal(store.bids.get("0xghost", "p2")?.operator, OPERATOR_B);
    store.close();

    const raw = new DatabaseSync(join(dir, DATABASE_FILE));
    for (const [query, index] of [
      ["SELECT * FROM job_events WHERE job = ? AND seq > 0 ORDER BY seq", "job_events_by_job"],
      ["SELECT * FROM bids WHERE job = ?", "sqlite_autoindex_bids_1"],
      [
        "SELECT * FROM assignments WHERE job = ? ORDER BY attempt ASC, id ASC",
        "sqlite_autoindex_assignments_1",
      ],
      ["SELECT * FROM receipts WHERE job = ? ORDER BY id ASC", "sqlite_autoindex_receipts_1"],
    ] as const) {
      const plan = raw
        .prepare(`EXPLAIN QUERY PLAN ${query}`)
        .all(1)
        .map((row) => String(row.detail))
        .join(" | ");
      assert.match(plan, new RegExp(`SEARCH \\w+ USING (COVERING )?INDEX ${index} \\(job=\\?`), query);
    }
    assert.throws(
      () =>
        raw.exec(
          "INSERT INTO bids (job, bidder, operator, price_per_mega_fuel, message, signature, state, received_at, updated_at) VALUES (99, 'p', 'o', '1', '{}', 's', 'received', 1, 1)",
        ),
      /FOREIGN KEY constraint failed/,
    );
    raw.close();
  });

  test("migrations out of order are refused", () => {
    const skipping: Migration[] = [
      ...MIGRATIONS,
      { version: MIGRATIONS.length + 2, name: "gap", sql: "SELECT 1;" },
    ];
    assert.throws(
      () => openStore(":memory:", { migrations: skipping }),
      /versions must be 1, 2, 3… in order/,
    );
  });
});

describe("state survives close and reopen", () => {
  test("every repository and the blockstore read back what was written", async () => {
    const dir = freshDir();
    let store = openStore(dir);
    store.jobs.insert({
      jobId: "0xjob",
      spec: { fuelLimit: 2n ** 70n, entry: "main" },
      priority: "high",
      deadline: 9_000,
    });
    store.jobs.update("0xjob", {
      state: "completed",
      result: { fuelUsed: 12345678901234567890n, status: "ok" },
    });
    store.jobEvents.append({ jobId: "0xjob", kind: "announced" });
    store.jobEvents.append({
      jobId: "0xjob",
      kind: "bid_rejected",
      reason: "price_too_high",
      peer: "12D3KooWpeer",
    });
    store.bids.insert({
      jobId: "0xjob",
      bidder: "12D3KooWpeer",
      operator: OPERATOR_A,
      pricePerMegaFuel: 5n,
      message: { price: 5n },
      signature: SIGNATURE,
    });
    store.assignments.insert({
      jobId: "0xjob",
      executor: "12D3KooWpeer",
      operator: OPERATOR_A,
      attempt: 1,
      deadline: 5_000,
    });
    store.receipts.put({
      jobId: "0xjob",
      executor: OPERATOR_A,
      message: { fuelUsed: 99n },
      signature: SIGNATURE,
    });
    store.peers.upsert({
      peerId: "12D3KooWpeer",
      operator: OPERATOR_A,
      addrs: ["/ip4/127.0.0.1/tcp/4001"],
      lastSeen: 7,
    });
    store.meta.setJson("cursor", { block: 42n });
    const cid = await store.blocks.put(new TextEncoder().encode("module bytes"));
    store.close();

    store = openStore(dir);
    const job = store.jobs.require("0xjob");
    assert.deepEqual(job.spec, { fuelLimit: (2n ** 70n).toString(), entry: "main" });
    assert.equal(job.state, "completed");
    assert.equal(job.priority, "high");
    assert.deepEqual(job.result, { fuelUsed: "12345678901234567890", status: "ok" });
    assert.deepEqual(
      store.jobEvents.list("0xjob").map((e) => [e.kind, e.reason]),
      [
        ["announced", null],
        ["bid_rejected", "price_too_high"],
      ],
    );
    assert.equal(store.bids.get("0xjob", "12D3KooWpeer")?.pricePerMegaFuel, 5n);
    assert.equal(store.assignments.forJob("0xjob")[0]?.deadline, 5_000);
    assert.deepEqual(store.receipts.get("0xjob")?.message, { fuelUsed: "99" });
    assert.deepEqual(store.peers.get("12D3KooWpeer")?.addrs, ["/ip4/127.0.0.1/tcp/4001"]);
    assert.deepEqual(store.meta.getJson("cursor"), { block: "42" });
    assert.equal(new TextDecoder().decode(store.blocks.get(cid)), "module bytes");
    store.close();
  });
});

describe("jobs", () => {
  test("insert stores a result given with the job, bigints as decimal strings", () => {
    const { store } = clockedStore();
    store.jobs.insert({ jobId: "done", spec: {}, state: "completed", result: { fuelUsed: 2n ** 64n } });
    store.jobs.insert({ jobId: "open", spec: {} });
    assert.deepEqual(store.jobs.require("done").result, { fuelUsed: (2n ** 64n).toString() });
    assert.equal(store.jobs.require("done").state, "completed");
    assert.equal(store.jobs.require("open").result, null);
    store.close();
  });

  test("byState orders by priority, then earliest deadline, jobs without deadline last", () => {
    const { store, clock } = clockedStore();
    const add = (
      jobId: string,
      priority: "critical" | "high" | "normal" | "low" | "background",
      deadline?: number,
    ) => {
      clock.now += 1;
      store.jobs.insert({ jobId, spec: {}, priority, deadline: deadline ?? null });
    };
    add("normal-late", "normal", 900);
    add("background", "background", 10);
    add("normal-none", "normal");
    add("normal-early", "normal", 100);
    add("critical", "critical", 5_000);
    add("normal-early-younger", "normal", 100);
    add("high", "high");
    store.jobs.insert({ jobId: "running", spec: {}, state: "running", priority: "critical" });

    assert.deepEqual(
      store.jobs.byState("queued").map((job) => job.jobId),
      [
        "critical",
        "high",
        "normal-early",
        "normal-early-younger",
        "normal-late",
        "normal-none",
        "background",
      ],
    );
    assert.deepEqual(
      store.jobs.byState(["queued", "running"], { limit: 2 }).map((job) => job.jobId),
      ["critical", "running"],
    );
    assert.equal(store.jobs.count("queued"), 7);
    assert.equal(store.jobs.count(), 8);
    store.close();
  });

  test("list is newest first and filters by role", () => {
    const { store, clock } = clockedStore();
    for (const [jobId, role] of [
      ["a", "buyer"],
      ["b", "executor"],
      ["c", "buyer"],
    ] as const) {
      clock.now += 10;
      store.jobs.insert({ jobId, role, spec: { jobId } });
    }
    assert.deepEqual(
      store.jobs.list().map((job) => job.jobId),
      ["c", "b", "a"],
    );
    assert.deepEqual(
      store.jobs.list({ role: "buyer" }).map((job) => job.jobId),
      ["c", "a"],
    );
    assert.deepEqual(
      store.jobs.list({ limit: 1, offset: 1 }).map((job) => job.jobId),
      ["b"],
    );
    assert.deepEqual(
      store.jobs.byState("queued", { role: "executor" }).map((job) => job.jobId),
      ["b"],
    );
    store.close();
  });

  test("update patches only the given fields and stamps updatedAt", () => {
    const { store, clock } = clockedStore();
    store.jobs.insert({ jobId: "j", spec: { x: 1 }, deadline: 50 });
    clock.now = 2_000;
    store.jobs.update("j", { state: "failed", reason: "no_bids" });
    const updated = store.jobs.require("j");
    assert.equal(updated.state, "failed");
    assert.equal(updated.reason, "no_bids");
    assert.equal(updated.deadline, 50);
    assert.equal(updated.createdAt, 1_000);
    assert.equal(updated.updatedAt, 2_000);
    assert.deepEqual(updated.spec, { x: 1 });

    clock.now = 3_000;
    store.jobs.update("j", { deadline: null, reason: null, result: { fuel: 7n } });
    store.jobs.update("j", { priority: "low" });
    const cleared = store.jobs.require("j");
    assert.equal(cleared.deadline, null);
    assert.equal(cleared.reason, null);
    assert.equal(cleared.state, "failed");
    assert.equal(cleared.priority, "low");
    assert.deepEqual(cleared.result, { fuel: "7" });
    assert.equal(cleared.updatedAt, 3_000);
    store.close();
  });

  test("bad input is refused with a reason", () => {
    const { store } = clockedStore();
    store.jobs.insert({ jobId: "j", spec: { first: true } });
    assert.throws(
      () => store.jobs.insert({ jobId: "j", spec: { first: false }, state: "failed" }),
      /jobs\.insert: job j is already stored/,
    );
    assert.equal(store.jobs.has("j"), true);
    assert.equal(store.jobs.has("k"), false);
    assert.deepEqual(store.jobs.require("j").spec, { first: true });
    assert.equal(store.jobs.require("j").state, "queued");
    assert.throws(
      () => store.jobs.insert({ jobId: "", spec: {} }),
      /jobs\.insert: jobId must be a non-empty string/,
    );
    assert.throws(
      () => store.jobs.insert({ jobId: "k", spec: {}, state: "done" as never }),
      /jobs\.insert: state must be one of queued, .*got 'done'/,
    );
    assert.throws(
      () => store.jobs.insert({ jobId: "k", spec: {}, priority: "urgent" as never }),
      /priority must be one of critical/,
    );
    assert.throws(
      () => store.jobs.insert({ jobId: "k", spec: { module: new Uint8Array(2) } }),
      /spec is not JSON-serialisable: 'module' is bytes/,
    );
    assert.throws(
      () => store.jobs.insert({ jobId: "k", spec: {}, deadline: -1 }),
      /deadline must be a non-negative integer/,
    );
    assert.throws(() => store.jobs.update("missing", { state: "failed" }), /job missing is not in the store/);
    assert.throws(() => store.jobs.require("missing"), /job missing is not in the store/);
    assert.equal(store.jobs.get("k"), undefined);
    store.close();
  });
});

describe("job events", () => {
  test("append-only log, in order, with reason codes and polling by seq", () => {
    const dir = freshDir();
    const store = withJobs(openStore(dir), "j", "other");
    const first = store.jobEvents.append({ jobId: "j", kind: "announced", at: 10 });
    const second = store.jobEvents.append({
      jobId: "j",
      kind: "reassigned",
      reason: "deadline_missed",
      peer: "p1",
      data: { attempt: 2, backoffMs: 400n },
    });
    store.jobEvents.append({ jobId: "other", kind: "announced" });
    assert.ok(second > first);
    assert.deepEqual(
      store.jobEvents.list("j").map((event) => [event.seq, event.kind]),
      [
        [first, "announced"],
        [second, "reassigned"],
      ],
    );
    const [newer, ...rest] = store.jobEvents.list("j", { afterSeq: first });
    assert.deepEqual(rest, []);
    assert.deepEqual(newer, {
      seq: second,
      jobId: "j",
      at: newer?.at,
      kind: "reassigned",
      reason: "deadline_missed",
      peer: "p1",
      data: { attempt: 2, backoffMs: "400" },
    });

    const raw = new DatabaseSync(join(dir, DATABASE_FILE));
    assert.throws(() => raw.exec("UPDATE job_events SET kind = 'completed'"), /job_events is append-only/);
    assert.throws(() => raw.exec("DELETE FROM job_events"), /job_events is append-only/);
    raw.close();
    assert.equal(store.jobEvents.list("j").length, 2);
    assert.throws(
      () => store.jobEvents.append({ jobId: "j", kind: "" }),
      /jobEvents\.append: kind must be a non-empty string/,
    );
    assert.throws(
      () => store.jobEvents.append({ jobId: "never stored", kind: "announced" }),
      /jobEvents\.append: job never stored is not in the store/,
    );
    store.close();
  });
});

describe("bids", () => {
  test("cheapest first by numeric bigint price, then earliest; states with reasons", () => {
    const { store, clock } = clockedStore();
    withJobs(store, "j");
    const bid = (bidder: string, price: bigint, operator = OPERATOR_A) => {
      clock.now += 1;
      return store.bids.insert({
        jobId: "j",
        bidder,
        operator,
        pricePerMegaFuel: price,
        message: { price },
        signature: SIGNATURE,
      });
    };
    bid("ten", 10n);
    bid("nine", 9n);
    bid("huge", 2n ** 80n, OPERATOR_B);
    bid("nine-later", 9n);
    assert.deepEqual(
      store.bids.forJob("j").map((b) => b.bidder),
      ["nine", "nine-later", "ten", "huge"],
    );
    assert.equal(store.bids.get("j", "huge")?.pricePerMegaFuel, 2n ** 80n);
    assert.deepEqual(store.bids.get("j", "huge")?.message, { price: (2n ** 80n).toString() });

    const rejected = store.bids.setState("j", "ten", "rejected", "price_too_high");
    assert.equal(rejected.state, "rejected");
    assert.equal(rejected.reason, "price_too_high");
    assert.deepEqual(
      store.bids.forJob("j", { state: "rejected" }).map((b) => b.bidder),
      ["ten"],
    );
    store.close();
  });

  test("duplicates, malformed bids and bids for unknown jobs are refused with a reason", () => {
    const { store } = withJobsClocked("j");
    const base = {
      jobId: "j",
      bidder: "p",
      operator: OPERATOR_A,
      pricePerMegaFuel: 1n,
      message: {},
      signature: SIGNATURE,
    };
    assert.equal(store.bids.insert(base), true);
    assert.throws(
      () => store.bids.insert({ ...base, pricePerMegaFuel: 2n }),
      /a bid from p for job j is already stored/,
    );
    assert.equal(store.bids.insert({ ...base, pricePerMegaFuel: 3n }, { ifAbsent: true }), false);
    assert.equal(store.bids.get("j", "p")?.pricePerMegaFuel, 1n);
    assert.equal(store.bids.insert({ ...base, bidder: "r" }, { ifAbsent: true }), true);
    assert.equal(store.bids.get("j", "r")?.operator, OPERATOR_A);
    assert.throws(
      () => store.bids.insert({ ...base, bidder: "q", operator: "0x1234" }, { ifAbsent: true }),
      /bids\.insert: operator '0x1234' is not a 20-byte hex address/,
    );
    assert.throws(
      () => store.bids.insert({ ...base, bidder: "q", operator: "0x1234" }),
      /bids\.insert: operator '0x1234' is not a 20-byte hex address/,
    );
    assert.throws(
      () => store.bids.insert({ ...base, bidder: "q", pricePerMegaFuel: -1n }),
      /pricePerMegaFuel must be a non-negative bigint/,
    );
    assert.throws(
      () => store.bids.insert({ ...base, bidder: "q", signature: "0xzz" }),
      /signature must be 0x-prefixed hex/,
    );
    assert.throws(() => store.bids.setState("j", "nobody", "accepted"), /no bid from nobody for job j/);
    for (const ifAbsent of [false, true])
      assert.throws(
        () => store.bids.insert({ ...base, jobId: "unknown" }, { ifAbsent }),
        /bids\.insert: job unknown is not in the store/,
      );
    store.close();
  });
});

describe("assignments", () => {
  test("attempts, active by deadline, overdue and updates", () => {
    const { store, clock } = withJobsClocked("j", "k");
    const first = store.assignments.insert({
      jobId: "j",
      executor: "p1",
      operator: OPERATOR_A,
      attempt: 1,
      deadline: 3_000,
    });
    store.assignments.insert({
      jobId: "k",
      executor: "p2",
      operator: OPERATOR_B,
      attempt: 1,
      deadline: 2_000,
      state: "running",
    });
    assert.equal(store.assignments.latestAttempt("j"), 1);
    assert.equal(store.assignments.latestAttempt("none"), 0);
    assert.deepEqual(
      store.assignments.active().map((a) => a.jobId),
      ["k", "j"],
    );

    clock.now = 2_500;
    assert.deepEqual(
      store.assignments.overdue().map((a) => a.jobId),
      ["k"],
    );
    assert.deepEqual(
      store.assignments.overdue(3_001).map((a) => a.jobId),
      ["k", "j"],
    );

    const timedOut = store.assignments.update(first.id, { state: "timed_out", reason: "deadline_missed" });
    assert.equal(timedOut.state, "timed_out");
    assert.equal(timedOut.reason, "deadline_missed");
    assert.equal(timedOut.updatedAt, 2_500);
    assert.equal(timedOut.deadline, 3_000);
    assert.deepEqual(store.assignments.get(first.id), timedOut);
    clock.now = 2_600;
    const extended = store.assignments.update(first.id, { deadline: 4_000 });
    assert.deepEqual(
      [extended.state, extended.deadline, extended.reason, extended.updatedAt],
      ["timed_out", 4_000, "deadline_missed", 2_600],
    );
    assert.equal(store.assignments.update(first.id, { reason: null }).reason, null);
    const retry = store.assignments.insert({
      jobId: "j",
      executor: "p3",
      operator: OPERATOR_B,
      attempt: 2,
      deadline: 9_000,
    });
    assert.equal(store.assignments.latestAttempt("j"), 2);
    assert.deepEqual(
      store.assignments.forJob("j").map((a) => [a.attempt, a.executor, a.state]),
      [
        [1, "p1", "timed_out"],
        [2, "p3", "assigned"],
      ],
    );
    assert.deepEqual(
      store.assignments
        .active()
        .map((a) => a.id)
        .sort(),
      [retry.id, store.assignments.forJob("k")[0]!.id].sort(),
    );
    store.close();
  });

  test("an attempt is updated by its key; another job's or executor's attempt is left alone", () => {
    const { store, clock } = withJobsClocked("j", "k");
    const base = { executor: "p1", operator: OPERATOR_A, attempt: 1, deadline: 3_000 };
    const mine = store.assignments.insert({ ...base, jobId: "j" });
    const other = store.assignments.insert({ ...base, jobId: "k" });
    clock.now = 2_000;
    assert.equal(
      store.assignments.updateAttempt(
        { jobId: "j", executor: "p1", attempt: 1 },
        { state: "completed", reason: null },
      ),
      true,
    );
    const updated = store.assignments.get(mine.id)!;
    assert.deepEqual([updated.state, updated.reason, updated.updatedAt], ["completed", null, 2_000]);
    assert.equal(store.assignments.get(other.id)!.state, "assigned");
    assert.equal(
      store.assignments.updateAttempt(
        { jobId: "j", executor: "p2", attempt: 1 },
        { state: "failed", reason: "deadline_missed" },
      ),
      false,
    );
    assert.equal(
      store.assignments.updateAttempt(
        { jobId: "j", executor: "p1", attempt: 2 },
        { state: "failed", reason: null },
      ),
      false,
    );
    assert.throws(
      () =>
        store.assignments.updateAttempt(
          { jobId: "j", executor: "p1", attempt: 1 },
          { state: "bogus" as never, reason: null },
        ),
      /assignments\.updateAttempt: state/,
    );
    assert.equal(store.assignments.get(mine.id)!.state, "completed");
    store.close();
  });

  test("the same executor and attempt is refused; bad fields and unknown jobs named", () => {
    const { store } = withJobsClocked("j");
    const base = { jobId: "j", executor: "p1", operator: OPERATOR_A, attempt: 1, deadline: 10 };
    store.assignments.insert(base);
    assert.throws(
      () => store.assignments.insert({ ...base, jobId: "unknown" }),
      /assignments\.insert: job unknown is not in the store/,
    );
    assert.throws(() => store.assignments.insert(base), /job j attempt 1 is already assigned to p1/);
    assert.throws(() => store.assignments.insert({ ...base, attempt: 0 }), /attempt must be an integer ≥ 1/);
    assert.throws(
      () => store.assignments.update(999, { state: "failed" }),
      /assignment 999 is not in the store/,
    );
    assert.throws(
      () => store.assignments.update(1, { state: "lost" as never }),
      /state must be one of assigned/,
    );
    store.close();
  });
});

describe("receipts", () => {
  test("idempotent put, equivocation kept, bigints as strings, lookups", () => {
    const { store } = withJobsClocked("0xj");
    const message = { jobId: "0xj", executor: OPERATOR_A, fuelUsed: 2n ** 63n, status: 0 };
    const first = store.receipts.put({
      jobId: "0xj",
      executor: OPERATOR_A.toLowerCase(),
      message,
      signature: SIGNATURE,
      cid: "bafyreceipt",
    });
    assert.equal(first.inserted, true);
    assert.equal(first.row.executor, OPERATOR_A, "stored checksummed");
    assert.deepEqual(first.row.message, { ...message, fuelUsed: (2n ** 63n).toString() });

    const again = store.receipts.put({ jobId: "0xj", executor: OPERATOR_A, message, signature: SIGNATURE });
    assert.equal(again.inserted, false);
    assert.equal(again.row.id, first.row.id);

    const conflicting = store.receipts.put({
      jobId: "0xj",
      executor: OPERATOR_A,
      message: { ...message, fuelUsed: 1n },
      signature: `0x${"cd".repeat(65)}`,
    });
    assert.equal(conflicting.inserted, true);
    store.receipts.put({ jobId: "0xj", executor: OPERATOR_B, message, signature: SIGNATURE });

    assert.equal(store.receipts.forJob("0xj").length, 3);
    assert.equal(store.receipts.get("0xj", OPERATOR_B)?.executor, OPERATOR_B);
    assert.equal(store.receipts.get("0xj")?.id, first.row.id);
    assert.equal(store.receipts.byCid("bafyreceipt")?.id, first.row.id);
    assert.deepEqual(
      store.receipts.list({ afterId: first.row.id, limit: 1 }).map((r) => r.id),
      [conflicting.row.id],
    );
    assert.throws(
      () => store.receipts.put({ jobId: "0xj", executor: "nobody", message, signature: SIGNATURE }),
      /receipts\.put: executor 'nobody' is not a 20-byte hex address/,
    );
    assert.throws(
      () =>
        store.receipts.put({
          jobId: "0xj",
          executor: OPERATOR_A,
          message: [] as never,
          signature: SIGNATURE,
        }),
      /message must be an object/,
    );
    assert.throws(
      () => store.receipts.put({ jobId: "0xunknown", executor: OPERATOR_A, message, signature: SIGNATURE }),
      /receipts\.put: job 0xunknown is not in the store/,
    );
    store.close();
  });
});

describe("peers", () => {
  test("upsert merges, penalties accumulate, list by last seen", () => {
    const { store } = clockedStore();
    const peerKey = `0x${"11".repeat(32)}`;
    store.peers.upsert({ peerId: "a", operator: OPERATOR_A, peerKey, lastSeen: 5 });
    store.peers.upsert({ peerId: "a", lastSeen: 50, addrs: ["/ip4/127.0.0.1/tcp/1"] });
    const a = store.peers.get("a");
    assert.equal(a?.operator, OPERATOR_A);
    assert.equal(a?.peerKey, peerKey);
    assert.equal(a?.lastSeen, 50);
    assert.equal(a?.reputation, 0);

    assert.equal(store.peers.penalize("b").penalties, 1);
    assert.equal(store.peers.penalize("b", 3).penalties, 4);
    assert.equal(store.peers.setReputation("b", 0.75).reputation, 0.75);
    store.peers.touch("c", 20);
    assert.deepEqual(
      store.peers.list().map((p) => p.peerId),
      ["a", "c", "b"],
    );
    assert.equal(store.peers.get("b")?.lastSeen, null);

    assert.throws(
      () => store.peers.upsert({ peerId: "a", peerKey: "0x1234" + "00".repeat(40) }),
      /peerKey is \d+ characters, more than 66/,
    );
    assert.throws(() => store.peers.penalize("a", 0), /count must be a positive integer/);
    assert.throws(() => store.peers.setReputation("a", Number.NaN), /reputation must be a finite number/);
    store.close();
  });
});

describe("meta", () => {
  test("strings and JSON values", () => {
    const { store } = clockedStore();
    assert.equal(store.meta.get("missing"), undefined);
    store.meta.set("name", "node-1");
    store.meta.set("name", "node-2");
    assert.equal(store.meta.get("name"), "node-2");
    store.meta.setJson("cursor", { block: 10n, hash: "0xabc" });
    assert.deepEqual(store.meta.getJson("cursor"), { block: "10", hash: "0xabc" });
    assert.equal(store.meta.delete("name"), true);
    assert.equal(store.meta.delete("name"), false);
    assert.throws(() => store.meta.set("n", 5 as never), /value of 'n' must be a string/);
    store.close();
  });
});

describe("blockstore", () => {
  test("put returns the protocol CID and the bytes round-trip", async () => {
    const { store } = clockedStore();
    const bytes = new TextEncoder().encode("hello blocks");
    const cid = await store.blocks.put(bytes);
    assert.equal(cid, (await cidOf(bytes)).toString());
    assert.equal(await store.blocks.put(bytes), cid, "put is idempotent");
    assert.equal(store.blocks.has(cid), true);
    assert.equal(store.blocks.size(cid), bytes.length);
    assert.deepEqual(store.blocks.get(cid), bytes);
    const empty = await store.blocks.put(new Uint8Array(0));
    assert.deepEqual(store.blocks.get(empty), new Uint8Array(0));
    assert.equal(store.blocks.delete(cid), true);
    assert.equal(store.blocks.has(cid), false);
    assert.equal(store.blocks.get(cid), undefined);
    store.close();
  });

  test("putWithCid checks the hash and stores nothing on mismatch", async () => {
    const { store } = clockedStore();
    const bytes = new TextEncoder().encode("announced module");
    const cid = (await cidOf(bytes)).toString();
    await assert.rejects(
      store.blocks.putWithCid(cid, new TextEncoder().encode("tampered module")),
      /do not hash to .* \(sha2-256 mismatch\)/,
    );
    assert.equal(store.blocks.has(cid), false);
    assert.equal(await store.blocks.putWithCid(cid, bytes), cid);
    assert.deepEqual(store.blocks.get(cid), bytes);

    const dagPbCid = CID.createV1(DAG_PB_CODEC, await sha256.digest(bytes)).toString();
    await assert.rejects(store.blocks.putWithCid(dagPbCid, bytes), /is not a CIDv1 raw sha2-256 block CID/);
    await assert.rejects(store.blocks.putWithCid("not-a-cid", bytes), /'not-a-cid' is not a valid CID/);
    assert.throws(() => store.blocks.get("QmNotReally"), /blocks\.get: 'QmNotReally' is not a valid CID/);
    store.close();
  });
});

describe("transactions", () => {
  test("a throwing transaction leaves nothing behind; nested ones roll back alone", () => {
    const { store } = clockedStore(freshDir());
    assert.throws(
      () =>
        store.transaction(() => {
          store.jobs.insert({ jobId: "j", spec: {} });
          store.jobEvents.append({ jobId: "j", kind: "queued" });
          throw new Error("placement failed");
        }),
      /placement failed/,
    );
    assert.equal(store.jobs.get("j"), undefined);
    assert.deepEqual(store.jobEvents.list("j"), []);

    const result = store.transaction(() => {
      store.jobs.insert({ jobId: "outer", spec: {} });
      assert.throws(() =>
        store.transaction(() => {
          store.jobs.insert({ jobId: "inner", spec: {} });
          throw new Error("inner");
        }),
      );
      return "committed";
    });
    assert.equal(result, "committed");
    assert.ok(store.jobs.get("outer"));
    assert.equal(store.jobs.get("inner"), undefined);
    assert.throws(() => store.transaction(async () => undefined), /fn must be synchronous/);
    store.close();
  });
});

describe("group commit", () => {
  test("a write alone in its turn commits, or rolls back entirely with its own error", async () => {
    const dir = freshDir();
    const store = openStore(dir);
    await store.commit(() => store.jobs.insert({ jobId: "alone", spec: {} }));
    await assert.rejects(
      store.commit(() => {
        store.jobs.insert({ jobId: "half", spec: {} });
        store.jobEvents.append({ jobId: "half", kind: "queued" });
        throw new Error("rejected write");
      }),
      (error: Error) => error.message === "rejected write",
    );
    await assert.rejects(
      store.commit(() => store.jobs.insert({ jobId: "alone", spec: {} })),
      /jobs\.insert: job alone is already stored/,
    );
    await assert.rejects(
      store.commit(async () => undefined),
      /fn must be synchronous/,
    );
    const seq = await store.commit(() =>
      store.transaction(() => store.jobEvents.append({ jobId: "alone", kind: "queued" })),
    );
    store.close();

    const reopened = openStore(dir);
    assert.ok(reopened.jobs.get("alone"));
    assert.equal(reopened.jobs.get("half"), undefined);
    assert.deepEqual(reopened.jobEvents.list("half"), []);
    assert.deepEqual(
      reopened.jobEvents.list("alone").map((event) => [event.seq, event.kind]),
      [[seq, "queued"]],
    );
    reopened.close();
  });

  test("writes queued in one turn commit together; a failing write rejects alone", async () => {
    const dir = freshDir();
    const store = openStore(dir);
    const results = await Promise.allSettled([
      store.commit(() => {
        store.jobs.insert({ jobId: "a", spec: {} });
        return "a";
      }),
      store.commit(() => {
        store.jobs.insert({ jobId: "half", spec: {} });
        throw new Error("rejected write");
      }),
      store.commit(() => store.jobEvents.append({ jobId: "a", kind: "queued" })),
      store.commit(async () => undefined),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ["fulfilled", "rejected", "fulfilled", "rejected"],
    );
    assert.equal((results[0] as PromiseFulfilledResult<string>).value, "a");
    assert.equal((results[2] as PromiseFulfilledResult<number>).value, store.jobEvents.list("a")[0]?.seq);
    assert.match(String((results[1] as PromiseRejectedResult).reason), /rejected write/);
    assert.match(String((results[3] as PromiseRejectedResult).reason), /fn must be synchronous/);
    assert.equal(store.jobs.get("half"), undefined);

    const pending = store.commit(() => store.meta.set("flushed", "on close"));
    store.close();
    await pending;
    await assert.rejects(
      store.commit(() => undefined),
      /the store is closed/,
    );

    const reopened = openStore(dir);
    assert.ok(reopened.jobs.get("a"));
    assert.equal(reopened.jobEvents.list("a").length, 1);
    assert.equal(reopened.meta.get("flushed"), "on close");
    reopened.close();
  });
});
