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
