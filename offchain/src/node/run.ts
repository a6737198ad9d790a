// Runs one node in this process: `node offchain/src/node/run.ts [--config FILE]`.
// Prints one JSON line { peerId, did, operator, multiaddrs } once started, stops cleanly
// on SIGTERM or SIGINT. Used to run nodes as separate processes (tests, benchmarks).
// Programs that embed a node in their own process (benchmarks) reuse `withNodeFlags`
// (launch.ts) and `startNodeFromFile` so they run under the same conditions.
import type { DeepPartial, NodeConfigInput } from "./config.ts";
import { withNodeFlags } from "./launch.ts";
import type { StartNodeOptions } from "./node.ts";
import type { CellNode } from "./types.ts";

/** Starts a node from a config file, logging to stderr so stdout stays free for JSON lines. */
export async function startNodeFromFile(
  file: string | undefined,
  overrides: DeepPartial<NodeConfigInput> = {},
  options: Omit<StartNodeOptions, "logger"> = {},
): Promise<CellNode> {
  const [{ pino }, { loadConfig }, { startNode }] = await Promise.all([
    import("pino"),
    import("./config.ts"),
    import("./node.ts"),
  ]);
  const config = await loadConfig(file, overrides);
  const logger = pino({ level: config.logLevel, base: undefined }, pino.destination(2));
  return startNode(config, { ...options, logger });
}

function configArgument(argv: readonly string[]): string | undefined {
  const index = argv.indexOf("--config");
  if (index === -1) return undefined;
  const file = argv[index + 1];
  if (file === undefined) throw new Error("--config needs a file");
  return file;
}

/**
 * Starts the node of `--config` in `argv`, prints its peer id, operator and addresses as one
 * JSON line on stdout, and stops it on SIGTERM or SIGINT.
 */
export async function serveNode(
  argv: readonly string[],
  options: Omit<StartNodeOptions, "logger"> = {},
): Promise<void> {
  const node = await startNodeFromFile(configArgument(argv), {}, options);
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
}

if (import.meta.main) {
  await withNodeFlags();
  await serveNode(process.argv.slice(2));
}
