// zk payments on real nodes: a Hardhat devnet with ZkChannels, libp2p over loopback and SQLite
// stores. A buyer with `payments.zk` runs jobs with two replicas on two donors; it opens a
// ZkChannels leaf to each donor's payee with its settlement key and pays every agreeing receipt
// with zk vouchers. Each donor's ledger must hold a zk voucher for exactly what its accepted
// receipts earned, and the held EIP-712 signature, given to ZkChannels.settleBySignature, pays
// the donor's staking wallet exactly that.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, it } from "node:test";
import { isAddressEqual } from "viem";
import type { Address, Hex } from "viem";
import {
  atpBalance,
  createWriter,
  devnetPrivateKey,
  settleZkBySignature,
  zkChannelOf,
} from "../../offchain/src/chain/index.ts";
import { DATABASE_FILE } from "../../offchain/src/store/index.ts";
import { SETTLEMENT_KEY_FILE, zkChannelIdOf } from "../../offchain/src/zk/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { until } from "./cluster.ts";
import { ZK_PRICES, startZkMarket } from "./zk-market.ts";
import type { ZkMarket } from "./zk-market.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const JOBS = 10;
const AT_ONCE = 4;

interface HeldZkVoucher {
  leaf: number;
  cumulative: bigint;
  signature: Hex;
  hasEddsa: boolean;
}

/** The zk vouchers a donor's ledger holds, read from its SQLite file beside the running node. */
function heldZkVouchers(dir: string): HeldZkVoucher[] {
  const db = new DatabaseSync(join(dir, DATABASE_FILE), { readOnly: true });
  try {
    const rows = db
      .prepare(
        "SELECT zk_leaf, cumulative, signature, zk_r8x, zk_r8y, zk_s FROM payee_vouchers WHERE zk_leaf IS NOT NULL",
      )
      .all() as Record<string, unknown>[];
    return rows.map((row) => ({
      leaf: Number(row.zk_leaf),
      cumulative: BigInt(row.cumulative as string),
      signature: row.signature as Hex,
      hasEddsa: [row.zk_r8x, row.zk_r8y, row.zk_s].every((value) => typeof value === "string"),
    }));
  } finally {
    db.close();
  }
}

describe(
  "zk payments on real nodes: zk vouchers held by each donor, paid by the fallback",
  { timeout: 600_000 },
  () => {
    let market: ZkMarket;

    before(async () => {
      market = await startZkMarket();
    });

    after(async () => {
      await market?.stop();
    });

    it("each donor holds a zk voucher for exactly what its accepted receipts earned, on a ZkChannels leaf; settleBySignature pays exactly that", async () => {
      const { buyer, buyerNode, donorNodes, reader, verdicts, wallets, cluster, owedTo } = market;
      let next = 0;
      const worker = async () => {
        while (next < JOBS) {
          const text = `zk job ${next++}`;
          const { jobId } = await buyer.submitJob({
            module: SHA256_WASM,
            input: new TextEncoder().encode(`1\n${text}`),
            fuelLimit: 100_000_000n,
            replicas: 2,
          });
          const job = await buyer.waitForJob(jobId, { timeoutMs: 120_000 });
          assert.equal(job.state, "completed", `${text}: ${JSON.stringify(job.events.slice(-3))}`);
        }
      };
      await Promise.all(Array.from({ length: AT_ONCE }, worker));
      assert.equal(verdicts.filter((r) => r.outcome === "accepted").length, JOBS);
      assert.ok(
        wallets.every((wallet) => owedTo(wallet) > 0n),
        "both donors earned",
      );
      await until(
        () => {
          const channels = buyer.paymentChannels();
          return (
            channels.length === ZK_PRICES.length &&
            channels.every((c) => c.acknowledged === c.spent && c.spent === owedTo(c.payee))
          );
        },
        60_000,
        "every payee to acknowledge a zk voucher for everything it earned",
      );

      const zkChannels = reader.deployment.zkChannels!;
      const settler = createWriter(cluster.devnet.rpcUrl, reader.deployment, devnetPrivateKey(9));
      for (const channel of buyer.paymentChannels()) {
        const leaf = Number(channel.nonce);
        assert.equal(
          channel.channelId,
          zkChannelIdOf(zkChannels, leaf),
          "the buyer's channel is a ZkChannels leaf",
        );
        const onChain = await zkChannelOf(reader, leaf);
        assert.ok(isAddressEqual(onChain.payee, channel.payee));
        assert.ok(isAddressEqual(onChain.signer, buyerNode.identity.operatorAddress));
      }
      assert.ok(existsSync(join(buyerNode.dir, SETTLEMENT_KEY_FILE)), "the buyer keeps its settlement key");

      for (const [i, node] of donorNodes.entries()) {
        const wallet: Address = wallets[i]!;
        const expected = owedTo(wallet);
        const held = heldZkVouchers(node.dir);
        assert.equal(held.length, 1, `donor${i + 1} holds one zk voucher`);
        const [voucher] = held as [HeldZkVoucher];
        assert.equal(voucher.cumulative, expected, `donor${i + 1}'s voucher pays exactly what it earned`);
        assert.ok(voucher.hasEddsa, "kept with its EdDSA signature");
        const before = await atpBalance(reader, wallet);
        await settleZkBySignature(
          settler,
          { leaf: voucher.leaf, cumulativeAmount: voucher.cumulative },
          voucher.signature,
        );
        assert.equal(
          (await atpBalance(reader, wallet)) - before,
          expected,
          `donor${i + 1}'s wallet rose by exactly that`,
        );
      }
    });
  },
);
