// CourtWatcher's decisions (grant, serve, retry, give up) against in-memory ports; the real
// chain, mesh and runtime are exercised by test/e2e/jury.test.ts.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { hexToBytes, keccak256, toHex } from "viem";
import type { Address, Hex } from "viem";
import type { OutvoteEvidence } from "../../offchain/src/chain/index.ts";
import { peerIdFromPublicKey } from "../../offchain/src/identity/index.ts";
import { CourtWatcher } from "../../offchain/src/node/juror.ts";
import type { DrawnCase, JurorPorts } from "../../offchain/src/node/juror.ts";
import { bytes32ToCid, cidOf, cidToBytes32 } from "../../offchain/src/protocol/index.ts";
import type { Receipt } from "../../offchain/src/protocol/index.ts";
import type { Runtime } from "../../offchain/src/runtime/index.ts";

const OPERATOR: Address = "0x00000000000000000000000000000000000000a1";
const OWN_DONOR: Address = "0x00000000000000000000000000000000000000d1";
const OTHER_JUROR: Address = "0x00000000000000000000000000000000000000d2";
const ACCUSED: Address = "0x00000000000000000000000000000000000000e1";
const MODULE = new TextEncoder().encode("module bytes");
const INPUT = new TextEncoder().encode("input bytes");
const MODULE_CID = (await cidOf(MODULE)).toString();
const INPUT_CID = (await cidOf(INPUT)).toString();
const OUTPUT_CID = (await cidOf(new TextEncoder().encode("output"))).toString();
const peerKeyOf = (donor: Address): Hex => keccak256(donor);
const peerOf = (donor: Address) => peerIdFromPublicKey(hexToBytes(peerKeyOf(donor)));

function evidence(): OutvoteEvidence {
  const receipt: Receipt = {
    jobId: keccak256(toHex("job")),
    executor: "0x00000000000000000000000000000000000000e2",
    moduleCid: cidToBytes32(MODULE_CID),
    inputCid: cidToBytes32(INPUT_CID),
    outputCid: keccak256(toHex("claimed")),
    fuelUsed: 5n,
    status: 0,
    startedAt: 1n,
    finishedAt: 2n,
  };
  return {
    spec: {
      buyer: "0x00000000000000000000000000000000000000bb",
      moduleCid: receipt.moduleCid,
      inputCid: receipt.inputCid,
      entry: "",
      fuelLimit: 1_000n,
      memoryPages: 1,
      timeoutMs: 1_000,
      replicas: 2,
      maxPricePerMegaFuel: 0n,
      minReputation: 0,
      deadline: 0n,
      priority: 1,
      channel: keccak256(toHex("channel")),
      salt: keccak256(toHex("salt")),
    },
    accused: { receipt, signature: "0x" },
    quorum: [],
  };
}

interface World {
  draws: DrawnCase[];
  local: Map<string, Uint8Array>;
  remote: Map<string, Uint8Array>;
  grants: { peerId: string; cids: string[] }[];
  votes: { caseId: bigint; receipt: Receipt }[];
  fetchFailures: number;
  now: number;
}

/** A watcher on in-memory ports; resolves `voted` at the first vote. */
function watcher(world: World, withRuntime = true) {
  let onVote: () => void = () => undefined;
  const voted = new Promise<void>((resolve) => (onVote = resolve));
  let polls = 0;
  let onPoll: () => void = () => undefined;
  const polled = (count: number) =>
    new Promise<void>((resolve) => {
      onPoll = () => {
        if (polls >= count) resolve();
      };
    });
  const runtime = {
    execute: async () => ({
      kind: "result" as const,
      status: "ok" as const,
      fuelUsed: 7n,
      output: new Uint8Array(),
      outputCid: OUTPUT_CID,
      stderr: new Uint8Array(),
    }),
  } as unknown as Runtime;
  const ports: JurorPorts = {
    chain: {
      head: async () => {
        polls += 1;
        onPoll();
        return 10n;
      },
      drawnCases: async (from, to) => world.draws.filter((_, i) => BigInt(i) >= from && BigInt(i) <= to),
      evidence: async () => evidence(),
      parties: async () => [ACCUSED],
      peerKeyOf: async (donor) => peerKeyOf(donor),
      ownDonor: async () => OWN_DONOR,
      hasVoted: async (caseId) => world.votes.some((v) => v.caseId === caseId),
      vote: async (caseId, vote) => {
        world.votes.push({ caseId, receipt: vote.receipt });
        onVote();
      },
    },
    blocks: {
      local: (cid) => world.local.get(cid),
      fetch: async (cid, from) => {
        assert.equal(from[0], peerOf(ACCUSED), "the parties are asked first");
        if (world.fetchFailures > 0) {
          world.fetchFailures -= 1;
          throw new Error("not found yet");
        }
        const bytes = world.remote.get(cid);
        if (!bytes) throw new Error(`no ${cid}`);
        return bytes;
      },
      grant: (peerId, cids) => world.grants.push({ peerId, cids }),
      connectedPeers: () => [],
    },
    runtime: withRuntime ? runtime : undefined,
    operator: OPERATOR,
    signReceipt: async () => "0x01",
    now: () => world.now,
    log: pino({ level: "silent" }),
  };
  const w = new CourtWatcher(ports, { pollMs: 5, blockRange: 100n, lookbackBlocks: 10n });
  return { w, voted, polled };
}

function world(overrides: Partial<World> = {}): World {
  return {
    draws: [{ caseId: 1n, jurors: [OWN_DONOR, OTHER_JUROR], voteDeadline: 2_000n }],
    local: new Map(),
    remote: new Map([
      [MODULE_CID, MODULE],
      [INPUT_CID, INPUT],
    ]),
    grants: [],
    votes: [],
    fetchFailures: 0,
    now: 1_000_000,
    ...overrides,
  };
}

describe("CourtWatcher", { timeout: 10_000 }, () => {
  // The watcher's timer does not hold the process open (a node's does not either): the tests do.
  let keepAlive: NodeJS.Timeout;
  before(() => {
    keepAlive = setInterval(() => undefined, 1_000);
  });
  after(() => clearInterval(keepAlive));

  it("lets every drawn juror fetch a case's blocks this node holds, and votes only when drawn", async () => {
    const state = world({
      draws: [{ caseId: 1n, jurors: [OTHER_JUROR], voteDeadline: 2_000n }],
      local: new Map([[INPUT_CID, INPUT]]),
    });
    const { w, polled } = watcher(state);
    w.start();
    await polled(3);
    await w.stop();
    assert.deepEqual(state.grants, [{ peerId: peerOf(OTHER_JUROR), cids: [MODULE_CID, INPUT_CID] }]);
    assert.deepEqual(state.votes, []);
  });

  it("fetches, runs and votes with its own receipt when drawn, trying a failed fetch again", async () => {
    const state = world({ fetchFailures: 1 });
    const { w, voted } = watcher(state);
    w.start();
    await voted;
    await w.stop();
    assert.equal(state.votes.length, 1);
    const [{ receipt }] = state.votes as [{ caseId: bigint; receipt: Receipt }];
    assert.equal(receipt.executor, OPERATOR);
    assert.equal(receipt.jobId, evidence().accused.receipt.jobId);
    assert.equal(bytes32ToCid(receipt.outputCid).toString(), OUTPUT_CID);
    assert.equal(receipt.fuelUsed, 7n);
    assert.deepEqual(state.grants, [], "a node without the blocks grants nothing");
  });

  it("casts no vote past the deadline, nor without a runtime", async () => {
    const late = world({ now: 3_000_000 });
    const first = watcher(late);
    first.w.start();
    await first.polled(3);
    await first.w.stop();
    assert.deepEqual(late.votes, []);

    const noRuntime = world();
    const second = watcher(noRuntime, false);
    second.w.start();
    await second.polled(3);
    await second.w.stop();
    assert.deepEqual(noRuntime.votes, []);
  });
});
