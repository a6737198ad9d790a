import { Command } from "commander";
import { registerKeysCommand } from "./commands/keys.ts";

/**
 * `cell …`: each domain's commands register themselves here. Every command has --help
 * with an example.
 */
export function buildProgram(): Command {
  const program = new Command("cell")
    .description("Cell: a decentralized compute market on WebAssembly, libp2p and an Ethereum L2")
    .showHelpAfterError()
    .addHelpText("after", "\nExample:\n  $ cell run examples/jobs/build/sha256.wasm --input README.md --json\n");
  registerKeysCommand(program);
  return program;
}

if (import.meta.main) {
  await buildProgram().parseAsync(process.argv);
}
