import { hashTypedData, isAddressEqual, recoverTypedDataAddress } from "viem";
import type { Address, Hex, LocalAccount, TypedDataDomain } from "viem";
import { bidTypes, jobSpecTypes, receiptTypes } from "./eip712.ts";
import type { BidMessage, JobSpecMessage, Receipt } from "./eip712.ts";
import type { BidWire, JobSpecWire, ReceiptWire } from "./messages.ts";

/**
 * EIP-712 signing and checking of the market's statements. Job specs, bids and receipts
 * are signed in the DonorRegistry domain (`cellDomain(chainId, donorRegistry)`), so the
 * contract can check any of them with `ecrecover`.
 */

export type Signer = Pick<LocalAccount, "address" | "signTypedData">;

/** A job's id: the EIP-712 hash of its spec, which the buyer signs. */
export function jobIdOf(domain: TypedDataDomain, spec: JobSpecMessage): Hex {
  return hashTypedData({ domain, types: jobSpecTypes, primaryType: "JobSpec", message: spec });
}

export async function signJobSpec(signer: Signer, domain: TypedDataDomain, spec: JobSpecMessage): Promise<Hex> {
  if (!isAddressEqual(signer.address, spec.buyer)) throw new Error(`spec buyer ${spec.buyer} is not the signer ${signer.address}`);
  return signer.signTypedData({ domain, types: jobSpecTypes, primaryType: "JobSpec", message: spec });
}

export async function signBid(signer: Signer, domain: TypedDataDomain, bid: BidMessage): Promise<Hex> {
  if (!isAddressEqual(signer.address, bid.executor)) throw new Error(`bid executor ${bid.executor} is not the signer ${signer.address}`);
  return signer.signTypedData({ domain, types: bidTypes, primaryType: "Bid", message: bid });
}

export async function signReceipt(signer: Signer, domain: TypedDataDomain, receipt: Receipt): Promise<Hex> {
  if (!isAddressEqual(signer.address, receipt.executor)) {
    throw new Error(`receipt executor ${receipt.executor} is not the signer ${signer.address}`);
  }
  return signer.signTypedData({ domain, types: receiptTypes, primaryType: "Receipt", message: receipt });
}

/** True when `signature` over the spec was made by the spec's buyer. */
export async function verifyJobSpec(domain: TypedDataDomain, spec: JobSpecMessage, signature: Hex): Promise<boolean> {
  return recoveredEquals(spec.buyer, () =>
    recoverTypedDataAddress({ domain, types: jobSpecTypes, primaryType: "JobSpec", message: spec, signature }),
  );
}

/** True when `signature` over the bid was made by the bid's executor. */
export async function verifyBid(domain: TypedDataDomain, bid: BidMessage, signature: Hex): Promise<boolean> {
  return recoveredEquals(bid.executor, () =>
    recoverTypedDataAddress({ domain, types: bidTypes, primaryType: "Bid", message: bid, signature }),
  );
}

/** True when `signature` over the receipt was made by the receipt's executor. */
export async function verifyReceipt(domain: TypedDataDomain, receipt: Receipt, signature: Hex): Promise<boolean> {
  return recoveredEquals(receipt.executor, () =>
    recoverTypedDataAddress({ domain, types: receiptTypes, primaryType: "Receipt", message: receipt, signature }),
  );
}

async function recoveredEquals(expected: Address, recover: () => Promise<Address>): Promise<boolean> {
  try {
    return isAddressEqual(await recover(), expected);
  } catch {
    return false; // a malformed signature proves nothing
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
