// The chain indexer follows ZkChannels on a real Hardhat devnet (the committed CI circuit, a
// real Groth16 proof): zk channels, proven batches with their published transfers and payouts
// reach the store, GET /explorer/zk/* and `cell settlements list --zk`; a reorganisation
// rolls them back.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { keccak256, parseEther, toHex } from "viem";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createApiServer } from "../../offchain/src/api/index.ts";
import type { ApiServer } from "../../offchain/src/api/index.ts";
import {
  createWriter,
  devnetPrivateKey,
  mintAtp,
  openZkChannel,
  readZkEvents,
  settleZkBatch,
  settleZkBySignature,
  signZkVoucherEip712,
  startDevnet,
  startZkChannelClose,
  topUpZkChannel,
  withdrawZk,
} from "../../offchain/src/chain/index.ts";
import type { ChainWriter, Devnet, ZkProofWords } from "../../offchain/src/chain/index.ts";
import { ChainIndexer, explorerSourceOf, indexLogs, stateKeysOf } from "../../offchain/src/indexer/index.ts";
import type { ChainLog } from "../../offchain/src/indexer/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";
import {
  SettlementKey,
  packTransfers,
  ZkProver,
  ZkState,
  buildBatchWitness,
  circuitArtifacts,
  domainTagOf,
  proofToCalldata,
  zkVoucherMessage,
} from "../../offchain/src/zk/index.ts";
import type { QueueOp, Transfer } from "../../offchain/src/zk/index.ts";
import { zkBatchRows, zkChannelRows } from "../../offchain/web/src/pages/explorer.ts";
import { runCell } from "../support/cell-cli.ts";
import { explorerNode, getExplorer } from "../support/api-node.ts";
import type { ExplorerAnswer } from "../support/api-node.ts";

const TOKEN = "zk-explorer-test-token-0123456789";

const items = (answer: ExplorerAnswer) => answer.body.items as Record<string, unknown>[];
const ether = (amount: string) => `${parseEther(amount)}`;

describe("indexer core: ZkChannels logs", () => {
  const BUYER = "0x00000000000000000000000000000000000000B1";
  const PAYEE = "0x00000000000000000000000000000000000000A1";
  let logIndex = 0;
  const log = (eventName: string, args: Record<string, unknown>, block: bigint): ChainLog => ({
    source: "zk",
    eventName,
    args,
    blockNumber: block,
    blockHash: toHex(block, { size: 32 }),
    logIndex: logIndex++,
    transactionHash: keccak256(toHex(`${eventName}-${block}`)),
  });

  it("follows a channel from opening through a proven payment and its close to the refund", () => {
    const logs = [
      log(
        "ZkChannelOpened",
        { leaf: 3, buyer: BUYER, payee: PAYEE, signer: BUYER, ax: 1n, ay: 2n, amount: 10n },
        1n,
      ),
      log("ZkToppedUp", { leaf: 3, funder: BUYER, amount: 5n, deposited: 15n }, 2n),
      log(
        "ZkBatchSettled",
        {
          batch: 0n,
          submitter: PAYEE,
          oldRoot: 1n,
          newRoot: 2n,
          queueFrom: 0n,
          queueTo: 2n,
          transfers: packTransfers([{ leaf: 3, cumulative: 4n }], 2),
        },
        3n,
      ),
      log("ZkCloseStarted", { leaf: 3, closesAt: 99n }, 4n),
      log("ZkCloseFinalized", { leaf: 3, position: 2n }, 5n),
      log("ZkWithdrawn", { leaf: 3, payee: PAYEE, amount: 4n, paid: 4n }, 6n),
      log("ZkRefunded", { leaf: 3, buyer: BUYER, amount: 11n }, 7n),
    ];
    assert.deepEqual(stateKeysOf(logs, new Map()).zkLeaves, [3]);
    const { rows, state } = indexLogs({ stakes: new Map(), channels: new Map() }, logs, new Map());
    assert.deepEqual(
      rows.zkChannelEvents.map((e) => [e.kind, e.amount, e.deposited, e.paid, e.withdrawn, e.status]),
      [
        ["opened", 10n, 10n, 0n, 0n, "open"],
        ["topped_up", 5n, 15n, 0n, 0n, "open"],
        ["proven", 4n, 15n, 4n, 0n, "open"],
        ["close_started", undefined, 15n, 4n, 0n, "closing"],
        ["closed", undefined, 15n, 4n, 0n, "closed"],
        ["withdrawn", 4n, 15n, 4n, 4n, "closed"],
        ["refunded", 11n, 15n, 4n, 4n, "refunded"],
      ],
    );
    assert.deepEqual(
      rows.zkBatches.map((b) => [b.batch, b.queueFrom, b.queueTo, b.transfers]),
      [[0n, 0n, 2n, [{ leaf: 3, cumulative: 4n }]]],
    );
    assert.deepEqual(
      rows.zkPayouts.map((p) => [p.kind, p.to, p.amount, p.cumulative]),
      [
        ["withdrawn", PAYEE, 4n, 4n],
        ["refund", BUYER, 11n, undefined],
      ],
    );
    assert.equal(state.zkChannels?.get(3)?.status, "refunded");
    assert.deepEqual(
      rows.zkChannels.map((c) => [c.leaf, c.buyer, c.payee]),
      [[3, BUYER, PAYEE]],
    );
  });
});

describe("chain indexer on ZkChannels", { timeout: 300_000 }, () => {
  let devnet: Devnet;
  let prover: ZkProver;
  let admin: ChainWriter;
  let buyer: ChainWriter;
  let store: Store;
  let indexer: ChainIndexer;
  let server: ApiServer;
  let dir: string;
  let domainTag: bigint;
  const payees = [devnetPrivateKey(6), devnetPrivateKey(7)].map((key) => privateKeyToAccount(key).address);
  const voucherKey = privateKeyToAccount(keccak256(toHex("zk-indexer-voucher")));
  const settlementKey = new SettlementKey(Buffer.from(keccak256(toHex("zk-indexer")).slice(2), "hex"));
  let state: ZkState;
  let queued: QueueOp[];
  let batchTx: Hex;
  let newRoot: bigint;

  before(async () => {
    [devnet, prover] = await Promise.all([startDevnet(), ZkProver.start(circuitArtifacts("ci"))]);
    admin = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    buyer = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(5));
    domainTag = domainTagOf(devnet.chainId, devnet.deployment.zkChannels!);
    state = new ZkState(prover.artifacts.params.depth);
    store = openStore(":memory:");
    indexer = new ChainIndexer(admin, store, { confirmations: 0, blockRange: 5, pollMs: 60_000 });
    server = await createApiServer({ node: explorerNode(explorerSourceOf(store, indexer)), token: TOKEN });
    dir = await mkdtemp(join(tmpdir(), "cell-zk-explorer-"));
    await writeFile(join(dir, "token"), TOKEN);
  });

  after(async () => {
    await indexer?.stop();
    await server?.close();
    store?.close();
    await prover?.terminate();
    await devnet?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Proves and settles one batch from `state`: the queued operations, then the transfers. */
  async function proveAndSettle(queue: QueueOp[], transfers: Omit<Transfer, "signature">[]): Promise<Hex> {
    const witness = buildBatchWitness({
      state,
      domainTag,
      queue,
      transfers: transfers.map((t) => ({
        ...t,
        signature: settlementKey.sign(zkVoucherMessage(domainTag, t.leaf, t.cumulative)),
      })),
      params: prover.artifacts.params,
    });
    const { proof } = await prover.prove(witness.input);
    const receipt = await settleZkBatch(admin, {
      newRoot: witness.newRoot,
      opsConsumed: BigInt(queue.length),
      transfers: witness.publicSignals.slice(5),
      proof: proofToCalldata(proof) as unknown as ZkProofWords,
    });
    state = witness.stateAfter;
    newRoot = witness.newRoot;
    return receipt.transactionHash;
  }

  const withdraw = (leaf: number) =>
    withdrawZk(admin, leaf, state.leaves.get(leaf)!, state.tree.path(leaf).siblings, state.root);

  it("indexes zk channels, a proven batch with its transfers and the payouts as the chain made them", async () => {
    await mintAtp(admin, buyer.walletClient.account.address, parseEther("100"));
    const open = (payee: Address, amount: string) =>
      openZkChannel(buyer, {
        payee,
        signer: voucherKey.address,
        key: settlementKey.publicKey,
        amount: parseEther(amount),
      });
    const first = await open(payees[0]!, "10");
    const second = await open(payees[1]!, "5");
    assert.deepEqual([first.leaf, second.leaf], [0, 1]);
    await topUpZkChannel(buyer, 0, parseEther("1"));
    const events = await readZkEvents(admin, devnet.deployment.deployBlock, "latest");
    queued = events.flatMap((event) => (event.type === "queued" ? [event.op] : []));
    // One proof: both OPENs (the TOPUP stays queued), then 2 ATP on leaf 0 and 1 ATP on leaf 1.
    batchTx = await proveAndSettle(queued.slice(0, 2), [
      { leaf: 0, cumulative: parseEther("2") },
      { leaf: 1, cumulative: parseEther("1") },
    ]);
    await withdraw(0);
    const voucher = { leaf: 1, cumulativeAmount: parseEther("3") };
    await settleZkBySignature(
      admin,
      voucher,
      await signZkVoucherEip712(voucherKey, devnet.chainId, devnet.deployment.zkChannels!, voucher),
    );
    await startZkChannelClose(buyer, 1);

    await indexer.poll();
    assert.equal(indexer.status().lag, "0");
    const buyerAddress = buyer.walletClient.account.address;
    const channels = store.indexer.zkChannels({ limit: 10 }).items;
    assert.deepEqual(
      channels.map((c) => [c.leaf, c.buyer, c.payee, c.deposited, c.paid, c.withdrawn, c.status]),
      [
        [1, buyerAddress, payees[1], ether("5"), ether("1"), ether("3"), "closing"],
        [0, buyerAddress, payees[0], ether("11"), ether("2"), ether("2"), "open"],
      ],
    );
    const [batch] = store.indexer.zkBatches({ limit: 10 }).items;
    assert.deepEqual(
      {
        batch: batch!.batch,
        tx: batch!.tx,
        submitter: batch!.submitter,
        queue: [batch!.queueFrom, batch!.queueTo, batch!.queueOps],
        newRoot: batch!.newRoot,
        transferCount: batch!.transferCount,
        transfers: batch!.transfers,
      },
      {
        batch: 0,
        tx: batchTx,
        submitter: admin.walletClient.account.address,
        queue: [0, 2, 2],
        newRoot: toHex(newRoot, { size: 32 }),
        transferCount: 2,
        transfers: [
          { leaf: 0, cumulative: ether("2") },
          { leaf: 1, cumulative: ether("1") },
        ],
      },
    );
    const payouts = store.indexer.zkPayouts({ limit: 10 }).items;
    assert.deepEqual(
      payouts.map((p) => [p.kind, p.leaf, p.to, p.amount, p.cumulative]),
      [
        ["signature", 1, payees[1], ether("3"), ether("3")],
        ["withdrawn", 0, payees[0], ether("2"), ether("2")],
      ],
    );
  });

  it("serves zk channels, batches and payouts as paged, filterable JSON and names a bad query", async () => {
    const byPayee = await getExplorer(server, `/explorer/zk/channels?payee=${payees[0]!.toLowerCase()}`);
    assert.equal(byPayee.status, 200);
    assert.deepEqual(
      items(byPayee).map((c) => c.leaf),
      [0],
    );
    const byBuyer = await getExplorer(
      server,
      `/explorer/zk/channels?buyer=${buyer.walletClient.account.address}`,
    );
    assert.deepEqual(
      items(byBuyer).map((c) => c.leaf),
      [1, 0],
    );
    const firstPage = await getExplorer(server, "/explorer/zk/channels?limit=1");
    assert.deepEqual(
      items(firstPage).map((c) => c.leaf),
      [1],
    );
    const nextPage = await getExplorer(
      server,
      `/explorer/zk/channels?limit=1&cursor=${firstPage.body.nextCursor as string}`,
    );
    assert.deepEqual(
      items(nextPage).map((c) => c.leaf),
      [0],
    );
    assert.equal(nextPage.body.nextCursor, undefined);

    const batches = await getExplorer(
      server,
      `/explorer/zk/batches?submitter=${admin.walletClient.account.address}`,
    );
    assert.deepEqual(
      items(batches).map((b) => [b.tx, b.transferCount]),
      [[batchTx, 2]],
    );
    // what the console's zk settlement tables show of these answers
    assert.deepEqual(zkBatchRows(items(batches)), [
      {
        batch: 0,
        submitter: admin.walletClient.account.address,
        transfers: 2,
        queueOps: 2,
        newRoot: toHex(newRoot, { size: 32 }),
        tx: batchTx,
      },
    ]);
    assert.deepEqual(zkChannelRows(items(byPayee)), [
      {
        leaf: 0,
        buyer: buyer.walletClient.account.address,
        payee: payees[0],
        deposited: ether("11"),
        paid: ether("2"),
        withdrawn: ether("2"),
        state: "open",
      },
    ]);
    const noBatches = await getExplorer(server, `/explorer/zk/batches?submitter=${payees[0]}`);
    assert.deepEqual(items(noBatches), []);

    const leafOne = await getExplorer(server, "/explorer/zk/payouts?leaf=1");
    assert.deepEqual(
      items(leafOne).map((p) => [p.kind, p.amount]),
      [["signature", ether("3")]],
    );
    const toPayee = await getExplorer(server, `/explorer/zk/payouts?payee=${payees[0]}`);
    assert.deepEqual(
      items(toPayee).map((p) => [p.kind, p.leaf]),
      [["withdrawn", 0]],
    );

    const bad = await getExplorer(server, "/explorer/zk/payouts?leaf=x&colour=red");
    assert.equal(bad.status, 400);
    const message = (bad.body.error as { message: string }).message;
    assert.match(message, /leaf: must be a leaf index/);
    assert.match(message, /colour/);
    const badPayee = await getExplorer(server, "/explorer/zk/channels?payee=0x1234");
    assert.equal(badPayee.status, 400);
    assert.match((badPayee.body.error as { message: string }).message, /payee: must be an address/);
  });

  it("cell settlements list --zk prints the proven batch and its transfers", async () => {
    const apiArgs = ["--api", server.url, "--token-file", join(dir, "token")];
    const human = await runCell(["settlements", "list", "--zk", ...apiArgs]);
    assert.equal(human.code, 0, human.stderr);
    assert.equal(
      human.stdout,
      [
        `zk batch 0 block ${String(store.indexer.zkBatches({ limit: 1 }).items[0]!.block)} by ${admin.walletClient.account.address}:` +
          ` 2 transfers, 2 queued operations [0, 2), root ${toHex(newRoot, { size: 32 })} tx ${batchTx}`,
        "  leaf 0 paid 2 ATP in all",
        "  leaf 1 paid 1 ATP in all",
        "",
      ].join("\n"),
    );
    const nobody = await runCell(["settlements", "list", "--zk", ...apiArgs, "--submitter", payees[1]!]);
    assert.equal(nobody.stdout, "no zk batches\n");
    const mixed = await runCell(["settlements", "list", "--zk", "--epoch", "3", ...apiArgs]);
    assert.notEqual(mixed.code, 0);
    assert.match(mixed.stderr, /--zk lists proven zk batches .* not --epoch/);
  });

  it("rolls back the zk rows of the blocks a reorganisation replaced", async () => {
    const rpc = admin.publicClient;
    const snapshot = (await rpc.request({ method: "evm_snapshot" as "eth_chainId" })) as unknown as Hex;
    const stateBefore = state;
    // A second batch: the queued TOPUP, then leaf 0 to 4 ATP, and its withdrawal.
    await proveAndSettle([queued[2]!], [{ leaf: 0, cumulative: parseEther("4") }]);
    await withdraw(0);
    await indexer.poll();
    assert.equal(store.indexer.zkBatches({ limit: 10 }).items.length, 2);
    assert.equal(store.indexer.zkChannels({ limit: 1, leaf: 0 }).items[0]!.paid, ether("4"));

    const reverted = await rpc.request({
      method: "evm_revert" as "eth_chainId",
      params: [snapshot] as unknown as undefined,
    });
    assert.equal(reverted, true);
    state = stateBefore;
    await rpc.request({ method: "hardhat_mine" as "eth_chainId", params: ["0x4"] as unknown as undefined });
    await indexer.poll();

    assert.equal(indexer.status().rollbacks, 1);
    assert.deepEqual(
      store.indexer.zkBatches({ limit: 10 }).items.map((b) => b.tx),
      [batchTx],
    );
    const [leaf0] = store.indexer.zkChannels({ limit: 1, leaf: 0 }).items;
    assert.deepEqual([leaf0!.paid, leaf0!.withdrawn], [ether("2"), ether("2")]);
    assert.deepEqual(
      store.indexer.zkPayouts({ limit: 10 }).items.map((p) => p.kind),
      ["signature", "withdrawn"],
    );
    assert.equal(indexer.status().indexedBlock, `${await rpc.getBlockNumber({ cacheTime: 0 })}`);
  });
});
