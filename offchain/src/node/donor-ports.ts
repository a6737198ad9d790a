import type { Address, Hex, TypedDataDomain } from "viem";
import type { SignedJob } from "../market/index.ts";
import type {
  BidMessage,
  BidOffer,
  CapabilityAdvert,
  JobAnnounce,
  ReasonCode,
  Receipt,
  ReceiptAck,
  ReceiptDelivery,
  StatusResponse,
} from "../protocol/index.ts";
import type { BuyerCredit } from "../payments/index.ts";
import type { Runtime } from "../runtime/index.ts";
import type { OutboxEntry } from "./donor-machine.ts";

/** What the donor shell needs from the world, each part as narrow as the donor uses it. */
export interface DonorPorts {
  clock: DonorClock;
  network: DonorNetwork;
  jobs: DonorJobStore;
  signer: DonorSigner;
  stakes: DonorStakes;
  /** Buyers' credit with this node's payee; absent when this donor does not check credit. */
  credit?: DonorCredit;
  /** Absent on a node that runs no runtime: its jobs end with `internal_error`. */
  runtime?: Pick<Runtime, "execute">;
  /** An application-level refusal that counts against the peer (a bad assignment, a bad announce…). */
  misbehaved(peerId: string, reason: string, detail: string): void;
  log: DonorLog;
}

export interface DonorClock {
  now(): number;
  /** Calls `fire` after `delayMs`; the returned function cancels it. Timers never keep the process alive. */
  after(delayMs: number, fire: () => void): () => void;
}

export interface DonorNetwork {
  readonly peerId: string;
  multiaddrs(): string[];
  /** One `/cell/bid/1` request with up to MARKET_BATCH_MAX offers. */
  sendBids(buyerPeer: string, offers: BidOffer[]): Promise<void>;
  /** One `/cell/receipt/1` request; the buyer's acknowledgements come back in order. */
  sendDeliveries(buyerPeer: string, deliveries: ReceiptDelivery[]): Promise<ReceiptAck[]>;
  /** Gossips a capability advert; resolves with the number of peers it was sent to. */
  publishAdvert(advert: CapabilityAdvert): Promise<number>;
  /** A block by CID from the given peers (or the DHT's providers), hash-checked. */
  fetchBlock(cid: string, from: string[], timeoutMs: number): Promise<Uint8Array>;
}

/** A job this node ran, as it goes to disk. */
export interface ExecutedJob {
  job: SignedJob;
  announce: JobAnnounce;
  buyerPeer: string;
  /** The price of this node's bid, per mega-fuel: what the job earns (absent for failures). */
  pricePerMegaFuel?: bigint;
}

export interface DonorJobStore {
  /** Loads what survived a restart; starts the receipt log. */
  start(): void;
  /** Writes what is pending (the receipt log's last batch). */
  stop(): Promise<void>;
  /** The newest batch of receipts this node signed, if any. */
  readonly receiptBatchHead: { cid: string; sequence: number } | undefined;
  block(cid: string): Uint8Array | undefined;
  /** Keeps a fetched block (modules are reused by later jobs). */
  keepBlock(cid: string, bytes: Uint8Array): Promise<void>;
  /**
   * Output, receipt block, job row and receipt row in one durable commit, the receipt in
   * the outbox for `buyerPeer`. Resolves with the receipt's row once it is on disk.
   */
  persistReceipt(
    executed: ExecutedJob,
    delivery: Extract<ReceiptDelivery, { type: "receipt" }>,
    output: Uint8Array,
  ): Promise<number>;
  /** Records a job that ended without a result (not fsynced: the buyer can reassign it). */
  recordFailure(executed: Omit<ExecutedJob, "buyerPeer">, reason: ReasonCode): Promise<void>;
  /** The receipt of row `rowId` leaves the outbox. */
  leaveOutbox(rowId: number): Promise<void>;
  /** Stored receipts not yet acknowledged, oldest first. */
  outbox(limit: number): OutboxEntry[];
  /** The status of a job this node finished, from the store. */
  storedStatus(jobId: Hex): StatusResponse | undefined;
}

export interface DonorSigner {
  readonly address: Address;
  readonly peerKey: Hex;
  /** DonorRegistry's EIP-712 domain. */
  readonly domain: TypedDataDomain;
  signBid(bid: BidMessage): Promise<Hex>;
  signReceipt(receipt: Receipt): Promise<Hex>;
}

export interface DonorCredit {
  /** A buyer's unspent deposit with this payee and what it owes unpaid (read locally, no RPC). */
  creditOf(signer: Address): BuyerCredit;
}

export interface DonorStakes {
  /** Whether DonorRegistry shows this node's operator active with its peer key. */
  selfActive(): Promise<boolean>;
}

export type DonorLog = Record<"debug" | "info" | "warn", (fields: object, message: string) => void>;
