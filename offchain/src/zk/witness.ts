import { MAX_AMOUNT } from "./field.ts";
import { QueueKind, nextQueueHash, packTransfers } from "./encoding.ts";
import type { QueueOp } from "./encoding.ts";
import { leafHash } from "./leaf.ts";
import type { ZkLeaf } from "./leaf.ts";
import { verifyZkSignature, zkVoucherMessage } from "./keys.ts";
import type { ZkSignature } from "./keys.ts";
import { StateTree } from "./tree.ts";

/** The size of one circuit instance (docs/zk.md, "Circuit `SettleBatch(D, Q, B)`"). */
export interface CircuitParams {
  depth: number;
  queueSlots: number;
  batchSize: number;
}

/** A zk voucher as the settler holds it: leaf `leaf` is now owed `cumulative`, signed. */
export interface SignedTransfer {
  leaf: number;
  cumulative: bigint;
  signature: ZkSignature;
}

/**
 * The zk-mode state as the chain defines it: the tree, each open leaf's data, and how much of
 * the queue the tree has consumed. Off-chain code rebuilds it from `ZkQueued` and
 * `ZkBatchSettled` events. `leaves` holds one entry per opened channel, at most 2^depth (the
 * contract opens no more), so it needs no eviction: it is the state itself.
 */
export class ZkState {
  readonly tree: StateTree;
  readonly leaves: Map<number, ZkLeaf>;
  queueHash: bigint;
  queueConsumed: number;

  constructor(
    depth: number,
    from?: { tree: StateTree; leaves: Map<number, ZkLeaf>; queueHash: bigint; queueConsumed: number },
  ) {
    this.tree = from?.tree ?? new StateTree(depth);
    this.leaves = from?.leaves ?? new Map();
    this.queueHash = from?.queueHash ?? 0n;
    this.queueConsumed = from?.queueConsumed ?? 0;
  }

  get depth(): number {
    return this.tree.depth;
  }

  get root(): bigint {
    return this.tree.root;
  }

  clone(): ZkState {
    return new ZkState(this.depth, {
      tree: this.tree.clone(),
      leaves: new Map([...this.leaves].map(([index, leaf]) => [index, { ...leaf }])),
      queueHash: this.queueHash,
      queueConsumed: this.queueConsumed,
    });
  }

  /** Applies one queued operation; throws naming what makes it impossible (unless `unchecked`). */
  applyQueueOp(op: QueueOp, unchecked = false): void {
    const old = this.leaves.get(op.leaf) ?? null;
    if (!unchecked) checkQueueOp(op, old, this.depth);
    const next = leafAfterQueueOp(op, old);
    this.#write(op.leaf, next);
    this.queueHash = nextQueueHash(this.queueHash, op);
    this.queueConsumed++;
  }

  /** Applies one payment; throws naming what makes it impossible (unless `unchecked`). */
  applyTransfer(domainTag: bigint, transfer: SignedTransfer, unchecked = false): void {
    const old = this.leaves.get(transfer.leaf);
    if (!unchecked) checkTransfer(domainTag, transfer, old, this.depth);
    this.#write(transfer.leaf, { ...(old ?? emptyLeaf()), paid: transfer.cumulative });
  }

  #write(index: number, leaf: ZkLeaf): void {
    this.leaves.set(index, leaf);
    this.tree.set(index, leafHash(leaf));
  }
}

function emptyLeaf(): ZkLeaf {
  return { ax: 0n, ay: 0n, payee: "0x0000000000000000000000000000000000000000", deposit: 0n, paid: 0n };
}

function describeOp(op: QueueOp): string {
  return `queued ${op.kind.toUpperCase()} of leaf ${op.leaf} (amount ${op.amount})`;
}

function checkQueueOp(op: QueueOp, old: ZkLeaf | null, depth: number): void {
  const what = describeOp(op);
  if (!Number.isInteger(op.leaf) || op.leaf < 0 || op.leaf >= 2 ** depth)
    throw new RangeError(`${what}: the leaf is outside a tree of depth ${depth}`);
  if (op.amount < 0n || op.amount > MAX_AMOUNT)
    throw new RangeError(`${what}: the amount is outside 0..2^96-1`);
  if (op.kind === "open") {
    if (old !== null) throw new Error(`${what}: the leaf is already open`);
    if (op.payee === null) throw new Error(`${what}: an OPEN names its payee`);
    return;
  }
  if (old === null) throw new Error(`${what}: the leaf was never opened`);
  if (op.kind === "topUp" && old.deposit + op.amount > MAX_AMOUNT)
    throw new RangeError(`${what}: the deposit would exceed 2^96-1`);
  if (op.kind === "close" && op.amount !== 0n) throw new Error(`${what}: a CLOSE carries no amount`);
}

function leafAfterQueueOp(op: QueueOp, old: ZkLeaf | null): ZkLeaf {
  const leaf = old ?? emptyLeaf();
  if (op.kind === "open")
    return { ax: op.ax, ay: op.ay, payee: op.payee ?? leaf.payee, deposit: op.amount, paid: 0n };
  if (op.kind === "topUp") return { ...leaf, deposit: leaf.deposit + op.amount };
  return { ...leaf, deposit: leaf.paid };
}

function checkTransfer(domainTag: bigint, t: SignedTransfer, old: ZkLeaf | undefined, depth: number): void {
  const what = `transfer of leaf ${t.leaf} (cumulative ${t.cumulative})`;
  if (!Number.isInteger(t.leaf) || t.leaf < 0 || t.leaf >= 2 ** depth)
    throw new RangeError(`${what}: the leaf is outside a tree of depth ${depth}`);
  if (old === undefined) throw new Error(`${what}: unknown leaf (never opened)`);
  if (t.cumulative <= old.paid)
    throw new Error(`${what}: the cumulative amount is not above the ${old.paid} already paid`);
  if (t.cumulative > old.deposit)
    throw new Error(`${what}: overdraft, the channel's deposit is ${old.deposit}`);
  if (t.cumulative > MAX_AMOUNT) throw new RangeError(`${what}: the amount is above 2^96-1`);
  if (!verifyZkSignature(zkVoucherMessage(domainTag, t.leaf, t.cumulative), t.signature, old))
    throw new Error(`${what}: bad signature, not by the channel's settlement key`);
}

/** The circuit's input JSON: every signal as a decimal string. */
export type CircuitInput = Record<string, string | string[] | string[][]>;

export interface BatchWitness {
  input: CircuitInput;
  /** In the circuit's (and the contract's) public input order. */
  publicSignals: bigint[];
  newRoot: bigint;
  newQueueHash: bigint;
  /** The state after the batch (the state passed in is left unchanged). */
  stateAfter: ZkState;
}

export interface BatchRequest {
  state: ZkState;
  domainTag: bigint;
  /** The next queued operations, in queue order, at most `queueSlots`. */
  queue: readonly QueueOp[];
  transfers: readonly SignedTransfer[];
  params: CircuitParams;
  /** Skips the validity checks, so tests can hand the circuit an impossible batch. */
  unchecked?: boolean;
}

const zeros = (n: number): string[] => Array.from({ length: n }, () => "0");

/**
 * Builds the witness input of one batch: queue slots first, then transfer slots, each proved
 * against the running root. Unused slots are all zero (the circuit accepts an all-zero slot,
 * signature included, because every check of an unused slot is gated by its `used` flag).
 * Throws a clear error for a batch the circuit would refuse, naming the operation or transfer.
 */
export function buildBatchWitness(request: BatchRequest): BatchWitness {
  const { domainTag, queue, transfers, params } = request;
  const unchecked = request.unchecked ?? false;
  if (request.state.depth !== params.depth)
    throw new Error(`the state's tree has depth ${request.state.depth}, the circuit ${params.depth}`);
  if (queue.length > params.queueSlots)
    throw new RangeError(
      `${queue.length} queued operations exceed the circuit's ${params.queueSlots} queue slots`,
    );
  if (transfers.length > params.batchSize)
    throw new RangeError(`${transfers.length} transfers exceed the circuit's batch size ${params.batchSize}`);
  const state = request.state.clone();
  const oldRoot = state.root;
  const oldQueueHash = state.queueHash;
  const q = queueSlots(params);
  queue.forEach((op, slot) => {
    const old = state.leaves.get(op.leaf) ?? null;
    const siblings = state.tree.path(op.leaf).siblings;
    state.applyQueueOp(op, unchecked);
    fillQueueSlot(q, slot, op, old, siblings);
  });
  const t = transferSlots(params);
  transfers.forEach((transfer, slot) => {
    const old = state.leaves.get(transfer.leaf) ?? emptyLeaf();
    const siblings = state.tree.path(transfer.leaf).siblings;
    state.applyTransfer(domainTag, transfer, unchecked);
    fillTransferSlot(t, slot, transfer, old, siblings);
  });
  const packed = packTransfers(transfers, params.batchSize);
  const publicSignals = [domainTag, oldRoot, state.root, oldQueueHash, state.queueHash, ...packed];
  const input: CircuitInput = {
    domainTag: domainTag.toString(),
    oldRoot: oldRoot.toString(),
    newRoot: state.root.toString(),
    oldQueueHash: oldQueueHash.toString(),
    newQueueHash: state.queueHash.toString(),
    transfers: packed.map(String),
    ...q,
    ...t,
  };
  return { input, publicSignals, newRoot: state.root, newQueueHash: state.queueHash, stateAfter: state };
}

function queueSlots(params: CircuitParams) {
  const n = params.queueSlots;
  return {
    queueKind: zeros(n),
    queueIndex: zeros(n),
    queueAmount: zeros(n),
    queueAx: zeros(n),
    queueAy: zeros(n),
    queuePayee: zeros(n),
    queueOldLeaf: Array.from({ length: n }, () => zeros(5)),
    queueSiblings: Array.from({ length: n }, () => zeros(params.depth)),
  };
}

function fillQueueSlot(
  q: ReturnType<typeof queueSlots>,
  slot: number,
  op: QueueOp,
  old: ZkLeaf | null,
  siblings: bigint[],
): void {
  const isOpen = op.kind === "open";
  q.queueKind[slot] = String(QueueKind[op.kind]);
  q.queueIndex[slot] = String(op.leaf);
  q.queueAmount[slot] = op.amount.toString();
  q.queueAx[slot] = isOpen ? op.ax.toString() : "0";
  q.queueAy[slot] = isOpen ? op.ay.toString() : "0";
  q.queuePayee[slot] = isOpen && op.payee !== null ? BigInt(op.payee).toString() : "0";
  q.queueOldLeaf[slot] = old === null || isOpen ? zeros(5) : leafFields(old);
  q.queueSiblings[slot] = siblings.map(String);
}

function transferSlots(params: CircuitParams) {
  const n = params.batchSize;
  return {
    leafAx: zeros(n),
    leafAy: zeros(n),
    leafPayee: zeros(n),
    leafDeposit: zeros(n),
    leafPaid: zeros(n),
    transferSiblings: Array.from({ length: n }, () => zeros(params.depth)),
    sigR8x: zeros(n),
    sigR8y: zeros(n),
    sigS: zeros(n),
  };
}

function fillTransferSlot(
  t: ReturnType<typeof transferSlots>,
  slot: number,
  transfer: SignedTransfer,
  old: ZkLeaf,
  siblings: bigint[],
): void {
  const [ax, ay, payee, deposit, paid] = leafFields(old);
  t.leafAx[slot] = ax!;
  t.leafAy[slot] = ay!;
  t.leafPayee[slot] = payee!;
  t.leafDeposit[slot] = deposit!;
  t.leafPaid[slot] = paid!;
  t.transferSiblings[slot] = siblings.map(String);
  t.sigR8x[slot] = transfer.signature.r8x.toString();
  t.sigR8y[slot] = transfer.signature.r8y.toString();
  t.sigS[slot] = transfer.signature.s.toString();
}

function leafFields(leaf: ZkLeaf): string[] {
  return [leaf.ax, leaf.ay, BigInt(leaf.payee), leaf.deposit, leaf.paid].map(String);
}
