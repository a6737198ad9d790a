// The operator key's proof of possession that DonorRegistry.register and rotateOperator require.
import { hashTypedData } from "viem";
import type { Address, Hex, LocalAccount } from "viem";
import { canonicalSignature, cellDomain } from "../protocol/index.ts";

/** EIP-712 type of the proof; mirrors CellTypes.OPERATOR_REGISTRATION_TYPEHASH. */
export const operatorRegistrationTypes = {
  OperatorRegistration: [
    { name: "donor", type: "address" },
    { name: "operator", type: "address" },
    { name: "peerKey", type: "bytes32" },
    { name: "nonce", type: "uint256" },
  ],
} as const;

/** What an operator key signs: `donor` (the staking wallet) may make it its operator with `peerKey`. */
export interface OperatorRegistration {
  donor: Address;
  operator: Address;
  peerKey: Hex;
  /** The donor's registration nonce: 0 for `register`, `registrationOf(donor).nonce` for a rotation. */
  nonce: bigint;
}

export function operatorRegistrationDigest(
  chainId: number,
  donorRegistry: Address,
  registration: OperatorRegistration,
): Hex {
  return hashTypedData({
    domain: cellDomain(chainId, donorRegistry),
    types: operatorRegistrationTypes,
    primaryType: "OperatorRegistration",
    message: registration,
  });
}

/** Signs the proof with the operator key itself (its address must be `registration.operator`). */
export async function signOperatorRegistration(
  operator: Pick<LocalAccount, "address" | "signTypedData">,
  chainId: number,
  donorRegistry: Address,
  registration: Omit<OperatorRegistration, "operator">,
): Promise<Hex> {
  return canonicalSignature(
    await operator.signTypedData({
      domain: cellDomain(chainId, donorRegistry),
      types: operatorRegistrationTypes,
      primaryType: "OperatorRegistration",
      message: { ...registration, operator: operator.address },
    }),
  );
}
