import { createHash } from "node:crypto";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { gossipsub, type GossipSub } from "@libp2p/gossipsub";
import { identify, identifyPush, type Identify, type IdentifyPush } from "@libp2p/identify";
import type { Libp2p, PeerId } from "@libp2p/interface";
import { kadDHT, passthroughMapper, type KadDHT } from "@libp2p/kad-dht";
import { peerIdFromString } from "@libp2p/peer-id";
import { ping, type Ping } from "@libp2p/ping";
import { tcp } from "@libp2p/tcp";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p } from "libp2p";
import { pino, type Logger } from "pino";
import { MAX_BLOCK_BYTES, type CID } from "../protocol/index.ts";
import { BlockExchange, type BlockSource, type FetchBlockOptions } from "./blocks.ts";
import { BootstrapSchedule, DEFAULT_BOOTSTRAP_POLICY, type BootstrapPolicy } from "./bootstrap.ts";
import type { Schema } from "./codec.ts";
import type { RejectReason } from "./errors.ts";
import { gatheredWrites } from "./gathered-writes.ts";
import { Gossip, type GossipCounts, type GossipHandler, type TopicOptions } from "./gossip.ts";
import { DEFAULT_PENALTY_POLICY, PenaltyBook, type PeerPenalties, type RejectEvent } from "./penalties.ts";
import { didKeyFromEd25519, peerKeyFromSeed } from "./peer-key.ts";
import {
  Rpc,
  type ProtocolSpec,
  type RequestHandler,
  type RequestOptions,
  type RequestTarget,
} from "./rpc.ts";
import { TrustedNetworks } from "./trusted.ts";

export interface MeshLimits {
  /** Default largest gossip message, per topic. */
  gossipMaxBytes: number;
  /** Gossip messages per second accepted from one origin peer, per topic. */
  gossipRatePerSecond: number;
  gossipBurst: number;
  /** Pace of our own publishing (all topics). Keep it below peers' gossipRatePerSecond. */
  publishRatePerSecond: number;
  publishBurst: number;
  publishQueueMax: number;
  /** Gossip handler calls running at once per topic; accepted messages beyond them wait. */
  gossipHandlerConcurrency: number;
  /** Messages waiting for a handler per topic; beyond this they are dropped as `overloaded`. */
  gossipHandlerQueueMax: number;
  /** Default requests per second served to one peer, per protocol. */
  requestRatePerSecond: number;
  requestBurst: number;
  maxInboundStreams: number;
  /** Long-lived outbound streams kept per (peer, protocol). */
  streamsPerPeer: number;
  /** (peer, protocol) stream pools kept; idle pools of the least recently used peers are closed beyond it. */
  maxStreamPools: number;
  /** Requests waiting for a stream of one full pool; more are refused with `queue_full`. */
  maxStreamWaiters: number;
  requestTimeoutMs: number;
  /** Largest block fetched; at most MAX_BLOCK_BYTES, the largest of the DATA_LIMITS. */
  maxBlockBytes: number;
  /** Penalty score at which a peer is disconnected and refused for blockMs. */
  penaltyThreshold: number;
  blockMs: number;
  /** Weight of each rejection reason in the penalty score. */
  penaltyWeights: Record<RejectReason, number>;
  /** Discovered peers are dialed while fewer than this many connections are open. */
  targetPeers: number;
}

/**
 * Smallest gossip message for which mesh peers are sent an IDONTWANT. Below this an
 * IDONTWANT frame to every mesh peer costs more to encrypt, send and read than the
 * duplicate it may spare: job announce batches are a few KB (gossipsub's default is 512 B).
 */
const IDONTWANT_MIN_BYTES = 16 * 1024;

export const DEFAULT_MESH_LIMITS: MeshLimits = {
  gossipMaxBytes: 64 * 1024,
  gossipRatePerSecond: 400,
  gossipBurst: 800,
  publishRatePerSecond: 200,
  publishBurst: 50,
  publishQueueMax: 10_000,
  gossipHandlerConcurrency: 64,
  gossipHandlerQueueMax: 1_024,
  requestRatePerSecond: 1000,
  requestBurst: 2000,
  maxInboundStreams: 32,
  streamsPerPeer: 4,
  maxStreamPools: 1_024,
  maxStreamWaiters: 1_024,
  requestTimeoutMs: 10_000,
  maxBlockBytes: MAX_BLOCK_BYTES,
  penaltyThreshold: DEFAULT_PENALTY_POLICY.blockThreshold,
  blockMs: DEFAULT_PENALTY_POLICY.blockMs,
  penaltyWeights: DEFAULT_PENALTY_POLICY.weights,
  targetPeers: 32,
};

export interface MeshNodeOptions {
  /** 32-byte Ed25519 seed of the peer key. */
  peerKeySeed: Uint8Array;
  listen?: string[];
  /**
   * Multiaddrs ending in /p2p/<peer id>, dialed at start and retried with backoff until
   * reached, and again whenever this node has lost most of its connections.
   */
  bootstrap?: string[];
  /** Dialed like bootstrap peers, but only after those (see BootstrapPolicy.dialPeers): e.g. peers seen before a restart. */
  fallbackPeers?: string[];
  bootstrapPolicy?: Partial<BootstrapPolicy>;
  /**
   * IP ranges (CIDR) of a network the operator runs, e.g. `127.0.0.0/8` for a devnet on one
   * host: peers there are exempt from gossipsub's IP-colocation score and libp2p's per-host
   * inbound connection limits and pruning (see TrustedNetworks). Empty on public networks.
   */
  trustedNetworks?: string[];
  /** Private prefix of the DHT protocol, so the mesh never mixes with the public DHT. */
  dhtProtocolPrefix?: string;
  logger?: Logger;
  limits?: Partial<MeshLimits>;
  /** Serves /cell/block/1 from this source at start; `serveBlocks` can set it later. */
  blockSource?: BlockSource;
}

export interface MeshServices {
  identify: Identify;
  identifyPush: IdentifyPush;
  ping: Ping;
  pubsub: GossipSub;
  dht: KadDHT;
  [key: string]: unknown;
}

/**
 * Gossipsub score thresholds (the library's defaults, stated): below -10 a peer is sent no
 * gossip, below -50 nothing is published to it, below -80 everything it sends is ignored.
 * Topic scores are set per topic as it is subscribed (TOPIC_SCORE in gossip.ts).
 */
export const GOSSIP_SCORE_THRESHOLDS = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
} as const;

/** What this node has received and sent so far (for benchmarks and diagnostics). */
export interface MeshStats {
  /** Gossip received per subscribed topic. */
  gossip: Record<string, GossipCounts>;
  /** Requests received (served or refused) and sent per protocol. */
  requests: { received: Record<string, number>; sent: Record<string, number> };
  connections: number;
  /** Connections opened (dialed or accepted) and closed since start: churn costs handshakes. */
  connectionsOpened: number;
  connectionsClosed: number;
  /** Gossip streams reopened on a remaining connection after the one carrying them closed. */
  gossipStreamsRestored: number;
}

const BOOTSTRAP_DIAL_TIMEOUT_MS = 5_000;
/**
 * Below this many connections a node looks for more peers in the DHT (a lookup of its own
 * id), first 2 s after start and then at doubling intervals up to a minute, until it has
 * them: its one start-up lookup ran when the bootstrap peers knew few others, and
 * gossipsub wants six mesh peers per topic. A node with enough connections never looks.
 */
const PEER_SEARCH_BELOW = 8;
const PEER_SEARCH_FIRST_MS = 2_000;
const PEER_SEARCH_MAX_MS = 60_000;
const PEER_SEARCH_BUDGET_MS = 10_000;
const STREAM_RESTORE_DELAY_MS = 50;
const STREAM_RESTORE_ATTEMPTS = 10;
/** A peer lookup gives up after this long, so an unreachable peer fails fast. */
const LOOKUP_BUDGET_MS = 3_000;

/** A libp2p host with schema-checked gossip, request-response and block exchange. */
export class MeshNode {
  readonly peerId: string;
  /** `did:key` of the peer key. */
  readonly did: string;
  /** The underlying host, for diagnostics and protocols this layer does not cover. */
  readonly libp2p: Libp2p<MeshServices>;
  #addresses: string[] | undefined;
  readonly #log: Logger;
  readonly #penalties: PenaltyBook;
  readonly #gossip: Gossip;
  readonly #rpc: Rpc;
  readonly #blocks: BlockExchange;
  readonly #bootstrap: BootstrapSchedule;
  /** Bootstrap address by peer id. Bound: the configured bootstrap list. */
  readonly #bootstrapByPeer = new Map<string, string>();
  #bootstrapTimer: NodeJS.Timeout | undefined;
  #bootstrapTimerAt = Infinity;
  #gossipStreamsRestored = 0;
  #connectionsOpened = 0;
  #connectionsClosed = 0;
  #peerSearchTimer: NodeJS.Timeout | undefined;
  /** When the pending peer search runs; -Infinity while one runs. */
  #peerSearchAt = Infinity;
  #peerSearchDelayMs = PEER_SEARCH_FIRST_MS;
  #targetPeers = DEFAULT_MESH_LIMITS.targetPeers;

  constructor(
    libp2p: Libp2p<MeshServices>,
    did: string,
    penalties: PenaltyBook,
    log: Logger,
    limits: MeshLimits,
    bootstrap: string[],
    bootstrapPolicy: BootstrapPolicy = DEFAULT_BOOTSTRAP_POLICY,
    fallbackPeers: string[] = [],
  ) {
    this.libp2p = libp2p;
    this.peerId = libp2p.peerId.toString();
    libp2p.addEventListener("self:peer:update", () => (this.#addresses = undefined));
    this.did = did;
    this.#log = log;
    this.#penalties = penalties;
    const own = (address: string) => address.split("/p2p/").at(-1) === this.peerId;
    for (const address of [...bootstrap, ...fallbackPeers]) {
      const peer = address.split("/p2p/").at(-1);
      if (peer !== undefined && !own(address) && !this.#bootstrapByPeer.has(peer))
        this.#bootstrapByPeer.set(peer, address);
    }
    const listed = new Set(this.#bootstrapByPeer.values());
    this.#bootstrap = new BootstrapSchedule(
      bootstrap.filter((address) => listed.has(address)),
      bootstrapPolicy,
      Math.random,
      fallbackPeers.filter((address) => listed.has(address)),
    );
    libp2p.addEventListener("peer:connect", (event) => {
      const address = this.#bootstrapByPeer.get(event.detail.toString());
      if (address !== undefined) this.#bootstrap.connected(address, Date.now());
      this.#searchPeersSoon();
    });
    libp2p.addEventListener("connection:open", () => this.#connectionsOpened++);
    libp2p.addEventListener("connection:close", (event) => {
      this.#connectionsClosed++;
      this.#restoreGossipStream(event.detail.remotePeer);
    });
    libp2p.addEventListener("peer:disconnect", (event) => {
      const address = this.#bootstrapByPeer.get(event.detail.toString());
      if (address !== undefined) this.#bootstrap.disconnected(address, Date.now());
      this.#scheduleBootstrap();
      this.#schedulePeerSearch();
    });
    this.#gossip = new Gossip(libp2p.services.pubsub, penalties, log, {
      topicMaxBytes: limits.gossipMaxBytes,
      inboundRatePerSecond: limits.gossipRatePerSecond,
      inboundBurst: limits.gossipBurst,
      publishRatePerSecond: limits.publishRatePerSecond,
      publishBurst: limits.publishBurst,
      publishQueueMax: limits.publishQueueMax,
      handlerConcurrency: limits.gossipHandlerConcurrency,
      handlerQueueMax: limits.gossipHandlerQueueMax,
    });
    const rpcLimits = {
      ratePerSecond: limits.requestRatePerSecond,
      burst: limits.requestBurst,
      maxInboundStreams: limits.maxInboundStreams,
      streamsPerPeer: limits.streamsPerPeer,
      maxPools: limits.maxStreamPools,
      maxWaiters: limits.maxStreamWaiters,
      timeoutMs: limits.requestTimeoutMs,
    };
    this.#rpc = new Rpc(libp2p, penalties, log, rpcLimits, (peerId, signal, refresh) =>
      this.#locate(peerId, signal, refresh),
    );
    this.#blocks = new BlockExchange(libp2p, this.#rpc, penalties, log, limits.maxBlockBytes);
  }

  /** This node's addresses; read once and again after libp2p reports they changed. */
  multiaddrs(): string[] {
    this.#addresses ??= this.libp2p.getMultiaddrs().map((address) => address.toString());
    return [...this.#addresses];
  }

  /**
   * Records addresses a peer announced for itself (in a signed message whose origin it is)
   * in libp2p's peer store, so dialing it needs no DHT lookup. Malformed addresses and
   * addresses of other peers are skipped.
   */
  rememberAddresses(peerId: string, addresses: readonly string[]): void {
    const multiaddrs = addresses.flatMap((address) => {
      try {
        const parsed = multiaddr(address);
        const target = parsed.getComponents().find((component) => component.name === "p2p")?.value;
        return target === undefined || target === peerId ? [parsed] : [];
      } catch {
        return [];
      }
    });
    if (multiaddrs.length === 0) return;
    this.libp2p.peerStore
      .merge(peerIdFromString(peerId), { multiaddrs })
      .catch((err: unknown) =>
        this.#log.debug({ peerId, err: (err as Error).message }, "addresses not kept"),
      );
  }

  /** Peer ids of the current connections. */
  peers(): string[] {
    return [...new Set(this.libp2p.getConnections().map((connection) => connection.remotePeer.toString()))];
  }

  /**
   * Calls `listener` each time identify completes with a peer (after every new connection),
   * with the protocols the peer serves; the returned function stops it.
   */
  onPeerIdentified(listener: (peerId: string, protocols: readonly string[]) => void): () => void {
    const onIdentify = (event: CustomEvent<{ peerId: { toString(): string }; protocols: string[] }>) =>
      listener(event.detail.peerId.toString(), event.detail.protocols);
    this.libp2p.addEventListener("peer:identify", onIdentify);
    return () => this.libp2p.removeEventListener("peer:identify", onIdentify);
  }

  subscribe<T>(
    topic: string,
    schema: Schema<T>,
    handler: GossipHandler<T>,
    options?: TopicOptions,
  ): () => void {
    return this.#gossip.subscribe(topic, schema, handler, options);
  }

  /** Queues a message; resolves with the number of peers it was sent to once paced out. */
  publish<T>(topic: string, schema: Schema<T>, message: T, options?: { maxBytes?: number }): Promise<number> {
    return this.#gossip.publish(topic, schema, message, options);
  }

  publishQueueDepth(): number {
    return this.#gossip.queueDepth();
  }

  /** Gossip handler calls running or waiting on a topic. */
  gossipBacklog(topic: string): number {
    return this.#gossip.handlerBacklog(topic);
  }

  /**
   * Gossipsub's score of a peer (see GOSSIP_SCORE_THRESHOLDS): relaying messages that fail
   * validation drives it down until the peer is graylisted and nothing it sends is processed.
   */
  gossipScore(peerId: string): number {
    return this.#gossip.score(peerId);
  }

  handle<Req, Res>(
    protocol: string,
    spec: ProtocolSpec<Req, Res>,
    handler: RequestHandler<Req, Res>,
  ): Promise<void> {
    return this.#rpc.handle(protocol, spec, handler);
  }

  request<Req, Res>(
    target: RequestTarget,
    protocol: string,
    spec: ProtocolSpec<Req, Res>,
    message: Req,
    options?: RequestOptions,
  ): Promise<Res> {
    return this.#rpc.request(target, protocol, spec, message, options);
  }

  /** Gossip and requests received and sent so far, and the open connections. */
  stats(): MeshStats {
    return {
      gossip: this.#gossip.counts(),
      requests: this.#rpc.counts(),
      connections: this.libp2p.getConnections().length,
      connectionsOpened: this.#connectionsOpened,
      connectionsClosed: this.#connectionsClosed,
      gossipStreamsRestored: this.#gossipStreamsRestored,
    };
  }

  /** Outbound (peer, protocol) stream pools kept, at most `maxStreamPools`. */
  streamPoolCount(): number {
    return this.#rpc.poolCount;
  }

  serveBlocks(source: BlockSource): Promise<void> {
    return this.#blocks.serve(source);
  }

  /** Fetches a block from the given peers or from DHT providers; the bytes are checked against the CID. */
  fetchBlock(cid: CID, options?: FetchBlockOptions): Promise<Uint8Array> {
    return this.#blocks.fetch(cid, options);
  }

  provide(cid: CID, options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#blocks.provide(cid, options.signal);
  }

  /** Stops re-providing a CID this node provided; the records peers hold expire on their own. */
  unprovide(cid: CID): Promise<void> {
    return this.#blocks.unprovide(cid);
  }

  findProviders(cid: CID, options?: { limit?: number; signal?: AbortSignal }): Promise<string[]> {
    return this.#blocks.findProviders(cid, options);
  }

  penalties(peerId: string): PeerPenalties {
    return this.#penalties.of(peerId);
  }

  /** Rejections of all peers, by reason. */
  rejectionCounts(): Record<RejectReason, number> {
    return this.#penalties.totals();
  }

  /**
   * Counts a message the application refused (it parsed, but was forged, unsolicited or
   * otherwise unacceptable) against the peer that sent it, exactly as a parse rejection is
   * counted: in `rejectionCounts()`, `onReject` listeners and the penalty score that blocks
   * the peer at `penaltyThreshold`. `protocol` names where it came in, for the log.
   */
  penalize(peerId: string, reason: RejectReason, detail = "", protocol = "application"): void {
    if (peerId === this.peerId) return;
    this.#log.debug({ remotePeer: peerId, reason, detail, protocol }, "message refused by the application");
    this.#penalties.record({ peerId, reason, protocol, detail });
  }

  onReject(listener: (event: RejectEvent) => void): () => void {
    return this.#penalties.subscribe(listener);
  }

  isBlocked(peerId: string): boolean {
    return this.#penalties.isBlocked(peerId);
  }

  async stop(): Promise<void> {
    clearTimeout(this.#bootstrapTimer);
    this.#bootstrapTimer = undefined;
    clearTimeout(this.#peerSearchTimer);
    this.#peerSearchTimer = undefined;
    this.#gossip.stop();
    await this.#rpc.stop();
    await this.libp2p.stop();
    this.#log.info("mesh node stopped");
  }

  /**
   * Dials peers the DHT or identify reveals while below `targetPeers`, so a small network
   * becomes fully connected and requests to a known peer need no DHT lookup first.
   */
  dialDiscoveredPeers(targetPeers: number): void {
    this.libp2p.addEventListener("peer:discovery", (event) => {
      const { id, multiaddrs } = event.detail;
      const peerId = id.toString();
      if (peerId === this.peerId || this.isBlocked(peerId) || this.libp2p.status !== "started") return;
      if (this.libp2p.getConnections(id).length > 0 || this.libp2p.getConnections().length >= targetPeers)
        return;
      void this.libp2p.peerStore
        .merge(id, { multiaddrs })
        .then(() => this.libp2p.dial(id, { signal: AbortSignal.timeout(5_000) }))
        .catch((err: Error) =>
          this.#log.debug({ remotePeer: peerId, err: err.message }, "dial to discovered peer failed"),
        );
    });
  }

  /** Starts looking for more peers while this node has fewer than PEER_SEARCH_BELOW connections. */
  searchPeersWhileFew(targetPeers: number): void {
    this.#targetPeers = targetPeers;
    this.#schedulePeerSearch();
  }

  /**
   * Looks up a peer's addresses in the DHT when it is not connected and none are on record
   * (or `refresh` asks for fresh ones), stopping at the first answer instead of waiting for
   * the whole query. A refresh follows a failed dial: an answer that holds only addresses
   * already on record (a peer that still remembers where a restarted node used to listen)
   * is passed over, and a fresh one replaces the record instead of joining the stale ones.
   */
  async #locate(peerId: string, signal: AbortSignal, refresh: boolean): Promise<void> {
    const id = peerIdFromString(peerId);
    if (this.libp2p.getConnections(id).length > 0) return;
    const onRecord = await this.libp2p.peerStore.get(id).then(
      (peer) => new Set(peer.addresses.map(({ multiaddr }) => multiaddr.toString())),
      () => new Set<string>(),
    );
    if (onRecord.size > 0 && !refresh) return;
    const configured = this.#bootstrapByPeer.get(peerId);
    if (configured !== undefined && !refresh) {
      // A bootstrap or fallback peer not dialed yet (BootstrapPolicy.dialPeers) is reached at
      // its configured address. Not put in the peer store at start: then every node dialed
      // every bootstrap peer at once, the crowding the policy spreads out.
      await this.libp2p.peerStore.merge(id, { multiaddrs: [multiaddr(configured)] });
      return;
    }
    try {
      for await (const event of this.libp2p.services.dht.findPeer(id, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(LOOKUP_BUDGET_MS)]),
        useCache: !refresh,
      })) {
        if (event.name !== "FINAL_PEER") continue;
        const { multiaddrs } = event.peer;
        if (!multiaddrs.some((address) => !onRecord.has(address.toString()))) continue;
        if (refresh) await this.libp2p.peerStore.patch(id, { multiaddrs });
        else await this.libp2p.peerStore.merge(id, { multiaddrs });
        return;
      }
    } catch (err) {
      this.#log.debug({ remotePeer: peerId, err: (err as Error).message }, "peer lookup failed");
    }
  }

  /**
   * Dials the bootstrap peers that are due (see BootstrapSchedule) and waits for those dials;
   * later retries run on a timer, and again whenever a connection closes.
   */
  async connectBootstrap(): Promise<void> {
    if (this.libp2p.status !== "started") return;
    const due = this.#bootstrap.due(Date.now(), this.#peerCount());
    await Promise.all(due.map((address) => this.#dialBootstrap(address)));
    this.#scheduleBootstrap();
  }

  async #dialBootstrap(address: string): Promise<void> {
    try {
      await this.libp2p.dial(multiaddr(address), { signal: AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT_MS) });
      this.#bootstrap.dialed(address, true, Date.now());
    } catch (err) {
      this.#bootstrap.dialed(address, false, Date.now());
      this.#log.debug(
        { address, failures: this.#bootstrap.failures(address), err: (err as Error).message },
        "bootstrap dial failed",
      );
    }
  }

  /** Sets the retry timer for the next bootstrap dial that falls due, if any. */
  #scheduleBootstrap(): void {
    if (this.libp2p.status !== "started") return;
    const at = this.#bootstrap.nextDueAt(this.#peerCount());
    if (at === undefined || at >= this.#bootstrapTimerAt) return;
    clearTimeout(this.#bootstrapTimer);
    this.#bootstrapTimerAt = at;
    this.#bootstrapTimer = setTimeout(
      () => {
        this.#bootstrapTimerAt = Infinity;
        this.#bootstrapTimer = undefined;
        void this.connectBootstrap();
      },
      Math.max(0, at - Date.now()),
    );
    this.#bootstrapTimer.unref();
  }

  /** Looks for more peers later if this node has few (see PEER_SEARCH_BELOW); no timer otherwise. */
  #schedulePeerSearch(): void {
    if (this.libp2p.status !== "started" || this.#peerSearchTimer !== undefined) return;
    if (this.#peerCount() >= PEER_SEARCH_BELOW) {
      this.#peerSearchDelayMs = PEER_SEARCH_FIRST_MS;
      return;
    }
    this.#peerSearchAt = Date.now() + this.#peerSearchDelayMs;
    this.#peerSearchTimer = setTimeout(() => {
      this.#peerSearchAt = -Infinity;
      void this.#searchPeers();
    }, this.#peerSearchDelayMs);
    this.#peerSearchTimer.unref();
    this.#peerSearchDelayMs = Math.min(2 * this.#peerSearchDelayMs, PEER_SEARCH_MAX_MS);
  }

  /**
   * A new connection while this node has few: the new peer's routing table is worth a
   * lookup soon, whatever the backoff had grown to while the node was alone.
   */
  #searchPeersSoon(): void {
    if (this.#peerCount() >= PEER_SEARCH_BELOW) return;
    this.#peerSearchDelayMs = PEER_SEARCH_FIRST_MS;
    if (this.#peerSearchTimer === undefined || this.#peerSearchAt <= Date.now() + PEER_SEARCH_FIRST_MS)
      return;
    clearTimeout(this.#peerSearchTimer);
    this.#peerSearchTimer = undefined;
    this.#schedulePeerSearch();
  }

  /** A lookup of this node's own id; the closest peers it finds that are not connected are dialed. */
  async #searchPeers(): Promise<void> {
    try {
      if (this.libp2p.status !== "started" || this.#peerCount() >= PEER_SEARCH_BELOW) return;
      const self = this.libp2p.peerId.toMultihash().bytes;
      const signal = AbortSignal.timeout(PEER_SEARCH_BUDGET_MS);
      const found: PeerId[] = [];
      for await (const event of this.libp2p.services.dht.getClosestPeers(self, { signal }))
        if (event.name === "FINAL_PEER") found.push(event.peer.id);
      const unconnected = found.filter(
        (id) => this.libp2p.getConnections(id).length === 0 && !this.isBlocked(id.toString()),
      );
      const dials = unconnected.slice(
        0,
        Math.max(0, this.#targetPeers - this.libp2p.getConnections().length),
      );
      await Promise.all(
        dials.map((id) =>
          this.libp2p
            .dial(id, { signal: AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT_MS) })
            .catch(() => undefined),
        ),
      );
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, "peer search failed");
    } finally {
      this.#peerSearchTimer = undefined;
      this.#schedulePeerSearch();
    }
  }

  /**
   * Two nodes that dial each other at once hold two connections; gossipsub sends on a stream
   * over one of them, and if that one closes it would send the peer nothing more for good.
   */
  #restoreGossipStream(peer: PeerId, attempt = 1): void {
    if (this.libp2p.status !== "started") return;
    // after the router has seen the stream close, which may come after the connection's event
    // (on a busy node, later than one delay: then look again, a few times)
    setTimeout(() => {
      if (this.libp2p.status !== "started") return;
      if (!this.#gossip.restoreOutboundStream(this.libp2p.getConnections(peer))) {
        const closing = this.#gossip.closingOutboundStream(peer.toString());
        if (closing && attempt < STREAM_RESTORE_ATTEMPTS) this.#restoreGossipStream(peer, attempt + 1);
        return;
      }
      this.#gossipStreamsRestored++;
      this.#log.debug({ remotePeer: peer.toString() }, "gossip stream reopened on a remaining connection");
    }, STREAM_RESTORE_DELAY_MS).unref();
  }

  #peerCount(): number {
    return this.libp2p.getPeers().length;
  }
}

/** Starts a mesh node: keys from the seed, listens, joins the DHT and dials bootstrap peers. */
export async function createMeshNode(options: MeshNodeOptions): Promise<MeshNode> {
  const limits: MeshLimits = { ...DEFAULT_MESH_LIMITS, ...options.limits };
  const privateKey = await peerKeyFromSeed(options.peerKeySeed);
  const baseLog = options.logger ?? pino({ name: "p2p", level: process.env.LOG_LEVEL ?? "info" });
  const bootstrap = options.bootstrap ?? [];
  const trusted = new TrustedNetworks(options.trustedNetworks ?? []);
  for (const address of bootstrap) {
    if (!address.includes("/p2p/")) throw new Error(`bootstrap address ${address} lacks /p2p/<peer id>`);
  }
  const penalties = new PenaltyBook(
    { weights: limits.penaltyWeights, blockThreshold: limits.penaltyThreshold, blockMs: limits.blockMs },
    (peerId, untilMs) => {
      log.warn(
        { remotePeer: peerId, until: new Date(untilMs).toISOString() },
        "peer blocked for misbehaviour",
      );
      libp2p.hangUp(peerIdFromString(peerId)).catch(() => undefined);
    },
  );
  const isBlocked = (peerId: { toString(): string }): boolean => penalties.isBlocked(peerId.toString());
  const libp2p = await createLibp2p<MeshServices>({
    privateKey,
    addresses: { listen: options.listen ?? ["/ip4/127.0.0.1/tcp/0"] },
    transports: [tcp()],
    connectionEncrypters: [gatheredWrites(noise())],
    streamMuxers: [yamux()],
    ...(trusted.empty ? {} : { connectionManager: { allow: trusted.multiaddrs() } }),
    connectionMonitor: CONNECTION_MONITOR,
    connectionGater: {
      denyDialPeer: isBlocked,
      denyInboundEncryptedConnection: isBlocked,
      denyOutboundEncryptedConnection: isBlocked,
    },
    services: {
      identify: identify(),
      // Protocols a node serves once it is up (its request handlers register after the mesh
      // has connected) reach the peers already connected, so they need not reconnect to learn
      // them: a donor's /cell/advert/1 is what other nodes ask it for on identify.
      identifyPush: identifyPush({ debounce: 250 }),
      ping: ping(PING_STREAMS),
      pubsub: gossipsub({
        emitSelf: false,
        fallbackToFloodsub: false,
        // A message goes to the mesh peers only (bounded by the mesh degree), not to every peer of the topic.
        floodPublish: false,
        fastMsgIdFn: copyIdOf,
        idontwantMinDataSize: IDONTWANT_MIN_BYTES,
        maxInboundDataLength: Math.max(4 * limits.gossipMaxBytes, 1024 * 1024),
        // a positive score earned by relaying well is capped, so it cannot buy room for junk
        scoreParams: {
          topicScoreCap: 10,
          ...(trusted.empty ? {} : { IPColocationFactorWhitelist: trusted.colocationWhitelist() }),
        },
        scoreThresholds: GOSSIP_SCORE_THRESHOLDS,
      }),
      dht: kadDHT({
        protocol: `${options.dhtProtocolPrefix ?? "/cell"}/kad/1.0.0`,
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        // Provider records live an hour (not a day) and are re-provided while wanted: a
        // node provides a new receipt batch every few seconds, and every peer keeps the
        // records it is sent until they expire.
        providers: { provideValidity: PROVIDER_RECORD_SECONDS, cleanupInterval: 600 },
        reprovide: {
          validity: PROVIDER_RECORD_SECONDS * 1000,
          threshold: 15 * 60_000,
          interval: 5 * 60_000,
        },
      }),
    },
  });
  const log = baseLog.child({ peerId: libp2p.peerId.toString() });
  const node = new MeshNode(
    libp2p,
    didKeyFromEd25519(privateKey.publicKey.raw),
    penalties,
    log,
    limits,
    bootstrap,
    { ...DEFAULT_BOOTSTRAP_POLICY, ...options.bootstrapPolicy },
    options.fallbackPeers ?? [],
  );
  node.dialDiscoveredPeers(limits.targetPeers);
  node.searchPeersWhileFew(limits.targetPeers);
  if (options.blockSource !== undefined) await node.serveBlocks(options.blockSource);
  log.info({ did: node.did, multiaddrs: node.multiaddrs() }, "mesh node started");
  await node.connectBootstrap();
  return node;
}

const PROVIDER_RECORD_SECONDS = 3_600;

/**
 * libp2p's connection monitor is off. It pings every connection every 10 s and closes the
 * connection when a ping fails or takes over 5 s: on a busy node pings wait behind work
 * and time out, and a new connection's ping collided with the DHT's own ping of the new
 * peer (one outbound ping stream allowed). Either way the connection closed with its
 * requests, was dialed again, paid a new handshake and made the node busier still; under
 * load most connections went this way. A dead peer's connection still closes: yamux pings
 * every 30 s, and a socket that receives nothing for two minutes is closed.
 */
const CONNECTION_MONITOR = { enabled: false };

/** The DHT pings each peer it adds to its routing table; the library allows one ping stream out, two in. */
const PING_STREAMS = { maxOutboundStreams: 4, maxInboundStreams: 8 };

/**
 * Identifies copies of one gossip message by origin and sequence number (both signed under
 * StrictSign), so only the first copy a node receives has its signature checked: every
 * mesh peer forwards a message, and each copy was otherwise verified again before being
 * found a duplicate.
 */
function copyIdOf(message: { from?: Uint8Array; seqno?: Uint8Array; data?: Uint8Array }): string {
  if (message.from === undefined || message.seqno === undefined)
    return createHash("sha256")
      .update(message.data ?? new Uint8Array())
      .digest("base64");
  return `${Buffer.from(message.from).toString("base64")}:${Buffer.from(message.seqno).toString("base64")}`;
}
