import {
  BaseError,
  ExecutionRevertedError,
  TransactionReceiptNotFoundError,
  decodeErrorResult,
  isHex,
} from "viem";
import type { Hex } from "viem";
import { paymentChannelsAbi, zkChannelsAbi } from "../chain/index.ts";
import type { ChainWriter } from "../chain/index.ts";
import { CallRefused } from "./tx-sender.ts";
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
    estimateGas: async (call) => {
      try {
        return await publicClient.estimateGas({ account: address, to: call.to, data: call.data });
      } catch (error) {
        const refusal = refusalOf(error);
        throw refusal === undefined ? error : new CallRefused(refusal, { cause: error });
      }
    },
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

/** The PaymentChannels or ZkChannels custom error (or "execution reverted") a failed estimate carries; undefined for other failures. */
function refusalOf(error: unknown): string | undefined {
  if (!(error instanceof BaseError)) return undefined;
  const withData = error.walk((cause) => isHex((cause as { data?: unknown }).data));
  const data = (withData as { data?: unknown } | null)?.data;
  if (isHex(data) && data.length >= 10) {
    try {
      return decodeErrorResult({ abi: [...paymentChannelsAbi, ...zkChannelsAbi], data }).errorName;
    } catch {
      return `reverted with unknown error ${data.slice(0, 10)}`;
    }
  }
  return error.walk((cause) => cause instanceof ExecutionRevertedError) ? "execution reverted" : undefined;
}
