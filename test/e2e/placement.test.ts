// Bounded placement over a real network: one buyer and sixteen staked donors over loopback
// libp2p, a real Hardhat chain and real SQLite stores, all nodes in this process. Each job
// asks only a few donors to bid, directly; no donor hears of a job it was not asked about.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { CellNode, JobView, NodeConfigInput } from "../../offchain/src/node/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { startCluster, startInProcess, until } from "./cluster.ts";
import type { Cluster } from "./cluster.ts";

const SHA256_WASM = readFileSync((await ensureJobs(["sha256"])).sha256);
/** 16 donors on 127.0.0.1: the test cluster trusts loopback (no IP-colocation penalty). */
const DONORS = Number(process.env.PLACEMENT_DONORS ?? 16);
const JOBS = 200;
const IN_FLIGHT = 32;
const SLOTS = 4;
/** The buyer's default candidate set for a one-replica job: max(4, 3 × 1). */
const K = 4;

describe(`bounded placement: ${DONORS} staked donors and a buyer`, { timeout: 180_000 }, () => {
  let cluster: Cluster;
  const donors: CellNode[] = [];
  let buyer: CellNode;

  before(async () => {
    cluster = await startCluster();
    const config = (fields: NodeConfigInput): NodeConfigInput => ({
      ...fields,
      runtime: { poolSize: 1 },
    });
    const prepared = await Promise.all(
      Array.from({ length: DONORS }, (_, i) =>
        cluster.prepare(`donor${i + 1}`, {
          donor: true,
          stakeWith: i + 1,
          defaultTimers: true,
          config: config({ donor: { slots: SLOTS } }),
        }),
      ),
    );
    const buyerNode = await cluster.prepare("buyer", {
      donor: false,
      defaultTimers: true,
      config: config({ buyer: { heartbeatMs: 1_000 } }),
    });
    const first = await startInProcess(prepared[0]!);
    donors.push(first);
    const bootstrap = first.multiaddrs().slice(0, 1);
    donors.push(...(await Promise.all(prepared.slice(1).map((node) => startInProcess(node, bootstrap)))));
    buyer = await startInProcess(buyerNode, bootstrap);
  });

  after(async () => {
    await buyer?.stop();
    await Promise.all(donors.map((donor) => donor.stop()));
    await cluster?.close();
  });

  it("sees every donor staked", async () => {
    await until(
      () => buyer.peers().filter((peer) => peer.staked === true).length === DONORS,
      60_000,
      `the buyer to see all ${DONORS} staked donors`,
    );
  });

  it(`completes ${JOBS} jobs, each asking at most ${K} donors, and no donor hears of a job it was not asked about`, async () => {
    const before = buyer.stats().buyer;
    const asked = new Map(donors.map((donor) => [donor.peerId, donor.stats().donor]));
    // A client with at most IN_FLIGHT jobs open at once, as the mesh benchmark runs.
    const views: JobView[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < JOBS) {
          const i = next++;
          const { jobId } = await buyer.submitJob({
            module: SHA256_WASM,
            input: new TextEncoder().encode(`1\njob ${i}`),
            fuelLimit: 100_000_000n,
          });
          views.push(await buyer.waitForJob(jobId, { timeoutMs: 120_000 }));
        }
      }),
    );
    const failed = views.filter((view) => view.state !== "completed");
    assert.equal(failed.length, 0, JSON.stringify(failed.slice(0, 3).map((view) => view.events)));

    const after = buyer.stats().buyer;
    const placements = after.placements - before.placements;
    const sent = after.bidRequestsSent - before.bidRequestsSent;
    assert.ok(placements >= JOBS, `${placements} placements`);
    assert.ok(sent <= K * placements, `${sent} bid requests for ${placements} placements`);
    assert.equal(after.discoveryRounds, before.discoveryRounds, "no job was announced to all");
    // A request whose stream did not open in time counts its donor as unreachable for that
    // round; it must stay rare, and it is the only way sent and received may differ. Most
    // such failures came from libp2p's connection monitor closing connections whose ping
    // collided with the DHT's or waited behind work (now off, see p2p.md): since then runs
    // saw 0–3 %, one batch to one donor going unanswered for 3 s, most likely while the
    // donors' receipt batches were provided in the DHT together (then every 10 s).
    const failedRequests = after.bidRequestsFailed - before.bidRequestsFailed;
    assert.ok(failedRequests <= sent / 10, `${failedRequests} of ${sent} bid requests failed`);

    // A round ends as soon as its bids can fill the job's slots: requests still on their way
    // then arrive after the job completes, so the donors' counts are read once they settle.
    const receivedSoFar = () =>
      donors.reduce(
        (sum, donor) => sum + donor.stats().donor.bidRequests - asked.get(donor.peerId)!.bidRequests,
        0,
      );
    const failedSoFar = () => buyer.stats().buyer.bidRequestsFailed - before.bidRequestsFailed;
    await until(
      () => receivedSoFar() >= sent - failedSoFar(),
      15_000,
      "bid requests still on their way to arrive or fail",
    ).catch(() => undefined);
    const settledFailures = failedSoFar();
    let received = 0;
    let inResponse = 0;
    for (const donor of donors) {
      const now = donor.stats().donor;
      const then = asked.get(donor.peerId)!;
      const requests = now.bidRequests - then.bidRequests;
      const toDonor = (after.bidRequestsTo[donor.peerId] ?? 0) - (before.bidRequestsTo[donor.peerId] ?? 0);
      assert.ok(requests <= toDonor, `donor ${donor.peerId} received only requests sent to it`);
      assert.equal(now.announcedJobs, then.announcedJobs, `donor ${donor.peerId} heard of no other job`);
      received += requests;
      inResponse += now.answeredInResponse - then.answeredInResponse;
    }
    assert.ok(
      received >= sent - settledFailures && received <= sent,
      `${received} received of ${sent} sent, ${settledFailures} failed`,
    );
    // The bids travel back in the requests' responses, not as requests of their own.
    assert.ok(inResponse >= received * 0.9, `${inResponse} of ${received} answered in the response`);

    // The work spreads: most donors ran some of the jobs.
    const executors = new Set(
      views.map((view) => view.events.findLast((event) => event.type === "assigned")?.peerId),
    );
    assert.ok(executors.size >= DONORS / 2, `${executors.size} of ${DONORS} donors ran jobs`);
  });
});
