import type { Command } from "commander";
import { toJson } from "../../api/index.ts";
import { addApiOptions, API_HELP, connectApi, type ApiOptions } from "../endpoint.ts";
import { reportErrors } from "../errors.ts";

/** `cell peers`: the peers the local node is connected to. */
export function registerPeersCommand(program: Command): Command {
  const peers = program
    .command("peers")
    .description("list the peers the local node knows, with addresses and donor status")
    .option("--json", "print JSON")
    .addHelpText("after", `\nExample:\n  $ cell peers --data-dir .cell/devnet/buyer\n${API_HELP}\n`);
  return addApiOptions(peers).action(async function (this: Command, options: ApiOptions & { json?: boolean }) {
    await reportErrors(this, async () => {
      const list = (await (await connectApi(options)).peers()) as Record<string, unknown>[];
      if (options.json) {
        process.stdout.write(`${toJson(list)}\n`);
        return;
      }
      process.stdout.write(list.length === 0 ? "no peers\n" : `${list.map(formatPeer).join("\n")}\n`);
    });
  });
}

function formatPeer(peer: Record<string, unknown>): string {
  const { peerId, ...rest } = peer;
  const details = Object.entries(rest)
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([name, value]) => `  ${name.padEnd(14)}${Array.isArray(value) ? value.join(", ") : typeof value === "object" ? toJson(value) : String(value)}`);
  return [String(peerId ?? "?"), ...details].join("\n");
}
