// The buyer job state machine's settings in unit tests: short, jitter-free timers and a
// constant draw, so every run takes the same path.
import { DEFAULT_BACKOFF } from "../../offchain/src/market/index.ts";
import type { BuyerSettings } from "../../offchain/src/node/buyer-machine.ts";

export function testBuyerSettings(bounds: Partial<BuyerSettings> = {}): BuyerSettings {
  return {
    bidTimeoutMs: 2_000,
    bidWindowMs: 50,
    heartbeatMs: 400,
    missedProbesSilent: 2,
    deliveryGraceMs: 1_000,
    maxAttempts: 3,
    livenessMs: 15_000,
    minCandidates: 4,
    candidatesPerReplica: 4,
    backoff: { ...DEFAULT_BACKOFF, jitter: 0 },
    placementBackoff: { ...DEFAULT_BACKOFF, jitter: 0, maxMs: 2_000 },
    maxStoredBids: 8,
    maxEvents: 32,
    maxPastAttempts: 8,
    random: () => 0.5,
    ...bounds,
  };
}
