import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { pino } from "pino";
import { toHex, type Address, type Hex } from "viem";
import { RegistryView } from "../../offchain/src/chain/registry-view.ts";
import {
  AdvertPublisher,
  decideAdvert,
  initialPublisherState,
} from "../../offchain/src/node/advert-publisher.ts";
import type { AdvertTerms, AdvertTiming, PublisherState } from "../../offchain/src/node/advert-publisher.ts";
import { ADVERT_TRACKED_PEERS, AdvertIntake } from "../../offchain/src/node/adverts.ts";
import { loadConfig } from "../../offchain/src/node/config.ts";
import type { NodeContext } from "../../offchain/src/node/context.ts";
import { PeerBook } from "../../offchain/src/node/peer-book.ts";
import { StakeCache } from "../../offchain/src/node/stake-cache.ts";
import { createMeshNode, peerKeyFromSeed } from "../../offchain/src/p2p/index.ts";
import type { MeshNode } from "../../offchain/src/p2p/index.ts";
import { CapabilityAdvertSchema, MESSAGE_LIMITS, TOPIC_CAPS } from "../../offchain/src/protocol/index.ts";
import type { CapabilityAdvert } from "../../offchain/src/protocol/index.ts";
import { testAdvert } from "../support/adverts.ts";

const TIMING: AdvertTiming = { heartbeatMs: 30_000, minIntervalMs: 5_000 };
const MIN = 100n;

function terms(overrides: Partial<AdvertTerms> = {}): AdvertTerms {
  return {
    pricePerMegaFuel: 1_000n,
    slots: 4,
    freeSlots: 4,
    maxFuel: 1_000_000n,
    maxMemoryPages: 256,
    multiaddrs: ["/ip4/127.0.0.1/tcp/4001"],
    ...overrides,
  };
}

describe("advert publisher (pure)", () => {
  /** Runs the decision at `now`, keeping the state; returns what was published, if anything. */
  function driver(start = 1_000_000) {
    let state: PublisherState = initialPublisherState();
    const clock = { now: start };
    const look = (said: AdvertTerms = terms()) => {
      const decision = decideAdvert(state, said, clock.now, TIMING);
      state = decision.state;
      return { ...decision.publish, wakeAt: decision.wakeAt };
    };
    return { clock, look, state: () => state };
  }

  it("publishes at once, repeats the same seq after 1, 2, 4, 8, 16 s and then every heartbeat", () => {
    const { clock, look } = driver();
    const first = look();
    assert.equal(first.reason, "first");
    assert.ok(first.seq! >= clock.now, "the first seq is at least the clock, so it grows across restarts");
    const published: number[] = [];
    const seqs = new Set<number>();
    for (let t = 0; t <= 120_000; t += 100) {
      clock.now = 1_000_000 + t;
      const { reason, seq } = look();
      if (reason !== undefined) {
        assert.equal(reason, "heartbeat");
        published.push(t);
        seqs.add(seq!);
      }
    }
    assert.deepEqual(published, [1_000, 3_000, 7_000, 15_000, 31_000, 61_000, 91_000]);
    assert.deepEqual([...seqs], [first.seq], "a heartbeat carries the seq of the last change");
  });

  it("does not republish as jobs come and go, not even when the donor fills up", () => {
    const { clock, look } = driver();
    const first = look(terms({ freeSlots: 4 }));
    for (let second = 1; second <= 70; second++) {
      clock.now += 1_000; // past the start-up repeats; the last advert went out at 61 s
      look(terms({ freeSlots: 4 }));
    }
    for (const free of [3, 2, 1, 0, 1, 4, 0, 2, 1]) {
      clock.now += 1_000;
      assert.equal(look(terms({ freeSlots: free })).reason, undefined, `no advert at ${free} free slots`);
    }
    clock.now += 1_000;
    const changed = look(terms({ freeSlots: 0, pricePerMegaFuel: 2_000n }));
    assert.equal(changed.reason, "change", "a new price is a change");
    assert.ok(changed.seq! > first.seq!);
  });

  it("holds a change back until minIntervalMs after the last advert, then gives it a new seq", () => {
    const { clock, look } = driver();
    const first = look();
    clock.now += 600; // before the first repeat, and within the minimum interval
    const held = look(terms({ pricePerMegaFuel: 2_000n }));
    assert.equal(held.reason, undefined);
    assert.equal(held.wakeAt, 1_000_000 + TIMING.minIntervalMs);
    clock.now = held.wakeAt;
    const changed = look(terms({ pricePerMegaFuel: 2_000n }));
    assert.equal(changed.reason, "change");
    assert.ok(changed.seq! > first.seq!);
  });
});

describe("advert timing config", () => {
  it("derives the buyer's liveness window from the heartbeat and refuses a minimum interval above it", async () => {
    const defaults = await loadConfig(undefined, { passphrase: "x" });
    assert.deepEqual(defaults.adverts, { heartbeatMs: 30_000, minIntervalMs: 5_000 });
    assert.equal(defaults.buyer.donorLivenessMs, 75_000);
    const fast = await loadConfig(undefined, {
      passphrase: "x",
      adverts: { heartbeatMs: 2_000, minIntervalMs: 500 },
    });
    assert.equal(fast.buyer.donorLivenessMs, 5_000);
    await assert.rejects(
      loadConfig(undefined, { passphrase: "x", adverts: { heartbeatMs: 1_000, minIntervalMs: 2_000 } }),
      /adverts\.minIntervalMs: must not be longer than adverts\.heartbeatMs/,
    );
  });
});

describe("advert publisher (shell on a fake clock)", () => {
  it("over ten minutes with a job every 2 s sends only heartbeats, not an advert per job", async () => {
    const clock = { now: 5_000_000 };
    const timers: { at: number; fire: () => void; cancelled: boolean }[] = [];
    const sent: { seq: number; free: number; at: number }[] = [];
    let free = 2;
    const publisher = new AdvertPublisher(
      {
        now: () => clock.now,
        after: (delayMs, fire) => {
          const timer = { at: clock.now + delayMs, fire, cancelled: false };
          timers.push(timer);
          return () => (timer.cancelled = true);
        },
        terms: () => terms({ slots: 2, freeSlots: free }),
        selfActive: async () => true,
        publish: async (seq, said) => void sent.push({ seq, free: said.freeSlots, at: clock.now }),
        onError: (err) => assert.fail(String(err)),
      },
      TIMING,
    );
    const advanceTo = async (at: number) => {
      for (;;) {
        const due = timers.filter((t) => !t.cancelled && t.at <= at).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        due.cancelled = true;
        clock.now = due.at;
        due.fire();
        await new Promise(setImmediate);
      }
      clock.now = at;
    };
    publisher.start();
    await new Promise(setImmediate);
    await advanceTo(clock.now + 60_000);
    const settled = sent.length;
    const jobs = 300;
    for (let job = 0; job < jobs; job++) {
      free = 1; // a job starts on one of two slots and ends 1 s later
      publisher.poke();
      await advanceTo(clock.now + 1_000);
      free = 2;
      publisher.poke();
      await advanceTo(clock.now + 1_000);
    }
    const during = sent.slice(settled);
    const heartbeats = (jobs * 2_000) / TIMING.heartbeatMs;
    assert.ok(during.length <= heartbeats + 1, `${during.length} adverts for ${jobs} jobs`);
    assert.equal(new Set(during.map((advert) => advert.seq)).size, 1, "all of them heartbeats");
    free = 0; // full: buyers learn it from its bid answers, not from an advert
    const fullAt = sent.length;
    publisher.poke();
    await advanceTo(clock.now + TIMING.heartbeatMs - 1);
    assert.ok(
      sent.slice(fullAt).every((advert) => advert.seq === during[0]!.seq),
      "no new advert when full",
    );
    publisher.stop();
    const quiet = sent.length;
    await advanceTo(clock.now + 10 * TIMING.heartbeatMs);
    assert.equal(sent.length, quiet, "a stopped publisher sends nothing");
  });

  it("does not lose a change of terms that comes while an advert is still going out", async () => {
    const clock = { now: 0 };
    const pending: { at: number; fire: () => void }[] = [];
    let release: () => void = () => undefined;
    let price = 1_000n;
    const sent: bigint[] = [];
    const publisher = new AdvertPublisher(
      {
        now: () => clock.now,
        after: (delayMs, fire) => {
          const timer = { at: clock.now + delayMs, fire };
          pending.push(timer);
          return () => pending.splice(pending.indexOf(timer) >>> 0, 1);
        },
        terms: () => terms({ pricePerMegaFuel: price }),
        selfActive: async () => true,
        publish: (_seq, said) => {
          sent.push(said.pricePerMegaFuel);
          return new Promise((resolve) => (release = resolve));
        },
        onError: (err) => assert.fail(String(err)),
      },
      TIMING,
    );
    publisher.start();
    await new Promise(setImmediate);
    assert.deepEqual(sent, [1_000n], "the first advert is on its way, not yet out");
    price = 2_000n;
    publisher.poke();
    release();
    await new Promise(setImmediate);
    assert.equal(pending.length, 1);
    clock.now = pending[0]!.at;
    assert.ok(clock.now <= TIMING.minIntervalMs, "the change goes out at the minimum interval");
    pending.shift()!.fire();
    await new Promise(setImmediate);
    assert.deepEqual(sent, [1_000n, 2_000n]);
    release();
    publisher.stop();
  });

  it("repeats an advert that reached no peer after 1 s, without backing off", async () => {
    const clock = { now: 0 };
    const pending: { at: number; fire: () => void }[] = [];
    const sent: number[] = [];
    const publisher = new AdvertPublisher(
      {
        now: () => clock.now,
        after: (delayMs, fire) => {
          const timer = { at: clock.now + delayMs, fire };
          pending.push(timer);
          return () => pending.splice(pending.indexOf(timer) >>> 0, 1);
        },
        terms: () => terms(),
        selfActive: async () => true,
        // no peer follows adverts until 3 s after the start
        publish: async () => {
          sent.push(clock.now);
          return clock.now < 3_000 ? 0 : 5;
        },
        onError: (err) => assert.fail(String(err)),
      },
      TIMING,
    );
    publisher.start();
    for (let step = 0; step < 8; step++) {
      await new Promise(setImmediate);
      const next = pending.sort((a, b) => a.at - b.at).shift()!;
      clock.now = next.at;
      next.fire();
    }
    await new Promise(setImmediate);
    assert.deepEqual(sent, [0, 1_000, 2_000, 3_000, 4_000, 6_000, 10_000, 18_000, 34_000]);
    publisher.stop();
  });

  it("waits for its own stake before the first advert", async () => {
    const clock = { now: 0 };
    const pending: (() => void)[] = [];
    let active = false;
    const sent: number[] = [];
    const publisher = new AdvertPublisher(
      {
        now: () => clock.now,
        after: (_delayMs, fire) => {
          pending.push(fire);
          return () => undefined;
        },
        terms: () => terms(),
        selfActive: async () => active,
        publish: async (seq) => void sent.push(seq),
        onError: (err) => assert.fail(String(err)),
      },
      TIMING,
    );
    publisher.start();
    await new Promise(setImmediate);
    assert.deepEqual(sent, []);
    active = true;
    clock.now = 2_000;
    pending.shift()!();
    await new Promise(setImmediate);
    assert.deepEqual(sent, [2_000]);
    publisher.stop();
  });
});

interface Donor {
  peerId: string;
  peerKey: Hex;
  operator: Address;
}

async function donorIdentity(n: number): Promise<Donor & { seed: Uint8Array }> {
  const seed = new Uint8Array(32).fill(n);
  const key = await peerKeyFromSeed(seed);
  return {
    seed,
    peerId: peerIdFromPrivateKey(key).toString(),
    peerKey: toHex(key.publicKey.raw),
    operator: `0x${n.toString(16).padStart(40, "0")}`,
  };
}

/** A registry view holding `donors` staked and registered, caught up at block 1. */
function stakedView(donors: Donor[], clock: { now: number }) {
  const registry = new RegistryView({ staleMs: 3_600_000 });
  registry.apply({ type: "params", minStake: MIN });
  donors.forEach((donor, i) => {
    const wallet = `0x${(0x1000 + i).toString(16).padStart(40, "0")}` as Address;
    registry.apply({ type: "staked", donor: wallet, bonded: MIN });
    registry.apply({ type: "registered", donor: wallet, operator: donor.operator, peerKey: donor.peerKey });
  });
  registry.advanceTo(1n, true, clock.now);
  return new StakeCache({ status: (op, key) => registry.status(op, key, clock.now) });
}

function intakeOver(stakes: StakeCache, clock: { now: number }, self = "self") {
  const book = new PeerBook();
  const recorded: string[] = [];
  const addressed: string[] = [];
  const ctx = {
    mesh: { peerId: self, rememberAddresses: (peerId: string) => addressed.push(peerId) },
    log: pino({ level: "silent" }),
    stakes,
    now: () => clock.now,
    store: {
      commit: async (fn: () => unknown) => fn(),
      peers: { upsert: (p: { peerId: string }) => recorded.push(p.peerId) },
    },
  } as unknown as NodeContext;
  return { intake: new AdvertIntake(ctx, book), book, recorded, addressed };
}

function advertOf(donor: Donor, seq: number, overrides: Partial<CapabilityAdvert> = {}): CapabilityAdvert {
  return testAdvert({
    peerId: donor.peerId,
    operator: donor.operator,
    peerKey: donor.peerKey,
    seq,
    ...overrides,
  });
}

describe("advert intake", () => {
  it("verifies each (peer, seq) once; repeats only refresh liveness; an older seq is ignored", async () => {
    const donor = await donorIdentity(7);
    const clock = { now: 1_000_000 };
    const { intake, book, recorded, addressed } = intakeOver(stakedView([donor], clock), clock);
    for (let copy = 0; copy < 10; copy++) {
      clock.now += 1_000;
      intake.onAdvert(advertOf(donor, 50), donor.peerId);
    }
    assert.deepEqual(intake.counts(), { received: 10, verified: 1, repeated: 9, stale: 0, foreign: 0 });
    assert.equal(book.get(donor.peerId)?.staked, true);
    assert.equal(book.get(donor.peerId)?.lastSeen, clock.now, "a repeat refreshes liveness");
    assert.deepEqual(recorded, [donor.peerId], "recorded once, not per repeat");
    assert.deepEqual(addressed, [donor.peerId], "its addresses kept for dialing, once");

    intake.onAdvert(advertOf(donor, 51, { pricePerMegaFuel: "2000" }), donor.peerId);
    intake.onAdvert(advertOf(donor, 49, { pricePerMegaFuel: "1" }), donor.peerId);
    intake.onAdvert(advertOf(donor, 51, { pricePerMegaFuel: "3" }), donor.peerId);
    assert.equal(book.get(donor.peerId)?.pricePerMegaFuel, 2_000n, "older seq and repeat leave terms alone");
    assert.deepEqual(intake.counts(), { received: 13, verified: 2, repeated: 10, stale: 1, foreign: 0 });

    intake.onAdvert(advertOf(donor, 60), "someone-else");
    assert.equal(intake.counts().foreign, 1, "an advert relayed as another peer's is dropped");
  });

  it("checks a forged peer key once per seq and never books it", async () => {
    const [donor, other] = await Promise.all([donorIdentity(8), donorIdentity(9)]);
    const clock = { now: 1_000_000 };
    const { intake, book } = intakeOver(stakedView([donor], clock), clock);
    const forged = advertOf({ ...donor, peerKey: other.peerKey }, 5);
    for (let copy = 0; copy < 5; copy++) intake.onAdvert(forged, donor.peerId);
    assert.equal(intake.counts().verified, 1);
    assert.equal(book.get(donor.peerId), undefined);
  });

  it(`tracks at most ${ADVERT_TRACKED_PEERS} peers' seqs, forgetting the least recently verified`, async () => {
    const donor = await donorIdentity(10);
    const clock = { now: 1_000_000 };
    const { intake } = intakeOver(stakedView([donor], clock), clock);
    intake.onAdvert(advertOf(donor, 1), donor.peerId);
    intake.onAdvert(advertOf(donor, 1), donor.peerId);
    assert.equal(intake.counts().verified, 1);
    for (let i = 0; i < ADVERT_TRACKED_PEERS; i++) {
      const peerId = `peer-${i}`;
      intake.onAdvert(advertOf({ ...donor, peerId }, 1), peerId);
    }
    intake.onAdvert(advertOf(donor, 1), donor.peerId);
    assert.equal(
      intake.counts().verified,
      ADVERT_TRACKED_PEERS + 2,
      "the evicted donor's advert is verified again",
    );
  });
});

describe("adverts over real libp2p at rest", { timeout: 180_000 }, () => {
  const HEARTBEAT_MS = 1_000;
  const WINDOW_MS = 6_000;
  const meshes: MeshNode[] = [];
  after(async () => {
    await Promise.all(meshes.map((mesh) => mesh.stop().catch(() => undefined)));
  });

  /**
   * `count` nodes, every one a staked donor publishing adverts (heartbeat 1 s) and taking
   * in everyone else's. Once every node knows every other, counts over WINDOW_MS what each
   * node's advert handler received and verified.
   */
  async function measure(count: number, base: number) {
    const donors = await Promise.all(Array.from({ length: count }, (_, i) => donorIdentity(base + i)));
    const clock = {
      get now() {
        return Date.now();
      },
    };
    const stakes = stakedView(donors, clock);
    const nodes: { mesh: MeshNode; intake: AdvertIntake; book: PeerBook; publisher: AdvertPublisher }[] = [];
    for (const donor of donors) {
      const mesh = await createMeshNode({
        peerKeySeed: donor.seed,
        bootstrap: nodes.length > 0 ? nodes[0]!.mesh.multiaddrs().slice(0, 1) : [],
        logger: pino({ level: "silent" }),
      });
      meshes.push(mesh);
      const { intake, book } = intakeOver(stakes, clock, mesh.peerId);
      mesh.subscribe(TOPIC_CAPS, CapabilityAdvertSchema, (advert, from) => intake.onAdvert(advert, from), {
        maxBytes: MESSAGE_LIMITS.advert,
      });
      const publisher = new AdvertPublisher(
        {
          now: Date.now,
          after: (delayMs, fire) => {
            const timer = setTimeout(fire, delayMs);
            return () => clearTimeout(timer);
          },
          terms: () => terms(),
          selfActive: async () => true,
          publish: async (seq, said) => {
            await mesh.publish(TOPIC_CAPS, CapabilityAdvertSchema, {
              ...advertOf(donor, seq),
              multiaddrs: [...said.multiaddrs],
            });
          },
          onError: () => undefined,
        },
        { heartbeatMs: HEARTBEAT_MS, minIntervalMs: HEARTBEAT_MS },
      );
      nodes.push({ mesh, intake, book, publisher });
    }
    for (const node of nodes) node.publisher.start();
    const deadline = Date.now() + 90_000;
    while (!nodes.every((node) => node.book.all().filter((d) => d.staked).length === count - 1)) {
      assert.ok(Date.now() < deadline, "every node should come to know every other donor");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const before = nodes.map((node) => node.intake.counts());
    const started = Date.now();
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    const seconds = (Date.now() - started) / 1000;
    const perNode = nodes.map((node, i) => {
      const now = node.intake.counts();
      return { received: now.received - before[i]!.received, verified: now.verified - before[i]!.verified };
    });
    for (const node of nodes) node.publisher.stop();
    await Promise.all(nodes.map((node) => node.mesh.stop()));
    return { perNode, seconds };
  }

  it("each node handles one advert per donor and heartbeat and verifies none at rest, with 3 nodes as with 9", async () => {
    const rates: number[] = [];
    for (const [count, base] of [
      [3, 40],
      [9, 60],
    ] as const) {
      const { perNode, seconds } = await measure(count, base);
      const heartbeats = (seconds * 1000) / HEARTBEAT_MS;
      for (const { received, verified } of perNode) {
        assert.equal(verified, 0, `no advert is verified again at rest (${count} nodes)`);
        const perDonorAndHeartbeat = received / (count - 1) / heartbeats;
        assert.ok(
          perDonorAndHeartbeat > 0.5 && perDonorAndHeartbeat < 1.5,
          `${count} nodes: ${received} adverts handled in ${seconds.toFixed(1)} s from ${count - 1} donors`,
        );
        rates.push(perDonorAndHeartbeat);
      }
    }
    assert.ok(Math.max(...rates) < 1.5, "handler calls grow with donors and heartbeat only, not with copies");
  });
});
