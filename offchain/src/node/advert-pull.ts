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
/** Requests under way at once; peers identified beyond these and the queue are not asked. */
const CONCURRENCY = 4;
const QUEUE_MAX = 256;

export class AdvertPull {
  readonly #ports: AdvertPullPorts;
  /** peer → when it was last asked. Bounded by ADVERT_PULL_TRACKED, oldest first out. */
  readonly #askedAt = new Map<string, number>();
  /** Peers waiting for a request slot. Bounded by QUEUE_MAX; beyond it a peer is not asked. */
  readonly #waiting: { peerId: string; retry: number }[] = [];
  #running = 0;

  constructor(ports: AdvertPullPorts) {
    this.#ports = ports;
  }

  /** A peer that serves `/cell/advert/1` was identified. */
  onDonorIdentified(peerId: string): void {
    const now = this.#ports.now();
    const last = this.#askedAt.get(peerId);
    if (last !== undefined && now - last < ADVERT_PULL_INTERVAL_MS) return;
    if (this.#waiting.length >= QUEUE_MAX) return;
    this.#askedAt.delete(peerId);
    this.#askedAt.set(peerId, now);
    if (this.#askedAt.size > ADVERT_PULL_TRACKED) this.#askedAt.delete(this.#askedAt.keys().next().value!);
    this.#enqueue(peerId, 0);
  }

  #enqueue(peerId: string, retry: number): void {
    if (this.#waiting.length >= QUEUE_MAX) return;
    this.#waiting.push({ peerId, retry });
    this.#drain();
  }

  #drain(): void {
    while (this.#running < CONCURRENCY && this.#waiting.length > 0) {
      const { peerId, retry } = this.#waiting.shift()!;
      this.#running++;
      void this.#ask(peerId, retry).finally(() => {
        this.#running--;
        this.#drain();
      });
    }
  }

  async #ask(peerId: string, retry: number): Promise<void> {
    try {
      const advert = await this.#ports.ask(peerId);
      if (advert !== undefined) return this.#ports.deliver(advert, peerId);
    } catch (err) {
      this.#ports.onError(peerId, err);
    }
    // No advert yet, or no answer (a request timing out while a network starts): ask again.
    const wait = ADVERT_PULL_RETRIES_MS[retry];
    if (wait !== undefined) this.#ports.after(wait, () => this.#enqueue(peerId, retry + 1));
  }
}
