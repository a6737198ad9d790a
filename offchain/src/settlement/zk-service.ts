// Builds the zk settler's ports over the chain, the node's transaction sender and a warm prover.
import { encodeFunctionData } from "viem";
import type { Address, Hex } from "viem";
import type { Logger } from "pino";
import { readZkParams, zkChannelOf, zkChannelsAbi, zkChannelsAddress } from "../chain/index.ts";
import type { ChainReader, ZkProofWords } from "../chain/index.ts";
import type { HeldVoucher } from "../payments/index.ts";
import { ZkProver, buildBatchWitness, circuitArtifacts, proofToCalldata } from "../zk/index.ts";
import type { TxSender } from "./tx-sender.ts";
import { ZkChainView } from "./zk-chain.ts";
import { ZkSettler } from "./zk-settler.ts";
import type { HeldZkVoucher, ZkProven, ZkSettlerPorts, ZkVoucherSource } from "./zk-settler.ts";

/** The payee ledger as the zk settler reads it. */
export interface ZkVault {
  unsettledZk(limit: number): HeldVoucher[];
  recordPaid(channelId: Hex, paid: bigint): void;
}

export interface ZkSettlementOptions {
  reader: ChainReader;
  vault: ZkVault;
  payee: Address;
  /** The circuit instance under circuits/build (its verifier must be the deployment's). */
  instance: string;
  maxBatches: number;
  blockRange: number;
  log: Logger;
}

export interface ZkSettlement {
  /** The settler over the node's transaction sender. */
  settler(sender: TxSender): ZkSettler;
  stop(): Promise<void>;
}

/**
 * Loads the circuit, checks it is the one the deployment's ZkChannels verifies, and starts the
 * prover thread (its proving key stays loaded between epochs).
 */
export async function prepareZkSettlement(options: ZkSettlementOptions): Promise<ZkSettlement> {
  const { reader, log } = options;
  const artifacts = circuitArtifacts(options.instance);
  const chain = await readZkParams(reader);
  const { depth, queueSlots, batchSize } = artifacts.params;
  if (chain.depth !== depth || chain.queueSlots !== queueSlots || chain.batchSize !== batchSize)
    throw new Error(
      `circuit "${options.instance}" is SettleBatch(${depth}, ${queueSlots}, ${batchSize}) but ZkChannels verifies SettleBatch(${chain.depth}, ${chain.queueSlots}, ${chain.batchSize}): set settlement.zk.instance`,
    );
  const prover = await ZkProver.start(artifacts);
  log.info({ instance: artifacts.instance, constraints: artifacts.constraints }, "zk prover ready");
  const view = new ZkChainView({ reader, depth, domainTag: chain.domainTag, blockRange: options.blockRange });
  const zkChannels = zkChannelsAddress(reader);
  const call = (functionName: string, args: readonly unknown[]) => ({
    to: zkChannels,
    data: encodeFunctionData({ abi: zkChannelsAbi, functionName, args } as never) as Hex,
  });
  return {
    settler: (sender) => {
      const ports: ZkSettlerPorts = {
        snapshot: () => view.snapshot(),
        prove: async (snapshot, plan, onProgress): Promise<ZkProven> => {
          const witness = buildBatchWitness({
            state: snapshot.state,
            domainTag: chain.domainTag,
            queue: plan.ops,
            transfers: plan.transfers.map((t) => ({
              leaf: t.leaf,
              cumulative: t.cumulativeAmount,
              signature: t.signature,
            })),
            params: artifacts.params,
          });
          const proven = await prover.prove(witness.input, onProgress);
          return {
            newRoot: witness.newRoot,
            transfers: witness.publicSignals.slice(5),
            proof: proofToCalldata(proven.proof),
            seconds: proven.seconds,
          };
        },
        send: (purpose, txCall) => sender.send(purpose, null, txCall),
        settleCall: (proven, opsConsumed) =>
          call("settle", [
            proven.newRoot,
            BigInt(opsConsumed),
            proven.transfers,
            proven.proof as ZkProofWords,
          ]),
        withdrawCall: (leaf, data, path, root) => call("withdraw", [leaf, data, path.siblings, root]),
        settleBySignatureCall: (leaf, cumulative, signature) =>
          call("settleBySignature", [leaf, cumulative, signature]),
        withdrawn: async (leaf) => (await zkChannelOf(reader, leaf)).withdrawn,
      };
      return new ZkSettler({
        ports,
        vault: zkVoucherSource(options.vault),
        payee: options.payee,
        queueSlots,
        batchSize,
        maxBatches: options.maxBatches,
        log,
      });
    },
    stop: () => prover.terminate(),
  };
}

function zkVoucherSource(vault: ZkVault): ZkVoucherSource {
  return {
    zkVouchers: (limit) =>
      vault.unsettledZk(limit).flatMap((voucher): HeldZkVoucher[] =>
        voucher.zk === undefined
          ? []
          : [
              {
                channelId: voucher.channelId,
                leaf: voucher.zk.leaf,
                cumulativeAmount: voucher.cumulativeAmount,
                signature: voucher.zk.signature,
                receivedAt: voucher.receivedAt,
                eip712Signature: voucher.signature,
              },
            ],
      ),
    recordPaid: (channelId, paid) => vault.recordPaid(channelId, paid),
  };
}
