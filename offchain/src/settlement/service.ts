// The node's settlement: one transaction sender for the operator key, the epoch settler and the
// watchtower over the payee ledger, and what the API serves of them.
import type { Address, Hex } from "viem";
import type { Logger } from "pino";
import type { ChainWriter } from "../chain/index.ts";
import type { VoucherVault } from "../payments/index.ts";
import type { Store } from "../store/index.ts";
import { viemTxPort } from "./chain-port.ts";
import { EpochSettler, rowOutcome } from "./epoch-settler.ts";
import type { SettlementOutcome } from "./epoch-settler.ts";
import { receiptProof } from "./proof.ts";
import type { ReceiptProof } from "./proof.ts";
import { TxSender } from "./tx-sender.ts";
import { Watchtower } from "./watchtower.ts";
import type { ZkSettler, ZkSettlementOutcome } from "./zk-settler.ts";

export interface SettlementSettings {
  epochSeconds: number;
  confirmations: number;
  bumpAfterMs: number;
  maxVouchersPerBatch: number;
  pollMs: number;
}

export interface SettlementServiceOptions {
  store: Store;
  /** Signs with the operator key, which pays the gas and submits (anchors) the batches. */
  writer: ChainWriter;
  vault: VoucherVault;
  settings: SettlementSettings;
  /** Whose credit is withdrawn after a batch (default: every payee in it). */
  withdrawsFor?: (payee: Address) => boolean;
  /** Most blocks asked for in one eth_getLogs call. */
  logBlockRange: number;
  log: Logger;
  now?: () => number;
  /** Builds the zk settler over this service's transaction sender (`settlement.zk.enabled`). */
  zk?: (sender: TxSender) => ZkSettler;
}

/** The zk run waits this long after an epoch ends, behind the signature settlement's own grace. */
const ZK_EPOCH_DELAY_MS = 5_000;

export class SettlementService {
  readonly sender: TxSender;
  readonly settler: EpochSettler;
  readonly watchtower: Watchtower;
  readonly zkSettler: ZkSettler | undefined;
  readonly #store: Store;
  readonly #operator: Address;
  readonly #pollMs: number;
  readonly #epochSeconds: number;
  readonly #now: () => number;
  readonly #log: Logger;
  #zkTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: SettlementServiceOptions) {
    const { store, writer, vault, settings, log } = options;
    this.#store = store;
    this.#operator = writer.walletClient.account.address;
    this.#pollMs = settings.pollMs;
    this.#epochSeconds = settings.epochSeconds;
    this.#now = options.now ?? Date.now;
    this.#log = log;
    this.sender = new TxSender({
      store,
      chain: viemTxPort(writer),
      log: log.child({ part: "tx-sender" }),
      confirmations: settings.confirmations,
      bumpAfterMs: settings.bumpAfterMs,
      now: options.now,
    });
    this.settler = new EpochSettler({
      store,
      reader: writer,
      sender: this.sender,
      vault,
      operator: this.#operator,
      epochSeconds: settings.epochSeconds,
      maxVouchersPerBatch: settings.maxVouchersPerBatch,
      withdrawsFor: options.withdrawsFor,
      log: log.child({ part: "settler" }),
      now: options.now,
    });
    this.zkSettler = options.zk?.(this.sender);
    this.watchtower = new Watchtower({
      store,
      reader: writer,
      sender: this.sender,
      vault,
      log: log.child({ part: "watchtower" }),
      pollMs: settings.pollMs,
      blockRange: options.logBlockRange,
      now: options.now,
    });
  }

  /** Follows pending transactions, checks the channels, resumes an epoch left in flight, schedules the next. */
  start(): void {
    this.sender.start(this.#pollMs);
    this.watchtower.start();
    this.settler.start();
    this.#scheduleZk();
  }

  /** In zk mode, a proving run after each epoch ends (ZK_EPOCH_DELAY_MS after the signature settlement's). */
  #scheduleZk(): void {
    const zk = this.zkSettler;
    if (!zk || this.#stopped) return;
    const epochMs = this.#epochSeconds * 1000;
    const now = this.#now();
    const delay = (Math.floor(now / epochMs) + 1) * epochMs + ZK_EPOCH_DELAY_MS - now;
    this.#zkTimer = setTimeout(() => {
      void zk
        .settleNow()
        .then((outcome) =>
          this.#log.info(
            { state: outcome.state, batches: outcome.batches.length, detail: outcome.detail },
            "zk epoch settled",
          ),
        )
        .catch((err: unknown) =>
          this.#log.warn({ err: (err as Error).message }, "zk epoch settlement failed"),
        )
        .finally(() => this.#scheduleZk());
    }, delay);
    this.#zkTimer.unref();
  }

  /** The sender first: runs waiting for a transaction end at once, the journal keeps it for the next start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#zkTimer);
    await this.sender.stop();
    await this.settler.stop();
    await this.watchtower.stop();
  }

  get zkEnabled(): boolean {
    return this.zkSettler !== undefined;
  }

  settleNow(): Promise<SettlementOutcome> {
    return this.settler.settleNow();
  }

  /** Settles the held zk vouchers by proof now (docs/zk.md). */
  settleZkNow(): Promise<ZkSettlementOutcome> {
    if (!this.zkSettler)
      return Promise.reject(new Error("zk settlement is not enabled (settlement.zk.enabled)"));
    return this.zkSettler.settleNow();
  }

  /** Epochs newest first, below `before`. */
  settlements(page: { before?: number; limit?: number } = {}): SettlementOutcome[] {
    return this.#store.settlements.epochs(page).map(rowOutcome);
  }

  receiptProof(jobId: Hex): ReceiptProof | undefined {
    return receiptProof(this.#store, this.#operator, jobId);
  }
}
