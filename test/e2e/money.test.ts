// The money loop on real nodes: a Hardhat devnet, libp2p over loopback and SQLite stores. A
// buyer runs 100 jobs with three replicas across four donors, one of which lies on some jobs.
// The buyer pays every agreeing executor a voucher at its own bid price; each donor's node
// settles what it holds in one settlement transaction, which also anchors its receipts, and
// withdraws it to the donor's staking wallet. Every wallet must rise by exactly what its
// accepted receipts earned; the liar gets nothing for the jobs it lied on. Then the buyer
// starts a close on a channel with unsettled vouchers, and the donor's watchtower redeems it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { isAddressEqual, parseAbiItem, parseUnits } from "viem";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  atpBalance,
  createReader,
  createWriter,
  devnetPrivateKey,
  getChannel,
  mintAtp,
  startChannelClose,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader } from "../../offchain/src/chain/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { jobAmount } from "../../offchain/src/payments/index.ts";
import type { VerdictReport } from "../../offchain/src/quorum/index.ts";
import type { Runtime } from "../../offchain/src/runtime/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { lyingRuntime } from "../support/lying-runtime.ts";
import { fundWithEth, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const JOBS = 100;
const AT_ONCE = 8;
const PRICES = [1_000n, 2_000n, 3_000n, 4_000n];
const LIAR = 3;
const DEPOSIT = parseUnits("50", 18);
const lies = (text: string) => text.includes("lie");
/**
 * The liar lies at once; honest donors answer 200 ms late, so the liar's receipt is in before
 * the honest quorum forms and it is outvoted rather than cancelled.
 */
function runtimeOf(i: number): (runtime: Pick<Runtime, "execute">) => Pick<Runtime, "execute"> {
  if (i === LIAR)
    return (runtime) => lyingRuntime(runtime, (job) => lies(new TextDecoder().decode(job.input)));
  return (runtime) => ({
    execute: async (job, options) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return runtime.execute(job, options);
    },
  });
}

const BATCH_SETTLED = parseAbiItem(
  "event BatchSettled(address indexed submitter, uint256 vouchers, uint256 total, uint256[] paidBitmap)",
);

describe(
  "the money loop: vouchers, settlement and the watchtower on real nodes",
  { timeout: 600_000 },
  () => {
    let cluster: Cluster;
    let reader: ChainReader;
    let donorNodes: ClusterNode[];
    let buyerNode: ClusterNode;
    const donors: CellNode[] = [];
    let buyer: CellNode;
    const verdicts: VerdictReport[] = [];
    /** The donors' staking wallets, their payees. */
    const wallets = PRICES.map((_, i) => privateKeyToAccount(devnetPrivateKey(i + 1) as Hex).address);

    before(async () => {
      cluster = await startCluster();
      const { devnet } = cluster;
      reader = createReader(devnet.rpcUrl, devnet.deployment);
      donorNodes = await Promise.all(
        PRICES.map((pricePerMegaFuel, i) =>
          cluster.prepare(`donor${i + 1}`, {
            donor: true,
            stakeWith: i + 1,
            config: {
              donor: { slots: 4, pricePerMegaFuel },
              runtime: { poolSize: 1 },
              payments: { enabled: true, channelPollMs: 200 },
              settlement: { epochSeconds: 86_400, pollMs: 200 },
              // the liar would dispute its outvotes with its own lying runtime
              slashing: { autoDispute: i !== LIAR },
            },
          }),
        ),
      );
      buyerNode = await cluster.prepare("buyer", {
        donor: false,
        config: { payments: { deposit: "50", topUpAmount: "0" } },
      });
      const admin = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
      for (const node of [...donorNodes, buyerNode])
        await fundWithEth(devnet.rpcUrl, node.identity.operatorAddress);
      await mintAtp(admin, buyerNode.identity.operatorAddress, 4n * DEPOSIT);
      const first = await startInProcess(donorNodes[0]!, [], { wrapRuntime: runtimeOf(0) });
      const bootstrap = first.multiaddrs().slice(0, 1);
      donors.push(first);
      for (const [i, node] of donorNodes.entries()) {
        if (i === 0) continue;
        donors.push(
          await startInProcess(node, bootstrap, {
            wrapRuntime: runtimeOf(i),
          }),
        );
      }
      buyer = await startInProcess(buyerNode, bootstrap, {
        verdictListener: { onVerdict: (report) => verdicts.push(report), onEquivocation: () => {} },
      });
      await until(
        () => buyer.peers().filter((peer) => peer.staked).length === PRICES.length,
        60_000,
        "the buyer to see all four staked donors",
      );
    });

    after(async () => {
      await buyer?.stop();
      await Promise.all(donors.map((donor) => donor.stop()));
      await cluster?.close();
    });

    /** What each donor's staking wallet is owed: ⌈price × fuel / 10^6⌉ over its agreeing receipts. */
    function owedByWallet(): Map<string, bigint> {
      const owed = new Map<string, bigint>();
      for (const report of verdicts.filter((r) => r.outcome === "accepted"))
        for (const replica of report.agreeing) {
          const i = donorNodes.findIndex((node) =>
            isAddressEqual(node.identity.operatorAddress, replica.operator),
          );
          const wallet = wallets[i]!.toLowerCase();
          owed.set(
            wallet,
            (owed.get(wallet) ?? 0n) + jobAmount(replica.pricePerMegaFuel, BigInt(replica.receipt.fuelUsed)),
          );
        }
      return owed;
    }

    it("pays every donor exactly what its accepted receipts earned, in one settlement transaction each; the liar nothing for its lies", async () => {
      const texts = Array.from({ length: JOBS }, (_, i) => (i % 10 === 3 ? `lie ${i}` : `job ${i}`));
      let next = 0;
      const worker = async () => {
        while (next < texts.length) {
          const text = texts[next++]!;
          const { jobId } = await buyer.submitJob({
            module: SHA256_WASM,
            input: new TextEncoder().encode(`1\n${text}`),
            fuelLimit: 100_000_000n,
            replicas: 3,
          });
          const job = await buyer.waitForJob(jobId, { timeoutMs: 120_000 });
          assert.equal(job.state, "completed", `${text}: ${JSON.stringify(job.events.slice(-3))}`);
        }
      };
      await Promise.all(Array.from({ length: AT_ONCE }, worker));
      assert.equal(verdicts.filter((r) => r.outcome === "accepted").length, JOBS);

      const liarOperator = donorNodes[LIAR]!.identity.operatorAddress;
      const liedOn = verdicts.filter((r) =>
        r.dissenting.some((d) => isAddressEqual(d.operator, liarOperator)),
      );
      assert.ok(liedOn.length > 0, "the liar was outvoted on the jobs it lied on");
      const owed = owedByWallet();
      await until(
        () => {
          const channels = buyer.paymentChannels();
          return (
            channels.length > 0 &&
            channels.every(
              (c) => c.acknowledged === c.spent && c.spent === (owed.get(c.payee.toLowerCase()) ?? 0n),
            )
          );
        },
        60_000,
        "every payee to acknowledge a voucher for everything it earned",
      );

      for (const [i, donor] of donors.entries()) {
        const wallet = wallets[i]!;
        const before = await atpBalance(reader, wallet);
        const fromBlock = await reader.publicClient.getBlockNumber();
        await donor.settlement!.settleNow();
        const settled = await reader.publicClient.getLogs({
          address: reader.deployment.paymentChannels,
          event: BATCH_SETTLED,
          args: { submitter: donorNodes[i]!.identity.operatorAddress },
          fromBlock,
        });
        const expected = owed.get(wallet.toLowerCase()) ?? 0n;
        if (expected > 0n) assert.equal(settled.length, 1, `donor${i + 1} settled in one transaction`);
        assert.equal(
          (await atpBalance(reader, wallet)) - before,
          expected,
          `donor${i + 1}'s wallet rose by exactly what its accepted receipts earned`,
        );
      }
      const liarEarned = owed.get(wallets[LIAR]!.toLowerCase()) ?? 0n;
      const liarAll = verdicts
        .flatMap((r) => [...r.agreeing, ...r.dissenting])
        .filter((replica) => isAddressEqual(replica.operator, liarOperator))
        .reduce(
          (sum, replica) => sum + jobAmount(replica.pricePerMegaFuel, BigInt(replica.receipt.fuelUsed)),
          0n,
        );
      assert.ok(liarEarned < liarAll, "the jobs the liar lied on paid it nothing");
      for (const report of verdicts.slice(0, 5)) {
        const paidTo = (buyer.getJob(report.jobId)?.events ?? [])
          .filter((event) => event.type === "paid")
          .map((event) => event.operator?.toLowerCase())
          .sort();
        const agreeing = report.agreeing.map((replica) => replica.operator.toLowerCase()).sort();
        assert.deepEqual(paidTo, agreeing, "each agreeing executor's pay is among the job's events");
      }
    });

    it("a buyer that starts a close early: the donor's watchtower redeems its latest voucher in the window", async () => {
      const settledBefore = new Map(buyer.paymentChannels().map((c) => [c.channelId, c.spent]));
      const { jobId } = await buyer.submitJob({
        module: SHA256_WASM,
        input: new TextEncoder().encode("1\nafter the settlement"),
        fuelLimit: 100_000_000n,
        replicas: 3,
      });
      assert.equal((await buyer.waitForJob(jobId, { timeoutMs: 120_000 })).state, "completed");
      const report = verdicts.find((r) => r.jobId === jobId)!;
      const payee =
        wallets[
          donorNodes.findIndex((node) =>
            isAddressEqual(node.identity.operatorAddress, report.agreeing[0]!.operator),
          )
        ]!;
      const grown = () =>
        buyer
          .paymentChannels()
          .find(
            (c) =>
              isAddressEqual(c.payee, payee) &&
              c.spent > (settledBefore.get(c.channelId) ?? 0n) &&
              c.acknowledged === c.spent,
          );
      await until(() => grown() !== undefined, 30_000, "the payee to acknowledge the new voucher");
      const channel = grown()!;
      const onChain = await getChannel(reader, channel.channelId);
      assert.ok(channel.spent > onChain.paid, "the channel holds an unsettled voucher");
      const before = await atpBalance(reader, payee);
      const buyerWriter = createWriter(
        cluster.devnet.rpcUrl,
        cluster.devnet.deployment,
        buyerNode.identity.operator,
      );
      await startChannelClose(buyerWriter, {
        buyer: channel.buyer,
        signer: channel.signer,
        payee: channel.payee,
        nonce: channel.nonce,
      });
      let paid = onChain.paid;
      await until(
        () => paid === channel.spent,
        60_000,
        "the watchtower to redeem the latest voucher",
        async () => void (paid = (await getChannel(reader, channel.channelId)).paid),
      );
      assert.equal(await atpBalance(reader, payee), before + (channel.spent - onChain.paid), "paid in full");
    });
  },
);
