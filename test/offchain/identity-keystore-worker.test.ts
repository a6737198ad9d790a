import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { initIdentity, loadOrCreateIdentity } from "../../offchain/src/identity/index.ts";
import { freshDirs } from "../support/fresh-dirs.ts";

const FAST = 1024;
const PASSPHRASE = "correct horse battery staple";
const IDENTITY = new URL("../../offchain/src/identity/index.ts", import.meta.url).href;

const freshDir = freshDirs("cell-keystore-worker-", "keys");

/** Creates and unlocks keys in a fresh process that records every module its main thread loads. */
const CHILD_SCRIPT = `
import { registerHooks } from "node:module";
const loaded = [];
registerHooks({ load(url, context, nextLoad) { loaded.push(url); return nextLoad(url, context); } });
const { initIdentity, loadOrCreateIdentity } = await import(process.env.IDENTITY);
const options = { dir: process.env.KEY_DIR, passphrase: process.env.PASSPHRASE, scryptN: ${FAST} };
const created = await initIdentity(options);
const unlocked = await loadOrCreateIdentity({ ...options, create: false });
console.log(JSON.stringify({ created: created.operatorAddress, unlocked: unlocked.operatorAddress, loaded }));
`;

describe("operator keystore worker", () => {
  test("the calling thread never loads ethers, and the process exits on its own after unlocking", async () => {
    const scriptDir = freshDir();
    await mkdir(scriptDir);
    const script = join(scriptDir, "unlock.mjs");
    await writeFile(script, CHILD_SCRIPT);
    const { stdout } = await promisify(execFile)(process.execPath, ["--no-warnings", script], {
      env: { ...process.env, IDENTITY, KEY_DIR: freshDir(), PASSPHRASE },
      timeout: 60_000,
    });
    const result = JSON.parse(stdout) as { created: string; unlocked: string; loaded: string[] };
    assert.match(result.created, /^0x[0-9a-fA-F]{40}$/);
    assert.equal(result.unlocked, result.created);
    assert.ok(result.loaded.some((url) => url.endsWith("/identity/operator-keystore.ts")));
    assert.deepEqual(
      result.loaded.filter((url) => url.includes("/node_modules/ethers/") || url.includes("keystore-worker")),
      [],
    );
  });

  test("a keystore locked with another passphrase fails with the error naming the file", async () => {
    const dir = freshDir();
    const identity = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    const other = await initIdentity({ dir: freshDir(), passphrase: `${PASSPHRASE}!`, scryptN: FAST });
    await copyFile(other.keystorePath, identity.keystorePath);
    await assert.rejects(
      loadOrCreateIdentity({ dir, passphrase: PASSPHRASE }),
      refused(identity.keystorePath),
    );
  });

  test("a keystore whose stated address was altered is refused as modified", async () => {
    const dir = freshDir();
    const identity = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    const other = await initIdentity({ dir: freshDir(), passphrase: PASSPHRASE, scryptN: FAST });
    const keystore = JSON.parse(await readFile(identity.keystorePath, "utf8"));
    keystore.address = other.operatorAddress.slice(2).toLowerCase();
    await writeFile(identity.keystorePath, JSON.stringify(keystore), { mode: 0o600 });
    await assert.rejects(
      loadOrCreateIdentity({ dir, passphrase: PASSPHRASE }),
      refused(identity.keystorePath),
    );
  });

  test("keys written through the worker reopen to the same account many times over", async () => {
    const dir = freshDir();
    const identity = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    const reopened = await Promise.all(
      Array.from({ length: 4 }, () => loadOrCreateIdentity({ dir, passphrase: PASSPHRASE, create: false })),
    );
    for (const unlocked of reopened) assert.equal(unlocked.operator.address, identity.operator.address);
  });
});

/** The error a keystore that does not decrypt to its stated account is refused with. */
function refused(keystorePath: string): Error {
  return new Error(
    `cannot decrypt operator keystore ${keystorePath}: wrong passphrase or the file was modified`,
  );
}
