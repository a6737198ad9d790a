import { Op } from "./opcodes.ts";

// The fuel schedule. Every donor must use the same numbers: changing any of them changes
// `fuelUsed` and so the result's identity.

/** Static cost of one instruction. */
export function instructionCost(op: number): number {
  switch (op) {
    case Op.call:
      return 4;
    case Op.callIndirect:
      return 6;
    case Op.memoryGrow:
      return 8;
    case 0x6d: // i32.div_s
    case 0x6e: // i32.div_u
    case 0x6f: // i32.rem_s
    case 0x70: // i32.rem_u
    case 0x7f: // i64.div_s
    case 0x80: // i64.div_u
    case 0x81: // i64.rem_s
    case 0x82: // i64.rem_u
    case 0x91: // f32.sqrt
    case 0x95: // f32.div
    case 0x9f: // f64.sqrt
    case 0xa3: // f64.div
      return 4;
    default:
      return 1;
  }
}

/** memory.grow: fuel per requested 64 KiB page (zeroing it is real work). */
export const FUEL_PER_PAGE = 16_384n;
/** memory.fill/copy/init and table.init/copy: one fuel per 2^3 bytes or elements. */
export const BULK_SHIFT = 3n;
/** Every host (WASI) call costs this much before any bytes move. */
export const FUEL_PER_HOST_CALL = 64n;
/** Bytes read or written by a host call: one fuel per byte. */
export const FUEL_PER_HOST_BYTE = 1n;

/**
 * Call depth budget: each frame of a function that calls others takes
 * 64 + 16 × (params + locals + its maximum operand-stack height) units.
 */
export const STACK_BUDGET = 1 << 20;

export function frameCost(paramsAndLocals: number, maxStackHeight: number): number {
  return 64 + 16 * (paramsAndLocals + maxStackHeight);
}
