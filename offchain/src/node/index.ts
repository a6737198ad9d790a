export { runtimeWorkerBundle, startNode, startSettlement } from "./node.ts";
export type { StartNodeOptions } from "./node.ts";
export { NodeConfigSchema, loadConfig } from "./config.ts";
export { withNodeFlags } from "./launch.ts";
export type { DeepPartial, NodeConfig, NodeConfigInput } from "./config.ts";
export { JOB_EVENT_TYPES, JOB_VIEW_STATES } from "./types.ts";
export type {
  CellNode,
  ChainInfo,
  JobEvent,
  JobEventType,
  JobResultView,
  JobView,
  JobViewState,
  PeerView,
  SubmitJobRequest,
} from "./types.ts";
export { RUNTIME_VERSION } from "./donor.ts";
