// Contract calls from the browser wallet: stake and open channels with EIP-2612 permits (one
// transaction each), register, unbond, withdraw, top up and close. Reads go to the node's RPC.
import { parseSignature, type Abi, type AbiParameter, type Address, type Hash, type Hex } from "viem";
import { atpTokenAbi, donorRegistryAbi, paymentChannelsAbi } from "../../src/chain/abis.ts";
import type { ConsoleConfig, Connection } from "./wallet.ts";

/** Seconds a permit signed for one transaction stays valid. */
const PERMIT_TTL_SECONDS = 3_600n;

const permitTypes = {
  Permit: [
    { name: "owner", type: "address" },
    { name: "spender", type: "address" },
    { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
} as const;

export interface ChannelKey {
  buyer: Address;
  signer: Address;
  payee: Address;
  nonce: bigint;
}

async function write(
  connection: Connection,
  address: Address,
  abi: Abi,
  functionName: string,
  args: readonly unknown[],
): Promise<Hash> {
  const { walletClient, publicClient, account, chain } = connection;
  // Simulating first turns a revert into the contract's custom error before the wallet asks.
  await publicClient.simulateContract({ address, abi, functionName, args, account });
  const hash = await walletClient.writeContract({ address, abi, functionName, args, account, chain });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`the transaction ${hash} reverted`);
  return hash;
}

export function atpBalance(connection: Connection, config: ConsoleConfig): Promise<bigint> {
  return connection.publicClient.readContract({
    address: config.contracts.atpToken,
    abi: atpTokenAbi,
    functionName: "balanceOf",
    args: [connection.account],
  });
}

async function signPermit(connection: Connection, config: ConsoleConfig, spender: Address, value: bigint) {
  const token = { address: config.contracts.atpToken, abi: atpTokenAbi } as const;
  const owner = connection.account;
  const [[, name, version, chainId, verifyingContract], nonce] = await Promise.all([
    connection.publicClient.readContract({ ...token, functionName: "eip712Domain" }),
    connection.publicClient.readContract({ ...token, functionName: "nonces", args: [owner] }),
  ]);
  const deadline = BigInt(Math.floor(Date.now() / 1000)) + PERMIT_TTL_SECONDS;
  const signature = await connection.walletClient.signTypedData({
    account: owner,
    domain: { name, version, chainId, verifyingContract },
    types: permitTypes,
    primaryType: "Permit",
    message: { owner, spender, value, nonce, deadline },
  });
  const { r, s, v, yParity } = parseSignature(signature);
  return { deadline, v: Number(v ?? BigInt(27 + yParity)), r, s };
}

// ---------------------------------------------------------------- donors

export interface DonorState {
  bonded: bigint;
  unbonding: bigint;
  unbondableAt: bigint;
  operator: Address;
  peerKey: Hex;
  registered: boolean;
  /** How far the chain's clock is ahead of this browser's, in seconds (a devnet may jump ahead). */
  chainClockOffset: number;
}

export async function donorState(connection: Connection, config: ConsoleConfig): Promise<DonorState> {
  const registry = { address: config.contracts.donorRegistry, abi: donorRegistryAbi } as const;
  const [[bonded, unbonding, unbondableAt], registration, block] = await Promise.all([
    connection.publicClient.readContract({ ...registry, functionName: "stakes", args: [connection.account] }),
    connection.publicClient.readContract({
      ...registry,
      functionName: "registrationOf",
      args: [connection.account],
    }),
    connection.publicClient.getBlock({ blockTag: "latest" }),
  ]);
  const registered = BigInt(registration.operator) !== 0n;
  return {
    bonded,
    unbonding,
    unbondableAt,
    operator: registration.operator,
    peerKey: registration.peerKey,
    registered,
    chainClockOffset: Math.max(0, Number(block.timestamp) - Math.floor(Date.now() / 1000)),
  };
}

/** Stakes (or adds to the stake) in one transaction: a permit instead of an approval. */
export async function stakeWithPermit(connection: Connection, config: ConsoleConfig, amount: bigint) {
  const registry = config.contracts.donorRegistry;
  const { deadline, v, r, s } = await signPermit(connection, config, registry, amount);
  return write(connection, registry, donorRegistryAbi, "stakeWithPermit", [amount, deadline, v, r, s]);
}

export interface RegistrationProof {
  operator: Address;
  peerKey: Hex;
  signature: Hex;
}

export function registerNode(
  connection: Connection,
  config: ConsoleConfig,
  proof: RegistrationProof,
  metadataURI: string,
) {
  return write(connection, config.contracts.donorRegistry, donorRegistryAbi, "register", [
    proof.operator,
    proof.peerKey,
    metadataURI,
    proof.signature,
  ]);
}

export function requestUnbond(connection: Connection, config: ConsoleConfig, amount: bigint) {
  return write(connection, config.contracts.donorRegistry, donorRegistryAbi, "requestUnbond", [amount]);
}

export function withdrawStake(connection: Connection, config: ConsoleConfig) {
  return write(connection, config.contracts.donorRegistry, donorRegistryAbi, "withdraw", []);
}

// ---------------------------------------------------------------- channels

export interface ChannelRow {
  channelId: Hex;
  key: ChannelKey;
  deposit: bigint;
  paid: bigint;
  closesAt: bigint;
}

/** The channels this wallet opened, with their state now (a devnet-sized log scan). */
export async function myChannels(connection: Connection, config: ConsoleConfig): Promise<ChannelRow[]> {
  const channels = { address: config.contracts.paymentChannels, abi: paymentChannelsAbi } as const;
  const logs = await connection.publicClient.getContractEvents({
    ...channels,
    eventName: "ChannelOpened",
    args: { buyer: connection.account },
    fromBlock: "earliest",
    toBlock: "latest",
    strict: true,
  });
  return Promise.all(
    logs.map(async ({ args }) => {
      const [deposit, paid, closesAt] = await connection.publicClient.readContract({
        ...channels,
        functionName: "channels",
        args: [args.channelId],
      });
      const key = { buyer: args.buyer, signer: args.signer, payee: args.payee, nonce: args.nonce };
      return { channelId: args.channelId, key, deposit, paid, closesAt };
    }),
  );
}

export async function openChannelWithPermit(
  connection: Connection,
  config: ConsoleConfig,
  channel: { signer: Address; payee: Address; amount: bigint },
) {
  const contract = config.contracts.paymentChannels;
  const nonce = BigInt(Date.now()) * 1000n + BigInt(Math.floor(Math.random() * 1000));
  const { deadline, v, r, s } = await signPermit(connection, config, contract, channel.amount);
  return write(connection, contract, paymentChannelsAbi, "openWithPermit", [
    channel.signer,
    channel.payee,
    nonce,
    channel.amount,
    deadline,
    v,
    r,
    s,
  ]);
}

export async function topUpChannel(
  connection: Connection,
  config: ConsoleConfig,
  key: ChannelKey,
  amount: bigint,
) {
  const contract = config.contracts.paymentChannels;
  const allowance = await connection.publicClient.readContract({
    address: config.contracts.atpToken,
    abi: atpTokenAbi,
    functionName: "allowance",
    args: [connection.account, contract],
  });
  if (allowance < amount)
    await write(connection, config.contracts.atpToken, atpTokenAbi, "approve", [contract, amount]);
  return write(connection, contract, paymentChannelsAbi, "topUp", [key, amount]);
}

export function startClose(connection: Connection, config: ConsoleConfig, key: ChannelKey) {
  return write(connection, config.contracts.paymentChannels, paymentChannelsAbi, "startClose", [
    key.signer,
    key.payee,
    key.nonce,
  ]);
}

export function finalizeClose(connection: Connection, config: ConsoleConfig, key: ChannelKey) {
  return write(connection, config.contracts.paymentChannels, paymentChannelsAbi, "finalizeClose", [key]);
}

// ---------------------------------------------------------------- receipts

/** The proof `GET /receipts/:jobId/proof` serves. */
export interface InclusionProof {
  epoch: string | number;
  submitter: Address;
  root: Hex;
  receipt: Record<string, unknown>;
  proof: Hex[];
}

/** Asks PaymentChannels.verifyReceiptInclusion whether the receipt is under the anchored root. */
export function verifyInclusion(
  publicClient: Connection["publicClient"],
  config: ConsoleConfig,
  proof: InclusionProof,
): Promise<boolean> {
  const fn = paymentChannelsAbi.find(
    (item) => item.type === "function" && item.name === "verifyReceiptInclusion",
  ) as { inputs: readonly AbiParameter[] } | undefined;
  const receiptParam = fn?.inputs[2];
  if (!receiptParam) throw new Error("PaymentChannels has no verifyReceiptInclusion");
  return publicClient.readContract({
    address: config.contracts.paymentChannels,
    abi: paymentChannelsAbi,
    functionName: "verifyReceiptInclusion",
    args: [proof.submitter, BigInt(proof.epoch), coerce(receiptParam, proof.receipt) as never, proof.proof],
  });
}

/** JSON (integers as decimal strings) into the values viem encodes for `param`. */
export function coerce(param: AbiParameter, value: unknown): unknown {
  if (param.type.startsWith("uint") || param.type.startsWith("int")) return BigInt(value as string);
  if (param.type === "tuple" && "components" in param) {
    const record = value as Record<string, unknown>;
    return Object.fromEntries(
      param.components.map((component) => [component.name, coerce(component, record[component.name ?? ""])]),
    );
  }
  return value;
}
