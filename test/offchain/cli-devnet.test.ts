// `npm start` and the CLI against real nodes: scripts/start.ts brings up a Hardhat devnet,
// staked donors and a buyer; `cell job submit` runs a real job through the buyer's API
// and its receipt verifies with viem and on-chain; `cell node start` joins the devnet as
// another node; Ctrl-C (SIGINT) stops everything.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { recoverTypedDataAddress, type Hex } from "viem";
import {
  createReader,
  freePort,
  parseDeployment,
  verifyReceiptOnChain,
  type Deployment,
} from "../../offchain/src/chain/index.ts";
import {
  cellDomain,
  receiptFromWire,
  receiptTypes,
  type ReceiptWire,
} from "../../offchain/src/protocol/index.ts";
import { ensureJobs } from "../../scripts/build-jobs.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CELL = join(ROOT, "bin/cell.mjs");
const START = join(ROOT, "scripts/start.ts");

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function launch(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function waitFor(running: Running, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = running.stdout().match(pattern);
    if (match) return match;
    if (running.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `no ${pattern} within ${timeoutMs} ms\nstdout:\n${running.stdout()}\nstderr:\n${running.stderr().slice(-4000)}`,
  );
}

async function stop(running: Running, signal: NodeJS.Signals): Promise<number | null> {
  if (running.child.exitCode !== null) return running.child.exitCode;
  running.child.kill(signal);
  const timeout = setTimeout(() => running.child.kill("SIGKILL"), 30_000);
  const code = await running.exited;
  clearTimeout(timeout);
  return code;
}

async function cell(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const running = launch([CELL, ...args]);
  const code = await running.exited;
  return { code, stdout: running.stdout(), stderr: running.stderr() };
}

async function verifyReceipt(
  deployment: Deployment,
  rpcUrl: string,
  receipt: { message: ReceiptWire; signature: Hex },
) {
  const message = receiptFromWire(receipt.message);
  const signer = await recoverTypedDataAddress({
    domain: cellDomain(deployment.chainId, deployment.donorRegistry),
    types: receiptTypes,
    primaryType: "Receipt",
    message,
    signature: receipt.signature,
  });
  assert.equal(signer.toLowerCase(), message.executor.toLowerCase(), "the receipt is signed by its executor");
  assert.equal(
    await verifyReceiptOnChain(createReader(rpcUrl, deployment), message, receipt.signature),
    true,
    "DonorRegistry accepts the receipt",
  );
}

describe("npm start and the CLI on a devnet", { timeout: 300_000 }, () => {
  let dir: string;
  let devnet: Running;
  let rpcUrl: string;
  let deployment: Deployment;
  let buyerDir: string;
  let modulePath: string;
  let inputPath: string;
  const input = `1\nCell devnet ${Date.now()}`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "cell-devnet-"));
    buyerDir = join(dir, "devnet", "buyer");
    modulePath = (await ensureJobs(["sha256"])).sha256;
    inputPath = join(dir, "input.txt");
    await writeFile(inputPath, input);
    const chainPort = await freePort();
    devnet = launch([
      START,
      "--donors",
      "2",
      "--chain-port",
      String(chainPort),
      "--api-port",
      "0",
      "--dir",
      dir,
    ]);
    await waitFor(devnet, /Press Ctrl-C to stop everything\./, 180_000);
    rpcUrl = `http://127.0.0.1:${chainPort}`;
    deployment = parseDeployment(JSON.parse(await readFile(join(dir, "devnet", "deployment.json"), "utf8")));
  });

  after(async () => {
    if (devnet) await stop(devnet, "SIGINT");
    await rm(dir, { recursive: true, force: true });
  });

  it("prints RPC url, contracts, nodes with peer ids, API url and token file, example commands", () => {
    const out = devnet.stdout();
    assert.match(out, new RegExp(`chain\\s+${rpcUrl.replace(/[.:/]/g, "\\$&")}\\s+\\(chain id 31337`));
    for (const name of ["ATPToken", "DonorRegistry", "PaymentChannels"])
      assert.match(out, new RegExp(`${name}\\s+0x[0-9a-fA-F]{40}`));
    assert.match(out, /\(2\/2 donors staked and visible to the buyer\)/);
    for (const node of ["buyer", "donor1", "donor2"])
      assert.match(out, new RegExp(`${node}\\s+12D3KooW\\w+\\s+operator 0x[0-9a-fA-F]{40}`));
    assert.match(out, /buyer API\s+http:\/\/127\.0\.0\.1:\d+/);
    assert.match(out, /console\s+http:\/\/127\.0\.0\.1:\d+\/#token=[\w-]{16,}\n/);
    assert.match(out, /API token\s+\S+api-token/);
    assert.match(
      out,
      /node bin\/cell\.mjs job submit examples\/jobs\/build\/sha256\.wasm --input README\.md --data-dir \S+buyer/,
    );
  });

  it("runs a job through the buyer's API: progress, result, and a receipt that verifies with viem and on-chain", async () => {
    const { code, stdout, stderr } = await cell([
      "job",
      "submit",
      modulePath,
      "--input",
      inputPath,
      "--data-dir",
      buyerDir,
      "--json",
    ]);
    assert.equal(code, 0, stderr);
    const steps = [...stderr.matchAll(/^\[\d+\.\d+s\] (\w+)/gm)].map((match) => match[1]);
    assert.deepEqual([steps[0], steps.at(-1)], ["announced", "completed"]);
    assert.ok(
      steps.includes("bid_received") && steps.includes("assigned") && steps.includes("receipt"),
      steps.join(","),
    );
    const job = JSON.parse(stdout);
    assert.equal(job.state, "completed");
    assert.equal(job.result.status, "ok");
    const expected = createHash("sha256")
      .update(input.slice(input.indexOf("\n") + 1))
      .digest("hex");
    assert.equal(Buffer.from(job.result.outputBase64, "base64").toString().trim(), expected);
    await verifyReceipt(deployment, rpcUrl, job.receipt);

    const status = await cell(["job", "status", job.jobId, "--data-dir", buyerDir]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^state\s+completed$/m);
    assert.match(status.stdout, new RegExp(`^\\s+signature\\s+${job.receipt.signature}$`, "m"));
  });

  it("names a real out-of-fuel receipt's status and exits 3 for submit and status", async () => {
    const fuelLimit = "1000";
    const submit = [
      "job",
      "submit",
      modulePath,
      "--input",
      inputPath,
      "--fuel",
      fuelLimit,
      "--data-dir",
      buyerDir,
    ];
    const { code, stdout, stderr } = await cell(submit);
    assert.equal(code, 3, `${stdout}\n${stderr}`);
    assert.match(stdout, /^state\s+completed$/m);
    assert.match(stdout, /^status\s+out_of_fuel$/m);
    assert.match(stdout, new RegExp(`^fuel used\\s+${fuelLimit}$`, "m"));
    assert.match(stdout, /^\s+status\s+out_of_fuel \(3\)$/m);
    const jobId = stdout.match(/^job\s+(0x[0-9a-f]{64})$/m)?.[1];
    assert.ok(jobId);
    const status = await cell(["job", "status", jobId, "--data-dir", buyerDir, "--json"]);
    assert.equal(status.code, 3, status.stderr);
    const job = JSON.parse(status.stdout);
    assert.equal(job.result.status, "out_of_fuel");
    await verifyReceipt(deployment, rpcUrl, job.receipt);
  });

  it("lists the staked donors as the buyer's peers", async () => {
    const { code, stdout, stderr } = await cell(["peers", "--data-dir", buyerDir, "--json"]);
    assert.equal(code, 0, stderr);
    const staked = JSON.parse(stdout).filter(
      (peer: { staked?: boolean; connected: boolean }) => peer.staked && peer.connected,
    );
    assert.equal(staked.length, 2);
  });

  it("cell node start joins the devnet from a TOML config, prints its summary, serves its API, and stops on SIGTERM", async () => {
    const nodeDir = join(dir, "extra");
    const passphraseFile = join(dir, "pass.txt");
    await writeFile(passphraseFile, "extra node passphrase\n");
    const buyerAddress = devnet.stdout().match(/buyer\s+12D3KooW\w+.*\n\s+(\/ip4\/\S+)/)?.[1];
    assert.ok(buyerAddress);
    // Paths in the file are relative to it; flags override it (--api-port, --log-level).
    const configFile = join(dir, "extra.toml");
    await writeFile(
      configFile,
      [
        'dataDir = "extra"',
        `bootstrap = ["${buyerAddress}"]`,
        'logLevel = "info"',
        "[api]",
        "port = 7474",
        "[chain]",
        `rpcUrl = "${rpcUrl}"`,
        'deploymentFile = "devnet/deployment.json"',
        "[buyer]",
        'maxPricePerMegaFuel = "5000"',
        "",
      ].join("\n"),
    );
    const node = launch([
      CELL,
      "node",
      "start",
      "--config",
      configFile,
      "--passphrase-file",
      passphraseFile,
      "--api-port",
      "0",
      "--log-level",
      "warn",
      "--json",
    ]);
    try {
      const line = await waitFor(node, /^\{.*\}$/m, 60_000);
      const summary = JSON.parse(line[0]);
      assert.match(summary.peerId, /^12D3KooW/);
      assert.match(summary.did, /^did:key:z6Mk/);
      assert.match(summary.listen[0], new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${summary.peerId}$`));
      assert.equal(summary.chainId, 31337);
      assert.equal(summary.rpcUrl, rpcUrl);
      assert.deepEqual(
        Object.values(summary.contracts)
          .map((address) => String(address).toLowerCase())
          .sort(),
        [deployment.atpToken, deployment.donorRegistry, deployment.paymentChannels]
          .map((address) => address.toLowerCase())
          .sort(),
      );
      assert.match(summary.api.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(summary.api.infoFile, join(nodeDir, "api.json"));
      const info = JSON.parse(await readFile(summary.api.infoFile, "utf8"));
      assert.equal(info.url, summary.api.url);

      const health = await fetch(`${summary.api.url}/health`);
      assert.equal(((await health.json()) as { peerId: string }).peerId, summary.peerId);
      const job = await cell([
        "job",
        "submit",
        modulePath,
        "--input",
        inputPath,
        "--data-dir",
        nodeDir,
        "--json",
      ]);
      assert.equal(job.code, 0, job.stderr);
      const view = JSON.parse(job.stdout);
      assert.equal(view.state, "completed");
      await verifyReceipt(deployment, rpcUrl, view.receipt);
    } finally {
      assert.equal(await stop(node, "SIGTERM"), 0, node.stderr());
    }
    assert.equal(existsSync(join(nodeDir, "api.json")), false, "api.json is removed on stop");
  });

  it("names the flag to change when a port it was given is taken", async () => {
    const taken = launch([START, "--dir", join(dir, "other"), "--chain-port", String(new URL(rpcUrl).port)]);
    assert.equal(await taken.exited, 1);
    assert.match(
      taken.stderr(),
      /port \d+ on 127\.0\.0\.1 is taken by another program; choose another with --chain-port <port>/,
    );
  });

  it("refuses a second devnet on the same dir while the first runs", async () => {
    const second = launch([START, "--dir", dir, "--chain-port", "1"]);
    assert.equal(await second.exited, 1);
    assert.match(second.stderr(), new RegExp(`another devnet \\(pid ${devnet.child.pid}\\) is running`));
    assert.equal(
      existsSync(join(dir, "devnet", "buyer", "cell.db")),
      true,
      "the running devnet's files are untouched",
    );
  });

  it("stops the nodes and the chain on Ctrl-C", async () => {
    const code = await stop(devnet, "SIGINT");
    assert.equal(code, 0, devnet.stderr().slice(-2000));
    assert.match(devnet.stderr(), /stopping the nodes and the chain/);
    await assert.rejects(fetch(rpcUrl, { method: "POST", body: "{}" }), "the chain is down");
    assert.equal(existsSync(join(dir, "api.json")), false);
  });
});
