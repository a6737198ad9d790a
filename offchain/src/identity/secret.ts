import { inspect } from "node:util";

const REDACTED = "[redacted]";

/**
 * Key material that refuses to be printed: JSON, `util.inspect`, `String()` and template
 * strings all show `[redacted]`, so a key handed to a logger or an error never leaks.
 * It is still a plain Uint8Array for every library that reads the bytes.
 */
export class SecretBytes extends Uint8Array {
  static of32(bytes: Uint8Array): SecretBytes {
    if (bytes.length !== 32) throw new Error(`expected 32 secret bytes, got ${bytes.length}`);
    const secret = new SecretBytes(32);
    secret.set(bytes);
    return secret;
  }

  toJSON(): string {
    return REDACTED;
  }

  override toString(): string {
    return REDACTED;
  }

  override toLocaleString(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `SecretBytes(${this.length}) ${REDACTED}`;
  }
}

export { REDACTED };
