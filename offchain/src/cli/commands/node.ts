import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import type { Address } from "viem";
import { reportErrors } from "../errors.ts";
import { readPassphraseFile } from "../passphrase.ts";

interface StartOptions {
  config?: string;
  dataDir?: string;
  apiPort?: number;
  apiHost?: string;
  listen?: string[];
  bootstrap?: string[];
  rpc?: string;
  deployment?: string;
  passphraseFile?: string;
  donor?: boolean;
  price?: string;
  slots?: number;
  logLevel?: string;
  json?: boolean;
}

export interface NodeSummary {
  peerId: string;
  did: string;
  operator: Address;
  listen: string[];
  chainId: number;
  rpcUrl: string;
  contracts: Record<string, Address>;
  dataDir: string;
  api?: { url: string; tokenFile: string; infoFile: string };
}

/** `cell node start`: runs a node (mesh, market, store, runtime) and its local API. */
export function registerNodeCommand(program: Command): Command {
  const node = program
    .command("node")
    .description("run a Cell node")
    .addHelpText("after", "\nExample:\n  $ CELL_PASSPHRASE=… cell node start --config node.toml\n");

  node
    .command("start")
    .description("start a node and its local API; prints peer id, did, addresses, chain, contracts and API")
    .option("--config <file>", "node config, TOML (.toml) or JSON; flags override it")
    .option("--data-dir <dir>", "keys, store and api.json live here (default ~/.cell)")
    .option("--api-port <n>", "API port on 127.0.0.1 (0 picks a free one)", parsePort)
    .option("--api-host <host>", "API host (keep it on loopback)")
    .option("--listen <multiaddr...>", "libp2p listen addresses")
    .option("--bootstrap <multiaddr...>", "peers to dial at start")
    .option("--rpc <url>", "chain JSON-RPC url")
    .option("--deployment <file>", "contract addresses (default deployments/<chainId>.json)")
    .option("--passphrase-file <file>", "file whose first line unlocks the keys (else env CELL_PASSPHRASE)")
    .option("--donor", "sell compute: bid for and run jobs (needs a staked, registered operator)")
    .option("--price <p>", "donor asking price per mega-fuel, in ATP wei", parseDecimal)
    .option("--slots <n>", "donor jobs run at once", parsePositiveInt)
    .addOption(
      new Option("--log-level <level>", "log level (logs go to stderr)").choices([
        "fatal",
        "error",
        "warn",
        "info",
        "debug",
        "trace",
        "silent",
      ]),
    )
    .option("--json", "print the node summary as one JSON line")
    .addHelpText(
      "after",
      `
Examples:
  $ CELL_PASSPHRASE=… cell node start --config node.toml
  $ cell node start --data-dir ./node1 --passphrase-file pass.txt --rpc http://127.0.0.1:8546 --api-port 0
  $ cell node start --data-dir ./donor1 --donor --price 1000 --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…

The node writes <data-dir>/api.json ({ url, tokenFile }) and <data-dir>/api-token (mode
0600); \`cell job …\` and \`cell peers\` read them. Ctrl-C stops the node cleanly.
Config reference: docs/operations.md.
`,
    )
    .action(async function (this: Command, options: StartOptions) {
      await reportErrors(this, () => startNodeCommand(options));
    });
  return node;
}

/** The CLI's entry: a node runs as a bundle of it, with the node's flags (node/launch.ts). */
const CLI_ENTRY = fileURLToPath(new URL("../main.ts", import.meta.url));

async function startNodeCommand(options: StartOptions): Promise<void> {
  const [{ loadConfig, startNode, withNodeFlags }, { pino }, { serveNodeApi }] = await Promise.all([
    import("../../node/index.ts"),
    import("pino"),
    import("../serve.ts"),
  ]);
  await withNodeFlags(CLI_ENTRY);
  const config = await loadConfig(options.config, await overridesFrom(options));
  const logger = pino({ level: config.logLevel, base: undefined }, pino.destination(2));
  const node = await startNode(config, { logger });
  let served;
  try {
    served = await serveNodeApi(node, config, logger);
  } catch (error) {
    await node.stop();
    throw error;
  }
  const summary: NodeSummary = {
    peerId: node.peerId,
    did: node.did,
    operator: node.operator,
    listen: node.multiaddrs(),
    chainId: Number(node.chainInfo.chainId),
    rpcUrl: node.chainInfo.rpcUrl,
    contracts: node.chainInfo.contracts,
    dataDir: config.dataDir,
    api: served.api,
  };
  process.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : formatNodeSummary(summary));
  await untilSignal();
  process.stderr.write("stopping…\n");
  await served.stop();
}

/** The human summary `cell node start` prints. */
export function formatNodeSummary(summary: NodeSummary): string {
  const contracts = Object.entries(summary.contracts).map(([name, address]) => `${name} ${address}`);
  const lines = [
    "Cell node started",
    row("peer id", summary.peerId),
    row("did", summary.did),
    row("operator", summary.operator),
    ...list("listen", summary.listen),
    row("chain", `${summary.chainId} at ${summary.rpcUrl}`),
    ...list("contracts", contracts),
    row("data dir", summary.dataDir),
    summary.api ? row("API", summary.api.url) : row("API", "disabled"),
    ...(summary.api ? [row("token file", summary.api.tokenFile), row("api info", summary.api.infoFile)] : []),
    "Press Ctrl-C to stop.",
  ];
  return `${lines.join("\n")}\n`;
}

async function overridesFrom(options: StartOptions): Promise<Record<string, unknown>> {
  const passphrase = options.passphraseFile ? await readPassphraseFile(options.passphraseFile) : undefined;
  return {
    dataDir: options.dataDir,
    passphrase,
    listen: options.listen,
    bootstrap: options.bootstrap,
    logLevel: options.logLevel,
    api: { port: options.apiPort, host: options.apiHost },
    chain: { rpcUrl: options.rpc, deploymentFile: options.deployment },
    donor: { enabled: options.donor, pricePerMegaFuel: options.price, slots: options.slots },
  };
}

function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

function row(label: string, value: string): string {
  return `  ${label.padEnd(11)}${value}`;
}

function list(label: string, values: string[]): string[] {
  if (values.length === 0) return [row(label, "(none)")];
  return values.map((value, index) => row(index === 0 ? label : "", value));
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new InvalidArgumentError(`expected a port 0–65535, got '${value}'`);
  return port;
}

function parsePositiveInt(value: string): number {
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed <= 0)
    throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return parsed;
}

function parseDecimal(value: string): string {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a non-negative integer, got '${value}'`);
  return value;
}
