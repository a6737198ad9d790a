import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_BACKOFF, JobScheduler, backoffDelay, planRetry } from "../../offchain/src/market/index.ts";
import type { QueuedJob } from "../../offchain/src/market/index.ts";

function job(jobId: string, priority: QueuedJob<null>["priority"], deadline: number): QueuedJob<null> {
  return { jobId, priority, deadline, item: null };
}

describe("scheduler", () => {
  it("takes higher priority first, then earliest deadline, then arrival order", () => {
    const scheduler = new JobScheduler<null>();
    scheduler.enqueue(job("bg", "background", 100));
    scheduler.enqueue(job("normal-late", "normal", 900));
    scheduler.enqueue(job("normal-early", "normal", 500));
    scheduler.enqueue(job("critical", "critical", 10_000));
    scheduler.enqueue(job("normal-early-2", "normal", 500));
    const order: string[] = [];
    for (let next = scheduler.next(0); next; next = scheduler.next(0)) order.push(next.jobId);
    assert.deepEqual(order, ["critical", "normal-early", "normal-early-2", "normal-late", "bg"]);
    assert.equal(scheduler.size, 0);
  });

  it("a parked job waits with its reason until its retry time", () => {
    const scheduler = new JobScheduler<null>();
    scheduler.enqueue(job("a", "high", 1_000));
    scheduler.enqueue(job("b", "low", 1_000));
    const a = scheduler.next(0);
    assert.equal(a?.jobId, "a");
    scheduler.park(a!, "no_bid", 50, "nobody bid");
    assert.deepEqual(
      scheduler.waiting().map((w) => [w.jobId, w.reason ?? null]),
      [
        ["a", "no_bid"],
        ["b", null],
      ],
    );
    assert.equal(scheduler.next(10)?.jobId, "b");
    assert.equal(scheduler.next(10), undefined);
    assert.equal(scheduler.nextReadyAt(), 50);
    const again = scheduler.next(50);
    assert.equal(again?.jobId, "a");
    assert.equal(again?.reason, "no_bid");
  });

  it("expires jobs whose deadline passed, and removes by id", () => {
    const scheduler = new JobScheduler<null>();
    scheduler.enqueue(job("old", "normal", 100));
    scheduler.enqueue(job("new", "normal", 1_000));
    scheduler.enqueue(job("gone", "normal", 1_000));
    assert.equal(scheduler.remove("gone"), true);
    assert.deepEqual(
      scheduler.expire(500).map((j) => j.jobId),
      ["old"],
    );
    assert.deepEqual(
      scheduler.waiting().map((j) => j.jobId),
      ["new"],
    );
  });

  it("matches a scan of every waiting job over a long random run of operations", () => {
    const random = seeded(7);
    const scheduler = new JobScheduler<null>();
    const model = new Map<string, { priority: number; deadline: number; notBefore: number; seq: number }>();
    const priorities = ["critical", "high", "normal", "low", "background"] as const;
    let seq = 0;
    let now = 0;
    for (let i = 0; i < 20_000; i++) {
      const id = `j${Math.floor(random() * 300)}`;
      const op = random();
      if (op < 0.35) {
        const priority = Math.floor(random() * priorities.length);
        const deadline = now + 50 + Math.floor(random() * 5_000);
        const notBefore = now + Math.floor(random() * 200);
        scheduler.enqueue(job(id, priorities[priority]!, deadline), notBefore);
        model.set(id, { priority, deadline, notBefore, seq: seq++ });
      } else if (op < 0.5) {
        const entry = model.get(id);
        const priority = Math.floor(random() * priorities.length);
        const deadline = now + 50 + Math.floor(random() * 5_000);
        const notBefore = now + Math.floor(random() * 200);
        scheduler.park(job(id, priorities[priority]!, deadline), "no_bid", notBefore);
        model.set(id, { priority, deadline, notBefore, seq: entry?.seq ?? seq++ });
      } else if (op < 0.6) {
        assert.equal(scheduler.remove(id), model.delete(id));
      } else if (op < 0.9) {
        const expected = [...model]
          .filter(([, entry]) => entry.notBefore <= now)
          .sort(([, a], [, b]) => a.priority - b.priority || a.deadline - b.deadline || a.seq - b.seq)[0];
        assert.equal(scheduler.next(now)?.jobId, expected?.[0]);
        if (expected) model.delete(expected[0]);
      } else if (op < 0.95) {
        const expired = [...model].filter(([, entry]) => entry.deadline <= now).map(([jobId]) => jobId);
        for (const jobId of expired) model.delete(jobId);
        assert.deepEqual(
          scheduler
            .expire(now)
            .map((entry) => entry.jobId)
            .sort(),
          expired.sort(),
        );
      } else {
        now += Math.floor(random() * 100);
      }
      assert.equal(scheduler.size, model.size);
    }
  });

  it("holds memory within a constant factor of the jobs waiting, however often they are re-parked", () => {
    const scheduler = new JobScheduler<null>();
    for (let i = 0; i < 100; i++) scheduler.enqueue(job(`j${i}`, "normal", 1_000_000), 10);
    for (let round = 0; round < 1_000; round++)
      for (let i = 0; i < 100; i++) scheduler.park(job(`j${i}`, "normal", 1_000_000), "no_bid", round);
    assert.equal(scheduler.size, 100);
    assert.ok(scheduler.heldEntries <= 3 * (2 * 100 + 1_024), `${scheduler.heldEntries} heap entries held`);
    assert.equal(scheduler.nextReadyAt(), 999);
  });
});

describe("backoff and reassignment", () => {
  it("doubles from the base up to the cap, without jitter", () => {
    const options = { ...DEFAULT_BACKOFF, jitter: 0 };
    assert.deepEqual(
      [1, 2, 3, 4].map((n) => backoffDelay(n, options)),
      [200, 400, 800, 1600],
    );
    assert.equal(backoffDelay(30, options), options.maxMs);
  });

  it("jitter stays within its fraction", () => {
    assert.equal(
      backoffDelay(1, DEFAULT_BACKOFF, () => 0),
      160,
    );
    assert.equal(
      backoffDelay(1, DEFAULT_BACKOFF, () => 1),
      240,
    );
  });

  it("retries until attempts are exhausted or the deadline would pass", () => {
    const half = () => 0.5;
    assert.deepEqual(planRetry(1, "executor_silent", { now: 0, deadline: 10_000 }, undefined, half), {
      type: "retry",
      at: 200,
      attempt: 2,
    });
    const exhausted = planRetry(6, "executor_silent", { now: 0, deadline: 10_000 }, undefined, half);
    assert.equal(exhausted.type === "give_up" && exhausted.reason, "attempts_exhausted");
    const late = planRetry(2, "deadline_missed", { now: 9_900, deadline: 10_000 }, undefined, half);
    assert.equal(late.type === "give_up" && late.reason, "deadline_missed");
  });
});

/** A small deterministic generator (mulberry32), so a failing run can be replayed. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
