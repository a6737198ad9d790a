import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createPublicClient, createWalletClient, http, toHex } from "viem";
import type { Hex, PublicClient } from "viem";
import { mnemonicToAccount } from "viem/accounts";
import { cellChain } from "./clients.ts";
import { deployCell } from "./deploy.ts";
import type { DeployOptions } from "./deploy.ts";
import { writeDeployment } from "./deployments.ts";
import type { Deployment } from "./deployments.ts";

/** Hardhat's default development mnemonic: its accounts are funded with ETH on every Hardhat node. */
export const DEVNET_MNEMONIC = "test test test test test test test test test test test junk";
export const DEVNET_CHAIN_ID = 31337;
/** Hardhat chain type of the devnet: the OP Stack simulation, as on the L2s Cell targets. */
export const DEVNET_CHAIN_TYPE = "op";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Private key of Hardhat's development account `index` (0 deploys and mints). */
export function devnetPrivateKey(index: number): Hex {
  const key = mnemonicToAccount(DEVNET_MNEMONIC, { addressIndex: index }).getHdKey().privateKey;
  if (!key) throw new Error(`no private key for development account ${index}`);
  return toHex(key);
}

export interface Devnet {
  rpcUrl: string;
  chainId: number;
  deployment: Deployment;
  /** Private key of the deployer, which is also the ATP minter (the faucet). */
  deployerKey: Hex;
  stop(): Promise<void>;
}

export interface DevnetOptions extends DeployOptions {
  /** Port of the Hardhat node; a free one when omitted. */
  port?: number;
  /** Also write `<deploymentsDir>/<chainId>.json` (nothing is written when omitted). */
  deploymentsDir?: string;
  /** Milliseconds to wait for the node to answer (default 60 s). */
  startTimeoutMs?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/**
 * Starts `hardhat node` on loopback, waits until it answers, deploys the contracts (from the
 * committed bytecode) and returns where everything is. `stop()` ends the node process group.
 * The node simulates an OP Stack L2 (`--chain-type op`): every receipt carries the L1 data fee
 * fields an L2 user pays (`l1GasUsed`, `l1Fee`, `l1GasPrice`, ...).
 */
export async function startDevnet(options: DevnetOptions = {}): Promise<Devnet> {
  const port = options.port ?? (await freePort());
  if (port === 8545) throw new Error("port 8545 is reserved on these machines; choose another");
  const rpcUrl = `http://127.0.0.1:${port}`;
  const child = spawn(
    process.execPath,
    [
      join(REPO_ROOT, "node_modules/hardhat/dist/src/cli.js"),
      "--network",
      "devnet",
      "node",
      "--chain-type",
      DEVNET_CHAIN_TYPE,
      "--hostname",
      "127.0.0.1",
      "--port",
      String(port),
    ],
    { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  // If this process exits without calling stop(), the node must not outlive it.
  const killOnExit = () => killGroup(child, "SIGKILL");
  process.once("exit", killOnExit);
  const stop = async () => {
    process.off("exit", killOnExit);
    await stopProcess(child);
  };
  try {
    await waitForRpc(rpcUrl, child, options.startTimeoutMs ?? 60_000);
    const deployerKey = devnetPrivateKey(0);
    const chain = cellChain(DEVNET_CHAIN_ID, rpcUrl);
    const publicClient = createPublicClient({ chain, transport: http(rpcUrl) });
    const chainId = await publicClient.getChainId();
    const walletClient = createWalletClient({
      chain,
      transport: http(rpcUrl),
      account: mnemonicToAccount(DEVNET_MNEMONIC),
    });
    const deployment = await deployCell(
      { publicClient: publicClient as PublicClient, walletClient },
      chainId,
      options,
    );
    if (options.deploymentsDir !== undefined) writeDeployment(deployment, options.deploymentsDir);
    return { rpcUrl, chainId, deployment, deployerKey, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Resolves once `rpcUrl` answers eth_chainId; fails early when `child` exits. */
export async function waitForRpc(rpcUrl: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  child.stderr?.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`hardhat node exited with code ${child.exitCode}: ${output}`);
    try {
      const response = await fetch(rpcUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`hardhat node did not answer on ${rpcUrl} within ${timeoutMs} ms: ${output}`);
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): boolean {
  if (child.pid === undefined) return false;
  try {
    process.kill(-child.pid, signal);
    return true;
  } catch {
    return false; // already gone
  }
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (!killGroup(child, "SIGTERM")) return;
  const timer = setTimeout(() => killGroup(child, "SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}
