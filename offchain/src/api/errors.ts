import type { ServerResponse } from "node:http";
import { toJson } from "./json.ts";

export type ApiErrorCode =
  | "bad_request"
  | "invalid_json"
  | "invalid_body"
  | "unauthorized"
  | "not_found"
  | "job_not_found"
  | "method_not_allowed"
  | "payload_too_large"
  | "job_rejected"
  | "not_configured"
  | "internal";

/** An error that the API answers with `{ error: { code, message, issues? } }` and `status`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: ApiErrorCode;
  readonly issues: { path: string; message: string }[] | undefined;

  constructor(
    status: number,
    code: ApiErrorCode,
    message: string,
    issues?: { path: string; message: string }[],
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.issues = issues;
  }
}

export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = toJson(body);
  response.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    ...headers,
  });
  response.end(text);
}

export function sendError(response: ServerResponse, error: ApiError): void {
  const body = {
    error: { code: error.code, message: error.message, ...(error.issues ? { issues: error.issues } : {}) },
  };
  const headers: Record<string, string> =
    error.status === 401 ? { "www-authenticate": 'Bearer realm="cell"' } : {};
  if (error.status === 413) headers.connection = "close";
  sendJson(response, error.status, body, headers);
}
