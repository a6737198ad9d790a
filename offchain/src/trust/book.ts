import { isAddress, type Address, type Hex } from "viem";
import { z } from "zod/v4";
import type { EquivocationSighting, VerdictListener, VerdictReport } from "../quorum/report.ts";
import type { Store } from "../store/index.ts";
import {
  advance,
  applySuspicion,
  blocksAt,
  initialSuspicion,
  suspicionScore,
  type EvidenceNote,
  type OffenceKind,
  type SuspicionEvent,
  type SuspicionState,
  type TrustStatus,
  TRUST_STATUSES,
} from "./quarantine.ts";
import {
  blendedScore,
  decayStats,
  recordOutcome,
  type ReputationEvent,
  type ReputationStats,
} from "./reputation.ts";
import { trustSettings, type TrustSettings } from "./settings.ts";

export interface TrustLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface TrustPorts {
  store: Pick<Store, "trust" | "commit">;
  now(): number;
  log: TrustLog;
}

export type SlashKind = "equivocation" | "outvote";

/** A slash (or its reward) submitted on-chain against an operator, newest last. */
export interface SlashNote {
  jobId: Hex;
  kind: SlashKind;
  tx?: Hex;
  at: number;
}

/** What the API and `cell peers` show of one operator or peer. */
export interface TrustView {
  /** Lowercase operator address, or a peer id for a peer known only by its messages. */
  subject: string;
  operator?: Address;
  peerId?: string;
  /** 0..65535, 32768 neutral; absent for a peer known only by its peer id. */
  reputation?: number;
  status: TrustStatus;
  strikes: number;
  /** End of the current quarantine or observation (unix ms). */
  until: number | null;
  reason: string | null;
  /** Suspicion score, 0..1: while quarantined or banned the score that struck, else the score now. */
  suspicion: number;
  evidence: EvidenceNote[];
  slashes: SlashNote[];
  stats?: {
    agreements: number;
    dissents: number;
    timeouts: number;
    noResults: number;
    latencyMs: number | null;
  };
}

interface Subject {
  key: string;
  operator: Address | null;
  peerId: string | null;
  suspicion: SuspicionState;
  slashes: SlashNote[];
  lastSeen: number;
}

const MAX_SLASH_NOTES = 8;
const OVERALL = "";

/**
 * Reputation and quarantine of the operators this node dealt with, fed by verdicts,
 * equivocation sightings and evidence; read by selection (`reputation`, `isBlocked`).
 * State lives in memory for the hot reads and is written through to the store; status
 * changes (quarantine, slash notes) are committed durably, reputation counters without
 * an fsync of their own (they are redone by the next verdicts if a machine crash loses them).
 *
 * Bounds: at most `maxReputationRows` reputation rows (one per operator, one per operator
 * and module): the least recently updated row is evicted. At most `maxSubjects` operators
 * and peers with suspicion state: the least recently seen is evicted, preferring one that
 * is clear and never struck, then any clear one, then any not banned, then the oldest.
 */
export class TrustBook implements VerdictListener {
  readonly #ports: TrustPorts;
  readonly #settings: TrustSettings;
  /** `${operator}|${module}` → counters, least recently updated first. */
  readonly #reputation = new Map<string, ReputationStats>();
  readonly #subjects = new Map<string, Subject>();
  /** Peer id → the operator subject it executes for (bounded with the subjects). */
  readonly #operatorOfPeer = new Map<string, string>();

  constructor(ports: TrustPorts, settings: Partial<TrustSettings> = {}) {
    this.#ports = ports;
    this.#settings = trustSettings(settings);
    this.#load();
  }

  get settings(): TrustSettings {
    return this.#settings;
  }

  onVerdict(report: VerdictReport): void {
    const now = this.#ports.now();
    const module = report.spec.moduleCid.toLowerCase();
    if (report.outcome === "accepted" && report.agreeing.length >= report.quorum) {
      for (const replica of report.agreeing) {
        this.#record(replica.operator, module, { type: "agreement", latencyMs: replica.latencyMs }, now);
        this.#suspect(replica.operator, replica.peerId, { type: "good" }, now);
      }
      for (const replica of report.dissenting) {
        this.#record(replica.operator, module, { type: "dissent" }, now);
        this.#suspect(replica.operator, replica.peerId, { type: "outvoted", jobId: report.jobId }, now);
      }
    }
    for (const silent of report.silent) {
      if (silent.why === "cancelled") continue;
      const event: ReputationEvent = silent.why === "no_result" ? { type: "no_result" } : { type: "timeout" };
      this.#record(silent.operator, module, event, now);
      if (event.type === "timeout")
        this.#suspect(silent.operator, silent.peerId, { type: "timing_anomaly" }, now);
    }
  }

  onEquivocation(sighting: EquivocationSighting): void {
    const now = this.#ports.now();
    this.#suspect(sighting.operator, sighting.peerId, { type: "equivocation", jobId: sighting.jobId }, now);
  }

  /** Evidence someone gossiped that the evidence desk verified: counts like a sighting of our own. */
  onVerifiedEvidence(e: { kind: "equivocation" | "outvote"; operator: Address; jobId: Hex }): void {
    const now = this.#ports.now();
    const key = e.operator.toLowerCase();
    if (this.#noted(key, e.kind, e.jobId)) return;
    if (e.kind === "outvote") {
      this.#record(e.operator, undefined, { type: "dissent" }, now);
      this.#suspect(e.operator, null, { type: "outvoted", jobId: e.jobId }, now);
    } else this.#suspect(e.operator, null, { type: "equivocation", jobId: e.jobId }, now);
  }

  /** Evidence that failed verification: a network anomaly against the peer that sent it. */
  onInvalidEvidence(fromPeer: string, detail: string): void {
    this.#suspect(
      null,
      fromPeer,
      { type: "network_anomaly", detail: `invalid evidence: ${detail}` },
      this.#ports.now(),
    );
  }

  /** A message of this peer that proves abuse (a forged signature or receipt): a network anomaly. */
  onProtocolAbuse(peerId: string, detail: string): void {
    this.#suspect(null, peerId, { type: "network_anomaly", detail }, this.#ports.now());
  }

  /** A slash submitted on-chain against `operator` (fed by the evidence desk). */
  onSlashed(operator: Address, note: { jobId: Hex; kind: SlashKind; tx?: Hex }): void {
    const now = this.#ports.now();
    const subject = this.#subject(operator, null, now);
    if (subject.slashes.some((s) => s.jobId === note.jobId && s.kind === note.kind && s.tx === note.tx))
      return;
    subject.slashes = [...subject.slashes, { ...note, at: now }].slice(-MAX_SLASH_NOTES);
    this.#saveSubject(subject, true);
  }

  /** 0..65535, neutral 32768; blended with the module's own stats when it has enough of them. */
  reputation(operator: Address, moduleCid?: string): number {
    const key = operator.toLowerCase();
    const now = this.#ports.now();
    const overall = this.#reputation.get(reputationKey(key, OVERALL));
    if (moduleCid === undefined) return blendedScore(overall, undefined, now, this.#settings);
    return blendedScore(
      overall,
      this.#reputation.get(reputationKey(key, moduleCid.toLowerCase())),
      now,
      this.#settings,
    );
  }

  /** Quarantined or banned now, by operator address or peer id (a peer also answers for its operator). */
  isBlocked(idOrOperator: string): boolean {
    const key = subjectKey(idOrOperator);
    const now = this.#ports.now();
    const blocked = (subjectId: string | undefined) => {
      const subject = subjectId === undefined ? undefined : this.#subjects.get(subjectId);
      return subject !== undefined && blocksAt(subject.suspicion, now, this.#settings);
    };
    return blocked(key) || blocked(this.#operatorOfPeer.get(key));
  }

  /** Every subject (or one operator), most recently seen first. */
  view(operator?: Address): TrustView[] {
    const now = this.#ports.now();
    const subjects =
      operator === undefined ? [...this.#subjects.values()] : [this.#subjects.get(operator.toLowerCase())];
    return subjects
      .filter((subject): subject is Subject => subject !== undefined)
      .sort((a, b) => b.lastSeen - a.lastSeen)
      .map((subject) => this.#view(subject, now));
  }

  #view(subject: Subject, now: number): TrustView {
    const state = advance(subject.suspicion, now, this.#settings).state;
    const view: TrustView = {
      subject: subject.key,
      status: state.status,
      strikes: state.strikes,
      until: state.until,
      reason: state.reason,
      suspicion: Number(shownScore(state, this.#settings.weights).toFixed(4)),
      evidence: state.evidence,
      slashes: subject.slashes,
    };
    if (subject.peerId !== null) view.peerId = subject.peerId;
    if (subject.operator !== null) {
      view.operator = subject.operator;
      view.reputation = this.reputation(subject.operator);
      const stats = this.#reputation.get(reputationKey(subject.key, OVERALL));
      if (stats) {
        const s = decayStats(stats, now, this.#settings.reputationHalfLifeMs);
        view.stats = {
          agreements: round2(s.agreements),
          dissents: round2(s.dissents),
          timeouts: round2(s.timeouts),
          noResults: round2(s.noResults),
          latencyMs: s.latencyMs === null ? null : Math.round(s.latencyMs),
        };
      }
    }
    return view;
  }

  #record(operator: Address, module: string | undefined, event: ReputationEvent, now: number): void {
    const key = operator.toLowerCase();
    for (const scope of module === undefined ? [OVERALL] : [OVERALL, module]) {
      const id = reputationKey(key, scope);
      const stats = recordOutcome(this.#reputation.get(id), event, now, this.#settings);
      this.#reputation.delete(id);
      this.#reputation.set(id, stats);
      this.#persist(
        () =>
          this.#ports.store.trust.putReputation({
            operator: key,
            module: scope,
            stats: JSON.stringify(stats),
            updatedAt: now,
          }),
        false,
      );
    }
    while (this.#reputation.size > this.#settings.maxReputationRows) {
      const oldest = this.#reputation.keys().next().value!;
      this.#reputation.delete(oldest);
      const [evicted, scope] = oldest.split("|") as [string, string];
      this.#persist(() => this.#ports.store.trust.deleteReputation(evicted, scope), false);
    }
  }

  #suspect(operator: Address | null, peerId: string | null, event: SuspicionEvent, now: number): void {
    const subject = this.#subject(operator, peerId, now);
    const { state, changes, score } = applySuspicion(subject.suspicion, event, now, this.#settings);
    subject.suspicion = state;
    for (const change of changes)
      this.#ports.log[change.to === "quarantined" || change.to === "banned" ? "warn" : "info"](
        {
          subject: subject.key,
          peerId: subject.peerId,
          ...change,
          strikes: state.strikes,
          reason: state.reason,
          score,
        },
        `trust: ${change.from} → ${change.to}`,
      );
    this.#saveSubject(subject, changes.length > 0 || event.type !== "good");
  }

  #noted(key: string, kind: OffenceKind, jobId: Hex): boolean {
    return (
      this.#subjects.get(key)?.suspicion.evidence.some((e) => e.kind === kind && e.jobId === jobId) ?? false
    );
  }

  /** The subject of an operator (linking `peerId` to it) or, without an operator, of a peer id. */
  #subject(operator: Address | null, peerId: string | null, now: number): Subject {
    const key = operator !== null ? operator.toLowerCase() : (this.#operatorOfPeer.get(peerId!) ?? peerId!);
    let subject = this.#subjects.get(key);
    if (!subject) {
      this.#makeRoom();
      subject = { key, operator, peerId, suspicion: initialSuspicion(now), slashes: [], lastSeen: now };
      this.#subjects.set(key, subject);
    }
    if (operator !== null && subject.operator === null) subject.operator = operator;
    if (operator !== null && peerId !== null && this.#operatorOfPeer.get(peerId) !== key) {
      if (subject.peerId !== null && subject.peerId !== peerId) this.#operatorOfPeer.delete(subject.peerId);
      subject.peerId = peerId;
      this.#operatorOfPeer.set(peerId, key);
    }
    subject.lastSeen = now;
    return subject;
  }

  #makeRoom(): void {
    if (this.#subjects.size < this.#settings.maxSubjects) return;
    const rank = (s: Subject) =>
      s.suspicion.status === "banned"
        ? 3
        : s.suspicion.status !== "clear"
          ? 2
          : s.suspicion.strikes > 0
            ? 1
            : 0;
    let victim: Subject | undefined;
    for (const subject of this.#subjects.values())
      if (
        !victim ||
        rank(subject) < rank(victim) ||
        (rank(subject) === rank(victim) && subject.lastSeen < victim.lastSeen)
      )
        victim = subject;
    if (!victim) return;
    this.#subjects.delete(victim.key);
    if (victim.peerId !== null && this.#operatorOfPeer.get(victim.peerId) === victim.key)
      this.#operatorOfPeer.delete(victim.peerId);
    const key = victim.key;
    this.#persist(() => this.#ports.store.trust.deleteSubject(key), true);
  }

  #saveSubject(subject: Subject, durable: boolean): void {
    const row = {
      subject: subject.key,
      peerId: subject.peerId,
      operator: subject.operator,
      status: subject.suspicion.status,
      state: JSON.stringify({ suspicion: subject.suspicion, slashes: subject.slashes }),
      lastSeen: subject.lastSeen,
    };
    this.#persist(() => this.#ports.store.trust.putSubject(row), durable);
  }

  #persist(write: () => void, durable: boolean): void {
    this.#ports.store
      .commit(write, { durable })
      .catch((err: unknown) =>
        this.#ports.log.warn({ err: (err as Error).message }, "trust: could not store trust state"),
      );
  }

  #load(): void {
    const { trust } = this.#ports.store;
    for (const row of trust.allReputation()) {
      const parsed = StatsSchema.safeParse(safeJson(row.stats));
      if (parsed.success) this.#reputation.set(reputationKey(row.operator, row.module), parsed.data);
      else
        this.#ports.log.warn(
          { operator: row.operator, module: row.module },
          "trust: unreadable reputation row skipped",
        );
    }
    for (const row of trust.allSubjects()) {
      const parsed = SubjectStateSchema.safeParse(safeJson(row.state));
      if (!parsed.success) {
        this.#ports.log.warn({ subject: row.subject }, "trust: unreadable trust state skipped");
        continue;
      }
      const subject: Subject = {
        key: row.subject,
        operator: row.operator !== null && isAddress(row.operator) ? row.operator : null,
        peerId: row.peerId,
        suspicion: parsed.data.suspicion as SuspicionState,
        slashes: parsed.data.slashes as SlashNote[],
        lastSeen: row.lastSeen,
      };
      this.#subjects.set(subject.key, subject);
      if (subject.operator !== null && subject.peerId !== null)
        this.#operatorOfPeer.set(subject.peerId, subject.key);
    }
  }
}

/** While quarantined or banned, the score that struck; otherwise the weighted score now. */
function shownScore(state: SuspicionState, weights: TrustSettings["weights"]): number {
  const weighted = suspicionScore(state, weights);
  const blocked = state.status === "quarantined" || state.status === "banned";
  return blocked ? Math.max(weighted, state.strikeScore ?? 0) : weighted;
}

function reputationKey(operator: string, module: string): string {
  return `${operator}|${module}`;
}

function subjectKey(idOrOperator: string): string {
  return isAddress(idOrOperator, { strict: false }) ? idOrOperator.toLowerCase() : idOrOperator;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const finite = z.number().finite();
const StatsSchema = z.object({
  agreements: finite.nonnegative(),
  dissents: finite.nonnegative(),
  timeouts: finite.nonnegative(),
  noResults: finite.nonnegative(),
  latencyMs: finite.nonnegative().nullable(),
  updatedAt: z.number().int().nonnegative(),
});
const hex = z
  .string()
  .regex(/^0x[0-9a-fA-F]*$/)
  .max(200);
const SubjectStateSchema = z.object({
  suspicion: z.object({
    status: z.enum(TRUST_STATUSES as [TrustStatus, ...TrustStatus[]]),
    strikes: z.number().int().nonnegative(),
    until: z.number().int().nullable(),
    reason: z.string().max(1000).nullable(),
    strikeScore: z.number().min(0).max(1).nullable().default(null),
    components: z.object({
      consensusViolations: finite,
      equivocations: finite,
      resultInconsistencies: finite,
      networkAnomalies: finite,
      timingAnomalies: finite,
    }),
    recentGood: finite,
    recentBad: finite,
    evidence: z
      .array(
        z.object({
          kind: z.enum(["outvote", "equivocation", "network_anomaly"]),
          jobId: hex.optional(),
          detail: z.string().max(1000).optional(),
          at: z.number().int(),
        }),
      )
      .max(64),
    updatedAt: z.number().int(),
  }),
  slashes: z
    .array(
      z.object({
        jobId: hex,
        kind: z.enum(["equivocation", "outvote"]),
        tx: hex.optional(),
        at: z.number().int(),
      }),
    )
    .max(64),
});
