import type { DatabaseSync, StatementSync } from "node:sqlite";
import { getAddress, type Address, type Hex } from "viem";
import type { ZkPublicKey, ZkSignature } from "../zk/index.ts";

/** Channels (and latest vouchers, one per channel) kept; beyond it closed or settled rows go first. */
export const PAYEE_CHANNELS_MAX = 50_000;
/** Job earnings kept; beyond it paid rows go first (oldest first), then written-off unpaid ones. */
export const PAYEE_EARNINGS_MAX = 200_000;
/** An unpaid earning older than this is written off when the table is full. */
export const EARNING_WRITE_OFF_MS = 7 * 24 * 3_600_000;
/** Signers whose unpaid total is cached; past it the cache starts over. */
const UNPAID_CACHE_MAX = 4_096;
/** Rows written between two checks of a table's bound (a table may exceed it by this many). */
const TRIM_EVERY = 1_024;

const AMOUNT_DIGITS = 78;

/** An amount as stored: zero-padded to 78 digits, so SQLite orders and compares it as a number. */
export function storedAmount(amount: bigint): string {
  if (amount < 0n) throw new RangeError(`amount ${amount} is negative`);
  return amount.toString().padStart(AMOUNT_DIGITS, "0");
}

function amountOf(text: unknown): bigint {
  return BigInt(text as string);
}

export interface ChannelKeyRow {
  buyer: Address;
  signer: Address;
  payee: Address;
  nonce: bigint;
}

/** A channel paying this node, as the chain's events left it. */
export interface PayeeChannelRow {
  channelId: Hex;
  key: ChannelKeyRow;
  deposit: bigint;
  paid: bigint;
  /** 0 while open, a unix time while closing, 2^64-1 once closed. */
  closesAt: bigint;
  updatedAt: number;
  /** A ZkChannels channel's settlement key (key.nonce is its leaf); absent for PaymentChannels. */
  zk?: ZkPublicKey;
}

/** The latest voucher held for a channel. */
export interface PayeeVoucherRow {
  channelId: Hex;
  key: ChannelKeyRow;
  cumulativeAmount: bigint;
  signature: Hex;
  paidOnChain: bigint;
  receivedAt: number;
  /** A zk voucher's leaf and EdDSA-Poseidon signature; absent for PaymentChannels. */
  zk?: { leaf: number; signature: ZkSignature };
}

export interface EarningRow {
  jobId: Hex;
  /** The buyer's voucher key (the job spec's buyer). */
  signer: Address;
  amount: bigint;
  earnedAt: number;
  /** The channel whose voucher paid it, once paid. */
  paidBy: Hex | null;
}

type Row = Record<string, unknown>;

/** Checksummed addresses by lower-case form: a checksum costs a keccak. Bounded; starts over when full. */
const checksums = new Map<string, Address>();
const CHECKSUMS_MAX = 4_096;

function checksummed(lowerCase: string): Address {
  let address = checksums.get(lowerCase);
  if (address === undefined) {
    if (checksums.size >= CHECKSUMS_MAX) checksums.clear();
    address = getAddress(lowerCase);
    checksums.set(lowerCase, address);
  }
  return address;
}

function keyOf(row: Row): ChannelKeyRow {
  return {
    buyer: checksummed(row.buyer as string),
    signer: checksummed(row.signer as string),
    payee: checksummed(row.payee as string),
    nonce: BigInt(row.nonce as string),
  };
}

/**
 * The payee's ledger in SQLite: channels paying this node (from chain events), the latest
 * voucher of each, and what each job this node ran earned, paid or not. Addresses are stored
 * lower case. Bounds: PAYEE_CHANNELS_MAX channels and vouchers, PAYEE_EARNINGS_MAX earnings,
 * checked every TRIM_EVERY writes (see the constants for the eviction order).
 */
export class PayeeLedgerRepository {
  readonly #now: () => number;
  readonly #statements: Record<string, StatementSync>;
  /** Unpaid total per signer (lower case), invalidated by every write touching that signer. */
  readonly #unpaid = new Map<string, bigint>();
  #sinceTrim = 0;
  #sinceChannelTrim = 0;
  #sinceVoucherTrim = 0;

  constructor(db: DatabaseSync, now: () => number) {
    this.#now = now;
    const prepare = (sql: string) => db.prepare(sql);
    this.#statements = {
      channel: prepare("SELECT * FROM payee_channels WHERE channel_id = ?"),
      channelsOfSigner: prepare("SELECT * FROM payee_channels WHERE signer = ? LIMIT 1024"),
      insertChannel: prepare(
        `INSERT INTO payee_channels (channel_id, buyer, signer, payee, nonce, deposit, paid, closes_at, updated_at, zk_ax, zk_ay)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET
         deposit = excluded.deposit, paid = excluded.paid, closes_at = excluded.closes_at, updated_at = excluded.updated_at`,
      ),
      updateChannel: prepare(
        "UPDATE payee_channels SET deposit = ?, paid = ?, closes_at = ?, updated_at = ? WHERE channel_id = ?",
      ),
      countChannels: prepare("SELECT COUNT(*) AS n FROM payee_channels"),
      clearChannels: prepare("DELETE FROM payee_channels"),
      trimChannels: prepare(
        `DELETE FROM payee_channels WHERE channel_id IN (SELECT channel_id FROM payee_channels
         ORDER BY closes_at = '${storedAmount(0n)}', deposit, updated_at LIMIT ?)`,
      ),
      voucher: prepare("SELECT * FROM payee_vouchers WHERE channel_id = ?"),
      putVoucher: prepare(
        `INSERT INTO payee_vouchers (channel_id, buyer, signer, payee, nonce, cumulative, signature, paid_on_chain, received_at, updated_at,
           zk_leaf, zk_r8x, zk_r8y, zk_s)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET
         cumulative = excluded.cumulative, signature = excluded.signature, received_at = excluded.received_at,
         updated_at = excluded.updated_at, zk_r8x = excluded.zk_r8x, zk_r8y = excluded.zk_r8y, zk_s = excluded.zk_s`,
      ),
      setPaidOnChain: prepare(
        "UPDATE payee_vouchers SET paid_on_chain = ?, updated_at = ? WHERE channel_id = ? AND paid_on_chain < ?",
      ),
      unsettled: prepare(
        "SELECT * FROM payee_vouchers WHERE cumulative > paid_on_chain AND zk_leaf IS NULL ORDER BY received_at LIMIT ?",
      ),
      unsettledZk: prepare(
        "SELECT * FROM payee_vouchers WHERE cumulative > paid_on_chain AND zk_leaf IS NOT NULL ORDER BY received_at LIMIT ?",
      ),
      voucherChannels: prepare("SELECT * FROM payee_vouchers ORDER BY received_at DESC LIMIT ?"),
      countVouchers: prepare("SELECT COUNT(*) AS n FROM payee_vouchers"),
      trimVouchers: prepare(
        `DELETE FROM payee_vouchers WHERE channel_id IN (SELECT channel_id FROM payee_vouchers
         WHERE cumulative <= paid_on_chain ORDER BY updated_at LIMIT ?)`,
      ),
      earning: prepare("SELECT * FROM payee_earnings WHERE job_id = ?"),
      addEarning: prepare(
        `INSERT INTO payee_earnings (job_id, signer, amount, earned_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (job_id) DO NOTHING`,
      ),
      markPaid: prepare(
        "UPDATE payee_earnings SET paid_by = ?, paid_at = ? WHERE job_id = ? AND paid_by IS NULL",
      ),
      unpaidOf: prepare("SELECT amount FROM payee_earnings WHERE signer = ? AND paid_by IS NULL"),
      countEarnings: prepare("SELECT COUNT(*) AS n FROM payee_earnings"),
      trimPaidEarnings: prepare(
        `DELETE FROM payee_earnings WHERE job_id IN (SELECT job_id FROM payee_earnings
         WHERE paid_by IS NOT NULL ORDER BY earned_at LIMIT ?)`,
      ),
      trimOldEarnings: prepare(
        `DELETE FROM payee_earnings WHERE job_id IN (SELECT job_id FROM payee_earnings
         WHERE earned_at < ? ORDER BY earned_at LIMIT ?)`,
      ),
      trimOldestEarnings: prepare(
        `DELETE FROM payee_earnings WHERE job_id IN (SELECT job_id FROM payee_earnings
         ORDER BY earned_at LIMIT ?)`,
      ),
    };
  }

  // ── channels ──────────────────────────────────────────────────────────────────────

  channel(channelId: Hex): PayeeChannelRow | undefined {
    const row = this.#statements.channel!.get(channelId.toLowerCase()) as Row | undefined;
    return row && channelRow(row);
  }

  /** The channels of one voucher key (at most 1,024). */
  channelsOfSigner(signer: Address): PayeeChannelRow[] {
    return (this.#statements.channelsOfSigner!.all(signer.toLowerCase()) as Row[]).map(channelRow);
  }

  /** Adds a channel (or replaces its state); trims the table to PAYEE_CHANNELS_MAX. */
  putChannel(channel: Omit<PayeeChannelRow, "updatedAt">): void {
    const { key } = channel;
    this.#statements.insertChannel!.run(
      channel.channelId.toLowerCase(),
      key.buyer.toLowerCase(),
      key.signer.toLowerCase(),
      key.payee.toLowerCase(),
      key.nonce.toString(),
      storedAmount(channel.deposit),
      storedAmount(channel.paid),
      storedAmount(channel.closesAt),
      this.#now(),
      channel.zk?.ax.toString() ?? null,
      channel.zk?.ay.toString() ?? null,
    );
    if (++this.#sinceChannelTrim >= TRIM_EVERY) {
      this.#sinceChannelTrim = 0;
      trim(this.#statements.countChannels!, this.#statements.trimChannels!, PAYEE_CHANNELS_MAX);
    }
  }

  /** Forgets every channel (the chain they were read from is gone); vouchers and earnings stay. */
  clearChannels(): void {
    this.#statements.clearChannels!.run();
  }

  updateChannel(channelId: Hex, state: { deposit: bigint; paid: bigint; closesAt: bigint }): boolean {
    return (
      this.#statements.updateChannel!.run(
        storedAmount(state.deposit),
        storedAmount(state.paid),
        storedAmount(state.closesAt),
        this.#now(),
        channelId.toLowerCase(),
      ).changes > 0
    );
  }

  // ── vouchers ──────────────────────────────────────────────────────────────────────

  voucher(channelId: Hex): PayeeVoucherRow | undefined {
    const row = this.#statements.voucher!.get(channelId.toLowerCase()) as Row | undefined;
    return row && voucherRow(row);
  }

  /** Stores a channel's latest voucher (the caller checked it is above the one held). */
  putVoucher(voucher: Omit<PayeeVoucherRow, "paidOnChain">): void {
    const { key } = voucher;
    const now = this.#now();
    this.#statements.putVoucher!.run(
      voucher.channelId.toLowerCase(),
      key.buyer.toLowerCase(),
      key.signer.toLowerCase(),
      key.payee.toLowerCase(),
      key.nonce.toString(),
      storedAmount(voucher.cumulativeAmount),
      voucher.signature,
      storedAmount(0n),
      voucher.receivedAt,
      now,
      voucher.zk?.leaf ?? null,
      voucher.zk?.signature.r8x.toString() ?? null,
      voucher.zk?.signature.r8y.toString() ?? null,
      voucher.zk?.signature.s.toString() ?? null,
    );
    if (++this.#sinceVoucherTrim >= TRIM_EVERY) {
      this.#sinceVoucherTrim = 0;
      trim(this.#statements.countVouchers!, this.#statements.trimVouchers!, PAYEE_CHANNELS_MAX);
    }
  }

  /** Raises what the chain is known to have paid on a channel's voucher (never lowers it). */
  setPaidOnChain(channelId: Hex, paid: bigint): void {
    const stored = storedAmount(paid);
    this.#statements.setPaidOnChain!.run(stored, this.#now(), channelId.toLowerCase(), stored);
  }

  /** PaymentChannels vouchers above what the chain paid, oldest first. */
  unsettled(limit: number): PayeeVoucherRow[] {
    return (this.#statements.unsettled!.all(limit) as Row[]).map(voucherRow);
  }

  /** ZkChannels vouchers above what the tree is known to pay, oldest first. */
  unsettledZk(limit: number): PayeeVoucherRow[] {
    return (this.#statements.unsettledZk!.all(limit) as Row[]).map(voucherRow);
  }

  /** The channels with a voucher, the most recently paid first. */
  voucherChannels(limit: number): PayeeVoucherRow[] {
    return (this.#statements.voucherChannels!.all(limit) as Row[]).map(voucherRow);
  }

  // ── earnings ──────────────────────────────────────────────────────────────────────

  earning(jobId: Hex): EarningRow | undefined {
    const row = this.#statements.earning!.get(jobId.toLowerCase()) as Row | undefined;
    if (!row) return undefined;
    return {
      jobId: row.job_id as Hex,
      signer: checksummed(row.signer as string),
      amount: amountOf(row.amount),
      earnedAt: row.earned_at as number,
      paidBy: (row.paid_by as Hex | null) ?? null,
    };
  }

  /** What a job this node ran earns once paid; a job recorded before keeps its first record. */
  addEarning(earning: { jobId: Hex; signer: Address; amount: bigint }): void {
    const signer = earning.signer.toLowerCase();
    this.#statements.addEarning!.run(
      earning.jobId.toLowerCase(),
      signer,
      storedAmount(earning.amount),
      this.#now(),
    );
    this.#unpaid.delete(signer);
    if (++this.#sinceTrim >= TRIM_EVERY) this.trimEarnings();
  }

  /** Marks jobs paid by a voucher of `channelId`. */
  markPaid(jobIds: readonly Hex[], channelId: Hex, signer: Address): void {
    const now = this.#now();
    for (const jobId of jobIds)
      this.#statements.markPaid!.run(channelId.toLowerCase(), now, jobId.toLowerCase());
    this.#unpaid.delete(signer.toLowerCase());
  }

  /** What `signer` owes for jobs this node ran and no voucher paid yet. */
  unpaid(signer: Address): bigint {
    const key = signer.toLowerCase();
    const cached = this.#unpaid.get(key);
    if (cached !== undefined) return cached;
    let total = 0n;
    for (const row of this.#statements.unpaidOf!.all(key) as Row[]) total += amountOf(row.amount);
    if (this.#unpaid.size >= UNPAID_CACHE_MAX) this.#unpaid.clear();
    this.#unpaid.set(key, total);
    return total;
  }

  /** Keeps the earnings within PAYEE_EARNINGS_MAX (see the constants for the order). */
  trimEarnings(): void {
    this.#sinceTrim = 0;
    const excess = () => (this.#statements.countEarnings!.get() as { n: number }).n - PAYEE_EARNINGS_MAX;
    if (excess() <= 0) return;
    this.#statements.trimPaidEarnings!.run(excess());
    if (excess() > 0) {
      this.#statements.trimOldEarnings!.run(this.#now() - EARNING_WRITE_OFF_MS, excess());
      this.#unpaid.clear();
    }
    if (excess() > 0) {
      this.#statements.trimOldestEarnings!.run(excess());
      this.#unpaid.clear();
    }
  }

  /** Forgets cached totals (after a rolled-back write the cache may be ahead of the table). */
  forgetCache(): void {
    this.#unpaid.clear();
  }
}

function trim(count: StatementSync, remove: StatementSync, max: number): void {
  const { n } = count.get() as { n: number };
  if (n > max) remove.run(n - max);
}

function channelRow(row: Row): PayeeChannelRow {
  return {
    channelId: row.channel_id as Hex,
    key: keyOf(row),
    deposit: amountOf(row.deposit),
    paid: amountOf(row.paid),
    closesAt: amountOf(row.closes_at),
    updatedAt: row.updated_at as number,
    ...(row.zk_ax === null || row.zk_ax === undefined
      ? {}
      : { zk: { ax: amountOf(row.zk_ax), ay: amountOf(row.zk_ay) } }),
  };
}

function voucherRow(row: Row): PayeeVoucherRow {
  return {
    channelId: row.channel_id as Hex,
    key: keyOf(row),
    cumulativeAmount: amountOf(row.cumulative),
    signature: row.signature as Hex,
    paidOnChain: amountOf(row.paid_on_chain),
    receivedAt: row.received_at as number,
    ...(row.zk_leaf === null || row.zk_leaf === undefined
      ? {}
      : {
          zk: {
            leaf: row.zk_leaf as number,
            signature: { r8x: amountOf(row.zk_r8x), r8y: amountOf(row.zk_r8y), s: amountOf(row.zk_s) },
          },
        }),
  };
}
