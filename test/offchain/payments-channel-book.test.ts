import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Address } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  CHANNEL_CLOSED,
  channelIdOf,
  createWriter,
  devnetPrivateKey,
  mintAtp,
  openChannel,
  redeemVoucher,
  signVoucher,
  startChannelClose,
  startDevnet,
  topUpChannel,
} from "../../offchain/src/chain/index.ts";
import type { ChainWriter, Devnet } from "../../offchain/src/chain/index.ts";
import { CHANNEL_CURSOR_KEY, ChannelBook } from "../../offchain/src/payments/index.ts";
import type { ChannelEvent } from "../../offchain/src/payments/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";

describe("channel book on a devnet", { timeout: 120_000 }, () => {
  let devnet: Devnet;
  let buyer: ChainWriter;
  let other: ChainWriter;
  let payee: Address;
  let dir: string;

  before(async () => {
    devnet = await startDevnet();
    const faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    buyer = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(3));
    other = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(4));
    payee = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(5)).walletClient.account.address;
    await mintAtp(faucet, buyer.walletClient.account.address, 10_000n);
    await mintAtp(faucet, other.walletClient.account.address, 10_000n);
    dir = mkdtempSync(join(tmpdir(), "cell-channel-book-"));
  });
  after(async () => {
    await devnet?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const bookOn = (store: Store, events: ChannelEvent[] = []) =>
    new ChannelBook({
      reader: buyer,
      store,
      payee,
      pollMs: 60_000,
      blockRange: 3,
      confirmations: 0,
      onEvent: (event) => events.push(event),
    });

  it("follows this payee's channels from their events into the buyer's credit, across a restart", async () => {
    const signer = privateKeyToAccount(devnetPrivateKey(3));
    const { key, channelId } = await openChannel(buyer, { signer: signer.address, payee, amount: 1_000n });
    // Another payee's channel from the same key is not this node's business.
    await openChannel(buyer, {
      signer: signer.address,
      payee: other.walletClient.account.address,
      amount: 500n,
    });
    await topUpChannel(buyer, key, 500n);
    const store = openStore(dir);
    const events: ChannelEvent[] = [];
    await bookOn(store, events).poll();
    assert.deepEqual(
      events.map((event) => event.type),
      ["opened", "topped_up"],
    );
    assert.deepEqual(bookOn(store).creditOf(signer.address), { unspentDeposit: 1_500n, unpaid: 0n });
    const cursor = store.meta.get(CHANNEL_CURSOR_KEY);
    assert.ok(cursor !== undefined && BigInt(cursor) > devnet.deployment.deployBlock);
    store.close();

    // Redeeming pays 300 on-chain; the restarted book reads on from its cursor.
    const signature = await signVoucher(signer, devnet.chainId, devnet.deployment.paymentChannels, {
      channelId,
      cumulativeAmount: 300n,
    });
    await redeemVoucher(other, { key, cumulativeAmount: 300n, signature });
    const reopened = openStore(dir);
    try {
      const later: ChannelEvent[] = [];
      const book = bookOn(reopened, later);
      await book.poll();
      assert.deepEqual(later, [{ type: "paid", channelId, paid: 300n }]);
      assert.deepEqual(book.creditOf(signer.address), { unspentDeposit: 1_200n, unpaid: 0n });
      reopened.payeeLedger.addEarning({ jobId: `0x${"01".repeat(32)}`, signer: signer.address, amount: 70n });
      assert.equal(book.creditOf(signer.address).unpaid, 70n);

      await startChannelClose(buyer, key);
      await book.poll();
      assert.equal(later.at(-1)?.type, "close_started");
      assert.equal(book.creditOf(signer.address).unspentDeposit, 0n, "a closing channel gives no credit");
      const view = await book.channel(channelId, key);
      assert.ok(view && view.closesAt !== 0n && view.closesAt !== CHANNEL_CLOSED);
    } finally {
      reopened.close();
    }
  });

  it("reads the channels again when the chain went back below its cursor (a restarted devnet)", async () => {
    const store = openStore(join(dir, "went-back"));
    try {
      const book = bookOn(store);
      const signer = buyer.walletClient.account.address;
      await openChannel(buyer, { signer, payee, amount: 700n });
      await book.poll();
      const before = book.creditOf(signer).unspentDeposit;
      assert.equal(before, 700n, "the earlier channel is closing");
      // A cursor past the head and a channel of a chain that is gone.
      const phantom = { buyer: signer, signer, payee, nonce: 999n };
      store.payeeLedger.putChannel({
        channelId: channelIdOf(phantom),
        key: phantom,
        deposit: 10n ** 20n,
        paid: 0n,
        closesAt: 0n,
      });
      const head = await buyer.publicClient.getBlockNumber();
      store.meta.set(CHANNEL_CURSOR_KEY, (head + 1_000n).toString());
      await book.poll();
      assert.equal(
        store.payeeLedger.channel(channelIdOf(phantom))?.deposit,
        10n ** 20n,
        "one poll behind is skipped",
      );
      await book.poll();
      assert.equal(store.payeeLedger.channel(channelIdOf(phantom)), undefined);
      assert.equal(book.creditOf(signer).unspentDeposit, before, "the real channels were read again");
      assert.equal(store.meta.get(CHANNEL_CURSOR_KEY), (head + 1n).toString());
    } finally {
      store.close();
    }
  });

  it("looks up a channel it has not read yet on-chain, once, and knows a missing one is missing", async () => {
    const store = openStore(join(dir, "lookup"));
    try {
      const book = bookOn(store);
      const signer = buyer.walletClient.account.address;
      const { key, channelId } = await openChannel(buyer, { signer, payee, amount: 2_000n });
      assert.deepEqual(await book.channel(channelId, key), { deposit: 2_000n, paid: 0n, closesAt: 0n });
      assert.equal(store.payeeLedger.channel(channelId)?.deposit, 2_000n, "kept in the store");
      const missing = { ...key, nonce: key.nonce + 1n };
      assert.equal(await book.channel(channelIdOf(missing), missing), undefined);
    } finally {
      store.close();
    }
  });
});
