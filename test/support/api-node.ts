import type { ApiNode, ApiServer } from "../../offchain/src/api/index.ts";

/**
 * The API's face of a node that serves only some parts (the explorer, settlement): it takes no
 * jobs and has no peers, since those routes are not what its callers measure or test.
 */
export function apiOnlyNode(parts: Partial<ApiNode>): ApiNode {
  return {
    peerId: "12D3KooWApiOnly",
    did: "did:key:z6Mk",
    operator: "0x0000000000000000000000000000000000000001",
    multiaddrs: () => [],
    chainInfo: { chainId: 31337, rpcUrl: "", contracts: {} },
    submitJob: () => Promise.reject(new Error("this node takes no jobs")),
    getJob: () => undefined,
    listJobs: () => [],
    peers: () => [],
    on: () => undefined,
    ...parts,
  };
}

/** A node serving only the explorer. */
export function explorerNode(explorer: ApiNode["explorer"]): ApiNode {
  return apiOnlyNode({ peerId: "12D3KooWExplorer", explorer });
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
