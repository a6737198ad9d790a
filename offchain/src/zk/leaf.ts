import type { Address } from "viem";
import { hash5 } from "./poseidon.ts";

/** One channel's leaf in the state tree (docs/zk.md, "State tree"). */
export interface ZkLeaf {
  ax: bigint;
  ay: bigint;
  payee: Address;
  deposit: bigint;
  paid: bigint;
}

export function leafHash(leaf: ZkLeaf): bigint {
  return hash5(leaf.ax, leaf.ay, BigInt(leaf.payee), leaf.deposit, leaf.paid);
}
