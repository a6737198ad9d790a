import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { keccak256, parseTransaction } from "viem";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import pino from "pino";
import { TxSender, bumpedFees, decideTx } from "../../offchain/src/settlement/index.ts";
import type { Fees, MinedTx, TxChainPort, UnsignedTx } from "../../offchain/src/settlement/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { JournalTx, Store } from "../../offchain/src/store/index.ts";

const log = pino({ level: "silent" });
const CALL = { to: "0x00000000000000000000000000000000000000c0", data: "0x1234" } as const;
const BUMP_AFTER_MS = 30_000;

/** A chain with a mempool the test mines by hand; every broadcast checks the journal first. */
class FakeChain implements TxChainPort {
  readonly account = privateKeyToAccount(generatePrivateKey());
  head = 100n;
  mined = 0;
  fee: Fees = { maxFeePerGas: 1_000n, maxPriorityFeePerGas: 100n };
  readonly broadcasts: Hex[] = [];
  readonly unjournalledBroadcasts: Hex[] = [];
  readonly receipts = new Map<Hex, MinedTx>();
  failing = false;
  store: Store | undefined;

  minedNonce = async () => this.#answer(this.mined);
  pendingNonce = async () =>
    this.#answer(Math.max(this.mined, ...this.broadcasts.map((raw) => parseTransaction(raw).nonce! + 1)));
  blockNumber = async () => this.#answer(this.head);
  fees = async () => this.#answer(this.fee);
  estimateGas = async () => this.#answer(50_000n);
  sign = (tx: UnsignedTx) => this.account.signTransaction({ type: "eip1559", chainId: 31337, ...tx });
  broadcast = async (raw: Hex) => {
    this.#answer(undefined);
    const journalled = this.store?.settlements.txsOf(purposeOf(this.store, keccak256(raw))).length ?? 0;
    if (journalled === 0) this.unjournalledBroadcasts.push(raw);
    this.broadcasts.push(raw);
  };
  receipt = async (hash: Hex) => this.#answer(this.receipts.get(hash));

  /** Mines the broadcast transaction `hash` in the next block. */
  mine(hash: Hex, success = true): void {
    const raw = this.broadcasts.find((candidate) => keccak256(candidate) === hash);
    if (!raw) throw new Error(`${hash} was never broadcast`);
    this.head += 1n;
    this.mined = parseTransaction(raw).nonce! + 1;
    this.receipts.set(hash, { hash, blockNumber: this.head, success });
  }

  #answer<T>(value: T): T {
    if (this.failing) throw new Error("connection refused");
    return value;
  }
}

function purposeOf(store: Store, hash: Hex): string {
  const pending = store.settlements.pendingTxs().find((tx) => tx.hash === hash);
  return pending?.purpose ?? "(none)";
}

function setup(options: { confirmations?: number } = {}) {
  const store = openStore(":memory:");
  const chain = new FakeChain();
  chain.store = store;
  const clock = { now: 1_000_000 };
  const sender = newSender(store, chain, clock, options.confirmations ?? 1);
  return { store, chain, clock, sender };
}

function newSender(store: Store, chain: FakeChain, clock: { now: number }, confirmations = 1) {
  return new TxSender({ store, chain, log, confirmations, bumpAfterMs: BUMP_AFTER_MS, now: () => clock.now });
}

function attempt(overrides: Partial<JournalTx> = {}): JournalTx {
  return {
    hash: "0x01",
    purpose: "settle:7",
    epoch: 7,
    nonce: 3,
    raw: "0x02",
    maxFeePerGas: 1_000n,
    maxPriorityFeePerGas: 100n,
    state: "pending",
    blockNumber: null,
    sentAt: 0,
    updatedAt: 0,
    ...overrides,
  };
}

describe("tx sender decisions (pure)", () => {
  const fees = { maxFeePerGas: 1_000n, maxPriorityFeePerGas: 100n };
  const policy = { confirmations: 2, bumpAfterMs: BUMP_AFTER_MS };

  it("waits for the configured confirmations, then reports the attempt that mined", () => {
    const observe = (head: bigint) =>
      decideTx(
        [attempt()],
        { now: 1, head, minedNonce: 4, fees, mined: { hash: "0x01", blockNumber: 50n, success: true } },
        policy,
      );
    assert.deepEqual(observe(50n), { type: "wait" });
    assert.deepEqual(observe(51n), {
      type: "final",
      outcome: { purpose: "settle:7", hash: "0x01", state: "mined", blockNumber: 50n },
    });
  });

  it("bumps only once bumpAfterMs has passed since the newest attempt", () => {
    const observe = (now: number) =>
      decideTx(
        [attempt({ sentAt: 0 }), attempt({ hash: "0x03", sentAt: 10_000 })],
        { now, head: 1n, minedNonce: 3, fees, mined: undefined },
        policy,
      );
    assert.deepEqual(observe(10_000 + BUMP_AFTER_MS - 1), { type: "wait" });
    assert.deepEqual(observe(10_000 + BUMP_AFTER_MS), {
      type: "bump",
      fees: { maxFeePerGas: 1_125n, maxPriorityFeePerGas: 113n },
    });
  });

  it("calls a purpose dropped when its nonce was used by another transaction", () => {
    const decision = decideTx(
      [attempt()],
      { now: 0, head: 1n, minedNonce: 4, fees, mined: undefined },
      policy,
    );
    assert.equal(decision.type === "final" && decision.outcome.state, "dropped");
  });

  it("raises both fee fields by at least 12.5 %, and follows the chain's ask when it is higher", () => {
    assert.deepEqual(
      bumpedFees(
        { maxFeePerGas: 8n, maxPriorityFeePerGas: 1n },
        { maxFeePerGas: 0n, maxPriorityFeePerGas: 0n },
      ),
      {
        maxFeePerGas: 9n,
        maxPriorityFeePerGas: 2n,
      },
    );
    assert.deepEqual(bumpedFees(fees, { maxFeePerGas: 5_000n, maxPriorityFeePerGas: 200n }), {
      maxFeePerGas: 5_000n,
      maxPriorityFeePerGas: 200n,
    });
  });
});

describe("tx sender with a fake chain and clock", () => {
  it("journals every signed transaction before broadcasting it", async () => {
    const { store, chain, sender } = setup();
    const tx = await sender.submit("settle:1", 1, CALL);
    assert.equal(chain.broadcasts.length, 1);
    assert.deepEqual(chain.unjournalledBroadcasts, []);
    assert.equal(store.settlements.pendingTxs()[0]?.hash, tx.hash);
    assert.equal(tx.nonce, 0);
  });

  it("bumps a stuck transaction with the same nonce and finishes with the attempt that mined", async () => {
    const { store, chain, clock, sender } = setup();
    const first = await sender.submit("settle:1", 1, CALL);
    const outcome = sender.wait("settle:1");
    clock.now += BUMP_AFTER_MS - 1;
    await sender.poll();
    assert.equal(store.settlements.txsOf("settle:1").length, 1, "no bump before bumpAfterMs");
    clock.now += 1;
    await sender.poll();
    const [, second] = store.settlements.txsOf("settle:1");
    assert.ok(second);
    assert.equal(second.nonce, first.nonce);
    assert.ok(second.maxFeePerGas * 1000n >= first.maxFeePerGas * 1125n);
    assert.ok(second.maxPriorityFeePerGas * 1000n >= first.maxPriorityFeePerGas * 1125n);
    assert.deepEqual(chain.unjournalledBroadcasts, []);
    chain.mine(second.hash);
    await sender.poll();
    assert.deepEqual(await outcome, {
      purpose: "settle:1",
      hash: second.hash,
      state: "mined",
      blockNumber: chain.head,
    });
    assert.deepEqual(
      store.settlements.txsOf("settle:1").map((tx) => tx.state),
      ["replaced", "mined"],
    );
  });

  it("after a crash, a new sender on the same store rebroadcasts the same transaction and sends no second", async () => {
    const { store, chain, clock, sender } = setup();
    const sent = await sender.submit("settle:9", 9, CALL);
    // The process dies here: the transaction is journalled and broadcast, not mined.
    const restarted = newSender(store, chain, clock);
    assert.deepEqual(restarted.pendingPurposes(), ["settle:9"]);
    const again = await restarted.submit("settle:9", 9, CALL);
    assert.equal(again.hash, sent.hash, "the same purpose is not sent twice");
    await restarted.poll();
    assert.deepEqual(chain.broadcasts, [sent.raw, sent.raw], "rebroadcast once with the same nonce");
    chain.mine(sent.hash);
    await restarted.poll();
    assert.equal((await restarted.wait("settle:9")).state, "mined");
    const afterMined = await restarted.submit("settle:9", 9, CALL);
    assert.equal(afterMined.hash, sent.hash);
    assert.equal(chain.broadcasts.length, 2, "a mined purpose is never sent again");
  });

  it("gives the next purpose the next nonce while the first is still pending", async () => {
    const { sender } = setup();
    const first = await sender.submit("settle:1", 1, CALL);
    const second = await sender.submit("withdraw:1", 1, CALL);
    assert.deepEqual([first.nonce, second.nonce], [0, 1]);
  });

  it("waits for N confirmations", async () => {
    const { chain, sender } = setup({ confirmations: 3 });
    const tx = await sender.submit("settle:2", 2, CALL);
    let outcome: string | undefined;
    void sender.wait("settle:2").then((o) => (outcome = o.state));
    chain.mine(tx.hash);
    chain.head += 1n;
    await sender.poll();
    await new Promise(setImmediate);
    assert.equal(outcome, undefined, "2 of 3 confirmations");
    chain.head += 1n;
    await sender.poll();
    await new Promise(setImmediate);
    assert.equal(outcome, "mined");
  });

  it("retries RPC errors with backoff instead of failing", async () => {
    const { chain, clock, sender } = setup();
    const tx = await sender.submit("settle:3", 3, CALL);
    chain.failing = true;
    await sender.poll();
    chain.failing = false;
    chain.mine(tx.hash);
    await sender.poll();
    assert.deepEqual(sender.pendingPurposes(), ["settle:3"], "no pass before the backoff delay");
    clock.now += 60_000;
    await sender.poll();
    assert.deepEqual(sender.pendingPurposes(), []);
    assert.equal((await sender.wait("settle:3")).state, "mined");
  });

  it("stopping tells whoever waits that the purpose is still pending, and the journal keeps it", async () => {
    const { store, sender } = setup();
    await sender.submit("settle:5", 5, CALL);
    const waiting = sender.wait("settle:5");
    await sender.stop();
    await assert.rejects(waiting, /stopped while settle:5 was pending; it resumes on the next start/);
    await assert.rejects(sender.wait("settle:5"), /stopped/);
    assert.equal(store.settlements.pendingTxs()[0]?.purpose, "settle:5");
  });

  it("reports a reverted transaction as reverted", async () => {
    const { chain, sender } = setup();
    const tx = await sender.submit("settle:4", 4, CALL);
    chain.mine(tx.hash, false);
    await sender.poll();
    assert.equal((await sender.wait("settle:4")).state, "reverted");
  });
});
