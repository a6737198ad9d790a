import type { ApiJobEvent, ApiNode } from "./types.ts";

type Watcher = (event: ApiJobEvent) => void;

/**
 * One subscription to the node's job events, fanned out to whoever watches each job, so
 * a hundred open event streams cost the node one listener, not a hundred. Subscribed
 * while anyone watches.
 */
export class JobEventHub {
  readonly #node: ApiNode;
  readonly #watchers = new Map<string, Set<Watcher>>();
  #unsubscribe: (() => void) | undefined;

  constructor(node: ApiNode) {
    this.#node = node;
  }

  /** Calls `watcher` with each new event of `jobId`; the returned function stops it. */
  watch(jobId: string, watcher: Watcher): () => void {
    const key = jobId.toLowerCase();
    const set = this.#watchers.get(key) ?? new Set<Watcher>();
    set.add(watcher);
    this.#watchers.set(key, set);
    this.#unsubscribe ??= subscribe(this.#node, (event) => this.#dispatch(event));
    return () => {
      set.delete(watcher);
      if (set.size === 0) this.#watchers.delete(key);
      if (this.#watchers.size === 0) this.#stop();
    };
  }

  close(): void {
    this.#watchers.clear();
    this.#stop();
  }

  #dispatch(event: ApiJobEvent): void {
    const set = this.#watchers.get(event.jobId.toLowerCase());
    if (!set) return;
    for (const watcher of [...set]) watcher(event);
  }

  #stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }
}

/** node.on may hand back an unsubscribe function (or not, then node.off undoes it). */
function subscribe(node: ApiNode, listener: Watcher): () => void {
  const returned = node.on("job", listener);
  if (typeof returned === "function") return returned as () => void;
  return () => node.off?.("job", listener);
}
