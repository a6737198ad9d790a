import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../offchain/src/node/index.ts";
import { PeerBook } from "../../offchain/src/node/peer-book.ts";
import type { CapabilityAdvert } from "../../offchain/src/protocol/index.ts";
import { testAdvert } from "../support/adverts.ts";

const operatorOf = (peerId: string) =>
  `0x${Buffer.from(peerId).toString("hex").padStart(40, "0").slice(-40)}` as `0x${string}`;
const peerKey = `0x${"22".repeat(32)}` as const;

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "cell-config-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("node config", () => {
  it("has defaults that work on a local devnet", async () => {
    const config = await loadConfig(undefined, { passphrase: "pw" });
    assert.equal(config.api.host, "127.0.0.1");
    assert.equal(config.donor.enabled, false);
    assert.equal(config.buyer.bidTimeoutMs, 3_000);
    assert.equal(config.donor.receiptBatchMs, 60_000);
    assert.deepEqual(config.listen, ["/ip4/127.0.0.1/tcp/0"]);
  });

  it("reads TOML, resolves paths against the file and applies overrides", async () => {
    await withDir(async (dir) => {
      const file = join(dir, "node.toml");
      await writeFile(
        file,
        [
          'dataDir = "data"',
          "[donor]",
          "enabled = true",
          'pricePerMegaFuel = "2500"',
          "slots = 3",
          "[chain]",
          'deploymentFile = "deployment.json"',
        ].join("\n"),
      );
      const config = await loadConfig(file, { donor: { slots: 5 }, passphrase: "pw" });
      assert.equal(config.dataDir, join(dir, "data"));
      assert.equal(config.chain.deploymentFile, join(dir, "deployment.json"));
      assert.equal(config.donor.enabled, true);
      assert.equal(config.donor.pricePerMegaFuel, 2500n);
      assert.equal(config.donor.slots, 5);
    });
  });

  it("reads JSON and names what is wrong", async () => {
    await withDir(async (dir) => {
      const file = join(dir, "node.json");
      await writeFile(file, JSON.stringify({ donor: { slots: 0 }, api: { port: 70000 } }));
      await assert.rejects(
        loadConfig(file),
        (err: Error) => /donor\.slots/.test(err.message) && /api\.port/.test(err.message),
      );
      await writeFile(file, JSON.stringify({ surprise: true }));
      await assert.rejects(loadConfig(file), /surprise|unrecognized/i);
      await writeFile(file, "{ not json");
      await assert.rejects(loadConfig(file), /cannot parse node config/);
    });
  });

  it("takes the passphrase from CELL_PASSPHRASE when the file has none", async () => {
    const previous = process.env.CELL_PASSPHRASE;
    process.env.CELL_PASSPHRASE = "from-env";
    try {
      assert.equal((await loadConfig()).passphrase, "from-env");
      assert.equal((await loadConfig(undefined, { passphrase: "explicit" })).passphrase, "explicit");
    } finally {
      if (previous === undefined) delete process.env.CELL_PASSPHRASE;
      else process.env.CELL_PASSPHRASE = previous;
    }
  });
});

/** A donor's advert; each donor has its own operator. */
function advert(peerId: string, overrides: Partial<CapabilityAdvert> = {}): CapabilityAdvert {
  return testAdvert({ peerId, operator: operatorOf(peerId), peerKey, ...overrides });
}

describe("peer book", () => {
  const job = { fuelLimit: 1_000_000n, memoryPages: 16, maxPricePerMegaFuel: 2_000n };

  it("offers only staked, live, able and affordable donors, cheapest first, with the reasons of the rest", () => {
    const book = new PeerBook();
    book.upsertFromAdvert(advert("cheap", { pricePerMegaFuel: "500" }), 1_000, true);
    book.upsertFromAdvert(advert("normal"), 1_000, true);
    book.upsertFromAdvert(advert("unstaked", { pricePerMegaFuel: "1" }), 1_000, false);
    book.upsertFromAdvert(advert("stale"), 0, true);
    book.upsertFromAdvert(advert("small", { maxMemoryPages: 8 }), 1_000, true);
    book.upsertFromAdvert(advert("pricey", { pricePerMegaFuel: "5000" }), 1_000, true);
    book.upsertFromAdvert(advert("excluded"), 1_000, true);
    const set = book.candidates(job, {
      now: 1_500,
      livenessMs: 1_000,
      exclude: new Set(["excluded"]),
      limit: 10,
    });
    assert.deepEqual(
      set.chosen.map((d) => d.peerId),
      ["cheap", "normal"],
    );
    assert.deepEqual(set.passedOver, {
      not_staked: 1,
      executor_silent: 1,
      memory_too_high: 1,
      bid_rejected_price: 1,
      duplicate_operator: 1,
    });
    book.touch("stale", 1_400);
    assert.ok(
      book
        .candidates(job, { now: 1_500, livenessMs: 1_000, exclude: new Set(), limit: 10 })
        .chosen.some((d) => d.peerId === "stale"),
    );
  });

  it("passes over donors whose slots this buyer fills while enough others are free, else puts them last, and spreads ties", () => {
    const book = new PeerBook();
    for (const id of ["a", "b", "c"]) book.upsertFromAdvert(advert(id), 0, true);
    const busy = (peerId: string) => (peerId === "a" ? 4 : 0);
    const options = { now: 0, livenessMs: 1_000, exclude: new Set<string>() };
    const oneReplica = book.candidates(job, { ...options, limit: 3, busy });
    assert.deepEqual(oneReplica.chosen.map((d) => d.peerId).sort(), ["b", "c"]);
    assert.equal(oneReplica.passedOver.slots_full, 1);
    for (let i = 0; i < 20; i++)
      assert.equal(
        book.candidates(job, { ...options, limit: 3, busy, needed: 3 }).chosen.at(-1)?.peerId,
        "a",
      );
    const firsts = new Set<string>();
    for (let i = 0; i < 50; i++) firsts.add(book.candidates(job, { ...options, limit: 1 }).chosen[0]!.peerId);
    assert.ok(firsts.size > 1, "equal donors are not always asked in the same order");
  });
});
