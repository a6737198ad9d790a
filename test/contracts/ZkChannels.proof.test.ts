// ZkChannels with the committed CI circuit's real Groth16 verifier and real proofs: batches settle
// to the root the off-chain tree computes, payees withdraw with data rebuilt from events alone,
// and every forged, altered, skipping or replayed batch is refused.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { network } from "hardhat";
import { getAddress, getContract, keccak256, maxUint256, parseEther, parseEventLogs, toHex } from "viem";
import type { Address } from "viem";
import {
  readZkEvents,
  rebuildZkState,
  signZkVoucherEip712,
  zkChannelsAbi,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader, Deployment } from "../../offchain/src/chain/index.ts";
import {
  SettlementKey,
  ZkProver,
  ZkState,
  buildBatchWitness,
  circuitArtifacts,
  packTransfers,
  proofToCalldata,
  zkVoucherMessage,
} from "../../offchain/src/zk/index.ts";
import type { QueueOp, SignedTransfer } from "../../offchain/src/zk/index.ts";
import { deployCell } from "../support/contracts/deploy.ts";
import { CHALLENGE_WINDOW, operatorAccount } from "../support/contracts/fixture.ts";

const DEPOSIT = parseEther("10");

describe("ZkChannels with proofs", async () => {
  const connection = await network.create();
  const { networkHelpers } = connection;
  const artifacts = circuitArtifacts("ci");
  const params = artifacts.params;
  const voucherKey = operatorAccount("zk-proof-voucher-key");
  const settlementKey = new SettlementKey(
    Buffer.from(keccak256(toHex("zk-proof-settlement")).slice(2), "hex"),
  );
  const { ax, ay } = settlementKey.publicKey;
  let prover: ZkProver;

  before(async () => {
    prover = await ZkProver.start(artifacts);
  });
  after(async () => {
    await prover?.terminate();
  });

  /** Real verifier, linked Poseidon libraries; leaf 0 pays `payee`, leaf 1 pays `payee2`. */
  async function zk() {
    const fx = await deployCell(connection);
    const { viem } = fx;
    const poseidonT3 = await viem.deployContract("PoseidonT3");
    const poseidonT6 = await viem.deployContract("PoseidonT6");
    const verifier = await viem.deployContract("CiSettleVerifier");
    const deployed = await viem.deployContract(
      "ZkChannels",
      [
        fx.token.address,
        verifier.address,
        params.depth,
        params.queueSlots,
        params.batchSize,
        CHALLENGE_WINDOW,
      ],
      { libraries: { PoseidonT3: poseidonT3.address, PoseidonT6: poseidonT6.address } },
    );
    const zkc = getContract({
      abi: zkChannelsAbi,
      address: deployed.address,
      client: { public: fx.publicClient, wallet: fx.reporter },
    });
    for (const wallet of [fx.buyer, fx.payee, fx.payee2, fx.reporter])
      await fx.token.write.approve([zkc.address, maxUint256], { account: wallet.account });
    for (const payee of [fx.payee, fx.payee2])
      await zkc.write.open([payee.account.address, voucherKey.address, ax, ay, DEPOSIT], {
        account: fx.buyer.account,
      });
    const deployment: Deployment = {
      chainId: fx.chainId,
      atpToken: fx.token.address,
      donorRegistry: fx.registry.address,
      paymentChannels: fx.channels.address,
      zkChannels: zkc.address,
      deployBlock: 0n,
    };
    const reader = { publicClient: fx.publicClient, deployment } as unknown as ChainReader;
    const domainTag = await zkc.read.domainTag();
    const balance = (owner: Address) => fx.token.read.balanceOf([owner]);
    return { ...fx, zkc, reader, domainTag, balance };
  }

  type Fixture = Awaited<ReturnType<typeof zk>>;

  /** The state rebuilt from events only (what any payee can do without the settler). */
  async function rebuild(fx: Fixture): Promise<{ state: ZkState; pending: QueueOp[] }> {
    return rebuildZkState(await readZkEvents(fx.reader, 0n, "latest"), params.depth, fx.domainTag);
  }

  function signed(fx: Fixture, leaf: number, cumulative: bigint): SignedTransfer {
    return {
      leaf,
      cumulative,
      signature: settlementKey.sign(zkVoucherMessage(fx.domainTag, leaf, cumulative)),
    };
  }

  /** Proves the next batch from the rebuilt state: `ops` pending operations, then `transfers`. */
  async function prove(
    fx: Fixture,
    ops: number,
    transfers: SignedTransfer[],
    options: { state?: ZkState; queue?: QueueOp[]; unchecked?: boolean } = {},
  ) {
    const rebuilt = await rebuild(fx);
    const witness = buildBatchWitness({
      state: options.state ?? rebuilt.state,
      domainTag: fx.domainTag,
      queue: options.queue ?? rebuilt.pending.slice(0, ops),
      transfers,
      params,
      unchecked: options.unchecked ?? false,
    });
    const { proof } = await prover.prove(witness.input);
    return {
      newRoot: witness.newRoot,
      opsConsumed: BigInt(ops),
      transfers: witness.publicSignals.slice(5),
      proof: proofToCalldata(proof) as unknown as readonly [
        bigint,
        bigint,
        bigint,
        bigint,
        bigint,
        bigint,
        bigint,
        bigint,
      ],
    };
  }

  type Batch = Awaited<ReturnType<typeof prove>>;

  const submit = async (fx: Fixture, batch: Batch) =>
    fx.publicClient.waitForTransactionReceipt({
      hash: await fx.zkc.write.settle([batch.newRoot, batch.opsConsumed, batch.transfers, batch.proof]),
    });

  /** Leaf data and path of `leaf` under the current root, rebuilt from events. */
  async function leafProof(fx: Fixture, leaf: number) {
    const { state } = await rebuild(fx);
    const data = state.leaves.get(leaf);
    assert.ok(data, `leaf ${leaf} is in the rebuilt tree`);
    return { data, siblings: state.tree.path(leaf).siblings, root: state.root };
  }

  it("settles a valid batch to the off-chain root; payees withdraw with data rebuilt from events", async () => {
    const fx = await networkHelpers.loadFixture(zk);
    const { zkc, payee, payee2, balance } = fx;
    const batch = await prove(fx, 2, [signed(fx, 0, 3n), signed(fx, 1, 4n)]);
    const oldRoot = await zkc.read.root();
    const receipt = await submit(fx, batch);
    const [settled] = parseEventLogs({ abi: zkChannelsAbi, eventName: "ZkBatchSettled", logs: receipt.logs });
    assert.deepEqual(settled?.args, {
      batch: 0n,
      submitter: getAddress(fx.reporter.account.address),
      oldRoot,
      newRoot: batch.newRoot,
      queueFrom: 0n,
      queueTo: 2n,
      transfers: packTransfers(
        [
          { leaf: 0, cumulative: 3n },
          { leaf: 1, cumulative: 4n },
        ],
        params.batchSize,
      ),
    });
    assert.equal(await zkc.read.root(), batch.newRoot);
    assert.equal(await zkc.read.consumed(), 2n);
    assert.equal(await zkc.read.rootConsumed([batch.newRoot]), 3n);

    for (const [leaf, owner, amount] of [
      [0, payee, 3n],
      [1, payee2, 4n],
    ] as const) {
      const { data, siblings, root } = await leafProof(fx, leaf);
      assert.deepEqual(data, {
        ax,
        ay,
        payee: getAddress(owner.account.address),
        deposit: DEPOSIT,
        paid: amount,
      });
      const before = await balance(owner.account.address);
      await zkc.write.withdraw([leaf, data, siblings, root]);
      assert.equal(await balance(owner.account.address), before + amount);
      assert.equal((await zkc.read.channelOf([leaf])).withdrawn, amount);
      await fx.viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.withdraw([leaf, data, siblings, root]),
        zkc,
        "NothingToWithdraw",
        [leaf],
      );
    }
  });

  it("refuses a tampered proof, altered public inputs, a skipped queued deposit and a replay", async () => {
    const fx = await networkHelpers.loadFixture(zk);
    const { zkc, viem } = fx;
    const batch = await prove(fx, 2, [signed(fx, 0, 3n)]);
    const refused = (changed: Partial<Batch>) =>
      viem.assertions.revertWithCustomError(submit(fx, { ...batch, ...changed }), zkc, "InvalidProof");
    const flip = (index: number) =>
      batch.proof.map((word, i) => (i === index ? word ^ 1n : word)) as unknown as Batch["proof"];
    await refused({ proof: flip(0) });
    await refused({ proof: flip(3) });
    await refused({ proof: flip(7) });
    await refused({ transfers: packTransfers([{ leaf: 0, cumulative: 4n }], params.batchSize) });
    await refused({ transfers: packTransfers([{ leaf: 1, cumulative: 3n }], params.batchSize) });
    await refused({ newRoot: batch.newRoot + 1n });
    await refused({ opsConsumed: 1n });
    // A batch that consumes the second OPEN without the first does not match the queue.
    const { state, pending } = await rebuild(fx);
    const skipping = await prove(fx, 1, [], { state, queue: [pending[1]!] });
    await viem.assertions.revertWithCustomError(submit(fx, skipping), zkc, "InvalidProof");

    await submit(fx, batch);
    await viem.assertions.revertWithCustomErrorWithArgs(submit(fx, batch), zkc, "QueueOverrun", [4n, 2n]);
    const transfersOnly = await prove(fx, 0, [signed(fx, 0, 5n)]);
    await submit(fx, transfersOnly);
    await viem.assertions.revertWithCustomError(submit(fx, transfersOnly), zkc, "InvalidProof");
    assert.equal(await zkc.read.root(), transfersOnly.newRoot);
    assert.equal(await zkc.read.batchCount(), 2n);
  });

  it("cannot prove a lower cumulative amount, an overdraft or a wrong signature", async () => {
    const fx = await networkHelpers.loadFixture(zk);
    await submit(fx, await prove(fx, 2, [signed(fx, 0, 5n)]));
    const impossible = async (transfer: SignedTransfer, reason: RegExp) => {
      const { state } = await rebuild(fx);
      const request = { state, domainTag: fx.domainTag, queue: [], transfers: [transfer], params };
      assert.throws(() => buildBatchWitness(request), reason);
      await assert.rejects(prove(fx, 0, [transfer], { unchecked: true }), /zk proof failed/);
    };
    await impossible(signed(fx, 0, 4n), /not above the 5 already paid/);
    await impossible(signed(fx, 1, DEPOSIT + 1n), /overdraft/);
    const stranger = new SettlementKey(Buffer.alloc(32, 7));
    await impossible(
      { leaf: 0, cumulative: 6n, signature: stranger.sign(zkVoucherMessage(fx.domainTag, 0, 6n)) },
      /bad signature/,
    );
    // An older root proves a lower paid amount: it can never pay more than a newer one.
    const older = await leafProof(fx, 0);
    await fx.zkc.write.withdraw([0, older.data, older.siblings, older.root]);
    await submit(fx, await prove(fx, 0, [signed(fx, 0, 7n)]));
    await fx.viem.assertions.revertWithCustomErrorWithArgs(
      fx.zkc.write.withdraw([0, older.data, older.siblings, older.root]),
      fx.zkc,
      "NothingToWithdraw",
      [0],
    );
  });

  it("refunds a closed channel's buyer exactly deposit - paid, once, after its CLOSE is proven", async () => {
    const fx = await networkHelpers.loadFixture(zk);
    const { zkc, viem, buyer, payee, balance } = fx;
    await submit(fx, await prove(fx, 2, [signed(fx, 0, 3n)]));
    const beforeClose = await leafProof(fx, 0);
    await zkc.write.startClose([0], { account: buyer.account });
    await networkHelpers.time.increase(CHALLENGE_WINDOW);
    await zkc.write.finalizeClose([0]);
    const refund = (proof: typeof beforeClose) =>
      zkc.write.refund([0, proof.data, proof.siblings, proof.root]);
    await viem.assertions.revertWithCustomErrorWithArgs(refund(beforeClose), zkc, "CloseNotSettled", [
      0,
      beforeClose.root,
    ]);
    await submit(fx, await prove(fx, 1, []));
    const closed = await leafProof(fx, 0);
    assert.equal(closed.data.deposit, 3n, "the CLOSE sets the tree's deposit to what was paid");
    const buyerBefore = await balance(buyer.account.address);
    await viem.assertions.emitWithArgs(refund(closed), zkc, "ZkRefunded", [
      0,
      getAddress(buyer.account.address),
      DEPOSIT - 3n,
    ]);
    assert.equal(await balance(buyer.account.address), buyerBefore + DEPOSIT - 3n);
    await viem.assertions.revertWithCustomErrorWithArgs(refund(closed), zkc, "AlreadyRefunded", [0]);
    // The payee still collects what it was paid: the channel paid out exactly its deposit.
    const payeeBefore = await balance(payee.account.address);
    await zkc.write.withdraw([0, closed.data, closed.siblings, closed.root]);
    assert.equal(await balance(payee.account.address), payeeBefore + 3n);
    // No proof can pay the closed channel more.
    await assert.rejects(prove(fx, 0, [signed(fx, 0, 4n)]), /overdraft/);
  });

  it("pays at most the largest cumulative amount across the signature and zk paths", async () => {
    const fx = await networkHelpers.loadFixture(zk);
    const { zkc, viem, payee, balance, chainId } = fx;
    const start = await balance(payee.account.address);
    const eip712 = (amount: bigint) =>
      signZkVoucherEip712(voucherKey, chainId, zkc.address, { leaf: 0, cumulativeAmount: amount });
    await submit(fx, await prove(fx, 2, [signed(fx, 0, 3n)]));
    await zkc.write.settleBySignature([0, 5n, await eip712(5n)]);
    const atThree = await leafProof(fx, 0);
    await viem.assertions.revertWithCustomErrorWithArgs(
      zkc.write.withdraw([0, atThree.data, atThree.siblings, atThree.root]),
      zkc,
      "NothingToWithdraw",
      [0],
    );
    await submit(fx, await prove(fx, 0, [signed(fx, 0, 8n)]));
    const atEight = await leafProof(fx, 0);
    await zkc.write.withdraw([0, atEight.data, atEight.siblings, atEight.root]);
    await viem.assertions.revertWithCustomErrorWithArgs(
      zkc.write.settleBySignature([0, 6n, await eip712(6n)]),
      zkc,
      "NothingToPay",
      [0],
    );
    assert.equal(await balance(payee.account.address), start + 8n);
    assert.equal((await zkc.read.channelOf([0])).withdrawn, 8n);
  });
});
