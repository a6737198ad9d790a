import { MeshError } from "./errors.ts";

/**
 * The part of a zod schema the mesh needs. Any zod 3 or zod 4 schema fits, so message
 * schemas stay with the domains that own them.
 */
export interface Schema<T> {
  safeParse(data: unknown):
    | { success: true; data: T }
    | {
        success: false;
        error: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> };
      };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Serializes a message as JSON after checking it against its schema and size bound. */
export function encodeMessage<T>(schema: Schema<T>, message: T, maxBytes: number, what: string): Uint8Array {
  const checked = parseWith(schema, message, what);
  const bytes = encoder.encode(JSON.stringify(checked));
  if (bytes.byteLength > maxBytes)
    throw new MeshError("too_large", `${what} is ${bytes.byteLength} bytes, limit ${maxBytes}`);
  return bytes;
}

/** Parses untrusted bytes: size bound first, then UTF-8 JSON, then the schema. */
export function decodeMessage<T>(schema: Schema<T>, bytes: Uint8Array, maxBytes: number, what: string): T {
  if (bytes.byteLength > maxBytes)
    throw new MeshError("too_large", `${what} is ${bytes.byteLength} bytes, limit ${maxBytes}`);
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(bytes));
  } catch (err) {
    throw new MeshError("malformed", `${what} is not UTF-8 JSON: ${(err as Error).message}`);
  }
  return parseWith(schema, json, what);
}

export function parseWith<T>(schema: Schema<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.map(String).join(".") || "(root)"}: ${issue.message}`)
    .join("; ");
  throw new MeshError("malformed", `${what} does not match its schema: ${issues}`);
}
