import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { BlockAccess, storeBlockSource } from "../../offchain/src/node/block-access.ts";
import {
  BLOCK_CHUNK_BYTES,
  createMeshNode,
  MemoryBlockSource,
  MeshError,
  type MeshNode,
} from "../../offchain/src/p2p/index.ts";
import { CID, DATA_LIMITS, MAX_BLOCK_BYTES, cidOf } from "../../offchain/src/protocol/index.ts";
import { openStore, type Store } from "../../offchain/src/store/index.ts";
import { freshDirs } from "../support/fresh-dirs.ts";

const logger = pino({ level: "silent" });
const OPERATOR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const SIGNATURE = `0x${"ab".repeat(65)}` as const;
const freshDir = freshDirs("cell-p2p-blocks-", "store");

function seed(label: number): Uint8Array {
  return new Uint8Array(32).fill(label);
}

async function expectMeshError(promise: Promise<unknown>, code: string): Promise<MeshError> {
  const err = await promise.then(
    () => assert.fail(`expected a MeshError ${code}`),
    (caught: unknown) => caught,
  );
  assert.ok(err instanceof MeshError, `expected a MeshError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return err;
}

describe("block exchange of large data, served only to the entitled (real libp2p over loopback TCP)", () => {
  let store: Store;
  let server: MeshNode;
  let buyer: MeshNode;
  let donor: MeshNode;
  let stranger: MeshNode;
  const blocks = {} as Record<"module" | "input" | "output", { cid: CID; bytes: Uint8Array }>;

  before(async () => {
    store = openStore(freshDir());
    const access = new BlockAccess(store);
    server = await createMeshNode({
      peerKeySeed: seed(71),
      logger,
      blockSource: storeBlockSource(store, access),
    });
    const bootstrap = [server.multiaddrs()[0]!];
    const peers = await Promise.all(
      [72, 73, 74].map((label) => createMeshNode({ peerKeySeed: seed(label), logger, bootstrap })),
    );
    [buyer, donor, stranger] = peers as [MeshNode, MeshNode, MeshNode];
    for (const kind of ["module", "input", "output"] as const) {
      const bytes = new Uint8Array(randomBytes(DATA_LIMITS[`${kind}Bytes`]));
      blocks[kind] = { cid: await cidOf(bytes), bytes };
      await store.blocks.putWithCid(blocks[kind].cid.toString(), bytes);
    }
    // The server bought job 0x0a (the donor bid on it) and executed job 0x0b for the buyer.
    store.jobs.insert({
      jobId: "0x0a",
      role: "buyer",
      state: "announced",
      spec: {
        announce: {
          moduleCid: blocks.module.cid.toString(),
          inputCid: blocks.input.cid.toString(),
          buyerPeer: server.peerId,
        },
      },
    });
    store.bids.insert({
      jobId: "0x0a",
      bidder: donor.peerId,
      operator: OPERATOR,
      pricePerMegaFuel: 1n,
      message: {},
      signature: SIGNATURE,
    });
    store.jobs.insert({
      jobId: "0x0b",
      role: "executor",
      state: "completed",
      spec: { announce: { moduleCid: "-", inputCid: "-", buyerPeer: buyer.peerId } },
      result: { outputCid: blocks.output.cid.toString() },
    });
  });

  after(async () => {
    await Promise.all([server, buyer, donor, stranger].map((node) => node?.stop()));
    store?.close();
  });

  it("moves a module and an input at their limits to a donor that bid, an output at its limit to its buyer", async () => {
    assert.ok(DATA_LIMITS.moduleBytes > 4 * BLOCK_CHUNK_BYTES, "the blocks span many chunks");
    const module = await donor.fetchBlock(blocks.module.cid, {
      from: [server.peerId],
      kind: "module",
      timeoutMs: 60_000,
    });
    assert.equal(module.byteLength, DATA_LIMITS.moduleBytes);
    assert.ok(Buffer.from(module).equals(blocks.module.bytes));
    const input = await donor.fetchBlock(blocks.input.cid, {
      from: [server.peerId],
      kind: "input",
      timeoutMs: 60_000,
    });
    assert.ok(Buffer.from(input).equals(blocks.input.bytes));
    const output = await buyer.fetchBlock(blocks.output.cid, {
      from: [server.peerId],
      kind: "output",
      timeoutMs: 60_000,
    });
    assert.ok(Buffer.from(output).equals(blocks.output.bytes));
  });

  it("refuses a stranger, and the donor an output that is not its job's, counting it against them", async () => {
    const refused = await expectMeshError(
      stranger.fetchBlock(blocks.input.cid, { from: [server.peerId] }),
      "not_entitled",
    );
    assert.match(refused.reason, /served only to the participants of its jobs/);
    assert.equal(server.penalties(stranger.peerId).counts.not_entitled, 1);
    await expectMeshError(donor.fetchBlock(blocks.output.cid, { from: [server.peerId] }), "not_entitled");
    assert.equal(server.penalties(donor.peerId).counts.not_entitled, 1);
    assert.equal(server.penalties(buyer.peerId).counts.not_entitled, 0);
  });

  it("refuses a block one byte above a limit, naming the limit, before fetching it", async () => {
    const source = new MemoryBlockSource();
    const oversized = new Uint8Array(MAX_BLOCK_BYTES + 1);
    const oversizedCid = await cidOf(oversized);
    source.put(oversizedCid, oversized);
    const input = new Uint8Array(DATA_LIMITS.inputBytes + 1);
    const inputCid = await cidOf(input);
    source.put(inputCid, input);
    await stranger.serveBlocks(source);

    const overBlock = await expectMeshError(
      buyer.fetchBlock(oversizedCid, { from: [stranger.peerId] }),
      "too_large",
    );
    assert.match(
      overBlock.reason,
      new RegExp(`${MAX_BLOCK_BYTES + 1} bytes, above the ${MAX_BLOCK_BYTES}-byte`),
    );
    const overInput = await expectMeshError(
      buyer.fetchBlock(inputCid, { from: [stranger.peerId], kind: "input" }),
      "too_large",
    );
    assert.match(
      overInput.reason,
      new RegExp(
        `the input is ${DATA_LIMITS.inputBytes + 1} bytes, above the ${DATA_LIMITS.inputBytes}-byte limit \\(DATA_LIMITS.inputBytes\\)`,
      ),
    );
  });

  it("hash-checks a block reassembled from chunks", async () => {
    const bytes = new Uint8Array(randomBytes(3 * BLOCK_CHUNK_BYTES + 17));
    const cid = await cidOf(bytes);
    const tampered = bytes.slice();
    tampered[2 * BLOCK_CHUNK_BYTES + 5]! ^= 1;
    const liar = new MemoryBlockSource();
    liar.put(cid, tampered);
    await donor.serveBlocks(liar);
    const err = await expectMeshError(buyer.fetchBlock(cid, { from: [donor.peerId] }), "not_found");
    assert.match(err.reason, /hashes to/);
    assert.equal(buyer.penalties(donor.peerId).counts.hash_mismatch, 1);
  });
});
