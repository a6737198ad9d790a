// Randomized model check of net settlement: random channels, deposits, top-ups and batches with
// duplicates, stale and forged vouchers, and withdrawals by random payees; after every round the
// chain must match a plain model and the total of balances must be unchanged. The seed is printed so
// a failure can be replayed.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import { getAddress, parseEventLogs, zeroHash } from "viem";
import type { Address } from "viem";
import {
  atpTokenAbi,
  channelIdOf,
  encodeSettlementBatch,
  signVoucher,
} from "../../offchain/src/chain/index.ts";
import type { ChannelKey, SignedVoucher } from "../../offchain/src/chain/index.ts";
import { deployCell } from "../support/contracts/deploy.ts";
import { CHALLENGE_WINDOW, operatorAccount } from "../support/contracts/fixture.ts";

/** mulberry32: small deterministic PRNG. */
function random(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (max: number) => Math.floor(next() * max),
    pick: <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]!,
  };
}

describe("net settlement against a model (randomized)", async () => {
  const connection = await network.create();

  it("credits what the model credits, and withdrawals pay it once per payee, conserving balances", async () => {
    const seed = Number(process.env.CELL_PROPERTY_SEED ?? Date.now() % 2 ** 31);
    const rng = random(seed);
    const fx = await connection.networkHelpers.loadFixture(function cell() {
      return deployCell(connection);
    });
    const { channels, token, buyer, publicClient, chainId } = fx;
    const voucherKey = operatorAccount("property-voucher-key");
    const forger = operatorAccount("property-forger");
    const payees: Address[] = [fx.payee, fx.payee2, fx.reporter].map((w) => getAddress(w.account.address));
    const accounts: Address[] = [buyer.account.address, channels.address, ...payees];
    const total = async () =>
      (await Promise.all(accounts.map((a) => token.read.balanceOf([a])))).reduce((x, y) => x + y, 0n);

    const model = new Map<string, { key: ChannelKey; deposit: bigint; paid: bigint; withdrawn: bigint }>();
    for (let i = 0; i < 8; i++) {
      const key = {
        buyer: buyer.account.address,
        signer: voucherKey.address,
        payee: rng.pick(payees),
        nonce: BigInt(i),
      };
      const deposit = BigInt(1 + rng.int(1_000));
      await channels.write.open([key.signer, key.payee, key.nonce, deposit], { account: buyer.account });
      model.set(channelIdOf(key), { key, deposit, paid: 0n, withdrawn: 0n });
    }
    const before = await total();

    for (let round = 0; round < 6; round++) {
      const entries = [...model.values()];
      const topped = rng.pick(entries);
      const extra = BigInt(rng.int(300));
      if (extra > 0n) {
        await channels.write.topUp([topped.key, extra], { account: buyer.account });
        topped.deposit += extra;
      }
      const batch: SignedVoucher[] = [];
      const expected = new Map<Address, bigint>();
      for (let i = 0; i < 10; i++) {
        const channel = rng.pick(entries);
        const amount = BigInt(rng.int(Number(channel.deposit) + 200));
        const forged = rng.next() < 0.15;
        const signature = await signVoucher(forged ? forger : voucherKey, chainId, channels.address, {
          channelId: channelIdOf(channel.key),
          cumulativeAmount: amount,
        });
        batch.push({ key: channel.key, cumulativeAmount: amount, signature });
        const capped = amount < channel.deposit ? amount : channel.deposit;
        if (!forged && capped > channel.paid) {
          expected.set(channel.key.payee, (expected.get(channel.key.payee) ?? 0n) + capped - channel.paid);
          channel.paid = capped;
        }
      }
      const hash = await channels.write.settle([encodeSettlementBatch(batch), 0n, zeroHash, 0n]);
      const logs = (await publicClient.waitForTransactionReceipt({ hash })).logs;
      assert.equal(
        parseEventLogs({ abi: atpTokenAbi, logs, eventName: "Transfer" }).length,
        0,
        `seed ${seed}`,
      );
      const credits = parseEventLogs({ abi: channels.abi, logs, eventName: "PayeeSettled" });
      assert.deepEqual(
        new Map(credits.map((c) => [c.args.payee, c.args.amount])),
        expected,
        `seed ${seed}: one PayeeSettled per credited payee`,
      );

      // A random payee withdraws a random subset of its channels (possibly none credited).
      const payee = rng.pick(payees);
      const chosen = entries.filter((c) => c.key.payee === payee && rng.next() < 0.7);
      const owed = chosen.reduce((sum, c) => sum + c.paid - c.withdrawn, 0n);
      if (owed > 0n) {
        const withdrawal = await publicClient.waitForTransactionReceipt({
          hash: await channels.write.withdrawPaid([chosen.map((c) => c.key)]),
        });
        const moved = parseEventLogs({ abi: atpTokenAbi, logs: withdrawal.logs, eventName: "Transfer" });
        assert.deepEqual(
          moved.map((t) => [t.args.to, t.args.value]),
          [[payee, owed]],
          `seed ${seed}: one transfer of what the chosen channels owe`,
        );
        for (const c of chosen) c.withdrawn = c.paid;
      }
      for (const [channelId, channel] of model) {
        const id = channelId as `0x${string}`;
        assert.deepEqual(
          await channels.read.channels([id]),
          [channel.deposit, channel.paid, 0n],
          `seed ${seed}`,
        );
        assert.equal(await channels.read.withdrawn([id]), channel.withdrawn, `seed ${seed}`);
        assert.ok(channel.withdrawn <= channel.paid && channel.paid <= channel.deposit);
      }
      const deposits = [...model.values()].reduce((sum, c) => sum + c.deposit, 0n);
      const withdrawn = [...model.values()].reduce((sum, c) => sum + c.withdrawn, 0n);
      assert.equal(
        await token.read.balanceOf([channels.address]),
        deposits - withdrawn,
        `seed ${seed}: escrow`,
      );
      assert.equal(await total(), before, `seed ${seed}: total of balances`);
    }

    // The buyer closes every channel: its refunds are exactly deposit − paid (credited but
    // unwithdrawn money stays), and once every payee has withdrawn, nothing is left behind.
    const buyerBefore = await token.read.balanceOf([buyer.account.address]);
    for (const { key } of model.values())
      await channels.write.startClose([key.signer, key.payee, key.nonce], { account: buyer.account });
    await connection.networkHelpers.time.increase(Number(CHALLENGE_WINDOW));
    for (const { key } of model.values()) await channels.write.finalizeClose([key]);
    const refunds = [...model.values()].reduce((sum, c) => sum + c.deposit - c.paid, 0n);
    assert.equal(await token.read.balanceOf([buyer.account.address]), buyerBefore + refunds, `seed ${seed}`);
    for (const payee of payees) {
      const own = [...model.values()].filter((c) => c.key.payee === payee);
      const owed = own.reduce((sum, c) => sum + c.paid - c.withdrawn, 0n);
      if (owed === 0n) continue;
      const payeeBefore = await token.read.balanceOf([payee]);
      await channels.write.withdrawPaid([own.map((c) => c.key)]);
      assert.equal(await token.read.balanceOf([payee]), payeeBefore + owed, `seed ${seed}: payee ${payee}`);
    }
    assert.equal(await token.read.balanceOf([channels.address]), 0n, `seed ${seed}: nothing left behind`);
    assert.equal(await total(), before, `seed ${seed}: total of balances`);
  });
});
