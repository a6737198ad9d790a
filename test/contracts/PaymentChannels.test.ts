import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import {
  concat,
  decodeFunctionData,
  getAddress,
  keccak256,
  maxUint256,
  parseEther,
  parseEventLogs,
  recoverAddress,
  slice,
  toHex,
  zeroAddress,
  zeroHash,
} from "viem";
import type { Address, Hex } from "viem";
import {
  MAX_BATCH_AMOUNT,
  buildReceiptTree,
  channelIdOf,
  compactSignatureHex,
  decodeSettlementBatch,
  encodeSettlementBatch,
  paidVoucherFlags,
  signChannelClose,
  signVoucher,
  toCompactSignature,
} from "../../offchain/src/chain/index.ts";
import type { ChannelKey, SignedVoucher } from "../../offchain/src/chain/index.ts";
import { atpTokenAbi } from "../../offchain/src/chain/index.ts";
import { FUNDS, deployCell } from "../support/contracts/deploy.ts";
import { CHALLENGE_WINDOW, operatorAccount, receiptFor, signPermit } from "../support/contracts/fixture.ts";

const DEPOSIT = parseEther("100");
const CLOSED = 2n ** 64n - 1n;

describe("PaymentChannels", async () => {
  const connection = await network.create();
  const { networkHelpers } = connection;
  const voucherKey = operatorAccount("buyer-voucher-key");
  const payeeKey = operatorAccount("payee-close-key");

  async function cell() {
    const fx = await deployCell(connection);
    const balance = (owner: Address) => fx.token.read.balanceOf([owner]);
    return { ...fx, balance };
  }

  /** One open channel buyer → payee (payee is a local key so it can sign closes). */
  async function openChannel() {
    const fx = await cell();
    const key: ChannelKey = {
      buyer: fx.buyer.account.address,
      signer: voucherKey.address,
      payee: payeeKey.address,
      nonce: 1n,
    };
    await fx.channels.write.open([key.signer, key.payee, key.nonce, DEPOSIT], { account: fx.buyer.account });
    const voucher = (
      cumulativeAmount: bigint,
      channelId: Hex = channelIdOf(key),
      chainId = fx.chainId,
      contract: Address = fx.channels.address,
    ) => signVoucher(voucherKey, chainId, contract, { channelId, cumulativeAmount });
    return { ...fx, key, channelId: channelIdOf(key), voucher };
  }

  /** A close deadline `ttl` seconds after the latest block. */
  async function closeDeadline(ttl = 3_600n): Promise<bigint> {
    return BigInt(await networkHelpers.time.latest()) + ttl;
  }

  describe("deployment", () => {
    it("refuses a challenge window outside its bounds and a token that is not a contract", async () => {
      const { viem, token, typed } = await networkHelpers.loadFixture(cell);
      const [min, max] = [60n, 30n * 86_400n];
      const probe = typed.channels(
        (await viem.deployContract("PaymentChannels", [token.address, min])).address,
      );
      assert.deepEqual(
        [await probe.read.MIN_CHALLENGE_WINDOW(), await probe.read.MAX_CHALLENGE_WINDOW()],
        [min, max],
      );
      for (const window of [0n, min - 1n, max + 1n]) {
        await viem.assertions.revertWithCustomErrorWithArgs(
          viem.deployContract("PaymentChannels", [token.address, window]),
          probe,
          "ChallengeWindowOutOfBounds",
          [window, min, max],
        );
      }
      await viem.deployContract("PaymentChannels", [token.address, max]);
      await viem.assertions.revertWithCustomError(
        viem.deployContract("PaymentChannels", [zeroAddress, CHALLENGE_WINDOW]),
        probe,
        "ZeroAddress",
      );
      const notAContract = voucherKey.address;
      await viem.assertions.revertWithCustomErrorWithArgs(
        viem.deployContract("PaymentChannels", [notAContract, CHALLENGE_WINDOW]),
        probe,
        "TokenHasNoCode",
        [notAContract],
      );
    });
  });

  describe("opening and topping up", () => {
    it("opens a channel whose id matches the off-chain derivation, taking the deposit", async () => {
      const { viem, channels, buyer, payee, balance } = await networkHelpers.loadFixture(cell);
      const key = {
        buyer: buyer.account.address,
        signer: voucherKey.address,
        payee: payee.account.address,
        nonce: 9n,
      };
      const before = await balance(buyer.account.address);
      await viem.assertions.emitWithArgs(
        channels.write.open([key.signer, key.payee, key.nonce, DEPOSIT], { account: buyer.account }),
        channels,
        "ChannelOpened",
        [channelIdOf(key), buyer.account.address, payee.account.address, voucherKey.address, 9n, DEPOSIT],
      );
      assert.deepEqual(await channels.read.channels([channelIdOf(key)]), [DEPOSIT, 0n, 0n]);
      assert.equal(await channels.read.channelIdOf([key]), channelIdOf(key));
      assert.equal(await balance(buyer.account.address), before - DEPOSIT);
      assert.equal(await balance(channels.address), DEPOSIT);
    });

    it("rejects a zero deposit, zero addresses and a reused key", async () => {
      const { viem, channels, buyer, key } = await networkHelpers.loadFixture(openChannel);
      const open = (signer: Address, payee: Address, nonce: bigint, amount: bigint) =>
        channels.write.open([signer, payee, nonce, amount], { account: buyer.account });
      await viem.assertions.revertWithCustomError(
        open(key.signer, key.payee, 2n, 0n),
        channels,
        "ZeroAmount",
      );
      await viem.assertions.revertWithCustomError(
        open(zeroAddress, key.payee, 2n, 1n),
        channels,
        "ZeroAddress",
      );
      await viem.assertions.revertWithCustomError(
        open(key.signer, zeroAddress, 2n, 1n),
        channels,
        "ZeroAddress",
      );
      await viem.assertions.revertWithCustomError(
        open(key.signer, key.payee, key.nonce, 1n),
        channels,
        "ChannelExists",
      );
    });

    it("opens with an EIP-2612 permit and no prior approval", async () => {
      const { channels, token, buyer, payee, chainId, publicClient, balance } =
        await networkHelpers.loadFixture(cell);
      await token.write.approve([channels.address, 0n], { account: buyer.account });
      const deadline = BigInt((await publicClient.getBlock()).timestamp) + 600n;
      const nonce = await token.read.nonces([buyer.account.address]);
      const { v, r, s } = await signPermit(buyer, {
        chainId,
        token: token.address,
        spender: channels.address,
        value: DEPOSIT,
        nonce,
        deadline,
      });
      await channels.write.openWithPermit(
        [voucherKey.address, payee.account.address, 1n, DEPOSIT, deadline, v, r, s],
        {
          account: buyer.account,
        },
      );
      assert.equal(await balance(channels.address), DEPOSIT);
    });

    it("fails a permit open whose permit is invalid and whose allowance is short", async () => {
      const { viem, channels, token, buyer, payee, chainId } = await networkHelpers.loadFixture(cell);
      await token.write.approve([channels.address, 0n], { account: buyer.account });
      const wrong = await signPermit(buyer, {
        chainId,
        token: token.address,
        spender: channels.address,
        value: 1n,
        nonce: 0n,
        deadline: 2n ** 40n,
      });
      await viem.assertions.revertWithCustomError(
        channels.write.openWithPermit(
          [voucherKey.address, payee.account.address, 1n, DEPOSIT, 2n ** 40n, wrong.v, wrong.r, wrong.s],
          {
            account: buyer.account,
          },
        ),
        token,
        "ERC20InsufficientAllowance",
      );
    });

    it("tops up an open channel from anyone, and refuses unknown, closing and closed channels", async () => {
      const { viem, channels, channelId, key, buyer, payee, balance } =
        await networkHelpers.loadFixture(openChannel);
      await viem.assertions.emitWithArgs(
        channels.write.topUp([key, 5n], { account: payee.account }),
        channels,
        "ChannelToppedUp",
        [channelId, payee.account.address, 5n, DEPOSIT + 5n],
      );
      assert.equal(await balance(channels.address), DEPOSIT + 5n);
      await viem.assertions.revertWithCustomError(channels.write.topUp([key, 0n]), channels, "ZeroAmount");
      await viem.assertions.revertWithCustomError(
        channels.write.topUp([{ ...key, nonce: 999n }, 1n]),
        channels,
        "ChannelNotOpen",
      );
      await channels.write.startClose([key.signer, key.payee, key.nonce], { account: buyer.account });
      await viem.assertions.revertWithCustomError(
        channels.write.topUp([key, 1n], { account: buyer.account }),
        channels,
        "ChannelClosing",
      );
      await networkHelpers.time.increase(Number(CHALLENGE_WINDOW));
      await channels.write.finalizeClose([key]);
      await viem.assertions.revertWithCustomError(
        channels.write.topUp([key, 1n], { account: buyer.account }),
        channels,
        "ChannelNotOpen",
      );
    });
  });

  describe("storage", () => {
    it("keeps a channel in the slot numbered by its id: deposit, paid and closesAt packed", async () => {
      const { channels, channelId, key, voucher, buyer, publicClient } =
        await networkHelpers.loadFixture(openChannel);
      await channels.write.redeem([key, 45n, await voucher(45n)]);
      await channels.write.startClose([key.signer, key.payee, key.nonce], { account: buyer.account });
      const [deposit, paid, closesAt] = await channels.read.channels([channelId]);
      assert.deepEqual([deposit, paid], [DEPOSIT, 45n]);
      assert.ok(closesAt > 0n);
      const packed = deposit | (paid << 96n) | (closesAt << 192n);
      assert.equal(
        await publicClient.getStorageAt({ address: channels.address, slot: channelId }),
        toHex(packed, { size: 32 }),
      );
      const unknown = channelIdOf({ ...key, nonce: 999n });
      assert.deepEqual(await channels.read.channels([unknown]), [0n, 0n, 0n]);
    });
  });

  describe("redeeming vouchers", () => {
    it("pays the payee each voucher's increase without closing; anyone may submit", async () => {
      const { viem, channels, channelId, key, voucher, balance, reporter } =
        await networkHelpers.loadFixture(openChannel);
      await viem.assertions.emitWithArgs(
        channels.write.redeem([key, 30n, await voucher(30n)], { account: reporter.account }),
        channels,
        "ChannelPaid",
        [channelId, 30n, 30n],
      );
      await channels.write.redeem([key, 45n, await voucher(45n)]);
      assert.equal(await balance(key.payee), 45n);
      assert.deepEqual(await channels.read.channels([channelId]), [DEPOSIT, 45n, 0n]);
      assert.equal(await channels.read.remaining([channelId]), DEPOSIT - 45n);
      await viem.assertions.revertWithCustomError(
        channels.write.redeem([key, 45n, await voucher(45n)]),
        channels,
        "NothingToPay",
      );
      await viem.assertions.revertWithCustomError(
        channels.write.redeem([key, 40n, await voucher(40n)]),
        channels,
        "NothingToPay",
      );
    });

    it("accepts a 64-byte EIP-2098 signature", async () => {
      const { channels, key, voucher, balance } = await networkHelpers.loadFixture(openChannel);
      await channels.write.redeem([key, 7n, compactSignatureHex(await voucher(7n))]);
      assert.equal(await balance(key.payee), 7n);
    });

    it("never pays more than the deposit, however large the voucher", async () => {
      const fx = await networkHelpers.loadFixture(openChannel);
      const { channels, key, voucher, balance, viem } = fx;
      await channels.write.redeem([key, maxUint256, await voucher(maxUint256)]);
      assert.equal(await balance(key.payee), DEPOSIT);
      assert.equal(await balance(channels.address), 0n);
      await channels.write.topUp([key, 10n], { account: fx.buyer.account });
      await channels.write.redeem([key, maxUint256, await voucher(maxUint256)]);
      assert.equal(await balance(key.payee), DEPOSIT + 10n);
      await viem.assertions.revertWithCustomError(
        channels.write.redeem([key, maxUint256, await voucher(maxUint256)]),
        channels,
        "NothingToPay",
      );
    });

    it("rejects vouchers signed by another key, for another chain, contract or channel", async () => {
      const fx = await networkHelpers.loadFixture(openChannel);
      const { viem, channels, key, voucher, token, buyer } = fx;
      const other = await viem.deployContract("PaymentChannels", [token.address, CHALLENGE_WINDOW]);
      const secondKey = { ...key, nonce: 2n };
      await channels.write.open([secondKey.signer, secondKey.payee, secondKey.nonce, DEPOSIT], {
        account: buyer.account,
      });
      const stranger = await signVoucher(operatorAccount("stranger"), fx.chainId, channels.address, {
        channelId: fx.channelId,
        cumulativeAmount: 5n,
      });
      for (const signature of [
        stranger,
        await voucher(5n, fx.channelId, fx.chainId + 1),
        await voucher(5n, fx.channelId, fx.chainId, other.address),
        await voucher(5n, channelIdOf(secondKey)),
      ]) {
        await viem.assertions.revertWithCustomError(
          channels.write.redeem([key, 5n, signature]),
          channels,
          "InvalidSignature",
        );
      }
      await viem.assertions.revertWithCustomError(
        channels.write.redeem([key, 5n, "0x1234"]),
        channels,
        "InvalidSignature",
      );
    });
  });

  describe("closing", () => {
    it("starts a close, lets the payee redeem in the window, then refunds the rest to the buyer", async () => {
      const { viem, channels, channelId, key, buyer, voucher, balance, publicClient } =
        await networkHelpers.loadFixture(openChannel);
      await viem.assertions.revertWithCustomError(
        channels.write.finalizeClose([key]),
        channels,
        "NotClosing",
      );
      await viem.assertions.emit(
        channels.write.startClose([key.signer, key.payee, key.nonce], { account: buyer.account }),
        channels,
        "CloseStarted",
      );
      const closesAt = (await channels.read.channels([channelId]))[2];
      assert.equal(closesAt, BigInt((await publicClient.getBlock()).timestamp) + CHALLENGE_WINDOW);
      await viem.assertions.revertWithCustomError(
        channels.write.startClose([key.signer, key.payee, key.nonce], { account: buyer.account }),
        channels,
        "ChannelClosing",
      );
      await viem.assertions.revertWithCustomError(
        channels.write.finalizeClose([key]),
        channels,
        "ChallengeWindowOpen",
      );
      await channels.write.redeem([key, 60n, await voucher(60n)]);
      await networkHelpers.time.increase(Number(CHALLENGE_WINDOW));
      const buyerBefore = await balance(buyer.account.address);
      await viem.assertions.emitWithArgs(channels.write.finalizeClose([key]), channels, "ChannelClosed", [
        channelId,
        60n,
        DEPOSIT - 60n,
      ]);
      assert.equal(await balance(buyer.account.address), buyerBefore + DEPOSIT - 60n);
      assert.equal(await balance(key.payee), 60n);
      assert.deepEqual(await channels.read.channels([channelId]), [60n, 60n, CLOSED]);
      await viem.assertions.revertWithCustomError(
        channels.write.finalizeClose([key]),
        channels,
        "ChannelNotOpen",
      );
      await viem.assertions.revertWithCustomError(
        channels.write.redeem([key, 90n, await voucher(90n)]),
        channels,
        "NothingToPay",
      );
      await viem.assertions.revertWithCustomError(
        channels.write.open([key.signer, key.payee, key.nonce, 1n], { account: buyer.account }),
        channels,
        "ChannelExists",
      );
    });

    it("closes cooperatively during a challenge window and never pays beyond the deposit", async () => {
      const { channels, channelId, key, buyer, balance, chainId } =
        await networkHelpers.loadFixture(openChannel);
      await channels.write.startClose([key.signer, key.payee, key.nonce], { account: buyer.account });
      const close = { channelId, finalAmount: DEPOSIT * 5n, deadline: await closeDeadline() };
      const bySigner = await signChannelClose(voucherKey, chainId, channels.address, close);
      const byPayee = await signChannelClose(payeeKey, chainId, channels.address, close);
      await channels.write.cooperativeClose([key, close.finalAmount, close.deadline, bySigner, byPayee]);
      assert.equal(await balance(key.payee), DEPOSIT);
      assert.equal(await balance(channels.address), 0n);
      assert.deepEqual(await channels.read.channels([channelId]), [DEPOSIT, DEPOSIT, CLOSED]);
    });

    it("only the buyer can start a close, and only of an open channel", async () => {
      const { viem, channels, key, payee } = await networkHelpers.loadFixture(openChannel);
      // From any other account the derived id is another (unopened) channel.
      await viem.assertions.revertWithCustomError(
        channels.write.startClose([key.signer, key.payee, key.nonce], { account: payee.account }),
        channels,
        "ChannelNotOpen",
      );
    });

    it("closes cooperatively at once with both signatures, and the close cannot be replayed", async () => {
      const { viem, channels, channelId, key, buyer, balance, chainId } =
        await networkHelpers.loadFixture(openChannel);
      const deadline = await closeDeadline();
      const close = { channelId, finalAmount: 25n, deadline };
      const bySigner = await signChannelClose(voucherKey, chainId, channels.address, close);
      const byPayee = await signChannelClose(payeeKey, chainId, channels.address, close);
      await viem.assertions.revertWithCustomError(
        channels.write.cooperativeClose([key, 25n, deadline, bySigner, bySigner]),
        channels,
        "InvalidSignature",
      );
      await viem.assertions.revertWithCustomError(
        channels.write.cooperativeClose([key, 26n, deadline, bySigner, byPayee]),
        channels,
        "InvalidSignature",
      );
      await viem.assertions.revertWithCustomError(
        channels.write.cooperativeClose([key, 25n, deadline + 1n, bySigner, byPayee]),
        channels,
        "InvalidSignature",
      );
      const buyerBefore = await balance(buyer.account.address);
      await viem.assertions.emitWithArgs(
        channels.write.cooperativeClose([key, 25n, deadline, bySigner, byPayee]),
        channels,
        "ChannelClosed",
        [channelId, 25n, DEPOSIT - 25n],
      );
      assert.equal(await balance(key.payee), 25n);
      assert.equal(await balance(buyer.account.address), buyerBefore + DEPOSIT - 25n);
      await viem.assertions.revertWithCustomError(
        channels.write.cooperativeClose([key, 25n, deadline, bySigner, byPayee]),
        channels,
        "ChannelNotOpen",
      );
    });

    it("refuses a cooperative close mined after its signed deadline", async () => {
      const { viem, channels, channelId, key, chainId, balance } =
        await networkHelpers.loadFixture(openChannel);
      const deadline = await closeDeadline(600n);
      const close = { channelId, finalAmount: 25n, deadline };
      const bySigner = await signChannelClose(voucherKey, chainId, channels.address, close);
      const byPayee = await signChannelClose(payeeKey, chainId, channels.address, close);
      await networkHelpers.time.setNextBlockTimestamp(deadline + 1n);
      await viem.assertions.revertWithCustomErrorWithArgs(
        channels.write.cooperativeClose([key, 25n, deadline, bySigner, byPayee]),
        channels,
        "CloseExpired",
        [deadline],
      );
      assert.deepEqual(await channels.read.channels([channelId]), [DEPOSIT, 0n, 0n]);
      assert.equal(await balance(key.payee), 0n);
    });

    it("accepts a cooperative close mined exactly at its deadline", async () => {
      const { channels, channelId, key, chainId, balance } = await networkHelpers.loadFixture(openChannel);
      const deadline = await closeDeadline(600n);
      const close = { channelId, finalAmount: 25n, deadline };
      const bySigner = await signChannelClose(voucherKey, chainId, channels.address, close);
      const byPayee = await signChannelClose(payeeKey, chainId, channels.address, close);
      await networkHelpers.time.setNextBlockTimestamp(deadline);
      await channels.write.cooperativeClose([key, 25n, deadline, bySigner, byPayee]);
      assert.deepEqual(await channels.read.channels([channelId]), [25n, 25n, CLOSED]);
      assert.equal(await balance(key.payee), 25n);
    });
  });

  describe("net settlement", () => {
    /** Channels from the buyer to two payees (payee, payee2), with vouchers. */
    async function manyChannels() {
      const fx = await cell();
      const payees = [fx.payee.account.address, fx.payee2.account.address];
      const keys: ChannelKey[] = [];
      for (let i = 0; i < 6; i++) {
        const key = {
          buyer: fx.buyer.account.address,
          signer: voucherKey.address,
          payee: payees[i % 2]!,
          nonce: BigInt(i),
        };
        await fx.channels.write.open([key.signer, key.payee, key.nonce, DEPOSIT], {
          account: fx.buyer.account,
        });
        keys.push(key);
      }
      const signed = async (
        key: ChannelKey,
        cumulativeAmount: bigint,
        signer = voucherKey,
      ): Promise<SignedVoucher> => ({
        key,
        cumulativeAmount,
        signature: await signVoucher(signer, fx.chainId, fx.channels.address, {
          channelId: channelIdOf(key),
          cumulativeAmount,
        }),
      });
      /** settle(batch, epoch, root, count) with the vouchers packed as the contract takes them. */
      const settle = (
        vouchers: readonly SignedVoucher[],
        anchor: [bigint, Hex, bigint] = [0n, zeroHash, 0n],
        account = fx.reporter.account,
      ) => fx.channels.write.settle([encodeSettlementBatch(vouchers), ...anchor], { account });
      return { ...fx, payees, keys, signed, settle };
    }

    it("credits many channels without moving a token, then each payee withdraws in one transfer", async () => {
      const { channels, keys, signed, settle, payees, publicClient, token } =
        await networkHelpers.loadFixture(manyChannels);
      const batch = await Promise.all(keys.map((key, i) => signed(key, BigInt(10 * (i + 1)))));
      const escrow = await token.read.balanceOf([channels.address]);
      const hash = await settle(batch);
      const receipt = await publicClient.waitForTransactionReceipt({ hash });
      const transfers = parseEventLogs({ abi: atpTokenAbi, logs: receipt.logs, eventName: "Transfer" });
      assert.equal(transfers.length, 0, "settle moves no token");
      assert.equal(await token.read.balanceOf([channels.address]), escrow);
      const expected = [10n + 30n + 50n, 20n + 40n + 60n];
      for (const [i, payee] of payees.entries()) {
        const own = keys.filter((key) => key.payee === payee);
        assert.equal(await token.read.balanceOf([payee]), FUNDS);
        const withdrawal = await publicClient.waitForTransactionReceipt({
          hash: await channels.write.withdrawPaid([own]),
        });
        const moved = parseEventLogs({ abi: atpTokenAbi, logs: withdrawal.logs, eventName: "Transfer" });
        assert.deepEqual(
          moved.map((t) => [t.args.to, t.args.value]),
          [[getAddress(payee), expected[i]!]],
          "one transfer per payee",
        );
        assert.equal(await token.read.balanceOf([payee]), FUNDS + expected[i]!);
      }
      assert.equal(await token.read.balanceOf([channels.address]), escrow - 210n);
      const [settled] = parseEventLogs({ abi: channels.abi, logs: receipt.logs, eventName: "BatchSettled" });
      assert.equal(settled!.args.total, 210n);
      assert.equal(settled!.args.vouchers, 6n);
      // The indexer's view without calldata: one PayeeSettled per payee, after BatchSettled.
      const payouts = parseEventLogs({ abi: channels.abi, logs: receipt.logs, eventName: "PayeeSettled" });
      assert.deepEqual(
        payouts.map((log) => [log.args.payee, log.args.amount]).sort(),
        payees.map((payee, i) => [getAddress(payee), expected[i]!]).sort(),
      );
      assert.ok(payouts.every((log) => log.logIndex > settled!.logIndex));
      // The explorer's view: the batch from calldata, which of its vouchers paid from the bitmap.
      const input = (await publicClient.getTransaction({ hash })).input;
      const { args } = decodeFunctionData({ abi: channels.abi, data: input });
      const decoded = decodeSettlementBatch(args[0] as Hex);
      const flags = paidVoucherFlags(settled!.args.paidBitmap, decoded.length);
      const paidVouchers = decoded.filter((_, i) => flags[i]);
      assert.deepEqual(
        paidVouchers.map((v) => v.channelId),
        keys.map(channelIdOf),
      );
      assert.deepEqual(
        paidVouchers.map((v) => v.cumulativeAmount),
        [10n, 20n, 30n, 40n, 50n, 60n],
      );
      for (const [i, key] of keys.entries()) {
        assert.deepEqual(await channels.read.channels([channelIdOf(key)]), [
          DEPOSIT,
          BigInt(10 * (i + 1)),
          0n,
        ]);
      }
    });

    it("skips a bad voucher with VoucherSkipped and still pays the rest of the batch", async () => {
      const { viem, channels, keys, signed, settle, payees, token } =
        await networkHelpers.loadFixture(manyChannels);
      const forged = await signed(keys[1]!, 20n, operatorAccount("forger"));
      const batch = [await signed(keys[0]!, 10n), forged, await signed(keys[2]!, 30n)];
      await viem.assertions.emitWithArgs(settle(batch), channels, "VoucherSkipped", [
        channelIdOf(keys[1]!),
        1,
      ]);
      assert.equal(await channels.read.withdrawable([channelIdOf(keys[0]!)]), 10n);
      assert.equal(await channels.read.withdrawable([channelIdOf(keys[2]!)]), 30n);
      assert.equal(await channels.read.withdrawable([channelIdOf(keys[1]!)]), 0n);
      await channels.write.withdrawPaid([[keys[0]!, keys[2]!]]);
      assert.equal(await token.read.balanceOf([payees[0]!]), FUNDS + 40n);
      assert.equal(await token.read.balanceOf([payees[1]!]), FUNDS);
      assert.deepEqual(await channels.read.channels([channelIdOf(keys[1]!)]), [DEPOSIT, 0n, 0n]);
    });

    it("skips a high-s signature before recovering it, so a malleated twin of a voucher never pays", async () => {
      // A batch carries s in the 255 low bits of vs, so the twin (r, n - s) of a valid signature fits
      // only when the original s lies in (n - 2^255, n/2]: about 2^-127 of signatures, and no test can
      // aim a channel-bound digest there. What the low-s rule decides is therefore shown on the
      // smallest s it refuses, n/2 + 1, against n/2 - 1 with the same r: both recover to a stranger
      // and are skipped as BadSignature, but only the low one may reach ecrecover (3 000 gas). Without
      // the rule the two cost the same.
      const { viem, channels, keys, signed, settle, publicClient } =
        await networkHelpers.loadFixture(manyChannels);
      const good = await signed(keys[0]!, 10n);
      const { r } = toCompactSignature(good.signature);
      const halfOrder = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;
      const withS = (s: bigint): SignedVoucher => ({
        ...good,
        signature: concat([r, toHex(s, { size: 32 })]),
      });
      const gasOfSkipped = async (voucher: SignedVoucher) => {
        const { logs, gasUsed } = await publicClient.waitForTransactionReceipt({
          hash: await settle([voucher]),
        });
        const skipped = parseEventLogs({ abi: channels.abi, logs, eventName: "VoucherSkipped" });
        assert.deepEqual(
          skipped.map((log) => [log.args.channelId, log.args.reason]),
          [[channelIdOf(keys[0]!), 1]],
        );
        return gasUsed;
      };
      const highS = await gasOfSkipped(withS(halfOrder + 1n));
      const lowS = await gasOfSkipped(withS(halfOrder - 1n));
      assert.ok(
        highS + 3_000n <= lowS,
        `high s cost ${highS} gas, low s ${lowS}: the high one was recovered`,
      );
      assert.deepEqual(await channels.read.channels([channelIdOf(keys[0]!)]), [DEPOSIT, 0n, 0n]);
      await viem.assertions.emit(settle([good]), channels, "BatchSettled");
      assert.deepEqual(await channels.read.channels([channelIdOf(keys[0]!)]), [DEPOSIT, 10n, 0n]);
    });

    it("skips stale vouchers, pays only the increase of duplicates and caps at the deposit", async () => {
      const { viem, channels, keys, signed, settle, payees, token } =
        await networkHelpers.loadFixture(manyChannels);
      await settle([await signed(keys[0]!, 10n)]);
      const batch = [
        await signed(keys[0]!, 10n),
        await signed(keys[0]!, 15n),
        await signed(keys[0]!, 12n),
        await signed(keys[2]!, MAX_BATCH_AMOUNT),
      ];
      await viem.assertions.emitWithArgs(settle(batch), channels, "VoucherSkipped", [
        channelIdOf(keys[0]!),
        0,
      ]);
      assert.equal(await channels.read.withdrawable([channelIdOf(keys[0]!)]), 15n);
      assert.equal(await channels.read.withdrawable([channelIdOf(keys[2]!)]), DEPOSIT);
      await channels.write.withdrawPaid([[keys[0]!, keys[2]!]]);
      assert.equal(await token.read.balanceOf([payees[0]!]), FUNDS + 15n + DEPOSIT);
      assert.deepEqual(await channels.read.channels([channelIdOf(keys[2]!)]), [DEPOSIT, DEPOSIT, 0n]);
    });

    it("carries amounts as uint96: the largest decodes as signed, 2^96 is refused by the encoder", async () => {
      const { channels, keys, signed } = await networkHelpers.loadFixture(manyChannels);
      assert.equal(MAX_BATCH_AMOUNT, 2n ** 96n - 1n);
      const largest = await signed(keys[0]!, MAX_BATCH_AMOUNT);
      const [decoded] = decodeSettlementBatch(encodeSettlementBatch([largest]));
      assert.equal(decoded!.cumulativeAmount, MAX_BATCH_AMOUNT);
      // The signed value is the uint256 the batch amount widens to.
      const digest = await channels.read.voucherDigest([decoded!.channelId, decoded!.cumulativeAmount]);
      assert.equal(await recoverAddress({ hash: digest, signature: largest.signature }), keys[0]!.signer);
      for (const amount of [2n ** 96n, maxUint256]) {
        assert.throws(
          () => encodeSettlementBatch([{ ...largest, cumulativeAmount: amount }]),
          /voucher 0: cumulativeAmount \d+ does not fit the batch's uint96/,
        );
      }
    });

    it("anchors an epoch's receipt root and proves receipts included", async () => {
      const { viem, channels, keys, signed, settle, reporter, publicClient } =
        await networkHelpers.loadFixture(manyChannels);
      const receipts = Array.from({ length: 5 }, (_, i) =>
        receiptFor(operatorAccount(`e${i}`).address, keccak256(toHex(`job${i}`))),
      );
      const tree = buildReceiptTree(receipts);
      const hash = await settle([await signed(keys[0]!, 1n)], [7n, tree.root, 5n]);
      const { logs } = await publicClient.waitForTransactionReceipt({ hash });
      // Storage keeps the root; the receipt count and the anchor's block are in the event.
      const [anchored] = parseEventLogs({ abi: channels.abi, logs, eventName: "ReceiptsAnchored" });
      assert.deepEqual(anchored!.args, {
        submitter: getAddress(reporter.account.address),
        epoch: 7n,
        receiptRoot: tree.root,
        receiptCount: 5n,
      });
      assert.equal(anchored!.blockNumber, await publicClient.getBlockNumber());
      assert.equal(await channels.read.anchors([reporter.account.address, 7n]), tree.root);
      for (const [i, receipt] of receipts.entries()) {
        assert.equal(await channels.read.receiptLeaf([receipt]), tree.leaves[i]);
        assert.equal(
          await channels.read.verifyReceiptInclusion([reporter.account.address, 7n, receipt, tree.proof(i)]),
          true,
        );
      }
      const outsider = receiptFor(operatorAccount("x").address, keccak256(toHex("other-job")));
      assert.equal(
        await channels.read.verifyReceiptInclusion([reporter.account.address, 7n, outsider, tree.proof(0)]),
        false,
      );
      assert.equal(
        await channels.read.verifyReceiptInclusion([
          reporter.account.address,
          8n,
          receipts[0]!,
          tree.proof(0),
        ]),
        false,
      );
      assert.equal(
        await channels.read.verifyReceiptInclusion([keys[0]!.buyer, 7n, receipts[0]!, tree.proof(0)]),
        false,
      );
      await viem.assertions.revertWithCustomError(
        settle([], [7n, tree.root, 5n]),
        channels,
        "EpochAlreadyAnchored",
      );
      // An anchor alone (no vouchers) is a valid settlement.
      await settle([], [8n, tree.root, 5n]);
    });

    it("pays nothing for a batch of only bad vouchers, including closed channels, and still records it", async () => {
      const { viem, channels, keys, signed, settle, buyer, publicClient } =
        await networkHelpers.loadFixture(manyChannels);
      await channels.write.startClose([keys[0]!.signer, keys[0]!.payee, keys[0]!.nonce], {
        account: buyer.account,
      });
      await networkHelpers.time.increase(Number(CHALLENGE_WINDOW));
      await channels.write.finalizeClose([keys[0]!]);
      const unknown = { ...keys[1]!, nonce: 999n };
      const batch = [
        await signed(keys[0]!, 10n),
        await signed(unknown, 10n),
        await signed(keys[1]!, 10n, operatorAccount("forger")),
      ];
      const before = await channels.read.remaining([channelIdOf(keys[1]!)]);
      const hash = await settle(batch);
      const logs = (await publicClient.waitForTransactionReceipt({ hash })).logs;
      const skipped = parseEventLogs({ abi: channels.abi, logs, eventName: "VoucherSkipped" }).map(
        (l) => l.args.reason,
      );
      assert.deepEqual(skipped, [0, 0, 1]);
      const [settled] = parseEventLogs({ abi: channels.abi, logs, eventName: "BatchSettled" });
      assert.equal(settled!.args.total, 0n);
      assert.deepEqual(paidVoucherFlags(settled!.args.paidBitmap, batch.length), [false, false, false]);
      assert.equal(parseEventLogs({ abi: atpTokenAbi, logs, eventName: "Transfer" }).length, 0);
      assert.equal(parseEventLogs({ abi: channels.abi, logs, eventName: "PayeeSettled" }).length, 0);
      assert.equal(await channels.read.remaining([channelIdOf(keys[1]!)]), before);
      await viem.assertions.emit(settle([await signed(keys[1]!, 1n)]), channels, "BatchSettled");
    });

    it("rejects malformed batches by name: truncated, unsorted or duplicate table, index outside it", async () => {
      const { viem, channels, keys, signed } = await networkHelpers.loadFixture(manyChannels);
      const batch = encodeSettlementBatch([await signed(keys[0]!, 10n)]);
      const send = (data: Hex) => channels.write.settle([data, 0n, zeroHash, 0n]);
      // Table of 3 addresses (2 + 60 bytes), then one 90-byte voucher.
      const table = (i: number) => slice(batch, 2 + 20 * i, 22 + 20 * i);
      const voucher = slice(batch, 62);
      await viem.assertions.revertWithCustomError(send(slice(batch, 0, 1)), channels, "MalformedBatch");
      await viem.assertions.revertWithCustomError(send(slice(batch, 0, 100)), channels, "MalformedBatch");
      await viem.assertions.revertWithCustomErrorWithArgs(
        send(concat(["0x0003", table(1), table(0), table(2), voucher])),
        channels,
        "UnsortedAddresses",
        [1n],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        send(concat(["0x0003", table(0), table(0), table(2), voucher])),
        channels,
        "UnsortedAddresses",
        [1n],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        send(concat([batch, "0x0003", slice(voucher, 2)])),
        channels,
        "AddressIndexOutOfRange",
        [1n],
      );
    });

    it("runs on the OP Stack simulation: a settlement's receipt carries the L1 data gas of its calldata", async () => {
      const { keys, signed, settle, publicClient } = await networkHelpers.loadFixture(manyChannels);
      const one = await publicClient.waitForTransactionReceipt({
        hash: await settle([await signed(keys[0]!, 1n)]),
      });
      const batch = await Promise.all(keys.slice(1).map((key) => signed(key, 1n)));
      const five = await publicClient.waitForTransactionReceipt({ hash: await settle(batch) });
      const l1GasUsed = async (hash: Hex) => {
        const raw = (await publicClient.request({
          method: "eth_getTransactionReceipt",
          params: [hash],
        })) as unknown as { l1GasUsed?: Hex };
        assert.ok(raw.l1GasUsed !== undefined, "an OP Stack receipt carries l1GasUsed");
        return BigInt(raw.l1GasUsed);
      };
      assert.ok((await l1GasUsed(five.transactionHash)) > (await l1GasUsed(one.transactionHash)));
    });

    it("lets a payee withdraw what settlements credited, once, on open and closed channels", async () => {
      const { viem, channels, keys, signed, settle, payees, buyer, reporter, publicClient, token } =
        await networkHelpers.loadFixture(manyChannels);
      const [first, second] = [keys[0]!, keys[2]!];
      await settle([await signed(first, 30n), await signed(second, 5n)]);
      // Anyone may send it; the money goes to the payee. A channel listed twice pays once.
      const hash = await channels.write.withdrawPaid([[first, second, first]], { account: reporter.account });
      const logs = (await publicClient.waitForTransactionReceipt({ hash })).logs;
      assert.deepEqual(
        parseEventLogs({ abi: channels.abi, logs, eventName: "PaidWithdrawn" }).map((l) => l.args),
        [{ payee: getAddress(payees[0]!), amount: 35n }],
      );
      assert.deepEqual(
        [
          await channels.read.withdrawn([channelIdOf(first)]),
          await channels.read.withdrawn([channelIdOf(second)]),
        ],
        [30n, 5n],
      );
      assert.equal(await token.read.balanceOf([payees[0]!]), FUNDS + 35n);
      await viem.assertions.revertWithCustomErrorWithArgs(
        channels.write.withdrawPaid([[first, second]]),
        channels,
        "NothingToWithdraw",
        [getAddress(payees[0]!)],
      );
      // A later settlement credits only its increase; the buyer's refund at close leaves the
      // credited but unwithdrawn amount in the contract for the payee.
      await settle([await signed(first, 70n)]);
      await channels.write.startClose([first.signer, first.payee, first.nonce], { account: buyer.account });
      await networkHelpers.time.increase(Number(CHALLENGE_WINDOW));
      const buyerBefore = await token.read.balanceOf([buyer.account.address]);
      await channels.write.finalizeClose([first]);
      assert.equal(await token.read.balanceOf([buyer.account.address]), buyerBefore + DEPOSIT - 70n);
      assert.equal(await channels.read.withdrawable([channelIdOf(first)]), 40n);
      await channels.write.withdrawPaid([[first]]);
      assert.equal(await token.read.balanceOf([payees[0]!]), FUNDS + 75n);
      assert.equal(await channels.read.withdrawn([channelIdOf(first)]), 70n);
      assert.equal(await channels.read.withdrawable([channelIdOf(first)]), 0n);
      // What the contract holds is exactly what it owes: every deposit less what left it.
      const held = 6n * DEPOSIT - (DEPOSIT - 70n) - 75n;
      assert.equal(await token.read.balanceOf([channels.address]), held);
    });

    it("refuses a withdrawal of no channels or of channels of several payees, naming the first stranger", async () => {
      const { viem, channels, keys, signed, settle, payees } = await networkHelpers.loadFixture(manyChannels);
      await settle([await signed(keys[0]!, 10n), await signed(keys[1]!, 10n)]);
      await viem.assertions.revertWithCustomError(channels.write.withdrawPaid([[]]), channels, "NoChannels");
      await viem.assertions.revertWithCustomErrorWithArgs(
        channels.write.withdrawPaid([[keys[0]!, keys[2]!, keys[1]!]]),
        channels,
        "MixedPayees",
        [2n, getAddress(payees[1]!), getAddress(payees[0]!)],
      );
      assert.equal(await channels.read.withdrawable([channelIdOf(keys[0]!)]), 10n);
      // A key whose channel does not exist withdraws nothing.
      await viem.assertions.revertWithCustomError(
        channels.write.withdrawPaid([[{ ...keys[0]!, nonce: 999n }]]),
        channels,
        "NothingToWithdraw",
      );
    });

    it("pays a settlement's credit out with a later redeem or cooperative close, never twice", async () => {
      const { channels, key, channelId, voucher, balance, chainId } =
        await networkHelpers.loadFixture(openChannel);
      const settle = async (cumulativeAmount: bigint) =>
        channels.write.settle([
          encodeSettlementBatch([{ key, cumulativeAmount, signature: await voucher(cumulativeAmount) }]),
          0n,
          zeroHash,
          0n,
        ]);
      await settle(10n);
      await channels.write.redeem([key, 25n, await voucher(25n)]);
      assert.equal(await balance(key.payee), 25n);
      assert.equal(await channels.read.withdrawable([channelId]), 0n);
      await settle(40n);
      const close = { channelId, finalAmount: 50n, deadline: await closeDeadline() };
      const bySigner = await signChannelClose(voucherKey, chainId, channels.address, close);
      const byPayee = await signChannelClose(payeeKey, chainId, channels.address, close);
      await channels.write.cooperativeClose([key, close.finalAmount, close.deadline, bySigner, byPayee]);
      assert.equal(await balance(key.payee), 50n);
      assert.equal(await balance(channels.address), 0n);
      assert.equal(await channels.read.withdrawn([channelId]), 50n);
      assert.equal(await channels.read.withdrawable([channelId]), 0n);
    });

    it("rejects an empty settlement", async () => {
      const { viem, channels, settle } = await networkHelpers.loadFixture(manyChannels);
      await viem.assertions.revertWithCustomError(settle([]), channels, "EmptySettlement");
      await viem.assertions.revertWithCustomError(
        channels.write.settle(["0x", 0n, zeroHash, 0n]),
        channels,
        "EmptySettlement",
      );
    });
  });
});
