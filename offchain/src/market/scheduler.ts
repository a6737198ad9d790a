import type { PriorityName, ReasonCode } from "../protocol/index.ts";
import { Heap } from "./heap.ts";
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

type Entry<T> = WaitingJob<T> & { seq: number };

/** Superseded heap entries tolerated beyond the live ones before the heaps are rebuilt. */
const STALE_SLACK = 1_024;

/**
 * Jobs waiting for an executor. The next job is the ready one of highest priority, and
 * among equals the earliest deadline (EDF), then the oldest. A job that cannot be placed
 * is parked with its reason and a retry time instead of failing.
 *
 * Three heaps (retry time, placement order, deadline) make every operation O(log n).
 * Removing or re-parking a job leaves its old entry in the heaps, skipped when it comes
 * up; once stale entries outnumber live ones by `STALE_SLACK`, the heaps are rebuilt, so
 * memory stays within a constant factor of the jobs waiting.
 */
export class JobScheduler<T> {
  /** The live entry of each waiting job; an entry found in a heap but not here is stale. */
  readonly #live = new Map<string, Entry<T>>();
  readonly #delayed = new Heap<Entry<T>>((a, b) => a.notBefore < b.notBefore);
  readonly #ready = new Heap<Entry<T>>(before);
  readonly #byDeadline = new Heap<Entry<T>>((a, b) => a.deadline < b.deadline);
  /** Earliest retry time among the entries moved to `#ready` since it last ran empty. */
  #readySince = Number.POSITIVE_INFINITY;
  #seq = 0;

  get size(): number {
    return this.#live.size;
  }

  has(jobId: string): boolean {
    return this.#live.has(jobId);
  }

  enqueue(job: QueuedJob<T>, notBefore = 0): void {
    this.#add({ ...job, notBefore, seq: this.#seq++ });
  }

  /** Puts a job back with the reason it could not be placed; it is ready again at `notBefore`. */
  park(job: QueuedJob<T>, reason: ReasonCode, notBefore: number, detail?: string): void {
    const seq = this.#live.get(job.jobId)?.seq ?? this.#seq++;
    this.#add({ ...job, reason, detail, notBefore, seq });
  }

  remove(jobId: string): boolean {
    const removed = this.#live.delete(jobId);
    if (removed) this.#compact();
    return removed;
  }

  /** Takes the next ready job out of the queue. */
  next(now: number): WaitingJob<T> | undefined {
    this.#promote(now);
    const entry = this.#popLive(this.#ready);
    if (entry === undefined) return undefined;
    this.#live.delete(entry.jobId);
    return withoutSeq(entry);
  }

  /**
   * When the earliest waiting job becomes ready, if any is waiting (a time already past
   * when one is ready now).
   */
  nextReadyAt(): number | undefined {
    if (this.#live.size === 0) return undefined;
    this.#dropStale(this.#delayed);
    this.#dropStale(this.#ready);
    if (this.#ready.size === 0) this.#readySince = Number.POSITIVE_INFINITY;
    return Math.min(this.#readySince, this.#delayed.peek()?.notBefore ?? Number.POSITIVE_INFINITY);
  }

  /** Waiting jobs in the order they would be taken, with their reasons (O(n log n), for views). */
  waiting(): WaitingJob<T>[] {
    return [...this.#live.values()].sort((a, b) => (before(a, b) ? -1 : 1)).map(withoutSeq);
  }

  /** Removes and returns jobs whose deadline has passed, earliest deadline first. */
  expire(now: number): WaitingJob<T>[] {
    const expired: WaitingJob<T>[] = [];
    for (;;) {
      this.#dropStale(this.#byDeadline);
      const top = this.#byDeadline.peek();
      if (top === undefined || top.deadline > now) break;
      this.#byDeadline.pop();
      this.#live.delete(top.jobId);
      expired.push(withoutSeq(top));
    }
    if (expired.length > 0) this.#compact();
    return expired;
  }

  #add(entry: Entry<T>): void {
    this.#live.set(entry.jobId, entry);
    this.#delayed.push(entry);
    this.#byDeadline.push(entry);
    this.#compact();
  }

  /** Moves the jobs whose retry time has come into the placement order. */
  #promote(now: number): void {
    for (;;) {
      this.#dropStale(this.#delayed);
      const top = this.#delayed.peek();
      if (top === undefined || top.notBefore > now) return;
      this.#delayed.pop();
      this.#ready.push(top);
      this.#readySince = Math.min(this.#readySince, top.notBefore);
    }
  }

  #popLive(heap: Heap<Entry<T>>): Entry<T> | undefined {
    this.#dropStale(heap);
    return heap.pop();
  }

  #dropStale(heap: Heap<Entry<T>>): void {
    for (let top = heap.peek(); top !== undefined && !this.#isLive(top); top = heap.peek()) heap.pop();
  }

  #isLive(entry: Entry<T>): boolean {
    return this.#live.get(entry.jobId) === entry;
  }

  #compact(): void {
    const held = this.#delayed.size + this.#ready.size;
    if (held <= 2 * this.#live.size + STALE_SLACK && this.#byDeadline.size <= this.#live.size + STALE_SLACK)
      return;
    const live = (entry: Entry<T>) => this.#isLive(entry);
    this.#delayed.filter(live);
    this.#ready.filter(live);
    this.#byDeadline.filter(live);
  }

  /** Heap entries held, live or stale (for tests of the bound). */
  get heldEntries(): number {
    return this.#delayed.size + this.#ready.size + this.#byDeadline.size;
  }
}

function withoutSeq<T>({ seq: _seq, ...job }: Entry<T>): WaitingJob<T> {
  return job;
}

function before(a: QueuedJob<unknown> & { seq: number }, b: QueuedJob<unknown> & { seq: number }): boolean {
  const byPriority = priorityValue(a.priority) - priorityValue(b.priority);
  if (byPriority !== 0) return byPriority < 0;
  if (a.deadline !== b.deadline) return a.deadline < b.deadline;
  return a.seq < b.seq;
}
