// POST /settlement/run, GET /settlements, GET /receipts/:jobId/proof.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Hex } from "viem";
import { z } from "zod/v4";
import { ApiError, sendJson } from "./errors.ts";
import { JOB_ID } from "./schemas.ts";
import type { ApiNode, ApiSettlement } from "./types.ts";

const SettlementsQuerySchema = z.strictObject({
  before: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  limit: z.coerce.number().int().min(1).max(1_000).default(50),
});

function settlementOf(node: ApiNode): ApiSettlement {
  if (!node.settlement)
    throw new ApiError(
      404,
      "not_found",
      "this node does not settle (no payee ledger, or settlement.enabled is false)",
    );
  return node.settlement;
}

const RunQuerySchema = z.strictObject({ zk: z.enum(["0", "1"]).optional() });

/**
 * Settles now and answers with the outcome (epoch, transaction, vouchers paid, total,
 * withdrawals); `?zk=1` settles the held zk vouchers by proof instead.
 */
export async function runSettlement(
  node: ApiNode,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const query = Object.fromEntries(new URL(request.url ?? "/", "http://local").searchParams);
  const parsed = RunQuerySchema.safeParse(query);
  if (!parsed.success) throw new ApiError(400, "bad_request", "bad query: zk must be 0 or 1");
  const settlement = settlementOf(node);
  const zk = parsed.data.zk === "1";
  if (zk && !settlement.zkEnabled)
    throw new ApiError(
      409,
      "not_configured",
      "this node does not settle zk vouchers: set settlement.zk.enabled (docs/zk.md)",
    );
  sendJson(response, 200, zk ? await settlement.settleZkNow() : await settlement.settleNow());
}

/** Settled epochs newest first; `?before=<epoch>&limit=<n>` pages back. */
export function listSettlements(node: ApiNode, request: IncomingMessage, response: ServerResponse): void {
  const query = Object.fromEntries(new URL(request.url ?? "/", "http://local").searchParams);
  const parsed = SettlementsQuerySchema.safeParse(query);
  if (!parsed.success)
    throw new ApiError(
      400,
      "bad_request",
      "bad query: before must be an epoch number, limit 1..1000",
      parsed.error.issues.map((issue) => ({ path: issue.path.join("."), message: issue.message })),
    );
  const settlements = settlementOf(node).settlements(parsed.data);
  const last = settlements.at(-1) as { epoch?: number } | undefined;
  const next = settlements.length === parsed.data.limit && last?.epoch !== undefined ? last.epoch : null;
  sendJson(response, 200, { settlements, next });
}

/** The inclusion proof of this node's receipt for a job, with the chain to check it on. */
export function receiptProof(node: ApiNode, jobId: string | undefined, response: ServerResponse): void {
  if (!jobId || !JOB_ID.test(jobId))
    throw new ApiError(
      400,
      "bad_request",
      `job id must be 0x followed by 64 hex digits, got ${JSON.stringify(jobId)}`,
    );
  const proof = settlementOf(node).receiptProof(jobId.toLowerCase() as Hex);
  if (!proof)
    throw new ApiError(404, "not_found", `no settled epoch of this node anchored a receipt for job ${jobId}`);
  const { chainId, rpcUrl, contracts } = node.chainInfo;
  sendJson(response, 200, {
    ...proof,
    chain: { chainId: Number(chainId), rpcUrl, paymentChannels: contracts.paymentChannels },
  });
}
