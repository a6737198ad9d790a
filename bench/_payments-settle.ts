// The settlement half of `npm run bench -- payments`: a devnet (OP Stack simulation), four
// paying donors and a buyer in this process; 100 jobs with three replicas; then every donor's
// node settles what it holds in its own settlement transaction. Reads the L2 gas and the L1 data
// gas (the OP receipt's l1GasUsed) of those transactions.
import { readFileSync } from "node:fs";
import { parseUnits } from "viem";
import type { Hex } from "viem";
import { createReader, createWriter, mintAtp } from "../offchain/src/chain/index.ts";
import type { CellNode } from "../offchain/src/node/index.ts";
import { VOUCHER_PROTOCOL } from "../offchain/src/payments/index.ts";
import type { VerdictReport } from "../offchain/src/quorum/index.ts";
import { ensureJobs } from "../scripts/build-jobs.ts";
import { fundWithEth, startCluster, startInProcess, until } from "../test/e2e/cluster.ts";

export interface SettleFigures {
  jobs: number;
  /** Agreeing replicas paid: one voucher each, as the design counts them (cumulative, so one settles all before it). */
  jobPayments: number;
  /** Voucher requests the buyer sent (coalesced per payee, one voucher each). */
  signedVouchers: number;
  /** Vouchers in the settlement batches: the latest of each channel. */
  batchEntries: number;
  settlements: number;
  receiptsAnchored: number;
  l2Gas: number;
  l1DataGas: number;
}

const PRICES = [1_000n, 2_000n, 3_000n, 4_000n];
const JOBS = Number(process.env.PAYMENTS_JOBS ?? 100);
const AT_ONCE = 8;

export async function measureSettlement(log: (line: string) => void): Promise<SettleFigures> {
  const module = readFileSync((await ensureJobs(["sha256"])).sha256);
  const cluster = await startCluster();
  const nodes: CellNode[] = [];
  try {
    const { devnet } = cluster;
    const reader = createReader(devnet.rpcUrl, devnet.deployment);
    const donorNodes = await Promise.all(
      PRICES.map((pricePerMegaFuel, i) =>
        cluster.prepare(`donor${i + 1}`, {
          donor: true,
          stakeWith: i + 1,
          config: {
            donor: { slots: 4, pricePerMegaFuel },
            runtime: { poolSize: 1 },
            payments: { enabled: true, channelPollMs: 200 },
            settlement: { epochSeconds: 86_400 },
            logLevel: "error",
          },
        }),
      ),
    );
    const buyerNode = await cluster.prepare("buyer", {
      donor: false,
      config: { payments: { deposit: "50", topUpAmount: "0" }, logLevel: "error" },
    });
    for (const node of [...donorNodes, buyerNode])
      await fundWithEth(devnet.rpcUrl, node.identity.operatorAddress);
    const admin = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    await mintAtp(admin, buyerNode.identity.operatorAddress, parseUnits("200", 18));
    const first = await startInProcess(donorNodes[0]!);
    nodes.push(first);
    const bootstrap = first.multiaddrs().slice(0, 1);
    for (const node of donorNodes.slice(1)) nodes.push(await startInProcess(node, bootstrap));
    const verdicts: VerdictReport[] = [];
    const buyer = await startInProcess(buyerNode, bootstrap, {
      verdictListener: { onVerdict: (report) => verdicts.push(report), onEquivocation: () => {} },
    });
    nodes.push(buyer);
    await until(() => buyer.peers().filter((p) => p.staked).length === PRICES.length, 60_000, "donors");
    log(`settlement run: ${JOBS} jobs × 3 replicas across ${PRICES.length} paying donors`);
    let next = 0;
    const worker = async () => {
      while (next < JOBS) {
        const i = next++;
        const { jobId } = await buyer.submitJob({
          module,
          input: new TextEncoder().encode(`1\nbench ${i}`),
          fuelLimit: 100_000_000n,
          replicas: 3,
        });
        const job = await buyer.waitForJob(jobId, { timeoutMs: 120_000 });
        if (job.state !== "completed") throw new Error(`job ${i} ended ${job.state}`);
      }
    };
    await Promise.all(Array.from({ length: AT_ONCE }, worker));
    await until(
      () => buyer.paymentChannels().every((c) => c.acknowledged === c.spent),
      60_000,
      "every voucher acknowledged",
    );
    const jobPayments = verdicts.reduce(
      (sum, r) => sum + (r.outcome === "accepted" ? r.agreeing.length : 0),
      0,
    );
    const signedVouchers = voucherMessages(buyer);
    let l2Gas = 0;
    let l1DataGas = 0;
    let batchEntries = 0;
    let receiptsAnchored = 0;
    let settlements = 0;
    for (const donor of nodes.slice(0, PRICES.length)) {
      const outcome = await donor.settlement!.settleNow();
      if (outcome.state !== "settled" || outcome.txHash === null)
        throw new Error(`settlement ${outcome.state}: ${outcome.detail}`);
      const receipt = await reader.publicClient.request({
        method: "eth_getTransactionReceipt",
        params: [outcome.txHash],
      });
      const raw = receipt as unknown as { gasUsed: Hex; l1GasUsed?: Hex };
      if (raw.l1GasUsed === undefined)
        throw new Error("the devnet's receipts carry no l1GasUsed: is it an OP Stack chain?");
      l2Gas += Number(BigInt(raw.gasUsed));
      l1DataGas += Number(BigInt(raw.l1GasUsed));
      batchEntries += outcome.voucherCount;
      receiptsAnchored += outcome.receiptCount;
      settlements++;
    }
    return {
      jobs: JOBS,
      jobPayments,
      signedVouchers,
      batchEntries,
      settlements,
      receiptsAnchored,
      l2Gas,
      l1DataGas,
    };
  } finally {
    await Promise.all(nodes.map((node) => node.stop().catch(() => undefined)));
    await cluster.close();
  }
}

/** Requests on `/cell/voucher/1`: each carries the voucher of the payee's one channel. */
function voucherMessages(buyer: CellNode): number {
  return buyer.meshStats().requests.sent[VOUCHER_PROTOCOL] ?? 0;
}
