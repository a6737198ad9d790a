// The indexer's pure core: decoded contract logs of a block range, with the state they start
// from, become rows for the store and the state after them. No I/O: the caller reads the
// logs, the settlement calldata and the starting state, and writes the rows.
import { decodeFunctionData, getAddress } from "viem";
import type { Address, Hex } from "viem";
import { paymentChannelsAbi } from "../chain/abis.ts";
import { decodeSettlementBatch, paidVoucherFlags } from "../chain/settlement.ts";
import type { BatchVoucher } from "../chain/settlement.ts";
import { emptyZkRows, zkLeavesOf, zkLog } from "./zk.ts";
import type { ZkChannelBalance, ZkRows } from "./zk.ts";

/** Which contract emitted a log. */
export type LogSource = "registry" | "channels" | "court" | "zk";

/** A decoded contract log, as viem returns it, with the contract it came from. */
export interface ChainLog {
  source: LogSource;
  eventName: string;
  args: Record<string, unknown>;
  blockNumber: bigint;
  blockHash: Hex;
  logIndex: number;
  transactionHash: Hex;
}

/** Where a row came from on the chain; rows are deleted by block on a reorganisation. */
export interface LogPlace {
  block: number;
  logIndex: number;
  tx: Hex;
}

export interface StakeBalance {
  bonded: bigint;
  unbonding: bigint;
}

export type ChannelStatus = "open" | "closing" | "closed";

export interface ChannelBalance {
  deposit: bigint;
  paid: bigint;
  closesAt?: bigint;
  status: ChannelStatus;
}

/** What rows depend on from earlier blocks: the stake of each donor and the balance of each channel seen. */
export interface IndexState {
  stakes: ReadonlyMap<Address, StakeBalance>;
  channels: ReadonlyMap<Hex, ChannelBalance>;
  /** ZkChannels leaves; absent when the logs hold none. */
  zkChannels?: ReadonlyMap<number, ZkChannelBalance>;
}

export interface DonorEventRow extends LogPlace, StakeBalance {
  donor: Address;
  kind: string;
  operator?: Address;
  amount?: bigint;
  data?: Record<string, unknown>;
}

export const SLASH_KINDS = ["equivocation", "outvoted", "court"] as const;
export type SlashKind = (typeof SLASH_KINDS)[number];

export interface SlashEventRow extends LogPlace {
  donor: Address;
  kind: SlashKind;
  operator?: Address;
  jobId?: Hex;
  reporter?: Address;
  amount: bigint;
  reward?: bigint;
}

export interface ChannelRow extends LogPlace {
  channelId: Hex;
  buyer: Address;
  payee: Address;
  signer: Address;
  nonce: bigint;
}

export interface ChannelEventRow extends LogPlace {
  /** 0 for the channel's own event; voucher index + 1 for a settlement's payment. */
  position: number;
  channelId: Hex;
  kind: string;
  amount?: bigint;
  deposit: bigint;
  paid: bigint;
  closesAt?: bigint;
  status: ChannelStatus;
}

export interface SettlementRow extends LogPlace {
  submitter: Address;
  vouchers: number;
  total: bigint;
  paidBitmap: bigint[];
  /** False when the batch could not be read from the transaction (sent through another contract). */
  decoded: boolean;
}

export interface SettlementVoucherRow {
  tx: Hex;
  block: number;
  position: number;
  channelId: Hex;
  buyer: Address;
  signer: Address;
  payee: Address;
  nonce: bigint;
  cumulativeAmount: bigint;
  paid: boolean;
}

export interface PayeeTotalRow extends LogPlace {
  payee: Address;
  kind: "settled" | "withdrawn";
  amount: bigint;
}

export interface AnchorRow extends LogPlace {
  submitter: Address;
  epoch: bigint;
  receiptRoot: Hex;
  receiptCount: bigint;
}

export interface CourtEventRow extends LogPlace {
  caseId: bigint;
  kind: string;
  account?: Address;
  data: Record<string, unknown>;
}

export interface IndexRows extends ZkRows {
  donorEvents: DonorEventRow[];
  slashes: SlashEventRow[];
  channels: ChannelRow[];
  channelEvents: ChannelEventRow[];
  settlements: SettlementRow[];
  settlementVouchers: SettlementVoucherRow[];
  payeeTotals: PayeeTotalRow[];
  anchors: AnchorRow[];
  courtEvents: CourtEventRow[];
}

export function emptyRows(): IndexRows {
  return {
    donorEvents: [],
    slashes: [],
    channels: [],
    channelEvents: [],
    settlements: [],
    settlementVouchers: [],
    payeeTotals: [],
    anchors: [],
    courtEvents: [],
    ...emptyZkRows(),
  };
}

/** The donors, channels and zk leaves whose earlier state the logs need (for the caller to read first). */
export function stateKeysOf(
  logs: readonly ChainLog[],
  batches: SettlementBatches,
): { donors: Address[]; channels: Hex[]; zkLeaves: number[] } {
  const donors = new Set<Address>();
  const channels = new Set<Hex>();
  for (const log of logs) {
    const donor = log.args.donor;
    if (log.source === "registry" && typeof donor === "string") donors.add(getAddress(donor));
    const channelId = log.args.channelId;
    if (log.source === "channels" && typeof channelId === "string") channels.add(channelId as Hex);
    if (log.eventName === "BatchSettled")
      for (const voucher of batches.get(log.transactionHash) ?? []) channels.add(voucher.channelId);
  }
  return { donors: [...donors], channels: [...channels], zkLeaves: zkLeavesOf(logs) };
}

/** Settlement vouchers by transaction hash, read from each settle() call's calldata. */
export type SettlementBatches = ReadonlyMap<Hex, readonly BatchVoucher[] | undefined>;

/** Applies logs (in chain order) to `state`: the rows they make and the state after them. */
export function indexLogs(
  state: IndexState,
  logs: readonly ChainLog[],
  batches: SettlementBatches,
): { state: IndexState; rows: IndexRows } {
  const next = {
    stakes: new Map(state.stakes),
    channels: new Map(state.channels),
    zkChannels: new Map(state.zkChannels),
  };
  const rows = emptyRows();
  for (const log of logs) {
    if (log.source === "registry") registryLog(next.stakes, log, rows);
    else if (log.source === "channels") channelLog(next.channels, log, batches, rows);
    else if (log.source === "zk") zkLog(next.zkChannels, log, placeOf(log), rows);
    else courtLog(log, rows);
  }
  return { state: next, rows };
}

function placeOf(log: ChainLog): LogPlace {
  return { block: Number(log.blockNumber), logIndex: log.logIndex, tx: log.transactionHash };
}

const NO_STAKE: StakeBalance = { bonded: 0n, unbonding: 0n };

function registryLog(stakes: Map<Address, StakeBalance>, log: ChainLog, rows: IndexRows): void {
  const args = log.args;
  if (typeof args.donor !== "string") {
    if (log.eventName === "OutvoteAccused") courtLog(log, rows);
    return;
  }
  const donor = getAddress(args.donor);
  const before = stakes.get(donor) ?? NO_STAKE;
  const change = registryChange(log, before);
  if (!change) return;
  stakes.set(donor, change.after);
  rows.donorEvents.push({ ...placeOf(log), donor, ...change.after, ...change.row });
  if (change.slash) rows.slashes.push({ ...placeOf(log), donor, ...change.slash });
}

interface RegistryChange {
  after: StakeBalance;
  row: Omit<DonorEventRow, keyof LogPlace | keyof StakeBalance | "donor">;
  slash?: Omit<SlashEventRow, keyof LogPlace | "donor">;
}

function registryChange(log: ChainLog, before: StakeBalance): RegistryChange | undefined {
  const args = log.args;
  const amount = args.amount as bigint;
  switch (log.eventName) {
    case "Staked":
      return { after: { ...before, bonded: args.bonded as bigint }, row: { kind: "staked", amount } };
    case "Registered":
      return {
        after: before,
        row: {
          kind: "registered",
          operator: getAddress(args.operator as string),
          data: { peerKey: args.peerKey, metadataURI: args.metadataURI },
        },
      };
    case "OperatorRotated":
      return {
        after: before,
        row: {
          kind: "rotated",
          operator: getAddress(args.newOperator as string),
          data: {
            oldOperator: args.oldOperator,
            peerKey: args.peerKey,
            oldAccountableUntil: args.oldAccountableUntil,
          },
        },
      };
    case "Jailed":
      return {
        after: before,
        row: {
          kind: "jailed",
          operator: getAddress(args.operator as string),
          data: { rotatableAt: args.rotatableAt },
        },
      };
    case "MetadataUpdated":
      return { after: before, row: { kind: "metadata", data: { metadataURI: args.metadataURI } } };
    case "UnbondRequested":
      return {
        after: { bonded: floor0(before.bonded - amount), unbonding: before.unbonding + amount },
        row: { kind: "unbond", amount, data: { unbondableAt: args.unbondableAt } },
      };
    case "Withdrawn":
      return {
        after: { ...before, unbonding: floor0(before.unbonding - amount) },
        row: { kind: "withdrawn", amount },
      };
    case "Slashed":
    case "CourtSlashed":
      return slashChange(log, before, amount);
    default:
      return undefined;
  }
}

/** A slash takes from bonded stake first, then from unbonding (DonorRegistry._slash). */
function slashChange(log: ChainLog, before: StakeBalance, amount: bigint): RegistryChange {
  const fromBonded = amount > before.bonded ? before.bonded : amount;
  const after = {
    bonded: before.bonded - fromBonded,
    unbonding: floor0(before.unbonding - (amount - fromBonded)),
  };
  if (log.eventName === "CourtSlashed")
    return {
      after,
      row: { kind: "slashed", amount, data: { by: "court" } },
      slash: { kind: "court", amount },
    };
  const args = log.args;
  const kind: SlashKind = Number(args.reason) === 0 ? "equivocation" : "outvoted";
  const operator = getAddress(args.operator as string);
  const reporter = getAddress(args.reporter as string);
  return {
    after,
    row: { kind: "slashed", operator, amount, data: { reason: kind, jobId: args.jobId, reporter } },
    slash: { kind, operator, jobId: args.jobId as Hex, reporter, amount, reward: args.reward as bigint },
  };
}

const NO_CHANNEL: ChannelBalance = { deposit: 0n, paid: 0n, status: "open" };
const SKIP_REASONS = ["nothing_new", "bad_signature"];

function channelLog(
  channels: Map<Hex, ChannelBalance>,
  log: ChainLog,
  batches: SettlementBatches,
  rows: IndexRows,
): void {
  const args = log.args;
  const place = placeOf(log);
  switch (log.eventName) {
    case "PayeeSettled":
    case "PaidWithdrawn":
      rows.payeeTotals.push({
        ...place,
        payee: getAddress(args.payee as string),
        kind: log.eventName === "PayeeSettled" ? "settled" : "withdrawn",
        amount: args.amount as bigint,
      });
      return;
    case "ReceiptsAnchored":
      rows.anchors.push({
        ...place,
        submitter: getAddress(args.submitter as string),
        epoch: args.epoch as bigint,
        receiptRoot: args.receiptRoot as Hex,
        receiptCount: args.receiptCount as bigint,
      });
      return;
    case "BatchSettled":
      settlementLog(channels, log, batches.get(log.transactionHash), rows);
      return;
  }
  if (typeof args.channelId !== "string") return;
  const channelId = args.channelId as Hex;
  if (log.eventName === "ChannelOpened")
    rows.channels.push({
      ...place,
      channelId,
      buyer: getAddress(args.buyer as string),
      payee: getAddress(args.payee as string),
      signer: getAddress(args.signer as string),
      nonce: args.nonce as bigint,
    });
  const change = channelChange(log, channels.get(channelId) ?? NO_CHANNEL);
  if (!change) return;
  channels.set(channelId, change.after);
  rows.channelEvents.push({
    ...place,
    position: 0,
    channelId,
    kind: change.kind,
    ...change.after,
    ...amountOf(change.amount),
  });
}

function channelChange(
  log: ChainLog,
  before: ChannelBalance,
): { after: ChannelBalance; kind: string; amount?: bigint } | undefined {
  const args = log.args;
  switch (log.eventName) {
    case "ChannelOpened":
      return {
        kind: "opened",
        amount: args.deposit as bigint,
        after: { deposit: args.deposit as bigint, paid: 0n, status: "open" },
      };
    case "ChannelToppedUp":
      return {
        kind: "topped_up",
        amount: args.amount as bigint,
        after: { ...before, deposit: args.deposit as bigint },
      };
    case "ChannelPaid":
      return { kind: "paid", amount: args.amount as bigint, after: { ...before, paid: args.paid as bigint } };
    case "CloseStarted":
      return {
        kind: "close_started",
        after: { ...before, status: "closing", closesAt: args.closesAt as bigint },
      };
    case "ChannelClosed":
      return {
        kind: "closed",
        amount: args.refund as bigint,
        after: { ...before, paid: args.paid as bigint, status: "closed" },
      };
    case "VoucherSkipped":
      return { kind: `skipped_${SKIP_REASONS[Number(args.reason)] ?? "unknown"}`, after: before };
    default:
      return undefined;
  }
}

/** The settlement, its decoded vouchers and what each paid voucher did to its channel. */
function settlementLog(
  channels: Map<Hex, ChannelBalance>,
  log: ChainLog,
  batch: readonly BatchVoucher[] | undefined,
  rows: IndexRows,
): void {
  const args = log.args;
  const place = placeOf(log);
  const voucherCount = Number(args.vouchers);
  const paidBitmap = [...(args.paidBitmap as readonly bigint[])];
  const decoded = batch !== undefined && batch.length === voucherCount;
  rows.settlements.push({
    ...place,
    submitter: getAddress(args.submitter as string),
    vouchers: voucherCount,
    total: args.total as bigint,
    paidBitmap,
    decoded,
  });
  if (!decoded) return;
  const flags = paidVoucherFlags(paidBitmap, voucherCount);
  batch.forEach((voucher, i) => {
    const paid = flags[i] ?? false;
    rows.settlementVouchers.push({
      tx: place.tx,
      block: place.block,
      position: i,
      channelId: voucher.channelId,
      ...voucher.key,
      cumulativeAmount: voucher.cumulativeAmount,
      paid,
    });
    if (!paid) return;
    const before = channels.get(voucher.channelId) ?? NO_CHANNEL;
    const capped =
      before.deposit > 0n && voucher.cumulativeAmount > before.deposit
        ? before.deposit
        : voucher.cumulativeAmount;
    const after = { ...before, paid: capped > before.paid ? capped : before.paid };
    channels.set(voucher.channelId, after);
    rows.channelEvents.push({
      ...place,
      position: i + 1,
      channelId: voucher.channelId,
      kind: "settled",
      amount: after.paid - before.paid,
      ...after,
    });
  });
}

/** The vouchers of a settle() call's calldata; undefined when it is not one. */
export function settlementBatchOf(input: Hex | undefined): BatchVoucher[] | undefined {
  if (input === undefined) return undefined;
  try {
    const call = decodeFunctionData({ abi: paymentChannelsAbi, data: input });
    if (call.functionName !== "settle") return undefined;
    return decodeSettlementBatch(call.args[0]);
  } catch {
    return undefined;
  }
}

const COURT_ACCOUNT_FIELDS = ["accusedDonor", "disputer", "juror", "operator"];

function courtLog(log: ChainLog, rows: IndexRows): void {
  const args = log.args;
  if (args.caseId === undefined) return;
  const field = COURT_ACCOUNT_FIELDS.find((name) => typeof args[name] === "string");
  rows.courtEvents.push({
    ...placeOf(log),
    caseId: args.caseId as bigint,
    kind: log.eventName,
    ...(field ? { account: getAddress(args[field] as string) } : {}),
    data: { ...args },
  });
}

function amountOf(amount: bigint | undefined): { amount?: bigint } {
  return amount === undefined ? {} : { amount };
}

function floor0(value: bigint): bigint {
  return value < 0n ? 0n : value;
}
