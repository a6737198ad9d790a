import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { openStore, SLASH_PENDING_MAX, slashId } from "../../offchain/src/store/index.ts";
import { freshDirs } from "../support/fresh-dirs.ts";

const OPERATOR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const JOB = `0x${"11".repeat(32)}` as const;
const EVIDENCE = { kind: "equivocation", a: { receipt: { jobId: JOB } }, b: { receipt: { jobId: JOB } } };

const freshDir = freshDirs("cell-slashes-", "store");

describe("slash submissions", () => {
  test("survive a reopen of the store, with their attempts and next attempt time", () => {
    const dir = freshDir();
    const clock = { now: 1_000 };
    const store = openStore(dir, { now: () => clock.now });
    const row = store.slashes.add({
      kind: "equivocation",
      jobId: JOB,
      operator: OPERATOR,
      source: "gossip",
      evidence: EVIDENCE,
    });
    assert.ok(row);
    assert.equal(row.state, "pending");
    store.slashes.retryAt(row.id, 5_000, "the chain did not answer");
    store.close();

    const reopened = openStore(dir, { now: () => clock.now });
    const [due] = reopened.slashes.due(5_000);
    assert.equal(due?.id, slashId("equivocation", JOB, OPERATOR));
    assert.equal(due?.attempts, 1);
    assert.equal(due?.lastError, "the chain did not answer");
    assert.deepEqual(due?.evidence, EVIDENCE);
    assert.deepEqual(reopened.slashes.due(4_999), [], "not due before its next attempt");
    reopened.close();
  });

  test("are deduplicated by kind, job and operator, whatever the case of the address", () => {
    const store = openStore(":memory:");
    const first = { kind: "outvote", jobId: JOB, operator: OPERATOR, source: "own", evidence: {} } as const;
    assert.ok(store.slashes.add(first));
    assert.equal(
      store.slashes.add({ ...first, operator: OPERATOR.toLowerCase() as `0x${string}` }),
      undefined,
    );
    assert.ok(store.slashes.add({ ...first, kind: "equivocation" }), "another kind is another submission");
    assert.equal(store.slashes.list().length, 2);
    store.close();
  });

  test("hold one waiting equivocation per operator, however many jobs a leaked key signs pairs for", () => {
    const store = openStore(":memory:");
    const equivocation = (jobId: `0x${string}`, operator: `0x${string}` = OPERATOR) =>
      store.slashes.add({ kind: "equivocation", jobId, operator, source: "gossip", evidence: {} });
    const first = equivocation(JOB);
    assert.ok(first);
    for (let i = 0; i < 50; i++)
      assert.equal(
        equivocation(`0x${i.toString(16).padStart(64, "0")}`, OPERATOR.toLowerCase() as `0x${string}`),
        undefined,
      );
    assert.ok(equivocation(JOB, "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"), "another operator queues");
    store.slashes.settle(first.id, { state: "done", outcome: "slashed" });
    assert.ok(equivocation(`0x${"22".repeat(32)}`), "once settled, later evidence is judged again");
    store.close();
  });

  test("settled ones are not due again and show in the history with their outcome", () => {
    const store = openStore(":memory:");
    const row = store.slashes.add({
      kind: "equivocation",
      jobId: JOB,
      operator: OPERATOR,
      source: "own",
      evidence: {},
    })!;
    store.slashes.settle(row.id, { state: "done", outcome: "AlreadySlashed" });
    assert.deepEqual(store.slashes.due(Number.MAX_SAFE_INTEGER), []);
    const [settled] = store.slashes.list({ state: "done" });
    assert.equal(settled?.outcome, "AlreadySlashed");
    assert.equal(settled?.attempts, 1);
    assert.equal(store.slashes.list({ state: "pending" }).length, 0);
    store.close();
  });

  test("refuse new evidence while the queue of waiting submissions is full", () => {
    const store = openStore(":memory:");
    for (let i = 0; i < SLASH_PENDING_MAX; i++) {
      const jobId = `0x${i.toString(16).padStart(64, "0")}` as const;
      assert.ok(
        store.slashes.add({ kind: "outvote", jobId, operator: OPERATOR, source: "own", evidence: {} }),
      );
    }
    assert.equal(
      store.slashes.add({
        kind: "equivocation",
        jobId: JOB,
        operator: OPERATOR,
        source: "own",
        evidence: {},
      }),
      undefined,
    );
    store.close();
  });
});
