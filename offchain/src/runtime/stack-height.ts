import { Op } from "./opcodes.ts";
import type { FuncType } from "./policy.ts";

// Maximum operand-stack height of a function body, so that the call-depth budget charges
// what a frame can really hold, not just its locals.

interface Frame {
  /** Stack height below the block's own values. */
  base: number;
  params: number;
  results: number;
}

/** [values popped, values pushed] of the plain (non-control) instructions. */
function plainEffect(op: number): [number, number] {
  if (op === Op.drop || op === Op.localSet || op === Op.globalSet) return [1, 0];
  if (op === Op.select) return [3, 1];
  if (op === Op.localGet || op === Op.globalGet) return [0, 1];
  if (op === Op.localTee) return [1, 1];
  if (op >= 0x28 && op <= 0x35) return [1, 1]; // loads
  if (op >= 0x36 && op <= 0x3e) return [2, 0]; // stores
  if (op === 0x3f) return [0, 1]; // memory.size
  if (op === Op.memoryGrow) return [1, 1];
  if (op >= Op.i32Const && op <= Op.f64Const) return [0, 1];
  if (op === 0x45 || op === 0x50) return [1, 1]; // eqz
  if ((op >= 0x46 && op <= 0x4f) || (op >= 0x51 && op <= 0x66)) return [2, 1]; // comparisons
  if ((op >= 0x67 && op <= 0x69) || (op >= 0x79 && op <= 0x7b)) return [1, 1]; // clz, ctz, popcnt
  if ((op >= 0x8b && op <= 0x91) || (op >= 0x99 && op <= 0x9f)) return [1, 1]; // float unary
  if (op >= 0x6a && op <= 0xa6) return [2, 1]; // binary arithmetic
  if (op >= 0xa7 && op <= 0xc4) return [1, 1]; // conversions, sign extension
  if (op >= 0xfc00 && op <= 0xfc07) return [1, 1]; // saturating truncation
  if (op === 0xfc09 || op === 0xfc0d) return [0, 0]; // data.drop, elem.drop
  if (op >= 0xfc08 && op <= 0xfc0e) return [3, 0]; // memory/table init, copy, fill
  return [0, 0];
}

export interface StackContext {
  types: FuncType[];
  /** Type of every function, imported ones first. */
  functionType: (index: number) => FuncType;
}

/** Tracks operand-stack heights instruction by instruction; `max` is the answer. */
export class StackHeight {
  max = 0;
  private height = 0;
  private readonly frames: Frame[];
  private readonly context: StackContext;

  constructor(context: StackContext, results: number) {
    this.context = context;
    this.frames = [{ base: 0, params: 0, results }];
  }

  step(op: number, immediate: number): void {
    switch (op) {
      case Op.block:
      case Op.loop:
      case Op.if:
        return this.enter(op === Op.if ? 1 : 0, immediate);
      case Op.else:
        return this.resetTo(this.top().base + this.top().params);
      case Op.end: {
        const frame = this.frames.pop()!;
        return this.resetTo(frame.base + frame.results);
      }
      case Op.unreachable:
      case Op.br:
      case Op.brTable:
      case Op.return:
        return this.resetTo(this.top().base);
      case Op.brIf:
        return this.apply(1, 0);
      case Op.call: {
        const type = this.context.functionType(immediate);
        return this.apply(type.params.length, type.results.length);
      }
      case Op.callIndirect: {
        const type = this.context.types[immediate]!;
        return this.apply(type.params.length + 1, type.results.length);
      }
      default: {
        const [pops, pushes] = plainEffect(op);
        return this.apply(pops, pushes);
      }
    }
  }

  private top(): Frame {
    return this.frames[this.frames.length - 1]!;
  }

  private enter(condition: number, blockType: number): void {
    this.apply(condition, 0);
    const type = blockType >= 0 ? this.context.types[blockType]! : undefined;
    const params = type ? type.params.length : 0;
    const results = type ? type.results.length : blockType === -0x40 ? 0 : 1;
    this.frames.push({ base: Math.max(0, this.height - params), params, results });
  }

  private apply(pops: number, pushes: number): void {
    // After an unconditional branch the stack is polymorphic: never below the block base.
    this.height = Math.max(this.top().base, this.height - pops) + pushes;
    this.max = Math.max(this.max, this.height);
  }

  private resetTo(height: number): void {
    this.height = height;
    this.max = Math.max(this.max, height);
  }
}
