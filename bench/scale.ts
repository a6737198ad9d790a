// `npm run bench -- scale`: how the market's cost grows with the network. For each N in
// SCALE_NODES (default 5,17,33) it starts a Hardhat devnet, stakes N−1 donors and starts
// them and a buyer all at once, each node in its own process (bench/_scale-node.ts), with
// the node's default timers. It measures the time until the buyer sees every donor staked
// (counted from when the last node process has its node running, so the time Node takes to
// load a process on a loaded machine is not counted; the time since spawning is printed too),
// idle CPU per node once the mesh has formed, p50 of tiny jobs run one after another, and,
// after an unmeasured warm-up under the same load, with SCALE_CONCURRENCY jobs in flight for
// SCALE_SECONDS: jobs/s, CPU per job over all
// nodes (user + system of every process, /proc/<pid>/stat), and messages received per job
// per node (gossip copies, duplicates included, and requests), plus peak RSS per node.
// Every node is given the first SCALE_BOOTSTRAP_PEERS donors (6) as bootstrap peers and dials
// two of them (`BootstrapPolicy.dialPeers`), as nodes of a network with several bootstrap
// peers do; SCALE_BOOTSTRAP_PEERS=2 has every node call on the same two.
// The last line is one JSON object; `cpuPerJobRatio33to5` divides CPU per job at 33 nodes
// by CPU per job at 5 in the same run. CPU per job counts every node's CPU while the jobs
// run, idle upkeep included; `cpuPerJobAboveIdleRatio33to5` divides the jobs' own cost
// (that CPU less each node's idle rate over the same time) at 33 by that at 5. Goals: ratio ≤ 1.5, all donors seen within 10 s at
// 33 nodes, idle CPU ≤ 2 % of a core per node.
//
// Overrides: SCALE_NODES=5,9 SCALE_SECONDS=60 SCALE_LOAD_WARMUP_SECONDS=20 SCALE_IDLE_SECONDS=15 SCALE_LATENCY_JOBS=50
// SCALE_CONCURRENCY=64 SCALE_DISCOVERY_TIMEOUT_SECONDS=120 SCALE_BOOTSTRAP_PEERS=2
// SCALE_RECEIPT_BATCH_MS=10000, and
// SCALE_TRUST=0 to run without trusting loopback (as a public network would).
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { freePort } from "../offchain/src/chain/index.ts";
import { bundledEntry } from "../offchain/src/node/launch.ts";
import type { MeshStats } from "../offchain/src/p2p/index.ts";
import { processCpuMs, processRssMb, spinModule, startCluster } from "../test/e2e/cluster.ts";
import type { Cluster, ClusterNode } from "../test/e2e/cluster.ts";
import type { LatencyFigures, LoadFigures, ScaleNodeParams } from "./_scale-node.ts";

const NODE_COUNTS = listFromEnv("SCALE_NODES", [5, 17, 33]);
/**
 * Long enough to hold a receipt batch of every donor (`donor.receiptBatchMs`, 60 s by
 * default): a shorter window would leave the batches' DHT provides out of the CPU per job.
 */
const LOAD_SECONDS = numberFromEnv("SCALE_SECONDS", 60);
const IDLE_SECONDS = numberFromEnv("SCALE_IDLE_SECONDS", 15);
const LATENCY_JOBS = numberFromEnv("SCALE_LATENCY_JOBS", 50);
/**
 * Load before the measured load: every donor of a large network takes only a few jobs a
 * second, so without it the measured window would include each process's code still being
 * compiled to its optimized tier, a start-up cost a running network does not pay per job.
 */
const LOAD_WARMUP_SECONDS = numberFromEnv("SCALE_LOAD_WARMUP_SECONDS", 20);
const CONCURRENCY = numberFromEnv("SCALE_CONCURRENCY", 64);
const DISCOVERY_TIMEOUT_SECONDS = numberFromEnv("SCALE_DISCOVERY_TIMEOUT_SECONDS", 120);
const BOOTSTRAP_PEERS = numberFromEnv("SCALE_BOOTSTRAP_PEERS", 6);
/** SCALE_RECEIPT_BATCH_MS sets the donors' `donor.receiptBatchMs`; unset, the node's default. */
const RECEIPT_BATCH_MS = process.env.SCALE_RECEIPT_BATCH_MS
  ? numberFromEnv("SCALE_RECEIPT_BATCH_MS", 0)
  : undefined;
/** SCALE_TRUST=0 runs the nodes as on a public network: loopback is not a trusted network. */
const TRUSTED_CIDRS = process.env.SCALE_TRUST === "0" ? [] : ["127.0.0.0/8"];
const WARMUP_JOBS = 20;
/** The latency phase stops after this long even if not all its jobs ran. */
const LATENCY_MAX_SECONDS = 90;
/** Quiet time after discovery before idle CPU is measured: connections and meshes settle. */
const SETTLE_SECONDS = 5;
const STOP_GRACE_MS = 10_000;
/** SCALE_PROFILE=buyer,donor1 writes those nodes' CPU profiles to SCALE_PROFILE_DIR (default .cell/scale-profiles). */
const PROFILED = new Set((process.env.SCALE_PROFILE ?? "").split(",").filter((name) => name.length > 0));
const PROFILE_DIR = process.env.SCALE_PROFILE_DIR ?? ".cell/scale-profiles";
const profileArgs = (name: string): string[] =>
  PROFILED.has(name)
    ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`]
    : [];
/** SCALE_NODE_FLAGS="--flag …": Node or V8 flags for every node process, e.g. to compare tiering settings. */
const NODE_FLAGS = (process.env.SCALE_NODE_FLAGS ?? "").split(/\s+/).filter((flag) => flag.length > 0);
const NODE_SCRIPT = fileURLToPath(new URL("_scale-node.ts", import.meta.url));
const GOALS = { cpuPerJobRatio: 1.5, discoverySeconds33: 10, idleCpuPctPerNode: 2 };

interface ScaleFigures {
  nodes: number;
  discoverySeconds: number | null;
  donorsSeen: number;
  idleCpuPctPerNode: number;
  idleCpuPctPerNodeMax: number;
  p50Ms: number;
  jobsPerSec: number;
  cpuMsPerJob: number;
  /** CPU per job beyond what the nodes spend idle over the same time: the jobs' own cost. */
  cpuMsPerJobAboveIdle: number;
  buyerCpuMsPerJob: number;
  gossipPerJobPerNode: number;
  requestsPerJobPerNode: number;
  peakRssMbPerNode: number;
  peakRssMbMax: number;
}

const progress = (text: string) => console.log(`  [${new Date().toISOString().slice(11, 19)}] ${text}`);
let shuttingDown: (() => Promise<void>) | undefined;
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => void (shuttingDown?.() ?? Promise.resolve()).finally(() => process.exit(130)));

async function main(): Promise<void> {
  // built once here, not by every node process at once
  await bundledEntry(NODE_SCRIPT);
  const module = Buffer.from(await spinModule(1)).toString("base64");
  const results: ScaleFigures[] = [];
  for (const nodes of NODE_COUNTS) {
    console.log(`\nN = ${nodes}: 1 buyer + ${nodes - 1} donors, all started at once`);
    try {
      const figures = await runScale(nodes, module);
      results.push(figures);
      printFigures(figures);
    } catch (err) {
      // the other node counts still run, and the summary reports this one as not measured
      console.log(`N ${nodes}: FAILED: ${(err as Error).message.slice(0, 2_000)}`);
      process.exitCode = 1;
    }
  }
  printSummary(results);
}

async function runScale(nodes: number, module: string): Promise<ScaleFigures> {
  const cluster = await startCluster();
  const children: ScaleProcess[] = [];
  const shutdown = async () => {
    await Promise.all(children.map((child) => child.stop()));
    await cluster.close();
  };
  shuttingDown = shutdown;
  try {
    return await measure(cluster, nodes, module, children);
  } finally {
    await shutdown();
    shuttingDown = undefined;
  }
}

async function measure(
  cluster: Cluster,
  nodes: number,
  module: string,
  children: ScaleProcess[],
): Promise<ScaleFigures> {
  const donors = nodes - 1;
  const slots = Math.max(2, Math.ceil(CONCURRENCY / donors));
  progress(`staking ${donors} donors on a fresh devnet`);
  const ports = await Promise.all(Array.from({ length: nodes }, () => freePort()));
  const donorNodes = await Promise.all(
    Array.from({ length: donors }, (_, i) =>
      cluster.prepare(`donor${i + 1}`, {
        donor: true,
        stakeWith: i + 1,
        config: {
          listen: [`/ip4/127.0.0.1/tcp/${ports[i + 1]}`],
          network: { trustedCidrs: TRUSTED_CIDRS },
          donor: { slots, ...(RECEIPT_BATCH_MS === undefined ? {} : { receiptBatchMs: RECEIPT_BATCH_MS }) },
          runtime: { poolSize: 1 },
          logLevel: "error",
        },
        defaultTimers: true,
      }),
    ),
  );
  const buyerNode = await cluster.prepare("buyer", {
    donor: false,
    config: {
      listen: [`/ip4/127.0.0.1/tcp/${ports[0]}`],
      network: { trustedCidrs: TRUSTED_CIDRS },
      buyer: { maxInFlight: 1024 },
      logLevel: "error",
    },
    defaultTimers: true,
  });
  const bootstrap = donorNodes
    .slice(0, Math.min(BOOTSTRAP_PEERS, donors))
    .map((node, i) => `/ip4/127.0.0.1/tcp/${ports[i + 1]}/p2p/${node.identity.peerId}`);

  progress(`starting ${nodes} node processes (bootstrap: ${bootstrap.length} donors)`);
  const startedAt = Date.now();
  const spawnNode = (node: ClusterNode, buyer: boolean) => {
    const child = new ScaleProcess(node.name, {
      configFile: node.configFile,
      bootstrap,
      donors: buyer ? donors : 0,
      discoveryTimeoutMs: DISCOVERY_TIMEOUT_SECONDS * 1000,
      module: buyer ? module : "",
    });
    children.push(child);
    return child;
  };
  const buyer = spawnNode(buyerNode, true);
  for (const node of donorNodes) spawnNode(node, false);
  const pids = children.map((child) => child.pid);
  const rssPeaks = pids.map(() => 0);
  const sampler = setInterval(
    () => pids.forEach((pid, i) => (rssPeaks[i] = Math.max(rssPeaks[i]!, processRssMb(pid)))),
    1_000,
  );
  try {
    buyer.onLine((line) => {
      if ("seen" in line)
        progress(
          `buyer sees ${String(line.seen)} of ${donors} donors staked (adverts from ${String(line.advertised)})`,
        );
    });
    const startTimeoutMs = 180_000;
    const nodesStarted = await Promise.all(
      children.map(async (child) => ((await child.next("started", startTimeoutMs)) as { at: number }).at),
    );
    const allUpAt = Math.max(...nodesStarted);
    progress(
      `all ${nodes} nodes running ${((allUpAt - startedAt) / 1000).toFixed(1)} s after their processes were spawned`,
    );
    const discovered = (await buyer.next("discovered", DISCOVERY_TIMEOUT_SECONDS * 1000 + 60_000)) as {
      seen: number;
      at: number;
      connections: number;
      firstSeen: Record<string, number>;
      firstConnected: Record<string, number>;
    };
    printLastSeen(
      children.slice(1),
      nodesStarted.slice(1),
      discovered.firstSeen,
      discovered.firstConnected,
      allUpAt,
    );
    const found = discovered.seen >= donors;
    if (!found) await reportMissing(buyer, children.slice(1));
    const discoverySeconds = found ? Math.max(0, discovered.at - allUpAt) / 1000 : null;
    progress(
      found
        ? `all ${donors} donors seen staked ${discoverySeconds!.toFixed(1)} s after all nodes were running (${((discovered.at - startedAt) / 1000).toFixed(1)} s after spawning; buyer has ${discovered.connections} connections)`
        : `buyer saw only ${discovered.seen} of ${donors} donors after ${DISCOVERY_TIMEOUT_SECONDS} s`,
    );

    await sleep(SETTLE_SECONDS * 1000);
    progress(`measuring idle CPU for ${IDLE_SECONDS} s`);
    const idleStats = await allStats(children);
    const idleBefore = pids.map(processCpuMs);
    const idleStart = performance.now();
    await sleep(IDLE_SECONDS * 1000);
    const idleMs = performance.now() - idleStart;
    const idlePct = pids.map((pid, i) => ((processCpuMs(pid) - idleBefore[i]!) / idleMs) * 100);
    printIdleTraffic(idleStats, await allStats(children), idleMs / 1000);

    progress(`warm-up: ${WARMUP_JOBS} jobs`);
    await buyer.command({ cmd: "jobs", jobs: WARMUP_JOBS, maxSeconds: LATENCY_MAX_SECONDS }, "latency");
    progress(`latency: up to ${LATENCY_JOBS} jobs one after another`);
    const latency = (await buyer.command(
      { cmd: "jobs", jobs: LATENCY_JOBS, maxSeconds: LATENCY_MAX_SECONDS },
      "latency",
    )) as LatencyFigures;
    // JSON carries "no job completed" (NaN) as null
    const p50Ms = latency.p50 ?? NaN;
    progress(`p50 ${p50Ms.toFixed(1)} ms over ${latency.jobs} jobs (${latency.failed} failed)`);

    if (LOAD_WARMUP_SECONDS > 0) {
      progress(`load warm-up: ${CONCURRENCY} jobs in flight for ${LOAD_WARMUP_SECONDS} s, not measured`);
      await buyer.command({ cmd: "load", seconds: LOAD_WARMUP_SECONDS, concurrency: CONCURRENCY }, "load");
    }
    progress(`load: ${CONCURRENCY} jobs in flight for ${LOAD_SECONDS} s`);
    const statsBefore = await allStats(children);
    const bidsBefore = (await buyer.command({ cmd: "buyer" }, "buyer", 30_000)) as BidFigures;
    const cpuBefore = pids.map(processCpuMs);
    const loadStart = performance.now();
    const load = (await buyer.command(
      { cmd: "load", seconds: LOAD_SECONDS, concurrency: CONCURRENCY },
      "load",
    )) as LoadFigures;
    const cpuSpent = pids.map((pid, i) => processCpuMs(pid) - cpuBefore[i]!);
    const loadMs = performance.now() - loadStart;
    const idleSpent = idlePct.reduce((sum, pct) => sum + (pct / 100) * loadMs, 0);
    const statsAfter = await allStats(children);
    const perJob = (value: number) => value / Math.max(1, load.completed);
    const received = (stats: MeshStats[]) =>
      stats.map((s) => ({
        gossip: Object.values(s.gossip).reduce((sum, topic) => sum + topic.copies, 0),
        requests: Object.values(s.requests.received).reduce((sum, count) => sum + count, 0),
      }));
    const before = received(statsBefore);
    const after = received(statsAfter);
    const gossip = after.reduce((sum, node, i) => sum + node.gossip - before[i]!.gossip, 0);
    const requests = after.reduce((sum, node, i) => sum + node.requests - before[i]!.requests, 0);
    const restored = statsAfter.reduce((sum, stats) => sum + stats.gossipStreamsRestored, 0);
    progress(
      `${load.completed} jobs completed, ${load.failed} failed; gossip streams reopened after a connection of two closed: ${restored}`,
    );
    printTraffic(statsBefore, statsAfter, load.completed, nodes);
    const bidsAfter = (await buyer.command({ cmd: "buyer" }, "buyer", 30_000)) as BidFigures;
    progress(
      `bid requests ${bidsAfter.bidRequestsSent - bidsBefore.bidRequestsSent} sent, ${bidsAfter.bidRequestsFailed - bidsBefore.bidRequestsFailed} failed; placements ${bidsAfter.placements - bidsBefore.placements}, discovery rounds ${bidsAfter.discoveryRounds - bidsBefore.discoveryRounds}`,
    );

    return {
      nodes,
      discoverySeconds,
      donorsSeen: discovered.seen,
      idleCpuPctPerNode: mean(idlePct),
      idleCpuPctPerNodeMax: Math.max(...idlePct),
      p50Ms,
      jobsPerSec: load.completed / load.seconds,
      cpuMsPerJob: perJob(cpuSpent.reduce((sum, ms) => sum + ms, 0)),
      cpuMsPerJobAboveIdle: perJob(Math.max(0, cpuSpent.reduce((sum, ms) => sum + ms, 0) - idleSpent)),
      buyerCpuMsPerJob: perJob(cpuSpent[0]!),
      gossipPerJobPerNode: perJob(gossip) / nodes,
      requestsPerJobPerNode: perJob(requests) / nodes,
      peakRssMbPerNode: mean(rssPeaks),
      peakRssMbMax: Math.max(...rssPeaks),
    };
  } finally {
    clearInterval(sampler);
  }
}

/** The donors the buyer saw last: when each started, when the buyer first had a connection to it and first saw it staked. */
function printLastSeen(
  donors: ScaleProcess[],
  startedAt: number[],
  firstSeen: Record<string, number>,
  firstConnected: Record<string, number>,
  allUpAt: number,
): void {
  const rows = donors
    .map((donor, i) => ({
      donor,
      started: startedAt[i]!,
      connected: firstConnected[donor.peerId ?? ""],
      seen: firstSeen[donor.peerId ?? ""],
    }))
    .filter((row) => row.seen !== undefined)
    .sort((a, b) => b.seen! - a.seen!)
    .slice(0, 5);
  const at = (ms: number) => `${((ms - allUpAt) / 1000).toFixed(1)} s`;
  progress(
    `seen last (times from all running): ${rows.map((row) => `${row.donor.name} started ${at(row.started)}, connected ${row.connected === undefined ? "never" : at(row.connected)}, seen ${at(row.seen!)}`).join("; ")}`,
  );
}

/** Which donors the buyer does not see staked, and what their own nodes say about their connections. */
async function reportMissing(buyer: ScaleProcess, donors: ScaleProcess[]): Promise<void> {
  const views = (await buyer.command({ cmd: "peers" }, "peers", 30_000)) as PeerSummary[];
  const seen = new Set(views.filter((view) => view.staked).map((view) => view.peerId));
  for (const donor of donors) {
    const peerId = donor.peerId ?? "";
    if (seen.has(peerId)) continue;
    const stats = (await donor.command({ cmd: "stats" }, "stats", 30_000)) as MeshStats;
    const view = views.find((candidate) => candidate.peerId === peerId);
    progress(
      `  missing ${donor.name} ${peerId}: ${stats.connections} connections, buyer ${view ? `knows it (staked ${String(view.staked)}, connected ${String(view.connected)})` : "has never heard of it"}, gossip it received ${JSON.stringify(stats.gossip)}`,
    );
  }
}

interface BidFigures {
  placements: number;
  bidRequestsSent: number;
  bidRequestsFailed: number;
  discoveryRounds: number;
}

interface PeerSummary {
  peerId: string;
  staked?: boolean;
  connected: boolean;
}

async function allStats(children: ScaleProcess[]): Promise<MeshStats[]> {
  return Promise.all(
    children.map(async (child) => (await child.command({ cmd: "stats" }, "stats", 30_000)) as MeshStats),
  );
}

/** What an idle node receives per second, by topic, and how its connections come and go. */
function printIdleTraffic(before: MeshStats[], after: MeshStats[], seconds: number): void {
  const nodes = after.length;
  const perNodeSecond = (total: number) => (total / nodes / seconds).toFixed(2);
  const topics = new Set(after.flatMap((stats) => Object.keys(stats.gossip)));
  const gossip = [...topics].map((topic) => {
    const copies = after.reduce(
      (sum, stats, i) => sum + (stats.gossip[topic]?.copies ?? 0) - (before[i]!.gossip[topic]?.copies ?? 0),
      0,
    );
    return `${topic} ${perNodeSecond(copies)}`;
  });
  const opened = after.reduce(
    (sum, stats, i) => sum + stats.connectionsOpened - before[i]!.connectionsOpened,
    0,
  );
  const connections = after.reduce((sum, stats) => sum + stats.connections, 0) / nodes;
  progress(
    `idle, per node and second: gossip ${gossip.join(", ")}; connections opened ${perNodeSecond(opened)}; ${connections.toFixed(1)} connections per node`,
  );
}

/** Messages received per job, by topic and protocol, summed over all nodes. */
function printTraffic(before: MeshStats[], after: MeshStats[], completed: number, nodes: number): void {
  const totals = new Map<string, number>();
  const add = (key: string, value: number) => totals.set(key, (totals.get(key) ?? 0) + value);
  after.forEach((stats, i) => {
    for (const [topic, counts] of Object.entries(stats.gossip))
      add(`gossip ${topic}`, counts.copies - (before[i]!.gossip[topic]?.copies ?? 0));
    for (const [protocol, count] of Object.entries(stats.requests.received))
      add(`request ${protocol}`, count - (before[i]!.requests.received[protocol] ?? 0));
  });
  const opened = after.reduce(
    (sum, stats, i) => sum + stats.connectionsOpened - before[i]!.connectionsOpened,
    0,
  );
  add("connections opened", opened);
  const parts = [...totals]
    .filter(([, count]) => count > 0)
    .map(([key, count]) => `${key} ${(count / Math.max(1, completed) / nodes).toFixed(2)}`);
  progress(`received per job per node: ${parts.join(", ")}`);
}

function printFigures(f: ScaleFigures): void {
  const discovery =
    f.discoverySeconds === null
      ? `only ${f.donorsSeen} of ${f.nodes - 1} seen`
      : `${f.discoverySeconds.toFixed(1)} s`;
  console.log(
    [
      `N ${f.nodes}: all donors seen staked ${discovery}`,
      `p50 ${f.p50Ms.toFixed(1)} ms`,
      `${f.jobsPerSec.toFixed(1)} jobs/s`,
      `CPU per job ${f.cpuMsPerJob.toFixed(1)} ms over all nodes (buyer ${f.buyerCpuMsPerJob.toFixed(1)} ms; ${f.cpuMsPerJobAboveIdle.toFixed(1)} ms beyond idle)`,
      `received per job per node: ${f.gossipPerJobPerNode.toFixed(2)} gossip, ${f.requestsPerJobPerNode.toFixed(2)} requests`,
      `idle CPU per node ${f.idleCpuPctPerNode.toFixed(2)} % of a core (max ${f.idleCpuPctPerNodeMax.toFixed(2)} %)`,
      `peak RSS per node ${f.peakRssMbPerNode.toFixed(0)} MB (max ${f.peakRssMbMax.toFixed(0)} MB)`,
    ].join("; "),
  );
}

function printSummary(all: ScaleFigures[]): void {
  console.log(
    "\n  N | seen in | p50 ms | jobs/s | CPU ms/job | beyond idle | gossip/job/node | req/job/node | idle %/node | RSS MB/node",
  );
  for (const f of all)
    console.log(
      `${String(f.nodes).padStart(3)} | ${(f.discoverySeconds === null ? `${f.donorsSeen}/${f.nodes - 1}` : `${f.discoverySeconds.toFixed(1)} s`).padStart(7)} | ${f.p50Ms.toFixed(1).padStart(6)} | ${f.jobsPerSec.toFixed(1).padStart(6)} | ${f.cpuMsPerJob.toFixed(1).padStart(10)} | ${f.cpuMsPerJobAboveIdle.toFixed(1).padStart(11)} | ${f.gossipPerJobPerNode.toFixed(2).padStart(15)} | ${f.requestsPerJobPerNode.toFixed(2).padStart(12)} | ${f.idleCpuPctPerNode.toFixed(2).padStart(11)} | ${f.peakRssMbPerNode.toFixed(0).padStart(11)}`,
    );
  const at = (n: number) => all.find((f) => f.nodes === n);
  const five = at(5);
  const large = at(33);
  const ratio = five && large ? large.cpuMsPerJob / five.cpuMsPerJob : null;
  const ratioAboveIdle = five && large ? large.cpuMsPerJobAboveIdle / five.cpuMsPerJobAboveIdle : null;
  const summary = {
    cpuPerJobRatio33to5: roundOrNull(ratio, 2),
    // the same ratio of the jobs' own cost, the nodes' idle CPU over the load taken out
    cpuPerJobAboveIdleRatio33to5: roundOrNull(ratioAboveIdle, 2),
    jobsPerSec33: roundOrNull(large?.jobsPerSec ?? null, 1),
    discoverySeconds33: roundOrNull(large?.discoverySeconds ?? null, 1),
    idleCpuPctPerNode33: roundOrNull(large?.idleCpuPctPerNode ?? null, 2),
    goals: {
      cpuPerJobRatio: ratio === null ? null : ratio <= GOALS.cpuPerJobRatio,
      discovery33: large
        ? large.discoverySeconds !== null && large.discoverySeconds <= GOALS.discoverySeconds33
        : null,
      idleCpu33: large ? large.idleCpuPctPerNode <= GOALS.idleCpuPctPerNode : null,
    },
    runs: all.map((f) => ({
      nodes: f.nodes,
      discoverySeconds: roundOrNull(f.discoverySeconds, 1),
      p50Ms: round(f.p50Ms, 1),
      jobsPerSec: round(f.jobsPerSec, 1),
      cpuMsPerJob: round(f.cpuMsPerJob, 1),
      cpuMsPerJobAboveIdle: round(f.cpuMsPerJobAboveIdle, 1),
      gossipPerJobPerNode: round(f.gossipPerJobPerNode, 2),
      requestsPerJobPerNode: round(f.requestsPerJobPerNode, 2),
      idleCpuPctPerNode: round(f.idleCpuPctPerNode, 2),
      peakRssMbPerNode: round(f.peakRssMbPerNode, 0),
    })),
  };
  const verdict = (met: boolean | null) => (met === null ? "not measured" : met ? "met" : "MISSED");
  console.log(
    `goals  CPU per job 33/5 ≤ ${GOALS.cpuPerJobRatio} ${verdict(summary.goals.cpuPerJobRatio)}, all donors seen ≤ ${GOALS.discoverySeconds33} s at 33 ${verdict(summary.goals.discovery33)}, idle ≤ ${GOALS.idleCpuPctPerNode} % per node at 33 ${verdict(summary.goals.idleCpu33)}`,
  );
  console.log(JSON.stringify(summary));
}

/** A node process of this benchmark, answering commands with JSON lines. */
class ScaleProcess {
  readonly name: string;
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #pending: Record<string, unknown>[] = [];
  #wake: (() => void) | undefined;
  #listener: ((line: Record<string, unknown>) => void) | undefined;
  #stderr = "";
  peerId: string | undefined;

  constructor(name: string, params: ScaleNodeParams) {
    this.name = name;
    this.#child = spawn(process.execPath, [...NODE_FLAGS, ...profileArgs(name), NODE_SCRIPT], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.#child.stderr!.on(
      "data",
      (chunk: Buffer) => (this.#stderr = (this.#stderr + chunk.toString()).slice(-8000)),
    );
    this.#exited = new Promise((resolve) => this.#child.once("exit", () => resolve()));
    createInterface({ input: this.#child.stdout! }).on("line", (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      if ("started" in line) this.peerId = (line.started as { peerId: string }).peerId;
      this.#listener?.(line);
      this.#pending.push(line);
      this.#wake?.();
    });
    // stdin stays open: the node stops when it closes, so it never outlives this process.
    this.#child.stdin!.on("error", () => undefined);
    this.#child.stdin!.write(`${JSON.stringify(params)}\n`);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  onLine(listener: (line: Record<string, unknown>) => void): void {
    this.#listener = listener;
  }

  async command(command: object, answerKey: string, timeoutMs = 600_000): Promise<unknown> {
    this.#child.stdin!.write(`${JSON.stringify(command)}\n`);
    return this.next(answerKey, timeoutMs);
  }

  /** The value of the next line holding `key`; lines without it are skipped. */
  async next(key: string, timeoutMs: number): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.#pending.findIndex((line) => key in line);
      if (index !== -1) return this.#pending.splice(0, index + 1).at(-1)![key];
      if (this.#child.exitCode !== null || this.#child.signalCode !== null)
        throw new Error(
          `${this.name} exited (${this.#child.exitCode ?? this.#child.signalCode}): ${this.#stderr}`,
        );
      if (Date.now() > deadline)
        throw new Error(`${this.name} sent no ${key} within ${timeoutMs} ms: ${this.#stderr}`);
      await Promise.race([
        new Promise<void>((resolve) => (this.#wake = resolve)),
        this.#exited,
        sleep(1_000),
      ]);
    }
  }

  /** Closes stdin (the node stops), then SIGTERM and SIGKILL if it lingers. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.stdin!.end();
    const term = setTimeout(() => this.#child.kill("SIGTERM"), STOP_GRACE_MS / 2);
    const kill = setTimeout(() => this.#child.kill("SIGKILL"), STOP_GRACE_MS);
    await this.#exited;
    clearTimeout(term);
    clearTimeout(kill);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function roundOrNull(value: number | null, digits: number): number | null {
  return value === null || !Number.isFinite(value) ? null : round(value, digits);
}

function numberFromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0)
    throw new Error(`${name} must be a non-negative number, got ${text}`);
  return value;
}

function listFromEnv(name: string, fallback: number[]): number[] {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const values = text.split(",").map((part) => Number(part.trim()));
  if (values.some((value) => !Number.isInteger(value) || value < 2))
    throw new Error(`${name} must list node counts of at least 2, like 5,17,33; got ${text}`);
  return values;
}

await main();
