import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "../../offchain/src/node/index.ts";
import {
  BootstrapSchedule,
  DEFAULT_BOOTSTRAP_POLICY,
  FAILURES_BEFORE_NEXT,
  parseCidr,
  TrustedNetworks,
  type BootstrapPolicy,
} from "../../offchain/src/p2p/index.ts";

const A = "/ip4/127.0.0.1/tcp/4001/p2p/A";
const B = "/ip4/127.0.0.1/tcp/4002/p2p/B";
const policy: BootstrapPolicy = {
  initialDelayMs: 500,
  factor: 2,
  maxDelayMs: 4_000,
  isolatedMaxDelayMs: 4_000,
  jitter: 0.5,
  minPeers: 3,
  dialPeers: 2,
  restAfterMs: 20_000,
};

/** Fails every dial of `address` that falls due, `times` times, and returns when each was dialed. */
function failRepeatedly(
  schedule: BootstrapSchedule,
  address: string,
  times: number,
  peerCount = 0,
): number[] {
  const dialedAt: number[] = [];
  let now = 0;
  while (dialedAt.length < times) {
    const due = schedule.due(now, peerCount);
    if (due.includes(address)) {
      dialedAt.push(now);
      schedule.dialed(address, false, now);
    }
    now = schedule.nextDueAt(peerCount) ?? assert.fail("a failed peer must be retried");
  }
  return dialedAt;
}

describe("bootstrap schedule", () => {
  it("dials every bootstrap peer at once at start", () => {
    const schedule = new BootstrapSchedule([A, B], policy, () => 0);
    assert.deepEqual(schedule.due(0, 0).sort(), [A, B]);
    assert.deepEqual(schedule.due(0, 0), [], "a peer being dialed is not handed out twice");
    assert.equal(schedule.nextDueAt(0), undefined, "nothing waits while both dials run");
  });

  it("retries a failing peer with exponential backoff up to the cap", () => {
    const schedule = new BootstrapSchedule([A], policy, () => 0);
    const dialedAt = failRepeatedly(schedule, A, 7);
    const waits = dialedAt.slice(1).map((at, i) => at - dialedAt[i]!);
    assert.deepEqual(waits, [500, 1_000, 2_000, 4_000, 4_000, 4_000]);
    assert.equal(schedule.failures(A), 7);
  });

  it("caps the wait at isolatedMaxDelayMs while the node has fewer than minPeers connections", () => {
    const wide = { ...policy, maxDelayMs: 30_000, isolatedMaxDelayMs: 2_000 };
    const waitsWith = (peerCount: number) => {
      const dialedAt = failRepeatedly(new BootstrapSchedule([A], wide, () => 0), A, 8, peerCount);
      return dialedAt.slice(1).map((at, i) => at - dialedAt[i]!);
    };
    assert.deepEqual(waitsWith(0), [500, 1_000, 2_000, 2_000, 2_000, 2_000, 2_000], "alone: keeps trying");
    // with the mesh (an unreached bootstrap peer is still wanted) the waits grow to maxDelayMs
    assert.deepEqual(waitsWith(5), [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000]);
    const schedule = new BootstrapSchedule([A], wide, () => 0);
    const dialedAt = failRepeatedly(schedule, A, 7, 5);
    assert.equal(schedule.nextDueAt(5), dialedAt.at(-1)! + 30_000);
    assert.equal(
      schedule.nextDueAt(0),
      dialedAt.at(-1)! + 2_000,
      "losing the mesh brings the next dial forward",
    );
  });

  it("shortens each wait by up to the jitter fraction, so nodes started together spread out", () => {
    const early = failRepeatedly(new BootstrapSchedule([A], policy, () => 0.5), A, 4);
    const late = failRepeatedly(new BootstrapSchedule([A], policy, () => 0), A, 4);
    assert.deepEqual(late, [0, 500, 1_500, 3_500]);
    assert.deepEqual(early, [0, 375, 1_125, 2_625], "half the jitter: each wait ¾ as long");
  });

  it("stops dialing a peer once reached while this node keeps enough connections", () => {
    const schedule = new BootstrapSchedule([A, B], policy, () => 0);
    schedule.due(0, 0);
    schedule.dialed(A, true, 10);
    schedule.dialed(B, false, 10);
    assert.equal(schedule.nextDueAt(5), 510, "only B, which failed, is still wanted");
    assert.deepEqual(schedule.due(510, 5), [B]);
    schedule.dialed(B, true, 520);
    assert.equal(schedule.nextDueAt(5), undefined);
    schedule.disconnected(A, 1_000);
    assert.deepEqual(schedule.due(1_000, 5), [], "with five other peers a lost bootstrap peer is left alone");
  });

  it("redials at once and with a fresh backoff when this node has lost the mesh", () => {
    const schedule = new BootstrapSchedule([A], policy, () => 0);
    failRepeatedly(schedule, A, 4);
    schedule.due(100_000, 0);
    schedule.dialed(A, true, 100_000);
    assert.equal(schedule.failures(A), 0, "a success resets the backoff");
    schedule.disconnected(A, 200_000);
    assert.deepEqual(schedule.due(200_000, 1), [A], "one peer left is below minPeers: redial now");
    schedule.dialed(A, false, 200_000);
    assert.equal(schedule.nextDueAt(1), 200_500, "the first retry waits the initial delay again");
  });

  it("backs off from a peer that accepts and at once closes, and redials at once after a lasting connection", () => {
    const schedule = new BootstrapSchedule([A], policy, () => 0);
    schedule.due(0, 0);
    schedule.dialed(A, true, 0);
    schedule.disconnected(A, 10);
    assert.equal(schedule.nextDueAt(0), 510, "a connection closed within 10 s waits the first delay");
    schedule.due(510, 0);
    schedule.dialed(A, true, 510);
    schedule.disconnected(A, 520);
    assert.equal(schedule.nextDueAt(0), 1_520, "and longer each time it happens again");
    schedule.due(1_520, 0);
    schedule.dialed(A, true, 1_520);
    schedule.disconnected(A, 60_000);
    assert.equal(schedule.nextDueAt(0), 60_000, "a lasting connection lost is redialed at once");
  });

  it("treats a connection the peer opened like a successful dial", () => {
    const schedule = new BootstrapSchedule([A], policy, () => 0);
    schedule.due(0, 0);
    schedule.dialed(A, false, 0);
    schedule.connected(A);
    assert.equal(schedule.nextDueAt(10), undefined);
    assert.equal(schedule.failures(A), 0);
  });

  it("dials dialPeers of its bootstrap peers, in an order of its own drawn at random", () => {
    const peers = Array.from({ length: 6 }, (_, i) => `/ip4/127.0.0.1/tcp/${4001 + i}/p2p/P${i}`);
    const firstPicks = new Map<string, number>();
    let seed = 7;
    // a seeded generator: the same draws on every run
    const random = () => ((seed = (seed * 16_807) % 2_147_483_647) - 1) / 2_147_483_646;
    for (let node = 0; node < 600; node++) {
      const due = new BootstrapSchedule(peers, policy, random).due(0, 0);
      assert.equal(due.length, 2, "each node dials two of the six");
      assert.equal(new Set(due).size, 2);
      for (const address of due) firstPicks.set(address, (firstPicks.get(address) ?? 0) + 1);
    }
    // 1,200 dials over six peers: ~200 each; every peer well within a third of that
    assert.equal(firstPicks.size, 6);
    for (const [address, count] of firstPicks)
      assert.ok(count > 130 && count < 270, `${address} was picked ${count} times`);
  });

  it("moves on to the next bootstrap peer once one failed FAILURES_BEFORE_NEXT dials, and keeps retrying it", () => {
    const C = "/ip4/127.0.0.1/tcp/4003/p2p/C";
    const schedule = new BootstrapSchedule([A, B, C], { ...policy, dialPeers: 1 }, () => 0.99);
    const [first] = schedule.due(0, 0);
    assert.ok(first !== undefined);
    let now = 0;
    for (let failure = 1; failure < FAILURES_BEFORE_NEXT; failure++) {
      schedule.dialed(first, false, now);
      now = schedule.nextDueAt(0)!;
      assert.deepEqual(schedule.due(now, 0), [first], "still the only one dialed");
    }
    schedule.dialed(first, false, now);
    const next = schedule.due(now, 0);
    assert.equal(next.length, 1, "the next peer in the order, at once");
    assert.notEqual(next[0], first);
    const retryAt = schedule.nextDueAt(0)!;
    assert.ok(retryAt > now, "the failing peer waits out its backoff");
    assert.deepEqual(schedule.due(retryAt, 0), [first], "and is still dialed again");
  });

  it("dials the other configured bootstrap peers restAfterMs after the first dials, but not the fallback peers", () => {
    const peers = Array.from({ length: 5 }, (_, i) => `/ip4/127.0.0.1/tcp/${4001 + i}/p2p/P${i}`);
    const known = "/ip4/127.0.0.1/tcp/4100/p2p/K";
    const schedule = new BootstrapSchedule(peers, policy, () => 0, [known]);
    const first = schedule.due(0, 0);
    assert.equal(first.length, 2);
    for (const address of first) schedule.dialed(address, true, 10);
    assert.equal(schedule.nextDueAt(2), 20_000, "with no jitter drawn, exactly restAfterMs later");
    assert.deepEqual(schedule.due(19_999, 2), []);
    const rest = schedule.due(20_000, 2);
    assert.deepEqual(
      rest.sort(),
      peers.filter((address) => !first.includes(address)).sort(),
      "the three not drawn, and not the fallback peer",
    );
  });

  it("dials fallback peers (seen before a restart) only after the bootstrap peers", () => {
    const C = "/ip4/127.0.0.1/tcp/4003/p2p/C";
    const D = "/ip4/127.0.0.1/tcp/4004/p2p/D";
    for (const draw of [0, 0.5, 0.99]) {
      const schedule = new BootstrapSchedule([A, B], policy, () => draw, [C, D, A]);
      assert.deepEqual(schedule.due(0, 0).sort(), [A, B], `with draws of ${draw}`);
    }
  });

  it("refuses a policy that dials no bootstrap peer or a negative restAfterMs", () => {
    assert.throws(
      () => new BootstrapSchedule([A], { ...policy, dialPeers: 0 }),
      /dialPeers must be a positive integer/,
    );
    assert.throws(
      () => new BootstrapSchedule([A], { ...policy, restAfterMs: -1 }),
      /restAfterMs must be at least 0/,
    );
  });

  it("refuses a policy that would never back off or never retry", () => {
    assert.throws(() => new BootstrapSchedule([A], { ...DEFAULT_BOOTSTRAP_POLICY, factor: 0.5 }), /factor/);
    assert.throws(() => new BootstrapSchedule([A], { ...DEFAULT_BOOTSTRAP_POLICY, jitter: 1 }), /jitter/);
  });
});

describe("trusted networks", () => {
  const trusted = new TrustedNetworks(["127.0.0.0/8", "10.1.0.0/16", "fd00::/8"]);

  it("contains exactly the addresses of its ranges", () => {
    assert.ok(trusted.contains("127.0.0.1"));
    assert.ok(trusted.contains("127.200.3.4"));
    assert.ok(trusted.contains("10.1.255.1"));
    assert.ok(trusted.contains("fd12::1"));
    assert.ok(!trusted.contains("10.2.0.1"));
    assert.ok(!trusted.contains("8.8.8.8"));
    assert.ok(!trusted.contains("::1"));
    assert.ok(!trusted.contains("not an address"));
    assert.ok(!new TrustedNetworks([]).contains("127.0.0.1"), "a public network trusts nothing");
  });

  it("answers gossipsub's whitelist lookups and libp2p's allow list for the same ranges", () => {
    const whitelist = trusted.colocationWhitelist();
    assert.ok(whitelist.has("127.0.0.9"));
    assert.ok(!whitelist.has("192.168.1.1"));
    assert.deepEqual(trusted.multiaddrs(), [
      "/ip4/127.0.0.0/ipcidr/8",
      "/ip4/10.1.0.0/ipcidr/16",
      "/ip6/fd00::/ipcidr/8",
    ]);
  });

  it("names a range that is not one", () => {
    assert.throws(() => parseCidr("127.0.0.0/33"), /"127\.0\.0\.0\/33" has a prefix length outside 8-32/);
    assert.throws(
      () => parseCidr("0.0.0.0/0"),
      /"0\.0\.0\.0\/0" has a prefix length outside 8-32/,
      "the whole Internet is never trusted",
    );
    assert.throws(() => parseCidr("::/0"), /outside 8-128/);
    assert.throws(() => parseCidr("localhost/8"), /"localhost\/8" is not an IP range/);
    assert.deepEqual(parseCidr("192.168.0.7"), { address: "192.168.0.7", prefix: 32, family: "ipv4" });
  });

  it("are read from the node config, empty unless set, and a bad one is named", async () => {
    assert.deepEqual((await loadConfig(undefined, { passphrase: "pw" })).network.trustedCidrs, []);
    const local = await loadConfig(undefined, {
      passphrase: "pw",
      network: { trustedCidrs: ["127.0.0.0/8"] },
    });
    assert.deepEqual(local.network.trustedCidrs, ["127.0.0.0/8"]);
    await assert.rejects(
      loadConfig(undefined, { passphrase: "pw", network: { trustedCidrs: ["127.0.0.0/8", "10.0.0.0/99"] } }),
      /network\.trustedCidrs\.1: trusted network "10\.0\.0\.0\/99" has a prefix length outside 8-32/,
    );
  });
});
