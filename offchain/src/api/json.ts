/**
 * JSON for the wire: bigints as decimal strings, bytes as base64. The node's views
 * carry both (fuel, prices, outputs), and JSON.stringify throws on a bigint.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    function replacer(this: Record<string, unknown>, key: string, converted: unknown) {
      const original = key === "" ? converted : this[key];
      if (typeof original === "bigint") return original.toString();
      if (original instanceof Uint8Array) return Buffer.from(original).toString("base64");
      return converted;
    },
  );
}
