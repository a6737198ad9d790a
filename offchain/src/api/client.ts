import type { Hex } from "viem";
import type { ApiJobEvent, ApiJobView, SubmitJobRequest } from "./types.ts";

export interface ApiClientOptions {
  /** Base URL of the node's API, e.g. http://127.0.0.1:7070 */
  url: string;
  token: string;
  /** Per-request timeout for non-streaming calls. */
  timeoutMs?: number;
  /** Where url and token came from (an api.json path, a flag), named when the API is unreachable. */
  source?: string;
}

/** What `submitJob` sends: the same fields as a node-side submit request. */
export type SubmitJobOptions = SubmitJobRequest;

export type JobStreamMessage = { event: "job"; data: ApiJobEvent } | { event: "end"; data: ApiJobView };

/** An error answer of the API: its HTTP status and `{ error: { code, message, issues? } }`. */
export class ApiRequestError extends Error {
  readonly status: number;
  readonly code: string;
  readonly issues: { path: string; message: string }[] | undefined;

  constructor(status: number, code: string, message: string, issues?: { path: string; message: string }[]) {
    super(message);
    this.name = "ApiRequestError";
    this.status = status;
    this.code = code;
    this.issues = issues;
  }
}

export interface ApiClient {
  readonly url: string;
  health(): Promise<{ status: string; peerId: string; chainId: number }>;
  listJobs(): Promise<ApiJobView[]>;
  getJob(jobId: string): Promise<ApiJobView>;
  submitJob(options: SubmitJobOptions): Promise<{ jobId: Hex }>;
  /** The job's events so far and as they happen; ends with its final view. */
  jobEvents(jobId: string, options?: { signal?: AbortSignal }): AsyncGenerator<JobStreamMessage>;
  peers(): Promise<unknown[]>;
  /** Slash submissions of evidence the node verified: still waiting, and every one kept. */
  slashes(): Promise<{ pending: unknown[]; history: unknown[] }>;
  /** Payment channels the node pays donors through, with spend rate and time to empty. */
  paymentChannels(): Promise<unknown[]>;
  /** Settles the node's held vouchers and receipt root now (POST /settlement/run); `zk`: its zk vouchers by proof. */
  settleNow(options?: { zk?: boolean }): Promise<Record<string, unknown>>;
  /** Settled epochs newest first; `next` is the `before` of the next page, null at the end. */
  settlements(page?: {
    before?: number;
    limit?: number;
  }): Promise<{ settlements: unknown[]; next: number | null }>;
  /** The inclusion proof of the node's receipt for a job, with the chain to check it on. */
  receiptProof(jobId: string): Promise<Record<string, unknown>>;
  /**
   * A GET /explorer/<path> answer from the node's chain index, e.g. `explorer("settlements",
   * { limit: 20, epoch: 3n })`; absent parameters are left out. Paged answers are
   * `{ items, nextCursor? }`.
   */
  explorer<T = unknown>(
    path: string,
    query?: Record<string, string | number | bigint | undefined>,
  ): Promise<T>;
}

export function createApiClient(options: ApiClientOptions): ApiClient {
  const base = options.url.replace(/\/+$/, "");
  const timeoutMs = options.timeoutMs ?? 30_000;
  const headers = { authorization: `Bearer ${options.token}` };
  const unreachable = (error: unknown) => {
    const from = options.source ? ` (from ${options.source}; is that node still running?)` : "";
    return new Error(`cannot reach the Cell API at ${base}: ${describeFetchError(error)}${from}`, {
      cause: error,
    });
  };

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      throw unreachable(error);
    }
    if (!response.ok) throw await errorOf(response);
    return (await response.json()) as T;
  }

  return {
    url: base,
    health: () => call("GET", "/health"),
    listJobs: async () => (await call<{ jobs: ApiJobView[] }>("GET", "/jobs")).jobs,
    getJob: (jobId) => call("GET", `/jobs/${encodeURIComponent(jobId)}`),
    submitJob: (job) => call("POST", "/jobs", submitBody(job)),
    peers: async () => (await call<{ peers: unknown[] }>("GET", "/peers")).peers,
    settleNow: (options = {}) => call("POST", options.zk ? "/settlement/run?zk=1" : "/settlement/run"),
    settlements: (page = {}) => {
      const query = new URLSearchParams();
      if (page.before !== undefined) query.set("before", String(page.before));
      if (page.limit !== undefined) query.set("limit", String(page.limit));
      return call("GET", `/settlements${query.size > 0 ? `?${query}` : ""}`);
    },
    receiptProof: (jobId) => call("GET", `/receipts/${encodeURIComponent(jobId)}/proof`),
    slashes: () => call("GET", "/slashes"),
    paymentChannels: async () => (await call<{ channels: unknown[] }>("GET", "/payments/channels")).channels,
    explorer: (path, query = {}) => {
      const params = new URLSearchParams(
        Object.entries(query).flatMap(([key, value]) => (value === undefined ? [] : [[key, `${value}`]])),
      );
      const search = params.size > 0 ? `?${params}` : "";
      return call("GET", `/explorer/${path.replace(/^\/+/, "")}${search}`);
    },
    async *jobEvents(jobId, { signal } = {}) {
      let response: Response;
      try {
        response = await fetch(`${base}/jobs/${encodeURIComponent(jobId)}/events`, {
          headers: { ...headers, accept: "text/event-stream" },
          signal,
        });
      } catch (error) {
        throw unreachable(error);
      }
      if (!response.ok) throw await errorOf(response);
      if (!response.body) throw new Error("the event stream has no body");
      yield* parseEventStream(response.body);
    },
  };
}

function submitBody(job: SubmitJobOptions): Record<string, unknown> {
  const body: Record<string, unknown> = {
    moduleBase64: Buffer.from(job.module).toString("base64"),
    inputBase64: Buffer.from(job.input).toString("base64"),
    fuelLimit: job.fuelLimit?.toString(),
    memoryPages: job.memoryPages,
    timeoutMs: job.timeoutMs,
    maxPricePerMegaFuel: job.maxPricePerMegaFuel?.toString(),
    priority: job.priority,
    deadlineMs: job.deadlineMs,
    entry: job.entry,
    replicas: job.replicas,
    verification: job.verification,
    spotRate: job.spotRate,
  };
  return Object.fromEntries(Object.entries(body).filter(([, value]) => value !== undefined));
}

/** Parses `text/event-stream` into `{ event, data }` messages with JSON data. */
export async function* parseEventStream(body: ReadableStream<Uint8Array>): AsyncGenerator<JobStreamMessage> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, "\n");
    let boundary = buffer.indexOf("\n\n");
    while (boundary !== -1) {
      const message = parseMessage(buffer.slice(0, boundary));
      buffer = buffer.slice(boundary + 2);
      if (message) yield message;
      boundary = buffer.indexOf("\n\n");
    }
  }
}

function parseMessage(block: string): JobStreamMessage | undefined {
  let event = "message";
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0 || (event !== "job" && event !== "end")) return undefined;
  return { event, data: JSON.parse(data.join("\n")) } as JobStreamMessage;
}

async function errorOf(response: Response): Promise<ApiRequestError> {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text) as {
      error: { code: string; message: string; issues?: { path: string; message: string }[] };
    };
    return new ApiRequestError(response.status, error.code, error.message, error.issues);
  } catch {
    return new ApiRequestError(
      response.status,
      "http_error",
      `HTTP ${response.status}: ${text.slice(0, 200)}`,
    );
  }
}

function describeFetchError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? error.message;
}
