// The off-chain bindings (offchain/src/chain) against a real `hardhat node` started by startDevnet.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { keccak256, parseEther, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  atpBalance,
  atpTokenAbi,
  buildReceiptTree,
  channelIdOf,
  createReader,
  createWriter,
  deploymentFromIgnition,
  devnetPrivateKey,
  donorParams,
  donorRegistryAbi,
  getChannel,
  isActiveDonor,
  isActiveOperator,
  mintAtp,
  openChannel,
  operatorState,
  parseDeployment,
  paymentChannelsAbi,
  readDeployment,
  redeemVoucher,
  registerDonor,
  registrationOf,
  serializeDeployment,
  settleVouchers,
  signVoucher,
  stake,
  startDevnet,
  verifyReceiptInclusionOnChain,
  verifyReceiptOnChain,
  verifyReceiptProof,
  writeDeployment,
} from "../../offchain/src/chain/index.ts";
import type { Devnet } from "../../offchain/src/chain/index.ts";
import { cellDomain, signReceipt } from "../../offchain/src/protocol/index.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { receiptFor } from "../support/contracts/fixture.ts";

const artifactAbi = (name: string) =>
  JSON.parse(
    readFileSync(new URL(`../../artifacts/contracts/${name}.sol/${name}.json`, import.meta.url), "utf8"),
  ).abi;

describe("committed ABIs", () => {
  it("equal the compiled artifacts (run scripts/gen-abis.ts after changing a contract)", () => {
    assert.deepEqual(atpTokenAbi, artifactAbi("ATPToken"));
    assert.deepEqual(donorRegistryAbi, artifactAbi("DonorRegistry"));
    assert.deepEqual(paymentChannelsAbi, artifactAbi("PaymentChannels"));
  });
});

describe("deployments files", () => {
  it("round-trips and names the bad field", () => {
    const dir = mkdtempSync(join(tmpdir(), "cell-deployments-"));
    try {
      const deployment = {
        chainId: 84532,
        atpToken: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        donorRegistry: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        paymentChannels: "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
        deployBlock: 123n,
      } as const;
      writeDeployment(deployment, dir);
      assert.deepEqual(readDeployment(84532, dir), deployment);
      assert.throws(
        () => parseDeployment({ ...JSON.parse(serializeDeployment(deployment)), donorRegistry: "0x12" }),
        /donorRegistry is not an address/,
      );
      assert.throws(() => readDeployment(1, dir), /no readable deployment for chain 1/);
      const ignition = join(dir, "chain-84532");
      mkdirSync(ignition);
      writeFileSync(
        join(ignition, "deployed_addresses.json"),
        JSON.stringify({
          "Cell#ATPToken": deployment.atpToken,
          "Cell#DonorRegistry": deployment.donorRegistry,
          "Cell#PaymentChannels": deployment.paymentChannels,
        }),
      );
      writeFileSync(
        join(ignition, "journal.jsonl"),
        '{"receipt":{"blockNumber":125}}\n{"receipt":{"blockNumber":123}}\n',
      );
      assert.deepEqual(deploymentFromIgnition(ignition, 84532), deployment);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("chain bindings on a devnet", () => {
  let devnet: Devnet;
  const deploymentsDir = mkdtempSync(join(tmpdir(), "cell-devnet-"));
  before(async () => {
    devnet = await startDevnet({ deploymentsDir });
  });
  after(async () => {
    await devnet?.stop();
    rmSync(deploymentsDir, { recursive: true, force: true });
  });

  it("writes the deployment where off-chain code reads it", () => {
    assert.deepEqual(readDeployment(devnet.chainId, deploymentsDir), devnet.deployment);
  });

  it("stakes, registers, opens, redeems, settles and verifies receipts through the bindings", async () => {
    const { rpcUrl, deployment } = devnet;
    assert.equal(devnet.chainId, 31337);
    const admin = createWriter(rpcUrl, deployment, devnet.deployerKey);
    const reader = createReader(rpcUrl, deployment);
    const donor = createWriter(rpcUrl, deployment, devnetPrivateKey(1));
    const buyer = createWriter(rpcUrl, deployment, devnetPrivateKey(2));
    const payee = privateKeyToAccount(devnetPrivateKey(3)).address;
    const operator = privateKeyToAccount(keccak256(toHex("bindings-operator")));
    const voucherKey = privateKeyToAccount(keccak256(toHex("bindings-voucher")));
    const peerKey = keccak256(toHex("bindings-peer"));

    await mintAtp(admin, donor.walletClient.account.address, parseEther("1000"));
    await mintAtp(admin, buyer.walletClient.account.address, parseEther("1000"));
    const { minStake } = await donorParams(reader);
    await stake(donor, minStake);
    assert.equal(await isActiveDonor(reader, operator.address, peerKey), false);
    await registerDonor(donor, { operator, peerKey, metadataURI: "ipfs://bindings" });
    assert.equal(await isActiveOperator(reader, operator.address), true);
    assert.equal(await isActiveDonor(reader, operator.address, peerKey), true);
    assert.equal(await isActiveDonor(reader, operator.address, keccak256(toHex("other-peer"))), false);
    assert.deepEqual(await operatorState(reader, operator.address), {
      donor: donor.walletClient.account.address,
      accountableUntil: 0,
      jailedUntil: 0,
    });
    assert.equal((await registrationOf(reader, donor.walletClient.account.address)).nonce, 1n);

    const receipt = receiptFor(operator.address, keccak256(toHex("bindings-job")));
    const signature = await signReceipt(
      operator,
      cellDomain(deployment.chainId, deployment.donorRegistry),
      receipt,
    );
    assert.equal(await verifyReceiptOnChain(reader, receipt, signature), true);
    assert.equal(await verifyReceiptOnChain(reader, { ...receipt, fuelUsed: 1n }, signature), false);

    const { key, channelId } = await openChannel(buyer, {
      signer: voucherKey.address,
      payee,
      amount: parseEther("10"),
    });
    assert.equal(channelId, channelIdOf(key));
    const voucher = async (cumulativeAmount: bigint) => ({
      key,
      cumulativeAmount,
      signature: await signVoucher(voucherKey, deployment.chainId, deployment.paymentChannels, {
        channelId,
        cumulativeAmount,
      }),
    });
    const payeeBefore = await atpBalance(reader, payee);
    await redeemVoucher(buyer, await voucher(parseEther("1")));
    const tree = buildReceiptTree([receipt, receiptFor(operator.address, keccak256(toHex("job-2")))]);
    assert.equal(verifyReceiptProof(tree.root, receipt, tree.proof(0)), true);
    await settleVouchers(admin, [await voucher(parseEther("4"))], {
      epoch: 1n,
      receiptRoot: tree.root,
      receiptCount: 2n,
    });
    assert.equal(await atpBalance(reader, payee), payeeBefore + parseEther("4"));
    assert.deepEqual(await getChannel(reader, channelId), {
      deposit: parseEther("10"),
      paid: parseEther("4"),
      closesAt: 0n,
    });
    const anchor = { submitter: admin.walletClient.account.address, epoch: 1n };
    assert.equal(await verifyReceiptInclusionOnChain(reader, anchor, receipt, tree.proof(0)), true);
    assert.equal(
      await verifyReceiptInclusionOnChain(reader, { ...anchor, epoch: 2n }, receipt, tree.proof(0)),
      false,
    );
  });
});
