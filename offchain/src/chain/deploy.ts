import { getAddress } from "viem";
import type { Abi, Address, Hex } from "viem";
import {
  atpTokenAbi,
  ciSettleVerifierAbi,
  donorRegistryAbi,
  juryCourtAbi,
  paymentChannelsAbi,
  zkChannelsAbi,
} from "./abis.ts";
import {
  atpTokenBytecode,
  ciSettleVerifierBytecode,
  donorRegistryBytecode,
  juryCourtBytecode,
  paymentChannelsBytecode,
  poseidonT3Bytecode,
  poseidonT6Bytecode,
  zkChannelsBytecode,
  zkChannelsLinkReferences,
} from "./bytecode.ts";
import type { ChainWriter } from "./clients.ts";
import type { DonorParams } from "./actions.ts";
import type { Deployment } from "./deployments.ts";

export interface DeployOptions {
  donorParams?: Partial<DonorParams>;
  /** Seconds between startClose and finalizeClose. */
  challengeWindow?: bigint;
  courtParams?: Partial<CourtParams>;
}

/** ZkChannels' circuit parameters: tree depth D, queue slots Q and transfers B per proof. */
export interface ZkParams {
  depth: number;
  queueSlots: number;
  batchSize: number;
}

/** The committed CI circuit SettleBatch(4, 2, 2), whose verifier is CiSettleVerifier. */
export const ZK_CI_PARAMS: ZkParams = { depth: 4, queueSlots: 2, batchSize: 2 };

/** JuryCourt settings (see contracts/JuryCourt.sol, `Params`). */
export interface CourtParams {
  voteWindow: number;
  drawDelay: number;
  jurySize: number;
  jurorRewardBps: number;
  winnerRewardBps: number;
  silentJurorBps: number;
  disputeBond: bigint;
}

/** Devnet court: ten minutes to vote, a jury of three (the dispute window is the registry's). */
export function defaultCourtParams(): CourtParams {
  return {
    voteWindow: 600,
    drawDelay: 2,
    jurySize: 3,
    jurorRewardBps: 2_000,
    winnerRewardBps: 3_000,
    silentJurorBps: 100,
    disputeBond: 10n * 10n ** 18n,
  };
}

/** Devnet defaults; public networks pass their own through Ignition parameters. */
export function defaultDonorParams(treasury: Address): DonorParams {
  return {
    minStake: 100n * 10n ** 18n,
    // The shortest the bounds allow: unbondingDelay >= rotationDelay + disputeWindow.
    unbondingDelay: 180,
    disputeWindow: 60,
    rotationDelay: 60,
    jailDelay: 60,
    paramsTimelock: 60,
    equivocationSlashBps: 5_000,
    outvotedSlashBps: 1_000,
    reporterRewardBps: 1_000,
    outvoteRewardBps: 0,
    minOutvoteQuorum: 3,
    treasury,
  };
}

export const DEFAULT_CHALLENGE_WINDOW = 60n;

async function deployOne(writer: ChainWriter, abi: Abi, bytecode: Hex, args: readonly unknown[]) {
  const { walletClient, publicClient } = writer;
  const hash = await walletClient.deployContract({
    abi,
    bytecode,
    args,
    account: walletClient.account,
    chain: walletClient.chain,
  });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success" || !receipt.contractAddress)
    throw new Error(`deployment transaction ${hash} failed`);
  return { address: getAddress(receipt.contractAddress), blockNumber: receipt.blockNumber };
}

/**
 * `bytecode` with every library placeholder replaced by the library's address; `references`
 * holds each library's byte offsets (generated into bytecode.ts from the artifact).
 */
export function linkBytecode(
  bytecode: Hex,
  references: Readonly<Record<string, readonly number[]>>,
  libraries: Readonly<Record<string, Address>>,
): Hex {
  let linked = bytecode as string;
  for (const [library, offsets] of Object.entries(references)) {
    const address = libraries[library];
    if (address === undefined) throw new Error(`no address given for library ${library}`);
    for (const offset of offsets) {
      const at = 2 + offset * 2;
      linked = linked.slice(0, at) + address.slice(2).toLowerCase() + linked.slice(at + 40);
    }
  }
  if (linked.includes("__$")) throw new Error("the bytecode still holds an unlinked library placeholder");
  return linked as Hex;
}

async function setCourt(writer: ChainWriter, registry: Address, court: Address): Promise<void> {
  const { walletClient, publicClient } = writer;
  const hash = await walletClient.writeContract({
    address: registry,
    abi: donorRegistryAbi,
    functionName: "setCourt",
    args: [court],
    account: walletClient.account,
    chain: walletClient.chain,
  });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`setCourt transaction ${hash} failed`);
}

/**
 * Deploys the Poseidon libraries, the CI circuit's verifier and ZkChannels linked to them; returns
 * ZkChannels' address.
 */
async function deployZkChannels(
  writer: ChainWriter,
  token: Address,
  challengeWindow: bigint,
): Promise<Address> {
  const poseidonT3 = await deployOne(writer, [], poseidonT3Bytecode, []);
  const poseidonT6 = await deployOne(writer, [], poseidonT6Bytecode, []);
  const verifier = await deployOne(writer, ciSettleVerifierAbi, ciSettleVerifierBytecode, []);
  const bytecode = linkBytecode(zkChannelsBytecode, zkChannelsLinkReferences, {
    PoseidonT3: poseidonT3.address,
    PoseidonT6: poseidonT6.address,
  });
  const { depth, queueSlots, batchSize } = ZK_CI_PARAMS;
  const zk = await deployOne(writer, zkChannelsAbi, bytecode, [
    token,
    verifier.address,
    depth,
    queueSlots,
    batchSize,
    challengeWindow,
  ]);
  return zk.address;
}

/**
 * Deploys ATPToken, DonorRegistry, JuryCourt (set as the registry's court), PaymentChannels and
 * ZkChannels (with its Poseidon libraries and the CI circuit's verifier) from the committed bytecode, with the
 * writer's account as token admin (minter), registry owner and default treasury. Same contracts
 * and arguments as the Ignition module `ignition/modules/Cell.ts`.
 */
export async function deployCell(
  writer: Omit<ChainWriter, "deployment">,
  chainId: number,
  options: DeployOptions = {},
): Promise<Deployment> {
  const admin = writer.walletClient.account.address;
  const w = writer as ChainWriter;
  const token = await deployOne(w, atpTokenAbi, atpTokenBytecode, [admin]);
  const params = { ...defaultDonorParams(admin), ...options.donorParams };
  const registry = await deployOne(w, donorRegistryAbi, donorRegistryBytecode, [
    token.address,
    admin,
    params,
  ]);
  const court = await deployOne(w, juryCourtAbi, juryCourtBytecode, [
    registry.address,
    admin,
    { ...defaultCourtParams(), ...options.courtParams },
  ]);
  await setCourt(w, registry.address, court.address);
  const challengeWindow = options.challengeWindow ?? DEFAULT_CHALLENGE_WINDOW;
  const channels = await deployOne(w, paymentChannelsAbi, paymentChannelsBytecode, [
    token.address,
    challengeWindow,
  ]);
  const zkChannels = await deployZkChannels(w, token.address, challengeWindow);
  return {
    chainId,
    atpToken: token.address,
    donorRegistry: registry.address,
    paymentChannels: channels.address,
    juryCourt: court.address,
    zkChannels,
    deployBlock: token.blockNumber,
  };
}
