import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Hex } from "viem";
import { base64Length, DATA_LIMITS } from "../protocol/limits.ts";
import {
  consoleConfig,
  DEFAULT_CONSOLE_DIR,
  loadConsoleAssets,
  REGISTRATION_PROOF_MAX_BODY_BYTES,
  registrationProof,
  sendConsoleAsset,
} from "./console.ts";
import { ApiError, sendError, sendJson } from "./errors.ts";
import { serveExplorer } from "./explorer.ts";
import { JobEventHub } from "./hub.ts";
import { describeIssues, JOB_ID, SubmitJobBodySchema } from "./schemas.ts";
import { listSettlements, receiptProof, runSettlement } from "./settlement-routes.ts";
import { openEventStream, type EventStream } from "./sse.ts";
import { TERMINAL_EVENT_TYPES, TERMINAL_JOB_STATES, type ApiJobView, type ApiNode } from "./types.ts";

/** A job request at the data limits: module and input in base64, with room for the other fields. */
export const DEFAULT_MAX_BODY_BYTES =
  base64Length(DATA_LIMITS.moduleBytes) + base64Length(DATA_LIMITS.inputBytes) + 64 * 1024;

export interface ApiServerOptions {
  node: ApiNode;
  /** Bearer token every route except GET /health requires. */
  token: string;
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  logger?: Logger;
  /** Largest accepted request body (POST /jobs), in bytes; DEFAULT_MAX_BODY_BYTES fits the data limits. */
  maxBodyBytes?: number;
  /** Interval of SSE keep-alive comments. */
  heartbeatMs?: number;
  /** The built browser console served at `/` (default offchain/web/dist). */
  consoleDir?: string;
}

export interface ApiServer {
  /** `http://host:port`, with the port actually bound. */
  readonly url: string;
  close(): Promise<void>;
}

interface RequestContext {
  request: IncomingMessage;
  response: ServerResponse;
  params: string[];
}

type Handler = (context: RequestContext) => Promise<void> | void;

interface Route {
  method: string;
  pattern: RegExp;
  public?: boolean;
  handler: Handler;
}

/**
 * The node's local HTTP API: JSON over node:http, bound to loopback, bearer token on
 * every route but GET /health. Progress of a job streams as Server-Sent Events.
 */
export async function createApiServer(options: ApiServerOptions): Promise<ApiServer> {
  if (options.token.length < 16) throw new Error("API token must be at least 16 characters");
  const { node } = options;
  const host = options.host ?? "127.0.0.1";
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const logger = options.logger?.child({ domain: "api" });
  const streams = new Set<EventStream>();
  const hub = new JobEventHub(node);
  const tokenDigest = digest(options.token);
  const consoleAssets = loadConsoleAssets(options.consoleDir ?? DEFAULT_CONSOLE_DIR);

  const routes: Route[] = [
    {
      method: "GET",
      pattern: /^\/health$/,
      public: true,
      handler: ({ response }) => sendJson(response, 200, health(node)),
    },
    {
      method: "GET",
      pattern: /^\/(?:|[\w.-]+\.(?:html|js|css|svg))$/,
      public: true,
      handler: ({ request, response }) =>
        sendConsoleAsset(consoleAssets, pathOf(request), response, node.chainInfo.rpcUrl),
    },
    {
      method: "GET",
      pattern: /^\/console\/config$/,
      handler: ({ response }) => sendJson(response, 200, consoleConfig(node)),
    },
    {
      method: "POST",
      pattern: /^\/registration\/proof$/,
      handler: async ({ request, response }) => {
        const body = parseJson(await readBody(request, REGISTRATION_PROOF_MAX_BODY_BYTES));
        sendJson(response, 200, await registrationProof(node, body));
      },
    },
    {
      method: "GET",
      pattern: /^\/jobs$/,
      handler: ({ response }) => sendJson(response, 200, { jobs: node.listJobs().map(summarize) }),
    },
    { method: "POST", pattern: /^\/jobs$/, handler: (context) => submitJob(node, context, maxBodyBytes) },
    {
      method: "GET",
      pattern: /^\/jobs\/([^/]+)$/,
      handler: ({ response, params }) => sendJson(response, 200, findJob(node, params[0])),
    },
    {
      method: "GET",
      pattern: /^\/jobs\/([^/]+)\/events$/,
      handler: ({ request, response, params }) =>
        streamJobEvents(node, findJob(node, params[0]), request, response, { streams, hub, heartbeatMs }),
    },
    {
      method: "GET",
      pattern: /^\/peers$/,
      handler: ({ response }) => sendJson(response, 200, { peers: node.peers() }),
    },
    {
      method: "GET",
      pattern: /^\/slashes$/,
      handler: ({ response }) => sendJson(response, 200, node.slashes?.() ?? { pending: [], history: [] }),
    },
    {
      method: "GET",
      pattern: /^\/payments\/channels$/,
      handler: ({ response }) => sendJson(response, 200, { channels: node.paymentChannels?.() ?? [] }),
    },
    {
      method: "POST",
      pattern: /^\/settlement\/run$/,
      handler: ({ request, response }) => runSettlement(node, request, response),
    },
    {
      method: "GET",
      pattern: /^\/settlements$/,
      handler: ({ request, response }) => listSettlements(node, request, response),
    },
    {
      method: "GET",
      pattern: /^\/receipts\/([^/]+)\/proof$/,
      handler: ({ response, params }) => receiptProof(node, params[0], response),
    },
    {
      method: "GET",
      pattern: /^\/explorer\/.+$/,
      public: true,
      handler: ({ request, response }) => serveExplorer(node.explorer, request, response),
    },
  ];

  const server = createServer((request, response) => {
    const started = performance.now();
    response.on("finish", () =>
      logger?.debug(
        {
          method: request.method,
          path: pathOf(request),
          status: response.statusCode,
          ms: Math.round(performance.now() - started),
        },
        "api request",
      ),
    );
    dispatch(routes, tokenDigest, request, response).catch((error: unknown) => {
      const apiError = asApiError(error);
      if (apiError.status >= 500) logger?.error({ err: error, path: pathOf(request) }, "api handler failed");
      if (response.headersSent) response.destroy();
      else sendError(response, apiError);
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;

  await listen(server, host, options.port ?? 0);
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  logger?.info({ url }, "api listening");

  return {
    url,
    close: async () => {
      for (const stream of streams) stream.close();
      hub.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

async function dispatch(
  routes: Route[],
  tokenDigest: Buffer,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const path = pathOf(request);
  const matching = routes.filter((route) => route.pattern.test(path));
  if (matching.length === 0) throw new ApiError(404, "not_found", `no route ${path}`);
  const route = matching.find((candidate) => candidate.method === request.method);
  if (!route) {
    const allowed = matching.map((candidate) => candidate.method).join(", ");
    response.setHeader("allow", allowed);
    throw new ApiError(
      405,
      "method_not_allowed",
      `${request.method} is not allowed on ${path} (allowed: ${allowed})`,
    );
  }
  if (!route.public) authorize(request, tokenDigest);
  const params = (route.pattern.exec(path) ?? []).slice(1).map((param) => decodeURIComponent(param));
  await route.handler({ request, response, params });
}

function authorize(request: IncomingMessage, tokenDigest: Buffer): void {
  const header = request.headers.authorization;
  if (!header) throw new ApiError(401, "unauthorized", "missing Authorization: Bearer <token> header");
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match?.[1]) throw new ApiError(401, "unauthorized", "Authorization header must be `Bearer <token>`");
  // Equal-length digests make the comparison constant-time whatever the token's length.
  if (!timingSafeEqual(digest(match[1]), tokenDigest))
    throw new ApiError(401, "unauthorized", "invalid API token");
}

function health(node: ApiNode) {
  return { status: "ok", peerId: node.peerId, chainId: Number(node.chainInfo.chainId) };
}

function findJob(node: ApiNode, id: string | undefined): ApiJobView {
  if (!id || !JOB_ID.test(id))
    throw new ApiError(
      400,
      "bad_request",
      `job id must be 0x followed by 64 hex digits, got ${JSON.stringify(id)}`,
    );
  const job = node.getJob(id.toLowerCase() as Hex) ?? node.getJob(id as Hex);
  if (!job) throw new ApiError(404, "job_not_found", `no job ${id}`);
  return job;
}

/** A job without its output bytes, for listings. */
function summarize(job: ApiJobView): ApiJobView {
  const result = job.result as Record<string, unknown> | undefined;
  if (!result || !("outputBase64" in result)) return job;
  const { outputBase64: _omitted, ...rest } = result;
  return { ...job, result: rest };
}

async function submitJob(
  node: ApiNode,
  { request, response }: RequestContext,
  maxBodyBytes: number,
): Promise<void> {
  const body = parseJson(await readBody(request, maxBodyBytes));
  const parsed = SubmitJobBodySchema.safeParse(body);
  if (!parsed.success) {
    const issues = describeIssues(parsed.error);
    const summary = issues.map((issue) => `${issue.path}: ${issue.message}`).join("; ");
    throw new ApiError(400, "invalid_body", `invalid job request: ${summary}`, issues);
  }
  let submitted: { jobId: Hex };
  try {
    submitted = await node.submitJob(parsed.data);
  } catch (error) {
    throw new ApiError(
      422,
      "job_rejected",
      `the node rejected the job: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  sendJson(response, 202, { jobId: submitted.jobId }, { location: `/jobs/${submitted.jobId}` });
}

function readBody(request: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > maxBytes) {
    request.resume();
    return Promise.reject(tooLarge(maxBytes, declared));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        request.removeAllListeners("data");
        request.resume();
        reject(tooLarge(maxBytes, size));
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

function tooLarge(maxBytes: number, size: number): ApiError {
  return new ApiError(
    413,
    "payload_too_large",
    `request body is ${size > maxBytes ? `over ${maxBytes}` : size} bytes; the limit is ${maxBytes} bytes`,
  );
}

function parseJson(body: Buffer): unknown {
  if (body.length === 0)
    throw new ApiError(400, "invalid_json", "request body is empty; expected a JSON object");
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new ApiError(400, "invalid_json", `request body is not valid JSON: ${(error as Error).message}`);
  }
}

/**
 * Replays the job's events so far, then forwards live ones; ends with an `end` event
 * carrying the final job view once the job completes or fails.
 */
function streamJobEvents(
  node: ApiNode,
  job: ApiJobView,
  request: IncomingMessage,
  response: ServerResponse,
  { streams, hub, heartbeatMs }: { streams: Set<EventStream>; hub: JobEventHub; heartbeatMs: number },
): void {
  const stream = openEventStream(response, heartbeatMs);
  streams.add(stream);
  const finish = () => {
    stream.send("end", node.getJob(job.jobId) ?? job);
    stream.close();
  };
  // getJob (by the caller) and watching here run in one synchronous step: no event falls between.
  const stopWatching = hub.watch(job.jobId, (event) => {
    stream.send("job", event);
    if (TERMINAL_EVENT_TYPES.has(event.type)) queueMicrotask(finish);
  });
  stream.onClose(() => {
    stopWatching();
    streams.delete(stream);
  });
  request.on("close", () => stream.close());
  for (const event of job.events) stream.send("job", event);
  if (TERMINAL_JOB_STATES.has(job.state)) finish();
}

function asApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  return new ApiError(500, "internal", "internal error");
}

function pathOf(request: IncomingMessage): string {
  const raw = request.url ?? "/";
  const query = raw.indexOf("?");
  return query === -1 ? raw : raw.slice(0, query);
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
