import { base58btc } from "multiformats/bases/base58";

const ED25519_PUBLIC_KEY_LENGTH = 32;
/** libp2p PublicKey protobuf: field 1 (KeyType) = 1 (Ed25519), field 2 (Data) = 32 bytes. */
const PROTOBUF_PREFIX = Uint8Array.of(0x08, 0x01, 0x12, ED25519_PUBLIC_KEY_LENGTH);
/** Identity multihash (code 0x00) of the 36-byte protobuf. */
const IDENTITY_MULTIHASH_PREFIX = Uint8Array.of(0x00, PROTOBUF_PREFIX.length + ED25519_PUBLIC_KEY_LENGTH);
/** Multicodec ed25519-pub (0xed) as an unsigned varint. */
const ED25519_PUB_MULTICODEC = Uint8Array.of(0xed, 0x01);
const DID_KEY_PREFIX = "did:key:";

/** The libp2p PeerId (base58btc, `12D3KooW…`) of an Ed25519 public key. */
export function peerIdFromPublicKey(publicKey: Uint8Array): string {
  assertPublicKey(publicKey);
  const multihash = concat(IDENTITY_MULTIHASH_PREFIX, PROTOBUF_PREFIX, publicKey);
  return base58btc.encode(multihash).slice(1);
}

/** The Ed25519 public key inside a libp2p PeerId string. */
export function publicKeyFromPeerId(peerId: string): Uint8Array {
  const bytes = decodeBase58(peerId, "peer id");
  const prefix = concat(IDENTITY_MULTIHASH_PREFIX, PROTOBUF_PREFIX);
  if (bytes.length !== prefix.length + ED25519_PUBLIC_KEY_LENGTH || !startsWith(bytes, prefix)) {
    throw new Error(`peer id '${clip(peerId)}' is not an Ed25519 peer id`);
  }
  return bytes.slice(prefix.length);
}

/** `did:key:z6Mk…` of an Ed25519 public key (multicodec ed25519-pub, base58btc multibase). */
export function didFromPublicKey(publicKey: Uint8Array): string {
  assertPublicKey(publicKey);
  return DID_KEY_PREFIX + base58btc.encode(concat(ED25519_PUB_MULTICODEC, publicKey));
}

/** The Ed25519 public key of a `did:key` identifier. */
export function publicKeyFromDid(did: string): Uint8Array {
  if (!did.startsWith(DID_KEY_PREFIX + "z")) {
    throw new Error(`'${clip(did)}' is not a base58btc did:key`);
  }
  const bytes = decodeBase58(did.slice(DID_KEY_PREFIX.length + 1), "did:key");
  if (
    bytes.length !== ED25519_PUB_MULTICODEC.length + ED25519_PUBLIC_KEY_LENGTH ||
    !startsWith(bytes, ED25519_PUB_MULTICODEC)
  ) {
    throw new Error(`did '${clip(did)}' is not an Ed25519 did:key`);
  }
  return bytes.slice(ED25519_PUB_MULTICODEC.length);
}

export function assertPublicKey(publicKey: Uint8Array): void {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_PUBLIC_KEY_LENGTH) {
    throw new Error(`an Ed25519 public key is 32 bytes, got ${describeLength(publicKey)}`);
  }
}

function decodeBase58(text: string, what: string): Uint8Array {
  try {
    return base58btc.decode("z" + text);
  } catch {
    throw new Error(`${what} '${clip(text)}' is not valid base58btc`);
  }
}

function describeLength(value: unknown): string {
  return value instanceof Uint8Array ? `${value.length} bytes` : typeof value;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  return prefix.every((byte, index) => bytes[index] === byte);
}

function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}
