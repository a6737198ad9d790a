// Every epoch (and on demand) the node settles the latest vouchers it holds in one
// PaymentChannels.settle transaction that also anchors the Merkle root of the receipts it signed
// since the last anchor, then collects what the settlement credited with withdrawPaid.
import { encodeFunctionData, isAddressEqual, parseEventLogs } from "viem";
import type { Address, Hex } from "viem";
import type { Logger } from "pino";
import {
  MAX_BATCH_AMOUNT,
  buildReceiptTree,
  channelIdOf,
  encodeSettlementBatch,
  getChannel,
  paidVoucherFlags,
  paymentChannelsAbi,
  withdrawableOf,
} from "../chain/index.ts";
import type { ChainReader, ChannelKey } from "../chain/index.ts";
import type { HeldVoucher, VoucherVault } from "../payments/index.ts";
import { ReceiptWireSchema, receiptFromWire } from "../protocol/index.ts";
import type { Receipt } from "../protocol/index.ts";
import type { EpochRow, EpochVoucher, JsonObject, Store } from "../store/index.ts";
import { CallRefused } from "./tx-sender.ts";
import type { TxOutcome, TxSender } from "./tx-sender.ts";

export interface EpochSettlerOptions {
  store: Store;
  reader: ChainReader;
  sender: TxSender;
  vault: VoucherVault;
  /** The operator address: it signs this node's receipts and submits (and anchors) the batches. */
  operator: Address;
  epochSeconds: number;
  maxVouchersPerBatch: number;
  /** Whose credit the settler withdraws after a batch (default: every payee in it; a relayer may limit it to its own). */
  withdrawsFor?: (payee: Address) => boolean;
  log: Logger;
  now?: () => number;
}

export interface Withdrawal {
  payee: Address;
  amount: bigint;
  txHash: Hex;
}

/**
 * What a settlement run did. `nothing`: no voucher above what the chain paid and no receipt to
 * anchor; `already_recorded`: this epoch was settled (or tried) before, its row is returned.
 */
export interface SettlementOutcome {
  epoch: number;
  state: "settled" | "failed" | "nothing" | "already_recorded" | "pending";
  txHash: Hex | null;
  root: Hex | null;
  receiptCount: number;
  voucherCount: number;
  paidCount: number;
  total: bigint;
  withdrawals: Withdrawal[];
  detail: string | null;
}

/** PaymentChannels.SkipReason by its index. */
const SKIP_REASONS = ["nothing_new", "bad_signature"] as const;
const ZERO_ROOT: Hex = "0x0000000000000000000000000000000000000000000000000000000000000000";
/** Seconds after an epoch ends before it is settled, so receipts signed at its end are in. */
const EPOCH_GRACE_MS = 1_000;

export function settlePurpose(epoch: number): string {
  return `settle:${epoch}`;
}

export class EpochSettler {
  readonly #options: EpochSettlerOptions;
  readonly #now: () => number;
  /** Runs one after another (resume, scheduled epochs, on demand); a run waits for the one before. */
  #queue: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: EpochSettlerOptions) {
    if (!Number.isInteger(options.epochSeconds) || options.epochSeconds < 1)
      throw new Error(`epochSeconds must be a whole number of seconds ≥ 1, not ${options.epochSeconds}`);
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** floor(unix seconds / epochSeconds). */
  epochAt(unixMs: number): number {
    return Math.floor(unixMs / 1000 / this.#options.epochSeconds);
  }

  /**
   * Settles now, as the current epoch: first finishes any epoch a crash left in flight, then
   * sends one batch with the vouchers above what the chain paid and the receipts not yet
   * anchored. Runs one at a time: a call during a run settles after it (usually answering
   * `already_recorded` when both fall in the same epoch).
   */
  settleNow(): Promise<SettlementOutcome> {
    return this.#serialized(() => this.#settle(this.epochAt(this.#now()), this.#now() + 1));
  }

  /** Finishes epochs recorded and not yet final (after a crash between sending and mining). */
  async resume(): Promise<SettlementOutcome[]> {
    const outcomes: SettlementOutcome[] = [];
    for (const row of this.#options.store.settlements.pendingEpochs()) {
      this.#options.log.info({ epoch: row.epoch }, "resuming a settlement left in flight");
      outcomes.push(await this.#sendAndFinish(row));
    }
    return outcomes;
  }

  /** Resumes, then settles each epoch that ends, `EPOCH_GRACE_MS` after its end. */
  start(): void {
    void this.#serialized(async () => {
      await this.resume();
      return emptyOutcome(this.epochAt(this.#now()), "nothing");
    }).catch((error: unknown) =>
      this.#options.log.warn({ err: (error as Error).message }, "settlement resume failed"),
    );
    this.#scheduleNext();
  }

  /** Stops scheduling; a run waiting for its transaction ends when the sender stops (the journal resumes it on the next start). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#queue;
  }

  #scheduleNext(): void {
    if (this.#stopped) return;
    const epochMs = this.#options.epochSeconds * 1000;
    const ended = this.epochAt(this.#now());
    const delay = (ended + 1) * epochMs + EPOCH_GRACE_MS - this.#now();
    this.#timer = setTimeout(() => {
      void this.#serialized(() => this.#settle(ended, (ended + 1) * epochMs))
        .then((outcome) => this.#options.log.info(outcomeFields(outcome), "epoch settled"))
        .catch((error: unknown) =>
          this.#options.log.warn({ err: (error as Error).message }, "epoch settlement failed"),
        )
        .finally(() => this.#scheduleNext());
    }, delay);
    this.#timer.unref();
  }

  #serialized(run: () => Promise<SettlementOutcome>): Promise<SettlementOutcome> {
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #settle(epoch: number, receiptsBefore: number): Promise<SettlementOutcome> {
    await this.resume();
    const { store, log } = this.#options;
    const recorded = store.settlements.epoch(epoch);
    if (recorded) return { ...rowOutcome(recorded), state: "already_recorded" };
    const vouchers = this.#vouchers();
    const receipts = this.#receipts(receiptsBefore);
    if (vouchers.length === 0 && receipts.length === 0) return emptyOutcome(epoch, "nothing");
    const tree = receipts.length > 0 ? buildReceiptTree(receipts.map((r) => r.receipt)) : undefined;
    const row = await store.commit(() =>
      store.settlements.recordEpoch({
        epoch,
        root: tree?.root ?? null,
        lastReceiptId: receipts.at(-1)?.id ?? 0,
        vouchers,
        members: receipts.map((r) => ({
          jobId: r.receipt.jobId,
          executor: r.receipt.executor,
          receipt: r.wire,
        })),
      }),
    );
    log.info({ epoch, vouchers: vouchers.length, receipts: receipts.length }, "settling epoch");
    return this.#sendAndFinish(row);
  }

  /**
   * Sends a recorded epoch's settlement unless it has an attempt already (one transaction per
   * epoch), waits for it and finishes. A call the contract refuses fails the epoch; when the
   * chain cannot be reached the epoch stays pending and the next run resumes it.
   */
  async #sendAndFinish(row: EpochRow): Promise<SettlementOutcome> {
    const { store, sender, reader } = this.#options;
    const purpose = settlePurpose(row.epoch);
    if (store.settlements.txsOf(purpose).length === 0) {
      try {
        const tx = await sender.submit(purpose, row.epoch, settleCall(reader, row));
        await store.commit(() => store.settlements.markEpochSent(row.epoch, tx.hash));
      } catch (error) {
        if (!(error instanceof CallRefused)) throw error;
        const detail = `PaymentChannels.settle refuses the batch: ${error.errorName}`;
        await store.commit(() => store.settlements.markEpochFailed(row.epoch, detail));
        return rowOutcome(store.settlements.epoch(row.epoch)!);
      }
    }
    return this.#finish(row.epoch, await sender.wait(purpose));
  }

  /** After the settlement is final: what it paid, the vault told, the payees' credit withdrawn. */
  async #finish(epoch: number, tx: TxOutcome): Promise<SettlementOutcome> {
    const { store, reader } = this.#options;
    if (tx.state !== "mined") {
      await store.commit(() =>
        store.settlements.markEpochFailed(epoch, `settlement transaction ${tx.state}`),
      );
      return rowOutcome(store.settlements.epoch(epoch)!);
    }
    const row = store.settlements.epoch(epoch)!;
    const receipt = await reader.publicClient.getTransactionReceipt({ hash: tx.hash });
    const [settled] = parseEventLogs({
      abi: paymentChannelsAbi,
      logs: receipt.logs,
      eventName: "BatchSettled",
    });
    const paidCount = settled
      ? paidVoucherFlags(settled.args.paidBitmap, row.vouchers.length).filter(Boolean).length
      : 0;
    this.#logSkipped(epoch, receipt.logs);
    await this.#recordPaid(row.vouchers);
    await store.commit(() =>
      store.settlements.markEpochSettled(epoch, {
        txHash: tx.hash,
        total: settled?.args.total ?? 0n,
        paidCount,
      }),
    );
    const withdrawals = await this.#withdraw(
      epoch,
      row.vouchers.map((voucher) => voucher.key),
    );
    return { ...rowOutcome(store.settlements.epoch(epoch)!), withdrawals };
  }

  /** A skipped voucher paid nothing new (raced by a redeem) or carried a bad signature (a ledger bug). */
  #logSkipped(epoch: number, logs: Parameters<typeof parseEventLogs>[0]["logs"]): void {
    const skipped = parseEventLogs({ abi: paymentChannelsAbi, logs, eventName: "VoucherSkipped" });
    for (const { args } of skipped) {
      const reason = SKIP_REASONS[args.reason] ?? `reason ${args.reason}`;
      const level = reason === "bad_signature" ? "warn" : "info";
      this.#options.log[level](
        { epoch, channelId: args.channelId, reason },
        "voucher skipped by the settlement",
      );
    }
  }

  async #recordPaid(vouchers: readonly EpochVoucher[]): Promise<void> {
    for (const voucher of vouchers) {
      const { paid } = await getChannel(this.#options.reader, voucher.channelId);
      this.#options.vault.recordPaid(voucher.channelId, paid);
    }
  }

  /** withdrawPaid per payee over its channels with something withdrawable (the money goes to the payee). */
  async #withdraw(epoch: number, keys: readonly ChannelKey[]): Promise<Withdrawal[]> {
    const { reader, sender } = this.#options;
    const withdrawals: Withdrawal[] = [];
    const withdrawsFor = this.#options.withdrawsFor ?? (() => true);
    for (const payee of uniqueAddresses(keys.map((key) => key.payee)).filter(withdrawsFor)) {
      const due: ChannelKey[] = [];
      let amount = 0n;
      for (const key of keys.filter((k) => isAddressEqual(k.payee, payee))) {
        const withdrawable = await withdrawableOf(reader, channelIdOf(key));
        if (withdrawable > 0n) due.push(key);
        amount += withdrawable;
      }
      if (due.length === 0) continue;
      const data = encodeFunctionData({ abi: paymentChannelsAbi, functionName: "withdrawPaid", args: [due] });
      const outcome = await sender.send(`withdraw:${epoch}:${payee}`, epoch, {
        to: reader.deployment.paymentChannels,
        data,
      });
      if (outcome.state === "mined") withdrawals.push({ payee, amount, txHash: outcome.hash });
    }
    return withdrawals;
  }

  #vouchers(): EpochVoucher[] {
    const { vault, maxVouchersPerBatch, log } = this.#options;
    return vault
      .unsettled(maxVouchersPerBatch)
      .filter((voucher) => {
        if (voucher.cumulativeAmount <= MAX_BATCH_AMOUNT) return true;
        log.warn({ channelId: voucher.channelId }, "voucher above a batch's uint96; redeem it on its own");
        return false;
      })
      .map(epochVoucher);
  }

  #receipts(storedBefore: number): { id: number; receipt: Receipt; wire: JsonObject }[] {
    const { store, operator, log } = this.#options;
    return store.settlements.unanchoredReceipts(operator, storedBefore).flatMap((row) => {
      const parsed = ReceiptWireSchema.safeParse(row.message);
      if (!parsed.success) {
        log.warn({ jobId: row.jobId }, "stored receipt does not parse; left out of the anchor");
        return [];
      }
      return [{ id: row.id, receipt: receiptFromWire(parsed.data), wire: parsed.data as JsonObject }];
    });
  }
}

/** The settle call of a recorded epoch: its vouchers and, when it has receipts, its anchor. */
export function settleCall(reader: ChainReader, row: EpochRow): { to: Address; data: Hex } {
  const data = encodeFunctionData({
    abi: paymentChannelsAbi,
    functionName: "settle",
    args: [
      encodeSettlementBatch(row.vouchers),
      BigInt(row.epoch),
      row.root ?? ZERO_ROOT,
      BigInt(row.receiptCount),
    ],
  });
  return { to: reader.deployment.paymentChannels, data };
}

function epochVoucher(voucher: HeldVoucher): EpochVoucher {
  return {
    key: voucher.key,
    channelId: voucher.channelId,
    cumulativeAmount: voucher.cumulativeAmount,
    signature: voucher.signature,
  };
}

function uniqueAddresses(addresses: readonly Address[]): Address[] {
  const unique: Address[] = [];
  for (const address of addresses)
    if (!unique.some((seen) => isAddressEqual(seen, address))) unique.push(address);
  return unique;
}

/** A recorded epoch as a settlement outcome (its withdrawals are not kept). */
export function rowOutcome(row: EpochRow): SettlementOutcome {
  return {
    epoch: row.epoch,
    state: row.state,
    txHash: row.txHash,
    root: row.root,
    receiptCount: row.receiptCount,
    voucherCount: row.vouchers.length,
    paidCount: row.paidCount ?? 0,
    total: row.settledTotal ?? 0n,
    withdrawals: [],
    detail: row.detail,
  };
}

function emptyOutcome(epoch: number, state: SettlementOutcome["state"]): SettlementOutcome {
  return {
    epoch,
    state,
    txHash: null,
    root: null,
    receiptCount: 0,
    voucherCount: 0,
    paidCount: 0,
    total: 0n,
    withdrawals: [],
    detail: null,
  };
}

function outcomeFields(outcome: SettlementOutcome): Record<string, unknown> {
  return {
    epoch: outcome.epoch,
    state: outcome.state,
    txHash: outcome.txHash,
    vouchers: outcome.voucherCount,
    paid: outcome.paidCount,
    total: outcome.total.toString(),
    receipts: outcome.receiptCount,
  };
}
