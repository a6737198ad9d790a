// Settlement tests on a real devnet: real channels, real signed vouchers, a small in-memory
// VoucherVault standing in for the payee ledger, and receipts in a real SQLite store.
import { keccak256, toHex } from "viem";
import type { Address, Hex } from "viem";
import type { PrivateKeyAccount } from "viem/accounts";
import pino from "pino";
import {
  channelIdOf,
  createWriter,
  mintAtp,
  openChannel,
  signVoucher,
} from "../../offchain/src/chain/index.ts";
import type { ChainWriter, ChannelKey, Devnet } from "../../offchain/src/chain/index.ts";
import type { HeldVoucher, VoucherVault } from "../../offchain/src/payments/index.ts";
import { receiptToWire } from "../../offchain/src/protocol/index.ts";
import { EpochSettler, TxSender, Watchtower, viemTxPort } from "../../offchain/src/settlement/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";
import { receiptFor } from "./contracts/fixture.ts";

export const silentLog = pino({ level: "silent" });

/** The payee ledger's face over two maps: latest voucher and known on-chain paid per channel. */
export class MemoryVault implements VoucherVault {
  readonly held = new Map<Hex, HeldVoucher>();
  readonly paid = new Map<Hex, bigint>();

  hold(voucher: HeldVoucher): void {
    this.held.set(voucher.channelId, voucher);
  }

  /** PaymentChannels vouchers above what was paid, oldest first (as the payee ledger answers). */
  unsettled(limit: number): HeldVoucher[] {
    return this.#above(limit, (voucher) => voucher.zk === undefined);
  }

  /** ZkChannels vouchers above what was paid, oldest first. */
  unsettledZk(limit: number): HeldVoucher[] {
    return this.#above(limit, (voucher) => voucher.zk !== undefined);
  }

  #above(limit: number, kind: (voucher: HeldVoucher) => boolean): HeldVoucher[] {
    return [...this.held.values()]
      .filter((voucher) => kind(voucher) && voucher.cumulativeAmount > this.paidOnChain(voucher.channelId))
      .sort((a, b) => a.receivedAt - b.receivedAt)
      .slice(0, limit);
  }

  latest(channelId: Hex): HeldVoucher | undefined {
    return this.held.get(channelId);
  }

  channels(): ChannelKey[] {
    return [...this.held.values()].map((voucher) => voucher.key);
  }

  recordPaid(channelId: Hex, paid: bigint): void {
    this.paid.set(channelId, paid);
  }

  paidOnChain(channelId: Hex): bigint {
    return this.paid.get(channelId) ?? 0n;
  }
}

/** Held vouchers as JSON (amounts and nonces as decimal strings), e.g. to hand them to another process. */
export function vouchersToJson(vouchers: Iterable<HeldVoucher>): unknown {
  return JSON.parse(
    JSON.stringify([...vouchers], (_key, value: unknown) =>
      typeof value === "bigint" ? value.toString() : value,
    ),
  );
}

export function vouchersFromJson(json: unknown): HeldVoucher[] {
  return (json as (HeldVoucher & { cumulativeAmount: string; key: { nonce: string } })[]).map((voucher) => ({
    ...voucher,
    key: { ...voucher.key, nonce: BigInt(voucher.key.nonce) },
    cumulativeAmount: BigInt(voucher.cumulativeAmount),
  }));
}

/** Mints ATP to the buyer and opens a channel buyer → payee signed by the buyer's key. */
export async function openFundedChannel(
  devnet: Devnet,
  buyer: ChainWriter,
  payee: Address,
  deposit: bigint,
): Promise<ChannelKey> {
  const faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
  await mintAtp(faucet, buyer.walletClient.account.address, deposit);
  const { key } = await openChannel(buyer, {
    signer: buyer.walletClient.account.address,
    payee,
    amount: deposit,
  });
  return key;
}

/** A voucher for `amount` on `key`, signed by the buyer as the payee would hold it. */
export async function heldVoucher(
  devnet: Devnet,
  signer: PrivateKeyAccount,
  key: ChannelKey,
  amount: bigint,
): Promise<HeldVoucher> {
  const channelId = channelIdOf(key);
  const signature = await signVoucher(signer, devnet.chainId, devnet.deployment.paymentChannels, {
    channelId,
    cumulativeAmount: amount,
  });
  return { key, channelId, cumulativeAmount: amount, signature, receivedAt: Date.now() };
}

/** Stores `count` receipts executed by `executor`, as the donor half stores them; returns their job ids. */
export function storeOwnReceipts(store: Store, executor: Address, count: number, label = "job"): Hex[] {
  return Array.from({ length: count }, (_, i) => {
    const jobId = keccak256(toHex(`${label}-${executor}-${i}`));
    store.jobs.insert({ jobId, role: "executor", spec: { test: true }, state: "completed" });
    const receipt = receiptToWire(receiptFor(executor, jobId, { fuelUsed: BigInt(1_000 + i) }));
    store.receipts.put({ jobId, executor, message: receipt, signature: `0x${"11".repeat(65)}` });
    return jobId;
  });
}

export interface SettlementParts {
  sender: TxSender;
  settler: EpochSettler;
  watchtower: Watchtower;
}

/** The node's settlement parts over a store, with the operator key `operatorKey`. */
export function settlementParts(
  devnet: Pick<Devnet, "rpcUrl" | "deployment">,
  store: Store,
  vault: VoucherVault,
  operatorKey: Hex,
  options: { epochSeconds?: number; confirmations?: number; bumpAfterMs?: number } = {},
): SettlementParts {
  const writer = createWriter(devnet.rpcUrl, devnet.deployment, operatorKey);
  const sender = new TxSender({
    store,
    chain: viemTxPort(writer),
    log: silentLog,
    confirmations: options.confirmations ?? 1,
    bumpAfterMs: options.bumpAfterMs ?? 60_000,
  });
  const settler = new EpochSettler({
    store,
    reader: writer,
    sender,
    vault,
    operator: writer.walletClient.account.address,
    epochSeconds: options.epochSeconds ?? 3_600,
    maxVouchersPerBatch: 500,
    log: silentLog,
  });
  const watchtower = new Watchtower({
    store,
    reader: writer,
    sender,
    vault,
    log: silentLog,
    pollMs: 100,
    blockRange: 1_000,
  });
  return { sender, settler, watchtower };
}

/** Resolves once `check` returns a value other than undefined, polling every 50 ms. */
export async function eventually<T>(
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
