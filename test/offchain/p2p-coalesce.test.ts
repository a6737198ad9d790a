import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RequestCoalescer } from "../../offchain/src/p2p/index.ts";

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

  it("refuses a batch size below one", () => {
    assert.throws(
      () => new RequestCoalescer({ maxItems: 0, send: async () => [] }),
      /maxItems must be a positive integer/,
    );
  });
});
