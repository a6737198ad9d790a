// The buyer's half of payments on real nodes: a Hardhat devnet, libp2p over loopback and SQLite
// stores. Three staked donors run jobs with three replicas for a buyer whose operator key holds
// ATP and gas; the buyer opens one channel per donor lazily, by permit, and signs each donor a
// voucher for exactly what its agreeing receipts earned. The test redeems those vouchers
// on-chain and checks every donor's staking wallet received exactly that sum.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { isAddressEqual, parseUnits } from "viem";
import type { Address, Hex } from "viem";
import {
  atpBalance,
  atpTokenAbi,
  createWriter,
  devnetPrivateKey,
  getChannel,
  mintAtp,
  redeemVoucher,
  signVoucher,
} from "../../offchain/src/chain/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { jobAmount, VOUCHER_PROTOCOL } from "../../offchain/src/payments/index.ts";
import type { VerdictReport } from "../../offchain/src/quorum/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { fundWithEth, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const DONORS = 3;
const JOBS = 4;
const DEPOSIT = parseUnits("5", 18);
/** Each donor asks its own price, so a voucher paid at the wrong price would show. */
const PRICES = [1_000n, 2_000n, 3_000n];

describe("buyer payments on real nodes", { timeout: 300_000 }, () => {
  let cluster: Cluster;
  let donorNodes: ClusterNode[];
  let donors: CellNode[] = [];
  let buyerNode: ClusterNode;
  let buyer: CellNode;
  const verdicts: VerdictReport[] = [];

  before(async () => {
    cluster = await startCluster();
    donorNodes = await Promise.all(
      PRICES.map((pricePerMegaFuel, i) =>
        cluster.prepare(`donor${i + 1}`, {
          donor: true,
          stakeWith: i + 1,
          config: { donor: { slots: 2, pricePerMegaFuel }, runtime: { poolSize: 1 } },
        }),
      ),
    );
    buyerNode = await cluster.prepare("buyer", {
      donor: false,
      config: { payments: { deposit: "5", topUpAmount: "0" }, buyer: { bidTimeoutMs: 1_000 } },
    });
    const operator = buyerNode.identity.operatorAddress;
    const { devnet } = cluster;
    await fundWithEth(devnet.rpcUrl, operator);
    await mintAtp(createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey), operator, 4n * DEPOSIT);

    const first = await startInProcess(donorNodes[0]!);
    const bootstrap = first.multiaddrs().slice(0, 1);
    donors = [
      first,
      ...(await Promise.all(donorNodes.slice(1).map((node) => startInProcess(node, bootstrap)))),
    ];
    buyer = await startInProcess(buyerNode, bootstrap, {
      verdictListener: { onVerdict: (report) => verdicts.push(report), onEquivocation: () => {} },
    });
    await until(
      () => buyer.peers().filter((peer) => peer.staked).length === DONORS,
      30_000,
      "the buyer to see all staked donors",
    );
  });

  after(async () => {
    await buyer?.stop();
    await Promise.all(donors.map((donor) => donor.stop()));
    await cluster?.close();
  });

  it("opens one channel per donor by permit and signs each exactly what its agreeing receipts earned", async () => {
    for (let i = 0; i < JOBS; i++) {
      const { jobId } = await buyer.submitJob({
        module: SHA256_WASM,
        input: new TextEncoder().encode(`1\npay me ${i}`),
        fuelLimit: 100_000_000n,
        replicas: 3,
      });
      const job = await buyer.waitForJob(jobId, { timeoutMs: 60_000 });
      assert.equal(job.state, "completed", JSON.stringify(job.events));
    }

    const owed = new Map<string, bigint>();
    for (const report of verdicts.filter((r) => r.outcome === "accepted"))
      for (const replica of report.agreeing) {
        const id = replica.operator.toLowerCase();
        owed.set(
          id,
          (owed.get(id) ?? 0n) + jobAmount(replica.pricePerMegaFuel, BigInt(replica.receipt.fuelUsed)),
        );
      }
    assert.ok(owed.size >= 2, "at least a quorum of donors agreed on some job");
    const payees = donorNodes.map((node, i) => ({
      operator: node.identity.operatorAddress,
      wallet: createWriter(cluster.devnet.rpcUrl, cluster.devnet.deployment, devnetPrivateKey(i + 1) as Hex)
        .walletClient.account.address,
    }));
    const expectedSpend = (payee: Address) =>
      owed.get(payees.find((p) => isAddressEqual(p.wallet, payee))!.operator.toLowerCase()) ?? 0n;

    await until(
      () =>
        buyer.paymentChannels().length === DONORS &&
        buyer.paymentChannels().every((channel) => channel.spent === expectedSpend(channel.payee)),
      30_000,
      "a channel to every selected donor, with every job amount it earned recorded on it",
    );
    const redeemer = createWriter(
      cluster.devnet.rpcUrl,
      cluster.devnet.deployment,
      devnetPrivateKey(9) as Hex,
    );
    const { publicClient, deployment } = redeemer;
    const operator = buyerNode.identity.operatorAddress;
    const allowance = await publicClient.readContract({
      address: deployment.atpToken,
      abi: atpTokenAbi,
      functionName: "allowance",
      args: [operator, deployment.paymentChannels],
    });
    assert.equal(allowance, 0n, "each deposit was pulled by its own permit, with no standing approval");
    assert.equal(await atpBalance(redeemer, operator), 4n * DEPOSIT - 3n * DEPOSIT);
    await until(
      () => (buyer.meshStats().requests.sent[VOUCHER_PROTOCOL] ?? 0) >= owed.size,
      30_000,
      "vouchers to be sent to every donor",
    );

    for (const channel of buyer.paymentChannels()) {
      assert.ok(isAddressEqual(channel.buyer, operator) && isAddressEqual(channel.signer, operator));
      assert.equal(channel.deposit, DEPOSIT);
      if (channel.spent === 0n) continue;
      assert.equal(
        (await getChannel(redeemer, channel.channelId)).deposit,
        DEPOSIT,
        "the channel is open on-chain",
      );
      // The node's voucher signature is deterministic (RFC 6979): the same key signs the same bytes.
      const signature = await signVoucher(
        buyerNode.identity.operator,
        deployment.chainId,
        deployment.paymentChannels,
        {
          channelId: channel.channelId,
          cumulativeAmount: channel.spent,
        },
      );
      const before = await atpBalance(redeemer, channel.payee);
      await redeemVoucher(redeemer, {
        key: { buyer: channel.buyer, signer: channel.signer, payee: channel.payee, nonce: channel.nonce },
        cumulativeAmount: channel.spent,
        signature,
      });
      assert.equal(
        (await atpBalance(redeemer, channel.payee)) - before,
        expectedSpend(channel.payee),
        `payee ${channel.payee} received exactly what its receipts earned`,
      );
      assert.ok(channel.spendPerHour > 0n && channel.secondsToEmpty !== null);
    }
  });
});
