// A topic's own check before gossipsub delivers or relays a message (how evidence travels):
// three real mesh nodes over loopback TCP in a line, a — b — c, so c hears a only through b.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { z } from "zod/v4";
import { createMeshNode } from "../../offchain/src/p2p/index.ts";
import type { MeshNode } from "../../offchain/src/p2p/index.ts";

const TOPIC = "/cell-test/checked/1";
const Note = z.strictObject({ n: z.number().int(), verdict: z.enum(["accept", "ignore", "reject"]) });
type Note = z.infer<typeof Note>;
const logger = pino({ level: "silent" });

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("gossip with a topic check", { timeout: 60_000 }, () => {
  const nodes: MeshNode[] = [];
  const checked: number[] = [];
  const delivered: number[] = [];

  before(async () => {
    const start = (bootstrap: MeshNode[]) =>
      createMeshNode({
        peerKeySeed: randomBytes(32),
        bootstrap: bootstrap.map((n) => n.multiaddrs()[0]!),
        logger,
      });
    const a = await start([]);
    const b = await start([a]);
    nodes.push(a, b);
    a.subscribe(TOPIC, Note, () => undefined);
    // b checks each note (slowly, as a chain read would) and answers what the note asks for
    b.subscribe(TOPIC, Note, (note) => void delivered.push(note.n), {
      verify: async (note: Note) => {
        checked.push(note.n);
        await new Promise((resolve) => setTimeout(resolve, 20));
        return note.verdict;
      },
    });
    await until(() => b.peers().includes(a.peerId), "a and b to connect");
  });

  after(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  });

  it("hands the handler only what the check accepts; the check decides whom to blame", async () => {
    const [a, b] = nodes as [MeshNode, MeshNode];
    // the mesh may need a moment to form: publish a first accepted note until it arrives
    let warmUp = 0;
    await until(() => {
      if (delivered.length === 0) void a.publish(TOPIC, Note, { n: --warmUp, verdict: "accept" });
      return delivered.length > 0;
    }, "a first accepted note");
    for (const [n, verdict] of [
      [2, "ignore"],
      [3, "reject"],
      [4, "accept"],
    ] as const)
      await a.publish(TOPIC, Note, { n, verdict });
    await until(() => delivered.includes(4), "the last accepted note");
    assert.deepEqual(
      checked.filter((n) => n > 0),
      [2, 3, 4],
      "every note is checked, in order",
    );
    assert.deepEqual(
      delivered.filter((n) => n > 0),
      [4],
      "the handler sees only the accepted note",
    );
    assert.equal(
      b.penalties(a.peerId).score,
      0,
      "a rejected check charges nobody in the penalty book by itself",
    );
  });
});
