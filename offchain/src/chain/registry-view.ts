import type { Address, Hex } from "viem";

/** What is known of a donor's stake: "unknown" when the chain could not be (or was not) read. */
export type StakeStatus = "active" | "inactive" | "unknown";

/** The DonorRegistry events that decide whether an operator is active, reduced to what matters. */
export type RegistryEvent =
  | { type: "params"; minStake: bigint }
  | { type: "staked"; donor: Address; bonded: bigint }
  | { type: "registered"; donor: Address; operator: Address; peerKey: Hex }
  | { type: "rotated"; donor: Address; operator: Address; peerKey: Hex }
  | { type: "jailed"; operator: Address }
  | { type: "unbond"; donor: Address; amount: bigint }
  | { type: "slashed"; donor: Address; amount: bigint };

export interface RegistryViewOptions {
  /** A view not caught up with the chain for longer than this answers "unknown". */
  staleMs: number;
  /** Registered donors kept (default 100,000). */
  maxDonors?: number;
  /** Bonded amounts of donors that staked but did not register yet (default 10,000). */
  maxStakers?: number;
}

interface Donor {
  donor: string;
  peerKey: string;
  /** Undefined when the amount was not followed (the donor's stake was dropped before it registered). */
  bonded: bigint | undefined;
  /** Jailed after an equivocation: inactive until the wallet rotates to a new operator. */
  jailed: boolean;
}

/**
 * DonorRegistry's state as far as stake checks need it, built by applying the registry's
 * events in chain order: an operator is active while it is registered with the asked peer
 * key and its donor's bonded stake is at least `minStake` (DonorRegistry.isActive).
 *
 * `Staked` carries the donor's new bonded total; `UnbondRequested`, `Slashed` and `CourtSlashed` take from it
 * (a slash takes from bonded stake first, so `min(amount, bonded)`); `Withdrawn` and
 * `MetadataUpdated` change nothing that matters here. `OperatorRotated` replaces a donor's
 * operator and peer key: the old operator is never active again, so the view forgets it.
 * `Jailed` makes an operator inactive for good (its wallet rotates to a new one to come back).
 *
 * Answers: "unknown" while the view has never caught up with the chain or has not for longer
 * than `staleMs`; "inactive" for a registered operator the view holds with another peer key
 * or too little bonded stake, and for an operator it does not hold while it has dropped
 * none: a caught-up view holds every registration up to its head, so such an operator is
 * unregistered, or registered after the head and seen at the next poll. Once the bound
 * below has dropped a donor, an operator it does not hold is "unknown".
 *
 * Bounds: `maxDonors` registered donors and `maxStakers` unregistered stakers, the least
 * recently changed dropped first. A dropped operator answers "unknown", never a wrong
 * "active" or "inactive"; a staker dropped before it registers is held with an unknown amount
 * (answering "unknown") until its next `Staked` event. Registering costs `minStake` bonded,
 * staking a transaction, so filling either bound is paid for on-chain.
 */
export class RegistryView {
  readonly #staleMs: number;
  readonly #maxDonors: number;
  readonly #maxStakers: number;
  /** Registered donors by lower-cased operator. */
  readonly #byOperator = new Map<string, Donor>();
  /** Lower-cased donor wallet → lower-cased operator, for the registered ones. */
  readonly #operatorOf = new Map<string, string>();
  /** Bonded stake of donors not registered yet, by lower-cased donor wallet. */
  readonly #stakers = new Map<string, bigint>();
  /** Set once `maxDonors` dropped a donor: from then on a missing operator may be a dropped one. */
  #droppedDonors = false;
  #minStake: bigint | undefined;
  #head: bigint | undefined;
  #caughtUpAt: number | undefined;

  constructor(options: RegistryViewOptions) {
    this.#staleMs = options.staleMs;
    this.#maxDonors = options.maxDonors ?? 100_000;
    this.#maxStakers = options.maxStakers ?? 10_000;
  }

  /** The last block whose events are applied; undefined before the first. */
  get head(): bigint | undefined {
    return this.#head;
  }

  get minStake(): bigint | undefined {
    return this.#minStake;
  }

  /** Registered donors held. */
  get size(): number {
    return this.#byOperator.size;
  }

  apply(event: RegistryEvent): void {
    switch (event.type) {
      case "params":
        this.#minStake = event.minStake;
        return;
      case "staked":
        return this.#setBonded(event.donor.toLowerCase(), () => event.bonded);
      case "unbond":
        return this.#setBonded(event.donor.toLowerCase(), (bonded) => minus(bonded, event.amount));
      case "slashed":
        return this.#setBonded(event.donor.toLowerCase(), (bonded) => minus(bonded, event.amount));
      case "registered":
        return this.#register(event, this.#takeStaker(event.donor.toLowerCase()));
      case "rotated":
        return this.#rotate(event);
      case "jailed": {
        const donor = this.#byOperator.get(event.operator.toLowerCase());
        if (donor) donor.jailed = true;
        return;
      }
    }
  }

  /** The events of every block up to `block` are applied; `caughtUp` when that is the chain's head (at `now`). */
  advanceTo(block: bigint, caughtUp: boolean, now: number): void {
    this.#head = block;
    if (caughtUp) this.#caughtUpAt = now;
  }

  /** Forgets everything, as before the first event (the chain was reset or reorganised below the head). */
  reset(): void {
    this.#byOperator.clear();
    this.#operatorOf.clear();
    this.#stakers.clear();
    this.#minStake = undefined;
    this.#head = undefined;
    this.#caughtUpAt = undefined;
  }

  /** True while the view caught up with the chain less than `staleMs` ago. */
  isFresh(now: number): boolean {
    return this.#caughtUpAt !== undefined && now - this.#caughtUpAt <= this.#staleMs;
  }

  status(operator: Address, peerKey: Hex, now: number): StakeStatus {
    if (!this.isFresh(now) || this.#minStake === undefined) return "unknown";
    const donor = this.#byOperator.get(operator.toLowerCase());
    if (!donor) return this.#droppedDonors ? "unknown" : "inactive";
    if (donor.peerKey !== peerKey.toLowerCase() || donor.jailed) return "inactive";
    if (donor.bonded === undefined) return "unknown";
    return donor.bonded >= this.#minStake ? "active" : "inactive";
  }

  /**
   * The peer keys of up to `limit` active operators (registered, not jailed, bonded at least
   * `minStake`); empty while the view is not fresh. One pass over the registered donors.
   */
  activePeerKeys(limit: number, now: number): Hex[] {
    if (!this.isFresh(now) || this.#minStake === undefined) return [];
    const keys: Hex[] = [];
    for (const donor of this.#byOperator.values()) {
      if (keys.length >= limit) break;
      if (!donor.jailed && donor.bonded !== undefined && donor.bonded >= this.#minStake)
        keys.push(donor.peerKey as Hex);
    }
    return keys;
  }

  #takeStaker(wallet: string): bigint | undefined {
    const bonded = this.#stakers.get(wallet);
    this.#stakers.delete(wallet);
    return bonded;
  }

  /** The donor's old operator is dropped; the new one takes its stake (unknown if the donor was dropped). */
  #rotate(event: Extract<RegistryEvent, { type: "rotated" }>): void {
    const wallet = event.donor.toLowerCase();
    const old = this.#operatorOf.get(wallet);
    const bonded = old === undefined ? undefined : this.#byOperator.get(old)?.bonded;
    if (old !== undefined) this.#byOperator.delete(old);
    this.#register(event, bonded);
  }

  #register(event: { donor: Address; operator: Address; peerKey: Hex }, bonded: bigint | undefined): void {
    const wallet = event.donor.toLowerCase();
    const operator = event.operator.toLowerCase();
    this.#byOperator.delete(operator);
    this.#byOperator.set(operator, {
      donor: wallet,
      peerKey: event.peerKey.toLowerCase(),
      bonded,
      jailed: false,
    });
    this.#operatorOf.set(wallet, operator);
    if (this.#byOperator.size > this.#maxDonors) {
      const [oldest, dropped] = this.#byOperator.entries().next().value as [string, Donor];
      this.#byOperator.delete(oldest);
      this.#operatorOf.delete(dropped.donor);
      this.#droppedDonors = true;
    }
  }

  /** Changes a donor's bonded stake and marks it the most recently changed. */
  #setBonded(wallet: string, change: (bonded: bigint | undefined) => bigint | undefined): void {
    const operator = this.#operatorOf.get(wallet);
    const donor = operator === undefined ? undefined : this.#byOperator.get(operator);
    if (operator !== undefined && donor) {
      donor.bonded = change(donor.bonded);
      this.#byOperator.delete(operator);
      this.#byOperator.set(operator, donor);
      return;
    }
    const bonded = change(this.#stakers.get(wallet));
    this.#stakers.delete(wallet);
    if (bonded === undefined) return;
    this.#stakers.set(wallet, bonded);
    if (this.#stakers.size > this.#maxStakers)
      this.#stakers.delete(this.#stakers.keys().next().value as string);
  }
}

function minus(bonded: bigint | undefined, amount: bigint): bigint | undefined {
  if (bonded === undefined) return undefined;
  return amount >= bonded ? 0n : bonded - amount;
}
