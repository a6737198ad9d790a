// The generated CiSettleVerifier accepts exactly what snarkjs accepts, with proofToCalldata's
// coordinate order, on a real (in-process) Hardhat chain.
import { strict as assert } from "node:assert";
import { before, describe, it } from "node:test";
import { network } from "hardhat";
import {
  SettlementKey,
  ZkProver,
  ZkState,
  buildBatchWitness,
  circuitArtifacts,
  proofToCalldata,
  zkVoucherMessage,
} from "../../offchain/src/zk/index.ts";
import type { ProveResult } from "../../offchain/src/zk/index.ts";

const artifacts = circuitArtifacts("ci");
const domainTag = 12345n;

type Calldata = readonly [
  readonly [bigint, bigint],
  readonly [readonly [bigint, bigint], readonly [bigint, bigint]],
  readonly [bigint, bigint],
  readonly bigint[],
];

function verifierArgs(proof: ProveResult["proof"], publicSignals: readonly bigint[]): Calldata {
  const [ax, ay, bx1, bx0, by1, by0, cx, cy] = proofToCalldata(proof) as [
    bigint,
    bigint,
    bigint,
    bigint,
    bigint,
    bigint,
    bigint,
    bigint,
  ];
  return [
    [ax, ay],
    [
      [bx1, bx0],
      [by1, by0],
    ],
    [cx, cy],
    publicSignals,
  ];
}

describe("CiSettleVerifier on chain", { timeout: 120_000 }, () => {
  let proved: ProveResult;

  before(async () => {
    const key = new SettlementKey(new Uint8Array(32).fill(7));
    const batch = buildBatchWitness({
      state: new ZkState(artifacts.params.depth),
      domainTag,
      queue: [
        {
          kind: "open",
          leaf: 0,
          amount: 1000n,
          ax: key.publicKey.ax,
          ay: key.publicKey.ay,
          payee: "0x00000000000000000000000000000000000000a1",
        },
      ],
      transfers: [{ leaf: 0, cumulative: 250n, signature: key.sign(zkVoucherMessage(domainTag, 0, 250n)) }],
      params: artifacts.params,
    });
    const prover = await ZkProver.start(artifacts);
    try {
      proved = await prover.prove(batch.input);
    } finally {
      await prover.terminate();
    }
  });

  it("accepts the proof, refuses a changed input or proof, and says what a verification costs", async () => {
    const { viem } = await network.create();
    const verifier = await viem.deployContract("CiSettleVerifier");
    const args = verifierArgs(proved.proof, proved.publicSignals);
    assert.equal(await verifier.read.verifyProof(args), true);
    const changed = proved.publicSignals.with(5, proved.publicSignals[5]! + (1n << 30n));
    assert.equal(await verifier.read.verifyProof([args[0], args[1], args[2], changed]), false);
    assert.equal(await verifier.read.verifyProof([args[2], args[1], args[0], args[3]]), false);
    const publicClient = await viem.getPublicClient();
    const gas = await publicClient.estimateContractGas({
      address: verifier.address,
      abi: verifier.abi,
      functionName: "verifyProof",
      args,
    });
    console.log(`verifyProof with ${proved.publicSignals.length} public inputs: ${gas} gas (call included)`);
    assert.ok(gas < 300_000n, `verification costs ${gas} gas`);
  });
});
