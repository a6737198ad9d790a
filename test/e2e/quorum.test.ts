// Replicated jobs on real nodes: a Hardhat devnet, libp2p over loopback and SQLite stores.
// Four staked donors and a buyer run in this process; each donor's executor is the real
// runtime behind a wrapper the test switches to lie (a made-up output) or to stall on a
// long run, the way a faulty donor would behave. The shipped config has no such switch.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { Address } from "viem";
import type { CellNode, JobView } from "../../offchain/src/node/index.ts";
import { cidOf } from "../../offchain/src/protocol/index.ts";
import type { EquivocationSighting, VerdictReport } from "../../offchain/src/quorum/index.ts";
import type { ExecutionResult, Job, NoResult, Runtime } from "../../offchain/src/runtime/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { spinModule, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const DONORS = 4;
/** About 3 ns an iteration: a run of several seconds, unless it is stopped. */
const LONG_SPIN = 3_000_000_000;

/** `slow`: honest, 300 ms late, so a liar's receipt is in before the honest quorum forms. */
type Behaviour = "honest" | "slow" | "lie" | "stall";

/** A donor's executor: the real runtime, made to lie or stall when the test says so. */
class SwitchableExecutor implements Pick<Runtime, "execute"> {
  behaviour: Behaviour = "honest";
  /** Stalled runs: when each was stopped and when its worker answered. */
  readonly stalls: { abortedAt?: number; endedAt?: number; result?: NoResult | ExecutionResult }[] = [];
  readonly #runtime: Runtime;
  readonly #spin: Uint8Array;

  constructor(runtime: Runtime, spin: Uint8Array) {
    this.#runtime = runtime;
    this.#spin = spin;
  }

  async execute(job: Job, options: { signal?: AbortSignal } = {}): Promise<ExecutionResult | NoResult> {
    if (this.behaviour === "stall") return this.#stall(job, options.signal);
    if (this.behaviour === "slow") await new Promise((resolve) => setTimeout(resolve, 300));
    const result = await this.#runtime.execute(job, options);
    if (this.behaviour !== "lie" || result.kind !== "result") return result;
    // Every liar makes up the same output, as colluding donors would.
    const output = new TextEncoder().encode("made up\n");
    return { ...result, output, outputCid: (await cidOf(output)).toString() };
  }

  async #stall(job: Job, signal: AbortSignal | undefined): Promise<ExecutionResult | NoResult> {
    const stall: (typeof this.stalls)[number] = {};
    this.stalls.push(stall);
    signal?.addEventListener("abort", () => (stall.abortedAt = Date.now()), { once: true });
    const result = await this.#runtime.execute(
      { ...job, module: this.#spin, fuelLimit: 100_000_000_000n, timeoutMs: 60_000 },
      { signal },
    );
    stall.endedAt = Date.now();
    stall.result = result;
    return result;
  }
}

describe("replicated jobs: verdicts, cancels and spot checks on real nodes", { timeout: 300_000 }, () => {
  let cluster: Cluster;
  let donorNodes: ClusterNode[];
  const executors: SwitchableExecutor[] = [];
  let donors: CellNode[] = [];
  let buyer: CellNode;
  const verdicts: VerdictReport[] = [];
  const sightings: EquivocationSighting[] = [];

  before(async () => {
    cluster = await startCluster();
    const spin = await spinModule(LONG_SPIN);
    donorNodes = await Promise.all(
      Array.from({ length: DONORS }, (_, i) =>
        cluster.prepare(`donor${i + 1}`, {
          donor: true,
          stakeWith: i + 1,
          config: { donor: { slots: 2 }, runtime: { poolSize: 1 } },
        }),
      ),
    );
    const buyerNode = await cluster.prepare("buyer", {
      donor: false,
      // An outvoted donor's quarantine lasts 1 ms here and never ends in a ban, so every test
      // can pick its liars again (quarantine has tests of its own: trust-*.test.ts, liar.test.ts).
      config: {
        buyer: { heartbeatMs: 400, bidTimeoutMs: 1_000, maxAttempts: 2 },
        trust: { quarantineMs: [1], banAtStrike: 100 },
      },
    });
    // Each donor's executor wraps the donor's own runtime.
    const switchable = (i: number) => ({
      wrapRuntime: (runtime: Runtime) => (executors[i] = new SwitchableExecutor(runtime, spin)),
    });
    const first = await startInProcess(donorNodes[0]!, [], switchable(0));
    const bootstrap = first.multiaddrs().slice(0, 1);
    donors = [
      first,
      ...(await Promise.all(
        donorNodes.slice(1).map((node, i) => startInProcess(node, bootstrap, switchable(i + 1))),
      )),
    ];
    buyer = await startInProcess(buyerNode, bootstrap, {
      verdictListener: {
        onVerdict: (report) => verdicts.push(report),
        onEquivocation: (sighting) => sightings.push(sighting),
      },
    });
    await until(
      () => buyer.peers().filter((peer) => peer.staked).length === DONORS,
      30_000,
      "the buyer to see all staked donors",
    );
  });

  after(async () => {
    await buyer?.stop();
    await Promise.all(donors.map((donor) => donor.stop()));
    await cluster?.close();
  });

  const behave = (...behaviours: Behaviour[]) =>
    executors.forEach((executor, i) => (executor.behaviour = behaviours[i] ?? "honest"));
  const operatorOf = (i: number): Address => donorNodes[i]!.identity.operatorAddress;
  const submit = async (
    input: string,
    fields: { replicas?: number; verification?: "spot"; spotRate?: number },
  ) => {
    const { jobId } = await buyer.submitJob({
      module: SHA256_WASM,
      input: new TextEncoder().encode(`1\n${input}`),
      fuelLimit: 100_000_000n,
      ...fields,
    });
    return buyer.waitForJob(jobId, { timeoutMs: 60_000 });
  };
  const reportOf = (job: JobView) => verdicts.find((report) => report.jobId === job.jobId);

  it("n = 4 with one liar: the right result is accepted and the liar is the one dissenter", async () => {
    behave("lie", "slow", "slow", "slow");
    const job = await submit("one liar", { replicas: 4 });
    assert.equal(job.state, "completed", JSON.stringify(job.events));
    const report = reportOf(job);
    assert.ok(report, "the verdict went to the listener");
    assert.equal(report.outcome, "accepted");
    assert.equal(report.quorum, 3);
    assert.deepEqual(
      report.dissenting.map((vote) => vote.operator),
      [operatorOf(0)],
    );
    assert.ok(report.agreeing.length >= 3);
    assert.ok(!report.agreeing.some((vote) => vote.operator === operatorOf(0)));
    assert.notEqual(Buffer.from(job.result!.outputBase64, "base64").toString(), "made up\n");
    assert.deepEqual(
      job.verdict?.dissenters.map((dissenter) => dissenter.operator),
      [operatorOf(0)],
    );
    assert.equal(
      job.replicas?.filter((replica) => replica.state === "voted").length,
      report.agreeing.length + 1,
    );
  });

  it("n = 4 with two colluding liars: nothing is accepted, a replica is added, and the job fails no_quorum with the tally", async () => {
    behave("lie", "lie");
    const job = await submit("two liars", { replicas: 4 });
    assert.equal(job.state, "failed", JSON.stringify(job.events));
    assert.equal(job.reason, "no_quorum");
    assert.equal(job.result, undefined, "never a result without a quorum");
    assert.ok(job.events.some((event) => event.type === "replicas_added"));
    assert.deepEqual(
      job.verdict?.tally.map((entry) => entry.votes),
      [2, 2],
    );
    const report = reportOf(job);
    assert.equal(report?.outcome, "no_quorum");
    assert.equal(report?.dissenting.length, 4);
  });

  it("cancels a replica still running after the verdict: its worker stops and its slot frees", async () => {
    behave("honest", "honest", "honest", "stall");
    const stalled = donors[3]!;
    const job = await submit("a stalled replica", { replicas: 4 });
    assert.equal(job.state, "completed", JSON.stringify(job.events));
    const stall = executors[3]!.stalls.at(-1);
    assert.ok(stall, "the stalling donor had the job");
    await until(() => stall.endedAt !== undefined, 10_000, "the stalled run to end");
    assert.ok(stall.abortedAt !== undefined, "the run was aborted by the buyer's cancel");
    assert.equal(stall.result?.kind, "no_result");
    assert.ok(
      stall.endedAt! - stall.abortedAt! < 2_000,
      `the worker stopped ${stall.endedAt! - stall.abortedAt!} ms after the cancel`,
    );
    await until(() => stalled.stats().donor.busySlots === 0, 5_000, "the stalled donor's slot to free");
    assert.equal(stalled.stats().donor.cancelled, 1);
    // the buyer counts the cancel once the donor's answer arrives, which may come after the slot frees
    await until(
      () => buyer.stats().buyer.cancelsStopped >= 1,
      5_000,
      "the buyer to hear the cancel stopped the run",
    );
    assert.equal(
      reportOf(job)?.silent.some((silent) => silent.why === "cancelled"),
      true,
    );
  });

  it("spot mode at p = 0 runs one replica; at p = 1 a second donor checks, and a liar is outvoted", async () => {
    behave();
    const unchecked = await submit("spot p=0", { verification: "spot", spotRate: 0 });
    assert.equal(unchecked.state, "completed", JSON.stringify(unchecked.events));
    assert.equal(unchecked.events.filter((event) => event.type === "assigned").length, 1);
    assert.equal(reportOf(unchecked), undefined, "nothing to decide between");

    behave("lie");
    const checked = await submit("spot p=1", { verification: "spot", spotRate: 1 });
    assert.equal(checked.state, "completed", JSON.stringify(checked.events));
    assert.notEqual(Buffer.from(checked.result!.outputBase64, "base64").toString(), "made up\n");
    const report = reportOf(checked);
    assert.ok(report, "a checked spot job has a verdict");
    const liarTookPart = checked.replicas?.some((replica) => replica.operator === operatorOf(0));
    if (liarTookPart) {
      assert.deepEqual(
        report.dissenting.map((vote) => vote.operator),
        [operatorOf(0)],
      );
      assert.equal(report.quorum, 3, "a disagreement escalates to a quorum of 4");
    } else assert.equal(report.quorum, 2);
  });
});
