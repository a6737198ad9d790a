// ZkChannels on a real Hardhat chain: lifecycle, queue hash chain, signature fallback and every
// refusal. The proof paths (a real Groth16 verifier and prover) are in ZkChannels.proof.test.ts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import {
  encodeFunctionData,
  getAddress,
  getContract,
  keccak256,
  maxUint256,
  parseAbi,
  parseEther,
  parseEventLogs,
  recoverAddress,
  slice,
  toHex,
  zeroAddress,
} from "viem";
import type { Address, Hex } from "viem";
import {
  compactSignatureHex,
  readZkEvents,
  signZkVoucherEip712,
  zkChannelsAbi,
  zkVoucherDigestOf,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader, Deployment } from "../../offchain/src/chain/index.ts";
import { FIELD, SettlementKey, StateTree, domainTagOf, nextQueueHash } from "../../offchain/src/zk/index.ts";
import type { QueueOp } from "../../offchain/src/zk/index.ts";
import { deployCell } from "../support/contracts/deploy.ts";
import { CHALLENGE_WINDOW, operatorAccount, signPermit } from "../support/contracts/fixture.ts";

/** The test token contracts/test/ReentrantToken.sol, as far as the test uses it. */
const reentrantTokenAbi = parseAbi([
  "function mint(address to, uint256 amount)",
  "function approve(address spender, uint256 value) returns (bool)",
  "function arm(address target, bytes payload)",
  "function lastRevert() view returns (bytes)",
  "function balanceOf(address owner) view returns (uint256)",
]);

const DEPTH = 4;
const QUEUE_SLOTS = 2;
const BATCH_SIZE = 2;
const DEPOSIT = parseEther("10");
const MAX_UINT96 = 2n ** 96n - 1n;

describe("ZkChannels", async () => {
  const connection = await network.create();
  const { networkHelpers } = connection;
  const voucherKey = operatorAccount("zk-voucher-key");
  const strangerKey = operatorAccount("zk-stranger-key");
  const settlementKey = new SettlementKey(Buffer.from(keccak256(toHex("zk-settlement-key")).slice(2), "hex"));
  const { ax, ay } = settlementKey.publicKey;

  async function zk() {
    const fx = await deployCell(connection);
    const { viem } = fx;
    const poseidonT3 = await viem.deployContract("PoseidonT3");
    const poseidonT6 = await viem.deployContract("PoseidonT6");
    const libraries = { PoseidonT3: poseidonT3.address, PoseidonT6: poseidonT6.address };
    // The constructor only needs code at the verifier; the proof tests use the real one.
    const verifier = fx.registry.address;
    const deploy = (args: {
      token?: Address;
      verifier?: Address;
      depth?: number;
      queueSlots?: number;
      batchSize?: number;
      challengeWindow?: bigint;
    }) =>
      viem.deployContract(
        "ZkChannels",
        [
          args.token ?? fx.token.address,
          args.verifier ?? verifier,
          args.depth ?? DEPTH,
          args.queueSlots ?? QUEUE_SLOTS,
          args.batchSize ?? BATCH_SIZE,
          args.challengeWindow ?? CHALLENGE_WINDOW,
        ],
        { libraries },
      );
    const address = (await deploy({})).address;
    const zkc = getContract({
      abi: zkChannelsAbi,
      address,
      client: { public: fx.publicClient, wallet: fx.deployer },
    });
    for (const wallet of [fx.buyer, fx.payee, fx.payee2, fx.reporter])
      await fx.token.write.approve([address, maxUint256], { account: wallet.account });
    const deployment: Deployment = {
      chainId: fx.chainId,
      atpToken: fx.token.address,
      donorRegistry: fx.registry.address,
      paymentChannels: fx.channels.address,
      zkChannels: address,
      deployBlock: 0n,
    };
    const reader = { publicClient: fx.publicClient, deployment } as unknown as ChainReader;
    const balance = (owner: Address) => fx.token.read.balanceOf([owner]);
    const open = (amount = DEPOSIT, payee: Address = fx.payee.account.address) =>
      zkc.write.open([payee, voucherKey.address, ax, ay, amount], { account: fx.buyer.account });
    return { ...fx, zkc, deploy, libraries, reader, balance, open };
  }

  /** One channel (leaf 0) from buyer to payee. */
  async function opened() {
    const fx = await zk();
    await fx.open();
    const voucher = (cumulativeAmount: bigint, leaf = 0, signer = voucherKey) =>
      signZkVoucherEip712(signer, fx.chainId, fx.zkc.address, { leaf, cumulativeAmount });
    return { ...fx, voucher };
  }

  describe("deployment", () => {
    it("starts at the empty tree's root with the deployment's domain tag", async () => {
      const { zkc, chainId, token, registry } = await networkHelpers.loadFixture(zk);
      const empty = new StateTree(DEPTH).root;
      assert.equal(await zkc.read.root(), empty);
      assert.equal(await zkc.read.rootConsumed([empty]), 1n);
      assert.equal(await zkc.read.rootConsumed([empty + 1n]), 0n);
      assert.equal(await zkc.read.domainTag(), domainTagOf(chainId, zkc.address));
      assert.deepEqual(
        [
          await zkc.read.depth(),
          await zkc.read.queueSlots(),
          await zkc.read.batchSize(),
          await zkc.read.token(),
          await zkc.read.verifier(),
          await zkc.read.challengeWindow(),
        ],
        [
          DEPTH,
          QUEUE_SLOTS,
          BATCH_SIZE,
          getAddress(token.address),
          getAddress(registry.address),
          CHALLENGE_WINDOW,
        ],
      );
      assert.deepEqual(
        [await zkc.read.queueLength(), await zkc.read.consumed(), await zkc.read.leafCount()],
        [0n, 0n, 0],
      );
      assert.equal(await zkc.read.queueHashAt([0n]), 0n);
    });

    it("refuses bad parameters, a zero address and a token or verifier without code", async () => {
      const { viem, zkc, deploy } = await networkHelpers.loadFixture(zk);
      type ZkError = Extract<(typeof zkChannelsAbi)[number], { type: "error" }>["name"];
      const check = (args: Parameters<typeof deploy>[0], error: ZkError, errorArgs: readonly unknown[]) =>
        viem.assertions.revertWithCustomErrorWithArgs(deploy(args), zkc, error, errorArgs as never);
      await check({ depth: 0 }, "DepthOutOfBounds", [0, 30]);
      await check({ depth: 31 }, "DepthOutOfBounds", [31, 30]);
      await check({ queueSlots: 0 }, "ZeroQueueSlots", []);
      await check({ batchSize: 0 }, "BatchSizeOutOfBounds", [0, 1024]);
      await check({ batchSize: 1025 }, "BatchSizeOutOfBounds", [1025, 1024]);
      await check({ challengeWindow: 59n }, "ChallengeWindowOutOfBounds", [59n, 60n, 30n * 86_400n]);
      await check({ challengeWindow: 30n * 86_400n + 1n }, "ChallengeWindowOutOfBounds", [
        30n * 86_400n + 1n,
        60n,
        30n * 86_400n,
      ]);
      await check({ verifier: zeroAddress }, "ZeroAddress", []);
      await check({ token: zeroAddress }, "ZeroAddress", []);
      await check({ verifier: voucherKey.address }, "NoCode", [voucherKey.address]);
      await check({ token: voucherKey.address }, "NoCode", [voucherKey.address]);
      // The largest tree computes its empty root within a deployment.
      await deploy({ depth: 30, batchSize: 1024 });
    });
  });

  describe("opening, topping up and closing", () => {
    it("opens leaves in order, takes the deposits and queues OPENs whose hashes match the off-chain chain", async () => {
      const { viem, zkc, open, buyer, payee, payee2, balance, publicClient } =
        await networkHelpers.loadFixture(zk);
      const before = await balance(buyer.account.address);
      await viem.assertions.emitWithArgs(open(), zkc, "ZkChannelOpened", [
        0,
        buyer.account.address,
        payee.account.address,
        voucherKey.address,
        ax,
        ay,
        DEPOSIT,
      ]);
      const second = await open(DEPOSIT * 2n, payee2.account.address);
      const receipt = await publicClient.waitForTransactionReceipt({ hash: second });
      const [queued] = parseEventLogs({ abi: zkChannelsAbi, eventName: "ZkQueued", logs: receipt.logs });
      const op = (leaf: number, amount: bigint, owner: Address): QueueOp => ({
        kind: "open",
        leaf,
        amount,
        ax,
        ay,
        payee: owner,
      });
      const q1 = nextQueueHash(0n, op(0, DEPOSIT, payee.account.address));
      const q2 = nextQueueHash(q1, op(1, DEPOSIT * 2n, payee2.account.address));
      assert.deepEqual(queued?.args, {
        position: 1n,
        kind: 1,
        leaf: 1,
        amount: DEPOSIT * 2n,
        ax,
        ay,
        payee: getAddress(payee2.account.address),
        queueHash: q2,
      });
      assert.deepEqual([await zkc.read.queueHashAt([1n]), await zkc.read.queueHashAt([2n])], [q1, q2]);
      assert.equal(await zkc.read.leafCount(), 2);
      assert.equal(await zkc.read.queueLength(), 2n);
      assert.equal(await balance(buyer.account.address), before - DEPOSIT * 3n);
      assert.equal(await balance(zkc.address), DEPOSIT * 3n);
      assert.deepEqual(await zkc.read.channelOf([1]), {
        buyer: getAddress(buyer.account.address),
        signer: voucherKey.address,
        payee: getAddress(payee2.account.address),
        deposited: DEPOSIT * 2n,
        withdrawn: 0n,
        closesAt: 0n,
        closeQueuedAt: 0n,
        refunded: false,
      });
      assert.equal(await zkc.read.buyerOf([1]), getAddress(buyer.account.address));
      assert.equal(await zkc.read.signerOf([1]), voucherKey.address);
      assert.equal(await zkc.read.payeeOf([1]), getAddress(payee2.account.address));
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.read.queueHashAt([3n]),
        zkc,
        "QueuePositionOutOfRange",
        [3n, 2n],
      );
    });

    it("refuses a zero deposit, zero addresses, a key coordinate outside the field and a full tree", async () => {
      const { viem, zkc, buyer, payee, open } = await networkHelpers.loadFixture(zk);
      const openWith = (payeeAddress: Address, signer: Address, x: bigint, y: bigint, amount: bigint) =>
        zkc.write.open([payeeAddress, signer, x, y, amount], { account: buyer.account });
      const p = payee.account.address;
      await viem.assertions.revertWithCustomError(
        openWith(p, voucherKey.address, ax, ay, 0n),
        zkc,
        "ZeroAmount",
      );
      await viem.assertions.revertWithCustomError(
        openWith(zeroAddress, voucherKey.address, ax, ay, 1n),
        zkc,
        "ZeroAddress",
      );
      await viem.assertions.revertWithCustomError(openWith(p, zeroAddress, ax, ay, 1n), zkc, "ZeroAddress");
      await viem.assertions.revertWithCustomErrorWithArgs(
        openWith(p, voucherKey.address, FIELD, ay, 1n),
        zkc,
        "NotAFieldElement",
        [FIELD],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        openWith(p, voucherKey.address, ax, FIELD + 1n, 1n),
        zkc,
        "NotAFieldElement",
        [FIELD + 1n],
      );
      for (let leaf = 0; leaf < 2 ** DEPTH; leaf++) await open(1n);
      await viem.assertions.revertWithCustomErrorWithArgs(open(1n), zkc, "TreeFull", [16]);
    });

    it("opens with an EIP-2612 permit and no prior approval", async () => {
      const { zkc, token, reporter, payee, chainId, balance, publicClient } =
        await networkHelpers.loadFixture(zk);
      await token.write.approve([zkc.address, 0n], { account: reporter.account });
      const deadline = BigInt(await networkHelpers.time.latest()) + 3_600n;
      const { v, r, s } = await signPermit(reporter, {
        chainId,
        token: token.address,
        spender: zkc.address,
        value: DEPOSIT,
        nonce: await token.read.nonces([reporter.account.address]),
        deadline,
      });
      const before = await balance(reporter.account.address);
      const hash = await zkc.write.openWithPermit(
        [payee.account.address, voucherKey.address, ax, ay, DEPOSIT, deadline, v, r, s],
        { account: reporter.account },
      );
      await publicClient.waitForTransactionReceipt({ hash });
      assert.equal(await balance(reporter.account.address), before - DEPOSIT);
      assert.equal((await zkc.read.channelOf([0])).buyer, getAddress(reporter.account.address));
    });

    it("tops up from anyone, queues TOPUPs and keeps the deposit below 2^96", async () => {
      const { viem, zkc, payee, reporter, balance } = await networkHelpers.loadFixture(opened);
      const before = await balance(reporter.account.address);
      await viem.assertions.emitWithArgs(
        zkc.write.topUp([0, 5n], { account: reporter.account }),
        zkc,
        "ZkToppedUp",
        [0, reporter.account.address, 5n, DEPOSIT + 5n],
      );
      const q1 = await zkc.read.queueHashAt([1n]);
      const topUp: QueueOp = { kind: "topUp", leaf: 0, amount: 5n, ax: 0n, ay: 0n, payee: null };
      assert.equal(await zkc.read.queueHashAt([2n]), nextQueueHash(q1, topUp));
      assert.equal(await balance(reporter.account.address), before - 5n);
      assert.equal((await zkc.read.channelOf([0])).deposited, DEPOSIT + 5n);
      await viem.assertions.revertWithCustomError(
        zkc.write.topUp([0, 0n], { account: payee.account }),
        zkc,
        "ZeroAmount",
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.topUp([1, 1n], { account: payee.account }),
        zkc,
        "UnknownLeaf",
        [1],
      );
      const room = MAX_UINT96 - DEPOSIT - 5n;
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.topUp([0, room + 1n], { account: payee.account }),
        zkc,
        "DepositOverflow",
        [0, MAX_UINT96 + 1n],
      );
    });

    it("closes: buyer-only start, the challenge window, then a queued CLOSE; no top-up meanwhile", async () => {
      const { viem, zkc, buyer, payee, reporter } = await networkHelpers.loadFixture(opened);
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.startClose([0], { account: payee.account }),
        zkc,
        "NotBuyer",
        [0, payee.account.address],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.finalizeClose([0], { account: reporter.account }),
        zkc,
        "NotClosing",
        [0],
      );
      await zkc.write.startClose([0], { account: buyer.account });
      const closesAt = BigInt(await networkHelpers.time.latest()) + CHALLENGE_WINDOW;
      assert.equal((await zkc.read.channelOf([0])).closesAt, closesAt);
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.startClose([0], { account: buyer.account }),
        zkc,
        "ChannelClosing",
        [0],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.topUp([0, 1n], { account: buyer.account }),
        zkc,
        "ChannelClosing",
        [0],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.finalizeClose([0], { account: reporter.account }),
        zkc,
        "ChallengeWindowOpen",
        [closesAt],
      );
      await networkHelpers.time.increaseTo(closesAt);
      await viem.assertions.emitWithArgs(
        zkc.write.finalizeClose([0], { account: reporter.account }),
        zkc,
        "ZkCloseFinalized",
        [0, 1n],
      );
      const close: QueueOp = { kind: "close", leaf: 0, amount: 0n, ax: 0n, ay: 0n, payee: null };
      assert.equal(await zkc.read.queueHashAt([2n]), nextQueueHash(await zkc.read.queueHashAt([1n]), close));
      assert.equal((await zkc.read.channelOf([0])).closeQueuedAt, 2n);
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.finalizeClose([0], { account: buyer.account }),
        zkc,
        "CloseAlreadyQueued",
        [0],
      );
    });

    it("publishes every queued operation for the off-chain rebuild, in order", async () => {
      const { zkc, buyer, payee, reporter, reader } = await networkHelpers.loadFixture(opened);
      await zkc.write.topUp([0, 7n], { account: reporter.account });
      await zkc.write.startClose([0], { account: buyer.account });
      await networkHelpers.time.increase(CHALLENGE_WINDOW);
      await zkc.write.finalizeClose([0], { account: reporter.account });
      const events = await readZkEvents(reader, 0n, "latest");
      assert.deepEqual(
        events.map((event) => (event.type === "queued" ? [event.position, event.op] : event.type)),
        [
          [0n, { kind: "open", leaf: 0, amount: DEPOSIT, ax, ay, payee: getAddress(payee.account.address) }],
          [1n, { kind: "topUp", leaf: 0, amount: 7n, ax: 0n, ay: 0n, payee: null }],
          [2n, { kind: "close", leaf: 0, amount: 0n, ax: 0n, ay: 0n, payee: null }],
        ],
      );
      let chained = 0n;
      for (const event of events) {
        if (event.type !== "queued") continue;
        chained = nextQueueHash(chained, event.op);
        assert.equal(event.queueHash, chained);
      }
      assert.equal(await zkc.read.queueHashAt([3n]), chained);
    });
  });

  describe("signature fallback", () => {
    it("digests ZkVouchers as the off-chain signer does", async () => {
      const { zkc, chainId, voucher } = await networkHelpers.loadFixture(opened);
      for (const [leaf, amount] of [
        [0, 1n],
        [3, MAX_UINT96],
      ] as const) {
        const digest = await zkc.read.zkVoucherDigest([leaf, amount]);
        assert.equal(digest, zkVoucherDigestOf(chainId, zkc.address, { leaf, cumulativeAmount: amount }));
        assert.equal(
          await recoverAddress({ hash: digest, signature: await voucher(amount, leaf) }),
          voucherKey.address,
        );
      }
    });

    it("pays 65- and 64-byte vouchers' increases to the payee, each amount at most once", async () => {
      const { viem, zkc, payee, reporter, voucher, balance } = await networkHelpers.loadFixture(opened);
      const before = await balance(payee.account.address);
      const first = await voucher(3n);
      await viem.assertions.emitWithArgs(
        zkc.write.settleBySignature([0, 3n, first], { account: reporter.account }),
        zkc,
        "ZkSettledBySignature",
        [0, payee.account.address, 3n, 3n],
      );
      const full = await voucher(8n);
      const compact = compactSignatureHex(full);
      await zkc.write.settleBySignature([0, 8n, compact], { account: reporter.account });
      assert.equal(await balance(payee.account.address), before + 8n);
      assert.equal((await zkc.read.channelOf([0])).withdrawn, 8n);
      for (const [amount, signature] of [
        [8n, full],
        [3n, first],
      ] as const)
        await viem.assertions.revertWithCustomErrorWithArgs(
          zkc.write.settleBySignature([0, amount, signature], { account: reporter.account }),
          zkc,
          "NothingToPay",
          [0],
        );
      assert.equal(await balance(payee.account.address), before + 8n);
    });

    it("refuses a wrong signer, a voucher for another leaf, more than the deposit and any voucher once the CLOSE is queued", async () => {
      const { viem, zkc, buyer, reporter, voucher } = await networkHelpers.loadFixture(opened);
      const settle = (amount: bigint, signature: Hex, leaf = 0) =>
        zkc.write.settleBySignature([leaf, amount, signature], { account: reporter.account });
      await viem.assertions.revertWithCustomErrorWithArgs(
        settle(1n, await voucher(1n, 0, strangerKey)),
        zkc,
        "InvalidSignature",
        [voucherKey.address],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        settle(1n, await voucher(2n)),
        zkc,
        "InvalidSignature",
        [voucherKey.address],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        settle(1n, slice(await voucher(1n), 0, 63)),
        zkc,
        "InvalidSignature",
        [voucherKey.address],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        settle(DEPOSIT + 1n, await voucher(DEPOSIT + 1n)),
        zkc,
        "OverDeposit",
        [0, DEPOSIT + 1n, DEPOSIT],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        settle(1n, await voucher(1n, 1), 1),
        zkc,
        "UnknownLeaf",
        [1],
      );
      // Within the challenge window the payee may still settle; once the CLOSE is queued, not.
      await zkc.write.startClose([0], { account: buyer.account });
      await settle(2n, await voucher(2n));
      await networkHelpers.time.increase(CHALLENGE_WINDOW);
      await zkc.write.finalizeClose([0], { account: reporter.account });
      await viem.assertions.revertWithCustomErrorWithArgs(
        settle(3n, await voucher(3n)),
        zkc,
        "CloseAlreadyQueued",
        [0],
      );
    });
  });

  describe("settlement and withdrawal inputs", () => {
    it("refuses malformed batches before calling the verifier, and a failing verifier call as InvalidProof", async () => {
      const { viem, zkc, reporter } = await networkHelpers.loadFixture(opened);
      const proof = [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n] as const;
      const settle = (newRoot: bigint, ops: bigint, transfers: bigint[]) =>
        zkc.write.settle([newRoot, ops, transfers, proof], { account: reporter.account });
      await viem.assertions.revertWithCustomErrorWithArgs(settle(FIELD, 1n, [0n]), zkc, "NotAFieldElement", [
        FIELD,
      ]);
      await viem.assertions.revertWithCustomErrorWithArgs(settle(1n, 1n, []), zkc, "WrongTransferCount", [
        0n,
        1n,
      ]);
      await viem.assertions.revertWithCustomErrorWithArgs(
        settle(1n, 1n, [0n, 0n]),
        zkc,
        "WrongTransferCount",
        [2n, 1n],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        settle(1n, 1n, [2n ** 252n]),
        zkc,
        "TransferOutOfRange",
        [0n],
      );
      await viem.assertions.revertWithCustomError(settle(1n, 0n, [0n]), zkc, "EmptyBatch");
      await viem.assertions.revertWithCustomErrorWithArgs(settle(1n, 3n, [0n]), zkc, "TooManyOperations", [
        3n,
        2,
      ]);
      await viem.assertions.revertWithCustomErrorWithArgs(settle(1n, 2n, [0n]), zkc, "QueueOverrun", [
        2n,
        1n,
      ]);
      // The stand-in verifier (a contract without verifyProof) makes the call fail.
      await viem.assertions.revertWithCustomError(settle(1n, 1n, [0n]), zkc, "InvalidProof");
      await viem.assertions.revertWithCustomError(settle(1n, 0n, [2n ** 252n - 1n]), zkc, "InvalidProof");
    });

    it("refuses a withdrawal or refund against an unknown root, a wrong path or data not in the root", async () => {
      const { viem, zkc, payee, reporter, buyer } = await networkHelpers.loadFixture(opened);
      const tree = new StateTree(DEPTH);
      const data = { ax, ay, payee: payee.account.address, deposit: DEPOSIT, paid: 1n };
      const siblings = tree.path(0).siblings;
      const empty = tree.root;
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.withdraw([0, data, siblings, empty + 1n], { account: reporter.account }),
        zkc,
        "UnknownRoot",
        [empty + 1n],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.withdraw([0, data, siblings.slice(1), empty], { account: reporter.account }),
        zkc,
        "WrongPathLength",
        [3n, DEPTH],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.withdraw([0, data, siblings, empty], { account: reporter.account }),
        zkc,
        "LeafNotInRoot",
        [0, empty],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.withdraw([5, data, siblings, empty], { account: reporter.account }),
        zkc,
        "UnknownLeaf",
        [5],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.refund([0, data, siblings, empty], { account: reporter.account }),
        zkc,
        "CloseNotQueued",
        [0],
      );
      await zkc.write.startClose([0], { account: buyer.account });
      await networkHelpers.time.increase(CHALLENGE_WINDOW);
      await zkc.write.finalizeClose([0], { account: reporter.account });
      await viem.assertions.revertWithCustomErrorWithArgs(
        zkc.write.refund([0, data, siblings, empty], { account: reporter.account }),
        zkc,
        "LeafNotInRoot",
        [0, empty],
      );
    });
  });

  describe("reentrancy", () => {
    it("guards every token move: a hostile token's callback is refused", async () => {
      const { viem, deploy, buyer, payee, reporter, chainId } = await networkHelpers.loadFixture(zk);
      const hostile = getContract({
        abi: reentrantTokenAbi,
        address: (await viem.deployContract("ReentrantToken")).address,
        client: { public: await viem.getPublicClient(), wallet: buyer },
      });
      const address = (await deploy({ token: hostile.address })).address;
      const zkc = getContract({
        abi: zkChannelsAbi,
        address,
        client: { public: await viem.getPublicClient(), wallet: buyer },
      });
      for (const wallet of [buyer, reporter]) {
        await hostile.write.mint([wallet.account.address, DEPOSIT * 10n]);
        await hostile.write.approve([address, maxUint256], { account: wallet.account });
      }
      const guardError = keccak256(toHex("ReentrancyGuardReentrantCall()")).slice(0, 10);
      const openCall = encodeFunctionData({
        abi: zkChannelsAbi,
        functionName: "open",
        args: [payee.account.address, voucherKey.address, ax, ay, 1n],
      });
      // open → transferFrom → open again
      await hostile.write.arm([address, openCall]);
      await zkc.write.open([payee.account.address, voucherKey.address, ax, ay, DEPOSIT], {
        account: buyer.account,
      });
      assert.equal(await hostile.read.lastRevert(), guardError);
      // topUp → transferFrom → topUp again
      const topUpCall = encodeFunctionData({ abi: zkChannelsAbi, functionName: "topUp", args: [0, 1n] });
      await hostile.write.arm([address, topUpCall]);
      await zkc.write.topUp([0, 1n], { account: reporter.account });
      assert.equal(await hostile.read.lastRevert(), guardError);
      assert.equal((await zkc.read.channelOf([0])).deposited, DEPOSIT + 1n);
      // settleBySignature → transfer → settleBySignature with a higher voucher
      const sign = (amount: bigint) =>
        signZkVoucherEip712(voucherKey, chainId, address, { leaf: 0, cumulativeAmount: amount });
      const again = encodeFunctionData({
        abi: zkChannelsAbi,
        functionName: "settleBySignature",
        args: [0, 5n, await sign(5n)],
      });
      await hostile.write.arm([address, again]);
      await zkc.write.settleBySignature([0, 2n, await sign(2n)], { account: reporter.account });
      assert.equal(await hostile.read.lastRevert(), guardError);
      assert.equal((await zkc.read.channelOf([0])).withdrawn, 2n);
      assert.equal(await hostile.read.balanceOf([payee.account.address]), 2n);
    });
  });
});
