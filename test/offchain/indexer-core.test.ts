import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeFunctionData, getAddress, keccak256, toHex } from "viem";
import type { Hex } from "viem";
import { paymentChannelsAbi } from "../../offchain/src/chain/abis.ts";
import { channelIdOf, encodeSettlementBatch } from "../../offchain/src/chain/index.ts";
import type { ChannelKey } from "../../offchain/src/chain/index.ts";
import { indexLogs, settlementBatchOf, stateKeysOf } from "../../offchain/src/indexer/index.ts";
import type { ChainLog, IndexState, LogSource } from "../../offchain/src/indexer/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";

const DONOR = getAddress("0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
const OPERATOR = getAddress("0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc");
const REPORTER = getAddress("0x90f79bf6eb2c4f870365e785982e1f87e48ea0d3");
const BUYER = getAddress("0x15d34aaf54267db7d7c367839aaf71a00a2c6a65");
const PAYEE = getAddress("0x9965507d1a55bcc2695c58ba16fb37d819b0a4dc");
const JOB = keccak256(toHex("job"));
const EMPTY: IndexState = { stakes: new Map(), channels: new Map() };

let logIndex = 0;
/** A decoded log as the indexer hands it to the core, in block `block` of transaction `tx`. */
function log(
  source: LogSource,
  eventName: string,
  args: Record<string, unknown>,
  block = 10n,
  tx?: Hex,
): ChainLog {
  const index = logIndex++;
  return {
    source,
    eventName,
    args,
    blockNumber: block,
    blockHash: keccak256(toHex(`block ${block}`)),
    logIndex: index,
    transactionHash: tx ?? keccak256(toHex(`tx ${index}`)),
  };
}

const key: ChannelKey = { buyer: BUYER, signer: BUYER, payee: PAYEE, nonce: 7n };
const channelId = channelIdOf(key);

describe("indexer core: every event kind becomes rows", () => {
  test("stakes, unbonds, withdrawals and slashes keep each donor's bonded and unbonding stake", () => {
    const logs = [
      log("registry", "Staked", { donor: DONOR, amount: 100n, bonded: 100n }),
      log("registry", "Registered", { donor: DONOR, operator: OPERATOR, peerKey: JOB, metadataURI: "m" }),
      log("registry", "UnbondRequested", { donor: DONOR, amount: 30n, unbondableAt: 99n }),
      log("registry", "Slashed", {
        operator: OPERATOR,
        jobId: JOB,
        reason: 0,
        reporter: REPORTER,
        donor: DONOR,
        amount: 80n,
        reward: 8n,
      }),
      log("registry", "Jailed", { operator: OPERATOR, donor: DONOR, rotatableAt: 5n }),
      log("registry", "CourtSlashed", { donor: DONOR, amount: 15n }),
      log("registry", "Withdrawn", { donor: DONOR, amount: 5n }),
      log("registry", "OperatorRotated", {
        donor: DONOR,
        oldOperator: OPERATOR,
        newOperator: REPORTER,
        peerKey: JOB,
        oldAccountableUntil: 77n,
      }),
      log("registry", "MetadataUpdated", { donor: DONOR, metadataURI: "ipfs://meta" }),
      log("registry", "ParamsUpdated", { params: { minStake: 1n } }),
    ];
    const { rows, state } = indexLogs(EMPTY, logs, new Map());
    assert.deepEqual(
      rows.donorEvents.map((r) => [r.kind, r.bonded, r.unbonding]),
      [
        ["staked", 100n, 0n],
        ["registered", 100n, 0n],
        ["unbond", 70n, 30n],
        // 80 slashed: all 70 bonded first, then 10 of the unbonding stake
        ["slashed", 0n, 20n],
        ["jailed", 0n, 20n],
        ["slashed", 0n, 5n],
        ["withdrawn", 0n, 0n],
        ["rotated", 0n, 0n],
        ["metadata", 0n, 0n],
      ],
    );
    assert.equal(rows.donorEvents[1]!.operator, OPERATOR);
    assert.equal(rows.donorEvents[7]!.operator, REPORTER);
    assert.deepEqual(rows.donorEvents[7]!.data, {
      oldOperator: OPERATOR,
      peerKey: JOB,
      oldAccountableUntil: 77n,
    });
    assert.deepEqual(rows.donorEvents[8]!.data, { metadataURI: "ipfs://meta" });
    assert.deepEqual(
      rows.slashes.map((s) => [s.kind, s.amount, s.reporter, s.jobId]),
      [
        ["equivocation", 80n, REPORTER, JOB],
        ["court", 15n, undefined, undefined],
      ],
    );
    assert.deepEqual(state.stakes.get(DONOR), { bonded: 0n, unbonding: 0n });
  });

  test("a donor's earlier stake is the starting point and an outvote slash is named so", () => {
    const start: IndexState = {
      stakes: new Map([[DONOR, { bonded: 50n, unbonding: 0n }]]),
      channels: new Map(),
    };
    const { rows } = indexLogs(
      start,
      [
        log("registry", "Slashed", {
          operator: OPERATOR,
          jobId: JOB,
          reason: 1,
          reporter: REPORTER,
          donor: DONOR,
          amount: 20n,
          reward: 2n,
        }),
      ],
      new Map(),
    );
    assert.equal(rows.slashes[0]!.kind, "outvoted");
    assert.equal(rows.donorEvents[0]!.bonded, 30n);
    assert.equal(start.stakes.get(DONOR)!.bonded, 50n, "the state given is not changed");
  });

  test("a channel's life: opened, topped up, paid, closing, closed, and a skipped voucher", () => {
    const logs = [
      log("channels", "ChannelOpened", {
        channelId,
        buyer: BUYER,
        payee: PAYEE,
        signer: BUYER,
        nonce: 7n,
        deposit: 100n,
      }),
      log("channels", "ChannelToppedUp", { channelId, funder: BUYER, amount: 50n, deposit: 150n }),
      log("channels", "ChannelPaid", { channelId, amount: 40n, paid: 40n }),
      log("channels", "VoucherSkipped", { channelId, reason: 0 }),
      log("channels", "CloseStarted", { channelId, closesAt: 1_000n }),
      log("channels", "ChannelClosed", { channelId, paid: 60n, refund: 90n }),
      log("channels", "PaidWithdrawn", { payee: PAYEE, amount: 60n }),
    ];
    const { rows, state } = indexLogs(EMPTY, logs, new Map());
    assert.deepEqual(
      rows.channels.map((c) => [c.channelId, c.buyer, c.payee, c.nonce]),
      [[channelId, BUYER, PAYEE, 7n]],
    );
    assert.deepEqual(
      rows.channelEvents.map((e) => [e.kind, e.deposit, e.paid, e.status]),
      [
        ["opened", 100n, 0n, "open"],
        ["topped_up", 150n, 0n, "open"],
        ["paid", 150n, 40n, "open"],
        ["skipped_nothing_new", 150n, 40n, "open"],
        ["close_started", 150n, 40n, "closing"],
        ["closed", 150n, 60n, "closed"],
      ],
    );
    assert.equal(rows.channelEvents[4]!.closesAt, 1_000n);
    assert.deepEqual(
      rows.payeeTotals.map((p) => [p.kind, p.payee, p.amount]),
      [["withdrawn", PAYEE, 60n]],
    );
    assert.equal(state.channels.get(channelId)!.status, "closed");
  });

  test("a settlement: its batch decoded from calldata, paid bitmap per voucher, payee totals and anchor", () => {
    const other: ChannelKey = { ...key, nonce: 8n };
    const signature = `0x${"11".repeat(64)}` as Hex;
    const batch = encodeSettlementBatch([
      { key, cumulativeAmount: 500n, signature },
      { key: other, cumulativeAmount: 30n, signature },
    ]);
    const input = encodeFunctionData({
      abi: paymentChannelsAbi,
      functionName: "settle",
      args: [batch, 4n, JOB, 2n],
    });
    const tx = keccak256(toHex("settle"));
    const logs = [
      log(
        "channels",
        "ReceiptsAnchored",
        { submitter: REPORTER, epoch: 4n, receiptRoot: JOB, receiptCount: 2n },
        11n,
        tx,
      ),
      log("channels", "VoucherSkipped", { channelId: channelIdOf(other), reason: 1 }, 11n, tx),
      log(
        "channels",
        "BatchSettled",
        { submitter: REPORTER, vouchers: 2n, total: 100n, paidBitmap: [1n] },
        11n,
        tx,
      ),
      log("channels", "PayeeSettled", { payee: PAYEE, amount: 100n }, 11n, tx),
    ];
    const batches = new Map([[tx, settlementBatchOf(input)]]);
    const keys = stateKeysOf(logs, batches);
    assert.deepEqual(new Set(keys.channels), new Set([channelId, channelIdOf(other)]));
    const start: IndexState = {
      stakes: new Map(),
      channels: new Map([[channelId, { deposit: 100n, paid: 0n, status: "open" }]]),
    };
    const { rows, state } = indexLogs(start, logs, batches);
    assert.deepEqual(
      rows.settlements.map((s) => [s.tx, s.vouchers, s.total, s.decoded]),
      [[tx, 2, 100n, true]],
    );
    assert.deepEqual(
      rows.settlementVouchers.map((v) => [v.position, v.channelId, v.cumulativeAmount, v.paid]),
      [
        [0, channelId, 500n, true],
        [1, channelIdOf(other), 30n, false],
      ],
    );
    // the voucher paid up to the deposit, never more
    const settled = rows.channelEvents.find((e) => e.kind === "settled")!;
    assert.deepEqual([settled.amount, settled.paid, settled.position], [100n, 100n, 1]);
    assert.equal(state.channels.get(channelId)!.paid, 100n);
    assert.deepEqual(
      rows.payeeTotals.map((p) => [p.kind, p.amount]),
      [["settled", 100n]],
    );
    assert.deepEqual(
      rows.anchors.map((a) => [a.epoch, a.receiptRoot, a.receiptCount]),
      [[4n, JOB, 2n]],
    );
  });

  test("a settlement whose calldata is not a settle() call is kept, marked undecoded", () => {
    const tx = keccak256(toHex("multicall"));
    const logs = [
      log(
        "channels",
        "BatchSettled",
        { submitter: REPORTER, vouchers: 3n, total: 9n, paidBitmap: [7n] },
        12n,
        tx,
      ),
    ];
    const { rows } = indexLogs(EMPTY, logs, new Map([[tx, settlementBatchOf("0xdeadbeef")]]));
    assert.equal(rows.settlements[0]!.decoded, false);
    assert.equal(rows.settlementVouchers.length, 0);
  });

  test("court events are kept by case with the account they concern", () => {
    const logs = [
      log("court", "CaseOpened", {
        caseId: 3n,
        accusedOperator: OPERATOR,
        jobId: JOB,
        accusedDonor: DONOR,
        amount: 10n,
        deadline: 50n,
        quorumDonors: [REPORTER],
      }),
      log("court", "VoteCast", { caseId: 3n, juror: REPORTER, vote: 2 }),
      log("registry", "OutvoteAccused", { operator: OPERATOR, jobId: JOB, caseId: 3n, amount: 10n }),
    ];
    const { rows } = indexLogs(EMPTY, logs, new Map());
    assert.deepEqual(
      rows.courtEvents.map((e) => [e.caseId, e.kind, e.account]),
      [
        [3n, "CaseOpened", DONOR],
        [3n, "VoteCast", REPORTER],
        [3n, "OutvoteAccused", OPERATOR],
      ],
    );
  });
});

describe("indexer store: rows, state and rollback", () => {
  function indexed() {
    const store = openStore(":memory:");
    const blockLogs = (block: bigint) => [
      log("registry", "Staked", { donor: DONOR, amount: 10n, bonded: 10n * block }, block),
      log(
        "channels",
        "ChannelOpened",
        {
          channelId: channelIdOf({ ...key, nonce: block }),
          buyer: BUYER,
          payee: PAYEE,
          signer: BUYER,
          nonce: block,
          deposit: block,
        },
        block,
      ),
    ];
    for (const block of [1n, 2n, 3n]) {
      const { rows } = indexLogs(EMPTY, blockLogs(block), new Map());
      store.transaction(() =>
        store.indexer.write(rows, [{ number: block, hash: keccak256(toHex(`block ${block}`)) }]),
      );
    }
    return store;
  }

  test("the latest state of donors and channels is read back for the next range", () => {
    const store = indexed();
    assert.deepEqual(store.indexer.stakesOf([DONOR]).get(DONOR), { bonded: 30n, unbonding: 0n });
    const id = channelIdOf({ ...key, nonce: 2n });
    assert.deepEqual(store.indexer.channelsOf([id]).get(id), { deposit: 2n, paid: 0n, status: "open" });
    assert.equal(store.indexer.head()!.number, 3n);
    store.close();
  });

  test("rolling back from a block deletes its rows and every later block's", () => {
    const store = indexed();
    store.transaction(() => store.indexer.rollbackFrom(2n));
    assert.equal(store.indexer.head()!.number, 1n);
    assert.deepEqual(store.indexer.stakesOf([DONOR]).get(DONOR), { bonded: 10n, unbonding: 0n });
    const counts = store.indexer.counts();
    assert.equal(counts.idx_channels, 1);
    assert.equal(counts.idx_donor_events, 1);
    assert.deepEqual(
      store.indexer.channels({ limit: 10 }).items.map((c) => c.nonce),
      ["1"],
    );
    store.close();
  });
});
