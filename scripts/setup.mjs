#!/usr/bin/env node
// Idempotent setup that runs before `npm test`, `npm start` and `npm run bench`.
// It must work on any Node >= 20 with nothing installed: plain JavaScript, no dependencies.
// 1. `npm install` (brings the pinned Node 22 as node_modules/.bin/node).
// 2. `npm install` again with that Node first on PATH, so optional native packages whose
//    engines need Node 22 (Hardhat's EDR binding) are installed too.
// A stamp of package.json + package-lock.json makes a second run a fast no-op.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const binDir = join(root, "node_modules", ".bin");
const stampFile = join(root, "node_modules", ".cell-setup-stamp");
const pinnedNode = join(binDir, process.platform === "win32" ? "node.cmd" : "node");

function manifestHash() {
  const hash = createHash("sha256");
  for (const name of ["package.json", "package-lock.json"]) {
    const file = join(root, name);
    if (existsSync(file)) hash.update(readFileSync(file));
  }
  return hash.digest("hex");
}

function pinnedNodeVersion() {
  if (!existsSync(pinnedNode)) return undefined;
  try {
    return execFileSync(pinnedNode, ["--version"], { encoding: "utf8" }).trim();
  } catch {
    return undefined;
  }
}

function isReady(expectedStamp) {
  if (!existsSync(stampFile)) return false;
  if (readFileSync(stampFile, "utf8") !== expectedStamp) return false;
  return pinnedNodeVersion()?.startsWith("v22.") === true;
}

function npmInstall(pathPrefix) {
  const env = { ...process.env, npm_config_fund: "false", npm_config_audit: "false" };
  if (pathPrefix) env.PATH = `${pathPrefix}${delimiter}${env.PATH ?? ""}`;
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  execFileSync(npm, ["install", "--no-audit", "--no-fund", "--loglevel=error"], {
    cwd: root,
    env,
    stdio: ["ignore", "inherit", "inherit"],
  });
}

const stamp = manifestHash();
if (isReady(stamp)) process.exit(0);

console.error("[setup] installing dependencies (pinned Node 22, Hardhat, libp2p) ...");
npmInstall(undefined);
const version = pinnedNodeVersion();
if (!version?.startsWith("v22.")) {
  console.error(`[setup] expected the pinned Node 22 at ${pinnedNode}, found ${version ?? "nothing"}`);
  process.exit(1);
}
console.error(`[setup] second pass under ${version} for native optional packages ...`);
npmInstall(binDir);
writeFileSync(stampFile, manifestHash());
console.error("[setup] ready");
