// A replicated job through the API's submit schema and the CLI's job view: the fields a
// buyer sends (replicas, spot checks) and what `cell job status` prints (replicas, verdict,
// tally, dissenters).
import { runCell as cell } from "../support/cell-cli.ts";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hex } from "viem";
import { SubmitJobBodySchema, createApiServer, ensureApiToken } from "../../offchain/src/api/index.ts";
import type { ApiJobView, ApiNode, ApiServer, SubmitJobRequest } from "../../offchain/src/api/index.ts";
import { formatJob } from "../../offchain/src/cli/format.ts";

const MODULE = Buffer.from("\0asm\x01\0\0\0").toString("base64");
const RIGHT = `0x${"aa".repeat(32)}` as Hex;
const WRONG = `0x${"bb".repeat(32)}` as Hex;
const operator = (n: number) => `0x${String(n).padStart(40, "0")}` as Hex;

describe("submitting replicated jobs through the API", () => {
  it("takes a replica count and spot checks with their rate", () => {
    const quorum = SubmitJobBodySchema.parse({ moduleBase64: MODULE, replicas: 4 });
    assert.equal(quorum.replicas, 4);
    const spot = SubmitJobBodySchema.parse({ moduleBase64: MODULE, verification: "spot", spotRate: 0.25 });
    assert.deepEqual([spot.verification, spot.spotRate], ["spot", 0.25]);
  });

  it("refuses a bad replica count, a rate out of range, and a rate or replica count that does not fit the mode", () => {
    const issues = (body: Record<string, unknown>) => {
      const parsed = SubmitJobBodySchema.safeParse({ moduleBase64: MODULE, ...body });
      assert.equal(parsed.success, false, JSON.stringify(body));
      return parsed.error!.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ");
    };
    assert.match(issues({ replicas: 0 }), /^replicas:/);
    assert.match(issues({ replicas: 256 }), /^replicas:/);
    assert.match(issues({ verification: "spot", spotRate: 1.5 }), /^spotRate:/);
    assert.match(issues({ spotRate: 0.5 }), /spotRate applies to verification "spot" only/);
    assert.match(
      issues({ verification: "spot", replicas: 3 }),
      /replicas cannot be set with verification "spot"/,
    );
  });
});

describe("cell job status of a replicated job", () => {
  const view: ApiJobView = {
    jobId: `0x${"cd".repeat(32)}`,
    state: "completed",
    events: [],
    spec: { replicas: 4 },
    verification: { mode: "quorum" },
    verdict: {
      outcome: "accepted",
      quorum: 3,
      tally: [
        { status: "ok", outputCid: RIGHT, fuelUsed: "500", votes: 3 },
        { status: "ok", outputCid: WRONG, fuelUsed: "500", votes: 1 },
      ],
      dissenters: [{ peerId: "12D3KooWLiar", operator: operator(2) }],
      equivocators: [],
    },
    replicas: [1, 2, 3, 4].map((n) => ({
      slot: n - 1,
      attempt: n,
      peerId: n === 2 ? "12D3KooWLiar" : `12D3KooWHonest${n}`,
      operator: operator(n),
      state: "voted" as const,
      receipt: { status: "ok", outputCid: n === 2 ? WRONG : RIGHT, fuelUsed: "500" },
      agrees: n !== 2,
    })),
  };

  it("prints the verdict with its tally, the dissenter, and each replica with its vote", () => {
    const text = formatJob(view);
    assert.match(text, /^verify +quorum of 4 replicas$/m);
    assert.match(text, /^verdict +accepted \(quorum 3\)$/m);
    assert.match(text, new RegExp(`^ +3× ok +output ${RIGHT} +fuel 500$`, "m"));
    assert.match(text, new RegExp(`^ +1× ok +output ${WRONG} +fuel 500$`, "m"));
    assert.match(text, new RegExp(`^dissenter +12D3KooWLiar \\(operator ${operator(2)}\\)$`, "m"));
    const replicas = text.split("\n").filter((line) => /^ +#\d attempt/.test(line));
    assert.equal(replicas.length, 4);
    assert.match(replicas[1]!, /#1 attempt 2 voted +12D3KooWLiar .* DISSENTS$/);
    assert.match(replicas[0]!, /agrees$/);
  });

  it("prints a failed job's no_quorum verdict and spot mode", () => {
    const text = formatJob({
      ...view,
      state: "failed",
      reason: "no_quorum",
      verification: { mode: "spot", rate: 0.1 },
      verdict: { ...view.verdict!, outcome: "no_quorum", dissenters: [] },
    });
    assert.match(text, /^reason +no_quorum$/m);
    assert.match(text, /^verify +spot checks at p = 0.1$/m);
    assert.match(text, /^verdict +no_quorum \(quorum 3\)$/m);
  });
});

/** An API node that records submissions and serves one replicated job. */
class RecordingNode implements ApiNode {
  readonly peerId = "12D3KooWRecordingBuyerRecordingBuyerRecording";
  readonly did = "did:key:z6MkRecording";
  readonly operator = operator(99);
  readonly chainInfo = { chainId: 31337, rpcUrl: "http://127.0.0.1:1", contracts: {} };
  readonly submitted: SubmitJobRequest[] = [];
  readonly job: ApiJobView;

  constructor(job: ApiJobView) {
    this.job = job;
  }

  multiaddrs() {
    return [];
  }

  async submitJob(request: SubmitJobRequest) {
    this.submitted.push(request);
    return { jobId: this.job.jobId };
  }

  getJob(jobId: Hex) {
    return jobId === this.job.jobId ? this.job : undefined;
  }

  listJobs() {
    return [this.job];
  }

  peers() {
    return [];
  }

  on() {
    return this;
  }
}

describe("cell job submit and status with replicas", () => {
  let dir: string;
  let server: ApiServer;
  let node: RecordingNode;
  let api: string[];
  let modulePath: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "cell-quorum-cli-"));
    const { token, tokenFile } = await ensureApiToken(join(dir, "node"));
    node = new RecordingNode({
      jobId: `0x${"cd".repeat(32)}`,
      state: "completed",
      events: [],
      spec: { replicas: 3 },
      result: { status: "ok", fuelUsed: "7", outputCid: "bafkreiaaaa", outputBase64: "" },
      verification: { mode: "quorum" },
      verdict: {
        outcome: "accepted",
        quorum: 2,
        tally: [
          { status: "ok", outputCid: RIGHT, fuelUsed: "7", votes: 2 },
          { status: "ok", outputCid: WRONG, fuelUsed: "7", votes: 1 },
        ],
        dissenters: [{ peerId: "12D3KooWLiar", operator: operator(2) }],
        equivocators: [],
      },
    });
    server = await createApiServer({ node, token });
    api = ["--api", server.url, "--token-file", tokenFile];
    modulePath = join(dir, "job.wasm");
    await writeFile(modulePath, Buffer.from([0, 97, 115, 109, 1, 0, 0, 0]));
  });

  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("sends --replicas, and --verification spot with --spot-rate", async () => {
    const quorum = await cell(["job", "submit", modulePath, "--replicas", "4", "--no-wait", ...api]);
    assert.equal(quorum.code, 0, quorum.stderr);
    assert.equal(node.submitted.at(-1)?.replicas, 4);
    const spot = await cell([
      "job",
      "submit",
      modulePath,
      "--verification",
      "spot",
      "--spot-rate",
      "0.2",
      "--no-wait",
      ...api,
    ]);
    assert.equal(spot.code, 0, spot.stderr);
    assert.deepEqual([node.submitted.at(-1)?.verification, node.submitted.at(-1)?.spotRate], ["spot", 0.2]);
  });

  it("refuses a replica count or spot rate out of range, naming it", async () => {
    const submissions = node.submitted.length;
    const replicas = await cell(["job", "submit", modulePath, "--replicas", "0", "--no-wait", ...api]);
    assert.notEqual(replicas.code, 0);
    assert.match(replicas.stderr, /replica count from 1 to 255, got '0'/);
    const rate = await cell([
      "job",
      "submit",
      modulePath,
      "--verification",
      "spot",
      "--spot-rate",
      "2",
      ...api,
    ]);
    assert.notEqual(rate.code, 0);
    assert.match(rate.stderr, /probability from 0 to 1, got '2'/);
    assert.equal(node.submitted.length, submissions, "nothing was submitted");
  });

  it("prints the verdict, the tally and the dissenter with cell job status", async () => {
    const { code, stdout, stderr } = await cell(["job", "status", node.job.jobId, ...api]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^verdict +accepted \(quorum 2\)$/m);
    assert.match(stdout, /^ +2× ok +output 0xa{64} +fuel 7$/m);
    assert.match(stdout, /^dissenter +12D3KooWLiar/m);
  });
});
