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
}

export const DEFAULT_PENALTY_POLICY: PenaltyPolicy = {
  weights: { malformed: 10, too_large: 10, rate_limited: 1, hash_mismatch: 25, handler_error: 0, unknown: 5 },
  blockThreshold: 200,
  blockMs: 60_000,
};

function zeroCounts(): Record<RejectReason, number> {
  return Object.fromEntries(REJECT_REASONS.map((reason) => [reason, 0])) as Record<RejectReason, number>;
}

/** Counts rejections per peer and decides when a peer has earned a temporary block. */
export class PenaltyBook {
  readonly #policy: PenaltyPolicy;
  readonly #peers = new Map<string, PeerPenalties>();
  readonly #totals = zeroCounts();
  readonly #listeners = new Set<(event: RejectEvent) => void>();
  readonly #onBlock: (peerId: string, untilMs: number) => void;

  constructor(policy: PenaltyPolicy, onBlock: (peerId: string, untilMs: number) => void) {
    this.#policy = policy;
    this.#onBlock = onBlock;
  }

  record(event: RejectEvent): void {
    const entry = this.#entry(event.peerId);
    entry.counts[event.reason] += 1;
    entry.score += this.#policy.weights[event.reason];
    this.#totals[event.reason] += 1;
    for (const listener of this.#listeners) listener(event);
    if (entry.score >= this.#policy.blockThreshold && !this.isBlocked(event.peerId)) {
      entry.blockedUntil = Date.now() + this.#policy.blockMs;
      entry.score = 0;
      this.#onBlock(event.peerId, entry.blockedUntil);
    }
  }

  of(peerId: string): PeerPenalties {
    const entry = this.#peers.get(peerId);
    if (entry === undefined) return { score: 0, counts: zeroCounts() };
    return { ...entry, counts: { ...entry.counts } };
  }

  totals(): Record<RejectReason, number> {
    return { ...this.#totals };
  }

  isBlocked(peerId: string): boolean {
    const until = this.#peers.get(peerId)?.blockedUntil;
    return until !== undefined && until > Date.now();
  }

  subscribe(listener: (event: RejectEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #entry(peerId: string): PeerPenalties {
    let entry = this.#peers.get(peerId);
    if (entry === undefined) {
      entry = { score: 0, counts: zeroCounts() };
      this.#peers.set(peerId, entry);
    }
    return entry;
  }
}
