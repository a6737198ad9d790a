/**
 * Natural batching of requests to one peer. A request goes out at once while fewer than
 * `maxInFlight` batches to that peer are under way; otherwise it waits and leaves with
 * everything else that queued meanwhile, in one batch of at most `maxItems` items and
 * `maxWeight` weight. An idle peer gets each request without delay, a busy one gets fewer,
 * larger messages: every message costs framing, encryption and a schema parse on both ends,
 * whatever it carries.
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
  readonly #peers = new Map<string, PeerQueue<Item, Result>>();

  constructor(options: CoalescerOptions<Item, Result>) {
    if (!Number.isInteger(options.maxItems) || options.maxItems < 1)
      throw new Error(`maxItems must be a positive integer, got ${options.maxItems}`);
    this.#send = options.send;
    this.#maxItems = options.maxItems;
    this.#maxInFlight = options.maxInFlight ?? 1;
    this.#maxWeight = options.maxWeight ?? Number.POSITIVE_INFINITY;
    this.#weigh = options.weigh ?? (() => 1);
  }

  request(peerId: string, item: Item): Promise<Result> {
    return new Promise((resolve, reject) => {
      const queue = this.#queue(peerId);
      queue.waiting.push({ item, weight: this.#weigh(item), resolve, reject });
      // Requests made in the same turn of the event loop leave together.
      if (queue.waiting.length === 1) queueMicrotask(() => this.#drain(peerId, queue));
    });
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
