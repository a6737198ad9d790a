import { CID } from "multiformats/cid";
import * as raw from "multiformats/codecs/raw";
import { sha256 } from "multiformats/hashes/sha2";
import { create as createDigest } from "multiformats/hashes/digest";
import type { Hex } from "viem";

const SHA2_256 = 0x12;

/** CIDv1, raw codec, sha2-256: the content address of modules, inputs and outputs. */
export async function cidOf(bytes: Uint8Array): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(bytes));
}

/** The 32-byte sha2-256 digest of a CID, as signed in EIP-712 statements. */
export function cidToBytes32(cid: CID | string): Hex {
  const parsed = typeof cid === "string" ? CID.parse(cid) : cid;
  if (parsed.multihash.code !== SHA2_256) throw new Error(`CID ${parsed.toString()} is not sha2-256`);
  return `0x${Buffer.from(parsed.multihash.digest).toString("hex")}`;
}

/** Rebuilds the raw-codec CIDv1 from a signed 32-byte digest. */
export function bytes32ToCid(digestHex: Hex): CID {
  const digest = Buffer.from(digestHex.slice(2), "hex");
  if (digest.length !== 32) throw new Error(`expected a 32-byte digest, got ${digest.length} bytes`);
  return CID.createV1(raw.code, createDigest(SHA2_256, digest));
}

export { CID };
