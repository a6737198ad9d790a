// Wallets: EIP-6963 discovery (each wallet announces itself) with the injected
// `window.ethereum` as the fallback; the node's chain is switched to, or added first.
import {
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  getAddress,
  http,
  type Address,
  type Chain,
  type PublicClient,
  type WalletClient,
} from "viem";

export interface Eip1193Provider {
  request(args: { method: string; params?: unknown[] | object }): Promise<unknown>;
  on?(event: string, listener: (...args: unknown[]) => void): void;
  removeListener?(event: string, listener: (...args: unknown[]) => void): void;
}

export interface WalletInfo {
  uuid: string;
  name: string;
  icon: string;
  rdns: string;
}

export interface DiscoveredWallet {
  info: WalletInfo;
  provider: Eip1193Provider;
}

export interface ConsoleConfig {
  chainId: number;
  rpcUrl: string;
  contracts: { atpToken: Address; donorRegistry: Address; paymentChannels: Address };
  operator: Address;
  peerId: string;
}

/** More announcements than this are ignored: a page has a few wallets, not hundreds. */
const MAX_WALLETS = 16;

/**
 * Collects EIP-6963 announcements (deduplicated by uuid, at most MAX_WALLETS) and calls
 * `onChange` with the list each time it grows; returns the stop function.
 */
export function discoverWallets(onChange: (wallets: DiscoveredWallet[]) => void): () => void {
  const found = new Map<string, DiscoveredWallet>();
  const onAnnounce = (event: Event) => {
    const detail = (event as CustomEvent<DiscoveredWallet>).detail;
    if (!detail?.info?.uuid || typeof detail.provider?.request !== "function") return;
    if (found.has(detail.info.uuid) || found.size >= MAX_WALLETS) return;
    found.set(detail.info.uuid, detail);
    onChange([...found.values()]);
  };
  window.addEventListener("eip6963:announceProvider", onAnnounce);
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  return () => window.removeEventListener("eip6963:announceProvider", onAnnounce);
}

/** The pre-EIP-6963 injected wallet, when there is one. */
export function injectedWallet(): DiscoveredWallet | undefined {
  const ethereum = (window as unknown as { ethereum?: Eip1193Provider }).ethereum;
  if (!ethereum || typeof ethereum.request !== "function") return undefined;
  return {
    info: { uuid: "injected", name: "Browser wallet", icon: "", rdns: "injected" },
    provider: ethereum,
  };
}

export function chainOf(config: ConsoleConfig): Chain {
  return defineChain({
    id: config.chainId,
    name: config.chainId === 31337 ? "Cell devnet" : `Chain ${config.chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [config.rpcUrl] } },
  });
}

export interface Connection {
  provider: Eip1193Provider;
  account: Address;
  walletClient: WalletClient;
  publicClient: PublicClient;
  chain: Chain;
}

export function readClient(config: ConsoleConfig): PublicClient {
  return createPublicClient({ chain: chainOf(config), transport: http(config.rpcUrl), pollingInterval: 500 });
}

/** Asks the wallet for an account, then puts it on the node's chain. */
export async function connect(wallet: DiscoveredWallet, config: ConsoleConfig): Promise<Connection> {
  const accounts = (await wallet.provider.request({ method: "eth_requestAccounts" })) as string[];
  const first = accounts[0];
  if (!first) throw new Error("The wallet shared no account.");
  await ensureChain(wallet.provider, config);
  const chain = chainOf(config);
  const account = getAddress(first);
  return {
    provider: wallet.provider,
    account,
    chain,
    walletClient: createWalletClient({ account, chain, transport: custom(wallet.provider) }),
    publicClient: readClient(config),
  };
}

const UNRECOGNIZED_CHAIN = 4902;

async function ensureChain(provider: Eip1193Provider, config: ConsoleConfig): Promise<void> {
  const chainIdHex = `0x${config.chainId.toString(16)}`;
  const current = (await provider.request({ method: "eth_chainId" })) as string;
  if (Number(current) === config.chainId) return;
  try {
    await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: chainIdHex }] });
  } catch (error) {
    if ((error as { code?: number }).code !== UNRECOGNIZED_CHAIN) throw error;
    const chain = chainOf(config);
    await provider.request({
      method: "wallet_addEthereumChain",
      params: [
        {
          chainId: chainIdHex,
          chainName: chain.name,
          nativeCurrency: chain.nativeCurrency,
          rpcUrls: [config.rpcUrl],
        },
      ],
    });
    await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: chainIdHex }] });
  }
}

/**
 * Calls `onChange` when the wallet switches account or chain (EIP-1193 events), so the page
 * asks to connect again rather than act for the wrong account; returns the unsubscribe.
 */
export function watchWallet(provider: Eip1193Provider, onChange: () => void): () => void {
  const listener = () => onChange();
  provider.on?.("accountsChanged", listener);
  provider.on?.("chainChanged", listener);
  return () => {
    provider.removeListener?.("accountsChanged", listener);
    provider.removeListener?.("chainChanged", listener);
  };
}
