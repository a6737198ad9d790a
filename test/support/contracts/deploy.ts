// Deploys the three contracts on a Hardhat network connection (no tests here).
import type { NetworkConnection } from "hardhat/types/network";
import { getContract, maxUint256, parseEther } from "viem";
import type { Abi, Address } from "viem";
import {
  atpTokenAbi,
  donorRegistryAbi,
  juryCourtAbi,
  paymentChannelsAbi,
} from "../../../offchain/src/chain/index.ts";
import { CHALLENGE_WINDOW, courtParams, donorParams } from "./fixture.ts";

export const FUNDS = parseEther("1000000");

function pick<T>(items: readonly T[], index: number): T {
  const item = items[index];
  if (item === undefined) throw new Error(`the test network has no account ${index}`);
  return item;
}

/**
 * Typed handles use the committed ABIs of offchain/src/chain (the ones the off-chain code uses),
 * so the tests type-check without compiled artifacts and exercise those very ABIs.
 */
export async function typedContracts(connection: NetworkConnection) {
  const { viem } = connection;
  const publicClient = await viem.getPublicClient();
  const wallet = pick(await viem.getWalletClients(), 0);
  const bind = <const abi extends Abi>(abi: abi, address: Address) =>
    getContract({ abi, address, client: { public: publicClient, wallet } });
  return {
    token: (address: Address) => bind(atpTokenAbi, address),
    registry: (address: Address) => bind(donorRegistryAbi, address),
    channels: (address: Address) => bind(paymentChannelsAbi, address),
    court: (address: Address) => bind(juryCourtAbi, address),
  };
}

/** Token, registry, court and channels; every test account holds FUNDS and approved the three. */
export async function deployCell(connection: NetworkConnection) {
  const { viem } = connection;
  const wallets = await viem.getWalletClients();
  const deployer = pick(wallets, 0);
  const treasury = pick(wallets, 1);
  const publicClient = await viem.getPublicClient();
  const chainId = await publicClient.getChainId();
  const typed = await typedContracts(connection);
  const token = typed.token((await viem.deployContract("ATPToken", [deployer.account.address])).address);
  const registry = typed.registry(
    (
      await viem.deployContract("DonorRegistry", [
        token.address,
        deployer.account.address,
        donorParams(treasury.account.address),
      ])
    ).address,
  );
  const court = typed.court(
    (await viem.deployContract("JuryCourt", [registry.address, deployer.account.address, courtParams()]))
      .address,
  );
  await registry.write.setCourt([court.address]);
  const channels = typed.channels(
    (await viem.deployContract("PaymentChannels", [token.address, CHALLENGE_WINDOW])).address,
  );
  for (const wallet of wallets.slice(2)) {
    await token.write.mint([wallet.account.address, FUNDS]);
    await token.write.approve([registry.address, maxUint256], { account: wallet.account });
    await token.write.approve([channels.address, maxUint256], { account: wallet.account });
    await token.write.approve([court.address, maxUint256], { account: wallet.account });
  }
  return {
    viem,
    typed,
    publicClient,
    chainId,
    token,
    registry,
    court,
    channels,
    deployer,
    treasury,
    reporter: pick(wallets, 2),
    buyer: pick(wallets, 3),
    payee: pick(wallets, 4),
    payee2: pick(wallets, 5),
    /** Wallets 6.. stake as donors. */
    donors: wallets.slice(6),
  };
}
