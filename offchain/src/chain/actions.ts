import { BaseError, ContractFunctionRevertedError, isAddressEqual, maxUint256, parseSignature } from "viem";
import type {
  Abi,
  Address,
  ContractFunctionArgs,
  ContractFunctionName,
  Hex,
  LocalAccount,
  TransactionReceipt,
} from "viem";
import type { JobSpecMessage, Receipt } from "../protocol/index.ts";
import { atpTokenAbi, donorRegistryAbi, paymentChannelsAbi } from "./abis.ts";
import type { ChainReader, ChainWriter } from "./clients.ts";
import { signOperatorRegistration } from "./registration.ts";
import { encodeSettlementBatch } from "./settlement.ts";
import type { SignedVoucher } from "./settlement.ts";
import { channelIdOf } from "./signing.ts";
import type { ChannelKey } from "./signing.ts";

/** DonorRegistry.Params; delays in seconds, shares in basis points (see docs/contracts.md). */
export interface DonorParams {
  minStake: bigint;
  unbondingDelay: number;
  disputeWindow: number;
  rotationDelay: number;
  jailDelay: number;
  paramsTimelock: number;
  equivocationSlashBps: number;
  outvotedSlashBps: number;
  reporterRewardBps: number;
  outvoteRewardBps: number;
  minOutvoteQuorum: number;
  treasury: Address;
}

/** An operator key the registry knows (see DonorRegistry.Operator); times are unix seconds, 0 for none. */
export interface OperatorState {
  donor: Address;
  /** 0 while current; after a rotation, evidence against it is accepted until then. */
  accountableUntil: number;
  /** 0 unless jailed; the wallet may rotate away from it from then on. */
  jailedUntil: number;
}

/** The operator key signing a registration or rotation: the node's operator account. */
export type OperatorSigner = Pick<LocalAccount, "address" | "signTypedData">;

export interface ChannelState {
  deposit: bigint;
  paid: bigint;
  /** 0 while open, a unix time while closing, CLOSED (2^64-1) once closed. */
  closesAt: bigint;
}

export interface ReceiptAnchor {
  epoch: bigint;
  receiptRoot: Hex;
  receiptCount: bigint;
}

export const CHANNEL_CLOSED = 2n ** 64n - 1n;

/** Sends one contract call and waits for it; throws when it reverted. */
export async function send<const abi extends Abi, name extends ContractFunctionName<abi, "nonpayable">>(
  writer: ChainWriter,
  address: Address,
  abi: abi,
  functionName: name,
  args: ContractFunctionArgs<abi, "nonpayable", name>,
): Promise<TransactionReceipt> {
  const { walletClient, publicClient } = writer;
  const hash = await walletClient.writeContract({
    address,
    abi: abi as Abi,
    functionName: functionName as string,
    args: args as readonly unknown[],
    account: walletClient.account,
    chain: walletClient.chain,
  });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`${functionName} transaction ${hash} reverted`);
  return receipt;
}

// ---------------------------------------------------------------- token

export function atpBalance(reader: ChainReader, owner: Address): Promise<bigint> {
  return reader.publicClient.readContract({
    address: reader.deployment.atpToken,
    abi: atpTokenAbi,
    functionName: "balanceOf",
    args: [owner],
  });
}

/** Mints ATP (the devnet faucet); the writer needs MINTER_ROLE. */
export function mintAtp(writer: ChainWriter, to: Address, amount: bigint): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.atpToken, atpTokenAbi, "mint", [to, amount]);
}

/** Approves `spender` for exactly `amount` ATP (a user's wallet grants no more than it spends). */
export function approveAtp(
  writer: ChainWriter,
  spender: Address,
  amount: bigint,
): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.atpToken, atpTokenAbi, "approve", [spender, amount]);
}

/** Approves `spender` for unlimited ATP unless the allowance already covers `amount`. */
export async function ensureAllowance(writer: ChainWriter, spender: Address, amount: bigint): Promise<void> {
  const allowance = await writer.publicClient.readContract({
    address: writer.deployment.atpToken,
    abi: atpTokenAbi,
    functionName: "allowance",
    args: [writer.walletClient.account.address, spender],
  });
  if (allowance < amount)
    await send(writer, writer.deployment.atpToken, atpTokenAbi, "approve", [spender, maxUint256]);
}

// ---------------------------------------------------------------- donors

export async function stake(writer: ChainWriter, amount: bigint): Promise<TransactionReceipt> {
  await ensureAllowance(writer, writer.deployment.donorRegistry, amount);
  return send(writer, writer.deployment.donorRegistry, donorRegistryAbi, "stake", [amount]);
}

/**
 * Registers the writer's wallet as a donor with `operator` (the node's operator key, which signs
 * its proof of possession here) and the node's Ed25519 peer key.
 */
export async function registerDonor(
  writer: ChainWriter,
  registration: { operator: OperatorSigner; peerKey: Hex; metadataURI: string },
): Promise<TransactionReceipt> {
  const { operator, peerKey, metadataURI } = registration;
  const proof = await proofOfPossession(writer, operator, peerKey, 0n);
  return send(writer, writer.deployment.donorRegistry, donorRegistryAbi, "register", [
    operator.address,
    peerKey,
    metadataURI,
    proof,
  ]);
}

/**
 * Makes `operator` (a key never registered before, which signs its proof here) and `peerKey` the
 * writer's donor registration's current keys. The old operator is inactive at once and stays
 * slashable for the registry's `rotationDelay`; a jailed one may be rotated away from only after
 * its `jailedUntil`.
 */
export async function rotateOperator(
  writer: ChainWriter,
  rotation: { operator: OperatorSigner; peerKey: Hex },
): Promise<TransactionReceipt> {
  const { nonce } = await registrationOf(writer, writer.walletClient.account.address);
  const proof = await proofOfPossession(writer, rotation.operator, rotation.peerKey, nonce);
  return send(writer, writer.deployment.donorRegistry, donorRegistryAbi, "rotateOperator", [
    rotation.operator.address,
    rotation.peerKey,
    proof,
  ]);
}

function proofOfPossession(writer: ChainWriter, operator: OperatorSigner, peerKey: Hex, nonce: bigint) {
  const { chainId, donorRegistry } = writer.deployment;
  const donor = writer.walletClient.account.address;
  return signOperatorRegistration(operator, chainId, donorRegistry, { donor, peerKey, nonce });
}

export function registrationOf(
  reader: ChainReader,
  donor: Address,
): Promise<{ operator: Address; nonce: bigint; peerKey: Hex; metadataURI: string }> {
  return reader.publicClient.readContract({
    address: reader.deployment.donorRegistry,
    abi: donorRegistryAbi,
    functionName: "registrationOf",
    args: [donor],
  });
}

export function operatorState(reader: ChainReader, operator: Address): Promise<OperatorState> {
  return reader.publicClient.readContract({
    address: reader.deployment.donorRegistry,
    abi: donorRegistryAbi,
    functionName: "operatorOf",
    args: [operator],
  });
}

/** Proposes new registry parameters (owner only); `applyDonorParams` applies them after the timelock. */
export function proposeDonorParams(writer: ChainWriter, params: DonorParams): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.donorRegistry, donorRegistryAbi, "proposeParams", [params]);
}

/** Applies the proposed registry parameters once `pendingParamsAt` has passed (owner only). */
export function applyDonorParams(writer: ChainWriter): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.donorRegistry, donorRegistryAbi, "applyParams", []);
}

export function requestUnbond(writer: ChainWriter, amount: bigint): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.donorRegistry, donorRegistryAbi, "requestUnbond", [amount]);
}

export function withdrawStake(writer: ChainWriter): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.donorRegistry, donorRegistryAbi, "withdraw", []);
}

export async function donorParams(reader: ChainReader): Promise<DonorParams> {
  return reader.publicClient.readContract({
    address: reader.deployment.donorRegistry,
    abi: donorRegistryAbi,
    functionName: "params",
  });
}

export async function donorStake(
  reader: ChainReader,
  donor: Address,
): Promise<{ bonded: bigint; unbonding: bigint; unbondableAt: bigint }> {
  const [bonded, unbonding, unbondableAt] = await reader.publicClient.readContract({
    address: reader.deployment.donorRegistry,
    abi: donorRegistryAbi,
    functionName: "stakes",
    args: [donor],
  });
  return { bonded, unbonding, unbondableAt };
}

export function isActiveOperator(reader: ChainReader, operator: Address): Promise<boolean> {
  return reader.publicClient.readContract({
    address: reader.deployment.donorRegistry,
    abi: donorRegistryAbi,
    functionName: "isActive",
    args: [operator],
  });
}

/** True when `operator` is active and registered with exactly this Ed25519 peer key. */
export async function isActiveDonor(reader: ChainReader, operator: Address, peerKey: Hex): Promise<boolean> {
  const registration = await registrationOfOperator(reader, operator);
  if (!registration || registration.peerKey.toLowerCase() !== peerKey.toLowerCase()) return false;
  return isActiveOperator(reader, operator);
}

/** The registration whose current operator is `operator`; undefined for unknown and rotated-away keys. */
export async function registrationOfOperator(
  reader: ChainReader,
  operator: Address,
): Promise<{ donor: Address; operator: Address; peerKey: Hex; metadataURI: string } | undefined> {
  const { publicClient, deployment } = reader;
  const donor = await publicClient.readContract({
    address: deployment.donorRegistry,
    abi: donorRegistryAbi,
    functionName: "donorOf",
    args: [operator],
  });
  if (isAddressEqual(donor, "0x0000000000000000000000000000000000000000")) return undefined;
  const registration = await registrationOf(reader, donor);
  if (!isAddressEqual(registration.operator, operator)) return undefined;
  return { donor, operator, peerKey: registration.peerKey, metadataURI: registration.metadataURI };
}

/** Asks DonorRegistry whether `signature` over `receipt` is the executor's. */
export function verifyReceiptOnChain(
  reader: ChainReader,
  receipt: Receipt,
  signature: Hex,
): Promise<boolean> {
  return reader.publicClient.readContract({
    address: reader.deployment.donorRegistry,
    abi: donorRegistryAbi,
    functionName: "verifyReceipt",
    args: [receipt, signature],
  });
}

export function slashEquivocation(
  writer: ChainWriter,
  a: { receipt: Receipt; signature: Hex },
  b: { receipt: Receipt; signature: Hex },
): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.donorRegistry, donorRegistryAbi, "slashEquivocation", [
    a.receipt,
    a.signature,
    b.receipt,
    b.signature,
  ]);
}

/** Outvote slash; `spec` is the job's spec (its EIP-712 digest is the receipts' jobId). */
export function slashOutvoted(
  writer: ChainWriter,
  spec: JobSpecMessage,
  accused: { receipt: Receipt; signature: Hex },
  quorum: readonly { receipt: Receipt; signature: Hex }[],
): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.donorRegistry, donorRegistryAbi, "slashOutvoted", [
    spec,
    accused.receipt,
    accused.signature,
    quorum.map((q) => q.receipt),
    quorum.map((q) => q.signature),
  ]);
}

// ---------------------------------------------------------------- channels

/** Opens a channel from the writer's account; approves first when needed. */
export async function openChannel(
  writer: ChainWriter,
  channel: { signer: Address; payee: Address; amount: bigint; nonce?: bigint },
): Promise<{ key: ChannelKey; channelId: Hex; receipt: TransactionReceipt }> {
  const nonce = channel.nonce ?? freshChannelNonce();
  const key: ChannelKey = {
    buyer: writer.walletClient.account.address,
    signer: channel.signer,
    payee: channel.payee,
    nonce,
  };
  await ensureAllowance(writer, writer.deployment.paymentChannels, channel.amount);
  const receipt = await send(writer, writer.deployment.paymentChannels, paymentChannelsAbi, "open", [
    key.signer,
    key.payee,
    key.nonce,
    channel.amount,
  ]);
  return { key, channelId: channelIdOf(key), receipt };
}

/** A channel nonce unlikely to repeat for one key: unix ms × 1000 plus a random part (fits a uint64). */
function freshChannelNonce(): bigint {
  return BigInt(Date.now()) * 1000n + BigInt(Math.floor(Math.random() * 1000));
}

/** Adds `amount` to the open channel `key` (anyone may fund; refunds go to the buyer). */
export async function topUpChannel(
  writer: ChainWriter,
  key: ChannelKey,
  amount: bigint,
): Promise<TransactionReceipt> {
  await ensureAllowance(writer, writer.deployment.paymentChannels, amount);
  return send(writer, writer.deployment.paymentChannels, paymentChannelsAbi, "topUp", [key, amount]);
}

export async function getChannel(reader: ChainReader, channelId: Hex): Promise<ChannelState> {
  const [deposit, paid, closesAt] = await reader.publicClient.readContract({
    address: reader.deployment.paymentChannels,
    abi: paymentChannelsAbi,
    functionName: "channels",
    args: [channelId],
  });
  return { deposit, paid, closesAt };
}

/**
 * Pays the payee what the voucher adds, without closing, and transfers it everything the channel
 * has paid and not yet transferred (earlier settlement credits too).
 */
export function redeemVoucher(writer: ChainWriter, voucher: SignedVoucher): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.paymentChannels, paymentChannelsAbi, "redeem", [
    voucher.key,
    voucher.cumulativeAmount,
    voucher.signature,
  ]);
}

/**
 * Net settlement of many channels' latest vouchers (in the given order), optionally anchoring a
 * receipt root. Bad or stale vouchers are skipped on-chain (VoucherSkipped), not reverted. It moves
 * no tokens: the payees collect what it credits with `withdrawPaid`.
 */
export function settleVouchers(
  writer: ChainWriter,
  vouchers: readonly SignedVoucher[],
  anchor?: ReceiptAnchor,
): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.paymentChannels, paymentChannelsAbi, "settle", [
    encodeSettlementBatch(vouchers),
    anchor?.epoch ?? 0n,
    anchor?.receiptRoot ?? "0x0000000000000000000000000000000000000000000000000000000000000000",
    anchor?.receiptCount ?? 0n,
  ]);
}

/**
 * Transfers to the payee of `keys` what those channels paid and it has not received yet, in one
 * transfer. All keys must name the same payee; anyone may send it, the money goes to the payee.
 */
export async function withdrawPaid(
  writer: ChainWriter,
  keys: readonly ChannelKey[],
): Promise<TransactionReceipt> {
  const payee = keys[0]?.payee;
  if (payee === undefined) throw new Error("withdrawPaid: no channels given");
  const other = keys.find((key) => !isAddressEqual(key.payee, payee));
  if (other !== undefined)
    throw new Error(
      `withdrawPaid: channels of several payees (${payee} and ${other.payee}); send one call per payee`,
    );
  return send(writer, writer.deployment.paymentChannels, paymentChannelsAbi, "withdrawPaid", [keys]);
}

/** What a channel has paid and not yet transferred to its payee. */
export function withdrawableOf(reader: ChainReader, channelId: Hex): Promise<bigint> {
  return reader.publicClient.readContract({
    address: reader.deployment.paymentChannels,
    abi: paymentChannelsAbi,
    functionName: "withdrawable",
    args: [channelId],
  });
}

export function startChannelClose(writer: ChainWriter, key: ChannelKey): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.paymentChannels, paymentChannelsAbi, "startClose", [
    key.signer,
    key.payee,
    key.nonce,
  ]);
}

export function finalizeChannelClose(writer: ChainWriter, key: ChannelKey): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.paymentChannels, paymentChannelsAbi, "finalizeClose", [key]);
}

/** Submits a ChannelClose both ends signed (`signChannelClose`) with the same amount and deadline. */
export function cooperativeClose(
  writer: ChainWriter,
  key: ChannelKey,
  close: { finalAmount: bigint; deadline: bigint },
  signerSignature: Hex,
  payeeSignature: Hex,
): Promise<TransactionReceipt> {
  return send(writer, writer.deployment.paymentChannels, paymentChannelsAbi, "cooperativeClose", [
    key,
    close.finalAmount,
    close.deadline,
    signerSignature,
    payeeSignature,
  ]);
}

/** Asks PaymentChannels whether `receipt` is under the root `submitter` anchored for `epoch`. */
export function verifyReceiptInclusionOnChain(
  reader: ChainReader,
  anchor: { submitter: Address; epoch: bigint },
  receipt: Receipt,
  proof: readonly Hex[],
): Promise<boolean> {
  return reader.publicClient.readContract({
    address: reader.deployment.paymentChannels,
    abi: paymentChannelsAbi,
    functionName: "verifyReceiptInclusion",
    args: [anchor.submitter, anchor.epoch, receipt, proof],
  });
}

// ---------------------------------------------------------------- evidence

/**
 * The name of the custom error a contract call reverted with (`AlreadySlashed`,
 * `QuorumTooSmall`, …), decoded with the bindings' ABIs; undefined when the call failed for
 * another reason (the chain unreachable, a timeout) or reverted without a known error.
 */
export function revertErrorName(err: unknown): string | undefined {
  if (!(err instanceof BaseError)) return undefined;
  const reverted = err.walk((cause) => cause instanceof ContractFunctionRevertedError);
  if (!(reverted instanceof ContractFunctionRevertedError)) return undefined;
  return reverted.data?.errorName;
}

/**
 * Asks DonorRegistry.checkOutvote whether the evidence would open an outvote case: undefined
 * when it would, else the custom error it reverts with (`JobSpecMismatch`, `QuorumTooSmall`,
 * `OperatorNotActive`, `InvalidSignature`, …). Throws when the chain cannot answer.
 */
export async function checkOutvote(
  reader: ChainReader,
  spec: JobSpecMessage,
  accused: { receipt: Receipt; signature: Hex },
  quorum: readonly { receipt: Receipt; signature: Hex }[],
): Promise<string | undefined> {
  try {
    await reader.publicClient.readContract({
      address: reader.deployment.donorRegistry,
      abi: donorRegistryAbi,
      functionName: "checkOutvote",
      args: [
        spec,
        accused.receipt,
        accused.signature,
        quorum.map((q) => q.receipt),
        quorum.map((q) => q.signature),
      ],
    });
    return undefined;
  } catch (err) {
    const name = revertErrorName(err);
    if (name === undefined) throw err;
    return name;
  }
}

/** Agreeing receipts DonorRegistry needs to outvote one executor of a job with `replicas` replicas. */
export function outvoteQuorum(reader: ChainReader, replicas: number): Promise<bigint> {
  return reader.publicClient.readContract({
    address: reader.deployment.donorRegistry,
    abi: donorRegistryAbi,
    functionName: "outvoteQuorum",
    args: [BigInt(replicas)],
  });
}

/** An OutvoteAccused event: an operator's receipt was outvoted and a court case opened. */
export interface OutvoteAccusation {
  caseId: bigint;
  operator: Address;
  jobId: Hex;
  amount: bigint;
}

/** The outvote accusations against `operator` in blocks `fromBlock..toBlock`. */
export async function accusationsOf(
  reader: ChainReader,
  operator: Address,
  fromBlock: bigint,
  toBlock: bigint,
): Promise<OutvoteAccusation[]> {
  const logs = await reader.publicClient.getContractEvents({
    address: reader.deployment.donorRegistry,
    abi: donorRegistryAbi,
    eventName: "OutvoteAccused",
    args: { operator },
    fromBlock,
    toBlock,
    strict: true,
  });
  return logs.map(({ args }) => ({ ...args }));
}

// ---------------------------------------------------------------- permits (EIP-2612)

/** Seconds an ATP permit signed for one transaction stays valid. */
export const PERMIT_TTL_SECONDS = 3_600n;

const permitTypes = {
  Permit: [
    { name: "owner", type: "address" },
    { name: "spender", type: "address" },
    { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
} as const;

/**
 * The writer's EIP-2612 permit letting `spender` take `value` ATP until `deadline`, split into
 * the (v, r, s) the contracts take. The domain is read from the token itself (EIP-5267).
 */
export async function signAtpPermit(
  writer: ChainWriter,
  spender: Address,
  value: bigint,
  deadline: bigint = BigInt(Math.floor(Date.now() / 1000)) + PERMIT_TTL_SECONDS,
): Promise<{ deadline: bigint; v: number; r: Hex; s: Hex }> {
  const { publicClient, walletClient, deployment } = writer;
  const owner = walletClient.account.address;
  const token = { address: deployment.atpToken, abi: atpTokenAbi } as const;
  const [[, name, version, chainId, verifyingContract], nonce] = await Promise.all([
    publicClient.readContract({ ...token, functionName: "eip712Domain" }),
    publicClient.readContract({ ...token, functionName: "nonces", args: [owner] }),
  ]);
  const signature = await walletClient.signTypedData({
    account: walletClient.account,
    domain: { name, version, chainId, verifyingContract },
    types: permitTypes,
    primaryType: "Permit",
    message: { owner, spender, value, nonce, deadline },
  });
  const { r, s, v, yParity } = parseSignature(signature);
  return { deadline, v: Number(v ?? BigInt(27 + yParity)), r, s };
}

/** Stakes `amount` ATP in one transaction: a permit instead of a prior approval. */
export async function stakeWithPermit(writer: ChainWriter, amount: bigint): Promise<TransactionReceipt> {
  const registry = writer.deployment.donorRegistry;
  const { deadline, v, r, s } = await signAtpPermit(writer, registry, amount);
  return send(writer, registry, donorRegistryAbi, "stakeWithPermit", [amount, deadline, v, r, s]);
}

/** Opens a channel from the writer's account in one transaction, with a permit for its deposit. */
export async function openChannelWithPermit(
  writer: ChainWriter,
  channel: { signer: Address; payee: Address; amount: bigint; nonce?: bigint; nowSeconds?: bigint },
): Promise<{ key: ChannelKey; channelId: Hex; receipt: TransactionReceipt }> {
  const nonce = channel.nonce ?? freshChannelNonce();
  const key: ChannelKey = {
    buyer: writer.walletClient.account.address,
    signer: channel.signer,
    payee: channel.payee,
    nonce,
  };
  const channels = writer.deployment.paymentChannels;
  const deadline = (channel.nowSeconds ?? BigInt(Math.floor(Date.now() / 1000))) + PERMIT_TTL_SECONDS;
  const { v, r, s } = await signAtpPermit(writer, channels, channel.amount, deadline);
  const receipt = await send(writer, channels, paymentChannelsAbi, "openWithPermit", [
    key.signer,
    key.payee,
    key.nonce,
    channel.amount,
    deadline,
    v,
    r,
    s,
  ]);
  return { key, channelId: channelIdOf(key), receipt };
}

/** A ChannelOpened event: the channel's key, its id and its first deposit. */
export interface OpenedChannel {
  channelId: Hex;
  key: ChannelKey;
  deposit: bigint;
  blockNumber: bigint;
}

/**
 * Channels opened since the deployment, filtered by buyer and/or channel id (indexed topics),
 * oldest first.
 */
export async function openedChannels(
  reader: ChainReader,
  filter: { buyer?: Address; channelId?: Hex; payee?: Address },
): Promise<OpenedChannel[]> {
  const logs = await reader.publicClient.getContractEvents({
    address: reader.deployment.paymentChannels,
    abi: paymentChannelsAbi,
    eventName: "ChannelOpened",
    args: filter,
    fromBlock: reader.deployment.deployBlock,
    toBlock: "latest",
    strict: true,
  });
  return logs.map(({ args, blockNumber }) => ({
    channelId: args.channelId,
    key: { buyer: args.buyer, signer: args.signer, payee: args.payee, nonce: args.nonce },
    deposit: args.deposit,
    blockNumber,
  }));
}
