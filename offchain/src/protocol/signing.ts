import { hashTypedData, isAddressEqual, recoverAddress } from "viem";
import type { Address, Hex, LocalAccount, TypedDataDomain } from "viem";
import { bidTypes, jobSpecTypes, receiptTypes } from "./eip712.ts";
import type { BidMessage, JobSpecMessage, Receipt } from "./eip712.ts";
import type { BidWire, JobSpecWire, ReceiptWire } from "./messages.ts";

/**
 * EIP-712 signing and checking of the market's statements. Job specs, bids and receipts
 * are signed in the DonorRegistry domain (`cellDomain(chainId, donorRegistry)`), so the
 * contract can check any of them with `ecrecover`.
 */

export type Signer = Pick<LocalAccount, "address" | "signTypedData" | "sign">;

/** A job's id: the EIP-712 hash of its spec, which the buyer signs. */
export function jobIdOf(domain: TypedDataDomain, spec: JobSpecMessage): Hex {
  return hashTypedData({ domain, types: jobSpecTypes, primaryType: "JobSpec", message: spec });
}

export function bidDigest(domain: TypedDataDomain, bid: BidMessage): Hex {
  return hashTypedData({ domain, types: bidTypes, primaryType: "Bid", message: bid });
}

export function receiptDigest(domain: TypedDataDomain, receipt: Receipt): Hex {
  return hashTypedData({ domain, types: receiptTypes, primaryType: "Receipt", message: receipt });
}

export async function signJobSpec(
  signer: Signer,
  domain: TypedDataDomain,
  spec: JobSpecMessage,
): Promise<Hex> {
  if (!isAddressEqual(signer.address, spec.buyer))
    throw new Error(`spec buyer ${spec.buyer} is not the signer ${signer.address}`);
  return signDigest(signer, jobIdOf(domain, spec), () =>
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
 * signature as signTypedData, without hashing and validating the typed data twice.
 */
function signDigest(signer: Signer, digest: Hex, viaTypedData: () => Promise<Hex>): Promise<Hex> {
  return signer.sign ? signer.sign({ hash: digest }) : viaTypedData();
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

/** True when `signature` over an EIP-712 digest recovers to `expected`; a malformed signature proves nothing. */
export async function verifyDigest(digest: Hex, expected: Address, signature: Hex): Promise<boolean> {
  try {
    return isAddressEqual(await recoverAddress({ hash: digest, signature }), expected);
  } catch {
    return false;
  }
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
