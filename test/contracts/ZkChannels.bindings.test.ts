// The zk chain bindings (offchain/src/chain/zk.ts) against a real `hardhat node` whose ZkChannels
// was deployed by deployCell: linked Poseidon libraries, the committed CI verifier, a real proof.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { keccak256, parseEther, recoverAddress, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  ZK_CI_PARAMS,
  atpBalance,
  createReader,
  createWriter,
  devnetPrivateKey,
  finalizeZkChannelClose,
  linkBytecode,
  mintAtp,
  openZkChannel,
  openZkChannelWithPermit,
  parseDeployment,
  readDeployment,
  readZkEvents,
  readZkParams,
  readZkQueue,
  rebuildZkState,
  refundZk,
  serializeDeployment,
  settleZkBatch,
  settleZkBySignature,
  signZkVoucherEip712,
  startDevnet,
  startZkChannelClose,
  topUpZkChannel,
  withdrawZk,
  zkChannelOf,
  zkChannelsAbi,
  zkVoucherDigestOf,
} from "../../offchain/src/chain/index.ts";
import type { Devnet, ZkEvent, ZkProofWords } from "../../offchain/src/chain/index.ts";
import { zkChannelsLinkReferences } from "../../offchain/src/chain/bytecode.ts";
import {
  SettlementKey,
  StateTree,
  ZkProver,
  ZkState,
  buildBatchWitness,
  circuitArtifacts,
  domainTagOf,
  packTransfers,
  proofToCalldata,
  zkVoucherMessage,
} from "../../offchain/src/zk/index.ts";
import type { QueueOp } from "../../offchain/src/zk/index.ts";

const artifactOf = (source: string, name: string) =>
  JSON.parse(readFileSync(new URL(`../../artifacts/${source}/${name}.json`, import.meta.url), "utf8")) as {
    abi: unknown[];
    linkReferences: Record<string, Record<string, { start: number }[]>>;
  };

describe("committed zk ABIs and link offsets", () => {
  it("equal the compiled artifacts (run scripts/gen-abis.ts after changing a contract)", () => {
    const artifact = artifactOf("contracts/ZkChannels.sol", "ZkChannels");
    assert.deepEqual(zkChannelsAbi, artifact.abi);
    const offsets = Object.fromEntries(
      Object.values(artifact.linkReferences).flatMap((libraries) =>
        Object.entries(libraries).map(([library, refs]) => [library, refs.map((ref) => ref.start)]),
      ),
    );
    assert.deepEqual(zkChannelsLinkReferences, offsets);
    assert.deepEqual(Object.keys(offsets).sort(), ["PoseidonT3", "PoseidonT6"]);
  });
});

describe("rebuildZkState", () => {
  const payee = "0x00000000000000000000000000000000000000a1";
  const open: QueueOp = { kind: "open", leaf: 0, amount: 10n, ax: 1n, ay: 2n, payee };
  const topUp: QueueOp = { kind: "topUp", leaf: 0, amount: 5n, ax: 0n, ay: 0n, payee: null };
  const where = { blockNumber: 1n, logIndex: 0 };
  const queued = (position: bigint, op: QueueOp): ZkEvent => ({
    type: "queued",
    position,
    op,
    queueHash: 0n,
    ...where,
  });
  const expected = new ZkState(2);
  expected.applyQueueOp(open);
  expected.applyTransfer(0n, { leaf: 0, cumulative: 4n, signature: { r8x: 0n, r8y: 0n, s: 0n } }, true);
  const batch = (newRoot: bigint, queueFrom = 0n): ZkEvent => ({
    type: "batch",
    batch: 0n,
    submitter: payee,
    oldRoot: 0n,
    newRoot,
    queueFrom,
    queueTo: queueFrom + 1n,
    transfers: packTransfers([{ leaf: 0, cumulative: 4n }], 2),
    ...where,
  });

  it("applies each batch's queue range then its transfers, and keeps what is still queued", () => {
    const { state, pending } = rebuildZkState(
      [queued(0n, open), queued(1n, topUp), batch(expected.root)],
      2,
      0n,
    );
    assert.equal(state.root, expected.root);
    assert.deepEqual(state.leaves.get(0), { ax: 1n, ay: 2n, payee, deposit: 10n, paid: 4n });
    assert.deepEqual(pending, [topUp]);
  });

  it("refuses a skipped queue position, a batch out of queue order and a root the events do not rebuild", () => {
    assert.throws(() => rebuildZkState([queued(1n, open)], 2, 0n), /position 1 arrived where 0 was expected/);
    assert.throws(() => rebuildZkState([queued(0n, open), batch(expected.root, 1n)], 2, 0n), /out of order/);
    assert.throws(
      () => rebuildZkState([queued(0n, open), batch(expected.root + 1n)], 2, 0n),
      /the events rebuild/,
    );
  });
});

describe("linkBytecode", () => {
  it("writes each library's address at its offsets and refuses a missing one", () => {
    const placeholder = `__$${"ab".repeat(17)}$__`;
    const bytecode = `0x60${placeholder}61${placeholder}` as const;
    const library = "0x00000000000000000000000000000000000000AA";
    const linked = linkBytecode(bytecode, { Lib: [1, 22] }, { Lib: library });
    assert.equal(linked, `0x60${"0".repeat(38)}aa61${"0".repeat(38)}aa`);
    assert.throws(() => linkBytecode(bytecode, { Lib: [1, 22] }, {}), /no address given for library Lib/);
    assert.throws(
      () => linkBytecode(bytecode, { Lib: [1] }, { Lib: library }),
      /unlinked library placeholder/,
    );
  });
});

describe("deployments with ZkChannels", () => {
  it("round-trip the optional zkChannels address and name a bad one", () => {
    const deployment = {
      chainId: 84532,
      atpToken: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
      donorRegistry: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
      paymentChannels: "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
      zkChannels: "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
      deployBlock: 7n,
    } as const;
    const json = JSON.parse(serializeDeployment(deployment)) as Record<string, unknown>;
    assert.deepEqual(parseDeployment(json), deployment);
    const { zkChannels: _omitted, ...older } = json;
    assert.equal(parseDeployment(older).zkChannels, undefined);
    assert.throws(() => parseDeployment({ ...json, zkChannels: "0x12" }), /zkChannels is not an address/);
  });
});

describe("zk bindings on a devnet", () => {
  let devnet: Devnet;
  let prover: ZkProver;
  const deploymentsDir = mkdtempSync(join(tmpdir(), "cell-zk-devnet-"));
  before(async () => {
    [devnet, prover] = await Promise.all([
      startDevnet({ deploymentsDir }),
      ZkProver.start(circuitArtifacts("ci")),
    ]);
  });
  after(async () => {
    await prover?.terminate();
    await devnet?.stop();
    rmSync(deploymentsDir, { recursive: true, force: true });
  });

  it("deploys ZkChannels with the CI circuit's parameters and records it", async () => {
    const reader = createReader(devnet.rpcUrl, devnet.deployment);
    assert.notEqual(devnet.deployment.zkChannels, undefined);
    assert.deepEqual(readDeployment(devnet.chainId, deploymentsDir), devnet.deployment);
    const manifest = JSON.parse(
      readFileSync(new URL("../../circuits/build/ci/manifest.json", import.meta.url), "utf8"),
    ) as { params: { depth: number; queueSlots: number; batchSize: number } };
    const { params } = manifest;
    assert.deepEqual(ZK_CI_PARAMS, {
      depth: params.depth,
      queueSlots: params.queueSlots,
      batchSize: params.batchSize,
    });
    const onChain = await readZkParams(reader);
    assert.deepEqual(onChain, {
      ...ZK_CI_PARAMS,
      domainTag: domainTagOf(devnet.chainId, devnet.deployment.zkChannels!),
    });
    assert.deepEqual(await readZkQueue(reader), {
      root: new StateTree(ZK_CI_PARAMS.depth).root,
      queueLength: 0n,
      consumed: 0n,
    });
  });

  it("opens, tops up, settles a proven batch, withdraws, pays a signed voucher and refunds", async () => {
    const { rpcUrl, deployment, chainId } = devnet;
    const zkChannels = deployment.zkChannels!;
    const admin = createWriter(rpcUrl, deployment, devnet.deployerKey);
    const reader = createReader(rpcUrl, deployment);
    const buyer = createWriter(rpcUrl, deployment, devnetPrivateKey(5));
    const payee = privateKeyToAccount(devnetPrivateKey(6)).address;
    const voucherKey = privateKeyToAccount(keccak256(toHex("zk-bindings-voucher")));
    const settlementKey = new SettlementKey(Buffer.from(keccak256(toHex("zk-bindings")).slice(2), "hex"));
    const domainTag = domainTagOf(chainId, zkChannels);
    await mintAtp(admin, buyer.walletClient.account.address, parseEther("100"));

    const request = {
      payee,
      signer: voucherKey.address,
      key: settlementKey.publicKey,
      amount: parseEther("10"),
    };
    const { leaf } = await openZkChannel(buyer, request);
    const latest = await buyer.publicClient.getBlock();
    const second = await openZkChannelWithPermit(buyer, { ...request, nowSeconds: latest.timestamp });
    assert.deepEqual([leaf, second.leaf], [0, 1]);
    await topUpZkChannel(buyer, leaf, parseEther("1"));
    const channel = await zkChannelOf(reader, leaf);
    assert.equal(channel.deposited, parseEther("11"));
    assert.equal(channel.payee, payee);

    const events = await readZkEvents(reader, deployment.deployBlock, "latest");
    const queued = events.flatMap((event) => (event.type === "queued" ? [event.op] : []));
    assert.deepEqual(
      queued.map((op: QueueOp) => [op.kind, op.leaf, op.amount]),
      [
        ["open", 0, parseEther("10")],
        ["open", 1, parseEther("10")],
        ["topUp", 0, parseEther("1")],
      ],
    );

    // One proof: both OPENs, then a payment of 2 ATP on leaf 0.
    const params = prover.artifacts.params;
    const cumulative = parseEther("2");
    const witness = buildBatchWitness({
      state: new ZkState(params.depth),
      domainTag,
      queue: queued.slice(0, 2),
      transfers: [
        { leaf, cumulative, signature: settlementKey.sign(zkVoucherMessage(domainTag, leaf, cumulative)) },
      ],
      params,
    });
    const { proof } = await prover.prove(witness.input);
    await settleZkBatch(admin, {
      newRoot: witness.newRoot,
      opsConsumed: 2n,
      transfers: witness.publicSignals.slice(5),
      proof: proofToCalldata(proof) as unknown as ZkProofWords,
    });
    assert.deepEqual(await readZkQueue(reader), { root: witness.newRoot, queueLength: 3n, consumed: 2n });
    const batches = (await readZkEvents(reader, deployment.deployBlock, "latest")).filter(
      (event) => event.type === "batch",
    );
    assert.equal(batches.length, 1);
    assert.equal(batches[0]?.type === "batch" && batches[0].newRoot, witness.newRoot);

    const state = witness.stateAfter;
    const before = await atpBalance(reader, payee);
    await withdrawZk(admin, leaf, state.leaves.get(leaf)!, state.tree.path(leaf).siblings, state.root);
    assert.equal(await atpBalance(reader, payee), before + cumulative);

    const voucher = { leaf, cumulativeAmount: parseEther("3") };
    const signature = await signZkVoucherEip712(voucherKey, chainId, zkChannels, voucher);
    const digest = await reader.publicClient.readContract({
      address: zkChannels,
      abi: zkChannelsAbi,
      functionName: "zkVoucherDigest",
      args: [leaf, voucher.cumulativeAmount],
    });
    assert.equal(digest, zkVoucherDigestOf(chainId, zkChannels, voucher));
    assert.equal(await recoverAddress({ hash: digest, signature }), voucherKey.address);
    await settleZkBySignature(admin, voucher, signature);
    assert.equal(await atpBalance(reader, payee), before + parseEther("3"));

    await startZkChannelClose(buyer, second.leaf);
    await buyer.publicClient.request({ method: "evm_increaseTime" as never, params: [120] as never });
    await finalizeZkChannelClose(admin, second.leaf);
    assert.equal((await zkChannelOf(reader, second.leaf)).closeQueuedAt, 4n);
    // The next proof consumes the TOPUP and the CLOSE; then the buyer gets leaf 1's whole deposit back.
    const closing = buildBatchWitness({
      state,
      domainTag,
      queue: [queued[2]!, { kind: "close", leaf: second.leaf, amount: 0n, ax: 0n, ay: 0n, payee: null }],
      transfers: [],
      params,
    });
    const closingProof = await prover.prove(closing.input);
    await settleZkBatch(admin, {
      newRoot: closing.newRoot,
      opsConsumed: 2n,
      transfers: closing.publicSignals.slice(5),
      proof: proofToCalldata(closingProof.proof) as unknown as ZkProofWords,
    });
    const after = closing.stateAfter;
    const buyerBefore = await atpBalance(reader, buyer.walletClient.account.address);
    await refundZk(
      admin,
      second.leaf,
      after.leaves.get(second.leaf)!,
      after.tree.path(second.leaf).siblings,
      after.root,
    );
    assert.equal(
      await atpBalance(reader, buyer.walletClient.account.address),
      buyerBefore + parseEther("10"),
    );
    assert.equal((await zkChannelOf(reader, second.leaf)).refunded, true);
    await assert.rejects(zkChannelOf(reader, 9), /UnknownLeaf|revert/);
  });
});
