// The settlement domain: the operator key's transaction sender, the epoch settler, the
// payee's watchtower and receipt inclusion proofs (docs/settlement.md).
export { viemTxPort } from "./chain-port.ts";
export { EpochSettler, rowOutcome, settleCall, settlePurpose } from "./epoch-settler.ts";
export type { EpochSettlerOptions, SettlementOutcome, Withdrawal } from "./epoch-settler.ts";
export { receiptProof } from "./proof.ts";
export type { ReceiptProof } from "./proof.ts";
export { CallRefused, FEE_BUMP_PERMILLE, TxSender, bumpedFees, decideTx } from "./tx-sender.ts";
export type {
  Fees,
  MinedTx,
  TxCall,
  TxChainPort,
  TxDecision,
  TxObservation,
  TxOutcome,
  TxPolicy,
  TxSenderOptions,
  UnsignedTx,
} from "./tx-sender.ts";
export { WATCHTOWER_CURSOR, Watchtower } from "./watchtower.ts";
export type { RedeemOutcome, WatchtowerOptions } from "./watchtower.ts";
export { SettlementService } from "./service.ts";
export type { SettlementServiceOptions, SettlementSettings } from "./service.ts";
export {
  RELAY_PROTOCOL,
  RelayRequestSchema,
  RelayResultsSchema,
  RELAY_MESSAGE_MAX_BYTES,
} from "./relay-wire.ts";
export type { RelayRefusal, RelayRequest, RelayResult, RelayResults } from "./relay-wire.ts";
export { RelayClient, RelayDesk, RelayVault, checkHanded, handOver } from "./relay.ts";
export type {
  HandOverOutcome,
  RelayChainPort,
  RelayChannelView,
  RelayClientPorts,
  RelayDeskOptions,
} from "./relay.ts";
export { RelayedSettlementService } from "./relayed-service.ts";
export { ZkSettler } from "./zk-settler.ts";
export type {
  HeldZkVoucher,
  ZkProven,
  ZkSettlementOutcome,
  ZkSettlerPorts,
  ZkSnapshot,
} from "./zk-settler.ts";
export { applyOps, planZkBatch } from "./zk-plan.ts";
export type { ZkBatchPlan, ZkVoucherCandidate } from "./zk-plan.ts";
export { ZkChainView } from "./zk-chain.ts";
export { prepareZkSettlement } from "./zk-service.ts";
export type { ZkSettlement, ZkSettlementOptions, ZkVault } from "./zk-service.ts";
