import type { ApiJobView, ApiReplicaView, ApiVerdictView } from "../api/index.ts";
import { statusName } from "./exit-codes.ts";
import { describeEvent } from "./progress.ts";

interface ResultView {
  status?: string | number;
  exitCode?: number;
  reason?: string;
  fuelUsed?: string;
  outputCid?: string;
  outputBase64?: string;
}

interface ReceiptView {
  message?: Record<string, unknown>;
  signature?: string;
}

const OUTPUT_PREVIEW_BYTES = 2048;

/** A job's state, result, receipt and (optionally) its event history, as aligned text. */
export function formatJob(job: ApiJobView, { events = false }: { events?: boolean } = {}): string {
  const result = job.result as ResultView | undefined;
  const receipt = job.receipt as ReceiptView | undefined;
  const lines = [row("job", job.jobId), row("state", job.state)];
  const reason =
    job.reason ??
    [...job.events].reverse().find((event) => event.type === "failed" || event.type === "queued")?.reason;
  if (job.state !== "completed" && reason) lines.push(row("reason", String(reason)));
  const executor = job.executor as { peerId?: string; operator?: string } | undefined;
  if (executor?.peerId)
    lines.push(
      row("executor", `${executor.peerId}${executor.operator ? ` (operator ${executor.operator})` : ""}`),
    );
  if (job.verification)
    lines.push(
      row(
        "verify",
        job.verification.mode === "spot"
          ? `spot checks at p = ${job.verification.rate ?? "?"}`
          : `quorum of ${String((job.spec as { replicas?: unknown } | undefined)?.replicas ?? "?")} replicas`,
      ),
    );
  if (job.verdict) lines.push(...formatVerdict(job.verdict));
  if (job.replicas && job.replicas.length > 0) lines.push(...formatReplicas(job.replicas));
  if (result) lines.push(...formatResult(result));
  if (receipt?.message) lines.push(...formatReceipt(receipt));
  if (events && job.events.length > 0) {
    lines.push("events");
    lines.push(...job.events.map((event) => `  ${timeOf(event.at)}${describeEvent(event)}`));
  }
  return `${lines.join("\n")}\n`;
}

function formatResult(result: ResultView): string[] {
  const lines = [row("status", result.status === undefined ? "?" : statusName(result.status))];
  if (result.exitCode !== undefined) lines.push(row("exit code", String(result.exitCode)));
  if (result.reason) lines.push(row("reason", result.reason));
  if (result.fuelUsed !== undefined) lines.push(row("fuel used", result.fuelUsed));
  if (result.outputCid) lines.push(row("output cid", result.outputCid));
  if (result.outputBase64 !== undefined) {
    const output = Buffer.from(result.outputBase64, "base64");
    lines.push(row("output", `${output.length} bytes`), ...indent(previewBytes(output)));
  }
  return lines;
}

/** The verdict, its tally (most votes first) and who dissented or equivocated. */
function formatVerdict(verdict: ApiVerdictView): string[] {
  const lines = [row("verdict", `${verdict.outcome} (quorum ${verdict.quorum})`)];
  for (const entry of verdict.tally)
    lines.push(
      `  ${String(entry.votes).padStart(3)}× ${entry.status.padEnd(12)}output ${entry.outputCid}  fuel ${entry.fuelUsed}`,
    );
  for (const dissenter of verdict.dissenters)
    lines.push(row("dissenter", `${dissenter.peerId} (operator ${dissenter.operator})`));
  for (const operator of verdict.equivocators) lines.push(row("equivocated", `operator ${operator}`));
  return lines;
}

/** One line per replica: its slot, attempt, state, executor and the receipt it voted with. */
function formatReplicas(replicas: readonly ApiReplicaView[]): string[] {
  return [
    "replicas",
    ...replicas.map((replica) => {
      const vote = replica.receipt
        ? `  ${replica.receipt.status} output ${replica.receipt.outputCid.slice(0, 18)}… fuel ${replica.receipt.fuelUsed}`
        : "";
      const agreement = replica.agrees === undefined ? "" : replica.agrees ? "  agrees" : "  DISSENTS";
      return `  #${replica.slot} attempt ${replica.attempt} ${replica.state.padEnd(9)} ${replica.peerId} (operator ${replica.operator})${vote}${agreement}`;
    }),
  ];
}

function formatReceipt(receipt: ReceiptView): string[] {
  const fields = Object.entries(receipt.message ?? {}).map(
    ([name, value]) => `  ${name.padEnd(12)}${name === "status" ? namedStatus(value) : String(value)}`,
  );
  return ["receipt", ...fields, `  ${"signature".padEnd(12)}${receipt.signature ?? "?"}`];
}

/** `out_of_fuel (3)`: the name, and the value the receipt signs. */
function namedStatus(value: unknown): string {
  return `${statusName(value)} (${String(value)})`;
}

/** UTF-8 text when the output is printable text, else hex. */
export function previewBytes(bytes: Buffer): string {
  const shown = bytes.subarray(0, OUTPUT_PREVIEW_BYTES);
  const more =
    bytes.length > shown.length ? `\n… ${bytes.length - shown.length} more bytes (use --output FILE)` : "";
  const text = shown.toString("utf8");
  const printable = !text.includes("\uFFFD") && !/[\x00-\x08\x0e-\x1f\x7f]/.test(text);
  return `${printable ? text.replace(/\n$/, "") : `0x${shown.toString("hex")}`}${more}`;
}

function indent(text: string): string[] {
  return text.split("\n").map((line) => `  ${line}`);
}

function row(label: string, value: string): string {
  return `${label.padEnd(12)}${value}`;
}

function timeOf(at: unknown): string {
  const ms = typeof at === "number" ? at : typeof at === "string" ? Date.parse(at) : Number.NaN;
  return Number.isFinite(ms) ? `${new Date(ms).toISOString().slice(11, 23)}  ` : "";
}
