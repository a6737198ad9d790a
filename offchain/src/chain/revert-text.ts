// Contract reverts as sentences a user can act on: the custom error is decoded with the
// errors of every Cell contract (a revert bubbles up from the token through the registry or
// the channels), then its name and arguments are put into words. Imports only the ABIs, so
// the browser console shares the table with the CLI.
import {
  BaseError,
  ContractFunctionRevertedError,
  decodeErrorResult,
  formatUnits,
  hexToString,
  keccak256,
  toHex,
} from "viem";
import type { Abi, Hex } from "viem";
import { atpTokenAbi, donorRegistryAbi, juryCourtAbi, paymentChannelsAbi } from "./abis.ts";

type AbiError = Extract<Abi[number], { type: "error" }>;

/** Every custom error of ATPToken (with OpenZeppelin's), DonorRegistry, PaymentChannels and JuryCourt. */
export const CELL_ERRORS: readonly AbiError[] = uniqueErrors([
  ...atpTokenAbi,
  ...donorRegistryAbi,
  ...paymentChannelsAbi,
  ...juryCourtAbi,
]);

function uniqueErrors(abi: Abi): AbiError[] {
  const bySignature = new Map<string, AbiError>();
  for (const item of abi) {
    if (item.type !== "error") continue;
    bySignature.set(`${item.name}(${item.inputs.map((input) => input.type).join(",")})`, item);
  }
  return [...bySignature.values()];
}

/** A decoded custom error: its name and arguments. */
export interface DecodedRevert {
  name: string;
  args: readonly unknown[];
}

/**
 * The sentence for a failed contract call or transaction; undefined when `error` is not a
 * revert (the chain unreachable, a wrong password, …), so the caller can show its own message.
 */
export function describeRevert(
  error: unknown,
  nowSeconds = Math.floor(Date.now() / 1000),
): string | undefined {
  if (!(error instanceof BaseError)) return undefined;
  const reverted = error.walk((cause) => cause instanceof ContractFunctionRevertedError);
  if (!(reverted instanceof ContractFunctionRevertedError)) return undefined;
  const decoded = decodeRevert(reverted.raw);
  if (decoded) return revertSentence(decoded, nowSeconds);
  if (reverted.reason) return `the contract refused: ${reverted.reason}`;
  return `the contract refused with an unknown error${reverted.signature ? ` ${reverted.signature}` : ""}`;
}

/** The custom error in revert data, decoded with CELL_ERRORS; undefined when none matches. */
export function decodeRevert(data: Hex | undefined): DecodedRevert | undefined {
  if (data === undefined || data.length < 10) return undefined;
  try {
    const { errorName, args } = decodeErrorResult({ abi: CELL_ERRORS, data });
    return { name: errorName, args: args ?? [] };
  } catch {
    return undefined;
  }
}

type Describe = (args: readonly unknown[], now: number) => string;

/** ATP (18 decimals) as `12.5 ATP`. */
export function formatAtp(wei: bigint): string {
  return `${formatUnits(wei, 18)} ATP`;
}

/** A unix time as an ISO date with how far it is from `now` (`in 2h 5m`, `3m ago`). */
export function formatWhen(unixSeconds: bigint | number, now: number): string {
  const at = Number(unixSeconds);
  if (!Number.isFinite(at) || Math.abs(at) > MAX_DATE_SECONDS) return `unix time ${String(unixSeconds)}`;
  const date = new Date(at * 1000).toISOString().replace(".000Z", "Z");
  const delta = at - now;
  if (delta === 0) return `${date} (now)`;
  return delta > 0 ? `${date} (in ${formatDuration(delta)})` : `${date} (${formatDuration(-delta)} ago)`;
}

/** The last second a JavaScript Date can show. */
const MAX_DATE_SECONDS = 8.64e12;

/** Seconds as `6d 23h 1s`, zero units left out. */
export function formatDuration(seconds: number): string {
  const units: [string, number][] = [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ];
  const parts: string[] = [];
  let rest = Math.max(0, Math.floor(seconds));
  for (const [unit, size] of units) {
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count > 0) parts.push(`${count}${unit}`);
  }
  return parts.length === 0 ? "0s" : parts.join(" ");
}

const ROLE_NAMES: Record<string, string> = {
  [toHex(0, { size: 32 })]: "DEFAULT_ADMIN_ROLE",
  [keccak256(toHex("MINTER_ROLE"))]: "MINTER_ROLE",
};

const atp = (value: unknown) => formatAtp(value as bigint);
const text = (value: unknown) => String(value);
const short = (id: unknown) => `${String(id).slice(0, 10)}…`;

/** One sentence per error name; the few names several contracts share read their arity. */
export const REVERT_SENTENCES: Record<string, Describe> = {
  // ---- ATPToken and OpenZeppelin
  AccessControlBadConfirmation: () => "a role can only be renounced by the account holding it",
  AccessControlUnauthorizedAccount: ([account, role]) =>
    `${text(account)} does not hold ${ROLE_NAMES[text(role)] ?? text(role)}, which this needs`,
  ECDSAInvalidSignature: () => "the signature is not a valid secp256k1 signature",
  ECDSAInvalidSignatureLength: ([length]) => `the signature is ${text(length)} bytes long; expected 64 or 65`,
  ECDSAInvalidSignatureS: () => "the signature is not in canonical form (its s value is too high)",
  ERC20ExceededCap: ([supply, cap]) =>
    `minting would raise the ATP supply to ${atp(supply)}, above its cap of ${atp(cap)}`,
  ERC20InsufficientAllowance: ([spender, allowance, needed]) =>
    `not enough ATP approved: ${text(spender)} may spend ${atp(allowance)} and needs ${atp(needed)}`,
  ERC20InsufficientBalance: ([sender, balance, needed]) =>
    `not enough ATP: ${text(sender)} has ${atp(balance)}, needs ${atp(needed)}`,
  ERC20InvalidApprover: ([approver]) => `${text(approver)} cannot approve ATP (the zero address)`,
  ERC20InvalidCap: ([cap]) => `the ATP cap ${atp(cap)} is invalid`,
  ERC20InvalidReceiver: ([receiver]) => `ATP cannot be sent to ${text(receiver)} (the zero address)`,
  ERC20InvalidSender: ([sender]) => `ATP cannot be sent from ${text(sender)} (the zero address)`,
  ERC20InvalidSpender: ([spender]) => `${text(spender)} cannot be approved to spend ATP (the zero address)`,
  ERC2612ExpiredSignature: ([deadline], now) =>
    `the ATP permit expired at ${formatWhen(deadline as bigint, now)}`,
  ERC2612InvalidSigner: ([signer, owner]) =>
    `the ATP permit was signed by ${text(signer)}, not by the owner ${text(owner)}`,
  InvalidAccountNonce: ([account, nonce]) =>
    `the permit's nonce is stale: ${text(account)}'s next permit nonce is ${text(nonce)}`,
  InvalidShortString: () => "a name string is too long for the contract",
  StringTooLong: ([value]) => `the string '${text(value).slice(0, 40)}' is too long`,
  OwnableInvalidOwner: ([owner]) => `${text(owner)} cannot be the owner`,
  OwnableUnauthorizedAccount: ([account]) =>
    `only the contract's owner may do this, and ${text(account)} is not`,
  ReentrancyGuardReentrantCall: () => "the contract was re-entered during a call, which it forbids",
  SafeCastOverflowedUintDowncast: ([bits, value]) =>
    `the value ${text(value)} does not fit in ${text(bits)} bits (an amount is too large)`,
  SafeERC20FailedOperation: ([token]) => `the token ${text(token)} refused a transfer`,

  // ---- DonorRegistry
  AccusedAgrees: () => "the accused receipt agrees with the quorum: nothing was outvoted",
  AlreadyRegistered: ([donor]) =>
    `${text(donor)} is already registered as a donor; new keys need a rotation, not a second registration`,
  AlreadySlashed: ([jobId, operator]) =>
    `operator ${text(operator)} was already slashed for job ${short(jobId)}`,
  BelowMinimumStake: ([bonded, minimum]) =>
    `the bonded stake is below the minimum: ${atp(bonded)} bonded, at least ${atp(minimum)} needed (cell donor stake)`,
  CourtAlreadySet: () => "the registry's court is already set",
  DifferentExecutors: () => "the two receipts name different executors",
  DifferentJobs: () => "the two receipts are for different jobs",
  DuplicateDonor: ([donor]) => `donor ${text(donor)} appears twice`,
  FrozenByCase: ([donor]) => `${text(donor)}'s stake is frozen while a court case against it is open`,
  InsufficientBonded: ([requested, bonded]) =>
    `cannot unbond ${atp(requested)}: only ${atp(bonded)} is bonded`,
  InvalidOperator: () => "the operator address is the zero address",
  InvalidParams: (args) =>
    args.length > 0
      ? `the parameter ${fieldName(args[0])} is out of its bounds`
      : "the parameters are out of bounds",
  InvalidPeerKey: () => "the peer key is zero",
  InvalidProofOfPossession: ([operator]) =>
    `the operator key ${text(operator)} did not sign this registration (wrong key, chain, contract or nonce)`,
  InvalidSignature: ([expected]) => `a signature is not by ${text(expected)}, who must sign it`,
  JobSpecMismatch: ([jobId]) => `the job spec does not hash to the receipts' job ${short(jobId)}`,
  NoCourt: () => "the registry has no court set",
  NoPendingParams: () => "no parameter change is pending",
  NotBondedBeforeJob: ([operator, since, started]) =>
    `operator ${text(operator)} was bonded only since ${text(since)}, after the job started at ${text(started)}`,
  NotEquivocation: () => "the two receipts agree: that is not an equivocation",
  NotRegistered: ([donor]) => `${text(donor)} is not registered as a donor (cell donor register)`,
  NothingToSlash: ([operator]) => `operator ${text(operator)} has no stake left to slash`,
  NothingToWithdraw: (args) =>
    args.length > 0
      ? `nothing to withdraw: the channels have paid ${text(args[0])} nothing it has not received`
      : "nothing to withdraw: no stake is unbonding (cell donor unbond first)",
  OnlyCourt: () => "only the court may do this",
  OperatorJailed: ([operator]) => `operator ${text(operator)} is jailed`,
  OperatorNotActive: ([operator]) =>
    `operator ${text(operator)} is not active (unregistered, unbonded or jailed)`,
  OperatorRetired: ([operator, until], now) =>
    `operator ${text(operator)} was rotated away; it was accountable until ${formatWhen(until as bigint, now)}`,
  OperatorTaken: ([operator]) =>
    `the operator key ${text(operator)} is already registered; each key registers once`,
  QuorumTooLarge: ([count, maximum]) =>
    maximum === undefined
      ? `a quorum of ${text(count)} is too large`
      : `a quorum of ${text(count)} is above the most allowed, ${text(maximum)}`,
  QuorumTooSmall: ([count, required]) =>
    `${text(count)} agreeing receipts are fewer than the ${text(required)} required`,
  ResultsDisagree: ([index]) => `quorum receipt #${text(index)} disagrees with the others`,
  SignatureCountMismatch: ([receipts, signatures]) =>
    `${text(receipts)} receipts came with ${text(signatures)} signatures`,
  StillJailed: ([operator, at], now) =>
    `operator ${text(operator)} is jailed; it may be rotated away from at ${formatWhen(at as bigint, now)}`,
  StillUnbonding: ([at], now) =>
    `the stake is still unbonding: it can be withdrawn at ${formatWhen(at as bigint, now)}`,
  TimelockNotExpired: ([at], now) => `the parameter change applies only at ${formatWhen(at as bigint, now)}`,
  UnknownOperator: ([operator]) => `${text(operator)} is not a registered operator`,
  ZeroAmount: () => "the amount must be above zero",

  // ---- PaymentChannels
  AddressIndexOutOfRange: ([voucher]) =>
    `settlement voucher #${text(voucher)} names an address outside the batch`,
  ChallengeWindowOpen: ([closesAt], now) =>
    `the challenge window is still open: the channel can be finalized at ${formatWhen(closesAt as bigint, now)}`,
  ChallengeWindowOutOfBounds: ([window, min, max]) =>
    `a challenge window of ${text(window)} s is outside ${text(min)}–${text(max)} s`,
  ChannelClosing: ([id]) =>
    `channel ${text(id)} is closing: it takes no top-up and its close has already started`,
  ChannelExists: ([id]) => `channel ${text(id)} already exists (its nonce was used)`,
  ChannelNotOpen: ([id]) => `channel ${text(id)} is not open (never opened, or already closed)`,
  CloseExpired: ([deadline], now) => `the agreed close expired at ${formatWhen(deadline as bigint, now)}`,
  EmptySettlement: () => "the settlement batch has no vouchers",
  EpochAlreadyAnchored: ([submitter, epoch]) =>
    `${text(submitter)} already anchored receipts for epoch ${text(epoch)}`,
  MalformedBatch: () => "the settlement batch is malformed",
  MixedPayees: ([index, payee, expected]) =>
    `channel #${text(index)} pays ${text(payee)}, not ${text(expected)}: one payee per withdrawal`,
  NoChannels: () => "no channels were given",
  NotClosing: ([id]) => `channel ${text(id)} is not closing: start its close first (cell channel close)`,
  NothingToPay: ([id]) => `channel ${text(id)} owes nothing more: the voucher adds nothing to what it paid`,
  TokenHasNoCode: ([token]) => `the token ${text(token)} is not a contract`,
  UnsortedAddresses: ([index]) => `the settlement batch's addresses are not sorted at #${text(index)}`,
  ZeroAddress: () => "an address is the zero address",

  // ---- JuryCourt
  AlreadyInitialized: () => "the court is already initialized",
  AlreadyVoted: ([caseId, donor]) => `${text(donor)} already voted in case ${text(caseId)}`,
  DisputeWindowClosed: ([deadline], now) =>
    `the dispute window closed at ${formatWhen(deadline as bigint, now)}`,
  DisputeWindowOpen: ([deadline], now) =>
    `the dispute window is open until ${formatWhen(deadline as bigint, now)}`,
  DrawTooEarly: ([block]) => `jurors can be drawn from block ${text(block)} on`,
  EmptyTree: () => "no donor is eligible to be drawn as a juror",
  InvalidArity: ([k]) => `a tree arity of ${text(k)} is invalid`,
  NotAJuror: ([caseId, donor]) => `${text(donor)} is not a juror of case ${text(caseId)}`,
  OnlyRegistry: () => "only the donor registry may do this",
  ParamsTimelocked: ([at], now) => `the parameter change applies only at ${formatWhen(at as bigint, now)}`,
  VoteWindowClosed: ([deadline], now) => `the vote closed at ${formatWhen(deadline as bigint, now)}`,
  VoteWindowOpen: ([deadline], now) => `the vote is open until ${formatWhen(deadline as bigint, now)}`,
  WrongJob: ([jobId]) => `the receipt is for another job than ${short(jobId)}`,
  WrongStage: ([caseId, stage]) =>
    `case ${text(caseId)} is in stage ${text(stage)}, where this is not allowed`,
  ZeroId: () => "an id is zero",
};

export function revertSentence(decoded: DecodedRevert, nowSeconds: number): string {
  const describe = REVERT_SENTENCES[decoded.name];
  if (describe) return describe(decoded.args, nowSeconds);
  if (decoded.name === "Error") return `the contract refused: ${text(decoded.args[0])}`;
  return `the contract refused with ${decoded.name}(${decoded.args.map(text).join(", ")})`;
}

/** A bytes32 parameter name (`minStake`), as the registry's InvalidParams names it. */
function fieldName(field: unknown): string {
  const hex = text(field).replace(/(00)+$/, "");
  if (!/^0x([0-9a-fA-F]{2})+$/.test(hex)) return text(field);
  const name = hexToString(hex as Hex);
  return /^[\w]+$/.test(name) ? name : text(field);
}
