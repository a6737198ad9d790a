import { unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import {
  API_INFO_FILE,
  createApiServer,
  ensureApiToken,
  writeApiInfo,
  type ApiNode,
  type ApiServer,
} from "../api/index.ts";

export interface ServedConfig {
  dataDir: string;
  api: { enabled: boolean; host: string; port: number; token?: string };
}

export interface ServedNode<N extends ApiNode> {
  node: N;
  /** Absent when the config disables the API. */
  api?: { url: string; tokenFile: string; infoFile: string };
  stop(): Promise<void>;
}

/**
 * Serves a started node's local API and records where it listens in
 * `<dataDir>/api.json` (removed again on stop), so `cell job …` finds it.
 */
export async function serveNodeApi<N extends ApiNode & { stop(): Promise<void> }>(
  node: N,
  config: ServedConfig,
  logger?: Logger,
): Promise<ServedNode<N>> {
  if (!config.api.enabled) return { node, stop: () => node.stop() };
  const { token, tokenFile } = await ensureApiToken(config.dataDir, config.api.token);
  let server: ApiServer;
  try {
    server = await createApiServer({ node, token, host: config.api.host, port: config.api.port, logger });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const hint =
      code === "EADDRINUSE" ? ` (port ${config.api.port} is taken: pass --api-port 0 for a free one)` : "";
    throw new Error(
      `cannot start the API on ${config.api.host}:${config.api.port}: ${(error as Error).message}${hint}`,
      { cause: error },
    );
  }
  const infoFile = await writeApiInfo(config.dataDir, {
    url: server.url,
    tokenFile,
    peerId: node.peerId,
    pid: process.pid,
  });
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await unlink(join(config.dataDir, API_INFO_FILE)).catch(() => undefined);
      await server.close();
      await node.stop();
    })();
    return stopping;
  };
  return { node, api: { url: server.url, tokenFile, infoFile }, stop };
}
