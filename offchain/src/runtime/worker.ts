// Worker thread: checks and instruments untrusted modules, and runs jobs. The main
// thread never parses untrusted bytes.
import { parentPort } from "node:worker_threads";
import { runModule, type RunOutcome } from "./exec.ts";
import { instrumentAnalyzed } from "./instrument.ts";
import { checkPolicy, type PolicyLimits } from "./policy.ts";
import type { PrepareReply, WorkerRequest } from "./protocol.ts";

const MODULE_CACHE_SIZE = 32;
const compiled = new Map<string, WebAssembly.Module>();

function compiledModule(cid: string, bytes: Uint8Array): WebAssembly.Module {
  let module = compiled.get(cid);
  if (module) {
    compiled.delete(cid);
  } else {
    module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    if (compiled.size >= MODULE_CACHE_SIZE) compiled.delete(compiled.keys().next().value!);
  }
  compiled.set(cid, module);
  return module;
}

function prepare(bytes: Uint8Array, limits: PolicyLimits): PrepareReply {
  const started = performance.now();
  const verdict = checkPolicy(bytes, limits);
  if (!verdict.ok) return { ok: false, reason: verdict.reason };
  try {
    const instrumented = instrumentAnalyzed(bytes, verdict.info, "auto");
    if (!WebAssembly.validate(instrumented.bytes as Uint8Array<ArrayBuffer>)) {
      return { ok: false, reason: "instrumentation produced an invalid module" };
    }
    return { ok: true, ...instrumented, instrumentMs: performance.now() - started };
  } catch (error) {
    return {
      ok: false,
      reason: `could not instrument: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
}

function handle(request: WorkerRequest): PrepareReply | RunOutcome {
  if (request.type === "prepare") return prepare(request.bytes, request.limits);
  const { cid, bytes, type: _type, ...job } = request;
  try {
    return runModule({ ...job, module: compiledModule(cid, bytes) });
  } catch (error) {
    return {
      kind: "no_result",
      reason: "host_error",
      detail: error instanceof Error ? error.message : String(error),
    };
  }
}

const port = parentPort;
if (!port) throw new Error("runtime worker must run in a worker thread");
port.on("message", (request: WorkerRequest) => {
  const reply = handle(request);
  const transfer = "output" in reply ? [reply.output.buffer, reply.stderr.buffer] : [];
  port.postMessage({ id: request.id, reply }, transfer as ArrayBuffer[]);
});
port.postMessage({ ready: true });
