// The accused donor's automatic dispute: the decision on a fake clock, then the watcher against a
// real `hardhat node` with DonorRegistry and the JuryCourt (the re-execution is a port here; the
// jury e2e test runs a real one).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { keccak256, parseEther, toHex } from "viem";
import type { Hex } from "viem";
import type { PrivateKeyAccount } from "viem/accounts";
import {
  CaseStage,
  caseIdOf,
  createReader,
  createWriter,
  mintAtp,
  readCase,
  slashOutvoted,
  startDevnet,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader, ChainWriter, Devnet } from "../../offchain/src/chain/index.ts";
import { AccusationWatcher, decideDispute, disputerChainOf } from "../../offchain/src/evidence/index.ts";
import type { ExecutionOutcome } from "../../offchain/src/evidence/index.ts";
import { cellDomain, jobIdOf, signReceipt } from "../../offchain/src/protocol/index.ts";
import type { JobSpecMessage, Receipt } from "../../offchain/src/protocol/index.ts";
import { jobSpec } from "../support/contracts/fixture.ts";
import { stakedDonors } from "../support/devnet-donors.ts";

const log = pino({ level: process.env.TEST_LOG ?? "silent" });
const TRUTH = keccak256(toHex("the deterministic output"));
const LIE = keccak256(toHex("a made-up output"));
const outcome = (outputCid: Hex): ExecutionOutcome => ({ status: 0, outputCid, fuelUsed: 1_000_000n });

describe("deciding a dispute", () => {
  const open = { stage: CaseStage.Open, deadline: 1_000n };
  it("disputes only when re-execution gives the accused receipt's result, within the window", () => {
    assert.deepEqual(decideDispute(outcome(TRUTH), outcome(TRUTH), open, 999_000), { action: "dispute" });
    assert.equal(decideDispute(outcome(TRUTH), outcome(LIE), open, 999_000).action, "accept");
    assert.equal(decideDispute(outcome(TRUTH), undefined, open, 999_000).action, "accept");
    assert.equal(
      decideDispute(outcome(TRUTH), { ...outcome(TRUTH), fuelUsed: 1n }, open, 999_000).action,
      "accept",
      "the fuel used is part of the result",
    );
  });
  it("skips a case whose window closed or that is no longer open", () => {
    assert.match(
      JSON.stringify(decideDispute(outcome(TRUTH), outcome(TRUTH), open, 1_001_000)),
      /window has closed/,
    );
    const disputed = { stage: CaseStage.Disputed, deadline: 1_000n };
    assert.equal(decideDispute(outcome(TRUTH), outcome(TRUTH), disputed, 0).action, "skip");
  });
});

describe("the accused donor's watcher", () => {
  it("tries an accusation it could not handle again at the next poll, until it disputes", async () => {
    const accusation = {
      caseId: 9n,
      operator: "0x00000000000000000000000000000000000000aa",
      jobId: LIE,
      amount: 1n,
    } as const;
    const receipt = { outputCid: TRUTH, fuelUsed: 1_000_000n, status: 0 };
    let evidenceFailures = 1;
    const disputed: bigint[] = [];
    let head = 10n;
    const watcher = new AccusationWatcher(
      {
        chain: {
          head: async () => head,
          accusations: async (from, to) => (from <= 10n && 10n <= to ? [accusation] : []),
          caseOf: async () => ({ stage: CaseStage.Open, deadline: 2_000n }),
          evidence: async () => {
            if (evidenceFailures-- > 0) throw new Error("the block exchange found no provider");
            return { accused: { receipt } } as never;
          },
          dispute: async (caseId) => void disputed.push(caseId),
        },
        reexecute: async () => outcome(TRUTH),
        now: () => 1_000_000,
        log,
      },
      { pollMs: 60_000, blockRange: 100n },
    );
    await watcher.poll();
    assert.deepEqual(disputed, [], "the first try failed");
    head = 11n;
    await watcher.poll();
    assert.deepEqual(disputed, [9n], "the next poll tried it again");
    await watcher.poll();
    assert.deepEqual(disputed, [9n], "and only once");
  });
});

describe("the accused donor's watcher on a devnet", () => {
  let devnet: Devnet;
  let reader: ChainReader;
  let admin: ChainWriter;
  let operators: PrivateKeyAccount[];
  let domain: ReturnType<typeof cellDomain>;

  before(async () => {
    devnet = await startDevnet();
    const { rpcUrl, deployment } = devnet;
    admin = createWriter(rpcUrl, deployment, devnet.deployerKey);
    reader = createReader(rpcUrl, deployment);
    ({ operators } = await stakedDonors(admin, {
      rpcUrl,
      count: 4,
      firstAccount: 1,
      label: "evidence-dispute",
      mint: parseEther("5000"),
    }));
    domain = cellDomain(deployment.chainId, deployment.donorRegistry);
    // The accused's operator key pays the dispute's gas and bond.
    const accused = operators[0]!.address;
    await reader.publicClient.request({
      method: "hardhat_setBalance" as never,
      params: [accused, toHex(10n ** 20n)] as never,
    });
    await mintAtp(admin, accused, parseEther("100"));
  });
  after(async () => {
    await devnet?.stop();
  });

  /** Opens an outvote case against operators[0] (saying `accusedSaid`) by the other three (saying `quorumSaid`). */
  async function accuse(label: string, accusedSaid: Hex, quorumSaid: Hex): Promise<bigint> {
    const spec: JobSpecMessage = { ...jobSpec(4), salt: keccak256(toHex(label)) };
    const startedAt = ((await reader.publicClient.getBlock()).timestamp + 1n) * 1000n;
    const signed = async (operator: PrivateKeyAccount, outputCid: Hex) => {
      const receipt: Receipt = {
        jobId: jobIdOf(domain, spec),
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
    const quorum = await Promise.all(operators.slice(1, 4).map((operator) => signed(operator, quorumSaid)));
    return caseIdOf(await slashOutvoted(admin, spec, await signed(operators[0]!, accusedSaid), quorum));
  }

  it("disputes an outvote its re-execution contradicts, and lets one it confirms be", async () => {
    const colluded = await accuse("colluding quorum", TRUTH, LIE);
    const deserved = await accuse("a real lie", LIE, TRUTH);
    const accusedWriter = createWriter(
      devnet.rpcUrl,
      devnet.deployment,
      keccak256(toHex("evidence-dispute-operator-0")),
    );
    assert.equal(accusedWriter.walletClient.account.address, operators[0]!.address);
    const reexecuted: bigint[] = [];
    const saved = new Map<string, bigint>();
    const cursor = {
      load: () => saved.get("cursor"),
      save: (next: bigint) => void saved.set("cursor", next),
    };
    const watcher = new AccusationWatcher(
      {
        chain: disputerChainOf(reader, accusedWriter, operators[0]!.address),
        // the honest re-execution: the job's true result
        reexecute: async (evidence) => {
          reexecuted.push(BigInt(evidence.accused.receipt.jobId));
          return outcome(TRUTH);
        },
        now: Date.now,
        log,
        cursor,
      },
      { pollMs: 60_000, blockRange: 1_000n },
    );
    await watcher.poll();
    assert.equal(reexecuted.length, 2, "both accusations re-executed");
    assert.equal((await readCase(reader, colluded)).stage, CaseStage.Disputed);
    assert.equal((await readCase(reader, colluded)).disputer, operators[0]!.address);
    assert.equal(
      (await readCase(reader, deserved)).stage,
      CaseStage.Open,
      "a deserved outvote is not disputed",
    );

    await watcher.poll();
    assert.equal(reexecuted.length, 2, "an accusation is handled once");
    await watcher.stop();

    // Restarted later, with a saved cursor: it reads on from there, however far the chain moved.
    const whileDown = await accuse("while the node was down", TRUTH, LIE);
    for (let i = 0; i < 20; i++)
      await reader.publicClient.request({ method: "evm_mine" as never, params: [] as never });
    const restarted = new AccusationWatcher(
      {
        chain: disputerChainOf(reader, accusedWriter, operators[0]!.address),
        reexecute: async (evidence) => {
          reexecuted.push(BigInt(evidence.accused.receipt.jobId));
          return outcome(TRUTH);
        },
        now: Date.now,
        log,
        cursor,
      },
      { pollMs: 60_000, blockRange: 1_000n, lookbackBlocks: 1n },
    );
    await restarted.poll();
    assert.equal(reexecuted.length, 3, "only the new accusation");
    assert.equal((await readCase(reader, whileDown)).stage, CaseStage.Disputed);
    await restarted.stop();
  });
});
