import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { keccak256, toHex, zeroAddress } from "viem";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  SECP256K1_HALF_ORDER,
  SECP256K1_ORDER,
  SignatureSchema,
  canonicalSignature,
  cellDomain,
  signReceipt,
  signatureError,
  verifyDigest,
  verifyReceipt,
} from "../../offchain/src/protocol/index.ts";
import type { Receipt, Signer } from "../../offchain/src/protocol/index.ts";

// The forms of a signature the contracts take (test/contracts/SignatureParity.test.ts compares
// them with the contracts on a chain): what the wire schema refuses, with which message, and
// what signing always produces.

const word = (value: bigint) => value.toString(16).padStart(64, "0");
const R = word(0x1234n);
const LOW_S = word(0x5678n);
const signatureOf = (r: string, s: string, v: string) => `0x${r}${s}${v}`;

function issue(value: unknown): string | undefined {
  const result = SignatureSchema.safeParse(value);
  return result.success ? undefined : result.error.issues.map((entry) => entry.message).join("; ");
}

describe("SignatureSchema", () => {
  it("keeps a 65-byte signature with v 27 or 28 and a low s as it is", () => {
    for (const v of ["1b", "1c"]) {
      const signature = signatureOf(R, LOW_S, v);
      assert.equal(SignatureSchema.parse(signature), signature);
    }
    const highestLowS = signatureOf(R, word(SECP256K1_HALF_ORDER), "1c");
    assert.equal(SignatureSchema.parse(highestLowS), highestLowS);
  });

  it("expands an EIP-2098 signature to its 65-byte form", () => {
    assert.equal(SignatureSchema.parse(`0x${R}${LOW_S}`), signatureOf(R, LOW_S, "1b"));
    const odd = word((1n << 255n) | 0x5678n);
    assert.equal(SignatureSchema.parse(`0x${R}${odd}`), signatureOf(R, LOW_S, "1c"));
  });

  it("refuses what can never verify, naming what is wrong", () => {
    const highS = word(SECP256K1_HALF_ORDER + 1n);
    const cases: [unknown, RegExp][] = [
      [signatureOf(R, LOW_S, "00"), /v must be 27 or 28, got 0/],
      [signatureOf(R, LOW_S, "01"), /v must be 27 or 28, got 1/],
      [signatureOf(R, LOW_S, "1d"), /v must be 27 or 28, got 29/],
      [signatureOf(R, highS, "1b"), /s is above n\/2/],
      [`0x${R}${word((1n << 255n) - 1n)}`, /s is above n\/2/],
      [signatureOf(word(0n), LOW_S, "1b"), /r must be between 1 and n − 1/],
      [signatureOf(word(SECP256K1_ORDER), LOW_S, "1b"), /r must be between 1 and n − 1/],
      [signatureOf(R, word(0n), "1b"), /s must be between 1 and n − 1/],
      [`0x${R}${LOW_S.slice(2)}`, /must be 65 bytes .* or 64 bytes .*got 63 bytes/],
      [`${signatureOf(R, LOW_S, "1b")}00`, /0x \+ 130 hex digits/],
      [`0x${"zz".repeat(65)}`, /0x-prefixed hex/],
      [12, /expected string/],
    ];
    for (const [value, message] of cases) assert.match(issue(value) ?? "accepted", message, String(value));
  });

  it("signatureError agrees with the schema", () => {
    assert.equal(signatureError(signatureOf(R, LOW_S, "1b")), undefined);
    assert.match(signatureError(signatureOf(R, LOW_S, "00")) ?? "", /v must be 27 or 28/);
  });
});

describe("canonicalSignature", () => {
  it("turns v 0/1, a high s and the 64-byte form into the one 65-byte form", () => {
    const canonical = signatureOf(R, LOW_S, "1b");
    const highTwin = signatureOf(R, word(SECP256K1_ORDER - 0x5678n), "1c");
    assert.equal(canonicalSignature(canonical), canonical);
    assert.equal(canonicalSignature(signatureOf(R, LOW_S, "00")), canonical);
    assert.equal(canonicalSignature(highTwin), canonical);
    assert.equal(canonicalSignature(signatureOf(R, word(SECP256K1_ORDER - 0x5678n), "01")), canonical);
    assert.equal(canonicalSignature(`0x${R}${LOW_S}`), canonical);
  });

  it("throws for what has no canonical twin", () => {
    assert.throws(() => canonicalSignature(signatureOf(R, LOW_S, "1d")), /v must be 27 or 28/);
    assert.throws(() => canonicalSignature(signatureOf(R, word(0n), "1b")), /s must be between/);
    assert.throws(() => canonicalSignature("0x1234"), /got 2 bytes/);
  });
});

describe("signing", () => {
  const key = privateKeyToAccount(generatePrivateKey());
  const domain = cellDomain(31337, "0x5fbdb2315678afecb367f642c40aa3f0e1b1c9a3");
  const receipt: Receipt = {
    jobId: keccak256(toHex("job")),
    executor: key.address,
    moduleCid: keccak256(toHex("module")),
    inputCid: keccak256(toHex("input")),
    outputCid: keccak256(toHex("output")),
    fuelUsed: 10n,
    status: 0,
    startedAt: 1n,
    finishedAt: 2n,
  };

  /** The key, but returning its signatures as a lenient wallet might: high s, v 0/1. */
  function malleatingSigner(): Signer {
    return {
      address: key.address,
      signTypedData: key.signTypedData,
      async sign(parameters) {
        const signature = await key.sign(parameters);
        const s = BigInt(`0x${signature.slice(66, 130)}`);
        const yParity = signature.endsWith("1b") ? 0 : 1;
        return `${signature.slice(0, 66)}${word(SECP256K1_ORDER - s)}0${1 - yParity}` as Hex;
      },
    };
  }

  it("always produces the canonical form, whatever form the account returns", async () => {
    const expected = await signReceipt(key, domain, receipt);
    const signature = await signReceipt(malleatingSigner(), domain, receipt);
    assert.equal(signature, expected);
    assert.ok(BigInt(`0x${signature.slice(66, 130)}`) <= SECP256K1_HALF_ORDER);
    assert.match(signature, /(1b|1c)$/);
    assert.equal(await verifyReceipt(domain, receipt, signature), true);
  });

  it("verification answers false, never throws, for a malformed digest, address or signature", async () => {
    const digest = keccak256(toHex("digest"));
    const signature = await key.sign({ hash: digest });
    assert.equal(await verifyDigest(digest, key.address, signature), true);
    assert.equal(await verifyDigest(digest.slice(0, 64) as Hex, key.address, signature), false);
    assert.equal(await verifyDigest(digest, "0x1234", signature), false);
    assert.equal(await verifyDigest(digest, zeroAddress, signature), false);
    assert.equal(await verifyDigest(digest, key.address, "0x" as Hex), false);
  });
});
