// `npm run bench -- mesh`: five local nodes on a Hardhat devnet, each in its own process:
// four staked donors (offchain/src/node/run.ts) and a buyer application that embeds its
// node and generates the load (bench/_mesh-buyer.ts). Measures submit → verified receipt
// latency of a tiny job, sustained jobs/s for 30 s (MESH_SECONDS), and CPU, read/write
// system calls and resident memory per node. The final JSON line's `cpuMsPerJob` (CPU time
// of every node process, all threads, per completed job) is the figure least disturbed by
// other load on the machine. Goals: p50 ≤ 50 ms, ≥ 300 jobs/s, ≤ 150 MB per node.
import { fileURLToPath } from "node:url";
import { processCpuMs, processRssMb, spinModule, startChild, startCluster } from "../test/e2e/cluster.ts";
import type { ClusterNode } from "../test/e2e/cluster.ts";
import { ioCalls, prepareBenchNodes, startLineChild, stopProcess } from "./_line-child.ts";
import type { BenchProcess, IoCalls } from "./_line-child.ts";
import type { MeshBuyerFigures, MeshBuyerParams } from "./_mesh-buyer.ts";

const DONORS = 4;
const WARMUP_JOBS = 20;
const LATENCY_JOBS = Number(process.env.MESH_LATENCY_JOBS ?? 200);
const THROUGHPUT_SECONDS = Number(process.env.MESH_SECONDS ?? 30);
const CONCURRENCY = Number(process.env.MESH_CONCURRENCY ?? 64);
/**
 * MESH_RATE=N starts N jobs per second (still at most CONCURRENCY in flight) instead of as
 * many as finish: CPU per job then compares two builds at the same load, free of the
 * per-second costs a faster run spreads over more jobs.
 */
const RATE = Number(process.env.MESH_RATE ?? 0);
/**
 * Jobs each donor takes at once. The donors together have a slot for every job in flight,
 * so the throughput phase measures the network rather than jobs held in the buyer's queue
 * for a free slot (at 8 slots each, half of them waited there).
 */
const SLOTS_PER_DONOR = Math.ceil(CONCURRENCY / DONORS);
// Nodes are prepared with `defaultTimers`: the test cluster's shortened advert, receipt-batch
// and stake-read timers alone cost each node a few percent of a core at rest.
const BUYER_SCRIPT = fileURLToPath(new URL("_mesh-buyer.ts", import.meta.url));
const GOALS = { p50Ms: 50, jobsPerSec: 300, rssMbPerNode: 150 };

const children: BenchProcess[] = [];
/** Children being started, waited for before shutting down so none is left behind. */
const starting: Promise<unknown>[] = [];
let shuttingDown: Promise<void> | undefined;
const cluster = await startCluster();
const shutdown = () =>
  (shuttingDown ??= (async () => {
    await Promise.allSettled(starting);
    await Promise.all(children.map(stopProcess));
    await cluster.close();
  })());
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => void shutdown().finally(() => process.exit(130)));

try {
  const { donorNodes, buyerNode } = await prepareBenchNodes(cluster, DONORS, SLOTS_PER_DONOR);
  const startDonor = async (node: ClusterNode, bootstrap?: string[]) => {
    const started = startChild(node, bootstrap);
    starting.push(started);
    const child = await started;
    children.push(child);
    return child;
  };
  const first = await startDonor(donorNodes[0]!);
  const bootstrap = first.multiaddrs.slice(0, 1);
  const donors = [
    first,
    ...(await Promise.all(donorNodes.slice(1).map((node) => startDonor(node, bootstrap)))),
  ];

  const buyer = startLineChild("buyer", BUYER_SCRIPT, {
    configFile: buyerNode.configFile,
    bootstrap,
    donors: DONORS,
    warmupJobs: WARMUP_JOBS,
    latencyJobs: LATENCY_JOBS,
    seconds: THROUGHPUT_SECONDS,
    concurrency: CONCURRENCY,
    rate: RATE,
    module: Buffer.from(await spinModule(1)).toString("base64"),
  } satisfies MeshBuyerParams);
  children.unshift(buyer);
  const nodes = [buyer, ...donors];
  const pids = nodes.map((node) => node.process.pid);

  const phaseTimeoutMs = (WARMUP_JOBS + LATENCY_JOBS) * 1_000 + 120_000;
  const phase = await buyer.nextLine<{ phase?: string }>(phaseTimeoutMs);
  if (phase.phase !== "throughput")
    throw new Error(`the buyer reported ${JSON.stringify(phase)} instead of its throughput phase`);
  const cpuBefore = pids.map(processCpuMs);
  const ioBefore = pids.map(ioCalls);
  const rssSamples: number[][] = [];
  const sampler = setInterval(() => rssSamples.push(pids.map(processRssMb)), 1_000);
  let figures: MeshBuyerFigures;
  try {
    figures = await buyer.nextLine<MeshBuyerFigures>(THROUGHPUT_SECONDS * 1_000 + 120_000);
  } finally {
    clearInterval(sampler);
  }
  const cpuSpent = pids.map((pid, i) => processCpuMs(pid) - cpuBefore[i]!);
  const ioSpent = pids.map((pid, i) => {
    const after = ioCalls(pid);
    return { reads: after.reads - ioBefore[i]!.reads, writes: after.writes - ioBefore[i]!.writes };
  });
  const { latencyMs, completed, failed, seconds } = figures;
  const jobsPerSec = completed / seconds;

  console.log(
    `latency  ${LATENCY_JOBS} sequential tiny jobs: p50 ${latencyMs.p50.toFixed(1)} ms, p95 ${latencyMs.p95.toFixed(1)} ms, max ${latencyMs.max.toFixed(1)} ms`,
  );
  console.log(
    `throughput  ${CONCURRENCY} jobs in flight${RATE > 0 ? ` at most, ${RATE} started per second,` : ""} for ${seconds.toFixed(1)} s: ${completed} completed, ${failed} failed, ${jobsPerSec.toFixed(1)} jobs/s`,
  );
  const perJob = (ms: number) => (ms / Math.max(1, completed)).toFixed(2);
  const cpuMsPerJob = cpuSpent.reduce((sum, ms) => sum + ms, 0) / Math.max(1, completed);
  console.log(
    `cpu  per completed job: ${cpuMsPerJob.toFixed(2)} ms over all nodes (buyer ${perJob(cpuSpent[0]!)} ms, donors ${cpuSpent.slice(1).map(perJob).join(" / ")} ms)`,
  );
  const callsPerJob = ({ reads, writes }: IoCalls) => `${perJob(reads)}r ${perJob(writes)}w`;
  console.log(
    `syscalls  reads and writes per completed job: buyer ${callsPerJob(ioSpent[0]!)}, donors ${ioSpent.slice(1).map(callsPerJob).join(" / ")}`,
  );
  const peak = rssSamples.reduce(
    (max, sample) => sample.map((value, i) => Math.max(value, max[i] ?? 0)),
    [] as number[],
  );
  for (const [i, node] of nodes.entries())
    console.log(`rss  ${node.name.padEnd(7)} peak ${(peak[i] ?? 0).toFixed(1)} MB`);
  const rssMbPerNode = Math.max(...peak);
  console.log("(each node is a process of its own; the buyer's includes its load generator)");
  const verdict = (met: boolean) => (met ? "met" : "MISSED");
  console.log(
    `goals  p50 ≤ ${GOALS.p50Ms} ms ${verdict(latencyMs.p50 <= GOALS.p50Ms)}, ≥ ${GOALS.jobsPerSec} jobs/s ${verdict(jobsPerSec >= GOALS.jobsPerSec)}, ≤ ${GOALS.rssMbPerNode} MB per node ${verdict(rssMbPerNode <= GOALS.rssMbPerNode)}`,
  );

  console.log(
    JSON.stringify({
      p50Ms: round(latencyMs.p50),
      p95Ms: round(latencyMs.p95),
      jobsPerSec: round(jobsPerSec),
      rssMbPerNode: round(rssMbPerNode),
      cpuMsPerJob: Math.round(cpuMsPerJob * 100) / 100,
    }),
  );
} finally {
  await shutdown();
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
