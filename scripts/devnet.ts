// `npm run chain [-- --port 8546]`: a local Hardhat node with Cell deployed by Ignition.
// Writes deployments/<chainId>.json (addresses + deploy block), mints devnet ATP to the first ten
// development accounts (the faucet), and runs until Ctrl-C.
import { spawn } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { formatEther, parseEther } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  DEVNET_CHAIN_ID,
  createWriter,
  deploymentFromIgnition,
  devnetPrivateKey,
  mintAtp,
  waitForRpc,
  writeDeployment,
} from "../offchain/src/chain/index.ts";
import type { Deployment } from "../offchain/src/chain/index.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const hardhat = join(root, "node_modules/hardhat/dist/src/cli.js");
const FAUCET_AMOUNT = parseEther("10000");

const { values } = parseArgs({
  options: { port: { type: "string" }, host: { type: "string", default: "127.0.0.1" } },
});
const port = Number(values.port ?? process.env.CELL_CHAIN_PORT ?? 8546);
if (!Number.isInteger(port) || port <= 0 || port > 65535)
  throw new Error(`--port must be a TCP port, got ${values.port}`);
if (port === 8545) throw new Error("port 8545 is taken on these machines; use another (default 8546)");
const rpcUrl = `http://127.0.0.1:${port}`;

mkdirSync(join(root, ".cell"), { recursive: true });
const logPath = join(root, ".cell", `devnet-${port}.log`);
const log = openSync(logPath, "w");
const node = spawn(process.execPath, [hardhat, "node", "--hostname", values.host!, "--port", String(port)], {
  cwd: root,
  stdio: ["ignore", log, log],
});
const stop = () => {
  node.kill("SIGTERM");
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
node.on("exit", (code) => {
  console.error(`hardhat node exited (${code}); see ${logPath}`);
  process.exit(code ?? 1);
});

try {
  await waitForRpc(rpcUrl, node, 120_000);
  const deployment = await deployWithIgnition();
  const path = writeDeployment(deployment);
  const admin = createWriter(rpcUrl, deployment, devnetPrivateKey(0));
  const accounts = Array.from({ length: 10 }, (_, i) => privateKeyToAccount(devnetPrivateKey(i)).address);
  for (const account of accounts) await mintAtp(admin, account, FAUCET_AMOUNT);

  console.log(`Cell devnet on ${rpcUrl} (chain ${deployment.chainId}), node log ${logPath}`);
  console.log(`  ATPToken         ${deployment.atpToken}`);
  console.log(`  DonorRegistry    ${deployment.donorRegistry}`);
  console.log(`  PaymentChannels  ${deployment.paymentChannels}`);
  console.log(`  deploy block ${deployment.deployBlock}; written to ${path}`);
  console.log(
    `  faucet: ${formatEther(FAUCET_AMOUNT)} ATP to each Hardhat development account 0..9 (mnemonic "test … junk")`,
  );
  console.log("Ctrl-C stops the chain.");
} catch (error) {
  console.error((error as Error).message);
  node.kill("SIGTERM");
  process.exit(1);
}

async function deployWithIgnition(): Promise<Deployment> {
  const exitCode = await new Promise<number | null>((resolve) => {
    const child = spawn(
      process.execPath,
      [
        hardhat,
        "ignition",
        "deploy",
        "ignition/modules/Cell.ts",
        "--network",
        "localhost",
        "--parameters",
        "ignition/parameters/devnet.json",
        "--reset",
      ],
      { cwd: root, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, CELL_RPC_URL: rpcUrl } },
    );
    child.on("exit", resolve);
  });
  if (exitCode !== 0) throw new Error(`ignition deploy failed with exit code ${exitCode}`);
  return deploymentFromIgnition(
    join(root, "ignition", "deployments", `chain-${DEVNET_CHAIN_ID}`),
    DEVNET_CHAIN_ID,
  );
}
