// The buyer's half of payments on a fake clock over a real SQLite store: what each agreeing
// replica is paid, that a cumulative amount is committed before it is signed and sent, how
// vouchers to one payee coalesce and supersede each other, resends and refusals, top-ups,
// channel reuse, and the spend rate and time to empty.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { getAddress } from "viem";
import type { Address, Hex } from "viem";
import { channelIdOf } from "../../offchain/src/chain/index.ts";
import type { ChannelKey } from "../../offchain/src/chain/index.ts";
import {
  BuyerChannels,
  SpendWindow,
  VOUCHER_JOBS_MAX,
  VoucherSender,
  jobAmount,
  secondsToEmpty,
} from "../../offchain/src/payments/index.ts";
import type {
  BuyerChannelSettings,
  ChainChannel,
  ChannelChainPort,
  VoucherBatch,
  VoucherResult,
  VoucherResults,
} from "../../offchain/src/payments/index.ts";
import type { JobSpecMessage, ReceiptWire } from "../../offchain/src/protocol/index.ts";
import type { ReplicaReceipt, VerdictReport } from "../../offchain/src/quorum/index.ts";
import { DATABASE_FILE, openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";
import { freshDirs } from "../support/fresh-dirs.ts";

const freshDir = freshDirs("cell-pay-buyer-", "store");
const OPERATOR: Address = "0x00000000000000000000000000000000000000b0";
const WALLET: Address = "0x00000000000000000000000000000000000000c0";
const address = (n: number): Address => `0x${n.toString(16).padStart(40, "0")}`;
const jobId = (n: number): Hex => `0x${n.toString(16).padStart(64, "0")}`;
/** Executor n's operator is address(n), its payee address(100 + n), its peer `peer-n`. */
const payeeOf = (n: number): Address => address(100 + n);
const SETTINGS: BuyerChannelSettings = {
  operator: OPERATOR,
  deposit: 1_000_000n,
  topUpBelow: 0.2,
  topUpAmount: 0n,
  lowBalanceFraction: 0.25,
};

/** A clock whose time the test moves; timers fire when it passes them. */
class FakeClock {
  now = 1_000_000;
  #timers: { at: number; fire: () => void }[] = [];
  after = (delayMs: number, fire: () => void) => {
    const timer = { at: this.now + delayMs, fire };
    this.#timers.push(timer);
    return () => (this.#timers = this.#timers.filter((t) => t !== timer));
  };
  advance(ms: number): void {
    this.now += ms;
    const due = this.#timers.filter((t) => t.at <= this.now);
    this.#timers = this.#timers.filter((t) => t.at > this.now);
    for (const timer of due) timer.fire();
  }
  get pending(): number {
    return this.#timers.length;
  }
}

/** PaymentChannels as the channel manager sees it, in memory. */
class FakeChain implements ChannelChainPort {
  opened: ChainChannel[] = [];
  onChain: ChainChannel[] = [];
  topUps: { channelId: Hex; amount: bigint }[] = [];
  openCalls = 0;
  #nonce = 1n;
  #release: (() => void) | undefined;
  holdTopUps = false;

  async open(payee: Address, deposit: bigint): Promise<ChainChannel> {
    this.openCalls++;
    await new Promise((resolve) => setImmediate(resolve));
    const key: ChannelKey = { buyer: OPERATOR, signer: OPERATOR, payee, nonce: this.#nonce++ };
    const channel = { key, channelId: channelIdOf(key), deposit, paid: 0n };
    this.opened.push(channel);
    return channel;
  }

  async findOpen(payee: Address): Promise<ChainChannel[]> {
    return this.onChain.filter((channel) => channel.key.payee === payee);
  }

  async topUp(key: ChannelKey, amount: bigint): Promise<bigint> {
    if (this.holdTopUps) await new Promise<void>((resolve) => (this.#release = resolve));
    const channelId = channelIdOf(key);
    this.topUps.push({ channelId, amount });
    const channel = this.opened.find((c) => c.channelId === channelId)!;
    channel.deposit += amount;
    return channel.deposit;
  }

  releaseTopUps(): void {
    this.holdTopUps = false;
    this.#release?.();
  }
}

interface Sent {
  peerId: string;
  batch: VoucherBatch;
}

const silentLog = { debug: () => {}, info: () => {}, warn: () => {} };

interface Harness {
  store: Store;
  clock: FakeClock;
  chain: FakeChain;
  channels: BuyerChannels;
  sender: VoucherSender;
  sent: Sent[];
  signed: { channelId: Hex; cumulativeAmount: bigint }[];
  warnings: { fields: Record<string, unknown>; message: string }[];
  /** How the payee answers each voucher; accepted by default. */
  answer: (voucher: VoucherBatch["vouchers"][number]) => VoucherResult;
  /** Throw instead of answering. */
  failSends: number;
  /** Holds the next answers until released. */
  hold?: Promise<void>;
}

function harness(
  options: { store?: Store; settings?: Partial<BuyerChannelSettings>; chain?: FakeChain } = {},
): Harness {
  const store = options.store ?? openStore(":memory:");
  const clock = new FakeClock();
  const chain = options.chain ?? new FakeChain();
  const warnings: Harness["warnings"] = [];
  const log = {
    ...silentLog,
    warn: (fields: object, message: string) =>
      warnings.push({ fields: fields as Record<string, unknown>, message }),
  };
  const channels = new BuyerChannels(
    { chain, store, clock: { now: () => clock.now }, log },
    { ...SETTINGS, ...options.settings },
  );
  const h = {
    store,
    clock,
    chain,
    channels,
    sent: [] as Sent[],
    signed: [] as Harness["signed"],
    warnings,
    failSends: 0,
    answer: (voucher: VoucherBatch["vouchers"][number]): VoucherResult => ({
      status: "accepted",
      channelId: channelIdOf({ ...voucher.key, nonce: BigInt(voucher.key.nonce) }),
      cumulativeAmount: voucher.cumulativeAmount,
    }),
  } as Harness;
  h.sender = new VoucherSender({
    channels,
    payeeOf: async (operator) => {
      const n = Number(BigInt(operator));
      return n >= 1 && n < 100 ? payeeOf(n) : undefined;
    },
    sign: async (channelId, cumulativeAmount) => {
      h.signed.push({ channelId, cumulativeAmount });
      return `0x${"ab".repeat(65)}`;
    },
    send: async (peerId, batch): Promise<VoucherResults> => {
      h.sent.push({ peerId, batch });
      if (h.hold) await h.hold;
      if (h.failSends > 0) {
        h.failSends--;
        throw new Error("stream reset");
      }
      return { type: "voucher_results", results: batch.vouchers.map((voucher) => h.answer(voucher)) };
    },
    clock: { now: () => clock.now, after: clock.after },
    log,
  });
  return h;
}

const spec = { replicas: 3 } as JobSpecMessage;

function replica(n: number, job: Hex, fuelUsed: bigint, pricePerMegaFuel: bigint): ReplicaReceipt {
  const receipt = { jobId: job, executor: address(n), fuelUsed: fuelUsed.toString() } as ReceiptWire;
  return {
    peerId: `peer-${n}`,
    operator: address(n),
    receipt,
    signature: "0x",
    latencyMs: 1,
    pricePerMegaFuel,
  };
}

function accepted(job: Hex, agreeing: ReplicaReceipt[], dissenting: ReplicaReceipt[] = []): VerdictReport {
  return {
    jobId: job,
    spec,
    outcome: "accepted",
    quorum: 2,
    agreeing,
    dissenting,
    silent: [{ peerId: "peer-9", operator: address(9), why: "timeout" }],
    decidedAt: 0,
  };
}

/** Lets payments reach the store and their timers be set, then fires the coalescing timer and waits for the sends. */
async function settle(h: Harness, ms = 20): Promise<void> {
  await h.sender.idle();
  h.clock.advance(ms);
  await h.sender.idle();
}

const cumulativeOf = (h: Harness, payee: Address) => h.store.buyerChannels.openTo(payee)?.cumulative;

describe("buyer payments: amounts", () => {
  it("pays each agreeing replica ⌈price × fuel / 10^6⌉ at its own bid price, and nobody else", async () => {
    const h = harness();
    const job = jobId(1);
    h.sender.onVerdict(
      accepted(
        job,
        [replica(1, job, 1_500_001n, 1_000n), replica(2, job, 1_500_001n, 3n), replica(3, job, 7n, 0n)],
        [replica(4, job, 9_999n, 1_000n)],
      ),
    );
    await settle(h);
    assert.equal(jobAmount(1_000n, 1_500_001n), 1_501n, "1,500.001 rounds up");
    assert.equal(cumulativeOf(h, payeeOf(1)), 1_501n);
    assert.equal(cumulativeOf(h, payeeOf(2)), 5n, "3 × 1.500001 = 4.5 rounds up to 5");
    assert.equal(
      cumulativeOf(h, payeeOf(3)),
      undefined,
      "a price of 0 earns nothing: no channel, no voucher",
    );
    assert.equal(cumulativeOf(h, payeeOf(4)), undefined, "the dissenter is not paid");
    assert.deepEqual(h.sent.map((s) => s.peerId).sort(), ["peer-1", "peer-2"]);
    const voucher = h.sent.find((s) => s.peerId === "peer-1")!.batch.vouchers[0]!;
    assert.equal(voucher.cumulativeAmount, "1501");
    assert.deepEqual(voucher.jobs, [job]);
    assert.equal(voucher.key.payee, getAddress(payeeOf(1)));
    assert.equal(voucher.key.signer, getAddress(OPERATOR));
  });

  it("pays nothing on a no-quorum verdict, and a replayed verdict pays once", async () => {
    const h = harness();
    const job = jobId(2);
    h.sender.onVerdict({
      ...accepted(job, []),
      outcome: "no_quorum",
      dissenting: [replica(1, job, 10n, 10n)],
    });
    await settle(h);
    assert.equal(h.sent.length, 0);
    const report = accepted(job, [replica(1, job, 2_000_000n, 10n)]);
    h.sender.onVerdict(report);
    await settle(h);
    h.sender.onVerdict(report);
    await settle(h);
    assert.equal(cumulativeOf(h, payeeOf(1)), 20n);
    assert.equal(h.sent.length, 1, "nothing new to send for the replay");
  });
});

describe("buyer payments: durability", () => {
  it("a cumulative amount is committed, visible to another connection, before it is signed and sent", async () => {
    const dir = freshDir();
    const store = openStore(dir);
    const h = harness({ store });
    const reader = () => new DatabaseSync(join(dir, DATABASE_FILE), { readOnly: true });
    const seenAtSend: { cumulative: string; jobs: number }[] = [];
    const answer = h.answer;
    h.answer = (voucher) => {
      const db = reader();
      try {
        const row = db
          .prepare("SELECT cumulative FROM buyer_channels WHERE payee = ?")
          .get(voucher.key.payee) as {
          cumulative: string;
        };
        const { n } = db.prepare("SELECT count(*) AS n FROM buyer_voucher_jobs WHERE acked = 0").get() as {
          n: number;
        };
        seenAtSend.push({ cumulative: row.cumulative, jobs: n });
      } finally {
        db.close();
      }
      return answer(voucher);
    };
    for (let i = 1; i <= 3; i++) {
      h.sender.onVerdict(accepted(jobId(i), [replica(1, jobId(i), 1_000_000n, 100n)]));
      await settle(h);
    }
    assert.deepEqual(seenAtSend, [
      { cumulative: "100", jobs: 1 },
      { cumulative: "200", jobs: 1 },
      { cumulative: "300", jobs: 1 },
    ]);
    assert.deepEqual(
      h.signed.map((s) => s.cumulativeAmount),
      [100n, 200n, 300n],
    );
    store.close();
    const reopened = openStore(dir);
    const channel = reopened.buyerChannels.openTo(payeeOf(1))!;
    assert.equal(channel.cumulative, 300n);
    assert.equal(channel.acked, 300n);
    assert.deepEqual(reopened.buyerChannels.unacked(channel.channelId, 10), [], "every job is acknowledged");
    reopened.close();
  });

  it("a restarted sender resends the unacknowledged voucher to the payee's last peer", async () => {
    const dir = freshDir();
    const store = openStore(dir);
    const h = harness({ store });
    h.failSends = 100;
    h.sender.onVerdict(accepted(jobId(1), [replica(1, jobId(1), 1_000_000n, 40n)]));
    await settle(h);
    h.sender.stop();
    store.close();

    const reopened = openStore(dir);
    const again = harness({ store: reopened, chain: h.chain });
    again.sender.start();
    await settle(again, 0);
    assert.equal(again.sent.length, 1);
    assert.equal(again.sent[0]!.peerId, "peer-1");
    assert.equal(again.sent[0]!.batch.vouchers[0]!.cumulativeAmount, "40");
    assert.deepEqual(again.sent[0]!.batch.vouchers[0]!.jobs, [jobId(1)]);
    assert.equal(again.chain.openCalls, 1, "the stored channel is reused, not opened again");
    reopened.close();
  });
});

describe("buyer payments: coalescing and resends", () => {
  it("vouchers due to one payee within the window leave in one request; the newest supersedes, jobs merge", async () => {
    const h = harness();
    await h.channels.ensure(payeeOf(1));
    await h.channels.ensure(payeeOf(2));
    for (let i = 1; i <= 5; i++)
      h.sender.onVerdict(
        accepted(jobId(i), [replica(1, jobId(i), 1_000_000n, 10n), replica(2, jobId(i), 1_000_000n, 20n)]),
      );
    await h.sender.idle();
    assert.equal(h.sent.length, 0, "nothing leaves before the coalescing window ends");
    h.clock.advance(20);
    await h.sender.idle();
    assert.equal(h.sent.length, 2, "one request per payee");
    const toOne = h.sent.find((s) => s.peerId === "peer-1")!.batch;
    assert.equal(toOne.vouchers.length, 1, "one voucher per channel: the newest");
    assert.equal(toOne.vouchers[0]!.cumulativeAmount, "50");
    assert.deepEqual(toOne.vouchers[0]!.jobs, [1, 2, 3, 4, 5].map(jobId));
    assert.equal(h.sent.find((s) => s.peerId === "peer-2")!.batch.vouchers[0]!.cumulativeAmount, "100");
  });

  it("jobs paid while a request is under way go in the next voucher, which names only them", async () => {
    const h = harness();
    let release!: () => void;
    h.hold = new Promise((resolve) => (release = resolve));
    h.sender.onVerdict(accepted(jobId(1), [replica(1, jobId(1), 1_000_000n, 10n)]));
    await h.sender.idle();
    h.clock.advance(20);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(h.sent.length, 1);
    h.sender.onVerdict(accepted(jobId(2), [replica(1, jobId(2), 1_000_000n, 10n)]));
    h.sender.onVerdict(accepted(jobId(3), [replica(1, jobId(3), 1_000_000n, 10n)]));
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(h.sent.length, 1, "one request per peer at a time");
    h.hold = undefined;
    release();
    await settle(h, 0);
    assert.equal(h.sent.length, 2);
    const next = h.sent[1]!.batch.vouchers[0]!;
    assert.equal(next.cumulativeAmount, "30");
    assert.deepEqual(next.jobs, [jobId(2), jobId(3)]);
  });

  it("a failed request is resent with backoff, with the latest cumulative amount", async () => {
    const h = harness();
    h.failSends = 2;
    h.sender.onVerdict(accepted(jobId(1), [replica(1, jobId(1), 1_000_000n, 10n)]));
    await settle(h);
    h.sender.onVerdict(accepted(jobId(2), [replica(1, jobId(2), 1_000_000n, 10n)]));
    await h.sender.idle();
    h.clock.advance(999);
    await h.sender.idle();
    assert.equal(h.sent.length, 1, "no resend before the first backoff of 1 s");
    h.clock.advance(1);
    await h.sender.idle();
    assert.equal(h.sent.length, 2);
    assert.equal(h.sent[1]!.batch.vouchers[0]!.cumulativeAmount, "20");
    h.clock.advance(1_999);
    await h.sender.idle();
    assert.equal(h.sent.length, 2, "the second backoff is 2 s");
    h.clock.advance(1);
    await h.sender.idle();
    assert.equal(h.sent.length, 3);
    const channel = h.store.buyerChannels.openTo(payeeOf(1))!;
    assert.equal(channel.acked, 20n, "the third try was acknowledged");
    assert.equal(h.clock.pending, 0, "nothing more is scheduled");
  });

  it("a refusal is logged with its reason and retried; `duplicate` counts as acknowledged", async () => {
    const h = harness();
    const answer = h.answer;
    let refusals = 1;
    h.answer = (voucher) => {
      const channelId = channelIdOf({ ...voucher.key, nonce: BigInt(voucher.key.nonce) });
      if (refusals-- > 0) return { status: "refused", channelId, reason: "unavailable", detail: "disk busy" };
      return { status: "refused", channelId, reason: "duplicate", detail: "already held" };
    };
    h.sender.onVerdict(accepted(jobId(1), [replica(1, jobId(1), 1_000_000n, 10n)]));
    await settle(h);
    const refused = h.warnings.find((w) => w.message === "voucher refused");
    assert.equal(refused?.fields.reason, "unavailable");
    h.clock.advance(1_000);
    await h.sender.idle();
    assert.equal(h.sent.length, 2);
    assert.equal(h.store.buyerChannels.openTo(payeeOf(1))!.acked, 10n);
    assert.equal(h.clock.pending, 0);
    h.answer = answer;
  });

  it("a voucher never asks for more than the deposit, and names at most VOUCHER_JOBS_MAX jobs", async () => {
    const h = harness({ settings: { deposit: 1_000n } });
    h.failSends = 1;
    for (let i = 1; i <= 12; i++)
      h.sender.onVerdict(accepted(jobId(i), [replica(1, jobId(i), 1_000_000n, 100n)]));
    await settle(h);
    const first = h.sent[0]!.batch.vouchers[0]!;
    assert.equal(first.cumulativeAmount, "1000", "ten jobs fit the deposit of 1,000");
    assert.equal(first.jobs.length, 10);
    assert.equal(h.store.buyerChannels.openTo(payeeOf(1))!.cumulative, 1_200n, "the debt is still recorded");

    const toppedUp = harness({
      store: h.store,
      chain: h.chain,
      settings: { deposit: 1_000n, topUpAmount: 500n },
    });
    toppedUp.sender.onVerdict(accepted(jobId(13), [replica(1, jobId(13), 1_000_000n, 100n)]));
    await settle(toppedUp);
    await toppedUp.channels.idle();
    await settle(toppedUp, 0);
    await settle(toppedUp, 0);
    const afterTopUp = toppedUp.sent.at(-1)!.batch.vouchers[0]!;
    assert.equal(afterTopUp.cumulativeAmount, "1300", "the top-up let the jobs above the old deposit go");
    assert.deepEqual(afterTopUp.jobs, [11, 12, 13].map(jobId));

    const many = harness();
    for (let i = 1; i <= VOUCHER_JOBS_MAX + 3; i++)
      many.sender.onVerdict(accepted(jobId(i), [replica(1, jobId(i), 1_000_000n, 1n)]));
    await settle(many);
    await settle(many, 0);
    assert.equal(many.sent.length, 2);
    assert.equal(many.sent[0]!.batch.vouchers[0]!.jobs.length, VOUCHER_JOBS_MAX);
    assert.equal(many.sent[0]!.batch.vouchers[0]!.cumulativeAmount, String(VOUCHER_JOBS_MAX));
    assert.deepEqual(
      many.sent[1]!.batch.vouchers[0]!.jobs,
      [1, 2, 3].map((i) => jobId(VOUCHER_JOBS_MAX + i)),
    );
    assert.equal(many.store.buyerChannels.openTo(payeeOf(1))!.acked, BigInt(VOUCHER_JOBS_MAX + 3));
  });
});

describe("buyer payments: channels", () => {
  it("opens one channel per payee however many payments race for it, and reuses a wallet-opened one first", async () => {
    const chain = new FakeChain();
    const walletKey: ChannelKey = { buyer: WALLET, signer: OPERATOR, payee: payeeOf(2), nonce: 7n };
    const ownKey: ChannelKey = { buyer: OPERATOR, signer: OPERATOR, payee: payeeOf(2), nonce: 8n };
    chain.onChain = [
      { key: ownKey, channelId: channelIdOf(ownKey), deposit: 5_000n, paid: 0n },
      { key: walletKey, channelId: channelIdOf(walletKey), deposit: 900n, paid: 300n },
    ];
    const h = harness({ chain });
    const rows = await Promise.all([1, 1, 1, 2, 2].map((n) => h.channels.ensure(payeeOf(n))));
    assert.equal(chain.openCalls, 1, "payee 1 gets one new channel; payee 2 reuses one");
    assert.equal(new Set(rows.slice(0, 3).map((row) => row.channelId)).size, 1);
    assert.equal(rows[3]!.channelId, channelIdOf(walletKey), "the wallet-opened channel is preferred");
    assert.equal(rows[3]!.cumulative, 300n, "what it already paid is where its vouchers start");
  });

  it("a payee whose open failed is not retried before the retry delay", async () => {
    const chain = new FakeChain();
    let fail = true;
    const open = chain.open.bind(chain);
    chain.open = async (payee, deposit) => {
      if (fail) throw new Error("insufficient funds");
      return open(payee, deposit);
    };
    const h = harness({ chain });
    await assert.rejects(h.channels.ensure(payeeOf(1)), /insufficient funds/);
    fail = false;
    await assert.rejects(h.channels.ensure(payeeOf(1)), /failed recently/);
    h.clock.now += 30_000;
    assert.equal((await h.channels.ensure(payeeOf(1))).key.payee, payeeOf(1));
  });

  it("a job earned while no channel can be opened is owed durably, and paid once a channel opens", async () => {
    const dir = freshDir();
    const store = openStore(dir);
    const chain = new FakeChain();
    const open = chain.open.bind(chain);
    let fail = true;
    chain.open = async (payee, deposit) => {
      if (fail) throw new Error("insufficient funds for gas");
      return open(payee, deposit);
    };
    const h = harness({ store, chain });
    h.sender.onVerdict(accepted(jobId(1), [replica(1, jobId(1), 1_000_000n, 70n)]));
    await settle(h);
    h.sender.onVerdict(accepted(jobId(2), [replica(1, jobId(2), 1_000_000n, 30n)]));
    await settle(h);
    assert.equal(h.sent.length, 0);
    assert.deepEqual(store.buyerChannels.owedPayees(), [
      { payee: getAddress(payeeOf(1)), payeePeer: "peer-1" },
    ]);
    h.clock.advance(30_000);
    await h.sender.idle();
    assert.equal(h.sent.length, 0, "still no channel: the retry found none");
    assert.equal(h.chain.openCalls, 0, "no channel was opened");
    fail = false;
    h.clock.advance(30_000);
    await settle(h);
    assert.equal(h.sent.length, 1, "the next retry opened the channel and paid the owed jobs");
    assert.equal(h.sent[0]!.batch.vouchers[0]!.cumulativeAmount, "100");
    h.failSends = 100;
    h.sender.onVerdict(accepted(jobId(3), [replica(1, jobId(3), 1_000_000n, 1n)]));
    h.sender.onVerdict(accepted(jobId(4), [replica(1, jobId(4), 1_000_000n, 2n)]));
    await settle(h);
    fail = true;
    h.sender.stop();
    store.close();

    const reopened = openStore(dir);
    const again = harness({ store: reopened, chain });
    again.sender.start();
    await settle(again, 0);
    assert.equal(again.sent.length, 1);
    const voucher = again.sent[0]!.batch.vouchers[0]!;
    assert.equal(voucher.cumulativeAmount, "103", "the restart resends what was not acknowledged");
    assert.deepEqual(voucher.jobs, [jobId(3), jobId(4)]);
    assert.deepEqual(reopened.buyerChannels.owedPayees(), []);
    reopened.close();
  });

  it("a channel the payee reports closed is retired: its unacknowledged jobs are paid on a new channel", async () => {
    const h = harness();
    let closed = true;
    const answer = h.answer;
    h.answer = (voucher) => {
      const channelId = channelIdOf({ ...voucher.key, nonce: BigInt(voucher.key.nonce) });
      if (closed) {
        closed = false;
        return { status: "refused", channelId, reason: "channel_closed", detail: "closing on-chain" };
      }
      return answer(voucher);
    };
    h.sender.onVerdict(accepted(jobId(1), [replica(1, jobId(1), 1_000_000n, 10n)]));
    h.sender.onVerdict(accepted(jobId(2), [replica(1, jobId(2), 1_000_000n, 5n)]));
    await settle(h);
    await settle(h, 0);
    await settle(h);
    assert.equal(h.chain.openCalls, 2, "a second channel was opened");
    const [first, second] = h.chain.opened;
    assert.equal(h.store.buyerChannels.get(first!.channelId)!.state, "closed");
    assert.equal(h.sent.length, 2);
    const retry = h.sent[1]!.batch.vouchers[0]!;
    assert.equal(channelIdOf({ ...retry.key, nonce: BigInt(retry.key.nonce) }), second!.channelId);
    assert.equal(retry.cumulativeAmount, "15");
    assert.deepEqual(retry.jobs, [jobId(1), jobId(2)]);
    assert.equal(h.store.buyerChannels.get(second!.channelId)!.acked, 15n);
  });

  it("tops up once when the unspent deposit falls below the policy's fraction, and warns when low", async () => {
    const chain = new FakeChain();
    chain.holdTopUps = true;
    const h = harness({ chain, settings: { deposit: 1_000n, topUpBelow: 0.2, topUpAmount: 500n } });
    const pay = (i: number, amount: bigint) => h.channels.pay(payeeOf(1), jobId(i), amount, "peer-1");
    await pay(1, 700n);
    assert.equal(chain.topUps.length, 0);
    assert.equal(h.warnings.length, 0, "300 of 1,000 left is not low (25%)");
    await pay(2, 100n);
    assert.equal(h.warnings.filter((w) => w.message === "payment channel is running low").length, 1);
    await pay(3, 50n);
    await pay(4, 50n);
    chain.releaseTopUps();
    await h.channels.idle();
    assert.deepEqual(
      chain.topUps.map((t) => t.amount),
      [500n],
      "one top-up however many payments found the channel low",
    );
    const view = h.channels.views()[0]!;
    assert.equal(view.deposit, 1_500n);
    assert.equal(view.spent, 900n);
    assert.equal(view.remaining, 600n);
    assert.equal(view.low, false);
    assert.equal(h.warnings.filter((w) => w.message === "payment channel is running low").length, 1);
  });

  it("shows spend per hour and time to empty from a moving window", async () => {
    const h = harness({ settings: { deposit: 10_000n } });
    for (let minute = 0; minute < 10; minute++) {
      await h.channels.pay(payeeOf(1), jobId(minute + 1), 60n, "peer-1");
      h.clock.now += 60_000;
    }
    const view = h.channels.views()[0]!;
    assert.equal(view.spent, 600n);
    assert.equal(view.spendPerHour, 3_600n, "60 a minute");
    assert.equal(view.secondsToEmpty, 9_400, "9,400 left at 1 a second");
    h.clock.now += 3_600_000;
    const idle = h.channels.views()[0]!;
    assert.equal(idle.spendPerHour, 0n, "spend older than the window no longer counts");
    assert.equal(idle.secondsToEmpty, null);
  });

  it("SpendWindow and secondsToEmpty in isolation", () => {
    const window = new SpendWindow(60_000);
    window.add(0, 100n);
    assert.equal(window.perHour(500), 360_000n, "a young window is measured over one bucket at least");
    window.add(30_000, 100n);
    assert.equal(window.perHour(59_999), 12_000n, "200 over a minute");
    assert.equal(window.perHour(89_999), 6_000n, "the first bucket aged out");
    assert.equal(secondsToEmpty(3_600n, 3_600n), 3_600);
    assert.equal(secondsToEmpty(10n, 0n), null);
  });
});
