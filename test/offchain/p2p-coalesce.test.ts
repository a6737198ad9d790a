import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MeshError, RequestCoalescer } from "../../offchain/src/p2p/index.ts";

/** A peer that answers each batch after `delayMs`, doubling every item; records the batches it saw. */
function echoPeer(delayMs = 5) {
  const batches: { peerId: string; items: number[] }[] = [];
  const send = async (peerId: string, items: number[]) => {
    batches.push({ peerId, items: [...items] });
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    return items.map((item) => item * 2);
  };
  return { batches, send };
}

describe("RequestCoalescer", () => {
  it("sends a lone request at once, in a batch of one", async () => {
    const peer = echoPeer();
    const coalescer = new RequestCoalescer({ send: peer.send, maxItems: 8 });
    assert.equal(await coalescer.request("a", 21), 42);
    assert.deepEqual(peer.batches, [{ peerId: "a", items: [21] }]);
  });

  it("sends requests made in one turn together, and queues the rest while a batch is under way", async () => {
    const peer = echoPeer();
    const coalescer = new RequestCoalescer({ send: peer.send, maxItems: 8, maxInFlight: 1 });
    const first = [1, 2, 3].map((item) => coalescer.request("a", item));
    await new Promise((resolve) => setTimeout(resolve, 1));
    const second = [4, 5].map((item) => coalescer.request("a", item));
    assert.equal(coalescer.pending("a"), 5);
    assert.deepEqual(await Promise.all([...first, ...second]), [2, 4, 6, 8, 10]);
    assert.deepEqual(
      peer.batches.map((batch) => batch.items),
      [
        [1, 2, 3],
        [4, 5],
      ],
    );
    assert.equal(coalescer.pending("a"), 0);
  });

  it("keeps peers apart and caps a batch by items and by weight", async () => {
    const peer = echoPeer();
    const coalescer = new RequestCoalescer({
      send: peer.send,
      maxItems: 3,
      maxWeight: 10,
      weigh: (item: number) => item,
    });
    const answers = await Promise.all([
      ...[1, 1, 1, 1].map((item) => coalescer.request("a", item)),
      ...[6, 6, 20].map((item) => coalescer.request("b", item)),
    ]);
    assert.deepEqual(answers, [2, 2, 2, 2, 12, 12, 40]);
    const toA = peer.batches.filter((batch) => batch.peerId === "a").map((batch) => batch.items);
    const toB = peer.batches.filter((batch) => batch.peerId === "b").map((batch) => batch.items);
    assert.deepEqual(toA, [[1, 1, 1], [1]], "at most maxItems per batch");
    assert.deepEqual(toB, [[6], [6], [20]], "within maxWeight; a heavier item goes alone");
  });

  it("fails every request of a batch whose send fails, or whose answer count is wrong", async () => {
    const failing = new RequestCoalescer<number, number>({
      maxItems: 8,
      send: async () => {
        throw new Error("unreachable peer");
      },
    });
    const outcomes = await Promise.allSettled([failing.request("a", 1), failing.request("a", 2)]);
    assert.deepEqual(
      outcomes.map((outcome) => outcome.status === "rejected" && (outcome.reason as Error).message),
      ["unreachable peer", "unreachable peer"],
    );

    const short = new RequestCoalescer<number, number>({ maxItems: 8, send: async () => [1] });
    await assert.rejects(Promise.all([short.request("a", 1), short.request("a", 2)]), /answered 1 of 2/);
  });

  it("bounds the requests waiting per peer and in total, refusing more with queue_full", async () => {
    const held: Array<() => void> = [];
    const coalescer = new RequestCoalescer<number, number>({
      maxItems: 100,
      maxQueuedPerPeer: 3,
      maxQueued: 5,
      // each batch is answered when the test says so
      send: (_peerId, items) => new Promise((resolve) => held.push(() => resolve(items))),
    });
    const first = coalescer.request("a", 0);
    await Promise.resolve(); // the first request leaves at once and occupies the one batch in flight
    assert.equal(held.length, 1);
    const queuedA = [1, 2, 3].map((item) => coalescer.request("a", item));
    const refusedA = coalescer.request("a", 4);
    const queuedB = [5, 6].map((item) => coalescer.request("b", item));
    const refusedC = coalescer.request("c", 7);
    const [perPeer, total] = await Promise.allSettled([refusedA, refusedC]);
    assert.ok(perPeer.status === "rejected" && perPeer.reason instanceof MeshError);
    assert.equal(perPeer.reason.code, "queue_full");
    assert.match(perPeer.reason.message, /3 requests already wait for a \(limit 3\)/);
    assert.ok(total.status === "rejected" && total.reason instanceof MeshError);
    assert.match(total.reason.message, /5 requests already wait for all peers \(limit 5\)/);
    assert.equal(coalescer.queued(), 3, "b's requests left at once: b had nothing in flight");

    const answerAll = async (): Promise<void> => {
      while (held.length === 0) await new Promise(setImmediate);
      while (held.length > 0) held.shift()!();
    };
    await answerAll();
    assert.equal(await first, 0);
    await answerAll(); // a's queued requests leave once its first batch is answered
    assert.deepEqual(await Promise.all([...queuedA, ...queuedB]), [1, 2, 3, 5, 6]);
    assert.equal(coalescer.queued(), 0);
    const again = coalescer.request("a", 9);
    await answerAll();
    assert.equal(await again, 9, "room again once the queue drained");
  });

  it("refuses a batch size below one", () => {
    assert.throws(
      () => new RequestCoalescer({ maxItems: 0, send: async () => [] }),
      /maxItems must be a positive integer/,
    );
  });
});
