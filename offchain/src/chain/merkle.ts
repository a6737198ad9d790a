import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { encodeAbiParameters, hashStruct, isHex, keccak256 } from "viem";
import type { Hex } from "viem";
import { receiptTypes } from "../protocol/index.ts";
import type { Receipt } from "../protocol/index.ts";

/**
 * Receipt trees as PaymentChannels checks them: OpenZeppelin's StandardMerkleTree over one
 * `bytes32` per receipt, its EIP-712 struct hash. A leaf is
 * keccak256(keccak256(abi.encode(receiptStructHash))) (`PaymentChannels.receiptLeaf`) and inner
 * nodes hash the sorted pair (`MerkleProof.verify`).
 */
const LEAF_ENCODING = ["bytes32"];

export function receiptStructHash(receipt: Receipt): Hex {
  return hashStruct({ data: receipt, types: receiptTypes, primaryType: "Receipt" });
}

/** The leaf of one receipt, as `PaymentChannels.receiptLeaf` computes it. */
export function receiptLeaf(receipt: Receipt): Hex {
  return keccak256(keccak256(encodeAbiParameters([{ type: "bytes32" }], [receiptStructHash(receipt)])));
}

export interface ReceiptTree {
  root: Hex;
  /** Leaf of each receipt, in the order given to buildReceiptTree. */
  leaves: readonly Hex[];
  /** Proof for the receipt at `index` in the order given to buildReceiptTree. */
  proof(index: number): Hex[];
}

/** Builds the tree over receipts (the leaves are sorted inside the tree; indices stay as given). */
export function buildReceiptTree(receipts: readonly Receipt[]): ReceiptTree {
  if (receipts.length === 0) throw new Error("a receipt tree needs at least one receipt");
  const values = receipts.map((receipt) => [receiptStructHash(receipt)]);
  const tree = StandardMerkleTree.of(values, LEAF_ENCODING);
  return {
    root: asHex(tree.root),
    leaves: values.map((value) => asHex(tree.leafHash(value))),
    proof(index: number): Hex[] {
      if (!Number.isInteger(index) || index < 0 || index >= values.length) {
        throw new Error(`receipt index ${index} is outside 0..${values.length - 1}`);
      }
      return tree.getProof(index).map(asHex);
    },
  };
}

/** Checks a proof the way PaymentChannels.verifyReceiptInclusion does. */
export function verifyReceiptProof(root: Hex, receipt: Receipt, proof: readonly Hex[]): boolean {
  return StandardMerkleTree.verify(root, LEAF_ENCODING, [receiptStructHash(receipt)], [...proof]);
}

function asHex(value: string): Hex {
  if (!isHex(value)) throw new Error(`merkle tree returned ${value}, not hex`);
  return value;
}
