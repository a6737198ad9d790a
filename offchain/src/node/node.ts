import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { setFlagsFromString } from "node:v8";
import { pino } from "pino";
import type { Logger } from "pino";
import { createPublicClient, hexToBytes, http, isAddressEqual, zeroAddress } from "viem";
import type { Address, Hex } from "viem";
import {
  createReader,
  createWriter,
  getChannel,
  withdrawableOf,
  juryCourtAbi,
  operatorState,
  outvoteEvidenceOf,
  parseDeployment,
  readCase,
  readDeployment,
  registrationOf,
  registrationOfOperator,
  RegistryFollower,
  signOperatorRegistration,
  submitJurorVote,
} from "../chain/index.ts";
import type { ChainReader } from "../chain/index.ts";
import type { Deployment } from "../chain/index.ts";
import { loadOrCreateIdentity, peerIdFromPublicKey } from "../identity/index.ts";
import { DEFAULT_DONOR_POLICY } from "../market/index.ts";
import type { DonorPolicy } from "../market/index.ts";
import { createMeshNode } from "../p2p/index.ts";
import type { MeshNode } from "../p2p/index.ts";
import {
  CapabilityAdvertSchema,
  JobAnnounceBatchSchema,
  MESSAGE_LIMITS,
  PROTOCOL_ASSIGN,
  PROTOCOL_BID,
  PROTOCOL_BID_REQUEST,
  PROTOCOL_RECEIPT,
  PROTOCOL_ADVERT,
  PROTOCOL_CANCEL,
  PROTOCOL_STATUS,
  TOPIC_CAPS,
  TOPIC_JOBS,
  TOPIC_RECEIPTS,
  ReceiptBatchAnnounceSchema,
  EVIDENCE_MAX_BYTES,
  EvidenceMessageSchema,
  CID,
  cellDomain,
  signBid,
  signReceipt,
} from "../protocol/index.ts";
import { ChannelBook, PayeeLedger, VOUCHER_PROTOCOL } from "../payments/index.ts";
import { createRuntime, WORKER_SOURCE } from "../runtime/index.ts";
import type { Runtime } from "../runtime/index.ts";
import { fanOut } from "../quorum/index.ts";
import type { VerdictListener } from "../quorum/index.ts";
import {
  AccusationWatcher,
  EVIDENCE_TOPIC,
  EvidenceDesk,
  chainSubmitterOf,
  disputerChainOf,
  evidenceChainOf,
  reexecutorOf,
} from "../evidence/index.ts";
import type { EvidenceTrust } from "../evidence/index.ts";
import { openStore } from "../store/index.ts";
import type { Store } from "../store/index.ts";
import type { VoucherSenderPorts, VoucherVault } from "../payments/index.ts";
import {
  RELAY_PROTOCOL,
  RelayClient,
  RelayDesk,
  RelayVault,
  RelayedSettlementService,
  SettlementService,
  prepareZkSettlement,
} from "../settlement/index.ts";
import type { ZkSettlement } from "../settlement/index.ts";
import { BlockAccess, storeBlockSource } from "./block-access.ts";
import { Buyer } from "./buyer.ts";
import { buyerPayments } from "./buyer-payments.ts";
import type { BuyerPayments } from "./buyer-payments.ts";
import { meshBuyerNetwork, operatorSigner } from "./buyer-ports.ts";
import { refusalRecorder } from "./refusals.ts";
import type { Misbehaved } from "./refusals.ts";
import type { NodeConfig } from "./config.ts";
import type { NodeContext } from "./context.ts";
import { errorMessage } from "./util.ts";
import { Donor } from "./donor.ts";
import { startChainIndexer } from "../indexer/index.ts";
import { CourtWatcher } from "./juror.ts";
import type { DonorCredit, DonorPorts } from "./donor-ports.ts";
import { DonorStore } from "./donor-store.ts";
import { bundledEntry } from "./launch.ts";
import { protocolSpecs } from "./protocols.ts";
import { AdvertIntake } from "./adverts.ts";
import { PeerBook } from "./peer-book.ts";
import { AdvertPull } from "./advert-pull.ts";
import { ProvideQueue } from "./provide-queue.ts";
import { StakeCache } from "./stake-cache.ts";
import type { CellNode, ChainInfo, JobEvent, PeerView } from "./types.ts";
import { TrustBook, type TrustView } from "../trust/index.ts";

/**
 * V8 lets a large old generation grow up to 4x between full collections, so the garbage
 * of finished jobs would sit in resident memory; a node's heap is collected again once it
 * has grown by 30%. V8 reads this at every collection, so it holds for a node started in
 * any process (`cell node start`, run.ts, tests); run.ts also passes it on the command line.
 */
const HEAP_GROWING_FLAG = "--heap-growing-percent=30";

/** How often the blockstore lets go of blocks its retention rules no longer keep. */
const BLOCK_COLLECT_INTERVAL_MS = 60_000;

/** Job announcements accepted per buyer and second; a busy buyer batches its jobs into fewer. */
const ANNOUNCES_PER_SECOND = 200;
/** How long a buyer has to acknowledge a batch of deliveries. */
const DELIVERY_TIMEOUT_MS = 5_000;

export interface StartNodeOptions {
  logger?: Logger;
  /**
   * Replaces the donor's executor with one built around the real runtime. Tests and
   * benchmarks use it to make a faulty donor (test/support/lying-runtime.ts); no config sets it.
   */
  wrapRuntime?: (runtime: Runtime) => Pick<Runtime, "execute">;
  /** Hears the verdicts and equivocations of this node's replicated jobs. */
  verdictListener?: VerdictListener;
  /** Told of evidence this node verified and of peers that sent evidence proving nothing. */
  evidenceTrust?: EvidenceTrust;
}

/** Evidence messages accepted per origin and second: evidence is rare, and each check may read the chain. */
const EVIDENCE_PER_SECOND = 5;
/** Evidence messages checked at once; more wait (each check may read the chain). */
const EVIDENCE_CHECKS_AT_ONCE = 4;
/** Evidence messages waiting for a check; more are dropped as `overloaded` (the sender is not blamed). */
const EVIDENCE_CHECKS_WAITING = 64;

/**
 * Starts a Cell node: unlocks its keys, opens its store, joins the mesh, reads
 * DonorRegistry, and runs the buyer half (always) and the donor half (when enabled).
 */
export async function startNode(config: NodeConfig, options: StartNodeOptions = {}): Promise<CellNode> {
  const log = options.logger ?? pino({ name: "cell", level: config.logLevel });
  if (!process.execArgv.some((flag) => flag.startsWith("--heap-growing-percent")))
    setFlagsFromString(HEAP_GROWING_FLAG);
  const passphrase = config.passphrase ?? process.env.CELL_PASSPHRASE;
  if (!passphrase) throw new Error("no passphrase: set `passphrase` in the config or CELL_PASSPHRASE");

  const identity = await loadOrCreateIdentity({ dir: config.dataDir, passphrase, create: true, logger: log });
  const deployment = await resolveDeployment(config);
  const reader = createReader(config.chain.rpcUrl, deployment);
  const store = openStore(config.dataDir, { logger: log });
  const cleanup: (() => Promise<void> | void)[] = [() => store.close()];
  const blockAccess = new BlockAccess(store);
  try {
    const runtime = config.donor.enabled
      ? await createRuntime({
          poolSize: config.runtime.poolSize,
          logger: log.child({ part: "runtime" }),
          workerEntry: await runtimeWorkerBundle(),
        })
      : undefined;
    if (runtime) cleanup.unshift(() => runtime.close());
    const executor = runtime && options.wrapRuntime ? wrappedRuntime(runtime, options.wrapRuntime) : runtime;
    const mesh = await createMeshNode({
      peerKeySeed: identity.peerKeySeed,
      listen: config.listen,
      bootstrap: config.bootstrap,
      fallbackPeers: knownDonorAddrs(store),
      dhtProtocolPrefix: config.dhtProtocolPrefix,
      trustedNetworks: config.network.trustedCidrs,
      logger: log.child({ part: "p2p" }),
      blockSource: storeBlockSource(store, blockAccess),
    });
    cleanup.unshift(() => mesh.stop());
    cleanup.unshift(collectBlocks(store, config, log));
    const provider = new ProvideQueue(mesh, log);
    cleanup.unshift(() => provider.stop());
    const ctx: NodeContext = {
      config,
      log,
      mesh,
      store,
      runtime: executor,
      provider,
      stakes: new StakeCache(await followRegistry(reader, config, log, cleanup)),
      domain: cellDomain(deployment.chainId, deployment.donorRegistry),
      operator: identity.operator,
      operatorAddress: identity.operatorAddress,
      peerKeyHex: identity.peerKeyHex,
      now: Date.now,
    };
    const trust = new TrustBook({ store: ctx.store, now: ctx.now, log }, config.trust);
    const evidence = evidenceDesk(ctx, reader, [
      trust,
      ...(options.evidenceTrust ? [options.evidenceTrust] : []),
    ]);
    cleanup.unshift(() => evidence.stop());
    // The buyer (made in assemble) shows each payment among its job's events.
    const paidEvents: { note?: NonNullable<VoucherSenderPorts["onPaid"]> } = {};
    const paying = config.payments.enabled
      ? buyerPayments(ctx, reader, (payment) => paidEvents.note?.(payment))
      : undefined;
    if (paying) cleanup.unshift(() => paying.stop());
    const payee =
      config.donor.enabled && config.payments.enabled ? await startPayee(ctx, reader, cleanup) : undefined;
    const settlement = await startNodeSettlement(ctx, reader, payee?.ledger, cleanup);
    const node = await assemble(
      ctx,
      identity.did,
      chainInfo(config, deployment),
      cleanup,
      blockAccess,
      options,
      evidence,
      trust,
      paying,
      payee,
      settlement,
      paidEvents,
    );
    if (config.indexer.enabled)
      node.explorer = startChainIndexer(
        reader,
        store,
        { ...config.indexer, logger: log.child({ part: "indexer" }), trustOf: (op) => trust.view(op)[0] },
        cleanup,
      );
    if (deployment.juryCourt) startCourtWatcher(ctx, reader, blockAccess, cleanup);
    if (deployment.juryCourt && config.slashing.autoDispute) startDisputer(ctx, reader, cleanup);
    return node;
  } catch (err) {
    for (const step of cleanup) await step();
    throw err;
  }
}

async function assemble(
  ctx: NodeContext,
  did: string,
  chain: ChainInfo,
  cleanup: (() => Promise<void> | void)[],
  blockAccess: BlockAccess,
  options: Pick<StartNodeOptions, "verdictListener">,
  evidence: EvidenceDesk,
  trust: TrustBook,
  paying: BuyerPayments | undefined,
  payee: Payee | undefined,
  settlement: SettlementService | undefined,
  paidEvents: { note?: NonNullable<VoucherSenderPorts["onPaid"]> },
): Promise<CellNode> {
  const { mesh, log } = ctx;
  const peerBook = new PeerBook({ trust });
  const adverts = new AdvertIntake(ctx, peerBook);
  const refusals = refusalRecorder(mesh, log);
  const misbehaved = reportingForgeries(refusals.misbehaved, trust);
  const donor = new Donor(donorPorts(ctx, misbehaved, payee), {
    policy: donorPolicy(ctx.config),
    adverts: ctx.config.adverts,
    announcedJobsPerBuyerPerSecond: ctx.config.donor.announcedJobsPerBuyerPerSecond,
    outstandingBidsPerBuyer: ctx.config.donor.outstandingBidsPerBuyer,
    credit: { freeAllowance: ctx.config.payments.freeAllowance, maxUnpaid: ctx.config.payments.maxUnpaid },
  });
  const buyer = new Buyer({
    config: ctx.config.buyer,
    log,
    clock: { now: ctx.now },
    network: meshBuyerNetwork(mesh, ctx.provider, log, ctx.config.buyer),
    store: ctx.store,
    signer: operatorSigner(ctx.operator, ctx.domain),
    stakes: ctx.stakes,
    donors: peerBook,
    misbehaved,
    trust,
    verdictListener: fanOut(
      trust,
      evidence,
      ...(paying ? [paying.listener] : []),
      ...(options.verdictListener ? [options.verdictListener] : []),
    ),
  });
  paidEvents.note = ({ jobId, peerId, operator, amount, channelId, cumulative }) =>
    buyer.notePayment(jobId, {
      peerId,
      operator,
      detail: `${amount} on channel ${channelId} (voucher ${cumulative})`,
    });
  // A donor that bid may fetch the job's module and input at once: its bid row is written
  // in the buyer's next write batch, which can come after the donor's first block request.
  buyer.on((event) => {
    if ((event.type === "bid_received" || event.type === "assigned") && event.peerId !== undefined)
      blockAccess.grantJob(event.peerId, event.jobId);
    if (event.type === "assigned" && event.operator !== undefined) paying?.onSelected(event.operator);
    // A donor that wants a channel (or payment) first: open one to it, so its next bid can come.
    if (event.type === "bid_rejected" && event.operator !== undefined && PAY_FIRST.has(event.reason ?? ""))
      paying?.onSelected(event.operator);
  });

  mesh.subscribe(TOPIC_CAPS, CapabilityAdvertSchema, (advert, from) => adverts.onAdvert(advert, from), {
    maxBytes: MESSAGE_LIMITS.advert,
    // a starting donor's adverts reach its direct peers before its mesh forms
    floodPublish: true,
  });
  mesh.subscribe(
    TOPIC_JOBS,
    JobAnnounceBatchSchema,
    (batch, from) => (ctx.config.donor.enabled ? donor.onAnnounce(batch, from) : undefined),
    {
      maxBytes: MESSAGE_LIMITS.announceBatch,
      ratePerSecond: ANNOUNCES_PER_SECOND,
      burst: 2 * ANNOUNCES_PER_SECOND,
    },
  );
  if (ctx.config.network.followReceipts)
    mesh.subscribe(
      TOPIC_RECEIPTS,
      ReceiptBatchAnnounceSchema,
      (batch, from) => log.debug({ from, executor: batch.executor, batch: batch.batchCid }, "receipt batch"),
      { maxBytes: MESSAGE_LIMITS.receiptBatchAnnounce },
    );
  mesh.subscribe(EVIDENCE_TOPIC, EvidenceMessageSchema, () => undefined, {
    maxBytes: EVIDENCE_MAX_BYTES,
    ratePerSecond: EVIDENCE_PER_SECOND,
    burst: 4 * EVIDENCE_PER_SECOND,
    handlerConcurrency: EVIDENCE_CHECKS_AT_ONCE,
    handlerQueueMax: EVIDENCE_CHECKS_WAITING,
    // checked (and acted on) before it is relayed: only verified evidence travels on
    // A quarantined or banned peer's messages are dropped unread.
    verify: async (message: Parameters<EvidenceDesk["receive"]>[0], from: string) =>
      trust.isBlocked(from) ? "ignore" : evidence.receive(message, from),
  });
  evidence.start();
  await mesh.handle(PROTOCOL_STATUS, protocolSpecs.status, async (request) => donor.onStatus(request));
  await mesh.handle(PROTOCOL_CANCEL, protocolSpecs.cancel, async (request, from) =>
    donor.onCancel(request, from),
  );
  await mesh.handle(PROTOCOL_RECEIPT, protocolSpecs.receipt, async (batch, from) => ({
    type: "acks" as const,
    acks: await Promise.all(batch.deliveries.map((delivery) => buyer.onDelivery(delivery, from))),
  }));
  await mesh.handle(PROTOCOL_BID, protocolSpecs.bid, async (batch, from) => buyer.onBids(batch, from));
  cleanup.unshift(pullAdvertsOnConnect(ctx, adverts, ctx.config.donor.enabled ? undefined : peerBook));
  if (ctx.config.donor.enabled) {
    await mesh.handle(PROTOCOL_ADVERT, protocolSpecs.advert, async () => ({
      type: "advert" as const,
      advert: donor.currentAdvert(),
    }));
    await mesh.handle(PROTOCOL_ASSIGN, protocolSpecs.assign, (batch, from) => donor.onAssign(batch, from));
    await mesh.handle(PROTOCOL_BID_REQUEST, protocolSpecs.bidRequest, (batch, from) =>
      donor.onBidRequest(batch, from),
    );
    const ledger = payee?.ledger;
    if (ledger)
      await mesh.handle(VOUCHER_PROTOCOL, protocolSpecs.voucher, async (batch, from) =>
        chargeForgeries(await ledger.receive(batch, from), (detail) =>
          misbehaved(from, "voucher_forged", detail),
        ),
      );
    donor.start();
  }
  buyer.start();
  paying?.start();

  let stopped = false;
  const node: CellNode = {
    peerId: mesh.peerId,
    did,
    operator: ctx.operatorAddress,
    chainInfo: chain,
    settlement,
    multiaddrs: () => mesh.multiaddrs(),
    registrationProof: async (donor, nonce = 0n) => {
      const registration = { donor, peerKey: ctx.peerKeyHex, nonce };
      const registry = chain.contracts.donorRegistry as Address;
      const signature = await signOperatorRegistration(ctx.operator, chain.chainId, registry, registration);
      return { ...registration, operator: ctx.operatorAddress, signature };
    },
    submitJob: (request) => buyer.submit(request),
    getJob: (jobId) => buyer.get(jobId),
    listJobs: () => buyer.list(),
    waitForJob: (jobId, options) => waitForJob(buyer, jobId, options?.timeoutMs ?? 60_000),
    on: (_event, listener) => buyer.on(listener),
    off: (_event, listener) => buyer.off(listener),
    peers: () => peerViews(mesh, peerBook, ctx.stakes, trust),
    rejections: () => mergeCounts(mesh.rejectionCounts(), refusals.counts),
    stats: () => ({
      buyer: buyer.stats(),
      donor: { ...donor.askedStats, busySlots: donor.busySlots, cancelled: donor.cancelledJobs },
    }),
    executedReceipts: () => donor.signedReceipts(),
    meshStats: () => mesh.stats(),
    slashes: () => ({ pending: evidence.pending(), history: evidence.history() }),
    paymentChannels: () => paying?.channels() ?? [],
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await donor.stop();
      buyer.stop();
      for (const step of cleanup) {
        try {
          await step();
        } catch (err) {
          log.warn({ err: errorMessage(err) }, "error while stopping");
        }
      }
      log.info("node stopped");
    },
  };
  log.info(
    {
      peerId: node.peerId,
      operator: node.operator,
      donor: ctx.config.donor.enabled,
      multiaddrs: node.multiaddrs(),
    },
    "cell node started",
  );
  return node;
}

/**
 * The node's evidence desk: checks evidence gossiped on EVIDENCE_TOPIC and sends the slashes it
 * verified from the operator key (which pays their gas and gets the reporter's reward). Evidence
 * that proves nothing counts against its sender in the mesh, and is reported to `trust`.
 */
function evidenceDesk(ctx: NodeContext, reader: ChainReader, listeners: EvidenceTrust[]): EvidenceDesk {
  const { mesh, log, config } = ctx;
  return new EvidenceDesk(
    {
      domain: ctx.domain,
      chain: evidenceChainOf(reader),
      submit: chainSubmitterOf(createWriter(config.chain.rpcUrl, reader.deployment, ctx.operator)),
      publish: async (message) => {
        await mesh.publish(EVIDENCE_TOPIC, EvidenceMessageSchema, message, { maxBytes: EVIDENCE_MAX_BYTES });
      },
      trust: {
        onVerifiedEvidence: (verified) => listeners.forEach((trust) => trust.onVerifiedEvidence(verified)),
        onInvalidEvidence: (peerId, detail) => {
          mesh.penalize(peerId, "bad_receipt", `evidence: ${detail}`, EVIDENCE_TOPIC);
          listeners.forEach((trust) => trust.onInvalidEvidence(peerId, detail));
        },
        onSlashed: (operator, note) => listeners.forEach((trust) => trust.onSlashed?.(operator, note)),
      },
      store: ctx.store,
      clock: {
        now: ctx.now,
        after: (delayMs, fire) => {
          const timer = setTimeout(fire, delayMs);
          timer.unref();
          return () => clearTimeout(timer);
        },
      },
      log: log.child({ part: "evidence" }),
    },
    config.slashing,
  );
}

/** The meta key of the next block the disputer reads: a restarted donor misses no accusation. */
const ACCUSATIONS_CURSOR = "evidence.accusationsCursor";

/**
 * A donor's answer to an outvote of its own receipt: it re-executes the job and disputes the
 * case when its receipt matches (AccusationWatcher). The bond and gas come from the operator key.
 */
function startDisputer(ctx: NodeContext, reader: ChainReader, cleanup: (() => Promise<void> | void)[]): void {
  if (!ctx.runtime) return;
  const writer = createWriter(ctx.config.chain.rpcUrl, reader.deployment, ctx.operator);
  const watcher = new AccusationWatcher(
    {
      chain: disputerChainOf(reader, writer, ctx.operatorAddress),
      reexecute: reexecutorOf(ctx.runtime, {
        local: (cid) => ctx.store.blocks.get(cid),
        fetch: (cid, from, timeoutMs) => ctx.mesh.fetchBlock(CID.parse(cid), { from, timeoutMs }),
        connectedPeers: () => ctx.mesh.peers(),
      }),
      now: ctx.now,
      log: ctx.log.child({ part: "disputer" }),
      cursor: {
        load: () => {
          const saved = ctx.store.meta.get(ACCUSATIONS_CURSOR);
          return saved === undefined ? undefined : BigInt(saved);
        },
        save: (nextBlock) => ctx.store.meta.set(ACCUSATIONS_CURSOR, nextBlock.toString()),
      },
    },
    { pollMs: ctx.config.chain.stakePollMs, blockRange: BigInt(ctx.config.chain.logBlockRange) },
  );
  watcher.start();
  cleanup.unshift(() => watcher.stop());
}

/**
 * The node's settlement: over its payee ledger, joined on a relayer (`settlement.relay`) with the
 * vouchers payees hand it on /cell/relay/1; handed to a relayer instead of settled when
 * `settlement.relayTo` names one. Undefined when there is nothing to settle.
 */
async function startNodeSettlement(
  ctx: NodeContext,
  reader: ChainReader,
  ledger: PayeeLedger | undefined,
  cleanup: (() => Promise<void> | void)[],
): Promise<SettlementService | undefined> {
  const { config, store, mesh } = ctx;
  if (!config.settlement.enabled) return undefined;
  if (config.settlement.relay) {
    const desk = new RelayDesk({
      store,
      chain: { channel: (channelId) => getChannel(reader, channelId) },
      chainId: reader.deployment.chainId,
      paymentChannels: reader.deployment.paymentChannels,
      log: ctx.log.child({ part: "relay" }),
    });
    await mesh.handle(RELAY_PROTOCOL, protocolSpecs.relay, async (request, from) =>
      chargeForgeries(await desk.receive(request, from), (detail) =>
        mesh.penalize(from, "bad_signature", `relay_forged: ${detail}`),
      ),
    );
    const own = ledger?.payee;
    const withdrawsFor = config.settlement.relayWithdraws
      ? undefined
      : (payee: Address) => own !== undefined && isAddressEqual(payee, own);
    return startSettlement(ctx, reader, new RelayVault(store.relayVouchers, ledger), cleanup, withdrawsFor);
  }
  if (!ledger) return undefined;
  if (config.settlement.relayTo)
    return startRelayedSettlement(ctx, reader, ledger, config.settlement.relayTo, cleanup);
  const zk = config.settlement.zk.enabled ? await startZkSettlement(ctx, reader, ledger, cleanup) : undefined;
  return startSettlement(ctx, reader, ledger, cleanup, undefined, zk);
}

/** The zk mode's prover and chain view over the payee ledger (docs/zk.md, "Settler"). */
async function startZkSettlement(
  ctx: NodeContext,
  reader: ChainReader,
  ledger: PayeeLedger,
  cleanup: (() => Promise<void> | void)[],
): Promise<ZkSettlement> {
  const zk = await prepareZkSettlement({
    reader,
    vault: ledger,
    payee: ledger.payee,
    instance: ctx.config.settlement.zk.instance,
    maxBatches: ctx.config.settlement.zk.maxBatches,
    blockRange: ctx.config.chain.logBlockRange,
    log: ctx.log.child({ part: "zk-settler" }),
  });
  cleanup.unshift(() => zk.stop());
  return zk;
}

/** A payee whose relayer settles its vouchers: its watchtower runs, its hand-overs replace its settle transactions. */
function startRelayedSettlement(
  ctx: NodeContext,
  reader: ChainReader,
  ledger: PayeeLedger,
  relayer: string,
  cleanup: (() => Promise<void> | void)[],
): SettlementService {
  const writer = createWriter(ctx.config.chain.rpcUrl, reader.deployment, ctx.operator);
  const options = {
    store: ctx.store,
    writer,
    vault: ledger,
    settings: ctx.config.settlement,
    logBlockRange: ctx.config.chain.logBlockRange,
    log: ctx.log.child({ part: "settlement" }),
    now: ctx.now,
  };
  const service = new RelayedSettlementService(
    options,
    (sender) =>
      new RelayClient({
        vault: ledger,
        paymentChannels: reader.deployment.paymentChannels,
        maxVouchers: ctx.config.settlement.maxVouchersPerBatch,
        log: ctx.log.child({ part: "relay-client" }),
        now: ctx.now,
        ports: {
          hand: (request) => ctx.mesh.request(relayer, RELAY_PROTOCOL, protocolSpecs.relay, request),
          channel: (channelId) => getChannel(reader, channelId),
          withdrawable: (channelId) => withdrawableOf(reader, channelId),
          withdraw: async (purpose, call) => {
            const outcome = await sender.send(purpose, null, call);
            return outcome.state === "mined" ? outcome.hash : undefined;
          },
        },
      }),
  );
  service.start();
  cleanup.unshift(() => service.stop());
  return service;
}

/**
 * The node's settlement over its payee ledger `vault`: each epoch's vouchers and receipt root
 * settled from the operator key (which pays the gas), and the watchtower on the vault's
 * channels. The node calls it when it holds a vault; undefined when settlement is disabled.
 */
export function startSettlement(
  ctx: Pick<NodeContext, "config" | "store" | "log" | "operator" | "now">,
  reader: ChainReader,
  vault: VoucherVault,
  cleanup: (() => Promise<void> | void)[],
  withdrawsFor?: (payee: Address) => boolean,
  zk?: ZkSettlement,
): SettlementService | undefined {
  if (!ctx.config.settlement.enabled) return undefined;
  const service = new SettlementService({
    withdrawsFor,
    zk: zk && ((sender) => zk.settler(sender)),
    store: ctx.store,
    writer: createWriter(ctx.config.chain.rpcUrl, reader.deployment, ctx.operator),
    vault,
    settings: ctx.config.settlement,
    logBlockRange: ctx.config.chain.logBlockRange,
    log: ctx.log.child({ part: "settlement" }),
    now: ctx.now,
  });
  service.start();
  cleanup.unshift(() => service.stop());
  return service;
}

/**
 * Serves drawn jurors the blocks of cases this node holds, and does this donor's juror duty
 * (see CourtWatcher); the vote is sent from the operator key, which needs gas on the chain.
 */
function startCourtWatcher(
  ctx: NodeContext,
  reader: ChainReader,
  blockAccess: BlockAccess,
  cleanup: (() => Promise<void> | void)[],
): void {
  const { deployment, publicClient } = reader;
  const court = deployment.juryCourt!;
  const writer = createWriter(ctx.config.chain.rpcUrl, deployment, ctx.operator);
  let ownDonor: Address | undefined;
  const watcher = new CourtWatcher(
    {
      chain: {
        head: () => publicClient.getBlockNumber(),
        drawnCases: async (fromBlock, toBlock) => {
          const logs = await publicClient.getContractEvents({
            address: court,
            abi: juryCourtAbi,
            eventName: "JurorsDrawn",
            fromBlock,
            toBlock,
            strict: true,
          });
          return logs.map(({ args }) => args);
        },
        evidence: (caseId) => outvoteEvidenceOf(reader, caseId),
        parties: async (caseId) => {
          const stored = await readCase(reader, caseId);
          return [stored.accusedDonor, ...stored.quorumDonors];
        },
        peerKeyOf: async (donor) => (await registrationOf(reader, donor)).peerKey,
        ownDonor: async () => {
          if (ownDonor) return ownDonor;
          const { donor } = await operatorState(reader, ctx.operatorAddress);
          if (donor !== zeroAddress) ownDonor = donor;
          return ownDonor;
        },
        hasVoted: async (caseId, donor) =>
          (await publicClient.readContract({
            address: court,
            abi: juryCourtAbi,
            functionName: "votes",
            args: [caseId, donor],
          })) !== 0,
        vote: async (caseId, vote) => {
          await submitJurorVote(writer, caseId, vote);
        },
      },
      blocks: {
        local: (cid) => ctx.store.blocks.get(cid),
        fetch: (cid, from, timeoutMs) => ctx.mesh.fetchBlock(CID.parse(cid), { from, timeoutMs }),
        grant: (peerId, cids, jobId) => blockAccess.grantBlocks(peerId, cids, jobId),
        connectedPeers: () => ctx.mesh.peers(),
      },
      runtime: ctx.runtime,
      operator: ctx.operatorAddress,
      signReceipt: (receipt) => signReceipt(ctx.operator, ctx.domain, receipt),
      now: ctx.now,
      log: ctx.log.child({ part: "court" }),
    },
    { pollMs: ctx.config.chain.stakePollMs, blockRange: BigInt(ctx.config.chain.logBlockRange) },
  );
  watcher.start();
  cleanup.unshift(() => watcher.stop());
}

/** How long a starting node waits for its first view of DonorRegistry before it goes on without. */
const FIRST_SYNC_TIMEOUT_MS = 10_000;

/** Follows DonorRegistry's events for the node's stake lookups; stopped with the node. */
async function followRegistry(
  reader: ChainReader,
  config: NodeConfig,
  log: Logger,
  cleanup: (() => Promise<void> | void)[],
): Promise<RegistryFollower> {
  const { stakePollMs, stakeStaleMs, logBlockRange, confirmations } = config.chain;
  const follower = new RegistryFollower(reader, {
    pollMs: stakePollMs,
    staleMs: stakeStaleMs,
    blockRange: logBlockRange,
    confirmations,
    onError: (err, failuresInARow) =>
      log[failuresInARow === 1 ? "warn" : "debug"](
        { err: errorMessage(err), failuresInARow },
        "reading DonorRegistry's events failed",
      ),
  });
  follower.start();
  cleanup.unshift(() => follower.stop());
  if (!(await follower.synced(FIRST_SYNC_TIMEOUT_MS)))
    log.warn("no view of DonorRegistry yet: stakes are unknown until the chain answers");
  return follower;
}

/** The runtime worker as a bundle, built like a node's own (launch.ts); undefined runs its TypeScript. */
export async function runtimeWorkerBundle(): Promise<URL | undefined> {
  const bundle = await bundledEntry(WORKER_SOURCE);
  return bundle === undefined ? undefined : pathToFileURL(bundle);
}

/** Runs the blockstore's garbage collection every BLOCK_COLLECT_INTERVAL_MS; returns its stop step. */
function collectBlocks(store: Store, config: NodeConfig, log: Logger): () => void {
  const collect = (): void => {
    store
      .commit(() => store.blocks.collect(config.blockstore), { durable: false })
      .then((report) => {
        if (report.deleted > 0) log.info(report, "blocks collected");
      })
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, "block collection failed"));
  };
  const timer = setInterval(collect, BLOCK_COLLECT_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** Where recently seen staked donors listened, so a restarted node finds the mesh without its bootstrap peers. */
function knownDonorAddrs(store: Store): string[] {
  return store.peers
    .list({ limit: 256 })
    .filter((peer) => peer.operator !== null && peer.lastSeen !== null)
    .sort((a, b) => (b.lastSeen ?? 0) - (a.lastSeen ?? 0))
    .slice(0, 8)
    .flatMap((peer) => peer.addrs.filter((addr) => addr.endsWith(`/p2p/${peer.peerId}`)).slice(0, 1));
}

function waitForJob(buyer: Buyer, jobId: Hex, timeoutMs: number) {
  const settled = () => {
    const view = buyer.get(jobId);
    return view && (view.state === "completed" || view.state === "failed") ? view : undefined;
  };
  return new Promise<NonNullable<ReturnType<Buyer["get"]>>>((resolve, reject) => {
    if (!buyer.get(jobId)) return reject(new Error(`unknown job ${jobId}`));
    const done = settled();
    if (done) return resolve(done);
    const listener = (event: JobEvent) => {
      if (event.jobId !== jobId) return;
      const view = settled();
      if (!view) return;
      clearTimeout(timer);
      buyer.off(listener);
      resolve(view);
    };
    const timer = setTimeout(() => {
      buyer.off(listener);
      reject(
        new Error(`job ${jobId} did not finish within ${timeoutMs} ms (state ${buyer.get(jobId)?.state})`),
      );
    }, timeoutMs);
    buyer.on(listener);
  });
}

/** Refusals that prove a peer forged something: also a network anomaly in its trust state. */
const FORGERIES = new Set([
  "bid_rejected_signature",
  "bad_spec_signature",
  "receipt_invalid",
  "voucher_forged",
]);

/**
 * Charges the sender of vouchers that carry a signature their signer did not make: checking
 * one costs a signature recovery, so a peer that sends forgeries is penalized like one that
 * forges bids, and blocked once its score crosses the mesh's threshold.
 */
function chargeForgeries<
  T extends { results: readonly { status: string; reason?: string; detail?: string }[] },
>(answer: T, charge: (detail: string) => void): T {
  const forged = answer.results.filter(
    (result) => result.status === "refused" && result.reason === "bad_signature",
  );
  if (forged.length > 0)
    charge(`${forged.length} of ${answer.results.length} vouchers with a forged signature`);
  return answer;
}

function reportingForgeries(misbehaved: Misbehaved, trust: TrustBook): Misbehaved {
  return (peerId, reason, detail) => {
    misbehaved(peerId, reason, detail);
    if (FORGERIES.has(reason)) trust.onProtocolAbuse(peerId, `${reason}: ${detail}`);
  };
}

function mergeCounts(
  counts: Record<string, number>,
  more: ReadonlyMap<string, number>,
): Record<string, number> {
  const merged = { ...counts };
  for (const [reason, count] of more) merged[reason] = (merged[reason] ?? 0) + count;
  return merged;
}

function peerViews(mesh: MeshNode, peerBook: PeerBook, stakes: StakeCache, trust: TrustBook): PeerView[] {
  const connected = new Set(mesh.peers());
  const views = new Map<string, PeerView>();
  for (const peerId of connected)
    views.set(peerId, {
      peerId,
      connected: true,
      multiaddrs: [],
      penaltyScore: mesh.penalties(peerId).score,
    });
  for (const donor of peerBook.all()) {
    views.set(donor.peerId, {
      peerId: donor.peerId,
      connected: connected.has(donor.peerId),
      operator: donor.operator,
      peerKey: donor.peerKey,
      staked: stakes.peek(donor.operator, donor.peerKey) ?? donor.staked,
      pricePerMegaFuel: donor.pricePerMegaFuel.toString(),
      slots: donor.slots,
      freeSlots: donor.freeSlots,
      runtimeVersion: donor.runtimeVersion,
      lastSeen: donor.lastSeen,
      multiaddrs: donor.multiaddrs,
      penaltyScore: mesh.penalties(donor.peerId).score,
    });
  }
  return withTrust(views, trust, connected, (peerId) => mesh.penalties(peerId).score);
}

/**
 * Adds each peer's reputation and trust state, and lists the quarantined and banned peers
 * the node is neither connected to nor has an advert of, so they stay visible.
 */
function withTrust(
  views: Map<string, PeerView>,
  trust: TrustBook,
  connected: ReadonlySet<string>,
  penaltyScore: (peerId: string) => number,
): PeerView[] {
  const subjects = new Map<string, TrustView>();
  for (const subject of trust.view()) {
    if (subject.peerId !== undefined && !subjects.has(subject.peerId)) subjects.set(subject.peerId, subject);
    if (subject.peerId === undefined && subject.operator === undefined)
      subjects.set(subject.subject, subject);
  }
  for (const [peerId, subject] of subjects)
    if (!views.has(peerId) && subject.status !== "clear")
      views.set(peerId, {
        peerId,
        connected: connected.has(peerId),
        ...(subject.operator && { operator: subject.operator }),
        multiaddrs: [],
        penaltyScore: penaltyScore(peerId),
      });
  for (const view of views.values()) {
    if (view.operator !== undefined) view.reputation = trust.reputation(view.operator);
    const subject = (view.operator && trust.view(view.operator)[0]) || subjects.get(view.peerId);
    if (subject) view.trust = subject;
  }
  return [...views.values()];
}

/** `runtime` with its `execute` replaced by the wrapper's (a plain object or a class instance). */
function wrappedRuntime(runtime: Runtime, wrap: NonNullable<StartNodeOptions["wrapRuntime"]>): Runtime {
  const wrapper = wrap(runtime);
  return { ...runtime, execute: (job, options) => wrapper.execute(job, options) };
}

/**
 * A donor's payee side: the book of its channels (the buyers' credit) and its ledger of
 * vouchers, absent while the node knows no payee.
 */
interface Payee {
  credit: DonorCredit;
  ledger?: PayeeLedger;
  book?: ChannelBook;
}

/**
 * Follows the channels paying this donor's payee, its staking wallet (the registry's
 * donorOf(operator), read once at start), and keeps its vouchers. While the operator is not
 * registered there is no payee: no buyer has credit (only the free allowance), so the donor
 * never works unpaid, until it is restarted after registering.
 */
async function startPayee(
  ctx: NodeContext,
  reader: ChainReader,
  cleanup: (() => Promise<void> | void)[],
): Promise<Payee> {
  const { config, store, log } = ctx;
  const registration = await registrationOfOperator(reader, ctx.operatorAddress).catch((err: unknown) => {
    log.warn({ err: errorMessage(err) }, "cannot read this node's registration");
    return undefined;
  });
  if (!registration) {
    log.error(
      "payments are on but the operator is not registered: no payee, no credit; restart once registered",
    );
    return {
      credit: { creditOf: (signer) => ({ unspentDeposit: 0n, unpaid: store.payeeLedger.unpaid(signer) }) },
    };
  }
  const book = new ChannelBook({
    reader,
    store,
    payee: registration.donor,
    pollMs: config.payments.channelPollMs,
    blockRange: config.chain.logBlockRange,
    confirmations: config.chain.confirmations,
    log: log.child({ part: "channels" }),
  });
  book.start();
  cleanup.unshift(() => book.stop());
  const ledger = new PayeeLedger({
    store,
    channels: book,
    payee: registration.donor,
    chainId: reader.deployment.chainId,
    paymentChannels: reader.deployment.paymentChannels,
    ...(reader.deployment.zkChannels ? { zkChannels: reader.deployment.zkChannels } : {}),
  });
  log.info({ payee: registration.donor }, "taking payments");
  return { credit: book, ledger, book };
}

/** The donor's ports on the node's mesh, store, keys and stake cache. */
function donorPorts(ctx: NodeContext, misbehaved: Misbehaved, payments: Payee | undefined): DonorPorts {
  const { mesh, log, operator, domain, runtime } = ctx;
  return {
    clock: {
      now: ctx.now,
      after: (delayMs, fire) => {
        const timer = setTimeout(fire, delayMs);
        timer.unref();
        return () => clearTimeout(timer);
      },
    },
    network: {
      peerId: mesh.peerId,
      multiaddrs: () => mesh.multiaddrs(),
      sendBids: async (buyerPeer, offers) => {
        await mesh.request(buyerPeer, PROTOCOL_BID, protocolSpecs.bid, { type: "bids", offers });
      },
      sendDeliveries: async (buyerPeer, deliveries) => {
        const { acks } = await mesh.request(
          buyerPeer,
          PROTOCOL_RECEIPT,
          protocolSpecs.receipt,
          { type: "deliveries", deliveries },
          { timeoutMs: DELIVERY_TIMEOUT_MS },
        );
        return acks;
      },
      publishAdvert: (advert) =>
        mesh.publish(TOPIC_CAPS, CapabilityAdvertSchema, advert, { maxBytes: MESSAGE_LIMITS.advert }),
      fetchBlock: (cid, from, timeoutMs) => mesh.fetchBlock(CID.parse(cid), { from, timeoutMs }),
    },
    jobs: new DonorStore({
      store: ctx.store,
      log,
      executor: ctx.operatorAddress,
      provider: ctx.provider,
      publishReceiptBatch: async (announce) => {
        await mesh.publish(TOPIC_RECEIPTS, ReceiptBatchAnnounceSchema, announce, {
          maxBytes: MESSAGE_LIMITS.receiptBatchAnnounce,
        });
      },
      receiptBatchMs: ctx.config.donor.receiptBatchMs,
      recordEarnings: payments !== undefined,
    }),
    signer: {
      address: ctx.operatorAddress,
      peerKey: ctx.peerKeyHex,
      domain,
      signBid: (bid) => signBid(operator, domain, bid),
      signReceipt: (receipt) => signReceipt(operator, domain, receipt),
    },
    stakes: { selfActive: () => ctx.stakes.isActive(ctx.operatorAddress, ctx.peerKeyHex) },
    credit: payments?.credit,
    runtime,
    // Application-level refusals; they count against the peer once the mesh scores them.
    misbehaved,
    log,
  };
}

function donorPolicy(config: NodeConfig): DonorPolicy {
  return {
    ...DEFAULT_DONOR_POLICY,
    pricePerMegaFuel: config.donor.pricePerMegaFuel,
    slots: config.donor.slots,
    acceptedAuthors: config.donor.acceptedAuthors,
    maxFuel: config.donor.maxFuel,
    maxMemoryPages: config.donor.maxMemoryPages,
    maxTimeoutMs: config.donor.maxTimeoutMs,
  };
}

async function resolveDeployment(config: NodeConfig): Promise<Deployment> {
  let deployment: Deployment;
  if (config.chain.deploymentFile) {
    deployment = parseDeployment(
      JSON.parse(await readFile(config.chain.deploymentFile, "utf8")),
      config.chain.deploymentFile,
    );
  } else {
    const chainId =
      config.chain.chainId ??
      (await createPublicClient({ transport: http(config.chain.rpcUrl) }).getChainId());
    deployment = readDeployment(chainId);
  }
  if (config.chain.chainId !== undefined && config.chain.chainId !== deployment.chainId) {
    throw new Error(
      `config says chain ${config.chain.chainId} but the deployment is for chain ${deployment.chainId}`,
    );
  }
  return deployment;
}

function chainInfo(config: NodeConfig, deployment: Deployment): ChainInfo {
  const contracts: Record<string, Address> = {
    atpToken: deployment.atpToken,
    donorRegistry: deployment.donorRegistry,
    paymentChannels: deployment.paymentChannels,
  };
  return { chainId: deployment.chainId, rpcUrl: config.chain.rpcUrl, contracts };
}

/** Decline reasons a donor gives a buyer that has not paid (enough) yet. */
const PAY_FIRST = new Set(["payment_required", "payment_overdue"]);

/**
 * Asks every donor this node connects to for its advert (advert-pull.ts); returns the stop.
 * With a peer book (a node that only buys), it also asks the staked donors the registry lists
 * and the book lacks, every STAKED_PULL_MS while the book holds fewer than STAKED_PULL_BELOW:
 * a request to a peer it is not connected to looks the peer up in the DHT and dials it, so a
 * buyer reaches donors whose adverts have not crossed the gossip mesh yet.
 */
function pullAdvertsOnConnect(ctx: NodeContext, adverts: AdvertIntake, peerBook?: PeerBook): () => void {
  const { mesh, log } = ctx;
  const pull = new AdvertPull({
    now: ctx.now,
    after: (delayMs, fire) => setTimeout(fire, delayMs).unref(),
    ask: async (peerId) =>
      (
        await mesh.request(
          peerId,
          PROTOCOL_ADVERT,
          protocolSpecs.advert,
          { type: "advert" },
          { timeoutMs: 5_000 },
        )
      ).advert,
    deliver: (advert, from) => adverts.onAdvert(advert, from),
    onError: (peerId, err) => log.debug({ peerId, err: errorMessage(err) }, "advert request failed"),
  });
  const stopOnIdentify = mesh.onPeerIdentified((peerId, protocols) => {
    if (protocols.includes(PROTOCOL_ADVERT)) pull.onDonorIdentified(peerId);
  });
  if (!peerBook) return stopOnIdentify;
  const timer = setInterval(() => {
    if (peerBook.size >= STAKED_PULL_BELOW) return;
    for (const peerKey of ctx.stakes.activePeerKeys(STAKED_PULL_BELOW)) {
      const peerId = peerIdFromPublicKey(hexToBytes(peerKey));
      if (peerId !== mesh.peerId && peerBook.get(peerId) === undefined) pull.onDonorListed(peerId);
    }
  }, STAKED_PULL_MS);
  timer.unref();
  return () => {
    clearInterval(timer);
    stopOnIdentify();
  };
}

/** How often a buying node looks for staked donors it has no advert from. */
const STAKED_PULL_MS = 2_000;
/** A buying node stops looking once its peer book holds this many donors (its candidates come from them). */
const STAKED_PULL_BELOW = 256;
