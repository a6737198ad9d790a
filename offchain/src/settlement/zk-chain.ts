// The zk state as the chain has it, rebuilt from ZkChannels' events alone (docs/zk.md, "Transfers
// and data availability"): each batch applies its queue range, then its published transfers. A
// payee needs nothing else to withdraw.
import type { ChainReader } from "../chain/index.ts";
import { readZkEvents, readZkQueue } from "../chain/index.ts";
import type { ZkEvent } from "../chain/index.ts";
import { ZkState, unpackTransfers } from "../zk/index.ts";
import type { QueueOp } from "../zk/index.ts";
import type { ZkSnapshot } from "./zk-settler.ts";

/** Published transfers carry no signature; applying them unchecked uses this placeholder. */
const NO_SIGNATURE = { r8x: 0n, r8y: 0n, s: 0n };

export interface ZkChainViewOptions {
  reader: ChainReader;
  depth: number;
  domainTag: bigint;
  /** Most blocks asked for in one eth_getLogs call. */
  blockRange: number;
}

/**
 * Follows ZkQueued and ZkBatchSettled from the deployment block, keeping the state after the
 * last batch and the queued operations no batch has consumed yet. `queued` holds only those:
 * an operation leaves it when a batch consumes it, so it is bounded by the queue's unconsumed
 * length (each entry cost its sender a Poseidon hash on-chain).
 */
export class ZkChainView {
  readonly #options: ZkChainViewOptions;
  #state: ZkState;
  readonly #queued = new Map<bigint, QueueOp>();
  #nextBlock: bigint | undefined;

  constructor(options: ZkChainViewOptions) {
    this.#options = options;
    this.#state = new ZkState(options.depth);
  }

  /** Reads what happened since the last call and checks the result against the contract's root. */
  async snapshot(): Promise<ZkSnapshot> {
    const { reader } = this.#options;
    const head = await reader.publicClient.getBlockNumber({ cacheTime: 0 });
    await this.#follow(head);
    const chain = await readZkQueue(reader);
    if (chain.root !== this.#state.root) {
      // A reorganisation (or a devnet restarted under the same addresses): read everything again.
      this.#reset();
      await this.#follow(head);
      if (chain.root !== this.#state.root)
        throw new Error(
          `the state rebuilt from ZkChannels' events has root ${this.#state.root}, the contract ${chain.root}`,
        );
    }
    const pending: QueueOp[] = [];
    for (let position = chain.consumed; position < chain.queueLength; position++) {
      const op = this.#queued.get(position);
      if (op === undefined) throw new Error(`queued operation ${position} was not found in ZkQueued events`);
      pending.push(op);
    }
    return { state: this.#state.clone(), pending };
  }

  async #follow(head: bigint): Promise<void> {
    const { reader, blockRange } = this.#options;
    let from = this.#nextBlock ?? reader.deployment.deployBlock;
    while (from <= head) {
      const to = from + BigInt(blockRange) - 1n < head ? from + BigInt(blockRange) - 1n : head;
      for (const event of await readZkEvents(reader, from, to)) this.#apply(event);
      from = to + 1n;
    }
    this.#nextBlock = from;
  }

  #apply(event: ZkEvent): void {
    if (event.type === "queued") {
      this.#queued.set(event.position, event.op);
      return;
    }
    const state = this.#state;
    if (event.oldRoot !== state.root)
      throw new Error(`batch ${event.batch} starts from root ${event.oldRoot}, the rebuilt state is at ${state.root}`);
    for (let position = event.queueFrom; position < event.queueTo; position++) {
      const op = this.#queued.get(position);
      if (op === undefined) throw new Error(`batch ${event.batch} consumes queue position ${position}, never seen`);
      state.applyQueueOp(op, true);
      this.#queued.delete(position);
    }
    for (const transfer of unpackTransfers(event.transfers))
      state.applyTransfer(this.#options.domainTag, { ...transfer, signature: NO_SIGNATURE }, true);
    if (state.root !== event.newRoot)
      throw new Error(`batch ${event.batch} ends at root ${event.newRoot}, the rebuilt state at ${state.root}`);
  }

  #reset(): void {
    this.#state = new ZkState(this.#options.depth);
    this.#queued.clear();
    this.#nextBlock = undefined;
  }
}
