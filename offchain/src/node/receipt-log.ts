import type { Address, Hex } from "viem";
import { RECEIPT_BATCH_MAX, cidOf } from "../protocol/index.ts";
import type { ReceiptBatchAnnounce, ReceiptBatchBlock } from "../protocol/index.ts";
import type { Store } from "../store/index.ts";
import { errorMessage } from "./context.ts";
import type { DonorLog } from "./donor-ports.ts";

/** What the log writes to: the store, the DHT's provide queue and the receipts topic. */
export interface ReceiptLogDeps {
  store: Store;
  log: DonorLog;
  executor: Address;
  provider: { add(cid: string): void; withdraw(cid: string): void };
  publish(announce: ReceiptBatchAnnounce): Promise<void>;
}

/** Where the log keeps its head: the last batched receipt row, the newest batch and its number. */
const HEAD_KEY = "receipts.batchHead";

interface Head {
  /** Receipt rows up to this id are in a batch. */
  through: number;
  cid: string | null;
  sequence: number;
}

interface Entry {
  rowId: number;
  jobId: Hex;
  cid: string;
}

/**
 * The executor's receipt log. Receipts signed within a window (`donor.receiptBatchMs`,
 * at most RECEIPT_BATCH_MAX) become one batch block linked to the previous batch; the
 * batch is stored, provided in the DHT and announced on `/cell/receipts/1`. One DHT
 * provide per batch instead of one per receipt keeps the DHT's cost off each job: a
 * provide walks the network. Only the newest batch stays provided; the chain of
 * `previous` links leads from it to every older one. Receipts themselves are on disk before they are delivered;
 * a crash before their batch is written batches them at the next start.
 */
export class ReceiptLog {
  readonly #deps: ReceiptLogDeps;
  readonly #intervalMs: number;
  #pending: Entry[] = [];
  #head: Head = { through: 0, cid: null, sequence: 0 };
  #timer: NodeJS.Timeout | undefined;
  /** Batches are written one after another: each links to the one before. */
  #writing: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(deps: ReceiptLogDeps, intervalMs: number) {
    this.#deps = deps;
    this.#intervalMs = intervalMs;
  }

  /** The newest batch written, if any. */
  get head(): { cid: string; sequence: number } | undefined {
    return this.#head.cid === null ? undefined : { cid: this.#head.cid, sequence: this.#head.sequence };
  }

  /** Loads the head and queues this executor's receipts that no batch lists yet. */
  start(): void {
    const stored = this.#deps.store.meta.getJson(HEAD_KEY) as Head | undefined;
    if (stored) this.#head = stored;
    const own = this.#deps.executor.toLowerCase();
    for (const row of this.#deps.store.receipts.list({ afterId: this.#head.through })) {
      if (row.cid !== null && row.executor.toLowerCase() === own)
        this.#pending.push({ rowId: row.id, jobId: row.jobId as Hex, cid: row.cid });
    }
    if (this.#pending.length > 0) this.#schedule();
  }

  /** A receipt this node signed and stored (row `rowId`), to go into the next batch. */
  add(rowId: number, jobId: Hex, cid: string): void {
    this.#pending.push({ rowId, jobId, cid });
    if (this.#pending.length >= RECEIPT_BATCH_MAX) this.#flush();
    else this.#schedule();
  }

  /** Writes what is pending as a last batch, without providing or announcing it. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#flush();
    await this.#writing;
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => this.#flush(), this.#intervalMs);
    this.#timer.unref();
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    const entries = this.#pending.splice(0, RECEIPT_BATCH_MAX);
    if (this.#pending.length > 0) this.#schedule();
    this.#writing = this.#writing.then(() =>
      this.#write(entries).catch((err: unknown) =>
        this.#deps.log.warn({ err: errorMessage(err) }, "could not write a receipt batch"),
      ),
    );
  }

  async #write(entries: Entry[]): Promise<void> {
    const deps = this.#deps;
    const sequence = this.#head.cid === null ? 0 : this.#head.sequence + 1;
    const block: ReceiptBatchBlock = {
      type: "cell-receipt-batch/1",
      executor: deps.executor.toLowerCase() as Address,
      sequence,
      previous: this.#head.cid,
      receipts: entries.map(({ jobId, cid }) => ({ jobId, cid })),
    };
    const bytes = new TextEncoder().encode(JSON.stringify(block));
    const batchCid = (await cidOf(bytes)).toString();
    const head: Head = { through: entries.at(-1)!.rowId, cid: batchCid, sequence };
    // Not fsynced on its own: the receipts are, and a batch lost to a power cut is written again.
    await deps.store.commit(
      () => {
        putKnownBlock(deps, batchCid, bytes, { pin: true });
        deps.store.meta.setJson(HEAD_KEY, head);
      },
      { durable: false },
    );
    const previous = this.#head.cid;
    this.#head = head;
    if (this.#stopped) return;
    // Only the newest batch is provided: older ones are reached through its `previous` links.
    deps.provider.add(batchCid);
    if (previous !== null) deps.provider.withdraw(previous);
    deps
      .publish({ type: "receipt_batch", executor: block.executor, batchCid, sequence, count: entries.length })
      .catch((err: unknown) =>
        deps.log.debug({ batchCid, err: errorMessage(err) }, "receipt batch announce not sent"),
      );
  }
}

/**
 * Stores a block whose CID is known as part of the caller's `store.commit` batch:
 * `putWithCid` checks the hash and inserts synchronously, so the write joins the
 * surrounding transaction and shares its fsync.
 */
export function putKnownBlock(
  deps: { store: Store; log: DonorLog },
  cid: string,
  bytes: Uint8Array,
  options?: { pin?: boolean },
): void {
  deps.store.blocks
    .putWithCid(cid, bytes, options)
    .catch((err: unknown) => deps.log.warn({ cid, err: errorMessage(err) }, "could not store a block"));
}
