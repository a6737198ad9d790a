import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { openStore } from "../../offchain/src/store/index.ts";
import { parseTrace, requireStrace, SYNC_CALLS, type Syscall } from "../support/strace.ts";

const STORE_INDEX = new URL("../../offchain/src/store/index.ts", import.meta.url).pathname;
const PROTOCOL_INDEX = new URL("../../offchain/src/protocol/index.ts", import.meta.url).pathname;
const ACKS_BEFORE_KILL = 40;

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "cell-store-crash-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A writer that acknowledges each write on stdout only after the store call returned. */
const WRITER = `
import { openStore } from ${JSON.stringify(STORE_INDEX)};
const store = openStore(process.argv[2]);
for (let i = 0; ; i++) {
  const jobId = "job-" + i;
  store.transaction(() => {
    store.jobs.insert({ jobId, spec: { i, fuel: BigInt(i) * 1000n } });
    store.jobEvents.append({ jobId, kind: "queued", reason: "no_bids" });
  });
  const cid = await store.blocks.put(new TextEncoder().encode("block " + i));
  store.receipts.put({ jobId, executor: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", message: { i }, signature: "0x01" });
  await store.commit(() => store.jobEvents.append({ jobId, kind: "assigned" }), { durable: i % 2 === 0 });
  process.stdout.write(JSON.stringify({ jobId, cid }) + "\\n");
  await new Promise((resolve) => setImmediate(resolve));
}
`;

test("every acknowledged write, fsynced or not, survives SIGKILL of the writing process", async () => {
  const script = join(root, "writer.ts");
  const dir = join(root, "data");
  await writeFile(script, WRITER);
  const child = spawn(process.execPath, ["--no-warnings", script, dir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += String(chunk)));
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on("exit", (_code, signal) => resolve(signal)),
  );

  const acked: Array<{ jobId: string; cid: string }> = [];
  try {
    for await (const line of createInterface({ input: child.stdout })) {
      acked.push(JSON.parse(line));
      if (acked.length === ACKS_BEFORE_KILL) {
        child.kill("SIGKILL");
        break;
      }
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  assert.equal(await exited, "SIGKILL", stderr);
  assert.equal(acked.length, ACKS_BEFORE_KILL, `writer stopped early: ${stderr}`);

  const store = openStore(dir);
  try {
    for (const { jobId, cid } of acked) {
      const job = store.jobs.get(jobId);
      assert.ok(job, `${jobId} was acknowledged but is lost`);
      assert.deepEqual(
        store.jobEvents.list(jobId).map((event) => event.kind),
        ["queued", "assigned"],
        `${jobId}: an acknowledged group commit is lost`,
      );
      assert.equal(store.blocks.has(cid), true, `block ${cid} lost`);
      assert.equal(store.receipts.forJob(jobId).length, 1);
    }
    assert.ok(store.jobs.count() >= ACKS_BEFORE_KILL);
    assert.deepEqual(store.durability(), { journalMode: "wal", synchronous: "full" });
  } finally {
    store.close();
  }
});

/**
 * Stores signed receipts the way an executor does (job row first, relaxed; then the receipt
 * in a default, durable commit) and marks each step with a write(2) on stdout: `signed <id>`
 * before storing, `ack <id>` once the commit resolved, where the node would deliver it.
 */
const RECEIPT_WRITER = `
import { writeSync } from "node:fs";
import { toHex } from ${JSON.stringify(import.meta.resolve("viem"))};
import { privateKeyToAccount } from ${JSON.stringify(import.meta.resolve("viem/accounts"))};
import { openStore } from ${JSON.stringify(STORE_INDEX)};
import { cellDomain, receiptTypes, receiptToWire } from ${JSON.stringify(PROTOCOL_INDEX)};
const store = openStore(process.argv[2]);
const count = Number(process.argv[3]);
const executor = privateKeyToAccount("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d");
const domain = cellDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
for (let i = 0; i < count; i++) {
  const jobId = toHex(i + 1, { size: 32 });
  await store.commit(() => store.jobs.insert({ jobId, role: "executor", spec: { i }, state: "running" }), { durable: false });
  const receipt = {
    jobId, executor: executor.address, moduleCid: toHex(1, { size: 32 }), inputCid: toHex(2, { size: 32 }),
    outputCid: toHex(3, { size: 32 }), fuelUsed: 1000n + BigInt(i), status: 0,
    startedAt: BigInt(Date.now()), finishedAt: BigInt(Date.now()),
  };
  const signature = await executor.signTypedData({ domain, types: receiptTypes, primaryType: "Receipt", message: receipt });
  writeSync(1, "signed " + jobId + "\\n");
  await store.commit(() => store.receipts.put({ jobId, executor: executor.address, message: receiptToWire(receipt), signature }));
  writeSync(1, "ack " + jobId + "\\n");
}
store.close();
`;

const RECEIPTS_TRACED = 5;

test("a signed receipt is fsynced to the database before it is acknowledged (traced with strace)", async () => {
  requireStrace();
  const script = join(root, "receipt-writer.ts");
  const dir = join(root, "traced");
  const traceFile = join(root, "trace.txt");
  await writeFile(script, RECEIPT_WRITER);
  const traced = spawnSync(
    "strace",
    [
      ...["-f", "-qq", "-y", "-s", "96", "-o", traceFile],
      ...["-e", "trace=fsync,fdatasync,write,pwrite64,writev,pwritev,pwritev2"],
      ...[process.execPath, "--no-warnings", script, dir, String(RECEIPTS_TRACED)],
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  assert.equal(traced.status, 0, `writer failed under strace: ${traced.error ?? ""}${traced.stderr}`);
  const calls = parseTrace(await readFile(traceFile, "utf8"));
  const isDatabase = (call: Syscall) => /\/cell\.db(-wal)?$/.test(call.path);
  const markers = calls.filter((call) => call.name === "write" && /^(signed|ack) 0x/.test(call.text));
  assert.equal(markers.length, 2 * RECEIPTS_TRACED, "every receipt was signed and acknowledged");
  let acked = 0;
  let signedAt: number | undefined;
  let storedAt: number | undefined;
  let syncedAt: number | undefined;
  calls.forEach((call, index) => {
    if (call.name === "write" && call.text.startsWith("signed 0x")) {
      signedAt = index;
      storedAt = syncedAt = undefined;
    } else if (signedAt !== undefined && isDatabase(call) && call.name.startsWith("pwrite")) {
      storedAt ??= index;
    } else if (storedAt !== undefined && isDatabase(call) && SYNC_CALLS.has(call.name)) {
      syncedAt ??= index;
    } else if (call.name === "write" && call.text.startsWith("ack 0x")) {
      const receipt = call.text.slice(4, 70);
      assert.ok(signedAt !== undefined, `${receipt}: acknowledged before it was signed`);
      assert.ok(storedAt !== undefined, `${receipt}: acknowledged without a write to the database`);
      assert.ok(
        syncedAt !== undefined,
        `${receipt}: acknowledged without an fsync/fdatasync of the database after its write`,
      );
      acked += 1;
      signedAt = undefined;
    }
  });
  assert.equal(acked, RECEIPTS_TRACED);
});
