/*
 * The verdict rule of replicated execution, pure: which result, if any, a set of replica
 * receipts decides. A job with n replicas tolerates f = ⌊(n−1)/3⌋ Byzantine executors and
 * accepts a result once q(n) = max(2f+1, ⌊n/2⌋+1) distinct operators signed the same
 * (status, outputCid, fuelUsed). A replica that timed out, crashed or gave no result has no vote.
 */

/** The part of a receipt a vote is about. */
export interface VotedReceipt {
  status: number;
  outputCid: string;
  fuelUsed: string;
}

/** One replica's verified receipt. */
export interface Vote {
  operator: string;
  receipt: VotedReceipt;
}

/** How many operators voted for one result. */
export interface TallyEntry {
  key: string;
  votes: number;
}

/** Two different receipts of one operator: neither counts. */
export interface Equivocation<V extends Vote> {
  operator: string;
  a: V;
  b: V;
}

export type Verdict<V extends Vote> =
  | { kind: "accepted"; key: string; agreeing: V[]; dissenting: V[]; equivocations: Equivocation<V>[] }
  | { kind: "pending"; tally: TallyEntry[]; equivocations: Equivocation<V>[] }
  | { kind: "impossible"; tally: TallyEntry[]; equivocations: Equivocation<V>[] };

/** Byzantine executors that n replicas tolerate. */
export function faultTolerance(n: number): number {
  return Math.floor((n - 1) / 3);
}

/** Agreeing receipts that decide a job of n replicas (n=1 → 1, n=3 → 2, n=4 → 3, n=7 → 5). */
export function quorumSize(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`replicas must be a positive integer, got ${n}`);
  return Math.max(2 * faultTolerance(n) + 1, Math.floor(n / 2) + 1);
}

/** The result a receipt votes for: status, output and fuel must all match to agree. */
export function voteKey(receipt: VotedReceipt): string {
  return `${receipt.status}/${receipt.outputCid.toLowerCase()}/${receipt.fuelUsed}`;
}

/**
 * Decides a job from its votes. `n` is the job's replica count (q is q(n) even when replicas
 * were added); `stillRunning` counts replicas that may still vote. One vote per operator: an
 * operator's repeated identical receipt counts once, two different receipts of one operator
 * are an equivocation and neither counts. "impossible": even if every replica still running
 * agreed with the leading result, it would fall short of q.
 */
export function tally<V extends Vote>(
  votes: readonly V[],
  options: { n: number; stillRunning: number },
): Verdict<V> {
  const q = quorumSize(options.n);
  const { counted, equivocations } = oneVotePerOperator(votes);
  const byKey = new Map<string, V[]>();
  for (const vote of counted) {
    const key = voteKey(vote.receipt);
    byKey.set(key, [...(byKey.get(key) ?? []), vote]);
  }
  const entries: TallyEntry[] = [...byKey]
    .map(([key, voters]) => ({ key, votes: voters.length }))
    .sort((a, b) => b.votes - a.votes || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const winners = entries.filter((entry) => entry.votes >= q);
  if (winners.length === 1) {
    const key = winners[0]!.key;
    const agreeing = byKey.get(key)!;
    const dissenting = counted.filter((vote) => voteKey(vote.receipt) !== key);
    return { kind: "accepted", key, agreeing, dissenting, equivocations };
  }
  // Two results with a quorum each: only possible with more voters than 2q, and then neither is safe.
  const leading = winners.length > 1 ? 0 : (entries[0]?.votes ?? 0);
  if (leading + Math.max(0, options.stillRunning) < q)
    return { kind: "impossible", tally: entries, equivocations };
  return { kind: "pending", tally: entries, equivocations };
}

/** Votes that count (one per operator, in first-seen order) and the operators that equivocated. */
function oneVotePerOperator<V extends Vote>(
  votes: readonly V[],
): { counted: V[]; equivocations: Equivocation<V>[] } {
  const first = new Map<string, V>();
  const equivocated = new Map<string, Equivocation<V>>();
  for (const vote of votes) {
    const operator = vote.operator.toLowerCase();
    const seen = first.get(operator);
    if (!seen) first.set(operator, vote);
    else if (voteKey(seen.receipt) !== voteKey(vote.receipt) && !equivocated.has(operator))
      equivocated.set(operator, { operator, a: seen, b: vote });
  }
  const counted = [...first.values()].filter((vote) => !equivocated.has(vote.operator.toLowerCase()));
  return { counted, equivocations: [...equivocated.values()] };
}
