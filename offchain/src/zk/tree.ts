import { hash2 } from "./poseidon.ts";

/** A leaf's authentication path: siblings from the leaf level up. */
export interface MerklePath {
  leaf: number;
  siblings: bigint[];
}

/**
 * The sparse Poseidon state tree (docs/zk.md, "State tree"). Only non-empty nodes are stored:
 * at most `depth + 1` per written leaf, and leaves are bounded by `2^depth` (the contract refuses
 * to open more), so the map needs no eviction; it is the state itself.
 */
export class StateTree {
  readonly depth: number;
  readonly #zeros: bigint[];
  readonly #nodes = new Map<string, bigint>();

  constructor(depth: number) {
    if (!Number.isInteger(depth) || depth < 1 || depth > 30)
      throw new RangeError(`tree depth ${depth} is outside 1..30`);
    this.depth = depth;
    this.#zeros = [0n];
    for (let level = 0; level < depth; level++)
      this.#zeros.push(hash2(this.#zeros[level]!, this.#zeros[level]!));
  }

  /** An independent copy: a batch can be built on it and dropped if it never settles. */
  clone(): StateTree {
    const copy = new StateTree(this.depth);
    for (const [key, value] of this.#nodes) copy.#nodes.set(key, value);
    return copy;
  }

  get root(): bigint {
    return this.#node(this.depth, 0);
  }

  leafValue(leaf: number): bigint {
    return this.#node(0, leaf);
  }

  path(leaf: number): MerklePath {
    this.#checkIndex(leaf);
    const siblings: bigint[] = [];
    let index = leaf;
    for (let level = 0; level < this.depth; level++) {
      siblings.push(this.#node(level, index ^ 1));
      index >>= 1;
    }
    return { leaf, siblings };
  }

  set(leaf: number, value: bigint): void {
    this.#checkIndex(leaf);
    this.#put(0, leaf, value);
    let index = leaf;
    for (let level = 0; level < this.depth; level++) {
      const left = this.#node(level, index & ~1);
      const right = this.#node(level, index | 1);
      index >>= 1;
      this.#put(level + 1, index, hash2(left, right));
    }
  }

  #node(level: number, index: number): bigint {
    return this.#nodes.get(`${level}:${index}`) ?? this.#zeros[level]!;
  }

  #put(level: number, index: number, value: bigint): void {
    if (value === this.#zeros[level]) this.#nodes.delete(`${level}:${index}`);
    else this.#nodes.set(`${level}:${index}`, value);
  }

  #checkIndex(leaf: number): void {
    if (!Number.isInteger(leaf) || leaf < 0 || leaf >= 2 ** this.depth)
      throw new RangeError(`leaf ${leaf} is outside a tree of depth ${this.depth}`);
  }
}

/** The root a path leads to from `value` at its leaf (what the circuit and the contract compute). */
export function rootFromPath(value: bigint, path: MerklePath): bigint {
  let node = value;
  let index = path.leaf;
  for (const sibling of path.siblings) {
    node = index & 1 ? hash2(sibling, node) : hash2(node, sibling);
    index >>= 1;
  }
  return node;
}
