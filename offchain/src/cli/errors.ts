import type { Command } from "commander";
import { ApiRequestError } from "../api/index.ts";
import { EXIT_CODES } from "./exit-codes.ts";

/**
 * Runs a command's body; any failure becomes one clear `error: …` line on stderr and exit
 * code 1 (EXIT_CODES.error). Usage help is for usage mistakes (commander reports those), not for failures.
 */
export async function reportErrors(_command: Command, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    process.stderr.write(`error: ${describe(error)}\n`);
    process.exitCode = EXIT_CODES.error;
  }
}

function describe(error: unknown): string {
  if (error instanceof ApiRequestError) {
    if (!error.issues?.length) return `${error.message} (HTTP ${error.status} ${error.code})`;
    const issues = error.issues.map((issue) => `\n  - ${issue.path}: ${issue.message}`).join("");
    return `the API rejected the request (HTTP ${error.status} ${error.code}):${issues}`;
  }
  return error instanceof Error ? error.message : String(error);
}
