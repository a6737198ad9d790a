// compiledWorkerEntry: the runtime worker's sources as plain JavaScript in a cache folder,
// compiled once per version of the sources; copies of older versions are removed.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { compiledWorkerEntry } from "../../offchain/src/runtime/worker-entry.ts";

describe("runtime worker entry", () => {
  let dir: string;
  let sources: string;
  let cache: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "cell-worker-entry-"));
    sources = join(dir, "src");
    cache = join(dir, "cache");
    await mkdir(sources);
    await writeFile(join(sources, "helper.ts"), "export const answer: number = 41;\n");
    await writeFile(
      join(sources, "entry.ts"),
      'import { answer } from "./helper.ts";\nexport const result: number = answer + 1;\n',
    );
  });

  after(() => rm(dir, { recursive: true, force: true }));

  it("compiles the entry and the modules it imports to JavaScript that runs", async () => {
    const url = compiledWorkerEntry(pathToFileURL(join(sources, "entry.ts")), cache);
    assert.ok(url.pathname.endsWith(".js"));
    const { result } = (await import(url.href)) as { result: number };
    assert.equal(result, 42);
    assert.equal(compiledWorkerEntry(pathToFileURL(join(sources, "entry.ts")), cache).href, url.href);
  });

  it("removes copies of other source versions once they are old, and keeps recent ones", async () => {
    const first = fileURLToPath(compiledWorkerEntry(pathToFileURL(join(sources, "entry.ts")), cache));
    const recent = join(cache, "runtime-worker-0000000000000001");
    await mkdir(recent);
    const old = join(cache, "runtime-worker-0000000000000002");
    await mkdir(old);
    const anHourAgo = new Date(Date.now() - 3_600_000);
    await utimes(old, anHourAgo, anHourAgo);

    await writeFile(join(sources, "helper.ts"), "export const answer: number = 99;\n");
    const second = compiledWorkerEntry(pathToFileURL(join(sources, "entry.ts")), cache);
    const { result } = (await import(second.href)) as { result: number };
    assert.equal(result, 100);
    assert.equal(existsSync(old), false, "an old copy stays");
    assert.equal(existsSync(recent), true, "a recent copy was removed");
    assert.equal(existsSync(first), true, "the previous version was removed while still recent");
    assert.equal((await readdir(cache)).filter((name) => name.startsWith("runtime-worker-")).length, 3);
  });
});
