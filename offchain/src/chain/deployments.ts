import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { getAddress, isAddress } from "viem";
import type { Address } from "viem";

/** Where a chain's contracts live, as written by the devnet or an Ignition deployment. */
export interface Deployment {
  chainId: number;
  atpToken: Address;
  donorRegistry: Address;
  paymentChannels: Address;
  /** The court deciding outvote slashes; absent in deployments made before it existed. */
  juryCourt?: Address;
  /** The zk settlement contract; absent in deployments made before it existed. */
  zkChannels?: Address;
  /** Block of the first deployment transaction: event scans start here. */
  deployBlock: bigint;
}

export const DEFAULT_DEPLOYMENTS_DIR = fileURLToPath(new URL("../../../deployments/", import.meta.url));

export function deploymentPath(chainId: number, dir = DEFAULT_DEPLOYMENTS_DIR): string {
  return join(dir, `${chainId}.json`);
}

/** Reads and checks `deployments/<chainId>.json`; names the field that is wrong. */
export function readDeployment(chainId: number, dir = DEFAULT_DEPLOYMENTS_DIR): Deployment {
  const path = deploymentPath(chainId, dir);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`no readable deployment for chain ${chainId} at ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return parseDeployment(raw, path);
}

export function parseDeployment(raw: unknown, source = "deployment"): Deployment {
  if (typeof raw !== "object" || raw === null) throw new Error(`${source}: not a JSON object`);
  const record = raw as Record<string, unknown>;
  const address = (field: string): Address => {
    const value = record[field];
    if (typeof value !== "string" || !isAddress(value))
      throw new Error(`${source}: ${field} is not an address`);
    return getAddress(value);
  };
  const chainId = record.chainId;
  if (typeof chainId !== "number" || !Number.isSafeInteger(chainId) || chainId <= 0) {
    throw new Error(`${source}: chainId is not a positive integer`);
  }
  const deployBlock = record.deployBlock;
  if (typeof deployBlock !== "string" && typeof deployBlock !== "number") {
    throw new Error(`${source}: deployBlock is missing`);
  }
  return {
    chainId,
    atpToken: address("atpToken"),
    donorRegistry: address("donorRegistry"),
    paymentChannels: address("paymentChannels"),
    ...(record.juryCourt === undefined ? {} : { juryCourt: address("juryCourt") }),
    ...(record.zkChannels === undefined ? {} : { zkChannels: address("zkChannels") }),
    deployBlock: BigInt(deployBlock),
  };
}

/**
 * The deployment Ignition recorded in `ignition/deployments/chain-<chainId>/` (module "Cell"):
 * addresses from deployed_addresses.json, deploy block = the earliest confirmed block in the journal.
 */
export function deploymentFromIgnition(ignitionDir: string, chainId: number): Deployment {
  const addresses = JSON.parse(readFileSync(join(ignitionDir, "deployed_addresses.json"), "utf8")) as Record<
    string,
    unknown
  >;
  const blocks = [
    ...readFileSync(join(ignitionDir, "journal.jsonl"), "utf8").matchAll(/"blockNumber":(\d+)/g),
  ].map((m) => BigInt(m[1]!));
  if (blocks.length === 0) throw new Error(`${ignitionDir}: the journal records no confirmed transaction`);
  return parseDeployment(
    {
      chainId,
      atpToken: addresses["Cell#ATPToken"],
      donorRegistry: addresses["Cell#DonorRegistry"],
      paymentChannels: addresses["Cell#PaymentChannels"],
      juryCourt: addresses["Cell#JuryCourt"],
      zkChannels: addresses["Cell#ZkChannels"],
      deployBlock: blocks.reduce((min, b) => (b < min ? b : min)).toString(),
    },
    ignitionDir,
  );
}

export function serializeDeployment(deployment: Deployment): string {
  return `${JSON.stringify({ ...deployment, deployBlock: deployment.deployBlock.toString() }, null, 2)}\n`;
}

export function writeDeployment(deployment: Deployment, dir = DEFAULT_DEPLOYMENTS_DIR): string {
  const path = deploymentPath(deployment.chainId, dir);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, serializeDeployment(deployment));
  return path;
}
