// OP Stack fees on the devnet: OP Mainnet's Ecotone scalars, and each transaction's L2 gas beside
// the L1 data gas its compressed size costs.
import { numberToHex } from "viem";
import type { Hex, TransactionReceipt } from "viem";
import type { ChainWriter } from "../offchain/src/chain/index.ts";

/** The L1Block predeploy; slot 3 packs baseFeeScalar (bits 96..127) and blobBaseFeeScalar (64..95). */
const L1_BLOCK = "0x4200000000000000000000000000000000000015";
/** OP Mainnet's Ecotone fee scalars; L1 base fee and blob base fee stay at the node's 10 gwei. */
const BASE_FEE_SCALAR = 5_227n;
const BLOB_BASE_FEE_SCALAR = 1_014_213n;

export interface Measured {
  /** L2 execution gas (receipt gasUsed). */
  gas: number;
  /** L1 data gas the OP Stack charges for the transaction's compressed size (receipt l1GasUsed). */
  l1Gas: number;
  /** L1 data fee in wei (receipt l1Fee) at the scalars and L1 prices above. */
  l1Fee: bigint;
}

function rpc(writer: ChainWriter, method: string, params: unknown[]): Promise<unknown> {
  return writer.publicClient.request({ method, params } as never) as Promise<unknown>;
}

export async function setOpMainnetFeeScalars(writer: ChainWriter): Promise<void> {
  await rpc(writer, "hardhat_setStorageAt", [
    L1_BLOCK,
    "0x3",
    numberToHex((BASE_FEE_SCALAR << 96n) | (BLOB_BASE_FEE_SCALAR << 64n), { size: 32 }),
  ]);
}

export async function measureOpGas(writer: ChainWriter, receipt: TransactionReceipt): Promise<Measured> {
  const raw = (await rpc(writer, "eth_getTransactionReceipt", [receipt.transactionHash])) as {
    l1GasUsed?: Hex;
    l1Fee?: Hex;
  };
  if (raw.l1GasUsed === undefined || raw.l1Fee === undefined)
    throw new Error("the devnet's receipts carry no l1GasUsed/l1Fee: is it an OP Stack chain?");
  return { gas: Number(receipt.gasUsed), l1Gas: Number(raw.l1GasUsed), l1Fee: BigInt(raw.l1Fee) };
}
