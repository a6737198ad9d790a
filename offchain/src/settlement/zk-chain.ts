// The zk state as the chain has it, rebuilt from ZkChannels' events alone (docs/zk.md, "Transfers
// and data availability"): each batch applies its queue range, then its published transfers. A
// payee needs nothing else to withdraw.
import type { ChainReader, ZkEvent } from "../chain/index.ts";
import { readZkEvents, readZkQueue, rebuildZkState } from "../chain/index.ts";
import type { ZkSnapshot } from "./zk-settler.ts";

export interface ZkChainViewOptions {
  reader: ChainReader;
  depth: number;
  domainTag: bigint;
  /** Most blocks asked for in one eth_getLogs call. */
  blockRange: number;
}

/**
 * Reads ZkQueued and ZkBatchSettled from the deployment block once, then only new blocks, and
 * rebuilds the state from them on each snapshot. `events` is the history the state is made of
 * (one entry per queued operation and per batch, each paid for on-chain), so it has no eviction;
 * a node that outgrows it keeps a checkpoint of the state instead (not built).
 */
export class ZkChainView {
  readonly #options: ZkChainViewOptions;
  #events: ZkEvent[] = [];
  #nextBlock: bigint | undefined;

  constructor(options: ZkChainViewOptions) {
    this.#options = options;
  }

  /** The state after the last batch, the queue it has not consumed, checked against the contract's root. */
  async snapshot(): Promise<ZkSnapshot> {
    const { reader, depth, domainTag } = this.#options;
    const head = await reader.publicClient.getBlockNumber({ cacheTime: 0 });
    await this.#follow(head);
    let rebuilt = rebuildZkState(this.#events, depth, domainTag);
    const chain = await readZkQueue(reader);
    if (rebuilt.state.root !== chain.root) {
      // A reorganisation (or a devnet restarted under the same addresses): read everything again.
      this.#events = [];
      this.#nextBlock = undefined;
      await this.#follow(head);
      rebuilt = rebuildZkState(this.#events, depth, domainTag);
      if (rebuilt.state.root !== chain.root)
        throw new Error(
          `the state rebuilt from ZkChannels' events has root ${rebuilt.state.root}, the contract ${chain.root}`,
        );
    }
    return rebuilt;
  }

  async #follow(head: bigint): Promise<void> {
    const { reader, blockRange } = this.#options;
    let from = this.#nextBlock ?? reader.deployment.deployBlock;
    while (from <= head) {
      const to = from + BigInt(blockRange) - 1n < head ? from + BigInt(blockRange) - 1n : head;
      this.#events.push(...(await readZkEvents(reader, from, to)));
      from = to + 1n;
    }
    this.#nextBlock = from;
  }
}
