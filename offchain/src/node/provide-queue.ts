import type { Logger } from "pino";
import { CID } from "../protocol/index.ts";
import type { MeshNode } from "../p2p/index.ts";
import { errorMessage } from "./util.ts";

const REMEMBERED = 10_000;

/**
 * Announces CIDs as provided in the DHT, a few at a time. A DHT provide walks the network,
 * so under load they are queued (oldest dropped beyond `maxQueued`) instead of competing
 * with jobs; a CID already provided is not provided again.
 */
export class ProvideQueue {
  readonly #mesh: MeshNode;
  readonly #log: Logger;
  readonly #concurrency: number;
  readonly #maxQueued: number;
  readonly #queue: string[] = [];
  readonly #seen = new Set<string>();
  #active = 0;
  #stopped = false;

  constructor(mesh: MeshNode, log: Logger, options: { concurrency?: number; maxQueued?: number } = {}) {
    this.#mesh = mesh;
    this.#log = log;
    this.#concurrency = options.concurrency ?? 2;
    this.#maxQueued = options.maxQueued ?? 1_000;
  }

  add(cid: string): void {
    if (this.#stopped || this.#seen.has(cid)) return;
    this.#remember(cid);
    this.#queue.push(cid);
    if (this.#queue.length > this.#maxQueued) this.#queue.shift();
    this.#next();
  }

  /** Stops re-providing a CID this node provided (its newer replacement is provided instead). */
  withdraw(cid: string): void {
    this.#seen.delete(cid);
    this.#mesh
      .unprovide(CID.parse(cid))
      .catch((err: unknown) => this.#log.debug({ cid, err: errorMessage(err) }, "DHT unprovide failed"));
  }

  get pending(): number {
    return this.#queue.length + this.#active;
  }

  stop(): void {
    this.#stopped = true;
    this.#queue.length = 0;
  }

  #next(): void {
    while (!this.#stopped && this.#active < this.#concurrency && this.#queue.length > 0) {
      const cid = this.#queue.shift()!;
      this.#active++;
      this.#mesh
        .provide(CID.parse(cid), { signal: AbortSignal.timeout(10_000) })
        .catch((err: unknown) => this.#log.debug({ cid, err: errorMessage(err) }, "DHT provide failed"))
        .finally(() => {
          this.#active--;
          this.#next();
        });
    }
  }

  #remember(cid: string): void {
    if (this.#seen.size >= REMEMBERED) this.#seen.delete(this.#seen.values().next().value as string);
    this.#seen.add(cid);
  }
}
