import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, test } from "node:test";
import { cidOf, MAX_BLOCK_BYTES } from "../../offchain/src/protocol/index.ts";
import { BlockAccess } from "../../offchain/src/node/block-access.ts";
import {
  DATABASE_FILE,
  LATEST_SCHEMA_VERSION,
  MIGRATIONS,
  migrate,
  openStore,
  type Store,
} from "../../offchain/src/store/index.ts";
import { freshDirs } from "../support/fresh-dirs.ts";

const OPERATOR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const SIGNATURE = `0x${"ab".repeat(65)}` as const;
const BUYER_PEER = "12D3KooWBuyerPeerBuyerPeerBuyerPeerBuyerPeer";
const DONOR_PEER = "12D3KooWDonorPeerDonorPeerDonorPeerDonorPeer";
const STRANGER = "12D3KooWStrangerStrangerStrangerStrangerStr";
const MINUTE = 60_000;

const freshDir = freshDirs("cell-blocks-", "store");
const bytesOf = (text: string, size = 0) => new TextEncoder().encode(text.padEnd(size, "."));

function clockedStore(): { store: Store; clock: { now: number } } {
  const clock = { now: 1_000_000 };
  return { store: openStore(freshDir(), { now: () => clock.now }), clock };
}

/** A job row as the buyer and donor write it: the announce in the spec, the output in the result. */
function job(
  store: Store,
  jobId: string,
  blocks: { module: string; input: string; output?: string },
  options: { role?: "buyer" | "executor"; state?: "queued" | "running" | "completed" | "failed" } = {},
): void {
  store.jobs.insert({
    jobId,
    role: options.role ?? "buyer",
    state: options.state ?? "queued",
    spec: { announce: { moduleCid: blocks.module, inputCid: blocks.input, buyerPeer: BUYER_PEER } },
    result: blocks.output === undefined ? undefined : { outputCid: blocks.output, status: 0 },
  });
}

async function put(store: Store, text: string, size = 0): Promise<string> {
  return store.blocks.put(bytesOf(text, size));
}

describe("blockstore garbage collection (real SQLite)", () => {
  test("never deletes a block an unfinished job references, whatever the cap", async () => {
    const { store, clock } = clockedStore();
    const module = await put(store, "module", 1000);
    const input = await put(store, "input", 1000);
    job(store, "0x01", { module, input }, { state: "running" });
    clock.now += 48 * 60 * MINUTE;
    const report = store.blocks.collect({ maxBytes: 0 });
    assert.deepEqual(report, { deleted: 0, freedBytes: 0, totalBytes: 2000 });
    assert.ok(store.blocks.has(module) && store.blocks.has(input));

    store.jobs.update("0x01", { state: "completed" });
    assert.equal(store.blocks.collect({ maxBytes: 0 }).deleted, 2, "a finished job's blocks are a cache");
    assert.equal(store.blocks.totalBytes(), 0);
    store.close();
  });

  test("deletes modules and inputs no unfinished job references once idle, keeps recent ones", async () => {
    const { store, clock } = clockedStore();
    const stray = await put(store, "stray input nobody references");
    const module = await put(store, "module of a finished job");
    job(store, "0x02", { module, input: stray }, { state: "failed" });
    clock.now += 30 * MINUTE;
    const recent = await put(store, "stored half an hour later");
    clock.now += 31 * MINUTE;
    const report = store.blocks.collect({ idleMs: 60 * MINUTE });
    assert.equal(report.deleted, 2);
    assert.equal(store.blocks.has(stray), false);
    assert.equal(store.blocks.has(module), false);
    assert.equal(store.blocks.has(recent), true, "used within the idle time");
    store.close();
  });

  test("a read counts as a use: the least recently used unreferenced block goes first over the cap", async () => {
    const { store, clock } = clockedStore();
    const first = await put(store, "first", 100);
    clock.now += 2 * MINUTE;
    const second = await put(store, "second", 100);
    clock.now += 2 * MINUTE;
    const third = await put(store, "third", 100);
    clock.now += 2 * MINUTE;
    assert.ok(store.blocks.get(first), "first is read: now the most recently used");
    const report = store.blocks.collect({ maxBytes: 200, idleMs: 60 * MINUTE });
    assert.deepEqual(report, { deleted: 1, freedBytes: 100, totalBytes: 200 });
    assert.equal(store.blocks.has(second), false, "the least recently used went");
    assert.ok(store.blocks.has(first) && store.blocks.has(third));
    store.close();
  });

  test("a finished job's output stays for outputMs, and goes last when over the cap", async () => {
    const { store, clock } = clockedStore();
    const module = await put(store, "module", 100);
    const input = await put(store, "input", 100);
    const output = await put(store, "output", 100);
    job(store, "0x03", { module, input }, { role: "executor", state: "running" });
    store.jobs.update("0x03", { state: "completed", result: { outputCid: output } });
    clock.now += 2 * 60 * MINUTE;
    store.blocks.get(output); // the newest use: LRU alone would evict it last anyway
    store.blocks.get(module);
    assert.equal(store.blocks.collect({ idleMs: 60 * MINUTE, outputMs: 24 * 60 * MINUTE }).deleted, 1);
    assert.equal(store.blocks.has(input), false);
    assert.equal(store.blocks.has(output), true, "an output of a job finished 2 h ago stays");

    clock.now += 1;
    store.blocks.get(output);
    clock.now += 2 * MINUTE;
    store.blocks.get(module); // more recently used than the output, yet it goes first
    const capped = store.blocks.collect({ maxBytes: 100, idleMs: 60 * MINUTE });
    assert.equal(capped.deleted, 1);
    assert.equal(store.blocks.has(module), false, "other cache entries go before a recent output");
    assert.equal(store.blocks.has(output), true);

    clock.now += 25 * 60 * MINUTE;
    assert.equal(store.blocks.collect().deleted, 1, "an output of a job long finished goes");
    assert.equal(store.blocks.has(output), false);
    store.close();
  });

  test("signed receipts and receipt batches are evidence: public and never collected", async () => {
    const { store, clock } = clockedStore();
    const receiptBlock = bytesOf(JSON.stringify({ receipt: { jobId: "0x04" }, signature: SIGNATURE }));
    const receipt = await store.blocks.put(receiptBlock);
    job(store, "0x04", { module: receipt, input: receipt }, { role: "executor", state: "completed" });
    store.receipts.put({
      jobId: "0x04",
      executor: OPERATOR,
      message: { n: 1 },
      signature: SIGNATURE,
      cid: receipt,
    });
    const batchBytes = bytesOf(
      JSON.stringify({ type: "cell-receipt-batch/1", executor: OPERATOR, sequence: 0 }),
    );
    const batch = await store.blocks.putWithCid((await cidOf(batchBytes)).toString(), batchBytes, {
      pin: true,
    });
    const other = await put(store, "not evidence");
    // Bytes that only look like a batch (a module or output anyone can send) are not pinned.
    const lookAlike = await store.blocks.put(
      bytesOf(JSON.stringify({ type: "cell-receipt-batch/1", executor: OPERATOR, sequence: 9 })),
    );
    assert.equal(store.blocks.isEvidence(receipt), true);
    assert.equal(store.blocks.isEvidence(batch), true);
    assert.equal(store.blocks.isEvidence(other), false);
    assert.equal(store.blocks.isEvidence(lookAlike), false);
    clock.now += 48 * 60 * MINUTE;
    assert.equal(store.blocks.collect({ maxBytes: 0 }).deleted, 2);
    assert.ok(store.blocks.has(receipt) && store.blocks.has(batch));
    assert.equal(store.blocks.has(lookAlike), false);
    store.close();
  });

  test("reads a range of a block with its size; refuses a block above the block limit, naming it", async () => {
    const { store } = clockedStore();
    const cid = await put(store, "0123456789");
    assert.deepEqual(store.blocks.read(cid, 2, 3), { size: 10, bytes: bytesOf("234") });
    assert.deepEqual(store.blocks.read(cid, 8, 100), { size: 10, bytes: bytesOf("89") });
    assert.equal(store.blocks.read(cid, 10, 5)?.bytes.length, 0);
    const missing = (await cidOf(bytesOf("absent"))).toString();
    assert.equal(store.blocks.read(missing, 0, 1), undefined);
    await assert.rejects(
      store.blocks.put(new Uint8Array(MAX_BLOCK_BYTES + 1)),
      new RegExp(`block is ${MAX_BLOCK_BYTES + 1} bytes, above the ${MAX_BLOCK_BYTES}-byte block limit`),
    );
    store.close();
  });

  test("version 5 keeps every block, records its jobs' references and pins the receipt log's batches", async () => {
    const dir = freshDir();
    mkdirSync(dir);
    const v3 = new DatabaseSync(join(dir, DATABASE_FILE));
    migrate(v3, MIGRATIONS.slice(0, 3), () => 1);
    const module = bytesOf("module bytes");
    const first = bytesOf('{"type":"cell-receipt-batch/1","sequence":0,"previous":null}');
    const firstCid = (await cidOf(first)).toString();
    const batch = bytesOf(`{"type":"cell-receipt-batch/1","sequence":1,"previous":"${firstCid}"}`);
    const lookAlike = bytesOf('{"type":"cell-receipt-batch/1","sequence":7}');
    const [moduleCid, batchCid, lookAlikeCid] = await Promise.all([
      cidOf(module),
      cidOf(batch),
      cidOf(lookAlike),
    ]);
    const insert = v3.prepare("INSERT INTO blocks (cid, bytes, size, stored_at) VALUES (?, ?, ?, 7)");
    insert.run(moduleCid.toString(), module, module.length);
    insert.run(firstCid, first, first.length);
    insert.run(batchCid.toString(), batch, batch.length);
    insert.run(lookAlikeCid.toString(), lookAlike, lookAlike.length);
    v3.prepare("INSERT INTO meta (key, value) VALUES ('receipts.batchHead', ?)").run(
      JSON.stringify({ through: 1, cid: batchCid.toString(), sequence: 1 }),
    );
    v3.prepare(
      "INSERT INTO jobs (job_id, role, spec, state, priority, created_at, updated_at) VALUES (?, 'buyer', ?, 'queued', 2, 5, 5)",
    ).run(
      "0x05",
      JSON.stringify({ announce: { moduleCid: moduleCid.toString(), inputCid: batchCid.toString() } }),
    );
    v3.close();

    const store = openStore(dir);
    assert.equal(store.schemaVersion(), LATEST_SCHEMA_VERSION);
    assert.deepEqual(store.blocks.get(moduleCid.toString()), module);
    assert.deepEqual(
      store.blocks.references(moduleCid.toString()).map(({ jobId, kind }) => [jobId, kind]),
      [["0x05", "module"]],
    );
    assert.equal(store.blocks.isEvidence(batchCid.toString()), true, "the head batch");
    assert.equal(store.blocks.isEvidence(firstCid), true, "the batch its previous link names");
    assert.equal(
      store.blocks.isEvidence(lookAlikeCid.toString()),
      false,
      "bytes that only look like a batch",
    );
    assert.equal(store.blocks.isEvidence(moduleCid.toString()), false);
    store.close();
  });
});

describe("block access policy over the store", () => {
  test("a bought job's module and input go to its bidders and executors; its output to nobody", async () => {
    const { store } = clockedStore();
    const module = await put(store, "module");
    const input = await put(store, "input");
    const output = await put(store, "output");
    job(store, "0x06", { module, input, output }, { state: "running" });
    const access = new BlockAccess(store);
    assert.equal(access.entitled(input, DONOR_PEER), false, "no bid, no assignment yet");
    store.bids.insert({
      jobId: "0x06",
      bidder: DONOR_PEER,
      operator: OPERATOR,
      pricePerMegaFuel: 5n,
      message: {},
      signature: SIGNATURE,
    });
    assert.equal(access.entitled(input, DONOR_PEER), true);
    assert.equal(access.entitled(module, DONOR_PEER), true);
    assert.equal(access.entitled(output, DONOR_PEER), false);
    assert.equal(access.entitled(input, STRANGER), false);
    store.assignments.insert({
      jobId: "0x06",
      executor: STRANGER,
      operator: OPERATOR,
      attempt: 1,
      deadline: 9,
    });
    assert.equal(access.entitled(input, STRANGER), true, "an assigned executor");
    store.close();
  });

  test("an executed job's output goes to its buyer only, and naming a block as module or input gains nothing", async () => {
    const { store } = clockedStore();
    const output = await put(store, "an output");
    const othersOutput = await put(store, "another buyer's output");
    job(
      store,
      "0x07",
      { module: othersOutput, input: othersOutput, output },
      { role: "executor", state: "completed" },
    );
    const access = new BlockAccess(store);
    assert.equal(access.entitled(output, BUYER_PEER), true);
    assert.equal(access.entitled(output, DONOR_PEER), false);
    assert.equal(
      access.entitled(othersOutput, BUYER_PEER),
      false,
      "a block the buyer named as its module or input is not served back to it",
    );
    store.close();
  });

  test("grants let a participant in before its row is written; they are bounded and lapse with age", async () => {
    const { store, clock } = clockedStore();
    const input = await put(store, "input");
    job(store, "0x08", { module: input, input });
    const access = new BlockAccess(store, { now: () => clock.now, maxGrants: 2, grantTtlMs: 10 * MINUTE });
    access.grantJob(DONOR_PEER, "0x08");
    assert.equal(access.entitled(input, DONOR_PEER), true);
    assert.equal(access.entitled(input, STRANGER), false);
    const loose = await put(store, "a block no job references yet");
    access.grantBlocks(STRANGER, [loose], "0x09");
    assert.equal(access.entitled(loose, STRANGER), true);
    access.grantBlocks(BUYER_PEER, [loose], "0x09");
    assert.equal(access.grantCount(), 2, "the oldest grant went");
    assert.equal(access.entitled(input, DONOR_PEER), false);
    clock.now += 11 * MINUTE;
    assert.equal(access.entitled(loose, STRANGER), false, "a grant lapses");
    assert.equal(access.grantCount(), 0);
    store.close();
  });
});
