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
import { isAddressEqual } from "viem";
import { createApiServer } from "../../offchain/src/api/index.ts";
import type { ApiServer } from "../../offchain/src/api/index.ts";
import { atpBalance, readZkParams } from "../../offchain/src/chain/index.ts";
import { ZkChainView } from "../../offchain/src/settlement/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { runCell } from "../support/cell-cli.ts";
import { until } from "./cluster.ts";
import { ZK_PRICES, startZkMarket } from "./zk-market.ts";
import type { ZkMarket } from "./zk-market.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const JOBS = 6;
const TOKEN = "settlement-zk-test-token";

describe(
  "the zk settler on real nodes: proven batches pay each donor exactly what it earned",
  { timeout: 600_000 },
  () => {
    let market: ZkMarket;
    let api: ApiServer;

    before(async () => {
      market = await startZkMarket({ donorSettlement: { zk: { enabled: true } } });
      api = await createApiServer({ node: market.donors[0]!, token: TOKEN });
    });

    after(async () => {
      await api?.close();
      await market?.stop();
    });

    it("settles each donor's zk voucher by proof, withdraws it, and the events alone rebuild the same paid amounts", async () => {
      const { buyer, donors, donorNodes, reader, wallets, owedTo } = market;
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
          buyer.paymentChannels().length === ZK_PRICES.length &&
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
