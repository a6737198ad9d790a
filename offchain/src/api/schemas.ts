import { z } from "zod/v4";
import { base64Length, dataLimit, dataLimitProblem, type DataKind } from "../protocol/limits.ts";
import { JOB_PRIORITIES, VERIFICATION_MODES, type SubmitJobRequest } from "./types.ts";

const UINT64_MAX = (1n << 64n) - 1n;
const UINT256_MAX = (1n << 256n) - 1n;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Base64 of one kind of job data, refused above its DATA_LIMITS entry before and after decoding. */
const base64 = (what: string, kind: DataKind) =>
  z
    .string()
    .refine((text) => text.length <= base64Length(dataLimit(kind)), {
      message: `${what} is longer than the base64 of the ${dataLimit(kind)}-byte ${kind} limit (DATA_LIMITS.${kind}Bytes)`,
      abort: true,
    })
    .refine((text) => text.length % 4 === 0 && BASE64.test(text), {
      message: `${what} must be standard base64`,
      abort: true,
    })
    .transform((text) => new Uint8Array(Buffer.from(text, "base64")))
    .superRefine((bytes, context) => {
      const problem = dataLimitProblem(kind, bytes.length);
      if (problem !== undefined) context.addIssue({ code: "custom", message: `${what}: ${problem}` });
    });

/** An unsigned integer given as a decimal string or a safe JSON integer, up to `max`. */
const uint = (max: bigint, what: string, min = 0n) =>
  z.unknown().transform((value, context) => {
    const valid =
      (typeof value === "string" && /^\d{1,78}$/.test(value)) ||
      (typeof value === "number" && Number.isSafeInteger(value) && value >= 0);
    if (!valid) {
      context.addIssue({
        code: "custom",
        message: `${what} must be a non-negative decimal integer (string or number)`,
      });
      return z.NEVER;
    }
    const parsed = BigInt(value as string | number);
    if (parsed > max || parsed < min) {
      context.addIssue({
        code: "custom",
        message: parsed > max ? `${what} exceeds ${max}` : `${what} must be at least ${min}`,
      });
      return z.NEVER;
    }
    return parsed;
  });

export const SubmitJobBodySchema = z
  .strictObject({
    moduleBase64: base64("moduleBase64", "module").refine((bytes) => bytes.length > 0, {
      message: "moduleBase64 is empty",
    }),
    inputBase64: base64("inputBase64", "input").optional(),
    fuelLimit: uint(UINT64_MAX, "fuelLimit", 1n).optional(),
    memoryPages: z.number().int().min(1).max(65_536).optional(),
    timeoutMs: z.number().int().min(1).max(3_600_000).optional(),
    maxPricePerMegaFuel: uint(UINT256_MAX, "maxPricePerMegaFuel").optional(),
    priority: z.enum(JOB_PRIORITIES).optional(),
    deadlineMs: z.number().int().positive().optional(),
    entry: z.string().min(1).max(64).optional(),
    replicas: z.number().int().min(1).max(255).optional(),
    verification: z.enum(VERIFICATION_MODES).optional(),
    spotRate: z.number().min(0).max(1).optional(),
  })
  .refine((body) => body.spotRate === undefined || body.verification === "spot", {
    message: 'spotRate applies to verification "spot" only',
    path: ["spotRate"],
  })
  .refine((body) => body.verification !== "spot" || body.replicas === undefined, {
    message:
      'replicas cannot be set with verification "spot" (one replica runs, a full quorum on disagreement)',
    path: ["replicas"],
  })
  .transform(({ moduleBase64, inputBase64, ...options }): SubmitJobRequest => ({
    module: moduleBase64,
    input: inputBase64 ?? new Uint8Array(),
    ...Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)),
  }));

export type SubmitJobBody = z.input<typeof SubmitJobBodySchema>;

export const JOB_ID = /^0x[0-9a-fA-F]{64}$/;

/** `{ path, message }` for each zod issue, path joined with dots (`fuelLimit`, `priority`). */
export function describeIssues(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.map((issue) => ({
    path: issue.path.map(String).join(".") || "(body)",
    message: issue.message,
  }));
}
