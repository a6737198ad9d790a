import type { Address, Hex } from "viem";
import { hexToBytes } from "viem";
import { peerIdFromPublicKey } from "../identity/index.ts";
import { pickCandidates } from "../market/index.ts";
import type { CandidateSet, ProspectJob, Reputation } from "../market/index.ts";
import type { CapabilityAdvert } from "../protocol/index.ts";

export interface DonorInfo {
  peerId: string;
  operator: Address;
  peerKey: Hex;
  pricePerMegaFuel: bigint;
  slots: number;
  freeSlots: number;
  maxFuel: bigint;
  maxMemoryPages: number;
  runtimeVersion: string;
  multiaddrs: string[];
  lastSeen: number;
  /** DonorRegistry has the operator active with this peer key (as last read). */
  staked: boolean;
}

export const DEFAULT_MAX_DONORS = 4096;

/** What the book asks the trust layer (trust/TrustBook): reputation and quarantine. */
export interface DonorTrust {
  reputation: Reputation;
  /** Quarantined or banned now, by peer id or operator address. */
  isBlocked(idOrOperator: string): boolean;
}

/**
 * Donors known from their capability adverts, freshest first when ranked.
 *
 * Bound: `maxDonors` entries. Eviction: a new donor at the bound pushes out the stalest
 * unstaked one; only when every entry is staked does a staked newcomer push out the
 * stalest staked one, and an unstaked newcomer is then not recorded. So a flood of
 * identities without stake can never displace a staked donor.
 */
export class PeerBook {
  readonly #donors = new Map<string, DonorInfo>();
  readonly #maxDonors: number;
  readonly #trust: DonorTrust | undefined;

  constructor(options: { maxDonors?: number; trust?: DonorTrust } = {}) {
    this.#maxDonors = options.maxDonors ?? DEFAULT_MAX_DONORS;
    this.#trust = options.trust;
    if (!Number.isInteger(this.#maxDonors) || this.#maxDonors < 1)
      throw new Error(`maxDonors must be a positive integer, got ${this.#maxDonors}`);
  }

  /** Records or refreshes a donor; undefined when the book is full of staked donors and this one is not. */
  upsertFromAdvert(advert: CapabilityAdvert, now: number, staked: boolean): DonorInfo | undefined {
    if (!this.#donors.has(advert.peerId) && this.#donors.size >= this.#maxDonors && !this.#makeRoom(staked))
      return undefined;
    const info: DonorInfo = {
      peerId: advert.peerId,
      operator: advert.operator,
      peerKey: advert.peerKey,
      pricePerMegaFuel: BigInt(advert.pricePerMegaFuel),
      slots: advert.slots,
      freeSlots: advert.freeSlots,
      maxFuel: BigInt(advert.maxFuel),
      maxMemoryPages: advert.maxMemoryPages,
      runtimeVersion: advert.runtimeVersion,
      multiaddrs: advert.multiaddrs,
      lastSeen: now,
      staked,
    };
    this.#donors.set(advert.peerId, info);
    return info;
  }

  get(peerId: string): DonorInfo | undefined {
    return this.#donors.get(peerId);
  }

  touch(peerId: string, now: number): void {
    const info = this.#donors.get(peerId);
    if (info) info.lastSeen = now;
  }

  /** A repeated advert: the donor is alive, with the stake standing the registry gives now. */
  refresh(peerId: string, now: number, staked: boolean): void {
    const info = this.#donors.get(peerId);
    if (info) {
      info.lastSeen = now;
      info.staked = staked;
    }
  }

  /** Quarantined or banned, by its peer id or by the operator it advertised. */
  isBlocked(peerId: string): boolean {
    if (!this.#trust) return false;
    const operator = this.#donors.get(peerId)?.operator;
    return this.#trust.isBlocked(peerId) || (operator !== undefined && this.#trust.isBlocked(operator));
  }

  all(): DonorInfo[] {
    return [...this.#donors.values()];
  }

  /**
   * The donors a job asks to bid (market/selection.ts `pickCandidates`): at most `limit`
   * (default: all), one per operator, staked, heard from recently, able to take the job,
   * not excluded; cheapest first, then a draw weighted by stake, reputation and the slots
   * not taken by this buyer's own jobs, so equal donors share the load; donors this buyer's
   * jobs fill are asked only when fewer than `needed` have a slot free. Quarantined and
   * banned donors are never asked; reputation (on the job's module) comes from the trust
   * layer unless the caller passes its own.
   */
  candidates(
    job: ProspectJob,
    options: {
      now: number;
      livenessMs: number;
      exclude: ReadonlySet<string>;
      limit?: number;
      busy?: (peerId: string) => number;
      needed?: number;
      random?: () => number;
      reputation?: Reputation;
    },
  ): CandidateSet<DonorInfo> {
    const trust = this.#trust;
    return pickCandidates(this.#donors.values(), job, {
      limit: options.limit ?? Number.POSITIVE_INFINITY,
      now: options.now,
      livenessMs: options.livenessMs,
      exclude: options.exclude,
      random: options.random ?? Math.random,
      busy: options.busy,
      needed: options.needed,
      reputation:
        options.reputation ?? (trust && ((operator, moduleCid) => trust.reputation(operator, moduleCid))),
      blocked: trust && ((peerId, operator) => trust.isBlocked(peerId) || trust.isBlocked(operator)),
    });
  }

  get size(): number {
    return this.#donors.size;
  }

  /** Evicts one entry for a newcomer: the stalest unstaked, else (for a staked newcomer) the stalest. */
  #makeRoom(newcomerStaked: boolean): boolean {
    const victim = this.#stalest(false) ?? (newcomerStaked ? this.#stalest(true) : undefined);
    if (victim === undefined) return false;
    this.#donors.delete(victim.peerId);
    return true;
  }

  #stalest(staked: boolean): DonorInfo | undefined {
    let stalest: DonorInfo | undefined;
    for (const donor of this.#donors.values())
      if (donor.staked === staked && (!stalest || donor.lastSeen < stalest.lastSeen)) stalest = donor;
    return stalest;
  }
}

const KNOWN_PEER_KEYS = 4_096;
const peerIdsByKey = new Map<Hex, string>();

/** True when `peerKey` (0x + 32 bytes of Ed25519 key) is the key of `peerId`; results are cached. */
export function peerKeyMatches(peerKey: Hex, peerId: string): boolean {
  let derived = peerIdsByKey.get(peerKey);
  if (derived === undefined) {
    try {
      derived = peerIdFromPublicKey(hexToBytes(peerKey));
    } catch {
      return false;
    }
    if (peerIdsByKey.size >= KNOWN_PEER_KEYS) peerIdsByKey.delete(peerIdsByKey.keys().next().value!);
    peerIdsByKey.set(peerKey, derived);
  }
  return derived === peerId;
}
