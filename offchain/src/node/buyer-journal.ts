import type { Logger } from "pino";
import type { Hex } from "viem";
import { JobAnnounceSchema, ReceiptStatus, bytes32ToCid, jobSpecFromWire } from "../protocol/index.ts";
import { statusName } from "./buyer-view.ts";
import type { ReasonCode, ReceiptWire } from "../protocol/index.ts";
import type { JobRow } from "../store/index.ts";
import { newJobState } from "./buyer-state.ts";
import type { BuyerEffect, BuyerJobState, ReplicaVote, Verification } from "./buyer-state.ts";
import type { BuyerStore } from "./buyer-ports.ts";
import type { JobEvent, JobResultView, JobView } from "./types.ts";
import { errorMessage } from "./util.ts";

const WRITE_BATCH_MS = 25;

/** An assignment row as the machine's restore reads it. */
export interface StoredAssignment {
  attempt: number;
  peerId: string;
  operator: `0x${string}`;
  state: string;
  deadline: number;
}

/**
 * The buyer's job records in the store: carries out the machine's `store_*` effects and
 * reads jobs back.
 *
 * Progress records (events, bids, assignments, states, receipts) are written in one
 * commit every WRITE_BATCH_MS: an fsync blocks the event loop, so one per job step would
 * cost more than the step. A crash loses at most that window; a job whose completion was
 * lost is placed again (or its executor probed again) after a restart.
 */
export class BuyerJournal {
  readonly #store: BuyerStore;
  readonly #log: Logger;
  /** Writes of the current batch; emptied by every flush. */
  readonly #pendingWrites: (() => void)[] = [];
  /** Latest state per job within the batch; emptied by every flush. */
  readonly #pendingStates = new Map<Hex, { state: JobView["state"]; reason: ReasonCode | null }>();
  #writeTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(store: BuyerStore, log: Logger) {
    this.#store = store;
    this.#log = log;
  }

  /** Writes the last batch; later writes are dropped (the store closes with the node). */
  close(): void {
    this.flush();
    this.#closed = true;
  }

  /** Stores a block whose CID is known; joins the surrounding `store.commit` when called inside one. */
  putBlock(cid: string, bytes: Uint8Array): void {
    this.#store.blocks
      .putWithCid(cid, bytes)
      .catch((err: unknown) => this.#log.warn({ cid, err: errorMessage(err) }, "could not store a block"));
  }

  /** Carries out one of the machine's `store_*` effects in the next batch. */
  write(jobId: Hex, effect: BuyerEffect): void {
    const store = this.#store;
    switch (effect.type) {
      case "store_state": {
        const queuedAlready = this.#pendingStates.has(jobId);
        this.#pendingStates.set(jobId, { state: effect.state, reason: effect.reason ?? null });
        if (queuedAlready) return;
        return this.#later(() => {
          const latest = this.#pendingStates.get(jobId);
          this.#pendingStates.delete(jobId);
          if (latest) store.jobs.update(jobId, latest);
        });
      }
      case "store_event": {
        const { type, reason, peerId, at, jobId: _jobId, ...data } = effect.event;
        return this.#later(() =>
          store.jobEvents.append({
            jobId,
            kind: type,
            reason: reason ?? null,
            peer: peerId ?? null,
            at,
            data,
          }),
        );
      }
      case "store_bid": {
        const { candidate } = effect;
        return this.#later(() =>
          store.bids.insert(
            {
              jobId,
              bidder: candidate.peerId,
              operator: candidate.operator,
              pricePerMegaFuel: candidate.pricePerMegaFuel,
              message: candidate.bid,
              signature: candidate.signature,
            },
            { ifAbsent: true },
          ),
        );
      }
      case "store_assignment": {
        const { attempt, state, reason, insert } = effect;
        return this.#later(() => {
          if (insert) {
            const row = store.assignments.insert({
              jobId,
              executor: attempt.peerId,
              operator: attempt.operator,
              attempt: attempt.number,
              deadline: attempt.deadline,
              state,
            });
            if (reason !== undefined) store.assignments.update(row.id, { reason });
            return;
          }
          store.assignments.updateAttempt(
            { jobId, executor: attempt.peerId, attempt: attempt.number },
            { state, reason: reason ?? null },
          );
        });
      }
      case "store_receipt": {
        const { vote } = effect;
        return this.#later(() =>
          store.receipts.put({
            jobId,
            executor: vote.operator,
            message: vote.receipt,
            signature: vote.signature,
          }),
        );
      }
      case "store_result": {
        const { receipt, output, result } = effect;
        return this.#later(() => {
          this.putBlock(receipt.outputCid, output);
          store.receipts.put({
            jobId,
            executor: receipt.receipt.executor,
            message: receipt.receipt,
            signature: receipt.signature,
          });
          store.jobs.update(jobId, { result });
        });
      }
      default:
        return;
    }
  }

  #later(write: () => void): void {
    if (this.#closed) return;
    this.#pendingWrites.push(write);
    this.#writeTimer ??= setTimeout(() => this.flush(), WRITE_BATCH_MS);
  }

  flush(): void {
    const store = this.#store;
    const log = this.#log;
    clearTimeout(this.#writeTimer);
    this.#writeTimer = undefined;
    const writes = this.#pendingWrites.splice(0);
    if (writes.length === 0) return;
    const committed = store.commit(
      () => {
        for (const write of writes) {
          try {
            write();
          } catch (err) {
            log.warn({ err: errorMessage(err) }, "a job state write was refused");
          }
        }
      },
      { durable: false },
    );
    committed.catch((err: unknown) => log.error({ err: errorMessage(err) }, "could not persist job state"));
  }

  /** A job read back from its row, its events, assignments and receipt; undefined if the row is unreadable. */
  storedJob(row: JobRow): BuyerJobState | undefined {
    const store = this.#store;
    const parsed = JobAnnounceSchema.safeParse((row.spec as { announce?: unknown } | null)?.announce);
    if (!parsed.success) return undefined;
    const announce = parsed.data;
    const job = newJobState(
      announce.jobId,
      jobSpecFromWire(announce.spec),
      announce.signature,
      announce,
      storedVerification(row.spec),
    );
    job.state = row.state === "cancelled" ? "failed" : row.state;
    job.reason = (row.reason as ReasonCode | null) ?? undefined;
    job.events = store.jobEvents.list(row.jobId).map((event) => ({
      ...((event.data ?? {}) as object),
      jobId: announce.jobId,
      type: event.kind as JobEvent["type"],
      at: event.at,
      reason: (event.reason as ReasonCode | null) ?? undefined,
      peerId: event.peer ?? undefined,
    }));
    job.storedEvents = job.events.length;
    job.attempts = store.assignments.latestAttempt(row.jobId);
    job.lastAttempt = job.attempts;
    const receipts = store.receipts.forJob(row.jobId);
    if (row.result) job.result = row.result as unknown as JobResultView;
    // A replicated job stored every replica's receipt: its own is the one matching its result.
    const result = job.result;
    const receipt = result
      ? (receipts.find((stored) => matchesResult(stored.message as unknown as ReceiptWire, result)) ??
        receipts.at(-1))
      : receipts.at(-1);
    if (receipt)
      job.receipt = { message: receipt.message as unknown as ReceiptWire, signature: receipt.signature };
    if (job.spec.replicas > 1 || job.verification.mode === "spot") this.#restoreVotes(job, receipts);
    return job;
  }

  /**
   * A finished replicated job's votes and verdict for its view (outputs are not kept);
   * an unfinished job's votes are not restored, its slots run again.
   */
  #restoreVotes(job: BuyerJobState, receipts: readonly { message: unknown; signature: Hex }[]): void {
    if (job.state !== "completed" && job.state !== "failed") return;
    const assignments = this.#store.assignments.forJob(job.jobId);
    job.votes = receipts.map((stored, index): ReplicaVote => {
      const receipt = stored.message as ReceiptWire;
      const row = assignments.find(
        (assignment) => assignment.operator.toLowerCase() === receipt.executor.toLowerCase(),
      );
      return {
        peerId: row?.executor ?? "",
        operator: receipt.executor,
        attempt: row?.attempt ?? -index,
        slot: 0,
        receipt,
        signature: stored.signature,
        outputCid: bytes32ToCid(receipt.outputCid).toString(),
        output: new Uint8Array(),
        latencyMs: 0,
        // a finished job's votes only feed its view: no verdict is reported for them again
        pricePerMegaFuel: 0n,
      };
    });
    const verdict = job.events.findLast((event) => event.type === "verdict")?.verdict;
    if (verdict)
      job.verdict = {
        ...verdict,
        tally: verdict.tally.map((entry) => ({
          key: `${statusCode(entry.status)}/${entry.outputCid.toLowerCase()}/${entry.fuelUsed}`,
          votes: entry.votes,
        })),
      };
  }

  /** The assignments of a job, for the machine's restore. */
  assignments(jobId: string): StoredAssignment[] {
    return this.#store.assignments.forJob(jobId).map((assignment) => ({
      attempt: assignment.attempt,
      peerId: assignment.executor,
      operator: assignment.operator,
      state: assignment.state,
      deadline: assignment.deadline,
    }));
  }
}

/** The verification a job was submitted with (stored beside its announcement; quorum when absent). */
function storedVerification(spec: unknown): Verification {
  const stored = (spec as { verification?: Partial<Extract<Verification, { mode: "spot" }>> } | null)
    ?.verification;
  if (stored?.mode !== "spot" || typeof stored.rate !== "number") return { mode: "quorum" };
  return { mode: "spot", rate: stored.rate, phase: "first" };
}

function matchesResult(receipt: ReceiptWire, result: JobResultView): boolean {
  try {
    return (
      receipt.fuelUsed === result.fuelUsed &&
      bytes32ToCid(receipt.outputCid).toString() === result.outputCid &&
      statusName(receipt.status) === result.status
    );
  } catch {
    return false;
  }
}

function statusCode(name: string): number {
  return (ReceiptStatus as Record<string, number>)[name] ?? Number(name.replace(/^status_/, ""));
}
