import type { TrustSettings } from "./settings.ts";

/** Neutral reputation of an operator nobody has seen (market/selection.ts scale, 0..65535). */
export const NEUTRAL_SCORE = 32_768;
const SCALE = 65_536;
const MAX_SCORE = 65_535;

/**
 * What a buyer saw of one operator (overall, or on one module). The counters decay
 * exponentially: each is worth half as much after one half-life, so old behaviour fades.
 */
export interface ReputationStats {
  agreements: number;
  dissents: number;
  /** Replicas that gave no vote in time (timeout, unreachable). */
  timeouts: number;
  noResults: number;
  /** Moving average of assignment → verified receipt, ms; null before the first sample. */
  latencyMs: number | null;
  /** Unix ms the counters were last decayed to. */
  updatedAt: number;
}

export type ReputationEvent =
  | { type: "agreement"; latencyMs: number }
  | { type: "dissent" }
  | { type: "timeout" }
  | { type: "no_result" };

/**
 * Score formula (docs/trust.md):
 *   bad         = 4·dissents + 1·timeouts + 0.5·noResults
 *   reliability = (agreements + 2) / (agreements + bad + 4)      (2 pseudo-votes each way)
 *   speed       = ref / (ref + latencyEwma)                      (0.5 when unknown)
 *   score       = 65536 · (0.95·reliability + 0.05·speed), at most 65535
 * An agreement raises the score, a dissent lowers it most, a timeout some, a no-result
 * a little; latency only breaks ties between otherwise equal operators. No history is
 * exactly neutral (32768).
 */
export const OUTCOME_WEIGHTS = Object.freeze({ dissent: 4, timeout: 1, noResult: 0.5 });
const PRIOR = 2;
const SPEED_SHARE = 0.05;

export function emptyStats(now: number): ReputationStats {
  return { agreements: 0, dissents: 0, timeouts: 0, noResults: 0, latencyMs: null, updatedAt: now };
}

/** 2^(−elapsed / halfLife); a clock going backwards decays nothing. */
export function decayFactor(elapsedMs: number, halfLifeMs: number): number {
  return elapsedMs <= 0 ? 1 : 2 ** (-elapsedMs / halfLifeMs);
}

/** The counters as they stand at `now`. */
export function decayStats(stats: ReputationStats, now: number, halfLifeMs: number): ReputationStats {
  if (now <= stats.updatedAt) return stats;
  const factor = decayFactor(now - stats.updatedAt, halfLifeMs);
  return {
    agreements: stats.agreements * factor,
    dissents: stats.dissents * factor,
    timeouts: stats.timeouts * factor,
    noResults: stats.noResults * factor,
    latencyMs: stats.latencyMs,
    updatedAt: now,
  };
}

/** State + event + now → state: decays to `now`, then counts the event. */
export function recordOutcome(
  stats: ReputationStats | undefined,
  event: ReputationEvent,
  now: number,
  settings: Pick<TrustSettings, "reputationHalfLifeMs" | "latencyAlpha">,
): ReputationStats {
  const next = { ...decayStats(stats ?? emptyStats(now), now, settings.reputationHalfLifeMs) };
  switch (event.type) {
    case "agreement":
      next.agreements += 1;
      next.latencyMs = movingAverage(next.latencyMs, Math.max(0, event.latencyMs), settings.latencyAlpha);
      break;
    case "dissent":
      next.dissents += 1;
      break;
    case "timeout":
      next.timeouts += 1;
      break;
    case "no_result":
      next.noResults += 1;
      break;
  }
  return next;
}

/** Decayed outcomes counted, of any kind. */
export function sampleCount(stats: ReputationStats): number {
  return stats.agreements + stats.dissents + stats.timeouts + stats.noResults;
}

export function reputationScore(
  stats: ReputationStats | undefined,
  now: number,
  settings: Pick<TrustSettings, "reputationHalfLifeMs" | "referenceLatencyMs">,
): number {
  if (!stats) return NEUTRAL_SCORE;
  const s = decayStats(stats, now, settings.reputationHalfLifeMs);
  const bad =
    OUTCOME_WEIGHTS.dissent * s.dissents +
    OUTCOME_WEIGHTS.timeout * s.timeouts +
    OUTCOME_WEIGHTS.noResult * s.noResults;
  const reliability = (s.agreements + PRIOR) / (s.agreements + bad + 2 * PRIOR);
  const speed =
    s.latencyMs === null ? 0.5 : settings.referenceLatencyMs / (settings.referenceLatencyMs + s.latencyMs);
  return Math.min(MAX_SCORE, Math.round(SCALE * ((1 - SPEED_SHARE) * reliability + SPEED_SHARE * speed)));
}

/**
 * An operator's reputation for a module: its overall score, averaged half and half with
 * its score on that module once the module has `minModuleSamples` decayed outcomes.
 */
export function blendedScore(
  overall: ReputationStats | undefined,
  module: ReputationStats | undefined,
  now: number,
  settings: Pick<TrustSettings, "reputationHalfLifeMs" | "referenceLatencyMs" | "minModuleSamples">,
): number {
  const general = reputationScore(overall, now, settings);
  if (!module) return general;
  const decayed = decayStats(module, now, settings.reputationHalfLifeMs);
  if (sampleCount(decayed) < Math.max(settings.minModuleSamples, Number.MIN_VALUE)) return general;
  return Math.round((general + reputationScore(decayed, now, settings)) / 2);
}

function movingAverage(previous: number | null, sample: number, alpha: number): number {
  return previous === null ? sample : previous + alpha * (sample - previous);
}
