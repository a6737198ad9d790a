// A node asks each donor it connects to for its advert, directly: the pure part on fake ports,
// then the wiring over real libp2p with no gossip at all.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import {
  ADVERT_PULL_CONCURRENCY,
  ADVERT_PULL_INTERVAL_MS,
  ADVERT_PULL_LISTED_CONCURRENCY,
  ADVERT_PULL_RETRIES_MS,
  AdvertPull,
} from "../../offchain/src/node/advert-pull.ts";
import type { AdvertPullPorts } from "../../offchain/src/node/advert-pull.ts";
import { protocolSpecs } from "../../offchain/src/node/protocols.ts";
import { createMeshNode } from "../../offchain/src/p2p/index.ts";
import type { MeshNode } from "../../offchain/src/p2p/index.ts";
import { PROTOCOL_ADVERT } from "../../offchain/src/protocol/index.ts";
import type { CapabilityAdvert } from "../../offchain/src/protocol/index.ts";
import { testAdvert } from "../support/adverts.ts";

const DONOR = {
  peerId: "12D3KooWDonor",
  operator: "0x00000000000000000000000000000000000000d0",
  peerKey: `0x${"11".repeat(32)}`,
} as const;

function fakePorts(answers: Map<string, CapabilityAdvert | undefined | Error>) {
  const clock = { now: 0 };
  const asked: string[] = [];
  const delivered: { from: string; seq: number }[] = [];
  const errors: string[] = [];
  const pending: (() => void)[] = [];
  const timers: { at: number; fire: () => void }[] = [];
  const ports: AdvertPullPorts = {
    now: () => clock.now,
    after: (delayMs, fire) => void timers.push({ at: clock.now + delayMs, fire }),
    ask: (peerId) => {
      asked.push(peerId);
      return new Promise((resolve, reject) =>
        pending.push(() => {
          const answer = answers.get(peerId);
          if (answer instanceof Error) reject(answer);
          else resolve(answer);
        }),
      );
    },
    deliver: (advert, from) => delivered.push({ from, seq: advert.seq }),
    onError: (peerId) => errors.push(peerId),
  };
  const settle = async () => {
    while (pending.length > 0) {
      pending.shift()!();
      await new Promise(setImmediate);
    }
  };
  /** Moves the clock to `at` and fires the timers due by then. */
  const advance = (at: number) => {
    clock.now = at;
    for (const timer of timers.splice(0).filter((t) => (t.at <= at ? true : (timers.push(t), false))))
      timer.fire();
  };
  return { ports, clock, asked, delivered, errors, settle, advance };
}

describe("advert pull (pure, fake ports)", () => {
  it("asks a donor once per connection burst, again only after the interval, and hands on its advert", async () => {
    const f = fakePorts(new Map([["donorA", testAdvert({ ...DONOR, seq: 7 })]]));
    const pull = new AdvertPull(f.ports);
    pull.onDonorIdentified("donorA");
    pull.onDonorIdentified("donorA");
    await f.settle();
    assert.deepEqual(f.asked, ["donorA"]);
    assert.deepEqual(f.delivered, [{ from: "donorA", seq: 7 }]);
    f.clock.now = ADVERT_PULL_INTERVAL_MS - 1;
    pull.onDonorIdentified("donorA");
    assert.deepEqual(f.asked, ["donorA"], "a reconnect within the interval is not asked again");
    f.clock.now = ADVERT_PULL_INTERVAL_MS + 1;
    pull.onDonorIdentified("donorA");
    await f.settle();
    assert.deepEqual(f.asked, ["donorA", "donorA"]);
  });

  it("runs at most four requests at once and asks the rest as they finish", async () => {
    const f = fakePorts(new Map());
    const pull = new AdvertPull(f.ports);
    for (let i = 0; i < 10; i++) pull.onDonorIdentified(`peer${i}`);
    assert.equal(f.asked.length, 4);
    await f.settle();
    assert.equal(f.asked.length, 10);
    assert.deepEqual(f.delivered, [], "peers without an advert deliver nothing");
  });

  it("asks a donor without an advert yet again every second for 15 s, then leaves it to gossip", async () => {
    const answers = new Map<string, CapabilityAdvert | undefined>([["late", undefined]]);
    const f = fakePorts(answers);
    const pull = new AdvertPull(f.ports);
    pull.onDonorIdentified("late");
    await f.settle();
    for (let second = 1; second <= 3; second++) {
      f.advance(second * 1_000 - 1);
      await f.settle();
      const before = f.asked.length;
      f.advance(second * 1_000);
      await f.settle();
      assert.equal(f.asked.length, before + 1, `asked again at ${second} s`);
    }
    answers.set("late", testAdvert({ ...DONOR, seq: 3 }));
    f.advance(4_000);
    await f.settle();
    assert.deepEqual(f.delivered, [{ from: "late", seq: 3 }]);
    assert.equal(f.asked.length, 5);

    const never = fakePorts(new Map([["silent", undefined]]));
    new AdvertPull(never.ports).onDonorIdentified("silent");
    for (let second = 1; second <= 30; second++) {
      never.advance(second * 1_000);
      await never.settle();
    }
    assert.equal(
      never.asked.length,
      1 + ADVERT_PULL_RETRIES_MS.length,
      "no more asks once the retries are spent",
    );
  });

  it("asks connected donors before donors known only from the registry, which never take more than their share of requests", async () => {
    const f = fakePorts(new Map());
    const pull = new AdvertPull(f.ports);
    for (let i = 0; i < 5; i++) pull.onDonorListed(`listed${i}`);
    assert.equal(f.asked.length, ADVERT_PULL_LISTED_CONCURRENCY, "listed donors leave slots free");
    for (let i = 0; i < 3; i++) pull.onDonorIdentified(`connected${i}`);
    assert.equal(f.asked.length, ADVERT_PULL_CONCURRENCY);
    assert.deepEqual(f.asked, ["listed0", "listed1", "connected0", "connected1"]);
    await f.settle();
    assert.equal(f.asked.indexOf("connected2"), 4, "a freed slot goes to the connected donor waiting");
    assert.equal(f.asked.length, 8, "every donor is asked in the end");
  });

  it("asks a listed donor that connects again at once, over the connection, and drops the listed retries", async () => {
    const f = fakePorts(new Map([["donorB", undefined]]));
    const pull = new AdvertPull(f.ports);
    pull.onDonorListed("donorB");
    pull.onDonorIdentified("donorB");
    pull.onDonorIdentified("donorB");
    assert.deepEqual(f.asked, ["donorB", "donorB"], "asked once as listed and once connected");
    await f.settle();
    f.advance(1_000);
    await f.settle();
    assert.equal(f.asked.length, 3, "one retry a second, not two");
  });

  it("reports a failed request and goes on with the next peer", async () => {
    const f = fakePorts(
      new Map<string, CapabilityAdvert | Error>([["bad", new Error("protocol not supported")]]),
    );
    const pull = new AdvertPull(f.ports);
    pull.onDonorIdentified("bad");
    pull.onDonorIdentified("good");
    await f.settle();
    assert.deepEqual(f.errors, ["bad"]);
    assert.deepEqual(f.asked, ["bad", "good"]);
  });
});

describe("advert pull over real libp2p", { timeout: 60_000 }, () => {
  const meshes: MeshNode[] = [];
  after(async () => {
    await Promise.all(meshes.map((mesh) => mesh.stop().catch(() => undefined)));
  });

  it("a node that connects to a donor has its advert within a round trip, with no gossip", async () => {
    const logger = pino({ level: "silent" });
    const donor = await createMeshNode({ logger, peerKeySeed: new Uint8Array(32).fill(81) });
    meshes.push(donor);
    const advert = testAdvert({ ...DONOR, peerId: donor.peerId, seq: 42 });
    await donor.handle(PROTOCOL_ADVERT, protocolSpecs.advert, async () => ({
      type: "advert" as const,
      advert,
    }));
    const other = await createMeshNode({ logger, peerKeySeed: new Uint8Array(32).fill(82) });
    meshes.push(other);
    const received: { from: string; seq: number }[] = [];
    const pull = new AdvertPull({
      now: Date.now,
      after: (delayMs, fire) => void setTimeout(fire, delayMs),
      ask: async (peerId) =>
        (await other.request(peerId, PROTOCOL_ADVERT, protocolSpecs.advert, { type: "advert" })).advert,
      deliver: (got, from) => received.push({ from, seq: got.seq }),
      onError: (peerId, err) => assert.fail(`request to ${peerId} failed: ${String(err)}`),
    });
    const stop = other.onPeerIdentified((peerId, protocols) => {
      if (protocols.includes(PROTOCOL_ADVERT)) pull.onDonorIdentified(peerId);
    });
    await other.libp2p.dial(donor.libp2p.getMultiaddrs()[0]!);
    const deadline = Date.now() + 20_000;
    while (received.length === 0) {
      assert.ok(Date.now() < deadline, "the donor's advert should arrive by request");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    stop();
    assert.deepEqual(received, [{ from: donor.peerId, seq: 42 }]);
  });

  it("learns a donor's advert when the donor serves /cell/advert/1 only after the connection opened (identify push)", async () => {
    const logger = pino({ level: "silent" });
    const donor = await createMeshNode({ logger, peerKeySeed: new Uint8Array(32).fill(83) });
    meshes.push(donor);
    const other = await createMeshNode({ logger, peerKeySeed: new Uint8Array(32).fill(84) });
    meshes.push(other);
    const received: number[] = [];
    const pull = new AdvertPull({
      now: Date.now,
      after: (delayMs, fire) => void setTimeout(fire, delayMs),
      ask: async (peerId) =>
        (await other.request(peerId, PROTOCOL_ADVERT, protocolSpecs.advert, { type: "advert" })).advert,
      deliver: (got) => received.push(got.seq),
      onError: () => undefined,
    });
    const stop = other.onPeerIdentified((peerId, protocols) => {
      if (protocols.includes(PROTOCOL_ADVERT)) pull.onDonorIdentified(peerId);
    });
    await other.libp2p.dial(donor.libp2p.getMultiaddrs()[0]!);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(received, [], "the donor serves no adverts yet");
    const advert = testAdvert({ ...DONOR, peerId: donor.peerId, seq: 7 });
    await donor.handle(PROTOCOL_ADVERT, protocolSpecs.advert, async () => ({
      type: "advert" as const,
      advert,
    }));
    const deadline = Date.now() + 20_000;
    while (received.length === 0) {
      assert.ok(Date.now() < deadline, "identify push should tell the other node, which then asks");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    stop();
    assert.deepEqual(received, [7]);
  });
});
