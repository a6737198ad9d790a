import { createRequire } from "node:module";
import { createKeccak } from "hash-wasm";
import {
  bytesToHex,
  hexToBytes,
  getTypesForEIP712Domain,
  hashDomain,
  hashTypedData,
  isAddress,
  isAddressEqual,
  recoverPublicKey,
  zeroAddress,
} from "viem";
import type { Address, Hex, LocalAccount, TypedDataDomain, TypedDataParameter } from "viem";
import { bidTypes, jobSpecTypes, receiptTypes, voucherTypes } from "./eip712.ts";
import type { BidMessage, JobSpecMessage, Receipt, Voucher } from "./eip712.ts";
import type { BidWire, JobSpecWire, ReceiptWire } from "./messages.ts";
import { canonicalSignature, signatureFromParts, signatureParts } from "./signature.ts";
import type { SignatureParts } from "./signature.ts";

/**
 * EIP-712 signing and checking of the market's statements. Job specs, bids and receipts
 * are signed in the DonorRegistry domain (`cellDomain(chainId, donorRegistry)`), so the
 * contract can check any of them with `ecrecover`.
 */

export type Signer = Pick<LocalAccount, "address" | "signTypedData" | "sign">;

/** A job's id: the EIP-712 hash of its spec, which the buyer signs. */
export function jobIdOf(domain: TypedDataDomain, spec: JobSpecMessage): Hex {
  return (
    flatDigest(domain, jobSpecStruct, spec) ??
    hashTypedData({ domain, types: jobSpecTypes, primaryType: "JobSpec", message: spec })
  );
}

export function bidDigest(domain: TypedDataDomain, bid: BidMessage): Hex {
  return (
    flatDigest(domain, bidStruct, bid) ??
    hashTypedData({ domain, types: bidTypes, primaryType: "Bid", message: bid })
  );
}

export function receiptDigest(domain: TypedDataDomain, receipt: Receipt): Hex {
  return (
    flatDigest(domain, receiptStruct, receipt) ??
    hashTypedData({ domain, types: receiptTypes, primaryType: "Receipt", message: receipt })
  );
}

/** A voucher's digest in the PaymentChannels domain: a payee checks thousands a second (reuse `domain`). */
export function voucherDigestIn(domain: TypedDataDomain, voucher: Voucher): Hex {
  return (
    flatDigest(domain, voucherStruct, voucher) ??
    hashTypedData({ domain, types: voucherTypes, primaryType: "Voucher", message: voucher })
  );
}

// ── EIP-712 digests of flat structs ─────────────────────────────────────────────────
//
// The market's statements are flat structs of atomic fields, so their digest is
// keccak256(0x1901 ‖ domainSeparator ‖ keccak256(typeHash ‖ one word per field)). Building
// those words directly costs a fraction of viem's generic encoder. A value the words cannot
// carry as viem would (out of range, malformed) returns undefined, and the caller lets
// hashTypedData compute the digest or throw its error.

/**
 * keccak-256 in WebAssembly: about 3 µs for the half kilobyte of a job spec's words, against
 * about 20 µs in JavaScript; every donor hashes every job it bids on. One hasher serves
 * every call: each runs to completion synchronously.
 */
const keccakHasher = await createKeccak(256);

function keccak(data: Uint8Array): Uint8Array {
  keccakHasher.init();
  keccakHasher.update(data);
  return keccakHasher.digest("binary");
}

function keccakHex(data: Uint8Array): Hex {
  keccakHasher.init();
  keccakHasher.update(data);
  return `0x${keccakHasher.digest("hex")}`;
}

const BYTES32_HEX = /^0x[0-9a-fA-F]{64}$/;
const UINT_TYPE = /^uint(\d+)$/;
const WORD_64_BITS = (1n << 64n) - 1n;

/** Writes a field's 32-byte word at `offset` of `words` (zeroed); false if the value does not fit the type. */
type WordWriter = (value: unknown, words: Buffer, offset: number) => boolean;

interface FlatStruct {
  typeHash: Uint8Array;
  fields: readonly { name: string; write: WordWriter }[];
}

function flatStruct(name: string, fields: readonly TypedDataParameter[]): FlatStruct {
  const encodedType = `${name}(${fields.map((field) => `${field.type} ${field.name}`).join(",")})`;
  return {
    typeHash: keccak(Buffer.from(encodedType)),
    fields: fields.map((field) => ({ name: field.name, write: wordWriter(field.type) })),
  };
}

const jobSpecStruct = flatStruct("JobSpec", jobSpecTypes.JobSpec);
const bidStruct = flatStruct("Bid", bidTypes.Bid);
const receiptStruct = flatStruct("Receipt", receiptTypes.Receipt);
const voucherStruct = flatStruct("Voucher", voucherTypes.Voucher);
const domainSeparators = new WeakMap<TypedDataDomain, Uint8Array>();

function domainSeparator(domain: TypedDataDomain): Uint8Array {
  let separator = domainSeparators.get(domain);
  if (!separator) {
    const types = { EIP712Domain: getTypesForEIP712Domain({ domain }) };
    separator = hexToBytes(hashDomain({ domain, types } as Parameters<typeof hashDomain>[0]));
    domainSeparators.set(domain, separator);
  }
  return separator;
}

function flatDigest(domain: TypedDataDomain, struct: FlatStruct, message: object): Hex | undefined {
  const words = Buffer.alloc(32 * (struct.fields.length + 1));
  words.set(struct.typeHash, 0);
  const values = message as Record<string, unknown>;
  let offset = 32;
  for (const field of struct.fields) {
    if (!field.write(values[field.name], words, offset)) return undefined;
    offset += 32;
  }
  const envelope = Buffer.allocUnsafe(66);
  envelope[0] = 0x19;
  envelope[1] = 0x01;
  envelope.set(domainSeparator(domain), 2);
  envelope.set(keccak(words), 34);
  return keccakHex(envelope);
}

function wordWriter(type: string): WordWriter {
  if (type === "bytes32")
    return (value, words, offset) =>
      typeof value === "string" &&
      BYTES32_HEX.test(value) &&
      words.write(value.slice(2), offset, "hex") === 32;
  if (type === "address")
    return (value, words, offset) =>
      typeof value === "string" && isAddress(value) && words.write(value.slice(2), offset + 12, "hex") === 20;
  if (type === "string")
    return (value, words, offset) => {
      if (typeof value !== "string") return false;
      words.set(keccak(Buffer.from(value)), offset);
      return true;
    };
  const bits = UINT_TYPE.exec(type)?.[1];
  if (bits === undefined) return () => false;
  const limit = 1n << BigInt(bits);
  return (value, words, offset) => {
    if (typeof value === "number" && !Number.isSafeInteger(value)) return false;
    if (typeof value !== "bigint" && typeof value !== "number") return false;
    let number = BigInt(value);
    if (number < 0n || number >= limit) return false;
    for (let end = offset + 32; number > 0n; end -= 8, number >>= 64n)
      words.writeBigUInt64BE(number & WORD_64_BITS, end - 8);
    return true;
  };
}

/** Signs a job spec; `jobId` saves hashing the spec again when the caller has it already. */
export async function signJobSpec(
  signer: Signer,
  domain: TypedDataDomain,
  spec: JobSpecMessage,
  jobId: Hex = jobIdOf(domain, spec),
): Promise<Hex> {
  if (!isAddressEqual(signer.address, spec.buyer))
    throw new Error(`spec buyer ${spec.buyer} is not the signer ${signer.address}`);
  return signDigest(signer, jobId, () =>
    signer.signTypedData({ domain, types: jobSpecTypes, primaryType: "JobSpec", message: spec }),
  );
}

export async function signBid(signer: Signer, domain: TypedDataDomain, bid: BidMessage): Promise<Hex> {
  if (!isAddressEqual(signer.address, bid.executor))
    throw new Error(`bid executor ${bid.executor} is not the signer ${signer.address}`);
  return signDigest(signer, bidDigest(domain, bid), () =>
    signer.signTypedData({ domain, types: bidTypes, primaryType: "Bid", message: bid }),
  );
}

export async function signReceipt(signer: Signer, domain: TypedDataDomain, receipt: Receipt): Promise<Hex> {
  if (!isAddressEqual(signer.address, receipt.executor)) {
    throw new Error(`receipt executor ${receipt.executor} is not the signer ${signer.address}`);
  }
  return signDigest(signer, receiptDigest(domain, receipt), () =>
    signer.signTypedData({ domain, types: receiptTypes, primaryType: "Receipt", message: receipt }),
  );
}

/**
 * Signs an EIP-712 digest directly when the account can (a local key): the same
 * signature as signTypedData, without hashing and validating the typed data twice. Whatever
 * form the account returns, the result is the canonical one the contracts accept.
 */
async function signDigest(signer: Signer, digest: Hex, viaTypedData: () => Promise<Hex>): Promise<Hex> {
  return canonicalSignature(await (signer.sign ? signer.sign({ hash: digest }) : viaTypedData()));
}

/** True when `signature` over the spec was made by the spec's buyer. */
export async function verifyJobSpec(
  domain: TypedDataDomain,
  spec: JobSpecMessage,
  signature: Hex,
): Promise<boolean> {
  return verifyDigest(jobIdOf(domain, spec), spec.buyer, signature);
}

/** True when `signature` over the bid was made by the bid's executor. */
export async function verifyBid(domain: TypedDataDomain, bid: BidMessage, signature: Hex): Promise<boolean> {
  return verifyDigest(bidDigest(domain, bid), bid.executor, signature);
}

/** True when `signature` over the receipt was made by the receipt's executor. */
export async function verifyReceipt(
  domain: TypedDataDomain,
  receipt: Receipt,
  signature: Hex,
): Promise<boolean> {
  return verifyDigest(receiptDigest(domain, receipt), receipt.executor, signature);
}

/**
 * True when `signature` over an EIP-712 digest recovers to `expected` and is one the contracts
 * accept (see signature.ts: v = 27 or 28, low s, or EIP-2098): exactly the signatures that can
 * later serve as evidence on-chain. Anything else proves nothing.
 */
export async function verifyDigest(digest: Hex, expected: Address, signature: Hex): Promise<boolean> {
  try {
    if (!BYTES32_HEX.test(digest) || isAddressEqual(expected, zeroAddress)) return false;
    const parts = signatureParts(signature);
    const publicKey =
      recoverNative(digest, parts) ??
      hexToBytes(await recoverPublicKey({ hash: digest, signature: signatureFromParts(parts) }));
    return isAddressEqual(bytesToHex(keccak(publicKey.subarray(1)).subarray(12)), expected);
  } catch {
    return false;
  }
}

// ── recovery through libsecp256k1 ──────────────────────────────────────────────────
//
// The `secp256k1` package's prebuilt N-API binding recovers a key in about 70 µs, against
// about 2 ms for recovery in JavaScript; every bid, job and receipt a node accepts is
// checked this way. Where the binding does not load, viem's recovery gives the same answer.

interface NativeRecovery {
  ecdsaRecover(signature: Uint8Array, recid: number, message: Uint8Array, compressed: boolean): Uint8Array;
}

const native = loadNativeRecovery();

function loadNativeRecovery(): NativeRecovery | undefined {
  try {
    return createRequire(import.meta.url)("secp256k1/bindings") as NativeRecovery;
  } catch {
    return undefined;
  }
}

/**
 * The uncompressed public key that checked signature parts recover to, or undefined where the
 * binding is missing; throws when they recover to no key (r is no point's x coordinate).
 */
function recoverNative(digest: Hex, { r, s, yParity }: SignatureParts): Uint8Array | undefined {
  if (!native) return undefined;
  const compact = Buffer.alloc(64);
  compact.write(r.toString(16).padStart(64, "0"), 0, "hex");
  compact.write(s.toString(16).padStart(64, "0"), 32, "hex");
  return native.ecdsaRecover(compact, yParity, Buffer.from(digest.slice(2), "hex"), false);
}

// ── wire codecs: uint64/uint256 travel as decimal strings ───────────────────────────

export function jobSpecToWire(spec: JobSpecMessage): JobSpecWire {
  return {
    ...spec,
    fuelLimit: spec.fuelLimit.toString(),
    maxPricePerMegaFuel: spec.maxPricePerMegaFuel.toString(),
    deadline: spec.deadline.toString(),
  };
}

export function jobSpecFromWire(wire: JobSpecWire): JobSpecMessage {
  return {
    ...wire,
    fuelLimit: BigInt(wire.fuelLimit),
    maxPricePerMegaFuel: BigInt(wire.maxPricePerMegaFuel),
    deadline: BigInt(wire.deadline),
  };
}

export function bidToWire(bid: BidMessage): BidWire {
  return { ...bid, pricePerMegaFuel: bid.pricePerMegaFuel.toString(), expiresAt: bid.expiresAt.toString() };
}

export function bidFromWire(wire: BidWire): BidMessage {
  return { ...wire, pricePerMegaFuel: BigInt(wire.pricePerMegaFuel), expiresAt: BigInt(wire.expiresAt) };
}

export function receiptToWire(receipt: Receipt): ReceiptWire {
  return {
    ...receipt,
    fuelUsed: receipt.fuelUsed.toString(),
    startedAt: receipt.startedAt.toString(),
    finishedAt: receipt.finishedAt.toString(),
  };
}

export function receiptFromWire(wire: ReceiptWire): Receipt {
  return {
    ...wire,
    fuelUsed: BigInt(wire.fuelUsed),
    startedAt: BigInt(wire.startedAt),
    finishedAt: BigInt(wire.finishedAt),
  };
}
