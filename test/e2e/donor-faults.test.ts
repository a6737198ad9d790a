// Real donor nodes (Hardhat chain, libp2p over loopback, SQLite) facing a buyer that is a
// bare mesh peer speaking the protocols: a batch of assignments larger than the donor's
// slots, and a restart with a signed receipt the buyer never acknowledged.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import type { Hex } from "viem";
import { buildJobSpec, signJob, toAnnounce } from "../../offchain/src/market/index.ts";
import { MemoryBlockSource, createMeshNode } from "../../offchain/src/p2p/index.ts";
import type { MeshNode } from "../../offchain/src/p2p/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { DonorStore } from "../../offchain/src/node/donor-store.ts";
import { protocolSpecs } from "../../offchain/src/node/protocols.ts";
import {
  CID,
  JobAnnounceBatchSchema,
  MESSAGE_LIMITS,
  PROTOCOL_ASSIGN,
  PROTOCOL_BID,
  PROTOCOL_BID_REQUEST,
  PROTOCOL_RECEIPT,
  PROTOCOL_STATUS,
  TOPIC_JOBS,
  cellDomain,
  cidOf,
  cidToBytes32,
  jobSpecToWire,
  receiptToWire,
  signReceipt,
} from "../../offchain/src/protocol/index.ts";
import type { BidOffer, JobAnnounce, ReceiptDelivery } from "../../offchain/src/protocol/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { spinModule, startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

const silent = { debug: () => {}, info: () => {}, warn: () => {} };

describe("a donor facing a bare buyer", { timeout: 180_000 }, () => {
  let cluster: Cluster;
  let donorNode: ClusterNode;
  let buyerMesh: MeshNode;
  let donor: CellNode | undefined;
  const delivered: ReceiptDelivery[] = [];
  let refuseNext = true;

  before(async () => {
    cluster = await startCluster();
    donorNode = await cluster.prepare("donor", { donor: true });
    const buyerKeys = await cluster.prepare("buyer", { donor: false });
    buyerMesh = await createMeshNode({
      peerKeySeed: buyerKeys.identity.peerKeySeed,
      logger: pino({ level: "silent" }),
    });
    // The buyer's first answer fails (it was busy restarting, say); then it acknowledges.
    await buyerMesh.handle(PROTOCOL_RECEIPT, protocolSpecs.receipt, async (batch) => {
      delivered.push(...batch.deliveries);
      if (refuseNext) {
        refuseNext = false;
        throw new Error("not ready");
      }
      return {
        type: "acks",
        acks: batch.deliveries.map((delivery) => ({
          type: "ack" as const,
          jobId: delivery.type === "receipt" ? delivery.receipt.jobId : delivery.jobId,
          accepted: true,
        })),
      };
    });
  });

  after(async () => {
    await donor?.stop();
    await buyerMesh?.stop();
    await cluster?.close();
  });

  it("accepts exactly as many of one batch of assignments as it has slots, refusing the rest slots_full", async () => {
    const slots = 2;
    const node = await cluster.prepare("slotted", {
      donor: true,
      stakeWith: 1,
      config: { donor: { slots } },
    });
    const { identity: buyerIdentity } = await cluster.prepare("slot-buyer", { donor: false });
    const module = await spinModule(1_000);
    const input = new TextEncoder().encode("input");
    const [moduleCid, inputCid] = [(await cidOf(module)).toString(), (await cidOf(input)).toString()];
    const blocks = new MemoryBlockSource();
    blocks.put(CID.parse(moduleCid), module);
    blocks.put(CID.parse(inputCid), input);
    const bids = new Map<Hex, Extract<BidOffer, { type: "bid" }>>();
    const buyer = await createMeshNode({
      peerKeySeed: buyerIdentity.peerKeySeed,
      logger: pino({ level: "silent" }),
      blockSource: blocks,
    });
    await buyer.handle(PROTOCOL_BID, protocolSpecs.bid, async (batch) => {
      for (const offer of batch.offers) if (offer.type === "bid") bids.set(offer.bid.jobId, offer);
      return { type: "ack", received: batch.offers.length };
    });
    await buyer.handle(PROTOCOL_RECEIPT, protocolSpecs.receipt, async (batch) => ({
      type: "acks",
      acks: batch.deliveries.map((delivery) => ({
        type: "ack" as const,
        jobId: delivery.type === "receipt" ? delivery.receipt.jobId : delivery.jobId,
        accepted: true,
      })),
    }));
    const slotted = await startInProcess(node, buyer.multiaddrs().slice(0, 1));
    try {
      const domain = cellDomain(cluster.devnet.chainId, cluster.devnet.deployment.donorRegistry);
      const jobs = await Promise.all(
        Array.from({ length: 5 }, () =>
          signJob(
            buyerIdentity.operator,
            domain,
            buildJobSpec({
              buyer: buyerIdentity.operatorAddress,
              moduleCid: cidToBytes32(moduleCid),
              inputCid: cidToBytes32(inputCid),
              maxPricePerMegaFuel: 10_000n,
            }),
          ),
        ),
      );
      const context = {
        moduleCid,
        inputCid,
        moduleSize: module.byteLength,
        inputSize: input.byteLength,
        buyerPeer: buyer.peerId,
      };
      await until(
        () =>
          buyer.libp2p.services.pubsub
            .getSubscribers(TOPIC_JOBS)
            .some((peer) => peer.toString() === slotted.peerId),
        20_000,
        "the buyer to learn the donor's topics",
      );
      await buyer.publish(
        TOPIC_JOBS,
        JobAnnounceBatchSchema,
        { type: "jobs", jobs: jobs.map((job) => toAnnounce(job, context)) },
        { maxBytes: MESSAGE_LIMITS.announceBatch },
      );
      await until(() => bids.size === jobs.length, 20_000, "the donor to bid on every job");

      // A bid request is answered in its response; a job the donor does not answer (it names
      // another buyer) holds the response at most BID_ANSWER_WAIT_MS, and gets nothing.
      const [asked, foreign] = await Promise.all(
        [buyer.peerId, slotted.peerId].map(async (buyerPeer, index) =>
          toAnnounce(
            await signJob(
              buyerIdentity.operator,
              domain,
              buildJobSpec({
                buyer: buyerIdentity.operatorAddress,
                moduleCid: cidToBytes32(moduleCid),
                inputCid: cidToBytes32(inputCid),
                maxPricePerMegaFuel: 10_000n + BigInt(index),
              }),
            ),
            { ...context, buyerPeer },
          ),
        ),
      );
      const started = Date.now();
      const answer = await buyer.request(slotted.peerId, PROTOCOL_BID_REQUEST, protocolSpecs.bidRequest, {
        type: "bid_requests",
        jobs: [asked!, foreign!],
      });
      const answeredFor = answer.offers.map((offer) =>
        offer.type === "bid" ? offer.bid.jobId : offer.jobId,
      );
      assert.deepEqual(answeredFor, [asked!.jobId]);
      assert.equal(answer.offers[0]!.type, "bid");
      assert.ok(Date.now() - started < 2_000, `answered after ${Date.now() - started} ms`);

      const { results } = await buyer.request(slotted.peerId, PROTOCOL_ASSIGN, protocolSpecs.assign, {
        type: "assign_batch",
        assignments: [...bids.values()].map((offer) => ({
          type: "assign" as const,
          jobId: offer.bid.jobId,
          bid: offer.bid,
          bidSignature: offer.signature,
          attempt: 1,
        })),
      });
      const outcomes = results.map((result) => (result.type === "accept" ? "accept" : result.reason));
      assert.deepEqual(
        outcomes.toSorted(),
        [...Array(slots).fill("accept"), ...Array(jobs.length - slots).fill("slots_full")].toSorted(),
      );
    } finally {
      await slotted.stop();
      await buyer.stop();
    }
  });

  it("delivers a stored, unacknowledged receipt after the restart until the buyer acknowledges it; a probe returns it", async () => {
    const { jobId, receipt, signature, output, outputCid } = await storeUnacknowledgedReceipt(
      cluster,
      donorNode,
      buyerMesh.peerId,
    );

    donor = await startInProcess(donorNode, buyerMesh.multiaddrs().slice(0, 1));
    await until(() => delivered.length >= 2, 30_000, "the receipt to be delivered again after a failure");
    for (const delivery of delivered) {
      assert.equal(delivery.type, "receipt");
      if (delivery.type !== "receipt") continue;
      assert.deepEqual(delivery.receipt, receiptToWire(receipt));
      assert.equal(delivery.signature, signature);
      assert.equal(delivery.outputCid, outputCid);
      assert.equal(Buffer.from(delivery.outputBase64 ?? "", "base64").toString(), output);
    }

    const reader = openStore(donorNode.dir);
    try {
      await until(
        () => reader.receipts.outbox().length === 0,
        10_000,
        "the acknowledged receipt to leave the outbox",
      );
    } finally {
      reader.close();
    }

    const status = await buyerMesh.request(donor.peerId, PROTOCOL_STATUS, protocolSpecs.status, {
      type: "status",
      jobId,
    });
    assert.equal(status.state, "done");
    assert.deepEqual(status.receipt, { receipt: receiptToWire(receipt), signature, outputCid });
  });
});

/** What a donor leaves on disk when it stops after storing a receipt and before its buyer acknowledged it. */
async function storeUnacknowledgedReceipt(cluster: Cluster, node: ClusterNode, buyerPeer: string) {
  const { identity } = node;
  const domain = cellDomain(cluster.devnet.chainId, cluster.devnet.deployment.donorRegistry);
  const output = "the output\n";
  const outputBytes = new TextEncoder().encode(output);
  const outputCid = (await cidOf(outputBytes)).toString();
  const moduleCid = (await cidOf(new Uint8Array([0, 97, 115, 109]))).toString();
  const inputCid = (await cidOf(new Uint8Array(0))).toString();
  const spec = buildJobSpec({
    buyer: identity.operatorAddress,
    moduleCid: cidToBytes32(moduleCid),
    inputCid: cidToBytes32(inputCid),
    maxPricePerMegaFuel: 2_000n,
  });
  const jobId: Hex = `0x${"5a".repeat(32)}`;
  const signatureOfSpec: Hex = `0x${"11".repeat(65)}`;
  const announce: JobAnnounce = {
    type: "job",
    jobId,
    spec: jobSpecToWire(spec),
    signature: signatureOfSpec,
    moduleCid,
    inputCid,
    moduleSize: 4,
    inputSize: 0,
    buyerPeer,
    providers: [],
    providerAddrs: [],
  };
  const receipt = {
    jobId,
    executor: identity.operatorAddress,
    moduleCid: spec.moduleCid,
    inputCid: spec.inputCid,
    outputCid: cidToBytes32(outputCid),
    fuelUsed: 42n,
    status: 0,
    startedAt: 1n,
    finishedAt: 2n,
  };
  const signature = await signReceipt(identity.operator, domain, receipt);

  const store = openStore(node.dir);
  const jobs = new DonorStore({
    store,
    log: silent,
    executor: identity.operatorAddress,
    provider: { add: () => {}, withdraw: () => {} },
    publishReceiptBatch: async () => {},
    receiptBatchMs: 60_000,
  });
  await jobs.persistReceipt(
    { job: { jobId, spec, signature: signatureOfSpec }, announce, buyerPeer },
    { type: "receipt", receipt: receiptToWire(receipt), signature, outputCid },
    outputBytes,
  );
  await jobs.stop();
  assert.equal(store.receipts.outbox().length, 1);
  store.close();
  return { jobId, receipt, signature, output, outputCid };
}
