import {
  encodeAbiParameters,
  hashTypedData,
  keccak256,
  parseSignature,
  serializeCompactSignature,
  signatureToCompactSignature,
} from "viem";
import type { Address, Hex, LocalAccount } from "viem";
import { cellDomain, channelCloseTypes, voucherTypes } from "../protocol/index.ts";
import type { Voucher } from "../protocol/index.ts";

/** A channel's identity; its id is keccak256(abi.encode(buyer, signer, payee, nonce)). */
export interface ChannelKey {
  buyer: Address;
  signer: Address;
  payee: Address;
  nonce: bigint;
}

type TypedSigner = Pick<LocalAccount, "address" | "signTypedData">;

export function channelIdOf(key: ChannelKey): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "address" }, { type: "address" }, { type: "address" }, { type: "uint64" }],
      [key.buyer, key.signer, key.payee, key.nonce],
    ),
  );
}

export function voucherDigest(chainId: number, paymentChannels: Address, voucher: Voucher): Hex {
  return hashTypedData({
    domain: cellDomain(chainId, paymentChannels),
    types: voucherTypes,
    primaryType: "Voucher",
    message: voucher,
  });
}

/** Signs a cumulative voucher in the PaymentChannels domain. */
export function signVoucher(
  signer: TypedSigner,
  chainId: number,
  paymentChannels: Address,
  voucher: Voucher,
): Promise<Hex> {
  return signer.signTypedData({
    domain: cellDomain(chainId, paymentChannels),
    types: voucherTypes,
    primaryType: "Voucher",
    message: voucher,
  });
}

/** Signs a ChannelClose (both the voucher key and the payee sign it for a cooperative close). */
export function signChannelClose(
  signer: TypedSigner,
  chainId: number,
  paymentChannels: Address,
  close: { channelId: Hex; finalAmount: bigint },
): Promise<Hex> {
  return signer.signTypedData({
    domain: cellDomain(chainId, paymentChannels),
    types: channelCloseTypes,
    primaryType: "ChannelClose",
    message: close,
  });
}

/** Splits a 65-byte signature into the EIP-2098 (r, vs) pair that settlement batches carry. */
export function toCompactSignature(signature: Hex): { r: Hex; vs: Hex } {
  const compact = signatureToCompactSignature(parseSignature(signature));
  return { r: compact.r, vs: compact.yParityAndS };
}

export function compactSignatureHex(signature: Hex): Hex {
  return serializeCompactSignature(signatureToCompactSignature(parseSignature(signature)));
}
