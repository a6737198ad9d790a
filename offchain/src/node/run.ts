// Runs one node in this process: `node offchain/src/node/run.ts [--config FILE]`.
// Prints one JSON line { peerId, did, operator, multiaddrs } once started, stops cleanly
// on SIGTERM or SIGINT. Used to run nodes as separate processes (tests, benchmarks).
import { pino } from "pino";
import { loadConfig } from "./config.ts";
import { startNode } from "./node.ts";

function configArgument(argv: readonly string[]): string | undefined {
  const index = argv.indexOf("--config");
  if (index === -1) return undefined;
  const file = argv[index + 1];
  if (file === undefined) throw new Error("--config needs a file");
  return file;
}

const config = await loadConfig(configArgument(process.argv.slice(2)));
const logger = pino({ level: config.logLevel, base: undefined }, pino.destination(2));
const node = await startNode(config, { logger });
process.stdout.write(
  `${JSON.stringify({ peerId: node.peerId, did: node.did, operator: node.operator, multiaddrs: node.multiaddrs() })}\n`,
);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await node.stop();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
