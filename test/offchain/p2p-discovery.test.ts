import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, describe, it } from "node:test";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
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
});
