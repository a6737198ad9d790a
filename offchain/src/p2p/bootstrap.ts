/** How bootstrap dials are retried. */
export interface BootstrapPolicy {
  /** Wait after the first failed dial of a peer. */
  initialDelayMs: number;
  /** Each further failure multiplies the wait by this… */
  factor: number;
  /** …up to this… */
  maxDelayMs: number;
  /**
   * …or up to this while the node has fewer than `minPeers` connections: a node without
   * the mesh keeps trying its way in (nodes started together often dial a bootstrap peer
   * before it listens), and one that has the mesh retries an absent bootstrap peer rarely.
   */
  isolatedMaxDelayMs: number;
  /** Each wait is shortened by up to this fraction at random, so nodes started together spread out. */
  jitter: number;
  /**
   * Once every bootstrap peer has been reached, they are dialed again only while this node
   * has fewer connections than this (it lost the mesh), not kept connected for good.
   */
  minPeers: number;
  /**
   * Bootstrap peers a node dials, taken in an order of its own drawn at random: a network's
   * nodes spread over its bootstrap peers instead of all calling on the same ones (started
   * together, 32 nodes dialing both of two bootstrap peers left them too busy to finish
   * handshakes within 5 s). A peer that failed `FAILURES_BEFORE_NEXT` dials in a row stops
   * counting, so the next in the order is dialed too; the failed one is still retried.
   */
  dialPeers: number;
  /**
   * The other configured bootstrap peers are dialed too, this long after the first dials
   * (shortened by the jitter): spread out, they cost the network's start nothing, and a node
   * does not stay with only the two it drew (two bootstrap peers held by an attacker would
   * otherwise be all that node hears of the network, through them and the DHT answers they give).
   */
  restAfterMs: number;
}

/** Failed dials in a row after which a bootstrap peer no longer holds one of the `dialPeers` places. */
export const FAILURES_BEFORE_NEXT = 3;

export const DEFAULT_BOOTSTRAP_POLICY: BootstrapPolicy = {
  initialDelayMs: 500,
  factor: 2,
  maxDelayMs: 30_000,
  isolatedMaxDelayMs: 4_000,
  jitter: 0.5,
  minPeers: 3,
  dialPeers: 2,
  restAfterMs: 20_000,
};

interface BootstrapPeer {
  address: string;
  connected: boolean;
  dialing: boolean;
  reachedOnce: boolean;
  /** Failed dials since the last success; sets the wait. */
  failures: number;
  /** Not dialed before this time (after a failed dial: `failedAt` plus the wait). */
  notBefore: number;
  /** When the last dial failed, and the jitter drawn for the wait after it. */
  failedAt?: number;
  jitterDraw: number;
  /** When the current connection opened (the caller's clock). */
  connectedAt?: number;
  /** Connections in a row that closed within STABLE_CONNECTION_MS; sets the wait after such a close. */
  flaps: number;
  /** Given as a fallback peer, not configured: never dialed for `restAfterMs`. */
  fallback: boolean;
}

/** A connection that lasted this long was a real one: losing it redials at once. */
const STABLE_CONNECTION_MS = 10_000;

/**
 * When to dial which bootstrap peer: a pure schedule driven by the caller's clock. It dials
 * `dialPeers` of them, in an order drawn at random (see BootstrapPolicy.dialPeers). A peer
 * is dialed until reached once, with exponential backoff and jitter between failed dials;
 * afterwards it is dialed again only while this node has fewer than `minPeers`
 * connections. A peer that disconnects is redialed (if wanted) without waiting.
 *
 * Bound: one entry per configured bootstrap address (the config caps them); nothing is added later.
 */
export class BootstrapSchedule {
  readonly #peers = new Map<string, BootstrapPeer>();
  readonly #policy: BootstrapPolicy;
  readonly #random: () => number;
  /** When the configured peers beyond `dialPeers` are dialed too; set by the first `due`. */
  #restAt: number | undefined;

  /** `fallback` addresses come after all of `addresses` in the order (e.g. peers seen before a restart). */
  constructor(
    addresses: readonly string[],
    policy: BootstrapPolicy,
    random: () => number = Math.random,
    fallback: readonly string[] = [],
  ) {
    if (
      policy.factor < 1 ||
      policy.initialDelayMs <= 0 ||
      policy.maxDelayMs < policy.initialDelayMs ||
      policy.isolatedMaxDelayMs < policy.initialDelayMs
    )
      throw new Error(
        "bootstrap policy needs factor ≥ 1 and 0 < initialDelayMs ≤ maxDelayMs, isolatedMaxDelayMs",
      );
    if (policy.jitter < 0 || policy.jitter >= 1) throw new Error("bootstrap jitter must be in [0, 1)");
    if (!Number.isInteger(policy.dialPeers) || policy.dialPeers < 1)
      throw new Error(`bootstrap dialPeers must be a positive integer, got ${policy.dialPeers}`);
    if (!(policy.restAfterMs >= 0)) throw new Error("bootstrap restAfterMs must be at least 0");
    this.#policy = policy;
    this.#random = random;
    const later = new Set(fallback.filter((address) => !addresses.includes(address)));
    for (const address of [...shuffled(addresses, random), ...shuffled([...later], random)])
      this.#peers.set(address, {
        address,
        fallback: later.has(address),
        connected: false,
        dialing: false,
        reachedOnce: false,
        flaps: 0,
        failures: 0,
        notBefore: 0,
        jitterDraw: 0,
      });
  }

  /** Addresses to dial now, given how many connections this node has; they are marked as being dialed. */
  due(now: number, peerCount: number): string[] {
    this.#restAt ??= now + Math.round(this.#policy.restAfterMs * (1 - this.#policy.jitter * this.#random()));
    const due = this.#chosen(now).filter((peer) => this.#isDue(peer, now, peerCount));
    for (const peer of due) peer.dialing = true;
    return due.map((peer) => peer.address);
  }

  /** The outcome of a dial that `due` handed out. */
  dialed(address: string, connected: boolean, now: number): void {
    const peer = this.#peers.get(address);
    if (peer === undefined) return;
    peer.dialing = false;
    if (connected) return this.connected(address, now);
    peer.failures++;
    peer.failedAt = now;
    peer.jitterDraw = this.#random();
  }

  /** A connection to the peer opened, whoever dialed. */
  connected(address: string, now?: number): void {
    const peer = this.#peers.get(address);
    if (peer === undefined) return;
    peer.connected = true;
    peer.connectedAt = now;
    peer.reachedOnce = true;
    peer.failures = 0;
    peer.failedAt = undefined;
  }

  /** The last connection to the peer closed. */
  disconnected(address: string, now: number): void {
    const peer = this.#peers.get(address);
    if (peer === undefined) return;
    peer.connected = false;
    // A peer that accepts and at once closes is redialed with backoff, not at dial speed.
    const brief = peer.connectedAt !== undefined && now - peer.connectedAt < STABLE_CONNECTION_MS;
    peer.flaps = brief ? peer.flaps + 1 : 0;
    peer.notBefore = brief ? now + this.#delay(peer.flaps, this.#random(), this.#policy.maxDelayMs) : now;
  }

  /**
   * When `due` may next return something, if this node keeps `peerCount` connections;
   * undefined when nothing is waiting (all reached and enough peers, or all being dialed).
   */
  nextDueAt(peerCount: number): number | undefined {
    let next: number | undefined;
    const chosen = new Set(this.#chosen(-Infinity));
    for (const peer of this.#peers.values()) {
      if (!this.#wanted(peer, peerCount) || peer.dialing) continue;
      if (chosen.has(peer)) next = Math.min(next ?? Infinity, this.#dueAt(peer, peerCount));
      else if (!peer.fallback && this.#restAt !== undefined)
        next = Math.min(next ?? Infinity, Math.max(this.#restAt, this.#dueAt(peer, peerCount)));
    }
    return next;
  }

  /** Failed dials in a row, per address (for logs and tests). */
  failures(address: string): number {
    return this.#peers.get(address)?.failures ?? 0;
  }

  /**
   * The peers this node dials at `now`: the first `dialPeers` in its order, skipping over (but
   * keeping) those that failed FAILURES_BEFORE_NEXT dials in a row and have no connection;
   * from `restAt` on, every configured peer as well.
   */
  #chosen(now: number): BootstrapPeer[] {
    const rest = this.#restAt !== undefined && now >= this.#restAt;
    const chosen: BootstrapPeer[] = [];
    let places = this.#policy.dialPeers;
    for (const peer of this.#peers.values()) {
      if (places > 0) {
        chosen.push(peer);
        if (peer.connected || peer.failures < FAILURES_BEFORE_NEXT) places--;
      } else if (rest && !peer.fallback) chosen.push(peer);
    }
    return chosen;
  }

  #isDue(peer: BootstrapPeer, now: number, peerCount: number): boolean {
    return this.#wanted(peer, peerCount) && !peer.dialing && this.#dueAt(peer, peerCount) <= now;
  }

  /** After a failed dial, the wait depends on whether the node has the mesh by now. */
  #dueAt(peer: BootstrapPeer, peerCount: number): number {
    if (peer.failedAt === undefined) return peer.notBefore;
    const { maxDelayMs, isolatedMaxDelayMs, minPeers } = this.#policy;
    const cap = peerCount < minPeers ? isolatedMaxDelayMs : maxDelayMs;
    return peer.failedAt + this.#delay(peer.failures, peer.jitterDraw, cap);
  }

  #wanted(peer: BootstrapPeer, peerCount: number): boolean {
    return !peer.connected && (!peer.reachedOnce || peerCount < this.#policy.minPeers);
  }

  #delay(failures: number, draw: number, cap: number): number {
    const { initialDelayMs, factor, jitter } = this.#policy;
    const full = Math.min(cap, initialDelayMs * factor ** (failures - 1));
    return Math.round(full * (1 - jitter * draw));
  }
}

/** The addresses in an order drawn with `random` (Fisher–Yates). */
function shuffled(addresses: readonly string[], random: () => number): string[] {
  const order = [...addresses];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}
