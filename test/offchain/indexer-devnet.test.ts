import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createPublicClient, custom, http, keccak256, parseEther, toHex } from "viem";
import type { Address, Hex, PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createApiClient, createApiServer } from "../../offchain/src/api/index.ts";
import type { ApiServer } from "../../offchain/src/api/index.ts";
import {
  buildReceiptTree,
  createWriter,
  donorParams,
  donorStake,
  getChannel,
  mintAtp,
  openChannel,
  redeemVoucher,
  registerDonor,
  requestUnbond,
  settleVouchers,
  signVoucher,
  slashEquivocation,
  stake,
  startChannelClose,
  startDevnet,
  topUpChannel,
  withdrawPaid,
} from "../../offchain/src/chain/index.ts";
import type { ChainWriter, ChannelKey, Devnet } from "../../offchain/src/chain/index.ts";
import { ChainIndexer, explorerSourceOf } from "../../offchain/src/indexer/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";
import { receiptFor, signedReceipt } from "../support/contracts/fixture.ts";
import { explorerNode, getExplorer } from "../support/api-node.ts";

const TOKEN = "explorer-test-token-0123456789";

describe("chain indexer on a Hardhat chain", () => {
  let devnet: Devnet;
  let faucet: ChainWriter;
  let donor: ChainWriter;
  let store: Store;
  let indexer: ChainIndexer;
  let server: ApiServer;
  const voucherKey = privateKeyToAccount(generatePrivateKey());
  const payee = privateKeyToAccount(generatePrivateKey()).address;
  let channel: { key: ChannelKey; channelId: Hex };
  const settlementTxs: Hex[] = [];

  before(async () => {
    devnet = await startDevnet();
    faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    donor = createWriter(devnet.rpcUrl, devnet.deployment, generatePrivateKey());
    store = openStore(":memory:");
    indexer = new ChainIndexer(faucet, store, { confirmations: 0, blockRange: 4, pollMs: 60_000 });
    // what a node's trust layer says of an operator: here, a fixed figure for each one
    const trustOf = (operator: Address) => ({ operator, reputation: 40_000 });
    server = await createApiServer({
      node: explorerNode(explorerSourceOf(store, indexer, trustOf)),
      token: TOKEN,
    });
  });

  after(async () => {
    await indexer?.stop();
    await server?.close();
    store?.close();
    await devnet?.stop();
  });

  const voucher = async (cumulativeAmount: bigint) => ({
    key: channel.key,
    cumulativeAmount,
    signature: await signVoucher(voucherKey, devnet.chainId, devnet.deployment.paymentChannels, {
      channelId: channel.channelId,
      cumulativeAmount,
    }),
  });

  it("indexes stakes, a registration, an unbond, a slash, a channel's life and settlements like the chain reads them", async () => {
    const donorAddress = donor.walletClient.account.address;
    const { minStake } = await donorParams(faucet);
    await faucet.publicClient.request({
      method: "hardhat_setBalance" as "eth_chainId",
      params: [donorAddress, "0x56BC75E2D63100000"] as unknown as undefined,
    });
    await mintAtp(faucet, donorAddress, minStake * 2n);
    await stake(donor, minStake * 2n);
    const operator = privateKeyToAccount(generatePrivateKey());
    await registerDonor(donor, { operator, peerKey: keccak256(toHex("peer")), metadataURI: "" });
    await requestUnbond(donor, minStake / 2n);
    const jobId = keccak256(toHex("job"));
    const { chainId, deployment } = devnet;
    const one = await signedReceipt(operator, chainId, deployment.donorRegistry, jobId);
    const other = await signedReceipt(operator, chainId, deployment.donorRegistry, jobId, {
      outputCid: keccak256(toHex("other output")),
    });
    const before = await donorStake(faucet, donorAddress);
    await slashEquivocation(faucet, one, other);

    await mintAtp(faucet, faucet.walletClient.account.address, parseEther("100"));
    channel = await openChannel(faucet, { signer: voucherKey.address, payee, amount: parseEther("10") });
    await topUpChannel(faucet, channel.key, parseEther("2"));
    await redeemVoucher(faucet, await voucher(parseEther("1")));
    const tree = buildReceiptTree([
      receiptFor(operator.address, jobId),
      receiptFor(operator.address, keccak256(toHex("j2"))),
    ]);
    settlementTxs.push(
      (
        await settleVouchers(faucet, [await voucher(parseEther("4"))], {
          epoch: 1n,
          receiptRoot: tree.root,
          receiptCount: 2n,
        })
      ).transactionHash,
    );
    settlementTxs.push(
      (
        await settleVouchers(faucet, [await voucher(parseEther("3")), await voucher(parseEther("20"))], {
          epoch: 2n,
          receiptRoot: tree.root,
          receiptCount: 2n,
        })
      ).transactionHash,
    );
    await withdrawPaid(faucet, [channel.key]);
    await startChannelClose(faucet, channel.key);

    await indexer.poll();
    const head = await faucet.publicClient.getBlockNumber({ cacheTime: 0 });
    const status = indexer.status();
    assert.equal(status.indexedBlock, `${head}`);
    assert.equal(status.lag, "0");
    assert.equal(status.backfill?.done, true);

    const chainStake = await donorStake(faucet, donorAddress);
    const stakes = store.indexer.stakes({ limit: 10, donor: donorAddress }).items;
    assert.deepEqual(
      stakes.map((s) => [s.bonded, s.unbonding, s.operator]),
      [[`${chainStake.bonded}`, `${chainStake.unbonding}`, operator.address]],
    );
    const slashes = store.indexer.slashes({ limit: 10 }).items;
    assert.equal(slashes.length, 1);
    assert.equal(slashes[0]!.kind, "equivocation");
    assert.equal(slashes[0]!.reporter, faucet.walletClient.account.address);
    assert.equal(
      slashes[0]!.amount,
      `${before.bonded + before.unbonding - chainStake.bonded - chainStake.unbonding}`,
    );

    const chainChannel = await getChannel(faucet, channel.channelId);
    const [indexed] = store.indexer.channels({ limit: 10, channel: channel.channelId }).items;
    assert.equal(indexed!.deposit, `${chainChannel.deposit}`);
    assert.equal(indexed!.paid, `${chainChannel.paid}`);
    assert.equal(indexed!.status, "closing");
    assert.equal(indexed!.closesAt, `${chainChannel.closesAt}`);

    const latest = store.indexer.settlement(settlementTxs[1]!) as Record<string, unknown>;
    const block = await faucet.publicClient.getBlock({ blockNumber: BigInt(latest.block as number) });
    assert.equal(latest.at, Number(block.timestamp));
    assert.equal(latest.epoch, "2");
    assert.equal(latest.receiptRoot, tree.root);
    // 3 ATP is below what the channel had paid (nothing new); 20 ATP pays up to the 12 ATP deposit
    assert.deepEqual(
      (latest.voucherList as { cumulativeAmount: string; paid: boolean }[]).map((v) => [
        v.cumulativeAmount,
        v.paid,
      ]),
      [
        [`${parseEther("3")}`, false],
        [`${parseEther("20")}`, true],
      ],
    );
    assert.deepEqual(
      (latest.payees as object[]).map((p) => ({ ...p })),
      [{ payee, amount: `${parseEther("8")}` }],
    );
  });

  it("serves the index as paged, filterable JSON and names a bad query parameter", async () => {
    const first = await getExplorer(server, "/explorer/settlements?limit=1");
    assert.equal(first.status, 200);
    assert.deepEqual(
      (first.body.items as { tx: Hex }[]).map((s) => s.tx),
      [settlementTxs[1]],
    );
    const second = await getExplorer(
      server,
      `/explorer/settlements?limit=1&cursor=${first.body.nextCursor as string}`,
    );
    assert.deepEqual(
      (second.body.items as { tx: Hex }[]).map((s) => s.tx),
      [settlementTxs[0]],
    );
    assert.equal(second.body.nextCursor, undefined);

    const byEpoch = await getExplorer(server, "/explorer/settlements?epoch=1");
    assert.deepEqual(
      (byEpoch.body.items as { tx: Hex }[]).map((s) => s.tx),
      [settlementTxs[0]],
    );
    const byPayee = await getExplorer(server, `/explorer/settlements?payee=${payee.toLowerCase()}`);
    assert.equal((byPayee.body.items as unknown[]).length, 2);
    const nobody = await getExplorer(
      server,
      `/explorer/channels?address=${privateKeyToAccount(generatePrivateKey()).address}`,
    );
    assert.deepEqual(nobody.body.items, []);
    const channels = await getExplorer(server, `/explorer/channels?address=${payee}`);
    assert.deepEqual(
      (channels.body.items as { channelId: Hex }[]).map((c) => c.channelId),
      [channel.channelId],
    );
    const history = await getExplorer(server, `/explorer/channels/${channel.channelId}`);
    assert.deepEqual(
      (history.body.events as { kind: string }[]).map((e) => e.kind),
      ["opened", "topped_up", "paid", "settled", "skipped_nothing_new", "settled", "close_started"],
    );

    const donorAddress: Address = donor.walletClient.account.address;
    const profile = await getExplorer(server, `/explorer/donors/${donorAddress}?limit=2`);
    assert.deepEqual(profile.body.faults, { equivocation: 1 });
    const stake = profile.body.stake as { operator: Address };
    assert.deepEqual(profile.body.trust, { operator: stake.operator, reputation: 40_000 });
    const page = profile.body.history as { items: { kind: string }[]; nextCursor?: string };
    assert.deepEqual(
      page.items.map((e) => e.kind),
      ["jailed", "slashed"],
    );
    assert.ok(page.nextCursor);

    const slashes = await getExplorer(server, "/explorer/slashes?kind=outvoted");
    assert.deepEqual(slashes.body.items, []);
    const anchors = await getExplorer(server, "/explorer/anchors?epoch=2");
    assert.equal((anchors.body.items as unknown[]).length, 1);
    const status = await getExplorer(server, "/explorer/status");
    assert.equal(status.body.lag, "0");

    const bad = await getExplorer(server, "/explorer/settlements?limit=0&colour=red");
    assert.equal(bad.status, 400);
    const message = (bad.body.error as { message: string }).message;
    assert.match(message, /limit: must be between 1 and 500/);
    assert.match(message, /colour/);
    const badAddress = await getExplorer(server, "/explorer/donors/0x1234");
    assert.equal(badAddress.status, 400);
    assert.match(
      (badAddress.body.error as { message: string }).message,
      /donor address "0x1234" must be an address/,
    );
    const client = createApiClient({ url: server.url, token: TOKEN });
    const viaClient = await client.explorer<{ items: { tx: Hex }[] }>("settlements", {
      epoch: 2n,
      cursor: undefined,
    });
    assert.deepEqual(
      viaClient.items.map((s) => s.tx),
      [settlementTxs[1]],
    );
    await assert.rejects(client.explorer("anchors", { epoch: "x" }), /epoch: must be a decimal integer/);
    const missing = await getExplorer(server, `/explorer/settlements/${keccak256(toHex("none"))}`);
    assert.equal(missing.status, 404);
  });

  it("halves the block range of a call the provider refuses and builds the same index", async () => {
    const asked: bigint[] = [];
    const inner = http(devnet.rpcUrl, { retryCount: 0 })({});
    const capped = custom(
      {
        async request({ method, params }: { method: string; params?: unknown }) {
          if (method === "eth_getLogs") {
            const [filter] = params as [{ fromBlock: Hex; toBlock: Hex }];
            const range = BigInt(filter.toBlock) - BigInt(filter.fromBlock) + 1n;
            asked.push(range);
            if (range > 2n) throw new Error(`query exceeds max block range 2 (asked ${range})`);
          }
          const answer: unknown = await inner.request({ method, params } as Parameters<
            typeof inner.request
          >[0]);
          // as a node that leaves block times out of its logs: the indexer reads them from headers
          if (method === "eth_getLogs")
            for (const log of answer as { blockTimestamp?: Hex }[]) delete log.blockTimestamp;
          return answer;
        },
      },
      { retryCount: 0 },
    );
    const publicClient = createPublicClient({ transport: capped }) as PublicClient;
    const copy = openStore(":memory:");
    try {
      const other = new ChainIndexer({ publicClient, deployment: devnet.deployment }, copy, {
        confirmations: 0,
        blockRange: 16,
        pollMs: 60_000,
      });
      await other.poll();
      assert.ok(
        asked.some((range) => range > 2n),
        "wider calls were refused",
      );
      assert.ok(asked.at(-1)! <= 2n, "the rest fit the provider's cap");
      assert.deepEqual(copy.indexer.counts(), store.indexer.counts());
      const times = (repo: Store["indexer"]) => repo.settlements({ limit: 10 }).items.map((row) => row.at);
      assert.deepEqual(times(copy.indexer), times(store.indexer));
      assert.equal(other.status().indexedBlock, indexer.status().indexedBlock);
    } finally {
      copy.close();
    }
  });

  it("a stop ends a backfill between two ranges, and the next poll goes on from there", async () => {
    const inner = http(devnet.rpcUrl, { retryCount: 0 })({});
    // a slow provider: every eth_getLogs answer takes 20 ms
    const slow = custom({
      async request({ method, params }: { method: string; params?: unknown }) {
        if (method === "eth_getLogs") await new Promise((resolve) => setTimeout(resolve, 20));
        return inner.request({ method, params } as Parameters<typeof inner.request>[0]);
      },
    });
    const publicClient = createPublicClient({ transport: slow }) as PublicClient;
    const copy = openStore(":memory:");
    try {
      const options = { confirmations: 0, blockRange: 1, pollMs: 60_000 };
      const stopped = new ChainIndexer({ publicClient, deployment: devnet.deployment }, copy, options);
      stopped.start();
      while (copy.indexer.head() === undefined) await new Promise((resolve) => setTimeout(resolve, 5));
      await stopped.stop();
      const head = await faucet.publicClient.getBlockNumber({ cacheTime: 0 });
      assert.ok(copy.indexer.head()!.number < head, "stopped before the head");

      const resumed = new ChainIndexer(faucet, copy, { ...options, blockRange: 1_000 });
      await resumed.poll();
      assert.deepEqual(copy.indexer.counts(), store.indexer.counts());
    } finally {
      copy.close();
    }
  });

  it("rolls back the blocks a reorganisation replaced and indexes the new ones", async () => {
    const rpc = faucet.publicClient;
    const snapshot = (await rpc.request({ method: "evm_snapshot" as "eth_chainId" })) as unknown as Hex;
    const replaced = await openChannel(faucet, {
      signer: voucherKey.address,
      payee,
      amount: parseEther("5"),
    });
    await indexer.poll();
    const indexedChannel = (id: Hex) => store.indexer.channels({ limit: 1, channel: id }).items.length === 1;
    assert.ok(indexedChannel(replaced.channelId));

    const reverted = await rpc.request({
      method: "evm_revert" as "eth_chainId",
      params: [snapshot] as unknown as undefined,
    });
    assert.equal(reverted, true);
    const other = await openChannel(faucet, { signer: voucherKey.address, payee, amount: parseEther("1") });
    await rpc.request({ method: "hardhat_mine" as "eth_chainId", params: ["0x3"] as unknown as undefined });
    await indexer.poll();

    assert.equal(indexer.status().rollbacks, 1);
    assert.ok(!indexedChannel(replaced.channelId), "the channel of the replaced blocks is gone");
    assert.ok(indexedChannel(other.channelId), "the channel of the new blocks is indexed");
    assert.equal((await getChannel(faucet, replaced.channelId)).deposit, 0n, "the chain agrees");
    const [indexed] = store.indexer.channels({ limit: 1, channel: other.channelId }).items;
    assert.equal(indexed!.deposit, `${parseEther("1")}`);
    assert.equal(indexer.status().indexedBlock, `${await rpc.getBlockNumber({ cacheTime: 0 })}`);
  });
});
