import assert from "node:assert/strict";
import { Socket } from "node:net";
import { after, describe, it } from "node:test";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import type { ConnectionEncrypter, Libp2p } from "@libp2p/interface";
import { tcp } from "@libp2p/tcp";
import { lpStream } from "@libp2p/utils";
import { createLibp2p } from "libp2p";
import { gatheredWrites } from "../../offchain/src/p2p/gathered-writes.ts";

const ECHO = "/cell-test/echo/1";
const EXCHANGES = 30;

type EncrypterFactory = ReturnType<typeof noise>;

/** Socket-level write calls (one system call each) made by every socket of this process. */
const socketWrites = { count: 0 };
const socketProto = Socket.prototype as unknown as Record<
  "_write" | "_writev",
  (...args: unknown[]) => unknown
>;
for (const method of ["_write", "_writev"] as const) {
  const original = socketProto[method];
  socketProto[method] = function (this: Socket, ...args: unknown[]) {
    socketWrites.count++;
    return original.apply(this, args);
  };
}

const nodes: Libp2p[] = [];
after(() => Promise.all(nodes.map((node) => node.stop())));

async function startNode(encrypter: EncrypterFactory): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ["/ip4/127.0.0.1/tcp/0"] },
    transports: [tcp()],
    connectionEncrypters: [encrypter],
    streamMuxers: [yamux()],
  });
  nodes.push(node);
  return node;
}

/** Socket writes of both nodes for EXCHANGES echoes of one small message over one stream. */
async function writesPerEcho(encrypter: EncrypterFactory): Promise<{ writes: number; echoed: string[] }> {
  const server = await startNode(encrypter);
  const client = await startNode(encrypter);
  await server.handle(ECHO, async (stream) => {
    const lp = lpStream(stream);
    for (;;) {
      const message = await lp.read().catch(() => undefined);
      if (message === undefined) break;
      await lp.write(message);
    }
  });
  const lp = lpStream(await client.dialProtocol(server.getMultiaddrs()[0]!, ECHO));
  await lp.write(new TextEncoder().encode("warm-up"));
  await lp.read();

  const before = socketWrites.count;
  const echoed: string[] = [];
  for (let i = 0; i < EXCHANGES; i++) {
    await lp.write(new TextEncoder().encode(`message ${i}`));
    echoed.push(new TextDecoder().decode((await lp.read()).subarray()));
  }
  return { writes: (socketWrites.count - before) / EXCHANGES, echoed };
}

describe("gatheredWrites", () => {
  it("sends what a connection writes in one tick with one system call, and delivers it intact", async () => {
    const expected = Array.from({ length: EXCHANGES }, (_, i) => `message ${i}`);
    const plain = await writesPerEcho(noise());
    const gathered = await writesPerEcho(gatheredWrites(noise()));
    assert.deepEqual(plain.echoed, expected);
    assert.deepEqual(gathered.echoed, expected);
    // An echo is four frames: the request, the reply and a yamux window update for each.
    // Noise hands the socket every frame as a list of chunks, which the transport writes one
    // by one; gathered, a frame costs one write at most.
    assert.ok(plain.writes > 4, `plain Noise made ${plain.writes} socket writes per echo`);
    assert.ok(gathered.writes <= 4, `gathered: ${gathered.writes} socket writes per echo`);
  });

  it("leaves a connection that has no socket of its own as it is", async () => {
    let secured: unknown;
    const inner: ConnectionEncrypter = {
      protocol: "/test",
      secureInbound: async (connection) => {
        secured = connection;
        throw new Error("not used");
      },
      secureOutbound: async () => {
        throw new Error("not used");
      },
    };
    const connection = { send: () => true };
    const send = connection.send;
    const encrypter = gatheredWrites(() => inner)({});
    await assert.rejects(encrypter.secureInbound(connection as never), /not used/);
    assert.equal(secured, connection);
    assert.equal(connection.send, send);
  });
});
