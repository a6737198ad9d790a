import { BaseError } from "viem";
import {
  CaseOutcome,
  CaseStage,
  caseIdOf,
  drawJury,
  finalizeOutvote,
  readCase,
  resolveDispute,
  revertErrorName,
  slashEquivocation,
  slashOutvoted,
} from "../chain/index.ts";
import type { ChainWriter } from "../chain/index.ts";
import type { CaseProgress, SlashSubmitter } from "./desk.ts";

/** How soon a case waiting for blocks (a jury draw) is looked at again. */
const BLOCK_WAIT_MS = 2_000;

/** Sends slashes from `writer` (the node's operator key, which pays the gas and gets the reporter's reward). */
export function chainSubmitterOf(writer: ChainWriter): SlashSubmitter {
  return {
    equivocation: async (a, b) => {
      const receipt = await slashEquivocation(writer, a, b);
      return { txHash: receipt.transactionHash };
    },
    outvote: async (spec, accused, quorum) => {
      const receipt = await slashOutvoted(writer, spec, accused, quorum);
      return { txHash: receipt.transactionHash, caseId: caseIdOf(receipt) };
    },
    advanceCase: (caseId, nowMs) => advanceCase(writer, caseId, nowMs),
    revertName: revertErrorName,
  };
}

/**
 * Moves an outvote case on as far as it can go now: an undisputed case is finalized once its
 * dispute window has passed (the slash is taken then), a disputed one gets its jury drawn once the
 * seed block is mined and is resolved once the vote window has passed. Anyone may send these.
 */
async function advanceCase(writer: ChainWriter, caseId: bigint, nowMs: number): Promise<CaseProgress> {
  const stored = await readCase(writer, caseId);
  const later = (unixSeconds: bigint) => ({
    settled: false as const,
    nextAt: Number(unixSeconds + 1n) * 1000,
  });
  const tryStep = async (step: () => Promise<unknown>, waitOn: string, retry: CaseProgress) => {
    try {
      await step();
      return undefined;
    } catch (err) {
      if (err instanceof BaseError && revertErrorName(err) === waitOn) return retry;
      throw err;
    }
  };
  switch (stored.stage) {
    case CaseStage.Open: {
      if (BigInt(Math.floor(nowMs / 1000)) <= stored.deadline) return later(stored.deadline);
      const wait = await tryStep(
        () => finalizeOutvote(writer, caseId),
        "DisputeWindowOpen",
        later(stored.deadline),
      );
      return wait ?? advanceCase(writer, caseId, nowMs);
    }
    case CaseStage.Disputed: {
      const retry = { settled: false as const, nextAt: nowMs + BLOCK_WAIT_MS };
      return (
        (await tryStep(() => drawJury(writer, caseId), "DrawTooEarly", retry)) ??
        advanceCase(writer, caseId, nowMs)
      );
    }
    case CaseStage.Drawn: {
      if (BigInt(Math.floor(nowMs / 1000)) <= stored.voteDeadline) return later(stored.voteDeadline);
      const wait = await tryStep(
        () => resolveDispute(writer, caseId),
        "VoteWindowOpen",
        later(stored.voteDeadline),
      );
      return wait ?? advanceCase(writer, caseId, nowMs);
    }
    default:
      return { settled: true, outcome: closedOutcome(stored.outcome) };
  }
}

function closedOutcome(outcome: number): "slashed" | "cleared" | "void" {
  if (outcome === CaseOutcome.Undisputed || outcome === CaseOutcome.AccusedConvicted) return "slashed";
  if (outcome === CaseOutcome.AccusedCleared) return "cleared";
  return "void";
}
