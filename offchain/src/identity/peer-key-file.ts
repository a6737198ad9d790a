import { createCipheriv, createDecipheriv, randomBytes, scrypt } from "node:crypto";
import { z } from "zod/v4";
import { SecretBytes } from "./secret.ts";

/**
 * The Ed25519 peer key seed at rest: scrypt-derived AES-256-GCM, the public key in clear
 * (and bound into the authentication tag) so the node's public identity can be shown
 * without the passphrase.
 */
const FORMAT = "cell-peer-key";
const VERSION = 1;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const KEY_LENGTH = 32;

const hex = (bytes: number) =>
  z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes} bytes of lowercase hex`);

const PeerKeyFileSchema = z.object({
  format: z.literal(FORMAT),
  version: z.literal(VERSION),
  keyType: z.literal("Ed25519"),
  publicKey: hex(32),
  crypto: z.object({
    kdf: z.literal("scrypt"),
    kdfparams: z.object({
      n: z
        .number()
        .int()
        .min(2)
        .max(2 ** 22)
        .refine(isPowerOfTwo, "n must be a power of two"),
      r: z.number().int().min(1).max(32),
      p: z.number().int().min(1).max(16),
      dklen: z.literal(KEY_LENGTH),
      salt: hex(32),
    }),
    cipher: z.literal("aes-256-gcm"),
    iv: hex(12),
    tag: hex(16),
    ciphertext: hex(32),
  }),
});

export type PeerKeyFile = z.infer<typeof PeerKeyFileSchema>;

export async function encryptPeerKey(
  seed: Uint8Array,
  publicKey: Uint8Array,
  passphrase: string,
  scryptN: number,
): Promise<string> {
  const salt = randomBytes(32);
  const iv = randomBytes(12);
  const key = await deriveKey(passphrase, salt, scryptN, SCRYPT_R, SCRYPT_P);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(additionalData(publicKey));
  const ciphertext = Buffer.concat([cipher.update(seed), cipher.final()]);
  key.fill(0);
  const file: PeerKeyFile = {
    format: FORMAT,
    version: VERSION,
    keyType: "Ed25519",
    publicKey: toHex(publicKey),
    crypto: {
      kdf: "scrypt",
      kdfparams: { n: scryptN, r: SCRYPT_R, p: SCRYPT_P, dklen: KEY_LENGTH, salt: toHex(salt) },
      cipher: "aes-256-gcm",
      iv: toHex(iv),
      tag: toHex(cipher.getAuthTag()),
      ciphertext: toHex(ciphertext),
    },
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** Parses the file's public part; never touches the secret. */
export function parsePeerKeyFile(text: string, path: string): PeerKeyFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`peer key file ${path} is not valid JSON`);
  }
  const parsed = PeerKeyFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `peer key file ${path} is malformed at '${issue?.path.join(".") ?? ""}': ${issue?.message ?? "invalid"}`,
    );
  }
  return parsed.data;
}

export async function decryptPeerKey(
  file: PeerKeyFile,
  passphrase: string,
  path: string,
): Promise<SecretBytes> {
  const { kdfparams, iv, tag, ciphertext } = file.crypto;
  const key = await deriveKey(
    passphrase,
    Buffer.from(kdfparams.salt, "hex"),
    kdfparams.n,
    kdfparams.r,
    kdfparams.p,
  );
  const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "hex"));
  decipher.setAAD(additionalData(Buffer.from(file.publicKey, "hex")));
  decipher.setAuthTag(Buffer.from(tag, "hex"));
  try {
    const seed = Buffer.concat([decipher.update(Buffer.from(ciphertext, "hex")), decipher.final()]);
    const secret = SecretBytes.of32(seed);
    seed.fill(0);
    return secret;
  } catch {
    throw new Error(`cannot decrypt peer key file ${path}: wrong passphrase or the file was modified`);
  } finally {
    key.fill(0);
  }
}

function deriveKey(passphrase: string, salt: Uint8Array, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      passphrase.normalize("NFKC"),
      salt,
      KEY_LENGTH,
      { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 },
      (error, key) => (error ? reject(new Error(`scrypt failed: ${error.message}`)) : resolve(key)),
    );
  });
}

function additionalData(publicKey: Uint8Array): Buffer {
  return Buffer.from(`${FORMAT}:v${VERSION}:${toHex(publicKey)}`, "utf8");
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

function isPowerOfTwo(n: number): boolean {
  return (n & (n - 1)) === 0;
}
