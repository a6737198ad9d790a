import type { Libp2p } from "@libp2p/interface";
import type { Logger } from "pino";
import { z } from "zod/v4";
import { CID } from "../protocol/index.ts";
import { sha256 } from "multiformats/hashes/sha2";
import { MeshError } from "./errors.ts";
import type { PenaltyBook } from "./penalties.ts";
import type { ProtocolSpec, Rpc } from "./rpc.ts";

export const BLOCK_PROTOCOL = "/cell/block/1";

/** Where served blocks come from; the durable blockstore implements this. */
export interface BlockSource {
  get(cid: CID): Promise<Uint8Array | undefined>;
}

/** An in-memory BlockSource, for tests and small tools. */
export class MemoryBlockSource implements BlockSource {
  readonly #blocks = new Map<string, Uint8Array>();

  put(cid: CID, bytes: Uint8Array): void {
    this.#blocks.set(cid.toString(), bytes);
  }

  async get(cid: CID): Promise<Uint8Array | undefined> {
    return this.#blocks.get(cid.toString());
  }
}

export interface FetchBlockOptions {
  /** Peers to ask, in order; without it providers are looked up in the DHT. */
  from?: string[];
  timeoutMs?: number;
  /** Providers tried at most when looking them up in the DHT. */
  maxProviders?: number;
}

const SHA2_256 = 0x12;
const cidString = z.string().min(8).max(128);

export function blockProtocolSpec(
  maxBlockBytes: number,
): ProtocolSpec<{ cid: string }, { found: boolean; data?: string }> {
  const maxBase64 = Math.ceil(maxBlockBytes / 3) * 4;
  return {
    request: z.strictObject({ cid: cidString }),
    response: z.strictObject({ found: z.boolean(), data: z.base64().max(maxBase64).optional() }),
    maxRequestBytes: 256,
    maxResponseBytes: maxBase64 + 64,
  };
}

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

/** Content-addressed block exchange: blocks are served by CID and hash-checked on arrival. */
export class BlockExchange {
  readonly #libp2p: Libp2p;
  readonly #rpc: Rpc;
  readonly #penalties: PenaltyBook;
  readonly #log: Logger;
  readonly #spec: ReturnType<typeof blockProtocolSpec>;

  constructor(libp2p: Libp2p, rpc: Rpc, penalties: PenaltyBook, log: Logger, maxBlockBytes: number) {
    this.#libp2p = libp2p;
    this.#rpc = rpc;
    this.#penalties = penalties;
    this.#log = log;
    this.#spec = blockProtocolSpec(maxBlockBytes);
  }

  async serve(source: BlockSource): Promise<void> {
    await this.#rpc.handle(BLOCK_PROTOCOL, this.#spec, async ({ cid }) => {
      const bytes = await source.get(parseCid(cid));
      return bytes === undefined
        ? { found: false }
        : { found: true, data: Buffer.from(bytes).toString("base64") };
    });
  }

  async fetch(cid: CID, options: FetchBlockOptions = {}): Promise<Uint8Array> {
    if (cid.multihash.code !== SHA2_256)
      throw new MeshError("malformed", `CID ${cid.toString()} is not sha2-256`);
    const failures: string[] = [];
    for await (const peerId of this.#candidates(cid, options)) {
      try {
        const bytes = await this.#fetchFrom(peerId, cid, options.timeoutMs);
        if (bytes !== undefined) return bytes;
        failures.push(`${peerId}: not found`);
      } catch (err) {
        failures.push(`${peerId}: ${(err as Error).message}`);
      }
    }
    const tried = failures.length === 0 ? "no provider found" : failures.join("; ");
    throw new MeshError("not_found", `block ${cid.toString()} unavailable (${tried})`);
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

  async #fetchFrom(peerId: string, cid: CID, timeoutMs: number | undefined): Promise<Uint8Array | undefined> {
    const reply = await this.#rpc.request(
      peerId,
      BLOCK_PROTOCOL,
      this.#spec,
      { cid: cid.toString() },
      { timeoutMs },
    );
    if (!reply.found || reply.data === undefined) return undefined;
    const bytes = new Uint8Array(Buffer.from(reply.data, "base64"));
    const digest = await sha256.digest(bytes);
    if (!sameBytes(digest.digest, cid.multihash.digest)) {
      const detail = `block for ${cid.toString()} hashes to ${Buffer.from(digest.digest).toString("hex")}`;
      this.#log.warn({ remotePeer: peerId, cid: cid.toString() }, "block hash mismatch");
      this.#penalties.record({ peerId, reason: "hash_mismatch", protocol: BLOCK_PROTOCOL, detail });
      throw new MeshError("hash_mismatch", detail);
    }
    return bytes;
  }

  async *#candidates(cid: CID, options: FetchBlockOptions): AsyncGenerator<string> {
    if (options.from !== undefined) {
      yield* options.from;
      return;
    }
    const signal = AbortSignal.timeout(options.timeoutMs ?? 10_000);
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
