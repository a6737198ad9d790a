import { bytesToHex } from "viem";
import type { Address, Hex, TypedDataDomain } from "viem";
import { randomBytes } from "node:crypto";
import {
  PRIORITIES,
  checkDataSize,
  dataLimitProblem,
  jobIdOf,
  jobSpecFromWire,
  jobSpecToWire,
  signJobSpec,
  verifyDigest,
} from "../protocol/index.ts";
import type { JobAnnounce, JobSpecMessage, PriorityName, ReasonCode, Signer } from "../protocol/index.ts";

const ZERO_BYTES32: Hex = `0x${"00".repeat(32)}`;

export const JOB_DEFAULTS = {
  entry: "_start",
  fuelLimit: 10_000_000n,
  memoryPages: 16,
  timeoutMs: 10_000,
  replicas: 1,
  minReputation: 0,
  priority: "normal" as PriorityName,
  deadlineSlackMs: 60_000,
} as const;

/** On-wire priority: 0 is critical, 4 is background. */
export function priorityValue(name: PriorityName): number {
  return PRIORITIES.indexOf(name);
}

export function priorityName(value: number): PriorityName {
  const name = PRIORITIES[value];
  if (name === undefined) throw new Error(`priority ${value} is not one of 0..${PRIORITIES.length - 1}`);
  return name;
}

export interface JobSpecInput {
  buyer: Address;
  moduleCid: Hex;
  inputCid: Hex;
  maxPricePerMegaFuel: bigint;
  entry?: string;
  fuelLimit?: bigint;
  memoryPages?: number;
  timeoutMs?: number;
  replicas?: number;
  minReputation?: number;
  priority?: PriorityName;
  /** Absolute deadline, unix ms. Defaults to now + timeout + a minute. */
  deadlineMs?: number;
  channel?: Hex;
  salt?: Hex;
  now?: number;
}

/** Fills a job spec with defaults and a fresh salt, so two equal jobs get distinct ids. */
export function buildJobSpec(input: JobSpecInput): JobSpecMessage {
  const timeoutMs = input.timeoutMs ?? JOB_DEFAULTS.timeoutMs;
  const now = input.now ?? Date.now();
  const deadlineMs = input.deadlineMs ?? now + timeoutMs + JOB_DEFAULTS.deadlineSlackMs;
  return {
    buyer: input.buyer,
    moduleCid: input.moduleCid,
    inputCid: input.inputCid,
    entry: input.entry ?? JOB_DEFAULTS.entry,
    fuelLimit: input.fuelLimit ?? JOB_DEFAULTS.fuelLimit,
    memoryPages: input.memoryPages ?? JOB_DEFAULTS.memoryPages,
    timeoutMs,
    replicas: input.replicas ?? JOB_DEFAULTS.replicas,
    maxPricePerMegaFuel: input.maxPricePerMegaFuel,
    minReputation: input.minReputation ?? JOB_DEFAULTS.minReputation,
    deadline: BigInt(deadlineMs),
    priority: priorityValue(input.priority ?? JOB_DEFAULTS.priority),
    channel: input.channel ?? ZERO_BYTES32,
    salt: input.salt ?? bytesToHex(randomBytes(32)),
  };
}

export interface SignedJob {
  jobId: Hex;
  spec: JobSpecMessage;
  signature: Hex;
}

export async function signJob(
  signer: Signer,
  domain: TypedDataDomain,
  spec: JobSpecMessage,
): Promise<SignedJob> {
  const jobId = jobIdOf(domain, spec);
  return { jobId, spec, signature: await signJobSpec(signer, domain, spec, jobId) };
}

export interface AnnounceContext {
  moduleCid: string;
  inputCid: string;
  moduleSize: number;
  inputSize: number;
  buyerPeer: string;
  providers?: string[];
  providerAddrs?: string[];
}

/** The announce of a signed job; a module or input above its DATA_LIMITS entry is refused, naming the limit. */
export function toAnnounce(job: SignedJob, context: AnnounceContext): JobAnnounce {
  checkDataSize("module", context.moduleSize);
  checkDataSize("input", context.inputSize);
  return {
    type: "job",
    jobId: job.jobId,
    spec: jobSpecToWire(job.spec),
    signature: job.signature,
    moduleCid: context.moduleCid,
    inputCid: context.inputCid,
    moduleSize: context.moduleSize,
    inputSize: context.inputSize,
    buyerPeer: context.buyerPeer,
    providers: context.providers ?? [context.buyerPeer],
    providerAddrs: context.providerAddrs ?? [],
  };
}

export type JobCheck = { ok: true; job: SignedJob } | { ok: false; reason: ReasonCode; detail: string };

/**
 * Checks an announced job: its id is the hash of its spec, the buyer signed it, and the
 * deadline has not passed. `cidDigest` maps a CID string to its bytes32 digest, so the
 * announced CIDs are bound to the signed ones. A donor may skip the signature (the
 * costly part) when it only bids, and check it when it is assigned the job.
 */
export async function checkAnnouncedJob(
  domain: TypedDataDomain,
  announce: JobAnnounce,
  cidDigest: (cid: string) => Hex,
  now = Date.now(),
  options: { verifySignature?: boolean } = {},
): Promise<JobCheck> {
  const sizeProblem =
    dataLimitProblem("module", announce.moduleSize) ?? dataLimitProblem("input", announce.inputSize);
  if (sizeProblem !== undefined) return { ok: false, reason: "bad_spec", detail: sizeProblem };
  const spec = jobSpecFromWire(announce.spec);
  const jobId = jobIdOf(domain, spec);
  if (jobId !== announce.jobId)
    return { ok: false, reason: "bad_spec", detail: `job id ${announce.jobId} is not the hash of its spec` };
  if (!sameDigest(cidDigest, announce.moduleCid, spec.moduleCid)) {
    return { ok: false, reason: "bad_spec", detail: "module CID does not match the signed spec" };
  }
  if (!sameDigest(cidDigest, announce.inputCid, spec.inputCid)) {
    return { ok: false, reason: "bad_spec", detail: "input CID does not match the signed spec" };
  }
  if (spec.deadline <= BigInt(now))
    return { ok: false, reason: "deadline_missed", detail: "the job's deadline has passed" };
  if (options.verifySignature !== false && !(await verifyDigest(jobId, spec.buyer, announce.signature))) {
    return { ok: false, reason: "bad_signature", detail: "the spec is not signed by its buyer" };
  }
  return { ok: true, job: { jobId, spec, signature: announce.signature } };
}

function sameDigest(cidDigest: (cid: string) => Hex, cid: string, signed: Hex): boolean {
  try {
    return sameHex(cidDigest(cid), signed);
  } catch {
    return false;
  }
}

function sameHex(a: Hex, b: Hex): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
