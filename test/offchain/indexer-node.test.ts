// A real node indexes the devnet for its explorer by default: its API serves the donors that
// staked before it started and what is staked while it runs.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createApiServer, type ApiServer } from "../../offchain/src/api/index.ts";
import { createWriter, devnetPrivateKey, mintAtp, stake } from "../../offchain/src/chain/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { startCluster, startInProcess, until, type Cluster, type ClusterNode } from "../e2e/cluster.ts";

const TOKEN = "indexer-node-test-token-0123456789";

interface StakeItem {
  donor: string;
  bonded: string;
  operator: string | null;
}

describe("a node's explorer on a devnet", { timeout: 120_000 }, () => {
  let cluster: Cluster;
  let prepared: ClusterNode;
  let node: CellNode;
  let server: ApiServer;

  before(async () => {
    cluster = await startCluster();
    prepared = await cluster.prepare("buyer", {
      donor: false,
      stakeWith: 1,
      config: { indexer: { enabled: true, pollMs: 100 } },
    });
    node = await startInProcess(prepared);
    server = await createApiServer({ node, token: TOKEN });
  });

  after(async () => {
    await server?.close();
    await node?.stop();
    await cluster?.close();
  });

  async function explorer<T>(path: string): Promise<T> {
    const response = await fetch(`${server.url}/explorer/${path}`);
    assert.equal(response.status, 200, `GET /explorer/${path}`);
    return (await response.json()) as T;
  }

  it("backfills from the deployment block and follows new stakes", async () => {
    const donor = createWriter(cluster.devnet.rpcUrl, cluster.devnet.deployment, devnetPrivateKey(1));
    const address = donor.walletClient.account.address;
    let stakes: StakeItem[] = [];
    const refresh = async () => {
      stakes = (await explorer<{ items: StakeItem[] }>(`stakes?address=${address}`)).items;
    };
    await until(() => stakes.length === 1, 20_000, "the staked donor in the explorer", refresh);
    assert.equal(stakes[0]!.operator, prepared.identity.operatorAddress);
    const bonded = BigInt(stakes[0]!.bonded);

    const faucet = createWriter(cluster.devnet.rpcUrl, cluster.devnet.deployment, cluster.devnet.deployerKey);
    await mintAtp(faucet, address, 5n);
    const { blockNumber } = await stake(donor, 5n);
    await until(() => BigInt(stakes[0]?.bonded ?? 0) === bonded + 5n, 20_000, "the new stake", refresh);
    const status = await explorer<{ indexedBlock: string; backfill: { done: boolean } }>("status");
    assert.ok(BigInt(status.indexedBlock) >= blockNumber);
    assert.equal(status.backfill.done, true);
  });
});
