// Runs one node in this process: `node offchain/src/node/run.ts [--config FILE]`.
// Prints one JSON line { peerId, did, operator, multiaddrs } once started, stops cleanly
// on SIGTERM or SIGINT. Used to run nodes as separate processes (tests, benchmarks).
//
// V8 heap flags for a node process. Unless given on the command line already, they are
// added here by running this file again in the same process (`process.execve`, same pid)
// before anything else is loaded:
// --max-semi-space-size=4: each of the young generation's two semi-spaces stays at most
//   4 MB (V8's default lets them grow to 16 MB under a steady stream of message objects);
//   measured on a donor: ~25 MB less resident memory for ~1 ms more CPU per job.
// --heap-growing-percent=30: the old generation is collected again once it has grown by
//   30% (V8 lets a large heap grow up to 4x between full collections, so garbage from
//   finished jobs would otherwise sit in resident memory). There is no hard heap cap, so
//   a busy buyer is never killed for its heap.
// MALLOC_ARENA_MAX=2 (unless set): glibc gives each thread that allocates its own malloc
// arena; libuv, V8 and the runtime worker threads would otherwise each keep one resident.
const NODE_V8_FLAGS = ["--max-semi-space-size=4", "--heap-growing-percent=30"];

function withV8Flags(): void {
  const given = new Set(
    [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)].map((flag) => flag.split("=")[0]),
  );
  const missing = NODE_V8_FLAGS.filter((flag) => !given.has(flag.split("=")[0]!));
  if (missing.length === 0 || typeof process.execve !== "function") return;
  process.execve(
    process.execPath,
    [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)],
    { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? "2" },
  );
}

function configArgument(argv: readonly string[]): string | undefined {
  const index = argv.indexOf("--config");
  if (index === -1) return undefined;
  const file = argv[index + 1];
  if (file === undefined) throw new Error("--config needs a file");
  return file;
}

async function main(): Promise<void> {
  const [{ pino }, { loadConfig }, { startNode }] = await Promise.all([
    import("pino"),
    import("./config.ts"),
    import("./node.ts"),
  ]);
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
}

withV8Flags();
await main();
