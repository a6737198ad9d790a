import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Address, Hex, TypedDataDomain } from "viem";
import { backoffDelay } from "../market/index.ts";
import type { BackoffOptions } from "../market/index.ts";
import {
  EVIDENCE_MAX_BYTES,
  EvidenceMessageSchema,
  jobSpecFromWire,
  jobSpecToWire,
} from "../protocol/index.ts";
import type {
  EquivocationEvidence,
  EvidenceMessage,
  JobSpecMessage,
  OutvoteEvidenceWire,
  Receipt,
} from "../protocol/index.ts";
import type { EquivocationSighting, VerdictListener, VerdictReport } from "../quorum/report.ts";
import type { SlashKind, SlashRow, Store } from "../store/index.ts";
import { signedFromWire, verifyEvidence } from "./verify.ts";
import type { EvidenceChain, Verification } from "./verify.ts";

/** The trust layer's side of evidence: what others proved, and who sent what proved nothing. */
export interface EvidenceTrust {
  /** Evidence someone gossiped that this node verified: counts like a sighting of its own. */
  onVerifiedEvidence(evidence: { kind: SlashKind; operator: Address; jobId: Hex }): void;
  /** Evidence that failed verification: its sender (a peer id) is at fault. */
  onInvalidEvidence(fromPeer: string, detail: string): void;
  /** A slash this node submitted was taken on-chain. */
  onSlashed?(operator: Address, note: { jobId: Hex; kind: SlashKind; tx?: Hex }): void;
}

/** Where an opened outvote case stands: settled (slashed, cleared by a jury, void), or to be looked at again. */
export type CaseProgress =
  { settled: true; outcome: "slashed" | "cleared" | "void" } | { settled: false; nextAt: number };

type SignedReceipt = { receipt: Receipt; signature: Hex };

/** Sends evidence to DonorRegistry; a revert throws (its custom error is read with `revertName`). */
export interface SlashSubmitter {
  equivocation(a: SignedReceipt, b: SignedReceipt): Promise<{ txHash: Hex }>;
  outvote(
    spec: JobSpecMessage,
    accused: SignedReceipt,
    quorum: SignedReceipt[],
  ): Promise<{ txHash: Hex; caseId: bigint }>;
  /** Moves an opened outvote case on (finalize after the window, draw the jury, resolve the dispute). */
  advanceCase(caseId: bigint, nowMs: number): Promise<CaseProgress>;
  /** The contract error a failed submission reverted with; undefined for a failure to reach the chain. */
  revertName(err: unknown): string | undefined;
}

export interface EvidenceDeskPorts {
  domain: TypedDataDomain;
  chain: EvidenceChain;
  submit: SlashSubmitter;
  /** Gossips evidence on EVIDENCE_TOPIC. */
  publish(evidence: EvidenceMessage): Promise<void>;
  trust: EvidenceTrust;
  store: Pick<Store, "slashes" | "commit">;
  clock: { now(): number; after(delayMs: number, fire: () => void): () => void };
  log: Logger;
  random?: () => number;
}

export interface EvidenceSettings {
  /** Claim outvote slashes for this node's own verdicts (through the court's dispute window). */
  outvotes: boolean;
  /** Submit equivocation evidence, this node's own and verified gossip. */
  equivocations: boolean;
  /** Also claim outvote slashes from verified gossip (the buyer that saw the verdict claims first). */
  gossipedOutvotes: boolean;
  /**
   * Follow this node's outvote claims to the end: finalize an undisputed case after its window
   * (the slash is taken then), and move a disputed one through its jury draw and resolution.
   */
  followCases: boolean;
  /**
   * Longest wait, drawn at random, before evidence from gossip is submitted: every node that sees
   * it may send it, and the first one slashed makes the rest unnecessary (they settle as
   * `OperatorJailed` or `AlreadySlashed` without paying gas, when they come after it was mined).
   */
  gossipSpreadMs: number;
  /** Attempts at a submission that fails to reach the chain before it is given up. */
  maxAttempts: number;
  backoff: BackoffOptions;
}

export const DEFAULT_EVIDENCE_SETTINGS: EvidenceSettings = {
  outvotes: true,
  equivocations: true,
  gossipedOutvotes: false,
  followCases: true,
  gossipSpreadMs: 3_000,
  maxAttempts: 12,
  backoff: { baseMs: 2_000, factor: 2, maxMs: 5 * 60_000, jitter: 0.2 },
};

/** What a gossip validator does with a message: pass it on, drop it, or drop it and blame its sender. */
export type GossipVerdict = "accept" | "ignore" | "reject";

/**
 * Contract errors after which a submission is done, not failed: someone slashed first, the
 * operator is jailed already, or there is no stake left to take.
 */
export const SETTLED_REVERTS = new Set(["AlreadySlashed", "OperatorJailed", "NothingToSlash"]);

/** Evidence messages remembered as checked, so re-gossip costs a lookup; the oldest are forgotten first. */
const SEEN_MAX = 4_096;
/** Least wait before the queue or a case is looked at again, whatever the chain's clock says. */
const RECHECK_MIN_MS = 1_000;
/** Submissions sent per pass of the queue before the pass yields. */
const SUBMIT_BATCH = 8;

/**
 * Turns what a buyer learned into evidence, checks evidence others gossip, and submits what it
 * verified to DonorRegistry. Nobody is punished on an accuser's word: a node acts only on
 * evidence it verified itself (signatures, spec digest, and the registry's own checks); evidence
 * that proves nothing counts against its sender. Submissions are durable before they are sent
 * (store.slashes, one per (kind, job, operator)), so a restart neither loses nor repeats one;
 * a submission the chain did not take is tried again with backoff.
 */
export class EvidenceDesk implements VerdictListener {
  readonly #ports: EvidenceDeskPorts;
  readonly #settings: EvidenceSettings;
  /**
   * Digest of an evidence message → how it was (or is being) judged. Bound SEEN_MAX; eviction:
   * oldest first. Evidence the chain could not be asked about is forgotten, to be checked again
   * when it comes again.
   */
  readonly #seen = new Map<string, GossipVerdict | Promise<GossipVerdict>>();
  #cancelTimer: (() => void) | undefined;
  #pumping: Promise<void> | undefined;
  #stopped = false;

  constructor(ports: EvidenceDeskPorts, settings: Partial<EvidenceSettings> = {}) {
    this.#ports = ports;
    this.#settings = { ...DEFAULT_EVIDENCE_SETTINGS, ...settings };
  }

  /** Resumes the submissions a previous run left waiting. */
  start(): void {
    this.#kick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#cancelTimer?.();
    await this.#pumping;
  }

  /** Every dissent from an accepted result becomes outvote evidence against its signer. */
  onVerdict(report: VerdictReport): void {
    if (report.outcome !== "accepted" || report.dissenting.length === 0) return;
    const quorum = report.agreeing
      .slice(0, Math.max(0, report.spec.replicas - 1))
      .map(({ receipt, signature }) => ({ receipt, signature }));
    if (quorum.length === 0) return;
    for (const dissent of report.dissenting) {
      const evidence: OutvoteEvidenceWire = {
        kind: "outvote",
        spec: jobSpecToWire(report.spec),
        accused: { receipt: dissent.receipt, signature: dissent.signature },
        quorum,
      };
      this.#background(this.#own(evidence), "outvote evidence of a verdict");
    }
  }

  /** Two signed receipts of one operator for one job: gossip them and slash the operator. */
  onEquivocation(sighting: EquivocationSighting): void {
    const evidence: EquivocationEvidence = { kind: "equivocation", a: sighting.a, b: sighting.b };
    this.#background(this.#own(evidence), "equivocation evidence");
  }

  /** A gossip message on EVIDENCE_TOPIC, as bytes: parsed, checked and acted on. */
  async onGossip(fromPeer: string, bytes: Uint8Array): Promise<void> {
    const parsed = parseEvidence(bytes);
    if ("error" in parsed) {
      this.#ports.trust.onInvalidEvidence(fromPeer, parsed.error);
      return;
    }
    await this.receive(parsed.evidence, fromPeer);
  }

  /**
   * Evidence a peer gossiped, already parsed by the schema: verified, then acted on. The answer
   * is for gossipsub's validator: only verified evidence travels on.
   */
  async receive(evidence: EvidenceMessage, fromPeer: string): Promise<GossipVerdict> {
    const key = digestOf(evidence);
    const known = this.#seen.get(key);
    if (known !== undefined) {
      const verdict = await known;
      return verdict === "accept" ? "ignore" : verdict;
    }
    const judged = this.#check(evidence, fromPeer);
    this.#remember(
      key,
      judged.then(({ verdict }) => verdict),
    );
    const { verdict, checked } = await judged;
    if (!checked) this.#seen.delete(key);
    else if (this.#seen.has(key)) this.#seen.set(key, verdict);
    return verdict;
  }

  /** Verifies gossiped evidence, tells the trust layer, and queues what it proves. */
  async #check(
    evidence: EvidenceMessage,
    fromPeer: string,
  ): Promise<{ verdict: GossipVerdict; checked: boolean }> {
    let verification: Verification;
    try {
      verification = await this.#verify(evidence);
    } catch (err) {
      this.#ports.log.warn(
        { fromPeer, err: errorText(err) },
        "evidence could not be checked: the chain did not answer",
      );
      return { verdict: "ignore", checked: false };
    }
    const verdict = this.#judge(verification, fromPeer);
    if (verification.status === "valid") await this.#actOnGossip(evidence, verification);
    return { verdict, checked: true };
  }

  /** Submissions still waiting, newest first (for the API and `cell peers`). */
  pending(limit = 100): SlashRow[] {
    return this.#ports.store.slashes.list({ state: "pending", limit });
  }

  /** Every submission kept, waiting or settled, newest first. */
  history(limit = 100): SlashRow[] {
    return this.#ports.store.slashes.list({ limit });
  }

  /** Waits until the submissions due now have been tried (for tests and a clean stop). */
  async settled(): Promise<void> {
    while (this.#pumping !== undefined) await this.#pumping;
  }

  #verify(evidence: EvidenceMessage): Promise<Verification> {
    const { domain, chain, clock } = this.#ports;
    return verifyEvidence(evidence, { domain, chain, now: () => clock.now() });
  }

  #judge(verification: Verification, fromPeer: string): GossipVerdict {
    const { log, trust } = this.#ports;
    if (verification.status === "invalid") {
      log.info({ fromPeer, reason: verification.reason }, "refused evidence that proves nothing");
      trust.onInvalidEvidence(fromPeer, verification.reason);
      return "reject";
    }
    if (verification.status === "stale") {
      log.debug({ fromPeer, reason: verification.reason }, "evidence the registry no longer acts on");
      return "ignore";
    }
    trust.onVerifiedEvidence({
      kind: verification.kind,
      operator: verification.operator,
      jobId: verification.jobId,
    });
    return "accept";
  }

  async #actOnGossip(
    evidence: EvidenceMessage,
    verified: { kind: SlashKind; jobId: Hex; operator: Address },
  ) {
    const wanted =
      evidence.kind === "equivocation" ? this.#settings.equivocations : this.#settings.gossipedOutvotes;
    if (wanted) await this.#enqueue(evidence, verified, "gossip");
  }

  /** Evidence this node built: checked like anyone's (so it never gossips what others refuse), then sent. */
  async #own(evidence: EvidenceMessage): Promise<void> {
    const key = digestOf(evidence);
    if (this.#seen.has(key)) return;
    this.#remember(key, "accept");
    let verification: Verification;
    try {
      verification = await this.#verify(evidence);
    } catch (err) {
      this.#seen.delete(key);
      throw err;
    }
    if (verification.status !== "valid") {
      this.#seen.delete(key);
      this.#ports.log.info(
        { kind: evidence.kind, reason: verification.reason },
        "own evidence not usable on-chain: not sent",
      );
      return;
    }
    const wanted = evidence.kind === "equivocation" ? this.#settings.equivocations : this.#settings.outvotes;
    if (wanted) await this.#enqueue(evidence, verification, "own");
    await this.#ports.publish(evidence);
  }

  async #enqueue(
    evidence: EvidenceMessage,
    verified: { kind: SlashKind; jobId: Hex; operator: Address },
    source: "own" | "gossip",
  ): Promise<void> {
    const { store, log, clock, random = Math.random } = this.#ports;
    const spread = source === "gossip" ? Math.floor(random() * this.#settings.gossipSpreadMs) : 0;
    const row = await store.commit(() =>
      store.slashes.add({
        kind: verified.kind,
        jobId: verified.jobId,
        operator: verified.operator,
        source,
        evidence,
        notBefore: clock.now() + spread,
      }),
    );
    if (row === undefined) return;
    log.info({ kind: row.kind, jobId: row.jobId, operator: row.operator, source }, "slash submission queued");
    this.#kick();
  }

  #kick(): void {
    if (this.#stopped || this.#pumping !== undefined) return;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#pumping = this.#pump()
      .catch((err: unknown) => this.#ports.log.warn({ err: errorText(err) }, "slash submissions failed"))
      .finally(() => {
        this.#pumping = undefined;
        this.#scheduleNext();
      });
  }

  async #pump(): Promise<void> {
    const { store, clock } = this.#ports;
    for (;;) {
      const due = store.slashes.due(clock.now(), SUBMIT_BATCH);
      if (due.length === 0 || this.#stopped) return;
      for (const row of due) {
        if (this.#stopped) return;
        await this.#submit(row);
      }
    }
  }

  #scheduleNext(): void {
    if (this.#stopped) return;
    const { store, clock } = this.#ports;
    // a pass that failed as a whole (the store) waits at least this long before the next
    const at = Math.max(store.slashes.nextDueAt() ?? Infinity, clock.now() + RECHECK_MIN_MS);
    if (at === Infinity) return;
    this.#cancelTimer = clock.after(Math.max(0, at - clock.now()), () => {
      this.#cancelTimer = undefined;
      this.#kick();
    });
  }

  async #submit(row: SlashRow): Promise<void> {
    const { store, submit, log } = this.#ports;
    const parsed = EvidenceMessageSchema.safeParse(row.evidence);
    if (!parsed.success) {
      await store.commit(() =>
        store.slashes.settle(row.id, { state: "failed", outcome: "unreadable_evidence" }),
      );
      return;
    }
    const fields = { kind: row.kind, jobId: row.jobId, operator: row.operator, attempt: row.attempts + 1 };
    try {
      if (row.caseId !== null) return await this.#followCase(row, BigInt(row.caseId));
      const sent = await this.#send(parsed.data);
      log.info({ ...fields, ...sent }, "slash submitted");
      if (sent.caseId !== undefined && this.#settings.followCases) {
        const step = { outcome: sent.outcome, txHash: sent.txHash, caseId: sent.caseId };
        await store.commit(() =>
          store.slashes.progress(row.id, { ...step, nextAttemptAt: this.#ports.clock.now() }),
        );
        return;
      }
      await this.#settle(row, { state: "done", ...sent });
    } catch (err) {
      const name = row.caseId === null ? submit.revertName(err) : undefined;
      if (name === undefined) return this.#retryLater(row, errorText(err));
      const state = SETTLED_REVERTS.has(name) ? "done" : "failed";
      await this.#settle(row, { state, outcome: name, error: errorText(err) });
      log[state === "done" ? "info" : "warn"](
        { ...fields, outcome: name },
        "slash submission settled by the contract",
      );
    }
  }

  /** An outvote claim's court case: moved on as far as it goes now, or looked at again later. */
  async #followCase(row: SlashRow, caseId: bigint): Promise<void> {
    const { store, submit, clock, log } = this.#ports;
    const progress = await submit.advanceCase(caseId, clock.now());
    if (progress.settled) {
      await this.#settle(row, { state: "done", outcome: progress.outcome });
      log.info(
        { caseId: row.caseId, operator: row.operator, outcome: progress.outcome },
        "outvote case closed",
      );
      return;
    }
    const nextAttemptAt = Math.max(progress.nextAt, clock.now() + RECHECK_MIN_MS);
    await store.commit(() =>
      store.slashes.progress(row.id, { outcome: row.outcome ?? "case_opened", nextAttemptAt }),
    );
  }

  async #settle(
    row: SlashRow,
    settled: { state: "done" | "failed"; outcome: string; txHash?: Hex; caseId?: string; error?: string },
  ): Promise<void> {
    const { store, trust } = this.#ports;
    await store.commit(() => store.slashes.settle(row.id, settled));
    if (settled.outcome === "slashed")
      trust.onSlashed?.(row.operator, {
        jobId: row.jobId,
        kind: row.kind,
        tx: settled.txHash ?? row.txHash ?? undefined,
      });
  }

  async #send(evidence: EvidenceMessage): Promise<{ outcome: string; txHash: Hex; caseId?: string }> {
    const { submit } = this.#ports;
    if (evidence.kind === "equivocation") {
      const { txHash } = await submit.equivocation(signedFromWire(evidence.a), signedFromWire(evidence.b));
      return { outcome: "slashed", txHash };
    }
    const spec = jobSpecFromWire(evidence.spec);
    const { txHash, caseId } = await submit.outvote(
      spec,
      signedFromWire(evidence.accused),
      evidence.quorum.map(signedFromWire),
    );
    return { outcome: "case_opened", txHash, caseId: caseId.toString() };
  }

  async #retryLater(row: SlashRow, error: string): Promise<void> {
    const { store, clock, log, random } = this.#ports;
    const attempt = row.attempts + 1;
    if (attempt >= this.#settings.maxAttempts) {
      await store.commit(() => store.slashes.settle(row.id, { state: "failed", outcome: "gave_up", error }));
      log.warn({ id: row.id, attempts: attempt, error }, "slash submission given up");
      return;
    }
    const at = clock.now() + backoffDelay(attempt, this.#settings.backoff, random);
    await store.commit(() => store.slashes.retryAt(row.id, at, error));
    log.info(
      { id: row.id, attempt, retryInMs: at - clock.now(), error },
      "slash submission failed; retrying",
    );
  }

  #remember(key: string, verdict: GossipVerdict | Promise<GossipVerdict>): void {
    this.#seen.delete(key);
    this.#seen.set(key, verdict);
    if (this.#seen.size > SEEN_MAX) this.#seen.delete(this.#seen.keys().next().value!);
  }

  #background(work: Promise<void>, what: string): void {
    work.catch((err: unknown) => this.#ports.log.warn({ err: errorText(err) }, `${what} failed`));
  }
}

/** Parses evidence bytes: size bound, UTF-8 JSON, then the schema; an error names what was wrong. */
export function parseEvidence(bytes: Uint8Array): { evidence: EvidenceMessage } | { error: string } {
  if (bytes.byteLength > EVIDENCE_MAX_BYTES)
    return { error: `evidence is ${bytes.byteLength} bytes, above the ${EVIDENCE_MAX_BYTES}-byte limit` };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return { error: "evidence is not UTF-8 JSON" };
  }
  const parsed = EvidenceMessageSchema.safeParse(json);
  if (parsed.success) return { evidence: parsed.data };
  const [issue] = parsed.error.issues;
  return { error: `malformed evidence: ${issue?.path.join(".") || "(root)"}: ${issue?.message}` };
}

function digestOf(evidence: EvidenceMessage): string {
  return createHash("sha256").update(JSON.stringify(evidence).toLowerCase()).digest("hex");
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 512);
}
