// `npm run bench -- quorum`: seven local nodes on a Hardhat devnet: five staked donors in
// processes of their own, and in this process a sixth donor whose executor can be made to
// lie, and the buyer that generates the load. Measures submit → verdict latency of a tiny
// job with 3 replicas (p50/p95), sustained jobs/s for QUORUM_SECONDS (30) with 3 replicas
// and then with 1 replica on the same nodes, and the time from a lie's verdict to the
// liar's quarantine at the buyer (null when this build's trust layer quarantines no one).
// Goals: p50 ≤ 50 ms; 3-replica jobs/s ≥ 0.5 × 1-replica jobs/s; quarantine ≤ 1,000 ms.
import type { CellNode } from "../offchain/src/node/index.ts";
import { cidOf } from "../offchain/src/protocol/index.ts";
import type { VerdictReport } from "../offchain/src/quorum/index.ts";
import type { ExecutionResult, Job, NoResult, Runtime } from "../offchain/src/runtime/index.ts";
import {
  processCpuMs,
  spinModule,
  startChild,
  startCluster,
  startInProcess,
  until,
} from "../test/e2e/cluster.ts";
import type { ChildNode, ClusterNode } from "../test/e2e/cluster.ts";
import { prepareBenchNodes } from "./_line-child.ts";

const DONORS = 6;
const WARMUP_JOBS = 10;
const LATENCY_JOBS = Number(process.env.QUORUM_LATENCY_JOBS ?? 100);
const SECONDS = Number(process.env.QUORUM_SECONDS ?? 30);
const CONCURRENCY = Number(process.env.QUORUM_CONCURRENCY ?? 16);
/** Every replica in flight has a slot: 3 × CONCURRENCY executions over the donors. */
const SLOTS_PER_DONOR = Math.ceil((3 * CONCURRENCY) / DONORS);
const QUARANTINE_WAIT_MS = 2_000;
const GOALS = { p50Ms: 50, replicatedShare: 0.5, liarQuarantineMs: 1_000 };

/** The in-process donor's executor: the real runtime, lying on demand. */
class SwitchableExecutor implements Pick<Runtime, "execute"> {
  lying = false;
  readonly #runtime: Runtime;

  constructor(runtime: Runtime) {
    this.#runtime = runtime;
  }

  async execute(job: Job, options?: { signal?: AbortSignal }): Promise<ExecutionResult | NoResult> {
    const result = await this.#runtime.execute(job, options);
    if (!this.lying || result.kind !== "result") return result;
    const output = new TextEncoder().encode("made up\n");
    return { ...result, output, outputCid: (await cidOf(output)).toString() };
  }
}

const cluster = await startCluster();
const children: ChildNode[] = [];
const inProcess: CellNode[] = [];
try {
  const { donorNodes: nodes, buyerNode } = await prepareBenchNodes(cluster, DONORS, SLOTS_PER_DONOR);
  const first = await startChild(nodes[0]!);
  children.push(first);
  const bootstrap = first.multiaddrs.slice(0, 1);
  children.push(...(await Promise.all(nodes.slice(1, -1).map((node) => startChild(node, bootstrap)))));
  const liarNode: ClusterNode = nodes.at(-1)!;
  let liar!: SwitchableExecutor;
  inProcess.push(
    await startInProcess(liarNode, bootstrap, {
      wrapRuntime: (runtime) => (liar = new SwitchableExecutor(runtime)),
    }),
  );
  const verdicts = new Map<string, { report: VerdictReport; at: number }>();
  const buyer = await startInProcess(buyerNode, bootstrap, {
    verdictListener: {
      onVerdict: (report) => verdicts.set(report.jobId, { report, at: performance.now() }),
      onEquivocation: () => undefined,
    },
  });
  inProcess.unshift(buyer);
  await until(
    () => buyer.peers().filter((peer) => peer.staked).length === DONORS,
    60_000,
    "the buyer to see every staked donor",
  );

  const module = await spinModule(1);
  let sequence = 0;
  const runOne = async (replicas: number): Promise<number> => {
    const started = performance.now();
    const { jobId } = await buyer.submitJob({
      module,
      input: new TextEncoder().encode(`job ${sequence++}`),
      fuelLimit: 1_000_000n,
      replicas,
    });
    const view = await buyer.waitForJob(jobId, { timeoutMs: 60_000 });
    if (view.state !== "completed") throw new Error(`job ${jobId} ended ${view.state}: ${view.reason}`);
    return performance.now() - started;
  };
  /** CPU time of every node so far: this process (the buyer and one donor) and each donor process. */
  const cpuMs = () => [process.cpuUsage(), ...children.map((child) => processCpuMs(child.process.pid))];
  const spentSince = (before: ReturnType<typeof cpuMs>) => {
    const now = cpuMs();
    const own = now[0] as NodeJS.CpuUsage;
    const ownBefore = before[0] as NodeJS.CpuUsage;
    const mine = (own.user + own.system - ownBefore.user - ownBefore.system) / 1_000;
    const donors = now
      .slice(1)
      .reduce<number>((sum, ms, i) => sum + (ms as number) - (before[i + 1] as number), 0);
    return { mine, donors };
  };
  /** Load with `replicas` per job for `seconds`, added to `totals`. */
  const sustained = async (replicas: number, seconds: number, totals: LoadTotals): Promise<void> => {
    const cpuBefore = cpuMs();
    const cancelsBefore = buyer.stats().buyer;
    const endAt = performance.now() + seconds * 1_000;
    const worker = async () => {
      while (performance.now() < endAt) {
        await runOne(replicas);
        totals.completed++;
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    totals.seconds += (performance.now() - started) / 1_000;
    const { mine, donors } = spentSince(cpuBefore);
    totals.mineMs += mine;
    totals.donorsMs += donors;
    const cancels = buyer.stats().buyer;
    totals.cancelsSent += cancels.cancelsSent - cancelsBefore.cancelsSent;
    totals.cancelsStopped += cancels.cancelsStopped - cancelsBefore.cancelsStopped;
    totals.cancelsSpared += cancels.cancelsSpared - cancelsBefore.cancelsSpared;
  };
  const report = (replicas: number, totals: LoadTotals) => {
    const perJob = (value: number) => (value / Math.max(1, totals.completed)).toFixed(2);
    console.log(
      `cpu  ${replicas} replica(s): ${perJob(totals.mineMs)} ms per job in this process (buyer and one donor), ${perJob(totals.donorsMs)} ms in the other donors; cancels per job ${perJob(totals.cancelsSent)} sent, ${perJob(totals.cancelsStopped)} stopped a run, ${perJob(totals.cancelsSpared)} not needed (the receipt came first)`,
    );
    return totals.completed / totals.seconds;
  };

  for (let i = 0; i < WARMUP_JOBS; i++) await runOne(3);
  const latencies: number[] = [];
  for (let i = 0; i < LATENCY_JOBS; i++) latencies.push(await runOne(3));
  latencies.sort((a, b) => a - b);
  const percentile = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  const [p50, p95] = [percentile(0.5), percentile(0.95)];
  console.log(
    `latency  ${LATENCY_JOBS} sequential 3-replica jobs: p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms`,
  );
  // Alternating halves, so a change in the machine's load weighs on both modes alike.
  const replicated = newTotals();
  const single = newTotals();
  for (let half = 0; half < 2; half++) {
    await sustained(3, SECONDS / 2, replicated);
    await sustained(1, SECONDS / 2, single);
  }
  const jobsPerSec = report(3, replicated);
  const singleJobsPerSec = report(1, single);
  console.log(
    `throughput  ${CONCURRENCY} jobs in flight for ${SECONDS} s each, in alternating halves: ${jobsPerSec.toFixed(1)} jobs/s with 3 replicas, ${singleJobsPerSec.toFixed(1)} with 1 (${((100 * jobsPerSec) / singleJobsPerSec).toFixed(0)} %)`,
  );

  const liarQuarantineMs = await timeToQuarantine(buyer, liar, liarNode, runOne, verdicts);
  console.log(
    liarQuarantineMs === null
      ? `liar  outvoted, but not quarantined within ${QUARANTINE_WAIT_MS} ms (no trust layer quarantines in this build)`
      : `liar  quarantined ${liarQuarantineMs.toFixed(1)} ms after the verdict`,
  );
  const met = (ok: boolean) => (ok ? "met" : "MISSED");
  console.log(
    `goals  p50 ≤ ${GOALS.p50Ms} ms ${met(p50 <= GOALS.p50Ms)}, 3-replica ≥ ${GOALS.replicatedShare} × single ${met(jobsPerSec >= GOALS.replicatedShare * singleJobsPerSec)}, quarantine ≤ ${GOALS.liarQuarantineMs} ms ${liarQuarantineMs === null ? "not measured" : met(liarQuarantineMs <= GOALS.liarQuarantineMs)}`,
  );
  console.log(
    JSON.stringify({
      p50Ms: round(p50),
      p95Ms: round(p95),
      jobsPerSec: round(jobsPerSec),
      singleJobsPerSec: round(singleJobsPerSec),
      liarQuarantineMs: liarQuarantineMs === null ? null : round(liarQuarantineMs),
    }),
  );
} finally {
  for (const node of inProcess) await node.stop();
  await Promise.all(children.map((child) => child.kill("SIGTERM")));
  await cluster.close();
}

/**
 * Makes the in-process donor lie, runs 3-replica jobs until one outvotes it, and waits for
 * the buyer's peer view of it to say it is quarantined; null if it never does.
 */
async function timeToQuarantine(
  buyer: CellNode,
  liar: SwitchableExecutor,
  liarNode: ClusterNode,
  runOne: (replicas: number) => Promise<number>,
  verdicts: Map<string, { report: VerdictReport; at: number }>,
): Promise<number | null> {
  liar.lying = true;
  const operator = liarNode.identity.operatorAddress.toLowerCase();
  const outvoted = () =>
    [...verdicts.values()].find(({ report }) =>
      report.dissenting.some((vote) => vote.operator.toLowerCase() === operator),
    );
  for (let tries = 0; tries < 50 && !outvoted(); tries++) await runOne(3);
  const verdict = outvoted();
  if (!verdict) throw new Error("the lying donor was never chosen for a job");
  const quarantined = () =>
    buyer
      .peers()
      .some(
        (peer) => peer.operator?.toLowerCase() === operator && JSON.stringify(peer).includes('"quarantined"'),
      );
  while (performance.now() - verdict.at < QUARANTINE_WAIT_MS) {
    if (quarantined()) return performance.now() - verdict.at;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return null;
}

interface LoadTotals {
  completed: number;
  seconds: number;
  mineMs: number;
  donorsMs: number;
  cancelsSent: number;
  cancelsStopped: number;
  cancelsSpared: number;
}

function newTotals(): LoadTotals {
  return {
    completed: 0,
    seconds: 0,
    mineMs: 0,
    donorsMs: 0,
    cancelsSent: 0,
    cancelsStopped: 0,
    cancelsSpared: 0,
  };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
