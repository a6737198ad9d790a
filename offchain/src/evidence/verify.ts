import { isAddressEqual } from "viem";
import type { Address, Hex, TypedDataDomain } from "viem";
import { jobIdOf, jobSpecFromWire, receiptFromWire, verifyReceipt } from "../protocol/index.ts";
import type {
  EquivocationEvidence,
  EvidenceMessage,
  JobSpecMessage,
  OutvoteEvidenceWire,
  Receipt,
  ReceiptWire,
  SignedReceiptWire,
} from "../protocol/index.ts";

/** DonorRegistry's view of an operator key (see chain `operatorState`); times in unix seconds, 0 for none. */
export interface OperatorRecord {
  donor: Address;
  accountableUntil: number;
  jailedUntil: number;
}

/** What verification reads from the chain; the node's adapter caches it (evidence/chain.ts). */
export interface EvidenceChain {
  /** The registry's record of `operator`; undefined when it never registered. */
  operator(operator: Address): Promise<OperatorRecord | undefined>;
  /** undefined when DonorRegistry.checkOutvote accepts the evidence, else the name of its custom error. */
  checkOutvote(
    spec: JobSpecMessage,
    accused: { receipt: Receipt; signature: Hex },
    quorum: readonly { receipt: Receipt; signature: Hex }[],
  ): Promise<string | undefined>;
}

export interface VerifyContext {
  domain: TypedDataDomain;
  chain: EvidenceChain;
  /** Unix milliseconds. */
  now(): number;
}

/**
 * What a check of evidence found:
 * - `valid`: it proves what it claims and the registry would act on it;
 * - `stale`: it is true, but the registry would no longer act on it (the operator is jailed
 *   already, or rotated away from for longer than it stays accountable): nothing to do, and
 *   nobody to blame;
 * - `invalid`: it proves nothing (a forged or malleated signature, a spec that is not the job's,
 *   signers that are not staked operators, a quorum too small…): its sender is at fault.
 */
export type Verification =
  | { status: "valid"; kind: EvidenceMessage["kind"]; jobId: Hex; operator: Address }
  | { status: "stale"; reason: string }
  | { status: "invalid"; reason: string };

/** Re-checks evidence from anyone, as DonorRegistry would, before this node acts on it. */
export function verifyEvidence(evidence: EvidenceMessage, context: VerifyContext): Promise<Verification> {
  return evidence.kind === "equivocation"
    ? verifyEquivocation(evidence, context)
    : verifyOutvote(evidence, context);
}

/**
 * Equivocation: two receipts of one job by one executor that differ in status, output or fuel
 * used, both signed by that executor in a form the contracts accept, and the executor an operator
 * DonorRegistry knows and may still slash.
 */
export async function verifyEquivocation(
  evidence: EquivocationEvidence,
  { domain, chain, now }: VerifyContext,
): Promise<Verification> {
  const { a, b } = evidence;
  const problem = equivocationShapeError(a.receipt, b.receipt);
  if (problem !== undefined) return invalid(problem);
  for (const [name, signed] of [["a", a] as const, ["b", b] as const]) {
    if (!(await signedByExecutor(domain, signed)))
      return invalid(`receipt ${name}'s signature is not its executor ${signed.receipt.executor}'s`);
  }
  const operator = a.receipt.executor;
  const record = await chain.operator(operator);
  if (record === undefined) return invalid(`executor ${operator} is no operator DonorRegistry knows`);
  const staleness = stalenessOf(operator, record, now());
  if (staleness !== undefined) return { status: "stale", reason: staleness };
  return { status: "valid", kind: "equivocation", jobId: a.receipt.jobId, operator };
}

/**
 * Outvote: the spec's EIP-712 digest is the job id of every receipt; the quorum agrees on one
 * result that the accused's differs from; every signature is its executor's; and DonorRegistry's
 * `checkOutvote` accepts it (quorum size within [outvoteQuorum(n), n − 1], signers accountable
 * operators of distinct donors other than the accused's, bonded since before the job).
 */
export async function verifyOutvote(
  evidence: OutvoteEvidenceWire,
  { domain, chain }: VerifyContext,
): Promise<Verification> {
  const spec = jobSpecFromWire(evidence.spec);
  const problem = outvoteShapeError(evidence, jobIdOf(domain, spec));
  if (problem !== undefined) return invalid(problem);
  if (!(await signedByExecutor(domain, evidence.accused)))
    return invalid(
      `the accused receipt's signature is not its executor ${evidence.accused.receipt.executor}'s`,
    );
  for (const [index, signed] of evidence.quorum.entries()) {
    if (!(await signedByExecutor(domain, signed)))
      return invalid(`quorum receipt ${index}'s signature is not its executor ${signed.receipt.executor}'s`);
  }
  const refusal = await chain.checkOutvote(
    spec,
    signedFromWire(evidence.accused),
    evidence.quorum.map(signedFromWire),
  );
  if (refusal !== undefined) {
    const reason = `DonorRegistry.checkOutvote refuses it: ${refusal} (${OUTVOTE_REFUSALS[refusal] ?? "see DonorRegistry"})`;
    return STALE_REFUSALS.has(refusal) ? { status: "stale", reason } : invalid(reason);
  }
  const { jobId, executor } = evidence.accused.receipt;
  return { status: "valid", kind: "outvote", jobId, operator: executor };
}

/** What checkOutvote's custom errors mean, for the reason given to the log and the sender's record. */
const OUTVOTE_REFUSALS: Readonly<Record<string, string>> = {
  JobSpecMismatch: "the spec's digest is not the accused receipt's job id",
  SignatureCountMismatch: "not one signature per quorum receipt",
  QuorumTooSmall: "fewer agreeing receipts than outvoteQuorum(n)",
  QuorumTooLarge: "more agreeing receipts than n − 1",
  UnknownOperator: "the accused is no operator the registry knows",
  OperatorJailed: "the accused is jailed already",
  OperatorRetired: "the accused operator was rotated away from and is no longer accountable",
  InvalidSignature: "a signature is not its executor's",
  AccusedAgrees: "the accused receipt agrees with the quorum",
  DifferentJobs: "a quorum receipt is for another job",
  ResultsDisagree: "the quorum receipts do not agree",
  OperatorNotActive: "a quorum signer is not an accountable staked operator",
  DuplicateDonor: "two receipts come from one donor",
  NotBondedBeforeJob: "a quorum signer's donor was not bonded since before the job",
};

/** Refusals that say the evidence came too late, not that it is false. */
const STALE_REFUSALS = new Set(["OperatorJailed", "OperatorRetired"]);

/** Why two receipts are no equivocation whatever their signatures, or undefined. */
export function equivocationShapeError(a: ReceiptWire, b: ReceiptWire): string | undefined {
  if (a.jobId.toLowerCase() !== b.jobId.toLowerCase())
    return `the receipts are for different jobs (${a.jobId}, ${b.jobId})`;
  if (!isAddressEqual(a.executor, b.executor))
    return `the receipts have different executors (${a.executor}, ${b.executor})`;
  if (sameResult(a, b))
    return "the receipts report the same result (status, outputCid, fuelUsed): no equivocation";
  return undefined;
}

/** Why outvote evidence cannot hold whatever the chain says, or undefined. */
export function outvoteShapeError(evidence: OutvoteEvidenceWire, specJobId: Hex): string | undefined {
  const { accused, quorum, spec } = evidence;
  const jobId = specJobId.toLowerCase();
  if (accused.receipt.jobId.toLowerCase() !== jobId)
    return `the spec's digest ${specJobId} is not the accused receipt's job id ${accused.receipt.jobId}`;
  if (quorum.length > spec.replicas - 1)
    return `${quorum.length} agreeing receipts for a job of ${spec.replicas} replicas (at most n − 1)`;
  const executors = new Set([accused.receipt.executor.toLowerCase()]);
  for (const [index, { receipt }] of quorum.entries()) {
    if (receipt.jobId.toLowerCase() !== jobId)
      return `quorum receipt ${index} is for job ${receipt.jobId}, not the spec's ${specJobId}`;
    if (!sameResult(receipt, quorum[0]!.receipt)) return `quorum receipt ${index} disagrees with receipt 0`;
    if (executors.has(receipt.executor.toLowerCase()))
      return `executor ${receipt.executor} appears twice among the accused and the quorum`;
    executors.add(receipt.executor.toLowerCase());
  }
  if (sameResult(accused.receipt, quorum[0]!.receipt)) return "the accused receipt agrees with the quorum";
  return undefined;
}

/** DonorRegistry's CellTypes.sameResult: equal status, output CID and fuel used. */
export function sameResult(a: ReceiptWire, b: ReceiptWire): boolean {
  return (
    a.status === b.status &&
    a.outputCid.toLowerCase() === b.outputCid.toLowerCase() &&
    a.fuelUsed === b.fuelUsed
  );
}

function stalenessOf(operator: Address, record: OperatorRecord, nowMs: number): string | undefined {
  if (record.jailedUntil !== 0) return `operator ${operator} is jailed already`;
  if (record.accountableUntil !== 0 && nowMs / 1000 >= record.accountableUntil)
    return `operator ${operator} was rotated away from and is accountable no longer`;
  return undefined;
}

function signedByExecutor(domain: TypedDataDomain, signed: SignedReceiptWire): Promise<boolean> {
  return verifyReceipt(domain, receiptFromWire(signed.receipt), signed.signature);
}

export function signedFromWire(signed: SignedReceiptWire): { receipt: Receipt; signature: Hex } {
  return { receipt: receiptFromWire(signed.receipt), signature: signed.signature };
}

function invalid(reason: string): Verification {
  return { status: "invalid", reason };
}
