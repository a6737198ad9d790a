import { readFile, writeFile } from "node:fs/promises";
import { buffer } from "node:stream/consumers";
import { Command, InvalidArgumentError, Option } from "commander";
import {
  JOB_PRIORITIES,
  TERMINAL_JOB_STATES,
  VERIFICATION_MODES,
  toJson,
  type ApiClient,
  type ApiJobView,
} from "../../api/index.ts";
import { addApiOptions, API_HELP, connectApi, type ApiOptions } from "../endpoint.ts";
import { reportErrors } from "../errors.ts";
import { JOB_EXIT_HELP, jobExitCode, statusName } from "../exit-codes.ts";
import { formatJob } from "../format.ts";
import { createProgressView } from "../progress.ts";

interface SubmitOptions extends ApiOptions {
  input?: string;
  fuel?: bigint;
  maxPrice?: bigint;
  priority?: (typeof JOB_PRIORITIES)[number];
  memoryPages?: number;
  timeout?: number;
  deadline?: number;
  entry?: string;
  replicas?: number;
  verification?: (typeof VERIFICATION_MODES)[number];
  spotRate?: number;
  wait: boolean;
  waitTimeout: number;
  output?: string;
  json?: boolean;
}

/** `cell job submit | status | list`: jobs through the local node's API. */
export function registerJobCommand(program: Command): Command {
  const job = program
    .command("job")
    .description("submit jobs to the network through the local node and follow them")
    .addHelpText(
      "after",
      `\nExamples:\n  $ cell job submit examples/jobs/build/sha256.wasm --input README.md\n  $ cell job status 0x3f…\n${API_HELP}\n`,
    );
  registerSubmit(job);
  registerStatus(job);
  registerList(job);
  return job;
}

function registerSubmit(job: Command): void {
  const submit = job
    .command("submit")
    .description("submit a WebAssembly job, show its progress, print its result and receipt")
    .argument("<module.wasm>", "the job's WebAssembly module")
    .option("--input <file>", "the job's input (stdin of the module); - reads stdin", undefined)
    .option("--fuel <n>", "fuel limit (default: the node's buyer.defaultFuel)", parseUint)
    .option("--max-price <p>", "highest accepted price per mega-fuel, in ATP wei", parseUint)
    .addOption(new Option("--priority <p>", "scheduling priority").choices(JOB_PRIORITIES))
    .option("--memory-pages <n>", "memory cap in 64 KiB pages", parsePositiveInt)
    .option("--timeout <ms>", "execution timeout on the donor, in ms", parsePositiveInt)
    .option("--deadline <ms>", "give up placing the job after this many ms", parsePositiveInt)
    .option("--entry <name>", "exported function to run (default _start)")
    .option(
      "--replicas <n>",
      "executors on distinct operators; q(n) of them must agree (n=3 → 2, n=4 → 3)",
      parseReplicas,
    )
    .addOption(
      new Option("--verification <mode>", "quorum of --replicas, or spot checks at --spot-rate").choices(
        VERIFICATION_MODES,
      ),
    )
    .option(
      "--spot-rate <p>",
      "probability that a second donor re-executes (spot mode; default 0.1)",
      parseRate,
    )
    .option("--no-wait", "print the job id and return at once")
    .option("--wait-timeout <ms>", "stop following the job after this many ms", parsePositiveInt, 600_000)
    .option("--output <file>", "write the job's output bytes to a file")
    .option("--json", "print the final job (state, result, receipt, events) as JSON on stdout")
    .addHelpText(
      "after",
      `\nExamples:\n  $ cell job submit examples/jobs/build/sha256.wasm --input README.md\n  $ cell job submit job.wasm --input data.bin --fuel 50000000 --max-price 2000 --priority high --json\n  $ cell job submit job.wasm --input data.bin --replicas 4\n  $ cell job submit job.wasm --input data.bin --verification spot --spot-rate 0.2\n${JOB_EXIT_HELP}\nWith --no-wait: 0 once the node accepted the job, 1 otherwise.\n${API_HELP}\n`,
    );
  addApiOptions(submit).action(async function (this: Command, modulePath: string, options: SubmitOptions) {
    await reportErrors(this, () => submitJob(modulePath, options));
  });
}

async function submitJob(modulePath: string, options: SubmitOptions): Promise<void> {
  const module = await readInputFile(modulePath, "module");
  if (!isWasm(module))
    throw new Error(`${modulePath} is not a WebAssembly module (it does not start with \\0asm)`);
  const input = options.input === undefined ? new Uint8Array() : await readInputFile(options.input, "input");
  const client = await connectApi(options);
  const startedAt = performance.now();
  const { jobId } = await client.submitJob({
    module,
    input,
    fuelLimit: options.fuel,
    maxPricePerMegaFuel: options.maxPrice,
    priority: options.priority,
    memoryPages: options.memoryPages,
    timeoutMs: options.timeout,
    deadlineMs: options.deadline === undefined ? undefined : Date.now() + options.deadline,
    entry: options.entry,
    replicas: options.replicas,
    verification: options.verification,
    spotRate: options.spotRate,
  });
  if (!options.wait) {
    process.stdout.write(options.json ? `${JSON.stringify({ jobId })}\n` : `${jobId}\n`);
    return;
  }
  process.stderr.write(`submitted job ${jobId}\n`);
  const final = await followJob(client, jobId, options.waitTimeout, startedAt);
  await printOutcome(final, options);
}

/** Streams the job's events to stderr until it completes, fails or `timeoutMs` passes. */
async function followJob(
  client: ApiClient,
  jobId: string,
  timeoutMs: number,
  startedAt: number,
): Promise<ApiJobView> {
  const progress = createProgressView(process.stderr, startedAt);
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    for await (const message of client.jobEvents(jobId, { signal })) {
      if (message.event === "end") return message.data;
      progress.event(message.data);
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  } finally {
    progress.stop();
  }
  const job = await client.getJob(jobId);
  if (!TERMINAL_JOB_STATES.has(job.state))
    process.stderr.write(
      `still ${job.state} after ${timeoutMs} ms; follow it with \`cell job status ${jobId}\`\n`,
    );
  return job;
}

async function printOutcome(job: ApiJobView, options: { json?: boolean; output?: string }): Promise<void> {
  if (options.output) await writeOutput(job, options.output);
  process.stdout.write(options.json ? `${toJson(job)}\n` : formatJob(job));
  process.exitCode = jobExitCode(job);
}

async function writeOutput(job: ApiJobView, file: string): Promise<void> {
  const output = (job.result as { outputBase64?: string } | undefined)?.outputBase64;
  if (output === undefined) throw new Error(`job ${job.jobId} has no output yet (state ${job.state})`);
  await writeFile(file, Buffer.from(output, "base64"));
  process.stderr.write(`wrote ${Buffer.byteLength(output, "base64")} bytes of output to ${file}\n`);
}

function registerStatus(job: Command): void {
  const status = job
    .command("status")
    .description("show a job's state, events, result and receipt")
    .argument("<id>", "job id (0x + 64 hex digits)")
    .option("--json", "print the job as JSON")
    .option("--output <file>", "write the job's output bytes to a file")
    .addHelpText(
      "after",
      `\nExample:\n  $ cell job status 0x9c1d…e4 --json\n${JOB_EXIT_HELP}\n${API_HELP}\n`,
    );
  addApiOptions(status).action(async function (
    this: Command,
    jobId: string,
    options: ApiOptions & { json?: boolean; output?: string },
  ) {
    await reportErrors(this, async () => {
      const client = await connectApi(options);
      const view = await client.getJob(jobId);
      if (options.json) process.stdout.write(`${toJson(view)}\n`);
      else process.stdout.write(formatJob(view, { events: true }));
      if (options.output) await writeOutput(view, options.output);
      process.exitCode = jobExitCode(view);
    });
  });
}

function registerList(job: Command): void {
  const list = job
    .command("list")
    .description("list the jobs this node has submitted or run")
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      `\nExample:\n  $ cell job list\n\nExit code: 0 when the node answered (whatever the jobs' states), 1 on error.\n${API_HELP}\n`,
    );
  addApiOptions(list).action(async function (this: Command, options: ApiOptions & { json?: boolean }) {
    await reportErrors(this, async () => {
      const jobs = await (await connectApi(options)).listJobs();
      if (options.json) {
        process.stdout.write(`${toJson(jobs)}\n`);
        return;
      }
      if (jobs.length === 0) process.stdout.write("no jobs\n");
      for (const view of jobs) {
        const status = (view.result as { status?: unknown } | undefined)?.status;
        const named = status === undefined ? "" : statusName(status);
        process.stdout.write(`${view.jobId}  ${view.state.padEnd(10)} ${named}\n`);
      }
    });
  });
}

async function readInputFile(path: string, what: string): Promise<Uint8Array> {
  if (path === "-") return new Uint8Array(await buffer(process.stdin));
  try {
    return new Uint8Array(await readFile(path));
  } catch (error) {
    throw new Error(
      `cannot read ${what} file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      { cause: error },
    );
  }
}

function isWasm(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d;
}

function parseUint(value: string): bigint {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a non-negative integer, got '${value}'`);
  return BigInt(value);
}

function parseReplicas(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1 || parsed > 255)
    throw new InvalidArgumentError(`expected a replica count from 1 to 255, got '${value}'`);
  return parsed;
}

function parseRate(value: string): number {
  const parsed = Number(value);
  if (value.trim() === "" || !(parsed >= 0 && parsed <= 1))
    throw new InvalidArgumentError(`expected a probability from 0 to 1, got '${value}'`);
  return parsed;
}

function parsePositiveInt(value: string): number {
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed <= 0)
    throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return parsed;
}
