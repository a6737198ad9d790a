import { homedir } from "node:os";
import { join } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { readPassphrase } from "../passphrase.ts";
import type { PublicIdentity } from "../../identity/index.ts";

interface KeyCommandOptions {
  dir: string;
  passphraseFile?: string;
  json?: boolean;
}

/** `cell keys init | show`: the node's peer key (Ed25519) and operator keystore (secp256k1). */
export function registerKeysCommand(program: Command): Command {
  const keys = program
    .command("keys")
    .description("create and show the node's peer key and operator keystore")
    .addHelpText(
      "after",
      "\nExamples:\n  $ CELL_PASSPHRASE=… cell keys init --dir ./node1\n  $ cell keys show --dir ./node1\n",
    );

  keys
    .command("init")
    .description("create a peer key (Ed25519) and an encrypted operator keystore (secp256k1)")
    .option("--dir <dir>", "key directory", defaultDir())
    .option("--force", "replace existing keys (the old ones are lost)")
    .option("--passphrase-file <file>", "file whose first line is the passphrase (else env CELL_PASSPHRASE)")
    .option("--scrypt-n <n>", "scrypt cost of the key files, a power of two (default 2^17)", parseInteger)
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nExample:\n  $ echo 'correct horse battery staple' > pass.txt && chmod 600 pass.txt\n  $ cell keys init --dir ./node1 --passphrase-file pass.txt\n",
    )
    .action(async function (
      this: Command,
      options: KeyCommandOptions & { force?: boolean; scryptN?: number },
    ) {
      try {
        const passphrase = await readPassphrase(options.passphraseFile);
        if (passphrase === undefined)
          throw new Error("no passphrase: pass --passphrase-file FILE or set CELL_PASSPHRASE");
        const { initIdentity } = await import("../../identity/index.ts");
        const identity = await initIdentity({
          dir: options.dir,
          passphrase,
          force: options.force ?? false,
          ...(options.scryptN === undefined ? {} : { scryptN: options.scryptN }),
        });
        printIdentity(identity, options.json ?? false, "created");
      } catch (error) {
        this.error(`error: ${(error as Error).message}`);
      }
    });

  keys
    .command("show")
    .description("print the peer id, did:key, peer key and operator address (never private keys)")
    .option("--dir <dir>", "key directory", defaultDir())
    .option(
      "--passphrase-file <file>",
      "also check that this passphrase unlocks the keys (or env CELL_PASSPHRASE)",
    )
    .option("--json", "print JSON")
    .addHelpText("after", "\nExample:\n  $ cell keys show --dir ./node1 --json\n")
    .action(async function (this: Command, options: KeyCommandOptions) {
      try {
        const { loadOrCreateIdentity, readPublicIdentity } = await import("../../identity/index.ts");
        const identity = await readPublicIdentity(options.dir);
        const passphrase = await readPassphrase(options.passphraseFile);
        if (passphrase !== undefined)
          await loadOrCreateIdentity({ dir: options.dir, passphrase, create: false });
        printIdentity(identity, options.json ?? false, passphrase === undefined ? "locked" : "unlocked");
      } catch (error) {
        this.error(`error: ${(error as Error).message}`);
      }
    });
  return keys;
}

/** The key directory when --dir is absent: $CELL_DATA_DIR, else ~/.cell. */
export function defaultDir(): string {
  return process.env.CELL_DATA_DIR ?? join(homedir(), ".cell");
}

function printIdentity(
  identity: PublicIdentity,
  json: boolean,
  status: "created" | "locked" | "unlocked",
): void {
  const view = {
    peerId: identity.peerId,
    did: identity.did,
    peerKey: identity.peerKeyHex,
    operator: identity.operatorAddress,
    peerKeyFile: identity.peerKeyPath,
    keystore: identity.keystorePath,
    status,
  };
  if (json) {
    process.stdout.write(`${JSON.stringify(view)}\n`);
    return;
  }
  const lines = [
    ["peer id", view.peerId],
    ["did", view.did],
    ["peer key", view.peerKey],
    ["operator", view.operator],
    ["keystore", view.keystore],
    ["peer key file", view.peerKeyFile],
    ["status", status],
  ].map(([label, value]) => `${label?.padEnd(14)}${value}`);
  process.stdout.write(`${lines.join("\n")}\n`);
}

function parseInteger(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}
