/**
 * Runs `poll` at once on start and then `pollMs` after each pass ends, one pass at a time,
 * until stopped; `stop` waits for a pass under way. The chain watchers (juries, accusations)
 * read the chain this way.
 */
export class PollLoop {
  readonly #poll: () => Promise<void>;
  readonly #pollMs: number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #polling: Promise<void> = Promise.resolve();

  constructor(poll: () => Promise<void>, pollMs: number) {
    this.#poll = poll;
    this.#pollMs = pollMs;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  start(): void {
    this.#schedule(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#polling;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#polling = this.#poll().finally(() => this.#schedule(this.#pollMs));
    }, delayMs);
    this.#timer.unref();
  }
}
