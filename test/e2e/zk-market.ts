// A small zk market on real nodes, shared by the zk end-to-end tests: a Hardhat devnet with
// ZkChannels and the committed ci circuit, two staked donors at different prices and a buyer with
// `payments.zk`, connected over loopback; the buyer's accepted verdicts are recorded.
import assert from "node:assert/strict";
import { isAddressEqual, parseUnits } from "viem";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createReader, createWriter, devnetPrivateKey, mintAtp } from "../../offchain/src/chain/index.ts";
import type { ChainReader } from "../../offchain/src/chain/index.ts";
import type { CellNode, NodeConfigInput } from "../../offchain/src/node/index.ts";
import { jobAmount } from "../../offchain/src/payments/index.ts";
import type { VerdictReport } from "../../offchain/src/quorum/index.ts";
import { fundWithEth, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

export const ZK_PRICES = [1_000n, 3_000n];
const DEPOSIT = parseUnits("50", 18);

export interface ZkMarket {
  cluster: Cluster;
  reader: ChainReader;
  donorNodes: ClusterNode[];
  buyerNode: ClusterNode;
  donors: CellNode[];
  buyer: CellNode;
  verdicts: VerdictReport[];
  /** The donors' staking wallets (their payees), in donor order. */
  wallets: Address[];
  /** ⌈price × fuel / 10^6⌉ over the wallet's donor's agreeing receipts of accepted verdicts. */
  owedTo(wallet: Address): bigint;
  stop(): Promise<void>;
}

export async function startZkMarket(
  options: { donorSettlement?: NodeConfigInput["settlement"] } = {},
): Promise<ZkMarket> {
  const cluster = await startCluster();
  const { devnet } = cluster;
  assert.ok(devnet.deployment.zkChannels, "the devnet deploys ZkChannels");
  const reader = createReader(devnet.rpcUrl, devnet.deployment);
  const donorNodes = await Promise.all(
    ZK_PRICES.map((pricePerMegaFuel, i) =>
      cluster.prepare(`donor${i + 1}`, {
        donor: true,
        stakeWith: i + 1,
        config: {
          donor: { slots: 4, pricePerMegaFuel },
          runtime: { poolSize: 1 },
          payments: { enabled: true, channelPollMs: 200 },
          settlement: { epochSeconds: 86_400, pollMs: 200, ...options.donorSettlement },
        },
      }),
    ),
  );
  const buyerNode = await cluster.prepare("buyer", {
    donor: false,
    config: { payments: { zk: true, deposit: "50", topUpAmount: "0" } },
  });
  const admin = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
  for (const node of [...donorNodes, buyerNode])
    await fundWithEth(devnet.rpcUrl, node.identity.operatorAddress);
  await mintAtp(admin, buyerNode.identity.operatorAddress, 2n * DEPOSIT);
  const first = await startInProcess(donorNodes[0]!);
  const bootstrap = first.multiaddrs().slice(0, 1);
  const donors = [first, await startInProcess(donorNodes[1]!, bootstrap)];
  const verdicts: VerdictReport[] = [];
  const buyer = await startInProcess(buyerNode, bootstrap, {
    verdictListener: { onVerdict: (report) => verdicts.push(report), onEquivocation: () => {} },
  });
  await until(
    () => buyer.peers().filter((peer) => peer.staked).length === ZK_PRICES.length,
    60_000,
    "the buyer to see both staked donors",
  );
  const wallets = ZK_PRICES.map((_, i) => privateKeyToAccount(devnetPrivateKey(i + 1) as Hex).address);
  const owedTo = (wallet: Address): bigint => {
    let owed = 0n;
    for (const report of verdicts.filter((r) => r.outcome === "accepted"))
      for (const replica of report.agreeing) {
        const i = donorNodes.findIndex((node) =>
          isAddressEqual(node.identity.operatorAddress, replica.operator),
        );
        if (isAddressEqual(wallets[i]!, wallet))
          owed += jobAmount(replica.pricePerMegaFuel, BigInt(replica.receipt.fuelUsed));
      }
    return owed;
  };
  return {
    cluster,
    reader,
    donorNodes,
    buyerNode,
    donors,
    buyer,
    verdicts,
    wallets,
    owedTo,
    stop: async () => {
      await buyer.stop();
      await Promise.all(donors.map((donor) => donor.stop()));
      await cluster.close();
    },
  };
}
