// The packed settlement batch that PaymentChannels.settle takes (docs/contracts.md, "Settlement
// batch"): an ascending address table, then per voucher three uint16 table indices (buyer, signer,
// payee), uint64 nonce, uint96 cumulativeAmount and an EIP-2098 signature (r, vs). The amount is
// signed as a uint256 (the Voucher type); the batch carries it in 12 bytes because no voucher can
// pay more than a deposit and ATP's supply cap (10^28 wei) is below 2^96.
import { concat, getAddress, hexToBigInt, numberToHex, size, slice } from "viem";
import type { Address, Hex } from "viem";
import { channelIdOf, toCompactSignature } from "./signing.ts";
import type { ChannelKey } from "./signing.ts";

export interface SignedVoucher {
  key: ChannelKey;
  cumulativeAmount: bigint;
  /** Signature by key.signer over Voucher(channelId, cumulativeAmount): 65 bytes, or EIP-2098 64 bytes. */
  signature: Hex;
}

/** A voucher as the batch carries it, with its channel id. */
export interface BatchVoucher {
  key: ChannelKey;
  channelId: Hex;
  cumulativeAmount: bigint;
  r: Hex;
  vs: Hex;
}

export const VOUCHER_BYTES = 90;
const ADDRESS_BYTES = 20;
const MAX_INDEX = 0xffff;
const MAX_NONCE = 2n ** 64n - 1n;
/** Largest cumulativeAmount a batch carries; a larger voucher can still be redeemed on its own. */
export const MAX_BATCH_AMOUNT = 2n ** 96n - 1n;

/**
 * The EIP-2098 (r, vs) pair. A 64-byte signature is what the batch carries, so it is taken as it
 * is and the contract judges it; a 65-byte one must be in a form the contracts accept (v 27 or 28,
 * low s), since only then does its pair mean the same thing.
 */
function compactParts(signature: Hex, index: number): { r: Hex; vs: Hex } {
  if (size(signature) === 64) return { r: slice(signature, 0, 32), vs: slice(signature, 32, 64) };
  try {
    return toCompactSignature(signature);
  } catch (error) {
    throw new Error(`voucher ${index}: ${(error as Error).message}`, { cause: error });
  }
}

/** Encodes vouchers, in the given order, as the `batch` argument of PaymentChannels.settle. */
export function encodeSettlementBatch(vouchers: readonly SignedVoucher[]): Hex {
  const table = [
    ...new Set(vouchers.flatMap(({ key }) => [key.buyer, key.signer, key.payee].map((a) => getAddress(a)))),
  ].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
  if (table.length > MAX_INDEX + 1) throw new Error(`a batch holds at most ${MAX_INDEX + 1} addresses`);
  const indexOf = new Map(table.map((address, i) => [address, i]));
  const index = (address: Address) => numberToHex(indexOf.get(getAddress(address))!, { size: 2 });
  const encoded = vouchers.map(({ key, cumulativeAmount, signature }, i) => {
    if (key.nonce < 0n || key.nonce > MAX_NONCE) throw new Error(`voucher ${i}: nonce does not fit uint64`);
    if (cumulativeAmount < 0n || cumulativeAmount > MAX_BATCH_AMOUNT)
      throw new Error(
        `voucher ${i}: cumulativeAmount ${cumulativeAmount} does not fit the batch's uint96 (must be below 2^96)`,
      );
    const { r, vs } = compactParts(signature, i);
    return concat([
      index(key.buyer),
      index(key.signer),
      index(key.payee),
      numberToHex(key.nonce, { size: 8 }),
      numberToHex(cumulativeAmount, { size: 12 }),
      r,
      vs,
    ]);
  });
  return concat([numberToHex(table.length, { size: 2 }), ...table, ...encoded]);
}

/** Decodes a settlement batch (for explorers and tests); throws on a malformed one, naming why. */
export function decodeSettlementBatch(batch: Hex): BatchVoucher[] {
  if (size(batch) === 0) return [];
  if (size(batch) < 2) throw new Error("settlement batch: shorter than its 2-byte address count");
  const addressCount = Number(hexToBigInt(slice(batch, 0, 2)));
  const tableEnd = 2 + addressCount * ADDRESS_BYTES;
  const rest = size(batch) - tableEnd;
  if (rest < 0 || rest % VOUCHER_BYTES !== 0)
    throw new Error(
      `settlement batch: ${size(batch)} bytes are not a table of ${addressCount} plus whole vouchers`,
    );
  const table = Array.from({ length: addressCount }, (_, i) =>
    getAddress(slice(batch, 2 + i * ADDRESS_BYTES, 2 + (i + 1) * ADDRESS_BYTES)),
  );
  return Array.from({ length: rest / VOUCHER_BYTES }, (_, i) => {
    const at = tableEnd + i * VOUCHER_BYTES;
    const field = (from: number, to: number) => slice(batch, at + from, at + to);
    const address = (from: number) => {
      const address = table[Number(hexToBigInt(field(from, from + 2)))];
      if (address === undefined) throw new Error(`settlement batch: voucher ${i} indexes outside the table`);
      return address;
    };
    const key: ChannelKey = {
      buyer: address(0),
      signer: address(2),
      payee: address(4),
      nonce: hexToBigInt(field(6, 14)),
    };
    return {
      key,
      channelId: channelIdOf(key),
      cumulativeAmount: hexToBigInt(field(14, 26)),
      r: field(26, 58),
      vs: field(58, 90),
    };
  });
}

/** Which vouchers of a batch paid, from BatchSettled's paidBitmap (bit i of word i / 256). */
export function paidVoucherFlags(paidBitmap: readonly bigint[], voucherCount: number): boolean[] {
  return Array.from({ length: voucherCount }, (_, i) =>
    ((paidBitmap[i >> 8] ?? 0n) >> BigInt(i & 0xff)) & 1n ? true : false,
  );
}
