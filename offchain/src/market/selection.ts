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
  reputation?: Reputation;
  /** The job's module, handed to `reputation` for per-module stats. */
  moduleCid?: string;
  /** Quarantined or banned bidders (trust layer): never chosen. */
  blocked?: Blocked;
  /** Operators and peers to pass over (earlier attempts of this job). */
  excludeOperators?: ReadonlySet<string>;
  excludePeers?: ReadonlySet<string>;
  /**
   * Uniform in [0, 1): breaks ties between bids of one price by a draw weighted by stake and
   * reputation, so equal donors share the work. Without it the order is fixed (see below).
   */
  random?: () => number;
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

/** An operator's reputation, 0..65535 (neutral 32768), on the job's module when given. */
export type Reputation = (operator: Address, moduleCid?: string) => number;

/** True for a peer or operator the trust layer quarantined or banned. */
export type Blocked = (peerId: string, operator: Address) => boolean;

/**
 * How reputation weighs in selection (docs/trust.md):
 * - below the job's `minReputation` a donor is passed over (bid_rejected_reputation);
 * - among donors of one price, the weighted draw gives each a weight of
 *   stakeWeight × reputationWeight (× the share of its slots free, when asking for bids),
 *   where reputationWeight is 1 at neutral, 2 at the top and near 0 at the bottom;
 * - without a draw, or between equal draws, the higher reputation comes first.
 * Price always comes first: reputation never makes a dearer bid win.
 */

/**
 * Picks up to `replicas` executors: eligible bids ranked by price, then (given `random`) a
 * draw weighted by stake and reputation, then reputation, stake, free slots and peer id,
 * never two with one operator. Every bid passed over is returned with its reason.
 */
export function selectExecutors(candidates: readonly Candidate[], options: SelectionOptions): Selection {
  const reputation = onModule(options.reputation, options.moduleCid);
  const rejected: Rejection[] = [];
  const eligible: Candidate[] = [];
  for (const candidate of candidates) {
    const refusal = ineligibility(candidate, options, reputation);
    if (refusal) rejected.push({ candidate, ...refusal });
    else eligible.push(candidate);
  }
  const keys = new Map<Candidate, number>();
  if (options.random)
    for (const candidate of eligible)
      keys.set(
        candidate,
        raceKey(
          options.random(),
          stakeWeight(candidate.stake) * reputationWeight(reputation(candidate.operator)),
        ),
      );
  eligible.sort(
    (a, b) =>
      priceOrder(a, b) || (keys.get(a) ?? 0) - (keys.get(b) ?? 0) || compareCandidates(a, b, reputation),
  );

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
  if (options.blocked?.(candidate.peerId, candidate.operator))
    return {
      reason: "bid_rejected_reputation",
      detail: `operator ${candidate.operator} is quarantined or banned`,
    };
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

function onModule(reputation: Reputation | undefined, moduleCid: string | undefined) {
  return reputation ? (operator: Address) => reputation(operator, moduleCid) : () => NEUTRAL_REPUTATION;
}

function priceOrder(a: Candidate, b: Candidate): number {
  return a.pricePerMegaFuel === b.pricePerMegaFuel ? 0 : a.pricePerMegaFuel < b.pricePerMegaFuel ? -1 : 1;
}

function compareCandidates(a: Candidate, b: Candidate, reputation: (operator: Address) => number): number {
  if (a.pricePerMegaFuel !== b.pricePerMegaFuel) return a.pricePerMegaFuel < b.pricePerMegaFuel ? -1 : 1;
  const byReputation = reputation(b.operator) - reputation(a.operator);
  if (byReputation !== 0) return byReputation;
  if (a.stake !== b.stake) return a.stake > b.stake ? -1 : 1;
  if (a.freeSlots !== b.freeSlots) return b.freeSlots - a.freeSlots;
  return a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0;
}

// ── candidate sets ───────────────────────────────────────────────────────────────────

/** What a buyer knows of a donor before asking it to bid: its advert, its stake, its own jobs there. */
export interface Prospect {
  peerId: string;
  operator: Address;
  pricePerMegaFuel: bigint;
  slots: number;
  maxFuel: bigint;
  maxMemoryPages: number;
  /** DonorRegistry shows the operator active with this peer key. */
  staked: boolean;
  /** Unix ms the donor was last heard from. */
  lastSeen: number;
  /** Stake in base units when known; an unknown stake weighs as the smallest. */
  stake?: bigint;
}

export interface ProspectJob {
  fuelLimit: bigint;
  memoryPages: number;
  maxPricePerMegaFuel: bigint;
  minReputation?: number;
  /** For per-module reputation. */
  moduleCid?: string;
}

export interface CandidateOptions {
  /** Most donors asked (k). */
  limit: number;
  now: number;
  /** Donors not heard from for this long are passed over. */
  livenessMs: number;
  /** Peers that had the job already. */
  exclude?: ReadonlySet<string>;
  /** Uniform in [0, 1): the draw that breaks ties. Seeded in tests. */
  random: () => number;
  /** Jobs of this buyer each donor runs now (default none). */
  busy?: (peerId: string) => number;
  /**
   * Executors the job still needs (default 1). Donors whose slots this buyer's own jobs fill
   * are asked only when fewer suitable donors than this have a slot free.
   */
  needed?: number;
  /** Reputation in 0..65535; defaults to neutral, so a new donor weighs as much as any other. */
  reputation?: Reputation;
  /** Quarantined or banned donors (trust layer): never asked. */
  blocked?: Blocked;
}

export interface CandidateSet<P extends Prospect = Prospect> {
  chosen: P[];
  /** Donors passed over, counted by reason: a summary whose size does not grow with the donors known. */
  passedOver: Partial<Record<ReasonCode, number>>;
  /** Suitable donors left out to keep the set at its limit. */
  notAsked: number;
}

/** How many donors a job of `replicas` executors asks to bid. */
export function candidateLimit(
  replicas: number,
  settings: { minCandidates: number; candidatesPerReplica: number },
): number {
  return Math.max(settings.minCandidates, settings.candidatesPerReplica * Math.max(1, replicas));
}

interface Ranked<P extends Prospect = Prospect> {
  prospect: P;
  /** 0 while the donor has a slot free of this buyer's jobs, else 1. */
  tier: number;
  /** Exponential race: lower is better; a donor of weight w is first among equals with odds w / Σw. */
  key: number;
}

/**
 * The donors a job asks to bid: at most `limit`, at most one per operator, all staked,
 * live, able to run the job and within its price. Cheaper donors come first; among equal
 * prices, donors with a slot free of this buyer's jobs, then a weighted draw (stake,
 * reputation and free slots), so every donor, a new one included, is asked in proportion
 * to its weight. Donors whose slots this buyer's jobs fill are passed over (`slots_full`)
 * while at least `needed` suitable donors have a slot free. One pass over the donors (no
 * copy of them) plus an insertion into a list of `limit`.
 */
export function pickCandidates<P extends Prospect>(
  prospects: Iterable<P>,
  job: ProspectJob,
  options: CandidateOptions,
): CandidateSet<P> {
  const passedOver: Partial<Record<ReasonCode, number>> = {};
  const pass = (reason: ReasonCode) => (passedOver[reason] = (passedOver[reason] ?? 0) + 1);
  const reputation = onModule(options.reputation, job.moduleCid);
  const bestOfOperator = new Map<string, Ranked<P>>();
  for (const prospect of prospects) {
    const refusal = prospectRefusal(prospect, job, options, reputation);
    if (refusal) {
      pass(refusal);
      continue;
    }
    const free = Math.max(0, prospect.slots - (options.busy?.(prospect.peerId) ?? 0));
    const weight =
      stakeWeight(prospect.stake) *
      reputationWeight(reputation(prospect.operator)) *
      (free > 0 ? free / prospect.slots : 1);
    const ranked = { prospect, tier: free > 0 ? 0 : 1, key: raceKey(options.random(), weight) };
    const operator = prospect.operator.toLowerCase();
    const rival = bestOfOperator.get(operator);
    if (rival) pass("duplicate_operator");
    if (!rival || compareRanked(ranked, rival) < 0) bestOfOperator.set(operator, ranked);
  }
  const withFreeSlot: Ranked<P>[] = [];
  const full: Ranked<P>[] = [];
  let freeCount = 0;
  for (const ranked of bestOfOperator.values()) {
    if (ranked.tier === 0) freeCount++;
    insertBounded(ranked.tier === 0 ? withFreeSlot : full, ranked, options.limit);
  }
  // A donor full of this buyer's jobs would decline: asking it costs a message each way.
  if (freeCount >= (options.needed ?? 1)) {
    const fullCount = bestOfOperator.size - freeCount;
    if (fullCount > 0) passedOver.slots_full = (passedOver.slots_full ?? 0) + fullCount;
    return {
      chosen: withFreeSlot.map((ranked) => ranked.prospect),
      passedOver,
      notAsked: freeCount - withFreeSlot.length,
    };
  }
  const chosen = withFreeSlot;
  for (const ranked of full) insertBounded(chosen, ranked, options.limit);
  return {
    chosen: chosen.map((ranked) => ranked.prospect),
    passedOver,
    notAsked: bestOfOperator.size - chosen.length,
  };
}

function prospectRefusal(
  prospect: Prospect,
  job: ProspectJob,
  options: CandidateOptions,
  reputation: (operator: Address) => number,
): ReasonCode | undefined {
  if (options.blocked?.(prospect.peerId, prospect.operator)) return "bid_rejected_reputation";
  if (!prospect.staked) return "not_staked";
  if (options.exclude?.has(prospect.peerId)) return "duplicate_operator";
  if (options.now - prospect.lastSeen > options.livenessMs) return "executor_silent";
  if (prospect.maxFuel < job.fuelLimit) return "fuel_too_high";
  if (prospect.maxMemoryPages < job.memoryPages) return "memory_too_high";
  if (prospect.pricePerMegaFuel > job.maxPricePerMegaFuel) return "bid_rejected_price";
  if (reputation(prospect.operator) < (job.minReputation ?? 0)) return "bid_rejected_reputation";
  return undefined;
}

function compareRanked(a: Ranked, b: Ranked): number {
  const pa = a.prospect.pricePerMegaFuel;
  const pb = b.prospect.pricePerMegaFuel;
  if (pa !== pb) return pa < pb ? -1 : 1;
  return a.tier - b.tier || a.key - b.key;
}

/** Keeps `list` sorted and at most `limit` long. */
function insertBounded<P extends Prospect>(list: Ranked<P>[], ranked: Ranked<P>, limit: number): void {
  if (list.length >= limit && compareRanked(ranked, list.at(-1)!) >= 0) return;
  let at = list.length;
  while (at > 0 && compareRanked(ranked, list[at - 1]!) < 0) at--;
  list.splice(at, 0, ranked);
  if (list.length > limit) list.pop();
}

const ONE_TOKEN = 10n ** 18n;

/** 1 for the smallest stake, growing with its logarithm: a large stake is asked more, never exclusively. */
export function stakeWeight(stake: bigint | undefined): number {
  if (stake === undefined || stake <= 0n) return 1;
  return 1 + Math.log2(1 + Number(stake / ONE_TOKEN));
}

/** 1 at neutral reputation, 2 at the top, near 0 at the bottom. */
export function reputationWeight(reputation: number): number {
  return (Math.min(Math.max(reputation, 0), 65_535) + 1) / (NEUTRAL_REPUTATION + 1);
}

/** An exponential draw of rate `weight`: the smallest of several is each one's with odds proportional to its weight. */
function raceKey(uniform: number, weight: number): number {
  return -Math.log(1 - Math.min(Math.max(uniform, 0), 1 - Number.EPSILON)) / weight;
}

/** A seeded uniform generator in [0, 1) (mulberry32), for draws that must repeat. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
