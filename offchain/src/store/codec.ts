import { getAddress, type Address, type Hex } from "viem";

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** JSON text with every bigint written as a decimal string; rejects what JSON cannot hold. */
export function encodeJson(value: unknown, field: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, (key, inner: unknown) => {
      if (typeof inner === "bigint") return inner.toString();
      if (inner instanceof Uint8Array) throw new Error(`'${key}' is bytes; encode it as hex or base64 first`);
      return inner;
    });
  } catch (error) {
    throw new Error(`${field} is not JSON-serialisable: ${(error as Error).message}`, { cause: error });
  }
  if (text === undefined) throw new Error(`${field} is not JSON-serialisable`);
  return text;
}

export function decodeJson(text: string): JsonValue {
  return JSON.parse(text) as JsonValue;
}

export function decodeJsonOrNull(text: unknown): JsonValue | null {
  return typeof text === "string" ? decodeJson(text) : null;
}

export function requireText(value: unknown, field: string, maxLength = 1024): string {
  if (typeof value !== "string" || value.length === 0) throw new Error(`${field} must be a non-empty string`);
  if (value.length > maxLength)
    throw new Error(`${field} is ${value.length} characters, more than ${maxLength}`);
  return value;
}

export function optionalText(value: unknown, field: string, maxLength = 4096): string | null {
  return value === undefined || value === null ? null : requireText(value, field, maxLength);
}

export function requireTimestamp(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${field} must be a non-negative integer of milliseconds, got ${String(value)}`);
  }
  return value;
}

export function optionalTimestamp(value: unknown, field: string): number | null {
  return value === undefined || value === null ? null : requireTimestamp(value, field);
}

export function requireAddress(value: unknown, field: string): Address {
  try {
    return getAddress(requireText(value, field, 42));
  } catch {
    throw new Error(`${field} '${String(value).slice(0, 64)}' is not a 20-byte hex address`);
  }
}

export function requireHex(value: unknown, field: string, maxBytes = 4096): Hex {
  const text = requireText(value, field, 2 + maxBytes * 2);
  if (!/^0x([0-9a-fA-F]{2})*$/.test(text)) throw new Error(`${field} must be 0x-prefixed hex bytes`);
  return text as Hex;
}

export function requireUint(value: unknown, field: string): bigint {
  if (typeof value !== "bigint" || value < 0n)
    throw new Error(`${field} must be a non-negative bigint, got ${typeof value}`);
  return value;
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  if (!allowed.includes(value as T))
    throw new Error(`${field} must be one of ${allowed.join(", ")}, got '${String(value)}'`);
  return value as T;
}

/** A row as node:sqlite returns it. */
export type SqlRow = Record<string, unknown>;

export function str(row: SqlRow, column: string): string {
  return row[column] as string;
}

export function num(row: SqlRow, column: string): number {
  return row[column] as number;
}

export function strOrNull(row: SqlRow, column: string): string | null {
  return (row[column] as string | null) ?? null;
}

export function numOrNull(row: SqlRow, column: string): number | null {
  return (row[column] as number | null) ?? null;
}
