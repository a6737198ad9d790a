import { ReceiptStatus } from "../protocol/index.ts";
import type { BuyerJobState } from "./buyer-state.ts";
import type { JobEvent, JobView } from "./types.ts";

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
  return {
    jobId: job.jobId,
    state: job.state,
    priority: job.priority,
    spec: job.announce.spec,
    signature: job.signature,
    reason: job.reason,
    executor: job.current ? { peerId: job.current.peerId, operator: job.current.operator } : undefined,
    attempts: job.attempts,
    events,
    result: job.result,
    receipt: job.receipt,
  };
}

export function statusName(status: number): string {
  return Object.entries(ReceiptStatus).find(([, value]) => value === status)?.[0] ?? `status_${status}`;
}

function settled(job: Pick<BuyerJobState, "state">): boolean {
  return job.state === "completed" || job.state === "failed";
}
