// The browser console's side of the API: its static files (public, built by the setup into
// offchain/web/dist/), the chain facts it needs, and the operator's registration proof.
//
// The page gets the API token from the URL's fragment (`/#token=…`, which browsers never
// send to a server nor put in a Referer) or from the user pasting it; it keeps it in
// sessionStorage and sends it as a bearer token like any other client. The static files
// themselves hold no secret, so serving them without the token is safe.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ServerResponse } from "node:http";
import { getAddress, isAddress, type Address } from "viem";
import { z } from "zod";
import { ApiError } from "./errors.ts";
import type { ApiNode } from "./types.ts";

/** Where `scripts/build-web.mjs` writes the console. */
export const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL("../../web/dist/", import.meta.url));

/** The console is a handful of files; more than this means a wrong directory. */
const MAX_CONSOLE_FILES = 64;
const MAX_CONSOLE_FILE_BYTES = 16 * 1024 * 1024;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

export interface ConsoleAsset {
  body: Buffer;
  contentType: string;
}

/**
 * The built console, read once at start into memory: a fixed set of at most
 * MAX_CONSOLE_FILES files, never added to or evicted while the server runs. An absent
 * directory gives an empty set (the API then says how to build it).
 */
export function loadConsoleAssets(dir: string): Map<string, ConsoleAsset> {
  const assets = new Map<string, ConsoleAsset>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return assets;
  }
  for (const name of names.slice(0, MAX_CONSOLE_FILES)) {
    const contentType = CONTENT_TYPES[extname(name)];
    const file = join(dir, name);
    if (!contentType || !statSync(file).isFile() || statSync(file).size > MAX_CONSOLE_FILE_BYTES) continue;
    assets.set(`/${name}`, { body: readFileSync(file), contentType });
  }
  return assets;
}

/** Sends one console file; `/` is index.html. */
export function sendConsoleAsset(
  assets: Map<string, ConsoleAsset>,
  path: string,
  response: ServerResponse,
  rpcUrl: string,
): void {
  const asset = assets.get(path === "/" ? "/index.html" : path);
  if (!asset) {
    if (assets.size === 0)
      throw new ApiError(404, "not_found", "the console is not built: run `npm run setup` (or `npm start`)");
    throw new ApiError(404, "not_found", `no console file ${path}`);
  }
  response.writeHead(200, {
    "content-type": asset.contentType,
    "content-length": asset.body.length,
    "cache-control": "no-cache",
    "content-security-policy": consolePolicy(rpcUrl),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
  });
  response.end(asset.body);
}

/** Scripts only from this origin; network only to this API and the chain's RPC. */
function consolePolicy(rpcUrl: string): string {
  let rpcOrigin = "";
  try {
    rpcOrigin = new URL(rpcUrl).origin;
  } catch {
    // An unparsable RPC URL: the page then reaches only this API.
  }
  return [
    "default-src 'self'",
    `connect-src 'self' ${rpcOrigin}`.trim(),
    "img-src 'self' data:",
    "style-src 'self' 'unsafe-inline'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; ");
}

/** What the console needs to talk to the chain the node uses. */
export function consoleConfig(node: ApiNode) {
  return {
    chainId: Number(node.chainInfo.chainId),
    rpcUrl: node.chainInfo.rpcUrl,
    contracts: node.chainInfo.contracts,
    operator: node.operator,
    peerId: node.peerId,
  };
}

const RegistrationProofBodySchema = z.strictObject({
  donor: z
    .string()
    .max(42)
    .refine((value) => isAddress(value, { strict: false }), "donor must be a 0x-prefixed 20-byte address"),
  nonce: z
    .string()
    .regex(/^\d{1,20}$/, "nonce must be a decimal integer")
    .optional(),
});

/** Bodies of POST /registration/proof are one address and a number. */
export const REGISTRATION_PROOF_MAX_BODY_BYTES = 1024;

/** POST /registration/proof: the operator key's signature letting `donor` register this node. */
export async function registrationProof(node: ApiNode, body: unknown) {
  if (!node.registrationProof)
    throw new ApiError(404, "not_found", "this node cannot sign registration proofs");
  const parsed = RegistrationProofBodySchema.safeParse(body);
  if (!parsed.success) {
    const summary = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new ApiError(400, "invalid_body", `invalid registration proof request: ${summary.join("; ")}`);
  }
  const donor: Address = getAddress(parsed.data.donor);
  return node.registrationProof(donor, BigInt(parsed.data.nonce ?? "0"));
}
