/**
 * The one size limit of each kind of job data, in bytes. The API, the wire schemas, the
 * runtime, the market checks, the blockstore and the block exchange all read it from here.
 *
 * 16 MiB each: the runtime's module policy has always capped modules at 16 MiB and a job's
 * stdout at 16 MiB, and a donor holds a job's module, input and output in memory at once
 * (with the instrumented module and the worker's copies, about 5× one limit per job slot).
 */
export const DATA_LIMITS = {
  moduleBytes: 16 * 1024 * 1024,
  inputBytes: 16 * 1024 * 1024,
  outputBytes: 16 * 1024 * 1024,
} as const;

export type DataKind = "module" | "input" | "output";

/** The largest block of any kind: what the blockstore holds and the block exchange carries. */
export const MAX_BLOCK_BYTES = Math.max(
  DATA_LIMITS.moduleBytes,
  DATA_LIMITS.inputBytes,
  DATA_LIMITS.outputBytes,
);

/** The limit of one kind of data. */
export function dataLimit(kind: DataKind): number {
  return DATA_LIMITS[`${kind}Bytes`];
}

/** Characters of the standard (padded) base64 text of `bytes` bytes. */
export function base64Length(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

/** Why `size` bytes of `kind` are refused, naming the limit; undefined when within it. */
export function dataLimitProblem(kind: DataKind, size: number): string | undefined {
  const limit = dataLimit(kind);
  if (size <= limit) return undefined;
  return `the ${kind} is ${size} bytes, above the ${limit}-byte limit (DATA_LIMITS.${kind}Bytes)`;
}

/** Throws a RangeError naming the limit when `size` bytes of `kind` are above it. */
export function checkDataSize(kind: DataKind, size: number): void {
  const problem = dataLimitProblem(kind, size);
  if (problem !== undefined) throw new RangeError(problem);
}
