export {
  JOB_DEFAULTS,
  buildJobSpec,
  checkAnnouncedJob,
  priorityName,
  priorityValue,
  signJob,
  toAnnounce,
} from "./spec.ts";
export type { AnnounceContext, JobCheck, JobSpecInput, SignedJob } from "./spec.ts";
export { DEFAULT_DONOR_POLICY, decideBid, maxCost } from "./policy.ts";
export type { BidDecision, DonorPolicy, DonorState } from "./policy.ts";
export {
  NEUTRAL_REPUTATION,
  candidateLimit,
  pickCandidates,
  reputationWeight,
  seededRandom,
  selectExecutors,
  stakeWeight,
} from "./selection.ts";
export type {
  Blocked,
  Candidate,
  CandidateOptions,
  CandidateSet,
  Prospect,
  ProspectJob,
  Rejection,
  Reputation,
  Selection,
  SelectionOptions,
} from "./selection.ts";
export { JobScheduler } from "./scheduler.ts";
export type { QueuedJob, WaitingJob } from "./scheduler.ts";
export { DEFAULT_BACKOFF, DEFAULT_RETRY_PLAN, backoffDelay, planRetry } from "./backoff.ts";
export type { BackoffOptions, RetryDecision, RetryPlan } from "./backoff.ts";
