import { encodeAbiParameters, hashTypedData, keccak256 } from "viem";
import type { Address, Hex, TypedDataDomain } from "viem";

/** The EIP-712 form of a zk voucher, which ZkChannels.settleBySignature accepts (docs/zk.md, "Voucher"). */
export const ZK_VOUCHER_TYPES = {
  ZkVoucher: [
    { name: "leaf", type: "uint32" },
    { name: "cumulativeAmount", type: "uint96" },
  ],
} as const;

export function zkChannelsDomain(chainId: number, zkChannels: Address): TypedDataDomain {
  return { name: "Cell ZkChannels", version: "1", chainId, verifyingContract: zkChannels };
}

export function zkVoucherDigest(domain: TypedDataDomain, leaf: number, cumulativeAmount: bigint): Hex {
  return hashTypedData({
    domain,
    types: ZK_VOUCHER_TYPES,
    primaryType: "ZkVoucher",
    message: { leaf, cumulativeAmount },
  });
}

/**
 * The id under which the payments domain keeps a zk channel: keccak256(abi.encode("cell.zk.channel",
 * zkChannels, leaf)). It can never equal a PaymentChannels channel id, whose preimage is four words.
 */
export function zkChannelIdOf(zkChannels: Address, leaf: number): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "string" }, { type: "address" }, { type: "uint32" }],
      ["cell.zk.channel", zkChannels, leaf],
    ),
  );
}
