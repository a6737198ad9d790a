import type { Address, Hex } from "viem";
import type { JobSpecMessage, ReceiptWire } from "../protocol/index.ts";

/** One replica's signed receipt as the buyer verified it. */
export interface ReplicaReceipt {
  peerId: string;
  operator: Address;
  receipt: ReceiptWire;
  signature: Hex;
  /** The executor's bid price, token base units per 10^6 fuel: what its agreeing receipt earns by. */
  pricePerMegaFuel: bigint;
  /** Assignment accepted → receipt verified, ms. */
  latencyMs: number;
}

/** A replica that gave no vote. */
export interface SilentReplica {
  peerId: string;
  operator: Address;
  why: "timeout" | "no_result" | "unreachable" | "cancelled";
}

/** What a buyer learned when a job's verdict was decided (accepted or no quorum). */
export interface VerdictReport {
  jobId: Hex;
  spec: JobSpecMessage;
  outcome: "accepted" | "no_quorum";
  /** Votes needed: q(n) of the job's replica count. */
  quorum: number;
  /** Receipts that agree with the accepted result (empty on no_quorum). */
  agreeing: ReplicaReceipt[];
  /** Receipts that disagree with the accepted result (on no_quorum: every receipt). */
  dissenting: ReplicaReceipt[];
  silent: SilentReplica[];
  decidedAt: number;
}

/** One operator signed two different receipts for one job (differing in status, outputCid or fuelUsed). */
export interface EquivocationSighting {
  jobId: Hex;
  operator: Address;
  peerId: string;
  a: { receipt: ReceiptWire; signature: Hex };
  b: { receipt: ReceiptWire; signature: Hex };
  seenAt: number;
}

/** Where the buyer hands what it learned; the node wires TRUST and EVIDENCE to it. */
export interface VerdictListener {
  onVerdict(report: VerdictReport): void;
  onEquivocation(sighting: EquivocationSighting): void;
}

/**
 * One listener that hands every report to each of `listeners` in order. A listener that throws
 * does not keep the report from the others; the first error is rethrown after all were called.
 */
export function fanOut(...listeners: VerdictListener[]): VerdictListener {
  const each = (call: (listener: VerdictListener) => void): void => {
    let firstError: unknown;
    let failed = false;
    for (const listener of listeners) {
      try {
        call(listener);
      } catch (error) {
        if (!failed) firstError = error;
        failed = true;
      }
    }
    if (failed) throw firstError;
  };
  return {
    onVerdict: (report) => each((listener) => listener.onVerdict(report)),
    onEquivocation: (sighting) => each((listener) => listener.onEquivocation(sighting)),
  };
}
