// Settlement through a relayer on real nodes: a Hardhat devnet, libp2p over loopback and SQLite
// stores. Three paying donors hand their vouchers to a fourth node acting as relayer; one settle
// transaction by the relayer pays all three channels, and each donor then withdraws to its
// staking wallet exactly what the buyer's channel to it shows as spent. A forged voucher handed
// to the relayer is refused.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { isAddressEqual, parseAbiItem, parseUnits } from "viem";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  atpBalance,
  createReader,
  createWriter,
  devnetPrivateKey,
  getChannel,
  mintAtp,
  signVoucher,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader } from "../../offchain/src/chain/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { protocolSpecs } from "../../offchain/src/node/protocols.ts";
import { createMeshNode } from "../../offchain/src/p2p/index.ts";
import { RELAY_PROTOCOL } from "../../offchain/src/settlement/index.ts";
import type { Runtime } from "../../offchain/src/runtime/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { LOOPBACK_CIDRS, fundWithEth, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const JOBS = 9;

/**
 * Each run takes 0–150 ms more at random: with three replicas and a quorum of two, the replica
 * still running at the verdict is cancelled and paid nothing, and without this the same donor
 * (the busiest process) can be last on every job and never earn a voucher to hand over.
 */
const unevenlySlow = (runtime: Pick<Runtime, "execute">): Pick<Runtime, "execute"> => ({
  execute: async (job, options) => {
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 150));
    return runtime.execute(job, options);
  },
});
const PRICES = [1_000n, 2_000n, 3_000n];
const DEPOSIT = parseUnits("50", 18);
const BATCH_SETTLED = parseAbiItem(
  "event BatchSettled(address indexed submitter, uint256 vouchers, uint256 total, uint256[] paidBitmap)",
);

describe("settlement through a relayer on real nodes", { timeout: 600_000 }, () => {
  let cluster: Cluster;
  let reader: ChainReader;
  let relayerNode: ClusterNode;
  let relayer: CellNode;
  const donors: CellNode[] = [];
  let buyer: CellNode;
  let client: Awaited<ReturnType<typeof createMeshNode>> | undefined;
  /** The donors' staking wallets, their payees. */
  const wallets = PRICES.map((_, i) => privateKeyToAccount(devnetPrivateKey(i + 1) as Hex).address);

  before(async () => {
    cluster = await startCluster();
    const { devnet } = cluster;
    reader = createReader(devnet.rpcUrl, devnet.deployment);
    relayerNode = await cluster.prepare("relayer", {
      donor: false,
      config: { settlement: { relay: true, epochSeconds: 86_400, pollMs: 200 } },
    });
    const donorNodes = await Promise.all(
      PRICES.map((pricePerMegaFuel, i) =>
        cluster.prepare(`donor${i + 1}`, {
          donor: true,
          stakeWith: i + 1,
          config: {
            donor: { slots: 4, pricePerMegaFuel },
            runtime: { poolSize: 1 },
            payments: { enabled: true, channelPollMs: 200 },
            settlement: { epochSeconds: 86_400, pollMs: 200, relayTo: relayerNode.identity.peerId },
          },
        }),
      ),
    );
    const buyerNode = await cluster.prepare("buyer", {
      donor: false,
      config: { payments: { deposit: "50", topUpAmount: "0" } },
    });
    const admin = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    for (const node of [relayerNode, ...donorNodes, buyerNode])
      await fundWithEth(devnet.rpcUrl, node.identity.operatorAddress);
    await mintAtp(admin, buyerNode.identity.operatorAddress, 3n * DEPOSIT);
    relayer = await startInProcess(relayerNode);
    const bootstrap = relayer.multiaddrs().slice(0, 1);
    for (const node of donorNodes)
      donors.push(await startInProcess(node, bootstrap, { wrapRuntime: unevenlySlow }));
    buyer = await startInProcess(buyerNode, bootstrap);
    await until(
      () => buyer.peers().filter((peer) => peer.staked).length === PRICES.length,
      60_000,
      "the buyer to see all three staked donors",
    );
  });

  after(async () => {
    await client?.stop();
    await buyer?.stop();
    await Promise.all(donors.map((donor) => donor.stop()));
    await relayer?.stop();
    await cluster?.close();
  });

  it("pays three donors' channels in one settle transaction by the relayer; each withdraws exactly what it was paid", async () => {
    let lastJob: Hex | undefined;
    for (let i = 0; i < JOBS; i++) {
      const { jobId } = await buyer.submitJob({
        module: SHA256_WASM,
        input: new TextEncoder().encode(`1\njob ${i}`),
        fuelLimit: 100_000_000n,
        replicas: 3,
      });
      assert.equal((await buyer.waitForJob(jobId, { timeoutMs: 120_000 })).state, "completed");
      lastJob = jobId;
    }
    // The last verdict's payments are recorded after the job completes.
    await until(
      () => (buyer.getJob(lastJob!)?.events ?? []).filter((event) => event.type === "paid").length >= 2,
      30_000,
      "the last job's agreeing executors to be paid",
    );
    await until(
      () => {
        const channels = buyer.paymentChannels();
        return (
          channels.length === PRICES.length &&
          channels.every((c) => c.spent > 0n && c.acknowledged === c.spent)
        );
      },
      60_000,
      "every donor to acknowledge a voucher for everything it earned",
    );
    const spent = new Map(buyer.paymentChannels().map((c) => [c.payee.toLowerCase(), c]));

    for (const donor of donors) {
      const handed = await donor.settlement!.settleNow();
      assert.equal(handed.state, "pending", handed.detail ?? "");
      assert.equal(handed.voucherCount, 1);
      assert.match(handed.detail ?? "", /1 accepted/);
    }

    const balances = await Promise.all(wallets.map((wallet) => atpBalance(reader, wallet)));
    const fromBlock = await reader.publicClient.getBlockNumber();
    const settled = await relayer.settlement!.settleNow();
    assert.equal(settled.state, "settled", settled.detail ?? "");
    const batches = await reader.publicClient.getLogs({
      address: reader.deployment.paymentChannels,
      event: BATCH_SETTLED,
      args: { submitter: relayerNode.identity.operatorAddress },
      fromBlock,
    });
    assert.equal(batches.length, 1, "one settle transaction by the relayer");
    assert.equal(batches[0]!.args.vouchers, 3n, "it carries the three donors' vouchers");
    for (const channel of spent.values())
      assert.equal((await getChannel(reader, channel.channelId)).paid, channel.spent, "the channel is paid");
    assert.deepEqual(
      await Promise.all(wallets.map((wallet) => atpBalance(reader, wallet))),
      balances,
      "the relayer withdraws nothing for the donors",
    );

    for (const [i, donor] of donors.entries()) {
      const run = await donor.settlement!.settleNow();
      assert.equal(run.paidCount, 1, run.detail ?? "");
      assert.equal(run.voucherCount, 0, "nothing left to hand over");
      assert.equal(run.withdrawals.length, 1, "one withdrawal from the donor's operator key");
      const channel = spent.get(wallets[i]!.toLowerCase())!;
      assert.ok(isAddressEqual(channel.payee, wallets[i]!));
      assert.equal(
        (await atpBalance(reader, wallets[i]!)) - balances[i]!,
        channel.spent,
        `donor${i + 1}'s wallet rose by exactly what the buyer's channel shows as spent`,
      );
    }
  });

  it("refuses a forged voucher handed to it", async () => {
    const channel = buyer.paymentChannels()[0]!;
    const forger = privateKeyToAccount(generatePrivateKey());
    const signature = await signVoucher(
      forger,
      cluster.devnet.deployment.chainId,
      cluster.devnet.deployment.paymentChannels,
      { channelId: channel.channelId, cumulativeAmount: channel.spent + 1_000n },
    );
    client = await createMeshNode({
      peerKeySeed: randomBytes(32),
      bootstrap: relayer.multiaddrs().slice(0, 1),
      trustedNetworks: LOOPBACK_CIDRS,
    });
    const answer = await client.request(
      relayer.peerId,
      RELAY_PROTOCOL,
      protocolSpecs.relay,
      {
        type: "relay",
        vouchers: [
          {
            key: {
              buyer: channel.buyer,
              signer: channel.signer,
              payee: channel.payee,
              nonce: channel.nonce.toString(),
            },
            cumulativeAmount: (channel.spent + 1_000n).toString(),
            signature,
          },
        ],
      },
      { timeoutMs: 10_000 },
    );
    const [result] = answer.results;
    assert.equal(result?.status === "refused" && result.reason, "bad_signature");
  });
});
