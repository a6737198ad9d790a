import { Worker } from "node:worker_threads";
import type { Logger } from "pino";
import type { WorkerRequest } from "./protocol.ts";

/** The worker's TypeScript entry; a caller may hand the pool a JavaScript build of it instead. */
export const WORKER_SOURCE = new URL("./worker.ts", import.meta.url);

/**
 * Fixed per-worker limits: the wasm stack and the JS heap of the shim. The shim allocates
 * little JS per job (guest memory and output buffers live outside the JS heap), so a small
 * young generation keeps an idle worker's resident memory low.
 */
export const WORKER_RESOURCE_LIMITS = {
  stackSizeMb: 8,
  maxOldGenerationSizeMb: 256,
  maxYoungGenerationSizeMb: 8,
};

/**
 * Tasks handed to a worker ahead of time, so it never idles waiting for the main thread
 * between two jobs. It still runs them one at a time, in order.
 */
const PIPELINE_DEPTH = 2;
const MAX_START_FAILURES = 3;

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

export type PoolReply<T> =
  { kind: "reply"; reply: T } | { kind: "timeout" } | { kind: "crash"; detail: string };

interface Task {
  request: WorkerRequest;
  timeoutMs: number;
  resolve: (reply: PoolReply<unknown>) => void;
  /** Its caller gave up on it: answered already, and its worker is replaced once it runs. */
  cancelled?: boolean;
}

/**
 * A cancelled run is given this long to end on its own before its worker is replaced:
 * a new worker (a thread, its modules compiled again) costs more than the rest of a short
 * run. The caller is answered at once either way.
 */
export const CANCEL_GRACE_MS = 100;

/** The answer to a task whose caller aborted it. */
export const CANCELLED_DETAIL = "cancelled";

interface Slot {
  worker: Worker;
  ready: Promise<void>;
  isReady: boolean;
  /** Sent and not yet answered, oldest (the running one) first. */
  tasks: Task[];
  /** Wall-clock limit of the running task. */
  timer?: NodeJS.Timeout;
}

/**
 * Warm worker threads, each running one task at a time. A task past its wall-clock
 * timeout, or a worker that dies, costs that worker: it is terminated and replaced, and
 * the tasks queued behind it go back to the pool's queue.
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private readonly logger: Logger;
  private readonly entry: URL;
  private nextId = 1;
  private closed = false;
  /** Workers that died before they were ready, in a row; past a few the pool gives up. */
  private startFailures = 0;
  /** Workers terminated and started again (timeouts, cancels past their grace, crashes). */
  replacedWorkers = 0;

  constructor(size: number, logger: Logger, entry: URL = WORKER_SOURCE) {
    this.logger = logger;
    this.entry = entry;
    for (let index = 0; index < size; index++) this.slots.push(this.spawn());
  }

  /** Resolves when every worker has started. */
  async ready(): Promise<void> {
    await Promise.all(this.slots.map((slot) => slot.ready));
  }

  /**
   * Runs a task on the next free worker. Aborting `signal` answers the task at once with a
   * `cancelled` crash: a queued task leaves the queue, and a worker that runs (or is about to
   * run) it is terminated and replaced unless the run ends within CANCEL_GRACE_MS.
   */
  run<T>(request: WithoutId<WorkerRequest>, timeoutMs: number, signal?: AbortSignal): Promise<PoolReply<T>> {
    if (this.closed) return Promise.resolve({ kind: "crash", detail: "runtime is closed" });
    if (this.slots.length === 0) return Promise.resolve({ kind: "crash", detail: "no runtime worker" });
    if (signal?.aborted) return Promise.resolve({ kind: "crash", detail: CANCELLED_DETAIL });
    return new Promise((resolve) => {
      const onAbort = () => this.cancel(task);
      const task = {
        request: { ...request, id: this.nextId++ } as WorkerRequest,
        timeoutMs,
        resolve: (reply: PoolReply<unknown>) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(reply as PoolReply<T>);
        },
      } as Task;
      signal?.addEventListener("abort", onAbort, { once: true });
      this.queue.push(task);
      this.dispatch();
    });
  }

  private cancel(task: Task): void {
    if (task.cancelled) return;
    task.cancelled = true;
    task.resolve({ kind: "crash", detail: CANCELLED_DETAIL });
    const queued = this.queue.indexOf(task);
    if (queued >= 0) return void this.queue.splice(queued, 1);
    const slot = this.slots.find((candidate) => candidate.tasks[0] === task);
    // A task waiting behind another in a worker gets its grace when its turn comes (startClock).
    if (slot) this.giveGrace(slot);
  }

  async close(): Promise<void> {
    this.closed = true;
    const closed: PoolReply<unknown> = { kind: "crash", detail: "runtime closed" };
    for (const task of this.queue.splice(0)) task.resolve(closed);
    await Promise.all(
      this.slots.map(async (slot) => {
        clearTimeout(slot.timer);
        for (const task of slot.tasks.splice(0)) task.resolve(closed);
        await slot.worker.terminate();
      }),
    );
  }

  private spawn(): Slot {
    const worker = new Worker(this.entry, { resourceLimits: WORKER_RESOURCE_LIMITS });
    const slot: Slot = { worker, ready: Promise.resolve(), isReady: false, tasks: [] };
    slot.ready = new Promise((resolve, reject) => {
      worker.once("message", () => resolve());
      worker.once("error", reject);
    });
    slot.ready.then(
      () => {
        slot.isReady = true;
        this.startFailures = 0;
        worker.on("message", (message: { id: number; reply: unknown }) => this.onReply(slot, message));
        this.dispatch();
      },
      () => undefined,
    );
    worker.on("error", (error) => this.replace(slot, `worker failed: ${error.message}`));
    worker.on("exit", (code) => this.replace(slot, `worker exited with code ${code}`));
    return slot;
  }

  private dispatch(): void {
    for (let depth = 1; depth <= PIPELINE_DEPTH; depth++) {
      for (const slot of this.slots) {
        if (!slot.isReady || slot.tasks.length >= depth) continue;
        const task = this.queue.shift();
        if (!task) return;
        slot.tasks.push(task);
        if (slot.tasks.length === 1) this.startClock(slot);
        slot.worker.postMessage(task.request);
      }
    }
  }

  private startClock(slot: Slot): void {
    const running = slot.tasks[0];
    if (running?.cancelled) return this.giveGrace(slot);
    if (running) slot.timer = setTimeout(() => this.onTimeout(slot), running.timeoutMs);
  }

  /** The running task was cancelled: its worker goes unless the run ends within CANCEL_GRACE_MS. */
  private giveGrace(slot: Slot): void {
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => this.replace(slot, undefined), CANCEL_GRACE_MS);
  }

  private onReply(slot: Slot, message: { id: number; reply: unknown }): void {
    if (slot.tasks[0]?.request.id !== message.id) return;
    clearTimeout(slot.timer);
    slot.tasks.shift()!.resolve({ kind: "reply", reply: message.reply });
    this.startClock(slot);
    this.dispatch();
  }

  private onTimeout(slot: Slot): void {
    this.logger.warn({ timeoutMs: slot.tasks[0]?.timeoutMs }, "job timed out; replacing its worker");
    this.replace(slot, undefined);
  }

  /**
   * Terminates a slot's worker and starts a new one. The running task ends with a timeout
   * (no `crash` given) or a crash; the tasks waiting behind it are queued again.
   */
  private replace(slot: Slot, crash: string | undefined): void {
    const index = this.slots.indexOf(slot);
    if (index < 0 || this.closed) return;
    if (crash) this.logger.error({ detail: crash }, "runtime worker lost; replacing it");
    clearTimeout(slot.timer);
    const [running, ...waiting] = slot.tasks.splice(0);
    if (!running?.cancelled) running?.resolve(crash ? { kind: "crash", detail: crash } : { kind: "timeout" });
    this.queue.unshift(...waiting.filter((task) => !task.cancelled));
    if (!slot.isReady && ++this.startFailures >= MAX_START_FAILURES) {
      this.logger.error({ detail: crash }, "runtime workers keep failing to start; giving up");
      this.slots.splice(index, 1);
      if (this.slots.length === 0) {
        for (const task of this.queue.splice(0))
          task.resolve({ kind: "crash", detail: `no runtime worker: ${crash}` });
      }
    } else {
      this.slots.splice(index, 1, this.spawn());
      this.replacedWorkers++;
    }
    slot.worker.removeAllListeners();
    slot.worker.on("error", () => undefined);
    void slot.worker.terminate();
    this.dispatch();
  }
}
