import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { privateKeyToAccount } from "viem/accounts";
import { bytesToHex } from "viem";
import {
  buildJobSpec,
  checkAnnouncedJob,
  priorityName,
  priorityValue,
  signJob,
  toAnnounce,
} from "../../offchain/src/market/index.ts";
import {
  JobAnnounceSchema,
  bidFromWire,
  bidToWire,
  cellDomain,
  cidOf,
  cidToBytes32,
  jobIdOf,
  receiptFromWire,
  receiptToWire,
  signBid,
  signReceipt,
  verifyBid,
  verifyJobSpec,
  verifyReceipt,
} from "../../offchain/src/protocol/index.ts";
import type { Receipt } from "../../offchain/src/protocol/index.ts";

const buyer = privateKeyToAccount(`0x${"11".repeat(32)}`);
const donor = privateKeyToAccount(`0x${"22".repeat(32)}`);
const domain = cellDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
const otherDomain = cellDomain(1, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
const peerId = "12D3KooWGzxHqRmjGLBxqvDSkFnnYpNNmEtDMpgqsCBCZQxhYz9C";

async function signedJob(now = Date.now()) {
  const moduleCid = await cidOf(new TextEncoder().encode("module"));
  const inputCid = await cidOf(new TextEncoder().encode("input"));
  const spec = buildJobSpec({
    buyer: buyer.address,
    moduleCid: cidToBytes32(moduleCid),
    inputCid: cidToBytes32(inputCid),
    maxPricePerMegaFuel: 5_000n,
    priority: "high",
    now,
  });
  const job = await signJob(buyer, domain, spec);
  const announce = toAnnounce(job, {
    moduleCid: moduleCid.toString(),
    inputCid: inputCid.toString(),
    moduleSize: 6,
    inputSize: 5,
    buyerPeer: peerId,
  });
  return { job, announce, moduleCid, inputCid };
}

describe("job spec", () => {
  it("fills defaults, a fresh salt and a deadline after the timeout", () => {
    const now = 1_700_000_000_000;
    const a = buildJobSpec({
      buyer: buyer.address,
      moduleCid: `0x${"01".repeat(32)}`,
      inputCid: `0x${"02".repeat(32)}`,
      maxPricePerMegaFuel: 1n,
      now,
    });
    const b = buildJobSpec({
      buyer: buyer.address,
      moduleCid: `0x${"01".repeat(32)}`,
      inputCid: `0x${"02".repeat(32)}`,
      maxPricePerMegaFuel: 1n,
      now,
    });
    assert.notEqual(a.salt, b.salt);
    assert.notEqual(jobIdOf(domain, a), jobIdOf(domain, b));
    assert.equal(a.replicas, 1);
    assert.equal(a.priority, priorityValue("normal"));
    assert.ok(a.deadline > BigInt(now + a.timeoutMs));
  });

  it("maps priority names to wire values and back", () => {
    assert.equal(priorityValue("critical"), 0);
    assert.equal(priorityValue("background"), 4);
    assert.equal(priorityName(1), "high");
    assert.throws(() => priorityName(7), /priority 7/);
  });

  it("job id is the EIP-712 hash of the spec, bound to the domain", async () => {
    const { job } = await signedJob();
    assert.equal(job.jobId, jobIdOf(domain, job.spec));
    assert.notEqual(job.jobId, jobIdOf(otherDomain, job.spec));
    assert.equal(await verifyJobSpec(domain, job.spec, job.signature), true);
    assert.equal(await verifyJobSpec(otherDomain, job.spec, job.signature), false);
  });

  it("refuses to sign a spec for another buyer", async () => {
    const spec = buildJobSpec({
      buyer: donor.address,
      moduleCid: `0x${"01".repeat(32)}`,
      inputCid: `0x${"02".repeat(32)}`,
      maxPricePerMegaFuel: 1n,
    });
    await assert.rejects(signJob(buyer, domain, spec), /not the signer/);
  });

  it("an announce round-trips through its schema and checks out", async () => {
    const { announce } = await signedJob();
    const parsed = JobAnnounceSchema.parse(JSON.parse(JSON.stringify(announce)));
    const check = await checkAnnouncedJob(domain, parsed, cidToBytes32);
    assert.equal(check.ok, true);
  });

  it("a tampered spec, swapped CID, foreign signature or passed deadline is refused with its reason", async () => {
    const { announce, moduleCid } = await signedJob();
    const tampered = { ...announce, spec: { ...announce.spec, fuelLimit: "999999999" } };
    assert.deepEqual(pick(await checkAnnouncedJob(domain, tampered, cidToBytes32)), "bad_spec");

    const swapped = { ...announce, inputCid: moduleCid.toString() };
    assert.deepEqual(pick(await checkAnnouncedJob(domain, swapped, cidToBytes32)), "bad_spec");

    const forged = { ...announce, signature: await donor.signMessage({ message: "x" }) };
    assert.deepEqual(pick(await checkAnnouncedJob(domain, forged, cidToBytes32)), "bad_signature");

    const late = await checkAnnouncedJob(domain, announce, cidToBytes32, Date.now() + 10 * 60_000);
    assert.deepEqual(pick(late), "deadline_missed");
  });
});

describe("bid and receipt signatures", () => {
  it("a bid verifies for its executor only and survives the wire", async () => {
    const { job } = await signedJob();
    const bid = {
      jobId: job.jobId,
      executor: donor.address,
      pricePerMegaFuel: 900n,
      expiresAt: 1_900_000_000_000n,
    };
    const signature = await signBid(donor, domain, bid);
    assert.equal(
      await verifyBid(domain, bidFromWire(JSON.parse(JSON.stringify(bidToWire(bid)))), signature),
      true,
    );
    assert.equal(await verifyBid(domain, { ...bid, pricePerMegaFuel: 901n }, signature), false);
    assert.equal(await verifyBid(domain, { ...bid, executor: buyer.address }, signature), false);
    await assert.rejects(signBid(buyer, domain, bid), /not the signer/);
  });

  it("a receipt verifies, and a malformed signature is simply false", async () => {
    const receipt: Receipt = {
      jobId: bytesToHex(new Uint8Array(32).fill(7)),
      executor: donor.address,
      moduleCid: `0x${"01".repeat(32)}`,
      inputCid: `0x${"02".repeat(32)}`,
      outputCid: `0x${"03".repeat(32)}`,
      fuelUsed: 12_345n,
      status: 0,
      startedAt: 1n,
      finishedAt: 2n,
    };
    const signature = await signReceipt(donor, domain, receipt);
    assert.equal(await verifyReceipt(domain, receiptFromWire(receiptToWire(receipt)), signature), true);
    assert.equal(await verifyReceipt(domain, { ...receipt, fuelUsed: 12_346n }, signature), false);
    assert.equal(await verifyReceipt(domain, receipt, `0x${"00".repeat(65)}`), false);
  });
});

function pick(check: { ok: boolean; reason?: string }): string | undefined {
  return check.ok ? undefined : check.reason;
}
