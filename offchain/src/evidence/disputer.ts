import type { Logger } from "pino";
import type { Address, Hex } from "viem";
import { PollLoop, accusationsOf, disputeCase, outvoteEvidenceOf, readCase } from "../chain/index.ts";
import type { ChainReader, ChainWriter, OutvoteAccusation, OutvoteEvidence } from "../chain/index.ts";

/** JuryCourt.Stage.Open: accused, within the dispute window, not disputed yet. */
const STAGE_OPEN = 1;

/** What re-executing a job gave, in the terms receipts compare results: (status, outputCid, fuelUsed). */
export interface ExecutionOutcome {
  status: number;
  outputCid: Hex;
  fuelUsed: bigint;
}

/** What the disputer reads and sends on the chain, and how it re-executes a job. */
export interface DisputerPorts {
  chain: {
    head(): Promise<bigint>;
    /** OutvoteAccused events against this node's operator in blocks `fromBlock..toBlock`. */
    accusations(fromBlock: bigint, toBlock: bigint): Promise<OutvoteAccusation[]>;
    /** The case's stage (JuryCourt.Stage) and the end of its dispute window (unix seconds). */
    caseOf(caseId: bigint): Promise<{ stage: number; deadline: bigint }>;
    evidence(caseId: bigint): Promise<OutvoteEvidence>;
    /** Disputes the case, paying the bond from the operator key. */
    dispute(caseId: bigint): Promise<void>;
  };
  /** Runs the evidence's job again in this node's runtime; undefined when it gave no result. */
  reexecute(evidence: OutvoteEvidence): Promise<ExecutionOutcome | undefined>;
  /** Unix milliseconds. */
  now(): number;
  log: Logger;
  /** Where the next block to read is kept across restarts (the node's meta table). */
  cursor?: { load(): bigint | undefined; save(nextBlock: bigint): void };
}

export interface DisputerOptions {
  pollMs: number;
  /** Most blocks read in one poll. */
  blockRange: bigint;
  /** Blocks looked back at a first start (no saved cursor), so an accusation just made is seen. */
  lookbackBlocks?: bigint;
}

/** Accusations whose handling failed and is tried again at every poll; the oldest is dropped first. */
const MAX_RETRIED = 16;

/** What the disputer decided about one accusation. */
export type DisputeDecision =
  { action: "dispute" } | { action: "accept"; why: string } | { action: "skip"; why: string };

/**
 * Whether a node should dispute an outvote of its own receipt: only when the case is still open,
 * its window has not closed, and its re-execution gives exactly the result the accused receipt
 * reports. A re-execution that disagrees means this node's receipt was wrong: it lets the slash
 * be.
 */
export function decideDispute(
  accused: ExecutionOutcome,
  rerun: ExecutionOutcome | undefined,
  stored: { stage: number; deadline: bigint },
  nowMs: number,
): DisputeDecision {
  const closed = whyClosed(stored, nowMs);
  if (closed !== undefined) return { action: "skip", why: closed };
  if (rerun === undefined) return { action: "accept", why: "re-executing the job gave no result" };
  if (!sameOutcome(accused, rerun))
    return { action: "accept", why: "re-executing the job disagrees with the accused receipt" };
  return { action: "dispute" };
}

/** Why a case can no longer be disputed, or undefined while it can. */
export function whyClosed(stored: { stage: number; deadline: bigint }, nowMs: number): string | undefined {
  if (stored.stage !== STAGE_OPEN) return `the case is at stage ${stored.stage}, not open`;
  if (BigInt(Math.floor(nowMs / 1000)) > stored.deadline) return "the dispute window has closed";
  return undefined;
}

function sameOutcome(a: ExecutionOutcome, b: ExecutionOutcome): boolean {
  return (
    a.status === b.status &&
    a.outputCid.toLowerCase() === b.outputCid.toLowerCase() &&
    a.fuelUsed === b.fuelUsed
  );
}

/**
 * Watches DonorRegistry for outvote accusations of this node's operator. For each, it
 * re-executes the job and disputes the case (bond from the operator key) when its receipt
 * matches its re-execution, within the dispute window; otherwise it lets the slash be. An
 * accusation whose handling failed (the chain or a block fetch) is tried again at every poll
 * until its window closes; at most MAX_RETRIED wait, the oldest dropped first.
 */
export class AccusationWatcher {
  readonly #ports: DisputerPorts;
  readonly #options: DisputerOptions;
  #cursor: bigint | undefined;
  readonly #loop: PollLoop;
  /** caseId → accusation to try again; bound MAX_RETRIED, evicted oldest first or once decided. */
  readonly #retries = new Map<bigint, OutvoteAccusation>();

  constructor(ports: DisputerPorts, options: DisputerOptions) {
    this.#ports = ports;
    this.#options = options;
    this.#loop = new PollLoop(() => this.poll(), options.pollMs);
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** One pass: the retries, then the next range of blocks (exposed for tests). */
  async poll(): Promise<void> {
    const { chain, log } = this.#ports;
    try {
      for (const accusation of [...this.#retries.values()]) await this.#handle(accusation);
      const head = await chain.head();
      const lookback = this.#options.lookbackBlocks ?? 256n;
      this.#cursor ??= this.#ports.cursor?.load();
      const from = this.#cursor ?? (head > lookback ? head - lookback : 0n);
      if (from > head) return;
      const last = from + this.#options.blockRange - 1n;
      const to = last < head ? last : head;
      log.debug({ from, to }, "reading outvote accusations");
      for (const accusation of await chain.accusations(from, to)) {
        if (this.#loop.stopped) return;
        await this.#handle(accusation);
      }
      this.#cursor = to + 1n;
      this.#ports.cursor?.save(this.#cursor);
    } catch (err) {
      log.warn({ err: errorText(err) }, "reading outvote accusations failed");
    }
  }

  async #handle(accusation: OutvoteAccusation): Promise<void> {
    const { chain, log, now } = this.#ports;
    const caseId = accusation.caseId.toString();
    try {
      const closed = whyClosed(await chain.caseOf(accusation.caseId), now());
      if (closed !== undefined) {
        log.debug({ caseId, why: closed }, "an outvote of our receipt that can no longer be disputed");
        this.#retries.delete(accusation.caseId);
        return;
      }
      const evidence = await chain.evidence(accusation.caseId);
      const accused = evidence.accused.receipt;
      const rerun = await this.#ports.reexecute(evidence);
      const decision = decideDispute(accused, rerun, await chain.caseOf(accusation.caseId), now());
      if (decision.action === "dispute") await chain.dispute(accusation.caseId);
      this.#retries.delete(accusation.caseId);
      if (decision.action === "dispute")
        log.info({ caseId, jobId: accusation.jobId }, "disputed an outvote of our receipt");
      else
        log.warn(
          { caseId, jobId: accusation.jobId, why: decision.why },
          "not disputing an outvote of our receipt",
        );
    } catch (err) {
      log.warn(
        { caseId, err: errorText(err) },
        "handling an outvote accusation failed; trying again at the next poll",
      );
      this.#retries.delete(accusation.caseId);
      this.#retries.set(accusation.caseId, accusation);
      if (this.#retries.size > MAX_RETRIED) this.#retries.delete(this.#retries.keys().next().value!);
    }
  }
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 512);
}

/** The disputer's chain port on DonorRegistry and the JuryCourt; disputes are sent from `writer`. */
export function disputerChainOf(
  reader: ChainReader,
  writer: ChainWriter,
  operator: Address,
): DisputerPorts["chain"] {
  return {
    head: () => reader.publicClient.getBlockNumber({ cacheTime: 0 }),
    accusations: (fromBlock, toBlock) => accusationsOf(reader, operator, fromBlock, toBlock),
    caseOf: async (caseId) => {
      const stored = await readCase(reader, caseId);
      return { stage: stored.stage, deadline: stored.deadline };
    },
    evidence: (caseId) => outvoteEvidenceOf(reader, caseId),
    dispute: async (caseId) => {
      await disputeCase(writer, caseId);
    },
  };
}
