// Evidence gossip between real nodes over loopback libp2p, against a real Hardhat chain: a node
// that only saw the gossip verifies an equivocation itself and slashes the liar on-chain, and
// evidence that proves nothing is refused and counted against the peer that sent it.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { keccak256, parseEther, toHex } from "viem";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createApiClient, createApiServer } from "../../offchain/src/api/index.ts";
import {
  CaseStage,
  caseIdOf,
  createReader,
  createWriter,
  donorStake,
  mintAtp,
  operatorState,
  readCase,
  slashOutvoted,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader } from "../../offchain/src/chain/index.ts";
import { EVIDENCE_TOPIC } from "../../offchain/src/evidence/index.ts";
import { loadConfig, startNode } from "../../offchain/src/node/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { createMeshNode } from "../../offchain/src/p2p/index.ts";
import type { MeshNode } from "../../offchain/src/p2p/index.ts";
import {
  EVIDENCE_MAX_BYTES,
  EvidenceMessageSchema,
  cellDomain,
  jobIdOf,
  jobSpecFromWire,
  jobSpecToWire,
  receiptFromWire,
  receiptToWire,
  signReceipt,
} from "../../offchain/src/protocol/index.ts";
import type { EvidenceMessage, Receipt, Signer } from "../../offchain/src/protocol/index.ts";
import { jobSpec } from "../support/contracts/fixture.ts";
import { fundWithEth, spinModule, startCluster, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

describe("evidence gossip", { timeout: 180_000 }, () => {
  let cluster: Cluster;
  let reader: ChainReader;
  let liar: ClusterNode;
  let watcher: CellNode;
  let accuser: MeshNode;
  const verified: { kind: string; operator: Address; jobId: Hex }[] = [];
  const blamed: { peerId: string; detail: string }[] = [];

  before(async () => {
    cluster = await startCluster();
    reader = createReader(cluster.devnet.rpcUrl, cluster.devnet.deployment);
    liar = await cluster.prepare("liar", { donor: false, stakeWith: 1 });
    const watcherNode = await cluster.prepare("watcher", { donor: false });
    // The slash is a transaction from the watcher's operator key.
    await fundWithEth(cluster.devnet.rpcUrl, watcherNode.identity.operatorAddress);
    watcher = await startNode(await loadConfig(watcherNode.configFile), {
      evidenceTrust: {
        onVerifiedEvidence: (evidence) => verified.push(evidence),
        onInvalidEvidence: (peerId, detail) => blamed.push({ peerId, detail }),
      },
    });
    accuser = await createMeshNode({
      peerKeySeed: randomBytes(32),
      bootstrap: watcher.multiaddrs().slice(0, 1),
      trustedNetworks: ["127.0.0.0/8"],
      logger: pino({ level: "silent" }),
    });
    accuser.subscribe(EVIDENCE_TOPIC, EvidenceMessageSchema, () => undefined, {
      maxBytes: EVIDENCE_MAX_BYTES,
    });
  });

  after(async () => {
    await accuser?.stop();
    await watcher?.stop();
    await cluster?.close();
  });

  const domain = () => cellDomain(cluster.devnet.chainId, cluster.devnet.deployment.donorRegistry);

  async function signedReceipt(signer: Signer, outputCid: Hex) {
    const spec = { ...jobSpec(4), salt: keccak256(toHex("evidence e2e")) };
    const receipt: Receipt = {
      jobId: jobIdOf(domain(), spec),
      executor: liar.identity.operatorAddress,
      moduleCid: spec.moduleCid,
      inputCid: spec.inputCid,
      outputCid,
      fuelUsed: 42_000n,
      status: 0,
      startedAt: BigInt(Date.now()),
      finishedAt: BigInt(Date.now() + 5),
    };
    const signature = await signReceipt(signer, domain(), { ...receipt, executor: signer.address });
    return { receipt: receiptToWire(receipt), signature };
  }

  /** Gossips `evidence` from the accuser until `seen` holds (the mesh may take a moment to form). */
  async function gossipUntil(evidence: EvidenceMessage, seen: () => boolean, what: string) {
    await until(seen, 30_000, what, async () => {
      if (!seen()) await accuser.publish(EVIDENCE_TOPIC, EvidenceMessageSchema, evidence);
    });
  }

  it("refuses evidence with a forged signature and counts it against the accuser", async () => {
    const impostor = privateKeyToAccount(keccak256(toHex("not the liar's key")));
    const forged = await signedReceipt(impostor, keccak256(toHex("b")));
    const evidence: EvidenceMessage = {
      kind: "equivocation",
      a: await signedReceipt(liar.identity.operator, keccak256(toHex("a"))),
      // claims to be the liar's receipt, but the impostor signed it
      b: { receipt: forged.receipt, signature: forged.signature },
    };
    await gossipUntil(evidence, () => blamed.length > 0, "the watcher to refuse the forgery");
    assert.equal(blamed[0]?.peerId, accuser.peerId);
    assert.match(blamed[0]?.detail ?? "", /signature is not its executor/);
    assert.ok(watcher.peers().find((peer) => peer.peerId === accuser.peerId)!.penaltyScore > 0);
    assert.deepEqual(watcher.slashes().history, [], "nothing is done on a forger's word");
    assert.deepEqual(verified, []);
  });

  it("refuses outvote evidence with a wrong spec or unstaked signers, blaming the accuser each time", async () => {
    const spec = { ...jobSpec(4), salt: keccak256(toHex("evidence e2e")) };
    const strangers = [1, 2, 3].map((i) => privateKeyToAccount(keccak256(toHex(`unstaked signer ${i}`))));
    const quorumOf = async () =>
      Promise.all(
        strangers.map(async (signer) => {
          const signed = await signedReceipt(signer, keccak256(toHex("their output")));
          return { receipt: { ...signed.receipt, executor: signer.address }, signature: signed.signature };
        }),
      );
    const accused = await signedReceipt(liar.identity.operator, keccak256(toHex("the liar's output")));
    const unstaked: EvidenceMessage = {
      kind: "outvote",
      spec: jobSpecToWire(spec),
      accused,
      quorum: await quorumOf(),
    };
    const wrongSpec: EvidenceMessage = {
      ...unstaked,
      spec: jobSpecToWire({ ...spec, salt: keccak256(toHex("another job")) }),
    };
    const before = blamed.length;
    await gossipUntil(unstaked, () => blamed.length > before, "the watcher to refuse unstaked signers");
    assert.match(blamed.at(-1)?.detail ?? "", /OperatorNotActive/);
    await gossipUntil(wrongSpec, () => blamed.length > before + 1, "the watcher to refuse a wrong spec");
    assert.match(blamed.at(-1)?.detail ?? "", /spec's digest .* is not the accused receipt's job id/);
    assert.ok(blamed.slice(before).every((entry) => entry.peerId === accuser.peerId));
    assert.deepEqual(watcher.slashes().history, []);
  });

  it("slashes an equivocating donor on-chain from evidence it only saw on gossip", async () => {
    const liarDonor = (await operatorState(reader, liar.identity.operatorAddress)).donor;
    const stakeBefore = await donorStake(reader, liarDonor);
    const evidence: EvidenceMessage = {
      kind: "equivocation",
      a: await signedReceipt(liar.identity.operator, keccak256(toHex("the output"))),
      b: await signedReceipt(liar.identity.operator, keccak256(toHex("another output"))),
    };
    await gossipUntil(evidence, () => verified.length > 0, "the watcher to verify the equivocation");
    assert.equal(verified[0]?.kind, "equivocation");
    assert.equal(verified[0]?.operator, liar.identity.operatorAddress);

    await until(
      () => watcher.slashes().history.some((row) => row.state !== "pending"),
      60_000,
      "the watcher's slash to settle",
    );
    const [row] = watcher.slashes().history;
    assert.equal(row?.state, "done", JSON.stringify(row));
    assert.equal(row?.outcome, "slashed");
    assert.equal(row?.source, "gossip");
    const stakeAfter = await donorStake(reader, liarDonor);
    assert.ok(stakeAfter.bonded < stakeBefore.bonded, "the liar's bonded stake went down");
    assert.notEqual(
      (await operatorState(reader, liar.identity.operatorAddress)).jailedUntil,
      0,
      "and it is jailed",
    );

    const token = "evidence-test-token-0123456789";
    const api = await createApiServer({ node: watcher, token, port: 0 });
    try {
      const { pending, history } = await createApiClient({ url: api.url, token }).slashes();
      assert.deepEqual(pending, []);
      assert.equal((history[0] as { outcome: string }).outcome, "slashed", "GET /slashes shows the slash");
    } finally {
      await api.close();
    }
  });
});

describe("an accused donor's node", { timeout: 240_000 }, () => {
  let cluster: Cluster;
  let reader: ChainReader;
  let donorNode: ClusterNode;
  let donor: CellNode;
  let buyer: CellNode;
  const colluders: ClusterNode[] = [];

  before(async () => {
    cluster = await startCluster();
    reader = createReader(cluster.devnet.rpcUrl, cluster.devnet.deployment);
    donorNode = await cluster.prepare("accused", { donor: true, stakeWith: 1 });
    for (const account of [2, 3, 4])
      colluders.push(await cluster.prepare(`colluder-${account}`, { donor: false, stakeWith: account }));
    const buyerNode = await cluster.prepare("buyer", {
      donor: false,
      config: { buyer: { heartbeatMs: 400, bidTimeoutMs: 2_000 } },
    });
    // The dispute is a transaction from the donor's operator key, with the court's bond in ATP.
    const operator = donorNode.identity.operatorAddress;
    await fundWithEth(cluster.devnet.rpcUrl, operator);
    const admin = createWriter(cluster.devnet.rpcUrl, cluster.devnet.deployment, cluster.devnet.deployerKey);
    await mintAtp(admin, operator, parseEther("100"));
    donor = await startNode(await loadConfig(donorNode.configFile));
    buyer = await startNode(
      await loadConfig(buyerNode.configFile, { bootstrap: donor.multiaddrs().slice(0, 1) }),
    );
    await until(
      () => buyer.peers().some((peer) => peer.staked === true),
      30_000,
      "the buyer to see the donor",
    );
  });

  after(async () => {
    await buyer?.stop();
    await donor?.stop();
    await cluster?.close();
  });

  it("re-executes a job it is outvoted on by a colluding quorum and disputes the case", async () => {
    const module = await spinModule(1_000);
    const { jobId: realJob } = await buyer.submitJob({
      module,
      input: new TextEncoder().encode("x"),
      fuelLimit: 10_000_000n,
    });
    const done = await buyer.waitForJob(realJob, { timeoutMs: 60_000 });
    assert.equal(done.state, "completed", JSON.stringify(done.events));
    const truth = receiptFromWire(done.receipt!.message);

    // The same module and input as a four-replica job: the donor's true receipt, three lies.
    const domain = cellDomain(cluster.devnet.chainId, cluster.devnet.deployment.donorRegistry);
    const spec = { ...jobSpecFromWire(done.spec), replicas: 4, salt: keccak256(toHex("outvoted")) };
    const jobId = jobIdOf(domain, spec);
    const startedAt = ((await reader.publicClient.getBlock()).timestamp + 1n) * 1000n;
    const claim = async (node: ClusterNode, outputCid: Hex) => {
      const receipt = {
        ...truth,
        jobId,
        executor: node.identity.operatorAddress,
        outputCid,
        startedAt,
        finishedAt: startedAt + 1_000n,
      };
      return { receipt, signature: await signReceipt(node.identity.operator, domain, receipt) };
    };
    const accused = await claim(donorNode, truth.outputCid);
    const lies = await Promise.all(
      colluders.map((node) => claim(node, keccak256(toHex("the colluders' output")))),
    );
    const admin = createWriter(cluster.devnet.rpcUrl, cluster.devnet.deployment, cluster.devnet.deployerKey);
    const caseId = caseIdOf(await slashOutvoted(admin, spec, accused, lies));

    let stage: number = CaseStage.Open;
    await until(
      () => stage === CaseStage.Disputed,
      60_000,
      "the accused donor's node to dispute",
      async () => {
        stage = (await readCase(reader, caseId)).stage;
      },
    );
    assert.equal((await readCase(reader, caseId)).disputer, donorNode.identity.operatorAddress);
  });
});
