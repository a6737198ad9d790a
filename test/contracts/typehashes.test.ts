import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import { hashTypedData, keccak256, toHex } from "viem";
import {
  BID_TYPE,
  CHANNEL_CLOSE_TYPE,
  JOB_SPEC_TYPE,
  RECEIPT_TYPE,
  VOUCHER_TYPE,
  bidTypes,
  cellDomain,
  channelCloseTypes,
  jobIdOf,
  jobSpecTypes,
  receiptTypes,
  voucherTypes,
} from "../../offchain/src/protocol/index.ts";
import { voucherDigest } from "../../offchain/src/chain/index.ts";
import { deployCell } from "../support/contracts/deploy.ts";
import { receiptFor } from "../support/contracts/fixture.ts";

/** EIP-712 encodeType for a struct without nested structs. */
function encodeType(types: Record<string, readonly { name: string; type: string }[]>): string {
  const [name, fields] = Object.entries(types)[0]!;
  return `${name}(${fields.map((f) => `${f.type} ${f.name}`).join(",")})`;
}

describe("EIP-712 types: Solidity and viem agree", async () => {
  const connection = await network.create();
  const { registry, channels, chainId } = await connection.networkHelpers.loadFixture(function cell() {
    return deployCell(connection);
  });

  it("type strings in eip712.ts are what viem encodes from the type objects", () => {
    assert.equal(encodeType(receiptTypes), RECEIPT_TYPE);
    assert.equal(encodeType(voucherTypes), VOUCHER_TYPE);
    assert.equal(encodeType(channelCloseTypes), CHANNEL_CLOSE_TYPE);
    assert.equal(encodeType(jobSpecTypes), JOB_SPEC_TYPE);
    assert.equal(encodeType(bidTypes), BID_TYPE);
  });

  it("Solidity typehashes equal the hashes of those type strings", async () => {
    assert.equal(await registry.read.RECEIPT_TYPEHASH(), keccak256(toHex(RECEIPT_TYPE)));
    assert.equal(await registry.read.JOB_SPEC_TYPEHASH(), keccak256(toHex(JOB_SPEC_TYPE)));
    assert.equal(await registry.read.BID_TYPEHASH(), keccak256(toHex(BID_TYPE)));
    assert.equal(await channels.read.VOUCHER_TYPEHASH(), keccak256(toHex(VOUCHER_TYPE)));
    assert.equal(await channels.read.CHANNEL_CLOSE_TYPEHASH(), keccak256(toHex(CHANNEL_CLOSE_TYPE)));
  });

  it("contract digests equal viem's hashTypedData for receipts, job specs, bids, vouchers, closes", async () => {
    const registryDomain = cellDomain(chainId, registry.address);
    const channelsDomain = cellDomain(chainId, channels.address);
    const receipt = receiptFor("0x00000000000000000000000000000000000000aa", keccak256(toHex("job")), {
      status: 3,
    });
    assert.equal(
      await registry.read.receiptDigest([receipt]),
      hashTypedData({
        domain: registryDomain,
        types: receiptTypes,
        primaryType: "Receipt",
        message: receipt,
      }),
    );
    const spec = {
      buyer: "0x00000000000000000000000000000000000000bb" as const,
      moduleCid: keccak256(toHex("m")),
      inputCid: keccak256(toHex("i")),
      entry: "main",
      fuelLimit: 10n ** 9n,
      memoryPages: 16,
      timeoutMs: 5_000,
      replicas: 4,
      maxPricePerMegaFuel: 12345n,
      minReputation: 100,
      deadline: 1_800_000_000n,
      priority: 2,
      channel: keccak256(toHex("channel")),
      salt: keccak256(toHex("salt")),
    };
    assert.equal(await registry.read.jobSpecDigest([spec]), jobIdOf(registryDomain, spec));
    const bid = {
      jobId: keccak256(toHex("job")),
      executor: receipt.executor,
      pricePerMegaFuel: 7n,
      expiresAt: 99n,
    };
    assert.equal(
      await registry.read.bidDigest([bid]),
      hashTypedData({ domain: registryDomain, types: bidTypes, primaryType: "Bid", message: bid }),
    );
    const voucher = { channelId: keccak256(toHex("c")), cumulativeAmount: 10n ** 20n };
    assert.equal(
      await channels.read.voucherDigest([voucher.channelId, voucher.cumulativeAmount]),
      voucherDigest(chainId, channels.address, voucher),
    );
    const close = { channelId: voucher.channelId, finalAmount: 5n, deadline: 1_700_000_000n };
    assert.equal(
      await channels.read.channelCloseDigest([close.channelId, close.finalAmount, close.deadline]),
      hashTypedData({
        domain: channelsDomain,
        types: channelCloseTypes,
        primaryType: "ChannelClose",
        message: close,
      }),
    );
  });
});
