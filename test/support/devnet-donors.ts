// Staked, registered donors and block mining on a devnet (a `hardhat node`), for the tests
// and benchmarks that drive the court through the chain bindings.
import { keccak256, parseEther, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { PrivateKeyAccount } from "viem/accounts";
import {
  createWriter,
  devnetPrivateKey,
  mintAtp,
  registerDonor,
  stake,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader, ChainWriter } from "../../offchain/src/chain/index.ts";

/**
 * `count` donors from the devnet accounts starting at `firstAccount`: each gets `mint` ATP,
 * stakes 1,000 + 100 i ATP (so jury weights differ) and registers an operator key and a peer
 * key derived from `label`.
 */
export async function stakedDonors(
  admin: ChainWriter,
  options: { rpcUrl: string; count: number; firstAccount: number; label: string; mint: bigint },
): Promise<{ donors: ChainWriter[]; operators: PrivateKeyAccount[] }> {
  const { rpcUrl } = options;
  const { deployment } = admin;
  const donors: ChainWriter[] = [];
  const operators: PrivateKeyAccount[] = [];
  for (let i = 0; i < options.count; i++) {
    const donor = createWriter(rpcUrl, deployment, devnetPrivateKey(options.firstAccount + i));
    const operator = privateKeyToAccount(keccak256(toHex(`${options.label}-operator-${i}`)));
    await mintAtp(admin, donor.walletClient.account.address, options.mint);
    await stake(donor, parseEther(String(1_000 + 100 * i)));
    await registerDonor(donor, {
      operator,
      peerKey: keccak256(toHex(`${options.label}-peer-${i}`)),
      metadataURI: `ipfs://${options.label}-${i}`,
    });
    donors.push(donor);
    operators.push(operator);
  }
  return { donors, operators };
}

/** Mines `count` blocks at once (`hardhat_mine`). */
export async function mineBlocks(reader: ChainReader, count: number | bigint): Promise<void> {
  const request = reader.publicClient.request as unknown as (call: {
    method: string;
    params: unknown[];
  }) => Promise<unknown>;
  await request({ method: "hardhat_mine", params: [toHex(count)] });
}
