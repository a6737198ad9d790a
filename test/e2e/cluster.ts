// A local Cell network for end-to-end tests and benchmarks: a Hardhat devnet with the
// contracts, node directories with keys, donors staked and registered on-chain, and nodes
// run in this process or as child processes.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Hex } from "viem";
import {
  createWriter,
  devnetPrivateKey,
  donorParams,
  mintAtp,
  registerDonor,
  serializeDeployment,
  stake,
  startDevnet,
} from "../../offchain/src/chain/index.ts";
import type { Devnet, DevnetOptions } from "../../offchain/src/chain/index.ts";
import { initIdentity } from "../../offchain/src/identity/index.ts";
import type { Identity } from "../../offchain/src/identity/index.ts";
import { loadConfig, startNode } from "../../offchain/src/node/index.ts";
import type { CellNode, NodeConfigInput, StartNodeOptions } from "../../offchain/src/node/index.ts";

export const PASSPHRASE = "cell-test-passphrase";
const SCRYPT_N = 2 ** 10;
const RUNNER = fileURLToPath(new URL("../../offchain/src/node/run.ts", import.meta.url));
/** Every node of a cluster listens on loopback: the mesh trusts it (see `network.trustedCidrs`). */
export const LOOPBACK_CIDRS = ["127.0.0.0/8"];
/** Hardhat funds this many development accounts; later ones get a balance before they stake. */
const FUNDED_ACCOUNTS = 20;
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

/**
 * Advert timers of a test node: a heartbeat of 2 s (so a buyer started after its donors
 * hears them within 2 s, and counts them alive for 5 s after the last word).
 */
export const TEST_ADVERT_TIMING = { heartbeatMs: 2_000, minIntervalMs: 500 };

export interface ClusterNode {
  name: string;
  dir: string;
  configFile: string;
  identity: Identity;
}

export interface Cluster {
  devnet: Devnet;
  root: string;
  deploymentFile: string;
  /**
   * Makes keys and a config for a node; `stakeWith` stakes and registers it from that devnet
   * account. The node's adverts, receipt batches and stake reads run on shortened timers so
   * tests need not wait, unless `defaultTimers` keeps the node's defaults.
   */
  prepare(
    name: string,
    options: { donor: boolean; stakeWith?: number; config?: NodeConfigInput; defaultTimers?: boolean },
  ): Promise<ClusterNode>;
  close(): Promise<void>;
}

export async function startCluster(devnetOptions: DevnetOptions = {}): Promise<Cluster> {
  const root = await mkdtemp(join(tmpdir(), "cell-e2e-"));
  const devnet = await startDevnet(devnetOptions);
  try {
    return await prepareCluster(root, devnet);
  } catch (err) {
    await devnet.stop();
    await rm(root, { recursive: true, force: true });
    throw err;
  }
}

async function prepareCluster(root: string, devnet: Devnet): Promise<Cluster> {
  const deploymentFile = join(root, "deployment.json");
  await writeFile(deploymentFile, serializeDeployment(devnet.deployment));
  const faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
  const minStake = (await donorParams(faucet)).minStake;
  let faucetQueue: Promise<unknown> = Promise.resolve();
  const mint = (to: Hex) => {
    const minted = faucetQueue.then(() => mintAtp(faucet, to, minStake));
    faucetQueue = minted.catch(() => undefined);
    return minted;
  };

  const prepare: Cluster["prepare"] = async (name, options) => {
    const dir = join(root, name);
    const identity = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: SCRYPT_N, force: true });
    if (options.stakeWith !== undefined)
      await stakeAndRegister(devnet, mint, options.stakeWith, identity, minStake);
    const config: NodeConfigInput = {
      ...options.config,
      dataDir: dir,
      passphrase: PASSPHRASE,
      api: { enabled: false },
      network: { trustedCidrs: LOOPBACK_CIDRS, ...options.config?.network },
      chain: {
        ...(options.defaultTimers ? {} : { stakePollMs: 1_000 }),
        rpcUrl: devnet.rpcUrl,
        deploymentFile,
      },
      donor: {
        enabled: options.donor,
        ...(options.defaultTimers ? {} : { receiptBatchMs: 1_000 }),
        ...options.config?.donor,
      },
      adverts: {
        ...(options.defaultTimers ? {} : TEST_ADVERT_TIMING),
        ...options.config?.adverts,
      },
      logLevel: options.config?.logLevel ?? "warn",
      // Nodes pay and are paid only in tests about payments (those that configure them):
      // the rest run unfunded buyers, which paying donors would decline.
      payments: options.config?.payments ?? { enabled: false },
    };
    const configFile = join(dir, "node.json");
    await writeFile(
      configFile,
      JSON.stringify(config, (_key, value) => (typeof value === "bigint" ? value.toString() : value)),
    );
    return { name, dir, configFile, identity };
  };

  return {
    devnet,
    root,
    deploymentFile,
    prepare,
    close: async () => {
      await devnet.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

async function stakeAndRegister(
  devnet: Devnet,
  mint: (to: Hex) => Promise<unknown>,
  account: number,
  identity: Identity,
  amount: bigint,
): Promise<void> {
  const wallet = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(account) as Hex);
  if (account >= FUNDED_ACCOUNTS) await fundWithEth(devnet.rpcUrl, wallet.walletClient.account.address);
  await mint(wallet.walletClient.account.address);
  await stake(wallet, amount);
  await registerDonor(wallet, {
    operator: identity.operator,
    peerKey: identity.peerKeyHex,
    metadataURI: "",
  });
}

/** Gives a development account beyond Hardhat's funded ones 1,000 ETH for gas. */
export async function fundWithEth(rpcUrl: string, address: Hex): Promise<void> {
  const response = await fetch(rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "hardhat_setBalance",
      params: [address, `0x${(10n ** 21n).toString(16)}`],
    }),
  });
  const reply = (await response.json()) as { error?: { message: string } };
  if (reply.error) throw new Error(`cannot fund ${address}: ${reply.error.message}`);
}

/** Starts a prepared node in this process, with extra bootstrap peers. */
export async function startInProcess(
  node: ClusterNode,
  bootstrap: string[] = [],
  options: StartNodeOptions = {},
): Promise<CellNode> {
  const config = await loadConfig(node.configFile, { bootstrap });
  return startNode(config, options);
}

export interface ChildNode {
  name: string;
  peerId: string;
  multiaddrs: string[];
  process: ChildProcess;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts a prepared node as a child process: `offchain/src/node/run.ts`, or `runner`, a script
 * taking the same `--config FILE` and printing the same first line.
 */
export async function startChild(
  node: ClusterNode,
  bootstrap: string[] = [],
  runner: string = RUNNER,
): Promise<ChildNode> {
  if (bootstrap.length > 0) {
    const config = JSON.parse(await readFile(node.configFile, "utf8"));
    await writeFile(node.configFile, JSON.stringify({ ...config, bootstrap }));
  }
  const child = spawn(process.execPath, [runner, "--config", node.configFile], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const line = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", resolve);
    child.once("exit", (code) =>
      reject(new Error(`node ${node.name} exited with ${code} before starting: ${stderr}`)),
    );
  });
  const info = JSON.parse(line) as { peerId: string; multiaddrs: string[] };
  return {
    name: node.name,
    peerId: info.peerId,
    multiaddrs: info.multiaddrs,
    process: child,
    exited,
    kill: async (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** Waits until `check` holds, polling (running `refresh` before each look, if given). */
export async function until(
  check: () => boolean,
  timeoutMs: number,
  what: string,
  refresh?: () => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await refresh?.();
    if (check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, refresh ? 250 : 50));
  }
}

/**
 * A WebAssembly job that counts to `iterations` and prints "spun": about 3 ns and 9 fuel
 * per iteration, so its run time is chosen by the caller.
 */
export async function spinModule(iterations: number): Promise<Uint8Array> {
  const wabt = await (await import("wabt")).default();
  const wat = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "spun\\n")
  (func (export "_start")
    (local $i i32)
    (loop $again
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const ${iterations >>> 0}))))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`;
  const module = wabt.parseWat("spin.wat", wat);
  try {
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

/** CPU time (user + system, all threads) a process has used so far, in ms; 0 once it is gone. */
export function processCpuMs(pid: number | undefined): number {
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

/** Resident memory of a process now, in MB; 0 once it is gone. */
export function processRssMb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}
