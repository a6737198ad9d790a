import { mkdir, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import type { Address, Hex } from "viem";
import { generatePrivateKey } from "viem/accounts";
import { DEFAULT_SCRYPT_N, encryptOperatorKey, writePrivateFile } from "../../identity/index.ts";
import {
  addWalletOption,
  readWalletPassword,
  runChainCommand,
  walletAddress,
  walletPath,
} from "../chain-options.ts";
import type { WalletOptions } from "../chain-options.ts";

interface CreateOptions extends WalletOptions {
  force?: boolean;
  scryptN?: number;
  json?: boolean;
}

/** `cell wallet create | import | address`: the user's wallet, an encrypted v3 keystore apart from any node's keys. */
export function registerWalletCommand(program: Command): Command {
  const wallet = program
    .command("wallet")
    .description("the user's wallet (holds ATP, stakes, opens channels), an encrypted v3 keystore")
    .addHelpText(
      "after",
      "\nExamples:\n  $ cell wallet create --wallet ~/cell-wallet.json\n  $ cell wallet address --wallet ~/cell-wallet.json\n",
    );

  addWalletOption(wallet.command("create"))
    .description("create a wallet with a new key; asks for a password (or $CELL_WALLET_PASSWORD)")
    .option("--force", "replace an existing wallet file (its key is lost unless backed up)")
    .option("--scrypt-n <n>", "scrypt cost, a power of two (default 2^17)", parsePowerOfTwo)
    .option("--json", "print JSON")
    .addHelpText("after", "\nExample:\n  $ cell wallet create --wallet ./wallet.json\n")
    .action((options: CreateOptions) => runChainCommand(() => saveWallet(generatePrivateKey(), options)));

  addWalletOption(wallet.command("import <privateKeyFile>"))
    .description("encrypt an existing private key (a file with 0x + 64 hex on its first line) into a wallet")
    .option("--force", "replace an existing wallet file")
    .option("--scrypt-n <n>", "scrypt cost, a power of two (default 2^17)", parsePowerOfTwo)
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nExample:\n  $ cell wallet import ./key.txt --wallet ./wallet.json && shred -u ./key.txt\n",
    )
    .action((file: string, options: CreateOptions) =>
      runChainCommand(async () => saveWallet(await readPrivateKey(file), options)),
    );

  addWalletOption(wallet.command("address"))
    .description("print the wallet's address (no password needed)")
    .option("--json", "print JSON")
    .addHelpText("after", "\nExample:\n  $ cell wallet address --wallet ./wallet.json\n")
    .action((options: WalletOptions & { json?: boolean }) =>
      runChainCommand(async () =>
        printWallet(await walletAddress(options), walletPath(options), options.json),
      ),
    );
  return wallet;
}

async function saveWallet(privateKey: Hex, options: CreateOptions): Promise<void> {
  const path = walletPath(options);
  if (!options.force && (await exists(path)))
    throw new Error(
      `wallet ${path} already exists; use --force to replace it (its key is lost unless backed up)`,
    );
  const password = await readWalletPassword(`password for the new wallet ${path}: `, true);
  const { json, address } = await encryptOperatorKey(
    privateKey,
    password,
    options.scryptN ?? DEFAULT_SCRYPT_N,
    "wallet key",
  );
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writePrivateFile(path, json);
  printWallet(address, path, options.json);
}

function printWallet(address: Address, path: string, json = false): void {
  process.stdout.write(
    json ? `${JSON.stringify({ address, wallet: path })}\n` : `address  ${address}\nwallet   ${path}\n`,
  );
}

async function readPrivateKey(file: string): Promise<Hex> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new Error(
      `cannot read private key file ${file}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`,
      { cause: error },
    );
  }
  const line = (text.split(/\r?\n/, 1)[0] ?? "").trim();
  const hex = line.startsWith("0x") ? line : `0x${line}`;
  if (!/^0x[0-9a-fA-F]{64}$/.test(hex))
    throw new Error(`private key file ${file} does not start with a private key (0x + 64 hex digits)`);
  return hex.toLowerCase() as Hex;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

function parsePowerOfTwo(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 2 || n > 2 ** 22 || (n & (n - 1)) !== 0)
    throw new InvalidArgumentError(`expected a power of two from 2 to 2^22, got '${value}'`);
  return n;
}
