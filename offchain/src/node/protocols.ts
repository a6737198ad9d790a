import {
  AdvertRequestSchema,
  AdvertResponseSchema,
  AssignBatchSchema,
  AssignResultsSchema,
  BidAckSchema,
  BidBatchSchema,
  BidRequestAnswerSchema,
  BidRequestBatchSchema,
  CancelRequestSchema,
  CancelResponseSchema,
  DeliveryAcksSchema,
  DeliveryBatchSchema,
  MARKET_BATCH_MAX,
  MESSAGE_LIMITS,
  StatusRequestSchema,
  StatusResponseSchema,
} from "../protocol/index.ts";
import { VOUCHER_MESSAGE_MAX_BYTES, VoucherBatchSchema, VoucherResultsSchema } from "../payments/index.ts";
import { RELAY_MESSAGE_MAX_BYTES, RelayRequestSchema, RelayResultsSchema } from "../settlement/relay-wire.ts";

/**
 * Schemas, byte limits and per-peer rates of the market's request-response protocols. Bids,
 * assignments and deliveries travel in batches (see RequestCoalescer), so their rates
 * count messages of up to MARKET_BATCH_MAX items.
 */
export const protocolSpecs = {
  bid: {
    request: BidBatchSchema,
    response: BidAckSchema,
    maxRequestBytes: MESSAGE_LIMITS.bidBatch,
    maxResponseBytes: MESSAGE_LIMITS.bidAck,
    ratePerSecond: 1_000,
    burst: 2_000,
  },
  bidRequest: {
    request: BidRequestBatchSchema,
    response: BidRequestAnswerSchema,
    maxRequestBytes: MESSAGE_LIMITS.bidRequestBatch,
    maxResponseBytes: MESSAGE_LIMITS.bidRequestAnswer,
    ratePerSecond: 1_000,
    burst: 2_000,
  },
  assign: {
    request: AssignBatchSchema,
    response: AssignResultsSchema,
    maxRequestBytes: MESSAGE_LIMITS.assignBatch,
    maxResponseBytes: MESSAGE_LIMITS.assignResults,
    ratePerSecond: 1_000,
    burst: 2_000,
  },
  status: {
    request: StatusRequestSchema,
    response: StatusResponseSchema,
    maxRequestBytes: MESSAGE_LIMITS.statusRequest,
    maxResponseBytes: MESSAGE_LIMITS.statusResponse,
    ratePerSecond: 50,
    burst: 100,
  },
  cancel: {
    request: CancelRequestSchema,
    response: CancelResponseSchema,
    maxRequestBytes: MESSAGE_LIMITS.cancelRequest,
    maxResponseBytes: MESSAGE_LIMITS.cancelResponse,
    ratePerSecond: 100,
    burst: 200,
  },
  advert: {
    request: AdvertRequestSchema,
    response: AdvertResponseSchema,
    maxRequestBytes: MESSAGE_LIMITS.advertRequest,
    maxResponseBytes: MESSAGE_LIMITS.advert,
    ratePerSecond: 5,
    burst: 10,
  },
  /** `/cell/voucher/1`: a buyer's vouchers to one payee, batched (payments/wire.ts). */
  voucher: {
    request: VoucherBatchSchema,
    response: VoucherResultsSchema,
    maxRequestBytes: VOUCHER_MESSAGE_MAX_BYTES,
    maxResponseBytes: VOUCHER_MESSAGE_MAX_BYTES,
    // A buyer keeps one request per payee in flight, coalescing the rest; each voucher costs
    // the payee a signature check, so a peer gets at most 10 requests (2,560 vouchers) a second.
    ratePerSecond: 10,
    burst: 20,
  },
  /** `/cell/relay/1`: a payee's latest vouchers handed to its relayer (settlement/relay-wire.ts). */
  relay: {
    request: RelayRequestSchema,
    response: RelayResultsSchema,
    maxRequestBytes: RELAY_MESSAGE_MAX_BYTES,
    maxResponseBytes: RELAY_MESSAGE_MAX_BYTES,
    ratePerSecond: 10,
    burst: 20,
  },
  receipt: {
    request: DeliveryBatchSchema,
    response: DeliveryAcksSchema,
    maxRequestBytes: MESSAGE_LIMITS.deliveryBatch,
    maxResponseBytes: MESSAGE_LIMITS.deliveryAcks,
    ratePerSecond: 1_000,
    burst: 2_000,
  },
} as const;

/**
 * How bids, assignments and deliveries to one peer are batched: at once while fewer than
 * two batches are under way, else together with what queued meanwhile.
 */
export const MARKET_BATCHING = { maxItems: MARKET_BATCH_MAX, maxInFlight: 2 } as const;
