import { TopicValidatorResult, type GossipSub, type Message } from "@libp2p/gossipsub";
import {
  createTopicScoreParams,
  validateTopicScoreParams,
  type PeerScoreParams,
  type TopicScoreParams,
} from "@libp2p/gossipsub/score";
import type { Connection } from "@libp2p/interface";
import { Queue } from "@libp2p/utils";
import type { Logger } from "pino";
import { decodeMessage, encodeMessage, type Schema } from "./codec.ts";
import { MeshError } from "./errors.ts";
import { openOutboundStreamsTogether, type OutboundStreamRouter } from "./outbound-streams.ts";
import type { PenaltyBook } from "./penalties.ts";
import { KeyedRateLimiter, TokenBucket } from "./token-bucket.ts";

const NO_SUBSCRIBERS = "PublishError.NoPeersSubscribedToTopic";

export interface TopicOptions {
  /** Largest JSON message accepted or sent on this topic. */
  maxBytes?: number;
  /** Messages per second accepted from one origin peer on this topic. */
  ratePerSecond?: number;
  burst?: number;
  /** Handler calls running at once on this topic. */
  handlerConcurrency?: number;
  /** Accepted messages waiting for a handler beyond the running ones; more are dropped as `overloaded`. */
  handlerQueueMax?: number;
  /**
   * Our own messages on this topic go to every connected subscriber, not only the mesh
   * peers: for rare messages that must reach the network soon after a node starts, before
   * its mesh has formed (capability adverts). Bounded by the connections a node keeps.
   */
  floodPublish?: boolean;
  /**
   * Checks a parsed message before it is delivered or relayed (evidence needs chain reads):
   * `accept` passes it on, `ignore` drops it, `reject` drops it and counts against the relay in
   * gossipsub's score. Whoever is blamed beyond that, the check itself decides. Checks share the
   * topic's handler bound: `handlerConcurrency` run at once, `handlerQueueMax` more wait, and a
   * message beyond it is ignored as `overloaded`.
   */
  verify?: (message: never, fromPeerId: string) => Promise<"accept" | "ignore" | "reject">;
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
  handlerConcurrency: number;
  handlerQueueMax: number;
}

/**
 * Gossipsub's score of each topic this node subscribes to. Only what a peer controls counts:
 * a relayed message that fails validation (P4, squared, so a few junk messages drive a peer
 * below the graylist threshold while a rare slip fades: the count halves every minute) and
 * a small reward for time in the mesh and first deliveries, capped by the router's
 * `topicScoreCap`. Mesh delivery deficits (P3, P3b) are not scored: market topics are quiet
 * for long stretches, which must not count against an honest peer.
 */
export const TOPIC_SCORE: Partial<TopicScoreParams> = {
  topicWeight: 1,
  timeInMeshWeight: 0.1,
  timeInMeshQuantum: 1_000,
  timeInMeshCap: 100,
  firstMessageDeliveriesWeight: 1,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 10,
  meshMessageDeliveriesWeight: 0,
  meshFailurePenaltyWeight: 0,
  invalidMessageDeliveriesWeight: -10,
  invalidMessageDeliveriesDecay: 0.5 ** (1 / 60),
};

/** TOPIC_SCORE completed with the library's defaults; the router checks only the params it starts with. */
const SCORED_TOPIC = createTopicScoreParams(TOPIC_SCORE);
validateTopicScoreParams(SCORED_TOPIC);

/** The parts of the gossipsub router that its public interface leaves out: the peer score. */
interface ScoringRouter {
  score: { params: PeerScoreParams };
  getScore(peerId: string): number;
}

/** Gossip traffic this node received, counted per topic it subscribes to. */
export interface GossipCounts {
  /** Every copy received from a peer, duplicates included (what the network costs this node). */
  copies: number;
  /** Distinct messages that reached validation. */
  messages: number;
}

/**
 * The router's outbound streams, one per peer, each opened on one connection. When that
 * connection closes while another to the peer stays open, the router drops the stream and
 * never opens a new one (it does so only when a peer connects): everything it would send
 * the peer is lost for good. `onPeerConnected` opens one on a given open connection.
 */
interface StreamingRouter {
  peers: Map<string, unknown>;
  streamsOutbound: Map<string, { rawStream?: { status?: string } }>;
  onPeerConnected(peerId: Connection["remotePeer"], connection: Connection): void;
}

/** The router's publish takes per-message options its public interface leaves out. */
interface PublishingRouter {
  publish(
    topic: string,
    data: Uint8Array,
    options: { floodPublish?: boolean },
  ): ReturnType<GossipSub["publish"]>;
}

/** Where the router takes in each message copy of an RPC; wrapped to count them. */
interface ReceivingRouter {
  handleReceivedMessage(from: unknown, message: { topic?: string }): Promise<void>;
}

const VERIFY_RESULTS = {
  accept: TopicValidatorResult.Accept,
  ignore: TopicValidatorResult.Ignore,
  reject: TopicValidatorResult.Reject,
} as const;

/** A topic's own check as gossipsub's validation result; a check that fails ignores the message. */
async function verified(check: Promise<keyof typeof VERIFY_RESULTS>): Promise<TopicValidatorResult> {
  try {
    return VERIFY_RESULTS[await check];
  } catch {
    return TopicValidatorResult.Ignore;
  }
}

function scoringOf(pubsub: GossipSub): ScoringRouter {
  const router = pubsub as unknown as Partial<ScoringRouter>;
  if (typeof router.getScore !== "function" || typeof router.score?.params?.topics !== "object")
    throw new Error("this gossipsub version does not expose peer scores");
  return router as ScoringRouter;
}

export type GossipHandler<T> = (message: T, fromPeerId: string) => void | Promise<void>;

interface QueuedPublish {
  topic: string;
  data: Uint8Array;
  resolve: (recipients: number) => void;
  reject: (err: Error) => void;
}

interface Subscription {
  handler: GossipHandler<unknown>;
  /**
   * Bound: `handlerConcurrency` calls run and at most `handlerQueueMax` more wait. Eviction:
   * none; a message arriving at the bound is dropped and counted as `overloaded`.
   */
  work: Queue<void>;
}

/** Outbound gossip streams being opened at once, each to a different peer (outbound-streams.ts). */
const OUTBOUND_STREAM_OPENS = 16;

/** How many times an origin's rate one relaying connection may carry on a topic. */
const RELAY_RATE_FACTOR = 8;

/**
 * Topic subscriptions with schema validation, per-origin rate limits, topic scoring and a
 * bounded handler queue per topic, and a paced publish queue: gossipsub has no
 * backpressure, so a burst of our own is spread out, not dropped.
 */
export class Gossip {
  readonly #pubsub: GossipSub;
  readonly #penalties: PenaltyBook;
  readonly #log: Logger;
  readonly #limits: GossipLimits;
  readonly #accepted = new WeakMap<Message, unknown>();
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #scoring: ScoringRouter;
  readonly #topicMaxBytes = new Map<string, number>();
  /** Topics whose own messages are flood-published. Bound: the subscribed topics. */
  readonly #floodTopics = new Set<string>();
  readonly #publishBucket: TokenBucket;
  readonly #queue: QueuedPublish[] = [];
  /** Bound: one entry per subscribed topic, removed on unsubscribe. */
  readonly #counts = new Map<string, GossipCounts>();
  #pumpTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(pubsub: GossipSub, penalties: PenaltyBook, log: Logger, limits: GossipLimits) {
    this.#pubsub = pubsub;
    this.#penalties = penalties;
    this.#log = log;
    this.#limits = limits;
    this.#publishBucket = new TokenBucket(limits.publishRatePerSecond, limits.publishBurst);
    this.#scoring = scoringOf(pubsub);
    openOutboundStreamsTogether(
      pubsub as unknown as OutboundStreamRouter<Connection["remotePeer"], Connection>,
      OUTBOUND_STREAM_OPENS,
    );
    pubsub.addEventListener("message", (event) => this.#deliver(event.detail));
    this.#countCopies(pubsub);
  }

  /**
   * Opens an outbound gossip stream to a connected peer that lost its own (see
   * StreamingRouter) on one of the peer's open connections; true if one was missing.
   */
  restoreOutboundStream(connections: Connection[]): boolean {
    const router = this.#pubsub as unknown as StreamingRouter;
    const open = connections.find((connection) => connection.status === "open");
    if (open === undefined) return false;
    const peerId = open.remotePeer.toString();
    if (!router.peers.has(peerId) || router.streamsOutbound.has(peerId)) return false;
    router.onPeerConnected(open.remotePeer, open);
    return true;
  }

  /** The router holds an outbound stream to the peer that it has not yet seen close. */
  closingOutboundStream(peerId: string): boolean {
    const stream = (this.#pubsub as unknown as StreamingRouter).streamsOutbound.get(peerId);
    return stream !== undefined && stream.rawStream?.status !== "open";
  }

  /** Gossip received so far, per subscribed topic. */
  counts(): Record<string, GossipCounts> {
    return Object.fromEntries([...this.#counts].map(([topic, counts]) => [topic, { ...counts }]));
  }

  subscribe<T>(
    topic: string,
    schema: Schema<T>,
    handler: GossipHandler<T>,
    options: TopicOptions = {},
  ): () => void {
    if (this.#subscriptions.has(topic)) throw new Error(`already subscribed to ${topic}`);
    const maxBytes = options.maxBytes ?? this.#limits.topicMaxBytes;
    const ratePerSecond = options.ratePerSecond ?? this.#limits.inboundRatePerSecond;
    const burst = options.burst ?? this.#limits.inboundBurst;
    const limiter = new KeyedRateLimiter(ratePerSecond, burst);
    // Origins cost nothing to mint, so the connection that relays is limited too (more
    // loosely: an honest relay forwards many origins); beyond it messages are ignored.
    const relayLimiter = new KeyedRateLimiter(RELAY_RATE_FACTOR * ratePerSecond, RELAY_RATE_FACTOR * burst);
    this.#topicMaxBytes.set(topic, maxBytes);
    if (options.floodPublish === true) this.#floodTopics.add(topic);
    const concurrency = options.handlerConcurrency ?? this.#limits.handlerConcurrency;
    const queueMax = options.handlerQueueMax ?? this.#limits.handlerQueueMax;
    const work = new Queue<void>({ concurrency, maxSize: concurrency + queueMax });
    const checks = new Queue<TopicValidatorResult>({ concurrency, maxSize: concurrency + queueMax });
    this.#subscriptions.set(topic, { handler: handler as GossipHandler<unknown>, work });
    const counts: GossipCounts = { copies: 0, messages: 0 };
    this.#counts.set(topic, counts);
    this.#scoring.score.params.topics[topic] = SCORED_TOPIC;
    this.#pubsub.topicValidators.set(topic, (propagationSource, message) => {
      counts.messages++;
      const origin = message.type === "signed" ? message.from.toString() : propagationSource.toString();
      if (!relayLimiter.tryTake(propagationSource.toString())) return TopicValidatorResult.Ignore;
      if (!limiter.tryTake(origin)) {
        this.#reject(origin, topic, "rate_limited", `over ${ratePerSecond} messages/s on ${topic}`);
        return TopicValidatorResult.Ignore;
      }
      try {
        const decoded = decodeMessage(schema, message.data, maxBytes, `message on ${topic}`);
        this.#accepted.set(message, decoded);
        const { verify } = options;
        if (verify === undefined) return TopicValidatorResult.Accept;
        if (checks.size >= checks.maxSize) {
          this.#reject(
            origin,
            topic,
            "overloaded",
            `${checks.size} messages already being checked on ${topic}`,
          );
          return TopicValidatorResult.Ignore;
        }
        return checks
          .add(() => verified(verify(decoded as never, origin)))
          .catch(() => TopicValidatorResult.Ignore);
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
      this.#subscriptions.delete(topic);
      this.#counts.delete(topic);
      this.#floodTopics.delete(topic);
      work.abort();
      checks.abort();
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

  /** Handler calls running or waiting on a topic. */
  handlerBacklog(topic: string): number {
    return this.#subscriptions.get(topic)?.work.size ?? 0;
  }

  /** Gossipsub's score of a peer: below the graylist threshold its messages are ignored. */
  score(peerId: string): number {
    return this.#scoring.getScore(peerId);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#pumpTimer);
    for (const { work } of this.#subscriptions.values()) work.abort();
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
    const floodPublish = this.#floodTopics.has(item.topic);
    (this.#pubsub as PublishingRouter).publish(item.topic, item.data, { floodPublish }).then(
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

  /** Counts each message copy as the router takes it in, before duplicates are dropped. */
  #countCopies(pubsub: GossipSub): void {
    const router = pubsub as unknown as Partial<ReceivingRouter>;
    const receive = router.handleReceivedMessage;
    if (typeof receive !== "function")
      throw new Error("this gossipsub version does not expose message intake");
    router.handleReceivedMessage = (from, message) => {
      const counts = message.topic === undefined ? undefined : this.#counts.get(message.topic);
      if (counts !== undefined) counts.copies++;
      return receive.call(pubsub, from, message);
    };
  }

  #deliver(message: Message): void {
    const subscription = this.#subscriptions.get(message.topic);
    if (subscription === undefined || !this.#accepted.has(message)) return;
    const from = message.type === "signed" ? message.from.toString() : "unknown";
    const { handler, work } = subscription;
    if (work.size >= work.maxSize) {
      const detail = `${work.size} messages already handled or waiting on ${message.topic}`;
      this.#reject(from, message.topic, "overloaded", detail);
      return;
    }
    const body = this.#accepted.get(message);
    work
      .add(async () => handler(body, from))
      .catch((err: Error) => {
        if (err.name !== "AbortError")
          this.#log.warn({ topic: message.topic, from, err: err.message }, "gossip handler failed");
      });
  }

  #reject(
    peerId: string,
    topic: string,
    reason: "malformed" | "too_large" | "rate_limited" | "overloaded",
    detail: string,
  ): void {
    this.#log.debug({ remotePeer: peerId, topic, reason, detail }, "gossip message rejected");
    this.#penalties.record({ peerId, reason, protocol: topic, detail });
  }
}
