import type { Address } from "viem";
import type { ReasonCode } from "../protocol/index.ts";

/** A verified bid, with what the buyer knows about its bidder. */
export interface Candidate {
  peerId: string;
  operator: Address;
  pricePerMegaFuel: bigint;
  expiresAt: bigint;
  /** DonorRegistry shows the operator active with this peer key. */
  staked: boolean;
  stake: bigint;
  /** Unix ms the peer was last heard from. */
  lastSeen: number;
  freeSlots: number;
}

export interface SelectionOptions {
  replicas: number;
  maxPricePerMegaFuel: bigint;
  minReputation: number;
  now: number;
  /** Peers not heard from for this long are passed over. */
  livenessMs: number;
  /** Reputation in 0..65535 (the spec's `minReputation` scale); defaults to neutral. */
  reputation?: (operator: Address) => number;
  /** Operators and peers to pass over (earlier attempts of this job). */
  excludeOperators?: ReadonlySet<string>;
  excludePeers?: ReadonlySet<string>;
}

export interface Rejection {
  candidate: Candidate;
  reason: ReasonCode;
  detail: string;
}

export interface Selection {
  chosen: Candidate[];
  rejected: Rejection[];
}

export const NEUTRAL_REPUTATION = 32_768;

/**
 * Picks up to `replicas` executors: eligible bids ranked by price, then reputation,
 * stake, free slots and peer id (so the choice is deterministic), never two with one
 * operator. Every bid passed over is returned with its reason.
 */
export function selectExecutors(candidates: readonly Candidate[], options: SelectionOptions): Selection {
  const reputation = options.reputation ?? (() => NEUTRAL_REPUTATION);
  const rejected: Rejection[] = [];
  const eligible: Candidate[] = [];
  for (const candidate of candidates) {
    const refusal = ineligibility(candidate, options, reputation);
    if (refusal) rejected.push({ candidate, ...refusal });
    else eligible.push(candidate);
  }
  eligible.sort((a, b) => compareCandidates(a, b, reputation));

  const chosen: Candidate[] = [];
  const operators = new Set<string>();
  for (const candidate of eligible) {
    const operator = candidate.operator.toLowerCase();
    if (operators.has(operator)) {
      rejected.push({
        candidate,
        reason: "duplicate_operator",
        detail: `operator ${candidate.operator} already executes this job`,
      });
    } else if (chosen.length < options.replicas) {
      chosen.push(candidate);
      operators.add(operator);
    }
  }
  return { chosen, rejected };
}

function ineligibility(
  candidate: Candidate,
  options: SelectionOptions,
  reputation: (operator: Address) => number,
): { reason: ReasonCode; detail: string } | undefined {
  if (!candidate.staked)
    return {
      reason: "not_staked",
      detail: `operator ${candidate.operator} is not active with peer ${candidate.peerId}`,
    };
  if (
    options.excludePeers?.has(candidate.peerId) ||
    options.excludeOperators?.has(candidate.operator.toLowerCase())
  ) {
    return { reason: "duplicate_operator", detail: `peer ${candidate.peerId} already had this job` };
  }
  if (candidate.expiresAt <= BigInt(options.now))
    return { reason: "bid_rejected_expired", detail: "the bid has expired" };
  if (candidate.pricePerMegaFuel > options.maxPricePerMegaFuel) {
    return {
      reason: "bid_rejected_price",
      detail: `price ${candidate.pricePerMegaFuel} exceeds ${options.maxPricePerMegaFuel}`,
    };
  }
  if (reputation(candidate.operator) < options.minReputation) {
    return { reason: "bid_rejected_reputation", detail: `reputation below ${options.minReputation}` };
  }
  if (options.now - candidate.lastSeen > options.livenessMs) {
    return { reason: "executor_silent", detail: `not heard from for ${options.now - candidate.lastSeen} ms` };
  }
  return undefined;
}

function compareCandidates(a: Candidate, b: Candidate, reputation: (operator: Address) => number): number {
  if (a.pricePerMegaFuel !== b.pricePerMegaFuel) return a.pricePerMegaFuel < b.pricePerMegaFuel ? -1 : 1;
  const byReputation = reputation(b.operator) - reputation(a.operator);
  if (byReputation !== 0) return byReputation;
  if (a.stake !== b.stake) return a.stake > b.stake ? -1 : 1;
  if (a.freeSlots !== b.freeSlots) return b.freeSlots - a.freeSlots;
  return a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0;
}
