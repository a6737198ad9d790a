// The settlement circuit's trusted setup (docs/zk.md, "Ceremony").
//
//   node scripts/zk-ceremony.ts --instance ci --depth 4 --queue 2 --batch 2 --power 15
//   node scripts/zk-ceremony.ts --instance ci --depth 4 --queue 2 --batch 2 --power 15 --check
//   node scripts/zk-ceremony.ts --instance prod --depth 20 --queue 8 --batch 62 --power 20 --contribute --ptau <file>
//
// Writes circuits/instances/<instance>.circom, compiles it, runs phase 1 (powers of tau) and the
// circuit's phase 2, and writes circuits/build/<instance>/{settle.wasm, settle.zkey,
// verification_key.json, manifest.json} and contracts/zk/<Instance>SettleVerifier.sol.
// Without --contribute every random choice is a public beacon, so two runs give byte-identical
// keys (dev keys: anyone can rerun the beacon and forge proofs). --contribute mixes in fresh
// entropy instead; --ptau <file> starts from an existing phase-1 file (e.g. a public ceremony's).
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { pino } from "pino";
import * as snarkjs from "snarkjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CACHE = join(ROOT, ".cell", "zk-cache");
const require = createRequire(import.meta.url);
// snarkjs exports only its entry (build/main.cjs); its package root is one level up.
const SNARKJS_ROOT = resolve(dirname(require.resolve("snarkjs")), "..");
const MAX_COMMITTED_BYTES = 25 * 1024 * 1024;
/** Public beacons: fixed strings hashed, so the dev setup is reproducible and visibly not secret. */
const PHASE1_BEACON = sha256Hex("cell.zk.v1 phase 1 beacon");
const PHASE2_BEACON = sha256Hex("cell.zk.v1 phase 2 beacon");
const BEACON_ITERATIONS_EXP = 10;

const log = pino({ name: "zk-ceremony", level: process.env.LOG_LEVEL ?? "info" });
const snarkLog: snarkjs.SnarkLogger = {
  debug: () => {},
  info: (message) => log.debug(message),
  warn: (message) => log.warn(message),
  error: (message) => log.error(message),
};

interface Options {
  instance: string;
  depth: number;
  queue: number;
  batch: number;
  power: number;
  contribute: boolean;
  /** Fail unless the artifacts come out byte-identical to the committed manifest's. */
  check: boolean;
  ptau: string | null;
}

function sha256Hex(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex");
}

function fileSha256(file: string): string {
  return sha256Hex(readFileSync(file));
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      instance: { type: "string" },
      depth: { type: "string" },
      queue: { type: "string" },
      batch: { type: "string" },
      power: { type: "string" },
      contribute: { type: "boolean", default: false },
      check: { type: "boolean", default: false },
      ptau: { type: "string" },
    },
  });
  const integer = (name: "depth" | "queue" | "batch" | "power", min: number, max: number): number => {
    const value = Number(values[name]);
    if (values[name] === undefined || !Number.isInteger(value) || value < min || value > max)
      throw new Error(`--${name} must be an integer in ${min}..${max} (got ${values[name] ?? "nothing"})`);
    return value;
  };
  const instance = values.instance ?? "";
  if (!/^[a-z][a-z0-9]*$/.test(instance))
    throw new Error(`--instance must be a lowercase name (got "${instance}")`);
  if (values.check && values.contribute)
    throw new Error("--check needs the beacon-only setup: --contribute is random by design");
  return {
    instance,
    depth: integer("depth", 1, 30),
    queue: integer("queue", 1, 64),
    batch: integer("batch", 1, 512),
    power: integer("power", 10, 28),
    contribute: values.contribute ?? false,
    check: values.check ?? false,
    ptau: values.ptau ?? null,
  };
}

/** Runs `step`, logs its start and end, and records its seconds. */
async function timed<T>(seconds: Record<string, number>, step: string, run: () => Promise<T>): Promise<T> {
  log.info({ step }, `${step}: started`);
  const start = performance.now();
  const result = await run();
  seconds[step] = Math.round(performance.now() - start) / 1000;
  log.info({ step, seconds: seconds[step] }, `${step}: done in ${seconds[step]} s`);
  return result;
}

function instanceSource(o: Options): string {
  return [
    "pragma circom 2.1.0;",
    "",
    'include "../settle.circom";',
    "",
    `// Instance "${o.instance}": a depth-${o.depth} tree, ${o.queue} queue slots, ${o.batch} transfers per proof.`,
    `component main {public [domainTag, oldRoot, newRoot, oldQueueHash, newQueueHash, transfers]} = SettleBatch(${o.depth}, ${o.queue}, ${o.batch});`,
    "",
  ].join("\n");
}

/**
 * circom2 runs as WASI with the working directory's ancestors preopened and cannot follow a
 * symlinked node_modules, so it runs from `/` with real absolute paths.
 */
async function compile(source: string, outDir: string): Promise<void> {
  const cli = require.resolve("circom2/cli.js");
  const library = dirname(require.resolve("circomlib/circuits/poseidon.circom"));
  const args = [cli, source, "--r1cs", "--wasm", "--O2", "-o", outDir, "-l", library];
  const output: string[] = [];
  const code = await new Promise<number | null>((done, fail) => {
    const child = spawn(process.execPath, args, { cwd: "/", stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    child.on("error", fail);
    child.on("close", done);
  });
  if (code !== 0) throw new Error(`circom failed on ${source}:\n${output.join("")}`);
}

/** Phase 1: a fresh accumulator, a contribution (with --contribute), a beacon, then phase-2 preparation. */
async function phase1(o: Options, seconds: Record<string, number>): Promise<string> {
  if (o.ptau !== null) {
    if (!existsSync(o.ptau)) throw new Error(`--ptau ${o.ptau} does not exist`);
    return o.ptau;
  }
  const tag = o.contribute ? `contributed-${Date.now()}` : `beacon-${PHASE1_BEACON.slice(0, 12)}`;
  const prepared = join(CACHE, `pot${o.power}-${tag}-prepared.ptau`);
  if (existsSync(prepared)) {
    log.info({ file: prepared }, "phase 1: using the cached prepared powers of tau");
    return prepared;
  }
  const fresh = join(CACHE, `pot${o.power}-${tag}-0.ptau`);
  const contributed = join(CACHE, `pot${o.power}-${tag}-1.ptau`);
  const beaconed = join(CACHE, `pot${o.power}-${tag}-2.ptau`);
  const curve = await snarkjs.curves.getCurveFromName("bn128");
  await timed(seconds, "phase1 new", () =>
    snarkjs.powersOfTau.newAccumulator(curve, o.power, fresh, snarkLog),
  );
  let last = fresh;
  if (o.contribute) {
    await timed(seconds, "phase1 contribute", () =>
      snarkjs.powersOfTau.contribute(
        fresh,
        contributed,
        "cell contribution",
        randomBytes(64).toString("hex"),
        snarkLog,
      ),
    );
    last = contributed;
  }
  await timed(seconds, "phase1 beacon", () =>
    snarkjs.powersOfTau.beacon(
      last,
      beaconed,
      "cell phase 1 beacon",
      PHASE1_BEACON,
      BEACON_ITERATIONS_EXP,
      snarkLog,
    ),
  );
  await timed(seconds, "phase1 prepare phase2", () =>
    snarkjs.powersOfTau.preparePhase2(beaconed, `${prepared}.partial`, snarkLog),
  );
  renameSync(`${prepared}.partial`, prepared);
  for (const file of [fresh, contributed, beaconed]) rmSync(file, { force: true });
  return prepared;
}

/** Phase 2: the circuit-specific key, a contribution (with --contribute), then a beacon. */
async function phase2(o: Options, r1cs: string, ptau: string, zkey: string, seconds: Record<string, number>) {
  const work = dirname(r1cs);
  const initial = join(work, "settle-0.zkey");
  const contributed = join(work, "settle-1.zkey");
  await timed(seconds, "groth16 setup", () => snarkjs.zKey.newZKey(r1cs, ptau, initial, snarkLog));
  let last = initial;
  if (o.contribute) {
    await timed(seconds, "phase2 contribute", () =>
      snarkjs.zKey.contribute(
        initial,
        contributed,
        "cell contribution",
        randomBytes(64).toString("hex"),
        snarkLog,
      ),
    );
    last = contributed;
  }
  await timed(seconds, "phase2 beacon", () =>
    snarkjs.zKey.beacon(last, zkey, "cell phase 2 beacon", PHASE2_BEACON, BEACON_ITERATIONS_EXP, snarkLog),
  );
}

function verifierName(instance: string): string {
  return `${instance[0]!.toUpperCase()}${instance.slice(1)}SettleVerifier`;
}

async function exportVerifier(zkey: string, name: string): Promise<string> {
  const template = readFileSync(join(SNARKJS_ROOT, "templates", "verifier_groth16.sol.ejs"), "utf8");
  const source = await snarkjs.zKey.exportSolidityVerifier(zkey, { groth16: template }, snarkLog);
  if (!source.includes("contract Groth16Verifier"))
    throw new Error("the generated verifier has an unexpected shape");
  const header = [
    `// Generated by scripts/zk-ceremony.ts from circuits/build/${name.replace(/SettleVerifier$/, "").toLowerCase()}/settle.zkey`,
    "// (snarkjs's Groth16 verifier template): do not edit, rerun the ceremony.",
    "/* solhint-disable */",
  ].join("\n");
  return source
    .replace("pragma solidity >=0.7.0 <0.9.0;", `${header}\npragma solidity ^0.8.27;`)
    .replace("contract Groth16Verifier", `contract ${name}`);
}

function committedHashes(manifestFile: string): Record<string, { sha256: string }> {
  if (!existsSync(manifestFile)) throw new Error(`--check: there is no ${manifestFile} to compare with`);
  return (JSON.parse(readFileSync(manifestFile, "utf8")) as { artifacts: Record<string, { sha256: string }> })
    .artifacts;
}

function compareWithCommitted(
  committed: Record<string, { sha256: string }>,
  produced: Record<string, { sha256: string }>,
): void {
  const differing = Object.keys(produced).filter(
    (file) => committed[file]?.sha256 !== produced[file]?.sha256,
  );
  if (differing.length > 0) throw new Error(`--check: not reproduced byte for byte: ${differing.join(", ")}`);
  log.info(
    { files: Object.keys(produced).length },
    "--check: every artifact is byte-identical to the committed one",
  );
}

async function main(): Promise<void> {
  const o = parseOptions();
  const seconds: Record<string, number> = {};
  const buildDir = join(ROOT, "circuits", "build", o.instance);
  const workDir = join(CACHE, o.instance);
  const verifierFile = join(ROOT, "contracts", "zk", `${verifierName(o.instance)}.sol`);
  for (const dir of [buildDir, workDir, CACHE, dirname(verifierFile)]) mkdirSync(dir, { recursive: true });
  log.info({ ...o }, "zk ceremony");

  const committed = o.check ? committedHashes(join(buildDir, "manifest.json")) : {};
  const source = join(ROOT, "circuits", "instances", `${o.instance}.circom`);
  writeFileSync(source, instanceSource(o));
  await timed(seconds, "compile", () => compile(source, workDir));
  const r1cs = join(workDir, `${o.instance}.r1cs`);
  const info = await snarkjs.r1cs.info(r1cs);
  const constraints = info.nConstraints;
  if (constraints + info.nPubInputs + 1 > 2 ** o.power)
    throw new Error(`${constraints} constraints do not fit 2^${o.power}: raise --power`);
  log.info({ constraints, power: o.power }, `${constraints} constraints`);

  const ptau = await phase1(o, seconds);
  const zkey = join(buildDir, "settle.zkey");
  await phase2(o, r1cs, ptau, zkey, seconds);
  const vkey = await timed(seconds, "export", async () => {
    const key = await snarkjs.zKey.exportVerificationKey(zkey, snarkLog);
    writeFileSync(join(buildDir, "verification_key.json"), `${JSON.stringify(key, null, 2)}\n`);
    writeFileSync(verifierFile, await exportVerifier(zkey, verifierName(o.instance)));
    return key;
  });
  copyFileSync(join(workDir, `${o.instance}_js`, `${o.instance}.wasm`), join(buildDir, "settle.wasm"));

  const artifacts: Record<string, { sha256: string; bytes: number }> = {};
  for (const file of [
    join(buildDir, "settle.wasm"),
    zkey,
    join(buildDir, "verification_key.json"),
    verifierFile,
    source,
  ]) {
    const bytes = statSync(file).size;
    if (bytes > MAX_COMMITTED_BYTES) log.warn({ file, bytes }, "over 25 MB: do not commit this file");
    artifacts[file.slice(ROOT.length + 1)] = { sha256: fileSha256(file), bytes };
  }
  const manifest = {
    instance: o.instance,
    params: { depth: o.depth, queueSlots: o.queue, batchSize: o.batch, power: o.power },
    constraints,
    publicInputs: vkey.nPublic,
    circuitSha256: fileSha256(join(ROOT, "circuits", "settle.circom")),
    verifierContract: verifierName(o.instance),
    setup: o.contribute
      ? {
          kind: "contributed",
          phase1: o.ptau ?? "fresh, one contribution + beacon",
          beaconIterationsExp: BEACON_ITERATIONS_EXP,
        }
      : {
          kind: "beacon-only (dev: forgeable by anyone who reruns it)",
          phase1Beacon: PHASE1_BEACON,
          phase2Beacon: PHASE2_BEACON,
          beaconIterationsExp: BEACON_ITERATIONS_EXP,
        },
    artifacts,
    seconds,
    tools: {
      snarkjs: (JSON.parse(readFileSync(join(SNARKJS_ROOT, "package.json"), "utf8")) as { version: string })
        .version,
      circom2: (require("circom2/package.json") as { version: string }).version,
      circomlib: (require("circomlib/package.json") as { version: string }).version,
    },
  };
  writeFileSync(join(buildDir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  log.info({ artifacts, seconds }, `ceremony for "${o.instance}" written to ${buildDir}`);
  if (o.check) compareWithCommitted(committed, artifacts);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  },
);
