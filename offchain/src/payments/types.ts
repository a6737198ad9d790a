// What the payments domain shares with the settlement domain and the node: a voucher as the
// payee holds it, and the payee's ledger as the settler and the watchtower read it.
import type { Hex } from "viem";
import type { ChannelKey } from "../chain/index.ts";
import type { ZkSignature } from "../zk/index.ts";

/** The latest voucher a payee holds for one channel, stored durably before it was acknowledged. */
export interface HeldVoucher {
  key: ChannelKey;
  channelId: Hex;
  cumulativeAmount: bigint;
  /**
   * By key.signer over Voucher(channelId, cumulativeAmount), in a form PaymentChannels accepts;
   * for a zk voucher over ZkVoucher(leaf, cumulativeAmount), as ZkChannels.settleBySignature takes it.
   */
  signature: Hex;
  /** Unix ms when it was stored. */
  receivedAt: number;
  /**
   * Present for a voucher on a ZkChannels channel (key.nonce is its leaf): the EdDSA-Poseidon
   * signature by the leaf's settlement key over H3(domainTag, leaf, cumulativeAmount).
   */
  zk?: { leaf: number; signature: ZkSignature };
}

/**
 * The payee's vouchers as settlement and the watchtower need them (implemented by the payee
 * ledger in this folder over the node's SQLite store).
 */
export interface VoucherVault {
  /**
   * Latest PaymentChannels vouchers whose cumulative amount is above what the chain is known to
   * have paid on their channel, oldest first, at most `limit` (zk vouchers: `unsettledZk`).
   */
  unsettled(limit: number): HeldVoucher[];
  /** The latest voucher of a channel, if any. */
  latest(channelId: Hex): HeldVoucher | undefined;
  /** Every PaymentChannels channel this node holds a voucher for (bounded like the ledger; zk channels are not listed). */
  channels(): ChannelKey[];
  /** Records what the chain says a channel has paid to date (after a settlement, redeem or close). */
  recordPaid(channelId: Hex, paid: bigint): void;
  /** What the chain is known to have paid on a channel (0 when nothing is known). */
  paidOnChain(channelId: Hex): bigint;
}
