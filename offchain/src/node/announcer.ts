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

/** Least time between two announcements of one buyer. */
const LINGER_MS = 10;
/** Room left in a batch for its envelope. */
const ENVELOPE_BYTES = 64;

/**
 * Gossips job announces in batches. A job announced after a quiet spell goes out at once
 * (with whatever else is announced in the same turn of the event loop); while jobs keep
 * coming, they leave together at most every `LINGER_MS` (at most
 * `ANNOUNCE_BATCH_MAX_JOBS`, within the batch byte limit, per message).
 */
export class Announcer {
  readonly #mesh: MeshNode;
  readonly #log: Logger;
  #pending: JobAnnounce[] = [];
  #pendingBytes = ENVELOPE_BYTES;
  #timer: NodeJS.Timeout | undefined;
  #lastFlush = 0;

  constructor(mesh: MeshNode, log: Logger) {
    this.#mesh = mesh;
    this.#log = log;
  }

  announce(job: JobAnnounce): void {
    const bytes = JSON.stringify(job).length + 1;
    if (
      this.#pending.length >= ANNOUNCE_BATCH_MAX_JOBS ||
      this.#pendingBytes + bytes > MESSAGE_LIMITS.announceBatch
    )
      this.flush();
    this.#pending.push(job);
    this.#pendingBytes += bytes;
    const wait = Math.max(0, this.#lastFlush + LINGER_MS - performance.now());
    this.#timer ??= setTimeout(() => this.flush(), wait);
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    this.#lastFlush = performance.now();
    const batch = { type: "jobs" as const, jobs: this.#pending };
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
