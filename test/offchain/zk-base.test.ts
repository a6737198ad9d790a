import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import {
  StateTree,
  SettlementKey,
  leafHash,
  nextQueueHash,
  packTransfers,
  rootFromPath,
  unpackTransfers,
  verifyZkSignature,
  zkVoucherMessage,
} from "../../offchain/src/zk/index.ts";

describe("zk base encodings", () => {
  it("a tree path leads back to the root, and an update moves it", () => {
    const tree = new StateTree(4);
    const empty = tree.root;
    const leaf = leafHash({
      ax: 1n,
      ay: 2n,
      payee: "0x00000000000000000000000000000000000000aa",
      deposit: 10n,
      paid: 0n,
    });
    tree.set(5, leaf);
    assert.notEqual(tree.root, empty);
    assert.equal(rootFromPath(leaf, tree.path(5)), tree.root);
    assert.equal(rootFromPath(0n, tree.path(6)), tree.root);
    tree.set(5, 0n);
    assert.equal(tree.root, empty);
    assert.throws(() => tree.set(16, 1n), /outside a tree of depth 4/);
  });

  it("transfers pack two to a field element and unpack to the same list", () => {
    const transfers = [
      { leaf: 3, cumulative: 7n },
      { leaf: 1_000_000, cumulative: (1n << 96n) - 1n },
      { leaf: 0, cumulative: 1n },
    ];
    const packed = packTransfers(transfers, 4);
    assert.equal(packed.length, 2);
    assert.ok(packed.every((x) => x < 1n << 252n));
    assert.deepEqual(unpackTransfers(packed), transfers);
    assert.throws(() => packTransfers([{ leaf: 0, cumulative: 1n << 96n }], 2), /outside 0\.\.2\^96-1/);
  });

  it("a settlement key signs vouchers that verify only for their own message and key", () => {
    const key = SettlementKey.generate();
    const message = zkVoucherMessage(123n, 4, 1000n);
    const signature = key.sign(message);
    assert.ok(verifyZkSignature(message, signature, key.publicKey));
    assert.ok(!verifyZkSignature(zkVoucherMessage(123n, 4, 1001n), signature, key.publicKey));
    assert.ok(!verifyZkSignature(message, signature, SettlementKey.generate().publicKey));
  });

  it("the queue hash depends on every field of an operation", () => {
    const open = {
      kind: "open" as const,
      leaf: 0,
      amount: 5n,
      ax: 1n,
      ay: 2n,
      payee: "0x00000000000000000000000000000000000000aa" as const,
    };
    const a = nextQueueHash(0n, open);
    assert.notEqual(a, nextQueueHash(0n, { ...open, amount: 6n }));
    assert.notEqual(
      nextQueueHash(a, { kind: "topUp", leaf: 0, amount: 1n, ax: 0n, ay: 0n, payee: null }),
      nextQueueHash(a, { kind: "close", leaf: 0, amount: 0n, ax: 0n, ay: 0n, payee: null }),
    );
  });
});
