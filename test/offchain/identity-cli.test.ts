import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { decryptKeystoreJson } from "ethers";
import { loadOrCreateIdentity } from "../../offchain/src/identity/index.ts";

const KEYS_COMMAND = new URL("../../offchain/src/cli/commands/keys.ts", import.meta.url).pathname;
const PASSPHRASE = "cli passphrase";

let root: string;
let runner: string;
let passFile: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "cell-keys-cli-"));
  runner = join(root, "cell-keys.ts");
  await writeFile(
    runner,
    [
      `import { Command } from ${JSON.stringify(import.meta.resolve("commander"))};`,
      `import { registerKeysCommand } from ${JSON.stringify(KEYS_COMMAND)};`,
      `const program = new Command("cell");`,
      `registerKeysCommand(program);`,
      `await program.parseAsync(process.argv);`,
    ].join("\n"),
  );
  passFile = join(root, "pass.txt");
  await writeFile(passFile, `${PASSPHRASE}\n`, { mode: 0o600 });
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function cell(args: string[], env: Record<string, string> = {}) {
  const { CELL_PASSPHRASE: _drop, ...inherited } = process.env;
  const result = spawnSync(process.execPath, ["--no-warnings", runner, ...args], {
    cwd: new URL("../..", import.meta.url).pathname,
    env: { ...inherited, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("cell keys", () => {
  test("init with --passphrase-file creates keys that show prints without secrets", async () => {
    const dir = join(root, "node1");
    const init = cell([
      "keys",
      "init",
      "--dir",
      dir,
      "--passphrase-file",
      passFile,
      "--scrypt-n",
      "1024",
      "--json",
    ]);
    assert.equal(init.code, 0, init.stderr);
    const created = JSON.parse(init.stdout);
    assert.equal(created.status, "created");

    const identity = await loadOrCreateIdentity({ dir, passphrase: PASSPHRASE, create: false });
    assert.equal(created.peerId, identity.peerId);
    assert.equal(created.did, identity.did);
    assert.equal(created.peerKey, identity.peerKeyHex);
    assert.equal(created.operator, identity.operator.address);

    const show = cell(["keys", "show", "--dir", dir]);
    assert.equal(show.code, 0, show.stderr);
    for (const value of [identity.peerId, identity.did, identity.peerKeyHex, identity.operator.address]) {
      assert.ok(show.stdout.includes(value), `show prints ${value}`);
    }
    assert.match(show.stdout, /status\s+locked/);

    const operatorKey = (
      await decryptKeystoreJson(await readFile(identity.keystorePath, "utf8"), PASSPHRASE)
    ).privateKey.slice(2);
    const seedHex = Buffer.from(identity.peerKeySeed).toString("hex");
    for (const output of [init.stdout, init.stderr, show.stdout, show.stderr]) {
      assert.ok(!output.toLowerCase().includes(operatorKey.toLowerCase()), "operator private key printed");
      assert.ok(!output.includes(seedHex), "peer key seed printed");
    }
  });

  test("CELL_PASSPHRASE works and show checks it unlocks the keys", () => {
    const dir = join(root, "node2");
    assert.equal(
      cell(["keys", "init", "--dir", dir, "--scrypt-n", "1024"], { CELL_PASSPHRASE: PASSPHRASE }).code,
      0,
    );
    const unlocked = cell(["keys", "show", "--dir", dir, "--json"], { CELL_PASSPHRASE: PASSPHRASE });
    assert.equal(unlocked.code, 0, unlocked.stderr);
    assert.equal(JSON.parse(unlocked.stdout).status, "unlocked");

    const wrong = cell(["keys", "show", "--dir", dir], { CELL_PASSPHRASE: "not it" });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /wrong passphrase/);
    assert.ok(!wrong.stderr.includes("not it"));
  });

  test("init refuses without a passphrase, refuses to overwrite, and --force replaces", () => {
    const dir = join(root, "node3");
    const missing = cell(["keys", "init", "--dir", dir]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no passphrase: pass --passphrase-file FILE or set CELL_PASSPHRASE/);

    const first = cell([
      "keys",
      "init",
      "--dir",
      dir,
      "--passphrase-file",
      passFile,
      "--scrypt-n",
      "1024",
      "--json",
    ]);
    assert.equal(first.code, 0, first.stderr);
    const again = cell(["keys", "init", "--dir", dir, "--passphrase-file", passFile, "--scrypt-n", "1024"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /keys already exist .*--force/);
    const forced = cell([
      "keys",
      "init",
      "--dir",
      dir,
      "--passphrase-file",
      passFile,
      "--scrypt-n",
      "1024",
      "--force",
      "--json",
    ]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(JSON.parse(forced.stdout).peerId, JSON.parse(first.stdout).peerId);
  });

  test("show on an empty directory says how to create keys", () => {
    const result = cell(["keys", "show", "--dir", join(root, "nothing")]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no keys in .*cell keys init/);
  });

  test("every keys command has help with an example", () => {
    for (const args of [["keys"], ["keys", "init"], ["keys", "show"]]) {
      const help = cell([...args, "--help"]);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /Example/);
      assert.match(help.stdout, /\$ (CELL_PASSPHRASE=… )?cell keys/);
    }
  });
});
