// A donor that takes payments, on real nodes: a Hardhat devnet, libp2p over loopback and SQLite
// stores. The donor declines a buyer without a channel with `payment_required`, bids once a
// channel to its payee exists, declines the next job with `payment_overdue` until the first is
// paid, accepts the buyer's voucher on `/cell/voucher/1` (which then redeems on-chain), and
// takes the buyer's jobs again.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { keccak256, toHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  atpBalance,
  channelIdOf,
  createWriter,
  devnetPrivateKey,
  mintAtp,
  openChannel,
  redeemVoucher,
  signVoucher,
} from "../../offchain/src/chain/index.ts";
import type { ChannelKey } from "../../offchain/src/chain/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { protocolSpecs } from "../../offchain/src/node/protocols.ts";
import { createMeshNode } from "../../offchain/src/p2p/index.ts";
import type { MeshNode } from "../../offchain/src/p2p/index.ts";
import { VOUCHER_PROTOCOL, jobAmount } from "../../offchain/src/payments/index.ts";
import type { VoucherBatch } from "../../offchain/src/payments/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { LOOPBACK_CIDRS, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const DONOR_ACCOUNT = 1;
const CHANNEL_WALLET_ACCOUNT = 7;
const PRICE = 1_000n;
const FUEL_LIMIT = 100_000_000n;
const DEPOSIT = 10n ** 15n;

describe("a donor taking payments", { timeout: 180_000 }, () => {
  let cluster: Cluster;
  let donor: CellNode;
  let buyer: CellNode;
  let buyerNode: ClusterNode;
  let client: MeshNode | undefined;
  let channel: ChannelKey;
  let jobId: Hex;
  let secondJob: Hex;

  before(async () => {
    cluster = await startCluster();
    const donorNode = await cluster.prepare("donor", {
      donor: true,
      stakeWith: DONOR_ACCOUNT,
      config: {
        donor: { pricePerMegaFuel: PRICE },
        // Nothing may stay unpaid: after one job the buyer must pay before the next.
        payments: { enabled: true, freeAllowance: 0n, maxUnpaid: 0n, channelPollMs: 200 },
        runtime: { poolSize: 1 },
      },
    });
    buyerNode = await cluster.prepare("buyer", { donor: false });
    donor = await startInProcess(donorNode);
    buyer = await startInProcess(buyerNode, donor.multiaddrs().slice(0, 1));
    await until(
      () => buyer.peers().some((peer) => peer.peerId === donor.peerId && peer.staked === true),
      60_000,
      "the buyer to see the donor staked",
    );
  });

  after(async () => {
    await client?.stop();
    await buyer?.stop();
    await donor?.stop();
    await cluster?.close();
  });

  it("declines the buyer's job with payment_required while no channel pays it", async () => {
    ({ jobId } = await buyer.submitJob({
      module: SHA256_WASM,
      input: new TextEncoder().encode("1\npay me"),
      fuelLimit: FUEL_LIMIT,
      deadlineMs: Date.now() + 120_000,
    }));
    await until(
      () =>
        buyer
          .getJob(jobId)!
          .events.some((event) => event.type === "bid_rejected" && event.reason === "payment_required"),
      30_000,
      "a payment_required decline",
    );
    assert.notEqual(buyer.getJob(jobId)!.state, "completed");
  });

  it("bids, runs the job, once a channel from the buyer's key to its payee covers it", async () => {
    const { devnet } = cluster;
    const faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    const wallet = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(CHANNEL_WALLET_ACCOUNT));
    await mintAtp(faucet, wallet.walletClient.account.address, DEPOSIT);
    const payee = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(DONOR_ACCOUNT)).walletClient
      .account.address;
    // A cold wallet funds it; the buyer node's operator key signs its vouchers.
    ({ key: channel } = await openChannel(wallet, {
      signer: buyerNode.identity.operatorAddress,
      payee,
      amount: DEPOSIT,
    }));
    const view = await buyer.waitForJob(jobId, { timeoutMs: 90_000 });
    assert.equal(view.state, "completed", JSON.stringify(view.events.slice(-5)));
  });

  it("declines the buyer's next job with payment_overdue while the first is unpaid", async () => {
    ({ jobId: secondJob } = await buyer.submitJob({
      module: SHA256_WASM,
      input: new TextEncoder().encode("1\npay me again"),
      fuelLimit: FUEL_LIMIT,
      deadlineMs: Date.now() + 120_000,
    }));
    await until(
      () =>
        buyer
          .getJob(secondJob)!
          .events.some((event) => event.type === "bid_rejected" && event.reason === "payment_overdue"),
      30_000,
      "a payment_overdue decline",
    );
  });

  it("accepts the buyer's voucher for the job over /cell/voucher/1, and the voucher redeems on-chain", async () => {
    const view = buyer.getJob(jobId)!;
    const owed = jobAmount(PRICE, BigInt(view.result!.fuelUsed));
    assert.ok(owed > 0n);
    const { devnet } = cluster;
    const channelId = channelIdOf(channel);
    const signature = await signVoucher(
      buyerNode.identity.operator,
      devnet.deployment.chainId,
      devnet.deployment.paymentChannels,
      { channelId, cumulativeAmount: owed },
    );
    const wire = {
      key: { ...channel, nonce: channel.nonce.toString() },
      cumulativeAmount: owed.toString(),
      signature,
      jobs: [jobId],
    };
    const overOwed = await signVoucher(
      buyerNode.identity.operator,
      devnet.deployment.chainId,
      devnet.deployment.paymentChannels,
      { channelId, cumulativeAmount: owed + 1n },
    );
    client = await createMeshNode({
      peerKeySeed: randomBytes(32),
      bootstrap: donor.multiaddrs().slice(0, 1),
      trustedNetworks: LOOPBACK_CIDRS,
    });
    const send = (batch: VoucherBatch) =>
      client!.request(donor.peerId, VOUCHER_PROTOCOL, protocolSpecs.voucher, batch, { timeoutMs: 10_000 });

    const first = await send({
      type: "vouchers",
      vouchers: [{ ...wire, cumulativeAmount: (owed + 1n).toString(), signature: overOwed }, wire],
    });
    assert.deepEqual(
      first.results.map((result) => (result.status === "accepted" ? "accepted" : result.reason)),
      ["over_owed", "accepted"],
    );
    const replay = await send({ type: "vouchers", vouchers: [wire] });
    assert.equal(replay.results[0]?.status === "refused" && replay.results[0].reason, "duplicate");

    // A voucher whose signature its signer did not make is refused and charged to its sender.
    const forger = await createMeshNode({
      peerKeySeed: randomBytes(32),
      bootstrap: donor.multiaddrs().slice(0, 1),
      trustedNetworks: LOOPBACK_CIDRS,
    });
    try {
      const forgedSignature = await signVoucher(
        privateKeyToAccount(keccak256(toHex("not the buyer"))),
        devnet.deployment.chainId,
        devnet.deployment.paymentChannels,
        { channelId, cumulativeAmount: owed + 2n },
      );
      const forged = await forger.request(donor.peerId, VOUCHER_PROTOCOL, protocolSpecs.voucher, {
        type: "vouchers",
        vouchers: [{ ...wire, cumulativeAmount: (owed + 2n).toString(), signature: forgedSignature }],
      });
      assert.equal(forged.results[0]?.status === "refused" && forged.results[0].reason, "bad_signature");
      assert.equal(donor.rejections().voucher_forged, 1, "the forgery is charged to its sender");
    } finally {
      await forger.stop();
    }

    // The stored voucher is money: anyone may redeem it and the payee is paid.
    const payee = channel.payee;
    const redeemer = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(CHANNEL_WALLET_ACCOUNT));
    const balanceBefore = await atpBalance(redeemer, payee);
    await redeemVoucher(redeemer, { key: channel, cumulativeAmount: owed, signature });
    assert.equal(await atpBalance(redeemer, payee), balanceBefore + owed);
  });

  it("takes the buyer's jobs again once paid", async () => {
    const view = await buyer.waitForJob(secondJob, { timeoutMs: 90_000 });
    assert.equal(view.state, "completed", JSON.stringify(view.events.slice(-5)));
  });
});
