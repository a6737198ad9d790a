import { isAddressEqual } from "viem";
import type { Address } from "viem";
import type { JobSpecMessage, ReasonCode } from "../protocol/index.ts";

/** What a donor is willing to run, and for how much. */
export interface DonorPolicy {
  /** Asking price in token base units per 1,000,000 fuel. */
  pricePerMegaFuel: bigint;
  /** Jobs run at once. */
  slots: number;
  /** Buyers (genome authors) whose jobs are accepted; empty accepts everyone. */
  acceptedAuthors: readonly Address[];
  maxFuel: bigint;
  maxMemoryPages: number;
  maxTimeoutMs: number;
  /** How long a bid stays valid. */
  bidTtlMs: number;
}

export const DEFAULT_DONOR_POLICY: DonorPolicy = {
  pricePerMegaFuel: 1_000n,
  slots: 2,
  acceptedAuthors: [],
  maxFuel: 10_000_000_000n,
  maxMemoryPages: 1024,
  maxTimeoutMs: 120_000,
  bidTtlMs: 30_000,
};

export interface DonorState {
  /** Whether DonorRegistry shows this node's operator active with its peer key. */
  staked: boolean;
  busySlots: number;
  now: number;
}

export type BidDecision =
  | { type: "bid"; pricePerMegaFuel: bigint; expiresAt: bigint }
  | { type: "decline"; reason: ReasonCode; detail: string };

/** The donor's answer to a job: a bid at its asking price, or the first reason not to. */
export function decideBid(policy: DonorPolicy, spec: JobSpecMessage, state: DonorState): BidDecision {
  const refusal = firstRefusal(policy, spec, state);
  if (refusal) return { type: "decline", ...refusal };
  const expiresAt = BigInt(Math.min(state.now + policy.bidTtlMs, Number(spec.deadline)));
  return { type: "bid", pricePerMegaFuel: policy.pricePerMegaFuel, expiresAt };
}

function firstRefusal(
  policy: DonorPolicy,
  spec: JobSpecMessage,
  state: DonorState,
): { reason: ReasonCode; detail: string } | undefined {
  if (!state.staked)
    return { reason: "not_staked", detail: "this node's operator is not an active donor with its peer key" };
  if (spec.deadline <= BigInt(state.now))
    return { reason: "deadline_missed", detail: "the job's deadline has passed" };
  if (!authorAccepted(policy, spec.buyer))
    return { reason: "author_not_accepted", detail: `buyer ${spec.buyer} is not an accepted author` };
  if (spec.fuelLimit > policy.maxFuel)
    return { reason: "fuel_too_high", detail: `fuel ${spec.fuelLimit} exceeds ${policy.maxFuel}` };
  if (spec.memoryPages > policy.maxMemoryPages) {
    return { reason: "memory_too_high", detail: `${spec.memoryPages} pages exceed ${policy.maxMemoryPages}` };
  }
  if (spec.timeoutMs > policy.maxTimeoutMs) {
    return {
      reason: "timeout_too_long",
      detail: `timeout ${spec.timeoutMs} ms exceeds ${policy.maxTimeoutMs} ms`,
    };
  }
  if (policy.pricePerMegaFuel > spec.maxPricePerMegaFuel) {
    return {
      reason: "bid_rejected_price",
      detail: `asking ${policy.pricePerMegaFuel} per mega-fuel, buyer pays at most ${spec.maxPricePerMegaFuel}`,
    };
  }
  if (state.busySlots >= policy.slots)
    return { reason: "slots_full", detail: `all ${policy.slots} slots are busy` };
  return undefined;
}

function authorAccepted(policy: DonorPolicy, buyer: Address): boolean {
  return (
    policy.acceptedAuthors.length === 0 ||
    policy.acceptedAuthors.some((author) => isAddressEqual(author, buyer))
  );
}

/** What a job costs at most: price × fuel limit / 10^6, rounded up. */
export function maxCost(pricePerMegaFuel: bigint, fuel: bigint): bigint {
  return (pricePerMegaFuel * fuel + 999_999n) / 1_000_000n;
}
