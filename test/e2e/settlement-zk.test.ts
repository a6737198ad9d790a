// The zk settler on real nodes: a Hardhat devnet with ZkChannels and the committed ci circuit,
// libp2p over loopback, SQLite stores and the warm prover thread. A zk buyer pays two donors with
// zk vouchers; each donor settles them with a Groth16 proof (one through `cell settle now --zk`,
// one through its service), withdraws, and its staking wallet rises by exactly what its accepted
// receipts earned. The state rebuilt from ZkChannels' events alone agrees.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isAddressEqual, parseUnits } from "viem";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createApiServer } from "../../offchain/src/api/index.ts";
import type { ApiServer } from "../../offchain/src/api/index.ts";
import {
  atpBalance,
  createReader,
  createWriter,
  devnetPrivateKey,
  mintAtp,
  readZkParams,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader } from "../../offchain/src/chain/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { jobAmount } from "../../offchain/src/payments/index.ts";
import type { VerdictReport } from "../../offchain/src/quorum/index.ts";
import { ZkChainView } from "../../offchain/src/settlement/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { runCell } from "../support/cell-cli.ts";
import { fundWithEth, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const JOBS = 6;
const PRICES = [1_000n, 3_000n];
const DEPOSIT = parseUnits("50", 18);
const TOKEN = "settlement-zk-test-token";

describe(
  "the zk settler on real nodes: proven batches pay each donor exactly what it earned",
  { timeout: 600_000 },
  () => {
    let cluster: Cluster;
    let reader: ChainReader;
    let donorNodes: ClusterNode[];
    const donors: CellNode[] = [];
    let buyer: CellNode;
    let api: ApiServer;
    const verdicts: VerdictReport[] = [];
    const wallets = PRICES.map((_, i) => privateKeyToAccount(devnetPrivateKey(i + 1) as Hex).address);

    before(async () => {
      cluster = await startCluster();
      const { devnet } = cluster;
      reader = createReader(devnet.rpcUrl, devnet.deployment);
      donorNodes = await Promise.all(
        PRICES.map((pricePerMegaFuel, i) =>
          cluster.prepare(`donor${i + 1}`, {
            donor: true,
            stakeWith: i + 1,
            config: {
              donor: { slots: 4, pricePerMegaFuel },
              runtime: { poolSize: 1 },
              payments: { enabled: true, channelPollMs: 200 },
              settlement: { epochSeconds: 86_400, pollMs: 200, zk: { enabled: true } },
            },
          }),
        ),
      );
      const buyerNode = await cluster.prepare("buyer", {
        donor: false,
        config: { payments: { zk: true, deposit: "50", topUpAmount: "0" } },
      });
      const admin = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
      for (const node of [...donorNodes, buyerNode])
        await fundWithEth(devnet.rpcUrl, node.identity.operatorAddress);
      await mintAtp(admin, buyerNode.identity.operatorAddress, 2n * DEPOSIT);
      const first = await startInProcess(donorNodes[0]!);
      const bootstrap = first.multiaddrs().slice(0, 1);
      donors.push(first, await startInProcess(donorNodes[1]!, bootstrap));
      buyer = await startInProcess(buyerNode, bootstrap, {
        verdictListener: { onVerdict: (report) => verdicts.push(report), onEquivocation: () => {} },
      });
      api = await createApiServer({ node: donors[0]!, token: TOKEN });
      await until(
        () => buyer.peers().filter((peer) => peer.staked).length === PRICES.length,
        60_000,
        "the buyer to see both staked donors",
      );
    });

    after(async () => {
      await api?.close();
      await buyer?.stop();
      await Promise.all(donors.map((donor) => donor.stop()));
      await cluster?.close();
    });

    function owedTo(wallet: Address): bigint {
      let owed = 0n;
      for (const report of verdicts.filter((r) => r.outcome === "accepted"))
        for (const replica of report.agreeing) {
          const i = donorNodes.findIndex((node) =>
            isAddressEqual(node.identity.operatorAddress, replica.operator),
          );
          if (isAddressEqual(wallets[i]!, wallet))
            owed += jobAmount(replica.pricePerMegaFuel, BigInt(replica.receipt.fuelUsed));
        }
      return owed;
    }

    it("settles each donor's zk voucher by proof, withdraws it, and the events alone rebuild the same paid amounts", async () => {
      for (let n = 0; n < JOBS; n++) {
        const { jobId } = await buyer.submitJob({
          module: SHA256_WASM,
          input: new TextEncoder().encode(`1\nzk settled job ${n}`),
          fuelLimit: 100_000_000n,
          replicas: 2,
        });
        assert.equal((await buyer.waitForJob(jobId, { timeoutMs: 120_000 })).state, "completed");
      }
      await until(
        () =>
          buyer.paymentChannels().length === PRICES.length &&
          buyer.paymentChannels().every((c) => c.acknowledged === c.spent && c.spent === owedTo(c.payee)),
        60_000,
        "every payee to hold a zk voucher for everything it earned",
      );
      const before = await Promise.all(wallets.map((wallet) => atpBalance(reader, wallet)));

      const tokenFile = join(donorNodes[0]!.dir, "api-token");
      await writeFile(tokenFile, TOKEN);
      const cli = await runCell([
        "settle",
        "now",
        "--zk",
        "--json",
        "--api",
        api.url,
        "--token-file",
        tokenFile,
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      const first = JSON.parse(cli.stdout) as {
        state: string;
        batches: unknown[];
        withdrawals: { amount: string }[];
      };
      assert.equal(first.state, "settled", cli.stdout);
      assert.ok(first.batches.length >= 1);
      assert.equal(BigInt(first.withdrawals[0]!.amount), owedTo(wallets[0]!));

      const second = await donors[1]!.settlement!.settleZkNow();
      assert.equal(second.state, "settled", second.detail ?? "");
      assert.deepEqual(
        second.withdrawals.map((w) => w.amount),
        [owedTo(wallets[1]!)],
      );

      for (const [i, wallet] of wallets.entries())
        assert.equal(
          (await atpBalance(reader, wallet)) - before[i]!,
          owedTo(wallet),
          `donor${i + 1}'s wallet rose by exactly what it earned`,
        );

      const { depth, domainTag } = await readZkParams(reader);
      const rebuilt = await new ZkChainView({ reader, depth, domainTag, blockRange: 1_000 }).snapshot();
      for (const wallet of wallets) {
        const leaves = [...rebuilt.state.leaves.values()].filter((leaf) =>
          isAddressEqual(leaf.payee, wallet),
        );
        assert.deepEqual(
          leaves.map((leaf) => leaf.paid),
          [owedTo(wallet)],
        );
      }
      assert.equal((await donors[0]!.settlement!.settleZkNow()).state, "nothing");
    });
  },
);
