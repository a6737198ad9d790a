/**
 * When a donor publishes its capability advert: at once when its terms change (price,
 * limits, addresses), never sooner than `minIntervalMs` after the previous advert, and
 * otherwise as a heartbeat every `heartbeatMs`. An advert that reached no peer (a donor
 * whose connections have not yet told it who follows adverts) does not count: it goes
 * again after 1 s, so a donor that starts with the network is heard within seconds, not
 * after its start-up repeats have backed off. Free slots ride along but never trigger an
 * advert: under load every donor fills up and frees a slot every few seconds, and an advert
 * for each flip reaches every node, so the network's advert traffic would grow with the
 * square of its size. Buyers rank donors by the jobs they run there themselves and learn
 * of a full donor from its bid answer. A donor that just started repeats its first advert after 1 s, 2 s, 4 s…
 * up to the heartbeat, so peers whose mesh was still forming hear it soon. A change takes
 * a new `seq` (at least the clock's milliseconds, so it grows across restarts); a
 * heartbeat repeats the last one. Pure: the shell (AdvertPublisher) owns the timer.
 */

export interface AdvertTerms {
  pricePerMegaFuel: bigint;
  slots: number;
  freeSlots: number;
  maxFuel: bigint;
  maxMemoryPages: number;
  multiaddrs: readonly string[];
}

export interface AdvertTiming {
  heartbeatMs: number;
  minIntervalMs: number;
}

export interface PublisherState {
  /** `seq` of the last advert; 0 before the first. */
  seq: number;
  /** What the last advert said, free slots left out; undefined before the first. */
  said: string | undefined;
  publishedAt: number;
  /** Adverts since the first, for the start-up repeats. */
  published: number;
}

export type PublishReason = "first" | "change" | "heartbeat";

export interface PublisherDecision {
  state: PublisherState;
  publish?: { seq: number; reason: PublishReason };
  /** When to look again if nothing changes meanwhile. */
  wakeAt: number;
}

const FIRST_REPEAT_MS = 1_000;

export function initialPublisherState(): PublisherState {
  return { seq: 0, said: undefined, publishedAt: -Infinity, published: 0 };
}

/** Whether an advert is due now, and the state after it. */
export function decideAdvert(
  state: PublisherState,
  terms: AdvertTerms,
  now: number,
  timing: AdvertTiming,
): PublisherDecision {
  const said = describe(terms);
  if (state.said === undefined) return published(state, terms, said, now, timing, "first");
  if (said !== state.said) {
    const allowedAt = state.publishedAt + timing.minIntervalMs;
    if (now < allowedAt) return { state, wakeAt: allowedAt };
    return published(state, terms, said, now, timing, "change");
  }
  const dueAt = state.publishedAt + repeatAfter(state.published, timing);
  if (now < dueAt) return { state, wakeAt: dueAt };
  return published(state, terms, said, now, timing, "heartbeat");
}

function published(
  state: PublisherState,
  terms: AdvertTerms,
  said: string,
  now: number,
  timing: AdvertTiming,
  reason: PublishReason,
): PublisherDecision {
  const seq = reason === "heartbeat" ? state.seq : Math.max(state.seq + 1, Math.floor(now));
  const next: PublisherState = {
    seq,
    said,
    publishedAt: now,
    published: state.published + 1,
  };
  return { state: next, publish: { seq, reason }, wakeAt: now + repeatAfter(next.published, timing) };
}

/** The advert just published reached no peer: it is repeated after 1 s, as if it had not gone out. */
export function advertUnheard(state: PublisherState, now: number): PublisherDecision {
  const next = { ...state, published: Math.max(0, state.published - 1) };
  return { state: next, wakeAt: now + FIRST_REPEAT_MS };
}

/** The wait after the n-th advert: 1 s, 2 s, 4 s… while starting, then the heartbeat. */
function repeatAfter(published: number, timing: AdvertTiming): number {
  return Math.min(timing.heartbeatMs, FIRST_REPEAT_MS * 2 ** Math.min(30, Math.max(0, published - 1)));
}

function describe(terms: AdvertTerms): string {
  return [
    terms.pricePerMegaFuel,
    terms.slots,
    terms.maxFuel,
    terms.maxMemoryPages,
    terms.multiaddrs.join(","),
  ].join("|");
}

export interface AdvertPublisherPorts {
  now(): number;
  /** Calls `fire` after `delayMs`; the returned function cancels it. */
  after(delayMs: number, fire: () => void): () => void;
  terms(): AdvertTerms;
  /** An advert goes out only while the registry has this donor active. */
  selfActive(): Promise<boolean>;
  /** Resolves with the number of peers the advert was sent to (undefined: not known). */
  publish(seq: number, terms: AdvertTerms): Promise<number | void>;
  onError(err: unknown): void;
}

/** While this donor is not (yet) active in the registry, how often that is looked at again. */
const INACTIVE_RETRY_MS = 2_000;

/** The timer around decideAdvert. `poke()` after a change of the donor's terms (price, limits, addresses). */
export class AdvertPublisher {
  readonly #ports: AdvertPublisherPorts;
  readonly #timing: AdvertTiming;
  #state = initialPublisherState();
  #cancel: (() => void) | undefined;
  #wakeAt = Infinity;
  #busy = false;
  /** A poke or a timer came while an advert was going out: look again once it is out. */
  #missed = false;
  #stopped = true;

  constructor(ports: AdvertPublisherPorts, timing: AdvertTiming) {
    this.#ports = ports;
    this.#timing = timing;
  }

  start(): void {
    this.#stopped = false;
    this.#review();
  }

  stop(): void {
    this.#stopped = true;
    this.#cancel?.();
    this.#cancel = undefined;
  }

  poke(): void {
    this.#review();
  }

  #review(): void {
    if (this.#stopped) return;
    if (this.#busy) {
      this.#missed = true;
      return;
    }
    const now = this.#ports.now();
    const terms = this.#ports.terms();
    const decision = decideAdvert(this.#state, terms, now, this.#timing);
    if (decision.publish === undefined) {
      if (decision.wakeAt !== this.#wakeAt) this.#wake(decision.wakeAt);
      return;
    }
    this.#busy = true;
    void this.#publish(decision, terms).finally(() => {
      this.#busy = false;
      if (this.#missed) {
        this.#missed = false;
        this.#review();
      }
    });
  }

  async #publish(decision: PublisherDecision, terms: AdvertTerms): Promise<void> {
    const active = await this.#ports.selfActive().catch((err: unknown) => {
      this.#ports.onError(err);
      return false;
    });
    if (!active) return this.#wake(this.#ports.now() + INACTIVE_RETRY_MS);
    this.#state = decision.state;
    this.#wake(decision.wakeAt);
    // an advert that failed is not retried: the next change or heartbeat says the same
    const reached = await this.#ports
      .publish(decision.publish!.seq, terms)
      .catch((err: unknown) => this.#ports.onError(err));
    if (reached === 0 && !this.#stopped) {
      const unheard = advertUnheard(this.#state, this.#ports.now());
      this.#state = unheard.state;
      this.#wake(unheard.wakeAt);
    }
  }

  #wake(at: number): void {
    if (this.#stopped) return;
    this.#cancel?.();
    this.#wakeAt = at;
    this.#cancel = this.#ports.after(Math.max(0, at - this.#ports.now()), () => {
      this.#cancel = undefined;
      this.#wakeAt = Infinity;
      this.#review();
    });
  }
}
