import type { Address } from "viem";
import { CID, cidToBytes32, receiptFromWire, receiptSpecError } from "../protocol/index.ts";
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
 * signature recovery or hashing: the executor is the one assigned, the receipt is in range
 * for the job's spec (`receiptSpecError`: known status, the job's module and input, fuel
 * within the limit and exactly the limit when out of fuel, times in order), and its output
 * CID is the signed one. Undefined when the receipt passes.
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
  const outOfRange = receiptSpecError(receipt, job.spec);
  if (outOfRange) return outOfRange;
  try {
    if (cidToBytes32(CID.parse(signed.outputCid)) !== receipt.outputCid)
      return "the output CID is not the signed one";
  } catch (err) {
    return `bad output CID: ${errorMessage(err)}`;
  }
  return undefined;
}
