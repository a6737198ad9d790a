import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, describe, it } from "node:test";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { pino } from "pino";
import { z } from "zod/v4";
import {
  createMeshNode,
  GOSSIP_SCORE_THRESHOLDS,
  peerKeyFromSeed,
  type MeshNode,
} from "../../offchain/src/p2p/index.ts";

const NODES = 17;
const BOOTSTRAP_PEERS = 2;
/** Every node must have every other's gossip within this long of all being started. */
const DISCOVERY_BOUND_MS = 15_000;
const TOPIC = "/cell-test/hello/1";
const Hello = z.object({ peerId: z.string().max(100) }).strict();
const logger = pino({ level: "silent" });

/** A port free now (the OS hands out a fresh one each time). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const started: MeshNode[] = [];

describe("discovery at scale over loopback TCP", { timeout: 90_000 }, () => {
  after(async () => {
    await Promise.all(started.map((node) => node.stop()));
  });

  it(`${NODES} nodes started at once on one address all hear each other`, async () => {
    const seeds = Array.from({ length: NODES }, (_, i) => new Uint8Array(32).fill(200 + i));
    const ports = await Promise.all(seeds.map(freePort));
    const peerIds = await Promise.all(
      seeds.map(async (seed) => peerIdFromPrivateKey(await peerKeyFromSeed(seed)).toString()),
    );
    const bootstrap = ports
      .slice(0, BOOTSTRAP_PEERS)
      .map((port, i) => `/ip4/127.0.0.1/tcp/${port}/p2p/${peerIds[i]}`);
    const heard = peerIds.map(() => new Set<string>());
    const startedAt = Date.now();

    const nodes = await Promise.all(
      seeds.map(async (seed, i) => {
        const node = await createMeshNode({
          peerKeySeed: seed,
          listen: [`/ip4/127.0.0.1/tcp/${ports[i]}`],
          bootstrap,
          trustedNetworks: ["127.0.0.0/8"],
          logger,
        });
        started.push(node);
        node.subscribe(TOPIC, Hello, (message, from) => {
          if (message.peerId === from) heard[i]!.add(from);
        });
        return node;
      }),
    );
    // Like a donor's advert: repeated until heard, since gossip sent before the mesh forms is lost.
    const everyoneHeard = () => heard.every((peers) => peers.size === NODES - 1);
    const announce = setInterval(() => {
      for (const node of nodes) node.publish(TOPIC, Hello, { peerId: node.peerId }).catch(() => undefined);
    }, 500);
    try {
      while (!everyoneHeard() && Date.now() - startedAt < DISCOVERY_BOUND_MS)
        await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      clearInterval(announce);
    }
    const elapsed = Date.now() - startedAt;
    const missing = heard
      .map((peers, i) => ({ node: i, heard: peers.size }))
      .filter(({ heard: count }) => count < NODES - 1);
    assert.deepEqual(missing, [], `after ${elapsed} ms some nodes had not heard every other node`);

    // a node whose start-up lookup found few peers looks again until it has eight
    const wellConnected = () => nodes.every((node) => node.peers().length >= 8);
    const connectedBy = Date.now() + DISCOVERY_BOUND_MS;
    while (!wellConnected() && Date.now() < connectedBy)
      await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(wellConnected(), `connections per node: ${nodes.map((node) => node.peers().length).join(" ")}`);

    for (const node of nodes) {
      for (const peer of node.peers())
        assert.ok(
          node.gossipScore(peer) > GOSSIP_SCORE_THRESHOLDS.gossipThreshold,
          `sixteen peers on one address are not scored down (${node.gossipScore(peer)})`,
        );
      const counts = node.stats().gossip[TOPIC]!;
      assert.ok(counts.messages >= NODES - 1, "each node validated at least one message of every other");
      assert.ok(counts.copies >= counts.messages, "copies count duplicates as well");
    }
  });

  it("keeps gossiping to a peer after one of two connections to it closes", async () => {
    const topic = "/cell-test/two-connections/1";
    const sender = await createMeshNode({ peerKeySeed: new Uint8Array(32).fill(240), logger });
    started.push(sender);
    const receiver = await createMeshNode({
      peerKeySeed: new Uint8Array(32).fill(241),
      bootstrap: sender.multiaddrs(),
      logger,
    });
    started.push(receiver);
    const got: number[] = [];
    receiver.subscribe(topic, Count, (message) => void got.push(message.n));
    sender.subscribe(topic, Count, () => undefined);
    await waitFor(
      async () => (await sender.publish(topic, Count, { n: 0 })) > 0,
      "the sender to see the subscription",
    );
    await waitFor(async () => got.includes(0), "the first message");
    // the second connection two nodes get when they dial each other at once
    await receiver.libp2p.dial(multiaddr(sender.multiaddrs()[0]!), { force: true });
    await waitFor(
      async () => sender.libp2p.getConnections().length === 2,
      "the sender to hold both connections",
    );

    const carrying = sender.libp2p
      .getConnections()
      .find((connection) =>
        connection.streams.some(
          (stream) => stream.direction === "outbound" && stream.protocol?.includes("meshsub"),
        ),
      );
    assert.ok(carrying, "one connection carries the sender's gossip stream");
    await carrying.close();
    assert.equal(sender.libp2p.getConnections().length, 1, "the peers stay connected");

    let n = 1;
    await waitFor(async () => {
      await sender.publish(topic, Count, { n: n++ });
      return got.length > 1;
    }, "gossip to flow again over the remaining connection");
    assert.equal(sender.stats().gossipStreamsRestored, 1, "the sender reopened its stream");
  });

  it("dials only dialPeers of its bootstrap peers at start, yet reaches another one by peer id at once", async () => {
    const protocol = "/cell-test/reach/1";
    const spec = { request: Count, response: Count, maxRequestBytes: 64, maxResponseBytes: 64 };
    const servers = await Promise.all(
      [244, 245, 246].map((seed) => createMeshNode({ peerKeySeed: new Uint8Array(32).fill(seed), logger })),
    );
    started.push(...servers);
    for (const server of servers) await server.handle(protocol, spec, async ({ n }) => ({ n: n + 1 }));
    const client = await createMeshNode({
      peerKeySeed: new Uint8Array(32).fill(247),
      bootstrap: servers.map((server) => server.multiaddrs()[0]!),
      bootstrapPolicy: { dialPeers: 1, restAfterMs: 60_000 },
      logger,
    });
    started.push(client);
    const connected = servers.filter(
      (server) => client.libp2p.getConnections(server.libp2p.peerId).length > 0,
    );
    assert.equal(connected.length, 1, "one bootstrap peer dialed at start");
    const [notDialed] = servers.filter((server) => !connected.includes(server));
    const known = await client.libp2p.peerStore.has(notDialed!.libp2p.peerId);
    assert.equal(
      known,
      false,
      "a bootstrap peer not dialed yet is not in the peer store, so nothing else dials it",
    );
    assert.deepEqual(await client.request(notDialed!.peerId, protocol, spec, { n: 1 }), { n: 2 });
  });

  it("counts the requests it sends and serves, per protocol", async () => {
    const protocol = "/cell-test/count/1";
    const spec = { request: Count, response: Count, maxRequestBytes: 64, maxResponseBytes: 64 };
    const server = await createMeshNode({ peerKeySeed: new Uint8Array(32).fill(242), logger });
    started.push(server);
    const client = await createMeshNode({
      peerKeySeed: new Uint8Array(32).fill(243),
      bootstrap: server.multiaddrs(),
      logger,
    });
    started.push(client);
    await server.handle(protocol, spec, async ({ n }) => ({ n: n + 1 }));
    for (let n = 0; n < 3; n++)
      assert.deepEqual(await client.request(server.peerId, protocol, spec, { n }), { n: n + 1 });
    assert.equal(client.stats().requests.sent[protocol], 3);
    assert.equal(server.stats().requests.received[protocol], 3);
    assert.equal(server.stats().requests.sent[protocol], undefined);
  });
});

const Count = z.object({ n: z.number().int() }).strict();

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
