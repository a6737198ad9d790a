// Pure view logic of the console: amounts, durations, time-to-empty, explorer links and the
// words for wallet and chain errors. No DOM and no network, so node:test checks it directly.
import { BaseError, formatUnits, parseUnits, UserRejectedRequestError } from "viem";
import { describeRevert, formatDuration } from "../../src/chain/revert-text.ts";

export { formatDuration };

/** ATP (18 decimals) for a table cell: up to 4 decimals, thousands grouped. */
export function formatAtp(wei: bigint | string | undefined): string {
  if (wei === undefined) return "—";
  const value = typeof wei === "bigint" ? wei : BigInt(wei);
  const [whole = "0", fraction = ""] = formatUnits(value, 18).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const shown = fraction.slice(0, 4).replace(/0+$/, "");
  if (value > 0n && whole === "0" && !shown) return "<0.0001 ATP";
  return `${grouped}${shown ? `.${shown}` : ""} ATP`;
}

/** An amount the user typed, in ATP, as wei; a clear error naming the field when it is not one. */
export function parseAtpInput(text: string, field: string): bigint {
  const trimmed = text.trim();
  if (!/^\d+(\.\d{1,18})?$/.test(trimmed))
    throw new Error(`${field}: enter an amount of ATP such as 100 or 2.5 (got "${text}")`);
  const wei = parseUnits(trimmed, 18);
  if (wei === 0n) throw new Error(`${field}: the amount must be above zero`);
  return wei;
}

/**
 * Seconds until a channel's remaining deposit is spent at `spendPerHour`; undefined when
 * nothing is being spent (it never empties).
 */
export function timeToEmptySeconds(remaining: bigint, spendPerHour: bigint): number | undefined {
  if (spendPerHour <= 0n) return undefined;
  if (remaining <= 0n) return 0;
  return Number((remaining * 3_600n) / spendPerHour);
}

const YEAR_SECONDS = 365 * 86_400;

export function formatTimeToEmpty(seconds: number | undefined): string {
  if (seconds === undefined) return "not spending";
  if (seconds === 0) return "empty";
  if (seconds > YEAR_SECONDS) return "over a year";
  return formatDuration(seconds);
}

/** "in 2h 5m" until `atSeconds`, or "now" once it has passed. */
export function countdown(atSeconds: bigint | number, nowSeconds: number): string {
  const left = Number(atSeconds) - nowSeconds;
  return left <= 0 ? "now" : `in ${formatDuration(left)}`;
}

/** Block explorers of the public chains Cell deploys to, by chain id. */
export const EXPLORERS: Readonly<Record<number, string>> = {
  1: "https://etherscan.io",
  10: "https://optimistic.etherscan.io",
  8453: "https://basescan.org",
  42161: "https://arbiscan.io",
  11155111: "https://sepolia.etherscan.io",
  11155420: "https://sepolia-optimism.etherscan.io",
  84532: "https://sepolia.basescan.org",
  421614: "https://sepolia.arbiscan.io",
};

/** The explorer page of an address or transaction; undefined on a local chain, which has none. */
export function explorerLink(chainId: number, kind: "address" | "tx", value: string): string | undefined {
  const base = EXPLORERS[chainId];
  return base ? `${base}/${kind}/${value}` : undefined;
}

/** `0x1234…abcd` */
export function shortHex(value: string): string {
  return value.length > 14 ? `${value.slice(0, 6)}…${value.slice(-4)}` : value;
}

interface ProviderError {
  code?: number;
  message?: string;
}

/** A wallet or chain failure in words a user understands. */
export function errorText(error: unknown, nowSeconds = Math.floor(Date.now() / 1000)): string {
  if (isRejection(error)) return "You rejected the request in your wallet.";
  const reverted = describeRevert(error, nowSeconds);
  if (reverted) return capitalize(reverted);
  const code = (error as ProviderError | undefined)?.code;
  if (code === 4100) return "The wallet has not authorized this site: connect it first.";
  if (code === 4902) return "The wallet does not know this chain; add it when the wallet asks.";
  if (code === -32002) return "The wallet already has a request waiting: open the wallet to answer it.";
  if (error instanceof BaseError) {
    if (/insufficient funds/i.test(error.message))
      return "Not enough ETH in the wallet to pay for gas on this chain.";
    return capitalize(error.shortMessage);
  }
  if (error instanceof Error) return capitalize(error.message);
  return capitalize(String((error as ProviderError | undefined)?.message ?? error));
}

function isRejection(error: unknown): boolean {
  if (error instanceof BaseError && error.walk((cause) => cause instanceof UserRejectedRequestError))
    return true;
  const provider = error as ProviderError | undefined;
  return provider?.code === 4001 || /user (rejected|denied)/i.test(provider?.message ?? "");
}

function capitalize(text: string): string {
  return text.length === 0 ? text : text[0]!.toUpperCase() + text.slice(1);
}

/** Not enough ATP for `needed`: the sentence to show before asking the wallet at all. */
export function shortfallText(balance: bigint, needed: bigint): string | undefined {
  if (balance >= needed) return undefined;
  return `Not enough ATP: the wallet has ${formatAtp(balance)} and this needs ${formatAtp(needed)}.`;
}

/** Columns of the explorer's records that hold ATP amounts in base units. */
const AMOUNT_COLUMN =
  /^(?:.*\.)?(bonded|unbonding|deposit|deposited|paid|withdrawn|total|amount|reward|spent|remaining|cumulativeAmount)$/;

/** Whether a record's `column` with this value is an ATP amount to show as ATP. */
export function isAtpAmount(column: string, value: unknown): value is string {
  return typeof value === "string" && /^\d{1,78}$/.test(value) && AMOUNT_COLUMN.test(column);
}

/** Appends a sample to a bounded series: the oldest drops once `limit` samples are kept. */
export function appendSample<T>(series: readonly T[], sample: T, limit: number): T[] {
  const next = [...series, sample];
  return next.length > limit ? next.slice(next.length - limit) : next;
}

/** What POST /settlement/run answers (settlement/epoch-settler.ts), as JSON. */
export interface SettlementOutcomeJson {
  epoch: number;
  state: string;
  txHash: string | null;
  receiptCount: number;
  voucherCount: number;
  paidCount: number;
  total: string;
  detail: string | null;
}

/** A settlement run in one sentence. */
export function settlementOutcomeText(outcome: SettlementOutcomeJson): string {
  if (outcome.state === "settled")
    return (
      `Epoch ${outcome.epoch} settled: ${outcome.paidCount} of ${outcome.voucherCount} vouchers paid, ` +
      `${formatAtp(outcome.total)}, ${outcome.receiptCount} receipts anchored (transaction ${outcome.txHash}).`
    );
  if (outcome.state === "nothing") return `Nothing to settle in epoch ${outcome.epoch}.`;
  const detail = outcome.detail ? `: ${outcome.detail}` : "";
  return `Epoch ${outcome.epoch} is ${outcome.state.replace(/_/g, " ")}${detail}.`;
}
