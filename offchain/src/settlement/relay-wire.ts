// `/cell/relay/1`: a payee hands a relayer its latest vouchers, and the relayer settles them in
// its own batches; the answer says, per voucher, accepted or refused with a reason.
import { z } from "zod/v4";
import { ChannelKeyWireSchema } from "../payments/index.ts";
import { Bytes32Schema, SignatureSchema, Uint256StringSchema } from "../protocol/index.ts";

export const RELAY_PROTOCOL = "/cell/relay/1";

/** Vouchers in one hand-over; a payee with more sends several. */
export const RELAY_BATCH_MAX = 256;
/** Largest encoded request or response on the relay protocol. */
export const RELAY_MESSAGE_MAX_BYTES = 256 * 1024;

export const RELAY_REFUSALS = [
  /** Not signed by key.signer over (channelId, cumulativeAmount) in a form the contract takes. */
  "bad_signature",
  /** No such channel on-chain. */
  "unknown_channel",
  /** The channel is closing or closed: the payee redeems it itself. */
  "channel_closed",
  /** Not above what the relayer holds or the chain already paid. */
  "not_increasing",
  /** The relayer keeps no more vouchers now (its table or its chain lookups are full). */
  "full",
] as const;
export type RelayRefusal = (typeof RELAY_REFUSALS)[number];

export const RelayedVoucherSchema = z.strictObject({
  key: ChannelKeyWireSchema,
  cumulativeAmount: Uint256StringSchema,
  signature: SignatureSchema,
});
export type RelayedVoucher = z.infer<typeof RelayedVoucherSchema>;

export const RelayRequestSchema = z.strictObject({
  type: z.literal("relay"),
  vouchers: z.array(RelayedVoucherSchema).min(1).max(RELAY_BATCH_MAX),
});
export type RelayRequest = z.infer<typeof RelayRequestSchema>;

export const RelayResultSchema = z.discriminatedUnion("status", [
  z.strictObject({ status: z.literal("accepted"), channelId: Bytes32Schema }),
  z.strictObject({
    status: z.literal("refused"),
    channelId: Bytes32Schema,
    reason: z.enum(RELAY_REFUSALS),
    detail: z.string().max(256),
  }),
]);
export type RelayResult = z.infer<typeof RelayResultSchema>;

export const RelayResultsSchema = z.strictObject({
  type: z.literal("relay_results"),
  results: z.array(RelayResultSchema).max(RELAY_BATCH_MAX),
});
export type RelayResults = z.infer<typeof RelayResultsSchema>;
