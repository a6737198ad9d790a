import type { BlockRead, BlockSource } from "../p2p/index.ts";
import type { BlockReference, Store } from "../store/index.ts";

export interface BlockAccessOptions {
  now?: () => number;
  /** Grants kept at once; the oldest go first (default 65,536). */
  maxGrants?: number;
  /** A grant lapses this long after it was given (default 10 minutes). */
  grantTtlMs?: number;
}

interface Grant {
  jobId: string;
  at: number;
}

/** Jobs of one block looked at when deciding; a block shared by more jobs is checked against the newest. */
const REFERENCES_CHECKED = 64;

/**
 * Who may fetch a block from this node. A block is served to the participants of a job
 * that references it, and nobody else:
 * - a job this node bought: its module and input to the donors that bid on it or were
 *   assigned it (bids and assignments tables); its output to nobody (the buyer is this node);
 * - a job this node executed: its module, input and output to the job's buyer;
 * - signed receipts and receipt batches, the evidence of executions, to anyone;
 * - and blocks granted with `grantBlocks` or `grantJob`, which cover a participant whose
 *   store row is not written yet (a bid is written in the buyer's next write batch, after
 *   the assignment may have gone out and the donor asked for the input).
 */
export class BlockAccess {
  readonly #store: Store;
  readonly #now: () => number;
  readonly #maxGrants: number;
  readonly #grantTtlMs: number;
  /** `<peer> cid:<cid>` or `<peer> job:<job id>` → grant, oldest first. Bounded by maxGrants, evicted by age. */
  readonly #grants = new Map<string, Grant>();

  constructor(store: Store, options: BlockAccessOptions = {}) {
    this.#store = store;
    this.#now = options.now ?? Date.now;
    this.#maxGrants = options.maxGrants ?? 65_536;
    this.#grantTtlMs = options.grantTtlMs ?? 10 * 60_000;
  }

  /** Lets `peerId` fetch `cids` as a participant of job `jobId`. */
  grantBlocks(peerId: string, cids: readonly string[], jobId: string): void {
    const at = this.#now();
    for (const cid of cids) this.#grant(`${peerId} cid:${cid}`, { jobId, at });
    this.#evict(at);
  }

  /** Lets `peerId` fetch the blocks job `jobId` references (from the job's stored row) as its participant. */
  grantJob(peerId: string, jobId: string): void {
    const at = this.#now();
    this.#grant(`${peerId} job:${jobId}`, { jobId, at });
    this.#evict(at);
  }

  /** Grants held, after lapsed ones are dropped. */
  grantCount(): number {
    this.#evict(this.#now());
    return this.#grants.size;
  }

  entitled(cid: string, peerId: string): boolean {
    if (this.#granted(`${peerId} cid:${cid}`)) return true;
    if (this.#store.blocks.isEvidence(cid)) return true;
    return this.#store.blocks
      .references(cid, REFERENCES_CHECKED)
      .some((reference) => this.#participates(reference, peerId));
  }

  #participates(reference: BlockReference, peerId: string): boolean {
    // A job this node executed names its module and input as its buyer chose them (any CID,
    // another buyer's output too): only the output it produced goes back, to that buyer.
    if (reference.role === "executor") return reference.kind === "output" && reference.buyerPeer === peerId;
    if (reference.kind === "output") return false;
    if (this.#granted(`${peerId} job:${reference.jobId}`)) return true;
    return (
      this.#store.bids.get(reference.jobId, peerId) !== undefined ||
      this.#store.assignments.forJob(reference.jobId).some((row) => row.executor === peerId)
    );
  }

  #grant(key: string, grant: Grant): void {
    this.#grants.delete(key); // re-inserted as the newest
    this.#grants.set(key, grant);
  }

  #granted(key: string): boolean {
    const grant = this.#grants.get(key);
    return grant !== undefined && grant.at > this.#now() - this.#grantTtlMs;
  }

  #evict(now: number): void {
    for (const [key, grant] of this.#grants) {
      if (this.#grants.size <= this.#maxGrants && grant.at > now - this.#grantTtlMs) return;
      this.#grants.delete(key);
    }
  }
}

/** The node's block source: chunks of the blockstore, to the peers `access` finds entitled. */
export function storeBlockSource(store: Store, access: BlockAccess): BlockSource {
  return {
    read: async (cid, peerId, { offset, length }): Promise<BlockRead> => {
      const key = cid.toString();
      if (!store.blocks.has(key)) return { kind: "missing" };
      if (!access.entitled(key, peerId))
        return { kind: "refused", reason: `block ${key} is served only to the participants of its jobs` };
      const slice = store.blocks.read(key, offset, length);
      return slice === undefined ? { kind: "missing" } : { kind: "found", slice };
    },
  };
}
