import { ReceiptStatus } from "../protocol/index.ts";

/**
 * What `cell` exits with, so scripts can tell a failed job from a broken command. Stable:
 * scripts rely on these values.
 */
export const EXIT_CODES = {
  /** The command worked; a job finished with status ok. */
  ok: 0,
  /** A usage mistake or an error (bad flag, unreadable file, node unreachable, unknown job). */
  error: 1,
  /** The job failed: no donor produced a result (no bids, attempts exhausted, timeout, …). */
  jobFailed: 2,
  /** The job finished with a signed result that is not ok (exit, trap, out_of_fuel, policy_rejected). */
  notOk: 3,
  /** The job has not finished yet (still queued or running). */
  unfinished: 4,
} as const;
export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES];

/** The exit code paragraph of a job command's --help. */
export const JOB_EXIT_HELP = `
Exit codes: 0 the job completed with status ok; 1 usage or other error; 2 the job
failed (no result); 3 the job completed with another status (exit, trap, out_of_fuel,
policy_rejected); 4 the job has not finished yet.`;

/** A receipt status as its name (`out_of_fuel`), whether given by name or wire value (3). */
export function statusName(status: unknown): string {
  if (typeof status === "string" && !/^\d+$/.test(status)) return status;
  const value = Number(status);
  const name = Object.entries(ReceiptStatus).find(([, wire]) => wire === value)?.[0];
  return name ?? `unknown status ${String(status)}`;
}

/** The exit code a job in this state and with this result status means. */
export function jobExitCode(job: { state: string; result?: unknown }): ExitCode {
  if (job.state === "failed") return EXIT_CODES.jobFailed;
  if (job.state !== "completed") return EXIT_CODES.unfinished;
  const status = (job.result as { status?: unknown } | undefined)?.status;
  return statusName(status) === "ok" ? EXIT_CODES.ok : EXIT_CODES.notOk;
}
