// The `cell` CLI as a user runs it: `node bin/cell.mjs …` in a child process, talking
// to a real API server over loopback. The node behind the API is a small in-test object
// implementing the API's node interface, which plays a job's life on a timer.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Hex } from "viem";
import {
  createApiServer,
  ensureApiToken,
  writeApiInfo,
  type ApiJobEvent,
  type ApiJobView,
  type ApiNode,
  type ApiServer,
  type SubmitJobRequest,
} from "../../offchain/src/api/index.ts";
import { freePort } from "../../offchain/src/chain/index.ts";

const CELL = fileURLToPath(new URL("../../bin/cell.mjs", import.meta.url));
const OUTPUT = "digest: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n";

class ScriptedNode extends EventEmitter implements ApiNode {
  readonly peerId = "12D3KooWScriptedBuyerScriptedBuyerScriptedBuyer";
  readonly did = "did:key:z6MkScripted";
  readonly operator = "0x00000000000000000000000000000000000000bb" as const;
  readonly chainInfo = { chainId: 31337, rpcUrl: "http://127.0.0.1:1", contracts: {} };
  readonly jobs = new Map<Hex, ApiJobView>();
  readonly submitted: SubmitJobRequest[] = [];

  multiaddrs() {
    return ["/ip4/127.0.0.1/tcp/1"];
  }

  async submitJob(request: SubmitJobRequest) {
    this.submitted.push(request);
    const jobId = `0x${(0xc0de0000 + this.submitted.length).toString(16).padStart(64, "0")}` as Hex;
    this.jobs.set(jobId, { jobId, state: "queued", events: [] });
    const fails = Buffer.from(request.input).toString() === "please fail";
    const steps: [string, Record<string, unknown>][] = fails
      ? [
          ["announced", {}],
          ["failed", { reason: "no_bids" }],
        ]
      : [
          ["announced", {}],
          ["bid_received", { peerId: "12D3KooWDonor1", pricePerMegaFuel: "1000" }],
          ["assigned", { peerId: "12D3KooWDonor1" }],
          ["running", {}],
          ["receipt", {}],
          ["completed", {}],
        ];
    steps.forEach(([type, extra], index) =>
      setTimeout(() => this.advance(jobId, type, extra), 20 * (index + 1)),
    );
    return { jobId };
  }

  advance(jobId: Hex, type: string, extra: Record<string, unknown>) {
    const job = this.jobs.get(jobId);
    if (!job) return;
    const event: ApiJobEvent = { jobId, type, at: Date.now(), ...extra };
    job.events.push(event);
    if (["announced", "assigned", "running", "completed", "failed"].includes(type)) job.state = type;
    if (type === "completed") {
      job.result = {
        status: "ok",
        fuelUsed: "48213",
        outputCid: "bafkreitestoutput",
        outputBase64: Buffer.from(OUTPUT).toString("base64"),
      };
      job.receipt = {
        message: {
          jobId,
          executor: "0x00000000000000000000000000000000000000d1",
          fuelUsed: "48213",
          status: 0,
        },
        signature: "0xfeed",
      };
    }
    this.emit("job", event);
  }

  getJob(jobId: Hex) {
    return this.jobs.get(jobId);
  }

  listJobs() {
    return [...this.jobs.values()];
  }

  peers() {
    return [
      {
        peerId: "12D3KooWDonor1",
        connected: true,
        operator: "0x00000000000000000000000000000000000000d1",
        staked: true,
        pricePerMegaFuel: "1000",
        slots: 2,
        freeSlots: 1,
        multiaddrs: ["/ip4/127.0.0.1/tcp/40001"],
        penaltyScore: 0,
      },
    ];
  }
}

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cell(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CELL, ...args], {
      cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
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
    assert.match(stderr, /bid_received peerId=12D3KooWDonor1 pricePerMegaFuel=1000/);
    assert.match(stdout, /^state\s+completed$/m);
    assert.match(stdout, /^fuel used\s+48213$/m);
    assert.ok(stdout.includes(OUTPUT.trim()), "prints the text output");
    assert.match(stdout, /^receipt\n\s+jobId\s+0x/m);
    assert.match(stdout, /^\s+signature\s+0xfeed$/m);
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
    const job = JSON.parse(stdout);
    assert.equal(job.state, "completed");
    assert.equal(job.receipt.signature, "0xfeed");
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
      "12D3KooWDonor1  connected  staked donor  operator 0x00000000000000000000000000000000000000d1  price 1000/Mfuel  slots 1/2 free  penalty 0\n    /ip4/127.0.0.1/tcp/40001\n",
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

  it("returns the job id at once with --no-wait", async () => {
    const { code, stdout } = await cell(["job", "submit", modulePath, "--no-wait", "--data-dir", dataDir]);
    assert.equal(code, 0);
    assert.match(stdout, /^0x[0-9a-f]{64}\n$/);
  });

  it("exits 1 with the reason when the job fails", async () => {
    const failing = join(dir, "fail.txt");
    await writeFile(failing, "please fail");
    const { code, stdout, stderr } = await cell([
      "job",
      "submit",
      modulePath,
      "--input",
      failing,
      "--data-dir",
      dataDir,
    ]);
    assert.equal(code, 1);
    assert.match(stderr, /failed reason=no_bids/);
    assert.match(stdout, /^state\s+failed\nreason\s+no_bids$/m);
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
