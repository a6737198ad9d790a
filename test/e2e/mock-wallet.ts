// A browser wallet for tests: an EIP-1193 provider announced over EIP-6963 in the page, whose
// every request crosses to Node (page.exposeFunction) where a viem account signs and sends
// on the devnet. It starts on another chain, so the console must add and switch to the devnet.
import { Wallet } from "ethers";
import { createPublicClient, createWalletClient, http, type Hex, type PrivateKeyAccount } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { Page } from "playwright-core";

export interface MockWallet {
  readonly address: Hex;
  /** Every method the page asked for, in order. */
  readonly calls: { method: string; params: unknown[] }[];
  /** Transactions the wallet sent, in order. */
  readonly sent: Hex[];
  /** The next request that needs the user's consent is refused (code 4001). */
  rejectNext(): void;
}

const CONSENT_METHODS = new Set(["eth_sendTransaction", "eth_signTypedData_v4"]);
/** The chain the wallet is on before the console switches it (Ethereum mainnet). */
const INITIAL_CHAIN_ID = 1;

export async function installMockWallet(
  page: Page,
  options: { privateKey: Hex; rpcUrl: string; chainId: number },
): Promise<MockWallet> {
  const account: PrivateKeyAccount = privateKeyToAccount(options.privateKey);
  const transport = http(options.rpcUrl);
  const publicClient = createPublicClient({ transport });
  const walletClient = createWalletClient({ account, transport });
  const signer = new Wallet(options.privateKey);
  const knownChains = new Set([INITIAL_CHAIN_ID]);
  let chainId = INITIAL_CHAIN_ID;
  let rejectNext = false;
  const calls: MockWallet["calls"] = [];
  const sent: Hex[] = [];

  const handle = async (method: string, params: unknown[]): Promise<unknown> => {
    if (CONSENT_METHODS.has(method) && rejectNext) {
      rejectNext = false;
      throw Object.assign(new Error("User rejected the request."), { code: 4001 });
    }
    switch (method) {
      case "eth_requestAccounts":
      case "eth_accounts":
        return [account.address];
      case "eth_chainId":
        return `0x${chainId.toString(16)}`;
      case "wallet_switchEthereumChain": {
        const wanted = Number((params[0] as { chainId: string }).chainId);
        if (!knownChains.has(wanted))
          throw Object.assign(new Error("Unrecognized chain ID."), { code: 4902 });
        chainId = wanted;
        return null;
      }
      case "wallet_addEthereumChain": {
        const added = params[0] as { chainId: string; rpcUrls: string[] };
        if (added.rpcUrls[0] !== options.rpcUrl) throw new Error(`unexpected RPC URL ${added.rpcUrls[0]}`);
        knownChains.add(Number(added.chainId));
        return null;
      }
      case "eth_signTypedData_v4": {
        const typed = JSON.parse(params[1] as string) as {
          domain: Record<string, unknown>;
          types: Record<string, { name: string; type: string }[]>;
          message: Record<string, unknown>;
        };
        const { EIP712Domain: _domain, ...types } = typed.types;
        return signer.signTypedData(typed.domain, types, typed.message);
      }
      case "eth_sendTransaction": {
        if (chainId !== options.chainId) throw new Error(`the wallet is on chain ${chainId}`);
        const tx = params[0] as { to: Hex; data?: Hex; value?: Hex; gas?: Hex };
        const hash = await walletClient.sendTransaction({
          chain: null,
          to: tx.to,
          data: tx.data,
          value: tx.value ? BigInt(tx.value) : undefined,
          gas: tx.gas ? BigInt(tx.gas) : undefined,
        });
        sent.push(hash);
        return hash;
      }
      default:
        return publicClient.request({ method, params } as never);
    }
  };

  await page.exposeFunction("__cellTestWallet", async (method: string, paramsJson: string) => {
    const params = JSON.parse(paramsJson) as unknown[];
    calls.push({ method, params });
    try {
      return JSON.stringify({ result: await handle(method, params) });
    } catch (error) {
      const { code, message } = error as { code?: number; message: string };
      return JSON.stringify({ error: { code: code ?? -32603, message } });
    }
  });
  await page.addInitScript(() => {
    const bridge = (window as unknown as { __cellTestWallet: (m: string, p: string) => Promise<string> })
      .__cellTestWallet;
    const listeners = new Map<string, Set<(...args: unknown[]) => void>>();
    const provider = {
      async request({ method, params }: { method: string; params?: unknown[] }) {
        const reply = JSON.parse(await bridge(method, JSON.stringify(params ?? []))) as {
          result?: unknown;
          error?: { code: number; message: string };
        };
        if (reply.error) throw Object.assign(new Error(reply.error.message), { code: reply.error.code });
        return reply.result;
      },
      on(event: string, listener: (...args: unknown[]) => void) {
        listeners.set(event, (listeners.get(event) ?? new Set()).add(listener));
      },
      removeListener(event: string, listener: (...args: unknown[]) => void) {
        listeners.get(event)?.delete(listener);
      },
    };
    // The test's stand-in for the user switching accounts or chains in the wallet.
    (
      window as unknown as { __cellTestWalletEmit: (event: string, value: unknown) => void }
    ).__cellTestWalletEmit = (event, value) => listeners.get(event)?.forEach((listener) => listener(value));
    const info = {
      uuid: "6c1b7a2e-0000-4000-8000-000000000001",
      name: "Test Wallet",
      icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E",
      rdns: "org.cell.test-wallet",
    };
    const announce = () =>
      window.dispatchEvent(
        new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }),
      );
    window.addEventListener("eip6963:requestProvider", announce);
    announce();
  });

  return {
    address: account.address,
    calls,
    sent,
    rejectNext: () => (rejectNext = true),
  };
}
