import type { Address, Hex } from "viem";
import { buildReceiptTree } from "../chain/index.ts";
import { ReceiptWireSchema, receiptFromWire } from "../protocol/index.ts";
import type { ReceiptWire } from "../protocol/index.ts";
import type { Store } from "../store/index.ts";

/** What `verifyReceiptInclusion(submitter, epoch, receipt, proof)` takes, with the root it checks against. */
export interface ReceiptProof {
  epoch: number;
  submitter: Address;
  root: Hex;
  receipt: ReceiptWire;
  proof: Hex[];
}

/**
 * The inclusion proof of this node's receipt for `jobId` under the root it anchored, rebuilt
 * from the epoch's stored membership; undefined when no settled epoch anchored it.
 */
export function receiptProof(store: Store, submitter: Address, jobId: Hex): ReceiptProof | undefined {
  const member = store.settlements.membership(jobId, submitter);
  if (!member) return undefined;
  const epoch = store.settlements.epoch(member.epoch);
  if (!epoch || epoch.state !== "settled" || epoch.root === null) return undefined;
  const receipts = store.settlements.epochReceipts(member.epoch).map((stored, index) => {
    const parsed = ReceiptWireSchema.safeParse(stored);
    if (!parsed.success)
      throw new Error(`receipt ${index} of epoch ${member.epoch} in the store does not parse`);
    return parsed.data;
  });
  const tree = buildReceiptTree(receipts.map(receiptFromWire));
  if (tree.root !== epoch.root)
    throw new Error(
      `epoch ${member.epoch}: stored receipts give root ${tree.root}, the epoch anchored ${epoch.root}`,
    );
  return {
    epoch: member.epoch,
    submitter,
    root: tree.root,
    receipt: receipts[member.leafIndex]!,
    proof: tree.proof(member.leafIndex),
  };
}
