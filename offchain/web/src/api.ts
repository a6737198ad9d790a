// The console's client of its own node's API (same origin). The token comes from the URL
// fragment `#token=…` that `npm start` prints, or from the user pasting it; it is kept in
// sessionStorage (this tab only) and the fragment is removed from the address bar.
const TOKEN_KEY = "cell-api-token";

export function takeTokenFromLocation(): string | undefined {
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (match?.[1]) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
}

export function saveToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}

/** A route this node does not serve (its part of Cell is not installed or not enabled here). */
export class NotAvailableError extends Error {
  readonly path: string;
  constructor(path: string, reason?: string) {
    super(reason ? `not available on this node: ${reason}` : `not available on this node (${path})`);
    this.name = "NotAvailableError";
    this.path = path;
  }
}

export class ApiCallError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = "ApiCallError";
    this.status = status;
  }
}

function headers(json: boolean): Record<string, string> {
  const token = sessionStorage.getItem(TOKEN_KEY) ?? "";
  return { authorization: `Bearer ${token}`, ...(json ? { "content-type": "application/json" } : {}) };
}

async function failure(response: Response, path: string): Promise<Error> {
  const body = (await response.json().catch(() => undefined)) as ApiErrorBody | undefined;
  return errorFor(response.status, body, path);
}

export type ApiErrorBody = { error?: { code?: string; message?: string } };

/**
 * The error for a failed call: a missing route, or a part this node runs without, is "not
 * available"; a missing job or channel is an ordinary error with the node's message.
 */
export function errorFor(status: number, body: ApiErrorBody | undefined, path: string): Error {
  const message = body?.error?.message ?? "";
  if (status === 404 && (body === undefined || message.startsWith("no route ")))
    return new NotAvailableError(path);
  if (status === 404 && message.startsWith("this node does not"))
    return new NotAvailableError(path, message.slice("this node does not".length).trim());
  if (status === 401) return new ApiCallError(401, "The API token is missing or wrong: paste it above.");
  return new ApiCallError(status, message || `${path} answered ${status}`);
}

export async function getJson<T>(path: string): Promise<T> {
  const response = await fetch(path, { headers: headers(false) });
  if (!response.ok) throw await failure(response, path);
  return (await response.json()) as T;
}

export async function postJson<T>(path: string, body: unknown): Promise<T> {
  const response = await fetch(path, { method: "POST", headers: headers(true), body: JSON.stringify(body) });
  if (!response.ok) throw await failure(response, path);
  return (await response.json()) as T;
}

/**
 * Reads a Server-Sent Events stream with the bearer token (EventSource cannot send one):
 * calls `onMessage` per event until the stream ends or `signal` aborts.
 */
export async function streamEvents(
  path: string,
  onMessage: (event: string, data: unknown) => void,
  signal: AbortSignal,
): Promise<void> {
  const response = await fetch(path, { headers: headers(false), signal });
  if (!response.ok || !response.body) throw await failure(response, path);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let boundary = buffer.indexOf("\n\n");
    while (boundary !== -1) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      dispatchBlock(block, onMessage);
      boundary = buffer.indexOf("\n\n");
    }
  }
}

function dispatchBlock(block: string, onMessage: (event: string, data: unknown) => void): void {
  let event = "message";
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trim());
  }
  if (data.length > 0) onMessage(event, JSON.parse(data.join("\n")));
}
