import type { Address } from "viem";
import { CID, cidToBytes32, receiptFromWire } from "../protocol/index.ts";
import type { JobSpecMessage, ReceiptWire } from "../protocol/index.ts";
import { errorMessage } from "./util.ts";

/** A signed receipt as it reaches the buyer, by delivery or in a status answer. */
export interface SignedReceipt {
  receipt: ReceiptWire;
  signature: `0x${string}`;
  outputCid: string;
  /** The output itself, when small enough to travel with the receipt. */
  outputBase64?: string;
}

/**
 * Why the buyer refuses a receipt for its job, checking everything that needs no
 * signature recovery or hashing: the executor is the one assigned, the receipt names the
 * job's module and input, stays within its fuel limit, and its output CID is the signed
 * one. Undefined when the receipt passes. Pure: range checks of the receipt against its
 * spec plug in here.
 */
export function receiptRefusal(
  job: { jobId: string; spec: Pick<JobSpecMessage, "moduleCid" | "inputCid" | "fuelLimit"> },
  executor: Address,
  signed: SignedReceipt,
): string | undefined {
  const receipt = receiptFromWire(signed.receipt);
  if (receipt.jobId.toLowerCase() !== job.jobId.toLowerCase()) return "the receipt is for another job";
  if (receipt.executor.toLowerCase() !== executor.toLowerCase())
    return "the receipt is not from the assigned executor";
  if (receipt.moduleCid !== job.spec.moduleCid || receipt.inputCid !== job.spec.inputCid)
    return "the receipt names another module or input";
  if (receipt.fuelUsed > job.spec.fuelLimit) return "the receipt claims more fuel than the limit";
  try {
    if (cidToBytes32(CID.parse(signed.outputCid)) !== receipt.outputCid)
      return "the output CID is not the signed one";
  } catch (err) {
    return `bad output CID: ${errorMessage(err)}`;
  }
  return undefined;
}
