import { decryptKeystoreJson, encryptKeystoreJson } from "ethers";
import { z } from "zod";
import { getAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { operatorAccount } from "./operator-account.ts";

/**
 * The operator key (secp256k1) in a Web3 Secret Storage v3 keystore, the format of
 * `cast wallet` and geth. Only its address is readable without the passphrase.
 */
const KeystoreHeaderSchema = z
  .object({
    version: z.literal(3),
    address: z.string().regex(/^(0x)?[0-9a-fA-F]{40}$/, "expected a 20-byte hex address"),
    crypto: z.object({}).passthrough().optional(),
    Crypto: z.object({}).passthrough().optional(),
  })
  .refine((keystore) => keystore.crypto ?? keystore.Crypto, "missing crypto section");

export async function encryptOperatorKey(
  privateKey: Hex,
  passphrase: string,
  scryptN: number,
): Promise<{ json: string; address: Address }> {
  const { address } = privateKeyToAccount(privateKey);
  const json = await encryptKeystoreJson({ address, privateKey }, passphrase, { scrypt: { N: scryptN } });
  return { json: `${JSON.stringify(JSON.parse(json), null, 2)}\n`, address };
}

export function readKeystoreAddress(text: string, path: string): Address {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`operator keystore ${path} is not valid JSON`);
  }
  const parsed = KeystoreHeaderSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `operator keystore ${path} is not a v3 keystore: '${issue?.path.join(".") ?? ""}' ${issue?.message ?? "invalid"}`,
    );
  }
  const address = parsed.data.address;
  return getAddress(address.startsWith("0x") ? address : `0x${address}`);
}

export async function decryptOperatorKey(
  text: string,
  passphrase: string,
  path: string,
): Promise<PrivateKeyAccount> {
  const expected = readKeystoreAddress(text, path);
  let privateKey: Hex;
  try {
    privateKey = (await decryptKeystoreJson(text, passphrase)).privateKey as Hex;
  } catch {
    throw new Error(`cannot decrypt operator keystore ${path}: wrong passphrase or the file was modified`);
  }
  const account = operatorAccount(privateKey);
  if (account.address !== expected) {
    throw new Error(
      `operator keystore ${path} holds a key for ${account.address}, not its stated address ${expected}`,
    );
  }
  return account;
}
