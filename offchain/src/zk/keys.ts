import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import { writePrivateFile } from "../identity/index.ts";
import { hash3 } from "./poseidon.ts";

type EddsaPoseidon = typeof import("@zk-kit/eddsa-poseidon");
let eddsaModule: EddsaPoseidon | undefined;

/**
 * The package's ESM entry imports named exports from a CommonJS dependency, which Node refuses;
 * its CommonJS build is the same code. Loaded on first use: a node without zk never needs it.
 */
function eddsa(): EddsaPoseidon {
  eddsaModule ??= createRequire(import.meta.url)("@zk-kit/eddsa-poseidon") as EddsaPoseidon;
  return eddsaModule;
}

export const SETTLEMENT_KEY_FILE = "settlement.key";

/** A BabyJubJub EdDSA-Poseidon signature as the circuit takes it. */
export interface ZkSignature {
  r8x: bigint;
  r8y: bigint;
  s: bigint;
}

export interface ZkPublicKey {
  ax: bigint;
  ay: bigint;
}

/** The zk voucher message H3(domainTag, leaf, cumulative) (docs/zk.md, "Voucher"). */
export function zkVoucherMessage(domainTag: bigint, leaf: number, cumulative: bigint): bigint {
  return hash3(domainTag, BigInt(leaf), cumulative);
}

/** The settlement key: 32 secret bytes; signs zk vouchers only. */
export class SettlementKey {
  readonly #secret: Uint8Array;
  readonly publicKey: ZkPublicKey;

  constructor(secret: Uint8Array) {
    if (secret.length !== 32) throw new RangeError(`a settlement key is 32 bytes, not ${secret.length}`);
    this.#secret = Uint8Array.from(secret);
    const [ax, ay] = eddsa().derivePublicKey(Buffer.from(this.#secret));
    this.publicKey = { ax, ay };
  }

  static generate(): SettlementKey {
    return new SettlementKey(randomBytes(32));
  }

  /** Loads `settlement.key` from a data directory, creating it (mode 0600) on first use. */
  static async loadOrCreate(dataDir: string): Promise<SettlementKey> {
    const file = join(dataDir, SETTLEMENT_KEY_FILE);
    if (existsSync(file)) return new SettlementKey(Buffer.from(readFileSync(file, "utf8").trim(), "hex"));
    const key = SettlementKey.generate();
    await writePrivateFile(file, `${Buffer.from(key.#secret).toString("hex")}\n`);
    return key;
  }

  sign(message: bigint): ZkSignature {
    const { R8, S } = eddsa().signMessage(Buffer.from(this.#secret), message);
    return { r8x: R8[0], r8y: R8[1], s: S };
  }
}

export function verifyZkSignature(message: bigint, signature: ZkSignature, key: ZkPublicKey): boolean {
  try {
    return eddsa().verifySignature(message, { R8: [signature.r8x, signature.r8y], S: signature.s }, [
      key.ax,
      key.ay,
    ]);
  } catch {
    return false;
  }
}
