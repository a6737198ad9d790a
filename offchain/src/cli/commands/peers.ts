import type { Command } from "commander";
import { toJson } from "../../api/index.ts";
import { addApiOptions, API_HELP, connectApi, type ApiOptions } from "../endpoint.ts";
import { reportErrors } from "../errors.ts";

/** `cell peers`: the peers the local node is connected to. */
export function registerPeersCommand(program: Command): Command {
  const peers = program
    .command("peers")
    .description(
      "list the peers the local node knows, with addresses, donor status, reputation and quarantine state",
    )
    .option("--json", "print JSON")
    .addHelpText("after", `\nExample:\n  $ cell peers --data-dir .cell/devnet/buyer\n${API_HELP}\n`);
  return addApiOptions(peers).action(async function (
    this: Command,
    options: ApiOptions & { json?: boolean },
  ) {
    await reportErrors(this, async () => {
      const list = (await (await connectApi(options)).peers()) as PeerRow[];
      if (options.json) {
        process.stdout.write(`${toJson(list)}\n`);
        return;
      }
      process.stdout.write(list.length === 0 ? "no peers\n" : `${list.map(formatPeer).join("\n")}\n`);
    });
  });
}

interface PeerRow {
  peerId?: string;
  connected?: boolean;
  operator?: string;
  staked?: boolean;
  pricePerMegaFuel?: string;
  slots?: number;
  freeSlots?: number;
  penaltyScore?: number;
  multiaddrs?: string[];
  reputation?: number;
  trust?: TrustRow;
}

/** The trust layer's view of a peer (trust/TrustView), as the API sends it. */
interface TrustRow {
  status?: string;
  strikes?: number;
  until?: number | null;
  reason?: string | null;
  evidence?: Array<{ kind?: string; jobId?: string; detail?: string }>;
  slashes?: Array<{ kind?: string; jobId?: string; tx?: string }>;
}

/**
 * `12D3KooW…  connected  staked donor  operator 0x…  price 1000/Mfuel  slots 1/2  penalty 0
 * reputation 40000`, then, when not clear, its quarantine (`QUARANTINED until … (strike 1):
 * reason`), evidence and slashes, then addresses.
 */
function formatPeer(peer: PeerRow): string {
  const facts = [
    peer.connected === undefined ? undefined : peer.connected ? "connected" : "disconnected",
    peer.staked === undefined ? undefined : peer.staked ? "staked donor" : "not staked",
    peer.operator && `operator ${peer.operator}`,
    peer.pricePerMegaFuel && `price ${peer.pricePerMegaFuel}/Mfuel`,
    peer.slots !== undefined && `slots ${peer.freeSlots ?? "?"}/${peer.slots} free`,
    peer.penaltyScore !== undefined && `penalty ${peer.penaltyScore}`,
    peer.reputation !== undefined && `reputation ${peer.reputation}`,
  ].filter((fact): fact is string => typeof fact === "string" && fact.length > 0);
  const addresses = (peer.multiaddrs ?? []).map((address) => `    ${address}`);
  return [[peer.peerId ?? "?", ...facts].join("  "), ...trustLines(peer.trust), ...addresses].join("\n");
}

function trustLines(trust: TrustRow | undefined): string[] {
  if (!trust) return [];
  const lines: string[] = [];
  if (trust.status !== undefined && trust.status !== "clear") {
    const until = typeof trust.until === "number" ? ` until ${new Date(trust.until).toISOString()}` : "";
    const strike = trust.strikes ? ` (strike ${trust.strikes})` : "";
    lines.push(`    ${trust.status.toUpperCase()}${until}${strike}: ${trust.reason ?? "no reason recorded"}`);
  }
  for (const note of trust.evidence ?? [])
    lines.push(
      `    evidence: ${note.kind ?? "?"}${note.jobId ? ` job ${note.jobId}` : ""}${note.detail ? ` (${note.detail})` : ""}`,
    );
  for (const slash of trust.slashes ?? [])
    lines.push(
      `    slashed: ${slash.kind ?? "?"} job ${slash.jobId ?? "?"}${slash.tx ? ` tx ${slash.tx}` : ""}`,
    );
  return lines;
}
