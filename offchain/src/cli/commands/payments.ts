import type { Command } from "commander";
import { formatUnits } from "viem";
import { toJson } from "../../api/index.ts";
import { addApiOptions, API_HELP, connectApi, type ApiOptions } from "../endpoint.ts";
import { reportErrors } from "../errors.ts";

/** `cell payments …`: the local node's side of payments as a buyer. */
export function registerPaymentsCommand(program: Command): Command {
  const payments = program
    .command("payments")
    .description("payments the local node makes to donors through its channels");
  const status = payments
    .command("status")
    .description(
      "list the channels the node pays donors through: deposit, spent, remaining, spend per hour and time to empty",
    )
    .option("--json", "print JSON (amounts in base units, as decimal strings)")
    .addHelpText(
      "after",
      `\nExample:\n  $ cell payments status --data-dir .cell/devnet/buyer\n${API_HELP}\n`,
    );
  addApiOptions(status).action(async function (this: Command, options: ApiOptions & { json?: boolean }) {
    await reportErrors(this, async () => {
      const channels = (await (await connectApi(options)).paymentChannels()) as ChannelRow[];
      if (options.json) {
        process.stdout.write(`${toJson(channels)}\n`);
        return;
      }
      process.stdout.write(
        channels.length === 0 ? "no payment channels\n" : `${channels.map(formatChannel).join("\n")}\n`,
      );
    });
  });
  return payments;
}

/** A channel as GET /payments/channels sends it (amounts as decimal strings). */
interface ChannelRow {
  payee?: string;
  channelId?: string;
  state?: string;
  deposit?: string;
  spent?: string;
  acknowledged?: string;
  remaining?: string;
  spendPerHour?: string;
  secondsToEmpty?: number | null;
  low?: boolean;
}

/**
 * `payee 0x…  channel 0x…  open  deposit 10 ATP  spent 1.5 ATP  remaining 8.5 ATP  0.3 ATP/h
 * empty in 28h 20m`, and `LOW` when the channel runs low.
 */
export function formatChannel(channel: ChannelRow): string {
  const facts = [
    `payee ${channel.payee ?? "?"}`,
    `channel ${channel.channelId ?? "?"}`,
    channel.state,
    `deposit ${atp(channel.deposit)}`,
    `spent ${atp(channel.spent)}`,
    `remaining ${atp(channel.remaining)}`,
    `${atp(channel.spendPerHour)}/h`,
    channel.secondsToEmpty === null || channel.secondsToEmpty === undefined
      ? "not spending"
      : `empty in ${duration(channel.secondsToEmpty)}`,
    channel.low ? "LOW" : undefined,
  ];
  return facts.filter((fact): fact is string => typeof fact === "string" && fact.length > 0).join("  ");
}

function atp(baseUnits: string | undefined): string {
  return baseUnits === undefined ? "? ATP" : `${formatUnits(BigInt(baseUnits), 18)} ATP`;
}

/** `3d 4h`, `4h 9m`, `12m 5s`, `42s`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3_600);
  const minutes = Math.floor((s % 3_600) / 60);
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${minutes}m`;
  if (minutes > 0) return `${minutes}m ${s % 60}s`;
  return `${s}s`;
}
