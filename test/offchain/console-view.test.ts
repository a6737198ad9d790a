// The console's pure view logic: amounts, durations, time-to-empty, explorer links, pasted
// proofs, index pages and the words for wallet and contract errors.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  ContractFunctionExecutionError,
  ContractFunctionRevertedError,
  encodeErrorResult,
  parseEther,
  UserRejectedRequestError,
} from "viem";
import { atpTokenAbi, donorRegistryAbi, paymentChannelsAbi } from "../../offchain/src/chain/abis.ts";
import { ApiCallError, errorFor, NotAvailableError } from "../../offchain/web/src/api.ts";
import { coerce } from "../../offchain/web/src/chain.ts";
import {
  appendSample,
  countdown,
  errorText,
  explorerLink,
  formatAtp,
  formatTimeToEmpty,
  isAtpAmount,
  parseAtpInput,
  settlementOutcomeText,
  shortfallText,
  timeToEmptySeconds,
} from "../../offchain/web/src/view.ts";
import { parseProof } from "../../offchain/web/src/pages/donor.ts";
import { addressesIn, donorSections, pageRows, trustRows } from "../../offchain/web/src/pages/explorer.ts";

const ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

function reverted(abi: typeof atpTokenAbi | typeof donorRegistryAbi, errorName: string, args: unknown[]) {
  const data = encodeErrorResult({ abi, errorName, args } as never);
  const cause = new ContractFunctionRevertedError({ abi, data, functionName: "stakeWithPermit" });
  return new ContractFunctionExecutionError(cause, {
    abi,
    functionName: "stakeWithPermit",
    args: [],
    contractAddress: ALICE,
  });
}

describe("console view logic", () => {
  it("formats ATP with grouping and at most four decimals", () => {
    assert.equal(formatAtp(parseEther("1234567.5")), "1,234,567.5 ATP");
    assert.equal(formatAtp(parseEther("0.123456")), "0.1234 ATP");
    assert.equal(formatAtp("1000000000000000000"), "1 ATP");
    assert.equal(formatAtp(undefined), "—");
    assert.equal(formatAtp(65n), "<0.0001 ATP");
    assert.equal(formatAtp(0n), "0 ATP");
  });

  it("parses typed amounts and names the field when one is not an amount", () => {
    assert.equal(parseAtpInput(" 2.5 ", "Stake"), parseEther("2.5"));
    assert.throws(() => parseAtpInput("2,5", "Stake"), /^Error: Stake: enter an amount of ATP/);
    assert.throws(() => parseAtpInput("0", "Deposit"), /Deposit: the amount must be above zero/);
    assert.throws(() => parseAtpInput("1.0000000000000000001", "Top-up"), /Top-up: enter an amount/);
  });

  it("computes time-to-empty from the remaining deposit and the hourly spend", () => {
    assert.equal(timeToEmptySeconds(parseEther("10"), parseEther("5")), 7_200);
    assert.equal(timeToEmptySeconds(parseEther("10"), 0n), undefined);
    assert.equal(timeToEmptySeconds(0n, parseEther("1")), 0);
    assert.equal(formatTimeToEmpty(7_200 + 65), "2h 1m 5s");
    assert.equal(formatTimeToEmpty(undefined), "not spending");
    assert.equal(formatTimeToEmpty(0), "empty");
    assert.equal(formatTimeToEmpty(400 * 86_400), "over a year");
  });

  it("counts down to the unbonding time with a fake clock", () => {
    assert.equal(countdown(1_000n + 86_400n + 60n, 1_000), "in 1d 1m");
    assert.equal(countdown(1_000, 1_000), "now");
    assert.equal(countdown(999, 1_000), "now");
  });

  it("links addresses and transactions on public chains only", () => {
    assert.equal(explorerLink(84532, "tx", "0xabc"), "https://sepolia.basescan.org/tx/0xabc");
    assert.equal(explorerLink(10, "address", ALICE), `https://optimistic.etherscan.io/address/${ALICE}`);
    assert.equal(explorerLink(31337, "tx", "0xabc"), undefined);
  });

  it("says a wallet rejection in words, from EIP-1193 errors and from viem's", () => {
    assert.equal(
      errorText({ code: 4001, message: "User denied" }),
      "You rejected the request in your wallet.",
    );
    assert.equal(
      errorText(new UserRejectedRequestError(new Error("nope"))),
      "You rejected the request in your wallet.",
    );
  });

  it("puts each contract's custom errors into words", () => {
    assert.equal(
      errorText(reverted(atpTokenAbi, "ERC20InsufficientBalance", [ALICE, parseEther("1"), parseEther("5")])),
      `Not enough ATP: ${ALICE} has 1 ATP, needs 5 ATP`,
    );
    assert.equal(
      errorText(reverted(donorRegistryAbi, "StillUnbonding", [1_060n]), 1_000),
      "The stake is still unbonding: it can be withdrawn at 1970-01-01T00:17:40Z (in 1m)",
    );
    assert.match(
      errorText(reverted(donorRegistryAbi, "InvalidParams", ["0x6d696e5374616b65" + "00".repeat(24)])),
      /^The parameter minStake is out of its bounds$/,
    );
  });

  it("checks the wallet's ATP before asking it to sign", () => {
    assert.equal(shortfallText(parseEther("5"), parseEther("5")), undefined);
    assert.equal(
      shortfallText(parseEther("1"), parseEther("5")),
      "Not enough ATP: the wallet has 1 ATP and this needs 5 ATP.",
    );
  });

  it("keeps a bounded spend series, dropping the oldest sample", () => {
    let series: number[] = [];
    for (let sample = 0; sample < 5; sample++) series = appendSample(series, sample, 3);
    assert.deepEqual(series, [2, 3, 4]);
  });

  it("checks a pasted registration proof field by field", () => {
    const proof = { operator: ALICE, peerKey: `0x${"11".repeat(32)}`, signature: `0x${"22".repeat(65)}` };
    assert.deepEqual(parseProof(JSON.stringify(proof)), proof);
    assert.throws(() => parseProof("{"), /not JSON/);
    assert.throws(
      () => parseProof(JSON.stringify({ ...proof, operator: "0x12" })),
      /operator is not an address/,
    );
    assert.throws(
      () => parseProof(JSON.stringify({ ...proof, peerKey: "0x11" })),
      /peerKey must be 32 bytes/,
    );
    assert.throws(
      () => parseProof(JSON.stringify({ ...proof, signature: "0x22" })),
      /signature must be 65 bytes/,
    );
  });

  it("reads rows and the next cursor from an index page, whatever the list is called", () => {
    assert.deepEqual(pageRows({ settlements: [{ epoch: 1 }], nextCursor: "c2" }), {
      rows: [{ epoch: 1 }],
      next: "c2",
    });
    assert.deepEqual(pageRows([{ a: 1 }]), { rows: [{ a: 1 }] });
    assert.deepEqual(pageRows({ items: [], nextCursor: null }), { rows: [] });
  });

  it("turns a JSON receipt into the values the inclusion check encodes", () => {
    const verify = paymentChannelsAbi.find(
      (item) => item.type === "function" && item.name === "verifyReceiptInclusion",
    );
    assert.ok(verify && verify.type === "function");
    const receiptParam = verify.inputs[2]!;
    assert.equal(receiptParam.type, "tuple");
    const json = Object.fromEntries(
      (receiptParam as { components: readonly { name: string; type: string }[] }).components.map(
        (component) => [
          component.name,
          component.type.startsWith("uint")
            ? "42"
            : component.type === "address"
              ? ALICE
              : `0x${"ab".repeat(32)}`,
        ],
      ),
    );
    const coerced = coerce(receiptParam, json) as Record<string, unknown>;
    for (const component of (receiptParam as { components: readonly { name: string; type: string }[] })
      .components)
      assert.equal(typeof coerced[component.name], component.type.startsWith("uint") ? "bigint" : "string");
  });

  it("tells a route this node lacks from a thing it does not have", () => {
    const lacking = errorFor(
      404,
      { error: { code: "not_found", message: "no route /payments/channels" } },
      "/p",
    );
    assert.ok(lacking instanceof NotAvailableError);
    assert.equal(lacking.message, "not available on this node (/p)");
    const disabled = errorFor(
      404,
      { error: { message: "this node does not index the chain (set x)" } },
      "/e",
    );
    assert.ok(disabled instanceof NotAvailableError);
    assert.equal(disabled.message, "not available on this node: index the chain (set x)");
    const missing = errorFor(
      404,
      { error: { message: "no settlement in transaction 0x12 in the index" } },
      "/s",
    );
    assert.ok(missing instanceof ApiCallError && !(missing instanceof NotAvailableError));
    assert.equal(missing.message, "no settlement in transaction 0x12 in the index");
    assert.match(errorFor(401, undefined, "/x").message, /API token is missing or wrong/);
  });

  it("finds this node's trust view of a donor's operators in its history", () => {
    const operator = "0x" + "Ab".repeat(20);
    const history = { donor: ALICE, registrations: [{ operator }] };
    const addresses = addressesIn(history);
    assert.deepEqual([...addresses].sort(), [ALICE.toLowerCase(), operator.toLowerCase()].sort());
    const rows = trustRows(
      [
        { peerId: "p1", operator, reputation: 65_535, penaltyScore: 2, trust: { state: "quarantined" } },
        { peerId: "p2", operator: "0x" + "11".repeat(20), reputation: 0, penaltyScore: 0 },
        { peerId: "p3", penaltyScore: 0 },
      ],
      addresses,
    );
    assert.deepEqual(rows, [
      { operator, peerId: "p1", reputation: "100.0%", penaltyScore: 2, trust: "quarantined" },
    ]);
  });

  it("says what a settlement run did", () => {
    const base = {
      epoch: 7,
      txHash: null,
      receiptCount: 0,
      voucherCount: 0,
      paidCount: 0,
      total: "0",
      detail: null,
    };
    assert.equal(
      settlementOutcomeText({
        ...base,
        state: "settled",
        txHash: "0xabc",
        receiptCount: 3,
        voucherCount: 2,
        paidCount: 2,
        total: parseEther("1.5").toString(),
      }),
      "Epoch 7 settled: 2 of 2 vouchers paid, 1.5 ATP, 3 receipts anchored (transaction 0xabc).",
    );
    assert.equal(settlementOutcomeText({ ...base, state: "nothing" }), "Nothing to settle in epoch 7.");
    assert.equal(
      settlementOutcomeText({ ...base, state: "already_recorded", detail: "sent earlier" }),
      "Epoch 7 is already recorded: sent earlier.",
    );
  });

  it("splits a donor's explorer answer into facts and lists", () => {
    const { facts, lists } = donorSections({
      stake: { bonded: "5", operator: ALICE },
      faults: { outvoted: 1 },
      history: { items: [{ kind: "staked" }], nextCursor: "9-1" },
      court: [{ caseId: 1 }],
    });
    assert.deepEqual(facts, { "stake.bonded": "5", "stake.operator": ALICE, "faults.outvoted": 1 });
    assert.deepEqual(lists, [
      ["history", [{ kind: "staked" }]],
      ["court", [{ caseId: 1 }]],
    ]);
  });

  it("shows the explorer's amount columns as ATP, and nothing else", () => {
    assert.equal(isAtpAmount("bonded", "1000"), true);
    assert.equal(isAtpAmount("stake.bonded", "1000"), true);
    assert.equal(isAtpAmount("total", 65), false, "numbers are counts here, amounts come as strings");
    assert.equal(isAtpAmount("nonce", "1000"), false);
    assert.equal(isAtpAmount("deposit", "0x10"), false);
  });
});
