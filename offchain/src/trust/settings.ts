import { z } from "zod/v4";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Weights of the suspicion score; each component is in 0..1 and the weights sum to 1. */
export interface SuspicionWeights {
  consensusViolations: number;
  equivocations: number;
  resultInconsistencies: number;
  networkAnomalies: number;
  timingAnomalies: number;
  recentBehaviour: number;
}

export interface TrustSettings {
  /** Half-life of the reputation counters (agreements, dissents, timeouts, no-results). */
  reputationHalfLifeMs: number;
  /** Weight of the newest latency sample in its moving average. */
  latencyAlpha: number;
  /** Latency at which the latency term is one half: faster scores above, slower below. */
  referenceLatencyMs: number;
  /** Decayed samples a module needs before its own stats count in the blend. */
  minModuleSamples: number;
  /** Half-life of the suspicion components and of the recent-behaviour counters. */
  suspicionHalfLifeMs: number;
  weights: SuspicionWeights;
  /** Score above which a subject is quarantined. */
  quarantineThreshold: number;
  /**
   * Score given at once to a verified outvote (a quorum of the job's other executors signed
   * another result): signed evidence is not a circumstantial signal, so it alone exceeds the
   * threshold.
   */
  verifiedOffenceScore: number;
  /** Quarantine of strike 1, 2, 3, …; the last entry repeats. */
  quarantineMs: readonly number[];
  /** After a quarantine: an offence in this window is the next strike at once. */
  observationMs: number;
  /** The quarantine of this strike ends in a ban for good instead of observation. */
  banAtStrike: number;
  /** Added to the network-anomaly component per invalid evidence or protocol abuse. */
  networkAnomalyStep: number;
  /** Added to the timing-anomaly component per timeout. */
  timingAnomalyStep: number;
  /** Most operators and peers with trust state kept (see the store for the eviction rule). */
  maxSubjects: number;
  /** Most reputation rows kept (one per operator, one per operator and module). */
  maxReputationRows: number;
}

export const DEFAULT_TRUST_SETTINGS: TrustSettings = Object.freeze({
  reputationHalfLifeMs: 24 * HOUR,
  latencyAlpha: 0.2,
  referenceLatencyMs: 1_000,
  minModuleSamples: 5,
  suspicionHalfLifeMs: HOUR,
  weights: Object.freeze({
    consensusViolations: 0.15,
    equivocations: 0.3,
    resultInconsistencies: 0.2,
    networkAnomalies: 0.15,
    timingAnomalies: 0.1,
    recentBehaviour: 0.1,
  }),
  quarantineThreshold: 0.9,
  verifiedOffenceScore: 0.95,
  quarantineMs: Object.freeze([5 * MINUTE, 15 * MINUTE, HOUR]),
  observationMs: 10 * MINUTE,
  banAtStrike: 3,
  networkAnomalyStep: 0.25,
  timingAnomalyStep: 0.1,
  maxSubjects: 4_096,
  maxReputationRows: 16_384,
});

/** The defaults with `overrides` applied; throws naming the first setting out of range. */
export function trustSettings(overrides: Partial<TrustSettings> = {}): TrustSettings {
  const given = Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined));
  const settings: TrustSettings = {
    ...DEFAULT_TRUST_SETTINGS,
    ...given,
    weights: { ...DEFAULT_TRUST_SETTINGS.weights, ...overrides.weights },
  };
  for (const key of [
    "reputationHalfLifeMs",
    "referenceLatencyMs",
    "suspicionHalfLifeMs",
    "observationMs",
  ] as const)
    positive(settings[key], key);
  for (const key of ["maxSubjects", "maxReputationRows", "banAtStrike"] as const)
    if (!Number.isSafeInteger(settings[key]) || settings[key] < 1)
      throw new Error(`trust settings: ${key} must be a positive integer, got ${settings[key]}`);
  for (const key of [
    "latencyAlpha",
    "quarantineThreshold",
    "verifiedOffenceScore",
    "networkAnomalyStep",
    "timingAnomalyStep",
  ] as const)
    unit(settings[key], key);
  if (!Number.isSafeInteger(settings.minModuleSamples) || settings.minModuleSamples < 0)
    throw new Error(`trust settings: minModuleSamples must be a non-negative integer`);
  if (settings.verifiedOffenceScore <= settings.quarantineThreshold)
    throw new Error("trust settings: verifiedOffenceScore must exceed quarantineThreshold");
  if (settings.quarantineMs.length === 0) throw new Error("trust settings: quarantineMs is empty");
  settings.quarantineMs.forEach((ms, index) => positive(ms, `quarantineMs[${index}]`));
  const weights = Object.entries(settings.weights);
  for (const [key, weight] of weights) unit(weight, `weights.${key}`);
  const sum = weights.reduce((total, [, weight]) => total + weight, 0);
  if (Math.abs(sum - 1) > 1e-9) throw new Error(`trust settings: weights must sum to 1, got ${sum}`);
  return settings;
}

function positive(value: number, key: string): void {
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(`trust settings: ${key} must be a positive number of ms, got ${value}`);
}

function unit(value: number, key: string): void {
  if (!Number.isFinite(value) || value < 0 || value > 1)
    throw new Error(`trust settings: ${key} must be in 0..1, got ${value}`);
}

const ms = z
  .number()
  .int()
  .positive()
  .max(365 * 24 * HOUR);
const share = z.number().min(0).max(1);

/**
 * The `trust` section of the node's config: any of the settings above; the rest keep
 * their defaults. Cross-field rules (weights sum to 1, …) are checked by `trustSettings`.
 */
export const TrustConfigSchema = z
  .strictObject({
    reputationHalfLifeMs: ms.optional(),
    latencyAlpha: share.optional(),
    referenceLatencyMs: ms.optional(),
    minModuleSamples: z.number().int().min(0).max(1_000_000).optional(),
    suspicionHalfLifeMs: ms.optional(),
    weights: z
      .strictObject({
        consensusViolations: share,
        equivocations: share,
        resultInconsistencies: share,
        networkAnomalies: share,
        timingAnomalies: share,
        recentBehaviour: share,
      })
      .optional(),
    quarantineThreshold: share.optional(),
    verifiedOffenceScore: share.optional(),
    quarantineMs: z.array(ms).min(1).max(16).optional(),
    observationMs: ms.optional(),
    banAtStrike: z.number().int().min(1).max(100).optional(),
    networkAnomalyStep: share.optional(),
    timingAnomalyStep: share.optional(),
    maxSubjects: z.number().int().min(1).max(1_000_000).optional(),
    maxReputationRows: z.number().int().min(1).max(10_000_000).optional(),
  })
  .superRefine((config, context) => {
    try {
      trustSettings(config);
    } catch (error) {
      context.addIssue({ code: "custom", message: (error as Error).message.replace("trust settings: ", "") });
    }
  });
export type TrustConfig = z.output<typeof TrustConfigSchema>;
