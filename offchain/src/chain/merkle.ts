import { concat, encodeAbiParameters, hashStruct, keccak256 } from "viem";
import type { Hex } from "viem";
import { receiptTypes } from "../protocol/index.ts";
import type { Receipt } from "../protocol/index.ts";

/**
 * Receipt trees as PaymentChannels checks them: a leaf is
 * keccak256(keccak256(abi.encode(receiptStructHash))) (OpenZeppelin's StandardMerkleTree leaf
 * for one bytes32), inner nodes hash the sorted pair (OpenZeppelin MerkleProof).
 */
export function receiptStructHash(receipt: Receipt): Hex {
  return hashStruct({ data: receipt, types: receiptTypes, primaryType: "Receipt" });
}

export function receiptLeaf(receipt: Receipt): Hex {
  return keccak256(keccak256(encodeAbiParameters([{ type: "bytes32" }], [receiptStructHash(receipt)])));
}

function hashPair(a: Hex, b: Hex): Hex {
  return BigInt(a) < BigInt(b) ? keccak256(concat([a, b])) : keccak256(concat([b, a]));
}

export interface ReceiptTree {
  root: Hex;
  leaves: readonly Hex[];
  /** Proof for the receipt at `index` in the order given to buildReceiptTree. */
  proof(index: number): Hex[];
}

/** Builds the tree over receipts in the given order (an odd node is carried up unchanged). */
export function buildReceiptTree(receipts: readonly Receipt[]): ReceiptTree {
  if (receipts.length === 0) throw new Error("a receipt tree needs at least one receipt");
  const leaves = receipts.map(receiptLeaf);
  const levels: Hex[][] = [leaves];
  while (levels.at(-1)!.length > 1) {
    const below = levels.at(-1)!;
    const above: Hex[] = [];
    for (let i = 0; i < below.length; i += 2) {
      above.push(i + 1 < below.length ? hashPair(below[i]!, below[i + 1]!) : below[i]!);
    }
    levels.push(above);
  }
  return {
    root: levels.at(-1)![0]!,
    leaves,
    proof(index: number): Hex[] {
      if (!Number.isInteger(index) || index < 0 || index >= leaves.length) {
        throw new Error(`receipt index ${index} is outside 0..${leaves.length - 1}`);
      }
      const proof: Hex[] = [];
      let position = index;
      for (const level of levels.slice(0, -1)) {
        const sibling = position ^ 1;
        if (sibling < level.length) proof.push(level[sibling]!);
        position >>= 1;
      }
      return proof;
    },
  };
}

/** Checks a proof the way MerkleProof.verify does. */
export function verifyReceiptProof(root: Hex, receipt: Receipt, proof: readonly Hex[]): boolean {
  return (
    proof.reduce<Hex>((node, sibling) => hashPair(node, sibling), receiptLeaf(receipt)).toLowerCase() ===
    root.toLowerCase()
  );
}
