import type { OutvoteEvidence } from "../chain/index.ts";
import { ReceiptStatus, bytes32ToCid, cidToBytes32 } from "../protocol/index.ts";
import type { Runtime } from "../runtime/index.ts";
import type { ExecutionOutcome } from "./disputer.ts";

/** Where an accused donor finds the job's module and input: its own store, else its peers. */
export interface JobBlocks {
  local(cid: string): Uint8Array | undefined;
  fetch(cid: string, from: string[], timeoutMs: number): Promise<Uint8Array>;
  connectedPeers(): string[];
}

/** Peers asked for a block the node no longer holds: at most this many of the connected ones. */
const BLOCK_SOURCES = 8;

/**
 * Re-runs an outvoted job in this node's runtime, with the module and input it kept (or fetched
 * from its peers): the result its receipt must match for a dispute. No result gives undefined.
 */
export function reexecutorOf(
  runtime: Runtime,
  blocks: JobBlocks,
  fetchTimeoutMs = 20_000,
): (evidence: OutvoteEvidence) => Promise<ExecutionOutcome | undefined> {
  const block = (cid: string) =>
    blocks.local(cid) ?? blocks.fetch(cid, blocks.connectedPeers().slice(0, BLOCK_SOURCES), fetchTimeoutMs);
  return async ({ spec }) => {
    const module = await block(bytes32ToCid(spec.moduleCid).toString());
    const input = await block(bytes32ToCid(spec.inputCid).toString());
    const result = await executeSpec(runtime, spec, module, input);
    if (result.kind === "no_result") return undefined;
    return {
      status: ReceiptStatus[result.status],
      outputCid: cidToBytes32(result.outputCid),
      fuelUsed: result.fuelUsed,
    };
  };
}

/** Runs a job as its spec says, on the given module and input (re-executions: disputes, juries). */
export function executeSpec(
  runtime: Pick<Runtime, "execute">,
  spec: OutvoteEvidence["spec"],
  module: Uint8Array,
  input: Uint8Array,
): ReturnType<Runtime["execute"]> {
  return runtime.execute({
    module,
    input,
    entry: spec.entry,
    fuelLimit: spec.fuelLimit,
    memoryPages: spec.memoryPages,
    timeoutMs: spec.timeoutMs,
  });
}
