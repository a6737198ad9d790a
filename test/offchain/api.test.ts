// HTTP layer of the local API, served over a real loopback socket. The node behind it
// is a small in-test object serving the node's own views (JobView, JobEvent, PeerView)
// with signed specs and receipts; runs of real nodes behind the API are covered by
// api-node.test.ts and cli-devnet.test.ts.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import {
  ApiRequestError,
  createApiClient,
  createApiServer,
  DEFAULT_MAX_BODY_BYTES,
  type ApiJobView,
  type ApiServer,
} from "../../offchain/src/api/index.ts";
import type { JobEvent, JobView, SubmitJobRequest } from "../../offchain/src/node/types.ts";
import {
  BUYER,
  CHAIN_INFO,
  DONOR_PEER,
  jobEvent,
  queuedJob,
  signedResult,
  stateAfter,
  type ServedNode,
} from "./node-views.ts";
import { DATA_LIMITS } from "../../offchain/src/protocol/limits.ts";

const TOKEN = "test-token-0123456789abcdef";

class InTestNode extends EventEmitter implements ServedNode {
  readonly peerId = "12D3KooWInTestNodeInTestNodeInTestNodeInTestNode";
  readonly did = "did:key:z6MkInTest";
  readonly operator = BUYER.address;
  readonly chainInfo = CHAIN_INFO;
  readonly submitted: SubmitJobRequest[] = [];
  readonly jobs = new Map<Hex, JobView>();
  /** Each job's signed result, set on the job when it completes. */
  readonly #results = new Map<Hex, Pick<JobView, "result" | "receipt">>();
  rejectWith: string | undefined;

  multiaddrs() {
    return ["/ip4/127.0.0.1/tcp/1"];
  }

  async submitJob(request: SubmitJobRequest) {
    if (this.rejectWith) throw new Error(this.rejectWith);
    this.submitted.push(request);
    const job = await queuedJob(request, this.submitted.length);
    this.jobs.set(job.jobId, job);
    this.#results.set(job.jobId, await signedResult(job, "ok", 1234n, Buffer.from("hello")));
    this.advance(job.jobId, "announced");
    return { jobId: job.jobId };
  }

  advance(jobId: Hex, type: JobEvent["type"], extra: Partial<JobEvent> = {}) {
    const job = this.jobs.get(jobId);
    assert.ok(job);
    const event = jobEvent(job, type, extra);
    job.events.push(event);
    job.state = stateAfter(job.state, type);
    if (type === "completed") Object.assign(job, this.#results.get(jobId));
    if (type === "failed") job.reason = extra.reason;
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

async function request(server: ApiServer, path: string, init: RequestInit & { token?: string | null } = {}) {
  const { token = TOKEN, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  const response = await fetch(`${server.url}${path}`, { ...rest, headers });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

const validJob = {
  moduleBase64: Buffer.from([0, 97, 115, 109, 1, 0, 0, 0]).toString("base64"),
  inputBase64: Buffer.from("hello").toString("base64"),
  fuelLimit: "18446744073709551615",
  memoryPages: 16,
  timeoutMs: 5000,
  maxPricePerMegaFuel: "1000000000000",
  priority: "high",
  deadlineMs: 60_000,
};

describe("local API", () => {
  let node: InTestNode;
  let server: ApiServer;

  before(async () => {
    node = new InTestNode();
    server = await createApiServer({ node, token: TOKEN, port: 0, maxBodyBytes: 64 * 1024, heartbeatMs: 50 });
  });
  after(() => server.close());

  it("binds loopback on a free port", () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(new URL(server.url).port, "0");
  });

  it("serves GET /health without a token", async () => {
    const { status, body } = await request(server, "/health", { token: null });
    assert.equal(status, 200);
    assert.deepEqual(body, { status: "ok", peerId: node.peerId, chainId: 31337 });
  });

  it("rejects every other route without a valid bearer token", async () => {
    for (const path of ["/jobs", "/peers", `/jobs/0x${"0".repeat(64)}`]) {
      const missing = await request(server, path, { token: null });
      assert.equal(missing.status, 401, path);
      assert.equal(missing.body.error.code, "unauthorized");
      assert.match(missing.body.error.message, /missing Authorization/);
      assert.equal(missing.headers.get("www-authenticate"), 'Bearer realm="cell"');
      const wrong = await request(server, path, { token: `${TOKEN}x` });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.body.error.message, "invalid API token");
    }
    const malformed = await fetch(`${server.url}/jobs`, { headers: { authorization: `Basic ${TOKEN}` } });
    assert.equal(malformed.status, 401);
    assert.match(
      ((await malformed.json()) as { error: { message: string } }).error.message,
      /Bearer <token>/,
    );
  });

  it("accepts a job, hands the node decoded bytes and bigints, and answers 202 with its id", async () => {
    const { status, body, headers } = await request(server, "/jobs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(validJob),
    });
    assert.equal(status, 202);
    assert.match(body.jobId, /^0x[0-9a-f]{64}$/);
    assert.equal(headers.get("location"), `/jobs/${body.jobId}`);
    const submitted = node.submitted.at(-1);
    assert.ok(submitted);
    assert.deepEqual([...submitted.module], [0, 97, 115, 109, 1, 0, 0, 0]);
    assert.equal(Buffer.from(submitted.input).toString(), "hello");
    assert.equal(submitted.fuelLimit, 18446744073709551615n);
    assert.equal(submitted.maxPricePerMegaFuel, 1000000000000n);
    assert.equal(submitted.priority, "high");
    assert.equal(submitted.memoryPages, 16);
    assert.equal(submitted.deadlineMs, 60_000);
    assert.equal("entry" in submitted, false, "absent options stay absent");
  });

  it("names each invalid field of a job request with its path", async () => {
    const { status, body } = await request(server, "/jobs", {
      method: "POST",
      body: JSON.stringify({
        ...validJob,
        fuelLimit: "12abc",
        priority: "urgent",
        memoryPages: 0,
        moduleBase64: "not base64!",
        extra: 1,
      }),
    });
    assert.equal(status, 400);
    assert.equal(body.error.code, "invalid_body");
    const paths = body.error.issues.map((issue: { path: string }) => issue.path).sort();
    assert.deepEqual(paths, ["(body)", "fuelLimit", "memoryPages", "moduleBase64", "priority"]);
    assert.match(body.error.message, /fuelLimit: fuelLimit must be a non-negative decimal integer/);
    assert.match(body.error.message, /extra/);
  });

  it("rejects a fuel limit beyond uint64 and a missing module", async () => {
    const tooMuchFuel = await request(server, "/jobs", {
      method: "POST",
      body: JSON.stringify({ ...validJob, fuelLimit: "18446744073709551616" }),
    });
    assert.equal(tooMuchFuel.status, 400);
    assert.match(tooMuchFuel.body.error.message, /fuelLimit exceeds/);
    const { moduleBase64: _module, ...withoutModule } = validJob;
    const missing = await request(server, "/jobs", { method: "POST", body: JSON.stringify(withoutModule) });
    assert.equal(missing.status, 400);
    assert.deepEqual(
      missing.body.error.issues.map((issue: { path: string }) => issue.path),
      ["moduleBase64"],
    );
  });

  it("rejects bodies that are not JSON or empty", async () => {
    const broken = await request(server, "/jobs", { method: "POST", body: "{ nope" });
    assert.equal(broken.status, 400);
    assert.equal(broken.body.error.code, "invalid_json");
    const empty = await request(server, "/jobs", { method: "POST" });
    assert.equal(empty.status, 400);
    assert.match(empty.body.error.message, /empty/);
  });

  it("answers 413 to a body over the size limit", async () => {
    const big = JSON.stringify({ ...validJob, inputBase64: Buffer.alloc(100 * 1024).toString("base64") });
    const { status, body } = await request(server, "/jobs", { method: "POST", body: big });
    assert.equal(status, 413);
    assert.equal(body.error.code, "payload_too_large");
    assert.match(body.error.message, /limit is 65536 bytes/);
    const stillServing = await request(server, "/jobs");
    assert.equal(stillServing.status, 200);
  });

  it("reports the node's refusal as 422 with its reason", async () => {
    node.rejectWith = "module exceeds the memory cap";
    try {
      const { status, body } = await request(server, "/jobs", {
        method: "POST",
        body: JSON.stringify(validJob),
      });
      assert.equal(status, 422);
      assert.equal(body.error.code, "job_rejected");
      assert.match(body.error.message, /module exceeds the memory cap/);
    } finally {
      node.rejectWith = undefined;
    }
  });

  it("lists jobs without their output bytes and shows one job with them", async () => {
    const { jobId } = await node.submitJob({
      module: new Uint8Array([1]),
      input: new Uint8Array(),
      fuelLimit: 5n,
    });
    node.advance(jobId, "completed");
    const list = await request(server, "/jobs");
    assert.equal(list.status, 200);
    const listed = list.body.jobs.find((job: JobView) => job.jobId === jobId);
    assert.equal(listed.state, "completed");
    assert.equal(listed.result.fuelUsed, "1234");
    assert.equal("outputBase64" in listed.result, false);
    const one = await request(server, `/jobs/${jobId}`);
    assert.equal(one.status, 200);
    assert.equal(one.body.result.outputBase64, "aGVsbG8=");
    assert.equal(one.body.spec.fuelLimit, "5", "bigints travel as decimal strings");
    assert.deepEqual(one.body.receipt, node.jobs.get(jobId)?.receipt, "the signed receipt, unchanged");
  });

  it("answers 404 for unknown jobs and routes, 400 for malformed ids, 405 for wrong methods", async () => {
    const unknown = await request(server, `/jobs/0x${"f".repeat(64)}`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, "job_not_found");
    const malformed = await request(server, "/jobs/42");
    assert.equal(malformed.status, 400);
    assert.match(malformed.body.error.message, /64 hex digits/);
    const route = await request(server, "/nope");
    assert.equal(route.status, 404);
    assert.equal(route.body.error.code, "not_found");
    const method = await request(server, "/peers", { method: "DELETE" });
    assert.equal(method.status, 405);
    assert.equal(method.headers.get("allow"), "GET");
  });

  it("lists peers", async () => {
    const { status, body } = await request(server, "/peers");
    assert.equal(status, 200);
    assert.deepEqual(body.peers, node.peers());
  });

  it("streams a job's past and live events as SSE and ends with its final view", async () => {
    const client = createApiClient({ url: server.url, token: TOKEN });
    const { jobId } = await client.submitJob({
      module: new Uint8Array([0, 1]),
      input: new Uint8Array([2]),
      fuelLimit: 10n,
    });
    node.advance(jobId, "bid_received", { peerId: DONOR_PEER.peerId, pricePerMegaFuel: "1000" });
    const received: string[] = [];
    let final: ApiJobView | undefined;
    for await (const message of client.jobEvents(jobId)) {
      if (message.event === "end") {
        final = message.data;
        break;
      }
      received.push(message.data.type);
      // Each next step happens once the stream has shown the one before: live, not replayed.
      if (message.data.type === "bid_received") node.advance(jobId, "assigned");
      if (message.data.type === "assigned") node.advance(jobId, "running");
      if (message.data.type === "running") node.advance(jobId, "completed");
    }
    assert.deepEqual(received, ["announced", "bid_received", "assigned", "running", "completed"]);
    assert.equal(final?.state, "completed");
    assert.deepEqual(final?.receipt, node.jobs.get(jobId)?.receipt);
    assert.equal(node.listenerCount("job"), 0, "the stream unsubscribes when it ends");
  });

  it("streams a finished job's events at once", async () => {
    const { jobId } = await node.submitJob({ module: new Uint8Array([1]), input: new Uint8Array() });
    node.advance(jobId, "failed", { reason: "deadline_missed" });
    const client = createApiClient({ url: server.url, token: TOKEN });
    const messages = [];
    for await (const message of client.jobEvents(jobId)) messages.push(message);
    assert.deepEqual(
      messages.map((message) => message.event),
      ["job", "job", "end"],
    );
    assert.equal(messages[1]?.data.reason, "deadline_missed");
  });

  it("serves many event streams with one listener on the node", async () => {
    const { jobId } = await node.submitJob({ module: new Uint8Array([1]), input: new Uint8Array() });
    const client = createApiClient({ url: server.url, token: TOKEN });
    const streams = Array.from({ length: 12 }, () => client.jobEvents(jobId));
    for (const stream of streams) assert.equal((await stream.next()).value?.data.type, "announced");
    assert.equal(node.listenerCount("job"), 1);
    node.advance(jobId, "completed");
    for (const stream of streams) {
      assert.equal((await stream.next()).value?.data.type, "completed");
      assert.equal((await stream.next()).value?.event, "end");
      assert.equal((await stream.next()).done, true);
    }
    assert.equal(node.listenerCount("job"), 0);
  });

  it("turns error answers into ApiRequestError with status, code and issues", async () => {
    const client = createApiClient({ url: server.url, token: TOKEN });
    await assert.rejects(client.getJob(`0x${"e".repeat(64)}`), (error: unknown) => {
      assert.ok(error instanceof ApiRequestError);
      assert.equal(error.status, 404);
      assert.equal(error.code, "job_not_found");
      return true;
    });
    const badToken = createApiClient({ url: server.url, token: "wrong-token-wrong-token" });
    await assert.rejects(badToken.listJobs(), { name: "ApiRequestError", status: 401 });
    await assert.rejects(badToken.jobEvents(`0x${"e".repeat(64)}`).next(), {
      name: "ApiRequestError",
      status: 401,
    });
  });

  it("refuses a short token", async () => {
    await assert.rejects(createApiServer({ node, token: "short" }), /at least 16 characters/);
  });

  it("closes open event streams on close()", async () => {
    const other = await createApiServer({ node, token: TOKEN });
    const { jobId } = await node.submitJob({ module: new Uint8Array([1]), input: new Uint8Array() });
    const client = createApiClient({ url: other.url, token: TOKEN });
    const stream = client.jobEvents(jobId);
    assert.equal((await stream.next()).value?.event, "job");
    await other.close();
    assert.equal((await stream.next()).done, true);
    assert.equal(node.listenerCount("job"), 0);
    await assert.rejects(client.health(), /cannot reach the Cell API/);
  });
});

describe("local API at the data limits", () => {
  let node: InTestNode;
  let server: ApiServer;

  before(async () => {
    node = new InTestNode();
    server = await createApiServer({ node, token: TOKEN, port: 0 });
  });
  after(() => server.close());

  const submit = (moduleBytes: number, inputBytes: number) =>
    request(server, "/jobs", {
      method: "POST",
      body: JSON.stringify({
        moduleBase64: Buffer.alloc(moduleBytes, 1).toString("base64"),
        inputBase64: Buffer.alloc(inputBytes, 2).toString("base64"),
      }),
    });

  it("accepts a module and an input at their limits with the default body limit", async () => {
    assert.ok(DEFAULT_MAX_BODY_BYTES > DATA_LIMITS.moduleBytes + DATA_LIMITS.inputBytes);
    const { status } = await submit(DATA_LIMITS.moduleBytes, DATA_LIMITS.inputBytes);
    assert.equal(status, 202);
    const submitted = node.submitted.at(-1)!;
    assert.equal(submitted.module.length, DATA_LIMITS.moduleBytes);
    assert.equal(submitted.input.length, DATA_LIMITS.inputBytes);
  });

  it("refuses a module or an input one byte above its limit, naming the limit", async () => {
    const before = node.submitted.length;
    const module = await submit(DATA_LIMITS.moduleBytes + 1, 0);
    assert.equal(module.status, 400);
    assert.equal(module.body.error.code, "invalid_body");
    assert.match(
      module.body.error.message,
      new RegExp(
        `moduleBase64: the module is ${DATA_LIMITS.moduleBytes + 1} bytes, above the ${DATA_LIMITS.moduleBytes}-byte limit \\(DATA_LIMITS.moduleBytes\\)`,
      ),
    );
    const input = await submit(1, DATA_LIMITS.inputBytes + 1);
    assert.equal(input.status, 400);
    assert.match(
      input.body.error.message,
      /inputBase64: the input is \d+ bytes, above the \d+-byte limit \(DATA_LIMITS.inputBytes\)/,
    );
    assert.equal(node.submitted.length, before, "the node was handed neither");
  });
});
