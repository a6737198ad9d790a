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
