import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import { createPublicClient, formatUnits, http } from "viem";
import type { Address, Hex, PublicClient } from "viem";
import { z } from "zod/v4";
import { toJson } from "../../api/index.ts";
import type { ApiClient } from "../../api/index.ts";
import { cellChain, verifyReceiptInclusionOnChain } from "../../chain/index.ts";
import type { ChainReader, Deployment } from "../../chain/index.ts";
import { AddressSchema, Bytes32Schema, ReceiptWireSchema, receiptFromWire } from "../../protocol/index.ts";
import { addApiOptions, API_HELP, connectApi, type ApiOptions } from "../endpoint.ts";
import { reportErrors } from "../errors.ts";
import { EXIT_CODES } from "../exit-codes.ts";

/** `cell settle now`, `cell settlements list`, `cell receipt prove <jobId>`. */
export function registerSettleCommands(program: Command): void {
  const settle = program
    .command("settle")
    .description("settle the node's held vouchers and receipt root on-chain");
  addApiOptions(
    settle
      .command("now")
      .description(
        "settle now, in one transaction: held vouchers above what the chain paid, and the receipts not yet anchored",
      )
      .option("--zk", "settle the held zk vouchers with a Groth16 proof instead (docs/zk.md)")
      .option("--json", "print JSON")
      .addHelpText(
        "after",
        `\nExamples:\n  $ cell settle now --data-dir .cell/devnet/donor-1\n  $ cell settle now --zk --data-dir .cell/devnet/donor-1\n${API_HELP}\n`,
      ),
  ).action(async function (this: Command, options: ApiOptions & { json?: boolean; zk?: boolean }) {
    await reportErrors(this, async () => {
      const api = await connectApi(options);
      if (!options.zk) {
        const outcome = await api.settleNow();
        return void process.stdout.write(
          options.json ? `${toJson(outcome)}\n` : `${formatSettlement(outcome)}\n`,
        );
      }
      const ticker = elapsedTicker("proving and settling (the node logs each proving stage)");
      const outcome = await api.settleNow({ zk: true }).finally(() => ticker.stop());
      process.stdout.write(options.json ? `${toJson(outcome)}\n` : `${formatZkSettlement(outcome)}\n`);
    });
  });

  const settlements = program
    .command("settlements")
    .description("settlements on the chain (the node's chain index), or the epochs this node settled");
  addApiOptions(
    settlements
      .command("list")
      .description(
        "list settlements newest first: every one the node's chain index holds, or with --mine this node's epochs",
      )
      .option("--mine", "this node's own settled epochs, with their withdrawals")
      .option("--zk", "proven zk batches (ZkChannels) instead, with their transfers and queue operations")
      .option("--submitter <address>", "only settlements sent by this address")
      .option("--payee <address>", "only settlements that credited this payee")
      .option("--epoch <n>", "only this epoch's anchors", parseCount)
      .option("--cursor <cursor>", "the next page, as the previous page printed it")
      .option("--before <epoch>", "with --mine: only epochs before this one (paging)", parseCount)
      .option("--limit <n>", "at most this many (default 50)", parseCount)
      .option("--json", "print JSON")
      .addHelpText(
        "after",
        `\nExamples:\n  $ cell settlements list --payee 0x70997970C51812dc3A010C7d01b50e0d17dc79C8\n  $ cell settlements list --mine --limit 10\n  $ cell settlements list --zk --submitter 0x70997970C51812dc3A010C7d01b50e0d17dc79C8\n${API_HELP}\n`,
      ),
  ).action(async function (this: Command, options: ApiOptions & SettlementsListOptions) {
    await reportErrors(this, async () => {
      const api = await connectApi(options);
      if (options.zk) return listZkBatches(api, options);
      if (options.mine) {
        const page = await api.settlements({ before: options.before, limit: options.limit });
        if (options.json) return void process.stdout.write(`${toJson(page)}\n`);
        const lines = page.settlements.map((row) => formatSettlement(row as Record<string, unknown>));
        if (page.next !== null) lines.push(`more: --mine --before ${page.next}`);
        return void process.stdout.write(lines.length === 0 ? "no settlements\n" : `${lines.join("\n")}\n`);
      }
      const page = await api.explorer<{ items: Record<string, unknown>[]; nextCursor?: string }>(
        "settlements",
        {
          submitter: options.submitter,
          payee: options.payee,
          epoch: options.epoch,
          cursor: options.cursor,
          limit: options.limit,
        },
      );
      if (options.json) return void process.stdout.write(`${toJson(page)}\n`);
      const lines = page.items.map(formatChainSettlement);
      if (page.nextCursor !== undefined) lines.push(`more: --cursor ${page.nextCursor}`);
      process.stdout.write(lines.length === 0 ? "no settlements\n" : `${lines.join("\n")}\n`);
    });
  });

  const receipt = program.command("receipt").description("receipts this node signed");
  addApiOptions(
    receipt
      .command("prove")
      .description(
        "print the inclusion proof of this node's receipt for a job and check it with PaymentChannels.verifyReceiptInclusion; exits 1 when the chain does not accept it",
      )
      .argument("<jobId>", "the job id (0x + 64 hex digits)")
      .option("--rpc-url <url>", "chain RPC to check the proof on (default: the node's)")
      .option("--json", "print JSON")
      .addHelpText(
        "after",
        `\nExample:\n  $ cell receipt prove 0x3f…e1 --data-dir .cell/devnet/donor-1 --json\n${API_HELP}\n`,
      ),
  ).action(async function (
    this: Command,
    jobId: string,
    options: ApiOptions & { json?: boolean; rpcUrl?: string },
  ) {
    await reportErrors(this, async () => {
      const proof = ProofResponseSchema.parse(await (await connectApi(options)).receiptProof(jobId));
      const verified = await verifyOnChain(proof, options.rpcUrl ?? proof.chain.rpcUrl);
      if (options.json) process.stdout.write(`${toJson({ ...proof, verified })}\n`);
      else process.stdout.write(`${formatProof(proof, verified)}\n`);
      if (!verified) process.exitCode = EXIT_CODES.error;
    });
  });
}

const ProofResponseSchema = z.object({
  epoch: z.number().int().min(0),
  submitter: AddressSchema,
  root: Bytes32Schema,
  receipt: ReceiptWireSchema,
  proof: z.array(Bytes32Schema).max(64),
  chain: z.object({
    chainId: z.number().int().positive(),
    rpcUrl: z.string(),
    paymentChannels: AddressSchema,
  }),
});
type ProofResponse = z.infer<typeof ProofResponseSchema>;

async function verifyOnChain(proof: ProofResponse, rpcUrl: string): Promise<boolean> {
  const chain = cellChain(proof.chain.chainId, rpcUrl);
  const reader: ChainReader = {
    publicClient: createPublicClient({ chain, transport: http(rpcUrl) }) as PublicClient,
    // Only the PaymentChannels address is read by verifyReceiptInclusionOnChain.
    deployment: { chainId: proof.chain.chainId, paymentChannels: proof.chain.paymentChannels } as Deployment,
  };
  return verifyReceiptInclusionOnChain(
    reader,
    { submitter: proof.submitter as Address, epoch: BigInt(proof.epoch) },
    receiptFromWire(proof.receipt),
    proof.proof as Hex[],
  );
}

function formatProof(proof: ProofResponse, verified: boolean): string {
  return [
    `job ${proof.receipt.jobId}: receipt of ${proof.submitter} under epoch ${proof.epoch}'s root ${proof.root}`,
    `proof (${proof.proof.length} hashes):`,
    ...proof.proof.map((hash) => `  ${hash}`),
    verified
      ? `verified on chain ${proof.chain.chainId}: PaymentChannels.verifyReceiptInclusion returned true`
      : `NOT verified: PaymentChannels.verifyReceiptInclusion on chain ${proof.chain.chainId} returned false`,
  ].join("\n");
}

/** `epoch 491234 settled: 2 vouchers (2 paid) 0.000000000000001934 ATP 5 receipts tx 0x…`. */
interface SettlementsListOptions {
  mine?: boolean;
  zk?: boolean;
  submitter?: string;
  payee?: string;
  epoch?: number;
  cursor?: string;
  before?: number;
  limit?: number;
  json?: boolean;
}

/** `cell settlements list --zk`: GET /explorer/zk/batches, newest first. */
async function listZkBatches(api: ApiClient, options: SettlementsListOptions): Promise<void> {
  const refused = (["mine", "payee", "epoch", "before"] as const).filter(
    (name) => options[name] !== undefined,
  );
  if (refused.length > 0)
    throw new InvalidArgumentError(
      `--zk lists proven zk batches and takes --submitter, --cursor and --limit, not ${refused.map((name) => `--${name}`).join(", ")}`,
    );
  const page = await api.explorer<{ items: Record<string, unknown>[]; nextCursor?: string }>("zk/batches", {
    submitter: options.submitter,
    cursor: options.cursor,
    limit: options.limit,
  });
  if (options.json) return void process.stdout.write(`${toJson(page)}\n`);
  const lines = page.items.map(formatZkBatch);
  if (page.nextCursor !== undefined) lines.push(`more: --zk --cursor ${page.nextCursor}`);
  process.stdout.write(lines.length === 0 ? "no zk batches\n" : `${lines.join("\n")}\n`);
}

/** `zk batch 3 block 120 by 0x…: 2 transfers, 1 queued operations [4, 5), root 0x… tx 0x…`, then each transfer. */
function formatZkBatch(row: Record<string, unknown>): string {
  const transfers = Array.isArray(row.transfers) ? (row.transfers as Record<string, unknown>[]) : [];
  return [
    `zk batch ${String(row.batch)} block ${String(row.block)} by ${String(row.submitter)}:`,
    ` ${String(row.transferCount)} transfers, ${String(row.queueOps)} queued operations`,
    ` [${String(row.queueFrom)}, ${String(row.queueTo)}), root ${String(row.newRoot)} tx ${String(row.tx)}`,
    ...transfers.map((t) => `\n  leaf ${String(t.leaf)} paid ${atp(t.cumulative)} ATP in all`),
  ].join("");
}

/** One settlement of the chain index: block, submitter, vouchers, total and the anchor it carried. */
function formatChainSettlement(row: Record<string, unknown>): string {
  return [
    `block ${String(row.block)} by ${String(row.submitter)}:`,
    `${String(row.vouchers ?? 0)} vouchers`,
    `${atp(row.total)} ATP`,
    row.receiptRoot
      ? `epoch ${String(row.epoch)} root ${String(row.receiptRoot)} (${String(row.receiptCount)} receipts)`
      : "",
    `tx ${String(row.tx)}`,
  ]
    .filter((part) => part.length > 0)
    .join(" ");
}

function formatSettlement(row: Record<string, unknown>): string {
  const withdrawals = Array.isArray(row.withdrawals) ? (row.withdrawals as Record<string, unknown>[]) : [];
  return [
    `epoch ${String(row.epoch)} ${String(row.state)}:`,
    `${String(row.voucherCount ?? 0)} vouchers (${String(row.paidCount ?? 0)} paid)`,
    `${atp(row.total)} ATP`,
    `${String(row.receiptCount ?? 0)} receipts`,
    row.txHash ? `tx ${String(row.txHash)}` : "",
    ...withdrawals.map((w) => `withdrew ${atp(w.amount)} ATP to ${String(w.payee)} (tx ${String(w.txHash)})`),
    row.detail ? `(${String(row.detail)})` : "",
  ]
    .filter((part) => part.length > 0)
    .join(" ");
}

/** A zk run: each proven batch, what was redeemed by signature when proving failed (and why), the withdrawals. */
export function formatZkSettlement(outcome: Record<string, unknown>): string {
  const list = (key: string) =>
    Array.isArray(outcome[key]) ? (outcome[key] as Record<string, unknown>[]) : [];
  const lines = [
    `zk settlement ${String(outcome.state)}${outcome.detail ? `: ${String(outcome.detail)}` : ""}`,
  ];
  for (const batch of list("batches"))
    lines.push(
      `  batch: ${String(batch.transfers)} vouchers, ${String(batch.opsConsumed)} queued operations, proven in ${Number(batch.proveSeconds).toFixed(1)} s, tx ${String(batch.txHash)}`,
    );
  for (const redeemed of list("redeemed"))
    lines.push(
      `  redeemed by signature: leaf ${String(redeemed.leaf)} at ${atp(redeemed.cumulativeAmount)} ATP, tx ${String(redeemed.txHash)}`,
    );
  for (const withdrawal of list("withdrawals"))
    lines.push(
      `  withdrew ${atp(withdrawal.amount)} ATP from leaf ${String(withdrawal.leaf)}, tx ${String(withdrawal.txHash)}`,
    );
  return lines.join("\n");
}

/** On a terminal, the seconds spent so far on stderr; elsewhere one line saying what is under way. */
function elapsedTicker(what: string): { stop(): void } {
  const started = performance.now();
  const stream = process.stderr;
  if (!stream.isTTY) {
    stream.write(`${what}…\n`);
    return { stop: () => {} };
  }
  const timer = setInterval(() => {
    stream.write(`\r\x1b[2K${what}: ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }, 250);
  return {
    stop() {
      clearInterval(timer);
      stream.write("\r\x1b[2K");
    },
  };
}

function atp(wei: unknown): string {
  return typeof wei === "string" && /^[0-9]+$/.test(wei) ? formatUnits(BigInt(wei), 18) : "?";
}

function parseCount(value: string): number {
  if (!/^[0-9]{1,15}$/.test(value)) throw new InvalidArgumentError(`expected a whole number, got '${value}'`);
  return Number(value);
}
