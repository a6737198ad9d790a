import {
  AssignRequestSchema,
  AssignResponseSchema,
  BidRequestSchema,
  BidResponseSchema,
  MESSAGE_LIMITS,
  ReceiptAckSchema,
  ReceiptDeliverySchema,
  StatusRequestSchema,
  StatusResponseSchema,
} from "../protocol/index.ts";

/** Schemas, byte limits and per-peer rates of the market's request-response protocols. */
export const protocolSpecs = {
  bid: {
    request: BidRequestSchema,
    response: BidResponseSchema,
    maxRequestBytes: MESSAGE_LIMITS.bidRequest,
    maxResponseBytes: MESSAGE_LIMITS.bidResponse,
    ratePerSecond: 5_000,
    burst: 10_000,
  },
  assign: {
    request: AssignRequestSchema,
    response: AssignResponseSchema,
    maxRequestBytes: MESSAGE_LIMITS.assignRequest,
    maxResponseBytes: MESSAGE_LIMITS.assignResponse,
    ratePerSecond: 5_000,
    burst: 10_000,
  },
  status: {
    request: StatusRequestSchema,
    response: StatusResponseSchema,
    maxRequestBytes: MESSAGE_LIMITS.statusRequest,
    maxResponseBytes: MESSAGE_LIMITS.statusResponse,
    ratePerSecond: 50,
    burst: 100,
  },
  receipt: {
    request: ReceiptDeliverySchema,
    response: ReceiptAckSchema,
    maxRequestBytes: MESSAGE_LIMITS.receiptDelivery,
    maxResponseBytes: MESSAGE_LIMITS.receiptAck,
    ratePerSecond: 5_000,
    burst: 10_000,
  },
} as const;
