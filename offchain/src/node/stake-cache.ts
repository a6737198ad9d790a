import type { Address, Hex } from "viem";
import type { StakeStatus } from "../chain/registry-view.ts";

export type { StakeStatus } from "../chain/registry-view.ts";

/** Where stakes are answered from without a chain read: a RegistryFollower in a running node. */
export interface StakeSource {
  status(operator: Address, peerKey: Hex): StakeStatus;
  /** Peer keys of up to `limit` active operators (none while the view is stale). */
  activePeerKeys?(limit: number): Hex[];
}

/**
 * The node's stake lookups, answered from a view of DonorRegistry that follows the
 * registry's events (chain/registry-follower.ts): no lookup reads the chain, so neither the
 * number of peers nor a flood of adverts or bids from identities without stake changes how
 * often this node calls its RPC. "unknown" (the view is stale, or does not hold the
 * operator yet) is never "inactive": an RPC outage does not turn real donors into unstaked
 * ones. Holds nothing itself.
 */
export class StakeCache {
  readonly #source: StakeSource;

  constructor(source: StakeSource) {
    this.#source = source;
  }

  /** Peer keys (Ed25519, 32 bytes) of up to `limit` staked, registered donors. */
  activePeerKeys(limit: number): Hex[] {
    return this.#source.activePeerKeys?.(limit) ?? [];
  }

  /** The known answer, or undefined while it is unknown. */
  peek(operator: Address, peerKey: Hex): boolean | undefined {
    const status = this.#source.status(operator, peerKey);
    return status === "unknown" ? undefined : status === "active";
  }

  /**
   * The stake of `operator` with `peerKey`. The requester (the peer whose message asked) is
   * accepted for callers; lookups cost no chain read, so none is rate-limited per peer.
   */
  async status(operator: Address, peerKey: Hex, _requester?: string): Promise<StakeStatus> {
    return this.#source.status(operator, peerKey);
  }

  /** True only when the operator is known to be active with this key ("unknown" is not active). */
  async isActive(operator: Address, peerKey: Hex, requester?: string): Promise<boolean> {
    return (await this.status(operator, peerKey, requester)) === "active";
  }
}
