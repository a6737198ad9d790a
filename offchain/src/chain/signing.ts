import { concat, encodeAbiParameters, hashTypedData, keccak256 } from "viem";
import type { Address, Hex, LocalAccount } from "viem";
import {
  canonicalSignature,
  cellDomain,
  channelCloseTypes,
  eip2098Parts,
  signatureParts,
  verifyDigest,
  voucherTypes,
} from "../protocol/index.ts";
import type { ChannelClose, Voucher } from "../protocol/index.ts";

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

/** Signs a cumulative voucher in the PaymentChannels domain (canonical form: v 27/28, low s). */
export async function signVoucher(
  signer: TypedSigner,
  chainId: number,
  paymentChannels: Address,
  voucher: Voucher,
): Promise<Hex> {
  return canonicalSignature(
    await signer.signTypedData({
      domain: cellDomain(chainId, paymentChannels),
      types: voucherTypes,
      primaryType: "Voucher",
      message: voucher,
    }),
  );
}

/**
 * True when `signature` over the voucher was made by `signer` in a form PaymentChannels accepts
 * (`redeem` and `settle` alike): what a payee checks before it counts a voucher as money.
 */
export function verifyVoucher(
  chainId: number,
  paymentChannels: Address,
  voucher: Voucher,
  signer: Address,
  signature: Hex,
): Promise<boolean> {
  return verifyDigest(voucherDigest(chainId, paymentChannels, voucher), signer, signature);
}

/** Seconds a cooperative close stays valid by default after it is signed. */
export const CHANNEL_CLOSE_TTL_SECONDS = 3_600n;

/** The deadline a close signed at `nowSeconds` carries by default (CHANNEL_CLOSE_TTL_SECONDS later). */
export function channelCloseDeadline(
  nowSeconds: bigint = BigInt(Math.floor(Date.now() / 1000)),
  ttlSeconds: bigint = CHANNEL_CLOSE_TTL_SECONDS,
): bigint {
  if (ttlSeconds <= 0n) throw new Error(`channel close ttl must be positive, got ${ttlSeconds}`);
  return nowSeconds + ttlSeconds;
}

/**
 * Signs a ChannelClose (both the voucher key and the payee sign it for a cooperative close); the
 * contract refuses it after `close.deadline` (see `channelCloseDeadline`).
 */
export async function signChannelClose(
  signer: TypedSigner,
  chainId: number,
  paymentChannels: Address,
  close: ChannelClose,
): Promise<Hex> {
  return canonicalSignature(
    await signer.signTypedData({
      domain: cellDomain(chainId, paymentChannels),
      types: channelCloseTypes,
      primaryType: "ChannelClose",
      message: close,
    }),
  );
}

/**
 * The EIP-2098 (r, vs) pair that settlement batches carry, of a signature the contracts accept;
 * throws naming what is wrong with any other (a v of 0 or 1, a high s), which has no such pair.
 */
export function toCompactSignature(signature: Hex): { r: Hex; vs: Hex } {
  return eip2098Parts(signatureParts(signature));
}

export function compactSignatureHex(signature: Hex): Hex {
  const { r, vs } = toCompactSignature(signature);
  return concat([r, vs]);
}
