// The zk settlement mode (docs/zk.md): settles the zk vouchers this payee holds with one Groth16
// proof per batch instead of one signature check each, then withdraws what the new root pays.
// When no proof can be made it falls back to ZkChannels.settleBySignature and says why.
import type { Address, Hex } from "viem";
import type { Logger } from "pino";
import type { MerklePath, QueueOp, ZkLeaf, ZkSignature, ZkState } from "../zk/index.ts";
import { planZkBatch } from "./zk-plan.ts";
import type { ZkBatchPlan, ZkVoucherCandidate } from "./zk-plan.ts";
import { CallRefused } from "./tx-sender.ts";
import type { TxCall, TxOutcome } from "./tx-sender.ts";

/** A zk voucher the payee holds: both signatures, so it can be proven or, failing that, redeemed. */
export interface HeldZkVoucher extends ZkVoucherCandidate {
  /** The EIP-712 ZkVoucher signature by the channel's signer (the fallback's evidence). */
  eip712Signature: Hex;
}

/** The chain's zk state, rebuilt from ZkChannels' events and checked against its root. */
export interface ZkSnapshot {
  state: ZkState;
  /** Queue operations not yet consumed, in order. */
  pending: QueueOp[];
}

export interface ZkProven {
  newRoot: bigint;
  /** The batch's published transfers, two per element (docs/zk.md). */
  transfers: bigint[];
  /** The eight proof words in the verifier's order. */
  proof: readonly bigint[];
  seconds: number;
}

export interface ZkSettlerPorts {
  snapshot(): Promise<ZkSnapshot>;
  /** Builds the witness for `plan` over `snapshot` and proves it in the warm worker. */
  prove(snapshot: ZkSnapshot, plan: ZkBatchPlan, onProgress: (stage: string) => void): Promise<ZkProven>;
  /** Sends through the operator's journaled transaction sender and waits for the outcome. */
  send(purpose: string, call: TxCall): Promise<TxOutcome>;
  settleCall(proven: ZkProven, opsConsumed: number): TxCall;
  withdrawCall(leaf: number, data: ZkLeaf, path: MerklePath, root: bigint): TxCall;
  settleBySignatureCall(leaf: number, cumulative: bigint, signature: Hex): TxCall;
  /** ZkChannels' withdrawn amount of a leaf (what either path already paid out). */
  withdrawn(leaf: number): Promise<bigint>;
}

export interface ZkVoucherSource {
  /** Held zk vouchers above what the chain is known to have paid, at most `limit`. */
  zkVouchers(limit: number): HeldZkVoucher[];
  recordPaid(channelId: Hex, paid: bigint): void;
}

export interface ZkSettlerOptions {
  ports: ZkSettlerPorts;
  vault: ZkVoucherSource;
  payee: Address;
  queueSlots: number;
  batchSize: number;
  /** Proofs one run makes at most; the rest wait for the next run. */
  maxBatches: number;
  log: Logger;
}

export interface ZkBatchOutcome {
  txHash: Hex;
  opsConsumed: number;
  transfers: number;
  proveSeconds: number;
}

export interface ZkSettlementOutcome {
  state: "settled" | "nothing" | "fallback" | "failed";
  batches: ZkBatchOutcome[];
  /** Vouchers redeemed one by one with their EIP-712 signatures after proving failed. */
  redeemed: { leaf: number; cumulativeAmount: bigint; txHash: Hex }[];
  withdrawals: { leaf: number; amount: bigint; txHash: Hex }[];
  /** Why the run fell back or failed; null when it did neither. */
  detail: string | null;
}

/** Vouchers read from the vault per run: a few batches' worth. */
const VOUCHERS_PER_RUN_FACTOR = 4;

export class ZkSettler {
  readonly #options: ZkSettlerOptions;
  #runs = 0;
  /** Runs one after another (scheduled and on demand): a run builds on the root the last one left. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: ZkSettlerOptions) {
    this.#options = options;
  }

  /** Proves and settles batches until nothing is left or `maxBatches` ran, then withdraws. */
  settleNow(): Promise<ZkSettlementOutcome> {
    const run = this.#queue.then(
      () => this.#run(),
      () => this.#run(),
    );
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #run(): Promise<ZkSettlementOutcome> {
    const run = ++this.#runs;
    const outcome: ZkSettlementOutcome = {
      state: "nothing",
      batches: [],
      redeemed: [],
      withdrawals: [],
      detail: null,
    };
    let snapshot = await this.#options.ports.snapshot();
    for (let batch = 0; batch < this.#options.maxBatches; batch++) {
      const plan = this.#plan(snapshot);
      if (plan.ops.length === 0 && plan.transfers.length === 0) break;
      const proven = await this.#prove(snapshot, plan, run, batch);
      if (typeof proven === "string") return this.#fallBack(outcome, plan, proven);
      const settled = await this.#settle(proven, plan);
      if (typeof settled === "string") return { ...outcome, state: "failed", detail: settled };
      outcome.batches.push(settled);
      outcome.state = "settled";
      snapshot = await this.#options.ports.snapshot();
    }
    outcome.withdrawals = await this.#withdraw(snapshot);
    return outcome;
  }

  #plan(snapshot: ZkSnapshot): ZkBatchPlan {
    const { vault, queueSlots, batchSize, log } = this.#options;
    const vouchers = vault.zkVouchers(batchSize * VOUCHERS_PER_RUN_FACTOR);
    const plan = planZkBatch({
      leaves: snapshot.state.leaves,
      pending: snapshot.pending,
      vouchers,
      queueSlots,
      batchSize,
    });
    for (const left of plan.waiting) log.debug(left, "zk voucher waits");
    return plan;
  }

  async #prove(
    snapshot: ZkSnapshot,
    plan: ZkBatchPlan,
    run: number,
    batch: number,
  ): Promise<ZkProven | string> {
    const { ports, log } = this.#options;
    const fields = { run, batch, ops: plan.ops.length, transfers: plan.transfers.length };
    log.info(fields, "proving a zk settlement batch");
    try {
      const proven = await ports.prove(snapshot, plan, (stage) => log.info({ ...fields, stage }, "proving"));
      log.info({ ...fields, seconds: proven.seconds }, "zk batch proven");
      return proven;
    } catch (err) {
      return `proving failed: ${(err as Error).message}`;
    }
  }

  async #settle(proven: ZkProven, plan: ZkBatchPlan): Promise<ZkBatchOutcome | string> {
    const { ports, vault } = this.#options;
    const tx = await sendOrRefused(
      ports,
      `zk-settle:${proven.newRoot}`,
      ports.settleCall(proven, plan.ops.length),
    );
    if (typeof tx === "string") return `ZkChannels.settle refuses the batch: ${tx}`;
    if (tx.state !== "mined") return `the zk settlement transaction ${tx.state}`;
    for (const transfer of plan.transfers) vault.recordPaid(transfer.channelId, transfer.cumulativeAmount);
    return {
      txHash: tx.hash,
      opsConsumed: plan.ops.length,
      transfers: plan.transfers.length,
      proveSeconds: proven.seconds,
    };
  }

  /** Redeems the planned vouchers with their EIP-712 signatures, one transaction each. */
  async #fallBack(
    outcome: ZkSettlementOutcome,
    plan: ZkBatchPlan,
    why: string,
  ): Promise<ZkSettlementOutcome> {
    const { ports, vault, log } = this.#options;
    log.warn({ reason: why, vouchers: plan.transfers.length }, "zk settlement falls back to signatures");
    const held = new Map(vault.zkVouchers(Number.MAX_SAFE_INTEGER).map((v) => [v.channelId, v]));
    const redeemed: ZkSettlementOutcome["redeemed"] = [];
    for (const transfer of plan.transfers) {
      const voucher = held.get(transfer.channelId);
      if (!voucher) continue;
      const call = ports.settleBySignatureCall(
        voucher.leaf,
        voucher.cumulativeAmount,
        voucher.eip712Signature,
      );
      const tx = await sendOrRefused(ports, `zk-redeem:${voucher.leaf}:${voucher.cumulativeAmount}`, call);
      if (typeof tx === "string" || tx.state !== "mined") {
        log.warn({ leaf: voucher.leaf, refused: tx }, "zk voucher not redeemed");
        continue;
      }
      vault.recordPaid(voucher.channelId, voucher.cumulativeAmount);
      redeemed.push({ leaf: voucher.leaf, cumulativeAmount: voucher.cumulativeAmount, txHash: tx.hash });
    }
    return { ...outcome, state: "fallback", redeemed, detail: why };
  }

  /** Withdraws, for each of this payee's leaves, what the current root pays above what was withdrawn. */
  async #withdraw(snapshot: ZkSnapshot): Promise<ZkSettlementOutcome["withdrawals"]> {
    const { ports, payee } = this.#options;
    const withdrawals: ZkSettlementOutcome["withdrawals"] = [];
    const { state } = snapshot;
    for (const [leaf, data] of state.leaves) {
      if (data.payee.toLowerCase() !== payee.toLowerCase() || data.paid === 0n) continue;
      const withdrawn = await ports.withdrawn(leaf);
      if (data.paid <= withdrawn) continue;
      const call = ports.withdrawCall(leaf, data, state.tree.path(leaf), state.root);
      const tx = await sendOrRefused(ports, `zk-withdraw:${leaf}:${data.paid}`, call);
      if (typeof tx !== "string" && tx.state === "mined")
        withdrawals.push({ leaf, amount: data.paid - withdrawn, txHash: tx.hash });
    }
    return withdrawals;
  }
}

/** The outcome, or the custom error name when the contract refuses the call at estimation. */
async function sendOrRefused(
  ports: ZkSettlerPorts,
  purpose: string,
  call: TxCall,
): Promise<TxOutcome | string> {
  try {
    return await ports.send(purpose, call);
  } catch (err) {
    if (err instanceof CallRefused) return err.errorName;
    throw err;
  }
}

export type { ZkSignature };
