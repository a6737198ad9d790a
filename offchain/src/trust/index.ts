export { TrustBook } from "./book.ts";
export type { SlashKind, SlashNote, TrustLog, TrustPorts, TrustView } from "./book.ts";
export { DEFAULT_TRUST_SETTINGS, TrustConfigSchema, trustSettings } from "./settings.ts";
export type { SuspicionWeights, TrustConfig, TrustSettings } from "./settings.ts";
export {
  NEUTRAL_SCORE,
  OUTCOME_WEIGHTS,
  blendedScore,
  decayStats,
  emptyStats,
  recordOutcome,
  reputationScore,
} from "./reputation.ts";
export type { ReputationEvent, ReputationStats } from "./reputation.ts";
export {
  MAX_EVIDENCE_NOTES,
  TRUST_STATUSES,
  advance,
  applySuspicion,
  blocksAt,
  initialSuspicion,
  suspicionScore,
} from "./quarantine.ts";
export type {
  EvidenceNote,
  OffenceKind,
  StatusChange,
  SuspicionComponents,
  SuspicionEvent,
  SuspicionState,
  TrustStatus,
} from "./quarantine.ts";
