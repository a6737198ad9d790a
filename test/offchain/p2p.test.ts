import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getPublicKeyAsync } from "@noble/ed25519";
import { peerIdFromPrivateKey, peerIdFromString } from "@libp2p/peer-id";
import { lpStream } from "@libp2p/utils";
import { base58btc } from "multiformats/bases/base58";
import { pino } from "pino";
import { z } from "zod/v4";
import { cidOf } from "../../offchain/src/protocol/index.ts";
import {
  BLOCK_PROTOCOL,
  createMeshNode,
  MemoryBlockSource,
  MeshError,
  peerKeyFromSeed,
  type MeshLimits,
  type MeshNode,
  type RejectEvent,
} from "../../offchain/src/p2p/index.ts";

const logger = pino({ level: "silent" });
const encoder = new TextEncoder();

function seed(label: number): Uint8Array {
  return new Uint8Array(32).fill(label);
}

async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
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

/** Sends one raw length-prefixed frame on a fresh stream and returns the decoded JSON reply. */
async function rawRequest(
  from: MeshNode,
  to: MeshNode,
  protocol: string,
  frame: Uint8Array,
): Promise<unknown> {
  const stream = await from.libp2p.dialProtocol(peerIdFromString(to.peerId), protocol);
  const lp = lpStream(stream);
  await lp.write(frame);
  const reply = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as unknown;
  await stream.close().catch(() => undefined);
  return reply;
}

const started: MeshNode[] = [];

async function startNode(
  label: number,
  bootstrap: MeshNode[],
  limits?: Partial<MeshLimits>,
): Promise<MeshNode> {
  const node = await createMeshNode({
    peerKeySeed: seed(label),
    bootstrap: bootstrap.map((peer) => peer.multiaddrs()[0]!),
    logger,
    ...(limits ? { limits } : {}),
  });
  started.push(node);
  return node;
}

const News = z.object({ seq: z.number().int().nonnegative(), text: z.string().max(200) }).strict();
type News = z.infer<typeof News>;

const Sum = z.object({ a: z.number().int(), b: z.number().int() }).strict();
const SumResult = z.object({ sum: z.number().int() }).strict();
const SUM_PROTOCOL = "/cell-test/sum/1";
const sumSpec = { request: Sum, response: SumResult, maxRequestBytes: 256, maxResponseBytes: 256 };

describe("p2p mesh over loopback TCP", { timeout: 60_000 }, () => {
  let a: MeshNode;
  let b: MeshNode;
  let c: MeshNode;
  let d: MeshNode;

  before(async () => {
    a = await startNode(1, []);
    [b, c, d] = await Promise.all([startNode(2, [a]), startNode(3, [a]), startNode(4, [a])]);
  });

  after(async () => {
    await Promise.all(started.map((node) => node.stop()));
  });

  it("forms a mesh through the bootstrap peer, with keys derived from the seed", async () => {
    await waitFor(
      () => a.peers().length >= 3 && [b, c, d].every((node) => node.peers().includes(a.peerId)),
      "bootstrap",
    );

    const expectedPeerId = peerIdFromPrivateKey(await peerKeyFromSeed(seed(2))).toString();
    assert.equal(b.peerId, expectedPeerId);
    assert.match(b.multiaddrs()[0]!, new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${b.peerId}$`));

    const publicKey = await getPublicKeyAsync(seed(2));
    const decoded = base58btc.decode(b.did.slice("did:key:".length));
    assert.ok(b.did.startsWith("did:key:z6Mk"));
    assert.deepEqual([...decoded.subarray(0, 2)], [0xed, 0x01]);
    assert.deepEqual(decoded.subarray(2), publicKey);
    await assert.rejects(peerKeyFromSeed(new Uint8Array(31)), /32 bytes/);
  });

  it("carries concurrent pings on one connection and keeps it open", async () => {
    // The DHT pings every new peer while libp2p's connection monitor pinged it too; with
    // one ping stream allowed the second failed and the monitor closed the connection.
    await waitFor(() => a.peers().includes(b.peerId), "a connection from a to b");
    const connection = a.libp2p.getConnections(peerIdFromString(b.peerId))[0]!;
    const rtts = await Promise.all(
      Array.from({ length: 4 }, () => a.libp2p.services.ping.ping(peerIdFromString(b.peerId))),
    );
    assert.equal(rtts.length, 4);
    assert.ok(rtts.every((rtt) => Number.isFinite(rtt)));
    assert.equal(connection.status, "open");
    assert.equal(b.stats().connectionsClosed, 0, "no connection of b was closed");
  });

  it("delivers schema-valid gossip to every subscriber, with the origin peer id", async () => {
    const topic = "/cell-test/news/1";
    const received = new Map<string, Array<{ message: News; from: string }>>();
    for (const node of [a, c, d]) {
      received.set(node.peerId, []);
      node.subscribe(topic, News, (message, from) => void received.get(node.peerId)!.push({ message, from }));
    }
    await waitFor(
      () => b.libp2p.services.pubsub.getSubscribers(topic).length >= 3,
      "subscriptions to reach the publisher",
    );

    for (let seq = 0; seq < 3; seq++) await b.publish(topic, News, { seq, text: `hello ${seq}` });
    await waitFor(() => [...received.values()].every((list) => list.length === 3), "gossip delivery");

    for (const list of received.values()) {
      assert.deepEqual(list.map(({ message }) => message.seq).sort(), [0, 1, 2]);
      assert.ok(list.every(({ from }) => from === b.peerId));
    }
    await expectMeshError(b.publish(topic, News, { seq: -1, text: "x" }), "malformed");
    await expectMeshError(
      b.publish(topic, News, { seq: 1, text: "x".repeat(100) }, { maxBytes: 64 }),
      "too_large",
    );
  });

  it("rejects malformed and oversized gossip with a reason counted against the sender", async () => {
    const topic = "/cell-test/strict/1";
    const attacker = await startNode(20, [a]);
    const delivered: News[] = [];
    const rejections: RejectEvent[] = [];
    const unhook = a.onReject((event) => rejections.push(event));
    a.subscribe(topic, News, (message) => void delivered.push(message), { maxBytes: 256 });
    const pubsub = attacker.libp2p.services.pubsub;
    await waitFor(
      () => pubsub.getSubscribers(topic).some((peer) => peer.toString() === a.peerId),
      "attacker to see the subscription",
    );

    await pubsub.publish(topic, encoder.encode("{not json"));
    await pubsub.publish(topic, encoder.encode(JSON.stringify({ seq: "one", text: 1 })));
    await pubsub.publish(topic, encoder.encode(JSON.stringify({ seq: 1, text: "y".repeat(400) })));
    await waitFor(
      () => rejections.filter((event) => event.peerId === attacker.peerId).length >= 3,
      "three rejections",
    );
    unhook();

    const counts = a.penalties(attacker.peerId).counts;
    assert.equal(counts.malformed, 2);
    assert.equal(counts.too_large, 1);
    assert.ok(a.penalties(attacker.peerId).score > 0);
    const reasons = rejections.filter((event) => event.peerId === attacker.peerId);
    assert.ok(reasons.every((event) => event.protocol === topic));
    assert.match(reasons.find((event) => event.reason === "too_large")!.detail, /limit 256/);
    assert.match(reasons.find((event) => event.detail.includes("schema"))!.detail, /seq/);
    assert.equal(delivered.length, 0);

    await waitFor(
      () => c.libp2p.services.pubsub.getSubscribers(topic).length >= 1,
      "honest publisher to see the subscription",
    );
    await c.publish(topic, News, { seq: 7, text: "still serving" });
    await waitFor(() => delivered.length === 1, "valid gossip after the attack");
    assert.equal(delivered[0]!.text, "still serving");
  });

  it("answers requests and reports refusals as typed errors", async () => {
    await c.handle(SUM_PROTOCOL, sumSpec, async ({ a: x, b: y }) => {
      if (x === 13) throw new Error("thirteen is unlucky");
      return { sum: x + y };
    });

    assert.deepEqual(await b.request(c.peerId, SUM_PROTOCOL, sumSpec, { a: 2, b: 40 }), { sum: 42 });
    assert.deepEqual(await d.request(c.multiaddrs()[0]!, SUM_PROTOCOL, sumSpec, { a: -5, b: 5 }), { sum: 0 });
    const many = await Promise.all(
      Array.from({ length: 50 }, (_, i) => b.request(c.peerId, SUM_PROTOCOL, sumSpec, { a: 100, b: i })),
    );
    assert.deepEqual(
      many.map(({ sum }) => sum),
      Array.from({ length: 50 }, (_, i) => 100 + i),
    );

    const sumStreams = b.libp2p
      .getConnections(peerIdFromString(c.peerId))
      .flatMap((connection) => connection.streams)
      .filter((stream) => stream.protocol === SUM_PROTOCOL);
    assert.ok(
      sumStreams.length >= 1 && sumStreams.length <= 4,
      `${sumStreams.length} streams reused for 51 requests`,
    );

    const failed = await expectMeshError(
      b.request(c.peerId, SUM_PROTOCOL, sumSpec, { a: 13, b: 1 }),
      "handler_error",
    );
    assert.match(failed.reason, /thirteen/);
    await expectMeshError(b.request(c.peerId, SUM_PROTOCOL, sumSpec, { a: 1.5, b: 1 }), "malformed");
    await expectMeshError(b.request(c.peerId, "/cell-test/absent/1", sumSpec, { a: 1, b: 1 }), "unsupported");
    assert.equal(c.penalties(b.peerId).score, 0, "handler failures are not the caller's fault");
  });

  it("rejects malformed and oversized request frames with reasons and keeps serving", async () => {
    const before = c.penalties(d.peerId).counts;
    assert.deepEqual(await rawRequest(d, c, SUM_PROTOCOL, encoder.encode('{"a":')), {
      error: {
        code: "malformed",
        reason: `request on ${SUM_PROTOCOL} is not UTF-8 JSON: Unexpected end of JSON input`,
      },
    });
    const wrongShape = (await rawRequest(d, c, SUM_PROTOCOL, encoder.encode(JSON.stringify({ a: 1 })))) as {
      error: { code: string; reason: string };
    };
    assert.equal(wrongShape.error.code, "malformed");
    assert.match(wrongShape.error.reason, /b: Invalid input: expected number/);
    const tooLarge = (await rawRequest(
      d,
      c,
      SUM_PROTOCOL,
      encoder.encode(JSON.stringify({ a: 1, b: 2, pad: "z".repeat(400) })),
    )) as {
      error: { code: string; reason: string };
    };
    assert.deepEqual(tooLarge.error, { code: "too_large", reason: "request frame exceeds 256 bytes" });

    const after = c.penalties(d.peerId).counts;
    assert.equal(after.malformed - before.malformed, 2);
    assert.equal(after.too_large - before.too_large, 1);
    assert.deepEqual(await d.request(c.peerId, SUM_PROTOCOL, sumSpec, { a: 1, b: 1 }), { sum: 2 });
  });

  it("rate-limits flooding peers per protocol and topic, and blocks them past the penalty threshold", async () => {
    const guarded = await startNode(30, [a], { penaltyThreshold: 80, blockMs: 60_000 });
    const flooder = await startNode(31, [guarded]);
    const honest = await startNode(32, [guarded]);
    const topic = "/cell-test/flood/1";
    const delivered: News[] = [];
    guarded.subscribe(topic, News, (message) => void delivered.push(message), { ratePerSecond: 5, burst: 5 });
    await waitFor(
      () => flooder.libp2p.services.pubsub.getSubscribers(topic).length >= 1,
      "flooder to see the subscription",
    );

    const floodStart = Date.now();
    for (let seq = 0; seq < 40; seq++) {
      await flooder.libp2p.services.pubsub.publish(
        topic,
        encoder.encode(JSON.stringify({ seq, text: "flood" })),
      );
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await waitFor(
      () => delivered.length + guarded.penalties(flooder.peerId).counts.rate_limited >= 40,
      "flood to be processed",
    );
    const allowed = 5 + (5 * (Date.now() - floodStart)) / 1000 + 1;
    assert.ok(delivered.length <= allowed, `${delivered.length} delivered, at most ${allowed} allowed`);
    assert.ok(guarded.penalties(flooder.peerId).counts.rate_limited >= 40 - allowed);

    await guarded.handle(
      "/cell-test/echo/1",
      { ...sumSpec, ratePerSecond: 5, burst: 5 },
      async ({ a: x, b: y }) => ({ sum: x + y }),
    );
    const requestFloodStart = Date.now();
    const outcomes = await Promise.allSettled(
      Array.from({ length: 100 }, () =>
        flooder.request(guarded.peerId, "/cell-test/echo/1", sumSpec, { a: 1, b: 1 }),
      ),
    );
    const refusals = outcomes
      .filter((outcome) => outcome.status === "rejected")
      .map((outcome) => outcome.reason as MeshError);
    assert.ok(
      refusals.some((err) => err.code === "rate_limited"),
      "the flood is refused as rate_limited",
    );
    const served = outcomes.filter((outcome) => outcome.status === "fulfilled").length;
    const servable = 5 + (5 * (Date.now() - requestFloodStart)) / 1000 + 1;
    assert.ok(served <= servable, `${served} served, at most ${servable} allowed`);

    await waitFor(() => guarded.isBlocked(flooder.peerId), "the flooder to be blocked");
    await waitFor(() => !guarded.peers().includes(flooder.peerId), "the flooder to be disconnected");
    const refused = await flooder
      .request(guarded.peerId, "/cell-test/echo/1", sumSpec, { a: 1, b: 1 }, { timeoutMs: 5_000 })
      .then(
        () => assert.fail("a blocked peer must not be served"),
        (err: unknown) => err as MeshError,
      );
    assert.ok(["unreachable", "timeout"].includes(refused.code), refused.message);
    assert.deepEqual(await honest.request(guarded.peerId, "/cell-test/echo/1", sumSpec, { a: 20, b: 22 }), {
      sum: 42,
    });
    assert.ok(guarded.rejectionCounts().rate_limited >= 40);
  });

  it("reaches a restarted peer again by its peer id", async () => {
    const protocol = "/cell-test/restart/1";
    const first = await startNode(40, [a]);
    await first.handle(protocol, sumSpec, async ({ a: x, b: y }) => ({ sum: x + y }));
    assert.deepEqual(await b.request(first.peerId, protocol, sumSpec, { a: 1, b: 2 }), { sum: 3 });
    const oldAddress = first.multiaddrs()[0]!;
    await first.stop();
    await expectMeshError(
      b.request(first.peerId, protocol, sumSpec, { a: 1, b: 2 }, { timeoutMs: 3_000 }),
      "unreachable",
    );

    const second = await startNode(40, [a]);
    assert.equal(second.peerId, first.peerId);
    assert.notEqual(second.multiaddrs()[0], oldAddress);
    await second.handle(protocol, sumSpec, async ({ a: x, b: y }) => ({ sum: 10 * (x + y) }));
    await waitFor(() => a.peers().includes(second.peerId), "the restarted peer to reach the bootstrap peer");
    assert.deepEqual(
      await b.request(second.peerId, protocol, sumSpec, { a: 1, b: 2 }, { timeoutMs: 8_000 }),
      { sum: 30 },
    );
  });

  it("fetches a block from a provider found in the DHT and rejects a tampered one", async () => {
    const payload = encoder.encode("a content-addressed block ".repeat(100));
    const cid = await cidOf(payload);
    const honestSource = new MemoryBlockSource();
    honestSource.put(cid, payload);
    const tamperedSource = new MemoryBlockSource();
    const tampered = payload.slice();
    tampered[0] = tampered[0]! ^ 0xff;
    tamperedSource.put(cid, tampered);
    await c.serveBlocks(honestSource);
    await d.serveBlocks(tamperedSource);

    await waitFor(async () => {
      await c.provide(cid, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined);
      return (await b.findProviders(cid, { signal: AbortSignal.timeout(5_000) })).includes(c.peerId);
    }, "provider record to be found");

    assert.deepEqual(await b.fetchBlock(cid), payload);

    const rejected: RejectEvent[] = [];
    b.onReject((event) => rejected.push(event));
    const err = await expectMeshError(b.fetchBlock(cid, { from: [d.peerId] }), "not_found");
    assert.match(err.reason, /hashes to/);
    assert.equal(b.penalties(d.peerId).counts.hash_mismatch, 1);
    assert.deepEqual(
      rejected.map(({ peerId, reason, protocol }) => ({ peerId, reason, protocol })),
      [{ peerId: d.peerId, reason: "hash_mismatch", protocol: BLOCK_PROTOCOL }],
    );
    assert.deepEqual(await b.fetchBlock(cid, { from: [d.peerId, c.peerId] }), payload);

    const unknown = await cidOf(encoder.encode("nobody has this"));
    await expectMeshError(b.fetchBlock(unknown, { from: [c.peerId] }), "not_found");
  });

  it("paces a burst of 500 publishes so that every subscriber receives all of them", async () => {
    const topic = "/cell-test/burst/1";
    const seen = new Map<string, Set<number>>();
    for (const node of [b, c, d]) {
      const set = new Set<number>();
      seen.set(node.peerId, set);
      node.subscribe(topic, News, ({ seq }) => void set.add(seq));
    }
    await waitFor(
      () => a.libp2p.services.pubsub.getSubscribers(topic).length >= 3,
      "subscriptions to reach the publisher",
    );

    const sends = Array.from({ length: 500 }, (_, seq) =>
      a.publish(topic, News, { seq, text: `burst message ${seq}` }),
    );
    assert.ok(a.publishQueueDepth() > 0, "the burst is queued, not pushed at once");
    const recipients = await Promise.all(sends);
    assert.ok(recipients.every((count) => count >= 1));
    assert.equal(a.publishQueueDepth(), 0);

    await waitFor(
      () => [...seen.values()].every((set) => set.size === 500),
      "all 500 messages at every subscriber",
      30_000,
    );
    for (const set of seen.values()) assert.equal(set.size, 500);
  });
});
