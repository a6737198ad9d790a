import { encodeAbiParameters, keccak256 } from "viem";
import type { Address } from "viem";

/** The BN254 scalar field: every circuit signal and Poseidon input lives below it. */
export const FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
/** Amounts (deposits, cumulative paid) are below 2^96 in the tree, the circuit and the contract. */
export const AMOUNT_BITS = 96;
export const MAX_AMOUNT = (1n << 96n) - 1n;
/** Leaf indexes take 30 bits in a published transfer. */
export const LEAF_INDEX_BITS = 30;

/** keccak256(abi.encode("cell.zk.v1", chainId, zkChannels)) mod p: the contract's immutable `domainTag`. */
export function domainTagOf(chainId: number | bigint, zkChannels: Address): bigint {
  const encoded = encodeAbiParameters(
    [{ type: "string" }, { type: "uint256" }, { type: "address" }],
    ["cell.zk.v1", BigInt(chainId), zkChannels],
  );
  return BigInt(keccak256(encoded)) % FIELD;
}

export function assertAmount(value: bigint, what: string): void {
  if (value < 0n || value > MAX_AMOUNT) throw new RangeError(`${what} ${value} is outside 0..2^96-1`);
}
