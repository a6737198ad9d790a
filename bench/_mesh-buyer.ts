// The buyer of `npm run bench -- mesh`, run in its own process like an application that
// embeds a node: started as `node bench/_mesh-buyer.ts`, it reads its parameters as one
// JSON line on stdin, starts the node with the runner's flags and logging (run.ts), waits
// for the donors, then runs the warm-up, the sequential latency phase and the throughput
// phase. On stdout it writes {"phase":"throughput"} when the throughput phase starts and
// then its figures as one JSON line. It stops its node when stdin closes or on SIGTERM.
import { withNodeFlags } from "../offchain/src/node/launch.ts";
import { startNodeFromFile } from "../offchain/src/node/run.ts";
import { firstLine, percentile, requireCounts, waitForDonors, writeLine } from "./_line-child.ts";

await withNodeFlags();

export interface MeshBuyerParams {
  configFile: string;
  bootstrap: string[];
  donors: number;
  warmupJobs: number;
  latencyJobs: number;
  seconds: number;
  concurrency: number;
  /** Jobs started per second in the throughput phase; 0 starts the next as soon as one ends. */
  rate: number;
  /** The job's WebAssembly module, base64. */
  module: string;
}

export interface MeshBuyerFigures {
  latencyMs: { p50: number; p95: number; max: number };
  completed: number;
  failed: number;
  seconds: number;
}

const params = parseParams(await firstLine(process.stdin));
const node = await startNodeFromFile(params.configFile, { bootstrap: params.bootstrap });
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await node.stop();
  process.exit(code);
};
process.on("SIGTERM", () => void stop(0));
process.stdin.on("end", () => void stop(0));
process.stdin.resume();

try {
  await waitForDonors(node, params.donors, 30_000);
  const module = new Uint8Array(Buffer.from(params.module, "base64"));
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

  for (let i = 0; i < params.warmupJobs; i++) await runOne(); // connections, caches and the JIT
  const latencies: number[] = [];
  for (let i = 0; i < params.latencyJobs; i++) latencies.push(await runOne());
  latencies.sort((a, b) => a - b);

  writeLine({ phase: "throughput" });
  let completed = 0;
  let failed = 0;
  const started = performance.now();
  const endAt = started + params.seconds * 1000;
  // With a rate, jobs start on a fixed schedule, so two builds compared at the same rate do the
  // same work per second and CPU per job compares the work per job alone.
  const spacingMs = params.rate > 0 ? 1000 / params.rate : 0;
  let nextStartAt = started;
  const worker = async () => {
    while (performance.now() < endAt) {
      if (spacingMs > 0) {
        const startAt = (nextStartAt += spacingMs);
        const wait = startAt - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (performance.now() >= endAt) break;
      }
      try {
        await runOne();
        completed++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: params.concurrency }, worker));
  const figures: MeshBuyerFigures = {
    latencyMs: {
      p50: percentile(latencies, 0.5),
      p95: percentile(latencies, 0.95),
      max: latencies.at(-1) ?? NaN,
    },
    completed,
    failed,
    seconds: (performance.now() - started) / 1000,
  };
  writeLine(figures);
} catch (err) {
  process.stderr.write(`mesh buyer failed: ${(err as Error).stack ?? String(err)}\n`);
  await stop(1);
}

function parseParams(line: string): MeshBuyerParams {
  const value = JSON.parse(line) as Partial<MeshBuyerParams>;
  requireCounts(value, ["donors", "warmupJobs", "latencyJobs", "seconds", "concurrency", "rate"]);
  if (typeof value.configFile !== "string") throw new Error("parameter configFile must be a path");
  if (!Array.isArray(value.bootstrap)) throw new Error("parameter bootstrap must be a list of multiaddrs");
  if (typeof value.module !== "string") throw new Error("parameter module must be base64");
  return value as MeshBuyerParams;
}
