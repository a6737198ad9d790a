// The runtime worker's entry as plain JavaScript. A worker thread that loads TypeScript
// starts its own type stripper, which costs it ~10 MB and ~100 ms per start; the worker
// instead loads `.js` copies of worker.ts and the modules it imports, with their types
// stripped once and kept in a cache directory keyed by a hash of the sources.
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { stripTypeScriptTypes } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** `from "./x.ts"`, `import "./x.ts"`: relative imports, rewritten to their `.js` copies. */
const RELATIVE_TS_IMPORT = /(\bfrom\s*|\bimport\s*)(["'])(\.\/[^"'\n/]+?)\.ts\2/g;
const COPY_PREFIX = "runtime-worker-";
/** Copies of other source versions are removed once this old. */
const STALE_COPY_MS = 10 * 60_000;
const ESCAPING_IMPORT = /(\bfrom\s*|\bimport\s*)(["'])\.\.\//;

/**
 * The `.js` copy of `entry` under `cacheRoot`, compiled there if it is not yet. Types are
 * erased without moving code, so stack traces keep the `.ts` files' line numbers. Throws
 * when the worker imports a module outside its own folder.
 */
export function compiledWorkerEntry(entry: URL, cacheRoot: string): URL {
  const sourceDir = dirname(fileURLToPath(entry));
  const names = readdirSync(sourceDir)
    .filter((name) => name.endsWith(".ts"))
    .sort();
  const hash = createHash("sha256").update(process.version);
  for (const name of names)
    hash
      .update(name)
      .update("\0")
      .update(readFileSync(join(sourceDir, name)));
  const outDir = join(cacheRoot, `${COPY_PREFIX}${hash.digest("hex").slice(0, 16)}`);
  const entryJs = join(outDir, basename(fileURLToPath(entry)).replace(/\.ts$/, ".js"));
  if (!existsSync(entryJs)) {
    compileInto(outDir, sourceDir, basename(fileURLToPath(entry)), cacheRoot);
    removeStaleCopies(cacheRoot, basename(outDir));
  }
  return pathToFileURL(entryJs);
}

/**
 * Removes copies compiled from other versions of the sources, once they are old enough
 * that no process still starting a worker from them is likely.
 */
function removeStaleCopies(cacheRoot: string, current: string): void {
  for (const name of readdirSync(cacheRoot)) {
    if (!name.startsWith(COPY_PREFIX) || name === current) continue;
    const dir = join(cacheRoot, name);
    if (Date.now() - statSync(dir).mtimeMs > STALE_COPY_MS) rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes the entry and everything it imports into a staging folder, then renames it into place. */
function compileInto(outDir: string, sourceDir: string, entryName: string, cacheRoot: string): void {
  mkdirSync(cacheRoot, { recursive: true });
  const staging = mkdtempSync(join(cacheRoot, "staging-"));
  try {
    writeFileSync(join(staging, "package.json"), '{ "type": "module" }\n');
    const pending = [entryName];
    const done = new Set<string>();
    for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
      if (done.has(name)) continue;
      done.add(name);
      const code = stripTypes(readFileSync(join(sourceDir, name), "utf8"));
      if (ESCAPING_IMPORT.test(code)) throw new Error(`${name} imports a module outside ${sourceDir}`);
      const js = code.replace(RELATIVE_TS_IMPORT, (_match, keyword: string, quote: string, stem: string) => {
        pending.push(`${stem.slice(2)}.ts`);
        return `${keyword}${quote}${stem}.js${quote}`;
      });
      writeFileSync(join(staging, name.replace(/\.ts$/, ".js")), js);
    }
    renameSync(staging, outDir);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    // Another process compiling the same sources got there first.
    if (!existsSync(outDir)) throw error;
  }
}

/** `stripTypeScriptTypes` without its one-time ExperimentalWarning on the node's stderr. */
function stripTypes(source: string): string {
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === "string" ? warning : warning.message;
    if (text.includes("stripTypeScriptTypes")) return;
    (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    return stripTypeScriptTypes(source, { mode: "strip" });
  } finally {
    process.emitWarning = emitWarning;
  }
}
