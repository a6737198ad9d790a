export { openStore, DATABASE_FILE } from "./store.ts";
export type { CommitOptions, OpenStoreOptions, Store, StoreLogger } from "./store.ts";
export { MIGRATIONS, LATEST_SCHEMA_VERSION, migrate } from "./migrations.ts";
export type { Migration } from "./migrations.ts";
export { JOB_ROLES, JOB_STATES, PRIORITIES } from "./jobs.ts";
export type {
  JobPatch,
  JobQuery,
  JobRole,
  JobRow,
  JobState,
  JobsRepository,
  NewJob,
  Priority,
} from "./jobs.ts";
export type { JobEventRow, JobEventsRepository, NewJobEvent } from "./job-events.ts";
export { BID_STATES } from "./bids.ts";
export type { BidRow, BidState, BidsRepository, NewBid } from "./bids.ts";
export { ACTIVE_ASSIGNMENT_STATES, ASSIGNMENT_STATES } from "./assignments.ts";
export type {
  AssignmentPatch,
  AssignmentRow,
  AssignmentState,
  AssignmentsRepository,
  NewAssignment,
} from "./assignments.ts";
export type { NewReceipt, ReceiptRow, ReceiptsRepository } from "./receipts.ts";
export type { PeerRow, PeersRepository, PeerUpdate } from "./peers.ts";
export type { MetaRepository } from "./meta.ts";
export type { TrustRepository, TrustReputationRow, TrustSubjectRow } from "./trust.ts";
export { DEFAULT_BLOCK_RETENTION, MAX_BLOCK_BYTES, parseBlockCid } from "./blockstore.ts";
export type { BlockReference, BlockRetention, Blockstore, CollectionReport } from "./blockstore.ts";
export type { JsonObject, JsonValue } from "./codec.ts";
export {
  SLASH_KINDS,
  SLASH_PENDING_MAX,
  SLASH_ROWS_MAX,
  SLASH_SOURCES,
  SLASH_STATES,
  slashId,
} from "./slashes.ts";
export type { NewSlash, SlashKind, SlashRow, SlashSource, SlashState, SlashesRepository } from "./slashes.ts";
export { BUYER_CHANNEL_ROWS_MAX, OWED_ROWS_MAX, VOUCHER_JOB_ROWS_MAX } from "./buyer-channels.ts";
export type {
  BuyerChannelRow,
  BuyerChannelState,
  BuyerChannelsRepository,
  OwedJob,
  UnackedJob,
} from "./buyer-channels.ts";
export {
  EPOCH_STATES,
  RECEIPTS_PER_EPOCH_MAX,
  SETTLEMENT_EPOCHS_MAX,
  SETTLEMENT_MEMBERS_MAX,
  SETTLEMENT_TXS_MAX,
  TX_STATES,
} from "./settlements.ts";
export type {
  EpochRow,
  EpochState,
  EpochVoucher,
  JournalTx,
  NewEpoch,
  NewJournalTx,
  SettlementsRepository,
  TxState,
  UnanchoredReceipt,
} from "./settlements.ts";
export {
  EARNING_WRITE_OFF_MS,
  PAYEE_CHANNELS_MAX,
  PAYEE_EARNINGS_MAX,
  storedAmount,
} from "./payee-ledger.ts";
export type {
  ChannelKeyRow,
  EarningRow,
  PayeeChannelRow,
  PayeeLedgerRepository,
  PayeeVoucherRow,
} from "./payee-ledger.ts";
export { RELAY_VOUCHERS_MAX } from "./relay-vouchers.ts";
export type { RelayVoucherRow, RelayVouchersRepository } from "./relay-vouchers.ts";
export { EXPLORER_PAGE_MAX, INDEXED_BLOCKS_KEPT } from "./indexer.ts";
export type { IndexBatch, IndexerRepository, Page, PageQuery } from "./indexer.ts";
