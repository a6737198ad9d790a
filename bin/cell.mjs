#!/usr/bin/env node
// `cell` entry point. The CLI needs Node 22 (libp2p 3, TypeScript type stripping); when
// started by an older Node it re-runs itself under the project's pinned Node.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = fileURLToPath(new URL("../offchain/src/cli/main.ts", import.meta.url));
const major = Number(process.versions.node.split(".")[0]);
if (major >= 22) {
  const { runCli } = await import(main);
  await runCli(process.argv);
} else {
  const pinned = fileURLToPath(new URL("../node_modules/.bin/node", import.meta.url));
  if (!existsSync(pinned)) {
    console.error("cell needs Node 22: run `npm run setup` first (it installs the pinned Node)");
    process.exit(1);
  }
  const result = spawnSync(pinned, [main, ...process.argv.slice(2)], { stdio: "inherit" });
  process.exit(result.status ?? 1);
}
