import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import { getContract, keccak256, pad, parseAbi, toHex } from "viem";
import type { Hex } from "viem";

const harnessAbi = parseAbi([
  "constructor(uint256 k)",
  "function set(bytes32 id, uint256 weight)",
  "function weightOf(bytes32 id) view returns (uint256)",
  "function total() view returns (uint256)",
  "function draw(uint256 random) view returns (bytes32)",
  "function drawCounts(bytes32 seed, uint256 n, bytes32[] ids) view returns (uint256[])",
  "function nodes() view returns (uint256[])",
  "error EmptyTree()",
  "error ZeroId()",
]);

const idOf = (i: number): Hex => pad(toHex(i + 1), { size: 32 });

/** xorshift32: a seeded sequence, so every run checks the same operations. */
function prng(seed: number) {
  let x = seed >>> 0 || 1;
  return (bound: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % bound;
  };
}

/** Pearson's chi-square statistic of observed counts against expected ones. */
function chiSquare(observed: readonly bigint[], expected: readonly number[]): number {
  return observed.reduce((sum, o, i) => sum + (Number(o) - expected[i]!) ** 2 / expected[i]!, 0);
}

/** 99.9th percentile of chi-square with 9 degrees of freedom. */
const CHI2_9_P999 = 27.877;

describe("SortitionSumTree", async () => {
  const { viem } = await network.create();
  const publicClient = await viem.getPublicClient();
  const [wallet] = await viem.getWalletClients();

  /** A tree of arity k behind the harness contract, typed by the ABI above. */
  async function harness(k: number) {
    const { address } = await viem.deployContract("SortitionSumTreeHarness", [BigInt(k)]);
    return getContract({ abi: harnessAbi, address, client: { public: publicClient, wallet: wallet! } });
  }

  async function checkShape(tree: { read: { nodes: () => Promise<readonly bigint[]> } }, k: number) {
    const nodes = await tree.read.nodes();
    for (let i = 0; k * i + 1 < nodes.length; i++) {
      let sum = 0n;
      for (let c = k * i + 1; c <= k * i + k && c < nodes.length; c++) sum += nodes[c]!;
      assert.equal(nodes[i], sum, `node ${i} is not the sum of its children`);
    }
  }

  for (const k of [2, 3, 4]) {
    it(`keeps every inner node the sum of its children through inserts, updates and removals (K = ${k})`, async () => {
      const tree = await harness(k);
      const next = prng(7 * k);
      const model = new Map<number, bigint>();
      for (let step = 0; step < 60; step++) {
        const i = next(20);
        const weight = next(4) === 0 ? 0n : BigInt(1 + next(1_000));
        await tree.write.set([idOf(i), weight]);
        if (weight === 0n) model.delete(i);
        else model.set(i, weight);
      }
      await checkShape(tree, k);
      for (let i = 0; i < 20; i++) assert.equal(await tree.read.weightOf([idOf(i)]), model.get(i) ?? 0n);
      const total = [...model.values()].reduce((a, b) => a + b, 0n);
      assert.equal(await tree.read.total(), total);
      // Every point of the weight line belongs to the id whose interval holds it.
      const present = [...model.keys()];
      const counts = await tree.read.drawCounts([keccak256(toHex("shape")), 300n, present.map(idOf)]);
      assert.equal(
        counts.reduce((a, b) => a + b, 0n),
        300n,
        "a draw returned an id that holds no weight",
      );
    });
  }

  it("draws each id with probability weight / total (chi-square over 2,000 seeded draws)", async () => {
    const tree = await harness(4);
    // Churn first, so vacated leaves are reused and leaves have moved down: the draw must not care.
    for (let i = 0; i < 14; i++) await tree.write.set([idOf(i), 5n]);
    for (let i = 10; i < 14; i++) await tree.write.set([idOf(i), 0n]);
    const weights = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((w) => BigInt(w) * 10n ** 18n);
    for (const [i, w] of weights.entries()) await tree.write.set([idOf(i), w]);
    const ids = weights.map((_, i) => idOf(i));
    const n = 2_000;
    const counts = await tree.read.drawCounts([keccak256(toHex("cell-jury-seed")), BigInt(n), ids]);
    assert.equal(
      counts.reduce((a, b) => a + b, 0n),
      BigInt(n),
    );
    const total = 55;
    const byStake = weights.map((_, i) => (n * (i + 1)) / total);
    const stat = chiSquare(counts, byStake);
    assert.ok(stat < CHI2_9_P999, `chi-square ${stat.toFixed(2)} against stake weights`);
    // The same counts are far from a uniform draw, so the statistic can tell the two apart.
    const uniform = chiSquare(
      counts,
      weights.map(() => n / weights.length),
    );
    assert.ok(uniform > 10 * CHI2_9_P999, `chi-square ${uniform.toFixed(2)} against a uniform draw`);
  });

  it("never draws an id of weight 0, and a zero-weight tree cannot be drawn from", async () => {
    const tree = await harness(4);
    for (let i = 0; i < 6; i++) await tree.write.set([idOf(i), 10n]);
    await tree.write.set([idOf(2), 0n]);
    await tree.write.set([idOf(4), 0n]);
    const ids = [0, 1, 2, 3, 4, 5].map(idOf);
    const counts = await tree.read.drawCounts([keccak256(toHex("zero")), 400n, ids]);
    assert.equal(counts[2], 0n);
    assert.equal(counts[4], 0n);
    assert.equal(
      counts.reduce((a, b) => a + b, 0n),
      400n,
    );
    for (const i of [0, 1, 3, 5]) await tree.write.set([idOf(i), 0n]);
    await viem.assertions.revertWithCustomError(tree.read.draw([1n]), tree, "EmptyTree");
    await viem.assertions.revertWithCustomError(tree.write.set([pad("0x0"), 1n]), tree, "ZeroId");
  });
});
