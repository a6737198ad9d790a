// The `cell` CLI as a user runs it: `node bin/cell.mjs …` in a child process, talking
// to a real API server over loopback. The node behind the API is a small in-test object
// serving the node's own views (JobView, JobEvent, PeerView) with signed specs and
// receipts; it plays a job's life once someone follows the job's events.
import { runCell as cell } from "../support/cell-cli.ts";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import {
  createApiServer,
  ensureApiToken,
  writeApiInfo,
  type ApiServer,
} from "../../offchain/src/api/index.ts";
import { freePort } from "../../offchain/src/chain/index.ts";
import type { JobEvent, JobView, SubmitJobRequest } from "../../offchain/src/node/types.ts";
import { receiptFromWire, verifyReceipt } from "../../offchain/src/protocol/index.ts";
import {
  BUYER,
  CHAIN_INFO,
  DOMAIN,
  DONOR,
  DONOR_PEER,
  DONOR_PEER_ID,
  jobEvent,
  queuedJob,
  signedResult,
  stateAfter,
  type ServedNode,
} from "./node-views.ts";

const OUTPUT = "digest: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n";
const FAILING_INPUT = "please fail";
const FUEL_BURNING_INPUT = "burn all fuel";
const UNPLACED_INPUT = "wait forever";

interface Step {
  type: JobEvent["type"];
  extra?: Partial<JobEvent>;
  finish?: Pick<JobView, "result" | "receipt">;
}

class ScriptedNode extends EventEmitter implements ServedNode {
  readonly peerId = "12D3KooWScriptedBuyerScriptedBuyerScriptedBuyer";
  readonly did = "did:key:z6MkScripted";
  readonly operator = BUYER.address;
  readonly chainInfo = CHAIN_INFO;
  readonly jobs = new Map<Hex, JobView>();
  readonly submitted: SubmitJobRequest[] = [];
  /** Steps of each job not played yet; played when a listener subscribes. */
  readonly #scripts = new Map<Hex, Step[]>();

  multiaddrs() {
    return ["/ip4/127.0.0.1/tcp/1"];
  }

  async submitJob(request: SubmitJobRequest) {
    this.submitted.push(request);
    const job = await queuedJob(request, this.submitted.length);
    this.jobs.set(job.jobId, job);
    this.#scripts.set(job.jobId, await scriptFor(job, request));
    return { jobId: job.jobId };
  }

  override on(event: "job", listener: (event: JobEvent) => void): this {
    super.on(event, listener);
    setImmediate(() => this.#playNextSteps());
    return this;
  }

  /** One step of every scripted job per turn of the event loop, as a node's progress arrives. */
  #playNextSteps(): void {
    for (const [jobId, steps] of this.#scripts) {
      const step = steps.shift();
      if (steps.length === 0) this.#scripts.delete(jobId);
      if (step) this.#advance(jobId, step);
    }
    if (this.#scripts.size > 0 && this.listenerCount("job") > 0) setImmediate(() => this.#playNextSteps());
  }

  #advance(jobId: Hex, step: Step) {
    const job = this.jobs.get(jobId);
    assert.ok(job);
    const event = jobEvent(job, step.type, step.extra);
    job.events.push(event);
    job.state = stateAfter(job.state, step.type);
    if (step.type === "failed") job.reason = step.extra?.reason;
    if (step.type === "assigned") job.executor = { peerId: DONOR_PEER_ID, operator: DONOR.address };
    if (step.finish) Object.assign(job, step.finish);
    this.emit("job", event);
  }

  getJob(jobId: Hex) {
    return this.jobs.get(jobId);
  }

  listJobs() {
    return [...this.jobs.values()];
  }

  peers() {
    return [DONOR_PEER];
  }
}

/** A job's life by its input: completes ok, fails unplaced, stays announced, or runs out of fuel. */
async function scriptFor(job: JobView, request: SubmitJobRequest): Promise<Step[]> {
  const input = Buffer.from(request.input).toString();
  if (input === UNPLACED_INPUT) return [{ type: "announced" }];
  if (input === FAILING_INPUT)
    return [
      { type: "announced" },
      { type: "failed", extra: { reason: "deadline_missed", detail: "no bid before the deadline" } },
    ];
  const fuelLimit = BigInt(job.spec.fuelLimit);
  const finish =
    input === FUEL_BURNING_INPUT
      ? await signedResult(job, "out_of_fuel", fuelLimit, new Uint8Array())
      : await signedResult(job, "ok", 48_213n, Buffer.from(OUTPUT));
  const donor = { peerId: DONOR_PEER_ID, operator: DONOR.address };
  return [
    { type: "announced" },
    { type: "bid_received", extra: { ...donor, pricePerMegaFuel: "1000" } },
    { type: "assigned", extra: { ...donor, attempt: 1 } },
    { type: "running", extra: donor },
    { type: "receipt", extra: donor, finish },
    { type: "completed" },
  ];
}

describe("cell CLI", () => {
  let node: ScriptedNode;
  let server: ApiServer;
  let dir: string;
  let dataDir: string;
  let tokenFile: string;
  let modulePath: string;
  let inputPath: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "cell-cli-"));
    dataDir = join(dir, "buyer");
    node = new ScriptedNode();
    const token = await ensureApiToken(dataDir);
    tokenFile = token.tokenFile;
    server = await createApiServer({ node, token: token.token });
    await writeApiInfo(dataDir, { url: server.url, tokenFile });
    modulePath = join(dir, "job.wasm");
    inputPath = join(dir, "input.txt");
    await writeFile(modulePath, Buffer.from([0, 97, 115, 109, 1, 0, 0, 0]));
    await writeFile(inputPath, "hello");
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("prints help with an example for every command", async () => {
    const commands = [
      [],
      ["node"],
      ["node", "start"],
      ["job"],
      ["job", "submit"],
      ["job", "status"],
      ["job", "list"],
      ["peers"],
      ["keys"],
    ];
    for (const command of commands) {
      const { code, stdout } = await cell([...command, "--help"]);
      assert.equal(code, 0, command.join(" "));
      assert.match(stdout, /Usage: cell/, command.join(" "));
      assert.match(
        stdout,
        /Examples?:\n\s+\$ (\S+=\S+ )?cell /,
        `${command.join(" ")} --help has an example`,
      );
    }
  });

  it("submits a job, shows its progress on stderr and prints result and receipt", async () => {
    const { code, stdout, stderr } = await cell([
      "job",
      "submit",
      modulePath,
      "--input",
      inputPath,
      "--fuel",
      "5000000",
      "--max-price",
      "2000",
      "--priority",
      "high",
      "--api",
      server.url,
      "--token-file",
      tokenFile,
    ]);
    assert.equal(code, 0, stderr);
    const submitted = node.submitted.at(-1);
    assert.ok(submitted);
    assert.equal(Buffer.from(submitted.input).toString(), "hello");
    assert.equal(submitted.fuelLimit, 5_000_000n);
    assert.equal(submitted.maxPricePerMegaFuel, 2000n);
    assert.equal(submitted.priority, "high");
    assert.match(stderr, /submitted job 0x[0-9a-f]{64}/);
    const steps = [...stderr.matchAll(/^\[\d+\.\d+s\] (\w+)/gm)].map((match) => match[1]);
    assert.deepEqual(steps, ["announced", "bid_received", "assigned", "running", "receipt", "completed"]);
    assert.match(stderr, /bid_received peerId=12D3KooWDonor1\S* operator=0x\w+ pricePerMegaFuel=1000/);
    assert.match(stdout, /^state\s+completed$/m);
    assert.match(stdout, /^status\s+ok$/m);
    assert.match(stdout, /^fuel used\s+48213$/m);
    assert.ok(stdout.includes(OUTPUT.trim()), "prints the text output");
    const job = [...node.jobs.values()].at(-1);
    assert.ok(job?.receipt);
    assert.match(stdout, new RegExp(`^receipt\\n\\s+jobId\\s+${job.jobId}$`, "m"));
    assert.match(stdout, /^\s+status\s+ok \(0\)$/m);
    assert.match(stdout, new RegExp(`^\\s+signature\\s+${job.receipt.signature}$`, "m"));
  });

  it("finds the API through --data-dir and prints the final job as JSON", async () => {
    const outFile = join(dir, "out.bin");
    const { code, stdout, stderr } = await cell([
      "job",
      "submit",
      modulePath,
      "--input",
      inputPath,
      "--data-dir",
      dataDir,
      "--json",
      "--output",
      outFile,
    ]);
    assert.equal(code, 0, stderr);
    const job = JSON.parse(stdout) as JobView;
    assert.equal(job.state, "completed");
    assert.ok(job.receipt);
    assert.equal(
      await verifyReceipt(DOMAIN, receiptFromWire(job.receipt.message), job.receipt.signature),
      true,
      "the printed receipt is the donor's, signature intact",
    );
    assert.equal(job.events.length, 6);
    assert.equal(await readFile(outFile, "utf8"), OUTPUT);
  });

  it("finds the API through CELL_DATA_DIR and ./.cell/api.json", async () => {
    const viaEnv = await cell(["job", "list"], { CELL_DATA_DIR: dataDir });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.match(viaEnv.stdout, /^0x[0-9a-f]{64}\s+completed\s+ok$/m);
    await writeApiInfo(join(dir, ".cell"), { url: server.url, tokenFile });
    const viaCwd = await cell(["peers"], {}, dir);
    assert.equal(viaCwd.code, 0, viaCwd.stderr);
    assert.equal(
      viaCwd.stdout,
      `${DONOR_PEER_ID}  connected  staked donor  operator ${DONOR.address}  price 1000/Mfuel  slots 1/2 free  penalty 0\n    /ip4/127.0.0.1/tcp/40001\n`,
    );
  });

  it("prints a job's status with its events, and JSON", async () => {
    const [jobId] = [...node.jobs.keys()];
    assert.ok(jobId);
    const human = await cell(["job", "status", jobId, "--data-dir", dataDir]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`^job\\s+${jobId}$`, "m"));
    assert.match(human.stdout, /^events\n(\s+\d\d:\d\d:\d\d\.\d{3}\s+\w+.*\n){6}/m);
    const json = await cell(["job", "status", jobId, "--data-dir", dataDir, "--json"]);
    assert.equal(JSON.parse(json.stdout).jobId, jobId);
  });

  it("returns the job id at once with --no-wait; status of the unfinished job exits 4", async () => {
    const { code, stdout } = await cell(["job", "submit", modulePath, "--no-wait", "--data-dir", dataDir]);
    assert.equal(code, 0);
    assert.match(stdout, /^0x[0-9a-f]{64}\n$/);
    const status = await cell(["job", "status", stdout.trim(), "--data-dir", dataDir]);
    assert.equal(status.code, 4, status.stderr);
    assert.match(status.stdout, /^state\s+queued$/m);
  });

  it("exits 4 when the job has not finished when --wait-timeout ends", async () => {
    const waiting = join(dir, "wait.txt");
    await writeFile(waiting, UNPLACED_INPUT);
    const submit = ["job", "submit", modulePath, "--input", waiting, "--wait-timeout", "500"];
    const { code, stdout, stderr } = await cell([...submit, "--data-dir", dataDir]);
    assert.equal(code, 4, stderr);
    assert.match(stderr, /still announced after 500 ms; follow it with `cell job status 0x[0-9a-f]{64}`/);
    assert.match(stdout, /^state\s+announced$/m);
  });

  it("exits 2 with the reason when the job fails, for submit and status", async () => {
    const failing = join(dir, "fail.txt");
    await writeFile(failing, FAILING_INPUT);
    const { code, stdout, stderr } = await cell([
      "job",
      "submit",
      modulePath,
      "--input",
      failing,
      "--data-dir",
      dataDir,
    ]);
    assert.equal(code, 2, stderr);
    assert.match(stderr, /failed reason=deadline_missed detail=no bid before the deadline/);
    assert.match(stdout, /^state\s+failed\nreason\s+deadline_missed$/m);
    const jobId = stdout.match(/^job\s+(0x[0-9a-f]{64})$/m)?.[1];
    assert.ok(jobId);
    const status = await cell(["job", "status", jobId, "--data-dir", dataDir, "--json"]);
    assert.equal(status.code, 2, status.stderr);
    assert.equal((JSON.parse(status.stdout) as JobView).reason, "deadline_missed");
  });

  it("names a non-ok status and exits 3, for submit and status", async () => {
    const burning = join(dir, "burn.txt");
    await writeFile(burning, FUEL_BURNING_INPUT);
    const submit = ["job", "submit", modulePath, "--input", burning, "--fuel", "7000", "--data-dir", dataDir];
    const { code, stdout, stderr } = await cell(submit);
    assert.equal(code, 3, stderr);
    assert.match(stdout, /^state\s+completed$/m);
    assert.match(stdout, /^status\s+out_of_fuel$/m);
    assert.match(stdout, /^fuel used\s+7000$/m);
    assert.match(stdout, /^\s+status\s+out_of_fuel \(3\)$/m);
    assert.doesNotMatch(stdout, /status\s+3$/m);
    const jobId = stdout.match(/^job\s+(0x[0-9a-f]{64})$/m)?.[1];
    assert.ok(jobId);
    const status = await cell(["job", "status", jobId, "--data-dir", dataDir]);
    assert.equal(status.code, 3, status.stderr);
    assert.match(status.stdout, /^status\s+out_of_fuel$/m);
    const list = await cell(["job", "list", "--data-dir", dataDir]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^${jobId}\\s+completed\\s+out_of_fuel$`, "m"));
  });

  it("documents its exit codes in the help of every job command", async () => {
    for (const command of [["job", "submit"], ["job", "status"], ["run"]]) {
      const { stdout } = await cell([...command, "--help"]);
      assert.match(
        stdout,
        /Exit codes: 0 the job (completed|finished) with status ok; 1 usage or other error; 2 the job\nfailed/,
        command.join(" "),
      );
      assert.match(stdout, /3 the job (completed|finished) with another status/, command.join(" "));
    }
  });

  it("names what is wrong: bad flags, missing files, unknown jobs, wrong token, no node", async () => {
    const badFuel = await cell(["job", "submit", modulePath, "--fuel", "lots"]);
    assert.equal(badFuel.code, 1);
    assert.match(badFuel.stderr, /--fuel <n>' argument 'lots' is invalid\. expected a non-negative integer/);
    const badPriority = await cell(["job", "submit", modulePath, "--priority", "urgent"]);
    assert.match(badPriority.stderr, /Allowed choices are critical, high, normal, low, background/);
    const notWasm = await cell(["job", "submit", inputPath, "--data-dir", dataDir]);
    assert.equal(notWasm.code, 1);
    assert.match(notWasm.stderr, /error: .*input\.txt is not a WebAssembly module/);
    const missing = await cell(["job", "submit", join(dir, "nope.wasm"), "--data-dir", dataDir]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /error: cannot read module file .*nope\.wasm: ENOENT/);
    const unknown = await cell(["job", "status", `0x${"ab".repeat(32)}`, "--data-dir", dataDir]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /error: no job 0xabab.* \(HTTP 404 job_not_found\)/);
    const wrongTokenFile = join(dir, "wrong-token");
    await writeFile(wrongTokenFile, "this-is-not-the-right-token\n");
    const wrongToken = await cell(["peers", "--api", server.url, "--token-file", wrongTokenFile]);
    assert.equal(wrongToken.code, 1);
    assert.match(wrongToken.stderr, /error: invalid API token \(HTTP 401 unauthorized\)/);
    const staleDir = join(dir, "stale");
    const closedPort = await freePort();
    await writeApiInfo(staleDir, { url: `http://127.0.0.1:${closedPort}`, tokenFile });
    const stale = await cell(["job", "list", "--data-dir", staleDir]);
    assert.equal(stale.code, 1);
    assert.match(
      stale.stderr,
      /^error: cannot reach the Cell API at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED \(from .*stale\/api\.json; is that node still running\?\)\n$/,
    );
    const noNode = await cell(["peers", "--data-dir", join(dir, "empty")], { HOME: dir });
    assert.equal(noNode.code, 1);
    assert.match(noNode.stderr, /error: no API info at .*empty\/api\.json: is the node running\?/);
  });
});
