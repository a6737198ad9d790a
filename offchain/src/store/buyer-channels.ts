import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { Address, Hex } from "viem";
import type { ChannelKey } from "../chain/index.ts";
import { requireAddress, requireHex, requireText } from "./codec.ts";

/** Closed channel rows kept for history; beyond it the least recently updated closed rows go. */
export const BUYER_CHANNEL_ROWS_MAX = 10_000;
/**
 * Paid-job rows kept in all (a job is paid once while its row is kept); beyond it the oldest
 * go. A dropped unacknowledged row's amount stays in its channel's cumulative amount: the next
 * voucher still pays it, without naming the job.
 */
export const VOUCHER_JOB_ROWS_MAX = 200_000;

/** Jobs owed to payees without a channel yet; beyond it the oldest go (that payee is not paid for them). */
export const OWED_ROWS_MAX = 100_000;

/** A job earned by a payee that has no open channel yet. */
export interface OwedJob {
  payee: Address;
  jobId: Hex;
  amount: bigint;
  payeePeer: string | null;
}

export type BuyerChannelState = "open" | "closed";

/** A channel this node signs vouchers on (as its signer), with what it signed and what was acknowledged. */
export interface BuyerChannelRow {
  key: ChannelKey;
  channelId: Hex;
  deposit: bigint;
  /** Highest cumulative amount this node committed to (it signs nothing above it). */
  cumulative: bigint;
  /** Highest cumulative amount the payee acknowledged as stored. */
  acked: bigint;
  /** The peer the payee's node last ran jobs as; vouchers go there. */
  payeePeer: string | null;
  state: BuyerChannelState;
  openedAt: number;
  updatedAt: number;
}

/** A paid job whose voucher the payee has not acknowledged yet. */
export interface UnackedJob {
  jobId: Hex;
  amount: bigint;
  /** The channel's cumulative amount once this job is paid: the voucher that pays it. */
  cumulative: bigint;
}

const CHANNEL_COLUMNS =
  "channel_id, payee, buyer, signer, nonce, deposit, cumulative, acked, payee_peer, state, opened_at, updated_at";

/**
 * The buyer's channels and the jobs their unacknowledged vouchers pay. Writes are synchronous;
 * callers that must be durable before they sign run them inside `store.commit`.
 */
export class BuyerChannelsRepository {
  readonly #now: () => number;
  readonly #insert: StatementSync;
  readonly #get: StatementSync;
  readonly #openOfPayee: StatementSync;
  readonly #list: StatementSync;
  readonly #withUnacked: StatementSync;
  readonly #setCumulative: StatementSync;
  readonly #insertJob: StatementSync;
  readonly #jobsOf: StatementSync;
  readonly #markAckedUpTo: StatementSync;
  readonly #setAcked: StatementSync;
  readonly #setDeposit: StatementSync;
  readonly #setPeer: StatementSync;
  readonly #setState: StatementSync;
  readonly #countJobs: StatementSync;
  readonly #trimJobs: StatementSync;
  readonly #trimClosed: StatementSync;
  readonly #owe: StatementSync;
  readonly #owedTo: StatementSync;
  readonly #owedPayees: StatementSync;
  readonly #deleteOwed: StatementSync;
  readonly #countOwed: StatementSync;
  readonly #trimOwed: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#now = now;
    this.#insert = db.prepare(
      `INSERT INTO buyer_channels (${CHANNEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)`,
    );
    this.#get = db.prepare(`SELECT ${CHANNEL_COLUMNS} FROM buyer_channels WHERE channel_id = ?`);
    this.#openOfPayee = db.prepare(
      `SELECT ${CHANNEL_COLUMNS} FROM buyer_channels WHERE payee = ? AND state = 'open' ORDER BY opened_at DESC LIMIT 1`,
    );
    this.#list = db.prepare(
      `SELECT ${CHANNEL_COLUMNS} FROM buyer_channels ORDER BY state DESC, updated_at DESC LIMIT ?`,
    );
    this.#withUnacked = db.prepare(
      `SELECT ${CHANNEL_COLUMNS} FROM buyer_channels WHERE channel_id IN (SELECT DISTINCT channel_id FROM buyer_voucher_jobs WHERE acked = 0) LIMIT ?`,
    );
    this.#setCumulative = db.prepare(
      "UPDATE buyer_channels SET cumulative = ?, payee_peer = coalesce(?, payee_peer), updated_at = ? WHERE channel_id = ?",
    );
    this.#insertJob = db.prepare(
      "INSERT OR IGNORE INTO buyer_voucher_jobs (channel_id, job_id, amount, cumulative, created_at) VALUES (?, ?, ?, ?, ?)",
    );
    this.#jobsOf = db.prepare(
      "SELECT seq, job_id, amount, cumulative FROM buyer_voucher_jobs WHERE channel_id = ? AND acked = 0 ORDER BY seq LIMIT ?",
    );
    this.#markAckedUpTo = db.prepare(
      "UPDATE buyer_voucher_jobs SET acked = 1 WHERE channel_id = ? AND seq <= ? AND acked = 0",
    );
    this.#setAcked = db.prepare("UPDATE buyer_channels SET acked = ?, updated_at = ? WHERE channel_id = ?");
    this.#setDeposit = db.prepare(
      "UPDATE buyer_channels SET deposit = ?, updated_at = ? WHERE channel_id = ?",
    );
    this.#setPeer = db.prepare("UPDATE buyer_channels SET payee_peer = ? WHERE channel_id = ?");
    this.#setState = db.prepare("UPDATE buyer_channels SET state = ?, updated_at = ? WHERE channel_id = ?");
    this.#countJobs = db.prepare("SELECT count(*) AS n FROM buyer_voucher_jobs");
    this.#trimJobs = db.prepare(
      "DELETE FROM buyer_voucher_jobs WHERE seq IN (SELECT seq FROM buyer_voucher_jobs ORDER BY seq LIMIT ?)",
    );
    this.#trimClosed = db.prepare(
      `DELETE FROM buyer_channels WHERE channel_id IN (SELECT channel_id FROM buyer_channels WHERE state = 'closed'
         ORDER BY updated_at LIMIT max(0, (SELECT count(*) FROM buyer_channels WHERE state = 'closed') - ?))`,
    );
    this.#owe = db.prepare(
      "INSERT OR IGNORE INTO buyer_owed (payee, job_id, amount, payee_peer, created_at) VALUES (?, ?, ?, ?, ?)",
    );
    this.#owedTo = db.prepare(
      "SELECT payee, job_id, amount, payee_peer FROM buyer_owed WHERE payee = ? ORDER BY created_at LIMIT ?",
    );
    this.#owedPayees = db.prepare(
      "SELECT payee, max(payee_peer) AS payee_peer FROM buyer_owed GROUP BY payee LIMIT ?",
    );
    this.#deleteOwed = db.prepare("DELETE FROM buyer_owed WHERE payee = ? AND job_id = ?");
    this.#countOwed = db.prepare("SELECT count(*) AS n FROM buyer_owed");
    this.#trimOwed = db.prepare(
      "DELETE FROM buyer_owed WHERE rowid IN (SELECT rowid FROM buyer_owed ORDER BY created_at LIMIT ?)",
    );
  }

  /** Records a channel this node now pays through (opened by it, or found on-chain); `cumulative` is what is already paid. */
  insert(channel: {
    key: ChannelKey;
    channelId: Hex;
    deposit: bigint;
    cumulative?: bigint;
  }): BuyerChannelRow {
    const { key, channelId } = channel;
    const now = this.#now();
    const cumulative = channel.cumulative ?? 0n;
    this.#insert.run(
      requireHex(channelId, "buyerChannels.insert: channelId", 32),
      requireAddress(key.payee, "buyerChannels.insert: payee"),
      requireAddress(key.buyer, "buyerChannels.insert: buyer"),
      requireAddress(key.signer, "buyerChannels.insert: signer"),
      key.nonce.toString(),
      channel.deposit.toString(),
      cumulative.toString(),
      cumulative.toString(),
      null,
      now,
      now,
    );
    this.#trimClosed.run(BUYER_CHANNEL_ROWS_MAX);
    return this.get(channelId)!;
  }

  get(channelId: Hex): BuyerChannelRow | undefined {
    return rowOf(this.#get.get(channelId));
  }

  /** The newest open channel to `payee`, if any. */
  openTo(payee: Address): BuyerChannelRow | undefined {
    return rowOf(this.#openOfPayee.get(requireAddress(payee, "buyerChannels.openTo: payee")));
  }

  /** Open channels first, then closed ones, most recently updated first. */
  list(limit = 1_000): BuyerChannelRow[] {
    return this.#list.all(limit).map((row) => rowOf(row)!);
  }

  /** Channels with jobs whose vouchers were not acknowledged. */
  withUnacked(limit = 1_000): BuyerChannelRow[] {
    return this.#withUnacked.all(limit).map((row) => rowOf(row)!);
  }

  /**
   * Adds a job's amount to the channel's cumulative amount and remembers the job until its
   * voucher is acknowledged. Returns the new cumulative amount, or undefined when the job was
   * already paid on this channel (nothing changes).
   */
  addJob(channelId: Hex, jobId: Hex, amount: bigint, payeePeer?: string): bigint | undefined {
    const channel = this.get(channelId);
    if (!channel) throw new Error(`buyerChannels.addJob: no channel ${channelId}`);
    if (channel.state !== "open") throw new Error(`buyerChannels.addJob: channel ${channelId} is closed`);
    if (amount < 0n) throw new Error(`buyerChannels.addJob: amount ${amount} is negative`);
    const cumulative = channel.cumulative + amount;
    const now = this.#now();
    const inserted = this.#insertJob.run(
      channelId,
      requireHex(jobId, "buyerChannels.addJob: jobId", 32),
      amount.toString(),
      cumulative.toString(),
      now,
    );
    if (inserted.changes === 0) return undefined;
    this.#setCumulative.run(cumulative.toString(), payeePeer ?? null, now, channelId);
    const { n } = this.#countJobs.get() as { n: number };
    if (n > VOUCHER_JOB_ROWS_MAX) this.#trimJobs.run(n - VOUCHER_JOB_ROWS_MAX);
    return cumulative;
  }

  /** The oldest `limit` jobs of the channel not yet acknowledged, in the order they were paid. */
  unacked(channelId: Hex, limit: number): UnackedJob[] {
    return this.#jobsOf.all(channelId, limit).map((row) => ({
      jobId: String(row.job_id) as Hex,
      amount: BigInt(String(row.amount)),
      cumulative: BigInt(String(row.cumulative)),
    }));
  }

  /** The payee stored the voucher of `cumulative`: it and every job it pays are acknowledged. */
  acknowledge(channelId: Hex, cumulative: bigint): void {
    const channel = this.get(channelId);
    if (!channel) return;
    if (cumulative > channel.acked) this.#setAcked.run(cumulative.toString(), this.#now(), channelId);
    let lastSeq: number | undefined;
    for (const row of this.#jobsOf.all(channelId, -1)) {
      if (BigInt(String(row.cumulative)) > cumulative) break;
      lastSeq = Number(row.seq);
    }
    if (lastSeq !== undefined) this.#markAckedUpTo.run(channelId, lastSeq);
  }

  /** Remembers a job earned by a payee with no channel yet; false when it was remembered already. */
  owe(payee: Address, jobId: Hex, amount: bigint, payeePeer?: string): boolean {
    const inserted = this.#owe.run(
      requireAddress(payee, "buyerChannels.owe: payee"),
      requireHex(jobId, "buyerChannels.owe: jobId", 32),
      amount.toString(),
      payeePeer ?? null,
      this.#now(),
    );
    const { n } = this.#countOwed.get() as { n: number };
    if (n > OWED_ROWS_MAX) this.#trimOwed.run(n - OWED_ROWS_MAX);
    return inserted.changes > 0;
  }

  /** Payees owed jobs while they have no channel, with the peer their node last ran jobs as. */
  owedPayees(limit = 1_000): { payee: Address; payeePeer: string | null }[] {
    return this.#owedPayees.all(limit).map((row) => ({
      payee: String(row.payee) as Address,
      payeePeer: row.payee_peer === null ? null : String(row.payee_peer),
    }));
  }

  /**
   * Moves what `payee` is owed onto its open channel `channelId` (oldest first, at most
   * `limit` jobs); returns the jobs moved. A job the channel paid already is just dropped.
   */
  moveOwed(payee: Address, channelId: Hex, limit = 10_000): OwedJob[] {
    const rows = this.#owedTo.all(requireAddress(payee, "buyerChannels.moveOwed: payee"), limit);
    return rows.map((row) => {
      const job: OwedJob = {
        payee: String(row.payee) as Address,
        jobId: String(row.job_id) as Hex,
        amount: BigInt(String(row.amount)),
        payeePeer: row.payee_peer === null ? null : String(row.payee_peer),
      };
      this.addJob(channelId, job.jobId, job.amount, job.payeePeer ?? undefined);
      this.#deleteOwed.run(job.payee, job.jobId);
      return job;
    });
  }

  setDeposit(channelId: Hex, deposit: bigint): void {
    this.#setDeposit.run(deposit.toString(), this.#now(), channelId);
  }

  setPayeePeer(channelId: Hex, peerId: string): void {
    this.#setPeer.run(requireText(peerId, "buyerChannels.setPayeePeer: peerId", 128), channelId);
  }

  /** The channel is closing or closed on-chain: no new voucher is signed on it. */
  close(channelId: Hex): void {
    this.#setState.run("closed", this.#now(), channelId);
    this.#trimClosed.run(BUYER_CHANNEL_ROWS_MAX);
  }

  /**
   * The channel closed before its payee acknowledged some jobs: it is marked closed and those
   * jobs become owed to the payee again, to be paid on its next channel. Returns how many.
   */
  retire(channelId: Hex): number {
    const channel = this.get(channelId);
    if (!channel) return 0;
    this.close(channelId);
    const jobs = this.unacked(channelId, -1);
    for (const job of jobs)
      this.owe(channel.key.payee, job.jobId, job.amount, channel.payeePeer ?? undefined);
    this.#markAckedUpTo.run(channelId, Number.MAX_SAFE_INTEGER);
    return jobs.length;
  }
}

function rowOf(row: unknown): BuyerChannelRow | undefined {
  if (row === undefined) return undefined;
  const r = row as Record<string, unknown>;
  return {
    key: {
      buyer: String(r.buyer) as Address,
      signer: String(r.signer) as Address,
      payee: String(r.payee) as Address,
      nonce: BigInt(String(r.nonce)),
    },
    channelId: String(r.channel_id) as Hex,
    deposit: BigInt(String(r.deposit)),
    cumulative: BigInt(String(r.cumulative)),
    acked: BigInt(String(r.acked)),
    payeePeer: r.payee_peer === null ? null : String(r.payee_peer),
    state: String(r.state) as BuyerChannelState,
    openedAt: Number(r.opened_at),
    updatedAt: Number(r.updated_at),
  };
}
