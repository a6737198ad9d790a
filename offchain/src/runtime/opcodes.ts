import { PolicyError, type Reader } from "./wasm-binary.ts";

// The instruction set a job may use: WebAssembly 1.0 plus sign extension, saturating
// float-to-int, bulk memory and multi-value. Everything else is refused by name.

export const Op = {
  unreachable: 0x00,
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  brTable: 0x0e,
  return: 0x0f,
  call: 0x10,
  callIndirect: 0x11,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  globalGet: 0x23,
  globalSet: 0x24,
  f32Load: 0x2a,
  f64Load: 0x2b,
  f32Store: 0x38,
  f64Store: 0x39,
  memoryGrow: 0x40,
  i32Const: 0x41,
  i64Const: 0x42,
  f32Const: 0x43,
  f64Const: 0x44,
  i32LtS: 0x48,
  i64LtS: 0x53,
  f32Eq: 0x5b,
  f64Eq: 0x61,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i64Sub: 0x7d,
  i64Mul: 0x7e,
  f32Copysign: 0x98,
  f64Copysign: 0xa6,
  i32ReinterpretF32: 0xbc,
  i64ReinterpretF64: 0xbd,
  i64ExtendI32U: 0xad,
  select: 0x1b,
  drop: 0x1a,
  // 0xfc-prefixed operations are numbered 0xfc00 + sub-opcode.
  memoryInit: 0xfc08,
  memoryCopy: 0xfc0a,
  memoryFill: 0xfc0b,
  tableInit: 0xfc0c,
  tableCopy: 0xfc0e,
} as const;

export interface Instruction {
  op: number;
  /** Function index for `call`, type index for `call_indirect`, label depth for branches,
   * block type for blocks (see readBlockType). */
  immediate: number;
}

const refused = (feature: string, opcode: string): never => {
  throw new PolicyError(`${feature} not allowed (opcode ${opcode})`);
};

const hex = (value: number) => `0x${value.toString(16).padStart(2, "0")}`;

/** Reads one instruction, checking it is in the allowed set. */
export function readInstruction(reader: Reader): Instruction {
  const opcode = reader.byte();
  if (opcode <= 0x1f) return readControl(reader, opcode);
  if (opcode >= 0x20 && opcode <= 0x24) return { op: opcode, immediate: reader.u32() };
  if (opcode === 0x25 || opcode === 0x26) return refused("reference types", hex(opcode));
  if (opcode >= 0x28 && opcode <= 0x3e) {
    readMemArg(reader);
    return { op: opcode, immediate: 0 };
  }
  if (opcode === 0x3f || opcode === 0x40) {
    readMemoryIndex(reader);
    return { op: opcode, immediate: 0 };
  }
  if (opcode === 0x41) return (reader.skipSigned(32), { op: opcode, immediate: 0 });
  if (opcode === 0x42) return (reader.skipSigned(64), { op: opcode, immediate: 0 });
  if (opcode === 0x43) return (reader.skip(4), { op: opcode, immediate: 0 });
  if (opcode === 0x44) return (reader.skip(8), { op: opcode, immediate: 0 });
  if (opcode >= 0x45 && opcode <= 0xc4) return { op: opcode, immediate: 0 };
  if (opcode >= 0xd0 && opcode <= 0xd6) return refused("reference types / GC", hex(opcode));
  if (opcode === 0xfb) return refused("garbage collection (GC)", "0xfb prefix");
  if (opcode === 0xfc) return readMisc(reader);
  if (opcode === 0xfd) {
    const sub = reader.u32();
    return sub >= 0x100 && sub <= 0x113
      ? refused("relaxed SIMD", `0xfd ${sub}`)
      : refused("SIMD", `0xfd ${sub}`);
  }
  if (opcode === 0xfe) return refused("threads (atomics)", "0xfe prefix");
  throw new PolicyError(`unknown opcode ${hex(opcode)}`);
}

function readControl(reader: Reader, opcode: number): Instruction {
  switch (opcode) {
    case 0x00:
    case 0x01:
    case 0x05:
    case 0x0b:
    case 0x0f:
    case 0x1a:
    case 0x1b:
      return { op: opcode, immediate: 0 };
    case 0x02:
    case 0x03:
    case 0x04:
      return { op: opcode, immediate: readBlockType(reader) };
    case 0x0c:
    case 0x0d:
      return { op: opcode, immediate: reader.u32() };
    case 0x0e: {
      const count = reader.u32();
      for (let index = 0; index <= count; index++) reader.u32();
      return { op: opcode, immediate: 0 };
    }
    case 0x10:
      return { op: opcode, immediate: reader.u32() };
    case 0x11: {
      const typeIndex = reader.u32();
      if (reader.u32() !== 0) refused("reference types (multiple tables)", "0x11");
      return { op: opcode, immediate: typeIndex };
    }
    case 0x06:
    case 0x07:
    case 0x08:
    case 0x09:
    case 0x0a:
    case 0x18:
    case 0x19:
    case 0x1f:
      return refused("exception handling", hex(opcode));
    case 0x12:
    case 0x13:
      return refused("tail calls", hex(opcode));
    case 0x14:
    case 0x15:
      return refused("typed function references", hex(opcode));
    case 0x1c:
      return refused("reference types (typed select)", "0x1c");
    default:
      throw new PolicyError(`unknown opcode ${hex(opcode)}`);
  }
}

/**
 * Block types: 0x40 (empty) or a value type come back negated (-0x40, -0x7f…); a type
 * index (multi-value) comes back as itself.
 */
function readBlockType(reader: Reader): number {
  const first = reader.bytes[reader.offset];
  if (first === 0x40 || first === 0x7f || first === 0x7e || first === 0x7d || first === 0x7c) {
    return -reader.byte();
  }
  if (first === 0x7b) refused("SIMD", "v128 block type");
  if (first !== undefined && first >= 0x40 && first < 0x80) {
    refused("reference types / GC", `block type ${hex(first)}`);
  }
  // A non-negative s33 reads the same as an unsigned LEB128.
  return reader.u32();
}

function readMemArg(reader: Reader): void {
  const align = reader.u32();
  if (align & 0x40) refused("multiple memories", "memarg");
  reader.u32();
}

function readMemoryIndex(reader: Reader): void {
  if (reader.u32() !== 0) refused("multiple memories", "memory index");
}

function readMisc(reader: Reader): Instruction {
  const sub = reader.u32();
  const op = 0xfc00 + sub;
  if (sub <= 7) return { op, immediate: 0 };
  switch (sub) {
    case 8:
      reader.u32();
      readMemoryIndex(reader);
      return { op, immediate: 0 };
    case 9:
      reader.u32();
      return { op, immediate: 0 };
    case 10:
      readMemoryIndex(reader);
      readMemoryIndex(reader);
      return { op, immediate: 0 };
    case 11:
      readMemoryIndex(reader);
      return { op, immediate: 0 };
    case 12:
      reader.u32();
      if (reader.u32() !== 0) refused("reference types (multiple tables)", "table.init");
      return { op, immediate: 0 };
    case 13:
      reader.u32();
      return { op, immediate: 0 };
    case 14:
      if (reader.u32() !== 0 || reader.u32() !== 0)
        refused("reference types (multiple tables)", "table.copy");
      return { op, immediate: 0 };
    case 15:
    case 16:
    case 17:
      return refused("reference types (table.grow/size/fill)", `0xfc ${sub}`);
    default:
      return refused("an unknown extension", `0xfc ${sub}`);
  }
}
