import { randomBytes } from "node:crypto";
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  hashTypedData,
  isAddressEqual,
  keccak256,
  parseSignature,
  recoverAddress,
  serializeCompactSignature,
  signatureToCompactSignature,
  toHex,
} from "viem";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { buildJobSpec } from "../../offchain/src/market/index.ts";
import { bidTypes, cellDomain, jobSpecTypes, receiptTypes } from "../../offchain/src/protocol/index.ts";
import { bidDigest, jobIdOf, receiptDigest, verifyDigest } from "../../offchain/src/protocol/signing.ts";

// Digests are built from words directly and verifyDigest recovers keys through libsecp256k1.
// These tests hold digests to viem's answers, and verification to the forms the contracts
// accept (test/contracts/SignatureParity.test.ts compares it with the contracts themselves).

const CURVE_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

async function byRecovery(digest: Hex, expected: Hex, signature: Hex): Promise<boolean> {
  try {
    return isAddressEqual(await recoverAddress({ hash: digest, signature }), expected);
  } catch {
    return false;
  }
}

function withV(signature: Hex, v: number): Hex {
  return `${signature.slice(0, 130)}${v.toString(16).padStart(2, "0")}` as Hex;
}

function highSTwin(signature: Hex, flipV: boolean): Hex {
  const s = BigInt(`0x${signature.slice(66, 130)}`);
  const v = Number.parseInt(signature.slice(130), 16);
  const twinV = flipV ? (v === 27 ? 28 : 27) : v;
  return `${signature.slice(0, 66)}${(CURVE_ORDER - s).toString(16).padStart(64, "0")}${twinV.toString(16)}` as Hex;
}

/** The address with one letter's case swapped: no longer its checksum spelling. */
function miscased(address: Hex): Hex {
  const index = address.slice(2).search(/[a-fA-F]/) + 2;
  const letter = address[index]!;
  const swapped = letter === letter.toLowerCase() ? letter.toUpperCase() : letter.toLowerCase();
  return `${address.slice(0, index)}${swapped}${address.slice(index + 1)}` as Hex;
}

function flipBit(signature: Hex, bit: number): Hex {
  const bytes = Buffer.from(signature.slice(2), "hex");
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return `0x${bytes.toString("hex")}`;
}

test("a known operator's signature verifies in the forms the contracts take, and in no other", async () => {
  const operator = privateKeyToAccount(generatePrivateKey());
  const stranger = privateKeyToAccount(generatePrivateKey());
  const first = keccak256(toHex("first"));
  assert.equal(await verifyDigest(first, operator.address, await operator.sign({ hash: first })), true);

  for (let i = 0; i < 20; i++) {
    const digest = keccak256(toHex(`message ${i}`));
    const signature = await operator.sign({ hash: digest });
    const v = Number.parseInt(signature.slice(130), 16);
    // The signature and its EIP-2098 form are what OpenZeppelin's ECDSA accepts.
    for (const accepted of [
      signature,
      serializeCompactSignature(signatureToCompactSignature(parseSignature(signature))),
    ])
      assert.equal(await verifyDigest(digest, operator.address, accepted), true, accepted);
    const refused: [string, Hex][] = [
      // ecrecover-style recovery takes these two, the contracts do not.
      ["v - 27", withV(signature, v - 27)],
      ["high-s twin with the other v", highSTwin(signature, true)],
      ["other v", withV(signature, v === 27 ? 28 : 27)],
      ["v = 29", withV(signature, 29)],
      ["high-s twin with the same v", highSTwin(signature, false)],
      ["stranger", await stranger.sign({ hash: digest })],
      ["other digest", await operator.sign({ hash: keccak256(toHex(`other ${i}`)) })],
      ["flipped bit", flipBit(signature, i * 13)],
      ["zeros", `0x${"00".repeat(64)}1b`],
      ["r = n", `0x${CURVE_ORDER.toString(16)}${signature.slice(66)}` as Hex],
      ["63 bytes", signature.slice(0, 128) as Hex],
    ];
    assert.equal(await byRecovery(digest, operator.address, refused[0]![1]), true);
    assert.equal(await byRecovery(digest, operator.address, refused[1]![1]), true);
    for (const [name, candidate] of refused)
      assert.equal(await verifyDigest(digest, operator.address, candidate), false, `${name}: ${candidate}`);
  }
});

test("a signature by another key is refused for a known operator", async () => {
  const operator = privateKeyToAccount(generatePrivateKey());
  const impostor = privateKeyToAccount(generatePrivateKey());
  const digest = keccak256(toHex("job"));
  assert.equal(await verifyDigest(digest, operator.address, await operator.sign({ hash: digest })), true);
  assert.equal(await verifyDigest(digest, operator.address, await impostor.sign({ hash: digest })), false);
  assert.equal(await verifyDigest(digest, impostor.address, await operator.sign({ hash: digest })), false);
});

test("a known operator's high-s twin with the same v is refused, as recovery refuses it", async () => {
  const operator = privateKeyToAccount(generatePrivateKey());
  const digest = keccak256(toHex("receipt"));
  const signature = await operator.sign({ hash: digest });
  assert.equal(await verifyDigest(digest, operator.address, signature), true);
  assert.equal(await verifyDigest(digest, operator.address, highSTwin(signature, false)), false);
  assert.equal(await byRecovery(digest, operator.address, highSTwin(signature, false)), false);
});

test("bid, receipt and job spec digests equal viem's hashTypedData, and bad values still throw", () => {
  const domain = cellDomain(31337, "0x5fbdb2315678afecb367f642c40aa3f0e1b1c9a3");
  const word = (text: string) => keccak256(toHex(text));
  const executor = privateKeyToAccount(generatePrivateKey()).address;
  const bid = { jobId: word("job"), executor, pricePerMegaFuel: 2n ** 255n + 7n, expiresAt: 2n ** 64n - 1n };
  assert.equal(
    bidDigest(domain, bid),
    hashTypedData({ domain, types: bidTypes, primaryType: "Bid", message: bid }),
  );
  const receipt = {
    jobId: word("job"),
    executor: executor.toLowerCase() as Hex,
    moduleCid: word("module"),
    inputCid: word("input"),
    outputCid: word("output"),
    fuelUsed: 1234n,
    status: 3,
    startedAt: 1n,
    finishedAt: 0n,
  };
  assert.equal(
    receiptDigest(domain, receipt),
    hashTypedData({ domain, types: receiptTypes, primaryType: "Receipt", message: receipt }),
  );
  const spec = buildJobSpec({
    buyer: executor,
    moduleCid: word("module"),
    inputCid: word("input"),
    maxPricePerMegaFuel: 10n,
    fuelLimit: 1_000_000n,
    entry: "run ✓",
    now: Date.now(),
  });
  assert.equal(
    jobIdOf(domain, spec),
    hashTypedData({ domain, types: jobSpecTypes, primaryType: "JobSpec", message: spec }),
  );
  for (let i = 0; i < 200; i++) {
    const random = { ...bid, pricePerMegaFuel: randomUint(256), expiresAt: i === 0 ? 0n : randomUint(64) };
    assert.equal(
      bidDigest(domain, random),
      hashTypedData({ domain, types: bidTypes, primaryType: "Bid", message: random }),
      `bid ${random.pricePerMegaFuel} ${random.expiresAt}`,
    );
  }
  assert.throws(() => bidDigest(domain, { ...bid, expiresAt: 2n ** 64n }), /uint64|size|range|overflow/i);
  assert.throws(() => bidDigest(domain, { ...bid, executor: miscased(executor) }), /invalid/i);
});

/** A uniformly random integer of up to `bits` bits, often much shorter (random byte length). */
function randomUint(bits: number): bigint {
  const bytes = randomBytes(Math.ceil(Math.random() * (bits / 8)));
  return bytes.length === 0 ? 0n : BigInt(`0x${bytes.toString("hex")}`);
}
