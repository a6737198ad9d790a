// Runs one node in this process: `node offchain/src/node/run.ts [--config FILE]`.
// Prints one JSON line { peerId, did, operator, multiaddrs } once started, stops cleanly
// on SIGTERM or SIGINT. Used to run nodes as separate processes (tests, benchmarks).
// Programs that embed a node in their own process (benchmarks) reuse `withNodeFlags` and
// `startNodeFromFile` so they run under the same conditions.
//
// `withNodeFlags` runs the entry script again in the same process (`process.execve`, same
// pid) before anything else is loaded, with:
// --max-semi-space-size=4: each of the young generation's two semi-spaces stays at most
//   4 MB (V8's default lets them grow to 16 MB under a steady stream of message objects);
//   measured on a donor: ~25 MB less resident memory for ~1 ms more CPU per job.
// --heap-growing-percent=30: the old generation is collected again once it has grown by
//   30% (V8 lets a large heap grow up to 4x between full collections, so garbage from
//   finished jobs would otherwise sit in resident memory). There is no hard heap cap, so
//   a busy buyer is never killed for its heap.
// MALLOC_ARENA_MAX=2 (unless set): glibc gives each thread that allocates its own malloc
// arena; libuv, V8 and the runtime worker threads would otherwise each keep one resident.
// MALLOC_MMAP_THRESHOLD_=32768 (unless set): allocations from 32 KB up get their own
//   mapping, returned to the system when freed, instead of being carved from the main
//   malloc heap, which fragments and keeps the peaks of JIT compilation resident.
//   Measured on donors under load: malloc heap 17-20 MB -> 12-15 MB, ~5 MB less resident
//   memory, no CPU difference beyond the noise.
// A loader serving the node's TypeScript with its types already stripped: Node's own type
// stripper is a WebAssembly module whose memory and compiled code stay resident for the
// life of the process (~15 MB, and its compilation leaves ~10 MB of malloc heap behind).
// The stripping happens here, in the process image that `execve` replaces, and is kept in
// a cache file keyed by a hash of the sources.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { stripTypeScriptTypes } from "node:module";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { DeepPartial, NodeConfigInput } from "./config.ts";
import type { CellNode } from "./types.ts";

const NODE_V8_FLAGS = ["--max-semi-space-size=4", "--heap-growing-percent=30"];

const SOURCE_ROOT = fileURLToPath(new URL("..", import.meta.url));
const CACHE_DIR = fileURLToPath(new URL("../../../node_modules/.cache/cell", import.meta.url));
const LOADER_MARK = "cell-stripped-sources";
/** Stripped-source caches of other source versions are removed once this old. */
const STALE_CACHE_MS = 10 * 60_000;

/**
 * Runs the entry script again with the node's V8 flags, malloc settings and stripped-source
 * loader when they are missing. Call it first thing, before importing the node's modules:
 * it does not return when it re-executes.
 */
export function withNodeFlags(): void {
  if (typeof process.execve !== "function") return;
  const given = new Set(
    [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)].map((flag) => flag.split("=")[0]),
  );
  const missing = NODE_V8_FLAGS.filter((flag) => !given.has(flag.split("=")[0]!));
  const loaded = process.execArgv.some((arg) => arg.includes(LOADER_MARK));
  if (missing.length === 0 && loaded) return;
  const loader = loaded ? [] : strippedSourceLoader(process.argv[1]);
  if (missing.length === 0 && loader.length === 0) return;
  process.execve(
    process.execPath,
    [process.execPath, ...missing, ...loader, ...process.execArgv, ...process.argv.slice(1)],
    {
      ...process.env,
      MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? "2",
      MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? "32768",
    },
  );
}

/** `--import` of a loader for the node's sources and the entry script; none if they cannot be cached. */
function strippedSourceLoader(entry: string | undefined): string[] {
  try {
    const files = tsFilesUnder(SOURCE_ROOT);
    if (entry?.endsWith(".ts") && !files.includes(resolve(entry))) files.push(resolve(entry));
    const cacheFile = strippedSourcesFile(files.sort());
    const code = `/*${LOADER_MARK}*/
import { registerHooks } from "node:module";
import { readFileSync } from "node:fs";
import { isMainThread } from "node:worker_threads";
if (isMainThread) {
  const sources = new Map(Object.entries(JSON.parse(readFileSync(${JSON.stringify(cacheFile)}, "utf8"))));
  registerHooks({
    load(url, context, nextLoad) {
      const source = sources.get(url);
      if (source === undefined) return nextLoad(url, context);
      sources.delete(url);
      return { format: "module", source, shortCircuit: true };
    },
  });
}`;
    return ["--import", `data:text/javascript,${encodeURIComponent(code)}`];
  } catch {
    return []; // Node strips the types itself, at the cost of the memory above
  }
}

/** The cache file of `files` stripped of their types, by file URL; written if it is not there yet. */
function strippedSourcesFile(files: string[]): string {
  const sources = files.map((file) => [file, readFileSync(file, "utf8")] as const);
  const hash = createHash("sha256").update(process.version);
  for (const [file, source] of sources) hash.update(file).update("\0").update(source).update("\0");
  const name = `stripped-${hash.digest("hex").slice(0, 16)}.json`;
  const cacheFile = join(CACHE_DIR, name);
  if (existsFile(cacheFile)) return cacheFile;
  const stripped: Record<string, string> = {};
  const emitWarning = process.emitWarning;
  process.emitWarning = () => undefined; // stripTypeScriptTypes' ExperimentalWarning
  try {
    for (const [file, source] of sources)
      stripped[pathToFileURL(file).href] = stripTypeScriptTypes(source, { mode: "strip" });
  } finally {
    process.emitWarning = emitWarning;
  }
  mkdirSync(CACHE_DIR, { recursive: true });
  const staging = `${cacheFile}.${process.pid}`;
  writeFileSync(staging, JSON.stringify(stripped));
  renameSync(staging, cacheFile);
  removeStaleCaches(name);
  return cacheFile;
}

function removeStaleCaches(current: string): void {
  for (const name of readdirSync(CACHE_DIR)) {
    if (!name.startsWith("stripped-") || name === current) continue;
    const file = join(CACHE_DIR, name);
    if (Date.now() - statSync(file).mtimeMs > STALE_CACHE_MS) rmSync(file, { force: true });
  }
}

function tsFilesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".ts") && !name.endsWith(".d.ts"))
    .map((name) => join(dir, name));
}

function existsFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Starts a node from a config file, logging to stderr so stdout stays free for JSON lines. */
export async function startNodeFromFile(
  file: string | undefined,
  overrides: DeepPartial<NodeConfigInput> = {},
): Promise<CellNode> {
  const [{ pino }, { loadConfig }, { startNode }] = await Promise.all([
    import("pino"),
    import("./config.ts"),
    import("./node.ts"),
  ]);
  const config = await loadConfig(file, overrides);
  const logger = pino({ level: config.logLevel, base: undefined }, pino.destination(2));
  return startNode(config, { logger });
}

function configArgument(argv: readonly string[]): string | undefined {
  const index = argv.indexOf("--config");
  if (index === -1) return undefined;
  const file = argv[index + 1];
  if (file === undefined) throw new Error("--config needs a file");
  return file;
}

async function main(): Promise<void> {
  const node = await startNodeFromFile(configArgument(process.argv.slice(2)));
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
  withNodeFlags();
  await main();
}
