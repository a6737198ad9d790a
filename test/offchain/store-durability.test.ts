import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { openStore } from "../../offchain/src/store/index.ts";

const STORE_INDEX = new URL("../../offchain/src/store/index.ts", import.meta.url).pathname;
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
