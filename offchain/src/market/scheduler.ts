import type { PriorityName, ReasonCode } from "../protocol/index.ts";
import { priorityValue } from "./spec.ts";

export interface QueuedJob<T> {
  jobId: string;
  priority: PriorityName;
  /** Unix ms by which the job must be done. */
  deadline: number;
  item: T;
}

export interface WaitingJob<T> extends QueuedJob<T> {
  /** Not placed before this time (backoff). */
  notBefore: number;
  /** Why it is waiting; undefined for a job not yet tried. */
  reason?: ReasonCode;
  detail?: string;
}

/**
 * Jobs waiting for an executor. The next job is the ready one of highest priority, and
 * among equals the earliest deadline (EDF), then the oldest. A job that cannot be placed
 * is parked with its reason and a retry time instead of failing.
 */
export class JobScheduler<T> {
  readonly #jobs = new Map<string, WaitingJob<T> & { seq: number }>();
  #seq = 0;

  get size(): number {
    return this.#jobs.size;
  }

  has(jobId: string): boolean {
    return this.#jobs.has(jobId);
  }

  enqueue(job: QueuedJob<T>, notBefore = 0): void {
    this.#jobs.set(job.jobId, { ...job, notBefore, seq: this.#seq++ });
  }

  /** Puts a job back with the reason it could not be placed; it is ready again at `notBefore`. */
  park(job: QueuedJob<T>, reason: ReasonCode, notBefore: number, detail?: string): void {
    const seq = this.#jobs.get(job.jobId)?.seq ?? this.#seq++;
    this.#jobs.set(job.jobId, { ...job, reason, detail, notBefore, seq });
  }

  remove(jobId: string): boolean {
    return this.#jobs.delete(jobId);
  }

  /** Takes the next ready job out of the queue. */
  next(now: number): WaitingJob<T> | undefined {
    let best: (WaitingJob<T> & { seq: number }) | undefined;
    for (const job of this.#jobs.values()) {
      if (job.notBefore <= now && (best === undefined || before(job, best))) best = job;
    }
    if (best === undefined) return undefined;
    this.#jobs.delete(best.jobId);
    const { seq: _seq, ...job } = best;
    return job;
  }

  /** When the earliest parked job becomes ready, if any is waiting. */
  nextReadyAt(): number | undefined {
    let earliest: number | undefined;
    for (const job of this.#jobs.values())
      earliest = earliest === undefined ? job.notBefore : Math.min(earliest, job.notBefore);
    return earliest;
  }

  /** Waiting jobs in the order they would be taken, with their reasons. */
  waiting(): WaitingJob<T>[] {
    return [...this.#jobs.values()]
      .sort((a, b) => (before(a, b) ? -1 : 1))
      .map(({ seq: _seq, ...job }) => job);
  }

  /** Removes and returns jobs whose deadline has passed. */
  expire(now: number): WaitingJob<T>[] {
    const expired = [...this.#jobs.values()].filter((job) => job.deadline <= now);
    for (const job of expired) this.#jobs.delete(job.jobId);
    return expired.map(({ seq: _seq, ...job }) => job);
  }
}

function before(a: QueuedJob<unknown> & { seq: number }, b: QueuedJob<unknown> & { seq: number }): boolean {
  const byPriority = priorityValue(a.priority) - priorityValue(b.priority);
  if (byPriority !== 0) return byPriority < 0;
  if (a.deadline !== b.deadline) return a.deadline < b.deadline;
  return a.seq < b.seq;
}
