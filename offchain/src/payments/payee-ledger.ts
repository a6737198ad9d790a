// The payee's half of `/cell/voucher/1`: checks each voucher against the chain's view of its
// channel, the voucher held before and what the named jobs earned, and stores the accepted ones
// durably (one fsynced group commit per batch) before it answers. A voucher on a ZkChannels
// channel (with `zk`) carries two signatures: the EIP-712 ZkVoucher by the channel's signer and
// the EdDSA-Poseidon one by the leaf's settlement key (docs/zk.md, "Voucher").
import { createKeccak } from "hash-wasm";
import { isAddressEqual } from "viem";
import type { Address, Hex, TypedDataDomain } from "viem";
import type { ChannelKey } from "../chain/index.ts";
import { cellDomain, verifyDigest, voucherDigestIn } from "../protocol/index.ts";
import type { PayeeVoucherRow, Store } from "../store/index.ts";
import {
  domainTagOf,
  verifyZkSignature,
  zkChannelIdOf,
  zkChannelsDomain,
  zkVoucherDigest,
  zkVoucherMessage,
} from "../zk/index.ts";
import type { ZkPublicKey, ZkSignature } from "../zk/index.ts";
import type { HeldVoucher, VoucherVault } from "./types.ts";
import type { VoucherBatch, VoucherRefusal, VoucherResult, VoucherResults, VoucherWire } from "./wire.ts";

/** A channel as the payee knows it from the chain. */
export interface PayeeChannelView {
  deposit: bigint;
  paid: bigint;
  /** 0 while open, a unix time while closing, 2^64-1 once closed. */
  closesAt: bigint;
  /** A ZkChannels channel's buyer, signer and payee as the chain has them (its id does not bind them). */
  key?: ChannelKey;
  /** A ZkChannels channel's settlement key, which signs its zk vouchers. */
  zk?: ZkPublicKey;
}

/** What a job this node ran earned, as recorded when it signed the receipt. */
export interface JobEarning {
  signer: Address;
  amount: bigint;
  /** Already paid by an earlier voucher. */
  paid: boolean;
}

/** A voucher as decoded from the wire. */
export interface VoucherClaim {
  key: ChannelKey;
  cumulativeAmount: bigint;
  jobs: readonly Hex[];
}

/** Everything `checkVoucher` needs besides the voucher held before. */
export interface VoucherFacts {
  /** This node's payee address (its staking wallet). */
  payee: Address;
  signatureValid: boolean;
  /** The channel on-chain; undefined when the chain has no such channel. */
  channel: PayeeChannelView | undefined;
  /** The earnings of the voucher's jobs, by lower-case job id; undefined for a job this node did not run. */
  earnings: ReadonlyMap<string, JobEarning | undefined>;
}

export type VoucherDecision =
  { type: "accept"; increase: bigint } | { type: "refuse"; reason: VoucherRefusal; detail: string };

const refuse = (reason: VoucherRefusal, detail: string): VoucherDecision => ({
  type: "refuse",
  reason,
  detail,
});

/**
 * Decides one voucher. `held` is the cumulative amount of the voucher this node holds for the
 * channel (undefined: none). Pure: the facts are gathered by the caller.
 */
export function checkVoucher(
  held: bigint | undefined,
  voucher: VoucherClaim,
  facts: VoucherFacts,
): VoucherDecision {
  const { key, cumulativeAmount } = voucher;
  if (!isAddressEqual(key.payee, facts.payee))
    return refuse("wrong_payee", `the channel pays ${key.payee}, this node's payee is ${facts.payee}`);
  if (!facts.signatureValid)
    return refuse(
      "bad_signature",
      `not signed by the channel's signer ${key.signer} in a form the contract takes`,
    );
  const channel = facts.channel;
  if (!channel || channel.deposit === 0n)
    return refuse("unknown_channel", "no such channel on-chain, or not seen by this node yet");
  if (channel.closesAt !== 0n) return refuse("channel_closed", "the channel is closing or closed");
  if (held !== undefined && cumulativeAmount === held)
    return refuse("duplicate", `this node already holds a voucher for ${held}`);
  const base = held !== undefined && held > channel.paid ? held : channel.paid;
  if (cumulativeAmount <= base)
    return refuse("not_increasing", `${cumulativeAmount} is not above the ${base} already held or paid`);
  if (cumulativeAmount > channel.deposit)
    return refuse("over_deposit", `${cumulativeAmount} is above the deposit of ${channel.deposit}`);
  const owed = owedFor(voucher, facts);
  if (typeof owed === "string") return refuse("unknown_job", owed);
  const increase = cumulativeAmount - base;
  if (increase > owed)
    return refuse("over_owed", `the increase of ${increase} is above the ${owed} its jobs earned`);
  return { type: "accept", increase };
}

/** What the voucher's jobs earned in all, or why one of them cannot be paid. */
function owedFor(voucher: VoucherClaim, facts: VoucherFacts): bigint | string {
  const seen = new Set<string>();
  let owed = 0n;
  for (const jobId of voucher.jobs) {
    const id = jobId.toLowerCase();
    if (seen.has(id)) return `job ${jobId} is named twice`;
    seen.add(id);
    const earning = facts.earnings.get(id);
    if (!earning) return `job ${jobId} is not one this node ran`;
    if (!isAddressEqual(earning.signer, voucher.key.signer))
      return `job ${jobId} was not bought by the channel's signer ${voucher.key.signer}`;
    if (earning.paid) return `job ${jobId} was already paid`;
    owed += earning.amount;
  }
  return owed;
}

/** Where the ledger learns what the chain says of a channel (the channel book). */
export interface PayeeChannels {
  /**
   * The channel's state, read from the chain when this node has not seen it yet (cached).
   * `zkLeaf` names a ZkChannels leaf (then `channelId` is its zkChannelIdOf).
   */
  channel(channelId: Hex, key: ChannelKey, zkLeaf?: number): Promise<PayeeChannelView | undefined>;
}

export interface PayeeLedgerOptions {
  store: Store;
  channels: PayeeChannels;
  /** This node's payee address: the registry's donorOf(operator). */
  payee: Address;
  chainId: number;
  paymentChannels: Address;
  /** The deployment's ZkChannels; without it a zk voucher is refused as unknown_channel. */
  zkChannels?: Address;
  now?: () => number;
}

interface Decoded {
  wire: VoucherWire;
  claim: VoucherClaim;
  channelId: Hex;
  signature: Hex;
  zk?: { leaf: number; signature: ZkSignature };
}

/** ZkChannels' EIP-712 domain and proof domain tag, computed once. */
interface ZkDomain {
  address: Address;
  domain: TypedDataDomain;
  domainTag: bigint;
}

/**
 * The payee's vouchers: `receive` answers a batch from a buyer, and the VoucherVault face lets
 * the settler and the watchtower read and update them. Each batch is decided synchronously,
 * on what is stored plus what batches still waiting for their commit accepted, so batches of
 * several buyers share one fsync. The requests waiting are bounded by the voucher protocol's
 * per-peer rate and stream limits.
 */
export class PayeeLedger implements VoucherVault {
  readonly #options: PayeeLedgerOptions;
  readonly #now: () => number;
  /** One domain object, so its separator is computed once (protocol/signing.ts caches it by object). */
  readonly #domain: TypedDataDomain;
  /**
   * Accepted and not yet committed: the channels' new amounts and the jobs they pay. Bounded by
   * the batches waiting for a commit; an entry leaves when its commit ends.
   */
  readonly #pendingHeld = new Map<Hex, bigint>();
  readonly #pendingJobs = new Set<string>();
  readonly #zk: ZkDomain | undefined;

  constructor(options: PayeeLedgerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#domain = cellDomain(options.chainId, options.paymentChannels);
    const zkChannels = options.zkChannels;
    this.#zk = zkChannels && {
      address: zkChannels,
      domain: zkChannelsDomain(options.chainId, zkChannels),
      domainTag: domainTagOf(options.chainId, zkChannels),
    };
  }

  get payee(): Address {
    return this.#options.payee;
  }

  /**
   * Checks a batch of vouchers (signatures first, all of them, then each in order) and stores
   * the accepted ones and the jobs they pay in one fsynced commit; only then answers.
   */
  async receive(batch: VoucherBatch, _fromPeer?: string): Promise<VoucherResults> {
    const decoded = batch.vouchers.map((wire) => decode(wire, this.#zk?.address));
    const signatures = await Promise.all(decoded.map((voucher) => this.#verify(voucher)));
    // Only a voucher its signer signed may make the book look a channel up on-chain.
    const channels = await Promise.all(
      decoded.map((voucher, index) => (signatures[index] ? this.#channel(voucher) : undefined)),
    );
    // A zk channel's id binds only its leaf: its buyer and signer on-chain must be the voucher's.
    decoded.forEach(({ claim, zk }, index) => {
      if (zk && signatures[index]) signatures[index] = sameZkSigner(claim.key, channels[index]);
    });
    return { type: "voucher_results", results: await this.#decideAndStore(decoded, signatures, channels) };
  }

  async #verify({ claim, channelId, signature, zk }: Decoded): Promise<boolean> {
    if (!zk) {
      const digest = voucherDigestIn(this.#domain, { channelId, cumulativeAmount: claim.cumulativeAmount });
      return verifyDigest(digest, claim.key.signer, signature);
    }
    // Without ZkChannels no channel is found for it: refused as unknown_channel.
    if (!this.#zk) return true;
    if (claim.cumulativeAmount > MAX_UINT96) return false;
    const digest = zkVoucherDigest(this.#zk.domain, zk.leaf, claim.cumulativeAmount);
    return verifyDigest(digest, claim.key.signer, signature);
  }

  /**
   * The EdDSA-Poseidon signature by the settlement key the leaf registered. It costs tens of
   * milliseconds of CPU, so it is checked last, only for a voucher that passed everything else.
   */
  #zkSignatureValid({ claim, zk }: Decoded, channel: PayeeChannelView | undefined): boolean {
    if (!zk) return true;
    if (!this.#zk || !channel?.zk) return false;
    const message = zkVoucherMessage(this.#zk.domainTag, zk.leaf, claim.cumulativeAmount);
    return verifyZkSignature(message, zk.signature, channel.zk);
  }

  async #channel({ claim, channelId, zk }: Decoded): Promise<PayeeChannelView | undefined> {
    if (!isAddressEqual(claim.key.payee, this.#options.payee)) return undefined;
    if (zk && !this.#zk) return undefined;
    const channel = await this.#options.channels.channel(channelId, claim.key, zk?.leaf);
    // A leaf paying someone else is not a channel of this payee's.
    if (zk && channel?.key && !isAddressEqual(channel.key.payee, this.#options.payee)) return undefined;
    return channel;
  }

  /** Decides every voucher before anything is awaited, then waits for their commit. */
  async #decideAndStore(
    decoded: Decoded[],
    signatures: boolean[],
    channels: (PayeeChannelView | undefined)[],
  ): Promise<VoucherResult[]> {
    const repo = this.#options.store.payeeLedger;
    const accepted: { voucher: Decoded; index: number }[] = [];
    const results: VoucherResult[] = decoded.map((voucher, index) => {
      const { claim, channelId } = voucher;
      const held = this.#pendingHeld.get(channelId) ?? repo.voucher(channelId)?.cumulativeAmount;
      const decision = checkVoucher(held, claim, {
        payee: this.#options.payee,
        signatureValid: signatures[index]!,
        channel: channels[index],
        earnings: this.#earnings(claim.jobs),
      });
      if (decision.type === "refuse")
        return { status: "refused", channelId, reason: decision.reason, detail: decision.detail };
      if (!this.#zkSignatureValid(voucher, channels[index]))
        return {
          status: "refused",
          channelId,
          reason: "bad_signature",
          detail: "the EdDSA signature is not by the settlement key the leaf registered",
        };
      this.#pendingHeld.set(channelId, claim.cumulativeAmount);
      for (const jobId of claim.jobs) this.#pendingJobs.add(jobId.toLowerCase());
      accepted.push({ voucher, index });
      return { status: "accepted", channelId, cumulativeAmount: voucher.wire.cumulativeAmount };
    });
    if (accepted.length === 0) return results;
    const vouchers = accepted.map(({ voucher }) => voucher);
    try {
      await this.#options.store.commit(() => this.#write(vouchers));
    } catch (err) {
      repo.forgetCache();
      const detail = `could not store the voucher: ${(err as Error).message}`.slice(0, 256);
      for (const { voucher, index } of accepted)
        results[index] = { status: "refused", channelId: voucher.channelId, reason: "unavailable", detail };
    } finally {
      this.#settlePending(vouchers);
    }
    return results;
  }

  #settlePending(vouchers: Decoded[]): void {
    for (const { channelId, claim } of vouchers) {
      if (this.#pendingHeld.get(channelId) === claim.cumulativeAmount) this.#pendingHeld.delete(channelId);
      for (const jobId of claim.jobs) this.#pendingJobs.delete(jobId.toLowerCase());
    }
  }

  #earnings(jobs: readonly Hex[]): Map<string, JobEarning | undefined> {
    const repo = this.#options.store.payeeLedger;
    const earnings = new Map<string, JobEarning | undefined>();
    for (const jobId of jobs) {
      const id = jobId.toLowerCase();
      const row = repo.earning(jobId);
      earnings.set(
        id,
        row && {
          signer: row.signer,
          amount: row.amount,
          paid: row.paidBy !== null || this.#pendingJobs.has(id),
        },
      );
    }
    return earnings;
  }

  #write(vouchers: Decoded[]): void {
    const repo = this.#options.store.payeeLedger;
    const receivedAt = this.#now();
    for (const { claim, channelId, signature, zk } of vouchers) {
      repo.putVoucher({
        channelId,
        key: claim.key,
        cumulativeAmount: claim.cumulativeAmount,
        signature,
        receivedAt,
        ...(zk ? { zk } : {}),
      });
      repo.markPaid(claim.jobs, channelId, claim.key.signer);
    }
  }

  // ── VoucherVault ──────────────────────────────────────────────────────────────────

  unsettled(limit: number): HeldVoucher[] {
    return this.#options.store.payeeLedger.unsettled(limit).map(held);
  }

  /** Held zk vouchers above what the tree is known to pay, oldest first (the zk settler's input). */
  unsettledZk(limit: number): HeldVoucher[] {
    return this.#options.store.payeeLedger.unsettledZk(limit).map(held);
  }

  latest(channelId: Hex): HeldVoucher | undefined {
    const row = this.#options.store.payeeLedger.voucher(channelId);
    return row && held(row);
  }

  /** PaymentChannels channels with a voucher, the most recently paid first (at most the ledger's channel bound). */
  channels(): ChannelKey[] {
    return this.#options.store.payeeLedger
      .voucherChannels(Number.MAX_SAFE_INTEGER)
      .filter((row) => row.zk === undefined)
      .map((row) => row.key);
  }

  recordPaid(channelId: Hex, paid: bigint): void {
    this.#options.store.payeeLedger.setPaidOnChain(channelId, paid);
  }

  paidOnChain(channelId: Hex): bigint {
    const repo = this.#options.store.payeeLedger;
    const fromVoucher = repo.voucher(channelId)?.paidOnChain ?? 0n;
    const fromChannel = repo.channel(channelId)?.paid ?? 0n;
    return fromVoucher > fromChannel ? fromVoucher : fromChannel;
  }

  /** What `signer` owes this node for jobs no voucher paid yet. */
  unpaid(signer: Address): bigint {
    return this.#options.store.payeeLedger.unpaid(signer);
  }
}

const MAX_UINT96 = (1n << 96n) - 1n;
/** Stands in for ZkChannels' address in a zk voucher's id when this node follows none (it is refused). */
const NO_ZK_CHANNELS: Address = "0x0000000000000000000000000000000000000000";

/**
 * Addresses stay lower case here: a checksum costs a keccak, and every comparison ignores case.
 * A zk voucher's channel id is zkChannelIdOf(zkChannels, leaf); its key's nonce is the leaf.
 */
function decode(wire: VoucherWire, zkChannels: Address | undefined): Decoded {
  const key: ChannelKey = {
    buyer: wire.key.buyer.toLowerCase() as Address,
    signer: wire.key.signer.toLowerCase() as Address,
    payee: wire.key.payee.toLowerCase() as Address,
    nonce: BigInt(wire.key.nonce),
  };
  const claim = { key, cumulativeAmount: BigInt(wire.cumulativeAmount), jobs: wire.jobs };
  if (!wire.zk) return { wire, claim, channelId: channelIdOfLowerCase(key), signature: wire.signature };
  const leaf = Number(wire.zk.leaf);
  return {
    wire,
    claim,
    channelId: zkChannelIdOf(zkChannels ?? NO_ZK_CHANNELS, leaf),
    signature: wire.signature,
    zk: {
      leaf,
      signature: { r8x: BigInt(wire.zk.r8x), r8y: BigInt(wire.zk.r8y), s: BigInt(wire.zk.s) },
    },
  };
}

/** keccak-256 in WebAssembly, one hasher for every call (each runs to completion synchronously). */
const keccak = await createKeccak(256);

/** chain/signing.ts channelIdOf (keccak256(abi.encode(buyer, signer, payee, uint64 nonce))), for lower-case keys, faster. */
function channelIdOfLowerCase(key: ChannelKey): Hex {
  const words = Buffer.alloc(128);
  words.write(key.buyer.slice(2), 12, "hex");
  words.write(key.signer.slice(2), 44, "hex");
  words.write(key.payee.slice(2), 76, "hex");
  words.writeBigUInt64BE(key.nonce, 120);
  keccak.init();
  keccak.update(words);
  return `0x${keccak.digest("hex")}`;
}

/**
 * A zk voucher's key against its leaf on-chain: same buyer and signer. An unknown leaf passes
 * (it is refused as unknown_channel).
 */
function sameZkSigner(key: ChannelKey, channel: PayeeChannelView | undefined): boolean {
  if (channel === undefined) return true;
  return (
    channel.key !== undefined &&
    isAddressEqual(channel.key.buyer, key.buyer) &&
    isAddressEqual(channel.key.signer, key.signer)
  );
}

function held(row: PayeeVoucherRow): HeldVoucher {
  return {
    key: row.key,
    channelId: row.channelId,
    cumulativeAmount: row.cumulativeAmount,
    signature: row.signature,
    receivedAt: row.receivedAt,
    ...(row.zk ? { zk: row.zk } : {}),
  };
}
