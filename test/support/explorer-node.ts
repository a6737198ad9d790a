import type { ApiNode, ApiServer } from "../../offchain/src/api/index.ts";

/** A node serving only the explorer: the API's job routes are not what these callers measure or test. */
export function explorerNode(explorer: ApiNode["explorer"]): ApiNode {
  return {
    peerId: "12D3KooWExplorer",
    did: "did:key:z6Mk",
    operator: "0x0000000000000000000000000000000000000001",
    multiaddrs: () => [],
    chainInfo: { chainId: 31337, rpcUrl: "", contracts: {} },
    submitJob: () => Promise.reject(new Error("not a buyer")),
    getJob: () => undefined,
    listJobs: () => [],
    peers: () => [],
    on: () => undefined,
    explorer,
  };
}

/** An unauthenticated GET against the API server: its status and JSON body. */
export interface ExplorerAnswer {
  status: number;
  body: Record<string, unknown>;
}

export async function getExplorer(server: ApiServer, path: string): Promise<ExplorerAnswer> {
  const response = await fetch(`${server.url}${path}`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
