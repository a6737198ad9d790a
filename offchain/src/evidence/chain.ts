import { zeroAddress } from "viem";
import type { Address } from "viem";
import { checkOutvote, operatorState } from "../chain/index.ts";
import type { ChainReader } from "../chain/index.ts";
import type { EvidenceChain, OperatorRecord } from "./verify.ts";

export interface CachedChainOptions {
  /** How long an operator's record is reused (default 10 s): a jail or rotation shows within it. */
  ttlMs?: number;
  /** Operators remembered at once (default 1,024); the oldest entry goes first. */
  maxEntries?: number;
  now?: () => number;
}

/**
 * The chain reads of evidence verification on DonorRegistry. Operator records are cached:
 * gossip repeats evidence about the same few operators. checkOutvote is not cached here (the
 * desk's seen-evidence set keeps a message from being checked twice).
 */
export function evidenceChainOf(reader: ChainReader, options: CachedChainOptions = {}): EvidenceChain {
  const ttlMs = options.ttlMs ?? 10_000;
  const maxEntries = options.maxEntries ?? 1_024;
  const now = options.now ?? Date.now;
  /** Bound: maxEntries; eviction: the entry inserted first (a Map keeps insertion order). */
  const operators = new Map<string, { record: OperatorRecord | undefined; at: number }>();
  return {
    operator: async (operator: Address) => {
      const key = operator.toLowerCase();
      const cached = operators.get(key);
      if (cached !== undefined && now() - cached.at < ttlMs) return cached.record;
      const state = await operatorState(reader, operator);
      const record = state.donor === zeroAddress ? undefined : { ...state };
      operators.delete(key);
      operators.set(key, { record, at: now() });
      if (operators.size > maxEntries) operators.delete(operators.keys().next().value!);
      return record;
    },
    checkOutvote: (spec, accused, quorum) => checkOutvote(reader, spec, accused, quorum),
  };
}
