import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openOutboundStreamsTogether, PerPeerOpener } from "../../offchain/src/p2p/outbound-streams.ts";

/** An open that waits until the test settles it; records each call in order. */
function controlledOpens() {
  const calls: { peer: string; connection: string; settle: (failed?: boolean) => void }[] = [];
  const open = (peer: string, connection: string) =>
    new Promise<void>((resolve, reject) =>
      calls.push({
        peer,
        connection,
        settle: (failed = false) => (failed ? reject(new Error("negotiation timed out")) : resolve()),
      }),
    );
  return { calls, open };
}

/** Lets the opener's `finally` callbacks run. */
const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("PerPeerOpener", () => {
  it("opens to different peers together, so a slow peer holds up no other", async () => {
    const { calls, open } = controlledOpens();
    const opener = new PerPeerOpener(open, 16);
    for (const peer of ["slow", "b", "c"]) opener.request(peer, peer, `conn-${peer}`);
    assert.deepEqual(
      calls.map((call) => call.peer),
      ["slow", "b", "c"],
    );
    calls[1]!.settle();
    calls[2]!.settle();
    await settled();
    assert.deepEqual(opener.pending, { opening: 1, waiting: 0 });
  });

  it("opens to one peer one at a time, and runs a later request with its newest connection", async () => {
    const { calls, open } = controlledOpens();
    const opener = new PerPeerOpener(open, 16);
    opener.request("a", "a", "conn-1");
    opener.request("a", "a", "conn-2");
    opener.request("a", "a", "conn-3");
    assert.equal(calls.length, 1, "no second open while the first is under way");
    calls[0]!.settle(true);
    await settled();
    assert.deepEqual(
      calls.map((call) => call.connection),
      ["conn-1", "conn-3"],
    );
    calls[1]!.settle();
    await settled();
    assert.deepEqual(opener.pending, { opening: 0, waiting: 0 });
  });

  it("keeps at most maxOpening under way and starts the waiting peers oldest first", async () => {
    const { calls, open } = controlledOpens();
    const opener = new PerPeerOpener(open, 2);
    for (const peer of ["a", "b", "c", "d"]) opener.request(peer, peer, peer);
    assert.deepEqual(
      calls.map((call) => call.peer),
      ["a", "b"],
    );
    assert.deepEqual(opener.pending, { opening: 2, waiting: 2 });
    calls[1]!.settle();
    await settled();
    assert.deepEqual(
      calls.map((call) => call.peer),
      ["a", "b", "c"],
    );
    calls[0]!.settle(true);
    await settled();
    assert.deepEqual(
      calls.map((call) => call.peer),
      ["a", "b", "c", "d"],
    );
  });

  it("refuses a bound that is not a positive integer", () => {
    assert.throws(() => new PerPeerOpener(async () => undefined, 0), /maxOpening must be a positive integer/);
  });
});

describe("openOutboundStreamsTogether", () => {
  it("returns to the router's queue at once and opens through the router's own method", async () => {
    const opened: string[] = [];
    let finish: () => void = () => undefined;
    const router = {
      streams: new Set<string>(),
      async createOutboundStream(peer: { toString(): string }, connection: string) {
        await new Promise<void>((resolve) => (finish = resolve));
        this.streams.add(`${peer.toString()}@${connection}`);
        opened.push(peer.toString());
      },
    };
    const opener = openOutboundStreamsTogether(router, 4);
    const peer = { toString: () => "peer-a" };
    // the queue's await resolves before the open has finished
    await router.createOutboundStream(peer, "conn");
    assert.deepEqual(opener.pending, { opening: 1, waiting: 0 });
    finish();
    await settled();
    assert.deepEqual([...router.streams], ["peer-a@conn"], "the router's method ran with its own `this`");
    assert.deepEqual(opened, ["peer-a"]);
  });

  it("names the gossipsub version as the cause when the router lacks the method", () => {
    assert.throws(
      () => openOutboundStreamsTogether({} as never, 4),
      /this gossipsub version does not open outbound streams/,
    );
  });
});
