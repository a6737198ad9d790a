#!/usr/bin/env node
// Idempotent setup that runs before `npm test`, `npm start` and `npm run bench`.
// It must work on any Node >= 20 with nothing installed: plain JavaScript, no dependencies.
// 1. `npm install` (brings the pinned Node 22 as node_modules/.bin/node).
// 2. `npm install` again with that Node first on PATH, so optional native packages whose
//    engines need Node 22 (Hardhat's EDR binding) are installed too.
// 3. strace (the store durability test traces fsyncs with it) and Chromium (the console's
//    browser tests drive it), with apt-get when run as root and they are missing; best effort:
//    without them only those tests fail, saying how to install them.
// 4. The browser console (offchain/web/ into offchain/web/dist/) when its sources changed.
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

function onPath(command) {
  return (process.env.PATH ?? "")
    .split(delimiter)
    .some((dir) => dir.length > 0 && existsSync(join(dir, command)));
}

/** Installs Debian `pkg` for `command` when it is missing, as root with apt-get; else says how. */
function installDebianPackage(command, pkg, neededBy) {
  if (process.platform !== "linux" || onPath(command)) return;
  if (process.getuid?.() !== 0 || !onPath("apt-get")) {
    console.error(`[setup] ${command} is missing (${neededBy} needs it): apt-get install -y ${pkg}`);
    return;
  }
  console.error(`[setup] installing ${pkg} ...`);
  const quiet = {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  };
  try {
    execFileSync("apt-get", ["update", "-qq"], quiet);
    execFileSync("apt-get", ["install", "-y", "-qq", pkg], quiet);
  } catch {
    console.error(`[setup] could not install ${pkg}; install it with apt-get install -y ${pkg}`);
  }
}

/** The console's bundle, rebuilt by the pinned Node when its sources changed. */
function buildConsole() {
  try {
    execFileSync(pinnedNode, [join(root, "scripts", "build-web.mjs")], { cwd: root, stdio: "inherit" });
  } catch {
    console.error("[setup] building the console failed; rerun: node scripts/build-web.mjs --force");
    process.exit(1);
  }
}

const stamp = manifestHash();
if (isReady(stamp)) {
  buildConsole();
  process.exit(0);
}

console.error("[setup] installing dependencies (pinned Node 22, Hardhat, libp2p) ...");
npmInstall(undefined);
const version = pinnedNodeVersion();
if (!version?.startsWith("v22.")) {
  console.error(`[setup] expected the pinned Node 22 at ${pinnedNode}, found ${version ?? "nothing"}`);
  process.exit(1);
}
console.error(`[setup] second pass under ${version} for native optional packages ...`);
npmInstall(binDir);
installDebianPackage("strace", "strace", "the store durability test");
installDebianPackage("chromium", "chromium", "the console's browser test");
buildConsole();
writeFileSync(stampFile, manifestHash());
console.error("[setup] ready");
