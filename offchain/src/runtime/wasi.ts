import { createHash } from "node:crypto";
import { readFileSync, realpathSync, statSync } from "node:fs";
import { posix } from "node:path";
import { FUEL_PER_HOST_BYTE, FUEL_PER_HOST_CALL } from "./costs.ts";

// A deterministic subset of wasi_snapshot_preview1: the job's input on stdin, output on
// stdout and stderr (both capped), fixed args and environment, a virtual clock driven by
// fuel, randomness seeded by the job, and read-only host files only under a grant.

/** proc_exit(code). */
export class ProcExit extends Error {
  override readonly name = "ProcExit";
  readonly code: number;
  constructor(code: number) {
    super(`proc_exit(${code})`);
    this.code = code;
  }
}

/** The job wrote more than its stdout/stderr cap. */
export class OutputLimitExceeded extends Error {
  override readonly name = "OutputLimitExceeded";
  readonly stream: string;
  readonly limit: number;

  constructor(stream: string, limit: number) {
    super(`${stream} exceeded its cap of ${limit} bytes`);
    this.stream = stream;
    this.limit = limit;
  }
}

/** A host call found the fuel exhausted (the fuel global is left negative). */
export class HostOutOfFuel extends Error {
  override readonly name = "HostOutOfFuel";
}

const Errno = {
  success: 0,
  badf: 8,
  fault: 21,
  fbig: 22,
  mfile: 33,
  inval: 28,
  isdir: 31,
  noent: 44,
  nosys: 52,
  notdir: 54,
  notsup: 58,
  rofs: 69,
  spipe: 70,
  notcapable: 76,
} as const;

const MAX_DESCRIPTORS = 256;
/** Most iovecs one fd_read/fd_write call may pass (POSIX IOV_MAX). */
const IOV_MAX = 1024;
/** A bad guest pointer or argument: the call returns `errno` instead of running. */
class Fault extends Error {
  readonly errno: number;
  constructor(message: string, errno: number = Errno.fault) {
    super(message);
    this.errno = errno;
  }
}

const FileType = { unknown: 0, characterDevice: 2, directory: 3, regularFile: 4 } as const;
const OFLAGS_DIRECTORY = 2;
const OFLAGS_WRITING = 1 | 4 | 8; // creat | excl | trunc
const RIGHT_FD_WRITE = 1n << 6n;
const FDFLAGS_APPEND = 1;
const WHENCE_SET = 0;
const WHENCE_CUR = 1;
const WHENCE_END = 2;
/** Virtual wall clock origin: 2024-01-01T00:00:00Z in nanoseconds. */
const REALTIME_EPOCH_NS = 1_704_067_200_000_000_000n;

export interface Grant {
  hostPath: string;
  guestPath: string;
}

export interface WasiOptions {
  input: Uint8Array;
  args: string[];
  env: Record<string, string>;
  seed: Uint8Array;
  grants: Grant[];
  stdoutLimit: number;
  stderrLimit: number;
  maxFileBytes: number;
  fuelLimit: bigint;
  memory: () => WebAssembly.Memory | undefined;
  fuel: () => WebAssembly.Global | undefined;
}

type Descriptor =
  | { kind: "stdin"; position: number }
  | { kind: "stdout" | "stderr" }
  | { kind: "dir"; root: string; hostPath: string; preopen?: string }
  | { kind: "file"; data: Uint8Array; position: number };

class Output {
  private readonly chunks: Uint8Array[] = [];
  size = 0;
  readonly limit: number;
  readonly label: string;

  constructor(label: string, limit: number) {
    this.label = label;
    this.limit = limit;
  }

  write(bytes: Uint8Array): void {
    if (this.size + bytes.length > this.limit) {
      throw new OutputLimitExceeded(this.label, this.limit);
    }
    this.chunks.push(bytes.slice());
    this.size += bytes.length;
  }

  /** A fresh, unpooled copy (safe to transfer to another thread). */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }
}

export interface WasiShim {
  imports: Record<string, (...args: never[]) => number | void>;
  stdout: Output;
  stderr: Output;
}

export function createWasi(options: WasiOptions): WasiShim {
  const stdout = new Output("stdout", options.stdoutLimit);
  const stderr = new Output("stderr", options.stderrLimit);
  const descriptors = new Map<number, Descriptor>([
    [0, { kind: "stdin", position: 0 }],
    [1, { kind: "stdout" }],
    [2, { kind: "stderr" }],
  ]);
  options.grants.forEach((grant, index) => {
    const root = realpathSync(grant.hostPath);
    descriptors.set(3 + index, { kind: "dir", root, hostPath: root, preopen: grant.guestPath });
  });
  let nextFd = 3 + options.grants.length;
  /** Bytes of host files held open: all open files together stay within maxFileBytes. */
  let openFileBytes = 0;
  const random = seededStream(options.seed);
  const argv = options.args.map((arg) => encodeZ(arg));
  const environ = Object.keys(options.env)
    .sort()
    .map((key) => encodeZ(`${key}=${options.env[key]}`));

  const view = () => {
    const memory = options.memory();
    if (!memory) throw new Fault("the module has no memory");
    return new DataView(memory.buffer);
  };
  const bytesAt = (pointer: number, length: number) => {
    const buffer = view().buffer;
    if (pointer + length > buffer.byteLength) throw new Fault("out of bounds");
    return new Uint8Array(buffer, pointer, length);
  };
  const charge = (bytes: number) => {
    const fuel = options.fuel();
    if (!fuel) return;
    const left = (fuel.value as bigint) - FUEL_PER_HOST_CALL - BigInt(bytes) * FUEL_PER_HOST_BYTE;
    fuel.value = left;
    if (left < 0n) throw new HostOutOfFuel("out of fuel in a host call");
  };
  const consumedNs = () => {
    const fuel = options.fuel();
    return fuel ? options.fuelLimit - (fuel.value as bigint) : 0n;
  };

  /** Wraps a call: fixed fuel per call, bad pointers give EFAULT. */
  const call =
    <A extends (number | bigint)[]>(body: (...args: A) => number) =>
    (...args: A): number => {
      charge(0);
      try {
        return body(...(args.map(unsigned) as A));
      } catch (error) {
        if (error instanceof Fault) return error.errno;
        if (isBoundsError(error)) return Errno.fault;
        throw error;
      }
    };

  const writeStrings = (items: Uint8Array[], pointers: number, buffer: number) => {
    const memory = view();
    let offset = buffer;
    items.forEach((item, index) => {
      bytesAt(offset, item.length).set(item);
      memory.setUint32(pointers + index * 4, offset, true);
      offset += item.length;
    });
    charge(offset - buffer);
    return Errno.success;
  };
  const writeSizes = (items: Uint8Array[], countPointer: number, sizePointer: number) => {
    const memory = view();
    memory.setUint32(countPointer, items.length, true);
    memory.setUint32(
      sizePointer,
      items.reduce((sum, item) => sum + item.length, 0),
      true,
    );
    return Errno.success;
  };

  const iovecs = (pointer: number, count: number) => {
    if (count > IOV_MAX) throw new Fault(`more than ${IOV_MAX} iovecs`, Errno.inval);
    const memory = view();
    return Array.from({ length: count }, (_, index) => ({
      buffer: memory.getUint32(pointer + index * 8, true),
      length: memory.getUint32(pointer + index * 8 + 4, true),
    }));
  };

  const readInto = (source: Uint8Array, position: number, iovs: number, count: number, nread: number) => {
    let read = 0;
    for (const iov of iovecs(iovs, count)) {
      const chunk = source.subarray(position + read, position + read + iov.length);
      bytesAt(iov.buffer, chunk.length).set(chunk);
      read += chunk.length;
      if (chunk.length < iov.length) break;
    }
    charge(read);
    view().setUint32(nread, read, true);
    return read;
  };

  const resolve = (
    dirFd: number,
    pointer: number,
    length: number,
  ): { errno: number; path?: string; root?: string } => {
    const dir = descriptors.get(dirFd);
    if (!dir) return { errno: Errno.badf };
    if (dir.kind !== "dir") return { errno: Errno.notdir };
    charge(length);
    const guest = new TextDecoder().decode(bytesAt(pointer, length));
    if (guest.startsWith("/") || guest.includes("\0")) return { errno: Errno.notcapable };
    const joined = posix.normalize(posix.join(dir.hostPath, guest));
    if (!isInside(joined, dir.root)) return { errno: Errno.notcapable };
    let real: string;
    try {
      real = realpathSync(joined);
    } catch {
      return { errno: Errno.noent };
    }
    if (!isInside(real, dir.root)) return { errno: Errno.notcapable };
    return { errno: Errno.success, path: real, root: dir.root };
  };

  const writeFilestat = (pointer: number, type: number, size: number) => {
    bytesAt(pointer, 64).fill(0);
    const memory = view();
    memory.setUint8(pointer + 16, type);
    memory.setBigUint64(pointer + 24, 1n, true);
    memory.setBigUint64(pointer + 32, BigInt(size), true);
  };

  const imports = {
    args_get: call((pointers: number, buffer: number) => writeStrings(argv, pointers, buffer)),
    args_sizes_get: call((count: number, size: number) => writeSizes(argv, count, size)),
    environ_get: call((pointers: number, buffer: number) => writeStrings(environ, pointers, buffer)),
    environ_sizes_get: call((count: number, size: number) => writeSizes(environ, count, size)),
    clock_res_get: call((id: number, pointer: number) => {
      if (id > 3) return Errno.inval;
      view().setBigUint64(pointer, 1n, true);
      return Errno.success;
    }),
    clock_time_get: call((id: number, _precision: bigint, pointer: number) => {
      if (id > 3) return Errno.inval;
      const now = consumedNs() + (id === 0 ? REALTIME_EPOCH_NS : 0n);
      view().setBigUint64(pointer, now, true);
      return Errno.success;
    }),
    fd_close: call((fd: number) => {
      const descriptor = descriptors.get(fd);
      if (!descriptor) return Errno.badf;
      if (descriptor.kind === "file") openFileBytes -= descriptor.data.length;
      descriptors.delete(fd);
      return Errno.success;
    }),
    fd_fdstat_get: call((fd: number, pointer: number) => {
      const descriptor = descriptors.get(fd);
      if (!descriptor) return Errno.badf;
      const memory = view();
      bytesAt(pointer, 24).fill(0);
      memory.setUint8(pointer, fileType(descriptor));
      memory.setBigUint64(
        pointer + 8,
        descriptor.kind === "stdout" || descriptor.kind === "stderr"
          ? RIGHT_FD_WRITE
          : ~RIGHT_FD_WRITE & 0x1fffffffn,
        true,
      );
      memory.setBigUint64(pointer + 16, descriptor.kind === "dir" ? ~RIGHT_FD_WRITE & 0x1fffffffn : 0n, true);
      return Errno.success;
    }),
    fd_fdstat_set_flags: call(() => Errno.notsup),
    fd_filestat_get: call((fd: number, pointer: number) => {
      const descriptor = descriptors.get(fd);
      if (!descriptor) return Errno.badf;
      const size =
        descriptor.kind === "file"
          ? descriptor.data.length
          : descriptor.kind === "stdin"
            ? options.input.length
            : 0;
      writeFilestat(pointer, fileType(descriptor), size);
      return Errno.success;
    }),
    fd_prestat_get: call((fd: number, pointer: number) => {
      const descriptor = descriptors.get(fd);
      if (!descriptor || descriptor.kind !== "dir" || descriptor.preopen === undefined) return Errno.badf;
      const memory = view();
      memory.setUint32(pointer, 0, true);
      memory.setUint32(pointer + 4, new TextEncoder().encode(descriptor.preopen).length, true);
      return Errno.success;
    }),
    fd_prestat_dir_name: call((fd: number, pointer: number, length: number) => {
      const descriptor = descriptors.get(fd);
      if (!descriptor || descriptor.kind !== "dir" || descriptor.preopen === undefined) return Errno.badf;
      const name = new TextEncoder().encode(descriptor.preopen);
      bytesAt(pointer, Math.min(length, name.length)).set(name.subarray(0, length));
      return Errno.success;
    }),
    fd_read: call((fd: number, iovs: number, count: number, nread: number) => {
      const descriptor = descriptors.get(fd);
      if (!descriptor) return Errno.badf;
      if (descriptor.kind === "stdin" || descriptor.kind === "file") {
        const source = descriptor.kind === "stdin" ? options.input : descriptor.data;
        descriptor.position += readInto(source, descriptor.position, iovs, count, nread);
        return Errno.success;
      }
      return descriptor.kind === "dir" ? Errno.isdir : Errno.badf;
    }),
    fd_seek: call((fd: number, offset: bigint, whence: number, pointer: number) => {
      const descriptor = descriptors.get(fd);
      if (!descriptor) return Errno.badf;
      if (descriptor.kind !== "file") return Errno.spipe;
      const base =
        whence === WHENCE_SET
          ? 0n
          : whence === WHENCE_CUR
            ? BigInt(descriptor.position)
            : whence === WHENCE_END
              ? BigInt(descriptor.data.length)
              : -1n;
      const target = base + offset;
      if (base < 0n || target < 0n || target > BigInt(Number.MAX_SAFE_INTEGER)) return Errno.inval;
      descriptor.position = Number(target);
      view().setBigUint64(pointer, target, true);
      return Errno.success;
    }),
    fd_write: call((fd: number, iovs: number, count: number, nwritten: number) => {
      const descriptor = descriptors.get(fd);
      if (!descriptor) return Errno.badf;
      if (descriptor.kind !== "stdout" && descriptor.kind !== "stderr") return Errno.badf;
      const target = descriptor.kind === "stdout" ? stdout : stderr;
      let written = 0;
      for (const iov of iovecs(iovs, count)) {
        const bytes = bytesAt(iov.buffer, iov.length);
        charge(bytes.length);
        target.write(bytes);
        written += bytes.length;
      }
      view().setUint32(nwritten, written, true);
      return Errno.success;
    }),
    path_filestat_get: call((fd: number, _flags: number, pointer: number, length: number, out: number) => {
      const resolved = resolve(fd, pointer, length);
      if (!resolved.path) return resolved.errno;
      const stats = statSync(resolved.path);
      writeFilestat(
        out,
        stats.isDirectory() ? FileType.directory : stats.isFile() ? FileType.regularFile : FileType.unknown,
        stats.isFile() ? stats.size : 0,
      );
      return Errno.success;
    }),
    path_open: call(
      (
        fd: number,
        _dirflags: number,
        pointer: number,
        length: number,
        oflags: number,
        rights: bigint,
        _inheriting: bigint,
        fdflags: number,
        out: number,
      ) => {
        if (oflags & OFLAGS_WRITING || fdflags & FDFLAGS_APPEND) return Errno.rofs;
        if (BigInt.asUintN(64, rights) & RIGHT_FD_WRITE) return Errno.notcapable;
        const resolved = resolve(fd, pointer, length);
        if (!resolved.path || !resolved.root) return resolved.errno;
        const stats = statSync(resolved.path);
        let descriptor: Descriptor;
        if (stats.isDirectory()) {
          descriptor = { kind: "dir", root: resolved.root, hostPath: resolved.path };
        } else if (oflags & OFLAGS_DIRECTORY) {
          return Errno.notdir;
        } else if (!stats.isFile()) {
          return Errno.notsup;
        } else if (descriptors.size >= MAX_DESCRIPTORS) {
          return Errno.mfile;
        } else if (openFileBytes + stats.size > options.maxFileBytes) {
          return Errno.fbig;
        } else {
          const data = readFileSync(resolved.path);
          openFileBytes += data.length;
          descriptor = { kind: "file", data, position: 0 };
        }
        const opened = nextFd++;
        descriptors.set(opened, descriptor);
        view().setUint32(out, opened, true);
        return Errno.success;
      },
    ),
    proc_exit: (code: number): void => {
      throw new ProcExit(code >>> 0);
    },
    random_get: call((pointer: number, length: number) => {
      const target = bytesAt(pointer, length);
      charge(length);
      random(target);
      return Errno.success;
    }),
    sched_yield: call(() => Errno.success),
  };
  return { imports: imports as unknown as WasiShim["imports"], stdout, stderr };
}

/** Pointers and sizes arrive as signed i32; i64 arguments stay bigint. */
function unsigned(value: number | bigint): number | bigint {
  return typeof value === "number" ? value >>> 0 : value;
}

/** A DataView or typed-array bound check failed: a bad guest pointer, not a host fault. */
function isBoundsError(error: unknown): boolean {
  return error instanceof RangeError && !/call stack/i.test(error.message);
}

function isInside(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith("/") ? root : `${root}/`);
}

function fileType(descriptor: Descriptor): number {
  switch (descriptor.kind) {
    case "dir":
      return FileType.directory;
    case "file":
      return FileType.regularFile;
    default:
      return FileType.characterDevice;
  }
}

function encodeZ(text: string): Uint8Array {
  return new TextEncoder().encode(`${text}\0`);
}

/** SHA-256 in counter mode over the seed: the job's only source of randomness. */
function seededStream(seed: Uint8Array): (target: Uint8Array) => void {
  let counter = 0n;
  let block = new Uint8Array(0);
  let used = 0;
  return (target) => {
    for (let offset = 0; offset < target.length;) {
      if (used === block.length) {
        const counterBytes = Buffer.alloc(8);
        counterBytes.writeBigUInt64LE(counter++);
        block = createHash("sha256").update(seed).update(counterBytes).digest();
        used = 0;
      }
      const take = Math.min(block.length - used, target.length - offset);
      target.set(block.subarray(used, used + take), offset);
      used += take;
      offset += take;
    }
  };
}
