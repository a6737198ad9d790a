// `node scripts/export-deployment.ts <chainId>`: after `hardhat ignition deploy` to a public network,
// writes deployments/<chainId>.json (addresses + deploy block) from Ignition's record of it.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { deploymentFromIgnition, writeDeployment } from "../offchain/src/chain/index.ts";

const chainId = Number(process.argv[2]);
if (!Number.isSafeInteger(chainId) || chainId <= 0) {
  console.error("usage: node scripts/export-deployment.ts <chainId>   (e.g. 84532 for Base Sepolia)");
  process.exit(2);
}
const root = fileURLToPath(new URL("..", import.meta.url));
const deployment = deploymentFromIgnition(join(root, "ignition", "deployments", `chain-${chainId}`), chainId);
console.log(`wrote ${writeDeployment(deployment)}`);
