// Sends the settler's and the watchtower's transactions from the operator key: explicit nonces,
// every signed attempt journalled durably before it is broadcast, fee bumps on a stuck
// transaction, N confirmations, and a resume on start that finishes what a crash left in flight
// (rebroadcast with the same nonce, never a second transaction for the same purpose).
import { keccak256, parseTransaction } from "viem";
import type { Address, Hex } from "viem";
import type { Logger } from "pino";
import { backoffDelay } from "../market/backoff.ts";
import type { JournalTx, Store } from "../store/index.ts";

/** A contract call to send. */
export interface TxCall {
  to: Address;
  data: Hex;
}

/** The call reverts when estimated: sending it would only burn gas. `errorName` is the contract's custom error when known. */
export class CallRefused extends Error {
  readonly errorName: string;

  constructor(errorName: string, options?: ErrorOptions) {
    super(`the contract refuses the call: ${errorName}`, options);
    this.name = "CallRefused";
    this.errorName = errorName;
  }
}

/** An EIP-1559 transaction as the sender signs it. */
export interface UnsignedTx extends TxCall {
  nonce: number;
  gas: bigint;
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
}

export interface Fees {
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
}

export interface MinedTx {
  hash: Hex;
  blockNumber: bigint;
  success: boolean;
}

/** What the sender needs of the chain (viem in the node, a fake in unit tests). */
export interface TxChainPort {
  /** Transactions of the account mined so far (the next nonce the chain expects). */
  minedNonce(): Promise<number>;
  /** Like minedNonce, counting the account's transactions waiting in the mempool too. */
  pendingNonce(): Promise<number>;
  blockNumber(): Promise<bigint>;
  fees(): Promise<Fees>;
  /** Gas the call needs; throws CallRefused when it reverts. */
  estimateGas(call: TxCall): Promise<bigint>;
  /** Signs with the operator key; returns the raw transaction. */
  sign(tx: UnsignedTx): Promise<Hex>;
  broadcast(raw: Hex): Promise<void>;
  /** The receipt of a mined transaction, undefined while it is not mined. */
  receipt(hash: Hex): Promise<MinedTx | undefined>;
}

export interface TxPolicy {
  /** Blocks a transaction must be under before it counts (1: mined). */
  confirmations: number;
  /** A transaction not mined this long after its last attempt is sent again with higher fees. */
  bumpAfterMs: number;
}

/** Fee bump: both fee fields rise by at least this fraction (in thousandths); nodes replace a pending transaction only above +10 %. */
export const FEE_BUMP_PERMILLE = 125n;
/** Gas estimated by the node, plus this share (in percent), is the gas limit. */
const GAS_MARGIN_PERCENT = 25n;

/** How a purpose ended: mined with success or reverted, or dropped (its nonce taken by another transaction). */
export interface TxOutcome {
  purpose: string;
  hash: Hex;
  state: "mined" | "reverted" | "dropped";
  blockNumber: bigint | null;
}

/** What a poll sees of one purpose's attempts. */
export interface TxObservation {
  now: number;
  head: bigint;
  minedNonce: number;
  /** The attempt of the purpose that mined, if any did. */
  mined: MinedTx | undefined;
  /** The fees the chain asks now. */
  fees: Fees;
}

export type TxDecision =
  { type: "wait" } | { type: "final"; outcome: TxOutcome } | { type: "bump"; fees: Fees };

/**
 * The sender's decision for one purpose (pure): its attempts share one nonce; the newest is
 * last. Mined and confirmed: final. Its nonce used by something else: dropped. Not mined
 * `bumpAfterMs` after the newest attempt: send a replacement with fees raised by at least
 * 12.5 % on both fields (or what the chain asks now, when higher).
 */
export function decideTx(
  attempts: readonly JournalTx[],
  observation: TxObservation,
  policy: TxPolicy,
): TxDecision {
  const newest = attempts.at(-1);
  if (newest === undefined) throw new Error("decideTx: a purpose without attempts");
  const { mined } = observation;
  if (mined !== undefined) {
    const depth = observation.head - mined.blockNumber + 1n;
    if (depth < BigInt(Math.max(1, policy.confirmations))) return { type: "wait" };
    const state = mined.success ? "mined" : "reverted";
    return {
      type: "final",
      outcome: { purpose: newest.purpose, hash: mined.hash, state, blockNumber: mined.blockNumber },
    };
  }
  if (observation.minedNonce > newest.nonce)
    return {
      type: "final",
      outcome: { purpose: newest.purpose, hash: newest.hash, state: "dropped", blockNumber: null },
    };
  if (observation.now - newest.sentAt < policy.bumpAfterMs) return { type: "wait" };
  return { type: "bump", fees: bumpedFees(newest, observation.fees) };
}

/** Fees of a replacement: +12.5 % (rounded up, at least +1) on both fields, or the chain's ask when higher. */
export function bumpedFees(previous: Fees, current: Fees): Fees {
  const raise = (fee: bigint) => fee + max(1n, (fee * FEE_BUMP_PERMILLE + 999n) / 1000n);
  const maxPriorityFeePerGas = max(raise(previous.maxPriorityFeePerGas), current.maxPriorityFeePerGas);
  const maxFeePerGas = max(raise(previous.maxFeePerGas), current.maxFeePerGas, maxPriorityFeePerGas);
  return { maxFeePerGas, maxPriorityFeePerGas };
}

function max(...values: bigint[]): bigint {
  return values.reduce((a, b) => (a > b ? a : b));
}

export interface TxSenderOptions extends TxPolicy {
  store: Store;
  chain: TxChainPort;
  log: Logger;
  now?: () => number;
}

/**
 * The operator key's transaction sender. `submit` journals and broadcasts; `poll` (run by
 * `start`, or by tests with a fake clock) follows every pending purpose to its end; `wait`
 * resolves with a purpose's outcome. Bound: one pending purpose per caller action; waiters are
 * kept per pending purpose only and dropped when it ends.
 */
export class TxSender {
  readonly #options: TxSenderOptions;
  readonly #now: () => number;
  readonly #waiters = new Map<string, Waiter[]>();
  /**
   * Pending purposes rebroadcast since start: after a restart every pending attempt is sent
   * again once. Bound: pending purposes only; a purpose leaves when final.
   */
  readonly #rebroadcast = new Set<string>();
  #serial: Promise<unknown> = Promise.resolve();
  #failures = 0;
  #retryAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #polling: Promise<void> = Promise.resolve();

  constructor(options: TxSenderOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Sends `call` for `purpose` unless the purpose already has a pending or mined attempt, which
   * is returned instead: a purpose (such as one epoch's settlement) is one transaction. The
   * signed transaction is on disk before it is broadcast.
   */
  submit(purpose: string, epoch: number | null, call: TxCall): Promise<JournalTx> {
    return this.#serialized(async () => {
      const existing = this.#options.store.settlements
        .txsOf(purpose)
        .filter((tx) => tx.state === "pending" || tx.state === "mined");
      if (existing.length > 0) return existing.at(-1)!;
      const { chain } = this.#options;
      const nonce = await this.#nextNonce();
      const gas = ((await chain.estimateGas(call)) * (100n + GAS_MARGIN_PERCENT)) / 100n;
      const fees = await chain.fees();
      const tx = await this.#journal(purpose, epoch, { ...call, nonce, gas, ...fees });
      await this.#broadcast(tx);
      return tx;
    });
  }

  /** Resolves once `purpose` is final (at once when it already is). */
  wait(purpose: string): Promise<TxOutcome> {
    const attempts = this.#options.store.settlements.txsOf(purpose);
    if (attempts.length === 0) return Promise.reject(new Error(`no transaction was sent for ${purpose}`));
    const final = finalOutcome(attempts);
    if (final) return Promise.resolve(final);
    if (this.#stopped) return Promise.reject(stoppedError(purpose));
    return new Promise((resolve, reject) => {
      const waiting = this.#waiters.get(purpose) ?? [];
      waiting.push({ resolve, reject });
      this.#waiters.set(purpose, waiting);
    });
  }

  /** Sends and waits. */
  async send(purpose: string, epoch: number | null, call: TxCall): Promise<TxOutcome> {
    await this.submit(purpose, epoch, call);
    return this.wait(purpose);
  }

  /** Purposes with a pending attempt (e.g. a settlement a crash left in flight). */
  pendingPurposes(): string[] {
    return [...new Set(this.#options.store.settlements.pendingTxs().map((tx) => tx.purpose))];
  }

  /**
   * One pass over every pending purpose: rebroadcast once after a start, then finish, bump or
   * wait. An RPC error postpones the next pass with backoff.
   */
  poll(): Promise<void> {
    if (this.#now() < this.#retryAt) return Promise.resolve();
    return this.#serialized(async () => {
      try {
        for (const purpose of this.pendingPurposes()) await this.#follow(purpose);
        this.#failures = 0;
      } catch (error) {
        this.#failures += 1;
        this.#retryAt = this.#now() + backoffDelay(this.#failures);
        this.#options.log.warn(
          { err: (error as Error).message, failures: this.#failures },
          "chain unreachable",
        );
      }
    });
  }

  /** Polls every `pollMs` until stopped. */
  start(pollMs: number): void {
    const tick = () => {
      if (this.#stopped) return;
      this.#timer = setTimeout(() => {
        this.#polling = this.poll().finally(tick);
      }, pollMs);
      this.#timer.unref();
    };
    this.#polling = this.poll().finally(tick);
  }

  /** Stops polling; whoever waits for a pending purpose is told so (the journal resumes it on the next start). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#polling;
    for (const [purpose, waiting] of this.#waiters)
      for (const { reject } of waiting) reject(stoppedError(purpose));
    this.#waiters.clear();
  }

  async #follow(purpose: string): Promise<void> {
    const { chain, store } = this.#options;
    const attempts = store.settlements.txsOf(purpose).filter((tx) => tx.state === "pending");
    if (attempts.length === 0) return;
    if (!this.#rebroadcast.has(purpose)) {
      this.#rebroadcast.add(purpose);
      await this.#broadcast(attempts.at(-1)!);
    }
    const minedNonce = await chain.minedNonce();
    const mined = await this.#minedAttempt(attempts);
    const observation = {
      now: this.#now(),
      head: await chain.blockNumber(),
      minedNonce,
      mined,
      fees: await chain.fees(),
    };
    const decision = decideTx(attempts, observation, this.#options);
    if (decision.type === "final") await this.#finish(attempts, decision.outcome);
    if (decision.type === "bump") await this.#bump(attempts.at(-1)!, decision.fees);
  }

  async #minedAttempt(attempts: readonly JournalTx[]): Promise<MinedTx | undefined> {
    for (const attempt of attempts) {
      const mined = await this.#options.chain.receipt(attempt.hash);
      if (mined) return mined;
    }
    return undefined;
  }

  async #finish(attempts: readonly JournalTx[], outcome: TxOutcome): Promise<void> {
    const { store, log } = this.#options;
    const block = outcome.blockNumber === null ? null : Number(outcome.blockNumber);
    await store.commit(() => {
      for (const attempt of attempts) {
        const won = attempt.hash === outcome.hash && outcome.state !== "dropped";
        store.settlements.setTxState(
          attempt.hash,
          won ? (outcome.state as "mined" | "reverted") : "replaced",
          won ? block : null,
        );
      }
    });
    log.info(
      { purpose: outcome.purpose, hash: outcome.hash, state: outcome.state, block },
      "transaction final",
    );
    this.#rebroadcast.delete(outcome.purpose);
    const waiting = this.#waiters.get(outcome.purpose) ?? [];
    this.#waiters.delete(outcome.purpose);
    for (const { resolve } of waiting) resolve(outcome);
  }

  async #bump(newest: JournalTx, fees: Fees): Promise<void> {
    const parsed = parseTransaction(newest.raw);
    if (parsed.to == null || parsed.gas === undefined)
      throw new Error(`journalled ${newest.hash} has no recipient or gas`);
    const tx = await this.#journal(newest.purpose, newest.epoch, {
      to: parsed.to,
      data: parsed.data ?? "0x",
      nonce: newest.nonce,
      gas: parsed.gas,
      ...fees,
    });
    this.#options.log.info(
      { purpose: tx.purpose, nonce: tx.nonce, hash: tx.hash, ...stringFees(fees) },
      "fee bumped",
    );
    await this.#broadcast(tx);
  }

  async #journal(purpose: string, epoch: number | null, tx: UnsignedTx): Promise<JournalTx> {
    const { chain, store } = this.#options;
    const raw = await chain.sign(tx);
    const entry = {
      hash: keccak256(raw),
      purpose,
      epoch,
      nonce: tx.nonce,
      raw,
      maxFeePerGas: tx.maxFeePerGas,
      maxPriorityFeePerGas: tx.maxPriorityFeePerGas,
      sentAt: this.#now(),
    };
    return store.commit(() => store.settlements.journalTx(entry));
  }

  /** Broadcast errors are logged, not thrown: the journal holds the transaction and polls send it again. */
  async #broadcast(tx: JournalTx): Promise<void> {
    try {
      await this.#options.chain.broadcast(tx.raw);
    } catch (error) {
      this.#options.log.warn(
        { purpose: tx.purpose, hash: tx.hash, err: (error as Error).message },
        "broadcast failed",
      );
    }
  }

  /** Above both the chain's pending count and every nonce this journal has pending. */
  async #nextNonce(): Promise<number> {
    const journalled = this.#options.store.settlements.pendingTxs().map((tx) => tx.nonce + 1);
    return Math.max(await this.#options.chain.pendingNonce(), ...journalled);
  }

  #serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(fn, fn);
    this.#serial = run.catch(() => undefined);
    return run;
  }
}

interface Waiter {
  resolve: (outcome: TxOutcome) => void;
  reject: (error: Error) => void;
}

function stoppedError(purpose: string): Error {
  return new Error(
    `the transaction sender stopped while ${purpose} was pending; it resumes on the next start`,
  );
}

function finalOutcome(attempts: readonly JournalTx[]): TxOutcome | undefined {
  if (attempts.some((tx) => tx.state === "pending")) return undefined;
  const won = attempts.find((tx) => tx.state === "mined" || tx.state === "reverted");
  const last = attempts.at(-1)!;
  if (!won) return { purpose: last.purpose, hash: last.hash, state: "dropped", blockNumber: null };
  return {
    purpose: won.purpose,
    hash: won.hash,
    state: won.state as "mined" | "reverted",
    blockNumber: won.blockNumber === null ? null : BigInt(won.blockNumber),
  };
}

function stringFees(fees: Fees): Record<string, string> {
  return {
    maxFeePerGas: fees.maxFeePerGas.toString(),
    maxPriorityFeePerGas: fees.maxPriorityFeePerGas.toString(),
  };
}
