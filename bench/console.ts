// `npm run bench -- console`: the chain indexer and the explorer API over a devnet history of
// more than 10,000 contract events. The history: CHANNELS channels opened to distinct payees,
// each paid by one voucher in settlements of BATCH vouchers that anchor a receipt root, then the
// same batches sent again REPEATS times (every voucher skipped as nothing new: a cheap way to a
// long history of the kinds a busy network makes). Measured: backfill from the deployment block
// into a fresh on-disk store (events/s, CPU ms per 1,000 events), then the p95 latency of
// GET /explorer/settlements pages. Prints a table; the last line is one JSON object.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getAddress, keccak256, maxUint256, parseEther, toHex } from "viem";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createApiServer } from "../offchain/src/api/index.ts";
import type { ApiNode } from "../offchain/src/api/index.ts";
import {
  approveAtp,
  channelIdOf,
  createWriter,
  encodeSettlementBatch,
  mintAtp,
  paymentChannelsAbi,
  signVoucher,
  startDevnet,
} from "../offchain/src/chain/index.ts";
import type { ChainWriter, ChannelKey, SignedVoucher } from "../offchain/src/chain/index.ts";
import { ChainIndexer, explorerSourceOf } from "../offchain/src/indexer/index.ts";
import { openStore } from "../offchain/src/store/index.ts";
import { explorerNode } from "../test/support/api-node.ts";

const CHANNELS = 500;
const BATCH = 100;
const REPEATS = 18;
const EXPLORER_REQUESTS = 300;
const PAGE = 50;
const GOALS = { indexEventsPerSec: 5_000, explorerP95Ms: 50 };

const devnet = await startDevnet();
const dataDir = mkdtempSync(join(tmpdir(), "cell-bench-console-"));
try {
  const { rpcUrl, deployment } = devnet;
  const buyer = createWriter(rpcUrl, deployment, devnet.deployerKey);
  const voucherKey = privateKeyToAccount(keccak256(toHex("bench-console-voucher-key")));

  let started = performance.now();
  const history = await makeHistory(buyer, voucherKey);
  const historySeconds = (performance.now() - started) / 1000;

  const store = openStore(dataDir);
  const indexer = new ChainIndexer(buyer, store, { confirmations: 0, blockRange: 2_000, pollMs: 60_000 });
  const cpu = process.cpuUsage();
  started = performance.now();
  await indexer.poll();
  const backfillMs = performance.now() - started;
  const cpuMs = (process.cpuUsage(cpu).user + process.cpuUsage(cpu).system) / 1000;
  const events = indexer.status().events;
  const counts = store.indexer.counts();

  const latencies = await explorerLatencies(explorerNode(explorerSourceOf(store, indexer)));
  const p95 = percentile(latencies, 0.95);
  store.close();

  const indexEventsPerSec = Math.round(events / (backfillMs / 1000));
  console.table([
    { measure: "history: transactions", value: history.transactions },
    { measure: "history: blocks", value: Number(history.blocks) },
    { measure: "history: seconds to make", value: historySeconds.toFixed(1) },
    { measure: "events indexed", value: events },
    { measure: "settlements indexed", value: counts.idx_settlements },
    { measure: "settlement vouchers indexed", value: counts.idx_settlement_vouchers },
    { measure: "channel events indexed", value: counts.idx_channel_events },
    { measure: "backfill ms", value: Math.round(backfillMs) },
    { measure: `backfill events/s (goal ≥ ${GOALS.indexEventsPerSec})`, value: indexEventsPerSec },
    { measure: "backfill CPU ms per 1,000 events", value: ((cpuMs / events) * 1000).toFixed(1) },
    {
      measure: `GET /explorer/settlements?limit=${PAGE} p50 ms`,
      value: percentile(latencies, 0.5).toFixed(2),
    },
    { measure: `… p95 ms (goal ≤ ${GOALS.explorerP95Ms})`, value: p95.toFixed(2) },
  ]);
  if (events < 10_000)
    throw new Error(`the history has ${events} events, fewer than the 10,000 measured over`);
  console.log(JSON.stringify({ indexEventsPerSec, explorerP95Ms: Number(p95.toFixed(2)) }));
} finally {
  await devnet.stop();
  rmSync(dataDir, { recursive: true, force: true });
}

/** Opens the channels, settles one voucher of each, then sends the same batches again. */
async function makeHistory(
  buyer: ChainWriter,
  voucherKey: { address: Address; signTypedData: Parameters<typeof signVoucher>[0]["signTypedData"] },
): Promise<{ transactions: number; blocks: bigint }> {
  const { deployment } = buyer;
  const first = await buyer.publicClient.getBlockNumber({ cacheTime: 0 });
  const deposit = parseEther("1");
  await mintAtp(buyer, buyer.walletClient.account.address, deposit * BigInt(CHANNELS));
  await approveAtp(buyer, deployment.paymentChannels, maxUint256);
  const keys: ChannelKey[] = Array.from({ length: CHANNELS }, (_, i) => ({
    buyer: buyer.walletClient.account.address,
    signer: voucherKey.address,
    payee: getAddress(keccak256(toHex(`bench-console-payee-${i}`)).slice(0, 42)),
    nonce: BigInt(i),
  }));
  const send = sender(buyer);
  await send(keys.map((key) => ["open", [key.signer, key.payee, key.nonce, deposit]] as const));
  const vouchers: SignedVoucher[] = await Promise.all(
    keys.map(async (key, i) => {
      const cumulativeAmount = BigInt(1_000 + i);
      const signature = await signVoucher(voucherKey, deployment.chainId, deployment.paymentChannels, {
        channelId: channelIdOf(key),
        cumulativeAmount,
      });
      return { key, cumulativeAmount, signature };
    }),
  );
  const batches = Array.from({ length: CHANNELS / BATCH }, (_, i) =>
    encodeSettlementBatch(vouchers.slice(i * BATCH, (i + 1) * BATCH)),
  );
  let epoch = 0n;
  const settle = (batch: Hex) =>
    ["settle", [batch, ++epoch, keccak256(toHex(`root-${epoch}`)), BigInt(BATCH)]] as const;
  for (let round = 0; round <= REPEATS; round++) await send(batches.map(settle));
  const last = await buyer.publicClient.getBlockNumber({ cacheTime: 0 });
  return { transactions: CHANNELS + batches.length * (REPEATS + 1) + 2, blocks: last - first };
}

type Call =
  | readonly ["open", readonly [Address, Address, bigint, bigint]]
  | readonly ["settle", readonly [Hex, bigint, Hex, bigint]];

/**
 * Sends calls to PaymentChannels one after the other with explicit nonce, gas and fees (no
 * estimate or fee lookup per transaction); the devnet mines each as it arrives.
 */
function sender(writer: ChainWriter): (calls: readonly Call[]) => Promise<void> {
  const { walletClient, publicClient, deployment } = writer;
  return async (calls) => {
    let nonce = await publicClient.getTransactionCount({ address: walletClient.account.address });
    const fees = await publicClient.estimateFeesPerGas();
    let hash: Hex | undefined;
    for (const [functionName, args] of calls)
      hash = await walletClient.writeContract({
        address: deployment.paymentChannels,
        abi: paymentChannelsAbi,
        functionName,
        args,
        nonce: nonce++,
        gas: 8_000_000n,
        maxFeePerGas: fees.maxFeePerGas * 2n,
        maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
      } as Parameters<typeof walletClient.writeContract>[0]);
    if (hash === undefined) return;
    const receipt = await publicClient.waitForTransactionReceipt({ hash, pollingInterval: 20 });
    if (receipt.status !== "success")
      throw new Error(`${calls.at(-1)![0]} reverted in the benchmark's history`);
  };
}

/** Latencies (ms) of settlements pages: the first page and following ones by cursor, in turn. */
async function explorerLatencies(node: ApiNode): Promise<number[]> {
  const server = await createApiServer({ node, token: "bench-console-token-0123456789" });
  const latencies: number[] = [];
  try {
    let cursor: string | undefined;
    for (let i = 0; i < EXPLORER_REQUESTS; i++) {
      const path = `/explorer/settlements?limit=${PAGE}${cursor ? `&cursor=${cursor}` : ""}`;
      const started = performance.now();
      const response = await fetch(`${server.url}${path}`);
      const page = (await response.json()) as { items: unknown[]; nextCursor?: string };
      latencies.push(performance.now() - started);
      if (response.status !== 200 || page.items.length === 0)
        throw new Error(`${path} answered ${response.status}`);
      cursor = page.nextCursor;
    }
  } finally {
    await server.close();
  }
  return latencies;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}
