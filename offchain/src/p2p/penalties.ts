import { REJECT_REASONS, type RejectReason } from "./errors.ts";

/** One refused inbound message, as reported to `onReject` listeners. */
export interface RejectEvent {
  peerId: string;
  reason: RejectReason;
  /** The gossip topic or request-response protocol the message came in on. */
  protocol: string;
  detail: string;
}

export interface PeerPenalties {
  /** Weighted sum of this peer's rejections; reaching the threshold blocks the peer. */
  score: number;
  counts: Record<RejectReason, number>;
  /** Epoch milliseconds until which the peer is blocked, if it is. */
  blockedUntil?: number;
}

export interface PenaltyPolicy {
  weights: Record<RejectReason, number>;
  /** Score at which a peer is disconnected and refused for `blockMs`. */
  blockThreshold: number;
  blockMs: number;
  /** A score halves every this many milliseconds: old offences fade (default 60 s). */
  scoreHalfLifeMs?: number;
  /** Peers with a record kept at once; the least recently offending are forgotten first (default 4,096). */
  maxTrackedPeers?: number;
}

export const DEFAULT_PENALTY_POLICY: PenaltyPolicy = {
  weights: {
    malformed: 10,
    too_large: 10,
    rate_limited: 1,
    hash_mismatch: 25,
    handler_error: 0,
    unknown: 5,
    // a forged signature or receipt cannot be an honest mistake
    bad_signature: 25,
    bad_receipt: 25,
    bad_bid: 10,
    bad_announce: 10,
    unstaked: 5,
    unsolicited: 5,
    overloaded: 0,
    // A block asked for by a peer not entitled to it: a stranger probing, or a fetch that raced its grant.
    not_entitled: 5,
  },
  blockThreshold: 200,
  blockMs: 60_000,
  scoreHalfLifeMs: 60_000,
  maxTrackedPeers: 4_096,
};

interface PeerRecord extends PeerPenalties {
  /** When the score was last brought up to date. */
  scoredAt: number;
}

function zeroCounts(): Record<RejectReason, number> {
  return Object.fromEntries(REJECT_REASONS.map((reason) => [reason, 0])) as Record<RejectReason, number>;
}

/**
 * Counts rejections per peer and decides when a peer has earned a temporary block. Scores
 * decay with a half-life, and at most `maxTrackedPeers` records are kept (least recently
 * offending dropped first), so neither a long-lived peer's rare slips nor a stream of new
 * peer ids grow without bound.
 */
export class PenaltyBook {
  readonly #policy: PenaltyPolicy;
  readonly #halfLifeMs: number;
  readonly #maxTracked: number;
  readonly #now: () => number;
  readonly #peers = new Map<string, PeerRecord>();
  readonly #totals = zeroCounts();
  readonly #listeners = new Set<(event: RejectEvent) => void>();
  readonly #onBlock: (peerId: string, untilMs: number) => void;

  constructor(
    policy: PenaltyPolicy,
    onBlock: (peerId: string, untilMs: number) => void,
    now: () => number = Date.now,
  ) {
    this.#policy = policy;
    this.#halfLifeMs = policy.scoreHalfLifeMs ?? DEFAULT_PENALTY_POLICY.scoreHalfLifeMs!;
    this.#maxTracked = policy.maxTrackedPeers ?? DEFAULT_PENALTY_POLICY.maxTrackedPeers!;
    this.#onBlock = onBlock;
    this.#now = now;
  }

  record(event: RejectEvent): void {
    const entry = this.#touch(event.peerId);
    entry.counts[event.reason] += 1;
    entry.score += this.#policy.weights[event.reason];
    this.#totals[event.reason] += 1;
    for (const listener of this.#listeners) listener(event);
    if (entry.score >= this.#policy.blockThreshold && !this.isBlocked(event.peerId)) {
      entry.blockedUntil = this.#now() + this.#policy.blockMs;
      entry.score = 0;
      this.#onBlock(event.peerId, entry.blockedUntil);
    }
  }

  of(peerId: string): PeerPenalties {
    const entry = this.#peers.get(peerId);
    if (entry === undefined) return { score: 0, counts: zeroCounts() };
    const { scoredAt: _scoredAt, ...penalties } = entry;
    return { ...penalties, score: this.#decayed(entry), counts: { ...entry.counts } };
  }

  /** Peers with a record. */
  get tracked(): number {
    return this.#peers.size;
  }

  totals(): Record<RejectReason, number> {
    return { ...this.#totals };
  }

  isBlocked(peerId: string): boolean {
    const until = this.#peers.get(peerId)?.blockedUntil;
    return until !== undefined && until > this.#now();
  }

  subscribe(listener: (event: RejectEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The peer's record with its score decayed to now, moved to the most recent end. */
  #touch(peerId: string): PeerRecord {
    let entry = this.#peers.get(peerId);
    if (entry === undefined) {
      if (this.#peers.size >= this.#maxTracked) this.#forgetOldest();
      entry = { score: 0, counts: zeroCounts(), scoredAt: this.#now() };
    } else {
      entry.score = this.#decayed(entry);
      entry.scoredAt = this.#now();
      this.#peers.delete(peerId);
    }
    this.#peers.set(peerId, entry);
    return entry;
  }

  #decayed(entry: PeerRecord): number {
    const elapsed = Math.max(0, this.#now() - entry.scoredAt);
    return entry.score * 0.5 ** (elapsed / this.#halfLifeMs);
  }

  /** Drops the least recently offending peer that is not blocked (or the oldest, if all are). */
  #forgetOldest(): void {
    for (const peerId of this.#peers.keys()) {
      if (!this.isBlocked(peerId)) {
        this.#peers.delete(peerId);
        return;
      }
    }
    this.#peers.delete(this.#peers.keys().next().value!);
  }
}
