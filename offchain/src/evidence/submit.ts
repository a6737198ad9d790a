import { caseIdOf, revertErrorName, slashEquivocation, slashOutvoted } from "../chain/index.ts";
import type { ChainWriter } from "../chain/index.ts";
import type { SlashSubmitter } from "./desk.ts";

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
    revertName: revertErrorName,
  };
}
