import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import {
  encodeAbiParameters,
  getAddress,
  keccak256,
  parseEther,
  stringToHex,
  toHex,
  zeroAddress,
  zeroHash,
} from "viem";
import type { ContractErrorName, Hex } from "viem";
import { compactSignatureHex, operatorRegistrationDigest } from "../../offchain/src/chain/index.ts";
import { cellDomain, jobIdOf } from "../../offchain/src/protocol/index.ts";
import type { Receipt } from "../../offchain/src/protocol/index.ts";
import { deployCell } from "../support/contracts/deploy.ts";
import {
  DISPUTE_WINDOW,
  EQUIVOCATION_BPS,
  JAIL_DELAY,
  MIN_STAKE,
  OUTVOTED_BPS,
  PARAMS_TIMELOCK,
  REPORTER_BPS,
  ROTATION_DELAY,
  UNBONDING_DELAY,
  donorParams,
  operatorAccount,
  peerKeyOf,
  jobSpec,
  proofOf,
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

  type Cell = Awaited<ReturnType<typeof cell>>;
  type Wallet = Cell["donors"][number];

  /** `register` from `donor` with `operator`'s proof of possession. */
  async function register(
    fx: Cell,
    donor: Wallet,
    operator: ReturnType<typeof operatorAccount>,
    peerKey: Hex,
    metadataURI = "",
  ) {
    const proof = await proofOf(operator, fx.chainId, fx.registry.address, {
      donor: donor.account.address,
      peerKey,
    });
    return fx.registry.write.register([operator.address, peerKey, metadataURI, proof], {
      account: donor.account,
    });
  }

  /** Four staked, registered donors with operator keys op0..op3. */
  async function registeredDonors() {
    const fx = await cell();
    const operators = [0, 1, 2, 3].map((i) => operatorAccount(`op${i}`));
    for (const [i, operator] of operators.entries()) {
      const donor = fx.donors[i]!;
      await fx.registry.write.stake([STAKE], { account: donor.account });
      await register(fx, donor, operator, peerKeyOf(`p${i}`), `ipfs://donor-${i}`);
    }
    return { ...fx, operators };
  }

  /** Proposes `next`, waits out the timelock and applies it. */
  async function changeParams(fx: Cell, next: ReturnType<typeof donorParams>) {
    await fx.registry.write.proposeParams([next]);
    await networkHelpers.time.increase(PARAMS_TIMELOCK);
    await fx.registry.write.applyParams();
  }

  async function now(fx: Cell): Promise<bigint> {
    return (await fx.publicClient.getBlock()).timestamp;
  }

  describe("constructor and parameters", () => {
    it("rejects parameters outside the hard bounds, naming the field", async () => {
      const { viem, token, deployer, registry } = await networkHelpers.loadFixture(cell);
      const params = donorParams(deployer.account.address);
      const cases: [string, Partial<typeof params>][] = [
        ["treasury", { treasury: zeroAddress }],
        ["minStake", { minStake: 0n }],
        ["equivocationSlashBps", { equivocationSlashBps: 5_001 }],
        ["outvotedSlashBps", { outvotedSlashBps: 5_001 }],
        ["reporterRewardBps", { reporterRewardBps: 10_001 }],
        ["outvoteRewardBps", { outvoteRewardBps: 10_001 }],
        ["minOutvoteQuorum", { minOutvoteQuorum: 0 }],
        ["rotationDelay", { rotationDelay: 59 }],
        ["rotationDelay", { rotationDelay: 30 * 86_400 + 1 }],
        ["jailDelay", { jailDelay: 0 }],
        ["jailDelay", { jailDelay: 30 * 86_400 + 1 }],
        ["paramsTimelock", { paramsTimelock: 0 }],
        ["disputeWindow", { disputeWindow: 30 * 86_400 + 1 }],
        ["unbondingDelay", { unbondingDelay: params.rotationDelay + params.disputeWindow - 1 }],
        ["unbondingDelay", { unbondingDelay: 90 * 86_400 + 1 }],
      ];
      for (const [field, bad] of cases) {
        await viem.assertions.revertWithCustomErrorWithArgs(
          viem.deployContract("DonorRegistry", [
            token.address,
            deployer.account.address,
            { ...params, ...bad },
          ]),
          registry,
          "InvalidParams",
          [stringToHex(field, { size: 32 })],
        );
      }
    });

    it("applies proposed parameters only after the timelock, and only the owner's", async () => {
      const { viem, registry, reporter, publicClient } = await networkHelpers.loadFixture(cell);
      const next = { ...donorParams(reporter.account.address), minStake: 5n };
      await viem.assertions.revertWithCustomError(registry.write.applyParams(), registry, "NoPendingParams");
      const proposedAt = (await publicClient.getBlock()).timestamp + 1n;
      await viem.assertions.emitWithArgs(registry.write.proposeParams([next]), registry, "ParamsProposed", [
        { ...next, treasury: getAddress(next.treasury) },
        proposedAt + BigInt(PARAMS_TIMELOCK),
      ]);
      assert.equal(await registry.read.pendingParamsAt(), proposedAt + BigInt(PARAMS_TIMELOCK));
      assert.equal((await registry.read.pendingParams()).minStake, 5n);
      await viem.assertions.revertWithCustomErrorWithArgs(
        registry.write.applyParams(),
        registry,
        "TimelockNotExpired",
        [proposedAt + BigInt(PARAMS_TIMELOCK)],
      );
      assert.equal((await registry.read.params()).minStake, MIN_STAKE, "nothing applies before the timelock");
      await networkHelpers.time.increase(PARAMS_TIMELOCK - 2);
      await viem.assertions.revertWithCustomError(
        registry.write.applyParams(),
        registry,
        "TimelockNotExpired",
      );
      await networkHelpers.time.setNextBlockTimestamp(proposedAt + BigInt(PARAMS_TIMELOCK));
      await viem.assertions.emit(registry.write.applyParams(), registry, "ParamsUpdated");
      assert.equal((await registry.read.params()).minStake, 5n);
      assert.equal(await registry.read.pendingParamsAt(), 0n);
      await viem.assertions.revertWithCustomError(registry.write.applyParams(), registry, "NoPendingParams");
      for (const call of [
        registry.write.proposeParams([next], { account: reporter.account }),
        registry.write.applyParams({ account: reporter.account }),
      ]) {
        await viem.assertions.revertWithCustomError(call, registry, "OwnableUnauthorizedAccount");
      }
      await viem.assertions.revertWithCustomErrorWithArgs(
        registry.write.proposeParams([{ ...next, outvotedSlashBps: 5_001 }]),
        registry,
        "InvalidParams",
        [stringToHex("outvotedSlashBps", { size: 32 })],
      );
    });

    it("hands ownership over in two steps", async () => {
      const { viem, registry, reporter, deployer } = await networkHelpers.loadFixture(cell);
      await registry.write.transferOwnership([reporter.account.address]);
      assert.equal((await registry.read.owner()).toLowerCase(), deployer.account.address.toLowerCase());
      await registry.write.acceptOwnership({ account: reporter.account });
      assert.equal((await registry.read.owner()).toLowerCase(), reporter.account.address.toLowerCase());
      await viem.assertions.revertWithCustomError(
        registry.write.proposeParams([donorParams(reporter.account.address)]),
        registry,
        "OwnableUnauthorizedAccount",
      );
    });

    it("never shortens a pending unbonding, not even through a new request after a shorter delay", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { registry, donors, treasury } = fx;
      const donor = donors[0]!;
      await registry.write.requestUnbond([1n], { account: donor.account });
      const [, , unbondableAt] = await registry.read.stakes([donor.account.address]);
      assert.equal(unbondableAt, (await now(fx)) + BigInt(UNBONDING_DELAY));
      const shorter = { ...donorParams(treasury.account.address), unbondingDelay: 2_400 };
      await fx.registry.write.proposeParams([shorter]);
      await networkHelpers.time.increase(PARAMS_TIMELOCK);
      // The first request matured during the timelock; this one, still under 3,600 s, is pending.
      await registry.write.requestUnbond([1n], { account: donor.account });
      const relocked = (await registry.read.stakes([donor.account.address]))[2];
      await fx.registry.write.applyParams();
      await registry.write.requestUnbond([1n], { account: donor.account });
      assert.equal(
        (await registry.read.stakes([donor.account.address]))[2],
        relocked,
        "a request under the shorter delay keeps the later time of the pending one",
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
      const fx = await networkHelpers.loadFixture(cell);
      const { viem, registry, donors } = fx;
      const donor = donors[0]!;
      const operator = operatorAccount("solo");
      assert.equal(await registry.read.isActive([operator.address]), false);
      await registry.write.stake([MIN_STAKE], { account: donor.account });
      await viem.assertions.emitWithArgs(
        register(fx, donor, operator, peerKeyOf("solo"), "ipfs://meta"),
        registry,
        "Registered",
        [donor.account.address, operator.address, peerKeyOf("solo"), "ipfs://meta"],
      );
      assert.equal(await registry.read.isActive([operator.address]), true);
      assert.deepEqual(await registry.read.registrationOf([donor.account.address]), {
        operator: operator.address,
        nonce: 1n,
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
      const fx = await networkHelpers.loadFixture(cell);
      const { viem, registry, donors } = fx;
      const [a, b] = [donors[0]!, donors[1]!];
      const op = operatorAccount("x");
      const revert = (promise: Promise<Hex>, error: ContractErrorName<typeof registry.abi>) =>
        viem.assertions.revertWithCustomError(promise, registry, error);
      await revert(register(fx, a, op, peerKeyOf("x")), "BelowMinimumStake");
      await registry.write.stake([MIN_STAKE], { account: a.account });
      await registry.write.stake([MIN_STAKE], { account: b.account });
      await revert(
        registry.write.register([zeroAddress, peerKeyOf("x"), "", "0x"], { account: a.account }),
        "InvalidOperator",
      );
      await revert(register(fx, a, op, zeroHash), "InvalidPeerKey");
      await register(fx, a, op, peerKeyOf("x"));
      await revert(register(fx, a, operatorAccount("y"), peerKeyOf("y")), "AlreadyRegistered");
      await revert(register(fx, b, op, peerKeyOf("z")), "OperatorTaken");
    });

    it("refuses a front-run: the victim's operator and peer key under another stake, with the victim's proof", async () => {
      const fx = await networkHelpers.loadFixture(cell);
      const { viem, registry, donors, chainId } = fx;
      const [victim, attacker] = [donors[0]!, donors[1]!];
      const operator = operatorAccount("victim");
      const peerKey = peerKeyOf("victim");
      await registry.write.stake([MIN_STAKE], { account: victim.account });
      await registry.write.stake([MIN_STAKE], { account: attacker.account });
      // The victim's transaction in the mempool carries this proof; the attacker copies it.
      const victimProof = await proofOf(operator, chainId, registry.address, {
        donor: victim.account.address,
        peerKey,
      });
      await viem.assertions.revertWithCustomErrorWithArgs(
        registry.write.register([operator.address, peerKey, "", victimProof], { account: attacker.account }),
        registry,
        "InvalidProofOfPossession",
        [operator.address],
      );
      // Nor does a proof signed by any key but the operator's, or for another nonce or peer key.
      const forgedBy = await proofOf(operatorAccount("attacker"), chainId, registry.address, {
        donor: attacker.account.address,
        peerKey,
      });
      const otherNonce = await proofOf(operator, chainId, registry.address, {
        donor: victim.account.address,
        peerKey,
        nonce: 1n,
      });
      const otherPeer = await proofOf(operator, chainId, registry.address, {
        donor: victim.account.address,
        peerKey: peerKeyOf("other"),
      });
      for (const [account, proof] of [
        [attacker.account, forgedBy],
        [victim.account, otherNonce],
        [victim.account, otherPeer],
        [victim.account, "0x1234" as Hex],
      ] as const) {
        await viem.assertions.revertWithCustomError(
          registry.write.register([operator.address, peerKey, "", proof], { account }),
          registry,
          "InvalidProofOfPossession",
        );
      }
      assert.equal(await registry.read.donorOf([operator.address]), zeroAddress);
      await registry.write.register([operator.address, peerKey, "", victimProof], {
        account: victim.account,
      });
      assert.equal(await registry.read.isActive([operator.address]), true, "the victim registers after all");
    });

    it("checks the proof against the digest viem signs", async () => {
      const { registry, donors, chainId } = await networkHelpers.loadFixture(cell);
      const registration = {
        donor: donors[0]!.account.address,
        operator: operatorAccount("d").address,
        peerKey: peerKeyOf("d"),
        nonce: 7n,
      };
      assert.equal(
        await registry.read.operatorRegistrationDigest([
          registration.donor,
          registration.operator,
          registration.peerKey,
          registration.nonce,
        ]),
        operatorRegistrationDigest(chainId, registry.address, registration),
      );
      assert.equal(
        await registry.read.OPERATOR_REGISTRATION_TYPEHASH(),
        keccak256(
          toHex("OperatorRegistration(address donor,address operator,bytes32 peerKey,uint256 nonce)"),
        ),
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

  describe("rotation", () => {
    type Fx = Awaited<ReturnType<typeof registeredDonors>>;

    /** donors[0] rotates from op0 to `next`, proving possession at its current nonce. */
    async function rotate(fx: Fx, next = operatorAccount("op0-next"), peerKey = peerKeyOf("p0-next")) {
      const donor = fx.donors[0]!;
      const { nonce } = await fx.registry.read.registrationOf([donor.account.address]);
      const proof = await proofOf(next, fx.chainId, fx.registry.address, {
        donor: donor.account.address,
        peerKey,
        nonce,
      });
      return fx.registry.write.rotateOperator([next.address, peerKey, proof], { account: donor.account });
    }

    async function equivocation(fx: Fx, operator: ReturnType<typeof operatorAccount>, job = JOB) {
      const a = await signedReceipt(operator, fx.chainId, fx.registry.address, job);
      const b = await signedReceipt(operator, fx.chainId, fx.registry.address, job, { status: 2 });
      return fx.registry.write.slashEquivocation([a.receipt, a.signature, b.receipt, b.signature], {
        account: fx.reporter.account,
      });
    }

    it("moves the registration to a new key; the old one is inactive at once and accountable for rotationDelay", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, donors, operators } = fx;
      const donor = donors[0]!.account.address;
      const [old, next] = [operators[0]!, operatorAccount("op0-next")];
      const rotatedAt = (await now(fx)) + 1n;
      await viem.assertions.emitWithArgs(rotate(fx, next), registry, "OperatorRotated", [
        donor,
        old.address,
        next.address,
        peerKeyOf("p0-next"),
        rotatedAt + BigInt(ROTATION_DELAY),
      ]);
      assert.deepEqual(await registry.read.registrationOf([donor]), {
        operator: next.address,
        nonce: 2n,
        peerKey: peerKeyOf("p0-next"),
        metadataURI: "ipfs://donor-0",
      });
      assert.equal(await registry.read.isActive([next.address]), true);
      assert.equal(await registry.read.isActive([old.address]), false, "the old key is never active again");
      assert.equal((await registry.read.donorOf([old.address])).toLowerCase(), donor.toLowerCase());
      assert.deepEqual(await registry.read.operatorOf([old.address]), {
        donor: getAddress(donor),
        accountableUntil: Number(rotatedAt) + ROTATION_DELAY,
        jailedUntil: 0,
      });

      // Evidence against the old key is accepted until rotatedAt + rotationDelay (block time) ...
      await networkHelpers.time.setNextBlockTimestamp(rotatedAt + BigInt(ROTATION_DELAY) - 1n);
      await equivocation(fx, old);
      assert.equal((await registry.read.stakes([donor]))[0], STAKE / 2n);
      // ... and refused from then on, whatever time the receipts claim.
      const second = operatorAccount("op0-third");
      await rotate(fx, second, peerKeyOf("p0-third"));
      const retiredAt = await now(fx);
      await networkHelpers.time.increase(ROTATION_DELAY);
      await viem.assertions.revertWithCustomErrorWithArgs(
        equivocation(fx, next, keccak256(toHex("job-late"))),
        registry,
        "OperatorRetired",
        [next.address, retiredAt + BigInt(ROTATION_DELAY)],
      );
      assert.equal((await registry.read.stakes([donor]))[0], STAKE / 2n);
    });

    it("needs the new key's proof at the current nonce, a registration, and a key never used", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, donors, chainId, operators } = fx;
      const donor = donors[0]!;
      const next = operatorAccount("op0-next");
      const stale = await proofOf(next, chainId, registry.address, {
        donor: donor.account.address,
        peerKey: peerKeyOf("n"),
        nonce: 0n,
      });
      await viem.assertions.revertWithCustomError(
        registry.write.rotateOperator([next.address, peerKeyOf("n"), stale], { account: donor.account }),
        registry,
        "InvalidProofOfPossession",
      );
      await viem.assertions.revertWithCustomError(
        registry.write.rotateOperator([next.address, peerKeyOf("n"), stale], { account: donors[5]!.account }),
        registry,
        "NotRegistered",
      );
      await viem.assertions.revertWithCustomError(rotate(fx, operators[1]!), registry, "OperatorTaken");
      await viem.assertions.revertWithCustomError(rotate(fx, operators[0]!), registry, "OperatorTaken");
      await rotate(fx, next);
      await viem.assertions.revertWithCustomError(
        rotate(fx, operatorAccount("op0-third"), zeroHash),
        registry,
        "InvalidPeerKey",
      );
    });

    it("lets a jailed key's wallet rotate only after the jail delay", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, operators } = fx;
      await equivocation(fx, operators[0]!);
      const rotatableAt = (await now(fx)) + BigInt(JAIL_DELAY);
      await viem.assertions.revertWithCustomErrorWithArgs(rotate(fx), registry, "StillJailed", [
        operators[0]!.address,
        rotatableAt,
      ]);
      await networkHelpers.time.setNextBlockTimestamp(rotatableAt);
      await rotate(fx);
      assert.equal(await registry.read.isActive([operatorAccount("op0-next").address]), true);
      assert.equal(await registry.read.isActive([operators[0]!.address]), false);
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
        [
          op.address,
          JOB,
          0,
          reporter.account.address,
          getAddress(donors[0]!.account.address),
          slashed,
          reward,
        ],
      );
      assert.equal(await token.read.balanceOf([reporter.account.address]), reporterBefore + reward);
      assert.equal(await token.read.balanceOf([treasury.account.address]), treasuryBefore + slashed - reward);
      assert.equal((await registry.read.stakes([donors[0]!.account.address]))[0], STAKE - slashed);
      await viem.assertions.revertWithCustomError(
        registry.write.slashEquivocation([a.receipt, a.signature, b.receipt, b.signature], {
          account: reporter.account,
        }),
        registry,
        "OperatorJailed",
      );
    });

    it("jails the operator: inactive, and further evidence against it reverts", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, chainId, operators, reporter, donors } = fx;
      const op = operators[0]!;
      const a = await signedReceipt(op, chainId, registry.address, JOB);
      const b = await signedReceipt(op, chainId, registry.address, JOB, { status: 1 });
      const jailedAt = (await now(fx)) + 1n;
      await viem.assertions.emitWithArgs(
        registry.write.slashEquivocation([a.receipt, a.signature, b.receipt, b.signature], {
          account: reporter.account,
        }),
        registry,
        "Jailed",
        [op.address, getAddress(donors[0]!.account.address), jailedAt + BigInt(JAIL_DELAY)],
      );
      assert.equal(await registry.read.isActive([op.address]), false);
      assert.equal((await registry.read.operatorOf([op.address])).jailedUntil, Number(jailedAt) + JAIL_DELAY);
      await registry.write.stake([STAKE], { account: donors[0]!.account });
      assert.equal(await registry.read.isActive([op.address]), false, "a top-up does not free a jailed key");
    });

    it("costs a leaked key one slash, not the stake: 40 equivocations over invented job ids", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, token, chainId, operators, reporter, treasury, donors } = fx;
      const leaked = operators[0]!;
      const reporterBefore = await token.read.balanceOf([reporter.account.address]);
      const treasuryBefore = await token.read.balanceOf([treasury.account.address]);
      let slashes = 0;
      for (let i = 0; i < 40; i++) {
        const job = keccak256(toHex(`invented-${i}`));
        const a = await signedReceipt(leaked, chainId, registry.address, job);
        const b = await signedReceipt(leaked, chainId, registry.address, job, { fuelUsed: BigInt(i) });
        const call = registry.write.slashEquivocation([a.receipt, a.signature, b.receipt, b.signature], {
          account: reporter.account,
        });
        if (i === 0) {
          await call;
          slashes++;
        } else {
          await viem.assertions.revertWithCustomErrorWithArgs(call, registry, "OperatorJailed", [
            leaked.address,
          ]);
        }
      }
      assert.equal(slashes, 1);
      const slashed = parseEther("500"); // 50 % of 1,000 ATP, once
      const reward = parseEther("50"); // 10 % of the slash
      assert.deepEqual(await registry.read.stakes([donors[0]!.account.address]), [STAKE - slashed, 0n, 0n]);
      assert.equal(await token.read.balanceOf([reporter.account.address]), reporterBefore + reward);
      assert.equal(await token.read.balanceOf([treasury.account.address]), treasuryBefore + slashed - reward);
      assert.equal(await token.read.balanceOf([registry.address]), STAKE * 4n - slashed);
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

    it("finds unbonded stake for evidence within rotationDelay of the unbond; evidence after the withdrawal finds none", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, chainId, operators, reporter, donors } = fx;
      const equivocation = async (operator: ReturnType<typeof operatorAccount>, job: Hex) => {
        const a = await signedReceipt(operator, chainId, registry.address, job);
        const b = await signedReceipt(operator, chainId, registry.address, job, { status: 2 });
        return registry.write.slashEquivocation([a.receipt, a.signature, b.receipt, b.signature], {
          account: reporter.account,
        });
      };
      // Donor 0 unbonds everything; evidence comes at the end of the accountability horizon.
      await registry.write.requestUnbond([STAKE], { account: donors[0]!.account });
      const unbondedAt = await now(fx);
      await networkHelpers.time.setNextBlockTimestamp(unbondedAt + BigInt(ROTATION_DELAY));
      await equivocation(operators[0]!, JOB);
      assert.deepEqual(await registry.read.stakes([donors[0]!.account.address]), [
        0n,
        STAKE / 2n,
        unbondedAt + BigInt(UNBONDING_DELAY),
      ]);
      await viem.assertions.revertWithCustomError(
        registry.write.withdraw({ account: donors[0]!.account }),
        registry,
        "StillUnbonding",
      );
      // Donor 1 unbonds and withdraws once matured: evidence after that has nothing left to take.
      await registry.write.requestUnbond([STAKE], { account: donors[1]!.account });
      await networkHelpers.time.increase(UNBONDING_DELAY);
      await registry.write.withdraw({ account: donors[1]!.account });
      await viem.assertions.revertWithCustomErrorWithArgs(
        equivocation(operators[1]!, JOB),
        registry,
        "NothingToSlash",
        [operators[1]!.address],
      );
    });

    it("rejects different jobs, different executors, equal results, bad signatures, unknown operators, empty stake", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, chainId, operators, reporter, donors } = fx;
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
      await changeParams(fx, { ...donorParams(reporter.account.address), equivocationSlashBps: 0 });
      await viem.assertions.revertWithCustomError(slash(base, differs), registry, "NothingToSlash");
      assert.equal((await registry.read.stakes([donors[0]!.account.address]))[0], STAKE);
    });
  });

  describe("slashing when outvoted", () => {
    type Fx = Awaited<ReturnType<typeof registeredDonors>>;
    type Signed = { receipt: Receipt; signature: Hex };

    /** The accused (op0) against op1..op3 for a job whose spec asks for `replicas` executions. */
    async function outvote(fx: Fx, replicas = 4, label = "") {
      const { chainId, registry, operators } = fx;
      const spec = { ...jobSpec(replicas), salt: keccak256(toHex(`salt${label}`)) };
      const job = jobIdOf(cellDomain(chainId, registry.address), spec);
      const startedAt = (await now(fx)) * 1000n;
      const accused = await signedReceipt(operators[0]!, chainId, registry.address, job, {
        outputCid: keccak256(toHex("wrong")),
        startedAt,
      });
      const quorum = await Promise.all(
        operators.slice(1).map((op) => signedReceipt(op, chainId, registry.address, job, { startedAt })),
      );
      const slash = (a: Signed, q: Signed[], sigs?: Hex[], s = spec) =>
        registry.write.slashOutvoted(
          [s, a.receipt, a.signature, q.map((x) => x.receipt), sigs ?? q.map((x) => x.signature)],
          { account: fx.reporter.account },
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
      assert.equal(await registry.read.isActive([operators[0]!.address]), true, "an outvote does not jail");
      await viem.assertions.revertWithCustomError(slash(accused, quorum), registry, "AlreadySlashed");
    });

    it("pays outvoteRewardBps, not reporterRewardBps, of an undisputed slash when governance sets one", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { registry, court, token, reporter, treasury } = fx;
      await changeParams(fx, { ...donorParams(treasury.account.address), outvoteRewardBps: 2_500 });
      const { accused, quorum, slash } = await outvote(fx);
      const before = await token.read.balanceOf([reporter.account.address]);
      await slash(accused, quorum);
      await networkHelpers.time.increase(DISPUTE_WINDOW + 1);
      await court.write.finalizeOutvote([1n]);
      assert.equal(await token.read.balanceOf([reporter.account.address]), before + parseEther("25"));
      const key = keccak256(
        encodeAbiParameters(
          [{ type: "bytes32" }, { type: "address" }],
          [accused.receipt.jobId, accused.receipt.executor],
        ),
      );
      assert.equal(await registry.read.slashed([key]), true);
    });

    it("defeats the cheap-Sybil attack: fresh identities cannot outvote, and no quorum may exceed replicas - 1", async () => {
      const fx = await networkHelpers.loadFixture(cell);
      const { viem, registry, token, chainId, donors, reporter, treasury } = fx;
      const [honest, ...sybils] = [donors[0]!, donors[1]!, donors[2]!, donors[3]!];
      const honestOp = operatorAccount("honest");
      await registry.write.stake([STAKE], { account: honest.account });
      await register(fx, honest, honestOp, peerKeyOf("honest"));
      // The attacker buys five one-replica jobs and one four-replica job; the honest donor runs them.
      const domain = cellDomain(chainId, registry.address);
      const startedAt = (await now(fx)) * 1000n;
      const jobs = await Promise.all(
        [1, 1, 1, 1, 1, 4].map(async (replicas, i) => {
          const spec = { ...jobSpec(replicas), salt: keccak256(toHex(`sybil-${i}`)) };
          const job = jobIdOf(domain, spec);
          return {
            spec,
            job,
            honest: await signedReceipt(honestOp, chainId, registry.address, job, { startedAt }),
          };
        }),
      );
      // Only then does it stake three cheap identities (the minimum each) and sign a "quorum".
      const sybilOps = sybils.map((_, i) => operatorAccount(`sybil-${i}`));
      for (const [i, sybil] of sybils.entries()) {
        await registry.write.stake([MIN_STAKE], { account: sybil.account });
        await register(fx, sybil, sybilOps[i]!, peerKeyOf(`sybil-${i}`));
      }
      const balances = async () =>
        Promise.all([
          registry.read.stakes([honest.account.address]),
          token.read.balanceOf([reporter.account.address]),
          token.read.balanceOf([treasury.account.address]),
          ...sybils.map((s) => registry.read.stakes([s.account.address])),
        ]);
      const before = await balances();
      for (const { spec, job, honest: accused } of jobs) {
        const quorum = await Promise.all(
          sybilOps.map((op) =>
            signedReceipt(op, chainId, registry.address, job, {
              outputCid: keccak256(toHex("lie")),
              startedAt,
            }),
          ),
        );
        const call = registry.write.slashOutvoted(
          [
            spec,
            accused.receipt,
            accused.signature,
            quorum.map((q) => q.receipt),
            quorum.map((q) => q.signature),
          ],
          { account: reporter.account },
        );
        if (spec.replicas === 1) {
          await viem.assertions.revertWithCustomErrorWithArgs(call, registry, "QuorumTooLarge", [3n, 0n]);
        } else {
          const since = await registry.read.bondedSince([sybils[0]!.account.address]);
          await viem.assertions.revertWithCustomErrorWithArgs(call, registry, "NotBondedBeforeJob", [
            sybilOps[0]!.address,
            since,
            startedAt,
          ]);
        }
      }
      assert.deepEqual(await balances(), before, "nobody gained or lost a wei of ATP");
      assert.deepEqual(before[0], [STAKE, 0n, 0n], "the honest donor keeps its 1,000 ATP");
    });

    it("needs every quorum donor bonded at least minStake without a break since before startedAt", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, donors, operators } = fx;
      const { accused, quorum, slash } = await outvote(fx);
      // Donor 3 drops below the minimum after the job started and tops up again: its bond broke.
      await registry.write.requestUnbond([STAKE - MIN_STAKE + 1n], { account: donors[3]!.account });
      assert.equal(await registry.read.bondedSince([donors[3]!.account.address]), 0n);
      await registry.write.stake([STAKE], { account: donors[3]!.account });
      const since = await registry.read.bondedSince([donors[3]!.account.address]);
      assert.equal(since, await now(fx));
      await viem.assertions.revertWithCustomErrorWithArgs(
        slash(accused, quorum),
        registry,
        "NotBondedBeforeJob",
        [operators[3]!.address, since, accused.receipt.startedAt],
      );
      // Unbonding that keeps the minimum bonded does not break it.
      await networkHelpers.time.increase(10);
      const fresh = await outvote(fx, 4, "later");
      await registry.write.requestUnbond([STAKE - MIN_STAKE], { account: donors[1]!.account });
      await fresh.slash(fresh.accused, fresh.quorum);
    });

    it("counts a quorum key rotated away from only while it is still accountable", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, donors, chainId, operators } = fx;
      const [first, second] = [await outvote(fx), await outvote(fx, 4, "second")];
      const donor = donors[3]!;
      const next = operatorAccount("op3-next");
      const proof = await proofOf(next, chainId, registry.address, {
        donor: donor.account.address,
        peerKey: peerKeyOf("p3-next"),
        nonce: 1n,
      });
      await registry.write.rotateOperator([next.address, peerKeyOf("p3-next"), proof], {
        account: donor.account,
      });
      await first.slash(first.accused, first.quorum);
      await networkHelpers.time.increase(ROTATION_DELAY);
      await viem.assertions.revertWithCustomErrorWithArgs(
        second.slash(second.accused, second.quorum),
        registry,
        "OperatorNotActive",
        [operators[3]!.address],
      );
    });

    it("reads bondedSince against today's minimum; a top-up over a raised minimum starts it again", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { registry, donors, treasury } = fx;
      const wallet = donors[1]!.account.address;
      const before = await registry.read.bondedSince([wallet]);
      assert.ok(before > 0n);
      await changeParams(fx, { ...donorParams(treasury.account.address), minStake: STAKE + 1n });
      assert.equal(await registry.read.bondedSince([wallet]), 0n, "below today's minimum");
      await registry.write.stake([1n], { account: donors[1]!.account });
      assert.equal(await registry.read.bondedSince([wallet]), await now(fx));
    });

    it("rejects quorums too small or too large, duplicate donors and operators that may not vote", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, donors, chainId, operators } = fx;
      const { job, accused, quorum, slash } = await outvote(fx);
      await viem.assertions.revertWithCustomErrorWithArgs(
        slash(accused, quorum.slice(0, 2)),
        registry,
        "QuorumTooSmall",
        [2n, 3n],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        slash(
          accused,
          quorum,
          quorum.slice(0, 2).map((x) => x.signature),
        ),
        registry,
        "SignatureCountMismatch",
        [3n, 2n],
      );
      const seven = await outvote(fx, 7);
      await viem.assertions.revertWithCustomErrorWithArgs(
        seven.slash(seven.accused, seven.quorum),
        registry,
        "QuorumTooSmall",
        [3n, 5n],
      );
      const extra = await signedReceipt(operatorAccount("extra"), chainId, registry.address, job, {
        startedAt: accused.receipt.startedAt,
      });
      await viem.assertions.revertWithCustomErrorWithArgs(
        slash(accused, [...quorum, extra]),
        registry,
        "QuorumTooLarge",
        [4n, 3n],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        slash(accused, [quorum[0]!, quorum[1]!, quorum[0]!]),
        registry,
        "DuplicateDonor",
        [getAddress(donors[1]!.account.address)],
      );
      const accusedAgreeing = await signedReceipt(operators[0]!, chainId, registry.address, job, {
        startedAt: accused.receipt.startedAt,
      });
      await viem.assertions.revertWithCustomError(
        slash(accused, [quorum[0]!, quorum[1]!, accusedAgreeing]),
        registry,
        "DuplicateDonor",
      );
      const stranger = await signedReceipt(operatorAccount("stranger"), chainId, registry.address, job);
      await viem.assertions.revertWithCustomError(
        slash(accused, [quorum[0]!, quorum[1]!, stranger]),
        registry,
        "OperatorNotActive",
      );
      await registry.write.requestUnbond([STAKE], { account: donors[3]!.account });
      await viem.assertions.revertWithCustomError(slash(accused, quorum), registry, "NotBondedBeforeJob");
    });

    it("rejects another job's spec, disagreeing quorums, an agreeing accused, other jobs and bad signatures", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, chainId, operators } = fx;
      const { job, accused, quorum, slash } = await outvote(fx);
      const startedAt = accused.receipt.startedAt;
      await viem.assertions.revertWithCustomError(
        slash(accused, quorum, undefined, jobSpec(5)),
        registry,
        "JobSpecMismatch",
      );
      const dissent = await signedReceipt(operators[3]!, chainId, registry.address, job, {
        fuelUsed: 1n,
        startedAt,
      });
      await viem.assertions.revertWithCustomError(
        slash(accused, [quorum[0]!, quorum[1]!, dissent]),
        registry,
        "ResultsDisagree",
      );
      const agreeing = await signedReceipt(operators[0]!, chainId, registry.address, job, { startedAt });
      await viem.assertions.revertWithCustomError(slash(agreeing, quorum), registry, "AccusedAgrees");
      const otherJob = await signedReceipt(
        operators[3]!,
        chainId,
        registry.address,
        keccak256(toHex("job-2")),
        { startedAt },
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

    it("refuses evidence against a jailed operator and shares the once-per-(job, operator) rule", async () => {
      const fx = await networkHelpers.loadFixture(registeredDonors);
      const { viem, registry, reporter, chainId, operators } = fx;
      const { job, accused, quorum, slash } = await outvote(fx);
      const other = await signedReceipt(operators[0]!, chainId, registry.address, job);
      await registry.write.slashEquivocation(
        [accused.receipt, accused.signature, other.receipt, other.signature],
        { account: reporter.account },
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        slash(accused, quorum),
        registry,
        "OperatorJailed",
        [operators[0]!.address],
      );
    });
  });
});
