import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { pino } from "pino";
import { z } from "zod/v4";
import {
  createMeshNode,
  GOSSIP_SCORE_THRESHOLDS,
  MeshError,
  peerKeyFromSeed,
  type MeshLimits,
  type MeshNode,
  type RejectEvent,
} from "../../offchain/src/p2p/index.ts";

const logger = pino({ level: "silent" });
const encoder = new TextEncoder();
const News = z.object({ seq: z.number().int().nonnegative(), text: z.string().max(200) }).strict();
type News = z.infer<typeof News>;
const Sum = z.object({ a: z.number().int(), b: z.number().int() }).strict();
const sumSpec = {
  request: Sum,
  response: z.object({ sum: z.number().int() }).strict(),
  maxRequestBytes: 256,
  maxResponseBytes: 256,
};

async function waitFor(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const started: MeshNode[] = [];

async function startNode(
  label: number,
  bootstrap: MeshNode[],
  limits?: Partial<MeshLimits>,
): Promise<MeshNode> {
  const node = await createMeshNode({
    peerKeySeed: new Uint8Array(32).fill(label),
    bootstrap: bootstrap.map((peer) => peer.multiaddrs()[0]!),
    logger,
    ...(limits ? { limits } : {}),
  });
  started.push(node);
  return node;
}

function subscribersSeen(publisher: MeshNode, topic: string, subscriber: MeshNode): boolean {
  return publisher.libp2p.services.pubsub
    .getSubscribers(topic)
    .some((peer) => peer.toString() === subscriber.peerId);
}

/** gossipsub trusts a peer whose score was non-negative for up to a second after; true once that has lapsed. */
function trustLapsed(node: MeshNode, peerId: string): boolean {
  const whitelist = (
    node.libp2p.services.pubsub as unknown as {
      acceptFromWhitelist: Map<string, { acceptUntil: number }>;
    }
  ).acceptFromWhitelist;
  return (whitelist.get(peerId)?.acceptUntil ?? 0) < Date.now();
}

describe("abuse over loopback TCP", { timeout: 90_000 }, () => {
  after(async () => {
    await Promise.all(started.map((node) => node.stop()));
  });

  it("graylists the connection relaying invalid gossip, while an honest peer's messages keep flowing", async () => {
    const topic = "/cell-test/scored/1";
    const receiver = await startNode(51, []);
    const [rogue, honest] = await Promise.all([startNode(52, [receiver]), startNode(53, [receiver])]);
    const delivered: Array<{ message: News; from: string }> = [];
    receiver.subscribe(topic, News, (message, from) => void delivered.push({ message, from }));
    await waitFor(
      () => subscribersSeen(rogue, topic, receiver) && subscribersSeen(honest, topic, receiver),
      "both peers to see the subscription",
    );

    for (let i = 0; i < 5; i++)
      await rogue.libp2p.services.pubsub.publish(topic, encoder.encode(`junk ${i}`));
    await waitFor(
      () => receiver.gossipScore(rogue.peerId) < GOSSIP_SCORE_THRESHOLDS.graylistThreshold,
      "the rogue's score to fall below the graylist threshold",
    );
    assert.ok(!receiver.isBlocked(rogue.peerId), "five malformed messages are below the penalty block");
    assert.ok(receiver.peers().includes(rogue.peerId), "the rogue is still connected: gossipsub ignores it");
    await waitFor(() => trustLapsed(receiver, rogue.peerId), "gossipsub's short-lived trust to lapse");

    for (let seq = 100; seq < 105; seq++) {
      const sent = await rogue.libp2p.services.pubsub.publish(
        topic,
        encoder.encode(JSON.stringify({ seq, text: "valid, from the rogue" })),
      );
      assert.ok(
        sent.recipients.some((peer) => peer.toString() === receiver.peerId),
        "the rogue still sends",
      );
    }
    for (let seq = 0; seq < 3; seq++) {
      await honest.publish(topic, News, { seq, text: "honest" });
      await waitFor(() => delivered.some(({ message }) => message.seq === seq), `honest message ${seq}`);
    }
    assert.deepEqual(
      delivered.map(({ from }) => from),
      [honest.peerId, honest.peerId, honest.peerId],
      "none of the rogue's messages, valid or not, was processed",
    );
    assert.ok(receiver.gossipScore(honest.peerId) >= 0, "the honest peer's score stays non-negative");
    assert.equal(receiver.penalties(rogue.peerId).counts.malformed, 5);
  });

  it("counts application refusals against the sender, and blocks it at the penalty threshold", async () => {
    const judge = await startNode(61, [], { penaltyThreshold: 100 });
    const [cheat, bystander] = await Promise.all([startNode(62, [judge]), startNode(63, [judge])]);
    await judge.handle("/cell-test/sum/1", sumSpec, async ({ a, b }) => ({ sum: a + b }));
    await waitFor(() => judge.peers().length === 2, "both peers to connect");
    const events: RejectEvent[] = [];
    judge.onReject((event) => events.push(event));
    const before = judge.rejectionCounts();

    judge.penalize(cheat.peerId, "bad_signature", "bid signed by another key");
    judge.penalize(cheat.peerId, "unsolicited", "receipt for a job never assigned", "/cell/receipt/1");
    judge.penalize(judge.peerId, "bad_bid", "a node never penalizes itself");
    assert.deepEqual(
      events.map(({ peerId, reason, protocol, detail }) => ({ peerId, reason, protocol, detail })),
      [
        {
          peerId: cheat.peerId,
          reason: "bad_signature",
          protocol: "application",
          detail: "bid signed by another key",
        },
        {
          peerId: cheat.peerId,
          reason: "unsolicited",
          protocol: "/cell/receipt/1",
          detail: "receipt for a job never assigned",
        },
      ],
    );
    const counts = judge.penalties(cheat.peerId).counts;
    assert.equal(counts.bad_signature, 1);
    assert.equal(counts.unsolicited, 1);
    assert.ok(judge.penalties(cheat.peerId).score >= 29, "weighted like parse rejections");
    assert.equal(judge.rejectionCounts().bad_signature - before.bad_signature, 1);
    assert.equal(judge.penalties(judge.peerId).score, 0);

    for (let i = 0; i < 3; i++)
      judge.penalize(cheat.peerId, "bad_receipt", "receipt signature does not recover");
    assert.ok(judge.isBlocked(cheat.peerId), "blocked past the threshold");
    await waitFor(() => !judge.peers().includes(cheat.peerId), "the cheat to be disconnected");
    const refused = await cheat
      .request(judge.peerId, "/cell-test/sum/1", sumSpec, { a: 1, b: 1 }, { timeoutMs: 3_000 })
      .then(
        () => assert.fail("a blocked peer must not be served"),
        (err: unknown) => err as MeshError,
      );
    assert.ok(["unreachable", "timeout"].includes(refused.code), refused.message);
    assert.deepEqual(await bystander.request(judge.peerId, "/cell-test/sum/1", sumSpec, { a: 2, b: 3 }), {
      sum: 5,
    });
  });

  it("limits what one relaying connection carries, however many origins its messages claim", async () => {
    const topic = "/cell-test/relay/1";
    const node = await startNode(73, []);
    node.subscribe(topic, News, () => undefined, { ratePerSecond: 10, burst: 10 });
    const validate = node.libp2p.services.pubsub.topicValidators.get(topic)!;
    const relay = peerIdFromPrivateKey(await peerKeyFromSeed(new Uint8Array(32).fill(74)));
    const origins = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const seed = new Uint8Array(32).fill(200);
        seed[1] = i;
        return peerIdFromPrivateKey(await peerKeyFromSeed(seed));
      }),
    );
    const results: string[] = [];
    const startedAt = Date.now();
    for (const [i, origin] of origins.entries()) {
      const message = {
        type: "signed" as const,
        from: origin,
        topic,
        data: encoder.encode(JSON.stringify({ seq: i, text: "minted" })),
        sequenceNumber: BigInt(i),
        signature: new Uint8Array(64),
        key: origin.publicKey!,
      };
      results.push(String(await validate(relay, message)));
    }
    const accepted = results.filter((result) => result === "accept").length;
    // 8 × the per-origin burst of 10 from one relay, plus what its rate refilled meanwhile.
    const refilled = Math.ceil((80 * (Date.now() - startedAt)) / 1000);
    assert.ok(
      accepted >= 80 && accepted <= 80 + refilled,
      `${accepted} accepted of 200 (refill ${refilled})`,
    );
    assert.equal(results.at(-1), "ignore");
  });

  it("bounds gossip handler work per topic, dropping the excess as overloaded without blaming the sender", async () => {
    const topic = "/cell-test/slow/1";
    const slow = await startNode(71, []);
    const sender = await startNode(72, [slow]);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const handled: number[] = [];
    slow.subscribe(
      topic,
      News,
      async (message) => {
        await gate;
        handled.push(message.seq);
      },
      { handlerConcurrency: 1, handlerQueueMax: 2 },
    );
    await waitFor(() => subscribersSeen(sender, topic, slow), "the sender to see the subscription");

    for (let seq = 0; seq < 6; seq++) await sender.publish(topic, News, { seq, text: "work" });
    await waitFor(() => slow.penalties(sender.peerId).counts.overloaded === 3, "three messages dropped");
    assert.equal(slow.gossipBacklog(topic), 3, "one running, two waiting");
    assert.equal(slow.penalties(sender.peerId).score, 0, "our lack of room is not the sender's fault");
    release();
    await waitFor(() => handled.length === 3, "the kept messages to be handled");
    assert.deepEqual(handled, [0, 1, 2]);
    assert.equal(slow.gossipBacklog(topic), 0);
    assert.ok(slow.rejectionCounts().overloaded >= 3);
  });

  it("keeps no stream pool for a peer never reached, and at most maxStreamPools", async () => {
    const client = await startNode(81, [], { maxStreamPools: 2 });
    const server = await startNode(82, [client]);
    const protocols = ["/cell-test/p1/1", "/cell-test/p2/1", "/cell-test/p3/1"];
    for (const protocol of protocols)
      await server.handle(protocol, sumSpec, async ({ a, b }) => ({ sum: a + b }));

    const nobody = peerIdFromPrivateKey(await peerKeyFromSeed(new Uint8Array(32).fill(99))).toString();
    const failed = await client
      .request(nobody, protocols[0]!, sumSpec, { a: 1, b: 1 }, { timeoutMs: 4_000 })
      .then(
        () => assert.fail("nobody answers"),
        (err: unknown) => err as MeshError,
      );
    assert.ok(
      failed instanceof MeshError && ["unreachable", "timeout"].includes(failed.code),
      failed.message,
    );
    assert.equal(client.streamPoolCount(), 0, "a failed dial leaves no pool behind");

    for (let round = 0; round < 2; round++)
      for (const [i, protocol] of protocols.entries()) {
        assert.deepEqual(await client.request(server.peerId, protocol, sumSpec, { a: i, b: round }), {
          sum: i + round,
        });
        assert.ok(client.streamPoolCount() <= 2, `${client.streamPoolCount()} pools`);
      }
    assert.equal(client.streamPoolCount(), 2);
  });

  it("refuses with queue_full a request beyond maxStreamWaiters, or when every pool is busy", async () => {
    const client = await startNode(83, [], { streamsPerPeer: 1, maxStreamWaiters: 1, maxStreamPools: 1 });
    const server = await startNode(84, [client]);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    await server.handle("/cell-test/held/1", sumSpec, async ({ a, b }) => {
      await gate;
      return { sum: a + b };
    });
    await server.handle("/cell-test/other/1", sumSpec, async ({ a, b }) => ({ sum: a + b }));
    await waitFor(() => client.peers().includes(server.peerId), "the client to connect");

    const running = client.request(server.peerId, "/cell-test/held/1", sumSpec, { a: 1, b: 0 });
    const waiting = client.request(server.peerId, "/cell-test/held/1", sumSpec, { a: 2, b: 0 });
    await waitFor(() => client.streamPoolCount() === 1, "the pool to open");
    const overflow = await client.request(server.peerId, "/cell-test/held/1", sumSpec, { a: 3, b: 0 }).then(
      () => assert.fail("a third request has no room"),
      (err: unknown) => err as MeshError,
    );
    assert.equal(overflow.code, "queue_full");
    assert.match(overflow.reason, /1 requests already wait/);
    const noPool = await client.request(server.peerId, "/cell-test/other/1", sumSpec, { a: 4, b: 0 }).then(
      () => assert.fail("the only pool is busy"),
      (err: unknown) => err as MeshError,
    );
    assert.equal(noPool.code, "queue_full");
    assert.match(noPool.reason, /outbound stream pools are in use/);

    release();
    assert.deepEqual(await Promise.all([running, waiting]), [{ sum: 1 }, { sum: 2 }]);
    assert.deepEqual(await client.request(server.peerId, "/cell-test/other/1", sumSpec, { a: 4, b: 0 }), {
      sum: 4,
    });
    assert.equal(client.streamPoolCount(), 1, "the idle pool was closed for the new one");
  });
});
