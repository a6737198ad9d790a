// A faulty executor for tests and benchmarks: it wraps a node's real runtime and, for the
// jobs `lies` picks, returns a made-up output (the real one with a byte appended) with the
// real status and fuel, which the node then signs like any result. It is injected into a
// real node through `startNode`'s `wrapRuntime` option; no shipped config can turn it on.
import { cidOf } from "../../offchain/src/protocol/index.ts";
import type { ExecutionResult, Job, NoResult, Runtime } from "../../offchain/src/runtime/index.ts";

/** Lies on jobs whose input starts with this text. */
export const LIE_PREFIX = "lie ";

export function lyingRuntime(
  runtime: Pick<Runtime, "execute">,
  lies: (job: Job) => boolean = (job) => new TextDecoder().decode(job.input).startsWith(LIE_PREFIX),
): Pick<Runtime, "execute"> {
  return {
    async execute(job: Job): Promise<ExecutionResult | NoResult> {
      const result = await runtime.execute(job);
      if (!lies(job) || !("output" in result)) return result;
      const output = new Uint8Array([...result.output, 0x21]);
      return { ...result, output, outputCid: (await cidOf(output)).toString() };
    },
  };
}
