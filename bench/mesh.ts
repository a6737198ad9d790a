// `npm run bench -- mesh`: five local nodes (four staked donors as child processes, the
// buyer in this process) on a Hardhat devnet. Measures submit → verified receipt latency
// of a tiny job, sustained jobs/s for 30 s, and resident memory per node.
import { readFileSync } from "node:fs";
import { spinModule, startChild, startCluster, startInProcess, until } from "../test/e2e/cluster.ts";
import type { ChildNode } from "../test/e2e/cluster.ts";
import type { CellNode } from "../offchain/src/node/index.ts";

const DONORS = 4;
const LATENCY_JOBS = Number(process.env.MESH_LATENCY_JOBS ?? 200);
const THROUGHPUT_SECONDS = Number(process.env.MESH_SECONDS ?? 30);
const CONCURRENCY = Number(process.env.MESH_CONCURRENCY ?? 64);
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

const cluster = await startCluster();
let buyer: CellNode | undefined;
let donors: ChildNode[] = [];
try {
  const donorNodes = await Promise.all(
    Array.from({ length: DONORS }, (_, i) =>
      cluster.prepare(`donor${i + 1}`, {
        donor: true,
        stakeWith: i + 1,
        config: { donor: { slots: 8 }, runtime: { poolSize: 1 }, logLevel: "error" },
      }),
    ),
  );
  const buyerNode = await cluster.prepare("buyer", {
    donor: false,
    config: { logLevel: "error", buyer: { maxInFlight: 1024 } },
  });
  const first = await startChild(donorNodes[0]!);
  const bootstrap = first.multiaddrs.slice(0, 1);
  donors = [first, ...(await Promise.all(donorNodes.slice(1).map((node) => startChild(node, bootstrap))))];
  buyer = await startInProcess(buyerNode, bootstrap);
  const node = buyer;
  await until(
    () => node.peers().filter((peer) => peer.staked).length === DONORS,
    30_000,
    "all donors to be seen",
  );

  const module = await spinModule(1);
  let sequence = 0;
  const runOne = async (): Promise<number> => {
    const started = performance.now();
    const { jobId } = await node.submitJob({
      module,
      input: new TextEncoder().encode(`job ${sequence++}`),
      fuelLimit: 1_000_000n,
    });
    const view = await node.waitForJob(jobId, { timeoutMs: 60_000 });
    if (view.state !== "completed") throw new Error(`job ${jobId} ended ${view.state}: ${view.reason}`);
    return performance.now() - started;
  };

  for (let i = 0; i < 20; i++) await runOne(); // warm up connections, caches and the JIT
  const latencies: number[] = [];
  for (let i = 0; i < LATENCY_JOBS; i++) latencies.push(await runOne());
  latencies.sort((a, b) => a - b);
  const p50 = percentile(latencies, 0.5);
  const p95 = percentile(latencies, 0.95);
  console.log(
    `latency  ${LATENCY_JOBS} sequential tiny jobs: p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms`,
  );

  let completed = 0;
  let failed = 0;
  const endAt = performance.now() + THROUGHPUT_SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < endAt) {
      try {
        await runOne();
        completed++;
      } catch {
        failed++;
      }
    }
  };
  const cpuBefore = cpuMsOfNodes(donors);
  const started = performance.now();
  const rssSamples: number[][] = [];
  const sampler = setInterval(() => rssSamples.push(rssOfNodes(donors)), 1_000);
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  clearInterval(sampler);
  const seconds = (performance.now() - started) / 1000;
  const jobsPerSec = completed / seconds;
  const cpuSpent = cpuMsOfNodes(donors).map((ms, i) => ms - cpuBefore[i]!);
  console.log(
    `throughput  ${CONCURRENCY} jobs in flight for ${seconds.toFixed(1)} s: ${completed} completed, ${failed} failed, ${jobsPerSec.toFixed(1)} jobs/s`,
  );
  const perJob = (ms: number) => (ms / Math.max(1, completed)).toFixed(1);
  console.log(
    `cpu  per completed job: ${perJob(cpuSpent.reduce((sum, ms) => sum + ms, 0))} ms over all nodes (buyer ${perJob(cpuSpent[0]!)} ms, donors ${cpuSpent.slice(1).map(perJob).join(" / ")} ms)`,
  );

  const peak = rssSamples.reduce(
    (max, sample) => sample.map((value, i) => Math.max(value, max[i] ?? 0)),
    [] as number[],
  );
  const names = ["buyer", ...donors.map((donor) => donor.name)];
  for (const [i, name] of names.entries())
    console.log(`rss  ${name.padEnd(7)} peak ${(peak[i] ?? 0).toFixed(1)} MB`);
  const rssMbPerNode = Math.max(...peak);
  console.log(
    "(the buyer's figure includes this benchmark's own bookkeeping; rssMbPerNode is the largest node)",
  );

  console.log(
    JSON.stringify({
      p50Ms: round(p50),
      p95Ms: round(p95),
      jobsPerSec: round(jobsPerSec),
      rssMbPerNode: round(rssMbPerNode),
    }),
  );
} finally {
  await buyer?.stop();
  await Promise.all(donors.map((donor) => donor.kill("SIGTERM")));
  await cluster.close();
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

/** Resident set of the buyer (this process) and each donor process, in MB. */
function rssOfNodes(children: ChildNode[]): number[] {
  const own = process.memoryUsage().rss / 1024 / 1024;
  return [own, ...children.map((child) => residentMb(child.process.pid))];
}

/** CPU time (user + system) of the buyer (this process) and each donor process, in ms. */
function cpuMsOfNodes(children: ChildNode[]): number[] {
  const own = process.cpuUsage();
  return [(own.user + own.system) / 1000, ...children.map((child) => cpuMs(child.process.pid))];
}

function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    // Fields 14 and 15 of /proc/PID/stat (after the parenthesised name): utime, stime in clock ticks.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

function residentMb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return kb / 1024;
  } catch {
    return 0;
  }
}
