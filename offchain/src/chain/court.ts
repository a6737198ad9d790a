// Bindings of the JuryCourt: outvote cases, disputes, jury draws and juror votes.
import { parseEventLogs } from "viem";
import type { Address, Hex, TransactionReceipt } from "viem";
import type { Receipt } from "../protocol/index.ts";
import { juryCourtAbi } from "./abis.ts";
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
