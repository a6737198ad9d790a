// A small WebAssembly binary reader and writer: just enough structure for the policy
// check and the fuel instrumentation, which both work on the binary directly.

/** Raised for any input the runtime refuses; `reason` names what was wrong. */
export class PolicyError extends Error {
  override readonly name = "PolicyError";
}

export const SectionId = {
  custom: 0,
  type: 1,
  import: 2,
  function: 3,
  table: 4,
  memory: 5,
  global: 6,
  export: 7,
  start: 8,
  element: 9,
  code: 10,
  data: 11,
  dataCount: 12,
  tag: 13,
} as const;

export const ValType = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c } as const;

export class Reader {
  readonly bytes: Uint8Array;
  offset: number;
  readonly end: number;

  constructor(bytes: Uint8Array, offset = 0, end = bytes.length) {
    this.bytes = bytes;
    this.offset = offset;
    this.end = end;
  }

  get done(): boolean {
    return this.offset >= this.end;
  }

  fail(what: string): never {
    throw new PolicyError(`malformed module at byte ${this.offset}: ${what}`);
  }

  byte(): number {
    if (this.offset >= this.end) this.fail("unexpected end");
    return this.bytes[this.offset++]!;
  }

  skip(count: number): void {
    if (count < 0 || this.offset + count > this.end) this.fail("unexpected end");
    this.offset += count;
  }

  slice(count: number): Uint8Array {
    const start = this.offset;
    this.skip(count);
    return this.bytes.subarray(start, this.offset);
  }

  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      if (shift === 28 && byte > 0x0f) this.fail("u32 out of range");
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
    }
  }

  /** Skips a signed LEB128 of at most `bits` bits. */
  skipSigned(bits: number): void {
    const maxBytes = Math.ceil(bits / 7);
    for (let index = 0; index < maxBytes; index++) {
      if ((this.byte() & 0x80) === 0) return;
    }
    this.fail(`s${bits} too long`);
  }

  name(): string {
    const length = this.u32();
    return new TextDecoder("utf-8", { fatal: true }).decode(this.slice(length));
  }
}

export interface Section {
  id: number;
  /** Payload bounds inside the module bytes. */
  start: number;
  end: number;
}

export function readSections(bytes: Uint8Array): Section[] {
  const reader = new Reader(bytes);
  const magic = reader.slice(8);
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  if (!header.every((value, index) => magic[index] === value)) {
    throw new PolicyError("not a WebAssembly 1.0 binary module (bad magic or version)");
  }
  const sections: Section[] = [];
  while (!reader.done) {
    const id = reader.byte();
    const size = reader.u32();
    const start = reader.offset;
    reader.skip(size);
    sections.push({ id, start, end: start + size });
  }
  return sections;
}

// ---------------------------------------------------------------------------------
// Writer

export class Writer {
  private chunks: number[] = [];

  byte(value: number): this {
    this.chunks.push(value & 0xff);
    return this;
  }

  bytes(values: ArrayLike<number>): this {
    for (let index = 0; index < values.length; index++) this.chunks.push(values[index]! & 0xff);
    return this;
  }

  u32(value: number): this {
    let rest = value >>> 0;
    do {
      let byte = rest & 0x7f;
      rest >>>= 7;
      if (rest !== 0) byte |= 0x80;
      this.chunks.push(byte);
    } while (rest !== 0);
    return this;
  }

  s32(value: number): this {
    return this.signed(BigInt(value | 0));
  }

  s64(value: bigint): this {
    return this.signed(BigInt.asIntN(64, value));
  }

  private signed(value: bigint): this {
    let rest = value;
    for (;;) {
      const byte = Number(rest & 0x7fn);
      rest >>= 7n;
      const signBit = (byte & 0x40) !== 0;
      if ((rest === 0n && !signBit) || (rest === -1n && signBit)) {
        this.chunks.push(byte);
        return this;
      }
      this.chunks.push(byte | 0x80);
    }
  }

  name(text: string): this {
    const encoded = new TextEncoder().encode(text);
    return this.u32(encoded.length).bytes(encoded);
  }

  get length(): number {
    return this.chunks.length;
  }

  toBytes(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

export function sectionBytes(id: number, payload: Uint8Array): Uint8Array {
  const header = new Writer().byte(id).u32(payload.length).toBytes();
  const out = new Uint8Array(header.length + payload.length);
  out.set(header);
  out.set(payload, header.length);
  return out;
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
