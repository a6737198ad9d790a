import { Command } from "commander";
import { isAddressEqual, parseEventLogs, zeroAddress } from "viem";
import type { Address, Hex } from "viem";
import {
  CHANNEL_CLOSED,
  approveAtp,
  atpBalance,
  atpTokenAbi,
  donorRegistryAbi,
  finalizeChannelClose,
  getChannel,
  openChannelWithPermit,
  openedChannels,
  paymentChannelsAbi,
  registrationOf,
  startChannelClose,
  topUpChannel,
  withdrawableOf,
} from "../../chain/index.ts";
import type { ChainReader, ChainWriter, ChannelState, OpenedChannel } from "../../chain/index.ts";
import {
  addChainOptions,
  addWalletOption,
  asBytes32,
  connectChain,
  formatAtp,
  parseAddress,
  parseAtp,
  printTransaction,
  requireAtp,
  runChainCommand,
  walletAddress,
  writerFor,
} from "../chain-options.ts";
import type { ChainContext, ChainOptions, WalletOptions } from "../chain-options.ts";
import { formatWhen } from "../revert-text.ts";
import { chainNow } from "./donor.ts";

type ChannelOptions = ChainOptions & WalletOptions;

/** `cell channel open | topup | close | status | list`: the wallet's payment channels to donors. */
export function registerChannelCommand(program: Command): Command {
  const channel = program
    .command("channel")
    .description("payment channels from the wallet to donors: open, top up, close, inspect")
    .addHelpText(
      "after",
      [
        "",
        "Examples:",
        "  $ cell channel open 0xDonor… 50 --node-dir ./buyer --wallet ./wallet.json",
        "  $ cell channel list --wallet ./wallet.json",
        "  $ cell channel close 0x<channelId> --wallet ./wallet.json",
        "",
      ].join("\n"),
    );

  chainCommand(channel, "open <payee> <amount>")
    .description(
      "open a channel with <amount> ATP to a donor (its staking or operator address), one transaction with a permit",
    )
    .option("--signer <address>", "the key whose vouchers the channel honours")
    .option(
      "--node-dir <dir>",
      "use this node's operator address as the signer (the node pays from the channel)",
    )
    .addHelpText(
      "after",
      "\nThe signer defaults to the wallet itself; a buyer node spends from channels whose signer is its operator.\n" +
        "Example:\n  $ cell channel open 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 25.5 --node-dir ./buyer --wallet ./wallet.json\n",
    )
    .action((payee: string, amount: string, options: OpenOptions) =>
      runChainCommand(() => openCommand(payee, amount, options)),
    );

  chainCommand(channel, "topup <channel> <amount>")
    .description("add <amount> ATP to a channel, named by its id or by its payee (the newest open one)")
    .addHelpText("after", "\nExample:\n  $ cell channel topup 0x<channelId> 10 --wallet ./wallet.json\n")
    .action((target: string, amount: string, options: ChannelOptions) =>
      runChainCommand(() => topUpCommand(target, amount, options)),
    );

  chainCommand(channel, "close <channelId>")
    .description(
      "start closing a channel; after the challenge window, --finalize refunds what it did not pay",
    )
    .option("--finalize", "finish a close whose challenge window has passed")
    .addHelpText(
      "after",
      "\nExamples:\n  $ cell channel close 0x<channelId> --wallet ./wallet.json\n  $ cell channel close 0x<channelId> --finalize --wallet ./wallet.json\n",
    )
    .action((id: string, options: ChannelOptions & { finalize?: boolean }) =>
      runChainCommand(() => closeCommand(id, options)),
    );

  chainCommand(channel, "status <channelId>")
    .description("a channel's payee, signer, deposit, paid, remaining and closing state (no password)")
    .option("--json", "print JSON")
    .addHelpText("after", "\nExample:\n  $ cell channel status 0x<channelId> --json\n")
    .action((id: string, options: ChannelOptions & { json?: boolean }) =>
      runChainCommand(() => statusCommand(id, options)),
    );

  chainCommand(channel, "list")
    .description("the channels the wallet opened, with deposit, paid and closing state (no password)")
    .option("--json", "print JSON")
    .addHelpText("after", "\nExample:\n  $ cell channel list --wallet ./wallet.json\n")
    .action((options: ChannelOptions & { json?: boolean }) => runChainCommand(() => listCommand(options)));
  return channel;
}

interface OpenOptions extends ChannelOptions {
  signer?: string;
  nodeDir?: string;
}

function chainCommand(parent: Command, name: string): Command {
  return addWalletOption(addChainOptions(parent.command(name)));
}

async function openCommand(payeeText: string, amountText: string, options: OpenOptions): Promise<void> {
  const amount = parseAtp(amountText);
  if (options.signer && options.nodeDir) throw new Error("give either --signer or --node-dir, not both");
  const chain = await connectChain(options);
  const payee = await resolvePayee(chain.reader, parseAddress(payeeText, "payee"));
  const writer = await writerFor(chain, options);
  const signer = await signerOf(options, writer.walletClient.account.address);
  requireAtp(await atpBalance(writer, writer.walletClient.account.address), amount);
  const { channelId, key, receipt } = await openChannelWithPermit(writer, { signer, payee, amount });
  printTransaction(chain, `opened a channel with ${formatAtp(amount)}`, receipt);
  process.stdout.write(
    `channel  ${channelId}\npayee    ${key.payee}\nsigner   ${key.signer}\nnonce    ${key.nonce}\n`,
  );
}

/**
 * A donor's payee is its staking wallet, never its hot operator key: an operator address is
 * resolved with the registry's donorOf. Anything else is refused, so no deposit goes astray.
 */
export async function resolvePayee(reader: ChainReader, address: Address): Promise<Address> {
  const registry = { address: reader.deployment.donorRegistry, abi: donorRegistryAbi } as const;
  const donor = await reader.publicClient.readContract({
    ...registry,
    functionName: "donorOf",
    args: [address],
  });
  if (!isAddressEqual(donor, zeroAddress)) return donor;
  const { operator } = await registrationOf(reader, address);
  if (!isAddressEqual(operator, zeroAddress)) return address;
  throw new Error(`${address} is neither a registered donor's staking address nor its operator`);
}

async function signerOf(options: OpenOptions, wallet: Address): Promise<Address> {
  if (options.signer) return parseAddress(options.signer, "--signer");
  if (!options.nodeDir) return wallet;
  const { readPublicIdentity } = await import("../../identity/index.ts");
  return (await readPublicIdentity(options.nodeDir)).operatorAddress;
}

async function topUpCommand(target: string, amountText: string, options: ChannelOptions): Promise<void> {
  const amount = parseAtp(amountText);
  const chain = await connectChain(options);
  const writer = await writerFor(chain, options);
  const wallet = writer.walletClient.account.address;
  const channel = await findTopUpChannel(chain, target, wallet);
  requireAtp(await atpBalance(writer, wallet), amount);
  await approveExactly(chain, writer, amount);
  const receipt = await topUpChannel(writer, channel.key, amount);
  printTransaction(chain, `topped up ${channel.channelId} with ${formatAtp(amount)}`, receipt);
  const state = await getChannel(chain.reader, channel.channelId);
  process.stdout.write(`deposit  ${formatAtp(state.deposit)}\n`);
}

/** A top-up needs an allowance (PaymentChannels.topUp takes no permit): approve just this amount, printed. */
async function approveExactly(chain: ChainContext, writer: ChainWriter, amount: bigint): Promise<void> {
  const spender = chain.deployment.paymentChannels;
  const allowance = await writer.publicClient.readContract({
    address: chain.deployment.atpToken,
    abi: atpTokenAbi,
    functionName: "allowance",
    args: [writer.walletClient.account.address, spender],
  });
  if (allowance >= amount) return;
  const receipt = await approveAtp(writer, spender, amount);
  printTransaction(chain, `approved ${formatAtp(amount)} for PaymentChannels`, receipt);
}

async function findTopUpChannel(
  chain: ChainContext,
  target: string,
  wallet: Address,
): Promise<OpenedChannel> {
  const id = asBytes32(target);
  if (id) return findChannel(chain.reader, id);
  const payee = await resolvePayee(chain.reader, parseAddress(target, "channel"));
  const mine = await openedChannels(chain.reader, { buyer: wallet, payee });
  for (const channel of mine.reverse()) {
    if ((await getChannel(chain.reader, channel.channelId)).closesAt === 0n) return channel;
  }
  throw new Error(`the wallet ${wallet} has no open channel to ${payee} (cell channel open)`);
}

async function findChannel(reader: ChainReader, channelId: Hex): Promise<OpenedChannel> {
  const [channel] = await openedChannels(reader, { channelId });
  if (!channel) throw new Error(`no channel ${channelId} was ever opened on this deployment`);
  return channel;
}

async function closeCommand(idText: string, options: ChannelOptions & { finalize?: boolean }): Promise<void> {
  const channelId = channelIdArgument(idText);
  const chain = await connectChain(options);
  const channel = await findChannel(chain.reader, channelId);
  const writer = await writerFor(chain, options);
  const wallet = writer.walletClient.account.address;
  if (options.finalize) {
    const receipt = await finalizeChannelClose(writer, channel.key);
    const [closed] = parseEventLogs({
      abi: paymentChannelsAbi,
      eventName: "ChannelClosed",
      logs: receipt.logs,
    });
    printTransaction(chain, `closed ${channelId}`, receipt);
    process.stdout.write(
      `paid     ${formatAtp(closed?.args.paid ?? 0n)}\nrefund   ${formatAtp(closed?.args.refund ?? 0n)} to ${channel.key.buyer}\n`,
    );
    return;
  }
  if (!isAddressEqual(channel.key.buyer, wallet))
    throw new Error(`only the channel's buyer ${channel.key.buyer} may start its close, not ${wallet}`);
  const receipt = await startChannelClose(writer, channel.key);
  const [started] = parseEventLogs({
    abi: paymentChannelsAbi,
    eventName: "CloseStarted",
    logs: receipt.logs,
  });
  printTransaction(chain, `started closing ${channelId}`, receipt);
  const closesAt = started?.args.closesAt ?? 0n;
  process.stdout.write(
    `the payee may still redeem until ${formatWhen(closesAt, await chainNow(chain))};\nthen: cell channel close ${channelId} --finalize\n`,
  );
}

/** What `cell channel status` and `list` show of one channel. */
export interface ChannelView {
  channelId: Hex;
  buyer: Address;
  payee: Address;
  signer: Address;
  nonce: string;
  deposit: string;
  paid: string;
  remaining: string;
  withdrawable: string;
  state: "open" | "closing" | "closed";
  closesAt: number | null;
}

async function channelView(reader: ChainReader, channel: OpenedChannel): Promise<ChannelView> {
  const [state, withdrawable] = await Promise.all([
    getChannel(reader, channel.channelId),
    withdrawableOf(reader, channel.channelId),
  ]);
  const { buyer, payee, signer, nonce } = channel.key;
  return {
    channelId: channel.channelId,
    buyer,
    payee,
    signer,
    nonce: nonce.toString(),
    deposit: formatAtp(state.deposit),
    paid: formatAtp(state.paid),
    remaining: formatAtp(state.closesAt === CHANNEL_CLOSED ? 0n : state.deposit - state.paid),
    withdrawable: formatAtp(withdrawable),
    ...stateOf(state),
  };
}

function stateOf(state: ChannelState): Pick<ChannelView, "state" | "closesAt"> {
  if (state.closesAt === 0n) return { state: "open", closesAt: null };
  if (state.closesAt === CHANNEL_CLOSED) return { state: "closed", closesAt: null };
  return { state: "closing", closesAt: Number(state.closesAt) };
}

function describeState(view: ChannelView, now: number): string {
  if (view.state !== "closing" || view.closesAt === null) return view.state;
  const when = formatWhen(view.closesAt, now);
  return view.closesAt <= now
    ? `closing, can be finalized since ${when}`
    : `closing, can be finalized at ${when}`;
}

async function statusCommand(idText: string, options: ChannelOptions & { json?: boolean }): Promise<void> {
  const chain = await connectChain(options);
  const view = await channelView(chain.reader, await findChannel(chain.reader, channelIdArgument(idText)));
  if (options.json) {
    process.stdout.write(`${JSON.stringify(view)}\n`);
    return;
  }
  const now = await chainNow(chain);
  const rows: [string, string][] = [
    ["channel", view.channelId],
    ["buyer", view.buyer],
    ["payee", view.payee],
    ["signer", view.signer],
    ["nonce", view.nonce],
    ["deposit", view.deposit],
    ["paid", view.paid],
    ["remaining", view.remaining],
    ["to withdraw", `${view.withdrawable} (paid, not yet transferred to the payee)`],
    ["state", describeState(view, now)],
  ];
  process.stdout.write(`${rows.map(([label, value]) => `${label.padEnd(12)}${value}`).join("\n")}\n`);
}

async function listCommand(options: ChannelOptions & { json?: boolean }): Promise<void> {
  const chain = await connectChain(options);
  const buyer = await walletAddress(options);
  const views = await Promise.all(
    (await openedChannels(chain.reader, { buyer })).map((channel) => channelView(chain.reader, channel)),
  );
  if (options.json) {
    process.stdout.write(`${JSON.stringify(views)}\n`);
    return;
  }
  if (views.length === 0) {
    process.stdout.write(`no channels opened by ${buyer}\n`);
    return;
  }
  const now = await chainNow(chain);
  for (const view of views)
    process.stdout.write(
      `${view.channelId}  payee ${view.payee}  deposit ${view.deposit}  paid ${view.paid}  ${describeState(view, now)}\n`,
    );
}

function channelIdArgument(text: string): Hex {
  const id = asBytes32(text);
  if (!id) throw new Error(`channel id '${text}' is not 0x + 64 hex digits`);
  return id;
}
