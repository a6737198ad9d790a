// A juror's side of a dispute through the off-chain bindings, against a real `hardhat node`.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { keccak256, parseEther, toHex } from "viem";
import type { Hex } from "viem";
import type { PrivateKeyAccount } from "viem/accounts";
import {
  CaseOutcome,
  caseIdOf,
  createReader,
  createWriter,
  disputeCase,
  donorStake,
  drawJury,
  jurorDutiesOf,
  outvoteEvidenceOf,
  readCase,
  readCourtParams,
  resolveDispute,
  slashOutvoted,
  startDevnet,
  submitJurorVote,
} from "../../offchain/src/chain/index.ts";
import type { Devnet } from "../../offchain/src/chain/index.ts";
import { cellDomain, jobIdOf, signReceipt } from "../../offchain/src/protocol/index.ts";
import { jobSpec } from "../support/contracts/fixture.ts";
import { mineBlocks, stakedDonors } from "../support/devnet-donors.ts";
import type { JobSpecMessage, Receipt } from "../../offchain/src/protocol/index.ts";

const DONORS = 8;

describe("court bindings on a devnet", () => {
  let devnet: Devnet;
  before(async () => {
    devnet = await startDevnet();
  });
  after(async () => {
    await devnet?.stop();
  });

  it("lets a drawn juror find its duty and the evidence, vote, and the jury decide", async () => {
    const { rpcUrl, deployment } = devnet;
    const admin = createWriter(rpcUrl, deployment, devnet.deployerKey);
    const reader = createReader(rpcUrl, deployment);
    const { donors, operators } = await stakedDonors(admin, {
      rpcUrl,
      count: DONORS,
      firstAccount: 1,
      label: "court-bindings",
      mint: parseEther("5000"),
    });
    const address = (i: number) => donors[i]!.walletClient.account.address;

    const domain = cellDomain(deployment.chainId, deployment.donorRegistry);
    const spec: JobSpecMessage = { ...jobSpec(4), salt: keccak256(toHex("court-bindings")) };
    const jobId = jobIdOf(domain, spec);
    const startedAt = ((await reader.publicClient.getBlock()).timestamp + 1n) * 1000n;
    const truth = keccak256(toHex("the deterministic output"));
    const signed = async (operator: PrivateKeyAccount, outputCid: Hex) => {
      const receipt: Receipt = {
        jobId,
        executor: operator.address,
        moduleCid: spec.moduleCid,
        inputCid: spec.inputCid,
        outputCid,
        fuelUsed: 1_000_000n,
        status: 0,
        startedAt,
        finishedAt: startedAt + 1n,
      };
      return { receipt, signature: await signReceipt(operator, domain, receipt) };
    };
    const accused = await signed(operators[0]!, keccak256(toHex("a wrong output")));
    const quorum = await Promise.all(operators.slice(1, 4).map((op) => signed(op, truth)));
    const caseId = caseIdOf(await slashOutvoted(admin, spec, accused, quorum));

    const evidence = await outvoteEvidenceOf(reader, caseId);
    assert.deepEqual(evidence, { spec, accused, quorum });

    await disputeCase(donors[0]!, caseId);
    const { drawDelay } = await readCourtParams(reader);
    await mineBlocks(reader, drawDelay);
    await drawJury(admin, caseId);

    const head = await reader.publicClient.getBlockNumber();
    const dutiesOf = (i: number) => jurorDutiesOf(reader, address(i), deployment.deployBlock, head);
    const jurors: number[] = [];
    for (let i = 0; i < DONORS; i++) {
      const duties = await dutiesOf(i);
      if (duties.length === 0) continue;
      assert.deepEqual(
        duties.map((d) => [d.caseId, d.jobId]),
        [[caseId, jobId]],
      );
      jurors.push(i);
    }
    assert.equal(jurors.length, 3);
    for (const party of [0, 1, 2, 3]) assert.ok(!jurors.includes(party), `party ${party} was drawn`);

    // Each juror re-executes the job named by the evidence (here: the deterministic output) and votes.
    for (const j of jurors) {
      await submitJurorVote(admin, caseId, await signed(operators[j]!, truth));
      assert.deepEqual(await dutiesOf(j), [], "a juror that voted has no duty left");
    }
    const before = (await donorStake(reader, address(0))).bonded;
    await resolveDispute(admin, caseId);
    const decided = await readCase(reader, caseId);
    assert.equal(decided.outcome, CaseOutcome.AccusedConvicted);
    assert.equal((await donorStake(reader, address(0))).bonded, before - decided.amount);
  });
});
