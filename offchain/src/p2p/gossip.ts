import { TopicValidatorResult, type GossipSub, type Message } from "@libp2p/gossipsub";
import type { Logger } from "pino";
import { decodeMessage, encodeMessage, type Schema } from "./codec.ts";
import { MeshError } from "./errors.ts";
import type { PenaltyBook } from "./penalties.ts";
import { KeyedRateLimiter, TokenBucket } from "./token-bucket.ts";

const NO_SUBSCRIBERS = "PublishError.NoPeersSubscribedToTopic";

export interface TopicOptions {
  /** Largest JSON message accepted or sent on this topic. */
  maxBytes?: number;
  /** Messages per second accepted from one origin peer on this topic. */
  ratePerSecond?: number;
  burst?: number;
}

export interface GossipLimits {
  topicMaxBytes: number;
  inboundRatePerSecond: number;
  inboundBurst: number;
  /** Pace of our own publishing, all topics together. */
  publishRatePerSecond: number;
  publishBurst: number;
  /** Publishes waiting beyond this many are refused with `queue_full`. */
  publishQueueMax: number;
}

export type GossipHandler<T> = (message: T, fromPeerId: string) => void | Promise<void>;

interface QueuedPublish {
  topic: string;
  data: Uint8Array;
  resolve: (recipients: number) => void;
  reject: (err: Error) => void;
}

/**
 * Topic subscriptions with schema validation and per-origin rate limits, and a paced
 * publish queue: gossipsub has no backpressure, so a burst is spread out, not dropped.
 */
export class Gossip {
  readonly #pubsub: GossipSub;
  readonly #penalties: PenaltyBook;
  readonly #log: Logger;
  readonly #limits: GossipLimits;
  readonly #accepted = new WeakMap<Message, unknown>();
  readonly #handlers = new Map<string, GossipHandler<unknown>>();
  readonly #topicMaxBytes = new Map<string, number>();
  readonly #publishBucket: TokenBucket;
  readonly #queue: QueuedPublish[] = [];
  #pumpTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(pubsub: GossipSub, penalties: PenaltyBook, log: Logger, limits: GossipLimits) {
    this.#pubsub = pubsub;
    this.#penalties = penalties;
    this.#log = log;
    this.#limits = limits;
    this.#publishBucket = new TokenBucket(limits.publishRatePerSecond, limits.publishBurst);
    pubsub.addEventListener("message", (event) => this.#deliver(event.detail));
  }

  subscribe<T>(
    topic: string,
    schema: Schema<T>,
    handler: GossipHandler<T>,
    options: TopicOptions = {},
  ): () => void {
    if (this.#handlers.has(topic)) throw new Error(`already subscribed to ${topic}`);
    const maxBytes = options.maxBytes ?? this.#limits.topicMaxBytes;
    const ratePerSecond = options.ratePerSecond ?? this.#limits.inboundRatePerSecond;
    const limiter = new KeyedRateLimiter(ratePerSecond, options.burst ?? this.#limits.inboundBurst);
    this.#topicMaxBytes.set(topic, maxBytes);
    this.#handlers.set(topic, handler as GossipHandler<unknown>);
    this.#pubsub.topicValidators.set(topic, (propagationSource, message) => {
      const origin = message.type === "signed" ? message.from.toString() : propagationSource.toString();
      if (!limiter.tryTake(origin)) {
        this.#reject(origin, topic, "rate_limited", `over ${ratePerSecond} messages/s on ${topic}`);
        return TopicValidatorResult.Ignore;
      }
      try {
        this.#accepted.set(message, decodeMessage(schema, message.data, maxBytes, `message on ${topic}`));
        return TopicValidatorResult.Accept;
      } catch (err) {
        const { code, reason } = err as MeshError;
        this.#reject(origin, topic, code === "too_large" ? "too_large" : "malformed", reason);
        return TopicValidatorResult.Reject;
      }
    });
    this.#pubsub.subscribe(topic);
    return () => {
      this.#pubsub.unsubscribe(topic);
      this.#pubsub.topicValidators.delete(topic);
      this.#handlers.delete(topic);
    };
  }

  /**
   * Queues a message for paced publishing. Resolves with the number of peers it was sent
   * to once it leaves the queue; rejects at once if the queue is full or the message is
   * invalid or too large.
   */
  publish<T>(
    topic: string,
    schema: Schema<T>,
    message: T,
    options: { maxBytes?: number } = {},
  ): Promise<number> {
    if (this.#stopped) return Promise.reject(new MeshError("stopped", "the mesh node is stopped"));
    const maxBytes = options.maxBytes ?? this.#topicMaxBytes.get(topic) ?? this.#limits.topicMaxBytes;
    if (this.#queue.length >= this.#limits.publishQueueMax) {
      return Promise.reject(new MeshError("queue_full", `${this.#queue.length} publishes already waiting`));
    }
    let data: Uint8Array;
    try {
      data = encodeMessage(schema, message, maxBytes, `message for ${topic}`);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ topic, data, resolve, reject });
      this.#pump();
    });
  }

  queueDepth(): number {
    return this.#queue.length;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#pumpTimer);
    for (const item of this.#queue.splice(0)) item.reject(new MeshError("stopped", "the mesh node stopped"));
  }

  #pump(): void {
    if (this.#pumpTimer !== undefined || this.#stopped) return;
    while (this.#queue.length > 0 && this.#publishBucket.tryTake()) this.#send(this.#queue.shift()!);
    if (this.#queue.length > 0) {
      this.#pumpTimer = setTimeout(
        () => {
          this.#pumpTimer = undefined;
          this.#pump();
        },
        Math.max(1, this.#publishBucket.msUntilToken()),
      );
    }
  }

  #send(item: QueuedPublish): void {
    this.#pubsub.publish(item.topic, item.data).then(
      (result) => item.resolve(result.recipients.length),
      (err: Error) => {
        if (err.message === NO_SUBSCRIBERS) item.resolve(0);
        else
          item.reject(
            new MeshError("unreachable", `publish on ${item.topic} failed: ${err.message}`, { cause: err }),
          );
      },
    );
  }

  #deliver(message: Message): void {
    const handler = this.#handlers.get(message.topic);
    if (handler === undefined || !this.#accepted.has(message)) return;
    const from = message.type === "signed" ? message.from.toString() : "unknown";
    Promise.resolve()
      .then(() => handler(this.#accepted.get(message), from))
      .catch((err: Error) =>
        this.#log.warn({ topic: message.topic, from, err: err.message }, "gossip handler failed"),
      );
  }

  #reject(
    peerId: string,
    topic: string,
    reason: "malformed" | "too_large" | "rate_limited",
    detail: string,
  ): void {
    this.#log.debug({ remotePeer: peerId, topic, reason, detail }, "gossip message rejected");
    this.#penalties.record({ peerId, reason, protocol: topic, detail });
  }
}
