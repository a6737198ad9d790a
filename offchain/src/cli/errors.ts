import type { Command } from "commander";
import { ApiRequestError } from "../api/index.ts";

/** Runs a command's body; any failure becomes one clear `error: …` line and exit code 1. */
export async function reportErrors(command: Command, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    command.error(`error: ${describe(error)}`, { exitCode: 1 });
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
