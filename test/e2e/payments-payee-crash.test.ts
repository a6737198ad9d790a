// A payee node killed (SIGKILL) right after it acknowledged a voucher: the donor runs as a child
// process (offchain/src/node/run.ts) on a devnet, its voucher arrives over `/cell/voucher/1`, and
// the process is killed as soon as the answer is in. Its store holds the voucher, the
// restarted node knows it (the same voucher again is a duplicate) and settles it on-chain.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Hex } from "viem";
import {
  channelIdOf,
  createWriter,
  devnetPrivateKey,
  getChannel,
  mintAtp,
  openChannel,
  signVoucher,
} from "../../offchain/src/chain/index.ts";
import type { ChannelKey } from "../../offchain/src/chain/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { protocolSpecs } from "../../offchain/src/node/protocols.ts";
import { createMeshNode } from "../../offchain/src/p2p/index.ts";
import type { MeshNode } from "../../offchain/src/p2p/index.ts";
import { VOUCHER_PROTOCOL, jobAmount } from "../../offchain/src/payments/index.ts";
import type { VoucherBatch, VoucherResults } from "../../offchain/src/payments/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { LOOPBACK_CIDRS, fundWithEth, startChild, startCluster, startInProcess, until } from "./cluster.ts";
import type { ChildNode, Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const DONOR_ACCOUNT = 2;
const CHANNEL_WALLET_ACCOUNT = 8;
const PRICE = 1_000n;
const DEPOSIT = 10n ** 15n;

describe("a payee node killed right after acknowledging a voucher", { timeout: 180_000 }, () => {
  let cluster: Cluster;
  let donorNode: ClusterNode;
  let buyerNode: ClusterNode;
  let donor: ChildNode | undefined;
  let buyer: CellNode;
  const clients: MeshNode[] = [];

  before(async () => {
    cluster = await startCluster();
    donorNode = await cluster.prepare("donor", {
      donor: true,
      stakeWith: DONOR_ACCOUNT,
      config: {
        donor: { pricePerMegaFuel: PRICE },
        // The job runs on the free allowance: this test is about the voucher.
        payments: { enabled: true, freeAllowance: DEPOSIT, channelPollMs: 200 },
        // Two-second epochs: the restarted node settles what it holds at once.
        settlement: { epochSeconds: 2, pollMs: 200 },
        runtime: { poolSize: 1 },
      },
    });
    buyerNode = await cluster.prepare("buyer", { donor: false });
    // The donor's operator key sends its settlements.
    await fundWithEth(cluster.devnet.rpcUrl, donorNode.identity.operatorAddress);
    donor = await startChild(donorNode);
    buyer = await startInProcess(buyerNode, donor.multiaddrs.slice(0, 1));
  });

  after(async () => {
    for (const client of clients) await client.stop();
    await buyer?.stop();
    await donor?.kill();
    await cluster?.close();
  });

  async function sendVouchers(to: ChildNode, batch: VoucherBatch): Promise<VoucherResults> {
    const client = await createMeshNode({
      peerKeySeed: randomBytes(32),
      bootstrap: to.multiaddrs.slice(0, 1),
      trustedNetworks: LOOPBACK_CIDRS,
    });
    clients.push(client);
    return client.request(to.peerId, VOUCHER_PROTOCOL, protocolSpecs.voucher, batch, { timeoutMs: 15_000 });
  }

  it("holds the voucher it acknowledged after SIGKILL, and knows it after a restart", async () => {
    await until(
      () => buyer.peers().some((peer) => peer.peerId === donor!.peerId && peer.staked === true),
      60_000,
      "the buyer to see the donor staked",
    );
    const { jobId } = await buyer.submitJob({
      module: SHA256_WASM,
      input: new TextEncoder().encode("1\nkeep my voucher"),
      fuelLimit: 100_000_000n,
    });
    const view = await buyer.waitForJob(jobId, { timeoutMs: 90_000 });
    assert.equal(view.state, "completed", JSON.stringify(view.events.slice(-5)));
    const owed = jobAmount(PRICE, BigInt(view.result!.fuelUsed));

    const { devnet } = cluster;
    const faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    const wallet = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(CHANNEL_WALLET_ACCOUNT));
    await mintAtp(faucet, wallet.walletClient.account.address, DEPOSIT);
    const payee = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(DONOR_ACCOUNT)).walletClient
      .account.address;
    const { key } = await openChannel(wallet, {
      signer: buyerNode.identity.operatorAddress,
      payee,
      amount: DEPOSIT,
    });
    const batch = await voucherBatch(key, owed, jobId);

    const answer = await sendVouchers(donor!, batch);
    donor!.process.kill("SIGKILL");
    await donor!.exited;
    assert.equal(answer.results[0]?.status, "accepted", JSON.stringify(answer));

    const channelId = channelIdOf(key);
    const store = openStore(donorNode.dir);
    try {
      assert.equal(store.payeeLedger.voucher(channelId)?.cumulativeAmount, owed);
      assert.equal(store.payeeLedger.earning(jobId)?.paidBy, channelId);
    } finally {
      store.close();
    }

    donor = await startChild(donorNode);
    const again = await sendVouchers(donor, batch);
    assert.equal(again.results[0]?.status === "refused" && again.results[0].reason, "duplicate");

    // ...and settles it: the restarted node's next epoch pays the channel on-chain.
    let paid = 0n;
    await until(
      () => paid === owed,
      60_000,
      "the restarted payee to settle the voucher it held",
      async () => void (paid = (await getChannel(faucet, channelId)).paid),
    );
  });

  async function voucherBatch(key: ChannelKey, amount: bigint, jobId: Hex): Promise<VoucherBatch> {
    const { deployment } = cluster.devnet;
    const signature = await signVoucher(
      buyerNode.identity.operator,
      deployment.chainId,
      deployment.paymentChannels,
      {
        channelId: channelIdOf(key),
        cumulativeAmount: amount,
      },
    );
    return {
      type: "vouchers",
      vouchers: [
        {
          key: { ...key, nonce: key.nonce.toString() },
          cumulativeAmount: amount.toString(),
          signature,
          jobs: [jobId],
        },
      ],
    };
  }
});
