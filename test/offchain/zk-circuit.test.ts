import { strict as assert } from "node:assert";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as snarkjs from "snarkjs";
import {
  SettlementKey,
  ZkProver,
  ZkState,
  buildBatchWitness,
  checkArtifactHashes,
  circuitArtifacts,
  domainTagOf,
  leafHash,
  loadVerificationKey,
  nextQueueHash,
  proofToCalldata,
  releaseZkCurve,
  rootFromPath,
  unpackTransfers,
  verifyOffchain,
  zkVoucherMessage,
} from "../../offchain/src/zk/index.ts";
import type { CircuitInput, QueueOp, SignedTransfer } from "../../offchain/src/zk/index.ts";

const artifacts = circuitArtifacts("ci");
const params = artifacts.params;
const domainTag = domainTagOf(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
const buyerA = new SettlementKey(new Uint8Array(32).fill(1));
const buyerB = new SettlementKey(new Uint8Array(32).fill(2));
const payeeA = "0x00000000000000000000000000000000000000a1" as const;
const payeeB = "0x00000000000000000000000000000000000000b2" as const;

const open = (leaf: number, key: SettlementKey, payee: `0x${string}`, amount: bigint): QueueOp => ({
  kind: "open",
  leaf,
  amount,
  ax: key.publicKey.ax,
  ay: key.publicKey.ay,
  payee,
});
const topUp = (leaf: number, amount: bigint): QueueOp => ({
  kind: "topUp",
  leaf,
  amount,
  ax: 0n,
  ay: 0n,
  payee: null,
});
const pay = (key: SettlementKey, leaf: number, cumulative: bigint): SignedTransfer => ({
  leaf,
  cumulative,
  signature: key.sign(zkVoucherMessage(domainTag, leaf, cumulative)),
});

// Which of the circuit's checks refused, by the template the failed constraint is in.
const SIGNATURE_CHECK = /Error in template EdDSAPoseidonVerifier_/;
const AMOUNT_CHECK = /Error in template Num2Bits_\d+ line: \d+\nError in template TransferSlot_/;

/** Runs the circuit's witness calculation alone: it throws when a constraint fails. */
async function witnessOf(input: CircuitInput): Promise<void> {
  await snarkjs.wtns.calculate(input, artifacts.wasm, { type: "mem" });
}

describe("zk settlement circuit (ci instance)", { timeout: 120_000 }, () => {
  let prover: ZkProver;
  const vkey = loadVerificationKey(artifacts);
  // After batch 1: leaf 0 (A → payeeA) deposit 100 paid 30; leaf 1 (B → payeeB) deposit 50 paid 0.
  let afterFirst: ZkState;
  const secondQueue = [topUp(0, 50n)];
  const secondTransfers = () => [pay(buyerA, 0, 120n), pay(buyerB, 1, 40n)];

  before(async () => {
    prover = await ZkProver.start(artifacts);
    afterFirst = buildBatchWitness({
      state: new ZkState(params.depth),
      domainTag,
      queue: [open(0, buyerA, payeeA, 100n), open(1, buyerB, payeeB, 50n)],
      transfers: [pay(buyerA, 0, 30n)],
      params,
    }).stateAfter;
  });

  after(async () => {
    await prover.terminate();
    await releaseZkCurve();
  });

  it("proves a batch of opens, a top-up and two transfers; the public signals are the predicted ones", async () => {
    const first = buildBatchWitness({
      state: new ZkState(params.depth),
      domainTag,
      queue: [open(0, buyerA, payeeA, 100n), open(1, buyerB, payeeB, 50n)],
      transfers: [pay(buyerA, 0, 30n)],
      params,
    });
    const stages: string[] = [];
    const proved = await prover.prove(first.input, (stage) => stages.push(stage));
    assert.deepEqual(stages, ["witness", "prove"]);
    assert.deepEqual(proved.publicSignals, first.publicSignals);
    assert.ok(await verifyOffchain(vkey, proved.publicSignals, proved.proof));
    assert.equal(proofToCalldata(proved.proof).length, 8);

    const second = buildBatchWitness({
      state: first.stateAfter,
      domainTag,
      queue: secondQueue,
      transfers: secondTransfers(),
      params,
    });
    assert.equal(second.publicSignals[1], first.newRoot, "the second batch starts from the first one's root");
    assert.equal(second.publicSignals[3], first.newQueueHash);
    const next = await prover.prove(second.input);
    assert.deepEqual(next.publicSignals, second.publicSignals);
    assert.ok(await verifyOffchain(vkey, next.publicSignals, next.proof));

    // Every balance is what the vouchers say, and anyone can rebuild it from the published transfers.
    const leaves = second.stateAfter.leaves;
    assert.deepEqual(
      [leaves.get(0)?.deposit, leaves.get(0)?.paid, leaves.get(1)?.deposit, leaves.get(1)?.paid],
      [150n, 120n, 50n, 40n],
    );
    assert.deepEqual(unpackTransfers(second.publicSignals.slice(5)), [
      { leaf: 0, cumulative: 120n },
      { leaf: 1, cumulative: 40n },
    ]);
    const tree = second.stateAfter.tree;
    assert.equal(rootFromPath(leafHash(leaves.get(1)!), tree.path(1)), second.newRoot);
    // The state handed in is untouched: a batch that never settles leaves nothing behind.
    assert.equal(first.stateAfter.leaves.get(0)?.paid, 30n);
  });

  it("refuses a changed public input and a tampered proof", async () => {
    const batch = buildBatchWitness({
      state: afterFirst,
      domainTag,
      queue: secondQueue,
      transfers: secondTransfers(),
      params,
    });
    const { proof, publicSignals } = await prover.prove(batch.input);
    assert.ok(await verifyOffchain(vkey, publicSignals, proof));
    const higher = publicSignals.with(5, publicSignals[5]! + (1n << 30n)); // transfer 0 pays one more
    assert.equal(await verifyOffchain(vkey, higher, proof), false);
    assert.equal(await verifyOffchain(vkey, publicSignals.with(2, publicSignals[2]! + 1n), proof), false);
    assert.equal(await verifyOffchain(vkey, publicSignals.with(0, domainTag + 1n), proof), false);
    const tampered = { ...proof, pi_a: [proof.pi_c[0]!, proof.pi_c[1]!, "1"] };
    assert.equal(await verifyOffchain(vkey, publicSignals, tampered), false);
  });

  it("the prover says why it cannot prove a batch, and proves the next one", async () => {
    const forged = buildBatchWitness({
      state: afterFirst,
      domainTag,
      queue: [],
      transfers: [pay(buyerB, 0, 60n)],
      params,
      unchecked: true,
    });
    await assert.rejects(prover.prove(forged.input), /zk proof failed: .*EdDSAPoseidonVerifier/s);
    const honest = buildBatchWitness({
      state: afterFirst,
      domainTag,
      queue: [],
      transfers: [pay(buyerA, 0, 60n)],
      params,
    });
    const proved = await prover.prove(honest.input);
    assert.deepEqual(proved.publicSignals, honest.publicSignals);
    assert.ok(proved.seconds > 0);
  });

  it("a prover refuses keys that are not the ceremony's", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zk-artifacts-"));
    try {
      cpSync(dirname(artifacts.zkey), join(dir, "ci"), { recursive: true });
      const copy = circuitArtifacts("ci", dir);
      checkArtifactHashes(copy);
      writeFileSync(copy.zkey, "version https://git-lfs.github.com/spec/v1\n");
      await assert.rejects(ZkProver.start(copy), /settle\.zkey has sha256 [0-9a-f]{64}, the manifest says/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the builder names the transfer it cannot prove", () => {
    const build = (transfers: SignedTransfer[]) =>
      buildBatchWitness({ state: afterFirst, domainTag, queue: [], transfers, params });
    assert.throws(() => build([pay(buyerB, 0, 60n)]), /transfer of leaf 0 \(cumulative 60\): bad signature/);
    assert.throws(
      () => build([pay(buyerA, 0, 30n)]),
      /leaf 0 \(cumulative 30\): the cumulative amount is not above the 30/,
    );
    assert.throws(
      () => build([pay(buyerA, 0, 101n)]),
      /leaf 0 \(cumulative 101\): overdraft, the channel's deposit is 100/,
    );
    assert.throws(() => build([pay(buyerA, 5, 10n)]), /leaf 5 \(cumulative 10\): unknown leaf/);
    assert.throws(
      () => buildBatchWitness({ state: afterFirst, domainTag, queue: [topUp(7, 1n)], transfers: [], params }),
      /queued TOPUP of leaf 7 \(amount 1\): the leaf was never opened/,
    );
    assert.throws(
      () => build([pay(buyerA, 0, 40n), pay(buyerA, 0, 50n), pay(buyerA, 0, 60n)]),
      /exceed the circuit's batch size 2/,
    );
  });

  describe("the circuit itself refuses what the builder would", () => {
    const unchecked = (transfers: SignedTransfer[], queue: QueueOp[] = []) =>
      buildBatchWitness({ state: afterFirst, domainTag, queue, transfers, params, unchecked: true }).input;

    it("accepts the honest batch (the cases below differ from it in one thing)", async () => {
      await witnessOf(unchecked([pay(buyerA, 0, 60n)]));
    });

    it("a signature by another key", async () => {
      await assert.rejects(witnessOf(unchecked([pay(buyerB, 0, 60n)])), SIGNATURE_CHECK);
    });

    it("a signature over another amount", async () => {
      const forged = { ...pay(buyerA, 0, 60n), cumulative: 61n };
      await assert.rejects(witnessOf(unchecked([forged])), SIGNATURE_CHECK);
    });

    it("a lower or equal cumulative amount", async () => {
      await assert.rejects(witnessOf(unchecked([pay(buyerA, 0, 20n)])), AMOUNT_CHECK);
      await assert.rejects(witnessOf(unchecked([pay(buyerA, 0, 30n)])), AMOUNT_CHECK);
    });

    it("an overdraft of the deposit", async () => {
      await witnessOf(unchecked([pay(buyerA, 0, 100n)]));
      await assert.rejects(witnessOf(unchecked([pay(buyerA, 0, 101n)])), AMOUNT_CHECK);
    });

    it("a payment from a leaf that was never opened", async () => {
      await assert.rejects(witnessOf(unchecked([pay(buyerA, 5, 10n)])), /TransferSlot/);
      // Even with a made-up leaf whose deposit covers it, the leaf is not in the tree.
      const input = unchecked([pay(buyerA, 0, 60n)]);
      await assert.rejects(
        witnessOf({ ...input, leafDeposit: ["1000", "0"], leafPaid: ["0", "0"] }),
        /Error in template LeafUpdate_\d+/,
      );
    });

    it("a skipped queued deposit (the queue hash the contract supplies no longer matches)", async () => {
      await witnessOf(unchecked([pay(buyerA, 0, 60n)], [topUp(0, 50n)]));
      // The contract hands the proof q after the top-up; the batch leaves the top-up out.
      const skipped = unchecked([pay(buyerA, 0, 60n)]);
      await witnessOf(skipped);
      const queued = nextQueueHash(afterFirst.queueHash, topUp(0, 50n));
      await assert.rejects(
        witnessOf({ ...skipped, newQueueHash: queued.toString() }),
        /Assert Failed\. Error in template SettleBatch_/,
      );
    });

    it("an unused transfer slot that names a leaf", async () => {
      const honest = unchecked([]);
      await witnessOf(honest);
      await assert.rejects(witnessOf({ ...honest, transfers: ["1"] }), /Error in template TransferSlot_/);
    });

    it("a batch proved from another root (a replay after the root moved on)", async () => {
      const input = unchecked([pay(buyerA, 0, 60n)]);
      await assert.rejects(witnessOf({ ...input, oldRoot: "1" }), /Error in template LeafUpdate_\d+/);
    });

    it("a transfer to a leaf index beyond the tree", async () => {
      const input = unchecked([pay(buyerA, 0, 60n)]);
      const beyond = (BigInt((input.transfers as string[])[0]!) + 16n).toString(); // leaf 16 in a depth-4 tree
      await assert.rejects(witnessOf({ ...input, transfers: [beyond] }), /Error in template TransferSlot_/);
    });
  });
});
