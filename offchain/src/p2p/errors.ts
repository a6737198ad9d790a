/** Why an inbound message or a request was refused. */
export const REJECT_REASONS = [
  "malformed",
  "too_large",
  "rate_limited",
  "hash_mismatch",
  "not_entitled",
  "handler_error",
  "unknown",
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** Codes a request can fail with: a remote refusal, or a local failure before any answer. */
export type MeshErrorCode =
  RejectReason | "timeout" | "not_found" | "unreachable" | "unsupported" | "queue_full" | "stopped";

/** A failure the caller can branch on by `code`; `reason` says what exactly was wrong. */
export class MeshError extends Error {
  override readonly name = "MeshError";
  readonly code: MeshErrorCode;
  readonly reason: string;

  constructor(code: MeshErrorCode, reason: string, options?: ErrorOptions) {
    super(`${code}: ${reason}`, options);
    this.code = code;
    this.reason = reason;
  }
}
