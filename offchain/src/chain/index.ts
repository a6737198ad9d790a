// The chain domain: typed viem bindings for Cell's contracts, deployments, devnet.
export { atpTokenAbi, donorRegistryAbi, juryCourtAbi, paymentChannelsAbi, zkChannelsAbi } from "./abis.ts";
export { cellChain, createReader, createWriter } from "./clients.ts";
export type { CellWalletClient, ChainReader, ChainWriter } from "./clients.ts";
export {
  DEFAULT_DEPLOYMENTS_DIR,
  deploymentFromIgnition,
  deploymentPath,
  parseDeployment,
  readDeployment,
  serializeDeployment,
  writeDeployment,
} from "./deployments.ts";
export type { Deployment } from "./deployments.ts";
export {
  CHANNEL_CLOSE_TTL_SECONDS,
  channelCloseDeadline,
  channelIdOf,
  compactSignatureHex,
  signChannelClose,
  signVoucher,
  toCompactSignature,
  verifyVoucher,
  voucherDigest,
} from "./signing.ts";
export type { ChannelKey } from "./signing.ts";
export { buildReceiptTree, receiptLeaf, receiptStructHash, verifyReceiptProof } from "./merkle.ts";
export type { ReceiptTree } from "./merkle.ts";
export {
  CHANNEL_CLOSED,
  atpBalance,
  cooperativeClose,
  donorParams,
  donorStake,
  ensureAllowance,
  finalizeChannelClose,
  getChannel,
  isActiveDonor,
  isActiveOperator,
  mintAtp,
  openChannel,
  redeemVoucher,
  applyDonorParams,
  operatorState,
  proposeDonorParams,
  registerDonor,
  registrationOf,
  registrationOfOperator,
  rotateOperator,
  requestUnbond,
  settleVouchers,
  slashEquivocation,
  slashOutvoted,
  stake,
  startChannelClose,
  topUpChannel,
  verifyReceiptInclusionOnChain,
  verifyReceiptOnChain,
  withdrawPaid,
  withdrawStake,
  withdrawableOf,
  accusationsOf,
  checkOutvote,
  outvoteQuorum,
  revertErrorName,
} from "./actions.ts";
export type { OutvoteAccusation } from "./actions.ts";
export {
  PERMIT_TTL_SECONDS,
  approveAtp,
  openChannelWithPermit,
  openedChannels,
  signAtpPermit,
  stakeWithPermit,
} from "./actions.ts";
export type { OpenedChannel } from "./actions.ts";
export type { ChannelState, DonorParams, OperatorSigner, OperatorState, ReceiptAnchor } from "./actions.ts";
export {
  operatorRegistrationDigest,
  operatorRegistrationTypes,
  signOperatorRegistration,
} from "./registration.ts";
export type { OperatorRegistration } from "./registration.ts";
export {
  MAX_BATCH_AMOUNT,
  VOUCHER_BYTES,
  decodeSettlementBatch,
  encodeSettlementBatch,
  paidVoucherFlags,
} from "./settlement.ts";
export type { BatchVoucher, SignedVoucher } from "./settlement.ts";
export {
  CaseOutcome,
  CaseStage,
  caseIdOf,
  courtAddress,
  disputeCase,
  drawJury,
  finalizeOutvote,
  jurorDutiesOf,
  outvoteEvidenceOf,
  readCase,
  readCourtParams,
  resolveDispute,
  submitJurorVote,
} from "./court.ts";
export type { JurorDuty, OutvoteEvidence } from "./court.ts";
export { RegistryFollower, registryEventOf } from "./registry-follower.ts";
export type { RegistryFollowerOptions } from "./registry-follower.ts";
export { RegistryView } from "./registry-view.ts";
export type { RegistryEvent, RegistryViewOptions, StakeStatus } from "./registry-view.ts";
export {
  DEFAULT_CHALLENGE_WINDOW,
  ZK_CI_PARAMS,
  defaultCourtParams,
  defaultDonorParams,
  deployCell,
  linkBytecode,
} from "./deploy.ts";
export type { CourtParams, ZkParams } from "./deploy.ts";
export {
  finalizeZkChannelClose,
  openZkChannel,
  openZkChannelWithPermit,
  readZkEvents,
  readZkParams,
  readZkQueue,
  rebuildZkState,
  refundZk,
  settleZkBatch,
  settleZkBySignature,
  signZkVoucherEip712,
  startZkChannelClose,
  topUpZkChannel,
  withdrawZk,
  zkChannelOf,
  zkChannelsAddress,
  zkVoucherDigestOf,
} from "./zk.ts";
export type { ZkBatch, ZkChannelState, ZkEvent, ZkOpenRequest, ZkProofWords, ZkVoucher } from "./zk.ts";
export type { DeployOptions } from "./deploy.ts";
export {
  DEVNET_CHAIN_ID,
  DEVNET_CHAIN_TYPE,
  DEVNET_MNEMONIC,
  devnetPrivateKey,
  freePort,
  startDevnet,
  waitForRpc,
} from "./devnet.ts";
export type { Devnet, DevnetOptions } from "./devnet.ts";
export { PollLoop } from "./poll-loop.ts";
