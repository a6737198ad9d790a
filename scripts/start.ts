// `npm start`: a whole Cell network on this machine, on embedded defaults. A Hardhat
// devnet with the contracts deployed, four staked and registered donor nodes and one
// buyer node on loopback, and the buyer's local API; Ctrl-C stops everything.
//
// Options (after `npm start --`): --donors N (default 4), --chain-port N (default 8546
// when free), --api-port N (default 7474 when free), --dir D (default .cell). Each run is
// a fresh devnet: the chain lives in memory, so <dir>/devnet/ is recreated. The buyer's API
// also serves the browser console; the printed link carries the API token in its fragment.
import { createServer } from "node:net";
import { mkdir, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { pino, type Logger } from "pino";
import { parseEther, type Address } from "viem";
import { API_INFO_FILE, readApiInfo, writeApiInfo } from "../offchain/src/api/index.ts";
import {
  createWriter,
  devnetPrivateKey,
  donorParams,
  freePort,
  mintAtp,
  registerDonor,
  serializeDeployment,
  stake,
  startDevnet,
  type Deployment,
  type Devnet,
} from "../offchain/src/chain/index.ts";
import { serveNodeApi, type ServedNode } from "../offchain/src/cli/serve.ts";
import { initIdentity, type Identity } from "../offchain/src/identity/index.ts";
import { loadConfig, startNode, type CellNode } from "../offchain/src/node/index.ts";
import { ensureJobs } from "./build-jobs.ts";

/** Devnet keys are throwaway; a fixed passphrase keeps `npm start` free of prompts. */
const DEVNET_PASSPHRASE = process.env.CELL_PASSPHRASE ?? "cell-devnet-only-passphrase";
/** Cheap scrypt for throwaway devnet keys; real nodes use `cell keys init`'s default. */
const DEVNET_SCRYPT_N = 2 ** 12;
const BUYER_ATP = parseEther("10000");
const OPERATOR_ETH = parseEther("10");
const READY_TIMEOUT_MS = 30_000;
/** Work a devnet donor does unpaid per buyer: 100 jobs at the default price and fuel limit. */
const DEVNET_FREE_ALLOWANCE = 100n * 100_000n;

interface StartedNode {
  name: string;
  role: "donor" | "buyer";
  identity: Identity;
  served: ServedNode<CellNode>;
}

const { values: args } = parseArgs({
  options: {
    donors: { type: "string", default: "4" },
    "chain-port": { type: "string" },
    "api-port": { type: "string" },
    dir: { type: "string" },
  },
});
const donorCount = positiveInt(args.donors, "--donors");
const DEFAULT_CELL_DIR = fileURLToPath(new URL("../.cell", import.meta.url));
const CELL_DIR = resolve(args.dir ?? DEFAULT_CELL_DIR);
const DEVNET_DIR = join(CELL_DIR, "devnet");
const say = (line: string) => process.stderr.write(`${line}\n`);
const stops: (() => Promise<void>)[] = [];
let stopping = false;

process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

try {
  await main();
} catch (error) {
  say(`npm start failed: ${(error as Error).message}`);
  await shutdown(1);
}

async function main(): Promise<void> {
  await refuseIfRunning();
  await refuseTakenPort(args["chain-port"], "--chain-port");
  await refuseTakenPort(args["api-port"], "--api-port");
  await rm(DEVNET_DIR, { recursive: true, force: true });
  await mkdir(DEVNET_DIR, { recursive: true });

  say("building the example jobs (examples/jobs/build/*.wasm) if needed…");
  await ensureJobs();

  const chainPort = args["chain-port"]
    ? positiveInt(args["chain-port"], "--chain-port")
    : await preferredPort(8546);
  say(`starting the devnet chain (Hardhat) on 127.0.0.1:${chainPort} and deploying the contracts…`);
  const devnet = await startDevnet({ port: chainPort });
  stops.push(() => devnet.stop());
  const deploymentFile = join(DEVNET_DIR, "deployment.json");
  await writeFile(deploymentFile, serializeDeployment(devnet.deployment));

  say(`creating keys for ${donorCount} donors and 1 buyer…`);
  const names = [...Array.from({ length: donorCount }, (_, index) => `donor${index + 1}`), "buyer"];
  const identities = new Map<string, Identity>();
  for (const name of names) {
    identities.set(
      name,
      await initIdentity({
        dir: join(DEVNET_DIR, name),
        passphrase: DEVNET_PASSPHRASE,
        scryptN: DEVNET_SCRYPT_N,
        force: true,
      }),
    );
  }
  say("funding operators, staking and registering the donors…");
  await fundAndRegister(devnet, names, identities);

  const buyerPort = args["api-port"] ? Number(args["api-port"]) : await preferredPort(7474);
  const buyer = await startCellNode("buyer", identities, devnet, deploymentFile, [], buyerPort);
  const bootstrap = buyer.served.node.multiaddrs();
  const donors: StartedNode[] = [];
  for (const name of names.filter((candidate) => candidate !== "buyer")) {
    donors.push(await startCellNode(name, identities, devnet, deploymentFile, bootstrap));
  }
  const api = buyer.served.api;
  if (!api) throw new Error("the buyer's API did not start");
  await writeApiInfo(CELL_DIR, {
    url: api.url,
    tokenFile: api.tokenFile,
    peerId: buyer.served.node.peerId,
    pid: process.pid,
  });
  stops.push(() => unlink(join(CELL_DIR, API_INFO_FILE)).catch(() => undefined));

  say("waiting until the buyer sees the staked donors…");
  const staked = await waitForStakedDonors(buyer.served.node, donorCount);
  const token = (await readFile(api.tokenFile, "utf8")).trim();
  process.stdout.write(summary(devnet, deploymentFile, buyer, donors, staked, token));
}

/** A second `npm start` on the same dir would wipe the first one's nodes from under it. */
async function refuseIfRunning(): Promise<void> {
  const info = await readApiInfo(join(CELL_DIR, API_INFO_FILE)).catch(() => undefined);
  if (info?.pid === undefined || info.pid === process.pid || !isAlive(info.pid)) return;
  throw new Error(
    `another devnet (pid ${info.pid}) is running from ${CELL_DIR}; stop it first or pass --dir DIR`,
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function fundAndRegister(
  devnet: Devnet,
  names: string[],
  identities: Map<string, Identity>,
): Promise<void> {
  const faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
  const { minStake } = await donorParams(faucet);
  for (const [index, name] of names.entries()) {
    const identity = identities.get(name) as Identity;
    const operator = identity.operator.address;
    const hash = await faucet.walletClient.sendTransaction({
      to: operator,
      value: OPERATOR_ETH,
      account: faucet.walletClient.account,
      chain: faucet.walletClient.chain,
    });
    await faucet.publicClient.waitForTransactionReceipt({ hash });
    if (name === "buyer") {
      await mintAtp(faucet, operator, BUYER_ATP);
      continue;
    }
    // The donor's wallet (a Hardhat development account) stakes and registers the node's operator + peer key.
    const wallet = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(index + 1));
    await mintAtp(faucet, wallet.walletClient.account.address, minStake * 2n);
    await stake(wallet, minStake);
    await registerDonor(wallet, {
      operator: identity.operator,
      peerKey: identity.peerKeyHex,
      metadataURI: `cell-devnet:${name}`,
    });
  }
}

async function startCellNode(
  name: string,
  identities: Map<string, Identity>,
  devnet: Devnet,
  deploymentFile: string,
  bootstrap: string[],
  apiPort?: number,
): Promise<StartedNode> {
  const role = name === "buyer" ? "buyer" : "donor";
  const dataDir = join(DEVNET_DIR, name);
  const config = await loadConfig(undefined, {
    dataDir,
    passphrase: DEVNET_PASSPHRASE,
    listen: ["/ip4/127.0.0.1/tcp/0"],
    bootstrap,
    network: { trustedCidrs: ["127.0.0.0/8"] },
    // Every node serves its API (donors on a free port, found through their data dir's api.json).
    api: { enabled: true, port: role === "buyer" ? (apiPort ?? 0) : 0 },
    chain: { rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, deploymentFile },
    donor: { enabled: role === "donor" },
    runtime: { poolSize: 1 },
    // A node that joins the devnet with an unfunded operator still gets its first jobs run;
    // the devnet's own buyer opens channels and pays (docs/payments.md).
    payments: { freeAllowance: DEVNET_FREE_ALLOWANCE, channelPollMs: 1_000 },
    // Short epochs, so settlements show up while one watches.
    settlement: { epochSeconds: 60, pollMs: 1_000 },
    // The buyer serves the console, whose explorer reads the chain index.
    indexer: { enabled: role === "buyer" },
    logLevel: "info",
  });
  const logger = nodeLogger(dataDir, name);
  const node = await startNode(config, { logger });
  let served: ServedNode<CellNode>;
  try {
    served = await serveNodeApi(node, config, logger);
  } catch (error) {
    await node.stop();
    throw error;
  }
  stops.push(() => served.stop());
  say(`  ${name.padEnd(7)} ${node.peerId}`);
  return { name, role, identity: identities.get(name) as Identity, served };
}

function nodeLogger(dataDir: string, name: string): Logger {
  return pino(
    { level: "info", base: { node: name } },
    pino.destination({ dest: join(dataDir, "node.log"), mkdir: true, sync: true }),
  );
}

async function waitForStakedDonors(buyer: CellNode, expected: number): Promise<number> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let staked = 0;
  while (Date.now() < deadline) {
    staked = buyer.peers().filter((peer) => peer.connected && peer.staked).length;
    if (staked >= expected) return staked;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  say(
    `only ${staked} of ${expected} donors are visible as staked so far; jobs wait in the queue until they are`,
  );
  return staked;
}

function summary(
  devnet: Devnet,
  deploymentFile: string,
  buyer: StartedNode,
  donors: StartedNode[],
  staked: number,
  token: string,
): string {
  const rel = (path: string) => relative(process.cwd(), path) || ".";
  const api = buyer.served.api as NonNullable<ServedNode<CellNode>["api"]>;
  // The CLI finds ./.cell/api.json by itself; another --dir needs pointing at.
  const dataDirFlag = CELL_DIR === resolve(".cell") ? "" : ` --data-dir ${rel(join(DEVNET_DIR, "buyer"))}`;
  const contracts = Object.entries(contractAddresses(devnet.deployment)).map(
    ([name, address]) => `    ${name.padEnd(16)}${address}`,
  );
  const nodeLine = (node: StartedNode) =>
    `    ${node.name.padEnd(8)}${node.served.node.peerId}  operator ${node.identity.operator.address}\n${" ".repeat(12)}${node.served.node.multiaddrs()[0] ?? ""}`;
  return `
Cell devnet is up.

  chain       ${devnet.rpcUrl}  (chain id ${devnet.chainId}, Hardhat)
  contracts
${contracts.join("\n")}
  deployment  ${rel(deploymentFile)}
  nodes       (${staked}/${donors.length} donors staked and visible to the buyer)
${[buyer, ...donors].map(nodeLine).join("\n")}
  console     ${api.url}/#token=${token}
  buyer API   ${api.url}
  API token   ${rel(api.tokenFile)}  (send it as: Authorization: Bearer <token>)
  logs        ${rel(DEVNET_DIR)}/<node>/node.log

Try:
  node bin/cell.mjs job submit examples/jobs/build/sha256.wasm --input README.md${dataDirFlag}
  node bin/cell.mjs job list${dataDirFlag}
  node bin/cell.mjs peers${dataDirFlag}
  node bin/cell.mjs payments status${dataDirFlag}
  node bin/cell.mjs settlements list --mine --data-dir ${rel(join(DEVNET_DIR, donors[0]?.name ?? "donor-1"))}
  curl -H "Authorization: Bearer $(cat ${rel(api.tokenFile)})" ${api.url}/jobs

Press Ctrl-C to stop everything.
`;
}

function contractAddresses(deployment: Deployment): Record<string, Address> {
  return {
    ATPToken: deployment.atpToken,
    DonorRegistry: deployment.donorRegistry,
    PaymentChannels: deployment.paymentChannels,
  };
}

async function shutdown(code: number): Promise<void> {
  if (stopping) {
    say("stopping already; press Ctrl-C again to force");
    process.once("SIGINT", () => process.exit(130));
    return;
  }
  stopping = true;
  if (stops.length > 0) say("stopping the nodes and the chain…");
  for (const stop of stops.reverse()) {
    await stop().catch((error: unknown) => say(`  while stopping: ${(error as Error).message}`));
  }
  process.exit(code);
}

/** `port` when it is free on loopback (never 8545), else any free port. */
async function preferredPort(port: number): Promise<number> {
  return port !== 8545 && (await isPortFree(port)) ? port : freePort();
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise<boolean>((resolvePort) => {
    const server = createServer();
    server.once("error", () => resolvePort(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolvePort(true)));
  });
}

/** A port the user asked for by `flag` and something else holds: say so and which flag moves it. */
async function refuseTakenPort(value: string | undefined, flag: string): Promise<void> {
  if (value === undefined || value === "0") return;
  const port = positiveInt(value, flag);
  if (await isPortFree(port)) return;
  throw new Error(
    `port ${port} on 127.0.0.1 is taken by another program; choose another with ${flag} <port>`,
  );
}

function positiveInt(value: string | undefined, flag: string): number {
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed <= 0)
    throw new Error(`${flag} must be a positive integer, got ${value}`);
  return parsed;
}
