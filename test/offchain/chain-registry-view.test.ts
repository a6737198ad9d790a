import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Address, Hex } from "viem";
import { RegistryView } from "../../offchain/src/chain/registry-view.ts";
import { registryEventOf } from "../../offchain/src/chain/registry-follower.ts";

const donor: Address = "0x3333333333333333333333333333333333333333";
const oldOperator: Address = "0x1111111111111111111111111111111111111111";
const newOperator: Address = "0x4444444444444444444444444444444444444444";
const oldPeer: Hex = `0x${"22".repeat(32)}`;
const newPeer: Hex = `0x${"55".repeat(32)}`;
const MIN = 100n;

/** A caught-up view on a fake clock with one registered donor bonded MIN. */
function view() {
  const now = 1_000_000;
  const registry = new RegistryView({ staleMs: 10_000 });
  registry.apply({ type: "params", minStake: MIN });
  registry.apply({ type: "staked", donor, bonded: MIN });
  registry.apply({ type: "registered", donor, operator: oldOperator, peerKey: oldPeer });
  registry.advanceTo(1n, true, now);
  return { registry, status: (op: Address, key: Hex) => registry.status(op, key, now) };
}

describe("registry view: the active donors' peer keys", () => {
  it("lists staked, registered, unjailed operators' keys, at most `limit`, and none while stale", () => {
    const { registry } = view();
    const now = 1_000_000;
    const other: Address = "0x6666666666666666666666666666666666666666";
    const otherPeer: Hex = `0x${"77".repeat(32)}`;
    registry.apply({ type: "staked", donor: other, bonded: MIN - 1n });
    registry.apply({
      type: "registered",
      donor: other,
      operator: "0x8888888888888888888888888888888888888888",
      peerKey: otherPeer,
    });
    assert.deepEqual(registry.activePeerKeys(10, now), [oldPeer], "below minStake is left out");
    registry.apply({ type: "staked", donor: other, bonded: MIN });
    assert.deepEqual(registry.activePeerKeys(10, now), [oldPeer, otherPeer]);
    assert.deepEqual(registry.activePeerKeys(1, now), [oldPeer]);
    registry.apply({ type: "jailed", operator: oldOperator });
    assert.deepEqual(registry.activePeerKeys(10, now), [otherPeer], "a jailed operator is left out");
    assert.deepEqual(registry.activePeerKeys(10, now + 60_000), [], "a stale view lists nobody");
  });
});

describe("registry view: rotation and jail", () => {
  it("moves a donor's stake to its new operator; the old one is inactive for good", () => {
    const { registry, status } = view();
    assert.equal(status(oldOperator, oldPeer), "active");
    registry.apply({ type: "rotated", donor, operator: newOperator, peerKey: newPeer });
    assert.equal(status(oldOperator, oldPeer), "inactive");
    assert.equal(status(newOperator, newPeer), "active", "the bonded stake followed the donor");
    assert.equal(status(newOperator, oldPeer), "inactive", "with the new peer key only");
    assert.equal(registry.size, 1);
    registry.apply({ type: "slashed", donor, amount: 1n });
    assert.equal(status(newOperator, newPeer), "inactive", "a slash of the old key takes the donor's stake");
  });

  it("keeps a jailed operator inactive whatever its stake, until the donor rotates", () => {
    const { registry, status } = view();
    registry.apply({ type: "jailed", operator: oldOperator });
    assert.equal(status(oldOperator, oldPeer), "inactive");
    registry.apply({ type: "staked", donor, bonded: MIN * 10n });
    assert.equal(status(oldOperator, oldPeer), "inactive", "a top-up does not free a jailed key");
    registry.apply({ type: "rotated", donor, operator: newOperator, peerKey: newPeer });
    assert.equal(status(newOperator, newPeer), "active");
  });

  it("reads OperatorRotated, Jailed and Slashed logs into events", () => {
    assert.deepEqual(
      registryEventOf({
        eventName: "OperatorRotated",
        args: { donor, oldOperator, newOperator, peerKey: newPeer, oldAccountableUntil: 5n },
      }),
      { type: "rotated", donor, operator: newOperator, peerKey: newPeer },
    );
    assert.deepEqual(
      registryEventOf({ eventName: "Jailed", args: { operator: oldOperator, donor, rotatableAt: 9n } }),
      { type: "jailed", operator: oldOperator },
    );
    assert.deepEqual(
      registryEventOf({
        eventName: "Slashed",
        args: { operator: oldOperator, donor, amount: 7n, reward: 0n, reason: 1 },
      }),
      { type: "slashed", donor, amount: 7n },
    );
    assert.deepEqual(registryEventOf({ eventName: "CourtSlashed", args: { donor, amount: 9n } }), {
      type: "slashed",
      donor,
      amount: 9n,
    });
    assert.equal(registryEventOf({ eventName: "ParamsProposed", args: {} }), undefined);
  });
});
