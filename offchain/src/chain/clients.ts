import { createPublicClient, createWalletClient, defineChain, http } from "viem";
import type { Account, Chain, Hex, PublicClient, Transport, WalletClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { Deployment } from "./deployments.ts";

export type CellWalletClient = WalletClient<Transport, Chain, Account>;

/** What reads need: a public client and where the contracts are. */
export interface ChainReader {
  publicClient: PublicClient;
  deployment: Deployment;
}

/** What writes need in addition: a wallet client with an account. */
export interface ChainWriter extends ChainReader {
  walletClient: CellWalletClient;
}

export function cellChain(chainId: number, rpcUrl: string): Chain {
  return defineChain({
    id: chainId,
    name: chainId === 31337 ? "Cell devnet" : `chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
}

export function createReader(rpcUrl: string, deployment: Deployment): ChainReader {
  const chain = cellChain(deployment.chainId, rpcUrl);
  return { publicClient: createPublicClient({ chain, transport: http(rpcUrl) }) as PublicClient, deployment };
}

/** A writer signing with `account` (a local account or a private key). */
export function createWriter(rpcUrl: string, deployment: Deployment, account: Account | Hex): ChainWriter {
  const chain = cellChain(deployment.chainId, rpcUrl);
  const signer = typeof account === "string" ? privateKeyToAccount(account) : account;
  return {
    ...createReader(rpcUrl, deployment),
    walletClient: createWalletClient({ chain, transport: http(rpcUrl), account: signer }),
  };
}
