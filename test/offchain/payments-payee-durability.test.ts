import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { keccak256, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { channelIdOf } from "../../offchain/src/chain/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { parseTrace, requireStrace, SYNC_CALLS, type Syscall } from "../support/strace.ts";

const STORE_INDEX = new URL("../../offchain/src/store/index.ts", import.meta.url).pathname;
const PAYMENTS_INDEX = new URL("../../offchain/src/payments/index.ts", import.meta.url).pathname;
const CHAIN_INDEX = new URL("../../offchain/src/chain/index.ts", import.meta.url).pathname;
const BUYER_KEY = keccak256(toHex("durability-buyer"));
const PAYEE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "cell-payee-durability-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/**
 * A payee that receives one voucher at a time on channel (buyer, buyer, PAYEE, 1), each paying
 * one more job, and marks each step with a write(2) on stdout: `received <n>` before the ledger
 * sees the voucher, `ack <n> <status>` once it answered, where the node would reply.
 */
const PAYEE_SCRIPT = `
import { writeSync } from "node:fs";
import { toHex } from ${JSON.stringify(import.meta.resolve("viem"))};
import { privateKeyToAccount } from ${JSON.stringify(import.meta.resolve("viem/accounts"))};
import { openStore } from ${JSON.stringify(STORE_INDEX)};
import { PayeeLedger } from ${JSON.stringify(PAYMENTS_INDEX)};
import { channelIdOf, signVoucher } from ${JSON.stringify(CHAIN_INDEX)};
const [dir, countText] = process.argv.slice(2);
const count = Number(countText);
const buyer = privateKeyToAccount(${JSON.stringify(BUYER_KEY)});
const pc = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const key = { buyer: buyer.address, signer: buyer.address, payee: ${JSON.stringify(PAYEE)}, nonce: 1n };
const channelId = channelIdOf(key);
const store = openStore(dir);
const channels = { channel: async () => ({ deposit: 10n ** 18n, paid: 0n, closesAt: 0n }) };
const ledger = new PayeeLedger({ store, channels, payee: key.payee, chainId: 31337, paymentChannels: pc });
await store.commit(() => {
  for (let i = 1; i <= count; i++) store.payeeLedger.addEarning({ jobId: toHex(i, { size: 32 }), signer: buyer.address, amount: 10n });
});
for (let i = 1; i <= count; i++) {
  const cumulativeAmount = 10n * BigInt(i);
  const signature = await signVoucher(buyer, 31337, pc, { channelId, cumulativeAmount });
  const voucher = { key: { ...key, nonce: "1" }, cumulativeAmount: cumulativeAmount.toString(), signature, jobs: [toHex(i, { size: 32 })] };
  writeSync(1, "received " + i + "\\n");
  const { results } = await ledger.receive({ type: "vouchers", vouchers: [voucher] });
  writeSync(1, "ack " + i + " " + results[0].status + "\\n");
}
if (process.argv[4] === "hang") await new Promise(() => {});
store.close();
`;

test("an accepted voucher is written and fsynced to the database before the answer (traced with strace)", async () => {
  requireStrace();
  const script = join(root, "payee.ts");
  const dir = join(root, "traced");
  const traceFile = join(root, "trace.txt");
  const count = 4;
  await writeFile(script, PAYEE_SCRIPT);
  const traced = spawnSync(
    "strace",
    [
      ...["-f", "-qq", "-y", "-s", "96", "-o", traceFile],
      ...["-e", "trace=fsync,fdatasync,write,pwrite64,writev,pwritev,pwritev2"],
      ...[process.execPath, "--no-warnings", script, dir, String(count)],
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  assert.equal(traced.status, 0, `payee failed under strace: ${traced.error ?? ""}${traced.stderr}`);
  const calls = parseTrace(await readFile(traceFile, "utf8"));
  const isDatabase = (call: Syscall) => /\/cell\.db(-wal)?$/.test(call.path);
  let acked = 0;
  let receivedAt: number | undefined;
  let storedAt: number | undefined;
  let syncedAt: number | undefined;
  calls.forEach((call, index) => {
    if (call.name === "write" && call.text.startsWith("received ")) {
      receivedAt = index;
      storedAt = syncedAt = undefined;
    } else if (receivedAt !== undefined && isDatabase(call) && call.name.startsWith("pwrite")) {
      storedAt ??= index;
    } else if (storedAt !== undefined && isDatabase(call) && SYNC_CALLS.has(call.name)) {
      syncedAt ??= index;
    } else if (call.name === "write" && call.text.startsWith("ack ")) {
      assert.match(call.text, /accepted/, `voucher ${call.text} was not accepted`);
      assert.ok(storedAt !== undefined, `${call.text}: answered without a write to the database`);
      assert.ok(
        syncedAt !== undefined,
        `${call.text}: answered without an fsync of the database after its write`,
      );
      acked += 1;
      receivedAt = undefined;
    }
  });
  assert.equal(acked, count);
});

test("a voucher the payee acknowledged is held after SIGKILL", async () => {
  const script = join(root, "payee-killed.ts");
  const dir = join(root, "killed");
  await writeFile(script, PAYEE_SCRIPT);
  const child = spawn(process.execPath, ["--no-warnings", script, dir, "3", "hang"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += String(chunk)));
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on("exit", (_c, signal) => resolve(signal)),
  );
  let acks = 0;
  try {
    for await (const line of createInterface({ input: child.stdout }))
      if (line.startsWith("ack ") && ++acks === 3) {
        child.kill("SIGKILL");
        break;
      }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  assert.equal(await exited, "SIGKILL", stderr);
  assert.equal(acks, 3, stderr);
  const buyer = privateKeyToAccount(BUYER_KEY);
  const channelId = channelIdOf({ buyer: buyer.address, signer: buyer.address, payee: PAYEE, nonce: 1n });
  const store = openStore(dir);
  try {
    assert.equal(store.payeeLedger.voucher(channelId)?.cumulativeAmount, 30n);
    assert.equal(store.payeeLedger.unpaid(buyer.address), 0n);
  } finally {
    store.close();
  }
});
