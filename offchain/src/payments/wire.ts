// `/cell/voucher/1`: a buyer hands one payee a batch of vouchers, each for one channel with the
// jobs it pays; the payee answers each voucher with accepted or refused and a reason.
import { z } from "zod/v4";
import {
  AddressSchema,
  Bytes32Schema,
  SignatureSchema,
  Uint256StringSchema,
  uintString,
} from "../protocol/index.ts";
import { FIELD } from "../zk/index.ts";

export const VOUCHER_PROTOCOL = "/cell/voucher/1";

/** Vouchers in one request; a buyer with more for one payee sends several requests. */
export const VOUCHER_BATCH_MAX = 256;
/** Jobs one voucher may name (the jobs whose accepted receipts its increase pays). */
export const VOUCHER_JOBS_MAX = 256;
/** Largest encoded request or response on the voucher protocol. */
export const VOUCHER_MESSAGE_MAX_BYTES = 512 * 1024;

export const VOUCHER_REFUSALS = [
  /** The signature is not key.signer's over (channelId, cumulativeAmount) in a form the contract takes. */
  "bad_signature",
  /** The payee is not this node's payee address. */
  "wrong_payee",
  /** No such channel on-chain (or not yet seen by this node). */
  "unknown_channel",
  /** The channel is closing or closed. */
  "channel_closed",
  /** The same cumulative amount this node already holds. */
  "duplicate",
  /** Below what this node already holds or what the chain already paid. */
  "not_increasing",
  /** Above the channel's deposit. */
  "over_deposit",
  /** The increase is above what the named jobs earned at this node's own bid prices. */
  "over_owed",
  /** A named job is not one this node ran for this buyer, or was already paid. */
  "unknown_job",
  /** The node could not store it durably; the buyer should send it again. */
  "unavailable",
] as const;
export type VoucherRefusal = (typeof VOUCHER_REFUSALS)[number];

export const ChannelKeyWireSchema = z.strictObject({
  buyer: AddressSchema,
  signer: AddressSchema,
  payee: AddressSchema,
  nonce: Uint256StringSchema.refine((nonce) => BigInt(nonce) < 2n ** 64n, "must fit a uint64"),
});

/** A BN254 scalar field element as a decimal string (at most 78 digits). */
const FieldStringSchema = uintString(254).refine(
  (value) => !/^[0-9]+$/.test(value) || BigInt(value) < FIELD,
  "must be below the BN254 scalar field",
);

/**
 * A zk voucher's second signature: EdDSA-Poseidon by the leaf's settlement key over
 * H3(domainTag, leaf, cumulativeAmount) (docs/zk.md, "Voucher"). The voucher's `signature` is
 * then the EIP-712 ZkVoucher(leaf, cumulativeAmount) by key.signer, and key.nonce is the leaf.
 */
export const ZkVoucherWireSchema = z.strictObject({
  leaf: uintString(32),
  r8x: FieldStringSchema,
  r8y: FieldStringSchema,
  s: FieldStringSchema,
});
export type ZkVoucherWire = z.infer<typeof ZkVoucherWireSchema>;

export const VoucherWireSchema = z
  .strictObject({
    key: ChannelKeyWireSchema,
    cumulativeAmount: Uint256StringSchema,
    signature: SignatureSchema,
    /** The jobs whose accepted receipts this voucher's increase pays. */
    jobs: z.array(Bytes32Schema).min(1).max(VOUCHER_JOBS_MAX),
    /** Present on a ZkChannels channel; absent for PaymentChannels. */
    zk: ZkVoucherWireSchema.optional(),
  })
  .refine((voucher) => voucher.zk === undefined || sameInteger(voucher.zk.leaf, voucher.key.nonce), {
    message: "zk.leaf must equal key.nonce (a zk channel's key names its leaf)",
    path: ["zk", "leaf"],
  });
export type VoucherWire = z.infer<typeof VoucherWireSchema>;

export const VoucherBatchSchema = z.strictObject({
  type: z.literal("vouchers"),
  vouchers: z.array(VoucherWireSchema).min(1).max(VOUCHER_BATCH_MAX),
});
export type VoucherBatch = z.infer<typeof VoucherBatchSchema>;

export const VoucherResultSchema = z.discriminatedUnion("status", [
  z.strictObject({
    status: z.literal("accepted"),
    channelId: Bytes32Schema,
    cumulativeAmount: Uint256StringSchema,
  }),
  z.strictObject({
    status: z.literal("refused"),
    channelId: Bytes32Schema,
    reason: z.enum(VOUCHER_REFUSALS),
    detail: z.string().max(256),
  }),
]);
export type VoucherResult = z.infer<typeof VoucherResultSchema>;

export const VoucherResultsSchema = z.strictObject({
  type: z.literal("voucher_results"),
  results: z.array(VoucherResultSchema).max(VOUCHER_BATCH_MAX),
});
export type VoucherResults = z.infer<typeof VoucherResultsSchema>;

function sameInteger(left: string, right: string): boolean {
  try {
    return BigInt(left) === BigInt(right);
  } catch {
    return false;
  }
}
