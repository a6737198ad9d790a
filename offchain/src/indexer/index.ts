export { ChainIndexer, explorerSourceOf, startChainIndexer } from "./indexer.ts";
export type { IndexerOptions, IndexerStatus, TrustLookup } from "./indexer.ts";
export { SLASH_KINDS, emptyRows, indexLogs, settlementBatchOf, stateKeysOf } from "./core.ts";
export type {
  AnchorRow,
  ChainLog,
  ChannelBalance,
  ChannelEventRow,
  ChannelRow,
  ChannelStatus,
  CourtEventRow,
  DonorEventRow,
  IndexRows,
  IndexState,
  LogSource,
  PayeeTotalRow,
  SettlementBatches,
  SettlementRow,
  SettlementVoucherRow,
  SlashEventRow,
  SlashKind,
  StakeBalance,
} from "./core.ts";
export { ZK_PAYOUT_KINDS, zkLeavesOf } from "./zk.ts";
export type {
  ZkBatchRow,
  ZkChannelBalance,
  ZkChannelEventRow,
  ZkChannelRow,
  ZkChannelStatus,
  ZkPayoutKind,
  ZkPayoutRow,
  ZkRows,
  ZkTransferRow,
} from "./zk.ts";
