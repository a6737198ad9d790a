import { Command } from "commander";
import { isAddressEqual, parseEventLogs, zeroAddress } from "viem";
import type { Address } from "viem";
import {
  atpBalance,
  donorParams,
  donorRegistryAbi,
  donorStake,
  isActiveOperator,
  operatorState,
  registerDonor,
  registrationOf,
  requestUnbond,
  stakeWithPermit,
  withdrawStake,
} from "../../chain/index.ts";
import {
  addChainOptions,
  addWalletOption,
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
import { readPassphrase } from "../passphrase.ts";
import { formatWhen } from "../revert-text.ts";
import { defaultDir } from "./keys.ts";

type DonorOptions = ChainOptions & WalletOptions;

/** `cell donor stake | register | unbond | withdraw | status`: a donor's stake and registration, from the user's wallet. */
export function registerDonorCommand(program: Command): Command {
  const donor = program
    .command("donor")
    .description("stake ATP and register a node as a donor, from the wallet")
    .addHelpText(
      "after",
      [
        "",
        "Examples:",
        "  $ cell donor stake 1000 --wallet ./wallet.json",
        "  $ cell donor register --node-dir ./node1 --wallet ./wallet.json",
        "  $ cell donor status --wallet ./wallet.json",
        "",
      ].join("\n"),
    );

  chainCommand(donor, "stake <amount>")
    .description("bond <amount> ATP (decimals allowed) in one transaction, with a permit")
    .addHelpText(
      "after",
      "\nExample:\n  $ cell donor stake 12.5 --wallet ./wallet.json --rpc http://127.0.0.1:8546\n",
    )
    .action((amount: string, options: DonorOptions) => runChainCommand(() => stakeCommand(amount, options)));

  chainCommand(donor, "register")
    .description("register a node's operator address and peer key as this wallet's donor node")
    .option("--node-dir <dir>", "the node's key directory (default $CELL_DATA_DIR, else ~/.cell)")
    .option("--passphrase-file <file>", "unlocks the node's operator key (else env CELL_PASSPHRASE)")
    .option("--metadata-uri <uri>", "where the node describes itself", "")
    .addHelpText(
      "after",
      "\nThe node's operator key signs its proof of possession, so the node's passphrase is needed.\n" +
        "Example:\n  $ CELL_PASSPHRASE=… cell donor register --node-dir ./node1 --wallet ./wallet.json\n",
    )
    .action((options: RegisterOptions) => runChainCommand(() => registerCommand(options)));

  chainCommand(donor, "unbond <amount>")
    .description("start unbonding <amount> ATP; it can be withdrawn after the unbonding delay")
    .addHelpText("after", "\nExample:\n  $ cell donor unbond 100 --wallet ./wallet.json\n")
    .action((amount: string, options: DonorOptions) => runChainCommand(() => unbondCommand(amount, options)));

  chainCommand(donor, "withdraw")
    .description("withdraw the stake whose unbonding delay has passed")
    .addHelpText("after", "\nExample:\n  $ cell donor withdraw --wallet ./wallet.json\n")
    .action((options: DonorOptions) => runChainCommand(() => withdrawCommand(options)));

  chainCommand(donor, "status")
    .description(
      "bonded and unbonding stake, when it unbonds, operator, peer key, active, jailed (no password)",
    )
    .option("--address <donor>", "another donor's staking address instead of the wallet's")
    .option("--json", "print JSON")
    .addHelpText("after", "\nExample:\n  $ cell donor status --wallet ./wallet.json --json\n")
    .action((options: StatusOptions) => runChainCommand(() => statusCommand(options)));
  return donor;
}

interface RegisterOptions extends DonorOptions {
  nodeDir?: string;
  passphraseFile?: string;
  metadataUri: string;
}

interface StatusOptions extends DonorOptions {
  address?: string;
  json?: boolean;
}

function chainCommand(parent: Command, name: string): Command {
  return addWalletOption(addChainOptions(parent.command(name)));
}

async function stakeCommand(amountText: string, options: DonorOptions): Promise<void> {
  const amount = parseAtp(amountText);
  const chain = await connectChain(options);
  const writer = await writerFor(chain, options);
  requireAtp(await atpBalance(writer, writer.walletClient.account.address), amount);
  const receipt = await stakeWithPermit(writer, amount);
  printTransaction(chain, `staked ${formatAtp(amount)}`, receipt);
  const { bonded } = await donorStake(chain.reader, writer.walletClient.account.address);
  process.stdout.write(`bonded   ${formatAtp(bonded)}\n`);
}

async function registerCommand(options: RegisterOptions): Promise<void> {
  const nodeDir = options.nodeDir ?? defaultDir();
  const passphrase = await readPassphrase(options.passphraseFile);
  if (passphrase === undefined)
    throw new Error(
      `no passphrase for the node keys in ${nodeDir}: pass --passphrase-file FILE or set CELL_PASSPHRASE`,
    );
  const { loadOrCreateIdentity } = await import("../../identity/index.ts");
  const identity = await loadOrCreateIdentity({ dir: nodeDir, passphrase, create: false });
  const chain = await connectChain(options);
  const writer = await writerFor(chain, options);
  const receipt = await registerDonor(writer, {
    operator: identity.operator,
    peerKey: identity.peerKeyHex,
    metadataURI: options.metadataUri,
  });
  printTransaction(chain, `registered operator ${identity.operatorAddress}`, receipt);
  process.stdout.write(`peer id  ${identity.peerId}\npeer key ${identity.peerKeyHex}\n`);
}

async function unbondCommand(amountText: string, options: DonorOptions): Promise<void> {
  const amount = parseAtp(amountText);
  const chain = await connectChain(options);
  const writer = await writerFor(chain, options);
  const receipt = await requestUnbond(writer, amount);
  printTransaction(chain, `unbonding ${formatAtp(amount)}`, receipt);
  const stake = await donorStake(chain.reader, writer.walletClient.account.address);
  const now = await chainNow(chain);
  process.stdout.write(`withdrawable at ${formatWhen(stake.unbondableAt, now)} (cell donor withdraw)\n`);
}

async function withdrawCommand(options: DonorOptions): Promise<void> {
  const chain = await connectChain(options);
  const writer = await writerFor(chain, options);
  const receipt = await withdrawStake(writer);
  const [withdrawn] = parseEventLogs({ abi: donorRegistryAbi, eventName: "Withdrawn", logs: receipt.logs });
  printTransaction(chain, `withdrew ${formatAtp(withdrawn?.args.amount ?? 0n)}`, receipt);
}

/** What `cell donor status` shows. */
export interface DonorStatus {
  donor: Address;
  atp: string;
  bonded: string;
  unbonding: string;
  unbondableAt: number | null;
  minStake: string;
  operator: Address | null;
  peerKey: string | null;
  metadataURI: string | null;
  active: boolean;
  jailedUntil: number | null;
}

async function statusCommand(options: StatusOptions): Promise<void> {
  const chain = await connectChain(options);
  const donor = options.address ? parseAddress(options.address, "--address") : await walletAddress(options);
  const { reader } = chain;
  const [stake, registration, params, balance, now] = await Promise.all([
    donorStake(reader, donor),
    registrationOf(reader, donor),
    donorParams(reader),
    atpBalance(reader, donor),
    chainNow(chain),
  ]);
  const registered = !isAddressEqual(registration.operator, zeroAddress);
  const [active, state] = registered
    ? await Promise.all([
        isActiveOperator(reader, registration.operator),
        operatorState(reader, registration.operator),
      ])
    : [false, undefined];
  const status: DonorStatus = {
    donor,
    atp: formatAtp(balance),
    bonded: formatAtp(stake.bonded),
    unbonding: formatAtp(stake.unbonding),
    unbondableAt: stake.unbonding > 0n ? Number(stake.unbondableAt) : null,
    minStake: formatAtp(params.minStake),
    operator: registered ? registration.operator : null,
    peerKey: registered ? registration.peerKey : null,
    metadataURI: registered ? registration.metadataURI : null,
    active,
    jailedUntil: state && state.jailedUntil > 0 ? state.jailedUntil : null,
  };
  process.stdout.write(options.json ? `${JSON.stringify(status)}\n` : formatDonorStatus(status, now));
}

export function formatDonorStatus(status: DonorStatus, now: number): string {
  const rows: [string, string][] = [
    ["donor", status.donor],
    ["ATP", status.atp],
    ["bonded", `${status.bonded} (minimum ${status.minStake})`],
    ["unbonding", status.unbonding],
    ["unbondable", status.unbondableAt === null ? "-" : formatWhen(status.unbondableAt, now)],
    ["operator", status.operator ?? "not registered (cell donor register)"],
    ["peer key", status.peerKey ?? "-"],
    ["active", status.active ? "yes" : "no"],
    [
      "jailed",
      status.jailedUntil === null ? "no" : `yes, rotatable from ${formatWhen(status.jailedUntil, now)}`,
    ],
  ];
  return `${rows.map(([label, value]) => `${label.padEnd(11)}${value}`).join("\n")}\n`;
}

/** The chain's clock (the latest block's time): unbonding and closes count by it, not the local clock. */
export async function chainNow(chain: ChainContext): Promise<number> {
  return Number((await chain.reader.publicClient.getBlock()).timestamp);
}
