import { InvalidArgumentError } from "commander";
import type { Command } from "commander";
import { createPublicClient, formatUnits, http } from "viem";
import type { Address, Hex, PublicClient } from "viem";
import { z } from "zod/v4";
import { toJson } from "../../api/index.ts";
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
      .option("--json", "print JSON")
      .addHelpText("after", `\nExample:\n  $ cell settle now --data-dir .cell/devnet/donor-1\n${API_HELP}\n`),
  ).action(async function (this: Command, options: ApiOptions & { json?: boolean }) {
    await reportErrors(this, async () => {
      const outcome = await (await connectApi(options)).settleNow();
      process.stdout.write(options.json ? `${toJson(outcome)}\n` : `${formatSettlement(outcome)}\n`);
    });
  });

  const settlements = program.command("settlements").description("the epochs this node settled");
  addApiOptions(
    settlements
      .command("list")
      .description("list settled epochs, newest first")
      .option("--before <epoch>", "only epochs before this one (paging)", parseCount)
      .option("--limit <n>", "at most this many (1..1000, default 50)", parseCount)
      .option("--json", "print JSON")
      .addHelpText("after", `\nExample:\n  $ cell settlements list --limit 10\n${API_HELP}\n`),
  ).action(async function (
    this: Command,
    options: ApiOptions & { json?: boolean; before?: number; limit?: number },
  ) {
    await reportErrors(this, async () => {
      const page = await (
        await connectApi(options)
      ).settlements({ before: options.before, limit: options.limit });
      if (options.json) return void process.stdout.write(`${toJson(page)}\n`);
      const lines = page.settlements.map((row) => formatSettlement(row as Record<string, unknown>));
      if (page.next !== null) lines.push(`more: --before ${page.next}`);
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

function atp(wei: unknown): string {
  return typeof wei === "string" && /^[0-9]+$/.test(wei) ? formatUnits(BigInt(wei), 18) : "?";
}

function parseCount(value: string): number {
  if (!/^[0-9]{1,15}$/.test(value)) throw new InvalidArgumentError(`expected a whole number, got '${value}'`);
  return Number(value);
}
