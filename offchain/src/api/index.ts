export { createApiServer, DEFAULT_MAX_BODY_BYTES, type ApiServer, type ApiServerOptions } from "./server.ts";
export {
  createApiClient,
  parseEventStream,
  ApiRequestError,
  type ApiClient,
  type ApiClientOptions,
  type SubmitJobOptions,
  type JobStreamMessage,
} from "./client.ts";
export {
  API_INFO_FILE,
  API_TOKEN_FILE,
  ensureApiToken,
  writeApiInfo,
  readApiInfo,
  readToken,
  resolveApiEndpoint,
  type ApiInfo,
  type ApiEndpoint,
  type ResolveEndpointOptions,
} from "./discovery.ts";
export { SubmitJobBodySchema, type SubmitJobBody } from "./schemas.ts";
export { toJson } from "./json.ts";
export {
  JOB_PRIORITIES,
  TERMINAL_JOB_STATES,
  VERIFICATION_MODES,
  type ApiNode,
  type ApiSettlement,
  type ApiJobEvent,
  type ApiJobView,
  type ApiReplicaView,
  type ApiVerdictView,
  type VerificationMode,
  type JobPriority,
  type SubmitJobRequest,
} from "./types.ts";
export { EXPLORER_LIMIT_DEFAULT, EXPLORER_LIMIT_MAX, serveExplorer } from "./explorer.ts";
export type { ExplorerPage, ExplorerSource } from "./explorer.ts";
