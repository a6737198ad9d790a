#!/usr/bin/env node
// Builds the browser console (offchain/web/) into static files in offchain/web/dist/, which the
// node's API serves at `/`: one esbuild bundle (Preact, Chart.js, viem; nothing from a CDN),
// the stylesheet and index.html. Skipped when a stamp of the sources' hash says the output is
// current; `--force` rebuilds. Plain JavaScript, so scripts/setup.mjs can run it on any Node.
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const webDir = join(root, "offchain", "web");
const outDir = join(webDir, "dist");
const stampFile = join(outDir, ".build-stamp");
/** Sources the bundle is made of, besides the installed packages (package-lock.json covers those). */
const inputs = [
  join(webDir, "src"),
  join(webDir, "index.html"),
  join(webDir, "styles.css"),
  join(root, "offchain", "src", "chain", "abis.ts"),
  join(root, "offchain", "src", "chain", "revert-text.ts"),
  join(root, "package-lock.json"),
  fileURLToPath(import.meta.url),
];

function filesUnder(path) {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((name) => filesUnder(join(path, name)));
}

function sourcesHash() {
  const hash = createHash("sha256");
  for (const file of inputs.flatMap(filesUnder)) {
    hash.update(relative(root, file));
    hash.update(readFileSync(file));
  }
  return hash.digest("hex");
}

export async function buildWeb({ force = false } = {}) {
  const stamp = sourcesHash();
  if (!force && existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) return false;
  const { build } = await import("esbuild");
  mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: [join(webDir, "src", "main.ts")],
    outfile: join(outDir, "console.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["chrome120", "firefox120", "safari17"],
    minify: true,
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(join(webDir, "styles.css"), join(outDir, "console.css"));
  copyFileSync(join(webDir, "index.html"), join(outDir, "index.html"));
  writeFileSync(stampFile, stamp);
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const built = await buildWeb({ force: process.argv.includes("--force") });
  console.error(
    built ? `[setup] console built into ${relative(root, outDir)}/` : "[setup] console is up to date",
  );
}
