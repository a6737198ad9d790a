// A payee's settlement when a relayer settles its vouchers: the transaction sender and the
// watchtower run as usual, and each epoch end (or settleNow) hands the vouchers over instead of
// sending a settle transaction of its own.
import type { SettlementOutcome } from "./epoch-settler.ts";
import type { HandOverOutcome, RelayClient } from "./relay.ts";
import { SettlementService } from "./service.ts";
import type { SettlementServiceOptions } from "./service.ts";
import type { TxSender } from "./tx-sender.ts";

export class RelayedSettlementService extends SettlementService {
  readonly client: RelayClient;
  readonly #epochSeconds: number;
  readonly #pollMs: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  /** `clientOf` builds the hand-over client over this service's transaction sender (for its withdrawals). */
  constructor(options: SettlementServiceOptions, clientOf: (sender: TxSender) => RelayClient) {
    super(options);
    this.client = clientOf(this.sender);
    this.#epochSeconds = options.settings.epochSeconds;
    this.#pollMs = options.settings.pollMs;
    this.#now = options.now ?? Date.now;
  }

  /** Follows pending transactions and the channels; hands the vouchers over at once and at each epoch end. */
  override start(): void {
    this.sender.start(this.#pollMs);
    this.watchtower.start();
    void this.settleNow().catch(() => undefined);
    this.#scheduleNext();
  }

  override async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await super.stop();
  }

  /** Hands the unsettled vouchers to the relayer (after recording and withdrawing what it settled). */
  override async settleNow(): Promise<SettlementOutcome> {
    return this.#outcome(await this.client.run());
  }

  #scheduleNext(): void {
    if (this.#stopped) return;
    const epochMs = this.#epochSeconds * 1000;
    const delay = (Math.floor(this.#now() / epochMs) + 1) * epochMs + 1_000 - this.#now();
    this.#timer = setTimeout(() => {
      void this.settleNow()
        .catch(() => undefined)
        .finally(() => this.#scheduleNext());
    }, delay);
    this.#timer.unref();
  }

  /** A hand-over in the settler's terms: `pending` while the relayer holds vouchers to settle. */
  #outcome(run: HandOverOutcome): SettlementOutcome {
    const state = run.unreachable ? "failed" : run.handed === 0 ? "nothing" : "pending";
    const refusals = run.refused.map((refusal) => `${refusal.channelId}: ${refusal.reason}`).join(", ");
    const detail = run.unreachable
      ? `the relayer could not be reached: ${run.unreachable}`
      : `handed ${run.handed} vouchers to the relayer, ${run.accepted} accepted` +
        (refusals ? `; refused ${refusals}` : "");
    return {
      epoch: Math.floor(this.#now() / 1000 / this.#epochSeconds),
      state,
      txHash: null,
      root: null,
      receiptCount: 0,
      voucherCount: run.handed,
      paidCount: run.paid,
      total: run.withdrawals.reduce((sum, withdrawal) => sum + withdrawal.amount, 0n),
      withdrawals: run.withdrawals,
      detail: detail.slice(0, 1_024),
    };
  }
}
