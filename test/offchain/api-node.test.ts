// The local API in front of a real buyer node: a Hardhat devnet, one staked donor and one
// buyer over libp2p on loopback, real WebAssembly. Jobs go in through POST /jobs, their
// progress comes out as Server-Sent Events, refusals arrive with their reason codes.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import {
  createApiServer,
  parseEventStream,
  type ApiServer,
  type JobStreamMessage,
} from "../../offchain/src/api/index.ts";
import { createReader, verifyReceiptOnChain } from "../../offchain/src/chain/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { receiptFromWire, type ReceiptWire } from "../../offchain/src/protocol/index.ts";
import { spinModule, startCluster, startInProcess, until, type Cluster } from "../e2e/cluster.ts";

const TOKEN = "api-node-test-token-0123456789";
const DONOR_PRICE = 1_000n;

async function api(server: ApiServer, path: string, init: RequestInit = {}) {
  const response = await fetch(`${server.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...init.headers },
  });
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown> & { error?: { code: string } },
  };
}

/** Reads the job's event stream until `stop` says so or the stream ends. */
async function readEvents(
  server: ApiServer,
  jobId: string,
  stop: (message: JobStreamMessage) => boolean,
  timeoutMs = 30_000,
) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const response = await fetch(`${server.url}/jobs/${jobId}/events`, {
    headers: { authorization: `Bearer ${TOKEN}` },
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
  assert.ok(response.body);
  const messages: JobStreamMessage[] = [];
  try {
    for await (const message of parseEventStream(response.body)) {
      messages.push(message);
      if (stop(message)) break;
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return messages;
}

describe("local API on a real buyer node", { timeout: 240_000 }, () => {
  let cluster: Cluster;
  let donor: CellNode;
  let buyer: CellNode;
  let server: ApiServer;
  let module: Uint8Array;

  before(async () => {
    cluster = await startCluster();
    const donorNode = await cluster.prepare("donor", {
      donor: true,
      stakeWith: 1,
      config: { donor: { pricePerMegaFuel: DONOR_PRICE } },
    });
    const buyerNode = await cluster.prepare("buyer", {
      donor: false,
      config: { buyer: { bidTimeoutMs: 1_000 } },
    });
    buyer = await startInProcess(buyerNode);
    donor = await startInProcess(donorNode, buyer.multiaddrs());
    await until(
      () => buyer.peers().some((peer) => peer.peerId === donor.peerId && peer.staked === true),
      30_000,
      "the staked donor",
    );
    server = await createApiServer({ node: buyer, token: TOKEN });
    module = await spinModule(1_000);
  });

  after(async () => {
    await server?.close();
    await donor?.stop();
    await buyer?.stop();
    await cluster?.close();
  });

  it("answers health with the buyer's peer id and refuses requests without the token", async () => {
    const health = await fetch(`${server.url}/health`);
    assert.deepEqual(await health.json(), { status: "ok", peerId: buyer.peerId, chainId: 31337 });
    const jobs = await fetch(`${server.url}/jobs`);
    assert.equal(jobs.status, 401);
  });

  it("runs a submitted job, streams its progress to the end, and serves its verified receipt", async () => {
    const submitted = await api(server, "/jobs", {
      method: "POST",
      body: JSON.stringify({
        moduleBase64: Buffer.from(module).toString("base64"),
        fuelLimit: "10000000",
        priority: "high",
      }),
    });
    assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
    const jobId = submitted.body.jobId as Hex;
    assert.match(jobId, /^0x[0-9a-f]{64}$/);

    const messages = await readEvents(server, jobId, (message) => message.event === "end");
    const types = messages.filter((message) => message.event === "job").map((message) => message.data.type);
    assert.equal(types[0], "announced");
    assert.equal(types.at(-1), "completed");
    for (const step of ["bid_received", "assigned", "receipt"])
      assert.ok(types.includes(step), `${step} in ${types.join(",")}`);
    const end = messages.at(-1);
    assert.equal(end?.event, "end");
    assert.equal(end?.data.state, "completed");

    const { status, body } = await api(server, `/jobs/${jobId}`);
    assert.equal(status, 200);
    const result = body.result as { status: string; outputBase64: string; fuelUsed: string };
    assert.equal(result.status, "ok");
    assert.equal(Buffer.from(result.outputBase64, "base64").toString(), "spun\n");
    assert.match(result.fuelUsed, /^[1-9]\d*$/);
    const receipt = body.receipt as { message: ReceiptWire; signature: Hex };
    assert.equal(receipt.message.executor.toLowerCase(), donor.operator.toLowerCase());
    const reader = createReader(cluster.devnet.rpcUrl, cluster.devnet.deployment);
    assert.equal(
      await verifyReceiptOnChain(reader, receiptFromWire(receipt.message), receipt.signature),
      true,
    );

    const list = await api(server, "/jobs");
    const listed = (
      list.body.jobs as { jobId: string; state: string; result?: Record<string, unknown> }[]
    ).find((job) => job.jobId === jobId);
    assert.equal(listed?.state, "completed");
    assert.equal(listed?.result?.outputBase64, undefined);
  });

  it("streams the refusal reason when no donor bids within the job's price", async () => {
    const submitted = await api(server, "/jobs", {
      method: "POST",
      body: JSON.stringify({
        moduleBase64: Buffer.from(module).toString("base64"),
        maxPricePerMegaFuel: String(DONOR_PRICE - 1n),
      }),
    });
    assert.equal(submitted.status, 202);
    const jobId = submitted.body.jobId as string;
    const messages = await readEvents(
      server,
      jobId,
      (message) => message.event === "end" || (message.event === "job" && Boolean(message.data.reason)),
    );
    const refusal = messages.map((message) => message.data).find((data) => "reason" in data && data.reason);
    assert.ok(refusal, `a refusal with a reason in ${JSON.stringify(messages)}`);
    assert.match(String(refusal.reason), /^(bid_rejected_price|no_bid|policy_mismatch)$/);
    const { body } = await api(server, `/jobs/${jobId}`);
    assert.ok(body.state === "queued" || body.state === "failed", `state ${String(body.state)}`);
    // The view names the latest refusal; under load a stale advert may add slots_full first.
    const reasons = (body.events as { reason?: string }[]).map((event) => event.reason).filter(Boolean);
    assert.ok(reasons.includes(String(refusal.reason)), "the job view's events hold the streamed refusal");
    assert.ok(
      reasons.includes(String(body.reason)),
      `the job view's reason ${String(body.reason)} is one of its events'`,
    );
  });

  it("lists the staked donor among the peers", async () => {
    const { status, body } = await api(server, "/peers");
    assert.equal(status, 200);
    const peer = (
      body.peers as { peerId: string; staked?: boolean; operator?: string; pricePerMegaFuel?: string }[]
    ).find((candidate) => candidate.peerId === donor.peerId);
    assert.equal(peer?.staked, true);
    assert.equal(peer?.operator?.toLowerCase(), donor.operator.toLowerCase());
    assert.equal(peer?.pricePerMegaFuel, DONOR_PRICE.toString());
  });
});
