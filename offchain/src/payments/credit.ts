// Whether a donor works for a buyer: a pure decision from the buyer's credit with this payee.
import { jobAmount } from "./pricing.ts";

/** A buyer's standing with this payee (ChannelBook.creditOf). */
export interface BuyerCredit {
  /** Σ over the buyer's open channels to this payee of deposit − max(paid, voucher held). */
  unspentDeposit: bigint;
  /** What the buyer owes for jobs this node ran that no voucher paid yet. */
  unpaid: bigint;
}

export interface CreditLimits {
  /** Work a buyer may owe without a channel that covers it, in token base units. */
  freeAllowance: bigint;
  /** Most a buyer may owe unpaid; past it its jobs are declined with `payment_overdue`. */
  maxUnpaid: bigint;
}

export type CreditDecision =
  { type: "work" } | { type: "decline"; reason: "payment_required" | "payment_overdue"; detail: string };

/** The most a job can cost at `pricePerMegaFuel`: its whole fuel limit at that price. */
export function maxCost(pricePerMegaFuel: bigint, fuelLimit: bigint): bigint {
  return jobAmount(pricePerMegaFuel, fuelLimit);
}

/**
 * Work for the buyer when its unspent deposit covers what it owes, what this node is running
 * for it (`committed`) and this job's maximum cost, or when all of that stays within the free
 * allowance; never while it owes more than `maxUnpaid`.
 */
export function decideCredit(
  credit: BuyerCredit,
  jobMaxCost: bigint,
  committed: bigint,
  limits: CreditLimits,
): CreditDecision {
  if (credit.unpaid > limits.maxUnpaid)
    return {
      type: "decline",
      reason: "payment_overdue",
      detail: `the buyer owes ${credit.unpaid} unpaid, above this donor's limit of ${limits.maxUnpaid}`,
    };
  const exposure = credit.unpaid + committed + jobMaxCost;
  if (exposure <= credit.unspentDeposit || exposure <= limits.freeAllowance) return { type: "work" };
  return {
    type: "decline",
    reason: "payment_required",
    detail:
      credit.unspentDeposit === 0n
        ? `no open channel to this donor's payee covers the job's maximum cost of ${jobMaxCost}`
        : `the channels' unspent deposit of ${credit.unspentDeposit} does not cover ${exposure} (owed, running and this job)`,
  };
}
