import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Groth16Proof, VerificationKey } from "snarkjs";
import type { CircuitInput, CircuitParams } from "./witness.ts";

const PROVER_WORKER = new URL("./prover-worker.ts", import.meta.url);
const BUILD_DIR = new URL("../../../circuits/build/", import.meta.url);

/** One ceremony's outputs, as scripts/zk-ceremony.ts wrote them. */
export interface CircuitArtifacts {
  instance: string;
  wasm: string;
  zkey: string;
  verificationKey: string;
  params: CircuitParams;
  constraints: number;
  publicInputs: number;
  /** sha256 (hex) of each file above, from the manifest; the prover checks them before loading. */
  sha256: { wasm: string; zkey: string; verificationKey: string };
}

interface Manifest {
  instance: string;
  params: { depth: number; queueSlots: number; batchSize: number; power: number };
  constraints: number;
  publicInputs: number;
  artifacts: Record<string, { sha256: string }>;
}

/** Paths and parameters of a built instance (`ci` is committed; others come from the ceremony script). */
export function circuitArtifacts(instance: string, buildDir: URL | string = BUILD_DIR): CircuitArtifacts {
  const dir = typeof buildDir === "string" ? buildDir : fileURLToPath(buildDir);
  const base = `${dir.replace(/\/$/, "")}/${instance}`;
  const manifestFile = `${base}/manifest.json`;
  if (!existsSync(manifestFile))
    throw new Error(
      `no zk circuit "${instance}" at ${base}: run scripts/zk-ceremony.ts --instance ${instance}`,
    );
  const manifest = JSON.parse(readFileSync(manifestFile, "utf8")) as Manifest;
  const { depth, queueSlots, batchSize } = manifest.params;
  const hashOf = (file: string): string => {
    const entry = Object.entries(manifest.artifacts).find(([path]) => path.endsWith(`/${instance}/${file}`));
    if (entry === undefined) throw new Error(`${manifestFile} lists no sha256 for ${file}`);
    return entry[1].sha256;
  };
  return {
    instance,
    sha256: {
      wasm: hashOf("settle.wasm"),
      zkey: hashOf("settle.zkey"),
      verificationKey: hashOf("verification_key.json"),
    },
    wasm: `${base}/settle.wasm`,
    zkey: `${base}/settle.zkey`,
    verificationKey: `${base}/verification_key.json`,
    params: { depth, queueSlots, batchSize },
    constraints: manifest.constraints,
    publicInputs: manifest.publicInputs,
  };
}

/**
 * Refuses files that are not the ones the ceremony wrote (a stale or half-copied key, or a
 * Git LFS pointer in place of the zkey): proofs from them would never verify on chain.
 */
export function checkArtifactHashes(artifacts: CircuitArtifacts): void {
  for (const name of ["wasm", "zkey", "verificationKey"] as const) {
    const file = artifacts[name];
    if (!existsSync(file)) throw new Error(`zk circuit "${artifacts.instance}": ${file} is missing`);
    const actual = createHash("sha256").update(readFileSync(file)).digest("hex");
    if (actual !== artifacts.sha256[name])
      throw new Error(
        `zk circuit "${artifacts.instance}": ${file} has sha256 ${actual}, the manifest says ${artifacts.sha256[name]}`,
      );
  }
}

export function loadVerificationKey(artifacts: CircuitArtifacts): VerificationKey {
  return JSON.parse(readFileSync(artifacts.verificationKey, "utf8")) as VerificationKey;
}

export type ProveStage = "witness" | "prove";

export interface ProveResult {
  proof: Groth16Proof;
  publicSignals: bigint[];
  seconds: number;
  /** CPU the prover process spent on this proof, its proving threads included. */
  cpuSeconds: number;
}

type WorkerMessage =
  | { type: "ready" }
  | { type: "progress"; id: number; stage: ProveStage }
  | {
      type: "done";
      id: number;
      proof: Groth16Proof;
      publicSignals: string[];
      seconds: number;
      cpuSeconds: number;
    }
  | { type: "failed"; id: number; message: string };

interface Pending {
  resolve: (result: ProveResult) => void;
  reject: (error: Error) => void;
  onProgress: ((stage: ProveStage) => void) | undefined;
}

/**
 * A Groth16 prover in a child process that keeps the circuit's wasm, proving key and curve
 * loaded between proofs (snarkjs's own thread pool cannot start inside a worker thread, and
 * proving on one thread is twice as slow on 2 cores). Requests are answered in order; at most
 * MAX_PENDING wait at once (a settler proves one batch at a time, so more means a caller is looping).
 */
export class ZkProver {
  static readonly MAX_PENDING = 4;
  readonly artifacts: CircuitArtifacts;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #failure: Error | null = null;

  private constructor(artifacts: CircuitArtifacts, child: ChildProcess) {
    this.artifacts = artifacts;
    this.#child = child;
    child.on("message", (message: WorkerMessage) => this.#onMessage(message));
    child.on("error", (error) => this.#failAll(error));
    child.on("exit", (code, signal) =>
      this.#failAll(new Error(`the prover process exited (${signal ?? `code ${code}`})`)),
    );
  }

  /** Starts the process and resolves once it has loaded the circuit. */
  static async start(artifacts: CircuitArtifacts): Promise<ZkProver> {
    checkArtifactHashes(artifacts);
    const child = fork(fileURLToPath(PROVER_WORKER), [artifacts.wasm, artifacts.zkey], {
      execArgv: [],
      stdio: ["ignore", "ignore", "pipe", "ipc"],
    });
    // The last 2,000 characters of the child's stderr, for the start-up error.
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2000);
    });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: WorkerMessage) => {
        if (message.type !== "ready") return;
        child.off("message", onMessage);
        child.off("exit", onExit);
        resolve();
      };
      const onExit = (code: number | null) =>
        reject(new Error(`the zk prover did not start (code ${code}): ${stderr}`));
      child.on("message", onMessage);
      child.once("exit", onExit);
      child.once("error", reject);
    });
    return new ZkProver(artifacts, child);
  }

  prove(input: CircuitInput, onProgress?: (stage: ProveStage) => void): Promise<ProveResult> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (this.#pending.size >= ZkProver.MAX_PENDING)
      return Promise.reject(new Error(`zk prover: ${ZkProver.MAX_PENDING} proofs already waiting`));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#child.send({ id, input });
    });
  }

  async terminate(): Promise<void> {
    this.#failAll(new Error("the zk prover was stopped"));
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once("exit", resolve));
    this.#child.kill();
    await exited;
  }

  #onMessage(message: WorkerMessage): void {
    if (message.type === "ready") return;
    const pending = this.#pending.get(message.id);
    if (pending === undefined) return;
    if (message.type === "progress") {
      pending.onProgress?.(message.stage);
      return;
    }
    this.#pending.delete(message.id);
    if (message.type === "failed") pending.reject(new Error(`zk proof failed: ${message.message}`));
    else
      pending.resolve({
        proof: message.proof,
        publicSignals: message.publicSignals.map(BigInt),
        seconds: message.seconds,
        cpuSeconds: message.cpuSeconds,
      });
  }

  #failAll(error: Error): void {
    this.#failure ??= error;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}

/**
 * The proof as the generated Solidity verifier takes it, flattened:
 * `[a.x, a.y, b.x1, b.x0, b.y1, b.y0, c.x, c.y]` — `_pA = [0..1]`, `_pB = [[2, 3], [4, 5]]`,
 * `_pC = [6..7]`. snarkjs stores G2 coordinates as (c0, c1); the precompile wants (c1, c0).
 */
export function proofToCalldata(proof: Groth16Proof): bigint[] {
  const [a, b, c] = [proof.pi_a, proof.pi_b, proof.pi_c];
  const coordinate = (value: string | undefined): bigint => {
    if (value === undefined) throw new Error("the proof is missing a coordinate");
    return BigInt(value);
  };
  return [
    coordinate(a[0]),
    coordinate(a[1]),
    coordinate(b[0]?.[1]),
    coordinate(b[0]?.[0]),
    coordinate(b[1]?.[1]),
    coordinate(b[1]?.[0]),
    coordinate(c[0]),
    coordinate(c[1]),
  ];
}

/** Checks a proof against a verification key off-chain (false for any malformed input). */
export async function verifyOffchain(
  vkey: VerificationKey,
  publicSignals: readonly bigint[],
  proof: Groth16Proof,
): Promise<boolean> {
  try {
    // loaded here, not with the module: ~80 ms of start-up that a node without zk never needs
    const snarkjs = await import("snarkjs");
    return await snarkjs.groth16.verify(vkey, publicSignals.map(String), proof);
  } catch {
    return false;
  }
}

/** Frees the curve (and its threads) that snarkjs keeps in this thread after verifyOffchain. */
export async function releaseZkCurve(): Promise<void> {
  const holder = globalThis as { curve_bn128?: { terminate(): Promise<void> } | null };
  const curve = holder.curve_bn128;
  if (curve) await curve.terminate();
}
