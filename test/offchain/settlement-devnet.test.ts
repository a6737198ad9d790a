// The epoch settler and the watchtower against a real Hardhat devnet: real channels, real
// signed vouchers, receipts in a real SQLite store.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parseEventLogs } from "viem";
import type { Address, Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  atpBalance,
  channelIdOf,
  createWriter,
  devnetPrivateKey,
  getChannel,
  paymentChannelsAbi,
  serializeDeployment,
  startChannelClose,
  startDevnet,
  verifyReceiptInclusionOnChain,
} from "../../offchain/src/chain/index.ts";
import type { ChainWriter, Devnet } from "../../offchain/src/chain/index.ts";
import { receiptFromWire } from "../../offchain/src/protocol/index.ts";
import { loadConfig, startSettlement } from "../../offchain/src/node/index.ts";
import { receiptProof, settlePurpose } from "../../offchain/src/settlement/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";
import {
  MemoryVault,
  eventually,
  heldVoucher,
  openFundedChannel,
  settlementParts,
  silentLog,
  storeOwnReceipts,
  vouchersToJson,
} from "../support/settlement-fixture.ts";

const SETTLER_PROCESS = fileURLToPath(new URL("../support/settler-process.ts", import.meta.url));

const buyerKey = devnetPrivateKey(1);
const buyerAccount = privateKeyToAccount(buyerKey);

describe("settlement on a devnet", { timeout: 180_000 }, () => {
  let devnet: Devnet;
  let buyer: ChainWriter;
  let dir: string;
  const stores: Store[] = [];

  before(async () => {
    devnet = await startDevnet();
    buyer = createWriter(devnet.rpcUrl, devnet.deployment, buyerKey);
    dir = await mkdtemp(join(tmpdir(), "cell-settle-"));
  });

  after(async () => {
    for (const store of stores) store.close();
    await devnet?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function setAutomine(on: boolean): Promise<void> {
    await buyer.publicClient.request({ method: "evm_setAutomine" as never, params: [on] as never });
  }

  /** BatchSettled events `submitter` emitted since `fromBlock`. */
  async function settlementsBy(submitter: Address, fromBlock: bigint): Promise<number> {
    const logs = await buyer.publicClient.getLogs({
      address: devnet.deployment.paymentChannels,
      fromBlock,
      toBlock: "latest",
    });
    return parseEventLogs({ abi: paymentChannelsAbi, logs, eventName: "BatchSettled" }).filter(
      (log) => log.args.submitter === submitter,
    ).length;
  }

  function storeNamed(name: string): Store {
    const store = openStore(join(dir, name));
    stores.push(store);
    return store;
  }

  /** A fresh payee wallet with two channels from the buyer and vouchers for 700 and 1,234 wei. */
  async function payeeWithVouchers(vault: MemoryVault): Promise<{ payee: Address; total: bigint }> {
    const payee = privateKeyToAccount(generatePrivateKey()).address;
    const amounts = [700n, 1_234n];
    for (const amount of amounts) {
      const key = await openFundedChannel(devnet, buyer, payee, 10_000n);
      vault.hold(await heldVoucher(devnet, buyerAccount, key, amount));
    }
    return { payee, total: amounts.reduce((a, b) => a + b) };
  }

  it("settles the vouchers in one transaction with the receipt root, and the payee is paid exactly", async () => {
    const store = storeNamed("settle");
    const vault = new MemoryVault();
    const operatorKey = devnetPrivateKey(2);
    const operator = privateKeyToAccount(operatorKey).address;
    const { payee, total } = await payeeWithVouchers(vault);
    const jobIds = storeOwnReceipts(store, operator, 5);
    const parts = settlementParts(devnet, store, vault, operatorKey);
    parts.sender.start(100);
    try {
      const outcome = await parts.settler.settleNow();
      assert.equal(outcome.state, "settled");
      assert.equal(outcome.voucherCount, 2);
      assert.equal(outcome.paidCount, 2);
      assert.equal(outcome.total, total);
      assert.equal(outcome.receiptCount, 5);
      assert.deepEqual(
        outcome.withdrawals.map((w) => [w.payee, w.amount]),
        [[payee, total]],
      );
      assert.equal(
        await atpBalance(buyer, payee),
        total,
        "withdrawPaid moved exactly the vouchers' sum to the payee",
      );
      for (const voucher of vault.held.values())
        assert.equal(
          vault.paidOnChain(voucher.channelId),
          voucher.cumulativeAmount,
          "vault told what the chain paid",
        );
      assert.deepEqual(vault.unsettled(10), []);

      const proof = receiptProof(store, operator, jobIds[3]!);
      assert.ok(proof);
      assert.equal(proof.root, outcome.root);
      assert.equal(
        await verifyReceiptInclusionOnChain(
          buyer,
          { submitter: operator, epoch: BigInt(proof.epoch) },
          receiptFromWire(proof.receipt),
          proof.proof,
        ),
        true,
      );
      const again = await parts.settler.settleNow();
      assert.equal(again.state, "already_recorded", "an epoch is settled by one transaction");
    } finally {
      await parts.sender.stop();
    }
  });

  it("a voucher with a bad signature is skipped by the batch and the others are paid", async () => {
    const store = storeNamed("forged");
    const vault = new MemoryVault();
    const payee = privateKeyToAccount(generatePrivateKey()).address;
    const good = await openFundedChannel(devnet, buyer, payee, 10_000n);
    const forgedOn = await openFundedChannel(devnet, buyer, payee, 10_000n);
    vault.hold(await heldVoucher(devnet, buyerAccount, good, 900n));
    vault.hold(await heldVoucher(devnet, privateKeyToAccount(generatePrivateKey()), forgedOn, 5_000n));
    const parts = settlementParts(devnet, store, vault, devnetPrivateKey(10));
    parts.sender.start(100);
    try {
      const outcome = await parts.settler.settleNow();
      assert.equal(outcome.state, "settled");
      assert.deepEqual([outcome.voucherCount, outcome.paidCount, outcome.total], [2, 1, 900n]);
      assert.equal(await atpBalance(buyer, payee), 900n);
      assert.equal(vault.paidOnChain(channelIdOf(forgedOn)), 0n);
    } finally {
      await parts.sender.stop();
    }
  });

  it("a settler killed between sending and mining settles once after restart; nothing is paid twice", async () => {
    const store = storeNamed("crash");
    const vault = new MemoryVault();
    const operatorKey = devnetPrivateKey(3);
    const operator = privateKeyToAccount(operatorKey).address;
    const { payee, total } = await payeeWithVouchers(vault);
    storeOwnReceipts(store, operator, 3, "crash");
    const startBlock = await buyer.publicClient.getBlockNumber();

    await setAutomine(false);
    const first = settlementParts(devnet, store, vault, operatorKey);
    first.sender.start(100);
    void first.settler.settleNow().catch(() => undefined);
    const epoch = first.settler.epochAt(Date.now());
    await eventually(() => store.settlements.txsOf(settlePurpose(epoch)).at(0));
    await first.sender.stop(); // the process dies here: journalled and broadcast, not mined

    const second = settlementParts(devnet, store, vault, operatorKey);
    second.sender.start(100);
    try {
      const resumed = second.settler.resume();
      await setAutomine(true);
      await buyer.publicClient.request({ method: "evm_mine" as never, params: [] as never });
      const [outcome] = await resumed;
      assert.equal(outcome?.state, "settled");
      assert.equal(outcome?.total, total);
      assert.equal(await atpBalance(buyer, payee), total);

      const after = await second.settler.settleNow();
      assert.ok(after.state === "already_recorded" || after.state === "nothing");
      assert.equal(await settlementsBy(operator, startBlock), 1, "exactly one settlement transaction");
      assert.equal(
        store.settlements.txsOf(settlePurpose(epoch)).length,
        1,
        "no second transaction was signed",
      );
      assert.equal(await atpBalance(buyer, payee), total, "nothing was paid twice");
    } finally {
      await setAutomine(true);
      await second.sender.stop();
    }
  });

  it("a settler process SIGKILLed between sending and mining settles once on the next start", async () => {
    const storeDir = join(dir, "killed");
    const vault = new MemoryVault();
    const operatorKey = devnetPrivateKey(9);
    const operator = privateKeyToAccount(operatorKey).address;
    const { payee, total } = await payeeWithVouchers(vault);
    const startBlock = await buyer.publicClient.getBlockNumber();
    await setAutomine(false);
    try {
      const input = {
        rpcUrl: devnet.rpcUrl,
        deployment: JSON.parse(serializeDeployment(devnet.deployment)) as unknown,
        storeDir,
        operatorKey,
        vouchers: vouchersToJson(vault.held.values()),
      };
      const child = spawn(process.execPath, [SETTLER_PROCESS], {
        env: { ...process.env, CELL_SETTLER_INPUT: JSON.stringify(input) },
        stdio: ["ignore", "pipe", "inherit"],
      });
      const exited = new Promise((resolve) => child.on("exit", resolve));
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      try {
        const hash = await eventually(
          () => /journalled (0x[0-9a-f]{64})/.exec(stdout)?.[1] as Hex | undefined,
        );
        await eventually(() => buyer.publicClient.getTransaction({ hash }).catch(() => undefined));
      } finally {
        child.kill("SIGKILL"); // sent and in the mempool, not mined
        await exited;
      }

      const store = openStore(storeDir);
      stores.push(store);
      const restarted = settlementParts(devnet, store, vault, operatorKey);
      restarted.sender.start(100);
      try {
        const resumed = restarted.settler.resume();
        await setAutomine(true);
        await buyer.publicClient.request({ method: "evm_mine" as never, params: [] as never });
        const [outcome] = await resumed;
        assert.equal(outcome?.state, "settled");
        assert.equal(outcome?.total, total);
        assert.equal(await atpBalance(buyer, payee), total, "paid exactly once");
        assert.equal(await settlementsBy(operator, startBlock), 1, "exactly one settlement transaction");
        assert.equal(store.settlements.txsOf(settlePurpose(outcome!.epoch)).length, 1);
      } finally {
        await restarted.sender.stop();
      }
    } finally {
      await setAutomine(true);
    }
  });

  it("an epoch the chain already anchored for this submitter fails with the contract's reason, sending nothing", async () => {
    const operatorKey = devnetPrivateKey(6);
    const operator = privateKeyToAccount(operatorKey).address;
    const epochSeconds = 30 * 86_400;
    const first = storeNamed("anchored-first");
    storeOwnReceipts(first, operator, 2, "first");
    const parts = settlementParts(devnet, first, new MemoryVault(), operatorKey, { epochSeconds });
    parts.sender.start(100);
    const lost = storeNamed("anchored-lost"); // the node's store was lost and started afresh
    storeOwnReceipts(lost, operator, 2, "lost");
    const afresh = settlementParts(devnet, lost, new MemoryVault(), operatorKey, { epochSeconds });
    try {
      assert.equal((await parts.settler.settleNow()).state, "settled");
      const outcome = await afresh.settler.settleNow();
      assert.equal(outcome.state, "failed");
      assert.match(outcome.detail ?? "", /EpochAlreadyAnchored/);
      assert.deepEqual(lost.settlements.txsOf(settlePurpose(outcome.epoch)), [], "no transaction was signed");
    } finally {
      await parts.sender.stop();
    }
  });

  it("a settlement stuck in the mempool is replaced with higher fees and the replacement is what mines", async () => {
    const store = storeNamed("bump");
    const vault = new MemoryVault();
    const operatorKey = devnetPrivateKey(7);
    const { payee, total } = await payeeWithVouchers(vault);
    await setAutomine(false);
    const parts = settlementParts(devnet, store, vault, operatorKey, { bumpAfterMs: 300 });
    parts.sender.start(100);
    try {
      const settled = parts.settler.settleNow();
      const epoch = parts.settler.epochAt(Date.now());
      const [first, second] = await eventually(() => {
        const attempts = store.settlements.txsOf(settlePurpose(epoch));
        return attempts.length >= 2 ? attempts : undefined;
      });
      assert.equal(second!.nonce, first!.nonce);
      assert.ok(second!.maxPriorityFeePerGas * 1000n >= first!.maxPriorityFeePerGas * 1125n);
      await setAutomine(true);
      await buyer.publicClient.request({ method: "evm_mine" as never, params: [] as never });
      const outcome = await settled;
      assert.equal(outcome.state, "settled");
      const attempts = store.settlements.txsOf(settlePurpose(epoch));
      assert.equal(attempts.filter((tx) => tx.state === "mined").length, 1);
      assert.equal(outcome.txHash, attempts.find((tx) => tx.state === "mined")!.hash);
      assert.notEqual(outcome.txHash, first!.hash, "the replacement mined, not the stuck original");
      assert.equal(await atpBalance(buyer, payee), total);
    } finally {
      await setAutomine(true);
      await parts.sender.stop();
    }
  });

  it("the node's settlement settles each epoch on its own once it ends, and stops with the node", async () => {
    const store = storeNamed("node");
    const vault = new MemoryVault();
    const operatorKey = devnetPrivateKey(8);
    const { payee, total } = await payeeWithVouchers(vault);
    const config = await loadConfig(undefined, {
      chain: { rpcUrl: devnet.rpcUrl },
      settlement: { epochSeconds: 2, pollMs: 100 },
    });
    const cleanup: (() => Promise<void> | void)[] = [];
    const ctx = { config, store, log: silentLog, operator: privateKeyToAccount(operatorKey), now: Date.now };
    const disabled = await loadConfig(undefined, { settlement: { enabled: false } });
    assert.equal(startSettlement({ ...ctx, config: disabled }, buyer, vault, []), undefined);

    const service = startSettlement(ctx, buyer, vault, cleanup);
    assert.ok(service);
    try {
      const settled = await eventually(() =>
        store.settlements.epochs().find((row) => row.state === "settled"),
      );
      assert.equal(settled.settledTotal, total);
      await eventually(async () => ((await atpBalance(buyer, payee)) === total ? true : undefined));
    } finally {
      for (const step of cleanup) await step();
    }
  });

  it("the watchtower redeems when the buyer starts a close, also for a close it missed while offline", async () => {
    const store = storeNamed("watch");
    const vault = new MemoryVault();
    const operatorKey = devnetPrivateKey(4);
    const payee = privateKeyToAccount(generatePrivateKey()).address;
    const missed = await openFundedChannel(devnet, buyer, payee, 5_000n);
    vault.hold(await heldVoucher(devnet, buyerAccount, missed, 1_500n));
    await startChannelClose(buyer, missed); // before the watchtower runs: the node was offline
    const watched = await openFundedChannel(devnet, buyer, payee, 5_000n);
    vault.hold(await heldVoucher(devnet, buyerAccount, watched, 2_500n));

    const parts = settlementParts(devnet, store, vault, operatorKey);
    parts.sender.start(100);
    parts.watchtower.start();
    try {
      await eventually(() =>
        parts.watchtower
          .outcomes()
          .find((o) => o.channelId === channelIdOf(missed) && o.state === "redeemed"),
      );
      assert.equal(await atpBalance(buyer, payee), 1_500n);

      await startChannelClose(buyer, watched);
      await eventually(() =>
        parts.watchtower
          .outcomes()
          .find((o) => o.channelId === channelIdOf(watched) && o.state === "redeemed"),
      );
      assert.equal(await atpBalance(buyer, payee), 4_000n, "both vouchers paid in full");
      assert.equal((await getChannel(buyer, channelIdOf(watched))).paid, 2_500n);
      assert.equal(vault.paidOnChain(channelIdOf(watched)), 2_500n);
    } finally {
      await parts.watchtower.stop();
      await parts.sender.stop();
    }
  });
});
