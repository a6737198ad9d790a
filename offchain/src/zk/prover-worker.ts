// The warm prover's process: loads the circuit's wasm and proving key once, then answers
// `prove` requests from its parent over IPC. It is a child process, not a worker thread,
// because snarkjs proves on a thread pool of its own, which cannot start inside a worker thread.
import { readFileSync } from "node:fs";
import * as snarkjs from "snarkjs";

interface ProveRequest {
  id: number;
  input: Record<string, unknown>;
}

const [wasm, zkey] = process.argv.slice(2);
if (wasm === undefined || zkey === undefined) throw new Error("usage: prover-worker.ts <wasm> <zkey>");
const wasmBytes = new Uint8Array(readFileSync(wasm));
const zkeyBytes = new Uint8Array(readFileSync(zkey));
const send = (message: object): void => {
  process.send?.(message);
};

process.on("disconnect", () => process.exit(0));
// Building the curve (and its thread pool) is the slow part of a cold start: do it now.
await snarkjs.curves.getCurveFromName("bn128");
process.on("message", (request: ProveRequest) => {
  void prove(request);
});
send({ type: "ready" });

async function prove({ id, input }: ProveRequest): Promise<void> {
  try {
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    send({ type: "progress", id, stage: "witness" });
    const witness: snarkjs.MemFile = { type: "mem" };
    await snarkjs.wtns.calculate(input, wasmBytes, witness);
    send({ type: "progress", id, stage: "prove" });
    const { proof, publicSignals } = await snarkjs.groth16.prove(zkeyBytes, witness);
    const cpu = process.cpuUsage(cpuBefore);
    send({
      type: "done",
      id,
      proof,
      publicSignals,
      seconds: (performance.now() - started) / 1000,
      // The whole process, snarkjs's proving threads included.
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
    });
  } catch (error) {
    send({ type: "failed", id, message: error instanceof Error ? error.message : String(error) });
  }
}
