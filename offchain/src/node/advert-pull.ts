import type { CapabilityAdvert } from "../protocol/index.ts";

/**
 * Asks a newly connected donor for its capability advert once, directly, instead of waiting
 * for its next advert to cross the gossip mesh: a node that joins a network, or a network that
 * starts at once, learns every donor it connects to within a round trip of identify, while the
 * gossip mesh is still forming (docs/p2p.md, "Discovery"). The cost is one small request per
 * new connection, independent of the network's size.
 */
export interface AdvertPullPorts {
  now(): number;
  /** Calls `fire` after `delayMs`. */
  after(delayMs: number, fire: () => void): void;
  /** The peer's current advert, or undefined when it has none (not staked yet). */
  ask(peerId: string): Promise<CapabilityAdvert | undefined>;
  /** Hands an answer to the advert intake, as if it had come by gossip from that peer. */
  deliver(advert: CapabilityAdvert, from: string): void;
  onError(peerId: string, err: unknown): void;
}

/** Peers remembered as asked; the least recently asked is forgotten first. */
export const ADVERT_PULL_TRACKED = 4_096;
/** A peer that reconnects within this is not asked again (its adverts still come by gossip). */
export const ADVERT_PULL_INTERVAL_MS = 60_000;
/**
 * A donor that has no advert yet (its stake not yet seen by itself, as while a network starts:
 * in the 33-node benchmark the last donors had theirs 8–11 s after all nodes ran) is asked
 * again every second for 15 s; it also publishes its first advert over gossip.
 */
export const ADVERT_PULL_RETRIES_MS: readonly number[] = Array.from({ length: 15 }, () => 1_000);
/** Requests under way at once; peers beyond these and the queue are not asked. */
export const ADVERT_PULL_CONCURRENCY = 4;
/**
 * Of those, requests to donors known only from the registry. Such a request looks the peer
 * up in the DHT and dials it, and while a network starts it may wait for its whole timeout
 * (5 s): with every slot taken by these, a buyer at 33 nodes asked the donors it had just
 * connected to, which answer within a round trip, only 11 s after start.
 */
export const ADVERT_PULL_LISTED_CONCURRENCY = 2;
const QUEUE_MAX = 256;

interface Waiting {
  peerId: string;
  retry: number;
  /** Known only from the registry, not from a connection. */
  listed: boolean;
}

export class AdvertPull {
  readonly #ports: AdvertPullPorts;
  /** peer → when it was last asked, and whether as listed only. Bounded by ADVERT_PULL_TRACKED, oldest first out. */
  readonly #asked = new Map<string, { at: number; listed: boolean }>();
  /**
   * Peers waiting for a request slot, connected ones first. Bounded by QUEUE_MAX over both;
   * beyond it a peer is not asked.
   */
  readonly #connected: Waiting[] = [];
  readonly #listed: Waiting[] = [];
  #running = 0;
  #runningListed = 0;

  constructor(ports: AdvertPullPorts) {
    this.#ports = ports;
  }

  /** A peer that serves `/cell/advert/1` was identified. */
  onDonorIdentified(peerId: string): void {
    this.#admit(peerId, false);
  }

  /** A donor the registry lists as staked, which this node has no advert from and may not be connected to. */
  onDonorListed(peerId: string): void {
    this.#admit(peerId, true);
  }

  #admit(peerId: string, listed: boolean): void {
    const now = this.#ports.now();
    const last = this.#asked.get(peerId);
    // a listed donor that connects meanwhile is asked at once over its connection
    const promoted = last !== undefined && last.listed && !listed;
    if (last !== undefined && now - last.at < ADVERT_PULL_INTERVAL_MS && !promoted) return;
    if (this.#queued() >= QUEUE_MAX) return;
    this.#asked.delete(peerId);
    this.#asked.set(peerId, { at: now, listed });
    if (this.#asked.size > ADVERT_PULL_TRACKED) this.#asked.delete(this.#asked.keys().next().value!);
    this.#enqueue({ peerId, retry: 0, listed });
  }

  #queued(): number {
    return this.#connected.length + this.#listed.length;
  }

  #enqueue(waiting: Waiting): void {
    if (this.#queued() >= QUEUE_MAX) return;
    (waiting.listed ? this.#listed : this.#connected).push(waiting);
    this.#drain();
  }

  #drain(): void {
    while (this.#running < ADVERT_PULL_CONCURRENCY) {
      const next =
        this.#connected.shift() ??
        (this.#runningListed < ADVERT_PULL_LISTED_CONCURRENCY ? this.#listed.shift() : undefined);
      if (next === undefined) return;
      this.#running++;
      if (next.listed) this.#runningListed++;
      void this.#ask(next).finally(() => {
        this.#running--;
        if (next.listed) this.#runningListed--;
        this.#drain();
      });
    }
  }

  async #ask(waiting: Waiting): Promise<void> {
    const { peerId, retry } = waiting;
    try {
      const advert = await this.#ports.ask(peerId);
      if (advert !== undefined) return this.#ports.deliver(advert, peerId);
    } catch (err) {
      this.#ports.onError(peerId, err);
    }
    // the donor connected meanwhile: its asks over the connection carry on instead
    if (waiting.listed && this.#asked.get(peerId)?.listed === false) return;
    // No advert yet, or no answer (a request timing out while a network starts): ask again.
    const wait = ADVERT_PULL_RETRIES_MS[retry];
    if (wait !== undefined) this.#ports.after(wait, () => this.#enqueue({ ...waiting, retry: retry + 1 }));
  }
}
