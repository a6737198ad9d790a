/**
 * gossipsub opens its outbound stream to each new peer through a single queue, one peer after
 * another, so that a peer never gets two; each open waits for the peer to confirm the protocol.
 * When a network starts at once every node is busy, and a node that connects to twenty peers
 * waits on them one by one: in the 33-node benchmark the donors started last had connections
 * but no peer that knew they follow adverts for 8–9 s, so their adverts reached no one.
 *
 * `openOutboundStreamsTogether` keeps what the queue is for (one open per peer at a time) but
 * lets opens to different peers run together, at most `maxOpening` at once.
 */

/** The router method the queue calls for each peer; its own checks skip a peer that has a stream. */
export interface OutboundStreamRouter<Peer, Connection> {
  createOutboundStream(peer: Peer, connection: Connection): Promise<void>;
}

/**
 * Runs `open(key, …)` for different keys together (up to `maxOpening`) and for one key one
 * at a time; a call for a key already opening runs once that open ends, with the newest
 * arguments (the router then finds the stream made, or tries the newer connection).
 *
 * Bounds: one entry per peer with an open under way or waiting, each removed when its open
 * ends; the router calls this only for connected peers, which the connection manager bounds.
 */
export class PerPeerOpener<Args extends unknown[]> {
  readonly #open: (...args: Args) => Promise<void>;
  readonly #maxOpening: number;
  /** Opens under way; the value is a later call for the same peer, run when it ends. */
  readonly #opening = new Map<string, Args | undefined>();
  /** Peers waiting for a free slot, oldest first, with the newest arguments. */
  readonly #waiting = new Map<string, Args>();

  constructor(open: (...args: Args) => Promise<void>, maxOpening: number) {
    if (!Number.isInteger(maxOpening) || maxOpening < 1)
      throw new Error(`maxOpening must be a positive integer, got ${maxOpening}`);
    this.#open = open;
    this.#maxOpening = maxOpening;
  }

  /** Opens under way and waiting, for tests and stats. */
  get pending(): { opening: number; waiting: number } {
    return { opening: this.#opening.size, waiting: this.#waiting.size };
  }

  request(key: string, ...args: Args): void {
    if (this.#opening.has(key)) {
      this.#opening.set(key, args);
      return;
    }
    if (this.#opening.size >= this.#maxOpening) {
      this.#waiting.set(key, args);
      return;
    }
    this.#start(key, args);
  }

  #start(key: string, args: Args): void {
    this.#waiting.delete(key);
    this.#opening.set(key, undefined);
    void this.#open(...args)
      .catch(() => undefined)
      .finally(() => this.#finished(key));
  }

  #finished(key: string): void {
    const again = this.#opening.get(key);
    this.#opening.delete(key);
    if (again !== undefined) this.#waiting.set(key, again);
    for (const [next, args] of this.#waiting) {
      if (this.#opening.size >= this.#maxOpening) return;
      if (!this.#opening.has(next)) this.#start(next, args);
    }
  }
}

/**
 * Replaces the router's per-peer `createOutboundStream`, as its queue calls it, with one
 * that hands the open to a PerPeerOpener and returns at once, so the queue moves on.
 */
export function openOutboundStreamsTogether<Peer extends { toString(): string }, Connection>(
  router: OutboundStreamRouter<Peer, Connection>,
  maxOpening: number,
): PerPeerOpener<[Peer, Connection]> {
  if (typeof router.createOutboundStream !== "function")
    throw new Error("this gossipsub version does not open outbound streams through createOutboundStream");
  const open = router.createOutboundStream.bind(router);
  const opener = new PerPeerOpener<[Peer, Connection]>(open, maxOpening);
  router.createOutboundStream = (peer, connection) => {
    opener.request(peer.toString(), peer, connection);
    return Promise.resolve();
  };
  return opener;
}
