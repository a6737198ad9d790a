import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { pino } from "pino";
import { toHex, type Address, type Hex } from "viem";
import { RegistryView, type RegistryViewOptions } from "../../offchain/src/chain/registry-view.ts";
import { AdvertIntake } from "../../offchain/src/node/adverts.ts";
import type { NodeContext } from "../../offchain/src/node/context.ts";
import { loadConfig } from "../../offchain/src/node/config.ts";
import { PeerBook } from "../../offchain/src/node/peer-book.ts";
import { peerKeyFromSeed } from "../../offchain/src/p2p/index.ts";
import { StakeCache } from "../../offchain/src/node/stake-cache.ts";
import type { CapabilityAdvert } from "../../offchain/src/protocol/index.ts";
import { testAdvert } from "../support/adverts.ts";

const operator = "0x1111111111111111111111111111111111111111";
const peerKey = `0x${"22".repeat(32)}` as const;
const donorWallet = "0x3333333333333333333333333333333333333333";
const MIN = 100n;

function keyOf(n: number): Hex {
  return `0x${n.toString(16).padStart(64, "0")}`;
}

function walletOf(n: number): Address {
  return `0x${n.toString(16).padStart(40, "0")}`;
}

/** A view on a fake clock, caught up at block 1 with `minStake` MIN. */
function view(options: Partial<RegistryViewOptions> = {}) {
  const clock = { now: 1_000_000 };
  const registry = new RegistryView({ staleMs: 10_000, ...options });
  registry.apply({ type: "params", minStake: MIN });
  let block = 1n;
  const caughtUp = () => registry.advanceTo(block++, true, clock.now);
  caughtUp();
  const status = (op: Address = operator, key: Hex = peerKey) => registry.status(op, key, clock.now);
  return { registry, clock, caughtUp, status };
}

describe("registry view", () => {
  it("follows registration, stake, unbonding, slashing and the minimum stake", () => {
    const { registry, status } = view();
    assert.equal(status(), "inactive", "a caught-up view that dropped nothing holds every registration");
    registry.apply({ type: "staked", donor: donorWallet, bonded: MIN });
    registry.apply({ type: "registered", donor: donorWallet, operator, peerKey });
    assert.equal(status(), "active");
    assert.equal(
      status(operator.toUpperCase().replace("0X", "0x") as Address),
      "active",
      "addresses in any case",
    );
    assert.equal(status(operator, keyOf(9)), "inactive", "registered with another peer key");

    registry.apply({ type: "unbond", donor: donorWallet, amount: 1n });
    assert.equal(status(), "inactive", "unbonding stake does not count");
    registry.apply({ type: "staked", donor: donorWallet, bonded: 150n });
    assert.equal(status(), "active", "Staked carries the new bonded total");
    registry.apply({ type: "slashed", donor: donorWallet, amount: 60n });
    assert.equal(status(), "inactive", "150 - 60 is below the minimum");
    registry.apply({ type: "params", minStake: 90n });
    assert.equal(status(), "active", "a lower minimum makes 90 enough");
    registry.apply({ type: "slashed", donor: donorWallet, amount: 1_000n });
    registry.apply({ type: "staked", donor: donorWallet, bonded: 90n });
    assert.equal(status(), "active", "a slash beyond the bonded stake empties it, a top-up restores it");
    assert.equal(registry.size, 1);
  });

  it("answers unknown, never inactive, once it has not caught up for longer than staleMs", () => {
    const { registry, clock, caughtUp, status } = view({ staleMs: 10_000 });
    registry.apply({ type: "staked", donor: donorWallet, bonded: MIN });
    registry.apply({ type: "registered", donor: donorWallet, operator, peerKey });
    assert.equal(status(operator, keyOf(9)), "inactive");
    clock.now += 10_000;
    assert.equal(status(), "active", "within the bound the last view stands");
    clock.now += 1;
    assert.equal(status(), "unknown");
    assert.equal(status(operator, keyOf(9)), "unknown", "nor inactive");
    registry.advanceTo(registry.head! + 10n, false, clock.now);
    assert.equal(status(), "unknown", "catching up part of the way is not caught up");
    caughtUp();
    assert.equal(status(), "active");
    registry.reset();
    assert.equal(status(), "unknown", "a reset view knows nothing");
    assert.equal(registry.head, undefined);
  });

  it("knows nothing before its first catch-up nor without a minimum stake", () => {
    const registry = new RegistryView({ staleMs: 10_000 });
    registry.apply({ type: "staked", donor: donorWallet, bonded: MIN });
    registry.apply({ type: "registered", donor: donorWallet, operator, peerKey });
    assert.equal(registry.status(operator, peerKey, 0), "unknown");
    registry.advanceTo(5n, true, 0);
    assert.equal(registry.status(operator, peerKey, 0), "unknown", "no ParamsUpdated seen yet");
    registry.apply({ type: "params", minStake: MIN });
    assert.equal(registry.status(operator, peerKey, 0), "active");
  });

  it("keeps at most maxDonors, dropping the least recently changed, which then answers unknown", () => {
    const { registry, status } = view({ maxDonors: 2 });
    const register = (n: number) =>
      registry.apply({
        type: "registered",
        donor: walletOf(n),
        operator: walletOf(100 + n),
        peerKey: keyOf(n),
      });
    assert.equal(status(walletOf(150), keyOf(50)), "inactive", "nothing dropped yet: unregistered");
    for (const n of [1, 2]) {
      register(n);
      registry.apply({ type: "staked", donor: walletOf(n), bonded: MIN });
    }
    registry.apply({ type: "staked", donor: walletOf(1), bonded: MIN }); // 1 is now fresher than 2
    register(3); // its stake was not followed (never staked here)
    assert.equal(registry.size, 2);
    assert.equal(status(walletOf(101), keyOf(1)), "active");
    assert.equal(status(walletOf(102), keyOf(2)), "unknown", "dropped: unknown, not inactive");
    assert.equal(status(walletOf(150), keyOf(50)), "unknown", "a missing operator may now be a dropped one");
    assert.equal(status(walletOf(103), keyOf(3)), "unknown", "registered without a followed stake");
    registry.apply({ type: "staked", donor: walletOf(3), bonded: MIN });
    assert.equal(status(walletOf(103), keyOf(3)), "active", "its next Staked event gives the amount");
  });

  it("keeps at most maxStakers unregistered stakes; a dropped one registers with an unknown amount", () => {
    const { registry, status } = view({ maxStakers: 1 });
    registry.apply({ type: "staked", donor: walletOf(1), bonded: MIN });
    registry.apply({ type: "staked", donor: walletOf(2), bonded: MIN });
    registry.apply({ type: "unbond", donor: walletOf(9), amount: 5n });
    registry.apply({ type: "registered", donor: walletOf(1), operator: walletOf(101), peerKey: keyOf(1) });
    registry.apply({ type: "registered", donor: walletOf(2), operator: walletOf(102), peerKey: keyOf(2) });
    assert.equal(status(walletOf(101), keyOf(1)), "unknown");
    assert.equal(status(walletOf(102), keyOf(2)), "active");
  });
});

/** A stake cache over a view on a fake clock, with `operator`/`peerKey` registered and staked. */
function cacheOverView() {
  const { registry, clock, caughtUp } = view({ staleMs: 1_000 });
  registry.apply({ type: "staked", donor: donorWallet, bonded: MIN });
  const source = {
    lookups: 0,
    status(op: Address, key: Hex) {
      this.lookups++;
      return registry.status(op, key, clock.now);
    },
  };
  return { cache: new StakeCache(source), registry, clock, caughtUp, source };
}

describe("stake view config", () => {
  it("defaults to a 10 s poll and refuses a staleness bound not longer than the poll", async () => {
    const config = await loadConfig(undefined, { passphrase: "pw" });
    assert.deepEqual(
      [
        config.chain.stakePollMs,
        config.chain.stakeStaleMs,
        config.chain.logBlockRange,
        config.chain.confirmations,
      ],
      [10_000, 120_000, 1_000, 0],
    );
    await assert.rejects(
      loadConfig(undefined, { passphrase: "pw", chain: { stakePollMs: 5_000, stakeStaleMs: 5_000 } }),
      /chain\.stakeStaleMs: must be longer than chain\.stakePollMs/,
    );
  });
});

describe("stake cache", () => {
  it("answers status, isActive and peek from the view, whoever asks", async () => {
    const { cache, registry } = cacheOverView();
    assert.equal(cache.peek(operator, peerKey), false, "an unregistered operator is inactive");
    assert.equal(await cache.status(operator, peerKey, "peer-a"), "inactive");
    registry.apply({ type: "registered", donor: donorWallet, operator, peerKey });
    assert.equal(cache.peek(operator, peerKey), true);
    assert.equal(await cache.status(operator, peerKey, "peer-b"), "active");
    assert.equal(await cache.isActive(operator, peerKey, "peer-c"), true);
    assert.equal(cache.peek(operator, keyOf(4)), false);
    assert.equal(await cache.status(operator, keyOf(4)), "inactive");
  });

  it("goes from active to unknown when the view is stale, and back when it catches up", async () => {
    const { cache, registry, clock, caughtUp } = cacheOverView();
    registry.apply({ type: "registered", donor: donorWallet, operator, peerKey });
    assert.equal(await cache.status(operator, peerKey), "active");
    clock.now += 1_001;
    assert.equal(await cache.status(operator, peerKey), "unknown");
    assert.equal(cache.peek(operator, keyOf(4)), undefined, "a stale view says nobody is inactive");
    caughtUp();
    assert.equal(await cache.status(operator, peerKey), "active");
  });
});

function advert(peerId: string): CapabilityAdvert {
  return testAdvert({ peerId, operator, peerKey });
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
  /** An intake over a stake cache whose registry view the test feeds, on a fake clock. */
  async function intake() {
    const key = await peerKeyFromSeed(new Uint8Array(32).fill(5));
    const peerId = peerIdFromPrivateKey(key).toString();
    const donorKey = toHex(key.publicKey.raw);
    const clock = { now: 1_000_000 };
    const registry = new RegistryView({ staleMs: 10_000 });
    const stakes = new StakeCache({ status: (op, key) => registry.status(op, key, clock.now) });
    const book = new PeerBook();
    const recorded: string[] = [];
    const ctx = {
      mesh: { peerId: "self", rememberAddresses: () => undefined },
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
      await new Promise(setImmediate); // an unknown stake is answered on the next turn
    };
    const register = () => {
      registry.apply({ type: "params", minStake: MIN });
      registry.apply({ type: "staked", donor: donorWallet, bonded: MIN });
      registry.apply({ type: "registered", donor: donorWallet, operator, peerKey: donorKey });
    };
    return { book, clock, registry, register, hear, peerId, recorded };
  }

  it("keeps a staked donor staked while the registry view is stale, and records an unknown newcomer unstaked", async () => {
    const { book, clock, registry, register, hear, peerId, recorded } = await intake();
    register(); // on chain, but the view never caught up (RPC down since start)
    await hear();
    assert.equal(book.get(peerId)?.staked, false, "unknown is not staked for a donor never seen");
    assert.deepEqual(recorded, []);

    clock.now += 5_001;
    registry.advanceTo(10n, true, clock.now);
    await hear();
    assert.equal(book.get(peerId)?.staked, true);
    assert.deepEqual(recorded, [peerId]);

    clock.now += 20_000; // the view has not caught up for longer than its staleness bound
    await hear();
    assert.equal(book.get(peerId)?.staked, true, "an outage does not unstake a known donor");

    registry.apply({ type: "unbond", donor: donorWallet, amount: 1n });
    registry.advanceTo(11n, true, clock.now);
    await hear();
    assert.equal(book.get(peerId)?.staked, false, "a followed unbonding does");
  });
});
