import type { Logger } from "pino";
import type { MeshNode, RejectReason } from "../p2p/index.ts";

/**
 * How each application-level refusal weighs against its sender in the mesh's penalty
 * score: a forged signature or receipt weighs most; an answer nobody asked for, least.
 */
const PENALTY_OF: Readonly<Record<string, RejectReason>> = {
  bid_rejected_signature: "bad_signature",
  bad_spec_signature: "bad_signature",
  voucher_forged: "bad_signature",
  receipt_invalid: "bad_receipt",
  assign_wrong_price: "bad_bid",
  bad_announce: "bad_announce",
  bid_unknown_job: "unsolicited",
  assign_without_bid: "unsolicited",
  assign_not_from_buyer: "unsolicited",
};

/**
 * Refusals counted but not charged: a donor registered after the buyer's registry view was
 * last caught up reads as unstaked until the next poll, and an unstaked identity costs
 * nothing to replace, so charging it would only hurt the honest newcomer.
 */
const UNCHARGED = new Set(["bid_unstaked", "stake_unknown"]);

export type Misbehaved = (peerId: string, reason: string, detail: string) => void;

/**
 * Counts the buyer's and donor's refusals of a peer's messages by reason (the reasons are
 * a fixed, small set, so the map is bounded) and charges each against the sender's
 * penalty score, as parse failures are.
 */
export function refusalRecorder(
  mesh: Pick<MeshNode, "penalize">,
  log: Logger,
): { misbehaved: Misbehaved; counts: ReadonlyMap<string, number> } {
  const counts = new Map<string, number>();
  const misbehaved: Misbehaved = (peerId, reason, detail) => {
    log.debug({ peerId, reason, detail }, "refused a peer's message");
    counts.set(reason, (counts.get(reason) ?? 0) + 1);
    if (!UNCHARGED.has(reason))
      mesh.penalize(peerId, PENALTY_OF[reason] ?? "unknown", `${reason}: ${detail}`);
  };
  return { misbehaved, counts };
}
