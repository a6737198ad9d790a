// What every on-chain command shares: the chain options (--rpc, --deployment, --explorer),
// the user's wallet (--wallet, an encrypted v3 keystore), ATP amounts, printed transactions
// and errors that read as sentences.
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import type { Command } from "commander";
import { createPublicClient, getAddress, http, isAddress, parseUnits } from "viem";
import type { Address, Hex, TransactionReceipt } from "viem";
import type { PrivateKeyAccount } from "viem/accounts";
import { createReader, createWriter, parseDeployment, readDeployment } from "../chain/index.ts";
import type { ChainReader, ChainWriter, Deployment } from "../chain/index.ts";
import { decryptOperatorKey, readKeystoreAddress } from "../identity/index.ts";
import { EXIT_CODES } from "./exit-codes.ts";
import { describeRevert, formatAtp } from "./revert-text.ts";

export { formatAtp } from "./revert-text.ts";

export const DEFAULT_RPC_URL = "http://127.0.0.1:8546";
export const WALLET_PASSWORD_ENV = "CELL_WALLET_PASSWORD";

/** Block explorers of the public chains Cell targets; other chains take --explorer. */
export const EXPLORERS: Readonly<Record<number, string>> = {
  8453: "https://basescan.org",
  84532: "https://sepolia.basescan.org",
  10: "https://optimistic.etherscan.io",
  11155420: "https://sepolia-optimism.etherscan.io",
  42161: "https://arbiscan.io",
  421614: "https://sepolia.arbiscan.io",
};

export interface ChainOptions {
  config?: string;
  rpc?: string;
  deployment?: string;
  explorer?: string;
}

export interface WalletOptions {
  wallet?: string;
}

/** A chain to talk to: where it answers, its contracts and (on public chains) its explorer. */
export interface ChainContext {
  rpcUrl: string;
  deployment: Deployment;
  reader: ChainReader;
  explorer?: string;
}

export function addChainOptions(command: Command): Command {
  return command
    .option(
      "--rpc <url>",
      `chain JSON-RPC url (default: the node config's, $CELL_RPC_URL, else ${DEFAULT_RPC_URL})`,
    )
    .option(
      "--deployment <file>",
      "contract addresses (default: the node config's, else deployments/<chainId>.json)",
    )
    .option("--config <file>", "a node's config (TOML or JSON): its chain.rpcUrl and chain.deploymentFile")
    .option("--explorer <url>", "block explorer for transaction links (known for Base, OP, Arbitrum)");
}

export function addWalletOption(command: Command): Command {
  return command.option(
    "--wallet <file>",
    "the wallet's v3 keystore (default $CELL_WALLET, else ~/.cell/wallet.json); password by prompt or $CELL_WALLET_PASSWORD",
  );
}

export function walletPath(options: WalletOptions): string {
  return options.wallet ?? process.env.CELL_WALLET ?? join(homedir(), ".cell", "wallet.json");
}

/** Connects to the chain and reads its deployment; a deployment for another chain is an error. */
export async function connectChain(options: ChainOptions): Promise<ChainContext> {
  const fromConfig = options.config ? await nodeChainConfig(options.config) : {};
  const rpcUrl = options.rpc ?? fromConfig.rpcUrl ?? process.env.CELL_RPC_URL ?? DEFAULT_RPC_URL;
  const deploymentFile = options.deployment ?? fromConfig.deploymentFile;
  let chainId: number;
  try {
    chainId = await createPublicClient({ transport: http(rpcUrl, { retryCount: 0 }) }).getChainId();
  } catch (error) {
    throw new Error(`the chain at ${rpcUrl} does not answer (set --rpc)`, { cause: error });
  }
  const deployment = deploymentFile
    ? parseDeployment(JSON.parse(await readText(deploymentFile, "deployment file")), deploymentFile)
    : readDeployment(chainId);
  if (deployment.chainId !== chainId)
    throw new Error(`the deployment is for chain ${deployment.chainId} but ${rpcUrl} is chain ${chainId}`);
  const explorer = explorerOf(chainId, options.explorer);
  return { rpcUrl, deployment, reader: createReader(rpcUrl, deployment), ...(explorer ? { explorer } : {}) };
}

/** The chain a node's config names; its paths are relative to the file, as `cell node start` reads them. */
async function nodeChainConfig(file: string): Promise<{ rpcUrl?: string; deploymentFile?: string }> {
  const { loadConfig } = await import("../node/index.ts");
  const { chain } = await loadConfig(file);
  return { rpcUrl: chain.rpcUrl, ...(chain.deploymentFile ? { deploymentFile: chain.deploymentFile } : {}) };
}

/** The wallet's address, read without its password. */
export async function walletAddress(options: WalletOptions): Promise<Address> {
  const path = walletPath(options);
  return readKeystoreAddress(await readText(path, "wallet"), path, "wallet");
}

/** Unlocks the wallet: the password comes from $CELL_WALLET_PASSWORD, else a prompt on the terminal. */
export async function unlockWallet(options: WalletOptions): Promise<PrivateKeyAccount> {
  const path = walletPath(options);
  const keystore = await readText(path, "wallet");
  readKeystoreAddress(keystore, path, "wallet");
  const password = await readWalletPassword(`password for wallet ${path}: `);
  return decryptOperatorKey(keystore, password, path, "wallet");
}

/** A writer signing with the unlocked wallet; a wallet without ETH for gas is refused before anything is signed. */
export async function writerFor(chain: ChainContext, options: WalletOptions): Promise<ChainWriter> {
  const address = await walletAddress(options);
  if ((await chain.reader.publicClient.getBalance({ address })) === 0n)
    throw new Error(`rejected: the wallet ${address} has no ETH to pay for gas`);
  return createWriter(chain.rpcUrl, chain.deployment, await unlockWallet(options));
}

/** $CELL_WALLET_PASSWORD, else asked on the terminal without echo; no terminal and no env is an error. */
export async function readWalletPassword(prompt: string, confirm = false): Promise<string> {
  const fromEnv = process.env[WALLET_PASSWORD_ENV];
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv;
  if (!process.stdin.isTTY)
    throw new Error(`no wallet password: set ${WALLET_PASSWORD_ENV} or run on a terminal to be asked`);
  const password = await askHidden(prompt);
  if (password.length === 0) throw new Error("the wallet password is empty");
  if (confirm && (await askHidden("repeat the password: ")) !== password)
    throw new Error("the passwords differ");
  return password;
}

function askHidden(prompt: string): Promise<string> {
  process.stderr.write(prompt);
  const muted = new Writable({ write: (_chunk, _encoding, done) => done() });
  const rl = createInterface({ input: process.stdin, output: muted, terminal: true });
  return new Promise((resolve, reject) => {
    rl.once("line", (line) => {
      rl.close();
      process.stderr.write("\n");
      resolve(line);
    });
    // The terminal is in raw mode while asking: Ctrl-C arrives here, not as a signal.
    rl.once("SIGINT", () => {
      rl.close();
      process.stderr.write("\n");
      reject(new Error("cancelled"));
    });
  });
}

/** `12.5` → 12.5 × 10^18 wei; at most 18 decimals, above zero. */
export function parseAtp(amount: string, what = "amount"): bigint {
  if (!/^\d+(\.\d{1,18})?$/.test(amount.trim()))
    throw new Error(
      `${what} '${amount}' is not an ATP amount: expected digits with up to 18 decimals, e.g. 12.5`,
    );
  const wei = parseUnits(amount.trim(), 18);
  if (wei === 0n) throw new Error(`${what} must be above zero`);
  return wei;
}

/** A checksummed address, or an error naming the argument. */
export function parseAddress(value: string, what: string): Address {
  if (!isAddress(value, { strict: false }))
    throw new Error(`${what} '${value}' is not an address (0x + 40 hex)`);
  return getAddress(value);
}

/** A 32-byte id such as a channel id, or undefined when `value` is not one. */
export function asBytes32(value: string): Hex | undefined {
  return /^0x[0-9a-fA-F]{64}$/.test(value) ? (value.toLowerCase() as Hex) : undefined;
}

/** What a transaction did, its hash, block and gas, and (on public chains) a link to it. */
export function transactionText(
  explorer: string | undefined,
  what: string,
  receipt: Pick<TransactionReceipt, "transactionHash" | "blockNumber" | "gasUsed">,
): string {
  const link = explorer ? `\n  ${explorer}/tx/${receipt.transactionHash}` : "";
  return `${what}: tx ${receipt.transactionHash} (block ${receipt.blockNumber}, gas ${receipt.gasUsed})${link}\n`;
}

export function printTransaction(chain: ChainContext, what: string, receipt: TransactionReceipt): void {
  process.stdout.write(transactionText(chain.explorer, what, receipt));
}

/** The explorer of a chain: --explorer when given, else the known one of a public chain. */
export function explorerOf(chainId: number, override?: string): string | undefined {
  return (override ?? EXPLORERS[chainId])?.replace(/\/+$/, "");
}

/** Refuses before sending when the wallet holds less ATP than the call will take. */
export function requireAtp(have: bigint, need: bigint): void {
  if (have < need)
    throw new Error(`rejected: not enough ATP (have ${formatAtp(have)}, need ${formatAtp(need)})`);
}

/**
 * Runs a chain command's body: a revert becomes `error: <sentence>`, any other failure its
 * message, and the exit code 1.
 */
export async function runChainCommand(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    process.stderr.write(`error: ${errorText(error)}\n`);
    process.exitCode = EXIT_CODES.error;
  }
}

export function errorText(error: unknown): string {
  const revert = describeRevert(error);
  if (revert) return revert;
  const short = (error as { shortMessage?: unknown }).shortMessage;
  if (typeof short === "string") return short;
  return error instanceof Error ? error.message : String(error);
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const hint = what === "wallet" && code === "ENOENT" ? " (create one with `cell wallet create`)" : "";
    throw new Error(`cannot read ${what} ${path}: ${code ?? "unreadable"}${hint}`, { cause: error });
  }
}
