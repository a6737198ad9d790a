// Five real nodes over loopback libp2p, a real Hardhat chain and real SQLite stores:
// four staked donors run as child processes, the buyer runs here.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { recoverTypedDataAddress } from "viem";
import type { Hex } from "viem";
import { pino } from "pino";
import { z } from "zod/v4";
import { createReader, donorRegistryAbi, verifyReceiptOnChain } from "../../offchain/src/chain/index.ts";
import type { ChainReader } from "../../offchain/src/chain/index.ts";
import { createMeshNode, MeshError } from "../../offchain/src/p2p/index.ts";
import type { MeshNode } from "../../offchain/src/p2p/index.ts";
import type { CellNode, JobView } from "../../offchain/src/node/index.ts";
import {
  MESSAGE_LIMITS,
  PROTOCOL_ASSIGN,
  PROTOCOL_BID,
  PROTOCOL_RECEIPT,
  PROTOCOL_STATUS,
  TOPIC_CAPS,
  TOPIC_JOBS,
  TOPIC_RECEIPTS,
  CID,
  ReceiptBatchAnnounceSchema,
  ReceiptBatchBlockSchema,
  CapabilityAdvertSchema,
  JobAnnounceBatchSchema,
  cellDomain,
  cidOf,
  jobSpecFromWire,
  receiptFromWire,
  receiptTypes,
  signBid,
  verifyReceipt,
} from "../../offchain/src/protocol/index.ts";
import type { ReceiptBatchAnnounce, ReceiptBatchBlock } from "../../offchain/src/protocol/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { spinModule, startChild, startCluster, startInProcess, until } from "./cluster.ts";
import type { ChildNode, Cluster, ClusterNode } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
const DONORS = 4;
const anything = z.any();
const raw = {
  request: anything,
  response: anything,
  maxRequestBytes: 1024 * 1024,
  maxResponseBytes: 1024 * 1024,
};

describe("Cell node mesh: 4 staked donors and a buyer", { timeout: 240_000 }, () => {
  let cluster: Cluster;
  let reader: ChainReader;
  let donorNodes: ClusterNode[];
  let buyerNode: ClusterNode;
  let donors: ChildNode[] = [];
  let buyer: CellNode;
  let bootstrap: string[];
  let firstJob: JobView;

  before(async () => {
    cluster = await startCluster();
    reader = createReader(cluster.devnet.rpcUrl, cluster.devnet.deployment);
    const fastWatch = { buyer: { heartbeatMs: 400, bidTimeoutMs: 2_000 } };
    donorNodes = await Promise.all(
      Array.from({ length: DONORS }, (_, i) =>
        cluster.prepare(`donor${i + 1}`, { donor: true, stakeWith: i + 1, config: { donor: { slots: 2 } } }),
      ),
    );
    buyerNode = await cluster.prepare("buyer", { donor: false, config: fastWatch });
    const first = await startChild(donorNodes[0]!);
    bootstrap = first.multiaddrs.slice(0, 1);
    donors = [first, ...(await Promise.all(donorNodes.slice(1).map((node) => startChild(node, bootstrap))))];
    buyer = await startInProcess(buyerNode, bootstrap);
    await until(() => stakedDonorsSeen(buyer) === DONORS, 30_000, "the buyer to see all staked donors");
  });

  after(async () => {
    await buyer?.stop();
    await Promise.all(donors.map((donor) => donor.kill("SIGTERM")));
    await cluster?.close();
  });

  it("announces, bids, assigns, runs and receipts a job; the receipt verifies with viem and on-chain", async () => {
    const { jobId } = await buyer.submitJob({
      module: SHA256_WASM,
      input: new TextEncoder().encode("1\nhello"),
      fuelLimit: 100_000_000n,
    });
    firstJob = await buyer.waitForJob(jobId, { timeoutMs: 30_000 });
    assert.equal(firstJob.state, "completed", JSON.stringify(firstJob.events));

    const types: string[] = firstJob.events.map((event) => event.type);
    for (const step of ["announced", "bid_received", "assigned", "receipt", "completed"])
      assert.ok(types.includes(step), `missing ${step} in ${types.join(",")}`);
    assert.ok(
      types.indexOf("announced") < types.indexOf("assigned") &&
        types.indexOf("assigned") < types.indexOf("completed"),
    );

    const output = Buffer.from(firstJob.result!.outputBase64, "base64").toString();
    assert.equal(output, `${createHash("sha256").update("hello").digest("hex")}\n`);
    assert.equal(firstJob.result!.status, "ok");

    const receipt = receiptFromWire(firstJob.receipt!.message);
    const signature = firstJob.receipt!.signature;
    const domain = cellDomain(cluster.devnet.chainId, cluster.devnet.deployment.donorRegistry);
    const executors = donorNodes.map((node) => node.identity.operatorAddress);
    assert.ok(executors.includes(receipt.executor), "the executor is one of the staked donors");
    assert.equal(receipt.jobId, jobId);
    assert.equal(await verifyReceipt(domain, receipt, signature), true);
    assert.equal(
      await recoverTypedDataAddress({
        domain,
        types: receiptTypes,
        primaryType: "Receipt",
        message: receipt,
        signature,
      }),
      receipt.executor,
    );
    assert.equal(await verifyReceiptOnChain(reader, receipt, signature), true);
    assert.equal(
      await verifyReceiptOnChain(reader, { ...receipt, fuelUsed: receipt.fuelUsed + 1n }, signature),
      false,
    );

    const onChainJobId = await reader.publicClient.readContract({
      address: cluster.devnet.deployment.donorRegistry,
      abi: donorRegistryAbi,
      functionName: "jobSpecDigest",
      args: [jobSpecFromWire(firstJob.spec)],
    });
    assert.equal(onChainJobId, jobId, "the job id is DonorRegistry's EIP-712 digest of the signed spec");
  });

  it("announces receipt batches, provides them in the DHT and serves their receipts by CID, not outputs", async () => {
    const { identity } = await cluster.prepare(`reader-${Date.now()}`, { donor: false });
    const watcher = await createMeshNode({
      peerKeySeed: identity.peerKeySeed,
      bootstrap: donors.flatMap((donor) => donor.multiaddrs.slice(0, 1)),
      logger: pino({ level: "silent" }),
    });
    const announced: ReceiptBatchAnnounce[] = [];
    watcher.subscribe(TOPIC_RECEIPTS, ReceiptBatchAnnounceSchema, (batch) => void announced.push(batch), {
      maxBytes: MESSAGE_LIMITS.receiptBatchAnnounce,
    });
    try {
      await until(() => watcher.peers().length >= 2, 10_000, "the watcher to join the mesh");
      // Subscriptions travel both ways once a pubsub stream is open: when the watcher knows
      // every donor's (to adverts), the donors know the watcher's and publish their batches to it.
      await until(
        () => donors.every((donor) => subscribersOf(watcher, TOPIC_CAPS).includes(donor.peerId)),
        15_000,
        "the donors to learn the watcher's subscription",
      );
      const { jobId } = await buyer.submitJob({
        module: SHA256_WASM,
        input: new TextEncoder().encode("1\nbatch"),
      });
      const job = await buyer.waitForJob(jobId, { timeoutMs: 30_000 });
      assert.equal(job.state, "completed");
      const receiptBytes = new TextEncoder().encode(
        JSON.stringify({ receipt: job.receipt!.message, signature: job.receipt!.signature }),
      );
      const receiptCid = (await cidOf(receiptBytes)).toString();
      const executor = job.receipt!.message.executor.toLowerCase();
      const executorPeer = donors.find(
        (donor) =>
          donorNodes.find((node) => node.name === donor.name)!.identity.operatorAddress.toLowerCase() ===
          executor,
      )!.peerId;

      let batch: ReceiptBatchAnnounce | undefined;
      let listed: ReceiptBatchBlock | undefined;
      await until(
        () => listed !== undefined,
        15_000,
        "a receipt batch listing the job's receipt to be announced",
        async () => {
          for (const candidate of announced.splice(0).filter((entry) => entry.executor === executor)) {
            const bytes = await watcher.fetchBlock(CID.parse(candidate.batchCid), {
              from: [executorPeer],
              timeoutMs: 5_000,
            });
            const block = ReceiptBatchBlockSchema.parse(JSON.parse(new TextDecoder().decode(bytes)));
            if (block.receipts.some((entry) => entry.jobId === jobId && entry.cid === receiptCid)) {
              batch = candidate;
              listed = block;
            }
          }
        },
      );
      assert.equal(listed!.executor, executor);
      assert.equal(listed!.sequence, batch!.sequence);
      assert.equal(listed!.receipts.length, batch!.count);
      if (listed!.sequence > 0) assert.ok(listed!.previous, "a later batch links to the one before");

      let providers: string[] = [];
      await until(
        () => providers.includes(executorPeer),
        20_000,
        "the executor to provide the batch in the DHT",
        async () => {
          providers = await watcher
            .findProviders(CID.parse(batch!.batchCid), { limit: 8, signal: AbortSignal.timeout(3_000) })
            .catch(() => []);
        },
      );
      const fetched = await watcher.fetchBlock(CID.parse(receiptCid), { from: providers, timeoutMs: 10_000 });
      assert.deepEqual(JSON.parse(new TextDecoder().decode(fetched)), {
        receipt: job.receipt!.message,
        signature: job.receipt!.signature,
      });
      // The output goes to the job's buyer only: the watcher is refused.
      await assert.rejects(
        watcher.fetchBlock(CID.parse(job.result!.outputCid), { from: [executorPeer], timeoutMs: 10_000 }),
        (err: unknown) => err instanceof MeshError && err.code === "not_entitled",
      );
    } finally {
      await watcher.stop();
    }
  });

  it("keeps a job no donor will take queued with the donors' reasons, then fails it at its deadline", async () => {
    const { jobId } = await buyer.submitJob({
      module: SHA256_WASM,
      input: new TextEncoder().encode("1\ntoo long"),
      timeoutMs: 600_000,
      deadlineMs: Date.now() + 4_000,
    });
    await until(() => buyer.getJob(jobId)?.state === "queued", 10_000, "the job to wait in the queue");
    assert.equal(buyer.getJob(jobId)?.reason, "timeout_too_long");
    const view = await buyer.waitForJob(jobId, { timeoutMs: 20_000 });
    assert.equal(view.state, "failed");
    assert.equal(view.reason, "deadline_missed");
    const declines = view.events.filter((event) => event.type === "bid_rejected");
    assert.ok(declines.length >= 2, "several donors declined");
    assert.ok(
      declines.every(
        (event) =>
          event.reason === "timeout_too_long" && donors.some((donor) => donor.peerId === event.peerId),
      ),
    );
    assert.ok(view.events.some((event) => event.type === "queued" && event.reason === "timeout_too_long"));
    assert.equal(view.events.at(-1)?.type, "failed");
    assert.ok(!view.events.some((event) => event.type === "assigned"));
  });

  it("drops the bids of an unstaked peer that advertises and bids below everyone, in open rounds", async () => {
    const rogue = await startRogue(cluster, buyer);
    try {
      const domain = cellDomain(cluster.devnet.chainId, cluster.devnet.deployment.donorRegistry);
      let bidsSent = 0;
      let assignments = 0;
      rogue.mesh.subscribe(
        TOPIC_JOBS,
        JobAnnounceBatchSchema,
        async (batch, from) => {
          const offers = await Promise.all(
            batch.jobs.map(async (job) => {
              const bid = {
                jobId: job.jobId,
                executor: rogue.identity.operatorAddress,
                pricePerMegaFuel: 1n,
                expiresAt: BigInt(Date.now() + 60_000),
              };
              return {
                type: "bid",
                bid: { ...bid, pricePerMegaFuel: "1", expiresAt: bid.expiresAt.toString() },
                signature: await signBid(rogue.identity.operator, domain, bid),
                peerKey: rogue.identity.peerKeyHex,
                freeSlots: 8,
              };
            }),
          );
          await rogue.mesh.request(from, PROTOCOL_BID, raw, { type: "bids", offers });
          bidsSent += offers.length;
        },
        { maxBytes: MESSAGE_LIMITS.announceBatch },
      );
      await rogue.mesh.handle(PROTOCOL_ASSIGN, raw, async (batch: { assignments: { jobId: Hex }[] }) => {
        assignments += batch.assignments.length;
        return {
          type: "assign_results",
          results: batch.assignments.map(({ jobId }) => ({ type: "accept", jobId })),
        };
      });
      await until(
        () => buyer.peers().some((peer) => peer.peerId === rogue.mesh.peerId && peer.staked === false),
        20_000,
        "the buyer to hear the rogue's advert",
      );
      // The buyer heard the rogue's advert, sent after its subscriptions: it knows the rogue
      // subscribes to the jobs topic, and publishes its announcements to it.
      await until(
        () => subscribersOf(rogue.mesh, TOPIC_JOBS).includes(buyer.peerId),
        10_000,
        "the rogue to learn the buyer's topics",
      );

      const unstakedBefore = buyer.rejections().bid_unstaked ?? 0;
      // The staked donors ask more than this job pays, so the buyer asks none of them and
      // announces the job to all (discovery); the rogue, the cheapest, answers in the open
      // round, where its stake is checked and its bid dropped (removing the check would let
      // it win).
      const { jobId } = await buyer.submitJob({
        module: SHA256_WASM,
        input: new TextEncoder().encode("1\nunstaked"),
        maxPricePerMegaFuel: 500n,
        deadlineMs: Date.now() + 15_000,
      });
      // The round closes without a usable bid: the rogue's is dropped for stake (an
      // unregistered operator is inactive in the buyer's registry view) and counted against it.
      await until(
        () =>
          (buyer.rejections().bid_unstaked ?? 0) > unstakedBefore && buyer.getJob(jobId)?.state === "queued",
        20_000,
        "the rogue to bid in an open round, be dropped for stake, and the round to close without it",
      );
      assert.ok(bidsSent > 0, "the rogue bid on the announced job");
      assert.equal(assignments, 0, "an unstaked peer is never assigned");
      const view = buyer.getJob(jobId)!;
      assert.notEqual(view.state, "completed");
      assert.ok(!view.events.some((event) => event.peerId === rogue.mesh.peerId));
    } finally {
      await rogue.stop();
    }
  });

  it("rejects malformed, oversized and flooding messages with reasons and keeps working", async () => {
    const rogue = await startRogue(cluster, buyer);
    try {
      await assert.rejects(
        rogue.mesh.request(buyer.peerId, PROTOCOL_RECEIPT, raw, {
          type: "receipt",
          receipt: "not a receipt",
        }),
        { code: "malformed" },
      );
      await assert.rejects(
        rogue.mesh.request(buyer.peerId, PROTOCOL_STATUS, raw, { type: "status", jobId: "0x1234" }),
        { code: "malformed" },
      );
      const oversized = {
        type: "no_result",
        jobId: `0x${"ab".repeat(32)}`,
        reason: "no_result",
        detail: "x".repeat(MESSAGE_LIMITS.deliveryBatch + 1),
      };
      await assert.rejects(rogue.mesh.request(buyer.peerId, PROTOCOL_RECEIPT, raw, oversized), {
        code: "too_large",
      });

      // A message published before the rogue knows the buyer's subscriptions reaches nobody.
      const subscribed = (topic: string) =>
        rogue.mesh.libp2p.services.pubsub
          .getSubscribers(topic)
          .some((peer) => peer.toString() === buyer.peerId);
      await until(
        () => subscribed(TOPIC_JOBS) && subscribed(TOPIC_CAPS),
        10_000,
        "the rogue to learn the buyer's topics",
      );
      await rogue.mesh.publish(
        TOPIC_JOBS,
        anything,
        { type: "job", jobId: "not hex" },
        { maxBytes: 64 * 1024 },
      );
      await rogue.mesh.publish(
        TOPIC_CAPS,
        anything,
        { type: "caps", padding: "y".repeat(MESSAGE_LIMITS.advert * 2) },
        { maxBytes: 64 * 1024 },
      );
      await until(
        () => (buyer.rejections().malformed ?? 0) >= 3 && (buyer.rejections().too_large ?? 0) >= 2,
        10_000,
        "the buyer to reject the bad gossip",
      );

      const flood = await Promise.allSettled(
        Array.from({ length: 600 }, () =>
          rogue.mesh.request(
            buyer.peerId,
            PROTOCOL_STATUS,
            raw,
            { type: "status", jobId: `0x${"cd".repeat(32)}` },
            { timeoutMs: 5_000 },
          ),
        ),
      );
      const limited = flood.filter(
        (outcome) =>
          outcome.status === "rejected" && (outcome.reason as { code?: string }).code === "rate_limited",
      ).length;
      const codes = flood.map((outcome) =>
        outcome.status === "fulfilled" ? "ok" : String((outcome.reason as { code?: string }).code),
      );
      assert.ok(limited > 0, `some of the flood is rate limited (${[...new Set(codes)].join(", ")})`);
      assert.ok(
        flood.some((outcome) => outcome.status === "fulfilled"),
        "requests within the limit are answered",
      );
      assert.ok((buyer.rejections().rate_limited ?? 0) >= limited);
    } finally {
      await rogue.stop();
    }
    const { jobId } = await buyer.submitJob({
      module: SHA256_WASM,
      input: new TextEncoder().encode("1\nstill alive"),
    });
    assert.equal((await buyer.waitForJob(jobId, { timeoutMs: 30_000 })).state, "completed");
  });

  it("takes the late receipt of a donor it gave up on while it was frozen (SIGSTOP), cancelling the newer attempt", async () => {
    const module = await spinModule(4_000_000_000);
    const { jobId } = await buyer.submitJob({
      module,
      input: new Uint8Array(),
      fuelLimit: 45_000_000_000n,
      timeoutMs: 60_000,
    });
    let frozen: ChildNode | undefined;
    await until(
      () => {
        const assigned = buyer.getJob(jobId)?.events.find((event) => event.type === "assigned");
        frozen = donors.find((donor) => donor.peerId === assigned?.peerId);
        return frozen !== undefined && buyer.getJob(jobId)?.state === "running";
      },
      20_000,
      "the job to run",
    );
    // 3 s of the 6-12 s job run before the freeze (CPU time of the donor's process, which
    // is the job's), so the frozen donor, resumed after the reassignment, is 3 s of work
    // ahead of the newer attempt from scratch (1 s ahead, it could lose that race on a
    // slow or busy machine).
    const startCpu = cpuSeconds(frozen!.process.pid!);
    await until(() => cpuSeconds(frozen!.process.pid!) - startCpu >= 3, 30_000, "3 s of the job to run");
    frozen!.process.kill("SIGSTOP");
    try {
      // Frozen until the buyer gave up on it and assigned the job elsewhere, so the newer
      // attempt exists whatever the placement's backoff.
      await until(
        () => {
          const events = buyer.getJob(jobId)?.events ?? [];
          const gaveUpAt = events.findIndex((event) => event.type === "reassigned");
          return (
            gaveUpAt >= 0 &&
            events
              .slice(gaveUpAt)
              .some((event) => event.type === "assigned" && event.peerId !== frozen!.peerId)
          );
        },
        30_000,
        "the buyer to give up on the frozen donor and assign the job elsewhere",
      );
    } finally {
      frozen!.process.kill("SIGCONT");
    }
    const view = await buyer.waitForJob(jobId, { timeoutMs: 60_000 });
    assert.equal(view.state, "completed");
    const reassigned = view.events.find((event) => event.type === "reassigned");
    assert.equal(reassigned?.reason, "executor_silent");
    assert.equal(reassigned?.peerId, frozen!.peerId);
    const assignments = view.events.filter((event) => event.type === "assigned");
    assert.ok(
      assignments.length >= 2 && assignments.at(-1)?.peerId !== frozen!.peerId,
      "the job was assigned again elsewhere",
    );
    assert.equal(
      view.events.find((event) => event.type === "receipt")?.peerId,
      frozen!.peerId,
      "the frozen donor's receipt completed the job",
    );
    const executor = donorNodes.find((node) => node.name === frozen!.name)!;
    assert.equal(view.receipt!.message.executor, executor.identity.operatorAddress);
  });

  it("reassigns a job whose donor is killed with SIGKILL mid-run, and completes it", async () => {
    const module = await spinModule(1_200_000_000);
    const { jobId } = await buyer.submitJob({
      module,
      input: new Uint8Array(),
      fuelLimit: 20_000_000_000n,
      timeoutMs: 30_000,
    });
    let victim: ChildNode | undefined;
    await until(
      () => {
        const assigned = buyer.getJob(jobId)?.events.find((event) => event.type === "assigned");
        victim = donors.find((donor) => donor.peerId === assigned?.peerId);
        return victim !== undefined;
      },
      20_000,
      "the job to be assigned",
    );
    await until(
      () => buyer.getJob(jobId)?.state === "running",
      10_000,
      "the executor to report it runs the job",
    );
    await victim!.kill("SIGKILL");
    donors = donors.filter((donor) => donor !== victim);

    const view = await buyer.waitForJob(jobId, { timeoutMs: 90_000 });
    assert.equal(
      view.state,
      "completed",
      JSON.stringify(view.events.map((event) => [event.type, event.reason])),
    );
    const reassigned = view.events.find((event) => event.type === "reassigned");
    assert.equal(reassigned?.reason, "executor_silent");
    assert.equal(reassigned?.peerId, victim!.peerId);
    const finalAssignment = view.events.filter((event) => event.type === "assigned").at(-1);
    assert.notEqual(finalAssignment?.peerId, victim!.peerId);
    assert.equal(Buffer.from(view.result!.outputBase64, "base64").toString(), "spun\n");
    assert.equal(view.attempts, 2);
  });

  it("keeps jobs and receipts across a restart of the buyer and of a donor", async () => {
    const before = buyer.listJobs();
    assert.ok(before.length >= 3);
    await buyer.stop();
    const live = donors.flatMap((donor) => donor.multiaddrs.slice(0, 1));
    buyer = await startInProcess(buyerNode, live);
    const restored = buyer.getJob(firstJob.jobId);
    assert.equal(restored?.state, "completed");
    assert.deepEqual(restored?.receipt, firstJob.receipt);
    assert.deepEqual(restored?.result, firstJob.result);
    assert.deepEqual(
      restored?.events.map((event) => event.type),
      firstJob.events.map((event) => event.type),
    );
    assert.deepEqual(
      new Set(buyer.listJobs().map((job) => job.jobId)),
      new Set(before.map((job) => job.jobId)),
    );

    const executorIndex = donorNodes.findIndex(
      (node) => node.identity.operatorAddress === firstJob.receipt!.message.executor,
    );
    const executor = donorNodes[executorIndex]!;
    const running = donors.find((donor) => donor.name === executor.name);
    await running?.kill("SIGTERM");
    donors = donors.filter((donor) => donor !== running);
    const store = openStore(executor.dir);
    try {
      const stored = store.receipts.forJob(firstJob.jobId);
      assert.equal(stored.length, 1);
      assert.equal(stored[0]!.signature, firstJob.receipt!.signature);
      assert.deepEqual(stored[0]!.message, firstJob.receipt!.message);
      assert.ok(
        stored[0]!.cid && store.blocks.has(stored[0]!.cid),
        "the receipt block is in the donor's blockstore",
      );
      assert.equal(store.jobs.get(firstJob.jobId)?.role, "executor");
      assert.ok(
        batchChainLists(store, stored[0]!.cid!),
        "the donor's receipt batches, followed back from its head, list the receipt",
      );
    } finally {
      store.close();
    }

    await until(() => stakedDonorsSeen(buyer) >= 1, 20_000, "the restarted buyer to see a donor again");
    const { jobId } = await buyer.submitJob({
      module: SHA256_WASM,
      input: new TextEncoder().encode("1\nafter restart"),
    });
    assert.equal((await buyer.waitForJob(jobId, { timeoutMs: 30_000 })).state, "completed");
  });

  it("keeps watching the executor of a job running across a restart of the buyer, and takes its receipt", async () => {
    const module = await spinModule(4_000_000_000);
    const { jobId } = await buyer.submitJob({
      module,
      input: new Uint8Array(),
      fuelLimit: 45_000_000_000n,
      timeoutMs: 60_000,
    });
    await until(() => buyer.getJob(jobId)?.state === "running", 20_000, "the job to run");
    const executor = buyer.getJob(jobId)!.executor!.peerId;
    await buyer.stop();
    buyer = await startInProcess(
      buyerNode,
      donors.flatMap((donor) => donor.multiaddrs.slice(0, 1)),
    );
    const restored = buyer.getJob(jobId);
    assert.equal(restored?.executor?.peerId, executor, "the restored job keeps its executor");
    assert.ok(restored?.state === "running" || restored?.state === "completed", restored?.state);
    const view = await buyer.waitForJob(jobId, { timeoutMs: 60_000 });
    assert.equal(view.state, "completed", JSON.stringify(view.events));
    assert.ok(!view.events.some((event) => event.type === "reassigned"), "never placed again");
    assert.equal(view.events.filter((event) => event.type === "assigned").length, 1);
    assert.equal(view.events.find((event) => event.type === "receipt")?.peerId, executor);
  });
});

/** Follows the stored receipt batch chain back from its head; true when a batch lists `receiptCid`. */
function batchChainLists(store: ReturnType<typeof openStore>, receiptCid: string): boolean {
  let cid = (store.meta.getJson("receipts.batchHead") as { cid: string | null } | undefined)?.cid ?? null;
  let expected: number | undefined;
  while (cid !== null) {
    const bytes = store.blocks.get(cid);
    assert.ok(bytes, `batch ${cid} is in the blockstore`);
    const block = ReceiptBatchBlockSchema.parse(JSON.parse(new TextDecoder().decode(bytes)));
    if (expected !== undefined) assert.equal(block.sequence, expected, "batches are numbered in order");
    if (block.receipts.some((entry) => entry.cid === receiptCid)) return true;
    expected = block.sequence - 1;
    cid = block.previous;
  }
  return false;
}

function stakedDonorsSeen(node: CellNode): number {
  return node.peers().filter((peer) => peer.staked === true).length;
}

interface Rogue {
  mesh: MeshNode;
  identity: ClusterNode["identity"];
  stop(): Promise<void>;
}

/** A peer speaking the protocols directly, with keys but no stake, connected to the buyer. */
function subscribersOf(mesh: MeshNode, topic: string): string[] {
  return mesh.libp2p.services.pubsub.getSubscribers(topic).map((peer) => peer.toString());
}

/** CPU time (user + system) a process has used, from /proc (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function startRogue(cluster: Cluster, buyer: CellNode): Promise<Rogue> {
  const { identity } = await cluster.prepare(`rogue-${Date.now()}`, { donor: true });
  const mesh = await createMeshNode({
    peerKeySeed: identity.peerKeySeed,
    bootstrap: buyer.multiaddrs().slice(0, 1),
    logger: pino({ level: "silent" }),
  });
  const advertise = () =>
    mesh
      .publish(TOPIC_CAPS, CapabilityAdvertSchema, {
        type: "caps",
        seq: Date.now(),
        operator: identity.operatorAddress,
        peerId: mesh.peerId,
        peerKey: identity.peerKeyHex,
        pricePerMegaFuel: "1",
        slots: 8,
        freeSlots: 8,
        fuelPerSecond: "100000000",
        maxFuel: "100000000000",
        maxMemoryPages: 1024,
        runtimeVersion: "cell-wasm/1",
        multiaddrs: mesh.multiaddrs().slice(0, 8),
        timestamp: Date.now().toString(),
      })
      .catch(() => 0);
  const timer = setInterval(() => void advertise(), 300);
  const stop = async () => {
    clearInterval(timer);
    await mesh.stop();
  };
  return { mesh, identity, stop };
}
