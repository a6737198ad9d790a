import { homedir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { createApiClient, resolveApiEndpoint, type ApiClient } from "../api/index.ts";

export interface ApiOptions {
  api?: string;
  tokenFile?: string;
  dataDir?: string;
}

/** --api, --token-file and --data-dir: how a command finds the local node's API. */
export function addApiOptions(command: Command): Command {
  return command
    .option("--api <url>", "the node's API url (default: from <data-dir>/api.json)")
    .option("--token-file <file>", "file holding the API token (default: from api.json)")
    .option("--data-dir <dir>", "data dir of the node to talk to (env CELL_DATA_DIR)");
}

/**
 * The first that answers: --api + --token-file; CELL_API_URL + CELL_API_TOKEN(_FILE);
 * <--data-dir>/api.json; $CELL_DATA_DIR/api.json; ./.cell/api.json (npm start's buyer);
 * ~/.cell/api.json.
 */
export async function connectApi(options: ApiOptions): Promise<ApiClient> {
  const endpoint = await resolveApiEndpoint({
    api: options.api,
    tokenFile: options.tokenFile,
    dataDir: options.dataDir,
    fallbackDataDirs: [join(homedir(), ".cell")],
  });
  return createApiClient({ url: endpoint.url, token: endpoint.token, source: endpoint.source });
}

export const API_HELP = `
Finding the node: --api URL with --token-file FILE, else CELL_API_URL with
CELL_API_TOKEN or CELL_API_TOKEN_FILE, else <data-dir>/api.json written by the running
node (--data-dir, then $CELL_DATA_DIR, then ./.cell/api.json from \`npm start\`, then
~/.cell/api.json).`;
