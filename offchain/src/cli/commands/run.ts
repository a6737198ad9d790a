import { readFileSync } from "node:fs";
import { InvalidArgumentError, Option, type Command } from "commander";
import type { ExecutionResult, NoResult } from "../../runtime/index.ts";
import { reportErrors } from "../errors.ts";
import { EXIT_CODES, type ExitCode } from "../exit-codes.ts";

interface RunOptions {
  input?: string;
  fuel: bigint;
  memoryPages: number;
  timeout: number;
  entry: string;
  arg: string[];
  env: string[];
  grant: string[];
  seed?: string;
  json?: boolean;
}

const DEFAULT_FUEL = 10_000_000_000n;

/** `cell run`: runs a module locally exactly as a donor would (policy, fuel, shim). */
export function registerRunCommand(program: Command): Command {
  return program
    .command("run")
    .description("run a WebAssembly job locally, metered and sandboxed exactly as a donor runs it")
    .argument("<module.wasm>", "the job's module")
    .option("--input <file>", "file given to the job on stdin (default: empty)")
    .addOption(
      new Option("--fuel <n>", "fuel limit")
        .argParser(parseFuel)
        .default(DEFAULT_FUEL, DEFAULT_FUEL.toString()),
    )
    .option("--memory-pages <n>", "linear memory cap in 64 KiB pages", parseCount("--memory-pages"), 256)
    .option("--timeout <ms>", "wall-clock timeout in milliseconds", parseCount("--timeout"), 30_000)
    .option("--entry <name>", "exported function to call", "_start")
    .option("--arg <value>", 'argument after argv[0], which is "job" as on donors (repeatable)', collect, [])
    .option("--env <KEY=VALUE>", "environment variable for the job (repeatable)", collect, [])
    .option("--grant <host:guest>", "read-only host directory visible to the job (repeatable)", collect, [])
    .option("--seed <hex>", "32-byte seed of the job's randomness (default: derived from module and input)")
    .option("--json", "print one JSON object (output and stderr base64)")
    .addHelpText(
      "after",
      "\nExit codes: 0 the job finished with status ok; 1 usage or other error; 2 the job\nfailed (no result: timeout, host error); 3 the job finished with another status\n(exit, trap, out_of_fuel, policy_rejected).\n\nExample:\n  $ cell run examples/jobs/build/sha256.wasm --input README.md --fuel 1000000000 --json\n",
    )
    .action(async function (this: Command, modulePath: string, options: RunOptions) {
      await reportErrors(this, async () => {
        const { createRuntime } = await import("../../runtime/index.ts");
        const runtime = await createRuntime({ poolSize: 1 });
        try {
          const result = await runtime.execute({
            module: readFileSync(modulePath),
            input: options.input ? readFileSync(options.input) : new Uint8Array(0),
            fuelLimit: options.fuel,
            memoryPages: options.memoryPages,
            timeoutMs: options.timeout,
            entry: options.entry,
            args: ["job", ...options.arg],
            env: parseEnv(options.env),
            grants: options.grant.map(parseGrant),
            ...(options.seed ? { seed: parseSeed(options.seed) } : {}),
          });
          process.stdout.write(options.json ? `${JSON.stringify(toJson(result))}\n` : formatResult(result));
          process.exitCode = runExitCode(result);
        } finally {
          await runtime.close();
        }
      });
    });
}

function runExitCode(result: ExecutionResult | NoResult): ExitCode {
  if (result.kind === "no_result") return EXIT_CODES.jobFailed;
  return result.status === "ok" ? EXIT_CODES.ok : EXIT_CODES.notOk;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseFuel(value: string): bigint {
  if (!/^[1-9][0-9]*$/.test(value)) throw new InvalidArgumentError("--fuel must be a positive integer");
  return BigInt(value);
}

function parseCount(flag: string): (value: string) => number {
  return (value) => {
    if (!/^[0-9]+$/.test(value)) throw new InvalidArgumentError(`${flag} must be a non-negative integer`);
    return Number(value);
  };
}

function parseEnv(entries: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of entries) {
    const split = entry.indexOf("=");
    if (split <= 0) throw new Error(`--env ${entry}: expected KEY=VALUE`);
    env[entry.slice(0, split)] = entry.slice(split + 1);
  }
  return env;
}

function parseGrant(entry: string): { hostPath: string; guestPath: string } {
  const split = entry.lastIndexOf(":");
  if (split <= 0 || split === entry.length - 1)
    throw new Error(`--grant ${entry}: expected HOST_DIR:GUEST_DIR`);
  return { hostPath: entry.slice(0, split), guestPath: entry.slice(split + 1) };
}

function parseSeed(hex: string): Uint8Array {
  if (!/^(0x)?[0-9a-fA-F]{64}$/.test(hex)) throw new Error("--seed must be 32 bytes of hex");
  return Buffer.from(hex.replace(/^0x/, ""), "hex");
}

function toJson(result: ExecutionResult | NoResult): Record<string, unknown> {
  if (result.kind === "no_result") return { ...result };
  return {
    kind: result.kind,
    status: result.status,
    ...(result.exitCode !== undefined ? { exitCode: result.exitCode } : {}),
    ...(result.reason !== undefined ? { reason: result.reason } : {}),
    fuelUsed: result.fuelUsed.toString(),
    outputCid: result.outputCid,
    output: Buffer.from(result.output).toString("base64"),
    stderr: Buffer.from(result.stderr).toString("base64"),
  };
}

function formatResult(result: ExecutionResult | NoResult): string {
  if (result.kind === "no_result") return `no result: ${result.reason} (${result.detail})\n`;
  const lines = [
    `status     ${result.status}${result.exitCode !== undefined ? ` (exit code ${result.exitCode})` : ""}`,
    ...(result.reason ? [`reason     ${result.reason}`] : []),
    `fuel used  ${result.fuelUsed}`,
    `output     ${result.outputCid} (${result.output.length} bytes)`,
  ];
  const text = [lines.join("\n"), ""];
  if (result.output.length > 0) text.push("--- stdout ---", Buffer.from(result.output).toString("utf8"));
  if (result.stderr.length > 0) text.push("--- stderr ---", Buffer.from(result.stderr).toString("utf8"));
  return `${text.join("\n").replace(/\n*$/, "")}\n`;
}
