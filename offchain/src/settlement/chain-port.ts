import { TransactionReceiptNotFoundError } from "viem";
import type { Hex } from "viem";
import type { ChainWriter } from "../chain/index.ts";
import type { TxChainPort } from "./tx-sender.ts";

/** The transaction sender's chain over viem, signing with the writer's local account. */
export function viemTxPort(writer: ChainWriter): TxChainPort {
  const { publicClient, walletClient } = writer;
  const account = walletClient.account;
  const { signTransaction } = account;
  if (signTransaction === undefined)
    throw new Error("the settlement sender needs a local account (the operator key) that signs transactions");
  const address = account.address;
  return {
    minedNonce: () => publicClient.getTransactionCount({ address, blockTag: "latest" }),
    pendingNonce: () => publicClient.getTransactionCount({ address, blockTag: "pending" }),
    blockNumber: () => publicClient.getBlockNumber({ cacheTime: 0 }),
    fees: async () => {
      const { maxFeePerGas, maxPriorityFeePerGas } = await publicClient.estimateFeesPerGas();
      return { maxFeePerGas, maxPriorityFeePerGas };
    },
    estimateGas: (call) => publicClient.estimateGas({ account: address, to: call.to, data: call.data }),
    sign: (tx) =>
      signTransaction({
        type: "eip1559",
        chainId: walletClient.chain.id,
        to: tx.to,
        data: tx.data,
        nonce: tx.nonce,
        gas: tx.gas,
        maxFeePerGas: tx.maxFeePerGas,
        maxPriorityFeePerGas: tx.maxPriorityFeePerGas,
      }),
    broadcast: async (raw: Hex) => {
      await publicClient.sendRawTransaction({ serializedTransaction: raw });
    },
    receipt: async (hash) => {
      try {
        const receipt = await publicClient.getTransactionReceipt({ hash });
        return { hash, blockNumber: receipt.blockNumber, success: receipt.status === "success" };
      } catch (error) {
        if (error instanceof TransactionReceiptNotFoundError) return undefined;
        throw error;
      }
    },
  };
}
