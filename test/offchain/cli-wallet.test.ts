// The wallet CLI's pure parts: ATP amounts in and out, and a sentence for every custom error
// of Cell's contracts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ContractFunctionRevertedError, encodeErrorResult, toHex } from "viem";
import type { Hex } from "viem";
import type { Command } from "commander";
import { buildProgram } from "../../offchain/src/cli/main.ts";
import { explorerOf, parseAtp, transactionText } from "../../offchain/src/cli/chain-options.ts";
import {
  CELL_ERRORS,
  REVERT_SENTENCES,
  decodeRevert,
  describeRevert,
  formatAtp,
  formatDuration,
  formatWhen,
} from "../../offchain/src/cli/revert-text.ts";

const ATP = 10n ** 18n;
const NOW = 1_800_000_000;
const ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

function revertOf(errorName: string, args: readonly unknown[]): ContractFunctionRevertedError {
  const data = encodeErrorResult({ abi: CELL_ERRORS, errorName, args } as Parameters<
    typeof encodeErrorResult
  >[0]);
  return new ContractFunctionRevertedError({ abi: [], data, functionName: "call" });
}

describe("ATP amounts", () => {
  test("parses decimals to wei, up to 18 places", () => {
    assert.equal(parseAtp("12.5"), (125n * ATP) / 10n);
    assert.equal(parseAtp("1000"), 1000n * ATP);
    assert.equal(parseAtp("0.000000000000000001"), 1n);
  });

  test("refuses what is not an amount, naming it", () => {
    for (const bad of ["", "-1", "1e3", "12,5", "abc", ".5", "1.", "1.0000000000000000001"])
      assert.throws(
        () => parseAtp(bad, "stake"),
        new RegExp(`stake '${bad.replace(/[.]/g, "\\.")}' is not an ATP amount`),
      );
    assert.throws(() => parseAtp("0.0"), /amount must be above zero/);
  });

  test("formats wei back to ATP", () => {
    assert.equal(formatAtp((125n * ATP) / 10n), "12.5 ATP");
    assert.equal(formatAtp(0n), "0 ATP");
    assert.equal(formatAtp(1n), "0.000000000000000001 ATP");
  });

  test("times read as a date and a countdown", () => {
    assert.equal(formatDuration(90_061), "1d 1h 1m 1s");
    assert.equal(formatDuration(59), "59s");
    assert.equal(formatDuration(3_600), "1h");
    assert.equal(formatWhen(NOW + 120, NOW), "2027-01-15T08:02:00Z (in 2m)");
    assert.equal(formatWhen(NOW - 3_601, NOW), "2027-01-15T06:59:59Z (1h 1s ago)");
    assert.equal(formatWhen(2n ** 64n - 1n, NOW), `unix time ${2n ** 64n - 1n}`);
  });
});

describe("transactions", () => {
  const receipt = { transactionHash: `0x${"ab".repeat(32)}` as Hex, blockNumber: 12n, gasUsed: 103_228n };

  test("print their hash, block and gas, with an explorer link on public chains only", () => {
    assert.equal(
      transactionText(explorerOf(31337), "staked 1 ATP", receipt),
      `staked 1 ATP: tx ${receipt.transactionHash} (block 12, gas 103228)\n`,
    );
    assert.equal(
      transactionText(explorerOf(84532), "staked 1 ATP", receipt),
      `staked 1 ATP: tx ${receipt.transactionHash} (block 12, gas 103228)\n  https://sepolia.basescan.org/tx/${receipt.transactionHash}\n`,
    );
    for (const chainId of [8453, 10, 11155420]) assert.match(explorerOf(chainId) ?? "", /^https:\/\//);
    assert.equal(explorerOf(31337, "https://explorer.example/"), "https://explorer.example");
  });
});

describe("revert sentences", () => {
  test("every custom error of ATPToken, DonorRegistry, PaymentChannels and JuryCourt has its own sentence", () => {
    const missing = CELL_ERRORS.filter((error) => !(error.name in REVERT_SENTENCES)).map(
      (error) => error.name,
    );
    assert.deepEqual(missing, []);
    assert.ok(CELL_ERRORS.length >= 80, `${CELL_ERRORS.length} errors`);
  });

  test("each error decodes from its revert data into a sentence that names its arguments", () => {
    const sample: Record<string, unknown> = {
      address: ALICE,
      uint256: 7n * ATP,
      uint64: BigInt(NOW + 60),
      uint8: 2,
      bytes32: toHex("minStake", { size: 32 }),
      string: "a-very-long-name",
    };
    for (const error of CELL_ERRORS) {
      const args = error.inputs.map((input) => sample[input.type]);
      const sentence = describeRevert(revertOf(error.name, args), NOW);
      assert.ok(sentence, error.name);
      assert.doesNotMatch(sentence, /the contract refused/, `${error.name}: ${sentence}`);
      if (error.inputs.some((input) => input.type === "address"))
        assert.ok(sentence.includes(ALICE), `${error.name} names the address: ${sentence}`);
    }
  });

  test("reads amounts in ATP, times as countdowns and parameter names as words", () => {
    assert.equal(
      describeRevert(revertOf("InsufficientBonded", [100n * ATP, 50n * ATP]), NOW),
      "cannot unbond 100 ATP: only 50 ATP is bonded",
    );
    assert.equal(
      describeRevert(revertOf("ERC20InsufficientBalance", [ALICE, 2n * ATP, 5n * ATP]), NOW),
      `not enough ATP: ${ALICE} has 2 ATP, needs 5 ATP`,
    );
    assert.match(
      describeRevert(revertOf("ChallengeWindowOpen", [BigInt(NOW + 90)]), NOW) ?? "",
      /can be finalized at .*\(in 1m 30s\)$/,
    );
    assert.match(
      describeRevert(revertOf("StillUnbonding", [BigInt(NOW + 3_600)]), NOW) ?? "",
      /withdrawn at .*\(in 1h\)/,
    );
    assert.equal(
      describeRevert(revertOf("InvalidParams", [toHex("minStake", { size: 32 })]), NOW),
      "the parameter minStake is out of its bounds",
    );
    assert.match(
      describeRevert(revertOf("AccessControlUnauthorizedAccount", [ALICE, toHex(0, { size: 32 })]), NOW) ??
        "",
      /does not hold DEFAULT_ADMIN_ROLE/,
    );
    assert.equal(
      describeRevert(revertOf("NothingToWithdraw", []), NOW),
      "nothing to withdraw: no stake is unbonding (cell donor unbond first)",
    );
  });

  test("unknown revert data and errors that are not reverts are told apart", () => {
    const unknown = new ContractFunctionRevertedError({
      abi: [],
      data: "0xdeadbeef" as Hex,
      functionName: "call",
    });
    assert.match(describeRevert(unknown, NOW) ?? "", /unknown error/);
    assert.equal(decodeRevert("0xdeadbeef"), undefined);
    assert.equal(describeRevert(new Error("fetch failed"), NOW), undefined);
  });
});

describe("help", () => {
  test("every wallet, donor and channel command has help with an example", () => {
    const program = buildProgram();
    const groups = ["wallet", "donor", "channel"].map((name) =>
      program.commands.find((c) => c.name() === name),
    );
    const commands = groups.flatMap((group) => (group ? [group, ...group.commands] : []));
    assert.equal(commands.length, 3 + 3 + 5 + 5);
    for (const command of commands) {
      const help = helpOf(command);
      assert.match(help, /Usage: cell/, command.name());
      assert.match(help, /Examples?:\n\s+\$ (\S+=\S+ )?cell /, `${command.name()} --help has an example`);
    }
  });
});

function helpOf(command: Command): string {
  let text = "";
  command.configureOutput({ writeOut: (chunk) => (text += chunk), writeErr: (chunk) => (text += chunk) });
  command.outputHelp();
  return text;
}
