import type { Libp2p } from "@libp2p/interface";
import type { Logger } from "pino";
import { z } from "zod/v4";
import { CID, MAX_BLOCK_BYTES, base64Length, dataLimit, dataLimitProblem } from "../protocol/index.ts";
import type { DataKind } from "../protocol/index.ts";
import { sha256 } from "multiformats/hashes/sha2";
import { MeshError } from "./errors.ts";
import type { PenaltyBook } from "./penalties.ts";
import type { ProtocolSpec, Rpc } from "./rpc.ts";

/**
 * Blocks travel in chunks: a request names (cid, offset, length), the answer carries the
 * block's size and up to BLOCK_CHUNK_BYTES of it, and the fetcher hash-checks the whole
 * block against its CID once reassembled.
 */
export const BLOCK_PROTOCOL = "/cell/block/2";

/**
 * Largest chunk of one answer. A server holds one chunk per request in memory, whatever the
 * block's size. Measured over loopback TCP, a 16 MiB block from the SQLite blockstore took
 * 1.3–1.7 s in 256 KiB chunks, 1.0–1.2 s in 1 MiB and 0.7–0.8 s in 4 MiB (0.4–0.5 s of CPU
 * for both ends): 1 MiB keeps most of the speed at a quarter of the memory per request.
 */
export const BLOCK_CHUNK_BYTES = 1024 * 1024;

/** Chunk requests one fetch keeps in flight to one peer (the mesh pools 4 streams per peer). */
const CHUNKS_IN_FLIGHT = 4;

/** Block requests served at once per connection: BLOCK_CHUNK_BYTES each bounds their memory. */
const SERVED_STREAMS_PER_CONNECTION = 4;

/** Part of a block, with the whole block's size. */
export interface BlockSlice {
  size: number;
  bytes: Uint8Array;
}

/** What a block source answers for one chunk request. */
export type BlockRead =
  { kind: "found"; slice: BlockSlice } | { kind: "missing" } | { kind: "refused"; reason: string };

/**
 * Where served blocks come from, and who may have them: the node's source reads the
 * blockstore and asks its access policy whether `peerId` is entitled to the block.
 */
export interface BlockSource {
  read(cid: CID, peerId: string, range: { offset: number; length: number }): Promise<BlockRead>;
}

/** An in-memory BlockSource, for tests and small tools: serves every block to `entitled` peers (all by default). */
export class MemoryBlockSource implements BlockSource {
  readonly #blocks = new Map<string, Uint8Array>();
  readonly #entitled: (cid: CID, peerId: string) => boolean;

  constructor(entitled: (cid: CID, peerId: string) => boolean = () => true) {
    this.#entitled = entitled;
  }

  put(cid: CID, bytes: Uint8Array): void {
    this.#blocks.set(cid.toString(), bytes);
  }

  async read(cid: CID, peerId: string, range: { offset: number; length: number }): Promise<BlockRead> {
    const bytes = this.#blocks.get(cid.toString());
    if (bytes === undefined) return { kind: "missing" };
    if (!this.#entitled(cid, peerId)) return { kind: "refused", reason: `${peerId} may not fetch ${cid}` };
    const slice = bytes.subarray(range.offset, range.offset + range.length);
    return { kind: "found", slice: { size: bytes.byteLength, bytes: slice } };
  }
}

export interface FetchBlockOptions {
  /** Peers to ask, in order; without it providers are looked up in the DHT. */
  from?: string[];
  /** Budget of the whole fetch, every chunk included. */
  timeoutMs?: number;
  /** Providers tried at most when looking them up in the DHT. */
  maxProviders?: number;
  /** The kind of data expected: a block above its DATA_LIMITS entry is refused before it is fetched. */
  kind?: DataKind;
}

const SHA2_256 = 0x12;
const cidString = z.string().min(8).max(128);
const FRAME_SLACK = 256;

/** What is left of a fetch's time: the whole block shares one timeout. */
interface Budget {
  signal: AbortSignal;
  deadline: number;
}

type BlockRequest = { cid: string; offset: number; length: number };
type BlockResponse = { found: false } | { found: true; size: number; data: string };

export const blockProtocolSpec: ProtocolSpec<BlockRequest, BlockResponse> = {
  request: z.strictObject({
    cid: cidString,
    offset: z.number().int().min(0).max(MAX_BLOCK_BYTES),
    length: z.number().int().min(1).max(BLOCK_CHUNK_BYTES),
  }),
  response: z.union([
    z.strictObject({ found: z.literal(false) }),
    z.strictObject({
      found: z.literal(true),
      // Any size is answered, so a fetcher can name the limit a too-large block breaks.
      size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
      data: z.base64().max(base64Length(BLOCK_CHUNK_BYTES)),
    }),
  ]),
  maxRequestBytes: 256,
  maxResponseBytes: base64Length(BLOCK_CHUNK_BYTES) + FRAME_SLACK,
  maxInboundStreams: SERVED_STREAMS_PER_CONNECTION,
};

function parseCid(text: string): CID {
  let cid: CID;
  try {
    cid = CID.parse(text);
  } catch (err) {
    throw new MeshError("malformed", `not a CID: ${(err as Error).message}`);
  }
  if (cid.multihash.code !== SHA2_256) throw new MeshError("malformed", `CID ${text} is not sha2-256`);
  return cid;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((byte, i) => byte === b[i]);
}

/** Content-addressed block exchange: blocks are served by CID in chunks and hash-checked on arrival. */
export class BlockExchange {
  readonly #libp2p: Libp2p;
  readonly #rpc: Rpc;
  readonly #penalties: PenaltyBook;
  readonly #log: Logger;
  readonly #maxBlockBytes: number;

  constructor(
    libp2p: Libp2p,
    rpc: Rpc,
    penalties: PenaltyBook,
    log: Logger,
    maxBlockBytes = MAX_BLOCK_BYTES,
  ) {
    this.#libp2p = libp2p;
    this.#rpc = rpc;
    this.#penalties = penalties;
    this.#log = log;
    this.#maxBlockBytes = Math.min(maxBlockBytes, MAX_BLOCK_BYTES);
  }

  async serve(source: BlockSource): Promise<void> {
    await this.#rpc.handle(
      BLOCK_PROTOCOL,
      blockProtocolSpec,
      async ({ cid, offset, length }, from): Promise<BlockResponse> => {
        const read = await source.read(parseCid(cid), from, { offset, length });
        // A refusal is recorded against the requester (as "not_entitled") by the request layer.
        if (read.kind === "refused") throw new MeshError("not_entitled", read.reason);
        if (read.kind === "missing") return { found: false };
        const { size, bytes } = read.slice;
        return { found: true, size, data: Buffer.from(bytes).toString("base64") };
      },
    );
  }

  async fetch(cid: CID, options: FetchBlockOptions = {}): Promise<Uint8Array> {
    if (cid.multihash.code !== SHA2_256)
      throw new MeshError("malformed", `CID ${cid.toString()} is not sha2-256`);
    const failures: MeshError[] = [];
    const timeoutMs = options.timeoutMs ?? 10_000;
    const budget = { signal: AbortSignal.timeout(timeoutMs), deadline: Date.now() + timeoutMs };
    for await (const peerId of this.#candidates(cid, options, budget.signal)) {
      try {
        const bytes = await this.#fetchFrom(peerId, cid, options.kind, budget);
        if (bytes !== undefined) return bytes;
        failures.push(new MeshError("not_found", `${peerId}: not found`));
      } catch (err) {
        const code = err instanceof MeshError ? err.code : "unknown";
        failures.push(new MeshError(code, `${peerId}: ${(err as Error).message}`));
      }
    }
    const tried = failures.length === 0 ? "no provider found" : failures.map((f) => f.reason).join("; ");
    const tooLarge = failures.length > 0 && failures.every((failure) => failure.code === "too_large");
    const refused = failures.length > 0 && failures.every((failure) => failure.code === "not_entitled");
    const code = tooLarge ? "too_large" : refused ? "not_entitled" : "not_found";
    throw new MeshError(code, `block ${cid.toString()} unavailable (${tried})`);
  }

  async provide(cid: CID, signal?: AbortSignal): Promise<void> {
    await this.#libp2p.contentRouting.provide(cid, { signal });
  }

  /** Stops re-providing `cid`; records peers hold expire with their validity. */
  async unprovide(cid: CID): Promise<void> {
    await this.#libp2p.contentRouting.cancelReprovide(cid);
  }

  async findProviders(cid: CID, options: { limit?: number; signal?: AbortSignal } = {}): Promise<string[]> {
    const found: string[] = [];
    for await (const peerId of this.#providers(cid, options.limit ?? 8, options.signal)) found.push(peerId);
    return found;
  }

  /** The whole block from one peer, chunk by chunk; undefined when the peer does not hold it. */
  async #fetchFrom(
    peerId: string,
    cid: CID,
    kind: DataKind | undefined,
    budget: Budget,
  ): Promise<Uint8Array | undefined> {
    const first = await this.#chunk(peerId, cid, 0, budget);
    if (first === undefined) return undefined;
    this.#checkSize(cid, first.size, kind);
    const block = new Uint8Array(first.size);
    block.set(first.bytes);
    const offsets: number[] = [];
    for (let offset = first.bytes.byteLength; offset < first.size; offset += BLOCK_CHUNK_BYTES)
      offsets.push(offset);
    const worker = async (): Promise<void> => {
      for (let offset = offsets.shift(); offset !== undefined; offset = offsets.shift()) {
        try {
          const chunk = await this.#chunk(peerId, cid, offset, budget);
          if (chunk === undefined || chunk.size !== first.size)
            throw this.#lied(peerId, `the peer changed its answer for ${cid.toString()} mid-block`);
          block.set(chunk.bytes, offset);
        } catch (err) {
          offsets.length = 0; // one failed chunk fails the block: the other workers stop asking
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CHUNKS_IN_FLIGHT, offsets.length) }, worker));
    await this.#checkHash(peerId, cid, block);
    return block;
  }

  /** One chunk from `offset`; its length must be what the announced size leaves. */
  async #chunk(peerId: string, cid: CID, offset: number, budget: Budget): Promise<BlockSlice | undefined> {
    const reply = await this.#rpc.request(
      peerId,
      BLOCK_PROTOCOL,
      blockProtocolSpec,
      { cid: cid.toString(), offset, length: BLOCK_CHUNK_BYTES },
      { signal: budget.signal, timeoutMs: Math.max(1, budget.deadline - Date.now()) },
    );
    if (!reply.found) return undefined;
    const bytes = new Uint8Array(Buffer.from(reply.data, "base64"));
    const expected = Math.min(BLOCK_CHUNK_BYTES, Math.max(0, reply.size - offset));
    if (bytes.byteLength !== expected)
      throw this.#lied(
        peerId,
        `chunk at ${offset} of ${cid.toString()} has ${bytes.byteLength} bytes, not ${expected}`,
      );
    return { size: reply.size, bytes };
  }

  #checkSize(cid: CID, size: number, kind: DataKind | undefined): void {
    const limit = kind === undefined ? this.#maxBlockBytes : Math.min(dataLimit(kind), this.#maxBlockBytes);
    if (size <= limit) return;
    const problem =
      kind === undefined || limit < dataLimit(kind)
        ? `it is ${size} bytes, above the ${limit}-byte block limit`
        : dataLimitProblem(kind, size);
    throw new MeshError("too_large", `block ${cid.toString()} refused: ${problem}`);
  }

  async #checkHash(peerId: string, cid: CID, bytes: Uint8Array): Promise<void> {
    const digest = await sha256.digest(bytes);
    if (sameBytes(digest.digest, cid.multihash.digest)) return;
    const detail = `block for ${cid.toString()} hashes to ${Buffer.from(digest.digest).toString("hex")}`;
    this.#log.warn({ remotePeer: peerId, cid: cid.toString() }, "block hash mismatch");
    this.#penalties.record({ peerId, reason: "hash_mismatch", protocol: BLOCK_PROTOCOL, detail });
    throw new MeshError("hash_mismatch", detail);
  }

  #lied(peerId: string, detail: string): MeshError {
    this.#penalties.record({ peerId, reason: "malformed", protocol: BLOCK_PROTOCOL, detail });
    return new MeshError("malformed", detail);
  }

  async *#candidates(cid: CID, options: FetchBlockOptions, signal: AbortSignal): AsyncGenerator<string> {
    if (options.from !== undefined) {
      yield* options.from;
      return;
    }
    yield* this.#providers(cid, options.maxProviders ?? 8, signal);
  }

  async *#providers(cid: CID, limit: number, signal?: AbortSignal): AsyncGenerator<string> {
    const self = this.#libp2p.peerId.toString();
    const seen = new Set<string>();
    try {
      for await (const provider of this.#libp2p.contentRouting.findProviders(cid, { signal })) {
        const peerId = provider.id.toString();
        if (peerId === self || seen.has(peerId)) continue;
        seen.add(peerId);
        if (provider.multiaddrs.length > 0)
          await this.#libp2p.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs });
        yield peerId;
        if (seen.size >= limit) return;
      }
    } catch (err) {
      if (seen.size === 0 && !signal?.aborted) throw err;
    }
  }
}
