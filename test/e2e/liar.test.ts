// Lying donors against the whole system: a buyer, three honest donors, a donor whose
// executor makes up outputs and a free rider that answers at once without running anything,
// an observer node, real libp2p over loopback, real SQLite and a real Hardhat chain. Each
// liar is outvoted by a quorum of four replicas, quarantined by the buyer at the verdict and
// by the observer from the gossiped evidence, and slashed on-chain once the court's dispute
// window has passed; a third liar is caught by a spot check; a restarted buyer still holds
// the quarantines and the slashes.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { Address } from "viem";
import {
  atpBalance,
  createReader,
  donorParams,
  donorStake,
  registrationOfOperator,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader } from "../../offchain/src/chain/index.ts";
import type { CellNode, JobView } from "../../offchain/src/node/index.ts";
import { cidOf } from "../../offchain/src/protocol/index.ts";
import type { Runtime } from "../../offchain/src/runtime/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { lyingRuntime } from "../support/lying-runtime.ts";
import { fundWithEth, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const input = (text: string) => new TextEncoder().encode(`1\n${text}`);

/** Honest, 300 ms late: the liars' receipts are in before the honest quorum forms. */
const slow = (runtime: Pick<Runtime, "execute">): Pick<Runtime, "execute"> => ({
  execute: async (job, options) => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return runtime.execute(job, options);
  },
});

/** Answers at once with a made-up output, running nothing. */
const freeRider = (): Pick<Runtime, "execute"> => ({
  execute: async () => {
    const output = new TextEncoder().encode("trust me\n");
    return {
      kind: "result",
      status: "ok",
      fuelUsed: 1_000n,
      output,
      outputCid: (await cidOf(output)).toString(),
      stderr: new Uint8Array(),
    };
  },
});

describe("lying donors: outvoted, quarantined and slashed", { timeout: 360_000 }, () => {
  let cluster: Cluster;
  let reader: ChainReader;
  let prepared: ClusterNode[];
  let buyerNode: ClusterNode;
  let bootstrap: string[];
  const donors: CellNode[] = [];
  let observer: CellNode;
  let buyer: CellNode;
  const liar = () => prepared[3]!.identity.operatorAddress;
  const rider = () => prepared[4]!.identity.operatorAddress;
  const spotLiar = () => prepared[5]!.identity.operatorAddress;

  before(async () => {
    cluster = await startCluster();
    reader = createReader(cluster.devnet.rpcUrl, cluster.devnet.deployment);
    prepared = await Promise.all(
      [1, 2, 3, 4, 5, 6].map((i) =>
        cluster.prepare(`donor${i}`, {
          donor: true,
          stakeWith: i,
          // The liars (4 to 6) would dispute their cases with their own lying runtime, from
          // operator keys that hold no ETH; they let the dispute windows pass.
          config: { runtime: { poolSize: 1 }, slashing: { autoDispute: i <= 3 } },
        }),
      ),
    );
    buyerNode = await cluster.prepare("buyer", { donor: false });
    const observerNode = await cluster.prepare("observer", { donor: false });
    // The buyer's operator key sends the outvote claims and their finalization.
    await fundWithEth(cluster.devnet.rpcUrl, buyerNode.identity.operatorAddress);
    const first = await startInProcess(prepared[0]!, [], { wrapRuntime: slow });
    bootstrap = first.multiaddrs().slice(0, 1);
    donors.push(
      first,
      ...(await Promise.all(
        prepared.slice(1, 3).map((node) => startInProcess(node, bootstrap, { wrapRuntime: slow })),
      )),
      await startInProcess(prepared[3]!, bootstrap, {
        wrapRuntime: (runtime) => lyingRuntime(runtime, () => true),
      }),
    );
    observer = await startInProcess(observerNode, bootstrap);
    buyer = await startInProcess(buyerNode, bootstrap);
    await until(() => stakedDonors(buyer) === 4, 60_000, "the buyer to see 4 staked donors");
  });

  after(async () => {
    await buyer?.stop();
    await observer?.stop();
    await Promise.all(donors.map((donor) => donor.stop()));
    await cluster?.close();
  });

  it("outvotes a lying donor among four replicas; the buyer quarantines it at the verdict and an observer from the evidence", async () => {
    const job = await runJob("the liar's job");
    assert.deepEqual(dissenters(job), [liar()]);
    assert.notEqual(Buffer.from(job.result!.outputBase64, "base64").toString().at(-1), "!");
    await quarantinedBy(buyer, liar());
    assert.match(trustOf(buyer, liar())?.reason ?? "", new RegExp(job.jobId));
    for (const honest of prepared.slice(0, 3))
      assert.notEqual(trustOf(buyer, honest.identity.operatorAddress)?.status, "quarantined");
    // The observer ran no job: it acts on the gossiped evidence, which it checked itself.
    await until(
      () => trustOf(observer, liar())?.status === "quarantined",
      30_000,
      "the observer to quarantine the liar from the evidence",
    );
  });

  it("outvotes a free rider that answers at once with a made-up output", async () => {
    donors.push(await startInProcess(prepared[4]!, bootstrap, { wrapRuntime: freeRider }));
    await until(() => stakedDonors(buyer) === 5, 60_000, "the buyer to see the free rider");
    const job = await runJob("the free rider's job");
    assert.deepEqual(dissenters(job), [rider()], "the quarantined liar was not asked again");
    await quarantinedBy(buyer, rider());
  });

  it("catches a liar in spot mode at p = 1 whenever it runs, escalating to a quorum of four", async () => {
    donors.push(
      await startInProcess(prepared[5]!, bootstrap, {
        wrapRuntime: (runtime) => lyingRuntime(runtime, () => true),
      }),
    );
    await until(() => stakedDonors(buyer) === 6, 60_000, "the buyer to see the third liar");
    // The buyer picks the spot replica and its checker at random among the four donors it
    // still asks: run spot jobs until the liar had one.
    for (let i = 0; i < 20; i++) {
      const { jobId } = await buyer.submitJob({
        module: SHA256_WASM,
        input: input(`spot ${i}`),
        verification: "spot",
        spotRate: 1,
      });
      const job = await buyer.waitForJob(jobId, { timeoutMs: 60_000 });
      assert.equal(job.state, "completed", JSON.stringify(job.events));
      if (!job.replicas?.some((replica) => replica.operator === spotLiar())) {
        assert.deepEqual(dissenters(job), []);
        continue;
      }
      assert.deepEqual(dissenters(job), [spotLiar()]);
      assert.equal(job.verdict?.quorum, 3, "the disagreement escalated to four replicas");
      await quarantinedBy(buyer, spotLiar());
      return;
    }
    assert.fail("the liar ran none of 20 spot jobs");
  });

  it("slashes the three liars on-chain once the dispute window has passed, paying the treasury and no one else", async () => {
    const claims = () => buyer.slashes().history.filter((row) => row.kind === "outvote");
    await until(
      () => claims().filter((row) => row.caseId !== null).length === 3,
      60_000,
      "the three outvote cases to be opened",
    );
    const wallets = await Promise.all(
      prepared.map(
        async (node) => (await registrationOfOperator(reader, node.identity.operatorAddress))!.donor,
      ),
    );
    const { treasury } = await donorParams(reader);
    const stakes = async () =>
      Promise.all(wallets.map(async (wallet) => (await donorStake(reader, wallet)).bonded));
    const before = await stakes();
    const treasuryBefore = await atpBalance(reader, treasury);
    const reporterBefore = await atpBalance(reader, buyerNode.identity.operatorAddress);
    assert.ok(
      claims().every((row) => row.state === "pending"),
      "nothing is slashed inside the dispute window",
    );

    await until(
      () => claims().every((row) => row.state === "done"),
      150_000,
      "the cases to be finalized after the dispute window",
    );
    assert.deepEqual(
      claims().map((row) => row.outcome),
      ["slashed", "slashed", "slashed"],
    );
    const afterStakes = await stakes();
    const lost = before.map((bonded, i) => bonded - afterStakes[i]!);
    assert.deepEqual(lost.slice(0, 3), [0n, 0n, 0n], "honest donors keep their stake");
    assert.ok(
      lost.slice(3).every((amount) => amount > 0n),
      "every liar lost stake",
    );
    assert.equal(await atpBalance(reader, treasury), treasuryBefore + lost[3]! + lost[4]! + lost[5]!);
    assert.equal(
      await atpBalance(reader, buyerNode.identity.operatorAddress),
      reporterBefore,
      "an outvote pays its reporter nothing",
    );
  });

  it("keeps the quarantines and the slashes across a restart of the buyer", async () => {
    await buyer.stop();
    buyer = await startInProcess(buyerNode, bootstrap);
    assert.equal(trustOf(buyer, liar())?.status, "quarantined");
    assert.equal(trustOf(buyer, rider())?.status, "quarantined");
    assert.equal(trustOf(buyer, spotLiar())?.status, "quarantined");
    assert.deepEqual(
      buyer
        .slashes()
        .history.filter((row) => row.kind === "outvote")
        .map((row) => [row.operator.toLowerCase(), row.outcome])
        .sort(),
      [liar(), rider(), spotLiar()].map((operator) => [operator.toLowerCase(), "slashed"]).sort(),
    );
  });

  async function runJob(text: string): Promise<JobView> {
    const { jobId } = await buyer.submitJob({ module: SHA256_WASM, input: input(text), replicas: 4 });
    const job = await buyer.waitForJob(jobId, { timeoutMs: 60_000 });
    assert.equal(job.state, "completed", JSON.stringify(job.events));
    return job;
  }
});

function stakedDonors(node: CellNode): number {
  return node.peers().filter((peer) => peer.staked === true).length;
}

function dissenters(job: JobView): Address[] {
  return (job.verdict?.dissenters ?? []).map((dissenter) => dissenter.operator);
}

/** Waits (briefly: the buyer quarantines at the verdict) until `node` holds `operator` quarantined. */
async function quarantinedBy(node: CellNode, operator: Address): Promise<void> {
  await until(
    () => trustOf(node, operator)?.status === "quarantined",
    2_000,
    `${operator} to be quarantined`,
  );
}

/** The node's trust state of `operator`, whether or not its donor is connected and has advertised yet. */
function trustOf(node: CellNode, operator: Address) {
  const wanted = operator.toLowerCase();
  return node.peers().find((peer) => (peer.operator ?? peer.trust?.operator)?.toLowerCase() === wanted)
    ?.trust;
}
