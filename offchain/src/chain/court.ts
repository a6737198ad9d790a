// Bindings of the JuryCourt: outvote cases, disputes, jury draws and juror votes.
import { decodeFunctionData, isAddressEqual, parseEventLogs } from "viem";
import type { Address, Hex, TransactionReceipt } from "viem";
import type { JobSpecMessage, Receipt } from "../protocol/index.ts";
import { donorRegistryAbi, juryCourtAbi } from "./abis.ts";
import { ensureAllowance, send } from "./actions.ts";
import type { ChainReader, ChainWriter } from "./clients.ts";
import type { Deployment } from "./deployments.ts";

/** Stages of a case, as JuryCourt.Stage numbers them. */
export const CaseStage = { None: 0, Open: 1, Disputed: 2, Drawn: 3, Closed: 4 } as const;
/** Outcomes of a case, as JuryCourt.Outcome numbers them. */
export const CaseOutcome = {
  Pending: 0,
  Undisputed: 1,
  AccusedCleared: 2,
  AccusedConvicted: 3,
  Void: 4,
} as const;

export function courtAddress(deployment: Deployment): Address {
  if (deployment.juryCourt === undefined) {
    throw new Error(`the deployment of chain ${deployment.chainId} has no juryCourt address`);
  }
  return deployment.juryCourt;
}

/** The case a slashOutvoted transaction opened. */
export function caseIdOf(receipt: TransactionReceipt): bigint {
  const [opened] = parseEventLogs({ abi: juryCourtAbi, logs: receipt.logs, eventName: "CaseOpened" });
  if (!opened) throw new Error(`transaction ${receipt.transactionHash} opened no JuryCourt case`);
  return opened.args.caseId;
}

export function readCase(reader: ChainReader, caseId: bigint) {
  return reader.publicClient.readContract({
    address: courtAddress(reader.deployment),
    abi: juryCourtAbi,
    functionName: "caseOf",
    args: [caseId],
  });
}

export function readCourtParams(reader: ChainReader) {
  return reader.publicClient.readContract({
    address: courtAddress(reader.deployment),
    abi: juryCourtAbi,
    functionName: "params",
  });
}

/** Disputes a case, approving the court for the bond first when needed. */
export async function disputeCase(writer: ChainWriter, caseId: bigint): Promise<TransactionReceipt> {
  const court = courtAddress(writer.deployment);
  const { disputeBond } = (await readCase(writer, caseId)).terms;
  await ensureAllowance(writer, court, disputeBond);
  return send(writer, court, juryCourtAbi, "dispute", [caseId]);
}

export function drawJury(writer: ChainWriter, caseId: bigint): Promise<TransactionReceipt> {
  return send(writer, courtAddress(writer.deployment), juryCourtAbi, "drawJury", [caseId]);
}

/** Submits a drawn juror's receipt for the case's job (signed by its operator key). */
export function submitJurorVote(
  writer: ChainWriter,
  caseId: bigint,
  vote: { receipt: Receipt; signature: Hex },
): Promise<TransactionReceipt> {
  return send(writer, courtAddress(writer.deployment), juryCourtAbi, "vote", [
    caseId,
    vote.receipt,
    vote.signature,
  ]);
}

export function resolveDispute(writer: ChainWriter, caseId: bigint): Promise<TransactionReceipt> {
  return send(writer, courtAddress(writer.deployment), juryCourtAbi, "resolveDispute", [caseId]);
}

export function finalizeOutvote(writer: ChainWriter, caseId: bigint): Promise<TransactionReceipt> {
  return send(writer, courtAddress(writer.deployment), juryCourtAbi, "finalizeOutvote", [caseId]);
}

/** A drawn juror's duty: re-execute the case's job and vote before `voteDeadline` (unix seconds). */
export interface JurorDuty {
  caseId: bigint;
  jobId: Hex;
  voteDeadline: bigint;
}

/** What an outvote case was opened with: the job's spec and the signed receipts. */
export interface OutvoteEvidence {
  spec: JobSpecMessage;
  accused: { receipt: Receipt; signature: Hex };
  quorum: { receipt: Receipt; signature: Hex }[];
}

/**
 * The cases in blocks `fromBlock..toBlock` whose jury includes `donor` and which still wait for
 * its vote (drawn, before the vote deadline, not voted yet).
 */
export async function jurorDutiesOf(
  reader: ChainReader,
  donor: Address,
  fromBlock: bigint,
  toBlock: bigint,
): Promise<JurorDuty[]> {
  const court = courtAddress(reader.deployment);
  const logs = await reader.publicClient.getContractEvents({
    address: court,
    abi: juryCourtAbi,
    eventName: "JurorsDrawn",
    fromBlock,
    toBlock,
    strict: true,
  });
  const duties: JurorDuty[] = [];
  for (const log of logs) {
    if (!log.args.jurors.some((juror) => isAddressEqual(juror, donor))) continue;
    const { caseId } = log.args;
    const [stored, vote] = await Promise.all([
      readCase(reader, caseId),
      reader.publicClient.readContract({
        address: court,
        abi: juryCourtAbi,
        functionName: "votes",
        args: [caseId, donor],
      }),
    ]);
    if (stored.stage !== CaseStage.Drawn || vote !== NOT_VOTED) continue;
    duties.push({ caseId, jobId: stored.jobId, voteDeadline: stored.voteDeadline });
  }
  return duties;
}

/** JuryCourt.Vote.None: a drawn juror that has not voted yet. */
const NOT_VOTED = 0;

/**
 * The spec and receipts a case was opened with, decoded from the calldata of the slashOutvoted
 * transaction that opened it. Throws, naming the transaction, when that transaction did not call
 * the registry directly (a contract wallet or a multicall): its evidence is then not in its input.
 */
export async function outvoteEvidenceOf(reader: ChainReader, caseId: bigint): Promise<OutvoteEvidence> {
  const [opened] = await reader.publicClient.getContractEvents({
    address: courtAddress(reader.deployment),
    abi: juryCourtAbi,
    eventName: "CaseOpened",
    args: { caseId },
    fromBlock: reader.deployment.deployBlock,
    strict: true,
  });
  if (!opened) throw new Error(`no CaseOpened event for case ${caseId}`);
  const tx = await reader.publicClient.getTransaction({ hash: opened.transactionHash });
  const isRegistryCall = tx.to !== null && isAddressEqual(tx.to, reader.deployment.donorRegistry);
  const call = isRegistryCall ? decodeFunctionData({ abi: donorRegistryAbi, data: tx.input }) : undefined;
  if (call?.functionName !== "slashOutvoted") {
    throw new Error(`case ${caseId} was opened by ${tx.hash}, which is no direct slashOutvoted call`);
  }
  const [spec, accused, accusedSig, quorum, quorumSigs] = call.args;
  return {
    spec: { ...spec },
    accused: { receipt: { ...accused }, signature: accusedSig },
    quorum: quorum.map((receipt, i) => ({ receipt: { ...receipt }, signature: quorumSigs[i]! })),
  };
}
