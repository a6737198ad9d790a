import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";

/**
 * A new directory per call, `<root>/<name>-<n>`, under one temporary root that the test
 * file creates before its tests and removes after them.
 */
export function freshDirs(rootPrefix: string, name: string): () => string {
  let root: string | undefined;
  let count = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), rootPrefix));
  });
  after(async () => {
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });
  return () => {
    if (root === undefined) throw new Error("freshDirs: a directory was asked for before the tests ran");
    return join(root, `${name}-${++count}`);
  };
}
