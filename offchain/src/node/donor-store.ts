import type { Address, Hex } from "viem";
import { INLINE_OUTPUT_MAX_BYTES, ReceiptWireSchema, cidOf } from "../protocol/index.ts";
import type { ReasonCode, ReceiptBatchAnnounce, ReceiptDelivery, StatusResponse } from "../protocol/index.ts";
import { jobAmount } from "../payments/index.ts";
import type { Store } from "../store/index.ts";
import { errorMessage } from "./context.ts";
import type { OutboxEntry } from "./donor-machine.ts";
import type { DonorJobStore, DonorLog, ExecutedJob } from "./donor-ports.ts";
import { ReceiptLog, putKnownBlock } from "./receipt-log.ts";

export interface DonorStoreDeps {
  store: Store;
  log: DonorLog;
  /** This node's operator address. */
  executor: Address;
  /** The DHT's provide queue: large outputs and receipt batches are provided. */
  provider: { add(cid: string): void; withdraw(cid: string): void };
  publishReceiptBatch(announce: ReceiptBatchAnnounce): Promise<void>;
  receiptBatchMs: number;
  /** Record what each signed receipt earns, for the payee ledger (when this donor takes payments). */
  recordEarnings?: boolean;
}

type ReceiptDeliveryOf = Extract<ReceiptDelivery, { type: "receipt" }>;

/**
 * Receipts leave the outbox in the next receipt's commit, or at most this long after their
 * acknowledgement: a commit of its own per acknowledged job would cost a WAL write each.
 */
const LEAVE_OUTBOX_DELAY_MS = 1_000;
/** Acknowledged rows waiting to leave the outbox; at this many they are written at once. */
const LEAVE_OUTBOX_BATCH = 1_024;

/** The donor's job store on the node's SQLite store, with its receipt log. */
export class DonorStore implements DonorJobStore {
  readonly #deps: DonorStoreDeps;
  readonly #receiptLog: ReceiptLog;
  /** Rows acknowledged but still marked in the store; bounded by LEAVE_OUTBOX_BATCH. */
  #leaving: number[] = [];
  #leaveTimer: NodeJS.Timeout | undefined;

  constructor(deps: DonorStoreDeps) {
    this.#deps = deps;
    this.#receiptLog = new ReceiptLog(
      {
        store: deps.store,
        log: deps.log,
        executor: deps.executor,
        provider: deps.provider,
        publish: deps.publishReceiptBatch,
      },
      deps.receiptBatchMs,
    );
  }

  start(): void {
    this.#receiptLog.start();
  }

  async stop(): Promise<void> {
    await this.#writeLeaving();
    await this.#receiptLog.stop();
  }

  get receiptBatchHead(): { cid: string; sequence: number } | undefined {
    return this.#receiptLog.head;
  }

  block(cid: string): Uint8Array | undefined {
    return this.#deps.store.blocks.get(cid);
  }

  async keepBlock(cid: string, bytes: Uint8Array): Promise<void> {
    await this.#deps.store.blocks.putWithCid(cid, bytes);
  }

  /** Output, receipt block, job row and receipt row (in the outbox) go to disk in one commit. */
  async persistReceipt(
    executed: ExecutedJob,
    delivery: ReceiptDeliveryOf,
    output: Uint8Array,
  ): Promise<number> {
    const { store, provider } = this.#deps;
    const receiptBlock = new TextEncoder().encode(
      JSON.stringify({ receipt: delivery.receipt, signature: delivery.signature }),
    );
    const receiptCid = (await cidOf(receiptBlock)).toString();
    const rowId = await store.commit(() => {
      putKnownBlock(this.#deps, delivery.outputCid, output);
      putKnownBlock(this.#deps, receiptCid, receiptBlock);
      // The job's row goes first: the receipt row points at it.
      this.#recordExecution(executed, "completed", {
        result: {
          outputCid: delivery.outputCid,
          fuelUsed: delivery.receipt.fuelUsed,
          status: delivery.receipt.status,
        },
      });
      const { row } = store.receipts.put({
        jobId: executed.job.jobId,
        executor: delivery.receipt.executor,
        message: delivery.receipt,
        signature: delivery.signature,
        cid: receiptCid,
      });
      store.receipts.enqueueDelivery(row.id, executed.buyerPeer);
      if (this.#deps.recordEarnings && executed.pricePerMegaFuel !== undefined)
        store.payeeLedger.addEarning({
          jobId: executed.job.jobId,
          signer: executed.job.spec.buyer,
          amount: jobAmount(executed.pricePerMegaFuel, BigInt(delivery.receipt.fuelUsed)),
        });
      this.#takeLeaving();
      return row.id;
    });
    this.#receiptLog.add(rowId, executed.job.jobId, receiptCid);
    // A small output travels inline with the receipt; a DHT walk for it would only cost CPU.
    if (output.byteLength > INLINE_OUTPUT_MAX_BYTES) provider.add(delivery.outputCid);
    return rowId;
  }

  async recordFailure(executed: Omit<ExecutedJob, "buyerPeer">, reason: ReasonCode): Promise<void> {
    // A job its buyer cancelled ends `cancelled`; any other job without a result, `failed`.
    const state = reason === "cancelled" ? "cancelled" : "failed";
    await this.#deps.store.commit(() => this.#recordExecution(executed, state, { reason }), {
      durable: false,
    });
  }

  /**
   * Written with the next receipt, or within LEAVE_OUTBOX_DELAY_MS, without an fsync: a
   * receipt whose acknowledgement a crash loses is delivered again and acknowledged again.
   */
  async leaveOutbox(rowId: number): Promise<void> {
    this.#leaving.push(rowId);
    if (this.#leaving.length >= LEAVE_OUTBOX_BATCH) return this.#writeLeaving();
    this.#leaveTimer ??= setTimeout(() => void this.#writeLeaving(), LEAVE_OUTBOX_DELAY_MS).unref();
  }

  /** Marks the acknowledged rows in the caller's commit. */
  #takeLeaving(): void {
    clearTimeout(this.#leaveTimer);
    this.#leaveTimer = undefined;
    for (const rowId of this.#leaving.splice(0)) this.#deps.store.receipts.leaveOutbox(rowId);
  }

  async #writeLeaving(): Promise<void> {
    if (this.#leaving.length === 0) return;
    const { store, log } = this.#deps;
    await store
      .commit(() => this.#takeLeaving(), { durable: false })
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, "could not update the outbox"));
  }

  outbox(limit: number): OutboxEntry[] {
    const own = this.#deps.executor.toLowerCase();
    const entries: OutboxEntry[] = [];
    for (const row of this.#deps.store.receipts.outbox(limit)) {
      const delivery =
        row.executor.toLowerCase() === own ? this.#storedDelivery(row.jobId as Hex) : undefined;
      if (delivery) entries.push({ jobId: row.jobId as Hex, buyerPeer: row.peerId, rowId: row.id, delivery });
      else this.#deps.store.receipts.leaveOutbox(row.id);
    }
    return entries;
  }

  storedStatus(jobId: Hex): StatusResponse | undefined {
    const stored = this.#deps.store.jobs.get(jobId);
    if (stored?.role !== "executor") return undefined;
    if (stored.state === "completed") {
      // A status answer carries no output: a probe (anyone may send one) reads no blob.
      const delivery = this.#storedDelivery(jobId, stored.result, { withOutput: false });
      if (delivery) {
        const { receipt, signature, outputCid } = delivery;
        return { type: "status", jobId, state: "done", receipt: { receipt, signature, outputCid } };
      }
      return { type: "status", jobId, state: "done" };
    }
    return {
      type: "status",
      jobId,
      state: "failed",
      reason: (stored.reason as ReasonCode | null) ?? undefined,
    };
  }

  /** This node's stored receipt for a job, as delivered: the output inline when small (and wanted). */
  #storedDelivery(
    jobId: Hex,
    jobResult: unknown = this.#deps.store.jobs.get(jobId)?.result,
    { withOutput = true } = {},
  ): ReceiptDeliveryOf | undefined {
    const { store, executor } = this.#deps;
    const row = store.receipts.get(jobId, executor);
    const result = jobResult as { outputCid?: unknown } | null | undefined;
    const receipt = ReceiptWireSchema.safeParse(row?.message);
    if (!row || !receipt.success || typeof result?.outputCid !== "string") return undefined;
    const size = withOutput ? store.blocks.size(result.outputCid) : undefined;
    const output =
      size !== undefined && size <= INLINE_OUTPUT_MAX_BYTES ? store.blocks.get(result.outputCid) : undefined;
    return {
      type: "receipt",
      receipt: receipt.data,
      signature: row.signature,
      outputCid: result.outputCid,
      outputBase64: output && Buffer.from(output).toString("base64"),
    };
  }

  /**
   * Records an executed job in the caller's commit, with its outcome. Jobs are recorded
   * when they end: one that a crash cuts short leaves no row, its status answer is
   * "unknown", and its buyer reassigns it.
   */
  #recordExecution(
    executed: Omit<ExecutedJob, "buyerPeer">,
    state: "completed" | "failed" | "cancelled",
    outcome: { reason?: ReasonCode; result?: unknown },
  ): void {
    const { store } = this.#deps;
    const { job, announce } = executed;
    const outcomeFields = { state, reason: outcome.reason ?? null, result: outcome.result };
    // A job this node recorded before (it ran it before a restart, or ran it again).
    if (store.jobs.has(job.jobId)) store.jobs.update(job.jobId, outcomeFields);
    else
      store.jobs.insert({
        jobId: job.jobId,
        role: "executor",
        spec: { announce },
        priority: "normal",
        deadline: Number(job.spec.deadline),
        ...outcomeFields,
      });
  }
}
