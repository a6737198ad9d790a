import { Command } from "commander";
import { registerChannelCommand } from "./commands/channel.ts";
import { registerDonorCommand } from "./commands/donor.ts";
import { registerJobCommand } from "./commands/job.ts";
import { registerKeysCommand } from "./commands/keys.ts";
import { registerNodeCommand } from "./commands/node.ts";
import { registerPaymentsCommand } from "./commands/payments.ts";
import { registerPeersCommand } from "./commands/peers.ts";
import { registerRunCommand } from "./commands/run.ts";
import { registerWalletCommand } from "./commands/wallet.ts";
import { registerSettleCommands } from "./commands/settle.ts";

/**
 * `cell …`: each domain's commands register themselves here. Every command has --help
 * with an example.
 */
export function buildProgram(): Command {
  const program = new Command("cell")
    .description("Cell: a decentralized compute market on WebAssembly, libp2p and an Ethereum L2")
    .showHelpAfterError()
    .addHelpText(
      "after",
      [
        "",
        "Examples:",
        "  $ cell run examples/jobs/build/sha256.wasm --input README.md --json",
        "  $ cell node start --config node.toml",
        "  $ cell job submit examples/jobs/build/sha256.wasm --input README.md",
        "  $ cell peers",
        "  $ cell wallet create --wallet ./wallet.json && cell donor stake 1000 --wallet ./wallet.json",
        "  $ cell channel open 0xDonor… 50 --node-dir ./buyer --wallet ./wallet.json",
        "",
        "Exit codes: 0 ok; 1 usage or other error; for commands that wait on a job, 2 the job",
        "failed, 3 it completed with a status other than ok, 4 it has not finished yet.",
        "",
      ].join("\n"),
    );
  registerKeysCommand(program);
  registerNodeCommand(program);
  registerJobCommand(program);
  registerPeersCommand(program);
  registerPaymentsCommand(program);
  registerRunCommand(program);
  registerWalletCommand(program);
  registerDonorCommand(program);
  registerChannelCommand(program);
  registerSettleCommands(program);
  return program;
}

/** Runs `cell` with these arguments (process.argv layout: node, script, ...args). */
export async function runCli(argv: string[] = process.argv): Promise<void> {
  await buildProgram().parseAsync(argv);
}

if (import.meta.main) await runCli();
