// The buyer's payments on the node's chain, mesh, store and operator key: channels open lazily
// when a donor is first selected, and agreeing executors get vouchers after accepted verdicts.
// With `payments.zk` new channels are ZkChannels leaves paid with zk vouchers (docs/zk.md).
import { isAddressEqual } from "viem";
import type { Address, Hex, LocalAccount } from "viem";
import {
  channelIdOf,
  createWriter,
  getChannel,
  openChannelWithPermit,
  openZkChannelWithPermit,
  paymentChannelsAbi,
  registrationOfOperator,
  signVoucher,
  signZkVoucherEip712,
  topUpChannel,
  topUpZkChannel,
  zkChannelOf,
  zkChannelsAbi,
} from "../chain/index.ts";
import type { ChainReader, ChainWriter, ChannelKey } from "../chain/index.ts";
import { BuyerChannels, VOUCHER_PROTOCOL, VoucherSender } from "../payments/index.ts";
import type {
  ChainChannel,
  ChannelChainPort,
  ChannelView,
  VoucherSenderPorts,
  ZkSignedVoucher,
} from "../payments/index.ts";
import { SettlementKey, domainTagOf, zkChannelIdOf, zkVoucherMessage } from "../zk/index.ts";
import type { VerdictListener } from "../quorum/index.ts";
import type { NodeContext } from "./context.ts";
import { protocolSpecs } from "./protocols.ts";
import { errorMessage } from "./util.ts";

/** How long a payee's node has to store and acknowledge a batch of vouchers. */
const VOUCHER_TIMEOUT_MS = 10_000;
/** Operator → payee answers kept; beyond it the least recently used goes (it is read again). */
const PAYEES_MAX = 4_096;

export interface BuyerPayments {
  /** Joins the buyer's verdict listeners: pays agreeing executors. */
  listener: VerdictListener;
  /** A donor was selected for a job: its channel starts opening now, if it has none. */
  onSelected(operator: Address): void;
  channels(): ChannelView[];
  start(): void;
  stop(): void;
}

/** The buyer's payments, signing with the operator key, which holds the ATP and the gas. */
export function buyerPayments(
  ctx: NodeContext,
  reader: ChainReader,
  onPaid?: VoucherSenderPorts["onPaid"],
): BuyerPayments {
  const { config, log } = ctx;
  const writer = createWriter(config.chain.rpcUrl, reader.deployment, ctx.operator);
  const payeeOf = payeeLookup(reader);
  const blockRange = BigInt(config.chain.logBlockRange);
  const zk = config.payments.zk ? zkPayer(reader, ctx.operator, config.dataDir) : undefined;
  const channels = new BuyerChannels(
    {
      chain: zk
        ? zkChannelChain(writer, ctx.operatorAddress, zk, blockRange)
        : channelChain(writer, ctx.operatorAddress, blockRange),
      store: ctx.store,
      clock: { now: ctx.now },
      log: log.child({ part: "payments" }),
    },
    { operator: ctx.operatorAddress, ...config.payments },
  );
  const { chainId, paymentChannels } = reader.deployment;
  const sender = new VoucherSender({
    channels,
    payeeOf,
    sign: (channelId, cumulativeAmount, key) =>
      zk?.owns(channelId, key)
        ? zk.sign(Number(key.nonce), cumulativeAmount)
        : signVoucher(ctx.operator, chainId, paymentChannels, { channelId, cumulativeAmount }),
    send: (peerId, batch) =>
      ctx.mesh.request(peerId, VOUCHER_PROTOCOL, protocolSpecs.voucher, batch, {
        timeoutMs: VOUCHER_TIMEOUT_MS,
      }),
    clock: {
      now: ctx.now,
      after: (delayMs, fire) => {
        const timer = setTimeout(fire, delayMs);
        timer.unref();
        return () => clearTimeout(timer);
      },
    },
    log: log.child({ part: "vouchers" }),
    ...(onPaid ? { onPaid } : {}),
  });
  return {
    listener: sender,
    onSelected: (operator) => {
      payeeOf(operator)
        .then((payee) => (payee ? channels.ensure(payee) : undefined))
        .catch((err: unknown) =>
          log.debug({ operator, err: errorMessage(err) }, "no payment channel to a selected donor yet"),
        );
    },
    channels: () => channels.views(),
    start: () => sender.start(),
    stop: () => sender.stop(),
  };
}

/** Operator → its donor's staking wallet (the payee), from DonorRegistry; known answers are cached. */
function payeeLookup(reader: ChainReader): (operator: Address) => Promise<Address | undefined> {
  const known = new Map<string, Address>();
  return async (operator) => {
    const id = operator.toLowerCase();
    const cached = known.get(id);
    if (cached) {
      known.delete(id);
      known.set(id, cached);
      return cached;
    }
    const payee = (await registrationOfOperator(reader, operator))?.donor;
    if (payee) {
      known.set(id, payee);
      if (known.size > PAYEES_MAX) known.delete(known.keys().next().value!);
    }
    return payee;
  };
}

/**
 * PaymentChannels as the channel manager needs it: open by permit, find by logs, top up. The
 * operator's transactions go one at a time: each takes the account's next nonce when it is sent.
 */
function channelChain(writer: ChainWriter, operator: Address, blockRange: bigint): ChannelChainPort {
  const oneAtATime = serially();
  return {
    open: (payee, deposit) =>
      oneAtATime(async () => {
        const { key, channelId } = await openChannelWithPermit(writer, {
          signer: operator,
          payee,
          amount: deposit,
        });
        return { key, channelId, deposit, paid: 0n };
      }),
    findOpen: (payee) => openChannelsSignedBy(writer, operator, payee, blockRange),
    topUp: (key, amount) =>
      oneAtATime(async () => {
        await topUpChannel(writer, key, amount);
        return (await getChannel(writer, channelIdOf(key))).deposit;
      }),
  };
}

/** A zk buyer's ZkChannels, settlement key and signing of zk vouchers. */
interface ZkPayer {
  zkChannels: Address;
  publicKey(): Promise<SettlementKey["publicKey"]>;
  /** Whether a channel the node signs on is a ZkChannels leaf (its key's nonce is the leaf). */
  owns(channelId: Hex, key: ChannelKey): boolean;
  sign(leaf: number, cumulativeAmount: bigint): Promise<ZkSignedVoucher>;
}

/** Channels opened before `payments.zk` was turned on stay PaymentChannels channels and are still paid as such. */
function zkPayer(reader: ChainReader, operator: LocalAccount, dataDir: string): ZkPayer {
  const { chainId, zkChannels } = reader.deployment;
  if (zkChannels === undefined)
    throw new Error(`payments.zk is on but the deployment on chain ${chainId} has no ZkChannels`);
  const domainTag = domainTagOf(chainId, zkChannels);
  let loading: Promise<SettlementKey> | undefined;
  const settlementKey = () => (loading ??= SettlementKey.loadOrCreate(dataDir));
  return {
    zkChannels,
    publicKey: async () => (await settlementKey()).publicKey,
    owns: (channelId, key) =>
      key.nonce < 2n ** 32n && channelId.toLowerCase() === zkChannelIdOf(zkChannels, Number(key.nonce)),
    sign: async (leaf, cumulativeAmount) => {
      const signature = await signZkVoucherEip712(operator, chainId, zkChannels, { leaf, cumulativeAmount });
      const eddsa = (await settlementKey()).sign(zkVoucherMessage(domainTag, leaf, cumulativeAmount));
      return {
        signature,
        zk: {
          leaf: leaf.toString(),
          r8x: eddsa.r8x.toString(),
          r8y: eddsa.r8y.toString(),
          s: eddsa.s.toString(),
        },
      };
    },
  };
}

/**
 * ZkChannels as the channel manager needs it: a channel is a leaf, kept under
 * zkChannelIdOf(zkChannels, leaf) with key {buyer, signer, payee, nonce: leaf}. Opened by permit
 * with the settlement key's (ax, ay), the operator as its voucher signer.
 */
function zkChannelChain(
  writer: ChainWriter,
  operator: Address,
  zk: ZkPayer,
  blockRange: bigint,
): ChannelChainPort {
  const oneAtATime = serially();
  return {
    open: (payee, deposit) =>
      oneAtATime(async () => {
        const { leaf } = await openZkChannelWithPermit(writer, {
          payee,
          signer: operator,
          key: await zk.publicKey(),
          amount: deposit,
        });
        const key = { buyer: operator, signer: operator, payee, nonce: BigInt(leaf) };
        return { key, channelId: zkChannelIdOf(zk.zkChannels, leaf), deposit, paid: 0n };
      }),
    findOpen: async (payee) => openZkChannelsSignedBy(writer, zk, operator, payee, blockRange),
    topUp: (key, amount) =>
      oneAtATime(async () => {
        const leaf = Number(key.nonce);
        await topUpZkChannel(writer, leaf, amount);
        return (await zkChannelOf(writer, leaf)).deposited;
      }),
  };
}

/**
 * Leaves paying `payee` whose voucher signer is `signer` and whose settlement key is this
 * node's (else its zk vouchers would not verify), not closing, from ZkChannelOpened logs.
 */
async function openZkChannelsSignedBy(
  reader: ChainReader,
  zk: ZkPayer,
  signer: Address,
  payee: Address,
  blockRange: bigint,
): Promise<ChainChannel[]> {
  const { publicClient, deployment } = reader;
  const { ax, ay } = await zk.publicKey();
  const head = await publicClient.getBlockNumber();
  const found: ChainChannel[] = [];
  for (let from = deployment.deployBlock; from <= head; from += blockRange) {
    const to = from + blockRange - 1n < head ? from + blockRange - 1n : head;
    const logs = await publicClient.getContractEvents({
      address: zk.zkChannels,
      abi: zkChannelsAbi,
      eventName: "ZkChannelOpened",
      args: { payee },
      fromBlock: from,
      toBlock: to,
      strict: true,
    });
    for (const { args } of logs) {
      if (!isAddressEqual(args.signer, signer) || args.ax !== ax || args.ay !== ay) continue;
      const state = await zkChannelOf(reader, args.leaf);
      if (state.closesAt !== 0n || state.deposited === 0n) continue;
      found.push({
        key: { buyer: args.buyer, signer: args.signer, payee: args.payee, nonce: BigInt(args.leaf) },
        channelId: zkChannelIdOf(zk.zkChannels, args.leaf),
        deposit: state.deposited,
        paid: state.withdrawn,
      });
    }
  }
  return found;
}

/** Runs the tasks given to it one after another, in the order given. */
function serially(): <T>(task: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return (task) => {
    const run = tail.then(task);
    tail = run.catch(() => undefined);
    return run;
  };
}

/** Channels to `payee` whose voucher signer is `signer` and that are open and not closing, from ChannelOpened logs. */
async function openChannelsSignedBy(
  reader: ChainReader,
  signer: Address,
  payee: Address,
  blockRange: bigint,
): Promise<ChainChannel[]> {
  const { publicClient, deployment } = reader;
  const head = await publicClient.getBlockNumber();
  const found: ChainChannel[] = [];
  for (let from = deployment.deployBlock; from <= head; from += blockRange) {
    const to = from + blockRange - 1n < head ? from + blockRange - 1n : head;
    const logs = await publicClient.getContractEvents({
      address: deployment.paymentChannels,
      abi: paymentChannelsAbi,
      eventName: "ChannelOpened",
      args: { payee },
      fromBlock: from,
      toBlock: to,
      strict: true,
    });
    for (const { args } of logs) {
      if (!isAddressEqual(args.signer, signer)) continue;
      const state = await getChannel(reader, args.channelId as Hex);
      if (state.closesAt !== 0n || state.deposit === 0n) continue;
      found.push({
        key: { buyer: args.buyer, signer: args.signer, payee: args.payee, nonce: BigInt(args.nonce) },
        channelId: args.channelId as Hex,
        deposit: state.deposit,
        paid: state.paid,
      });
    }
  }
  return found;
}
