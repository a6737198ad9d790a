// The node accepts exactly the signatures the contracts accept: for every form of a valid
// signature (its high-s twin, v = 0/1, EIP-2098, garbage) the node's checks and the contracts'
// give one answer, so no receipt or voucher the node takes fails later as on-chain evidence.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import { keccak256, parseEther, parseEventLogs, toHex } from "viem";
import type { Hex } from "viem";
import {
  channelIdOf,
  encodeSettlementBatch,
  paidVoucherFlags,
  signVoucher,
  verifyVoucher,
} from "../../offchain/src/chain/index.ts";
import type { ChannelKey } from "../../offchain/src/chain/index.ts";
import {
  SECP256K1_ORDER,
  SignatureSchema,
  cellDomain,
  receiptDigest,
  verifyDigest,
  verifyReceipt,
} from "../../offchain/src/protocol/index.ts";
import { deployCell } from "../support/contracts/deploy.ts";
import { operatorAccount, signedReceipt } from "../support/contracts/fixture.ts";

const DEPOSIT = parseEther("100");

interface Form {
  name: string;
  signature: Hex;
  /** False for a form that can never verify, which SignatureSchema must refuse. */
  wellFormed: boolean;
}

/** Every form derived from one valid 65-byte signature. */
function formsOf(signature: Hex): Form[] {
  const r = signature.slice(2, 66);
  const s = BigInt(`0x${signature.slice(66, 130)}`);
  const v = Number.parseInt(signature.slice(130), 16);
  const parity = BigInt(v - 27);
  const word = (value: bigint) => value.toString(16).padStart(64, "0");
  const byte = (value: number) => value.toString(16).padStart(2, "0");
  const otherV = v === 27 ? 28 : 27;
  const highS = SECP256K1_ORDER - s;
  const form = (name: string, signature: string, wellFormed: boolean): Form => ({
    name,
    signature: signature as Hex,
    wellFormed,
  });
  return [
    form("as signed", signature, true),
    form("EIP-2098 compact", `0x${r}${word((parity << 255n) | s)}`, true),
    form("v = 0/1", `0x${r}${word(s)}${byte(v - 27)}`, false),
    form("other v", `0x${r}${word(s)}${byte(otherV)}`, true),
    form("high-s twin, v flipped", `0x${r}${word(highS)}${byte(otherV)}`, false),
    form("high-s twin, same v", `0x${r}${word(highS)}${byte(v)}`, false),
    form("high-s twin, v flipped to 0/1", `0x${r}${word(highS)}${byte(otherV - 27)}`, false),
    // The top bit of a high s collides with the parity bit: what is left is some other low s.
    form("high-s twin in compact form", `0x${r}${word(((parity ^ 1n) << 255n) | highS)}`, true),
    form("r = n", `0x${word(SECP256K1_ORDER)}${word(s)}${byte(v)}`, false),
    form("s = 0", `0x${r}${word(0n)}${byte(v)}`, false),
    form("zeros", `0x${"00".repeat(65)}`, false),
    form(
      "random r, low s",
      `0x${keccak256(signature).slice(2)}${word(BigInt(keccak256(toHex(s))) >> 2n)}1b`,
      true,
    ),
    form("66 bytes", `${signature}00`, false),
    form("63 bytes", signature.slice(0, 128), false),
    form("empty", "0x", false),
  ];
}

describe("signature parity between the node and the contracts", async () => {
  const connection = await network.create();
  const { networkHelpers } = connection;

  function cell() {
    return deployCell(connection);
  }

  describe("receipts", () => {
    it("DonorRegistry.verifyReceipt, verifyReceipt, verifyDigest and SignatureSchema agree on every form", async () => {
      const { registry, chainId } = await networkHelpers.loadFixture(cell);
      const domain = cellDomain(chainId, registry.address);
      let accepted = 0;
      for (let i = 0; i < 6; i++) {
        const operator = operatorAccount(`parity-${i}`);
        const { receipt, signature } = await signedReceipt(
          operator,
          chainId,
          registry.address,
          keccak256(toHex(`parity-job-${i}`)),
          { fuelUsed: BigInt(1_000 + i) },
        );
        for (const { name, signature: form, wellFormed } of formsOf(signature)) {
          const onChain = await registry.read.verifyReceipt([receipt, form]);
          const label = `${name} of signature ${i}: ${form}`;
          assert.equal(await verifyReceipt(domain, receipt, form), onChain, label);
          assert.equal(
            await verifyDigest(receiptDigest(domain, receipt), receipt.executor, form),
            onChain,
            label,
          );
          // The schema refuses every form that can never verify, and keeps every one that can.
          const parsed = SignatureSchema.safeParse(form);
          assert.equal(parsed.success, wellFormed, label);
          if (onChain) assert.equal(wellFormed, true, label);
          if (parsed.success) assert.equal(await verifyReceipt(domain, receipt, parsed.data), onChain, label);
          if (onChain) accepted++;
        }
      }
      // The signature as signed and its EIP-2098 form, of each of the six receipts.
      assert.equal(accepted, 12);
    });
  });

  describe("vouchers", () => {
    const voucherKey = operatorAccount("parity-voucher-key");

    async function openChannel() {
      const fx = await deployCell(connection);
      const key: ChannelKey = {
        buyer: fx.buyer.account.address,
        signer: voucherKey.address,
        payee: fx.payee.account.address,
        nonce: 1n,
      };
      await fx.channels.write.open([key.signer, key.payee, key.nonce, DEPOSIT], {
        account: fx.buyer.account,
      });
      return { ...fx, key };
    }

    /** True when PaymentChannels.redeem takes the signature (simulated: nothing is paid). */
    async function redeemAccepts(
      fx: Awaited<ReturnType<typeof openChannel>>,
      amount: bigint,
      signature: Hex,
    ) {
      try {
        await fx.channels.simulate.redeem([fx.key, amount, signature]);
        return true;
      } catch (error) {
        assert.match(String(error), /InvalidSignature/, "redeem fails only for its signature");
        return false;
      }
    }

    /** True when PaymentChannels.settle pays the voucher; undefined when no batch can carry it. */
    async function settlePays(fx: Awaited<ReturnType<typeof openChannel>>, amount: bigint, signature: Hex) {
      let batch: Hex;
      try {
        batch = encodeSettlementBatch([{ key: fx.key, cumulativeAmount: amount, signature }]);
      } catch {
        return undefined;
      }
      const hash = await fx.channels.write.settle([batch, 0n, `0x${"00".repeat(32)}`, 0n]);
      const receipt = await fx.publicClient.waitForTransactionReceipt({ hash });
      const [settled] = parseEventLogs({
        abi: fx.channels.abi,
        eventName: "BatchSettled",
        logs: receipt.logs,
      });
      return paidVoucherFlags(settled!.args.paidBitmap, 1)[0]!;
    }

    it("redeem, the settlement batch and verifyVoucher agree on every form", async () => {
      let accepted = 0;
      for (let i = 0; i < 3; i++) {
        const fx = await networkHelpers.loadFixture(openChannel);
        const amount = BigInt(10 + i);
        const voucher = { channelId: channelIdOf(fx.key), cumulativeAmount: amount };
        const signature = await signVoucher(voucherKey, fx.chainId, fx.channels.address, voucher);
        for (const { name, signature: form } of formsOf(signature)) {
          await networkHelpers.loadFixture(openChannel);
          const label = `${name} of voucher ${i}: ${form}`;
          const offChain = await verifyVoucher(
            fx.chainId,
            fx.channels.address,
            voucher,
            voucherKey.address,
            form,
          );
          assert.equal(await redeemAccepts(fx, amount, form), offChain, label);
          const paid = await settlePays(fx, amount, form);
          // A form no batch can carry (any but 64 bytes or a 65-byte one the contracts accept)
          // is refused before it is sent; the contract judges every other form itself.
          assert.equal(paid ?? false, offChain, label);
          if (paid === undefined) assert.notEqual(form.length, 2 + 64 * 2, label);
          if (offChain) accepted++;
        }
      }
      // The signature as signed and its EIP-2098 form, of each of the three vouchers.
      assert.equal(accepted, 6);
    });
  });
});
