import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { inspect } from "node:util";
import * as ed from "@noble/ed25519";
import type { Address, Hex } from "viem";
import { generatePrivateKey, type PrivateKeyAccount } from "viem/accounts";
import { operatorAccount } from "./operator-account.ts";
import { didFromPublicKey, peerIdFromPublicKey } from "./encoding.ts";
import { ensurePrivateDir, fileExists, isExposed, writePrivateFile } from "./files.ts";
import { decryptOperatorKey, encryptOperatorKey, readKeystoreAddress } from "./operator-keystore.ts";
import { decryptPeerKey, encryptPeerKey, parsePeerKeyFile } from "./peer-key-file.ts";
import { REDACTED, SecretBytes } from "./secret.ts";

export const PEER_KEY_FILE = "peer-key.json";
export const OPERATOR_KEYSTORE_FILE = "operator.json";
/** scrypt cost of new key files: 2^17, the v3 keystore "standard" (about 0.5–1 s to unlock). */
export const DEFAULT_SCRYPT_N = 2 ** 17;

/** Anything with pino's `info`/`warn` shape; identity never logs key material. */
export interface IdentityLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** What can be shown about a node without its passphrase. */
export interface PublicIdentity {
  /** libp2p PeerId, `12D3KooW…`. */
  peerId: string;
  /** `did:key:z6Mk…` of the peer key. */
  did: string;
  peerPublicKey: Uint8Array;
  /** The Ed25519 public key as registered on-chain next to the operator (0x + 32 bytes). */
  peerKeyHex: Hex;
  operatorAddress: Address;
  peerKeyPath: string;
  keystorePath: string;
}

export interface Identity extends PublicIdentity {
  /** 32-byte Ed25519 seed; libp2p takes it as `generateKeyPairFromSeed("Ed25519", seed)`. Prints as `[redacted]`. */
  peerKeySeed: Uint8Array;
  /** The operator key (secp256k1, a viem LocalAccount) that signs bids, receipts and vouchers. */
  operator: PrivateKeyAccount;
}

export interface KeyOptions {
  dir: string;
  passphrase: string;
  /** scrypt N for newly written key files (default {@link DEFAULT_SCRYPT_N}); reading uses each file's own. */
  scryptN?: number;
  logger?: IdentityLogger;
}

export interface InitIdentityOptions extends KeyOptions {
  /** Replace existing keys (they are lost unless backed up). */
  force?: boolean;
  /** Import this operator key instead of generating one. */
  operatorPrivateKey?: Hex;
}

export interface LoadIdentityOptions extends KeyOptions {
  /** Create the keys when the directory has none (default true). */
  create?: boolean;
}

/** Creates a fresh peer key and operator keystore in `dir`. */
export async function initIdentity(options: InitIdentityOptions): Promise<Identity> {
  assertPassphrase(options.passphrase);
  const scryptN = checkScryptN(options.scryptN ?? DEFAULT_SCRYPT_N);
  const paths = keyPaths(options.dir);
  const existing = await existingKeyFiles(paths);
  if (existing.length > 0 && !options.force) {
    throw new Error(
      `keys already exist in ${options.dir} (${existing.join(", ")}); use --force to replace them`,
    );
  }
  await ensurePrivateDir(options.dir);

  const seed = SecretBytes.of32(randomBytes(32));
  const peerPublicKey = await ed.getPublicKeyAsync(seed);
  await writePrivateFile(
    paths.peerKeyPath,
    await encryptPeerKey(seed, peerPublicKey, options.passphrase, scryptN),
  );

  const operatorPrivateKey = options.operatorPrivateKey ?? generatePrivateKey();
  assertPrivateKeyShape(operatorPrivateKey);
  const { json } = await encryptOperatorKey(operatorPrivateKey, options.passphrase, scryptN);
  await writePrivateFile(paths.keystorePath, json);

  const operator = operatorAccount(operatorPrivateKey);
  const identity = makeIdentity(publicIdentity(peerPublicKey, operator.address, paths), seed, operator);
  options.logger?.info(
    { dir: options.dir, peerId: identity.peerId, operator: identity.operatorAddress },
    "created node keys",
  );
  return identity;
}

/** Unlocks the keys in `dir`, creating them first when there are none and `create` is not false. */
export async function loadOrCreateIdentity(options: LoadIdentityOptions): Promise<Identity> {
  assertPassphrase(options.passphrase);
  const paths = keyPaths(options.dir);
  const existing = await existingKeyFiles(paths);
  if (existing.length === 0) {
    if (options.create === false)
      throw new Error(`no keys in ${options.dir}; create them with \`cell keys init --dir ${options.dir}\``);
    return initIdentity(options);
  }
  if (existing.length === 1) {
    const missing = existing[0] === PEER_KEY_FILE ? OPERATOR_KEYSTORE_FILE : PEER_KEY_FILE;
    throw new Error(`incomplete keys in ${options.dir}: ${existing[0]} exists but ${missing} is missing`);
  }
  await warnIfExposed(paths, options.logger);
  const identity = await unlock(paths, options.passphrase);
  options.logger?.info(
    { dir: options.dir, peerId: identity.peerId, operator: identity.operatorAddress },
    "unlocked node keys",
  );
  return identity;
}

/** The public half of the keys in `dir`, read without the passphrase. */
export async function readPublicIdentity(dir: string): Promise<PublicIdentity> {
  const paths = keyPaths(dir);
  const missing = await missingKeyFiles(paths);
  if (missing.length > 0)
    throw new Error(
      `no keys in ${dir} (missing ${missing.join(", ")}); create them with \`cell keys init --dir ${dir}\``,
    );
  const peerFile = parsePeerKeyFile(await readFile(paths.peerKeyPath, "utf8"), paths.peerKeyPath);
  const operatorAddress = readKeystoreAddress(await readFile(paths.keystorePath, "utf8"), paths.keystorePath);
  return publicIdentity(Buffer.from(peerFile.publicKey, "hex"), operatorAddress, paths);
}

/** Signs bytes with the peer key (Ed25519), e.g. a genome manifest. */
export function signWithPeerKey(
  identity: Pick<Identity, "peerKeySeed">,
  message: Uint8Array,
): Promise<Uint8Array> {
  return ed.signAsync(message, identity.peerKeySeed);
}

export async function verifyPeerSignature(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  try {
    return await ed.verifyAsync(signature, message, publicKey);
  } catch {
    return false;
  }
}

async function unlock(paths: KeyPaths, passphrase: string): Promise<Identity> {
  const peerFile = parsePeerKeyFile(await readFile(paths.peerKeyPath, "utf8"), paths.peerKeyPath);
  const seed = await decryptPeerKey(peerFile, passphrase, paths.peerKeyPath);
  const peerPublicKey = await ed.getPublicKeyAsync(seed);
  if (Buffer.from(peerPublicKey).toString("hex") !== peerFile.publicKey) {
    throw new Error(
      `peer key file ${paths.peerKeyPath}: the stored public key does not match the decrypted key`,
    );
  }
  const operator = await decryptOperatorKey(
    await readFile(paths.keystorePath, "utf8"),
    passphrase,
    paths.keystorePath,
  );
  return makeIdentity(publicIdentity(peerPublicKey, operator.address, paths), seed, operator);
}

function publicIdentity(
  peerPublicKey: Uint8Array,
  operatorAddress: Address,
  paths: KeyPaths,
): PublicIdentity {
  return {
    peerId: peerIdFromPublicKey(peerPublicKey),
    did: didFromPublicKey(peerPublicKey),
    peerPublicKey,
    peerKeyHex: `0x${Buffer.from(peerPublicKey).toString("hex")}`,
    operatorAddress,
    ...paths,
  };
}

/** An identity whose secret parts print as `[redacted]` in JSON, inspect and logs. */
function makeIdentity(pub: PublicIdentity, seed: SecretBytes, operator: PrivateKeyAccount): Identity {
  const printable = {
    ...pub,
    peerPublicKey: pub.peerKeyHex,
    peerKeySeed: REDACTED,
    operator: operator.address,
  };
  const identity = { ...pub, operator } as Identity;
  Object.defineProperties(identity, {
    peerKeySeed: { value: seed, enumerable: false },
    toJSON: { value: () => printable, enumerable: false },
    [inspect.custom]: { value: () => `Identity ${inspect(printable)}`, enumerable: false },
  });
  return identity;
}

interface KeyPaths {
  peerKeyPath: string;
  keystorePath: string;
}

function keyPaths(dir: string): KeyPaths {
  if (typeof dir !== "string" || dir.length === 0) throw new Error("key directory is empty");
  return { peerKeyPath: join(dir, PEER_KEY_FILE), keystorePath: join(dir, OPERATOR_KEYSTORE_FILE) };
}

async function existingKeyFiles(paths: KeyPaths): Promise<string[]> {
  const present: string[] = [];
  if (await fileExists(paths.peerKeyPath)) present.push(PEER_KEY_FILE);
  if (await fileExists(paths.keystorePath)) present.push(OPERATOR_KEYSTORE_FILE);
  return present;
}

async function missingKeyFiles(paths: KeyPaths): Promise<string[]> {
  const present = await existingKeyFiles(paths);
  return [PEER_KEY_FILE, OPERATOR_KEYSTORE_FILE].filter((name) => !present.includes(name));
}

async function warnIfExposed(paths: KeyPaths, logger?: IdentityLogger): Promise<void> {
  for (const path of [paths.peerKeyPath, paths.keystorePath]) {
    if (await isExposed(path))
      logger?.warn({ path }, "key file is readable by group or others; chmod 600 it");
  }
}

function assertPassphrase(passphrase: unknown): asserts passphrase is string {
  if (typeof passphrase !== "string" || passphrase.length === 0) {
    throw new Error("passphrase is empty: pass --passphrase-file FILE or set CELL_PASSPHRASE");
  }
}

function checkScryptN(n: number): number {
  if (!Number.isInteger(n) || n < 2 || n > 2 ** 22 || (n & (n - 1)) !== 0) {
    throw new Error(`scrypt N must be a power of two between 2 and 2^22, got ${n}`);
  }
  return n;
}

function assertPrivateKeyShape(key: string): void {
  if (!/^0x[0-9a-fA-F]{64}$/.test(key))
    throw new Error("operator private key must be 0x followed by 64 hex digits");
}
