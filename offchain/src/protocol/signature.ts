import type { Hex } from "viem";

/**
 * The secp256k1 signatures the contracts accept, and nothing else: what `CellTypes.signerOf`
 * (OpenZeppelin ECDSA) and the EIP-2098 settlement batch of PaymentChannels take.
 *
 * - 65 bytes `r ‖ s ‖ v` with v = 27 or 28 (ecrecover refuses 0 and 1), or
 * - 64 bytes `r ‖ vs` (EIP-2098), where the top bit of vs is the y parity and the rest is s;
 * - 0 < r < n and 0 < s ≤ n/2: a high s is the malleated twin of a valid signature, which
 *   OpenZeppelin refuses, so a node that accepted it would hold evidence no contract takes.
 */

/** The order n of secp256k1's group. */
export const SECP256K1_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
/** n / 2, the largest s the contracts accept (OpenZeppelin ECDSA, PaymentChannels' HALF_CURVE_ORDER). */
export const SECP256K1_HALF_ORDER = SECP256K1_ORDER >> 1n;

const LOW_255_BITS = (1n << 255n) - 1n;
const HEX = /^0x[0-9a-fA-F]*$/;

/** A signature's scalars, in the form the contracts recover from. */
export interface SignatureParts {
  r: bigint;
  s: bigint;
  yParity: 0 | 1;
}

type Parsed = { parts: SignatureParts } | { error: string };

/** Why the contracts would refuse `signature` whatever it signed, or undefined when its form is valid. */
export function signatureError(signature: string): string | undefined {
  const parsed = parse(signature, { strict: true });
  return "error" in parsed ? parsed.error : undefined;
}

/** The scalars of a signature the contracts accept; throws naming what is wrong otherwise. */
export function signatureParts(signature: string): SignatureParts {
  const parsed = parse(signature, { strict: true });
  if ("error" in parsed) throw new Error(parsed.error);
  return parsed.parts;
}

/**
 * The 65-byte form (v = 27 or 28, low s) of a signature that signs the same digest with the
 * same key: a 64-byte one is expanded, v = 0 or 1 becomes 27 or 28, a high s becomes n − s with
 * the other parity. A signature already in that form is returned as it is. Throws when no
 * canonical twin exists (bad length, r or s out of range).
 */
export function canonicalSignature(signature: string): Hex {
  const parsed = parse(signature, { strict: false });
  if ("error" in parsed) throw new Error(parsed.error);
  const { r, s, yParity } = parsed.parts;
  const canonical = signatureFromParts(
    s > SECP256K1_HALF_ORDER ? { r, s: SECP256K1_ORDER - s, yParity: yParity === 0 ? 1 : 0 } : parsed.parts,
  );
  return canonical === signature.toLowerCase() ? (signature as Hex) : canonical;
}

/** The 65-byte `r ‖ s ‖ v` encoding, v = 27 + yParity. */
export function signatureFromParts({ r, s, yParity }: SignatureParts): Hex {
  return `0x${word(r)}${word(s)}${yParity === 0 ? "1b" : "1c"}`;
}

/** The 64-byte EIP-2098 encoding `r ‖ (yParity << 255 | s)`; s must be low. */
export function eip2098Parts({ r, s, yParity }: SignatureParts): { r: Hex; vs: Hex } {
  if (s > SECP256K1_HALF_ORDER) throw new Error("a high-s signature has no EIP-2098 form");
  return { r: `0x${word(r)}`, vs: `0x${word((BigInt(yParity) << 255n) | s)}` };
}

/**
 * Strict parsing takes only what the contracts take; lenient parsing (for repairing what a
 * signer returned) also takes v = 0 or 1 and a high s.
 */
function parse(signature: string, { strict }: { strict: boolean }): Parsed {
  if (typeof signature !== "string" || !HEX.test(signature))
    return { error: "signature must be 0x-prefixed hex" };
  const digits = signature.length - 2;
  if (digits !== 130 && digits !== 128)
    return {
      error: `signature must be 65 bytes (r, s, v) or 64 bytes (EIP-2098 r, vs), got ${digits / 2} bytes`,
    };
  const r = BigInt(`0x${signature.slice(2, 66)}`);
  let s: bigint;
  let yParity: 0 | 1;
  if (digits === 128) {
    const vs = BigInt(`0x${signature.slice(66, 130)}`);
    s = vs & LOW_255_BITS;
    yParity = vs >> 255n === 0n ? 0 : 1;
  } else {
    s = BigInt(`0x${signature.slice(66, 130)}`);
    const v = Number.parseInt(signature.slice(130), 16);
    const lenientV = v === 0 || v === 1;
    if (v !== 27 && v !== 28 && (strict || !lenientV))
      return { error: `signature v must be 27 or 28, got ${v}` };
    yParity = v === 27 || v === 0 ? 0 : 1;
  }
  if (r === 0n || r >= SECP256K1_ORDER) return { error: "signature r must be between 1 and n − 1" };
  if (s === 0n || s >= SECP256K1_ORDER) return { error: "signature s must be between 1 and n − 1" };
  if (strict && s > SECP256K1_HALF_ORDER)
    return { error: "signature s is above n/2 (a malleated twin: the contracts accept only low s)" };
  return { parts: { r, s, yParity } };
}

function word(value: bigint): string {
  return value.toString(16).padStart(64, "0");
}
