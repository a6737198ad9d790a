// How a node process is launched. `withNodeFlags` runs the entry script again in the same
// process (`process.execve`, same pid) before the node's modules are loaded, with:
//
// --max-semi-space-size=2: each of the young generation's two semi-spaces stays at most
//   2 MB (V8's default lets them grow to 16 MB under a steady stream of message objects);
//   measured on donors under load: ~30 MB less resident memory than the default and ~6 MB
//   less than 4 MB semi-spaces, with no CPU difference beyond the benchmark's noise.
// --heap-growing-percent=30: the old generation is collected again once it has grown by
//   30% (V8 lets a large heap grow up to 4x between full collections, so garbage from
//   finished jobs would otherwise sit in resident memory). There is no hard heap cap, so
//   a busy buyer is never killed for its heap.
// MALLOC_ARENA_MAX=2 (unless set): glibc gives each thread that allocates its own malloc
//   arena; libuv, V8 and the runtime worker threads would otherwise each keep one resident.
// MALLOC_MMAP_THRESHOLD_=32768 (unless set): allocations from 32 KB up get their own
//   mapping, returned to the system when freed, instead of being carved from the main
//   malloc heap, which fragments and keeps the peaks of JIT compilation resident.
//   Measured on donors under load: malloc heap 17-20 MB -> 12-15 MB.
//
// and with the entry script and everything it imports as one minified, tree-shaken
// JavaScript bundle (esbuild) instead of ~1,400 separate modules. V8 keeps the source of
// every loaded module for lazy compilation, and a node loads only a small part of, say,
// viem's root module graph; measured on donors under load: ~15 MB less resident memory.
// Node's own TypeScript stripper (a WebAssembly module that stays resident) is not loaded
// either. Bundles are kept under node_modules/.cache/cell, keyed by the entry, and rebuilt
// when any of their input files changed. CELL_BUNDLE=0 runs the sources as they are.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Plugin } from "esbuild";

const NODE_V8_FLAGS = ["--max-semi-space-size=2", "--heap-growing-percent=30"];
const CACHE_DIR = fileURLToPath(new URL("../../../node_modules/.cache/cell", import.meta.url));
/**
 * Packages loaded from node_modules at run time: native addons locate their binaries
 * themselves, and esbuild is only needed to build a bundle, never inside one.
 */
const EXTERNAL_PACKAGES = ["secp256k1", "secp256k1/*", "esbuild"];
/** `import.meta.url` and `import.meta.main` in code, not quoted. */
const IMPORT_META = /(?<!["'`])\bimport\.meta\.(url|main)\b(?!["'`])/g;
/** CommonJS modules in the bundle `require` Node's built-ins. */
const REQUIRE_BANNER =
  'import { createRequire as __cellCreateRequire } from "node:module"; const require = __cellCreateRequire(import.meta.url);';

/**
 * Runs the entry script again with the node's V8 flags and malloc settings, as a bundle,
 * when it is not running so yet. Call it first thing, before importing the node's modules:
 * it does not return when it re-executes. `entry` is the script to bundle, by default the
 * one this process runs.
 */
export async function withNodeFlags(entry = process.argv[1]): Promise<void> {
  if (typeof process.execve !== "function" || entry === undefined) return;
  const given = new Set(
    [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)].map((flag) => flag.split("=")[0]),
  );
  const missing = NODE_V8_FLAGS.filter((flag) => !given.has(flag.split("=")[0]!));
  const bundled = isBundle(process.argv[1]);
  if (bundled && missing.length === 0) return;
  const script = bundled ? process.argv[1]! : await bundledEntry(entry);
  if (script === undefined && missing.length === 0) return;
  process.execve(
    process.execPath,
    [process.execPath, ...missing, ...process.execArgv, script ?? process.argv[1]!, ...process.argv.slice(2)],
    {
      ...process.env,
      MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? "2",
      MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? "32768",
    },
  );
}

function isBundle(script: string | undefined): boolean {
  return script !== undefined && resolve(script).startsWith(`${CACHE_DIR}/bundle-`);
}

/**
 * The bundle of a script (a node's entry, the runtime's worker), built if missing or stale;
 * undefined when it cannot be built or CELL_BUNDLE=0.
 */
export async function bundledEntry(script: string | URL): Promise<string | undefined> {
  if (process.env.CELL_BUNDLE === "0") return undefined;
  const entry = script instanceof URL ? fileURLToPath(script) : resolve(script);
  const key = createHash("sha256").update(process.version).update(entry).digest("hex").slice(0, 16);
  const bundle = join(CACHE_DIR, `bundle-${key}.mjs`);
  const inputsFile = `${bundle}.inputs.json`;
  if (isFresh(inputsFile)) return bundle;
  try {
    const inputs = await buildBundle(entry, bundle);
    writeAtomically(inputsFile, JSON.stringify(inputs.map((file) => [file, fingerprint(file)])));
    return bundle;
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/\s+/g, " ").trim() : String(error);
    process.stderr.write(`cannot bundle ${entry} (${reason}); running its sources\n`);
    return undefined;
  }
}

/** Whether every input file of a bundle is as it was when the bundle was built. */
function isFresh(inputsFile: string): boolean {
  try {
    const inputs = JSON.parse(readFileSync(inputsFile, "utf8")) as [string, string][];
    return inputs.every(([file, print]) => fingerprint(file) === print);
  } catch {
    return false;
  }
}

function fingerprint(file: string): string {
  try {
    const { size, mtimeMs } = statSync(file);
    return `${size}:${mtimeMs}`;
  } catch {
    return "missing";
  }
}

/** Builds the bundle into `outfile` and returns the absolute paths of its input files. */
async function buildBundle(entry: string, outfile: string): Promise<string[]> {
  const { build } = await import("esbuild");
  const cwd = process.cwd();
  const staging = `${outfile}.${process.pid}`;
  const result = await build({
    entryPoints: [entry],
    outfile: staging,
    bundle: true,
    platform: "node",
    format: "esm",
    target: `node${process.versions.node}`,
    minify: true,
    keepNames: true,
    // The ES module build of a package without an exports map tree-shakes (hash-wasm's
    // CommonJS build would bring every hash function's WebAssembly, ~200 KB of source).
    mainFields: ["module", "main"],
    legalComments: "none",
    external: EXTERNAL_PACKAGES,
    banner: { js: REQUIRE_BANNER },
    plugins: [sourceLocationPlugin(entry)],
    metafile: true,
    logLevel: "silent",
  });
  renameSync(staging, outfile);
  return Object.keys(result.metafile.inputs).map((input) => resolve(cwd, input));
}

/**
 * Keeps what the project's modules learn from `import.meta` as it is when they run from
 * their own files: `import.meta.url` is their source file (they find workers, caches and
 * deployments relative to it) and `import.meta.main` holds for the entry only.
 */
function sourceLocationPlugin(entry: string): Plugin {
  return {
    name: "cell-source-location",
    setup(build) {
      build.onLoad({ filter: /\.ts$/ }, async ({ path }) => {
        if (path.includes("/node_modules/")) return undefined;
        const source = (await readFile(path, "utf8")).replace(IMPORT_META, (_match, property: string) => {
          if (property === "url") return JSON.stringify(pathToFileURL(path).href);
          return path === entry ? "import.meta.main" : "false";
        });
        return { contents: source, loader: "ts" };
      });
    },
  };
}

function writeAtomically(file: string, contents: string): void {
  mkdirSync(CACHE_DIR, { recursive: true });
  const staging = `${file}.${process.pid}`;
  writeFileSync(staging, contents);
  renameSync(staging, file);
}
