import { Worker } from "node:worker_threads";
import { z } from "zod/v4";
import { getAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { operatorAccount } from "./operator-account.ts";

/** Runs ethers' keystore functions in a thread of its own; see the file for why. */
const KEYSTORE_WORKER = new URL("./keystore-worker.mjs", import.meta.url);

type KeystoreRequest =
  | { op: "decrypt"; json: string; passphrase: string }
  | { op: "encrypt"; address: Address; privateKey: Hex; passphrase: string; scryptN: number };

/** `failed`: ethers rejected the request (for `decrypt`, a wrong passphrase or a modified file). */
type KeystoreReply = { ok: true; value: string } | { ok: false; failed: string };

/**
 * A secp256k1 key (the node's operator key, or a user's wallet) in a Web3 Secret Storage v3
 * keystore, the format of `cast wallet` and geth. Only its address is readable without the
 * passphrase. `label` names the file's role in errors ("operator keystore", "wallet").
 */
const KeystoreHeaderSchema = z
  .object({
    version: z.literal(3, "expected version 3"),
    address: z.string().regex(/^(0x)?[0-9a-fA-F]{40}$/, "expected a 20-byte hex address"),
    crypto: z.looseObject({}).optional(),
    Crypto: z.looseObject({}).optional(),
  })
  .refine((keystore) => keystore.crypto ?? keystore.Crypto, "missing crypto section");

export async function encryptOperatorKey(
  privateKey: Hex,
  passphrase: string,
  scryptN: number,
  label = "operator key",
): Promise<{ json: string; address: Address }> {
  const { address } = privateKeyToAccount(privateKey);
  const reply = await runKeystoreWorker({ op: "encrypt", address, privateKey, passphrase, scryptN });
  if (!reply.ok) throw new Error(`cannot encrypt the ${label}: ${reply.failed}`);
  const json = reply.value;
  return { json: `${JSON.stringify(JSON.parse(json), null, 2)}\n`, address };
}

export function readKeystoreAddress(text: string, path: string, label = "operator keystore"): Address {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${label} ${path} is not valid JSON`);
  }
  const parsed = KeystoreHeaderSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `${label} ${path} is not a v3 keystore: '${issue?.path.join(".") ?? ""}' ${issue?.message ?? "invalid"}`,
    );
  }
  const address = parsed.data.address;
  return getAddress(address.startsWith("0x") ? address : `0x${address}`);
}

export async function decryptOperatorKey(
  text: string,
  passphrase: string,
  path: string,
  label = "operator keystore",
): Promise<PrivateKeyAccount> {
  const expected = readKeystoreAddress(text, path, label);
  const reply = await runKeystoreWorker({ op: "decrypt", json: text, passphrase });
  if (!reply.ok)
    throw new Error(`cannot decrypt ${label} ${path}: wrong passphrase or the file was modified`);
  const account = operatorAccount(reply.value as Hex);
  if (account.address !== expected) {
    throw new Error(
      `${label} ${path} holds a key for ${account.address}, not its stated address ${expected}`,
    );
  }
  return account;
}

/**
 * Runs one request in a fresh keystore worker and waits for the thread to end, so none is
 * left behind. A worker that fails to start or dies rejects with its own error.
 */
function runKeystoreWorker(request: KeystoreRequest): Promise<KeystoreReply> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(KEYSTORE_WORKER, { workerData: request });
    let reply: KeystoreReply | undefined;
    worker.once("message", (message: KeystoreReply) => {
      reply = message;
    });
    worker.once("error", reject);
    worker.once("exit", (code) => {
      if (reply) resolve(reply);
      else reject(new Error(`keystore worker exited with code ${code} before replying`));
    });
  });
}
