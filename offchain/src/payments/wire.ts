// `/cell/voucher/1`: a buyer hands one payee a batch of vouchers, each for one channel with the
// jobs it pays; the payee answers each voucher with accepted or refused and a reason.
import { z } from "zod/v4";
import { AddressSchema, Bytes32Schema, SignatureSchema, Uint256StringSchema } from "../protocol/index.ts";

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

export const VoucherWireSchema = z.strictObject({
  key: ChannelKeyWireSchema,
  cumulativeAmount: Uint256StringSchema,
  signature: SignatureSchema,
  /** The jobs whose accepted receipts this voucher's increase pays. */
  jobs: z.array(Bytes32Schema).min(1).max(VOUCHER_JOBS_MAX),
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
