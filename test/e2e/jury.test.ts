// A drawn juror's node does its duty without help: real nodes over loopback libp2p, a real
// Hardhat chain with the JuryCourt, real SQLite stores. The buyer runs a job on the juror's node;
// two staked donors without nodes then claim a two-replica run of the same module and input, and
// the liar among them outvotes the honest one. A dispute draws the jury (the juror's node, the
// only donor outside the case), which fetches the input from the buyer, re-executes and votes.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { keccak256, parseEther, toHex } from "viem";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  CaseOutcome,
  caseIdOf,
  createReader,
  createWriter,
  devnetPrivateKey,
  disputeCase,
  drawJury,
  juryCourtAbi,
  mintAtp,
  readCase,
  readCourtParams,
  resolveDispute,
  slashOutvoted,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader } from "../../offchain/src/chain/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import {
  cellDomain,
  jobIdOf,
  jobSpecFromWire,
  receiptFromWire,
  signReceipt,
} from "../../offchain/src/protocol/index.ts";
import type { Receipt } from "../../offchain/src/protocol/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { mineBlocks } from "../support/devnet-donors.ts";
import { fundWithEth, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);

describe("a drawn juror's node", { timeout: 180_000 }, () => {
  let cluster: Cluster;
  let reader: ChainReader;
  let jurorNode: ClusterNode;
  let honestNode: ClusterNode;
  let liarNode: ClusterNode;
  let juror: CellNode;
  let buyer: CellNode;

  before(async () => {
    // One agreeing receipt may outvote (so two claimed replicas suffice) and a jury is one donor.
    cluster = await startCluster({ donorParams: { minOutvoteQuorum: 1 }, courtParams: { jurySize: 1 } });
    reader = createReader(cluster.devnet.rpcUrl, cluster.devnet.deployment);
    jurorNode = await cluster.prepare("juror", { donor: true, stakeWith: 1 });
    honestNode = await cluster.prepare("honest", { donor: false, stakeWith: 2 });
    liarNode = await cluster.prepare("liar", { donor: false, stakeWith: 3 });
    const buyerNode = await cluster.prepare("buyer", {
      donor: false,
      config: { buyer: { heartbeatMs: 400, bidTimeoutMs: 2_000 } },
    });
    // The juror's vote is a transaction from its operator key.
    await fundWithEth(cluster.devnet.rpcUrl, jurorNode.identity.operatorAddress);
    juror = await startInProcess(jurorNode);
    buyer = await startInProcess(buyerNode, juror.multiaddrs().slice(0, 1));
    await until(
      () => buyer.peers().some((peer) => peer.staked === true),
      30_000,
      "the buyer to see the staked donor",
    );
  });

  after(async () => {
    await buyer?.stop();
    await juror?.stop();
    await cluster?.close();
  });

  it("re-executes a disputed job and votes without help; the jury clears the honest donor", async () => {
    const { jobId: realJob } = await buyer.submitJob({
      module: SHA256_WASM,
      input: new TextEncoder().encode("1\nthe disputed input"),
      fuelLimit: 100_000_000n,
    });
    const done = await buyer.waitForJob(realJob, { timeoutMs: 60_000 });
    assert.equal(done.state, "completed", JSON.stringify(done.events));
    const truth = receiptFromWire(done.receipt!.message);

    // The same module and input, claimed as a two-replica job by two donors without nodes.
    const { devnet } = cluster;
    const domain = cellDomain(devnet.chainId, devnet.deployment.donorRegistry);
    const spec = { ...jobSpecFromWire(done.spec), replicas: 2, salt: keccak256(toHex("disputed")) };
    const jobId = jobIdOf(domain, spec);
    const startedAt = ((await reader.publicClient.getBlock()).timestamp + 1n) * 1000n;
    const claim = async (node: ClusterNode, outputCid: Hex) => {
      const receipt: Receipt = {
        ...truth,
        jobId,
        executor: node.identity.operatorAddress,
        outputCid,
        startedAt,
        finishedAt: startedAt + 1_000n,
      };
      return { receipt, signature: await signReceipt(node.identity.operator, domain, receipt) };
    };
    const honest = await claim(honestNode, truth.outputCid);
    const lie = await claim(liarNode, keccak256(toHex("not the output")));

    const admin = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    const caseId = caseIdOf(await slashOutvoted(admin, spec, honest, [lie]));
    await mintAtp(admin, admin.walletClient.account.address, parseEther("100"));
    await disputeCase(admin, caseId);
    const { drawDelay } = await readCourtParams(reader);
    await mineBlocks(reader, drawDelay);
    await drawJury(admin, caseId);
    const [jurorDonor] = (await readCase(reader, caseId)).jurors;
    assert.equal(
      jurorDonor,
      privateKeyToAccount(devnetPrivateKey(1)).address,
      "the juror node's donor is drawn",
    );

    let votesCast = 0;
    await until(
      () => votesCast === 1,
      90_000,
      "the juror's node to vote",
      async () => {
        votesCast = (await readCase(reader, caseId)).votesCast;
      },
    );
    const vote = await reader.publicClient.readContract({
      address: devnet.deployment.juryCourt!,
      abi: juryCourtAbi,
      functionName: "votes",
      args: [caseId, jurorDonor!],
    });
    assert.equal(vote, 1, "the juror's receipt matches the accused's, the honest result");
    await resolveDispute(admin, caseId);
    assert.equal((await readCase(reader, caseId)).outcome, CaseOutcome.AccusedCleared);
  });
});
