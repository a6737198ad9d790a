import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, extname, isAbsolute, join, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { parseUnits } from "viem";
import { z } from "zod/v4";
import { parseCidr } from "../p2p/trusted.ts";
import { AddressSchema, MultiaddrStringSchema } from "../protocol/index.ts";
import { DEFAULT_POLICY_LIMITS } from "../runtime/policy.ts";
import { OFFER_LIMIT } from "./donor-machine.ts";
import { DEFAULT_BLOCK_RETENTION } from "../store/index.ts";
import { TrustConfigSchema } from "../trust/index.ts";

const bigintLike = z
  .union([
    z.bigint(),
    z.number().int().min(0),
    z.string().regex(/^[0-9]{1,78}$/, "must be a decimal integer"),
  ])
  .transform((value) => BigInt(value))
  .refine((value) => value >= 0n, "must not be negative");

const port = z.number().int().min(0).max(65_535);

const DonorConfigSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** Asking price, token base units per 1,000,000 fuel. */
  pricePerMegaFuel: bigintLike.default(1_000n),
  slots: z.number().int().min(1).max(1024).default(2),
  /** Buyers whose jobs this donor runs; empty runs everyone's. */
  acceptedAuthors: z.array(AddressSchema).max(1024).default([]),
  maxFuel: bigintLike.default(50_000_000_000n),
  /** Largest memory cap accepted, in 64 KiB pages; the runtime runs no job above its own cap. */
  maxMemoryPages: z
    .number()
    .int()
    .min(1)
    .max(
      DEFAULT_POLICY_LIMITS.maxMemoryPages,
      `must be at most the runtime's memory cap of ${DEFAULT_POLICY_LIMITS.maxMemoryPages} pages`,
    )
    .default(1024),
  maxTimeoutMs: z.number().int().min(1).max(3_600_000).default(120_000),
  /**
   * How long signed receipts collect before they are written, provided and announced as one
   * batch. Each batch is a DHT provide, a walk that touches up to 20 nodes: in the scale
   * benchmark (33 nodes, 60 s of load) batches every 10 s cost 17.2 ms CPU per job in all
   * and 113 jobs/s, every 60 s 9.7 ms and 191 jobs/s.
   */
  receiptBatchMs: z.number().int().min(10).max(600_000).default(60_000),
  /**
   * Announced jobs considered per buyer and second; the rest of that second's jobs from
   * the buyer get no answer. Bounds the bids one buyer can make this node sign.
   */
  announcedJobsPerBuyerPerSecond: z.number().int().min(1).max(100_000).default(1_000),
  /**
   * Bids kept per buyer until it assigns them; a newer bid pushes out that buyer's oldest
   * (assigning it is then refused as expired). No buyer can push out another's bids.
   */
  outstandingBidsPerBuyer: z.number().int().min(1).max(OFFER_LIMIT).default(512),
});

const BuyerConfigSchema = z.strictObject({
  defaultFuel: bigintLike.default(100_000_000n),
  maxPricePerMegaFuel: bigintLike.default(10_000n),
  /** How long an announced job collects bids when not every known donor answers. */
  bidTimeoutMs: z.number().int().min(50).max(60_000).default(3_000),
  /**
   * After the first usable bid, how long other bids may still come in before the best
   * one is chosen (selection starts at once when every expected donor has answered).
   * Longer windows pick cheaper executors; shorter ones start jobs sooner. A round whose bids
   * cannot yet fill every replica of the job waits past the window for the donors it asked.
   */
  bidWindowMs: z.number().int().min(0).max(10_000).default(50),
  assignTimeoutMs: z.number().int().min(50).max(60_000).default(5_000),
  /** Liveness probe of an assigned executor; two missed probes mean it went silent. */
  heartbeatMs: z.number().int().min(50).max(60_000).default(1_000),
  /** Grace beyond a job's own timeout for fetching its blocks and delivering the receipt. */
  deliveryGraceMs: z.number().int().min(0).max(600_000).default(10_000),
  /** Executor attempts before a job fails (per replica of a replicated job). */
  maxAttempts: z.number().int().min(1).max(64).default(6),
  /**
   * Replicas a job may add on fresh operators when its quorum can no longer be reached;
   * unset: as many as the job's replica count (docs/quorum.md).
   */
  maxExtraReplicas: z.number().int().min(0).max(255).optional(),
  /** Jobs being placed or run at once; the rest wait in the scheduler. */
  maxInFlight: z.number().int().min(1).max(100_000).default(256),
  /** Jobs submitted and not yet finished; a submit beyond it is refused until some finish. */
  maxUnfinishedJobs: z.number().int().min(1).max(10_000_000).default(100_000),
  /**
   * Donors asked to bid per job: max(minCandidates, candidatesPerReplica × replicas), picked
   * from the donors this node knows. Only they are asked, directly.
   */
  minCandidates: z.number().int().min(1).max(256).default(4),
  candidatesPerReplica: z.number().int().min(1).max(64).default(3),
  /**
   * A job that finds fewer suitable donors than it would ask is also announced on
   * `/cell/jobs/1`, so donors this node does not know yet can bid; such announcements
   * leave at most once per this interval (batched).
   */
  discoveryIntervalMs: z.number().int().min(10).max(600_000).default(1_000),
});

/**
 * Capability adverts: a donor publishes one when its terms change (no sooner than
 * `minIntervalMs` after the last) and repeats it every `heartbeatMs`. Buyers count a donor
 * as alive for LIVENESS_HEARTBEATS heartbeats after they last heard from it (an advert, a
 * bid or a receipt), so every node of a network should use the same heartbeat.
 */
const AdvertConfigSchema = z
  .strictObject({
    heartbeatMs: z.number().int().min(100).max(3_600_000).default(30_000),
    minIntervalMs: z.number().int().min(50).max(3_600_000).default(5_000),
  })
  .refine((adverts) => adverts.minIntervalMs <= adverts.heartbeatMs, {
    message: "must not be longer than adverts.heartbeatMs",
    path: ["minIntervalMs"],
  });

/** Heartbeats a donor may miss before buyers stop asking it for bids. */
export const LIVENESS_HEARTBEATS = 2.5;

/** How long a buyer counts a donor as alive after last hearing from it. */
export function donorLivenessMs(adverts: { heartbeatMs: number }): number {
  return Math.ceil(LIVENESS_HEARTBEATS * adverts.heartbeatMs);
}

const CidrSchema = z
  .string()
  .max(64)
  .superRefine((cidr, context) => {
    try {
      parseCidr(cidr);
    } catch (err) {
      context.addIssue({ code: "custom", message: (err as Error).message });
    }
  });

const NetworkConfigSchema = z.strictObject({
  /**
   * IP ranges (CIDR) of a network this operator runs, such as ["127.0.0.0/8"] for a devnet,
   * test cluster or benchmark on one host, or the LAN of nodes behind one NAT. Peers there
   * share addresses, which public-network defences read as an attack: they are exempt from
   * gossipsub's IP-colocation score and libp2p's per-host inbound connection limits. Leave
   * empty on a public network.
   */
  trustedCidrs: z.array(CidrSchema).max(64).default([]),
  /**
   * Subscribe to `/cell/receipts/1`, every donor's receipt batch announcements: for
   * auditors and explorers. Off by default: each node would receive every busy donor's
   * announcement every `donor.receiptBatchMs`, a cost that grows with the network, and the
   * batches are also provided in the DHT. Donors announce either way.
   */
  followReceipts: z.boolean().default(false),
});

const ChainConfigSchema = z
  .strictObject({
    rpcUrl: z.url().default("http://127.0.0.1:8545"),
    chainId: z.number().int().positive().optional(),
    /** deployments/<chainId>.json by default. */
    deploymentFile: z.string().max(4096).optional(),
    /** How often DonorRegistry's new events are fetched (one eth_blockNumber a poll while the chain is idle). */
    stakePollMs: z.number().int().min(50).max(600_000).default(10_000),
    /** Stake answers turn "unknown" once the registry view has not caught up with the chain for this long. */
    stakeStaleMs: z.number().int().min(100).max(86_400_000).default(120_000),
    /** Most blocks asked for in one eth_getLogs call (providers cap the range). */
    logBlockRange: z.number().int().min(1).max(1_000_000).default(1_000),
    /** Blocks behind the head the registry view follows; public networks set their reorganisation depth. */
    confirmations: z.number().int().min(0).max(10_000).default(0),
  })
  .refine((chain) => chain.stakeStaleMs > chain.stakePollMs, {
    message: "must be longer than chain.stakePollMs",
    path: ["stakeStaleMs"],
  });

/** The chain index the explorer serves (offchain/src/indexer). */
const IndexerConfigSchema = z.strictObject({
  /**
   * Follow the contracts' events from their deployment block into the store (GET /explorer/…).
   * Off unless asked for: the index grows with the chain's history, which anyone with gas can
   * lengthen, so only the nodes that serve an explorer keep one (`npm start`'s buyer does).
   */
  enabled: z.boolean().default(false),
  /** Blocks behind the head that are indexed; a reorganisation deeper than the kept block hashes rebuilds the index. */
  confirmations: z.number().int().min(0).max(10_000).default(0),
  /** Most blocks asked for in one eth_getLogs call (a refused call is retried with half). */
  blockRange: z.number().int().min(1).max(1_000_000).default(2_000),
  /** How often the head is read once the index caught up. */
  pollMs: z.number().int().min(50).max(600_000).default(2_000),
});

/** The blockstore's retention (store/blockstore.ts BlockRetention; defaults in DEFAULT_BLOCK_RETENTION). */
const BlockstoreConfigSchema = z.strictObject({
  /** Total bytes of blocks kept; above it unreferenced blocks go, least recently used first (1 GiB). */
  maxBytes: z.number().int().min(0).default(DEFAULT_BLOCK_RETENTION.maxBytes),
  /** An unreferenced module or input unused this long is deleted (1 hour). */
  idleMs: z.number().int().min(0).default(DEFAULT_BLOCK_RETENTION.idleMs),
  /** A finished job's output is kept this long for its buyer, unless over maxBytes (24 hours). */
  outputMs: z.number().int().min(0).default(DEFAULT_BLOCK_RETENTION.outputMs),
});

/** What this node sends to DonorRegistry on evidence it verified (evidence/desk.ts). */
const SlashingConfigSchema = z.strictObject({
  /** Claim outvote slashes for this buyer's verdicts (n ≥ 4); the accused may dispute them in the court. */
  outvotes: z.boolean().default(true),
  /** Submit equivocations: this node's own sightings and verified evidence from gossip. */
  equivocations: z.boolean().default(true),
  /** Also claim outvote slashes from verified gossip, not only this node's own verdicts. */
  gossipedOutvotes: z.boolean().default(false),
  /** Dispute an outvote accusation of this node's operator when re-executing the job agrees with its receipt. */
  autoDispute: z.boolean().default(true),
});

/** An amount of ATP written with up to 18 decimals ("12.5" or 12.5), held in base units. */
const atpAmount = z
  .union([
    z.string().regex(/^[0-9]{1,30}(\.[0-9]{1,18})?$/, "must be an ATP amount such as 12.5"),
    z.number(),
  ])
  .transform((value, context) => {
    const text = typeof value === "number" ? value.toString() : value;
    if (!/^[0-9]{1,30}(\.[0-9]{1,18})?$/.test(text)) {
      context.addIssue({ code: "custom", message: `${text} is not a non-negative ATP amount` });
      return z.NEVER;
    }
    return parseUnits(text, 18);
  });

/** How this node pays donors for accepted receipts (offchain/src/payments; docs/payments.md). */
const PaymentsConfigSchema = z.strictObject({
  /**
   * As a buyer: open channels to selected donors and send their executors vouchers after
   * accepted verdicts. As a donor: follow the channels paying this donor's payee (its staking
   * wallet), accept vouchers on `/cell/voucher/1`, and bid only for buyers whose credit covers
   * the job.
   */
  enabled: z.boolean().default(true),
  /** ATP a new channel to a donor is opened with. */
  deposit: atpAmount.prefault("10"),
  /** A channel whose unspent deposit falls below this fraction of its deposit is topped up. */
  topUpBelow: z.number().min(0).max(1).default(0.2),
  /** ATP one top-up adds; 0 never tops up. */
  topUpAmount: atpAmount.prefault("10"),
  /** A channel whose unspent deposit falls below this fraction of its deposit is reported low (a warning). */
  lowBalanceFraction: z.number().min(0).max(1).default(0.25),
  /** Work, in token base units, a buyer may owe without a channel covering it (its first jobs). */
  freeAllowance: bigintLike.default(0n),
  /** Most a buyer may owe unpaid; past it its jobs are declined with `payment_overdue` until it pays. */
  maxUnpaid: bigintLike.default(10n ** 18n),
  /** How often PaymentChannels' new events are read. */
  channelPollMs: z.number().int().min(50).max(600_000).default(5_000),
  /**
   * As a buyer: open new channels on ZkChannels (with this node's settlement key,
   * `settlement.key` in the data directory) and pay them with zk vouchers (docs/zk.md).
   */
  zk: z.boolean().default(false),
});

/** The epoch settler, the watchtower and their transaction sender (offchain/src/settlement; docs/settlement.md). */
const SettlementConfigSchema = z.strictObject({
  /** Settle held vouchers, anchor receipt roots and watch this node's channels (needs a payee ledger). */
  enabled: z.boolean().default(true),
  /** Length of an epoch; each one's vouchers and receipts are settled in one transaction after it ends. */
  epochSeconds: z
    .number()
    .int()
    .min(1)
    .max(30 * 86_400)
    .default(3_600),
  /** Blocks a settlement, redeem or withdrawal must be under before it counts. */
  confirmations: z.number().int().min(1).max(1_000).default(1),
  /** A transaction not mined this long after it was sent is replaced with fees 12.5 % higher. */
  bumpAfterMs: z.number().int().min(1_000).max(86_400_000).default(60_000),
  /** Vouchers in one settlement batch; the rest wait for the next epoch (gas per batch stays below a block's). */
  maxVouchersPerBatch: z.number().int().min(1).max(2_000).default(500),
  /** How often pending transactions are followed and CloseStarted events read. */
  pollMs: z.number().int().min(50).max(600_000).default(5_000),
  /** Accept other payees' vouchers on /cell/relay/1 and settle them in this node's batches. */
  relay: z.boolean().default(false),
  /** As a relayer, also withdraw the handed payees' credit after a batch (else each payee withdraws itself). */
  relayWithdraws: z.boolean().default(false),
  /** Peer id of a relayer to hand this node's vouchers to instead of settling them itself (no receipt anchors then). */
  relayTo: z
    .string()
    .regex(/^[1-9A-HJ-NP-Za-km-z]{32,128}$/, "must be a base58 peer id")
    .optional(),
  /** The zk mode (docs/zk.md): settle the held zk vouchers with Groth16 proofs each epoch and on `cell settle now --zk`. */
  zk: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** The circuit instance under circuits/build; the deployment's ZkChannels must verify it. */
      instance: z
        .string()
        .regex(/^[a-z0-9-]{1,32}$/, "must be an instance name such as ci")
        .default("ci"),
      /** Proofs one run makes at most; further vouchers wait for the next run. */
      maxBatches: z.number().int().min(1).max(1_000).default(8),
    })
    .prefault({}),
});

const NodeConfigFields = z.strictObject({
  dataDir: z.string().min(1).max(4096).default(join(homedir(), ".cell")),
  /** Unlocks the keys; CELL_PASSPHRASE overrides an absent value. */
  passphrase: z.string().min(1).max(1024).optional(),
  listen: z.array(MultiaddrStringSchema).max(16).default(["/ip4/127.0.0.1/tcp/0"]),
  bootstrap: z.array(MultiaddrStringSchema).max(64).default([]),
  dhtProtocolPrefix: z
    .string()
    .regex(/^\/[a-z0-9/-]{1,63}$/)
    .default("/cell"),
  network: NetworkConfigSchema.prefault({}),
  api: z
    .strictObject({
      enabled: z.boolean().default(true),
      host: z.string().max(255).default("127.0.0.1"),
      port: port.default(7474),
      token: z.string().min(16).max(256).optional(),
    })
    .prefault({}),
  chain: ChainConfigSchema.prefault({}),
  indexer: IndexerConfigSchema.prefault({}),
  donor: DonorConfigSchema.prefault({}),
  buyer: BuyerConfigSchema.prefault({}),
  blockstore: BlockstoreConfigSchema.prefault({}),
  /** Reputation and quarantine (offchain/src/trust settings; docs/trust.md). */
  trust: TrustConfigSchema.prefault({}),
  runtime: z.strictObject({ poolSize: z.number().int().min(1).max(64).default(2) }).prefault({}),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  adverts: AdvertConfigSchema.prefault({}),
  slashing: SlashingConfigSchema.prefault({}),
  payments: PaymentsConfigSchema.prefault({}),
  settlement: SettlementConfigSchema.prefault({}),
});

/** The buyer's liveness window follows the advert heartbeat; it is not set on its own. */
export const NodeConfigSchema = NodeConfigFields.transform((config) => ({
  ...config,
  buyer: { ...config.buyer, donorLivenessMs: donorLivenessMs(config.adverts) },
}));

export type NodeConfig = z.output<typeof NodeConfigSchema>;
export type NodeConfigInput = z.input<typeof NodeConfigSchema>;

/**
 * Reads a TOML (`.toml`) or JSON config, applies overrides and defaults, and validates
 * it. Relative paths in the file are taken relative to the file.
 */
export async function loadConfig(
  file?: string,
  overrides: DeepPartial<NodeConfigInput> = {},
): Promise<NodeConfig> {
  const fromFile = file === undefined ? {} : await readConfigFile(file);
  const merged = deepMerge(fromFile, overrides as Record<string, unknown>);
  if (merged.passphrase === undefined && process.env.CELL_PASSPHRASE)
    merged.passphrase = process.env.CELL_PASSPHRASE;
  const result = NodeConfigSchema.safeParse(merged);
  if (!result.success) {
    const issues = result.error.issues
      .map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`)
      .join("; ");
    throw new Error(`invalid node config${file ? ` ${file}` : ""}: ${issues}`);
  }
  const config = result.data;
  if (file !== undefined) {
    const base = dirname(resolve(file));
    config.dataDir = resolveFrom(base, config.dataDir);
    if (config.chain.deploymentFile)
      config.chain.deploymentFile = resolveFrom(base, config.chain.deploymentFile);
  }
  return config;
}

export type DeepPartial<T> = {
  [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K];
};

async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  const text = await readFile(file, "utf8");
  try {
    const parsed: unknown = extname(file) === ".toml" ? parseToml(text) : JSON.parse(text);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("the top level must be a table");
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new Error(`cannot parse node config ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function deepMerge(
  base: Record<string, unknown>,
  override: Record<string, unknown>,
): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === undefined) continue;
    const current = merged[key];
    merged[key] = isPlainObject(value) && isPlainObject(current) ? deepMerge(current, value) : value;
  }
  return merged;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array)
  );
}

function resolveFrom(base: string, path: string): string {
  if (path.startsWith("~/")) return join(homedir(), path.slice(2));
  return isAbsolute(path) ? path : resolve(base, path);
}
