// zk vouchers on a devnet with ZkChannels: the payee's ledger takes a voucher carrying both
// signatures (the EIP-712 ZkVoucher by the channel's signer and the EdDSA-Poseidon one by the
// leaf's settlement key), keeps it durably with its EdDSA signature, refuses a wrong one with
// the reason that fits, and the channel book counts a zk channel's deposit as the buyer's credit.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Address, Hex, LocalAccount } from "viem";
import { toHex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  CHANNEL_CLOSED,
  atpBalance,
  createWriter,
  devnetPrivateKey,
  mintAtp,
  openZkChannel,
  settleZkBySignature,
  signZkVoucherEip712,
  startDevnet,
  startZkChannelClose,
  topUpZkChannel,
} from "../../offchain/src/chain/index.ts";
import type { ChainWriter, Devnet } from "../../offchain/src/chain/index.ts";
import { ChannelBook, PayeeLedger, VoucherBatchSchema } from "../../offchain/src/payments/index.ts";
import type { VoucherBatch, VoucherWire } from "../../offchain/src/payments/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";
import {
  MemoryVault,
  heldVoucher,
  openFundedChannel,
  settlementParts,
} from "../support/settlement-fixture.ts";
import {
  FIELD,
  SettlementKey,
  domainTagOf,
  zkChannelIdOf,
  zkVoucherMessage,
} from "../../offchain/src/zk/index.ts";

const jobId = (n: number): Hex => toHex(n, { size: 32 });
const outcome = (result: { status: string; reason?: string }) =>
  result.status === "accepted" ? "accepted" : result.reason;

describe("zk vouchers on a devnet with ZkChannels", { timeout: 180_000 }, () => {
  let devnet: Devnet;
  let buyer: ChainWriter;
  let relayer: ChainWriter;
  let zkChannels: Address;
  let domainTag: bigint;
  const signer = privateKeyToAccount(devnetPrivateKey(3));
  const stranger = privateKeyToAccount(devnetPrivateKey(6));
  const payee = privateKeyToAccount(devnetPrivateKey(5)).address;
  const otherPayee = privateKeyToAccount(devnetPrivateKey(7)).address;
  const settlementKey = SettlementKey.generate();
  const wrongKey = SettlementKey.generate();
  const dirs: string[] = [];

  before(async () => {
    devnet = await startDevnet();
    assert.ok(devnet.deployment.zkChannels, "the devnet deploys ZkChannels");
    zkChannels = devnet.deployment.zkChannels;
    domainTag = domainTagOf(devnet.chainId, zkChannels);
    const faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    buyer = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(3));
    relayer = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(4));
    await mintAtp(faucet, signer.address, 100_000n);
    await mintAtp(faucet, relayer.walletClient.account.address, 10_000n);
  });
  after(async () => {
    await devnet?.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const open = async (amount: bigint, to: Address = payee, key = settlementKey) =>
    (await openZkChannel(buyer, { payee: to, signer: signer.address, key: key.publicKey, amount })).leaf;

  function payeeSide(dir = mkdtempSync(join(tmpdir(), "cell-payee-zk-"))) {
    dirs.push(dir);
    const store = openStore(dir);
    const book = new ChannelBook({
      reader: buyer,
      store,
      payee,
      pollMs: 60_000,
      blockRange: 50,
      confirmations: 0,
    });
    const ledger = new PayeeLedger({
      store,
      channels: book,
      payee,
      chainId: devnet.chainId,
      paymentChannels: devnet.deployment.paymentChannels,
      zkChannels,
    });
    return { dir, store, book, ledger };
  }

  function earn(store: Store, jobs: number[], amount = 100n): void {
    store.transaction(() => {
      for (const n of jobs) store.payeeLedger.addEarning({ jobId: jobId(n), signer: signer.address, amount });
    });
  }

  interface VoucherOptions {
    ecdsa?: LocalAccount;
    eddsa?: SettlementKey;
    to?: Address;
    tag?: bigint;
    buyerAddress?: Address;
  }

  async function zkVoucher(
    leaf: number,
    cumulativeAmount: bigint,
    jobs: number[],
    options: VoucherOptions = {},
  ): Promise<VoucherWire> {
    const ecdsa = options.ecdsa ?? signer;
    const eddsa = (options.eddsa ?? settlementKey).sign(
      zkVoucherMessage(options.tag ?? domainTag, leaf, cumulativeAmount),
    );
    return {
      key: {
        buyer: options.buyerAddress ?? signer.address,
        signer: ecdsa.address,
        payee: options.to ?? payee,
        nonce: leaf.toString(),
      },
      cumulativeAmount: cumulativeAmount.toString(),
      signature: await signZkVoucherEip712(ecdsa, devnet.chainId, zkChannels, { leaf, cumulativeAmount }),
      jobs: jobs.map(jobId),
      zk: {
        leaf: leaf.toString(),
        r8x: eddsa.r8x.toString(),
        r8y: eddsa.r8y.toString(),
        s: eddsa.s.toString(),
      },
    };
  }

  const batch = (...vouchers: VoucherWire[]): VoucherBatch =>
    VoucherBatchSchema.parse({ type: "vouchers", vouchers });

  it("accepts a zk voucher for a leaf it had not read, and keeps it durably with its EdDSA signature", async () => {
    const leaf = await open(1_000n);
    const { dir, store, ledger } = payeeSide();
    earn(store, [1, 2, 3]);
    const voucher = await zkVoucher(leaf, 200n, [1, 2]);
    const channelId = zkChannelIdOf(zkChannels, leaf);
    const { results } = await ledger.receive(batch(voucher));
    assert.deepEqual(results, [{ status: "accepted", channelId, cumulativeAmount: "200" }]);
    assert.equal(ledger.unpaid(signer.address), 100n);
    assert.equal(
      store.payeeLedger.channel(channelId)?.zk?.ax,
      settlementKey.publicKey.ax,
      "looked up on-chain",
    );
    store.close();

    const reopened = openStore(dir);
    try {
      const held = reopened.payeeLedger.voucher(channelId);
      assert.equal(held?.cumulativeAmount, 200n);
      assert.equal(held?.signature, voucher.signature);
      assert.deepEqual(held?.zk, {
        leaf,
        signature: { r8x: BigInt(voucher.zk!.r8x), r8y: BigInt(voucher.zk!.r8y), s: BigInt(voucher.zk!.s) },
      });
      const vault = new PayeeLedger({
        store: reopened,
        channels: { channel: async () => undefined },
        payee,
        chainId: devnet.chainId,
        paymentChannels: devnet.deployment.paymentChannels,
        zkChannels,
      });
      const [unsettled] = vault.unsettledZk(10);
      assert.equal(unsettled?.zk?.leaf, leaf, "the zk settler tells it apart");
      assert.deepEqual(vault.unsettled(10), [], "signature-mode settlement is not given zk vouchers");
      assert.deepEqual(vault.channels(), [], "the PaymentChannels watchtower is not given zk channels");
    } finally {
      reopened.close();
    }
  });

  it("refuses a wrong zk voucher with the reason that fits", async () => {
    const leaf = await open(1_000n);
    const foreignLeaf = await open(1_000n, otherPayee);
    // A leaf another buyer opened with the same signer and key: the voucher's key names the wrong buyer.
    const { leaf: otherBuyersLeaf } = await openZkChannel(relayer, {
      payee,
      signer: signer.address,
      key: settlementKey.publicKey,
      amount: 1_000n,
    });
    const { store, ledger } = payeeSide();
    earn(store, [11, 12, 13, 14, 15]);
    const held = await ledger.receive(batch(await zkVoucher(leaf, 200n, [11, 12])));
    assert.equal(outcome(held.results[0]!), "accepted");

    const cases: [string, Promise<VoucherWire>][] = [
      ["bad_signature", zkVoucher(leaf, 300n, [13], { eddsa: wrongKey })],
      ["bad_signature", zkVoucher(leaf, 300n, [13], { tag: domainTag + 1n })],
      ["bad_signature", zkVoucher(leaf, 300n, [13], { ecdsa: stranger })],
      ["wrong_payee", zkVoucher(leaf, 300n, [13], { to: otherPayee })],
      ["unknown_channel", zkVoucher(foreignLeaf, 100n, [13])],
      ["not_increasing", zkVoucher(leaf, 150n, [13])],
      ["duplicate", zkVoucher(leaf, 200n, [13])],
      ["over_deposit", zkVoucher(leaf, 1_001n, [13, 14, 15])],
      ["over_owed", zkVoucher(leaf, 301n, [13])],
      ["unknown_channel", zkVoucher(9_999, 100n, [13])],
      ["bad_signature", zkVoucher(otherBuyersLeaf, 100n, [13])],
    ];
    for (const [reason, voucher] of cases) {
      const { results } = await ledger.receive(batch(await voucher));
      assert.equal(outcome(results[0]!), reason, `${reason}: ${JSON.stringify(results[0])}`);
    }
    assert.equal(store.payeeLedger.voucher(zkChannelIdOf(zkChannels, leaf))?.cumulativeAmount, 200n);
    store.close();
  });

  it("refuses a malformed zk voucher at the wire: leaf and nonce differ, or a number beyond the field", async () => {
    const voucher = await zkVoucher(3, 100n, [1]);
    assert.ok(VoucherBatchSchema.safeParse({ type: "vouchers", vouchers: [voucher] }).success);
    const mismatched = { ...voucher, key: { ...voucher.key, nonce: "4" } };
    const result = VoucherBatchSchema.safeParse({ type: "vouchers", vouchers: [mismatched] });
    assert.ok(!result.success && result.error.issues.some((issue) => issue.message.includes("zk.leaf")));
    const huge = { ...voucher, zk: { ...voucher.zk!, s: FIELD.toString() } };
    const beyond = VoucherBatchSchema.safeParse({ type: "vouchers", vouchers: [huge] });
    assert.ok(!beyond.success && beyond.error.issues.some((issue) => issue.message.includes("field")));
  });

  it("counts a zk channel's deposit as credit, follows its top-up, payment and close", async () => {
    const { store, book, ledger } = payeeSide();
    const before = book.creditOf(signer.address).unspentDeposit;
    await book.poll();
    const counted = book.creditOf(signer.address).unspentDeposit;
    const leaf = await open(5_000n);
    const channelId = zkChannelIdOf(zkChannels, leaf);
    await book.poll();
    assert.equal(book.creditOf(signer.address).unspentDeposit, counted + 5_000n);
    assert.ok(counted >= before);
    await topUpZkChannel(buyer, leaf, 1_000n);
    await book.poll();
    assert.equal(store.payeeLedger.channel(channelId)?.deposit, 6_000n);

    earn(store, [21, 22]);
    const voucher = await zkVoucher(leaf, 200n, [21, 22]);
    assert.equal(outcome((await ledger.receive(batch(voucher))).results[0]!), "accepted");
    assert.equal(book.creditOf(signer.address).unspentDeposit, counted + 5_800n);

    // The fallback pays the held ECDSA signature exactly; the book sees it paid.
    const held = ledger.latest(channelId)!;
    const balance = await atpBalance(buyer, payee);
    await settleZkBySignature(relayer, { leaf, cumulativeAmount: held.cumulativeAmount }, held.signature);
    assert.equal((await atpBalance(buyer, payee)) - balance, 200n);
    await book.poll();
    assert.equal(ledger.paidOnChain(channelId), 200n);
    assert.ok(!ledger.unsettled(100).some((v) => v.channelId === channelId), "settled: no longer unsettled");

    await startZkChannelClose(buyer, leaf);
    await book.poll();
    const closing = store.payeeLedger.channel(channelId)!;
    assert.ok(closing.closesAt !== 0n && closing.closesAt !== CHANNEL_CLOSED);
    assert.equal(book.creditOf(signer.address).unspentDeposit, counted, "a closing channel gives no credit");
    earn(store, [23]);
    const late = await zkVoucher(leaf, 300n, [23]);
    assert.equal(outcome((await ledger.receive(batch(late))).results[0]!), "channel_closed");
    store.close();
  });

  it("the signature-mode epoch settler leaves zk vouchers to the zk settler", async () => {
    const leaf = await open(1_000n);
    const { store, ledger } = payeeSide();
    earn(store, [31]);
    assert.equal(
      outcome((await ledger.receive(batch(await zkVoucher(leaf, 100n, [31])))).results[0]!),
      "accepted",
    );
    const zkHeld = ledger.latest(zkChannelIdOf(zkChannels, leaf))!;
    const vault = new MemoryVault();
    vault.hold(zkHeld);
    const other = privateKeyToAccount(generatePrivateKey()).address;
    const key = await openFundedChannel(devnet, buyer, other, 10_000n);
    vault.hold(await heldVoucher(devnet, signer, key, 700n));
    const parts = settlementParts(devnet, store, vault, devnetPrivateKey(8));
    parts.sender.start(100);
    try {
      const settled = await parts.settler.settleNow();
      assert.equal(settled.state, "settled");
      assert.deepEqual([settled.voucherCount, settled.paidCount, settled.total], [1, 1, 700n]);
      assert.deepEqual(
        vault.unsettledZk(10).map((voucher) => voucher.zk?.leaf),
        [leaf],
        "the zk voucher is still unsettled",
      );
    } finally {
      await parts.sender.stop();
      store.close();
    }
  });
});
