import type { Connection, Libp2p, PeerId, Stream } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { lpStream, type LengthPrefixedStream } from "@libp2p/utils";
import { multiaddr } from "@multiformats/multiaddr";
import type { Logger } from "pino";
import { z } from "zod/v4";
import { decodeMessage, encodeMessage, parseWith, type Schema } from "./codec.ts";
import { MeshError, REJECT_REASONS, type RejectReason } from "./errors.ts";
import type { PenaltyBook } from "./penalties.ts";
import { KeyedRateLimiter } from "./token-bucket.ts";

/** A request-response protocol: schemas and bounds for both directions. */
export interface ProtocolSpec<Req, Res> {
  request: Schema<Req>;
  response: Schema<Res>;
  /** Largest request frame (JSON bytes) accepted. */
  maxRequestBytes: number;
  /** Largest response frame (JSON bytes, including the `{"ok":…}` envelope) accepted. */
  maxResponseBytes: number;
  /** Requests per second served to one peer on this protocol. */
  ratePerSecond?: number;
  burst?: number;
  /** Concurrent inbound streams per connection. */
  maxInboundStreams?: number;
}

export type RequestHandler<Req, Res> = (request: Req, fromPeerId: string) => Promise<Res>;

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface RpcLimits {
  ratePerSecond: number;
  burst: number;
  maxInboundStreams: number;
  /** Long-lived outbound streams kept per (peer, protocol). */
  streamsPerPeer: number;
  /** (peer, protocol) pools kept at once (default 1,024). */
  maxPools?: number;
  /** Requests waiting for a stream of one full pool (default 1,024). */
  maxWaiters?: number;
  timeoutMs: number;
}

/**
 * Makes sure the peer store knows addresses of a peer before it is dialed; `refresh` looks
 * them up even when some are on record (they may be stale after a restart).
 */
export type PeerLocator = (peerId: string, signal: AbortSignal, refresh: boolean) => Promise<void>;

/** A peer id string, or a multiaddr string ending in `/p2p/<peer id>`. */
export type RequestTarget = string | PeerId;

const errorEnvelope = z
  .object({ error: z.object({ code: z.string().max(64), reason: z.string().max(2048) }) })
  .strict();
const okEnvelope = z.object({ ok: z.unknown() }).strict();
const replyEnvelope = z.union([okEnvelope, errorEnvelope]);
const FRAME_SLACK = 64;

/**
 * A request's timeout, cleared when the request ends. `AbortSignal.timeout` cannot be
 * cleared: its timer fires long after the answer came and, while the signal is still
 * reachable, aborts it, building a DOMException with a stack trace each time (at 33 nodes
 * 0.36 s of the buyer's CPU a minute, for requests answered long before).
 */
class RequestDeadline {
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;

  constructor(timeoutMs: number) {
    this.#timer = setTimeout(
      () => this.#controller.abort(new DOMException("the request timed out", "TimeoutError")),
      timeoutMs,
    );
    // like AbortSignal.timeout's: a pending request does not keep the process alive
    this.#timer.unref();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}

function isRejectReason(code: string): code is RejectReason {
  return (REJECT_REASONS as readonly string[]).includes(code);
}

function errorFrame(code: RejectReason, reason: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ error: { code, reason: reason.slice(0, 2048) } }));
}

interface PooledStream {
  stream: Stream;
  lp: LengthPrefixedStream<Stream>;
  busy: boolean;
  /** Completed request-response exchanges on this stream. */
  exchanges: number;
}

interface StreamPool {
  streams: PooledStream[];
  /** Pooled streams being opened, counted so concurrent callers do not overfill the pool. */
  opening: number;
  /** Requests waiting for a stream of a full pool: handed a stream, or woken to retry. */
  waiters: Array<(handedOver?: PooledStream) => void>;
}

/**
 * Request-response over length-prefixed JSON frames, one long-lived stream serving many requests.
 *
 * Bounds of the outbound stream pools: `streamsPerPeer` streams per (peer, protocol);
 * `maxWaiters` requests waiting for a full pool, more refused with `queue_full`; `maxPools`
 * pools, a pool dropped as soon as it holds nothing (so a peer that was never reached leaves
 * no entry), and at the bound the least recently used idle pool is closed for a new one (or,
 * when every pool is busy, the request is refused with `queue_full`). Inbound: per-protocol
 * rate limiters (bounded, see KeyedRateLimiter) and `maxInboundStreams` per connection.
 */
export class Rpc {
  readonly #libp2p: Libp2p;
  readonly #penalties: PenaltyBook;
  readonly #log: Logger;
  readonly #limits: RpcLimits;
  /** Least recently used first. */
  readonly #pools = new Map<string, StreamPool>();
  readonly #maxPools: number;
  readonly #maxWaiters: number;
  readonly #handled = new Set<string>();
  /** Requests served and sent, per protocol. Bound: the protocols this node handles or calls (fixed in code). */
  readonly #served = new Map<string, number>();
  readonly #sent = new Map<string, number>();
  readonly #locate: PeerLocator;

  constructor(libp2p: Libp2p, penalties: PenaltyBook, log: Logger, limits: RpcLimits, locate: PeerLocator) {
    this.#libp2p = libp2p;
    this.#locate = locate;
    this.#penalties = penalties;
    this.#log = log;
    this.#limits = limits;
    this.#maxPools = limits.maxPools ?? 1_024;
    this.#maxWaiters = limits.maxWaiters ?? 1_024;
    libp2p.addEventListener("peer:disconnect", (event) => this.#forgetPeer(event.detail.toString()));
  }

  async handle<Req, Res>(
    protocol: string,
    spec: ProtocolSpec<Req, Res>,
    handler: RequestHandler<Req, Res>,
  ): Promise<void> {
    const limiter = new KeyedRateLimiter(
      spec.ratePerSecond ?? this.#limits.ratePerSecond,
      spec.burst ?? this.#limits.burst,
    );
    const serve = (stream: Stream, connection: Connection): void => {
      void this.#serve(stream, connection.remotePeer.toString(), protocol, spec, limiter, handler);
    };
    const maxInboundStreams = spec.maxInboundStreams ?? this.#limits.maxInboundStreams;
    if (this.#handled.has(protocol)) throw new Error(`a handler for ${protocol} is already registered`);
    this.#handled.add(protocol);
    // The registrar installs the handler synchronously, then records the protocol in the peer
    // store, whose per-peer lock can be held for seconds during start-up: do not wait for that.
    this.#libp2p.handle(protocol, serve, { maxInboundStreams }).catch((err: Error) => {
      this.#handled.delete(protocol);
      this.#log.error({ protocol, err: err.message }, "protocol registration failed");
    });
  }

  async request<Req, Res>(
    target: RequestTarget,
    protocol: string,
    spec: ProtocolSpec<Req, Res>,
    message: Req,
    options: RequestOptions = {},
  ): Promise<Res> {
    const frame = encodeMessage(spec.request, message, spec.maxRequestBytes, `request for ${protocol}`);
    const timeoutMs = options.timeoutMs ?? this.#limits.timeoutMs;
    const deadline = new RequestDeadline(timeoutMs);
    const signal = options.signal ? AbortSignal.any([deadline.signal, options.signal]) : deadline.signal;
    try {
      return await this.#exchange(target, protocol, spec, frame, signal, timeoutMs);
    } finally {
      deadline.clear();
    }
  }

  async #exchange<Req, Res>(
    target: RequestTarget,
    protocol: string,
    spec: ProtocolSpec<Req, Res>,
    frame: Uint8Array,
    signal: AbortSignal,
    timeoutMs: number,
  ): Promise<Res> {
    const peerId = await this.#resolve(target, signal);
    this.#sent.set(protocol, (this.#sent.get(protocol) ?? 0) + 1);
    for (;;) {
      const pooled = await this.#acquire(peerId, protocol, spec, signal);
      const reused = pooled.exchanges > 0;
      let reply: Uint8Array;
      try {
        await pooled.lp.write(frame, { signal });
        reply = (await pooled.lp.read({ signal })).subarray();
      } catch (err) {
        this.#discard(peerId, protocol, pooled, err as Error);
        if (isFrameTooLong(err)) {
          const reason = `response on ${protocol} exceeds ${spec.maxResponseBytes} bytes`;
          this.#reject(peerId, protocol, "too_large", reason);
          throw new MeshError("too_large", reason);
        }
        if (signal.aborted)
          throw new MeshError("timeout", `no answer on ${protocol} from ${peerId} within ${timeoutMs} ms`);
        // a pooled stream the peer closed while idle fails on first use: retry on a fresh one
        if (reused) continue;
        throw new MeshError("unreachable", `${protocol} to ${peerId} failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
      pooled.exchanges += 1;
      return this.#readReply(peerId, protocol, spec, pooled, reply);
    }
  }

  /** Requests received (served or refused) and sent so far, per protocol. */
  counts(): { received: Record<string, number>; sent: Record<string, number> } {
    return { received: Object.fromEntries(this.#served), sent: Object.fromEntries(this.#sent) };
  }

  async stop(): Promise<void> {
    const streams = [...this.#pools.values()].flatMap((pool) => pool.streams);
    this.#pools.clear();
    await Promise.all(streams.map(({ stream }) => stream.close().catch((err: Error) => stream.abort(err))));
  }

  async #serve<Req, Res>(
    stream: Stream,
    peerId: string,
    protocol: string,
    spec: ProtocolSpec<Req, Res>,
    limiter: KeyedRateLimiter,
    handler: RequestHandler<Req, Res>,
  ): Promise<void> {
    const lp = lpStream(stream, {
      maxDataLength: spec.maxRequestBytes,
      maxBufferSize: 2 * spec.maxRequestBytes + FRAME_SLACK,
    });
    try {
      for (;;) {
        let frame: Uint8Array;
        try {
          frame = (await lp.read()).subarray();
        } catch (err) {
          if (!isFrameTooLong(err)) break;
          const reason = `request frame exceeds ${spec.maxRequestBytes} bytes`;
          this.#reject(peerId, protocol, "too_large", reason);
          await lp.write(errorFrame("too_large", reason));
          break; // the rest of the oversized frame is still in flight: the stream cannot resync
        }
        await lp.write(await this.#answer(peerId, protocol, spec, limiter, handler, frame));
      }
      await stream.close();
    } catch (err) {
      stream.abort(err as Error);
    }
  }

  async #answer<Req, Res>(
    peerId: string,
    protocol: string,
    spec: ProtocolSpec<Req, Res>,
    limiter: KeyedRateLimiter,
    handler: RequestHandler<Req, Res>,
    frame: Uint8Array,
  ): Promise<Uint8Array> {
    this.#served.set(protocol, (this.#served.get(protocol) ?? 0) + 1);
    if (!limiter.tryTake(peerId)) {
      const reason = `over ${spec.ratePerSecond ?? this.#limits.ratePerSecond} requests/s on ${protocol}`;
      this.#reject(peerId, protocol, "rate_limited", reason);
      return errorFrame("rate_limited", reason);
    }
    let request: Req;
    try {
      request = decodeMessage(spec.request, frame, spec.maxRequestBytes, `request on ${protocol}`);
    } catch (err) {
      const { code, reason } = err as MeshError;
      const refusal = code === "too_large" ? "too_large" : "malformed";
      this.#reject(peerId, protocol, refusal, reason);
      return errorFrame(refusal, reason);
    }
    try {
      const response = await handler(request, peerId);
      return new TextEncoder().encode(
        JSON.stringify({ ok: parseWith(spec.response, response, `response on ${protocol}`) }),
      );
    } catch (err) {
      return this.#handlerFailure(peerId, protocol, err as Error);
    }
  }

  /** A handler may throw a MeshError to refuse a request for a reason of the peer's making. */
  #handlerFailure(peerId: string, protocol: string, err: Error): Uint8Array {
    if (err instanceof MeshError && isRejectReason(err.code) && err.code !== "handler_error") {
      this.#reject(peerId, protocol, err.code, err.reason);
      return errorFrame(err.code, err.reason);
    }
    this.#log.warn({ remotePeer: peerId, protocol, err: err.message }, "request handler failed");
    return errorFrame("handler_error", err.message);
  }

  #readReply<Req, Res>(
    peerId: string,
    protocol: string,
    spec: ProtocolSpec<Req, Res>,
    pooled: PooledStream,
    reply: Uint8Array,
  ): Res {
    let envelope: z.infer<typeof replyEnvelope>;
    try {
      envelope = decodeMessage(replyEnvelope, reply, spec.maxResponseBytes, `response on ${protocol}`);
    } catch (err) {
      this.#discard(peerId, protocol, pooled, err as Error);
      this.#reject(peerId, protocol, "malformed", (err as MeshError).reason);
      throw err;
    }
    if ("error" in envelope) {
      const { code, reason } = envelope.error;
      // a peer closes the stream after a too_large request: its remaining bytes cannot be resynced
      if (code === "too_large")
        this.#discard(peerId, protocol, pooled, new Error("closed by peer after too_large"));
      else this.#release(peerId, protocol, pooled);
      throw new MeshError(isRejectReason(code) ? code : "unknown", reason);
    }
    this.#release(peerId, protocol, pooled);
    try {
      return parseWith(spec.response, envelope.ok, `response on ${protocol}`);
    } catch (err) {
      this.#reject(peerId, protocol, "malformed", (err as MeshError).reason);
      throw err;
    }
  }

  async #resolve(target: RequestTarget, signal: AbortSignal): Promise<string> {
    if (typeof target !== "string") return target.toString();
    if (!target.startsWith("/")) return target;
    const connection = await this.#libp2p.dial(multiaddr(target), { signal }).catch((err: Error) => {
      throw new MeshError("unreachable", `cannot dial ${target}: ${err.message}`, { cause: err });
    });
    return connection.remotePeer.toString();
  }

  /** An idle pooled stream, a new one while the pool has room, or else the next one freed. */
  async #acquire(
    peerId: string,
    protocol: string,
    spec: ProtocolSpec<unknown, unknown>,
    signal: AbortSignal,
  ): Promise<PooledStream> {
    const key = `${peerId} ${protocol}`;
    for (;;) {
      // looked up on every pass: a pool emptied while this call waited may have been dropped
      const pool = this.#usePool(key);
      removeWhere(pool.streams, ({ stream }) => !isUsable(stream));
      const idle = pool.streams.find((pooled) => !pooled.busy);
      if (idle !== undefined) {
        idle.busy = true;
        return idle;
      }
      if (pool.streams.length + pool.opening < this.#limits.streamsPerPeer)
        return this.#open(pool, peerId, protocol, spec, signal);
      if (pool.waiters.length >= this.#maxWaiters)
        throw new MeshError(
          "queue_full",
          `${pool.waiters.length} requests already wait for ${protocol} to ${peerId}`,
        );
      const handedOver = await this.#streamFreed(pool, peerId, protocol, signal);
      if (handedOver === undefined) continue;
      if (isUsable(handedOver.stream)) return handedOver;
      handedOver.busy = false; // dropped from the pool on the next pass, which frees a slot
    }
  }

  async #open(
    pool: StreamPool,
    peerId: string,
    protocol: string,
    spec: ProtocolSpec<unknown, unknown>,
    signal: AbortSignal,
  ): Promise<PooledStream> {
    pool.opening += 1;
    try {
      const stream = await this.#dialProtocol(peerId, protocol, signal);
      const maxFrame = spec.maxResponseBytes;
      const pooled = {
        stream,
        lp: lpStream(stream, { maxDataLength: maxFrame, maxBufferSize: maxFrame + FRAME_SLACK }),
        busy: true,
        exchanges: 0,
      };
      pool.streams.push(pooled);
      return pooled;
    } catch (err) {
      pool.waiters.shift()?.(); // the slot this call held is free again
      this.#dropIfEmpty(`${peerId} ${protocol}`, pool, 1);
      if (signal.aborted) throw new MeshError("timeout", `opening ${protocol} to ${peerId} timed out`);
      const code = (err as Error).name === "UnsupportedProtocolError" ? "unsupported" : "unreachable";
      throw new MeshError(code, `cannot open ${protocol} to ${peerId}: ${(err as Error).message}`, {
        cause: err,
      });
    } finally {
      pool.opening -= 1;
    }
  }

  /** Dials with the addresses on record, and once more after a DHT lookup if those fail. */
  async #dialProtocol(peerId: string, protocol: string, signal: AbortSignal): Promise<Stream> {
    const id = peerIdFromString(peerId);
    await this.#locate(peerId, signal, false);
    try {
      return await this.#libp2p.dialProtocol(id, protocol, { signal });
    } catch (err) {
      const retriable = !signal.aborted && (err as Error).name !== "UnsupportedProtocolError";
      if (!retriable || this.#libp2p.getConnections(id).length > 0) throw err;
      await this.#locate(peerId, signal, true);
      return this.#libp2p.dialProtocol(id, protocol, { signal });
    }
  }

  /** Resolves with a stream handed over by `#release`, or undefined when a slot opened up. */
  #streamFreed(
    pool: StreamPool,
    peerId: string,
    protocol: string,
    signal: AbortSignal,
  ): Promise<PooledStream | undefined> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        removeWhere(pool.waiters, (entry) => entry === wake);
        reject(new MeshError("timeout", `no free stream for ${protocol} to ${peerId} in time`));
      };
      const wake = (pooled?: PooledStream): void => {
        signal.removeEventListener("abort", onAbort);
        resolve(pooled);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      pool.waiters.push(wake);
    });
  }

  /** Hands a stream whose exchange finished straight to the longest waiter, or marks it idle. */
  #release(peerId: string, protocol: string, pooled: PooledStream): void {
    const next = this.#pools.get(`${peerId} ${protocol}`)?.waiters.shift();
    if (next === undefined) pooled.busy = false;
    else next(pooled);
  }

  /** The pool of a (peer, protocol), made most recently used; a new one may close an idle one. */
  #usePool(key: string): StreamPool {
    let pool = this.#pools.get(key);
    if (pool !== undefined) {
      this.#pools.delete(key);
    } else {
      if (this.#pools.size >= this.#maxPools && !this.#closeIdlePool())
        throw new MeshError("queue_full", `all ${this.#pools.size} outbound stream pools are in use`);
      pool = { streams: [], opening: 0, waiters: [] };
    }
    this.#pools.set(key, pool);
    return pool;
  }

  /** Closes the least recently used pool with no request under way; false if every pool is busy. */
  #closeIdlePool(): boolean {
    for (const [key, pool] of this.#pools) {
      if (pool.opening > 0 || pool.waiters.length > 0 || pool.streams.some((pooled) => pooled.busy)) continue;
      this.#pools.delete(key);
      for (const { stream } of pool.streams) stream.close().catch((err: Error) => stream.abort(err));
      return true;
    }
    return false;
  }

  /** Forgets a pool that holds no stream, opening or waiter (`opening` counts calls still winding down). */
  #dropIfEmpty(key: string, pool: StreamPool, stillOpening = 0): void {
    if (pool.streams.length === 0 && pool.opening <= stillOpening && pool.waiters.length === 0)
      if (this.#pools.get(key) === pool) this.#pools.delete(key);
  }

  /** Pools kept (for tests and diagnostics). */
  get poolCount(): number {
    return this.#pools.size;
  }

  #forgetPeer(peerId: string): void {
    for (const [key, pool] of this.#pools) {
      if (!key.startsWith(`${peerId} `)) continue;
      removeWhere(pool.streams, ({ stream }) => !isUsable(stream));
      this.#dropIfEmpty(key, pool);
    }
  }

  #discard(peerId: string, protocol: string, pooled: PooledStream, reason: Error): void {
    pooled.stream.abort(reason);
    const key = `${peerId} ${protocol}`;
    const pool = this.#pools.get(key);
    if (pool === undefined) return;
    removeWhere(pool.streams, (entry) => entry === pooled);
    pool.waiters.shift()?.();
    this.#dropIfEmpty(key, pool);
  }

  #reject(peerId: string, protocol: string, reason: RejectReason, detail: string): void {
    this.#log.debug({ remotePeer: peerId, protocol, reason, detail }, "request rejected");
    this.#penalties.record({ peerId, reason, protocol, detail });
  }
}

function removeWhere<T>(items: T[], predicate: (item: T) => boolean): void {
  for (let i = items.length - 1; i >= 0; i--) if (predicate(items[i]!)) items.splice(i, 1);
}

function isUsable(stream: Stream): boolean {
  return (
    stream.status === "open" && stream.writeStatus === "writable" && stream.remoteWriteStatus === "writable"
  );
}

function isFrameTooLong(err: unknown): boolean {
  const name = (err as Error | undefined)?.name;
  return name === "InvalidDataLengthError" || name === "InvalidDataLengthLengthError";
}
