// Stand-in nodes for the API and CLI tests build what a real node shows: JobView, JobEvent
// and PeerView from offchain/src/node/types.ts, reason codes from the protocol, job specs
// and receipts signed with viem over the protocol's EIP-712 types. A change to those views
// fails the typecheck of the tests instead of leaving them testing a shape nobody sends.
import { toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type {
  CellNode,
  JobEvent,
  JobResultView,
  JobView,
  PeerView,
  SubmitJobRequest,
} from "../../offchain/src/node/types.ts";
import {
  PRIORITIES,
  ReceiptStatus,
  cellDomain,
  cidOf,
  cidToBytes32,
  jobIdOf,
  jobSpecToWire,
  receiptToWire,
  signJobSpec,
  signReceipt,
  type JobSpecMessage,
  type ReceiptStatusName,
} from "../../offchain/src/protocol/index.ts";

/** The part of a node the API serves, exactly as CellNode declares it. */
export type ServedNode = Pick<
  CellNode,
  | "peerId"
  | "did"
  | "operator"
  | "chainInfo"
  | "multiaddrs"
  | "submitJob"
  | "getJob"
  | "listJobs"
  | "peers"
  | "on"
  | "off"
>;

const DONOR_REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
export const DOMAIN = cellDomain(31337, DONOR_REGISTRY);
export const CHAIN_INFO = {
  chainId: 31337,
  rpcUrl: "http://127.0.0.1:1",
  contracts: { DonorRegistry: DONOR_REGISTRY },
} as const;

/** Hardhat's first two well-known development keys: the buyer and the donor. */
export const BUYER = privateKeyToAccount(
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
);
export const DONOR = privateKeyToAccount(
  "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
);
export const DONOR_PEER_ID = "12D3KooWDonor1Donor1Donor1Donor1Donor1Donor1Donor1";

export const DONOR_PEER: PeerView = {
  peerId: DONOR_PEER_ID,
  connected: true,
  operator: DONOR.address,
  staked: true,
  pricePerMegaFuel: "1000",
  slots: 2,
  freeSlots: 1,
  runtimeVersion: "1",
  lastSeen: 1_700_000_000_000,
  multiaddrs: ["/ip4/127.0.0.1/tcp/40001"],
  penaltyScore: 0,
};

/** A queued job as the buyer holds it: its spec built from the request and signed. */
export async function queuedJob(request: SubmitJobRequest, salt: number): Promise<JobView> {
  const priority = request.priority ?? "normal";
  const spec: JobSpecMessage = {
    buyer: BUYER.address,
    moduleCid: cidToBytes32(await cidOf(request.module)),
    inputCid: cidToBytes32(await cidOf(request.input)),
    entry: request.entry ?? "_start",
    fuelLimit: request.fuelLimit ?? 1_000_000_000n,
    memoryPages: request.memoryPages ?? 256,
    timeoutMs: request.timeoutMs ?? 30_000,
    replicas: 1,
    maxPricePerMegaFuel: request.maxPricePerMegaFuel ?? 2_000n,
    minReputation: 0,
    deadline: BigInt(request.deadlineMs ?? Date.now() + 60_000),
    priority: PRIORITIES.indexOf(priority),
    channel: toHex(0, { size: 32 }),
    salt: toHex(salt, { size: 32 }),
  };
  const jobId = jobIdOf(DOMAIN, spec);
  return {
    jobId,
    state: "queued",
    priority,
    spec: jobSpecToWire(spec),
    signature: await signJobSpec(BUYER, DOMAIN, spec, jobId),
    attempts: 0,
    events: [],
  };
}

/** The donor's signed receipt of `job` and the result the buyer shows with it. */
export async function signedResult(
  job: JobView,
  status: ReceiptStatusName,
  fuelUsed: bigint,
  output: Uint8Array,
): Promise<{ result: JobResultView; receipt: NonNullable<JobView["receipt"]> }> {
  const outputCid = await cidOf(output);
  const receipt = {
    jobId: job.jobId,
    executor: DONOR.address,
    moduleCid: job.spec.moduleCid,
    inputCid: job.spec.inputCid,
    outputCid: cidToBytes32(outputCid),
    fuelUsed,
    status: ReceiptStatus[status],
    startedAt: 1_700_000_000_000n,
    finishedAt: 1_700_000_000_050n,
  };
  return {
    result: {
      status,
      fuelUsed: fuelUsed.toString(),
      outputCid: outputCid.toString(),
      outputBase64: Buffer.from(output).toString("base64"),
    },
    receipt: { message: receiptToWire(receipt), signature: await signReceipt(DONOR, DOMAIN, receipt) },
  };
}

/** One step of a job, as the buyer emits it. */
export function jobEvent(job: JobView, type: JobEvent["type"], extra: Partial<JobEvent> = {}): JobEvent {
  return { jobId: job.jobId, type, at: Date.now(), ...extra };
}

/** The state a job's view takes after this event, as the buyer moves it. */
export function stateAfter(state: JobView["state"], type: JobEvent["type"]): JobView["state"] {
  if (type === "announced" || type === "assigned" || type === "running") return type;
  if (type === "completed" || type === "failed") return type;
  if (type === "reassigned") return "announced";
  return state;
}
