// withNodeFlags (offchain/src/node/launch.ts): a node's entry script runs again in the same
// process as an esbuild bundle, with the node's V8 flags and malloc settings, while its
// modules still see their own source files through import.meta.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const LAUNCH = fileURLToPath(new URL("../../offchain/src/node/launch.ts", import.meta.url));
const CACHE_DIR = fileURLToPath(new URL("../../node_modules/.cache/cell", import.meta.url));

interface Report {
  pid: number;
  script: string;
  execArgv: string[];
  mallocArenaMax?: string;
  url: string;
  main: boolean;
  helper: { url: string; main: boolean; version: number };
}

/** Runs `entry` with Node and returns its pid and the JSON line it printed. */
async function run(
  entry: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ pid: number; report: Report; stderr: string }> {
  const { MALLOC_ARENA_MAX: _unset, ...inherited } = process.env;
  const child = spawn(process.execPath, [entry], {
    env: { ...inherited, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  assert.equal(code, 0, `the entry failed: ${stderr}`);
  return { pid: child.pid!, report: JSON.parse(stdout) as Report, stderr };
}

describe("node launch: withNodeFlags", () => {
  let dir: string;
  let entry: string;
  let unbundlable: string;
  let helper: string;
  let cacheBefore: Set<string>;

  const writeHelper = async (version: number) => {
    await writeFile(
      helper,
      `export const helper = { url: import.meta.url, main: import.meta.main, version: ${version} as number };\n`,
    );
  };

  before(async () => {
    cacheBefore = new Set(await readdir(CACHE_DIR).catch(() => []));
    dir = await mkdtemp(join(tmpdir(), "cell-launch-"));
    entry = join(dir, "entry.ts");
    helper = join(dir, "helper.ts");
    await writeHelper(1);
    const body = [
      `import { helper } from "./helper.ts";`,
      `await withNodeFlags();`,
      `const report = { pid: process.pid, script: process.argv[1], execArgv: process.execArgv,`,
      `  mallocArenaMax: process.env.MALLOC_ARENA_MAX, url: import.meta.url, main: import.meta.main, helper };`,
      `process.stdout.write(JSON.stringify(report));`,
    ];
    // esbuild resolves no file: URL specifiers; Node does, so this entry runs but cannot be bundled.
    unbundlable = join(dir, "unbundlable.ts");
    await writeFile(
      unbundlable,
      [`import { withNodeFlags } from ${JSON.stringify(pathToFileURL(LAUNCH).href)};`, ...body].join("\n"),
    );
    await writeFile(entry, [`import { withNodeFlags } from ${JSON.stringify(LAUNCH)};`, ...body].join("\n"));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
    for (const name of await readdir(CACHE_DIR).catch(() => []))
      if (!cacheBefore.has(name)) await rm(join(CACHE_DIR, name), { force: true });
  });

  it("runs the entry again in the same process, bundled, with the node's flags and malloc settings", async () => {
    const { pid, report } = await run(entry);
    assert.equal(report.pid, pid);
    assert.ok(report.script.startsWith(join(CACHE_DIR, "bundle-")), report.script);
    assert.ok(report.execArgv.includes("--max-semi-space-size=2"), report.execArgv.join(" "));
    assert.ok(report.execArgv.includes("--heap-growing-percent=30"), report.execArgv.join(" "));
    assert.equal(report.mallocArenaMax, "2");
  });

  it("keeps import.meta as each module would see it from its own file", async () => {
    const { report } = await run(entry);
    assert.equal(report.url, pathToFileURL(entry).href);
    assert.equal(report.main, true);
    assert.deepEqual(report.helper, { url: pathToFileURL(helper).href, main: false, version: 1 });
  });

  it("rebuilds the bundle when one of its inputs changed", async () => {
    await writeHelper(2);
    const later = new Date(Date.now() + 2_000);
    await utimes(helper, later, later);
    const { report } = await run(entry);
    assert.equal(report.helper.version, 2);
    assert.ok(report.script.startsWith(join(CACHE_DIR, "bundle-")));
  });

  it("runs the sources themselves, still with the flags, when CELL_BUNDLE=0", async () => {
    const { report } = await run(entry, { CELL_BUNDLE: "0" });
    assert.equal(report.script, entry);
    assert.ok(report.execArgv.includes("--max-semi-space-size=2"));
    assert.equal(report.helper.url, pathToFileURL(helper).href);
  });

  it("runs the sources with the flags, and says why, when the entry cannot be bundled", async () => {
    const { report, stderr } = await run(unbundlable);
    assert.equal(report.script, unbundlable);
    assert.ok(report.execArgv.includes("--max-semi-space-size=2"));
    assert.match(stderr, /cannot bundle .*unbundlable\.ts .*running its sources/);
  });
});
