import type { Address, Hex, TypedDataDomain } from "viem";

/**
 * The one source of truth for every EIP-712 statement in Cell. Solidity mirrors these
 * type strings (see contracts/libraries/CellTypes.sol); tests assert the two agree.
 *
 * Domains bind chain id and contract address, so a signature never replays across
 * chains or deployments: receipts, bids and job specs are checked by DonorRegistry,
 * vouchers by PaymentChannels.
 */
export const EIP712_NAME = "Cell";
export const EIP712_VERSION = "1";

export function cellDomain(chainId: number | bigint, verifyingContract: Address): TypedDataDomain {
  return { name: EIP712_NAME, version: EIP712_VERSION, chainId: Number(chainId), verifyingContract };
}

/** Result status of one execution, as signed in a receipt. Values are stable wire values. */
export const ReceiptStatus = {
  ok: 0,
  exit: 1,
  trap: 2,
  out_of_fuel: 3,
  policy_rejected: 4,
} as const;
export type ReceiptStatusName = keyof typeof ReceiptStatus;

export const receiptTypes = {
  Receipt: [
    { name: "jobId", type: "bytes32" },
    { name: "executor", type: "address" },
    { name: "moduleCid", type: "bytes32" },
    { name: "inputCid", type: "bytes32" },
    { name: "outputCid", type: "bytes32" },
    { name: "fuelUsed", type: "uint64" },
    { name: "status", type: "uint8" },
    { name: "startedAt", type: "uint64" },
    { name: "finishedAt", type: "uint64" },
  ],
} as const;

export const voucherTypes = {
  Voucher: [
    { name: "channelId", type: "bytes32" },
    { name: "cumulativeAmount", type: "uint256" },
  ],
} as const;

/**
 * Both ends of a channel sign this to close it at once with a final cumulative amount; the
 * contract refuses it after `deadline` (unix seconds), so an old agreement cannot be used later.
 */
export const channelCloseTypes = {
  ChannelClose: [
    { name: "channelId", type: "bytes32" },
    { name: "finalAmount", type: "uint256" },
    { name: "deadline", type: "uint64" },
  ],
} as const;

export const jobSpecTypes = {
  JobSpec: [
    { name: "buyer", type: "address" },
    { name: "moduleCid", type: "bytes32" },
    { name: "inputCid", type: "bytes32" },
    { name: "entry", type: "string" },
    { name: "fuelLimit", type: "uint64" },
    { name: "memoryPages", type: "uint32" },
    { name: "timeoutMs", type: "uint32" },
    { name: "replicas", type: "uint8" },
    { name: "maxPricePerMegaFuel", type: "uint256" },
    { name: "minReputation", type: "uint16" },
    { name: "deadline", type: "uint64" },
    { name: "priority", type: "uint8" },
    { name: "channel", type: "bytes32" },
    { name: "salt", type: "bytes32" },
  ],
} as const;

export const bidTypes = {
  Bid: [
    { name: "jobId", type: "bytes32" },
    { name: "executor", type: "address" },
    { name: "pricePerMegaFuel", type: "uint256" },
    { name: "expiresAt", type: "uint64" },
  ],
} as const;

/** Solidity-side type strings, derived so the two can never drift apart. */
export const RECEIPT_TYPE =
  "Receipt(bytes32 jobId,address executor,bytes32 moduleCid,bytes32 inputCid,bytes32 outputCid,uint64 fuelUsed,uint8 status,uint64 startedAt,uint64 finishedAt)";
export const VOUCHER_TYPE = "Voucher(bytes32 channelId,uint256 cumulativeAmount)";
export const CHANNEL_CLOSE_TYPE = "ChannelClose(bytes32 channelId,uint256 finalAmount,uint64 deadline)";
export const JOB_SPEC_TYPE =
  "JobSpec(address buyer,bytes32 moduleCid,bytes32 inputCid,string entry,uint64 fuelLimit,uint32 memoryPages,uint32 timeoutMs,uint8 replicas,uint256 maxPricePerMegaFuel,uint16 minReputation,uint64 deadline,uint8 priority,bytes32 channel,bytes32 salt)";
export const BID_TYPE = "Bid(bytes32 jobId,address executor,uint256 pricePerMegaFuel,uint64 expiresAt)";

export interface Receipt {
  jobId: Hex;
  executor: Address;
  moduleCid: Hex;
  inputCid: Hex;
  outputCid: Hex;
  fuelUsed: bigint;
  status: number;
  startedAt: bigint;
  finishedAt: bigint;
}

export interface Voucher {
  channelId: Hex;
  cumulativeAmount: bigint;
}

export interface ChannelClose {
  channelId: Hex;
  finalAmount: bigint;
  /** Last unix second at which the close may be submitted. */
  deadline: bigint;
}

export interface JobSpecMessage {
  buyer: Address;
  moduleCid: Hex;
  inputCid: Hex;
  entry: string;
  fuelLimit: bigint;
  memoryPages: number;
  timeoutMs: number;
  replicas: number;
  maxPricePerMegaFuel: bigint;
  minReputation: number;
  deadline: bigint;
  priority: number;
  channel: Hex;
  salt: Hex;
}

export interface BidMessage {
  jobId: Hex;
  executor: Address;
  pricePerMegaFuel: bigint;
  expiresAt: bigint;
}
