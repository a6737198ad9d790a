import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { network } from "hardhat";
import { getAddress, keccak256, parseEther, parseEventLogs, toHex } from "viem";
import type { Address, Hex } from "viem";
import type { PrivateKeyAccount } from "viem/accounts";
import { juryCourtAbi } from "../../offchain/src/chain/index.ts";
import { cellDomain, jobIdOf } from "../../offchain/src/protocol/index.ts";
import { deployCell } from "../support/contracts/deploy.ts";
import {
  DISPUTE_BOND,
  DISPUTE_WINDOW,
  DRAW_DELAY,
  JURY_SIZE,
  JUROR_REWARD_BPS,
  JAIL_DELAY,
  OUTVOTED_BPS,
  PARAMS_TIMELOCK,
  SILENT_JUROR_BPS,
  UNBONDING_DELAY,
  VOTE_WINDOW,
  WINNER_REWARD_BPS,
  courtParams,
  jobSpec,
  operatorAccount,
  peerKeyOf,
  proofOf,
  signedReceipt,
} from "../support/contracts/fixture.ts";

const BPS = 10_000n;
const DONORS = 9;
/** Donor i stakes 1,000 + 250 i ATP, so jurors differ in weight. */
const stakeOf = (i: number) => parseEther(String(1_000 + 250 * i));
const WRONG = keccak256(toHex("wrong"));

describe("JuryCourt", async () => {
  const connection = await network.create();
  const { networkHelpers } = connection;

  /** Nine staked, registered donors; donor 0 is outvoted by donors 1..3 on a 4-replica job. */
  async function accusedCase() {
    const fx = await deployCell(connection);
    const { registry, chainId, donors } = fx;
    const operators = Array.from({ length: DONORS }, (_, i) => operatorAccount(`jury-op${i}`));
    for (const [i, operator] of operators.entries()) {
      const donor = donors[i]!;
      await registry.write.stake([stakeOf(i)], { account: donor.account });
      const peerKey = peerKeyOf(`jury-p${i}`);
      const proof = await proofOf(operator, chainId, registry.address, {
        donor: donor.account.address,
        peerKey,
      });
      await registry.write.register([operator.address, peerKey, `ipfs://donor-${i}`, proof], {
        account: donor.account,
      });
    }
    const caseId = await accuse({ ...fx, operators }, jobSpec(4));
    const job = jobIdOf(cellDomain(chainId, registry.address), jobSpec(4));
    const donorAddress = (i: number) => donors[i]!.account.address;
    return { ...fx, operators, job, caseId, donorAddress };
  }

  type Fx = Awaited<ReturnType<typeof accusedCase>>;

  /** Donor 0 is outvoted by donors 1..3 on `spec`; returns the case id. */
  async function accuse(
    fx: Awaited<ReturnType<typeof deployCell>> & { operators: readonly PrivateKeyAccount[] },
    spec: ReturnType<typeof jobSpec>,
  ): Promise<bigint> {
    const { registry, chainId, operators } = fx;
    const job = jobIdOf(cellDomain(chainId, registry.address), spec);
    // The job starts after every donor bonded, so the quorum may outvote.
    const startedAt = ((await fx.publicClient.getBlock()).timestamp + 1n) * 1000n;
    const accused = await signedReceipt(operators[0]!, chainId, registry.address, job, {
      outputCid: WRONG,
      startedAt,
    });
    const quorum = await Promise.all(
      operators.slice(1, 4).map((op) => signedReceipt(op, chainId, registry.address, job, { startedAt })),
    );
    const hash = await registry.write.slashOutvoted(
      [
        spec,
        accused.receipt,
        accused.signature,
        quorum.map((q) => q.receipt),
        quorum.map((q) => q.signature),
      ],
      { account: fx.reporter.account },
    );
    const receipt = await fx.publicClient.waitForTransactionReceipt({ hash });
    const [opened] = parseEventLogs({ abi: juryCourtAbi, logs: receipt.logs, eventName: "CaseOpened" });
    assert.ok(opened, "slashOutvoted opened no case");
    return opened.args.caseId;
  }

  const bonded = async (fx: Fx, donor: Address) => (await fx.registry.read.stakes([donor]))[0];
  const balance = (fx: Fx, who: Address) => fx.token.read.balanceOf([who]);

  /** Disputes as donor 0's wallet and draws the jury; returns the drawn jurors' donor indexes. */
  async function disputeAndDraw(fx: Fx) {
    const { court, caseId, donors } = fx;
    await court.write.dispute([caseId], { account: donors[0]!.account });
    await networkHelpers.mine(DRAW_DELAY);
    const hash = await court.write.drawJury([caseId]);
    const receipt = await fx.publicClient.waitForTransactionReceipt({ hash });
    const [drawn] = parseEventLogs({ abi: juryCourtAbi, logs: receipt.logs, eventName: "JurorsDrawn" });
    assert.ok(drawn, "drawJury drew nobody");
    const index = new Map(donors.map((d, i) => [getAddress(d.account.address), i]));
    return drawn.args.jurors.map((juror) => index.get(getAddress(juror))!);
  }

  async function voteAs(fx: Fx, jurorIndex: number, outputCid?: Hex) {
    const overrides = outputCid === undefined ? {} : { outputCid };
    const { receipt, signature } = await signedReceipt(
      fx.operators[jurorIndex]!,
      fx.chainId,
      fx.registry.address,
      fx.job,
      overrides,
    );
    await fx.court.write.vote([fx.caseId, receipt, signature]);
  }

  it("opens a pending case instead of slashing, at the share in force, once per job and operator", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, registry, caseId, donorAddress, viem } = fx;
    const c = await court.read.caseOf([caseId]);
    assert.equal(c.amount, (stakeOf(0) * BigInt(OUTVOTED_BPS)) / BPS);
    assert.equal(getAddress(c.accusedDonor), getAddress(donorAddress(0)));
    assert.deepEqual(
      c.quorumDonors.map((d) => getAddress(d)),
      [1, 2, 3].map((i) => getAddress(donorAddress(i))),
    );
    assert.equal(await bonded(fx, donorAddress(0)), stakeOf(0));
    for (const i of [0, 1, 2, 3]) assert.equal(await court.read.openCasesOf([donorAddress(i)]), 1n);
    assert.equal(await court.read.jurorWeightOf([donorAddress(5)]), stakeOf(5));
    assert.equal(
      await court.read.totalJurorWeight(),
      Array.from({ length: DONORS }, (_, i) => stakeOf(i)).reduce((a, b) => a + b),
    );
    await viem.assertions.revertWithCustomError(
      registry.write.setCourt([court.address]),
      registry,
      "CourtAlreadySet",
    );
  });

  it("keeps each donor's jury weight at its bonded stake while active: stake, unbond, jail, rotation", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, registry, donors, donorAddress, chainId } = fx;
    const weight = (i: number) => court.read.jurorWeightOf([donorAddress(i)]);
    await registry.write.stake([parseEther("5")], { account: donors[5]!.account });
    assert.equal(await weight(5), stakeOf(5) + parseEther("5"));
    await registry.write.requestUnbond([parseEther("105")], { account: donors[5]!.account });
    assert.equal(await weight(5), stakeOf(5) - parseEther("100"));
    // An equivocation slashes half and jails: a jailed operator is never drawn.
    const a = await signedReceipt(fx.operators[6]!, chainId, registry.address, fx.job);
    const b = await signedReceipt(fx.operators[6]!, chainId, registry.address, fx.job, { status: 2 });
    await registry.write.slashEquivocation([a.receipt, a.signature, b.receipt, b.signature]);
    assert.equal(await weight(6), 0n);
    // Rotating to a new key after the jail delay makes the donor drawable again at its stake.
    await networkHelpers.time.increase(JAIL_DELAY);
    const next = operatorAccount("jury-op6-next");
    const peerKey = peerKeyOf("jury-p6-next");
    const proof = await proofOf(next, chainId, registry.address, {
      donor: donorAddress(6),
      peerKey,
      nonce: 1n,
    });
    await registry.write.rotateOperator([next.address, peerKey, proof], { account: donors[6]!.account });
    const [bonded] = await registry.read.stakes([donorAddress(6)]);
    assert.equal(await weight(6), bonded);
    assert.equal(bonded, stakeOf(6) / 2n);
    // Below the minimum stake a donor is inactive and weighs nothing.
    await registry.write.requestUnbond([bonded], { account: donors[6]!.account });
    assert.equal(await weight(6), 0n);
    assert.equal(
      await court.read.totalJurorWeight(),
      Array.from({ length: DONORS }, (_, i) => stakeOf(i)).reduce((x, y) => x + y) -
        parseEther("100") -
        stakeOf(6),
    );
  });

  it("finalizes an undisputed outvote only after the window, all to the treasury", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, caseId, donors, donorAddress, treasury, viem } = fx;
    const amount = (stakeOf(0) * BigInt(OUTVOTED_BPS)) / BPS;
    await viem.assertions.revertWithCustomError(
      court.write.finalizeOutvote([caseId]),
      court,
      "DisputeWindowOpen",
    );
    // The accused cannot walk away with its stake while the case is open, even past its unbonding.
    await fx.registry.write.requestUnbond([stakeOf(0)], { account: donors[0]!.account });
    await networkHelpers.time.increase(Math.max(UNBONDING_DELAY, DISPUTE_WINDOW) + 1);
    await viem.assertions.revertWithCustomError(
      fx.registry.write.withdraw({ account: donors[0]!.account }),
      fx.registry,
      "FrozenByCase",
    );
    const treasuryBefore = await balance(fx, treasury.account.address);
    const reporterBefore = await balance(fx, fx.reporter.account.address);
    await viem.assertions.emitWithArgs(court.write.finalizeOutvote([caseId]), court, "OutvoteFinalized", [
      caseId,
      getAddress(donorAddress(0)),
      amount,
    ]);
    assert.equal((await fx.registry.read.stakes([donorAddress(0)]))[1], stakeOf(0) - amount);
    assert.equal(await balance(fx, treasury.account.address), treasuryBefore + amount);
    assert.equal(await balance(fx, fx.reporter.account.address), reporterBefore);
    for (const i of [0, 1, 2, 3]) assert.equal(await court.read.openCasesOf([donorAddress(i)]), 0n);
    await fx.registry.write.withdraw({ account: donors[0]!.account });
    await viem.assertions.revertWithCustomError(court.write.dispute([caseId]), court, "WrongStage");
    await viem.assertions.revertWithCustomError(court.write.finalizeOutvote([caseId]), court, "WrongStage");
  });

  it("refuses a dispute after the window and a draw before the seed block", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, caseId, donors, viem } = fx;
    await court.write.dispute([caseId], { account: donors[0]!.account });
    await viem.assertions.revertWithCustomError(court.write.drawJury([caseId]), court, "DrawTooEarly");
    await networkHelpers.mine(DRAW_DELAY - 1);
    await viem.assertions.revertWithCustomError(court.write.drawJury([caseId]), court, "DrawTooEarly");
    await viem.assertions.revertWithCustomError(court.write.finalizeOutvote([caseId]), court, "WrongStage");
    await viem.assertions.revertWithCustomError(court.write.resolveDispute([caseId]), court, "WrongStage");
    const late = await networkHelpers.loadFixture(accusedCase);
    await networkHelpers.time.increase(DISPUTE_WINDOW + 1);
    await viem.assertions.revertWithCustomError(
      late.court.write.dispute([late.caseId], { account: late.donors[0]!.account }),
      late.court,
      "DisputeWindowClosed",
    );
  });

  it("a disputed outvote won by the accused slashes the accusers and pays disputer and jurors", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, caseId, donorAddress, treasury, viem } = fx;
    const disputer = donorAddress(0);
    const disputerBefore = await balance(fx, disputer);
    const jurors = await disputeAndDraw(fx);
    assert.equal(jurors.length, JURY_SIZE);
    assert.equal(new Set(jurors).size, JURY_SIZE);
    for (const j of jurors) assert.ok(j >= 4, `party ${j} was drawn as a juror`);
    const jurorBefore = await Promise.all(jurors.map((j) => balance(fx, donorAddress(j))));
    const treasuryBefore = await balance(fx, treasury.account.address);
    await voteAs(fx, jurors[0]!, WRONG);
    await viem.assertions.revertWithCustomError(
      court.write.resolveDispute([caseId]),
      court,
      "VoteWindowOpen",
    );
    await viem.assertions.revertWithCustomError(voteAs(fx, jurors[0]!, WRONG), court, "AlreadyVoted");
    await viem.assertions.revertWithCustomError(voteAs(fx, 1, WRONG), court, "NotAJuror");
    for (const j of jurors.slice(1)) await voteAs(fx, j, WRONG);
    await court.write.resolveDispute([caseId]);

    const slashes = [1, 2, 3].map((i) => (stakeOf(i) * BigInt(OUTVOTED_BPS)) / BPS);
    const slashed = slashes.reduce((a, b) => a + b);
    for (const i of [1, 2, 3]) assert.equal(await bonded(fx, donorAddress(i)), stakeOf(i) - slashes[i - 1]!);
    assert.equal(await bonded(fx, donorAddress(0)), stakeOf(0));
    const winner = (slashed * BigInt(WINNER_REWARD_BPS)) / BPS;
    assert.equal(await balance(fx, disputer), disputerBefore + winner);
    const share = (slashed * BigInt(JUROR_REWARD_BPS)) / BPS / BigInt(JURY_SIZE);
    for (const [k, j] of jurors.entries()) {
      assert.equal(await balance(fx, donorAddress(j)), jurorBefore[k]! + share);
      assert.equal(await bonded(fx, donorAddress(j)), stakeOf(j));
    }
    assert.equal(
      await balance(fx, treasury.account.address),
      treasuryBefore + slashed - winner - share * BigInt(JURY_SIZE),
    );
    assert.equal(await balance(fx, court.address), 0n);
    assert.equal((await court.read.caseOf([caseId])).outcome, 2);
  });

  it("a disputed outvote won by the accusers slashes the accused and forfeits the bond to the jurors", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, caseId, donorAddress, treasury } = fx;
    const disputerBefore = await balance(fx, donorAddress(0));
    const jurors = await disputeAndDraw(fx);
    const jurorBefore = await Promise.all(jurors.map((j) => balance(fx, donorAddress(j))));
    const treasuryBefore = await balance(fx, treasury.account.address);
    for (const j of jurors) await voteAs(fx, j);
    await court.write.resolveDispute([caseId]);

    const amount = (stakeOf(0) * BigInt(OUTVOTED_BPS)) / BPS;
    assert.equal(await bonded(fx, donorAddress(0)), stakeOf(0) - amount);
    for (const i of [1, 2, 3]) assert.equal(await bonded(fx, donorAddress(i)), stakeOf(i));
    assert.equal(await balance(fx, donorAddress(0)), disputerBefore - DISPUTE_BOND);
    const share = ((amount * BigInt(JUROR_REWARD_BPS)) / BPS + DISPUTE_BOND) / BigInt(JURY_SIZE);
    for (const [k, j] of jurors.entries()) {
      assert.equal(await balance(fx, donorAddress(j)), jurorBefore[k]! + share);
    }
    assert.equal(
      await balance(fx, treasury.account.address),
      treasuryBefore + amount + DISPUTE_BOND - share * BigInt(JURY_SIZE),
    );
    assert.equal(await balance(fx, court.address), 0n);
    assert.equal((await court.read.caseOf([caseId])).outcome, 3);
  });

  it("slashes a silent juror a small share, after the vote window", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, caseId, donorAddress, treasury, viem } = fx;
    const jurors = await disputeAndDraw(fx);
    const [silent, ...voting] = jurors as [number, ...number[]];
    for (const j of voting) await voteAs(fx, j, WRONG);
    await viem.assertions.revertWithCustomError(
      court.write.resolveDispute([caseId]),
      court,
      "VoteWindowOpen",
    );
    // A silent juror cannot leave before the case is decided.
    await fx.registry.write.requestUnbond([1n], { account: fx.donors[silent]!.account });
    await networkHelpers.time.increase(VOTE_WINDOW + 1);
    await viem.assertions.revertWithCustomError(
      fx.registry.write.withdraw({ account: fx.donors[silent]!.account }),
      fx.registry,
      "FrozenByCase",
    );
    await viem.assertions.revertWithCustomError(voteAs(fx, silent, WRONG), court, "VoteWindowClosed");
    const treasuryBefore = await balance(fx, treasury.account.address);
    await court.write.resolveDispute([caseId]);

    const penalty = (stakeOf(silent) * BigInt(SILENT_JUROR_BPS)) / BPS;
    const [silentBonded, silentUnbonding] = await fx.registry.read.stakes([donorAddress(silent)]);
    assert.equal(silentBonded + silentUnbonding, stakeOf(silent) - penalty);
    const slashed = [1, 2, 3].map((i) => (stakeOf(i) * BigInt(OUTVOTED_BPS)) / BPS).reduce((a, b) => a + b);
    const share = (slashed * BigInt(JUROR_REWARD_BPS)) / BPS / BigInt(voting.length);
    const winner = (slashed * BigInt(WINNER_REWARD_BPS)) / BPS;
    assert.equal(
      await balance(fx, treasury.account.address),
      treasuryBefore + slashed + penalty - winner - share * BigInt(voting.length),
    );
    assert.equal(await court.read.jurorWeightOf([donorAddress(silent)]), silentBonded);
    await fx.registry.write.withdraw({ account: fx.donors[silent]!.account });
  });

  it("convicts without a majority for the accused, and pays no juror whose receipt matches neither side", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, caseId, donorAddress, treasury } = fx;
    const jurors = await disputeAndDraw(fx);
    const [forAccused, ...junk] = jurors as [number, ...number[]];
    await voteAs(fx, forAccused, WRONG);
    for (const [k, j] of junk.entries()) await voteAs(fx, j, keccak256(toHex(`junk-${k}`)));
    const treasuryBefore = await balance(fx, treasury.account.address);
    await court.write.resolveDispute([caseId]);

    const amount = (stakeOf(0) * BigInt(OUTVOTED_BPS)) / BPS;
    assert.equal(await bonded(fx, donorAddress(0)), stakeOf(0) - amount);
    // No juror voted the quorum's result: every one of them is incoherent and loses its share.
    const penalties = jurors.map((j) => (stakeOf(j) * BigInt(SILENT_JUROR_BPS)) / BPS);
    for (const [k, j] of jurors.entries()) {
      assert.equal(await bonded(fx, donorAddress(j)), stakeOf(j) - penalties[k]!);
    }
    assert.equal(
      await balance(fx, treasury.account.address),
      treasuryBefore + amount + DISPUTE_BOND + penalties.reduce((a, b) => a + b),
    );
    assert.equal((await court.read.caseOf([caseId])).outcome, 3);
  });

  it("voids a dispute when no donor outside the case can sit on the jury: bond back, nobody slashed", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, caseId, donors, donorAddress, viem } = fx;
    for (let i = 4; i < DONORS; i++) {
      await fx.registry.write.requestUnbond([stakeOf(i)], { account: donors[i]!.account });
    }
    const before = await balance(fx, donorAddress(0));
    await court.write.dispute([caseId], { account: donors[0]!.account });
    await networkHelpers.mine(DRAW_DELAY);
    await viem.assertions.emit(court.write.drawJury([caseId]), court, "DisputeResolved");
    const c = await court.read.caseOf([caseId]);
    assert.equal(c.stage, 4);
    assert.equal(c.outcome, 4);
    assert.equal(await balance(fx, donorAddress(0)), before);
    for (const i of [0, 1, 2, 3]) {
      assert.equal(await bonded(fx, donorAddress(i)), stakeOf(i));
      assert.equal(await court.read.openCasesOf([donorAddress(i)]), 0n);
    }
  });

  it("re-targets a draw whose seed block has left the 256-block window", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, caseId, donors, viem } = fx;
    await court.write.dispute([caseId], { account: donors[0]!.account });
    // Block by block: on the OP Stack simulation, a block after a multi-block `hardhat_mine`
    // makes the node fail to read its parent's fee parameters.
    for (let block = 0; block < DRAW_DELAY + 300; block++)
      await connection.provider.request({ method: "evm_mine" });
    await viem.assertions.emit(court.write.drawJury([caseId]), court, "DrawRetargeted");
    assert.equal((await court.read.caseOf([caseId])).stage, 2);
    await viem.assertions.revertWithCustomError(court.write.drawJury([caseId]), court, "DrawTooEarly");
    await networkHelpers.mine(DRAW_DELAY);
    await viem.assertions.emit(court.write.drawJury([caseId]), court, "JurorsDrawn");
  });

  it("keeps parameters behind a timelock and within bounds, and open cases keep their terms", async () => {
    const fx = await networkHelpers.loadFixture(accusedCase);
    const { court, caseId, viem, reporter } = fx;
    const next = { ...courtParams(), disputeBond: parseEther("50") };
    await viem.assertions.revertWithCustomError(
      court.write.proposeParams([next], { account: reporter.account }),
      court,
      "OwnableUnauthorizedAccount",
    );
    for (const bad of [
      { ...next, jurySize: 4 },
      { ...next, jurySize: 17 },
      { ...next, drawDelay: 0 },
      { ...next, voteWindow: 59 },
      { ...next, jurorRewardBps: 6_000, winnerRewardBps: 3_001 },
      { ...next, silentJurorBps: 1_001 },
      { ...next, disputeBond: 0n },
    ]) {
      await viem.assertions.revertWithCustomError(court.write.proposeParams([bad]), court, "InvalidParams");
    }
    await court.write.proposeParams([next]);
    await viem.assertions.revertWithCustomError(court.write.applyParams(), court, "ParamsTimelocked");
    await networkHelpers.time.increase(PARAMS_TIMELOCK - 100);
    const second = await accuse(fx, { ...jobSpec(4), salt: keccak256(toHex("second")) });
    await networkHelpers.time.increase(100);
    await court.write.applyParams();
    assert.equal((await court.read.params()).disputeBond, parseEther("50"));
    // The case opened before the change keeps the bond it opened with.
    const disputerBefore = await balance(fx, fx.donorAddress(0));
    await court.write.dispute([second], { account: fx.donors[0]!.account });
    assert.equal(await balance(fx, fx.donorAddress(0)), disputerBefore - DISPUTE_BOND);
    assert.equal((await court.read.caseOf([caseId])).terms.disputeBond, DISPUTE_BOND);
  });
});
