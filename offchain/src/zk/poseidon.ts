// One module per width: the package's root loads the round constants of all sixteen widths
// (~90 ms at every process start, zk or not).
import { poseidon2 } from "poseidon-lite/poseidon2";
import { poseidon3 } from "poseidon-lite/poseidon3";
import { poseidon5 } from "poseidon-lite/poseidon5";

/** Poseidon with 2 inputs: a tree node, and the queue step of TOPUP and CLOSE. */
export const hash2 = (a: bigint, b: bigint): bigint => poseidon2([a, b]);
export const hash3 = (a: bigint, b: bigint, c: bigint): bigint => poseidon3([a, b, c]);
export const hash5 = (a: bigint, b: bigint, c: bigint, d: bigint, e: bigint): bigint =>
  poseidon5([a, b, c, d, e]);
