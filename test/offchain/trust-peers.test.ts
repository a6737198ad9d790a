// `GET /peers` and `cell peers` show each peer's reputation and trust state: a quarantined
// liar with its reason, until, evidence and slash; a clean donor with its reputation. The
// views come from a real trust book; the CLI runs as a child process against a real API server.
import { runCell as cell } from "../support/cell-cli.ts";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Address, Hex } from "viem";
import {
  createApiServer,
  ensureApiToken,
  writeApiInfo,
  type ApiServer,
} from "../../offchain/src/api/index.ts";
import type { PeerView } from "../../offchain/src/node/types.ts";
import type { JobSpecMessage } from "../../offchain/src/protocol/index.ts";
import type { ReplicaReceipt } from "../../offchain/src/quorum/report.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { TrustBook } from "../../offchain/src/trust/index.ts";
import { CHAIN_INFO, DONOR, DONOR_PEER, DONOR_PEER_ID, type ServedNode } from "./node-views.ts";

const NOW = Date.UTC(2026, 0, 2, 3, 4, 5);
const LIAR: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const LIAR_PEER = "12D3KooWLiar1Liar1Liar1Liar1Liar1Liar1Liar1Liar1Li";
const JOB: Hex = `0x${"0a".repeat(32)}`;
const TX: Hex = `0x${"0b".repeat(32)}`;

function replica(operator: Address, peerId: string, outputCid: Hex): ReplicaReceipt {
  return {
    peerId,
    operator,
    receipt: {
      jobId: JOB,
      executor: operator,
      moduleCid: `0x${"11".repeat(32)}`,
      inputCid: `0x${"12".repeat(32)}`,
      outputCid,
      fuelUsed: "7",
      status: 0,
      startedAt: "1",
      finishedAt: "2",
    },
    signature: `0x${"ab".repeat(65)}`,
    latencyMs: 40,
    pricePerMegaFuel: 1_000n,
  };
}

/** Peer views as node.ts builds them: the peer's view plus the trust book's reputation and state. */
function peerViews(book: TrustBook): PeerView[] {
  const liar: PeerView = {
    peerId: LIAR_PEER,
    connected: false,
    operator: LIAR,
    multiaddrs: [],
    penaltyScore: 3,
  };
  return [DONOR_PEER, liar].map((view) => ({
    ...view,
    reputation: book.reputation(view.operator!),
    trust: book.view(view.operator!)[0]!,
  }));
}

describe("peers with trust", () => {
  let dir: string;
  let server: ApiServer;
  let views: PeerView[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "cell-trust-peers-"));
    const store = openStore(":memory:");
    const book = new TrustBook({ store, now: () => NOW, log: { info() {}, warn() {} } });
    book.onVerdict({
      jobId: JOB,
      spec: { moduleCid: `0x${"11".repeat(32)}` } as JobSpecMessage,
      outcome: "accepted",
      quorum: 1,
      agreeing: [replica(DONOR.address, DONOR_PEER_ID, `0x${"22".repeat(32)}`)],
      dissenting: [replica(LIAR, LIAR_PEER, `0x${"66".repeat(32)}`)],
      silent: [],
      decidedAt: NOW,
    });
    book.onSlashed(LIAR, { jobId: JOB, kind: "outvote", tx: TX });
    views = peerViews(book);
    store.close();
    const node: ServedNode = {
      peerId: "12D3KooWBuyer",
      did: "did:key:z6MkBuyer",
      operator: DONOR.address,
      chainInfo: CHAIN_INFO,
      multiaddrs: () => [],
      submitJob: () => Promise.reject(new Error("not in this test")),
      getJob: () => undefined,
      listJobs: () => [],
      peers: () => views,
      on: () => {},
      off: () => {},
    };
    const dataDir = join(dir, "node");
    const token = await ensureApiToken(dataDir);
    server = await createApiServer({ node, token: token.token });
    await writeApiInfo(dataDir, { url: server.url, tokenFile: token.tokenFile });
  });
  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("serves reputation and trust state in the peers' JSON", async () => {
    const { code, stdout, stderr } = await cell(["peers", "--json", "--data-dir", join(dir, "node")]);
    assert.equal(code, 0, stderr);
    const peers = JSON.parse(stdout) as PeerView[];
    const liar = peers.find((p) => p.peerId === LIAR_PEER)!;
    assert.equal(liar.trust!.status, "quarantined");
    assert.equal(liar.trust!.until, NOW + 5 * 60_000);
    assert.equal(liar.trust!.evidence[0]!.jobId, JOB);
    assert.equal(liar.trust!.slashes[0]!.tx, TX);
    const donor = peers.find((p) => p.peerId === DONOR_PEER_ID)!;
    assert.equal(donor.trust!.status, "clear");
    assert.ok(donor.reputation! > liar.reputation!);
  });

  it("prints the quarantined peer with its reason, until, evidence and slash", async () => {
    const { code, stdout, stderr } = await cell(["peers", "--data-dir", join(dir, "node")]);
    assert.equal(code, 0, stderr);
    const liarReputation = views[1]!.reputation;
    const donorReputation = views[0]!.reputation;
    assert.equal(
      stdout,
      [
        `${DONOR_PEER_ID}  connected  staked donor  operator ${DONOR.address}  price 1000/Mfuel  slots 1/2 free  penalty 0  reputation ${donorReputation}`,
        "    /ip4/127.0.0.1/tcp/40001",
        `${LIAR_PEER}  disconnected  operator ${LIAR}  penalty 3  reputation ${liarReputation}`,
        `    QUARANTINED until 2026-01-02T03:09:05.000Z (strike 1): outvoted by a quorum on job ${JOB}`,
        `    evidence: outvote job ${JOB}`,
        `    slashed: outvote job ${JOB} tx ${TX}`,
        "",
      ].join("\n"),
    );
  });
});
