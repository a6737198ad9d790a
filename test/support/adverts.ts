import type { CapabilityAdvert } from "../../offchain/src/protocol/index.ts";

/** A donor's capability advert with plain terms; `fields` names the donor and overrides terms. */
export function testAdvert(
  fields: Pick<CapabilityAdvert, "peerId" | "operator" | "peerKey"> & Partial<CapabilityAdvert>,
): CapabilityAdvert {
  return {
    type: "caps",
    seq: 1,
    pricePerMegaFuel: "1000",
    slots: 4,
    freeSlots: 4,
    fuelPerSecond: "1000000",
    maxFuel: "1000000000",
    maxMemoryPages: 256,
    runtimeVersion: "cell-wasm/1",
    multiaddrs: [],
    timestamp: "0",
    ...fields,
  };
}
