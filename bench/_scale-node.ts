// A node of `npm run bench -- scale`, run in its own process: `node bench/_scale-node.ts`
// reads its parameters as one JSON line on stdin, starts the node with the runner's flags
// and logging (run.ts) and answers commands, one JSON line each way:
//   → {"cmd":"stats"}                               ← {"stats": MeshStats}
//   → {"cmd":"peers"}                               ← {"peers": [{peerId, staked, connected}]}
//   → {"cmd":"buyer"}                               ← {"buyer": BuyerStats without bidRequestsTo}
//   → {"cmd":"jobs","jobs":N,"maxSeconds":S}        ← {"latency": {...}}  (buyer: N jobs one after another)
//   → {"cmd":"load","seconds":S,"concurrency":C}    ← {"load": {...}}     (buyer: C jobs in flight for S s)
// It writes {"started":{…}} once its node runs; a buyer also writes {"seen":k,"at":ms} as
// the number of donors it sees staked changes (with how many it has adverts from), and {"discovered":{…}} when it sees all of
// them (or gives up after `discoveryTimeoutMs`). It stops its node when stdin closes or on SIGTERM.
import { createInterface } from "node:readline";
import { withNodeFlags } from "../offchain/src/node/launch.ts";
import { startNodeFromFile } from "../offchain/src/node/run.ts";
import type { CellNode } from "../offchain/src/node/index.ts";

await withNodeFlags();

export interface ScaleNodeParams {
  configFile: string;
  bootstrap: string[];
  /** Donors a buyer waits to see staked; 0 for a donor. */
  donors: number;
  discoveryTimeoutMs: number;
  /** The jobs' WebAssembly module, base64 (buyer only). */
  module: string;
}

/** Percentiles are NaN (null once sent as JSON) when no job completed. */
export interface LatencyFigures {
  p50: number | null;
  p95: number | null;
  max: number | null;
  jobs: number;
  failed: number;
}

export interface LoadFigures {
  completed: number;
  failed: number;
  seconds: number;
}

const lines = createInterface({ input: process.stdin });
const commands = lines[Symbol.asyncIterator]();
const first = await commands.next();
if (first.done === true) process.exit(1);
const params = JSON.parse(first.value) as ScaleNodeParams;
const node = await startNodeFromFile(params.configFile, { bootstrap: params.bootstrap });
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await node.stop();
  process.exit(code);
};
process.on("SIGTERM", () => void stop(0));
lines.once("close", () => void stop(0));
writeLine({ started: { peerId: node.peerId, at: Date.now() } });
if (params.donors > 0) void watchDiscovery(node, params.donors, params.discoveryTimeoutMs);

const module = new Uint8Array(Buffer.from(params.module, "base64"));
let sequence = 0;
for await (const line of commands) {
  const command = JSON.parse(line) as {
    cmd: string;
    jobs?: number;
    maxSeconds?: number;
    seconds?: number;
    concurrency?: number;
  };
  try {
    if (command.cmd === "stats") writeLine({ stats: node.meshStats() });
    else if (command.cmd === "buyer") {
      const { bidRequestsTo: _perDonor, ...stats } = node.stats().buyer;
      writeLine({ buyer: stats });
    } else if (command.cmd === "peers")
      writeLine({
        peers: node.peers().map(({ peerId, staked, connected }) => ({ peerId, staked, connected })),
      });
    else if (command.cmd === "jobs")
      writeLine({ latency: await sequential(command.jobs ?? 0, command.maxSeconds ?? 60) });
    else if (command.cmd === "load")
      writeLine({ load: await load(command.seconds ?? 10, command.concurrency ?? 1) });
    else throw new Error(`unknown command ${command.cmd}`);
  } catch (err) {
    process.stderr.write(`scale node failed: ${(err as Error).stack ?? String(err)}\n`);
    await stop(1);
  }
}

async function runOne(): Promise<number> {
  const started = performance.now();
  const { jobId } = await node.submitJob({
    module,
    input: new TextEncoder().encode(`job ${sequence++}`),
    fuelLimit: 1_000_000n,
  });
  const view = await node.waitForJob(jobId, { timeoutMs: 60_000 });
  if (view.state !== "completed") throw new Error(`job ${jobId} ended ${view.state}: ${view.reason}`);
  return performance.now() - started;
}

async function sequential(jobs: number, maxSeconds: number): Promise<LatencyFigures> {
  const latencies: number[] = [];
  let failed = 0;
  const endAt = performance.now() + maxSeconds * 1000;
  while (latencies.length + failed < jobs && performance.now() < endAt) {
    try {
      latencies.push(await runOne());
    } catch {
      failed++;
    }
  }
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { p50: at(0.5), p95: at(0.95), max: latencies.at(-1) ?? NaN, jobs: latencies.length, failed };
}

async function load(seconds: number, concurrency: number): Promise<LoadFigures> {
  let completed = 0;
  let failed = 0;
  const started = performance.now();
  const endAt = started + seconds * 1000;
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
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { completed, failed, seconds: (performance.now() - started) / 1000 };
}

async function watchDiscovery(buyer: CellNode, donors: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  /** When each donor was first seen staked, and first connected. Bound: the donors of the benchmark. */
  const firstSeen: Record<string, number> = {};
  const firstConnected: Record<string, number> = {};
  for (;;) {
    const views = buyer.peers();
    for (const view of views) {
      if (view.staked === true) firstSeen[view.peerId] ??= Date.now();
      if (view.connected === true) firstConnected[view.peerId] ??= Date.now();
    }
    const staked = views.filter((peer) => peer.staked === true).length;
    // donors whose adverts arrived, staked or not yet known to be
    const advertised = views.filter((peer) => peer.operator !== undefined).length;
    if (`${staked}/${advertised}` !== last) {
      last = `${staked}/${advertised}`;
      writeLine({ seen: staked, advertised, at: Date.now() });
    }
    if (staked >= donors || Date.now() > deadline) {
      const connections = buyer.meshStats().connections;
      writeLine({ discovered: { seen: staked, at: Date.now(), connections, firstSeen, firstConnected } });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function writeLine(value: object): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
