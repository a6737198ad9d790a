import type { CapabilityAdvert } from "../protocol/index.ts";
import type { NodeContext } from "./context.ts";
import { detach } from "./context.ts";
import { peerKeyMatches } from "./peer-book.ts";
import type { PeerBook } from "./peer-book.ts";
import type { StakeStatus } from "./stake-cache.ts";

const RECORD_INTERVAL_MS = 30_000;
/** A peer whose advert needs a chain read gets at most one per this interval. */
const CHECK_INTERVAL_MS = 5_000;
const TRACKED_PEERS = 4_096;

/**
 * Takes capability adverts into the peer book. An advert counts only when its sender is
 * the advertised peer, its peer key is that peer's Ed25519 key, and DonorRegistry has the
 * operator active with that key (cached reads; a peer cannot make this node read the chain
 * more than once per CHECK_INTERVAL_MS by changing its claimed operator, and the stake cache
 * limits reads per peer as well). A stake that cannot be read is "unknown": the donor keeps
 * the standing it had, and a new one is recorded unstaked until a read succeeds. Staked
 * donors are recorded in the store now and then, so a restarted node can redial them.
 *
 * Bounds: both per-peer maps keep TRACKED_PEERS entries, the least recently updated dropped first.
 */
export class AdvertIntake {
  readonly #ctx: NodeContext;
  readonly #peerBook: PeerBook;
  readonly #checkedAt = new Map<string, number>();
  readonly #recordedAt = new Map<string, number>();

  constructor(ctx: NodeContext, peerBook: PeerBook) {
    this.#ctx = ctx;
    this.#peerBook = peerBook;
  }

  onAdvert(advert: CapabilityAdvert, from: string): void {
    const ctx = this.#ctx;
    if (advert.peerId !== from || advert.peerId === ctx.mesh.peerId) return;
    if (!peerKeyMatches(advert.peerKey, advert.peerId)) {
      ctx.log.debug({ from }, "advert with a peer key that is not the sender's");
      return;
    }
    const cached = ctx.stakes.peek(advert.operator, advert.peerKey);
    if (cached !== undefined) return this.#accept(advert, cached ? "active" : "inactive");
    const now = ctx.now();
    if (now - (this.#checkedAt.get(from) ?? -Infinity) < CHECK_INTERVAL_MS) return;
    remember(this.#checkedAt, from, now);
    detach(
      ctx.log,
      "checking an advert's stake",
      ctx.stakes.status(advert.operator, advert.peerKey, from).then((status) => this.#accept(advert, status)),
    );
  }

  #accept(advert: CapabilityAdvert, status: StakeStatus): void {
    const ctx = this.#ctx;
    const now = ctx.now();
    const known = this.#peerBook.get(advert.peerId);
    const staked =
      status === "unknown"
        ? known?.staked === true && known.operator === advert.operator
        : status === "active";
    this.#peerBook.upsertFromAdvert(advert, now, staked);
    if (!staked || now - (this.#recordedAt.get(advert.peerId) ?? -Infinity) < RECORD_INTERVAL_MS) return;
    remember(this.#recordedAt, advert.peerId, now);
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

function remember(map: Map<string, number>, key: string, at: number): void {
  map.delete(key);
  map.set(key, at);
  if (map.size > TRACKED_PEERS) map.delete(map.keys().next().value as string);
}
