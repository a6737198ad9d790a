// The relay's decisions on a fake chain: what a relayer keeps of the vouchers payees hand it,
// the vault its settler reads, and what a payee does with the relayer's answers.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { pino } from "pino";
import type { Address, Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { channelIdOf, signVoucher } from "../../offchain/src/chain/index.ts";
import type { ChannelKey } from "../../offchain/src/chain/index.ts";
import type { HeldVoucher, VoucherVault } from "../../offchain/src/payments/index.ts";
import {
  RelayClient,
  RelayDesk,
  RelayRequestSchema,
  RelayVault,
  checkHanded,
  handOver,
} from "../../offchain/src/settlement/index.ts";
import type { RelayChannelView, RelayResults } from "../../offchain/src/settlement/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";

const log = pino({ level: "silent" });
const CHAIN_ID = 31_337;
const CHANNELS: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const buyer = privateKeyToAccount(generatePrivateKey());
const forger = privateKeyToAccount(generatePrivateKey());
const OPEN: RelayChannelView = { deposit: 1_000n, paid: 0n, closesAt: 0n };

function keyOf(
  nonce: bigint,
  payee: Address = privateKeyToAccount(generatePrivateKey()).address,
): ChannelKey {
  return { buyer: buyer.address, signer: buyer.address, payee, nonce };
}

async function held(key: ChannelKey, amount: bigint, by = buyer): Promise<HeldVoucher> {
  const channelId = channelIdOf(key);
  const signature = await signVoucher(by, CHAIN_ID, CHANNELS, { channelId, cumulativeAmount: amount });
  return { key, channelId, cumulativeAmount: amount, signature, receivedAt: 0 };
}

/** A chain of channels by id; counts its reads. */
class FakeChain {
  readonly views = new Map<string, RelayChannelView>();
  reads = 0;
  set(key: ChannelKey, view: RelayChannelView): void {
    this.views.set(channelIdOf(key).toLowerCase(), view);
  }
  async channel(channelId: Hex): Promise<RelayChannelView> {
    this.reads++;
    return this.views.get(channelId.toLowerCase()) ?? { deposit: 0n, paid: 0n, closesAt: 0n };
  }
}

describe("checkHanded", () => {
  const valid = { signatureValid: true, channel: OPEN };
  it("accepts a signed voucher above what is held and paid, within an open channel", () => {
    assert.deepEqual(checkHanded(undefined, 10n, valid), { type: "accept" });
    assert.deepEqual(checkHanded(5n, 10n, valid), { type: "accept" });
  });
  it("refuses with the reason that applies first", () => {
    const reason = (
      heldAmount: bigint | undefined,
      amount: bigint,
      facts: Parameters<typeof checkHanded>[2],
    ) => {
      const decision = checkHanded(heldAmount, amount, facts);
      return decision.type === "refuse" ? decision.reason : "accept";
    };
    assert.equal(reason(undefined, 10n, { ...valid, signatureValid: false }), "bad_signature");
    assert.equal(reason(undefined, 10n, { signatureValid: true, channel: undefined }), "unknown_channel");
    assert.equal(
      reason(undefined, 10n, { signatureValid: true, channel: { ...OPEN, deposit: 0n } }),
      "unknown_channel",
    );
    assert.equal(
      reason(undefined, 10n, { signatureValid: true, channel: { ...OPEN, closesAt: 99n } }),
      "channel_closed",
    );
    assert.equal(reason(10n, 10n, valid), "not_increasing");
    assert.equal(reason(12n, 10n, valid), "not_increasing");
    assert.equal(
      reason(undefined, 10n, { signatureValid: true, channel: { ...OPEN, paid: 10n } }),
      "not_increasing",
    );
  });
});

describe("RelayDesk", () => {
  let store: Store;
  let chain: FakeChain;
  let desk: RelayDesk;
  beforeEach(() => {
    store = openStore(":memory:");
    chain = new FakeChain();
    desk = new RelayDesk({ store, chain, chainId: CHAIN_ID, paymentChannels: CHANNELS, log });
  });
  afterEach(() => store.close());

  it("keeps a good voucher durably and refuses forged, replayed, lower, unknown and closing ones", async () => {
    const [good, closing, unknown] = [keyOf(1n), keyOf(2n), keyOf(3n)];
    chain.set(good, OPEN);
    chain.set(closing, { ...OPEN, closesAt: 1_700_000_000n });
    const first = await desk.receive(RelayRequestSchema.parse(handOver([await held(good, 100n)])));
    assert.equal(first.results[0]!.status, "accepted");
    assert.equal(store.relayVouchers.voucher(channelIdOf(good))?.cumulativeAmount, 100n);

    const answer = await desk.receive(
      RelayRequestSchema.parse(
        handOver([
          await held(good, 200n, forger),
          await held(good, 100n),
          await held(good, 50n),
          await held(unknown, 10n),
          await held(closing, 10n),
          await held(good, 150n),
        ]),
      ),
    );
    const outcomes = answer.results.map((result) =>
      result.status === "refused" ? result.reason : "accepted",
    );
    assert.deepEqual(outcomes, [
      "bad_signature",
      "not_increasing",
      "not_increasing",
      "unknown_channel",
      "channel_closed",
      "accepted",
    ]);
    assert.equal(store.relayVouchers.voucher(channelIdOf(good))?.cumulativeAmount, 150n);
    assert.equal(store.relayVouchers.voucher(channelIdOf(unknown)), undefined);
  });

  it("reads a channel from the chain once while its view is cached, and never for a forged voucher", async () => {
    const key = keyOf(1n);
    chain.set(key, OPEN);
    await desk.receive(handOver([await held(key, 10n, forger)]));
    assert.equal(chain.reads, 0);
    await desk.receive(handOver([await held(key, 10n)]));
    await desk.receive(handOver([await held(key, 20n)]));
    assert.equal(chain.reads, 1);
  });

  it("answers full when more lookups wait than it allows", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = {
      channel: async () => {
        await gate;
        return OPEN;
      },
    };
    const tight = new RelayDesk({
      store,
      chain: slow,
      chainId: CHAIN_ID,
      paymentChannels: CHANNELS,
      lookupsAtOnce: 1,
      lookupsWaiting: 0,
      log,
    });
    const answering = tight.receive(handOver([await held(keyOf(1n), 10n), await held(keyOf(2n), 10n)]));
    setImmediate(release);
    const { results } = await answering;
    assert.deepEqual(
      results.map((result) => (result.status === "refused" ? result.reason : "accepted")),
      ["accepted", "full"],
    );
  });
});

describe("RelayVault", () => {
  it("puts the node's own vouchers first, guards only its own channels and records payments in both", async () => {
    const store = openStore(":memory:");
    try {
      const ownVoucher = await held(keyOf(1n), 30n);
      const paidOwn = new Map<string, bigint>();
      const own: VoucherVault = {
        unsettled: (limit) =>
          [ownVoucher].filter((v) => (paidOwn.get(v.channelId) ?? 0n) < v.cumulativeAmount).slice(0, limit),
        latest: (channelId) => (channelId === ownVoucher.channelId ? ownVoucher : undefined),
        channels: () => [ownVoucher.key],
        recordPaid: (channelId, paid) => paidOwn.set(channelId, paid),
        paidOnChain: (channelId) => paidOwn.get(channelId) ?? 0n,
      };
      const handed = [await held(keyOf(2n), 10n), await held(keyOf(3n), 20n)];
      handed.forEach((voucher, index) => store.relayVouchers.put({ ...voucher, receivedAt: index }));
      const vault = new RelayVault(store.relayVouchers, own);

      assert.deepEqual(
        vault.unsettled(10).map((v) => v.cumulativeAmount),
        [30n, 10n, 20n],
      );
      assert.deepEqual(
        vault.unsettled(2).map((v) => v.cumulativeAmount),
        [30n, 10n],
      );
      assert.deepEqual(vault.channels(), [ownVoucher.key]);
      vault.recordPaid(handed[0]!.channelId, 10n);
      vault.recordPaid(ownVoucher.channelId, 30n);
      assert.equal(vault.paidOnChain(handed[0]!.channelId), 10n);
      assert.deepEqual(
        vault.unsettled(10).map((v) => v.cumulativeAmount),
        [20n],
      );
      assert.equal(vault.latest(handed[1]!.channelId)?.cumulativeAmount, 20n);
      assert.deepEqual(new RelayVault(store.relayVouchers).channels(), []);
    } finally {
      store.close();
    }
  });

  it("evicts settled handed vouchers first, then the oldest", async () => {
    const store = openStore(":memory:");
    try {
      const vouchers = [await held(keyOf(1n), 10n), await held(keyOf(2n), 10n), await held(keyOf(3n), 10n)];
      vouchers.forEach((voucher, index) => store.relayVouchers.put({ ...voucher, receivedAt: index }));
      store.relayVouchers.setPaidOnChain(vouchers[2]!.channelId, 10n);
      store.relayVouchers.trim(2);
      assert.equal(store.relayVouchers.voucher(vouchers[2]!.channelId), undefined);
      store.relayVouchers.trim(1);
      assert.equal(store.relayVouchers.voucher(vouchers[0]!.channelId), undefined);
      assert.equal(store.relayVouchers.voucher(vouchers[1]!.channelId)?.cumulativeAmount, 10n);
    } finally {
      store.close();
    }
  });
});

describe("RelayClient", () => {
  async function payeeVault(vouchers: HeldVoucher[]) {
    const paid = new Map<string, bigint>();
    const vault: VoucherVault = {
      unsettled: (limit) =>
        vouchers.filter((v) => (paid.get(v.channelId) ?? 0n) < v.cumulativeAmount).slice(0, limit),
      latest: () => undefined,
      channels: () => vouchers.map((v) => v.key),
      recordPaid: (channelId, amount) => paid.set(channelId, amount),
      paidOnChain: (channelId) => paid.get(channelId) ?? 0n,
    };
    return { vault, paid };
  }

  it("hands unsettled vouchers over and records the relayer's answers", async () => {
    const payee = privateKeyToAccount(generatePrivateKey()).address;
    const vouchers = [await held(keyOf(1n, payee), 10n), await held(keyOf(2n, payee), 20n)];
    const { vault } = await payeeVault(vouchers);
    const handed: number[] = [];
    const client = new RelayClient({
      vault,
      paymentChannels: CHANNELS,
      maxVouchers: 100,
      log,
      ports: {
        hand: async (request): Promise<RelayResults> => {
          handed.push(request.vouchers.length);
          return {
            type: "relay_results",
            results: [
              { status: "accepted", channelId: vouchers[0]!.channelId },
              {
                status: "refused",
                channelId: vouchers[1]!.channelId,
                reason: "channel_closed",
                detail: "closing",
              },
            ],
          };
        },
        channel: async () => OPEN,
        withdrawable: async () => 0n,
        withdraw: async () => assert.fail("nothing was paid, nothing to withdraw"),
      },
    });
    const outcome = await client.run();
    assert.deepEqual(handed, [2]);
    assert.equal(outcome.accepted, 1);
    assert.deepEqual(
      outcome.refused.map((r) => r.reason),
      ["channel_closed"],
    );
    assert.equal(client.answer(vouchers[1]!.channelId)?.status, "refused");
  });

  it("records what the relayer's batch paid, withdraws it once and hands nothing settled again", async () => {
    const payee = privateKeyToAccount(generatePrivateKey()).address;
    const vouchers = [await held(keyOf(1n, payee), 10n), await held(keyOf(2n, payee), 20n)];
    const { vault, paid } = await payeeVault(vouchers);
    const onChain = new Map<string, bigint>([[vouchers[0]!.channelId, 10n]]);
    const withdrawals: string[] = [];
    const handed: string[][] = [];
    const client = new RelayClient({
      vault,
      paymentChannels: CHANNELS,
      maxVouchers: 100,
      log,
      ports: {
        hand: async (request) => {
          handed.push(request.vouchers.map((v) => v.cumulativeAmount));
          return { type: "relay_results", results: [] };
        },
        channel: async (channelId) => ({ ...OPEN, paid: onChain.get(channelId) ?? 0n }),
        withdrawable: async (channelId) => onChain.get(channelId) ?? 0n,
        withdraw: async (purpose) => {
          withdrawals.push(purpose);
          return `0x${"ab".repeat(32)}`;
        },
      },
    });
    const outcome = await client.run();
    assert.equal(outcome.paid, 1);
    assert.equal(paid.get(vouchers[0]!.channelId), 10n);
    assert.deepEqual(
      outcome.withdrawals.map((w) => w.amount),
      [10n],
    );
    assert.deepEqual(handed, [["20"]]);
    const again = await client.run();
    assert.equal(again.paid, 0);
    assert.equal(withdrawals.length, 1);
  });

  it("retries a withdrawal that was not mined at the next run", async () => {
    const vouchers = [await held(keyOf(1n), 10n)];
    const { vault } = await payeeVault(vouchers);
    let mined = false;
    let withdrawCalls = 0;
    const client = new RelayClient({
      vault,
      paymentChannels: CHANNELS,
      maxVouchers: 100,
      log,
      ports: {
        hand: async () => ({ type: "relay_results", results: [] }),
        channel: async () => ({ ...OPEN, paid: 10n }),
        withdrawable: async () => (mined ? 0n : 10n),
        withdraw: async () => {
          if (withdrawCalls++ === 0) return undefined;
          mined = true;
          return `0x${"cd".repeat(32)}`;
        },
      },
    });
    assert.deepEqual((await client.run()).withdrawals, []);
    assert.deepEqual(
      (await client.run()).withdrawals.map((w) => w.amount),
      [10n],
    );
    assert.deepEqual((await client.run()).withdrawals, []);
    assert.equal(withdrawCalls, 2);
  });

  it("says the relayer is unreachable and keeps the vouchers for the next run", async () => {
    const vouchers = [await held(keyOf(1n), 10n)];
    const { vault } = await payeeVault(vouchers);
    const client = new RelayClient({
      vault,
      paymentChannels: CHANNELS,
      maxVouchers: 100,
      log,
      ports: {
        hand: async () => {
          throw new Error("no connection to the relayer");
        },
        channel: async () => OPEN,
        withdrawable: async () => 0n,
        withdraw: async () => undefined,
      },
    });
    const outcome = await client.run();
    assert.match(outcome.unreachable ?? "", /no connection/);
    assert.equal(outcome.handed, 0);
    assert.equal(vault.unsettled(10).length, 1);
  });
});
