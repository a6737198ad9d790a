import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { z } from "zod/v4";

/**
 * How a CLI finds a running node's API: the node writes `<dataDir>/api.json`
 * (`{ url, tokenFile }`) on start, and keeps its token in `<dataDir>/api-token` (0600).
 */
export const API_INFO_FILE = "api.json";
export const API_TOKEN_FILE = "api-token";

const ApiInfoSchema = z.object({
  url: z.url().max(200),
  tokenFile: z.string().min(1).max(4096),
  peerId: z.string().max(200).optional(),
  pid: z.number().int().optional(),
});
export type ApiInfo = z.infer<typeof ApiInfoSchema>;

export interface ApiEndpoint {
  url: string;
  token: string;
  /** Where url and token came from, for error messages. */
  source: string;
}

/**
 * The token a node's API requires: the configured one, else the one kept in the data
 * dir from an earlier start, else a fresh random one. Always (re)written to the token file.
 */
export async function ensureApiToken(
  dataDir: string,
  configured?: string,
): Promise<{ token: string; tokenFile: string }> {
  const tokenFile = resolve(dataDir, API_TOKEN_FILE);
  const token = configured ?? (await readTokenIfPresent(tokenFile)) ?? randomBytes(32).toString("base64url");
  await writePrivate(tokenFile, `${token}\n`);
  return { token, tokenFile };
}

export async function writeApiInfo(dataDir: string, info: ApiInfo): Promise<string> {
  const file = resolve(dataDir, API_INFO_FILE);
  await writePrivate(file, `${JSON.stringify(ApiInfoSchema.parse(info), null, 2)}\n`);
  return file;
}

export async function readApiInfo(file: string): Promise<ApiInfo> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new Error(`no API info at ${file}: is the node running? (\`cell node start\` writes it)`);
  }
  const parsed = ApiInfoSchema.safeParse(JSON.parse(text));
  if (!parsed.success)
    throw new Error(
      `${file} is not a valid API info file: ${parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ")}`,
    );
  return parsed.data;
}

export async function readToken(tokenFile: string): Promise<string> {
  const token = await readTokenIfPresent(tokenFile);
  if (!token) throw new Error(`cannot read an API token from ${tokenFile}`);
  return token;
}

export interface ResolveEndpointOptions {
  api?: string;
  token?: string;
  tokenFile?: string;
  dataDir?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Data dirs tried last, in order (e.g. the config's default). */
  fallbackDataDirs?: string[];
}

/**
 * Finds the API url and token, first match wins: --api with --token/--token-file;
 * CELL_API_URL with CELL_API_TOKEN/CELL_API_TOKEN_FILE; <--data-dir>/api.json;
 * $CELL_DATA_DIR/api.json; ./.cell/api.json (written by `npm start`); fallbacks.
 */
export async function resolveApiEndpoint(options: ResolveEndpointOptions): Promise<ApiEndpoint> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const url = options.api ?? env.CELL_API_URL;
  if (url) {
    const token = options.token ?? env.CELL_API_TOKEN;
    const tokenFile = options.tokenFile ?? env.CELL_API_TOKEN_FILE;
    if (token) return { url, token, source: "--api/--token" };
    if (tokenFile) return { url, token: await readToken(resolve(cwd, tokenFile)), source: tokenFile };
    throw new Error(`the API at ${url} needs a token: pass --token-file FILE (or set CELL_API_TOKEN_FILE)`);
  }
  const candidates = [
    options.dataDir && join(resolve(cwd, options.dataDir), API_INFO_FILE),
    env.CELL_DATA_DIR && join(resolve(cwd, env.CELL_DATA_DIR), API_INFO_FILE),
    join(cwd, ".cell", API_INFO_FILE),
    ...(options.fallbackDataDirs ?? []).map((dir) => join(resolve(cwd, dir), API_INFO_FILE)),
  ].filter((candidate): candidate is string => Boolean(candidate));
  const explicit = Boolean(options.dataDir || env.CELL_DATA_DIR);
  for (const file of explicit ? candidates.slice(0, 1) : candidates) {
    const info = await readApiInfo(file).catch(() => undefined);
    if (!info) continue;
    const tokenFile = options.tokenFile ? resolve(cwd, options.tokenFile) : info.tokenFile;
    return { url: info.url, token: options.token ?? (await readToken(tokenFile)), source: file };
  }
  if (explicit) await readApiInfo(candidates[0] as string);
  throw new Error(
    `cannot find a running node's API: tried ${candidates.join(", ")}. Start one (\`cell node start\` or \`npm start\`) or pass --api URL --token-file FILE`,
  );
}

async function readTokenIfPresent(tokenFile: string): Promise<string | undefined> {
  try {
    const token = (await readFile(tokenFile, "utf8")).trim();
    return token.length > 0 ? token : undefined;
  } catch {
    return undefined;
  }
}

async function writePrivate(file: string, content: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, content, { mode: 0o600 });
  await chmod(temporary, 0o600);
  await rename(temporary, file);
}
