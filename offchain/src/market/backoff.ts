import type { ReasonCode } from "../protocol/index.ts";

export interface BackoffOptions {
  baseMs: number;
  factor: number;
  maxMs: number;
  /** Fraction of the delay drawn at random, so retries of many jobs spread out. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 200, factor: 2, maxMs: 10_000, jitter: 0.2 };

/** Delay before retry number `attempt` (1-based): base × factor^(attempt-1), capped, jittered. */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const exponential = Math.min(options.maxMs, options.baseMs * options.factor ** Math.max(0, attempt - 1));
  const spread = exponential * options.jitter;
  return Math.round(exponential - spread + random() * 2 * spread);
}

export interface RetryPlan {
  maxAttempts: number;
  backoff: BackoffOptions;
}

export const DEFAULT_RETRY_PLAN: RetryPlan = { maxAttempts: 6, backoff: DEFAULT_BACKOFF };

export type RetryDecision =
  { type: "retry"; at: number; attempt: number } | { type: "give_up"; reason: ReasonCode; detail: string };

/**
 * After attempt `attempt` failed for `reason`: when to try again, or give up. A job never
 * retries past its deadline.
 */
export function planRetry(
  attempt: number,
  reason: ReasonCode,
  context: { now: number; deadline: number },
  plan: RetryPlan = DEFAULT_RETRY_PLAN,
  random: () => number = Math.random,
): RetryDecision {
  if (attempt >= plan.maxAttempts) {
    return {
      type: "give_up",
      reason: "attempts_exhausted",
      detail: `${attempt} attempts failed, the last for ${reason}`,
    };
  }
  const at = context.now + backoffDelay(attempt, plan.backoff, random);
  if (at >= context.deadline)
    return {
      type: "give_up",
      reason: "deadline_missed",
      detail: `retrying after ${reason} would pass the deadline`,
    };
  return { type: "retry", at, attempt: attempt + 1 };
}
