// `npm run bench -- store`: cost of one job's store writes on a real file (WAL,
// synchronous=FULL), as a busy buyer makes them: jobs.insert with a ~1 KB spec, 8 events,
// 4 bids, an assignment insert + update, 3 job updates, a receipt and 2 blocks.
// Part 1 times each repository call inside one transaction per group of jobs; part 2 runs
// the same writes through store.commit (group commit), once as one queued write per call
// and once as one queued write per job, with the read and write system calls and bytes
// written per job. Job ids are hashes, as on a node. Last line: one JSON object.
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cidOf } from "../offchain/src/protocol/index.ts";
import { openStore, type Store } from "../offchain/src/store/index.ts";

const GROUP_JOBS = 20;
const GROUPS = 150;
const WARMUP_GROUPS = 10;
const EVENTS_PER_JOB = 8;
const BIDS_PER_JOB = 4;

interface JobWrites {
  jobId: string;
  spec: Record<string, unknown>;
  bids: Array<{ bidder: string; operator: string; message: Record<string, unknown> }>;
  blocks: Array<{ cid: string; bytes: Uint8Array }>;
  receipt: Record<string, unknown>;
}

const hex = (n: number, seed: number) =>
  `0x${Array.from({ length: n }, (_, i) => ((seed * 31 + i * 7) % 256).toString(16).padStart(2, "0")).join("")}`;
const address = (seed: number) => hex(20, seed);
const SIGNATURE = hex(65, 3);

async function jobWrites(index: number): Promise<JobWrites> {
  // Job ids are hashes: each job's rows land on random pages of every index keyed by job.
  const jobId = `0x${createHash("sha256").update(String(index)).digest("hex")}`;
  const spec = {
    announce: {
      jobId,
      buyer: address(index),
      moduleCid: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
      inputCid: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
      maxFuel: 5_000_000_000n,
      maxPricePerMegaFuel: 1_200_000_000_000n,
      deadline: 1_900_000_000_000 + index,
      redundancy: 3,
      nonce: BigInt(index),
      moduleSize: 48_213,
      inputSize: 512,
      buyerPeer: `12D3KooW${"A".repeat(44)}`,
      providerAddrs: Array.from(
        { length: 4 },
        (_, i) => `/ip4/10.0.0.${i}/tcp/4${i}001/p2p/12D3KooW${"B".repeat(44)}`,
      ),
      signature: SIGNATURE,
    },
  };
  const blocks = await Promise.all(
    [256, 1024].map(async (size, i) => {
      const bytes = new Uint8Array(size).map((_, j) => (index * 13 + i * 7 + j) % 256);
      new DataView(bytes.buffer).setUint32(0, index);
      return { cid: (await cidOf(bytes)).toString(), bytes };
    }),
  );
  const bids = Array.from({ length: BIDS_PER_JOB }, (_, i) => ({
    bidder: `12D3KooW${String(i).repeat(44)}`,
    operator: address(i + 1),
    message: {
      jobId,
      executor: address(i + 1),
      pricePerMegaFuel: 1_000_000n + BigInt(i),
      expiresAt: 1_900_000_000n,
    },
  }));
  const receipt = {
    jobId,
    executor: address(1),
    outputCid: blocks[1]!.cid,
    fuelUsed: 123_456_789n,
    pricePerMegaFuel: 1_000_000n,
    nonce: BigInt(index),
  };
  return { jobId, spec, bids, blocks, receipt };
}

type Step = readonly [call: string, write: () => unknown];

/** One job's writes, in the order a buyer makes them, one step per repository call. */
function jobSteps(store: Store, job: JobWrites): Step[] {
  const { jobId } = job;
  let assignmentId = 0;
  const steps: Step[] = job.blocks.map((block) => [
    "blocks.putWithCid",
    () => void store.blocks.putWithCid(block.cid, block.bytes),
  ]);
  steps.push([
    "jobs.insert",
    () =>
      store.jobs.insert({
        jobId,
        role: "buyer",
        spec: job.spec,
        state: "queued",
        priority: "normal",
        deadline: 1_900_000_000_000,
      }),
  ]);
  for (let i = 0; i < EVENTS_PER_JOB; i++) {
    const bid = job.bids[i % BIDS_PER_JOB]!;
    steps.push([
      "jobEvents.append",
      () =>
        store.jobEvents.append({
          jobId,
          kind: i === 0 ? "announced" : "bid_received",
          peer: bid.bidder,
          data: { operator: bid.operator, pricePerMegaFuel: "1000000" },
        }),
    ]);
  }
  for (const bid of job.bids) {
    const row = {
      jobId,
      bidder: bid.bidder,
      operator: bid.operator,
      pricePerMegaFuel: 1_000_000n,
      message: bid.message,
      signature: SIGNATURE,
    };
    steps.push(["bids.insert", () => store.bids.insert(row, { ifAbsent: true })]);
  }
  const executor = job.bids[0]!;
  steps.push([
    "assignments.insert",
    () => {
      assignmentId = store.assignments.insert({
        jobId,
        executor: executor.bidder,
        operator: executor.operator,
        attempt: 1,
        deadline: 1_900_000_000_000,
      }).id;
    },
  ]);
  steps.push(["jobs.update", () => store.jobs.update(jobId, { state: "assigned" })]);
  steps.push([
    "receipts.put",
    () =>
      store.receipts.put({ jobId, executor: executor.operator, message: job.receipt, signature: SIGNATURE }),
  ]);
  steps.push([
    "jobs.update",
    () => store.jobs.update(jobId, { result: { outputCid: job.blocks[1]!.cid, fuelUsed: "123456789" } }),
  ]);
  steps.push([
    "assignments.update",
    () => store.assignments.update(assignmentId, { state: "completed", reason: null }),
  ]);
  steps.push(["jobs.update", () => store.jobs.update(jobId, { state: "completed", reason: null })]);
  return steps;
}

const measuredJobs = (GROUPS - WARMUP_GROUPS) * GROUP_JOBS;

/** Runs `run` on a store in a fresh directory, removed afterwards (also when `run` is async). */
function withFreshStore<T>(run: (store: Store) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "cell-bench-store-"));
  const store = openStore(dir);
  const cleanUp = () => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  };
  let result: T;
  try {
    result = run(store);
  } catch (error) {
    cleanUp();
    throw error;
  }
  if (result instanceof Promise) return result.finally(cleanUp) as T;
  cleanUp();
  return result;
}

/** Part 1: µs per job for each repository call, and for the COMMIT (fsync) of each group. */
function timeCalls(jobs: JobWrites[]): { perCall: Map<string, number>; commitUs: number } {
  const nanos = new Map<string, bigint>();
  let commitNanos = 0n;
  withFreshStore((store) => {
    for (let group = 0; group < GROUPS; group++) {
      const measuring = group >= WARMUP_GROUPS;
      let committing = 0n;
      store.transaction(() => {
        for (const job of jobs.slice(group * GROUP_JOBS, (group + 1) * GROUP_JOBS)) {
          for (const [call, write] of jobSteps(store, job)) {
            const started = process.hrtime.bigint();
            write();
            if (measuring) nanos.set(call, (nanos.get(call) ?? 0n) + process.hrtime.bigint() - started);
          }
        }
        committing = process.hrtime.bigint();
      });
      if (measuring) commitNanos += process.hrtime.bigint() - committing;
    }
  });
  const perCall = new Map([...nanos].map(([call, ns]) => [call, Number(ns) / 1000 / measuredJobs]));
  return { perCall, commitUs: Number(commitNanos) / 1000 / measuredJobs };
}

/**
 * Part 2: wall and CPU µs per job through store.commit, GROUP_JOBS jobs per group commit,
 * queuing either one write per repository call or one write per job.
 */
async function timeGroupCommits(
  jobs: JobWrites[],
  queue: "call" | "job",
): Promise<{ wallUs: number; cpuUs: number; io: FileIo }> {
  let wall = 0n;
  let cpu = 0;
  const io: FileIo = { reads: 0, writes: 0, kbWritten: 0 };
  await withFreshStore(async (store) => {
    for (let group = 0; group < GROUPS; group++) {
      const startedWall = process.hrtime.bigint();
      const startedCpu = process.cpuUsage();
      const startedIo = fileIo();
      const pending: Array<Promise<unknown>> = [];
      for (const job of jobs.slice(group * GROUP_JOBS, (group + 1) * GROUP_JOBS)) {
        const steps = jobSteps(store, job);
        if (queue === "call") for (const [, write] of steps) pending.push(store.commit(write));
        else pending.push(store.commit(() => steps.forEach(([, write]) => write())));
      }
      await Promise.all(pending);
      if (group < WARMUP_GROUPS) continue;
      wall += process.hrtime.bigint() - startedWall;
      const used = process.cpuUsage(startedCpu);
      cpu += used.user + used.system;
      const doneIo = fileIo();
      io.reads += doneIo.reads - startedIo.reads;
      io.writes += doneIo.writes - startedIo.writes;
      io.kbWritten += doneIo.kbWritten - startedIo.kbWritten;
    }
  });
  const perJob = (count: number) => count / measuredJobs;
  return {
    wallUs: Number(wall) / 1000 / measuredJobs,
    cpuUs: cpu / measuredJobs,
    io: { reads: perJob(io.reads), writes: perJob(io.writes), kbWritten: perJob(io.kbWritten) },
  };
}

interface FileIo {
  reads: number;
  writes: number;
  kbWritten: number;
}

/** This process's read and write system calls and KB handed to write calls so far (Linux). */
function fileIo(): FileIo {
  const io = readFileSync("/proc/self/io", "utf8");
  const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(io)?.[1] ?? 0);
  return { reads: field("syscr"), writes: field("syscw"), kbWritten: field("wchar") / 1024 };
}

const jobs = await Promise.all(Array.from({ length: GROUPS * GROUP_JOBS }, (_, i) => jobWrites(i)));
const { perCall, commitUs } = timeCalls(jobs);
const round = (us: number) => Math.round(us * 10) / 10;

console.log(
  `store writes per job (µs), ${GROUP_JOBS} jobs per transaction, ${GROUPS - WARMUP_GROUPS} groups:`,
);
let writesPerJobUs = 0;
for (const [call, us] of perCall) {
  writesPerJobUs += us;
  console.log(`  ${call.padEnd(20)} ${round(us).toFixed(1).padStart(8)}`);
}
console.log(`  ${"all calls".padEnd(20)} ${round(writesPerJobUs).toFixed(1).padStart(8)}`);
console.log(`  ${"COMMIT (fsync)".padEnd(20)} ${round(commitUs).toFixed(1).padStart(8)}`);

const perCallQueue = await timeGroupCommits(jobs, "call");
const perJobQueue = await timeGroupCommits(jobs, "job");
for (const [label, figures] of [
  ["one queued write per call", perCallQueue],
  ["one queued write per job", perJobQueue],
] as const) {
  console.log(
    `store.commit, ${label}: ${round(figures.wallUs).toFixed(1)} µs wall, ${round(figures.cpuUs).toFixed(1)} µs CPU, ` +
      `${round(figures.io.reads)} reads, ${round(figures.io.writes)} writes, ${round(figures.io.kbWritten)} KB written per job`,
  );
}

console.log(
  JSON.stringify({
    writesPerJobUs: round(writesPerJobUs),
    commitPerJobUs: round(commitUs),
    groupCommitPerCallCpuUs: round(perCallQueue.cpuUs),
    groupCommitPerJobCpuUs: round(perJobQueue.cpuUs),
    groupCommitPerCallWallUs: round(perCallQueue.wallUs),
    groupCommitPerJobWallUs: round(perJobQueue.wallUs),
    groupCommitPerJobIo: {
      reads: round(perJobQueue.io.reads),
      writes: round(perJobQueue.io.writes),
      kbWritten: round(perJobQueue.io.kbWritten),
    },
    calls: Object.fromEntries([...perCall].map(([call, us]) => [call, round(us)])),
  }),
);
