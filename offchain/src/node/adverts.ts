import type { CapabilityAdvert } from "../protocol/index.ts";
import type { NodeContext } from "./context.ts";
import { detach } from "./context.ts";
import { peerKeyMatches } from "./peer-book.ts";
import type { PeerBook } from "./peer-book.ts";

/** A staked donor heard only through repeats is written to the store at most this often. */
const RECORD_INTERVAL_MS = 10 * 60_000;
/** Peers whose newest verified advert seq is kept. */
export const ADVERT_TRACKED_PEERS = 4_096;

/** What the intake did with the adverts it was handed. */
export interface AdvertIntakeCounts {
  /** Adverts handed to the intake (one per gossip message; gossipsub drops copies before). */
  received: number;
  /** Adverts with a new `seq` from their sender: peer key and stake checked, terms taken. */
  verified: number;
  /** Heartbeats (the `seq` already verified): liveness and stake standing refreshed only. */
  repeated: number;
  /** Adverts older than the sender's newest verified one: dropped. */
  stale: number;
  /** Relayed for someone else or from this node: dropped. */
  foreign: number;
}

interface Verified {
  seq: number;
  /** The advert as verified, when its peer key is its sender's: a repeat refreshes this, whatever it says. */
  advert: CapabilityAdvert | undefined;
}

/**
 * Takes capability adverts into the peer book, each change once: an advert whose `seq` its
 * sender has already had verified here only refreshes the donor's liveness and stake
 * standing (a map lookup), and an older `seq` is dropped. An advert counts only when its
 * sender is the advertised peer, its peer key is that peer's Ed25519 key, and the followed
 * DonorRegistry view has the operator active with that key. A stake the view cannot
 * answer is "unknown": the donor keeps the standing it had, and a new one is recorded
 * unstaked until the view answers (a later repeat looks again). Staked donors are written
 * to the store, so a restarted node can redial them.
 *
 * Bounds: both per-peer maps keep ADVERT_TRACKED_PEERS entries, the least recently verified (or
 * recorded) dropped first; a dropped peer's next advert is simply verified again.
 */
export class AdvertIntake {
  readonly #ctx: NodeContext;
  readonly #peerBook: PeerBook;
  readonly #verified = new Map<string, Verified>();
  readonly #recordedAt = new Map<string, number>();
  readonly #counts: AdvertIntakeCounts = { received: 0, verified: 0, repeated: 0, stale: 0, foreign: 0 };

  constructor(ctx: NodeContext, peerBook: PeerBook) {
    this.#ctx = ctx;
    this.#peerBook = peerBook;
  }

  counts(): AdvertIntakeCounts {
    return { ...this.#counts };
  }

  onAdvert(advert: CapabilityAdvert, from: string): void {
    const counts = this.#counts;
    counts.received++;
    if (advert.peerId !== from || from === this.#ctx.mesh.peerId) {
      counts.foreign++;
      return;
    }
    const last = this.#verified.get(from);
    if (last !== undefined && advert.seq < last.seq) {
      counts.stale++;
      return;
    }
    if (last !== undefined && advert.seq === last.seq) {
      counts.repeated++;
      if (last.advert !== undefined) this.#accept(last.advert, false);
      return;
    }
    counts.verified++;
    const genuine = peerKeyMatches(advert.peerKey, advert.peerId);
    remember(this.#verified, from, { seq: advert.seq, advert: genuine ? advert : undefined });
    if (!genuine) {
      this.#ctx.log.debug({ from }, "advert with a peer key that is not the sender's");
      return;
    }
    this.#accept(advert, true);
  }

  /**
   * Records the donor with the stake standing the registry view gives now: a new advert
   * with its terms, a repeat as a refresh of what is known.
   */
  #accept(advert: CapabilityAdvert, fresh: boolean): void {
    const ctx = this.#ctx;
    const now = ctx.now();
    const known = this.#peerBook.get(advert.peerId);
    const active = ctx.stakes.peek(advert.operator, advert.peerKey);
    const wasStaked = known?.staked === true && known.operator === advert.operator;
    const staked = active ?? wasStaked;
    if (fresh || known === undefined) this.#peerBook.upsertFromAdvert(advert, now, staked);
    else this.#peerBook.refresh(advert.peerId, now, staked);
    if (staked && (fresh || !wasStaked || this.#recordDue(advert.peerId, now))) this.#record(advert, now);
  }

  #recordDue(peerId: string, now: number): boolean {
    return now - (this.#recordedAt.get(peerId) ?? -Infinity) >= RECORD_INTERVAL_MS;
  }

  #record(advert: CapabilityAdvert, now: number): void {
    const ctx = this.#ctx;
    remember(this.#recordedAt, advert.peerId, now);
    // A staked donor's own addresses: asking it to bid then dials them instead of first
    // looking the peer up in the DHT.
    ctx.mesh.rememberAddresses(advert.peerId, advert.multiaddrs);
    const write = ctx.store.commit(() =>
      ctx.store.peers.upsert({
        peerId: advert.peerId,
        operator: advert.operator,
        peerKey: advert.peerKey,
        addrs: advert.multiaddrs,
        lastSeen: now,
      }),
    );
    detach(ctx.log, "recording a donor", write);
  }
}

function remember<T>(map: Map<string, T>, key: string, value: T): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > ADVERT_TRACKED_PEERS) map.delete(map.keys().next().value as string);
}
