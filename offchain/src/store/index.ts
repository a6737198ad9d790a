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
export { EXPLORER_PAGE_MAX, INDEXED_BLOCKS_KEPT } from "./indexer.ts";
export type { IndexBatch, IndexerRepository, Page, PageQuery } from "./indexer.ts";
