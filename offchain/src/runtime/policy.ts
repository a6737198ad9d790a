import { DATA_LIMITS } from "../protocol/limits.ts";
import { readInstruction, Op } from "./opcodes.ts";
import { PolicyError, Reader, readSections, SectionId, ValType, type Section } from "./wasm-binary.ts";

/** Limits that apply to every module, whatever the job asks for. */
export interface PolicyLimits {
  maxModuleBytes: number;
  /** Hard cap on linear memory, in 64 KiB pages. */
  maxMemoryPages: number;
  maxTableElements: number;
  maxFunctions: number;
  maxLocalsPerFunction: number;
}

export const DEFAULT_POLICY_LIMITS: PolicyLimits = {
  maxModuleBytes: DATA_LIMITS.moduleBytes,
  maxMemoryPages: 16384,
  maxTableElements: 100_000,
  maxFunctions: 100_000,
  maxLocalsPerFunction: 10_000,
};

export const WASI_MODULE = "wasi_snapshot_preview1";

const i32 = ValType.i32;
const i64 = ValType.i64;

/** The WASI calls the deterministic shim provides, with their exact signatures. */
export const WASI_SIGNATURES: Readonly<Record<string, { params: number[]; results: number[] }>> = {
  args_get: { params: [i32, i32], results: [i32] },
  args_sizes_get: { params: [i32, i32], results: [i32] },
  environ_get: { params: [i32, i32], results: [i32] },
  environ_sizes_get: { params: [i32, i32], results: [i32] },
  clock_res_get: { params: [i32, i32], results: [i32] },
  clock_time_get: { params: [i32, i64, i32], results: [i32] },
  fd_close: { params: [i32], results: [i32] },
  fd_fdstat_get: { params: [i32, i32], results: [i32] },
  fd_fdstat_set_flags: { params: [i32, i32], results: [i32] },
  fd_filestat_get: { params: [i32, i32], results: [i32] },
  fd_prestat_get: { params: [i32, i32], results: [i32] },
  fd_prestat_dir_name: { params: [i32, i32, i32], results: [i32] },
  fd_read: { params: [i32, i32, i32, i32], results: [i32] },
  fd_seek: { params: [i32, i64, i32, i32], results: [i32] },
  fd_write: { params: [i32, i32, i32, i32], results: [i32] },
  path_filestat_get: { params: [i32, i32, i32, i32, i32], results: [i32] },
  path_open: { params: [i32, i32, i32, i32, i32, i64, i64, i32, i32], results: [i32] },
  proc_exit: { params: [i32], results: [] },
  random_get: { params: [i32, i32], results: [i32] },
  sched_yield: { params: [], results: [i32] },
};

/** Export names the instrumentation adds; a module may not use them. */
export const RESERVED_EXPORT_PREFIX = "__cell_";

export interface FuncType {
  params: number[];
  results: number[];
}

export interface ModuleInfo {
  sections: Section[];
  types: FuncType[];
  importedFunctions: { module: string; name: string; typeIndex: number }[];
  /** Type index of each defined function. */
  functionTypes: number[];
  memory?: { initial: number; maximum?: number };
  definedGlobals: number;
  exports: { name: string; kind: number; index: number }[];
  start?: number;
}

export type PolicyVerdict = { ok: true; info: ModuleInfo } | { ok: false; reason: string };

/**
 * Decides whether untrusted bytes may run. Never throws for bad input: a refusal comes
 * back with a reason naming what was wrong.
 */
export function checkPolicy(bytes: Uint8Array, limits: PolicyLimits = DEFAULT_POLICY_LIMITS): PolicyVerdict {
  try {
    return { ok: true, info: analyzeModule(bytes, limits) };
  } catch (error) {
    if (error instanceof PolicyError) return { ok: false, reason: error.message };
    if (error instanceof TypeError) return { ok: false, reason: `malformed module: ${error.message}` };
    throw error;
  }
}

/** Parses and checks a module; throws PolicyError on refusal. */
export function analyzeModule(bytes: Uint8Array, limits: PolicyLimits = DEFAULT_POLICY_LIMITS): ModuleInfo {
  if (bytes.length > limits.maxModuleBytes) {
    throw new PolicyError(`module is ${bytes.length} bytes, above the cap of ${limits.maxModuleBytes}`);
  }
  if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>))
    throw new PolicyError(`invalid module: ${compileError(bytes)}`);
  const info: ModuleInfo = {
    sections: readSections(bytes),
    types: [],
    importedFunctions: [],
    functionTypes: [],
    definedGlobals: 0,
    exports: [],
  };
  for (const section of info.sections) {
    const reader = new Reader(bytes, section.start, section.end);
    readSection(section.id, reader, info, limits);
  }
  if (info.functionTypes.length + info.importedFunctions.length > limits.maxFunctions) {
    throw new PolicyError(`module has more than ${limits.maxFunctions} functions`);
  }
  return info;
}

function compileError(bytes: Uint8Array): string {
  try {
    new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    return "rejected by the validator";
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

function readSection(id: number, reader: Reader, info: ModuleInfo, limits: PolicyLimits): void {
  switch (id) {
    case SectionId.custom:
    case SectionId.function:
    case SectionId.start:
    case SectionId.data:
    case SectionId.dataCount:
      break;
    case SectionId.type:
      return readTypes(reader, info);
    case SectionId.import:
      return readImports(reader, info);
    case SectionId.table:
      return readTables(reader, limits);
    case SectionId.memory:
      return readMemories(reader, info, limits);
    case SectionId.global:
      return readGlobals(reader, info);
    case SectionId.export:
      return readExports(reader, info);
    case SectionId.element:
      return readElements(reader);
    case SectionId.code:
      return readCode(reader, limits);
    case SectionId.tag:
      throw new PolicyError("exception handling is not allowed (tag section)");
    default:
      throw new PolicyError(`unknown section id ${id}`);
  }
  if (id === SectionId.function) {
    for (let count = reader.u32(); count > 0; count--) info.functionTypes.push(reader.u32());
  }
  if (id === SectionId.start) info.start = reader.u32();
}

function readValType(reader: Reader, where: string): number {
  const type = reader.byte();
  if (type === i32 || type === i64 || type === ValType.f32 || type === ValType.f64) return type;
  if (type === 0x7b) throw new PolicyError(`SIMD is not allowed (v128 in ${where})`);
  if (type === 0x70 || type === 0x6f) throw new PolicyError(`reference types are not allowed (${where})`);
  throw new PolicyError(
    `GC / typed references are not allowed (value type 0x${type.toString(16)} in ${where})`,
  );
}

function readTypes(reader: Reader, info: ModuleInfo): void {
  for (let count = reader.u32(); count > 0; count--) {
    const form = reader.byte();
    if (form !== 0x60) throw new PolicyError(`GC types are not allowed (type form 0x${form.toString(16)})`);
    const params = Array.from({ length: reader.u32() }, () => readValType(reader, "a function type"));
    const results = Array.from({ length: reader.u32() }, () => readValType(reader, "a function type"));
    info.types.push({ params, results });
  }
}

function sameSignature(type: FuncType | undefined, expected: FuncType): boolean {
  return (
    type !== undefined &&
    type.params.length === expected.params.length &&
    type.results.length === expected.results.length &&
    type.params.every((value, index) => value === expected.params[index]) &&
    type.results.every((value, index) => value === expected.results[index])
  );
}

function readImports(reader: Reader, info: ModuleInfo): void {
  for (let count = reader.u32(); count > 0; count--) {
    const module = reader.name();
    const name = reader.name();
    const kind = reader.byte();
    const what = `import "${module}" "${name}"`;
    if (kind !== 0) {
      const kinds = ["function", "table", "memory", "global", "tag"];
      throw new PolicyError(
        `${what}: importing a ${kinds[kind] ?? "thing"} is not allowed, only WASI functions`,
      );
    }
    const typeIndex = reader.u32();
    const expected = module === WASI_MODULE ? WASI_SIGNATURES[name] : undefined;
    if (!expected || !Object.hasOwn(WASI_SIGNATURES, name)) {
      throw new PolicyError(`${what} is not allowed: only the provided ${WASI_MODULE} calls may be imported`);
    }
    if (!sameSignature(info.types[typeIndex], expected))
      throw new PolicyError(`${what} has the wrong signature`);
    info.importedFunctions.push({ module, name, typeIndex });
  }
}

function readLimits(reader: Reader, what: string): { initial: number; maximum?: number } {
  const flags = reader.byte();
  if (flags === 0x02 || flags === 0x03)
    throw new PolicyError(`shared memory (threads) is not allowed (${what})`);
  if (flags >= 0x04 && flags <= 0x07) throw new PolicyError(`memory64 is not allowed (${what})`);
  if (flags > 0x01) throw new PolicyError(`unsupported limits flags 0x${flags.toString(16)} (${what})`);
  const initial = reader.u32();
  return flags === 0x01 ? { initial, maximum: reader.u32() } : { initial };
}

function readTables(reader: Reader, limits: PolicyLimits): void {
  const count = reader.u32();
  if (count > 1) throw new PolicyError("reference types are not allowed (more than one table)");
  if (count === 0) return;
  const elementType = reader.byte();
  if (elementType !== 0x70) throw new PolicyError("reference types are not allowed (table of non-funcref)");
  const { initial } = readLimits(reader, "table");
  if (initial > limits.maxTableElements) {
    throw new PolicyError(`table of ${initial} elements is above the cap of ${limits.maxTableElements}`);
  }
}

function readMemories(reader: Reader, info: ModuleInfo, limits: PolicyLimits): void {
  const count = reader.u32();
  if (count > 1) throw new PolicyError("multiple memories are not allowed");
  if (count === 0) return;
  const memory = readLimits(reader, "memory");
  if (memory.initial > limits.maxMemoryPages) {
    throw new PolicyError(
      `initial memory of ${memory.initial} pages is above the cap of ${limits.maxMemoryPages}`,
    );
  }
  info.memory = memory;
}

function readConstExpr(reader: Reader): void {
  for (;;) {
    const instruction = readInstruction(reader);
    if (instruction.op === Op.end) return;
  }
}

function readGlobals(reader: Reader, info: ModuleInfo): void {
  for (let count = reader.u32(); count > 0; count--) {
    readValType(reader, "a global");
    reader.byte();
    readConstExpr(reader);
    info.definedGlobals++;
  }
}

function readExports(reader: Reader, info: ModuleInfo): void {
  for (let count = reader.u32(); count > 0; count--) {
    const name = reader.name();
    const kind = reader.byte();
    const index = reader.u32();
    if (name.startsWith(RESERVED_EXPORT_PREFIX)) {
      throw new PolicyError(`export "${name}" uses the reserved prefix ${RESERVED_EXPORT_PREFIX}`);
    }
    info.exports.push({ name, kind, index });
  }
}

function readElements(reader: Reader): void {
  for (let count = reader.u32(); count > 0; count--) {
    const flags = reader.u32();
    if (flags > 3) throw new PolicyError(`reference types are not allowed (element segment flags ${flags})`);
    if (flags === 0x02 && reader.u32() !== 0)
      throw new PolicyError("reference types are not allowed (table index)");
    if (flags === 0x00 || flags === 0x02) readConstExpr(reader);
    if (flags !== 0x00 && reader.byte() !== 0x00) throw new PolicyError("unsupported element kind");
    for (let items = reader.u32(); items > 0; items--) reader.u32();
  }
}

function readCode(reader: Reader, limits: PolicyLimits): void {
  for (let count = reader.u32(); count > 0; count--) {
    const size = reader.u32();
    const body = new Reader(reader.bytes, reader.offset, reader.offset + size);
    reader.skip(size);
    let locals = 0;
    for (let groups = body.u32(); groups > 0; groups--) {
      locals += body.u32();
      readValType(body, "a local");
    }
    if (locals > limits.maxLocalsPerFunction) {
      throw new PolicyError(
        `a function declares ${locals} locals, above the cap of ${limits.maxLocalsPerFunction}`,
      );
    }
    while (!body.done) readInstruction(body);
  }
}

/** Checks the memory a module declares against a job's cap. */
export function memoryCapVerdict(memory: ModuleInfo["memory"], capPages: number): string | undefined {
  if (!memory) return undefined;
  if (memory.initial > capPages) {
    return `initial memory of ${memory.initial} pages is above the job's cap of ${capPages}`;
  }
  if (memory.maximum !== undefined && memory.maximum > capPages) {
    return `declared maximum memory of ${memory.maximum} pages is above the job's cap of ${capPages}`;
  }
  return undefined;
}
