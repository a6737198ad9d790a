import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { pino } from "pino";
import { toHex, type Hex } from "viem";
import { AdvertIntake } from "../../offchain/src/node/adverts.ts";
import type { NodeContext } from "../../offchain/src/node/context.ts";
import { PeerBook } from "../../offchain/src/node/peer-book.ts";
import { peerKeyFromSeed } from "../../offchain/src/p2p/index.ts";
import { StakeCache, type StakeStatus } from "../../offchain/src/node/stake-cache.ts";
import type { CapabilityAdvert } from "../../offchain/src/protocol/index.ts";

const operator = "0x1111111111111111111111111111111111111111";
const peerKey = `0x${"22".repeat(32)}` as const;

function keyOf(n: number): Hex {
  return `0x${n.toString(16).padStart(64, "0")}`;
}

/** A stake cache over a chain the test scripts: `answer` is returned, or thrown if an Error. */
function chain(options: ConstructorParameters<typeof StakeCache>[2] & object = {}) {
  const clock = { now: 1_000_000 };
  const state: { answer: boolean | Error; reads: number } = { answer: true, reads: 0 };
  const cache = new StakeCache(
    async () => {
      state.reads++;
      if (state.answer instanceof Error) throw state.answer;
      return state.answer;
    },
    10_000,
    { now: () => clock.now, ...options },
  );
  return { cache, clock, state };
}

describe("stake cache", () => {
  it("shares one chain read among concurrent lookups and caches the answer", async () => {
    const { cache, clock, state } = chain();
    const answers = await Promise.all([1, 2, 3].map(() => cache.status(operator, peerKey)));
    assert.deepEqual(answers, ["active", "active", "active"]);
    assert.equal(state.reads, 1);
    assert.equal(cache.peek(operator.toUpperCase().replace("0X", "0x") as Hex, peerKey), true);
    clock.now += 10_001;
    assert.equal(cache.peek(operator, peerKey), undefined);
    assert.equal(await cache.isActive(operator, peerKey), true);
    assert.equal(state.reads, 2);
  });

  it("trusts a negative answer for a fifth of the TTL, so a newly staked donor is seen soon", async () => {
    const { cache, clock, state } = chain();
    state.answer = false;
    assert.equal(await cache.status(operator, peerKey), "inactive");
    clock.now += 2_001;
    state.answer = true;
    assert.equal(await cache.status(operator, peerKey), "active");
    assert.equal(state.reads, 2);
  });

  it("answers a failed read with the last known answer for staleMs, then with unknown, never inactive", async () => {
    const { cache, clock, state } = chain({ staleMs: 30_000 });
    assert.equal(await cache.status(operator, peerKey), "active");
    state.answer = new Error("rpc down");
    clock.now += 10_001;
    assert.equal(await cache.status(operator, peerKey), "active", "the last answer stands during an outage");
    assert.equal(cache.peek(operator, peerKey), undefined, "but is not fresh");
    clock.now += 30_000;
    assert.equal(await cache.status(operator, peerKey), "unknown");
    assert.equal(await cache.isActive(operator, peerKey), false, "isActive treats unknown as not active");
    assert.equal(await cache.status(operator, keyOf(7)), "unknown", "a pair never read is unknown");
    state.answer = false;
    assert.equal(await cache.status(operator, peerKey), "inactive", "a successful read replaces it");
  });

  it("reads the chain at most readsPerSecondPerPeer for one requesting peer, whatever it claims", async () => {
    const { cache, clock, state } = chain({ readsPerSecondPerPeer: 1, readBurstPerPeer: 2 });
    const flood: StakeStatus[] = [];
    for (let i = 0; i < 20; i++) flood.push(await cache.status(operator, keyOf(i), "sybil"));
    assert.equal(state.reads, 2, "a burst of two reads, then none");
    assert.deepEqual(flood.slice(0, 2), ["active", "active"]);
    assert.ok(flood.slice(2).every((status) => status === "unknown"));
    assert.equal(cache.refusedReads, 18);
    assert.equal(
      await cache.status(operator, keyOf(100), "honest"),
      "active",
      "another peer still gets reads",
    );
    clock.now += 1_000;
    assert.equal(await cache.status(operator, keyOf(50), "sybil"), "active", "the limit refills");
    assert.equal(state.reads, 4);
  });

  it("caps chain reads of all peers together, and answers cached pairs without a read", async () => {
    const { cache, state } = chain({ readsPerSecond: 1, readBurst: 3 });
    for (let i = 0; i < 10; i++) await cache.status(operator, keyOf(i), `peer${i}`);
    assert.equal(state.reads, 3);
    assert.equal(await cache.status(operator, keyOf(0), "peer0"), "active", "cached answers need no read");
    assert.equal(state.reads, 3);
  });

  it("refreshes a donor known to be active even while a flood of unknown identities uses up the total", async () => {
    const { cache, clock, state } = chain({ readsPerSecond: 1, readBurst: 2, staleMs: 0 });
    assert.equal(await cache.status(operator, peerKey, "donor"), "active");
    for (let i = 0; i < 50; i++) await cache.status(operator, keyOf(i), `sybil-${i}`);
    assert.equal(state.reads, 2, "the sybils got one read between them");
    clock.now += 10_001; // the donor's answer expired, and no stale answer is allowed
    for (let i = 50; i < 100; i++) await cache.status(operator, keyOf(i), `sybil-${i}`);
    assert.equal(await cache.status(operator, peerKey, "donor"), "active", "its refresh is not crowded out");
    assert.equal(await cache.status(operator, keyOf(1_000), "newcomer"), "unknown", "new pairs still wait");
  });

  it("keeps at most maxEntries answers, dropping the least recently read", async () => {
    const { cache } = chain({ maxEntries: 3, readBurst: 100, readBurstPerPeer: 100 });
    for (let i = 0; i < 4; i++) await cache.status(operator, keyOf(i));
    assert.equal(cache.peek(operator, keyOf(0)), undefined);
    assert.equal(cache.peek(operator, keyOf(3)), true);
  });
});

function advert(peerId: string): CapabilityAdvert {
  return {
    type: "caps",
    operator,
    peerId,
    peerKey,
    pricePerMegaFuel: "1000",
    slots: 4,
    freeSlots: 4,
    fuelPerSecond: "1000000",
    maxFuel: "1000000000",
    maxMemoryPages: 256,
    runtimeVersion: "cell-wasm/1",
    multiaddrs: [],
    timestamp: "0",
  };
}

describe("peer book bound", () => {
  it("evicts the stalest unstaked donor first, so unstaked identities never push out staked ones", () => {
    const book = new PeerBook({ maxDonors: 3 });
    book.upsertFromAdvert(advert("staked-old"), 1, true);
    book.upsertFromAdvert(advert("unstaked-a"), 2, false);
    book.upsertFromAdvert(advert("staked-new"), 3, true);
    book.upsertFromAdvert(advert("unstaked-b"), 4, false);
    assert.equal(book.size, 3);
    assert.equal(
      book.get("unstaked-a"),
      undefined,
      "the unstaked entry went, though a staked one was staler",
    );
    assert.ok(book.get("staked-old"));

    for (let i = 0; i < 100; i++) book.upsertFromAdvert(advert(`sybil-${i}`), 10 + i, false);
    assert.equal(book.size, 3);
    assert.ok(book.get("staked-old") && book.get("staked-new"), "a flood of sybils keeps the staked donors");
    assert.ok(book.get("sybil-99"));
  });

  it("refuses an unstaked newcomer when every entry is staked, and lets a staked one replace the stalest", () => {
    const book = new PeerBook({ maxDonors: 2 });
    book.upsertFromAdvert(advert("a"), 1, true);
    book.upsertFromAdvert(advert("b"), 2, true);
    assert.equal(book.upsertFromAdvert(advert("sybil"), 3, false), undefined);
    assert.equal(book.get("sybil"), undefined);
    assert.ok(book.upsertFromAdvert(advert("c"), 4, true));
    assert.deepEqual(
      book
        .all()
        .map((donor) => donor.peerId)
        .sort(),
      ["b", "c"],
    );
    assert.ok(book.upsertFromAdvert(advert("b"), 5, false), "a known donor is always updated");
    assert.equal(book.get("b")!.staked, false);
  });
});

describe("advert intake", () => {
  /** An intake over a stake cache whose chain the test scripts, on a fake clock. */
  async function intake() {
    const key = await peerKeyFromSeed(new Uint8Array(32).fill(5));
    const peerId = peerIdFromPrivateKey(key).toString();
    const donorKey = toHex(key.publicKey.raw);
    const clock = { now: 1_000_000 };
    const chainState: { answer: boolean | Error } = { answer: true };
    const stakes = new StakeCache(
      async () => {
        if (chainState.answer instanceof Error) throw chainState.answer;
        return chainState.answer;
      },
      10_000,
      { now: () => clock.now, staleMs: 1_000 },
    );
    const book = new PeerBook();
    const recorded: string[] = [];
    const ctx = {
      mesh: { peerId: "self" },
      log: pino({ level: "silent" }),
      stakes,
      now: () => clock.now,
      store: {
        commit: async (fn: () => unknown) => fn(),
        peers: { upsert: (p: { peerId: string }) => recorded.push(p.peerId) },
      },
    } as unknown as NodeContext;
    const adverts = new AdvertIntake(ctx, book);
    const hear = async () => {
      adverts.onAdvert({ ...advert(peerId), peerKey: donorKey }, peerId);
      await new Promise(setImmediate); // the stake read resolves on the next turn
    };
    return { book, clock, chainState, hear, peerId, recorded };
  }

  it("keeps a staked donor staked when its stake cannot be read, and records an unknown newcomer unstaked", async () => {
    const { book, clock, chainState, hear, peerId, recorded } = await intake();
    chainState.answer = new Error("rpc down");
    await hear();
    assert.equal(book.get(peerId)?.staked, false, "unknown is not staked for a donor never seen");
    assert.deepEqual(recorded, []);

    clock.now += 5_001;
    chainState.answer = true;
    await hear();
    assert.equal(book.get(peerId)?.staked, true);
    assert.deepEqual(recorded, [peerId]);

    clock.now += 20_000; // past the cached answer and its stale allowance
    chainState.answer = new Error("rpc down");
    await hear();
    assert.equal(book.get(peerId)?.staked, true, "an outage does not unstake a known donor");
  });
});
