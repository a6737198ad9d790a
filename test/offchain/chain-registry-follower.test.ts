import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createPublicClient, http, keccak256, toHex } from "viem";
import type { Address, Hex, PublicClient, Transport } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import type { PrivateKeyAccount } from "viem/accounts";
import {
  RegistryFollower,
  applyDonorParams,
  cellChain,
  createWriter,
  donorParams,
  mintAtp,
  proposeDonorParams,
  registerDonor,
  requestUnbond,
  rotateOperator,
  slashEquivocation,
  stake,
  startDevnet,
} from "../../offchain/src/chain/index.ts";
import type { ChainWriter, Devnet, RegistryFollowerOptions } from "../../offchain/src/chain/index.ts";
import { signedReceipt } from "../support/contracts/fixture.ts";

const POLL_MS = 100;
const STALE_MS = 1_500;

/** JSON-RPC requests a client sent, by method, with the block ranges of its eth_getLogs calls. */
class RequestCount {
  total = 0;
  byMethod: Record<string, number> = {};
  logRanges: bigint[] = [];

  transport(url: string): Transport {
    return (options) => {
      const inner = http(url, { retryCount: 0 })(options);
      const request = (async (args: { method: string; params?: unknown }) => {
        this.total++;
        this.byMethod[args.method] = (this.byMethod[args.method] ?? 0) + 1;
        if (args.method === "eth_getLogs") {
          const [filter] = args.params as [{ fromBlock: Hex; toBlock: Hex }];
          this.logRanges.push(BigInt(filter.toBlock) - BigInt(filter.fromBlock) + 1n);
        }
        return inner.request(args as Parameters<typeof inner.request>[0]);
      }) as typeof inner.request;
      return { ...inner, request };
    };
  }

  of(method: string): number {
    return this.byMethod[method] ?? 0;
  }
}

interface Relay {
  url: string;
  /** Cut off: every connection is reset, as in an RPC provider outage. */
  down: boolean;
  /** Refuses eth_getLogs over more blocks than this, as providers do. */
  maxLogRange: bigint | undefined;
  /** Answers this many eth_blockNumber calls with block 1, as a lagging node behind a load balancer. */
  lagging: number;
  server: Server;
}

/** An HTTP relay in front of the devnet with a provider's failures. */
async function relay(target: string): Promise<Relay> {
  const state: Relay = {
    url: "",
    down: false,
    maxLogRange: undefined,
    lagging: 0,
    server: undefined as unknown as Server,
  };
  state.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      if (state.down) return void res.socket?.destroy();
      const call = JSON.parse(Buffer.concat(chunks).toString()) as { id: number; method: string };
      if (state.lagging > 0 && call.method === "eth_blockNumber") {
        state.lagging--;
        const lagged = JSON.stringify({ jsonrpc: "2.0", id: call.id, result: "0x1" });
        return void res.writeHead(200, { "content-type": "application/json" }).end(lagged);
      }
      const refusal = refusedLogRange(Buffer.concat(chunks).toString(), state.maxLogRange);
      if (refusal) return void res.writeHead(200, { "content-type": "application/json" }).end(refusal);
      fetch(target, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: Buffer.concat(chunks),
      })
        .then(async (answer) =>
          res.writeHead(answer.status, { "content-type": "application/json" }).end(await answer.text()),
        )
        .catch(() => res.socket?.destroy());
    });
  });
  await new Promise<void>((resolve) => state.server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}

/** A JSON-RPC error answer to an eth_getLogs call over more than `max` blocks. */
function refusedLogRange(body: string, max: bigint | undefined): string | undefined {
  const call = JSON.parse(body) as { id: number; method: string; params: [{ fromBlock: Hex; toBlock: Hex }] };
  if (max === undefined || call.method !== "eth_getLogs") return undefined;
  const range = BigInt(call.params[0].toBlock) - BigInt(call.params[0].fromBlock) + 1n;
  if (range <= max) return undefined;
  return JSON.stringify({
    jsonrpc: "2.0",
    id: call.id,
    error: { code: -32005, message: `query exceeds max block range ${max}` },
  });
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface TestDonor {
  wallet: ChainWriter;
  operator: PrivateKeyAccount;
  peerKey: Hex;
}

describe("registry follower on a Hardhat chain", () => {
  let devnet: Devnet;
  let faucet: ChainWriter;
  let minStake: bigint;
  let rpc: Awaited<ReturnType<typeof relay>>;
  const followers: RegistryFollower[] = [];

  before(async () => {
    devnet = await startDevnet();
    faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    minStake = (await donorParams(faucet)).minStake;
    rpc = await relay(devnet.rpcUrl);
  });

  after(async () => {
    for (const follower of followers) await follower.stop();
    rpc?.server.close();
    await devnet?.stop();
  });

  /** A fresh wallet with ETH and `minStake` ATP, staked and registered with a new operator and peer key. */
  async function newDonor(label: string, options: { register?: boolean } = {}): Promise<TestDonor> {
    const wallet = createWriter(devnet.rpcUrl, devnet.deployment, generatePrivateKey());
    const address = wallet.walletClient.account.address;
    await faucet.publicClient.request({
      method: "hardhat_setBalance" as "eth_chainId",
      params: [address, "0x56BC75E2D63100000"] as unknown as undefined,
    });
    await mintAtp(faucet, address, minStake);
    const donor = {
      wallet,
      operator: privateKeyToAccount(generatePrivateKey()),
      peerKey: keccak256(toHex(label)),
    };
    await stake(wallet, minStake);
    if (options.register !== false) await register(donor);
    return donor;
  }

  /** Moves the devnet's clock `seconds` ahead (the next block is at least that much later). */
  async function passTime(seconds: number): Promise<void> {
    await faucet.publicClient.request({
      method: "evm_increaseTime" as "eth_chainId",
      params: [seconds] as unknown as undefined,
    });
  }

  async function register(donor: TestDonor): Promise<bigint> {
    const { blockNumber } = await registerDonor(donor.wallet, {
      operator: donor.operator,
      peerKey: donor.peerKey,
      metadataURI: "",
    });
    return blockNumber;
  }

  function follow(options: Partial<RegistryFollowerOptions> = {}) {
    const count = new RequestCount();
    const publicClient = createPublicClient({
      chain: cellChain(devnet.chainId, rpc.url),
      transport: count.transport(rpc.url),
    }) as PublicClient;
    const follower = new RegistryFollower(
      { publicClient, deployment: devnet.deployment },
      { pollMs: POLL_MS, staleMs: STALE_MS, blockRange: 1_000, confirmations: 0, ...options },
    );
    followers.push(follower);
    follower.start();
    return { follower, count };
  }

  /** Polls (eth_blockNumber reads) it took until the view's head reached `block`. */
  async function pollsUntilSeen(
    follower: RegistryFollower,
    count: RequestCount,
    block: bigint,
  ): Promise<number> {
    const before = count.of("eth_blockNumber");
    await waitFor(`the view reaches block ${block}`, () => (follower.head ?? -1n) >= block);
    return count.of("eth_blockNumber") - before;
  }

  let a: TestDonor;
  let main: ReturnType<typeof follow>;

  it("replays the registry's events from the deployment block in bounded block ranges", async () => {
    a = await newDonor("peer-a");
    const replay = follow({ blockRange: 3 });
    assert.equal(await replay.follower.synced(20_000), true);
    assert.equal(replay.follower.status(a.operator.address, a.peerKey), "active");
    assert.equal(replay.follower.status(a.operator.address, keccak256(toHex("other"))), "inactive");
    const head = await faucet.publicClient.getBlockNumber({ cacheTime: 0 });
    const blocks = head - devnet.deployment.deployBlock + 1n;
    assert.ok(
      replay.count.logRanges.every((range) => range >= 1n && range <= 3n),
      "no call asks for more than 3 blocks",
    );
    assert.equal(
      replay.count.logRanges.reduce((sum, range) => sum + range, 0n),
      blocks,
      "every block from the deployment on is read once",
    );
    assert.equal(replay.count.of("eth_call"), 0, "no per-donor reads");
    await replay.follower.stop();
  });

  it("halves the block range of a call the provider refuses", async () => {
    rpc.maxLogRange = 2n;
    try {
      const capped = follow({ blockRange: 1_000 });
      assert.equal(await capped.follower.synced(20_000), true);
      assert.equal(capped.follower.status(a.operator.address, a.peerKey), "active");
      assert.ok(
        capped.count.logRanges.some((range) => range > 2n),
        "the first calls were refused",
      );
      assert.ok(capped.count.logRanges.at(-1)! <= 2n, "the last ones fit the provider's cap");
      await capped.follower.stop();
    } finally {
      rpc.maxLogRange = undefined;
    }
  });

  it("follows registration, top-up, unbonding, slashing, jailing, a new minimum and a rotation within one poll", async () => {
    main = follow();
    const { follower, count } = main;
    assert.equal(await follower.synced(20_000), true);
    const b = await newDonor("peer-b", { register: false });
    assert.equal(follower.status(b.operator.address, b.peerKey), "inactive", "not registered yet");

    const status = () => follower.status(b.operator.address, b.peerKey);
    const expect = async (tx: Promise<{ blockNumber: bigint }>, expected: string, what: string) => {
      const { blockNumber } = await tx;
      const polls = await pollsUntilSeen(follower, count, blockNumber);
      assert.ok(
        polls <= 2,
        `${what}: seen after ${polls} polls (one under way when it was mined, then the next)`,
      );
      assert.equal(status(), expected, what);
    };
    await expect(
      registerDonor(b.wallet, { operator: b.operator, peerKey: b.peerKey, metadataURI: "" }),
      "active",
      "registered",
    );
    await expect(requestUnbond(b.wallet, 1n), "inactive", "bonded below the minimum");
    await mintAtp(faucet, b.wallet.walletClient.account.address, 1n);
    await expect(stake(b.wallet, 1n), "active", "topped up");

    const jobId = keccak256(toHex("job-1"));
    const { chainId, deployment } = devnet;
    const one = await signedReceipt(b.operator, chainId, deployment.donorRegistry, jobId);
    const other = await signedReceipt(b.operator, chainId, deployment.donorRegistry, jobId, {
      outputCid: keccak256(toHex("output-other")),
    });
    await expect(slashEquivocation(faucet, one, other), "inactive", "slashed for equivocation");

    const params = await donorParams(faucet);
    await proposeDonorParams(faucet, { ...params, minStake: minStake / 4n });
    await passTime(params.paramsTimelock);
    await expect(applyDonorParams(faucet), "inactive", "a jailed key stays inactive under a lower minimum");
    const next = {
      operator: privateKeyToAccount(generatePrivateKey()),
      peerKey: keccak256(toHex("peer-b-next")),
    };
    await expect(rotateOperator(b.wallet, next), "inactive", "the jailed key is rotated away from");
    assert.equal(
      follower.status(next.operator.address, next.peerKey),
      "active",
      "the new key: half the stake left meets a quarter of the old minimum",
    );
    assert.equal(
      follower.status(a.operator.address, a.peerKey),
      "active",
      "the first donor is still followed",
    );
  });

  it("answers any number of lookups without a request, and costs one request a poll while the chain is idle", async () => {
    const { follower, count } = main;
    await waitFor("a poll", () => count.of("eth_blockNumber") > 0);
    const start = { total: count.total, polls: count.of("eth_blockNumber") };
    const lookups = Array.from({ length: 2_000 }, (_, i) => privateKeyToAccount(keccak256(toHex(i))).address);
    const answers = lookups.map((operator: Address) => follower.status(operator, a.peerKey));
    assert.ok(
      answers.every((answer) => answer === "inactive"),
      "unregistered operators are inactive",
    );
    assert.equal(count.total, start.total, "2,000 lookups sent no request");
    const target = count.of("eth_blockNumber") + 5;
    await waitFor("five more polls", () => count.of("eth_blockNumber") >= target);
    assert.equal(count.total - start.total, count.of("eth_blockNumber") - start.polls);
  });

  it("skips a poll whose head is below the view's instead of rebuilding the view", async () => {
    const { follower, count } = main;
    const status = () => follower.status(a.operator.address, a.peerKey);
    assert.equal(status(), "active");
    const polls = count.of("eth_blockNumber");
    const replays = count.of("eth_getLogs");
    rpc.lagging = 1;
    // The lagging answer, then two more polls: the second starts only once the first has caught up.
    await waitFor("the lagging answer and two more polls", () => count.of("eth_blockNumber") >= polls + 3);
    assert.equal(status(), "active", "one lagging answer does not reset the view");
    assert.equal(count.of("eth_getLogs"), replays, "nor replay the registry's history");
  });

  it("answers unknown once an RPC outage outlasts the staleness bound, and recovers", async () => {
    const { follower } = main;
    const status = () => follower.status(a.operator.address, a.peerKey);
    assert.equal(status(), "active");
    const cutAt = Date.now();
    rpc.down = true;
    try {
      assert.equal(status(), "active", "the view stands within the bound");
      await waitFor("the view goes stale", () => status() === "unknown");
      const elapsed = Date.now() - cutAt;
      assert.ok(elapsed >= STALE_MS - POLL_MS, `unknown after ${elapsed} ms, not before the bound`);
      assert.equal(
        follower.status(a.operator.address, keccak256(toHex("other"))),
        "unknown",
        "never inactive",
      );
    } finally {
      rpc.down = false;
    }
    await waitFor("the view catches up again", () => status() === "active");
  });

  it("starts over from the deployment block when the chain goes back below its head", async () => {
    const { follower, count } = main;
    const snapshot = await faucet.publicClient.request({ method: "evm_snapshot" as "eth_chainId" });
    const c = await newDonor("peer-c", { register: false });
    const registered = await register(c);
    await pollsUntilSeen(follower, count, registered);
    assert.equal(follower.status(c.operator.address, c.peerKey), "active");
    await faucet.publicClient.request({
      method: "evm_revert" as "eth_chainId",
      params: [snapshot] as unknown as undefined,
    });
    await waitFor(
      "the reverted registration is forgotten",
      () => follower.status(c.operator.address, c.peerKey) !== "active",
    );
    await waitFor("the view is rebuilt", () => follower.status(a.operator.address, a.peerKey) === "active");
  });
});
