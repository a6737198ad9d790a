/** Fuel units per "mega-fuel", the unit prices are quoted in. */
export const FUEL_PER_MEGA_FUEL = 1_000_000n;

/**
 * What one replica earns for a job: ⌈pricePerMegaFuel × fuelUsed / 10^6⌉ token base units.
 * Rounded up so that a job that used any fuel at a non-zero price always pays at least 1 wei;
 * the donor never earns less than its asking price for the fuel it burned (docs/payments.md).
 */
export function jobAmount(pricePerMegaFuel: bigint, fuelUsed: bigint): bigint {
  if (pricePerMegaFuel < 0n) throw new RangeError(`pricePerMegaFuel ${pricePerMegaFuel} is negative`);
  if (fuelUsed < 0n) throw new RangeError(`fuelUsed ${fuelUsed} is negative`);
  return (pricePerMegaFuel * fuelUsed + FUEL_PER_MEGA_FUEL - 1n) / FUEL_PER_MEGA_FUEL;
}
