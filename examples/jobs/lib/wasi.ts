// Minimal WASI bindings for jobs: read all of stdin, write to stdout/stderr, exit.

@external("wasi_snapshot_preview1", "fd_read")
declare function fd_read(fd: u32, iovs: usize, iovsLength: u32, nread: usize): u32;

@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLength: u32, nwritten: usize): u32;

@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;

const scratch = memory.data(16);

/** Reads stdin to its end. */
export function readInput(): Uint8Array {
  let capacity: usize = 65536;
  let length: usize = 0;
  let buffer = heap.alloc(capacity);
  while (true) {
    if (length == capacity) {
      capacity <<= 1;
      buffer = heap.realloc(buffer, capacity);
    }
    store<u32>(scratch, u32(buffer + length));
    store<u32>(scratch, u32(capacity - length), 4);
    if (fd_read(0, scratch, 1, scratch + 8) != 0) exit(70);
    const read = load<u32>(scratch + 8);
    if (read == 0) break;
    length += read;
  }
  const input = new Uint8Array(i32(length));
  memory.copy(input.dataStart, buffer, length);
  return input;
}

function writeTo(fd: u32, pointer: usize, length: usize): void {
  while (length > 0) {
    store<u32>(scratch, u32(pointer));
    store<u32>(scratch, u32(length), 4);
    if (fd_write(fd, scratch, 1, scratch + 8) != 0) exit(74);
    const written = load<u32>(scratch + 8);
    pointer += written;
    length -= written;
  }
}

export function writeBytes(bytes: Uint8Array): void {
  writeTo(1, bytes.dataStart, bytes.length);
}

export function print(text: string): void {
  const encoded = String.UTF8.encode(text);
  writeTo(1, changetype<usize>(encoded), encoded.byteLength);
}

export function printError(text: string): void {
  const encoded = String.UTF8.encode(text);
  writeTo(2, changetype<usize>(encoded), encoded.byteLength);
}

export function exit(code: u32): void {
  proc_exit(code);
}

/** Parses a leading unsigned decimal number (0 when there is none). */
export function parseLeadingInt(bytes: Uint8Array): u64 {
  let value: u64 = 0;
  for (let index = 0; index < bytes.length; index++) {
    const digit = u32(bytes[index]) - 48;
    if (digit > 9) break;
    value = value * 10 + digit;
  }
  return value;
}
