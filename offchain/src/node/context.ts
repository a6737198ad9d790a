import type { Logger } from "pino";
import type { Address, Hex, LocalAccount, TypedDataDomain } from "viem";
import type { Store } from "../store/index.ts";
import type { MeshNode } from "../p2p/index.ts";
import type { Runtime } from "../runtime/index.ts";
import type { NodeConfig } from "./config.ts";
import type { ProvideQueue } from "./provide-queue.ts";
import type { StakeCache } from "./stake-cache.ts";
import { errorMessage } from "./util.ts";

export { detach, errorMessage, sleep } from "./util.ts";

/** What the donor and buyer halves of a node share. */
export interface NodeContext {
  config: NodeConfig;
  log: Logger;
  mesh: MeshNode;
  store: Store;
  /** Present when the donor half runs. */
  runtime?: Runtime;
  stakes: StakeCache;
  /** CIDs to announce in the DHT (receipts, outputs, job blocks). */
  provider: ProvideQueue;
  /** DonorRegistry's EIP-712 domain: job specs, bids and receipts are signed in it. */
  domain: TypedDataDomain;
  operator: LocalAccount;
  operatorAddress: Address;
  peerKeyHex: Hex;
  now(): number;
}

/**
 * Stores a block whose CID is known as part of the caller's `store.commit` batch:
 * `putWithCid` checks the hash and inserts synchronously, so the write joins the
 * surrounding transaction and shares its fsync.
 */
export function putKnownBlock(ctx: Pick<NodeContext, "store" | "log">, cid: string, bytes: Uint8Array): void {
  ctx.store.blocks
    .putWithCid(cid, bytes)
    .catch((err: unknown) => ctx.log.warn({ cid, err: errorMessage(err) }, "could not store a block"));
}
