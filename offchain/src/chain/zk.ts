// Typed bindings of ZkChannels (docs/zk.md, "Contract"): reads, writes, its event stream and the
// EIP-712 ZkVoucher of its signature fallback.
import { getAbiItem, parseEventLogs } from "viem";
import type { Address, Hex, LocalAccount, TransactionReceipt } from "viem";
import { canonicalSignature } from "../protocol/index.ts";
import type { QueueKindName, QueueOp, ZkLeaf, ZkPublicKey } from "../zk/index.ts";
// Runtime imports name the modules, not zk/index.ts, which would load the prover (snarkjs).
import { ZK_VOUCHER_TYPES, zkChannelsDomain, zkVoucherDigest } from "../zk/eip712.ts";
import { unpackTransfers } from "../zk/encoding.ts";
import { ZkState } from "../zk/witness.ts";
import { zkChannelsAbi } from "./abis.ts";
import { ensureAllowance, send, signAtpPermit, PERMIT_TTL_SECONDS } from "./actions.ts";
import type { ChainReader, ChainWriter } from "./clients.ts";

/** A zk channel's EIP-712 voucher: leaf `leaf` has paid `cumulativeAmount` in all. */
export interface ZkVoucher {
  leaf: number;
  cumulativeAmount: bigint;
}

/** ZkChannels.channelOf: the channel's on-chain record (the tree holds what it has paid). */
export interface ZkChannelState {
  buyer: Address;
  signer: Address;
  payee: Address;
  deposited: bigint;
  withdrawn: bigint;
  /** End of the challenge window (unix seconds), 0 while no close has started. */
  closesAt: bigint;
  /** Queue position of the channel's CLOSE + 1; 0 while not queued. */
  closeQueuedAt: bigint;
  refunded: boolean;
}

/** The proof words in the verifier's argument order: pA, pB (row by row), pC. */
export type ZkProofWords = readonly [bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint];

/** One settled batch as ZkBatchSettled published it. */
export interface ZkBatch {
  batch: bigint;
  submitter: Address;
  oldRoot: bigint;
  newRoot: bigint;
  queueFrom: bigint;
  queueTo: bigint;
  /** Packed transfers, two per element (docs/zk.md); unpack with `unpackTransfers`. */
  transfers: bigint[];
}

/** A queue or batch event of ZkChannels, in chain order. */
export type ZkEvent =
  | {
      type: "queued";
      position: bigint;
      op: QueueOp;
      queueHash: bigint;
      blockNumber: bigint;
      logIndex: number;
    }
  | ({ type: "batch"; blockNumber: bigint; logIndex: number } & ZkBatch);

const KIND_NAMES: Record<number, QueueKindName> = { 1: "open", 2: "topUp", 3: "close" };

/** What `ZkChannels.zkVoucherDigest(leaf, cumulativeAmount)` returns (zk/eip712.ts holds the type). */
export function zkVoucherDigestOf(chainId: number | bigint, zkChannels: Address, voucher: ZkVoucher): Hex {
  return zkVoucherDigest(
    zkChannelsDomain(Number(chainId), zkChannels),
    voucher.leaf,
    voucher.cumulativeAmount,
  );
}

/** Signs a ZkVoucher with the channel's voucher signer (canonical form: v 27/28, low s). */
export async function signZkVoucherEip712(
  account: Pick<LocalAccount, "signTypedData">,
  chainId: number | bigint,
  zkChannels: Address,
  voucher: ZkVoucher,
): Promise<Hex> {
  return canonicalSignature(
    await account.signTypedData({
      domain: zkChannelsDomain(Number(chainId), zkChannels),
      types: ZK_VOUCHER_TYPES,
      primaryType: "ZkVoucher",
      message: voucher,
    }),
  );
}

/** ZkChannels' address; names the problem when the deployment predates it. */
export function zkChannelsAddress(reader: ChainReader): Address {
  const address = reader.deployment.zkChannels;
  if (address === undefined)
    throw new Error(`the deployment on chain ${reader.deployment.chainId} has no ZkChannels`);
  return address;
}

// ---------------------------------------------------------------- reads

export async function zkChannelOf(reader: ChainReader, leaf: number): Promise<ZkChannelState> {
  const state = await reader.publicClient.readContract({
    address: zkChannelsAddress(reader),
    abi: zkChannelsAbi,
    functionName: "channelOf",
    args: [leaf],
  });
  return {
    buyer: state.buyer,
    signer: state.signer,
    payee: state.payee,
    deposited: state.deposited,
    withdrawn: state.withdrawn,
    closesAt: state.closesAt,
    closeQueuedAt: state.closeQueuedAt,
    refunded: state.refunded,
  };
}

/** The contract's circuit parameters and domain tag (immutables). */
export async function readZkParams(
  reader: ChainReader,
): Promise<{ depth: number; queueSlots: number; batchSize: number; domainTag: bigint }> {
  const contract = { address: zkChannelsAddress(reader), abi: zkChannelsAbi } as const;
  const { publicClient } = reader;
  const [depth, queueSlots, batchSize, domainTag] = await Promise.all([
    publicClient.readContract({ ...contract, functionName: "depth" }),
    publicClient.readContract({ ...contract, functionName: "queueSlots" }),
    publicClient.readContract({ ...contract, functionName: "batchSize" }),
    publicClient.readContract({ ...contract, functionName: "domainTag" }),
  ]);
  return { depth, queueSlots, batchSize, domainTag };
}

/** The current root and how much of the queue exists and has been consumed. */
export async function readZkQueue(
  reader: ChainReader,
): Promise<{ root: bigint; queueLength: bigint; consumed: bigint }> {
  const contract = { address: zkChannelsAddress(reader), abi: zkChannelsAbi } as const;
  const { publicClient } = reader;
  const [root, queueLength, consumed] = await Promise.all([
    publicClient.readContract({ ...contract, functionName: "root" }),
    publicClient.readContract({ ...contract, functionName: "queueLength" }),
    publicClient.readContract({ ...contract, functionName: "consumed" }),
  ]);
  return { root, queueLength, consumed };
}

const zkStreamEvents = [
  getAbiItem({ abi: zkChannelsAbi, name: "ZkQueued" }),
  getAbiItem({ abi: zkChannelsAbi, name: "ZkBatchSettled" }),
] as const;

/**
 * ZkQueued and ZkBatchSettled events in [fromBlock, toBlock], in chain order: everything needed
 * to rebuild the state tree (each batch applies its queue range, then its transfers).
 */
export async function readZkEvents(
  reader: ChainReader,
  fromBlock: bigint,
  toBlock: bigint | "latest",
): Promise<ZkEvent[]> {
  const logs = await reader.publicClient.getLogs({
    address: zkChannelsAddress(reader),
    events: zkStreamEvents,
    fromBlock,
    toBlock,
    strict: true,
  });
  const events: ZkEvent[] = [];
  for (const log of logs) {
    const where = { blockNumber: log.blockNumber, logIndex: log.logIndex };
    if (log.eventName === "ZkQueued") {
      const { position, kind, leaf, amount, ax, ay, payee, queueHash } = log.args;
      const name = KIND_NAMES[kind];
      if (name === undefined) throw new Error(`ZkQueued at position ${position} has unknown kind ${kind}`);
      const op: QueueOp = { kind: name, leaf, amount, ax, ay, payee: name === "open" ? payee : null };
      events.push({ type: "queued", position, op, queueHash, ...where });
    } else {
      events.push({ type: "batch", ...log.args, transfers: [...log.args.transfers], ...where });
    }
  }
  return events.sort((a, b) =>
    a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1,
  );
}

/**
 * The zk state rebuilt from the chain alone (docs/zk.md, "Transfers and data availability"):
 * `events` from `readZkEvents`, starting at the deployment, applied in order (each batch: its
 * queue range, then its transfers). Returns the state after the last batch and the queued
 * operations no batch has consumed yet. Transfers are applied without their signatures (the
 * proof checked them; they are not published). Throws when the events skip a queue position or a
 * batch's published root differs from the rebuilt one. `pending` holds only unconsumed
 * operations: a batch removes what it consumed, so it is bounded by the contract's queue backlog.
 */
export function rebuildZkState(
  events: readonly ZkEvent[],
  depth: number,
  domainTag: bigint,
): { state: ZkState; pending: QueueOp[] } {
  const state = new ZkState(depth);
  const pending: QueueOp[] = [];
  let nextPosition = 0n;
  for (const event of events) {
    if (event.type === "queued") {
      if (event.position !== nextPosition)
        throw new Error(`ZkQueued position ${event.position} arrived where ${nextPosition} was expected`);
      pending.push(event.op);
      nextPosition++;
      continue;
    }
    const count = Number(event.queueTo - event.queueFrom);
    if (event.queueFrom !== BigInt(state.queueConsumed) || count > pending.length)
      throw new Error(
        `batch ${event.batch} consumes queue [${event.queueFrom}, ${event.queueTo}) out of order`,
      );
    for (const op of pending.splice(0, count)) state.applyQueueOp(op, true);
    for (const transfer of unpackTransfers(event.transfers))
      state.applyTransfer(domainTag, { ...transfer, signature: { r8x: 0n, r8y: 0n, s: 0n } }, true);
    if (state.root !== event.newRoot)
      throw new Error(
        `batch ${event.batch} published root ${event.newRoot}; the events rebuild ${state.root}`,
      );
  }
  return { state, pending };
}

// ---------------------------------------------------------------- writes

export interface ZkOpenRequest {
  payee: Address;
  /** The voucher signer `settleBySignature` honours. */
  signer: Address;
  /** The settlement key's public key (BabyJubJub). */
  key: ZkPublicKey;
  amount: bigint;
}

function openedLeaf(receipt: TransactionReceipt): number {
  const [opened] = parseEventLogs({ abi: zkChannelsAbi, eventName: "ZkChannelOpened", logs: receipt.logs });
  if (opened === undefined) throw new Error(`transaction ${receipt.transactionHash} opened no zk channel`);
  return opened.args.leaf;
}

/** Opens a zk channel from the writer's account; approves first when needed. */
export async function openZkChannel(
  writer: ChainWriter,
  request: ZkOpenRequest,
): Promise<{ leaf: number; receipt: TransactionReceipt }> {
  const address = zkChannelsAddress(writer);
  await ensureAllowance(writer, address, request.amount);
  const receipt = await send(writer, address, zkChannelsAbi, "open", [
    request.payee,
    request.signer,
    request.key.ax,
    request.key.ay,
    request.amount,
  ]);
  return { leaf: openedLeaf(receipt), receipt };
}

/** Opens a zk channel in one transaction, with a permit for its deposit. */
export async function openZkChannelWithPermit(
  writer: ChainWriter,
  request: ZkOpenRequest & { nowSeconds?: bigint },
): Promise<{ leaf: number; receipt: TransactionReceipt }> {
  const address = zkChannelsAddress(writer);
  const deadline = (request.nowSeconds ?? BigInt(Math.floor(Date.now() / 1000))) + PERMIT_TTL_SECONDS;
  const { v, r, s } = await signAtpPermit(writer, address, request.amount, deadline);
  const receipt = await send(writer, address, zkChannelsAbi, "openWithPermit", [
    request.payee,
    request.signer,
    request.key.ax,
    request.key.ay,
    request.amount,
    deadline,
    v,
    r,
    s,
  ]);
  return { leaf: openedLeaf(receipt), receipt };
}

/** Adds `amount` to a zk channel (anyone may fund); approves first when needed. */
export async function topUpZkChannel(
  writer: ChainWriter,
  leaf: number,
  amount: bigint,
): Promise<TransactionReceipt> {
  const address = zkChannelsAddress(writer);
  await ensureAllowance(writer, address, amount);
  return send(writer, address, zkChannelsAbi, "topUp", [leaf, amount]);
}

export function startZkChannelClose(writer: ChainWriter, leaf: number): Promise<TransactionReceipt> {
  return send(writer, zkChannelsAddress(writer), zkChannelsAbi, "startClose", [leaf]);
}

export function finalizeZkChannelClose(writer: ChainWriter, leaf: number): Promise<TransactionReceipt> {
  return send(writer, zkChannelsAddress(writer), zkChannelsAbi, "finalizeClose", [leaf]);
}

/** Submits one proven batch (docs/zk.md, "Contract"). */
export function settleZkBatch(
  writer: ChainWriter,
  batch: { newRoot: bigint; opsConsumed: bigint; transfers: readonly bigint[]; proof: ZkProofWords },
): Promise<TransactionReceipt> {
  return send(writer, zkChannelsAddress(writer), zkChannelsAbi, "settle", [
    batch.newRoot,
    batch.opsConsumed,
    batch.transfers,
    batch.proof,
  ]);
}

/** Pays the payee what `leafData` under `root` says the channel paid and it has not received. */
export function withdrawZk(
  writer: ChainWriter,
  leaf: number,
  leafData: ZkLeaf,
  siblings: readonly bigint[],
  root: bigint,
): Promise<TransactionReceipt> {
  return send(writer, zkChannelsAddress(writer), zkChannelsAbi, "withdraw", [leaf, leafData, siblings, root]);
}

/** The fallback: pays an EIP-712 ZkVoucher (see `signZkVoucherEip712`). */
export function settleZkBySignature(
  writer: ChainWriter,
  voucher: ZkVoucher,
  signature: Hex,
): Promise<TransactionReceipt> {
  return send(writer, zkChannelsAddress(writer), zkChannelsAbi, "settleBySignature", [
    voucher.leaf,
    voucher.cumulativeAmount,
    signature,
  ]);
}

/** Refunds the buyer of a closed channel, given its leaf under a root that consumed the CLOSE. */
export function refundZk(
  writer: ChainWriter,
  leaf: number,
  leafData: ZkLeaf,
  siblings: readonly bigint[],
  root: bigint,
): Promise<TransactionReceipt> {
  return send(writer, zkChannelsAddress(writer), zkChannelsAbi, "refund", [leaf, leafData, siblings, root]);
}
