import { BULK_SHIFT, FUEL_PER_PAGE, STACK_BUDGET, frameCost, instructionCost } from "./costs.ts";
import { Op, readInstruction } from "./opcodes.ts";
import { analyzeModule, type FuncType, type ModuleInfo } from "./policy.ts";
import { StackHeight, type StackContext } from "./stack-height.ts";
import { Reader, SectionId, ValType, Writer, concatBytes, sectionBytes } from "./wasm-binary.ts";

/**
 * Where fuel lives while a function runs. "global": every charge reads and writes the
 * fuel global. "local": fuel is kept in a local and written back only around calls and
 * at exits. "auto" (the default): "local" in functions that loop, "global" in the others,
 * where a local only adds the write-backs. The fuel charged is the same in every mode.
 */
export type FuelMode = "auto" | "local" | "global";

export interface InstrumentOptions {
  fuelMode?: FuelMode;
}

/** Names the instrumented module imports and exports. */
export const Instrumented = {
  memoryModule: "cell",
  memoryName: "memory",
  fuelExport: "__cell_fuel",
  stackExport: "__cell_sp",
  startExport: "__cell_start",
} as const;

export interface InstrumentedModule {
  bytes: Uint8Array;
  /** The memory the module declared; the host creates it (maximum = the job's cap). */
  memory?: { initial: number; maximum?: number };
  hasStart: boolean;
  /** Names of exported functions, to check the entry point exists. */
  functionExports: string[];
}

const F32_CANONICAL_NAN = [0x00, 0x00, 0xc0, 0x7f];
const F64_CANONICAL_NAN = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x7f];
const SECTION_ORDER = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 10, 11];
const EXPORT_FUNCTION = 0;
const EXPORT_GLOBAL = 3;

/**
 * Adds deterministic fuel metering, call-depth limits and NaN canonicalization to a
 * module that passed the policy check, and turns its memory into an import so the host
 * owns it. Pure: the same bytes always give the same output.
 */
export function instrument(bytes: Uint8Array, options: InstrumentOptions = {}): InstrumentedModule {
  const info = analyzeModule(bytes);
  return instrumentAnalyzed(bytes, info, options.fuelMode ?? "auto");
}

export function instrumentAnalyzed(bytes: Uint8Array, info: ModuleInfo, mode: FuelMode): InstrumentedModule {
  const types = [...info.types];
  const fuelGlobal = info.definedGlobals;
  const stackGlobal = info.definedGlobals + 1;
  const payloads = new Map<number, Uint8Array>();
  for (const section of info.sections) {
    if (section.id !== SectionId.custom) payloads.set(section.id, bytes.subarray(section.start, section.end));
  }
  const code = payloads.get(SectionId.code);
  if (code) {
    const context: CodeContext = { info, types, mode, fuelGlobal, stackGlobal };
    payloads.set(SectionId.code, rewriteCode(code, context));
  }
  payloads.set(SectionId.type, writeTypes(types));
  if (info.memory) {
    payloads.set(SectionId.import, appendMemoryImport(payloads.get(SectionId.import), info.memory.initial));
    payloads.delete(SectionId.memory);
  }
  payloads.set(SectionId.global, appendGlobals(payloads.get(SectionId.global)));
  payloads.set(
    SectionId.export,
    appendExports(payloads.get(SectionId.export), info, fuelGlobal, stackGlobal),
  );
  payloads.delete(SectionId.start);
  const parts = SECTION_ORDER.flatMap((id) => {
    const payload = payloads.get(id);
    return payload ? [sectionBytes(id, payload)] : [];
  });
  return {
    bytes: concatBytes([Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00), ...parts]),
    ...(info.memory ? { memory: info.memory } : {}),
    hasStart: info.start !== undefined,
    functionExports: info.exports
      .filter((entry) => entry.kind === EXPORT_FUNCTION)
      .map((entry) => entry.name),
  };
}

// ---------------------------------------------------------------------------------
// Module-level sections

function writeTypes(types: FuncType[]): Uint8Array {
  const writer = new Writer().u32(types.length);
  for (const type of types) {
    writer.byte(0x60).u32(type.params.length).bytes(type.params).u32(type.results.length).bytes(type.results);
  }
  return writer.toBytes();
}

/** Appends entries to a vector section, keeping its existing entries byte for byte. */
function appendToVector(existing: Uint8Array | undefined, count: number, entries: Writer): Uint8Array {
  let oldCount = 0;
  let body: Uint8Array = new Uint8Array(0);
  if (existing) {
    const reader = new Reader(existing);
    oldCount = reader.u32();
    body = existing.subarray(reader.offset);
  }
  const header = new Writer().u32(oldCount + count).toBytes();
  return concatBytes([header, body, entries.toBytes()]);
}

function appendMemoryImport(existing: Uint8Array | undefined, initial: number): Uint8Array {
  const entry = new Writer().name(Instrumented.memoryModule).name(Instrumented.memoryName).byte(0x02);
  entry.byte(0x00).u32(initial);
  return appendToVector(existing, 1, entry);
}

function appendGlobals(existing: Uint8Array | undefined): Uint8Array {
  const entries = new Writer();
  entries.byte(ValType.i64).byte(0x01).byte(Op.i64Const).s64(0n).byte(Op.end);
  entries.byte(ValType.i32).byte(0x01).byte(Op.i32Const).s32(STACK_BUDGET).byte(Op.end);
  return appendToVector(existing, 2, entries);
}

function appendExports(
  existing: Uint8Array | undefined,
  info: ModuleInfo,
  fuel: number,
  stack: number,
): Uint8Array {
  const entries = new Writer();
  entries.name(Instrumented.fuelExport).byte(EXPORT_GLOBAL).u32(fuel);
  entries.name(Instrumented.stackExport).byte(EXPORT_GLOBAL).u32(stack);
  let count = 2;
  if (info.start !== undefined) {
    entries.name(Instrumented.startExport).byte(EXPORT_FUNCTION).u32(info.start);
    count++;
  }
  return appendToVector(existing, count, entries);
}

// ---------------------------------------------------------------------------------
// Function bodies

interface CodeContext {
  info: ModuleInfo;
  /** Grows when a multi-value function needs a block type. */
  types: FuncType[];
  mode: FuelMode;
  fuelGlobal: number;
  stackGlobal: number;
}

function rewriteCode(code: Uint8Array, context: CodeContext): Uint8Array {
  const reader = new Reader(code);
  const count = reader.u32();
  const out = new Writer().u32(count);
  for (let index = 0; index < count; index++) {
    const size = reader.u32();
    const typeIndex = context.info.functionTypes[index];
    const type = typeIndex === undefined ? undefined : context.info.types[typeIndex];
    if (!type) throw new Error(`function ${index} has no type`);
    const body = rewriteBody(new Reader(code, reader.offset, reader.offset + size), type, context);
    reader.skip(size);
    out.u32(body.length).bytes(body);
  }
  return out.toBytes();
}

interface BodyScan {
  entryCost: number;
  maxStackHeight: number;
  loopCosts: number[];
  hasCalls: boolean;
  needs: { scratchI32: boolean; f32: boolean; f64: boolean };
}

const isBulk = (op: number) =>
  op === Op.memoryFill ||
  op === Op.memoryCopy ||
  op === Op.memoryInit ||
  op === Op.tableInit ||
  op === Op.tableCopy;

/** First pass: static cost of the function's top level and of each loop body. */
function scanBody(reader: Reader, type: FuncType, context: CodeContext): BodyScan {
  const stack = new StackHeight(stackContext(context), type.results.length);
  const scan: BodyScan = {
    entryCost: 0,
    maxStackHeight: 0,
    loopCosts: [],
    hasCalls: false,
    needs: { scratchI32: false, f32: false, f64: false },
  };
  // Each open block charges its instructions to the innermost loop, or to the entry (-1).
  const slots: number[] = [-1];
  let previous = -1;
  while (!reader.done) {
    const { op, immediate } = readInstruction(reader);
    stack.step(op, immediate);
    const slot = slots[slots.length - 1]!;
    const cost = instructionCost(op);
    if (slot < 0) scan.entryCost += cost;
    else scan.loopCosts[slot]! += cost;
    if (op === Op.loop) {
      slots.push(scan.loopCosts.length);
      scan.loopCosts.push(0);
    } else if (op === Op.block || op === Op.if) {
      slots.push(slot);
    } else if (op === Op.end) {
      slots.pop();
    } else if (op === Op.call || op === Op.callIndirect) {
      scan.hasCalls = true;
    } else if (op === Op.memoryGrow || isBulk(op)) {
      scan.needs.scratchI32 = true;
    } else if (canonicalizedType(op, previous) === ValType.f32) {
      scan.needs.f32 = true;
    } else if (canonicalizedType(op, previous) === ValType.f64) {
      scan.needs.f64 = true;
    }
    previous = op;
  }
  scan.maxStackHeight = stack.max;
  return scan;
}

function stackContext(context: CodeContext): StackContext {
  const { types, importedFunctions, functionTypes } = context.info;
  return {
    types,
    functionType: (index) => {
      const imported = importedFunctions[index];
      const typeIndex = imported ? imported.typeIndex : functionTypes[index - importedFunctions.length];
      return types[typeIndex!]!;
    },
  };
}

/**
 * The float type whose NaN bits `op` makes visible, unless the value on top of the
 * stack came straight from a load or a constant (its bits are already exact).
 */
function canonicalizedType(op: number, previous: number): number | undefined {
  if (op === Op.f32Store || op === Op.i32ReinterpretF32 || op === Op.f32Copysign) {
    return previous === Op.f32Load || previous === Op.f32Const ? undefined : ValType.f32;
  }
  if (op === Op.f64Store || op === Op.i64ReinterpretF64 || op === Op.f64Copysign) {
    return previous === Op.f64Load || previous === Op.f64Const ? undefined : ValType.f64;
  }
  return undefined;
}

interface Locals {
  fuel: number;
  scratchI32: number;
  f32: number;
  f64: number;
}

function rewriteBody(reader: Reader, type: FuncType, context: CodeContext): Uint8Array {
  const out = new Writer();
  const groups: [number, number][] = [];
  let declared = 0;
  for (let count = reader.u32(); count > 0; count--) {
    const group: [number, number] = [reader.u32(), reader.byte()];
    declared += group[0];
    groups.push(group);
  }
  const scan = scanBody(new Reader(reader.bytes, reader.offset, reader.end), type, context);
  const extra: [number, number][] = [];
  const addLocal = (valType: number) => type.params.length + declared + extra.push([1, valType]) - 1;
  const locals: Locals = {
    fuel: addLocal(ValType.i64),
    scratchI32: scan.needs.scratchI32 ? addLocal(ValType.i32) : -1,
    f32: scan.needs.f32 ? addLocal(ValType.f32) : -1,
    f64: scan.needs.f64 ? addLocal(ValType.f64) : -1,
  };
  out.u32(groups.length + extra.length);
  for (const [count, valType] of [...groups, ...extra]) out.u32(count).byte(valType);

  const fuelInLocal = context.mode === "local" || (context.mode === "auto" && scan.loopCosts.length > 0);
  const frame = scan.hasCalls ? frameCost(type.params.length + declared, scan.maxStackHeight) : 0;
  const emitter = new Emitter(out, context, locals, frame, fuelInLocal);
  emitter.prologue(scan.entryCost);
  out.byte(Op.block);
  writeBlockType(out, type.results, context.types);

  let depth = 1;
  let loopIndex = 0;
  let previous = -1;
  while (!reader.done) {
    const start = reader.offset;
    const { op } = readInstruction(reader);
    const raw = reader.bytes.subarray(start, reader.offset);
    if (op === Op.end && depth === 1) {
      out.byte(Op.end);
      emitter.epilogue();
      out.byte(Op.end);
      break;
    }
    if (op === Op.block || op === Op.loop || op === Op.if) depth++;
    if (op === Op.end) depth--;
    const canonical = canonicalizedType(op, previous);
    if (canonical !== undefined) emitter.canonicalizeNan(canonical);
    if (op === Op.return) emitter.epilogue();
    if (op === Op.memoryGrow) emitter.chargeDynamic({ multiply: FUEL_PER_PAGE });
    if (isBulk(op)) emitter.chargeDynamic({ shift: BULK_SHIFT });
    const isCall = op === Op.call || op === Op.callIndirect;
    if (isCall) emitter.beforeCall();
    out.bytes(raw);
    if (isCall) emitter.afterCall();
    if (op === Op.loop) emitter.charge(scan.loopCosts[loopIndex++]!);
    previous = op;
  }
  return out.toBytes();
}

function writeBlockType(out: Writer, results: number[], types: FuncType[]): void {
  if (results.length === 0) {
    out.byte(0x40);
  } else if (results.length === 1) {
    out.byte(results[0]!);
  } else {
    let index = types.findIndex(
      (type) =>
        type.params.length === 0 &&
        type.results.length === results.length &&
        type.results.every((value, position) => value === results[position]),
    );
    if (index < 0) index = types.push({ params: [], results: [...results] }) - 1;
    out.s32(index);
  }
}

/** Writes the instruction sequences the instrumentation inserts. */
class Emitter {
  private readonly out: Writer;
  private readonly context: CodeContext;
  private readonly locals: Locals;
  private readonly frame: number;
  /** Fuel is kept in a local and written back to the global only when others need it. */
  private readonly local: boolean;

  constructor(out: Writer, context: CodeContext, locals: Locals, frame: number, fuelInLocal: boolean) {
    this.out = out;
    this.context = context;
    this.locals = locals;
    this.frame = frame;
    this.local = fuelInLocal;
  }

  prologue(entryCost: number): void {
    const { out, context } = this;
    out.byte(Op.globalGet).u32(context.fuelGlobal).byte(Op.i64Const).s64(BigInt(entryCost)).byte(Op.i64Sub);
    this.storeFuel();
    if (this.frame > 0) {
      const sp = context.stackGlobal;
      out.byte(Op.globalGet).u32(sp).byte(Op.i32Const).s32(this.frame).byte(Op.i32Sub);
      out.byte(Op.globalSet).u32(sp).byte(Op.globalGet).u32(sp).byte(Op.i32Const).s32(0).byte(Op.i32LtS);
      out.byte(Op.if).byte(0x40).byte(Op.unreachable).byte(Op.end);
    }
  }

  /** Writes fuel back and releases the call-depth budget; used at every exit. */
  epilogue(): void {
    const { out, context } = this;
    if (this.local) this.syncToGlobal();
    if (this.frame > 0) {
      const sp = context.stackGlobal;
      out
        .byte(Op.globalGet)
        .u32(sp)
        .byte(Op.i32Const)
        .s32(this.frame)
        .byte(Op.i32Add)
        .byte(Op.globalSet)
        .u32(sp);
    }
  }

  beforeCall(): void {
    if (this.local) this.syncToGlobal();
  }

  afterCall(): void {
    if (this.local)
      this.out.byte(Op.globalGet).u32(this.context.fuelGlobal).byte(Op.localSet).u32(this.locals.fuel);
  }

  /** Charges a static cost at a loop header. */
  charge(cost: number): void {
    this.loadFuel();
    this.out.byte(Op.i64Const).s64(BigInt(cost)).byte(Op.i64Sub);
    this.storeFuel();
  }

  /** Charges by the i32 count on top of the stack, leaving it in place. */
  chargeDynamic(scale: { multiply: bigint } | { shift: bigint }): void {
    const { out, locals } = this;
    out.byte(Op.localTee).u32(locals.scratchI32);
    this.loadFuel();
    out.byte(Op.localGet).u32(locals.scratchI32).byte(Op.i64ExtendI32U);
    if ("multiply" in scale) out.byte(Op.i64Const).s64(scale.multiply).byte(Op.i64Mul);
    else out.byte(Op.i64Const).s64(scale.shift).byte(0x88); // i64.shr_u
    out.byte(Op.i64Sub);
    this.storeFuel();
  }

  /** Replaces a NaN on top of the stack by the canonical positive quiet NaN. */
  canonicalizeNan(type: number): void {
    const { out, locals } = this;
    const isF32 = type === ValType.f32;
    const scratch = isF32 ? locals.f32 : locals.f64;
    // select(value, canonical NaN, value == value)
    out.byte(Op.localTee).u32(scratch);
    out.byte(isF32 ? Op.f32Const : Op.f64Const).bytes(isF32 ? F32_CANONICAL_NAN : F64_CANONICAL_NAN);
    out.byte(Op.localGet).u32(scratch).byte(Op.localGet).u32(scratch);
    out.byte(isF32 ? Op.f32Eq : Op.f64Eq).byte(Op.select);
  }

  private loadFuel(): void {
    if (this.local) this.out.byte(Op.localGet).u32(this.locals.fuel);
    else this.out.byte(Op.globalGet).u32(this.context.fuelGlobal);
  }

  /** Stores the new fuel (on the stack) and traps when it went negative. */
  private storeFuel(): void {
    const { out, locals } = this;
    out.byte(Op.localTee).u32(locals.fuel);
    if (!this.local) out.byte(Op.globalSet).u32(this.context.fuelGlobal).byte(Op.localGet).u32(locals.fuel);
    this.trapIfNegative();
  }

  private trapIfNegative(): void {
    const { out, locals } = this;
    out.byte(Op.i64Const).s64(0n).byte(Op.i64LtS).byte(Op.if).byte(0x40);
    out.byte(Op.localGet).u32(locals.fuel).byte(Op.globalSet).u32(this.context.fuelGlobal);
    out.byte(Op.unreachable).byte(Op.end);
  }

  private syncToGlobal(): void {
    this.out.byte(Op.localGet).u32(this.locals.fuel).byte(Op.globalSet).u32(this.context.fuelGlobal);
  }
}
