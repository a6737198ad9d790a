// Shared deployment and signing helpers of the contract tests (no tests here).
import { keccak256, parseEther, parseSignature, toHex } from "viem";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { PrivateKeyAccount } from "viem/accounts";
import { signOperatorRegistration } from "../../../offchain/src/chain/index.ts";
import { signReceipt } from "../../../offchain/src/protocol/index.ts";
import { cellDomain } from "../../../offchain/src/protocol/index.ts";
import type { JobSpecMessage, Receipt } from "../../../offchain/src/protocol/index.ts";

export const MIN_STAKE = parseEther("100");
export const UNBONDING_DELAY = 3_600;
export const DISPUTE_WINDOW = 600;
export const ROTATION_DELAY = 1_800;
export const JAIL_DELAY = 7_200;
export const PARAMS_TIMELOCK = 86_400;
export const CHALLENGE_WINDOW = 7_200n;
export const EQUIVOCATION_BPS = 5_000;
export const OUTVOTED_BPS = 1_000;
export const REPORTER_BPS = 1_000;

/** A deterministic operator key, distinct per label. */
export function operatorAccount(label: string): PrivateKeyAccount {
  return privateKeyToAccount(keccak256(toHex(`cell-test-operator-${label}`)));
}

/** The operator key's proof of possession for `donor` at the donor's registration `nonce`. */
export function proofOf(
  operator: PrivateKeyAccount,
  chainId: number,
  registry: Address,
  registration: { donor: Address; peerKey: Hex; nonce?: bigint },
): Promise<Hex> {
  return signOperatorRegistration(operator, chainId, registry, { nonce: 0n, ...registration });
}

export function peerKeyOf(label: string): Hex {
  return keccak256(toHex(`cell-test-peer-${label}`));
}

export function receiptFor(executor: Address, jobId: Hex, overrides: Partial<Receipt> = {}): Receipt {
  return {
    jobId,
    executor,
    moduleCid: keccak256(toHex("module")),
    inputCid: keccak256(toHex("input")),
    outputCid: keccak256(toHex("output-agreed")),
    fuelUsed: 1_000_000n,
    status: 0,
    startedAt: 1_700_000_000_000n,
    finishedAt: 1_700_000_005_000n,
    ...overrides,
  };
}

export async function signedReceipt(
  operator: PrivateKeyAccount,
  chainId: number,
  registry: Address,
  jobId: Hex,
  overrides: Partial<Receipt> = {},
): Promise<{ receipt: Receipt; signature: Hex }> {
  const receipt = receiptFor(operator.address, jobId, overrides);
  return { receipt, signature: await signReceipt(operator, cellDomain(chainId, registry), receipt) };
}

/** A job spec; its EIP-712 digest in the registry domain is the job id receipts carry. */
export function jobSpec(replicas: number): JobSpecMessage {
  return {
    buyer: "0x00000000000000000000000000000000000000bb",
    moduleCid: keccak256(toHex("module")),
    inputCid: keccak256(toHex("input")),
    entry: "main",
    fuelLimit: 10n ** 9n,
    memoryPages: 16,
    timeoutMs: 5_000,
    replicas,
    maxPricePerMegaFuel: 1_000n,
    minReputation: 0,
    deadline: 1_800_000_000n,
    priority: 1,
    channel: keccak256(toHex("channel")),
    salt: keccak256(toHex("salt")),
  };
}

export function donorParams(treasury: Address) {
  return {
    minStake: MIN_STAKE,
    unbondingDelay: UNBONDING_DELAY,
    disputeWindow: DISPUTE_WINDOW,
    rotationDelay: ROTATION_DELAY,
    jailDelay: JAIL_DELAY,
    paramsTimelock: PARAMS_TIMELOCK,
    equivocationSlashBps: EQUIVOCATION_BPS,
    outvotedSlashBps: OUTVOTED_BPS,
    reporterRewardBps: REPORTER_BPS,
    outvoteRewardBps: 0,
    minOutvoteQuorum: 3,
    treasury,
  };
}

export const VOTE_WINDOW = 3_600;
export const DRAW_DELAY = 2;
export const JURY_SIZE = 3;
export const JUROR_REWARD_BPS = 2_000;
export const WINNER_REWARD_BPS = 3_000;
export const SILENT_JUROR_BPS = 100;
export const DISPUTE_BOND = parseEther("10");

export function courtParams() {
  return {
    voteWindow: VOTE_WINDOW,
    drawDelay: DRAW_DELAY,
    jurySize: JURY_SIZE,
    jurorRewardBps: JUROR_REWARD_BPS,
    winnerRewardBps: WINNER_REWARD_BPS,
    silentJurorBps: SILENT_JUROR_BPS,
    disputeBond: DISPUTE_BOND,
  };
}

const permitTypes = {
  Permit: [
    { name: "owner", type: "address" },
    { name: "spender", type: "address" },
    { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
} as const;

/** An EIP-2612 permit of ATP, split into (v, r, s). */
export async function signPermit(
  owner: { account: { address: Address }; signTypedData: (args: never) => Promise<Hex> },
  permit: {
    chainId: number;
    token: Address;
    spender: Address;
    value: bigint;
    nonce: bigint;
    deadline: bigint;
  },
): Promise<{ v: number; r: Hex; s: Hex }> {
  const signature = await owner.signTypedData({
    domain: { name: "Cell ATP", version: "1", chainId: permit.chainId, verifyingContract: permit.token },
    types: permitTypes,
    primaryType: "Permit",
    message: {
      owner: owner.account.address,
      spender: permit.spender,
      value: permit.value,
      nonce: permit.nonce,
      deadline: permit.deadline,
    },
  } as never);
  const { v, r, s } = parseSignature(signature);
  return { v: Number(v), r, s };
}
