/**
 * Why an inbound message or a request was refused. The first group is found by the mesh
 * layer itself; the second by the application (`MeshNode.penalize`) after a message parsed
 * but was not acceptable; `overloaded` is a drop for this node's own lack of room, never
 * the sender's fault.
 */
export const REJECT_REASONS = [
  "malformed",
  "too_large",
  "rate_limited",
  "hash_mismatch",
  "not_entitled",
  "handler_error",
  "unknown",
  "bad_signature",
  "bad_receipt",
  "bad_bid",
  "bad_announce",
  "unstaked",
  "unsolicited",
  "overloaded",
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
