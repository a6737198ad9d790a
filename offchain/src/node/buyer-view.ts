import { ReceiptStatus } from "../protocol/index.ts";
import type { Hex } from "viem";
import type { TallyEntry } from "../quorum/index.ts";
import { activeAttempts } from "./buyer-state.ts";
import type { BuyerJobState, VerdictSummary } from "./buyer-state.ts";
import type { JobEvent, JobView, ReplicaView, TallyView, VerdictView } from "./types.ts";

/** What the node shows of a job: its state, executor, result and events in time order. */
export function jobView(job: BuyerJobState): JobView {
  const roundEvents = job.round?.events ?? [];
  const totals = job.totals;
  const live: JobEvent[] =
    totals.rounds > 0 && !settled(job)
      ? [
          {
            jobId: job.jobId,
            type: "bid_rounds",
            at: roundEvents[0]?.at ?? job.events.at(-1)?.at ?? 0,
            detail:
              `${totals.rounds} earlier bid rounds: ${totals.bids} bids, ` +
              `${totals.declines} declines, ${totals.late} late, ${totals.unstaked} from unstaked peers`,
          },
        ]
      : [];
  const summary = job.summary ? [job.summary] : live;
  // In time order (a job read back from the store has its bid events written last), the
  // final event last, after any bid that came in the same millisecond.
  const last = settled(job) ? job.events.slice(-1) : [];
  const rest = job.events.slice(0, job.events.length - last.length);
  const events = [...[...rest, ...summary, ...roundEvents].sort((a, b) => a.at - b.at), ...last];
  const executor = activeAttempts(job)[0];
  const replicated = job.spec.replicas > 1 || job.verification.mode === "spot";
  return {
    jobId: job.jobId,
    state: job.state,
    priority: job.priority,
    spec: job.announce.spec,
    signature: job.signature,
    reason: job.reason,
    executor: executor ? { peerId: executor.peerId, operator: executor.operator } : undefined,
    attempts: job.attempts,
    events,
    result: job.result,
    receipt: job.receipt,
    ...(replicated
      ? {
          verification:
            job.verification.mode === "spot"
              ? { mode: "spot" as const, rate: job.verification.rate }
              : { mode: "quorum" as const },
          replicas: replicaViews(job),
          verdict: job.verdict && verdictView(job.verdict),
        }
      : {}),
  };
}

/** Every attempt of a replicated job: those at work, those that voted, and those that gave no vote. */
function replicaViews(job: BuyerJobState): ReplicaView[] {
  const views = new Map<number, ReplicaView>();
  for (const attempt of job.past)
    views.set(attempt.number, {
      slot: attempt.slot,
      attempt: attempt.number,
      peerId: attempt.peerId,
      operator: attempt.operator,
      state: "silent",
    });
  for (const attempt of activeAttempts(job))
    views.set(attempt.number, {
      slot: attempt.slot,
      attempt: attempt.number,
      peerId: attempt.peerId,
      operator: attempt.operator,
      state: !attempt.confirmed ? "assigning" : attempt.running ? "running" : "assigned",
    });
  const dissenters = new Set(job.verdict?.dissenters.map((dissenter) => dissenter.operator.toLowerCase()));
  for (const vote of job.votes)
    views.set(vote.attempt, {
      slot: vote.slot,
      attempt: vote.attempt,
      peerId: vote.peerId,
      operator: vote.operator,
      state: "voted",
      receipt: {
        status: statusName(vote.receipt.status),
        outputCid: vote.receipt.outputCid,
        fuelUsed: vote.receipt.fuelUsed,
      },
      ...(job.verdict?.outcome === "accepted"
        ? { agrees: !dissenters.has(vote.operator.toLowerCase()) }
        : {}),
    });
  return [...views.values()].sort((a, b) => a.attempt - b.attempt);
}

export function verdictView(verdict: VerdictSummary): VerdictView {
  return {
    outcome: verdict.outcome,
    quorum: verdict.quorum,
    tally: verdict.tally.map(tallyView),
    dissenters: verdict.dissenters,
    equivocators: verdict.equivocators,
  };
}

/** A tally entry's key (status/outputCid/fuelUsed, quorum/verdict.ts) as its fields. */
function tallyView(entry: TallyEntry): TallyView {
  const [status = "", outputCid = "", fuelUsed = ""] = entry.key.split("/");
  return { status: statusName(Number(status)), outputCid: outputCid as Hex, fuelUsed, votes: entry.votes };
}

export function statusName(status: number): string {
  return Object.entries(ReceiptStatus).find(([, value]) => value === status)?.[0] ?? `status_${status}`;
}

function settled(job: Pick<BuyerJobState, "state">): boolean {
  return job.state === "completed" || job.state === "failed";
}
