import type { Hex } from "viem";
import { decayFactor } from "./reputation.ts";
import type { SuspicionWeights, TrustSettings } from "./settings.ts";

/**
 * clear → quarantined (strike n, for quarantineMs[n−1]) → observation (observationMs) → clear.
 * An offence in observation is the next strike at once; the quarantine of strike
 * `banAtStrike` ends in `banned`, which is for good.
 */
export type TrustStatus = "clear" | "quarantined" | "observation" | "banned";
export const TRUST_STATUSES: readonly TrustStatus[] = ["clear", "quarantined", "observation", "banned"];

/** Each in 0..1; they decay with the suspicion half-life. */
export interface SuspicionComponents {
  consensusViolations: number;
  equivocations: number;
  resultInconsistencies: number;
  networkAnomalies: number;
  timingAnomalies: number;
}

export type OffenceKind = "outvote" | "equivocation" | "network_anomaly";

export interface EvidenceNote {
  kind: OffenceKind;
  jobId?: Hex;
  detail?: string;
  at: number;
}

export interface SuspicionState {
  status: TrustStatus;
  strikes: number;
  /** End of the current quarantine or observation; null when clear or banned. */
  until: number | null;
  /** Why the current (or last) strike was given. */
  reason: string | null;
  /** The score that gave the current (or last) strike; a verified offence's is `verifiedOffenceScore`. */
  strikeScore: number | null;
  components: SuspicionComponents;
  /** Decayed counts of good and bad recent outcomes (the recent-behaviour component). */
  recentGood: number;
  recentBad: number;
  /** Offences, newest last; at most MAX_EVIDENCE_NOTES kept (the oldest is dropped). */
  evidence: EvidenceNote[];
  updatedAt: number;
}

/**
 * How each signal feeds the score:
 * - outvoted: an accepted verdict with a quorum against this subject's receipt (the buyer's
 *   own, or verified evidence) ⇒ consensus violation 1 and result inconsistency 1, and the
 *   score is at least `verifiedOffenceScore` (> threshold): quarantined at once.
 * - equivocation: two signed receipts for one job ⇒ equivocation 1, quarantined at once.
 * - network_anomaly: invalid evidence or protocol abuse ⇒ + networkAnomalyStep.
 * - timing_anomaly: a timeout or late answer ⇒ + timingAnomalyStep.
 * - good: an agreeing receipt; only the recent-behaviour share (bad / (good + bad)) moves.
 */
export type SuspicionEvent =
  | { type: "outvoted"; jobId: Hex }
  | { type: "equivocation"; jobId: Hex }
  | { type: "network_anomaly"; detail: string }
  | { type: "timing_anomaly" }
  | { type: "good" };

export type StatusChange = { from: TrustStatus; to: TrustStatus; at: number };

export const MAX_EVIDENCE_NOTES = 8;

export function initialSuspicion(now: number): SuspicionState {
  return {
    status: "clear",
    strikes: 0,
    until: null,
    reason: null,
    strikeScore: null,
    components: {
      consensusViolations: 0,
      equivocations: 0,
      resultInconsistencies: 0,
      networkAnomalies: 0,
      timingAnomalies: 0,
    },
    recentGood: 0,
    recentBad: 0,
    evidence: [],
    updatedAt: now,
  };
}

type MachineSettings = Pick<
  TrustSettings,
  | "weights"
  | "suspicionHalfLifeMs"
  | "quarantineThreshold"
  | "verifiedOffenceScore"
  | "quarantineMs"
  | "observationMs"
  | "banAtStrike"
  | "networkAnomalyStep"
  | "timingAnomalyStep"
>;

/** Weighted sum of the components (each 0..1) and of the recent bad share. */
export function suspicionScore(state: SuspicionState, weights: SuspicionWeights): number {
  const c = state.components;
  const recent = state.recentGood + state.recentBad;
  return (
    weights.consensusViolations * c.consensusViolations +
    weights.equivocations * c.equivocations +
    weights.resultInconsistencies * c.resultInconsistencies +
    weights.networkAnomalies * c.networkAnomalies +
    weights.timingAnomalies * c.timingAnomalies +
    weights.recentBehaviour * (recent === 0 ? 0 : state.recentBad / recent)
  );
}

/** The state at `now`: ends quarantines and observations that ran out, decays the components. */
export function advance(
  state: SuspicionState,
  now: number,
  settings: MachineSettings,
): { state: SuspicionState; changes: StatusChange[] } {
  const changes: StatusChange[] = [];
  let next = decaySuspicion(state, now, settings.suspicionHalfLifeMs);
  while (next.until !== null && next.until <= now) {
    const at = next.until;
    const to: TrustStatus =
      next.status === "quarantined"
        ? next.strikes >= settings.banAtStrike
          ? "banned"
          : "observation"
        : "clear";
    changes.push({ from: next.status, to, at });
    next = { ...next, status: to, until: to === "observation" ? at + settings.observationMs : null };
  }
  return { state: next, changes };
}

/** State + event + now → state: advances to `now`, counts the event, gives a strike when due. */
export function applySuspicion(
  previous: SuspicionState | undefined,
  event: SuspicionEvent,
  now: number,
  settings: MachineSettings,
): { state: SuspicionState; changes: StatusChange[]; score: number } {
  const advanced = advance(previous ?? initialSuspicion(now), now, settings);
  const changes = advanced.changes;
  const state = counted(advanced.state, event, now, settings);
  const weighted = suspicionScore(state, settings.weights);
  const conclusive = event.type === "outvoted" || event.type === "equivocation";
  const score = conclusive ? Math.max(weighted, settings.verifiedOffenceScore) : weighted;
  const offence =
    event.type === "outvoted" || event.type === "equivocation" || event.type === "network_anomaly";
  const due =
    (state.status === "clear" && (conclusive || score > settings.quarantineThreshold)) ||
    (state.status === "observation" && offence);
  if (!due) return { state, changes, score };
  const struck = {
    ...strike(state, reasonOf(event, score, state.status), now, settings),
    strikeScore: score,
  };
  changes.push({ from: state.status, to: "quarantined", at: now });
  return { state: struck, changes, score };
}

/** Quarantined or banned at `now`: its bids and messages are dropped. */
export function blocksAt(state: SuspicionState, now: number, settings: MachineSettings): boolean {
  // Read for every donor of every job: answered without copying the state when time changes nothing.
  if (state.status === "banned") return true;
  if (state.status === "clear" || state.status === "observation") return false;
  if (state.until === null || now < state.until) return true;
  const status = advance(state, now, settings).state.status;
  return status === "quarantined" || status === "banned";
}

function strike(
  state: SuspicionState,
  reason: string,
  now: number,
  settings: MachineSettings,
): SuspicionState {
  const strikes = state.strikes + 1;
  const durations = settings.quarantineMs;
  const duration = durations[Math.min(strikes, durations.length) - 1]!;
  return { ...state, status: "quarantined", strikes, until: now + duration, reason };
}

function counted(
  state: SuspicionState,
  event: SuspicionEvent,
  now: number,
  settings: MachineSettings,
): SuspicionState {
  const components = { ...state.components };
  const note = (kind: OffenceKind, extra: { jobId?: Hex; detail?: string }) =>
    [...state.evidence, { kind, ...extra, at: now }].slice(-MAX_EVIDENCE_NOTES);
  switch (event.type) {
    case "good":
      return { ...state, recentGood: state.recentGood + 1 };
    case "timing_anomaly":
      components.timingAnomalies = Math.min(1, components.timingAnomalies + settings.timingAnomalyStep);
      return { ...state, components, recentBad: state.recentBad + 1 };
    case "network_anomaly":
      components.networkAnomalies = Math.min(1, components.networkAnomalies + settings.networkAnomalyStep);
      return {
        ...state,
        components,
        recentBad: state.recentBad + 1,
        evidence: note("network_anomaly", { detail: event.detail.slice(0, 200) }),
      };
    case "outvoted":
      components.consensusViolations = 1;
      components.resultInconsistencies = 1;
      return {
        ...state,
        components,
        recentBad: state.recentBad + 1,
        evidence: note("outvote", { jobId: event.jobId }),
      };
    case "equivocation":
      components.equivocations = 1;
      return {
        ...state,
        components,
        recentBad: state.recentBad + 1,
        evidence: note("equivocation", { jobId: event.jobId }),
      };
  }
}

function reasonOf(event: SuspicionEvent, score: number, status: TrustStatus): string {
  const during = status === "observation" ? " during observation" : "";
  switch (event.type) {
    case "outvoted":
      return `outvoted by a quorum on job ${event.jobId}${during}`;
    case "equivocation":
      return `signed two different receipts for job ${event.jobId}${during}`;
    case "network_anomaly":
      return `${event.detail.slice(0, 200)}${during}`;
    default:
      return `suspicion score ${score.toFixed(2)}${during}`;
  }
}

function decaySuspicion(state: SuspicionState, now: number, halfLifeMs: number): SuspicionState {
  if (now <= state.updatedAt) return state;
  const f = decayFactor(now - state.updatedAt, halfLifeMs);
  const c = state.components;
  return {
    ...state,
    components: {
      consensusViolations: c.consensusViolations * f,
      equivocations: c.equivocations * f,
      resultInconsistencies: c.resultInconsistencies * f,
      networkAnomalies: c.networkAnomalies * f,
      timingAnomalies: c.timingAnomalies * f,
    },
    recentGood: state.recentGood * f,
    recentBad: state.recentBad * f,
    updatedAt: now,
  };
}
