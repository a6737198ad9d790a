// Evidence verification against a real `hardhat node` with DonorRegistry: receivers re-check
// signatures, the spec digest and the registry's own rules before acting on anyone's word.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { keccak256, parseEther, toHex } from "viem";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { PrivateKeyAccount } from "viem/accounts";
import {
  createReader,
  createWriter,
  donorStake,
  readCase,
  startDevnet,
} from "../../offchain/src/chain/index.ts";
import type { ChainReader, Devnet } from "../../offchain/src/chain/index.ts";
import {
  EvidenceDesk,
  chainSubmitterOf,
  evidenceChainOf,
  verifyEvidence,
} from "../../offchain/src/evidence/index.ts";
import type { EvidenceChain } from "../../offchain/src/evidence/index.ts";
import {
  EvidenceMessageSchema,
  SECP256K1_ORDER,
  cellDomain,
  eip2098Parts,
  jobIdOf,
  jobSpecToWire,
  receiptToWire,
  signReceipt,
  signatureParts,
} from "../../offchain/src/protocol/index.ts";
import type {
  EquivocationEvidence,
  JobSpecMessage,
  OutvoteEvidenceWire,
  Receipt,
  SignedReceiptWire,
} from "../../offchain/src/protocol/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { jobSpec } from "../support/contracts/fixture.ts";
import { stakedDonors } from "../support/devnet-donors.ts";

const log = pino({ level: "silent" });

describe("evidence verification on a devnet", () => {
  let devnet: Devnet;
  let reader: ChainReader;
  let chain: EvidenceChain;
  let operators: PrivateKeyAccount[];
  let donorWallets: Hex[];
  let domain: ReturnType<typeof cellDomain>;
  let spec: JobSpecMessage;
  let startedAt: bigint;
  const stranger = privateKeyToAccount(keccak256(toHex("an operator nobody registered")));
  const truth = keccak256(toHex("the deterministic output"));
  const lie = keccak256(toHex("a made-up output"));

  before(async () => {
    devnet = await startDevnet();
    const { rpcUrl, deployment } = devnet;
    const admin = createWriter(rpcUrl, deployment, devnet.deployerKey);
    reader = createReader(rpcUrl, deployment);
    ({ operators } = await stakedDonors(admin, {
      rpcUrl,
      count: 5,
      firstAccount: 1,
      label: "evidence-verify",
      mint: parseEther("5000"),
    }).then(({ donors, operators }) => {
      donorWallets = donors.map((donor) => donor.walletClient.account.address);
      return { operators };
    }));
    chain = evidenceChainOf(reader, { ttlMs: 0 });
    domain = cellDomain(deployment.chainId, deployment.donorRegistry);
    spec = { ...jobSpec(4), salt: keccak256(toHex("evidence-verify")) };
    startedAt = ((await reader.publicClient.getBlock()).timestamp + 1n) * 1000n;
  });
  after(async () => {
    await devnet?.stop();
  });

  const signed = async (
    operator: PrivateKeyAccount,
    outputCid: Hex,
    job: JobSpecMessage = spec,
  ): Promise<SignedReceiptWire> => {
    const receipt: Receipt = {
      jobId: jobIdOf(domain, job),
      executor: operator.address,
      moduleCid: job.moduleCid,
      inputCid: job.inputCid,
      outputCid,
      fuelUsed: 1_000_000n,
      status: 0,
      startedAt,
      finishedAt: startedAt + 1n,
    };
    return { receipt: receiptToWire(receipt), signature: await signReceipt(operator, domain, receipt) };
  };
  const verify = (evidence: unknown) =>
    verifyEvidence(EvidenceMessageSchema.parse(evidence), { domain, chain, now: Date.now });
  const outvote = async (accused: PrivateKeyAccount, quorum: PrivateKeyAccount[], job = spec) =>
    ({
      kind: "outvote",
      spec: jobSpecToWire(job),
      accused: await signed(accused, lie, job),
      quorum: await Promise.all(quorum.map((operator) => signed(operator, truth, job))),
    }) satisfies OutvoteEvidenceWire;

  it("accepts an equivocation of a registered operator", async () => {
    const evidence = {
      kind: "equivocation",
      a: await signed(operators[0]!, truth),
      b: await signed(operators[0]!, lie),
    };
    const result = await verify(evidence);
    assert.deepEqual(result, {
      status: "valid",
      kind: "equivocation",
      jobId: jobIdOf(domain, spec),
      operator: operators[0]!.address,
    });
  });

  it("refuses a receipt signed by someone else than its executor", async () => {
    const forged = await signed(operators[1]!, lie);
    const b = { ...forged, receipt: { ...forged.receipt, executor: operators[0]!.address } };
    const result = await verify({ kind: "equivocation", a: await signed(operators[0]!, truth), b });
    assert.equal(result.status, "invalid");
    assert.match(
      result.status === "invalid" ? result.reason : "",
      /receipt b's signature is not its executor/,
    );
  });

  it("refuses a high-s twin of a valid signature: the schema first, the verifier too", async () => {
    const a = await signed(operators[0]!, truth);
    const b = await signed(operators[0]!, lie);
    const { r, s, yParity } = signatureParts(b.signature);
    const highS =
      `0x${r.toString(16).padStart(64, "0")}${(SECP256K1_ORDER - s).toString(16).padStart(64, "0")}${yParity === 0 ? "1c" : "1b"}` as Hex;
    const evidence: EquivocationEvidence = { kind: "equivocation", a, b: { ...b, signature: highS } };
    const parsed = EvidenceMessageSchema.safeParse(evidence);
    assert.equal(parsed.success, false);
    assert.match(JSON.stringify(parsed.error?.issues), /above n\/2/);
    const result = await verifyEvidence(evidence, { domain, chain, now: Date.now });
    assert.equal(result.status, "invalid");
  });

  it("accepts a compact (EIP-2098) signature, which the contracts take too", async () => {
    const b = await signed(operators[0]!, lie);
    const { r, vs } = eip2098Parts(signatureParts(b.signature));
    const compact = `${r}${vs.slice(2)}` as Hex;
    const evidence = EvidenceMessageSchema.parse({
      kind: "equivocation",
      a: await signed(operators[0]!, truth),
      b: { ...b, signature: compact },
    });
    assert.equal((await verifyEvidence(evidence, { domain, chain, now: Date.now })).status, "valid");
  });

  it("refuses two receipts with the same result, and an operator the registry does not know", async () => {
    const same = await verify({
      kind: "equivocation",
      a: await signed(operators[0]!, truth),
      b: await signed(operators[0]!, truth),
    });
    assert.match(same.status === "invalid" ? same.reason : "", /same result/);
    const unknown = await verify({
      kind: "equivocation",
      a: await signed(stranger, truth),
      b: await signed(stranger, lie),
    });
    assert.match(unknown.status === "invalid" ? unknown.reason : "", /no operator DonorRegistry knows/);
  });

  it("accepts an outvote of one replica by three staked donors of a 4-replica job", async () => {
    const result = await verify(await outvote(operators[0]!, operators.slice(1, 4)));
    assert.equal(result.status, "valid");
  });

  it("refuses outvote evidence whose spec is not the receipts' job", async () => {
    const evidence = await outvote(operators[0]!, operators.slice(1, 4));
    const wrongSpec = {
      ...evidence,
      spec: jobSpecToWire({ ...spec, salt: keccak256(toHex("another job")) }),
    };
    const result = await verify(wrongSpec);
    assert.match(
      result.status === "invalid" ? result.reason : "",
      /spec's digest .* is not the accused receipt's job id/,
    );
  });

  it("refuses a quorum signed by unstaked keys, and a quorum too small, naming the registry's error", async () => {
    const strangers = [1, 2, 3].map((i) => privateKeyToAccount(keccak256(toHex(`unstaked ${i}`))));
    const unstaked = await verify(await outvote(operators[0]!, strangers));
    assert.match(unstaked.status === "invalid" ? unstaked.reason : "", /OperatorNotActive/);
    const small = await verify(await outvote(operators[0]!, operators.slice(1, 3)));
    assert.match(small.status === "invalid" ? small.reason : "", /QuorumTooSmall/);
  });

  it("claims an outvote slash from a verdict's dissent and finalizes the court case after its window", async () => {
    const { rpcUrl, deployment } = devnet;
    const store = openStore(":memory:");
    const published: string[] = [];
    const slashed: string[] = [];
    // The desk's clock follows the chain's, which the test moves past the dispute window.
    let chainAheadMs = 0;
    const desk = new EvidenceDesk({
      domain,
      chain,
      submit: chainSubmitterOf(createWriter(rpcUrl, deployment, devnet.deployerKey)),
      publish: async (evidence) => void published.push(evidence.kind),
      trust: {
        onVerifiedEvidence: () => undefined,
        onInvalidEvidence: () => undefined,
        onSlashed: (operator, note) => slashed.push(`${note.kind} ${operator}`),
      },
      store,
      clock: {
        now: () => Date.now() + chainAheadMs,
        after: (ms, fire) => {
          const t = setTimeout(fire, ms);
          return () => clearTimeout(t);
        },
      },
      log,
    });
    const replica = async (operator: PrivateKeyAccount, outputCid: Hex) => ({
      peerId: `peer-${operator.address}`,
      operator: operator.address,
      latencyMs: 3,
      pricePerMegaFuel: 1_000n,
      ...(await signed(operator, outputCid)),
    });
    desk.onVerdict({
      jobId: jobIdOf(domain, spec),
      spec,
      outcome: "accepted",
      quorum: 3,
      agreeing: await Promise.all(operators.slice(1, 4).map((operator) => replica(operator, truth))),
      dissenting: [await replica(operators[0]!, lie)],
      silent: [],
      decidedAt: Date.now(),
    });
    for (let i = 0; i < 200 && desk.history()[0]?.caseId == null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      await desk.settled();
    }
    const [row] = desk.history();
    assert.equal(row?.outcome, "case_opened", JSON.stringify(row));
    assert.equal(row?.state, "pending", "the slash waits for the dispute window");
    const caseId = BigInt(row!.caseId!);
    assert.equal((await readCase(reader, caseId)).accusedOperator, operators[0]!.address);
    assert.deepEqual(published, ["outvote"]);

    const stakeBefore = await donorStake(reader, donorWallets[0]!);
    const { deadline } = await readCase(reader, caseId);
    const chainNow = (await reader.publicClient.getBlock()).timestamp;
    const ahead = Number(deadline - chainNow) + 2;
    await reader.publicClient.request({ method: "evm_increaseTime" as never, params: [ahead] as never });
    await reader.publicClient.request({ method: "evm_mine" as never, params: [] as never });
    chainAheadMs = Number((await reader.publicClient.getBlock()).timestamp) * 1000 - Date.now() + 1_000;
    desk.start();
    for (let i = 0; i < 200 && desk.history()[0]?.state !== "done"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      await desk.settled();
    }
    assert.equal(desk.history()[0]?.outcome, "slashed", JSON.stringify(desk.history()[0]));
    assert.ok(
      (await donorStake(reader, donorWallets[0]!)).bonded < stakeBefore.bonded,
      "the outvoted donor lost stake",
    );
    assert.deepEqual(slashed, [`outvote ${operators[0]!.address}`]);
    await desk.stop();
    store.close();
  });

  it("slashes a verified equivocation on-chain; a later one against the jailed operator is true but ignored", async () => {
    const { rpcUrl, deployment } = devnet;
    const store = openStore(":memory:");
    const reporter = createWriter(rpcUrl, deployment, devnet.deployerKey);
    const invalid: string[] = [];
    const desk = new EvidenceDesk(
      {
        domain,
        chain,
        submit: chainSubmitterOf(reporter),
        publish: async () => undefined,
        trust: { onVerifiedEvidence: () => undefined, onInvalidEvidence: (peer) => invalid.push(peer) },
        store,
        clock: {
          now: Date.now,
          after: (ms, fire) => {
            const t = setTimeout(fire, ms);
            return () => clearTimeout(t);
          },
        },
        log,
      },
      { gossipSpreadMs: 0 },
    );
    const liar = operators[4]!;
    const before = await donorStake(reader, donorWallets[4]!);
    const evidence = EvidenceMessageSchema.parse({
      kind: "equivocation",
      a: await signed(liar, truth),
      b: await signed(liar, lie),
    });
    assert.equal(await desk.receive(evidence, "peer-a"), "accept");
    await desk.settled();
    const [row] = desk.history();
    assert.equal(row?.state, "done");
    assert.equal(row?.outcome, "slashed");
    const afterSlash = await donorStake(reader, donorWallets[4]!);
    assert.ok(afterSlash.bonded < before.bonded, "the liar's stake went down");

    // A second, different equivocation of the jailed operator is true but no longer acted on.
    const again = EvidenceMessageSchema.parse({
      kind: "equivocation",
      a: await signed(liar, truth),
      b: await signed(liar, keccak256(toHex("yet another output"))),
    });
    assert.equal(await desk.receive(again, "peer-b"), "ignore");
    assert.deepEqual(invalid, [], "nobody is blamed for true evidence");
    await desk.stop();
    store.close();
  });
});
