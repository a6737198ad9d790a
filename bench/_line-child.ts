// Benchmark plumbing shared by the benchmarks that run an application in a child process
// of its own (bench/_mesh-buyer.ts, bench/_quorum-buyer.ts): the child reads its
// parameters as one JSON line on stdin and answers with JSON lines on stdout.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import type { CellNode } from "../offchain/src/node/index.ts";
import type { Cluster, ClusterNode } from "../test/e2e/cluster.ts";

/** A child process of a benchmark. */
export interface BenchProcess {
  name: string;
  process: ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface LineChild extends BenchProcess {
  /** The child's next JSON line on stdout; rejects if it exits or stays silent for `timeoutMs`. */
  nextLine<T = unknown>(timeoutMs: number): Promise<T>;
}

const STOP_GRACE_MS = 10_000;

/**
 * A benchmark's nodes, with the node's default timers: `donors` staked donors, each with one
 * runtime worker and `slots` slots, and a buyer that keeps up to 1,024 jobs in flight.
 */
export async function prepareBenchNodes(
  cluster: Cluster,
  donors: number,
  slots: number,
): Promise<{ donorNodes: ClusterNode[]; buyerNode: ClusterNode }> {
  const donorNodes = await Promise.all(
    Array.from({ length: donors }, (_, i) =>
      cluster.prepare(`donor${i + 1}`, {
        donor: true,
        stakeWith: i + 1,
        config: { donor: { slots }, runtime: { poolSize: 1 }, logLevel: "error" },
        defaultTimers: true,
      }),
    ),
  );
  const buyerNode = await cluster.prepare("buyer", {
    donor: false,
    config: { logLevel: "error", buyer: { maxInFlight: 1024 } },
    defaultTimers: true,
  });
  return { donorNodes, buyerNode };
}

/** Starts `script` and hands it `params` on stdin, which stays open: the child stops when it closes. */
export function startLineChild(name: string, script: string, params: object): LineChild {
  const child = spawn(process.execPath, [script], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const pending: string[] = [];
  let wake: (() => void) | undefined;
  createInterface({ input: child.stdout! }).on("line", (line) => {
    pending.push(line);
    wake?.();
  });
  child.stdin!.on("error", () => undefined);
  child.stdin!.write(`${JSON.stringify(params)}\n`);

  const nextLine = async <T>(timeoutMs: number): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    while (pending.length === 0) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}): ${stderr}`);
      if (Date.now() > deadline) throw new Error(`${name} was silent for ${timeoutMs} ms: ${stderr}`);
      await Promise.race([
        new Promise<void>((resolve) => (wake = resolve)),
        exited,
        new Promise((resolve) => setTimeout(resolve, 1_000)),
      ]);
    }
    return JSON.parse(pending.shift()!) as T;
  };
  return {
    name,
    process: child,
    nextLine,
    kill: async (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** SIGTERM, then SIGKILL if the process has not exited after STOP_GRACE_MS. */
export async function stopProcess(node: BenchProcess): Promise<void> {
  const timer = setTimeout(() => node.process.kill("SIGKILL"), STOP_GRACE_MS);
  try {
    await node.kill("SIGTERM");
  } finally {
    clearTimeout(timer);
  }
}

export interface IoCalls {
  reads: number;
  writes: number;
}

/** Read and write system calls (sockets and files) of a process so far. */
export function ioCalls(pid: number | undefined): IoCalls {
  try {
    const io = readFileSync(`/proc/${pid}/io`, "utf8");
    return { reads: Number(/syscr:\s+(\d+)/.exec(io)?.[1]), writes: Number(/syscw:\s+(\d+)/.exec(io)?.[1]) };
  } catch {
    return { reads: 0, writes: 0 };
  }
}

// ── inside the child ──

/** The first line of `input`: the child's parameters. */
export function firstLine(input: NodeJS.ReadStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const end = text.indexOf("\n");
      if (end === -1) return;
      input.off("end", onEnd);
      input.off("data", onData);
      resolve(text.slice(0, end));
    };
    const onEnd = () => reject(new Error("stdin closed before the parameters arrived"));
    input.on("data", onData);
    input.once("end", onEnd);
  });
}

export function writeLine(value: object): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export async function waitForDonors(node: CellNode, donors: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (node.peers().filter((peer) => peer.staked).length < donors) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${donors} donors`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Throws unless every listed key of `value` is a non-negative finite number. */
export function requireCounts(value: Record<string, unknown>, keys: readonly string[]): void {
  for (const key of keys) {
    const count = value[key];
    if (typeof count !== "number" || !Number.isFinite(count) || count < 0)
      throw new Error(`parameter ${key} must be a non-negative number, got ${String(count)}`);
  }
}
