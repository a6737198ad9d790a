import type { Hex } from "viem";
import { z } from "zod/v4";
import { isReceiptStatus, RECEIPT_STATUS_LIST } from "./receipts.ts";
import { canonicalSignature, signatureError } from "./signature.ts";
import { DATA_LIMITS } from "./limits.ts";

/**
 * Wire schemas of the job market. Every message from the network is parsed by one of
 * these before anything else reads it: strings and arrays are capped, hex is checked by
 * shape, and integers wider than 53 bits travel as decimal strings.
 */

export const TOPIC_JOBS = "/cell/jobs/1";
export const TOPIC_CAPS = "/cell/caps/1";
export const TOPIC_RECEIPTS = "/cell/receipts/1";
export const PROTOCOL_BID = "/cell/bid/1";
/** Buyer → the few donors it chose for a job: asks them (and only them) to bid. */
export const PROTOCOL_BID_REQUEST = "/cell/bidreq/2";
export const PROTOCOL_ASSIGN = "/cell/assign/1";
export const PROTOCOL_STATUS = "/cell/status/1";
export const PROTOCOL_RECEIPT = "/cell/receipt/1";
/** Buyer → executor: stop a job (its verdict is in, or the attempt was superseded). */
export const PROTOCOL_CANCEL = "/cell/cancel/1";
/** Any node → donor: its current capability advert, asked once when a connection opens. */
export const PROTOCOL_ADVERT = "/cell/advert/1";

/** Byte limits of each message kind, enforced by the mesh before parsing. */
export const MESSAGE_LIMITS = {
  announce: 8 * 1024,
  announceBatch: 48 * 1024,
  advert: 4 * 1024,
  bidBatch: 32 * 1024,
  bidRequestBatch: 64 * 1024,
  bidRequestAnswer: 32 * 1024,
  bidAck: 256,
  assignBatch: 256 * 1024,
  assignResults: 32 * 1024,
  statusRequest: 1024,
  statusResponse: 4 * 1024,
  cancelRequest: 256,
  cancelResponse: 256,
  advertRequest: 64,
  deliveryBatch: 512 * 1024,
  deliveryAcks: 32 * 1024,
  receiptBatchAnnounce: 1024,
  receiptBatchBlock: 256 * 1024,
} as const;

/** Most items one bid, assignment or delivery message carries. */
export const MARKET_BATCH_MAX = 32;

/** Largest input sent inline with an assignment; larger inputs are fetched by CID. */
export const INLINE_INPUT_MAX_BYTES = 4 * 1024;

/** Largest output sent inline with a receipt; larger outputs are fetched by CID. */
export const INLINE_OUTPUT_MAX_BYTES = 256 * 1024;

/**
 * Why a step of a job's life did not happen. Stable wire values: every refusal reaches
 * the buyer as one of these.
 */
export const REASON_CODES = [
  "no_bid",
  "bid_rejected_price",
  "bid_rejected_reputation",
  "bid_rejected_expired",
  "bid_rejected_signature",
  /** The bid came after the buyer had chosen among the bids of its round. */
  "bid_late",
  /** The bidder is not active in DonorRegistry with its peer key. */
  "bid_unstaked",
  "stake_unknown",
  /** The bid names a job this node never announced. */
  "bid_unknown_job",
  "not_staked",
  "policy_mismatch",
  "author_not_accepted",
  "fuel_too_high",
  "memory_too_high",
  "timeout_too_long",
  "slots_full",
  /** The buyer has no open channel to the donor's payee whose unspent deposit covers the job. */
  "payment_required",
  /** The buyer owes the donor more unpaid work than the donor allows (it bids again once paid). */
  "payment_overdue",
  "duplicate_operator",
  "unknown_job",
  "bad_spec",
  "bad_signature",
  "timeout",
  "executor_silent",
  "deadline_missed",
  "fetch_failed",
  "no_result",
  "rejected_by_executor",
  "unreachable",
  "receipt_invalid",
  "attempts_exhausted",
  /** The replicas' receipts reached no quorum, even with replicas added. */
  "no_quorum",
  /** The buyer cancelled the execution (its verdict is in, or the attempt was superseded). */
  "cancelled",
  "shutting_down",
  "internal_error",
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];
export const ReasonCodeSchema = z.enum(REASON_CODES);

export const PRIORITIES = ["critical", "high", "normal", "low", "background"] as const;
export type PriorityName = (typeof PRIORITIES)[number];
export const PriorityNameSchema = z.enum(PRIORITIES);

export const EXECUTION_STATUSES = ["ok", "exit", "trap", "out_of_fuel", "policy_rejected"] as const;
export const ExecutionStatusSchema = z.enum(EXECUTION_STATUSES);

// ── primitives ──────────────────────────────────────────────────────────────────────

const hexOf = (bytes: number, what: string) =>
  z
    .string()
    .length(2 + bytes * 2, `${what} must be 0x + ${bytes * 2} hex digits`)
    .regex(/^0x[0-9a-fA-F]*$/, `${what} must be hex`)
    .transform((value) => value as `0x${string}`);

export const Bytes32Schema = hexOf(32, "bytes32");
export const AddressSchema = hexOf(20, "address");
/**
 * A signature in a form the contracts accept (signature.ts): 65 bytes with v = 27 or 28 and a
 * low s, or EIP-2098's 64 bytes, which is expanded to its 65-byte form. Anything that can
 * never verify on-chain is refused here, with what is wrong.
 */
export const SignatureSchema = z
  .string()
  .max(2 + 65 * 2, "signature must be 0x + 130 hex digits (or 128 for EIP-2098)")
  .superRefine((value, context) => {
    const problem = signatureError(value);
    if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
  })
  // A valid 65-byte signature is already canonical; only a valid 64-byte one needs expanding.
  .transform((value) =>
    value.length === 2 + 64 * 2 && signatureError(value) === undefined
      ? canonicalSignature(value)
      : (value as Hex),
  );

const DECIMAL = /^(0|[1-9][0-9]{0,77})$/;

/** An unsigned integer below 2^bits, carried as a decimal string. */
export const uintString = (bits: number) =>
  z
    .string()
    .max(78)
    .refine((value) => DECIMAL.test(value), "must be a decimal unsigned integer")
    .refine((value) => !DECIMAL.test(value) || BigInt(value) < 1n << BigInt(bits), `must be below 2^${bits}`);

export const Uint64StringSchema = uintString(64);
export const Uint256StringSchema = uintString(256);

/** A libp2p peer id (base58btc multihash or CIDv1 base32). */
export const PeerIdStringSchema = z
  .string()
  .min(32)
  .max(128)
  .regex(/^[0-9A-Za-z]+$/, "must be a peer id");

/** A CIDv1 in base32 (`b…`), the content address of modules, inputs and outputs. */
export const CidStringSchema = z
  .string()
  .min(8)
  .max(128)
  .regex(/^b[a-z2-7]+$/, "must be a base32 CIDv1");

export const MultiaddrStringSchema = z.string().min(3).max(256).regex(/^\//, "must be a multiaddr");
const MultiaddrListSchema = z.array(MultiaddrStringSchema).max(8);
const ProviderListSchema = z.array(PeerIdStringSchema).max(8);
const DetailSchema = z.string().max(512);
const uint = (max: number) => z.number().int().min(0).max(max);
/** The items of a batched request: 1 to MARKET_BATCH_MAX. */
const batchOf = <T extends z.ZodType>(item: T) => z.array(item).min(1).max(MARKET_BATCH_MAX);
/** The answers to a batched request, one per item. */
const answersTo = <T extends z.ZodType>(item: T) => z.array(item).max(MARKET_BATCH_MAX);

// ── job spec ────────────────────────────────────────────────────────────────────────

/** `JobSpec` of eip712.ts, with uint64/uint256 as decimal strings. */
export const JobSpecWireSchema = z.strictObject({
  buyer: AddressSchema,
  moduleCid: Bytes32Schema,
  inputCid: Bytes32Schema,
  entry: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an export name"),
  fuelLimit: Uint64StringSchema,
  memoryPages: uint(65_536),
  timeoutMs: uint(2 ** 32 - 1),
  replicas: uint(255).min(1),
  maxPricePerMegaFuel: Uint256StringSchema,
  minReputation: uint(65_535),
  deadline: Uint64StringSchema,
  priority: uint(PRIORITIES.length - 1),
  channel: Bytes32Schema,
  salt: Bytes32Schema,
});
export type JobSpecWire = z.infer<typeof JobSpecWireSchema>;

/** A buyer's job, as announced on `/cell/jobs/1` and carried by bid requests and assignments. */
export const JobAnnounceSchema = z.strictObject({
  type: z.literal("job"),
  jobId: Bytes32Schema,
  spec: JobSpecWireSchema,
  signature: SignatureSchema,
  moduleCid: CidStringSchema,
  inputCid: CidStringSchema,
  moduleSize: uint(DATA_LIMITS.moduleBytes),
  inputSize: uint(DATA_LIMITS.inputBytes),
  buyerPeer: PeerIdStringSchema,
  providers: ProviderListSchema,
  providerAddrs: MultiaddrListSchema,
});
export type JobAnnounce = z.infer<typeof JobAnnounceSchema>;

export const ANNOUNCE_BATCH_MAX_JOBS = 32;

/**
 * What `/cell/jobs/1` carries: the jobs a buyer submitted within a few milliseconds, in
 * one gossip message, so a busy buyer does not flood the mesh with one message per job.
 */
export const JobAnnounceBatchSchema = z.strictObject({
  type: z.literal("jobs"),
  jobs: z.array(JobAnnounceSchema).min(1).max(ANNOUNCE_BATCH_MAX_JOBS),
});
export type JobAnnounceBatch = z.infer<typeof JobAnnounceBatchSchema>;

// ── capability adverts ─────────────────────────────────────────────────────────────

/**
 * What a donor offers, on `/cell/caps/1`. A donor publishes it when its terms change and
 * repeats it as a heartbeat; `seq` grows with every change and stays the same in a
 * heartbeat, so a receiver checks an advert once per change and only refreshes liveness on
 * a repeat. Donors take `seq` from their clock (milliseconds), so it keeps growing across
 * restarts.
 */
export const CapabilityAdvertSchema = z.strictObject({
  type: z.literal("caps"),
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  operator: AddressSchema,
  peerId: PeerIdStringSchema,
  peerKey: Bytes32Schema,
  pricePerMegaFuel: Uint256StringSchema,
  slots: uint(1024),
  freeSlots: uint(1024),
  fuelPerSecond: Uint64StringSchema,
  maxFuel: Uint64StringSchema,
  maxMemoryPages: uint(65_536),
  runtimeVersion: z.string().min(1).max(32),
  multiaddrs: MultiaddrListSchema,
  timestamp: Uint64StringSchema,
});
export type CapabilityAdvert = z.infer<typeof CapabilityAdvertSchema>;

/** Asked on `/cell/advert/1`; a donor that has not advertised yet (not staked) answers without one. */
export const AdvertRequestSchema = z.strictObject({ type: z.literal("advert") });
export const AdvertResponseSchema = z.strictObject({
  type: z.literal("advert"),
  advert: CapabilityAdvertSchema.optional(),
});

// ── bids ────────────────────────────────────────────────────────────────────────────

export const BidWireSchema = z.strictObject({
  jobId: Bytes32Schema,
  executor: AddressSchema,
  pricePerMegaFuel: Uint256StringSchema,
  expiresAt: Uint64StringSchema,
});
export type BidWire = z.infer<typeof BidWireSchema>;

/** A donor's answer to an announced job: a signed bid, or a refusal with its reason. */
export const BidOfferSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("bid"),
    bid: BidWireSchema,
    signature: SignatureSchema,
    peerKey: Bytes32Schema,
    freeSlots: uint(1024),
  }),
  z.strictObject({
    type: z.literal("decline"),
    jobId: Bytes32Schema,
    reason: ReasonCodeSchema,
    detail: DetailSchema.optional(),
  }),
]);
export type BidOffer = z.infer<typeof BidOfferSchema>;

/** Donor → buyer on `/cell/bid/1`: its answers to jobs the buyer announced. */
export const BidBatchSchema = z.strictObject({
  type: z.literal("bids"),
  offers: batchOf(BidOfferSchema),
});
export type BidBatch = z.infer<typeof BidBatchSchema>;

export const BidAckSchema = z.strictObject({ type: z.literal("ack"), received: uint(MARKET_BATCH_MAX) });
export type BidAck = z.infer<typeof BidAckSchema>;

/**
 * Buyer → donor on `/cell/bidreq/2`: jobs the buyer asks this donor to bid on (it picked the
 * donor among a few candidates per job). The answers come back in the response; an answer not
 * ready in time comes later on `/cell/bid/1`.
 */
export const BidRequestBatchSchema = z.strictObject({
  type: z.literal("bid_requests"),
  jobs: z.array(JobAnnounceSchema).min(1).max(MARKET_BATCH_MAX),
});
export type BidRequestBatch = z.infer<typeof BidRequestBatchSchema>;

/** Donor → buyer, the response on `/cell/bidreq/2`: the bids and declines ready in time (maybe none). */
export const BidRequestAnswerSchema = z.strictObject({
  type: z.literal("bids"),
  offers: z.array(BidOfferSchema).max(MARKET_BATCH_MAX),
});
export type BidRequestAnswer = z.infer<typeof BidRequestAnswerSchema>;

// ── assignment ─────────────────────────────────────────────────────────────────────

/** Buyer → chosen donor: run the job at the price you bid (the donor kept the job it bid on). */
export const AssignRequestSchema = z.strictObject({
  type: z.literal("assign"),
  jobId: Bytes32Schema,
  bid: BidWireSchema,
  bidSignature: SignatureSchema,
  attempt: uint(64),
  /** The input itself when small; the executor checks it hashes to the job's input CID. */
  inputBase64: z
    .string()
    .max(Math.ceil(INLINE_INPUT_MAX_BYTES / 3) * 4)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64")
    .optional(),
});
export type AssignRequest = z.infer<typeof AssignRequestSchema>;

export const AssignResponseSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("accept"), jobId: Bytes32Schema }),
  z.strictObject({
    type: z.literal("reject"),
    jobId: Bytes32Schema,
    reason: ReasonCodeSchema,
    detail: DetailSchema.optional(),
  }),
]);
export type AssignResponse = z.infer<typeof AssignResponseSchema>;

/** Buyer → donor on `/cell/assign/1`. */
export const AssignBatchSchema = z.strictObject({
  type: z.literal("assign_batch"),
  assignments: batchOf(AssignRequestSchema),
});
export type AssignBatch = z.infer<typeof AssignBatchSchema>;

/** Donor → buyer: one answer per assignment, in order. */
export const AssignResultsSchema = z.strictObject({
  type: z.literal("assign_results"),
  results: answersTo(AssignResponseSchema),
});
export type AssignResults = z.infer<typeof AssignResultsSchema>;

// ── cancel ──────────────────────────────────────────────────────────────────────────

/**
 * Buyer → executor on `/cell/cancel/1`. Unsigned: the connection's peer id (Noise)
 * authenticates the buyer, and an executor accepts it only from the job's buyer peer.
 */
export const CancelRequestSchema = z.strictObject({
  type: z.literal("cancel"),
  jobId: Bytes32Schema,
  /** The assignment's attempt number (as sent with the assignment). */
  attempt: uint(64),
});
export type CancelRequest = z.infer<typeof CancelRequestSchema>;

/** `stopped`: the executor stopped a run of the job; false when it had none (already done, or unknown). */
export const CancelResponseSchema = z.strictObject({
  type: z.literal("cancelled"),
  jobId: Bytes32Schema,
  stopped: z.boolean(),
});
export type CancelResponse = z.infer<typeof CancelResponseSchema>;

// ── status ──────────────────────────────────────────────────────────────────────────

export const EXECUTOR_STATES = ["unknown", "accepted", "fetching", "running", "done", "failed"] as const;
export type ExecutorState = (typeof EXECUTOR_STATES)[number];

/** Buyer → executor on `/cell/status/1`: a liveness probe for an assigned job. */
export const StatusRequestSchema = z.strictObject({ type: z.literal("status"), jobId: Bytes32Schema });
export type StatusRequest = z.infer<typeof StatusRequestSchema>;

// ── receipts ────────────────────────────────────────────────────────────────────────

/** `Receipt` of eip712.ts, with uint64 as decimal strings. */
export const ReceiptWireSchema = z.strictObject({
  jobId: Bytes32Schema,
  executor: AddressSchema,
  moduleCid: Bytes32Schema,
  inputCid: Bytes32Schema,
  outputCid: Bytes32Schema,
  fuelUsed: Uint64StringSchema,
  status: uint(255).refine(isReceiptStatus, `status must be a known receipt status (${RECEIPT_STATUS_LIST})`),
  startedAt: Uint64StringSchema,
  finishedAt: Uint64StringSchema,
});
export type ReceiptWire = z.infer<typeof ReceiptWireSchema>;

const Base64Schema = z
  .string()
  .max(Math.ceil(INLINE_OUTPUT_MAX_BYTES / 3) * 4)
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64");

/**
 * Executor → buyer: the signed receipt of a finished job, with the
 * output inline when small, or an execution that yielded no result (with its reason).
 */
export const ReceiptDeliverySchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("receipt"),
    receipt: ReceiptWireSchema,
    signature: SignatureSchema,
    outputCid: CidStringSchema,
    outputBase64: Base64Schema.optional(),
  }),
  z.strictObject({
    type: z.literal("no_result"),
    jobId: Bytes32Schema,
    reason: ReasonCodeSchema,
    detail: DetailSchema.optional(),
  }),
]);
export type ReceiptDelivery = z.infer<typeof ReceiptDeliverySchema>;

/**
 * Executor → buyer: the state of an assigned job. A job that is `done` carries its signed
 * receipt (without inline output), so a buyer whose delivery was lost still gets it.
 */
export const StatusResponseSchema = z.strictObject({
  type: z.literal("status"),
  jobId: Bytes32Schema,
  state: z.enum(EXECUTOR_STATES),
  reason: ReasonCodeSchema.optional(),
  detail: DetailSchema.optional(),
  receipt: z
    .strictObject({ receipt: ReceiptWireSchema, signature: SignatureSchema, outputCid: CidStringSchema })
    .optional(),
});
export type StatusResponse = z.infer<typeof StatusResponseSchema>;

export const ReceiptAckSchema = z.strictObject({
  type: z.literal("ack"),
  jobId: Bytes32Schema,
  accepted: z.boolean(),
  reason: ReasonCodeSchema.optional(),
});
export type ReceiptAck = z.infer<typeof ReceiptAckSchema>;

/** Executor → buyer on `/cell/receipt/1`. */
export const DeliveryBatchSchema = z.strictObject({
  type: z.literal("deliveries"),
  deliveries: batchOf(ReceiptDeliverySchema),
});
export type DeliveryBatch = z.infer<typeof DeliveryBatchSchema>;

/** Buyer → executor: one acknowledgement per delivery, in order. */
export const DeliveryAcksSchema = z.strictObject({
  type: z.literal("acks"),
  acks: answersTo(ReceiptAckSchema),
});
export type DeliveryAcks = z.infer<typeof DeliveryAcksSchema>;

// ── receipt batches ─────────────────────────────────────────────────────────────────

/** Most receipts one batch block lists. */
export const RECEIPT_BATCH_MAX = 1024;

/**
 * A block listing the receipts an executor signed within one batch window, linked to the
 * executor's previous batch: the whole history is reachable from the latest batch. The
 * batch, not each receipt, is provided in the DHT; its receipts are fetched by CID from
 * the batch's providers.
 */
export const ReceiptBatchBlockSchema = z.strictObject({
  type: z.literal("cell-receipt-batch/1"),
  executor: AddressSchema,
  sequence: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  previous: CidStringSchema.nullable(),
  receipts: z
    .array(z.strictObject({ jobId: Bytes32Schema, cid: CidStringSchema }))
    .min(1)
    .max(RECEIPT_BATCH_MAX),
});
export type ReceiptBatchBlock = z.infer<typeof ReceiptBatchBlockSchema>;

/** What `/cell/receipts/1` carries: an executor's newest receipt batch. */
export const ReceiptBatchAnnounceSchema = z.strictObject({
  type: z.literal("receipt_batch"),
  executor: AddressSchema,
  batchCid: CidStringSchema,
  sequence: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  count: uint(RECEIPT_BATCH_MAX).min(1),
});
export type ReceiptBatchAnnounce = z.infer<typeof ReceiptBatchAnnounceSchema>;

// ── evidence ────────────────────────────────────────────────────────────────────────

/** Where nodes gossip evidence of misbehaviour that any receiver can check for itself. */
export const TOPIC_EVIDENCE = "/cell/evidence/1";

/**
 * Most agreeing receipts one outvote evidence carries: a spec has at most 255 replicas, and the
 * accused ran one of them (DonorRegistry.checkOutvote takes at most n − 1).
 */
export const OUTVOTE_QUORUM_MAX = 254;

/** A receipt with its executor's signature, as evidence carries it. */
export const SignedReceiptSchema = z.strictObject({
  receipt: ReceiptWireSchema,
  signature: SignatureSchema,
});
export type SignedReceiptWire = z.infer<typeof SignedReceiptSchema>;

/** One operator signed two receipts for one job that differ in status, output or fuel used. */
export const EquivocationEvidenceSchema = z.strictObject({
  kind: z.literal("equivocation"),
  a: SignedReceiptSchema,
  b: SignedReceiptSchema,
});
export type EquivocationEvidence = z.infer<typeof EquivocationEvidenceSchema>;

/** A receipt that disagrees with `quorum`, agreeing receipts of the job's other executors. */
export const OutvoteEvidenceSchema = z.strictObject({
  kind: z.literal("outvote"),
  spec: JobSpecWireSchema,
  accused: SignedReceiptSchema,
  quorum: z.array(SignedReceiptSchema).min(1).max(OUTVOTE_QUORUM_MAX),
});
export type OutvoteEvidenceWire = z.infer<typeof OutvoteEvidenceSchema>;

/** What `/cell/evidence/1` carries. Receivers re-verify it themselves before acting on it. */
export const EvidenceMessageSchema = z.discriminatedUnion("kind", [
  EquivocationEvidenceSchema,
  OutvoteEvidenceSchema,
]);
export type EvidenceMessage = z.infer<typeof EvidenceMessageSchema>;

/**
 * Largest evidence message: 255 signed receipts of about 700 bytes of JSON each and a spec fit
 * well within it.
 */
export const EVIDENCE_MAX_BYTES = 256 * 1024;
