import type { Logger } from "pino";
import type { Address, Hex, LocalAccount, TypedDataDomain } from "viem";
import { signJob } from "../market/index.ts";
import type { SignedJob } from "../market/index.ts";
import { RequestCoalescer } from "../p2p/index.ts";
import type { MeshNode } from "../p2p/index.ts";
import {
  MESSAGE_LIMITS,
  PROTOCOL_ASSIGN,
  PROTOCOL_BID_REQUEST,
  PROTOCOL_CANCEL,
  PROTOCOL_STATUS,
  bidFromWire,
  receiptFromWire,
  verifyBid,
  verifyReceipt,
} from "../protocol/index.ts";
import type {
  AssignRequest,
  AssignResponse,
  BidOffer,
  BidWire,
  CID,
  JobAnnounce,
  JobSpecMessage,
  ReasonCode,
  ReceiptWire,
  StatusResponse,
} from "../protocol/index.ts";
import type { VerdictListener } from "../quorum/index.ts";
import type { Store } from "../store/index.ts";
import { Announcer } from "./announcer.ts";
import type { NodeConfig } from "./config.ts";
import type { PeerBook } from "./peer-book.ts";
import { MARKET_BATCHING, protocolSpecs } from "./protocols.ts";

/** Wall-clock time, unix ms. */
export interface Clock {
  now(): number;
}

/** What the buyer sends and fetches over the mesh. */
export interface BuyerNetwork {
  readonly peerId: string;
  multiaddrs(): string[];
  /** Gossips a job announcement for discovery (batched with others, rate-limited). */
  announce(job: JobAnnounce): void;
  /**
   * Asks one donor to bid on the job (batched with other requests to that donor); resolves
   * with the donor's answers for it that came back with the response (none if they come later).
   */
  requestBids(peerId: string, job: JobAnnounce): Promise<BidOffer[]>;
  /** Jobs gossiped for discovery, and jobs left out by its rate limit. */
  announceStats(): { announced: number; dropped: number };
  assign(peerId: string, request: AssignRequest): Promise<AssignResponse>;
  status(peerId: string, jobId: Hex, timeoutMs: number): Promise<StatusResponse>;
  /** Tells an executor to stop the job; resolves with whether it stopped a run. */
  cancel(peerId: string, jobId: Hex, attempt: number): Promise<boolean>;
  fetchBlock(cid: CID, from: string[], timeoutMs: number): Promise<Uint8Array>;
  /** Announces a CID as provided in the DHT (queued). */
  provide(cid: string): void;
  stop(): void;
}

/** Signs job specs with the operator key and checks the signatures of bids and receipts. */
export interface BuyerSigner {
  readonly address: Address;
  signJob(spec: JobSpecMessage): Promise<SignedJob>;
  verifyBid(bid: BidWire, signature: Hex): Promise<boolean>;
  verifyReceipt(receipt: ReceiptWire, signature: Hex): Promise<boolean>;
}

/** DonorRegistry: is `operator` active with this peer key? */
export interface StakeLookup {
  /** `requester` is the peer whose message asks for the lookup: reads are rate-limited per requester. */
  status(operator: Address, peerKey: Hex, requester?: string): Promise<"active" | "inactive" | "unknown">;
}

/** The tables the buyer keeps its jobs in. */
export type BuyerStore = Pick<
  Store,
  "commit" | "jobs" | "jobEvents" | "assignments" | "bids" | "receipts" | "blocks"
>;

/** Donors known from their adverts. */
export type DonorDirectory = Pick<PeerBook, "candidates" | "get" | "touch" | "all" | "isBlocked">;

/** What the trust layer tells the buyer about donors (the TrustBook provides it). */
export interface BuyerTrust {
  /** 0..65535, neutral 32768 (the spec's `minReputation` scale); per module when given. */
  reputation(operator: Address, moduleCid?: string): number;
  /** Quarantined or banned now: its bids are dropped and it is not asked to bid. */
  isBlocked(idOrOperator: string): boolean;
}

/** A refusal at the application level (bad bid signature, bad receipt, unstaked bidder, …), counted against the sender. */
export type Misbehaved = (peerId: string, reason: ReasonCode, detail: string) => void;

export interface BuyerPorts {
  config: NodeConfig["buyer"];
  log: Logger;
  clock: Clock;
  network: BuyerNetwork;
  store: BuyerStore;
  signer: BuyerSigner;
  stakes: StakeLookup;
  donors: DonorDirectory;
  misbehaved: Misbehaved;
  /** Hears every verdict and equivocation of replicated jobs (reputation, evidence). */
  verdictListener?: VerdictListener;
  /** Reputation for selection and `minReputation`, and who is blocked; without it every donor is neutral. */
  trust?: BuyerTrust;
}

/** The buyer's network over a mesh node: bid requests and assignments are coalesced per donor, announcements batched. */
export function meshBuyerNetwork(
  mesh: MeshNode,
  provider: { add(cid: string): void },
  log: Logger,
  config: NodeConfig["buyer"],
): BuyerNetwork {
  const announcer = new Announcer(mesh, log, config.discoveryIntervalMs);
  // A job goes to several candidates: its encoded size is measured once, not per request.
  // Entries leave with their announce object (a WeakMap holds no job alive).
  const encodedSizes = new WeakMap<JobAnnounce, number>();
  const encodedSize = (job: JobAnnounce): number => {
    let size = encodedSizes.get(job);
    if (size === undefined) encodedSizes.set(job, (size = JSON.stringify(job).length + 1));
    return size;
  };
  const bidRequests = new RequestCoalescer<JobAnnounce, BidOffer[]>({
    ...MARKET_BATCHING,
    maxWeight: MESSAGE_LIMITS.bidRequestBatch - 64,
    weigh: encodedSize,
    send: async (peerId, jobs) => {
      const { offers } = await mesh.request(
        peerId,
        PROTOCOL_BID_REQUEST,
        protocolSpecs.bidRequest,
        { type: "bid_requests", jobs },
        { timeoutMs: config.bidTimeoutMs },
      );
      const byJob = new Map<string, BidOffer[]>();
      for (const offer of offers) {
        const jobId = offer.type === "bid" ? offer.bid.jobId : offer.jobId;
        byJob.set(jobId, [...(byJob.get(jobId) ?? []), offer]);
      }
      return jobs.map((job) => byJob.get(job.jobId) ?? []);
    },
  });
  const assignments = new RequestCoalescer<AssignRequest, AssignResponse>({
    ...MARKET_BATCHING,
    send: async (peerId, batch) => {
      const { results } = await mesh.request(
        peerId,
        PROTOCOL_ASSIGN,
        protocolSpecs.assign,
        { type: "assign_batch", assignments: batch },
        { timeoutMs: config.assignTimeoutMs },
      );
      return results;
    },
  });
  return {
    peerId: mesh.peerId,
    multiaddrs: () => mesh.multiaddrs(),
    announce: (job) => announcer.announce(job),
    requestBids: (peerId, job) => bidRequests.request(peerId, job),
    announceStats: () => announcer.stats,
    assign: (peerId, request) => assignments.request(peerId, request),
    status: (peerId, jobId, timeoutMs) =>
      mesh.request(peerId, PROTOCOL_STATUS, protocolSpecs.status, { type: "status", jobId }, { timeoutMs }),
    cancel: async (peerId, jobId, attempt) => {
      const answer = await mesh.request(
        peerId,
        PROTOCOL_CANCEL,
        protocolSpecs.cancel,
        { type: "cancel", jobId, attempt: Math.min(attempt, 64) },
        { timeoutMs: config.assignTimeoutMs },
      );
      return answer.stopped;
    },
    fetchBlock: (cid, from, timeoutMs) => mesh.fetchBlock(cid, { from, timeoutMs }),
    provide: (cid) => provider.add(cid),
    stop: () => announcer.stop(),
  };
}

/** Signatures in DonorRegistry's EIP-712 domain, by the node's operator key. */
export function operatorSigner(operator: LocalAccount, domain: TypedDataDomain): BuyerSigner {
  return {
    address: operator.address,
    signJob: (spec) => signJob(operator, domain, spec),
    verifyBid: (bid, signature) => verifyBid(domain, bidFromWire(bid), signature),
    verifyReceipt: (receipt, signature) => verifyReceipt(domain, receiptFromWire(receipt), signature),
  };
}
