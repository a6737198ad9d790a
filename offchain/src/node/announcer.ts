import type { Logger } from "pino";
import type { MeshNode } from "../p2p/index.ts";
import {
  ANNOUNCE_BATCH_MAX_JOBS,
  JobAnnounceBatchSchema,
  MESSAGE_LIMITS,
  TOPIC_JOBS,
} from "../protocol/index.ts";
import type { JobAnnounce } from "../protocol/index.ts";
import { detach } from "./util.ts";

/** Room left in a batch for its envelope. */
const ENVELOPE_BYTES = 64;

/**
 * Gossips the discovery announcements of jobs, rate-limited: at most one message per
 * `intervalMs`. A job announced after a quiet spell goes out at once (with whatever else is
 * announced in the same turn of the event loop); later ones wait for the next interval and
 * leave together.
 *
 * Bound: one batch waits (at most `ANNOUNCE_BATCH_MAX_JOBS` jobs within the batch byte
 * limit); a job beyond it is not announced (counted in `dropped`): it was asked of the
 * donors its buyer knows, and its placement retries later.
 */
export class Announcer {
  readonly #mesh: MeshNode;
  readonly #log: Logger;
  readonly #intervalMs: number;
  #pending: JobAnnounce[] = [];
  #pendingBytes = ENVELOPE_BYTES;
  #timer: NodeJS.Timeout | undefined;
  #lastFlush = Number.NEGATIVE_INFINITY;
  #announced = 0;
  #dropped = 0;

  constructor(mesh: MeshNode, log: Logger, intervalMs: number) {
    this.#mesh = mesh;
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  /** Jobs announced and jobs left out for the rate limit. */
  get stats(): { announced: number; dropped: number } {
    return { announced: this.#announced, dropped: this.#dropped };
  }

  announce(job: JobAnnounce): void {
    if (this.#pending.some((pending) => pending.jobId === job.jobId)) return;
    const bytes = JSON.stringify(job).length + 1;
    if (
      this.#pending.length >= ANNOUNCE_BATCH_MAX_JOBS ||
      this.#pendingBytes + bytes > MESSAGE_LIMITS.announceBatch
    ) {
      this.#dropped++;
      return;
    }
    this.#pending.push(job);
    this.#pendingBytes += bytes;
    const wait = Math.max(0, this.#lastFlush + this.#intervalMs - performance.now());
    this.#timer ??= setTimeout(() => this.flush(), wait);
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    this.#lastFlush = performance.now();
    const batch = { type: "jobs" as const, jobs: this.#pending };
    this.#announced += batch.jobs.length;
    this.#pending = [];
    this.#pendingBytes = ENVELOPE_BYTES;
    detach(
      this.#log,
      "announcing jobs",
      this.#mesh.publish(TOPIC_JOBS, JobAnnounceBatchSchema, batch, {
        maxBytes: MESSAGE_LIMITS.announceBatch,
      }),
    );
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending = [];
  }
}
