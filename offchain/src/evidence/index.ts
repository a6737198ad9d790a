// The evidence domain: evidence of misbehaviour gossiped on /cell/evidence/1, re-verified by
// every receiver, and submitted on-chain as slashes; and the accused donor's automatic dispute.
import { TOPIC_EVIDENCE } from "../protocol/index.ts";

export const EVIDENCE_TOPIC: typeof TOPIC_EVIDENCE = TOPIC_EVIDENCE;
export { DEFAULT_EVIDENCE_SETTINGS, EvidenceDesk, SETTLED_REVERTS, parseEvidence } from "./desk.ts";
export type {
  EvidenceDeskPorts,
  EvidenceSettings,
  EvidenceTrust,
  GossipVerdict,
  SlashSubmitter,
} from "./desk.ts";
export { evidenceChainOf } from "./chain.ts";
export type { CachedChainOptions } from "./chain.ts";
export { chainSubmitterOf } from "./submit.ts";
export {
  equivocationShapeError,
  outvoteShapeError,
  sameResult,
  signedFromWire,
  verifyEquivocation,
  verifyEvidence,
  verifyOutvote,
} from "./verify.ts";
export type { EvidenceChain, OperatorRecord, Verification, VerifyContext } from "./verify.ts";
export { AccusationWatcher, decideDispute, disputerChainOf, whyClosed } from "./disputer.ts";
export type { DisputeDecision, DisputerOptions, DisputerPorts, ExecutionOutcome } from "./disputer.ts";
export { executeSpec, reexecutorOf } from "./reexecute.ts";
export type { JobBlocks } from "./reexecute.ts";
