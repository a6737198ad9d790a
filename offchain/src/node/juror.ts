import type { Logger } from "pino";
import { hexToBytes, isAddressEqual } from "viem";
import type { Address, Hex } from "viem";
import { PollLoop } from "../chain/index.ts";
import type { OutvoteEvidence } from "../chain/index.ts";
import { peerIdFromPublicKey } from "../identity/index.ts";
import { ReceiptStatus, bytes32ToCid, cidToBytes32 } from "../protocol/index.ts";
import type { Receipt } from "../protocol/index.ts";
import type { Runtime } from "../runtime/index.ts";
import { executeSpec } from "../evidence/index.ts";
import { errorMessage } from "./util.ts";

/** A JurorsDrawn event of the JuryCourt. */
export interface DrawnCase {
  caseId: bigint;
  jurors: readonly Address[];
  voteDeadline: bigint;
}

/** What the court watcher needs from the chain, the block exchange, the runtime and the keys. */
export interface JurorPorts {
  chain: {
    head(): Promise<bigint>;
    drawnCases(fromBlock: bigint, toBlock: bigint): Promise<DrawnCase[]>;
    evidence(caseId: bigint): Promise<OutvoteEvidence>;
    /** The accused's and the accusers' staking wallets. */
    parties(caseId: bigint): Promise<Address[]>;
    peerKeyOf(donor: Address): Promise<Hex>;
    /** This node's staking wallet; undefined while its operator is not registered. */
    ownDonor(): Promise<Address | undefined>;
    hasVoted(caseId: bigint, donor: Address): Promise<boolean>;
    vote(caseId: bigint, vote: { receipt: Receipt; signature: Hex }): Promise<void>;
  };
  blocks: {
    local(cid: string): Uint8Array | undefined;
    fetch(cid: string, from: string[], timeoutMs: number): Promise<Uint8Array>;
    grant(peerId: string, cids: string[], jobId: string): void;
    connectedPeers(): string[];
  };
  /** Present on a donor: only a donor re-executes. */
  runtime?: Runtime;
  operator: Address;
  signReceipt(receipt: Receipt): Promise<Hex>;
  /** Unix milliseconds. */
  now(): number;
  log: Logger;
}

export interface JurorOptions {
  pollMs: number;
  /** Most blocks read in one poll. */
  blockRange: bigint;
  /** Blocks looked back at start, so a restarted node still sees a recent draw. */
  lookbackBlocks?: bigint;
  fetchTimeoutMs?: number;
}

/** Peers asked for a case's blocks besides the parties: at most this many of the connected ones. */
const EXTRA_BLOCK_SOURCES = 8;
/** Duties that failed (a block not found yet, the chain busy) and are tried again at every poll. */
const MAX_RETRIED_DUTIES = 16;

/**
 * Watches the JuryCourt. For every jury drawn, a node that holds the case's module and input
 * lets the jurors fetch them (they are the job's participants now); a node whose donor was drawn
 * does its juror duty: it fetches the module and input (from the parties, then from its other
 * peers), runs the job in its runtime, signs a receipt with its operator key and submits it as
 * its vote. Cases are handled one at a time, in chain order, at most `blockRange` blocks per poll;
 * a duty past its vote deadline is skipped. A run without a result casts no vote. A duty that
 * failed is tried again at every poll until its deadline; at most MAX_RETRIED_DUTIES wait, the
 * oldest dropped first.
 */
export class CourtWatcher {
  readonly #ports: JurorPorts;
  readonly #options: JurorOptions;
  #cursor: bigint | undefined;
  readonly #loop: PollLoop;
  /** caseId → the draw of a duty to try again; bounded by MAX_RETRIED_DUTIES, evicted at its deadline. */
  readonly #retries = new Map<bigint, DrawnCase>();

  constructor(ports: JurorPorts, options: JurorOptions) {
    this.#ports = ports;
    this.#options = options;
    this.#loop = new PollLoop(() => this.#poll(), options.pollMs);
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  async #poll(): Promise<void> {
    const { chain } = this.#ports;
    try {
      await this.#retry();
      const head = await chain.head();
      const lookback = this.#options.lookbackBlocks ?? 256n;
      const from = this.#cursor ?? (head > lookback ? head - lookback : 0n);
      if (from > head) return;
      const to = from + this.#options.blockRange - 1n < head ? from + this.#options.blockRange - 1n : head;
      for (const drawn of await chain.drawnCases(from, to)) {
        if (this.#loop.stopped) return;
        await this.#onDrawn(drawn);
      }
      this.#cursor = to + 1n;
    } catch (err) {
      this.#ports.log.warn({ err: errorMessage(err) }, "reading the JuryCourt failed");
    }
  }

  async #onDrawn(drawn: DrawnCase): Promise<void> {
    const { log } = this.#ports;
    const caseId = drawn.caseId.toString();
    let evidence: OutvoteEvidence;
    try {
      evidence = await this.#ports.chain.evidence(drawn.caseId);
      await this.#grantJurors(drawn, evidence);
    } catch (err) {
      log.warn({ caseId, err: errorMessage(err) }, "reading a drawn case failed");
      return;
    }
    if (!(await this.#drawnHere(drawn).catch(() => false))) return;
    try {
      await this.#serve(drawn, evidence);
    } catch (err) {
      log.warn({ caseId, err: errorMessage(err) }, "juror duty failed; trying again at the next poll");
      this.#retries.set(drawn.caseId, drawn);
      if (this.#retries.size > MAX_RETRIED_DUTIES) this.#retries.delete(this.#retries.keys().next().value!);
    }
  }

  async #retry(): Promise<void> {
    for (const [caseId, drawn] of [...this.#retries]) {
      if (this.#loop.stopped) return;
      if (this.#pastDeadline(drawn)) {
        this.#retries.delete(caseId);
        continue;
      }
      try {
        await this.#serve(drawn, await this.#ports.chain.evidence(caseId));
        this.#retries.delete(caseId);
      } catch (err) {
        this.#ports.log.debug(
          { caseId: caseId.toString(), err: errorMessage(err) },
          "juror duty failed again",
        );
      }
    }
  }

  #pastDeadline(drawn: DrawnCase): boolean {
    return BigInt(Math.floor(this.#ports.now() / 1000)) > drawn.voteDeadline;
  }

  /** A node holding the case's blocks serves them to the drawn jurors. */
  async #grantJurors(drawn: DrawnCase, evidence: OutvoteEvidence): Promise<void> {
    const { blocks, chain } = this.#ports;
    const cids = blockCids(evidence);
    if (!cids.some((cid) => blocks.local(cid) !== undefined)) return;
    const jobId = evidence.accused.receipt.jobId;
    for (const juror of drawn.jurors) blocks.grant(peerIdOf(await chain.peerKeyOf(juror)), cids, jobId);
  }

  async #drawnHere(drawn: DrawnCase): Promise<boolean> {
    if (!this.#ports.runtime) return false;
    const own = await this.#ports.chain.ownDonor();
    return own !== undefined && drawn.jurors.some((juror) => isAddressEqual(juror, own));
  }

  async #serve(drawn: DrawnCase, evidence: OutvoteEvidence): Promise<void> {
    const { chain, log, runtime } = this.#ports;
    const own = await chain.ownDonor();
    if (this.#pastDeadline(drawn) || !runtime || !own || (await chain.hasVoted(drawn.caseId, own))) return;
    const caseId = drawn.caseId.toString();
    const sources = await this.#sources(drawn.caseId);
    const [moduleCid, inputCid] = blockCids(evidence);
    const module = await this.#block(moduleCid!, sources);
    const input = await this.#block(inputCid!, sources);
    const { spec } = evidence;
    const startedAt = this.#ports.now();
    const result = await executeSpec(runtime, spec, module, input);
    if (result.kind === "no_result") {
      log.warn({ caseId, reason: result.reason }, "the disputed job gave no result: no vote");
      return;
    }
    const receipt: Receipt = {
      jobId: evidence.accused.receipt.jobId,
      executor: this.#ports.operator,
      moduleCid: spec.moduleCid,
      inputCid: spec.inputCid,
      outputCid: cidToBytes32(result.outputCid),
      fuelUsed: result.fuelUsed,
      status: ReceiptStatus[result.status],
      startedAt: BigInt(startedAt),
      finishedAt: BigInt(this.#ports.now()),
    };
    await chain.vote(drawn.caseId, { receipt, signature: await this.#ports.signReceipt(receipt) });
    log.info({ caseId, outputCid: result.outputCid }, "juror vote submitted");
  }

  /** The parties' peers first (they ran the job), then peers this node is connected to. */
  async #sources(caseId: bigint): Promise<string[]> {
    const { chain, blocks } = this.#ports;
    const parties = await chain.parties(caseId);
    const partyPeers = await Promise.all(
      parties.map(async (donor) => peerIdOf(await chain.peerKeyOf(donor))),
    );
    const extra = blocks.connectedPeers().slice(0, EXTRA_BLOCK_SOURCES);
    return [...new Set([...partyPeers, ...extra])];
  }

  async #block(cid: string, sources: string[]): Promise<Uint8Array> {
    const { blocks } = this.#ports;
    return blocks.local(cid) ?? blocks.fetch(cid, sources, this.#options.fetchTimeoutMs ?? 20_000);
  }
}

function blockCids(evidence: OutvoteEvidence): string[] {
  return [bytes32ToCid(evidence.spec.moduleCid).toString(), bytes32ToCid(evidence.spec.inputCid).toString()];
}

function peerIdOf(peerKey: Hex): string {
  return peerIdFromPublicKey(hexToBytes(peerKey));
}
