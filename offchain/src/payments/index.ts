export { FUEL_PER_MEGA_FUEL, jobAmount } from "./pricing.ts";
export type { HeldVoucher, VoucherVault } from "./types.ts";
export {
  ChannelKeyWireSchema,
  VOUCHER_BATCH_MAX,
  VOUCHER_JOBS_MAX,
  VOUCHER_MESSAGE_MAX_BYTES,
  VOUCHER_PROTOCOL,
  VOUCHER_REFUSALS,
  VoucherBatchSchema,
  VoucherResultSchema,
  VoucherResultsSchema,
  VoucherWireSchema,
  ZkVoucherWireSchema,
} from "./wire.ts";
export type {
  VoucherBatch,
  VoucherRefusal,
  VoucherResult,
  VoucherResults,
  VoucherWire,
  ZkVoucherWire,
} from "./wire.ts";
export { BuyerChannels, SpendWindow, secondsToEmpty } from "./buyer-channels.ts";
export type {
  BuyerChannelSettings,
  ChainChannel,
  ChannelChainPort,
  ChannelLog,
  ChannelView,
  DueVoucher,
  PayOutcome,
} from "./buyer-channels.ts";
export { VoucherSender } from "./voucher-sender.ts";
export type { VoucherSenderPorts, VoucherSenderSettings, ZkSignedVoucher } from "./voucher-sender.ts";
export { decideCredit, maxCost } from "./credit.ts";
export type { BuyerCredit, CreditDecision, CreditLimits } from "./credit.ts";
export { PayeeLedger, checkVoucher } from "./payee-ledger.ts";
export type {
  PayeeChannelView,
  JobEarning,
  PayeeChannels,
  PayeeLedgerOptions,
  VoucherClaim,
  VoucherDecision,
  VoucherFacts,
} from "./payee-ledger.ts";
export { CHANNEL_CURSOR_KEY, ChannelBook, channelEventOf, zkChannelEventOf } from "./channel-book.ts";
export type { ChannelBookOptions, ChannelEvent } from "./channel-book.ts";
