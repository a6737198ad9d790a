import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { keccak256, toHex } from "viem";
import {
  EXECUTION_STATUSES,
  ReceiptStatus,
  ReceiptWireSchema,
  isReceiptStatus,
  receiptFromWire,
  receiptSpecError,
  receiptToWire,
} from "../../offchain/src/protocol/index.ts";
import type { Receipt } from "../../offchain/src/protocol/index.ts";

const word = (text: string) => keccak256(toHex(text));
const spec = { fuelLimit: 1_000n, moduleCid: word("module"), inputCid: word("input") };

function receipt(overrides: Partial<Receipt> = {}): Receipt {
  return {
    jobId: word("job"),
    executor: "0x00000000000000000000000000000000000000aa",
    moduleCid: spec.moduleCid,
    inputCid: spec.inputCid,
    outputCid: word("output"),
    fuelUsed: 400n,
    status: ReceiptStatus.ok,
    startedAt: 100n,
    finishedAt: 105n,
    ...overrides,
  };
}

describe("receipt statuses", () => {
  it("are the execution statuses, in order", () => {
    assert.deepEqual(Object.keys(ReceiptStatus), [...EXECUTION_STATUSES]);
    assert.deepEqual(Object.values(ReceiptStatus), [0, 1, 2, 3, 4]);
  });

  it("the wire schema takes every known status and refuses any other, listing the known ones", () => {
    for (const status of Object.values(ReceiptStatus)) {
      assert.equal(
        ReceiptWireSchema.safeParse(receiptToWire(receipt({ status }))).success,
        true,
        `${status}`,
      );
      assert.equal(isReceiptStatus(status), true);
    }
    for (const status of [5, 255, -1, 1.5]) {
      const result = ReceiptWireSchema.safeParse({ ...receiptToWire(receipt()), status });
      assert.equal(result.success, false, `${status}`);
      assert.deepEqual([...new Set(result.error?.issues.map((issue) => issue.path.join(".")))], ["status"]);
    }
    const unknown = ReceiptWireSchema.safeParse({ ...receiptToWire(receipt()), status: 5 });
    assert.match(
      unknown.error?.issues[0]?.message ?? "",
      /known receipt status \(0 ok, 1 exit, 2 trap, 3 out_of_fuel, 4 policy_rejected\)/,
    );
  });
});

describe("receiptSpecError", () => {
  it("accepts a receipt that fits its job, whatever the case of its hex", () => {
    assert.equal(receiptSpecError(receipt(), spec), undefined);
    assert.equal(
      receiptSpecError(
        receipt({ moduleCid: spec.moduleCid.toUpperCase().replace("0X", "0x") as `0x${string}` }),
        spec,
      ),
      undefined,
    );
    assert.equal(receiptSpecError(receipt({ fuelUsed: spec.fuelLimit }), spec), undefined);
    assert.equal(
      receiptSpecError(receipt({ fuelUsed: 0n, status: ReceiptStatus.policy_rejected }), spec),
      undefined,
    );
    assert.equal(receiptSpecError(receipt({ finishedAt: 100n }), spec), undefined);
    const outOfFuel = receipt({ status: ReceiptStatus.out_of_fuel, fuelUsed: spec.fuelLimit });
    assert.equal(receiptSpecError(receiptFromWire(receiptToWire(outOfFuel)), spec), undefined);
  });

  it("refuses an unknown status", () => {
    assert.match(
      receiptSpecError(receipt({ status: 9 }), spec) ?? "",
      /status 9 is not a known status \(0 ok/,
    );
  });

  it("refuses another module or input than the job's", () => {
    assert.match(
      receiptSpecError(receipt({ moduleCid: word("other") }), spec) ?? "",
      /moduleCid 0x[0-9a-f]{64} is not the job's module/,
    );
    assert.match(
      receiptSpecError(receipt({ inputCid: word("other") }), spec) ?? "",
      /inputCid 0x[0-9a-f]{64} is not the job's input/,
    );
  });

  it("refuses more fuel than the limit, whatever the status", () => {
    for (const status of Object.values(ReceiptStatus)) {
      assert.match(
        receiptSpecError(receipt({ status, fuelUsed: 1_001n }), spec) ?? "",
        /fuelUsed 1001 is above the job's fuel limit 1000/,
        `${status}`,
      );
    }
  });

  it("refuses an out_of_fuel receipt that does not report exactly the limit", () => {
    for (const fuelUsed of [0n, 999n]) {
      assert.match(
        receiptSpecError(receipt({ status: ReceiptStatus.out_of_fuel, fuelUsed }), spec) ?? "",
        new RegExp(`out_of_fuel receipt must report the whole fuel limit 1000 as used, not ${fuelUsed}`),
      );
    }
  });

  it("refuses a finish before the start", () => {
    assert.match(
      receiptSpecError(receipt({ startedAt: 105n, finishedAt: 104n }), spec) ?? "",
      /finishedAt 104 is before its startedAt 105/,
    );
  });
});
