import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import { keccak256, parseEther, toHex, zeroAddress, zeroHash } from "viem";
import type { ContractErrorName, Hex } from "viem";
import { compactSignatureHex } from "../../offchain/src/chain/index.ts";
import { cellDomain, jobIdOf } from "../../offchain/src/protocol/index.ts";
import type { Receipt } from "../../offchain/src/protocol/index.ts";
import { deployCell } from "../support/contracts/deploy.ts";
import {
  EQUIVOCATION_BPS,
  MIN_STAKE,
  OUTVOTED_BPS,
  REPORTER_BPS,
  UNBONDING_DELAY,
  donorParams,
  operatorAccount,
  peerKeyOf,
  jobSpec,
  signPermit,
  signedReceipt,
} from "../support/contracts/fixture.ts";

const JOB = keccak256(toHex("job-1"));
const STAKE = parseEther("1000");

describe("DonorRegistry", async () => {
  const connection = await network.create();
  const { networkHelpers } = connection;

  function cell() {
    return deployCell(connection);
  }

  /** Four staked, registered donors with operator keys op0..op3. */
  async function registeredDonors() {
    const fx = await cell();
    const operators = [0, 1, 2, 3].map((i) => operatorAccount(`op${i}`));
    for (const [i, operator] of operators.entries()) {
      const donor = fx.donors[i]!;
      await fx.registry.write.stake([STAKE], { account: donor.account });
      await fx.registry.write.register([operator.address, peerKeyOf(`p${i}`), `ipfs://donor-${i}`], {
        account: donor.account,
      });
    }
    return { ...fx, operators };
  }

  describe("constructor and parameters", () => {
    it("rejects invalid parameters", async () => {
      const { viem, token, deployer, registry } = await networkHelpers.loadFixture(cell);
      const params = donorParams(deployer.account.address);
      for (const bad of [
        { ...params, treasury: zeroAddress },
        { ...params, minStake: 0n },
        { ...params, equivocationSlashBps: 10_001 },
        { ...params, outvotedSlashBps: 10_001 },
        { ...params, reporterRewardBps: 10_001 },
        { ...params, minOutvoteQuorum: 0 },
      ]) {
        await viem.assertions.revertWithCustomError(
          viem.deployContract("DonorRegistry", [token.address, deployer.account.address, bad]),
          registry,
          "InvalidParams",
        );
      }
    });

    it("lets only the owner change parameters, and emits ParamsUpdated", async () => {
      const { viem, registry, reporter, deployer } = await networkHelpers.loadFixture(cell);
      const next = { ...donorParams(reporter.account.address), minStake: 5n };
      await viem.assertions.emit(registry.write.setParams([next]), registry, "ParamsUpdated");
      assert.equal((await registry.read.params()).minStake, 5n);
      await viem.assertions.revertWithCustomError(
        registry.write.setParams([next], { account: reporter.account }),
        registry,
        "OwnableUnauthorizedAccount",
      );
      await viem.assertions.revertWithCustomError(
        registry.write.setParams([{ ...next, treasury: zeroAddress }], { account: deployer.account }),
        registry,
        "InvalidParams",
      );
    });
  });

  describe("staking", () => {
    it("stakes and tops up, moving tokens and emitting Staked", async () => {
      const { viem, registry, token, donors } = await networkHelpers.loadFixture(cell);
      const donor = donors[0]!;
      await viem.assertions.emitWithArgs(
        registry.write.stake([STAKE], { account: donor.account }),
        registry,
        "Staked",
        [donor.account.address, STAKE, STAKE],
      );
      await registry.write.stake([1n], { account: donor.account });
      assert.equal((await registry.read.stakes([donor.account.address]))[0], STAKE + 1n);
      assert.equal(await token.read.balanceOf([registry.address]), STAKE + 1n);
    });

    it("rejects a zero stake and one beyond 96 bits", async () => {
      const { viem, registry, donors } = await networkHelpers.loadFixture(cell);
      await viem.assertions.revertWithCustomError(
        registry.write.stake([0n], { account: donors[0]!.account }),
        registry,
        "ZeroAmount",
      );
      await viem.assertions.revertWithCustomError(
        registry.write.stake([2n ** 96n], { account: donors[0]!.account }),
        registry,
        "SafeCastOverflowedUintDowncast",
      );
    });

    it("fails a permit stake whose permit is invalid and whose allowance is short", async () => {
      const { viem, registry, token, donors, chainId } = await networkHelpers.loadFixture(cell);
      const donor = donors[0]!;
      await token.write.approve([registry.address, 0n], { account: donor.account });
      const wrong = await signPermit(donor, {
        chainId,
        token: token.address,
        spender: registry.address,
        value: 1n,
        nonce: 0n,
        deadline: 2n ** 40n,
      });
      await viem.assertions.revertWithCustomError(
        registry.write.stakeWithPermit([STAKE, 2n ** 40n, wrong.v, wrong.r, wrong.s], {
          account: donor.account,
        }),
        token,
        "ERC20InsufficientAllowance",
      );
    });

    it("stakes with an EIP-2612 permit and no prior approval, even when the permit was front-run", async () => {
      const { registry, token, donors, chainId, publicClient } = await networkHelpers.loadFixture(cell);
      const donor = donors[0]!;
      await token.write.approve([registry.address, 0n], { account: donor.account });
      const deadline = BigInt((await publicClient.getBlock()).timestamp) + 3600n;
      const nonce = await token.read.nonces([donor.account.address]);
      const permit = { chainId, token: token.address, spender: registry.address, value: STAKE, deadline };
      const first = await signPermit(donor, { ...permit, nonce });
      await registry.write.stakeWithPermit([STAKE, deadline, first.v, first.r, first.s], {
        account: donor.account,
      });
      assert.equal((await registry.read.stakes([donor.account.address]))[0], STAKE);
      // A second permit, submitted by someone else first: the stake still goes through.
      const second = await signPermit(donor, { ...permit, nonce: nonce + 1n });
      await token.write.permit([
        donor.account.address,
        registry.address,
        STAKE,
        deadline,
        second.v,
        second.r,
        second.s,
      ]);
      await registry.write.stakeWithPermit([STAKE, deadline, second.v, second.r, second.s], {
        account: donor.account,
      });
      assert.equal((await registry.read.stakes([donor.account.address]))[0], STAKE * 2n);
    });
  });

  describe("registration", () => {
    it("registers operator, peer key and metadata; isActive follows the bonded stake", async () => {
      const { viem, registry, donors } = await networkHelpers.loadFixture(cell);
      const donor = donors[0]!;
      const operator = operatorAccount("solo");
      assert.equal(await registry.read.isActive([operator.address]), false);
      await registry.write.stake([MIN_STAKE], { account: donor.account });
      await viem.assertions.emitWithArgs(
        registry.write.register([operator.address, peerKeyOf("solo"), "ipfs://meta"], {
          account: donor.account,
        }),
        registry,
        "Registered",
        [donor.account.address, operator.address, peerKeyOf("solo"), "ipfs://meta"],
      );
      assert.equal(await registry.read.isActive([operator.address]), true);
      assert.deepEqual(await registry.read.registrationOf([donor.account.address]), {
        operator: operator.address,
        peerKey: peerKeyOf("solo"),
        metadataURI: "ipfs://meta",
      });
      assert.equal(
        (await registry.read.donorOf([operator.address])).toLowerCase(),
        donor.account.address.toLowerCase(),
      );
      await registry.write.requestUnbond([1n], { account: donor.account });
      assert.equal(await registry.read.isActive([operator.address]), false);
    });

    it("rejects zero keys, a low stake, a second registration and a taken operator", async () => {
      const { viem, registry, donors } = await networkHelpers.loadFixture(cell);
      const [a, b] = [donors[0]!, donors[1]!];
      const op = operatorAccount("x").address;
      const revert = (promise: Promise<Hex>, error: ContractErrorName<typeof registry.abi>) =>
        viem.assertions.revertWithCustomError(promise, registry, error);
      await revert(
        registry.write.register([op, peerKeyOf("x"), ""], { account: a.account }),
        "BelowMinimumStake",
      );
      await registry.write.stake([MIN_STAKE], { account: a.account });
      await registry.write.stake([MIN_STAKE], { account: b.account });
      await revert(
        registry.write.register([zeroAddress, peerKeyOf("x"), ""], { account: a.account }),
        "InvalidOperator",
      );
      await revert(registry.write.register([op, zeroHash, ""], { account: a.account }), "InvalidPeerKey");
      await registry.write.register([op, peerKeyOf("x"), ""], { account: a.account });
      await revert(
        registry.write.register([operatorAccount("y").address, peerKeyOf("y"), ""], { account: a.account }),
        "AlreadyRegistered",
      );
      await revert(
        registry.write.register([op, peerKeyOf("z"), ""], { account: b.account }),
        "OperatorTaken",
      );
    });

    it("updates the metadata URI of a registered donor only", async () => {
      const { viem, registry, donors } = await networkHelpers.loadFixture(registeredDonors);
      await viem.assertions.emitWithArgs(
        registry.write.setMetadataURI(["ipfs://new"], { account: donors[0]!.account }),
        registry,
        "MetadataUpdated",
        [donors[0]!.account.address, "ipfs://new"],
      );
      await viem.assertions.revertWithCustomError(
        registry.write.setMetadataURI(["ipfs://x"], { account: donors[5]!.account }),
        registry,
        "NotRegistered",
      );
    });
  });

  describe("unbonding", () => {
    it("unbonds, waits the delay, withdraws", async () => {
      const { viem, registry, token, donors } = await networkHelpers.loadFixture(registeredDonors);
      const donor = donors[0]!;
      await viem.assertions.emit(
        registry.write.requestUnbond([STAKE / 2n], { account: donor.account }),
        registry,
        "UnbondRequested",
      );
      await viem.assertions.revertWithCustomError(
        registry.write.withdraw({ account: donor.account }),
        registry,
        "StillUnbonding",
      );
      await networkHelpers.time.increase(UNBONDING_DELAY);
      const before = await token.read.balanceOf([donor.account.address]);
      await viem.assertions.emitWithArgs(
        registry.write.withdraw({ account: donor.account }),
        registry,
        "Withdrawn",
        [donor.account.address, STAKE / 2n],
      );
      assert.equal(await token.read.balanceOf([donor.account.address]), before + STAKE / 2n);
      assert.deepEqual(await registry.read.stakes([donor.account.address]), [STAKE / 2n, 0n, 0n]);
      await viem.assertions.revertWithCustomError(
        registry.write.withdraw({ account: donor.account }),
        registry,
        "NothingToWithdraw",
      );
    });

    it("rejects a zero unbond and one above the bonded stake", async () => {
      const { viem, registry, donors } = await networkHelpers.loadFixture(registeredDonors);
      const donor = donors[0]!;
      await viem.assertions.revertWithCustomError(
        registry.write.requestUnbond([0n], { account: donor.account }),
        registry,
        "ZeroAmount",
      );
      await viem.assertions.revertWithCustomError(
        registry.write.requestUnbond([STAKE + 1n], { account: donor.account }),
        registry,
        "InsufficientBonded",
      );
    });
  });

  describe("receipts", () => {
    it("accepts a receipt signed off-chain by viem and rejects one signed for another chain or contract", async () => {
      const { registry, chainId, channels, operators } = await networkHelpers.loadFixture(registeredDonors);
      const op = operators[0]!;
      const good = await signedReceipt(op, chainId, registry.address, JOB);
      assert.equal(await registry.read.verifyReceipt([good.receipt, good.signature]), true);
      const otherChain = await signedReceipt(op, chainId + 1, registry.address, JOB);
      assert.equal(await registry.read.verifyReceipt([otherChain.receipt, otherChain.signature]), false);
      const otherContract = await signedReceipt(op, chainId, channels.address, JOB);
      assert.equal(
        await registry.read.verifyReceipt([otherContract.receipt, otherContract.signature]),
        false,
      );
      assert.equal(
        await registry.read.verifyReceipt([good.receipt, compactSignatureHex(good.signature)]),
        true,
      );
      assert.equal(await registry.read.verifyReceipt([good.receipt, "0x1234"]), false);
      const tampered = { ...good.receipt, fuelUsed: good.receipt.fuelUsed + 1n };
      assert.equal(await registry.read.verifyReceipt([tampered, good.signature]), false);
    });
  });

  describe("slashing for equivocation", () => {
    it("slashes, pays the reporter its share and the treasury the rest, once per (job, operator)", async () => {
      const { viem, registry, token, chainId, operators, reporter, treasury, donors } =
        await networkHelpers.loadFixture(registeredDonors);
      const op = operators[0]!;
      const a = await signedReceipt(op, chainId, registry.address, JOB);
      const b = await signedReceipt(op, chainId, registry.address, JOB, {
        outputCid: keccak256(toHex("other")),
      });
      const slashed = (STAKE * BigInt(EQUIVOCATION_BPS)) / 10_000n;
      const reward = (slashed * BigInt(REPORTER_BPS)) / 10_000n;
      const reporterBefore = await token.read.balanceOf([reporter.account.address]);
      const treasuryBefore = await token.read.balanceOf([treasury.account.address]);
      await viem.assertions.emitWithArgs(
        registry.write.slashEquivocation([a.receipt, a.signature, b.receipt, b.signature], {
          account: reporter.account,
        }),
        registry,
        "Slashed",
        [op.address, JOB, 0, reporter.account.address, slashed, reward],
      );
      assert.equal(await token.read.balanceOf([reporter.account.address]), reporterBefore + reward);
      assert.equal(await token.read.balanceOf([treasury.account.address]), treasuryBefore + slashed - reward);
      assert.equal((await registry.read.stakes([donors[0]!.account.address]))[0], STAKE - slashed);
      await viem.assertions.revertWithCustomError(
        registry.write.slashEquivocation([a.receipt, a.signature, b.receipt, b.signature], {
          account: reporter.account,
        }),
        registry,
        "AlreadySlashed",
      );
      await viem.assertions.revertWithCustomError(
        registry.write.slashEquivocation([b.receipt, b.signature, a.receipt, a.signature], {
          account: reporter.account,
        }),
        registry,
        "AlreadySlashed",
      );
    });

    it("slashes unbonding stake too", async () => {
      const { registry, chainId, operators, reporter, donors } =
        await networkHelpers.loadFixture(registeredDonors);
      const donor = donors[0]!;
      await registry.write.requestUnbond([STAKE], { account: donor.account });
      const a = await signedReceipt(operators[0]!, chainId, registry.address, JOB);
      const b = await signedReceipt(operators[0]!, chainId, registry.address, JOB, { status: 2 });
      await registry.write.slashEquivocation([a.receipt, a.signature, b.receipt, b.signature], {
        account: reporter.account,
      });
      const [bonded, unbonding] = await registry.read.stakes([donor.account.address]);
      assert.equal(bonded, 0n);
      assert.equal(unbonding, STAKE - (STAKE * BigInt(EQUIVOCATION_BPS)) / 10_000n);
    });

    it("rejects different jobs, different executors, equal results, bad signatures, unknown operators, empty stake", async () => {
      const { viem, registry, chainId, operators, reporter, donors } =
        await networkHelpers.loadFixture(registeredDonors);
      const [op0, op1] = [operators[0]!, operators[1]!];
      const slash = (x: { receipt: unknown; signature: Hex }, y: { receipt: unknown; signature: Hex }) =>
        registry.write.slashEquivocation([x.receipt as never, x.signature, y.receipt as never, y.signature], {
          account: reporter.account,
        });
      const base = await signedReceipt(op0, chainId, registry.address, JOB);
      const otherOutput = { fuelUsed: 7n };
      const otherJob = await signedReceipt(
        op0,
        chainId,
        registry.address,
        keccak256(toHex("job-2")),
        otherOutput,
      );
      await viem.assertions.revertWithCustomError(slash(base, otherJob), registry, "DifferentJobs");
      const otherExecutor = await signedReceipt(op1, chainId, registry.address, JOB, otherOutput);
      await viem.assertions.revertWithCustomError(slash(base, otherExecutor), registry, "DifferentExecutors");
      const same = await signedReceipt(op0, chainId, registry.address, JOB, { finishedAt: 1n });
      await viem.assertions.revertWithCustomError(slash(base, same), registry, "NotEquivocation");
      const differs = await signedReceipt(op0, chainId, registry.address, JOB, otherOutput);
      const forged = { receipt: differs.receipt, signature: otherExecutor.signature };
      await viem.assertions.revertWithCustomError(slash(base, forged), registry, "InvalidSignature");
      const otherChain = await signedReceipt(op0, chainId + 1, registry.address, JOB, otherOutput);
      await viem.assertions.revertWithCustomError(slash(base, otherChain), registry, "InvalidSignature");
      const stranger = operatorAccount("stranger");
      const s1 = await signedReceipt(stranger, chainId, registry.address, JOB);
      const s2 = await signedReceipt(stranger, chainId, registry.address, JOB, otherOutput);
      await viem.assertions.revertWithCustomError(slash(s1, s2), registry, "UnknownOperator");
      await registry.write.setParams([{ ...donorParams(reporter.account.address), equivocationSlashBps: 0 }]);
      await viem.assertions.revertWithCustomError(slash(base, differs), registry, "NothingToSlash");
      assert.equal((await registry.read.stakes([donors[0]!.account.address]))[0], STAKE);
    });
  });

  describe("slashing when outvoted", () => {
    type Fx = Awaited<ReturnType<typeof registeredDonors>>;
    type Signed = { receipt: Receipt; signature: Hex };

    /** The accused (op0) against op1..op3 for a job whose spec asks for `replicas` executions. */
    async function outvote(fx: Fx, replicas = 4) {
      const { chainId, registry, operators } = fx;
      const spec = jobSpec(replicas);
      const job = jobIdOf(cellDomain(chainId, registry.address), spec);
      const accused = await signedReceipt(operators[0]!, chainId, registry.address, job, {
        outputCid: keccak256(toHex("wrong")),
      });
      const quorum = await Promise.all(
        operators.slice(1).map((op) => signedReceipt(op, chainId, registry.address, job)),
      );
      const slash = (a: Signed, q: Signed[], sigs?: Hex[], s = spec) =>
        registry.write.slashOutvoted(
          [s, a.receipt, a.signature, q.map((x) => x.receipt), sigs ?? q.map((x) => x.signature)],
          {
            account: fx.reporter.account,
          },
        );
      return { spec, job, accused, quorum, slash };
    }

    it("needs max(2f + 1, minOutvoteQuorum) receipts, f = floor((n - 1) / 3)", async () => {
      const { registry } = await networkHelpers.loadFixture(registeredDonors);
      const required = await Promise.all(
        [1n, 4n, 6n, 7n, 10n, 13n].map((n) => registry.read.outvoteQuorum([n])),
      );
      assert.deepEqual(required, [3n, 3n, 3n, 5n, 7n, 9n]);
    });

    it("accuses an operator outvoted by 2f+1 distinct active operators, once, without slashing yet", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, court, operators, donors } = fx;
      const { job, accused, quorum, slash } = await outvote(fx);
      const amount = (STAKE * BigInt(OUTVOTED_BPS)) / 10_000n;
      await viem.assertions.emitWithArgs(slash(accused, quorum), registry, "OutvoteAccused", [
        operators[0]!.address,
        job,
        1n,
        amount,
      ]);
      assert.equal((await registry.read.stakes([donors[0]!.account.address]))[0], STAKE);
      assert.equal((await court.read.caseOf([1n])).amount, amount);
      await viem.assertions.revertWithCustomError(slash(accused, quorum), registry, "AlreadySlashed");
    });

    it("rejects fewer than 2f+1 distinct active operators", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, donors, chainId, operators } = fx;
      const { job, accused, quorum, slash } = await outvote(fx);
      await viem.assertions.revertWithCustomErrorWithArgs(
        slash(accused, quorum.slice(0, 2)),
        registry,
        "QuorumTooSmall",
        [2n, 3n],
      );
      await viem.assertions.revertWithCustomError(
        slash(
          accused,
          quorum,
          quorum.slice(0, 2).map((x) => x.signature),
        ),
        registry,
        "QuorumTooSmall",
      );
      const seven = await outvote(fx, 7);
      await viem.assertions.revertWithCustomErrorWithArgs(
        seven.slash(seven.accused, seven.quorum),
        registry,
        "QuorumTooSmall",
        [3n, 5n],
      );
      await viem.assertions.revertWithCustomError(
        slash(accused, [quorum[0]!, quorum[1]!, quorum[0]!]),
        registry,
        "DuplicateOperator",
      );
      const accusedAgreeing = await signedReceipt(operators[0]!, chainId, registry.address, job);
      await viem.assertions.revertWithCustomError(
        slash(accused, [quorum[0]!, quorum[1]!, accusedAgreeing]),
        registry,
        "DuplicateOperator",
      );
      const stranger = await signedReceipt(operatorAccount("stranger"), chainId, registry.address, job);
      await viem.assertions.revertWithCustomError(
        slash(accused, [quorum[0]!, quorum[1]!, stranger]),
        registry,
        "OperatorNotActive",
      );
      await registry.write.requestUnbond([STAKE], { account: donors[3]!.account });
      await viem.assertions.revertWithCustomError(slash(accused, quorum), registry, "OperatorNotActive");
    });

    it("rejects another job's spec, disagreeing quorums, an agreeing accused, other jobs and bad signatures", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, chainId, operators } = fx;
      const { job, accused, quorum, slash } = await outvote(fx);
      await viem.assertions.revertWithCustomError(
        slash(accused, quorum, undefined, jobSpec(5)),
        registry,
        "JobSpecMismatch",
      );
      const dissent = await signedReceipt(operators[3]!, chainId, registry.address, job, { fuelUsed: 1n });
      await viem.assertions.revertWithCustomError(
        slash(accused, [quorum[0]!, quorum[1]!, dissent]),
        registry,
        "ResultsDisagree",
      );
      const agreeing = await signedReceipt(operators[0]!, chainId, registry.address, job);
      await viem.assertions.revertWithCustomError(slash(agreeing, quorum), registry, "AccusedAgrees");
      const otherJob = await signedReceipt(
        operators[3]!,
        chainId,
        registry.address,
        keccak256(toHex("job-2")),
      );
      await viem.assertions.revertWithCustomError(
        slash(accused, [quorum[0]!, quorum[1]!, otherJob]),
        registry,
        "DifferentJobs",
      );
      const forged = { receipt: quorum[2]!.receipt, signature: quorum[1]!.signature };
      await viem.assertions.revertWithCustomError(
        slash(accused, [quorum[0]!, quorum[1]!, forged]),
        registry,
        "InvalidSignature",
      );
      await viem.assertions.revertWithCustomError(
        slash({ ...accused, signature: quorum[0]!.signature }, quorum),
        registry,
        "InvalidSignature",
      );
    });

    it("shares the once-per-(job, operator) rule with equivocation", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, reporter, chainId, operators } = fx;
      const { job, accused, quorum, slash } = await outvote(fx);
      const other = await signedReceipt(operators[0]!, chainId, registry.address, job);
      await registry.write.slashEquivocation(
        [accused.receipt, accused.signature, other.receipt, other.signature],
        {
          account: reporter.account,
        },
      );
      await viem.assertions.revertWithCustomError(slash(accused, quorum), registry, "AlreadySlashed");
    });
  });
});
