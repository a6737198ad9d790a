export { AMOUNT_BITS, FIELD, LEAF_INDEX_BITS, MAX_AMOUNT, domainTagOf } from "./field.ts";
export { hash2, hash3, hash5 } from "./poseidon.ts";
export { leafHash } from "./leaf.ts";
export type { ZkLeaf } from "./leaf.ts";
export {
  QueueKind,
  nextQueueHash,
  packQueueOp,
  packTransfer,
  packTransfers,
  unpackTransfers,
} from "./encoding.ts";
export type { QueueKindName, QueueOp, Transfer } from "./encoding.ts";
export { StateTree, rootFromPath } from "./tree.ts";
export type { MerklePath } from "./tree.ts";
export { SETTLEMENT_KEY_FILE, SettlementKey, verifyZkSignature, zkVoucherMessage } from "./keys.ts";
export type { ZkPublicKey, ZkSignature } from "./keys.ts";
export { ZK_VOUCHER_TYPES, zkChannelIdOf, zkChannelsDomain, zkVoucherDigest } from "./eip712.ts";
export { ZkState, buildBatchWitness } from "./witness.ts";
export type { BatchRequest, BatchWitness, CircuitInput, CircuitParams, SignedTransfer } from "./witness.ts";
export {
  ZkProver,
  checkArtifactHashes,
  circuitArtifacts,
  loadVerificationKey,
  proofToCalldata,
  releaseZkCurve,
  verifyOffchain,
} from "./prover.ts";
export type { CircuitArtifacts, ProveResult, ProveStage } from "./prover.ts";
