/**
 * A job's events, bids, assignments and receipts point at it by `jobs.id` (column `job`),
 * which grows with every job, not by its hash (see migration 3).
 */

/** SQL for the `jobs.id` of the job whose id (hash) is bound to the next `?`. */
export const JOB_ROW = "(SELECT id FROM jobs WHERE job_id = ?)";

/** SQL selecting the job id (hash) of a row of `table` as `job_id`. */
export function jobIdOf(table: string): string {
  return `(SELECT job_id FROM jobs WHERE jobs.id = ${table}.job) AS job_id`;
}

/** SQL that returns a row when the job whose id is bound to `?` is stored. */
export const JOB_STORED = "SELECT 1 FROM jobs WHERE job_id = ?";
