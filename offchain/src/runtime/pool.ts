import { Worker } from "node:worker_threads";
import type { Logger } from "pino";
import type { WorkerRequest } from "./protocol.ts";

const WORKER_URL = new URL("./worker.ts", import.meta.url);

/** Fixed per-worker limits: the wasm stack and the JS heap of the shim. */
export const WORKER_RESOURCE_LIMITS = {
  stackSizeMb: 8,
  maxOldGenerationSizeMb: 256,
  maxYoungGenerationSizeMb: 32,
};

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

export type PoolReply<T> =
  { kind: "reply"; reply: T } | { kind: "timeout" } | { kind: "crash"; detail: string };

interface Task {
  request: WorkerRequest;
  timeoutMs: number;
  resolve: (reply: PoolReply<unknown>) => void;
}

interface Slot {
  worker: Worker;
  ready: Promise<void>;
  isReady: boolean;
  task?: Task;
  timer?: NodeJS.Timeout;
}

/**
 * Warm worker threads running one task each at a time. A task past its wall-clock
 * timeout, or a worker that dies, costs that worker: it is terminated and replaced.
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private readonly logger: Logger;
  private nextId = 1;
  private closed = false;

  constructor(size: number, logger: Logger) {
    this.logger = logger;
    for (let index = 0; index < size; index++) this.slots.push(this.spawn());
  }

  /** Resolves when every worker has started. */
  async ready(): Promise<void> {
    await Promise.all(this.slots.map((slot) => slot.ready));
  }

  run<T>(request: WithoutId<WorkerRequest>, timeoutMs: number): Promise<PoolReply<T>> {
    if (this.closed) return Promise.resolve({ kind: "crash", detail: "runtime is closed" });
    return new Promise((resolve) => {
      const task = {
        request: { ...request, id: this.nextId++ } as WorkerRequest,
        timeoutMs,
        resolve,
      } as Task;
      this.queue.push(task);
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const task of this.queue.splice(0)) task.resolve({ kind: "crash", detail: "runtime closed" });
    await Promise.all(
      this.slots.map(async (slot) => {
        this.settle(slot, { kind: "crash", detail: "runtime closed" });
        await slot.worker.terminate();
      }),
    );
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_URL, { resourceLimits: WORKER_RESOURCE_LIMITS });
    const slot: Slot = { worker, ready: Promise.resolve(), isReady: false };
    slot.ready = new Promise((resolve, reject) => {
      worker.once("message", () => resolve());
      worker.once("error", reject);
    });
    slot.ready.catch(() => undefined);
    slot.ready.then(
      () => {
        slot.isReady = true;
        worker.on("message", (message: { id: number; reply: unknown }) => this.onReply(slot, message));
        this.dispatch();
      },
      () => undefined,
    );
    worker.on("error", (error) => this.replace(slot, `worker failed: ${error.message}`));
    worker.on("exit", (code) => {
      if (!this.closed && this.slots.includes(slot)) this.replace(slot, `worker exited with code ${code}`);
    });
    return slot;
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.task || !slot.isReady) continue;
      const task = this.queue.shift();
      if (!task) return;
      slot.task = task;
      slot.timer = setTimeout(() => this.onTimeout(slot), task.timeoutMs);
      slot.worker.postMessage(task.request);
    }
  }

  private onReply(slot: Slot, message: { id: number; reply: unknown }): void {
    if (slot.task?.request.id !== message.id) return;
    this.settle(slot, { kind: "reply", reply: message.reply });
    this.dispatch();
  }

  private onTimeout(slot: Slot): void {
    this.logger.warn({ timeoutMs: slot.task?.timeoutMs }, "job timed out; replacing its worker");
    this.settle(slot, { kind: "timeout" });
    this.replace(slot);
  }

  /** Ends the slot's current task, if any, with `reply`. */
  private settle(slot: Slot, reply: PoolReply<unknown>): void {
    clearTimeout(slot.timer);
    const task = slot.task;
    slot.task = undefined;
    task?.resolve(reply);
  }

  private replace(slot: Slot, crash?: string): void {
    const index = this.slots.indexOf(slot);
    if (index < 0 || this.closed) return;
    if (crash) {
      this.logger.error({ detail: crash }, "runtime worker lost; replacing it");
      this.settle(slot, { kind: "crash", detail: crash });
    }
    this.slots.splice(index, 1, this.spawn());
    slot.worker.removeAllListeners();
    slot.worker.on("error", () => undefined);
    void slot.worker.terminate();
    this.dispatch();
  }
}
