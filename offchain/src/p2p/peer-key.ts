import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import type { Ed25519PrivateKey } from "@libp2p/interface";
import { base58btc } from "multiformats/bases/base58";

const ED25519_PUB_MULTICODEC = Uint8Array.of(0xed, 0x01);

/** The libp2p Ed25519 key derived from a 32-byte seed (the peer key's secret). */
export async function peerKeyFromSeed(seed: Uint8Array): Promise<Ed25519PrivateKey> {
  if (seed.byteLength !== 32) throw new Error(`peer key seed must be 32 bytes, got ${seed.byteLength}`);
  return generateKeyPairFromSeed("Ed25519", seed);
}

/** `did:key` of a raw 32-byte Ed25519 public key (multicodec 0xed01, base58btc). */
export function didKeyFromEd25519(publicKey: Uint8Array): string {
  if (publicKey.byteLength !== 32)
    throw new Error(`Ed25519 public key must be 32 bytes, got ${publicKey.byteLength}`);
  const prefixed = new Uint8Array(34);
  prefixed.set(ED25519_PUB_MULTICODEC);
  prefixed.set(publicKey, 2);
  return `did:key:${base58btc.encode(prefixed)}`;
}
