import type { Hex } from "viem";
import { ReceiptStatus } from "./eip712.ts";
import type { Receipt, ReceiptStatusName } from "./eip712.ts";

/** The job terms a receipt must keep to: the fields of the signed spec it reports on. */
export interface ReceiptSpecTerms {
  fuelLimit: bigint;
  moduleCid: Hex;
  inputCid: Hex;
}

const STATUS_NAMES = new Map<number, ReceiptStatusName>(
  Object.entries(ReceiptStatus).map(([name, value]) => [value, name as ReceiptStatusName]),
);

/** "0 ok, 1 exit, …": the known statuses, for error messages. */
export const RECEIPT_STATUS_LIST = [...STATUS_NAMES].map(([value, name]) => `${value} ${name}`).join(", ");

/** True when `status` is one of ReceiptStatus's values. */
export function isReceiptStatus(status: number): boolean {
  return STATUS_NAMES.has(status);
}

/**
 * What makes a receipt impossible for the job it claims to report, or undefined when it fits:
 * an unknown status, another module or input than the spec's, more fuel than the limit, an
 * `out_of_fuel` that did not use exactly the limit (the runtime always reports the limit), or a
 * finish before the start. The signature and the job id are checked elsewhere.
 */
export function receiptSpecError(receipt: Receipt, spec: ReceiptSpecTerms): string | undefined {
  if (!isReceiptStatus(receipt.status))
    return `receipt status ${receipt.status} is not a known status (${RECEIPT_STATUS_LIST})`;
  if (!sameBytes32(receipt.moduleCid, spec.moduleCid))
    return `receipt moduleCid ${receipt.moduleCid} is not the job's module ${spec.moduleCid}`;
  if (!sameBytes32(receipt.inputCid, spec.inputCid))
    return `receipt inputCid ${receipt.inputCid} is not the job's input ${spec.inputCid}`;
  if (receipt.fuelUsed > spec.fuelLimit)
    return `receipt fuelUsed ${receipt.fuelUsed} is above the job's fuel limit ${spec.fuelLimit}`;
  if (receipt.status === ReceiptStatus.out_of_fuel && receipt.fuelUsed !== spec.fuelLimit)
    return `an out_of_fuel receipt must report the whole fuel limit ${spec.fuelLimit} as used, not ${receipt.fuelUsed}`;
  if (receipt.finishedAt < receipt.startedAt)
    return `receipt finishedAt ${receipt.finishedAt} is before its startedAt ${receipt.startedAt}`;
  return undefined;
}

function sameBytes32(a: Hex, b: Hex): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
