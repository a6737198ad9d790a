import type { Logger } from "pino";

/** Runs `task` without waiting; a failure is logged, never thrown into the event loop. */
export function detach(log: Logger, what: string, task: Promise<unknown>): void {
  task.catch((err: unknown) => log.warn({ err: errorMessage(err) }, `${what} failed`));
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
