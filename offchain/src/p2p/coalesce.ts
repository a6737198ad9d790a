import { MeshError } from "./errors.ts";

export const DEFAULT_MAX_QUEUED_PER_PEER = 4_096;
export const DEFAULT_MAX_QUEUED = 65_536;

/**
 * Natural batching of requests to one peer. A request goes out at once while fewer than
 * `maxInFlight` batches to that peer are under way; otherwise it waits and leaves with
 * everything else that queued meanwhile, in one batch of at most `maxItems` items and
 * `maxWeight` weight. An idle peer gets each request without delay, a busy one gets fewer,
 * larger messages: every message costs framing, encryption and a schema parse on both ends,
 * whatever it carries.
 *
 * Bounds: at most `maxQueuedPerPeer` requests wait for one peer and `maxQueued` for all peers
 * together; a request beyond either is refused at once with a `queue_full` MeshError (the
 * caller decides whether to retry, drop or pick another peer) rather than waiting without
 * limit behind a slow peer. A peer's entry lives only while it has requests waiting or under
 * way, so the map of peers is bounded by the same figures.
 */
export interface CoalescerOptions<Item, Result> {
  /** Sends one batch to a peer; resolves with one result per item, in order. */
  send: (peerId: string, items: Item[]) => Promise<Result[]>;
  maxItems: number;
  /** Batches under way to one peer before further requests wait. */
  maxInFlight?: number;
  /** Budget of one batch in `weigh` units (e.g. bytes); an item heavier than this goes alone. */
  maxWeight?: number;
  weigh?: (item: Item) => number;
  /** Requests waiting (not yet sent) for one peer before further ones are refused (default 4,096). */
  maxQueuedPerPeer?: number;
  /** Requests waiting for all peers together before further ones are refused (default 65,536). */
  maxQueued?: number;
}

interface Pending<Item, Result> {
  item: Item;
  weight: number;
  resolve: (result: Result) => void;
  reject: (error: unknown) => void;
}

interface PeerQueue<Item, Result> {
  waiting: Pending<Item, Result>[];
  /** Batches under way. */
  inFlight: number;
  /** Requests in the batches under way. */
  sending: number;
}

export class RequestCoalescer<Item, Result> {
  readonly #send: CoalescerOptions<Item, Result>["send"];
  readonly #maxItems: number;
  readonly #maxInFlight: number;
  readonly #maxWeight: number;
  readonly #weigh: (item: Item) => number;
  readonly #maxQueuedPerPeer: number;
  readonly #maxQueued: number;
  readonly #peers = new Map<string, PeerQueue<Item, Result>>();
  /** Requests waiting for all peers. */
  #queued = 0;

  constructor(options: CoalescerOptions<Item, Result>) {
    if (!Number.isInteger(options.maxItems) || options.maxItems < 1)
      throw new Error(`maxItems must be a positive integer, got ${options.maxItems}`);
    this.#send = options.send;
    this.#maxItems = options.maxItems;
    this.#maxInFlight = options.maxInFlight ?? 1;
    this.#maxWeight = options.maxWeight ?? Number.POSITIVE_INFINITY;
    this.#weigh = options.weigh ?? (() => 1);
    this.#maxQueuedPerPeer = positiveInteger(
      "maxQueuedPerPeer",
      options.maxQueuedPerPeer,
      DEFAULT_MAX_QUEUED_PER_PEER,
    );
    this.#maxQueued = positiveInteger("maxQueued", options.maxQueued, DEFAULT_MAX_QUEUED);
  }

  /** Sends `item` to the peer in the next batch; rejects with `queue_full` when the queue is at its bound. */
  request(peerId: string, item: Item): Promise<Result> {
    const waiting = this.#peers.get(peerId)?.waiting.length ?? 0;
    if (waiting >= this.#maxQueuedPerPeer)
      return Promise.reject(
        new MeshError(
          "queue_full",
          `${waiting} requests already wait for ${peerId} (limit ${this.#maxQueuedPerPeer})`,
        ),
      );
    if (this.#queued >= this.#maxQueued)
      return Promise.reject(
        new MeshError(
          "queue_full",
          `${this.#queued} requests already wait for all peers (limit ${this.#maxQueued})`,
        ),
      );
    return new Promise((resolve, reject) => {
      const queue = this.#queue(peerId);
      this.#queued++;
      queue.waiting.push({ item, weight: this.#weigh(item), resolve, reject });
      // Requests made in the same turn of the event loop leave together.
      if (queue.waiting.length === 1) queueMicrotask(() => this.#drain(peerId, queue));
    });
  }

  /** Requests waiting for any peer (not yet sent). */
  queued(): number {
    return this.#queued;
  }

  /** Requests queued or under way to a peer. */
  pending(peerId: string): number {
    const queue = this.#peers.get(peerId);
    return queue === undefined ? 0 : queue.waiting.length + queue.sending;
  }

  #queue(peerId: string): PeerQueue<Item, Result> {
    let queue = this.#peers.get(peerId);
    if (queue === undefined) {
      queue = { waiting: [], inFlight: 0, sending: 0 };
      this.#peers.set(peerId, queue);
    }
    return queue;
  }

  #drain(peerId: string, queue: PeerQueue<Item, Result>): void {
    while (queue.inFlight < this.#maxInFlight && queue.waiting.length > 0) {
      const batch = this.#take(queue.waiting);
      this.#queued -= batch.length;
      queue.inFlight++;
      queue.sending += batch.length;
      this.#dispatch(peerId, batch).finally(() => {
        queue.inFlight--;
        queue.sending -= batch.length;
        if (queue.inFlight === 0 && queue.waiting.length === 0) this.#peers.delete(peerId);
        else this.#drain(peerId, queue);
      });
    }
  }

  #take(waiting: Pending<Item, Result>[]): Pending<Item, Result>[] {
    let count = 0;
    let weight = 0;
    while (count < waiting.length && count < this.#maxItems) {
      const next = waiting[count]!.weight;
      if (count > 0 && weight + next > this.#maxWeight) break;
      weight += next;
      count++;
    }
    return waiting.splice(0, count);
  }

  async #dispatch(peerId: string, batch: Pending<Item, Result>[]): Promise<void> {
    try {
      const results = await this.#send(
        peerId,
        batch.map((pending) => pending.item),
      );
      if (results.length !== batch.length)
        throw new Error(`${peerId} answered ${results.length} of ${batch.length} batched requests`);
      batch.forEach((pending, i) => pending.resolve(results[i]!));
    } catch (err) {
      for (const pending of batch) pending.reject(err);
    }
  }
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const chosen = value ?? fallback;
  if (!Number.isInteger(chosen) || chosen < 1)
    throw new Error(`${name} must be a positive integer, got ${chosen}`);
  return chosen;
}
