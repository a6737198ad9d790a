// The generated CiSettleVerifier accepts exactly what snarkjs accepts, with proofToCalldata's
// coordinate order, on a real (in-process) Hardhat chain.
import { strict as assert } from "node:assert";
import { before, describe, it } from "node:test";
import { network } from "hardhat";
import { parseAbi } from "viem";
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
const VERIFIER_ABI = parseAbi([
  "function verifyProof(uint256[2] _pA, uint256[2][2] _pB, uint256[2] _pC, uint256[6] _pubSignals) view returns (bool)",
]);

type Calldata = readonly [
  readonly [bigint, bigint],
  readonly [readonly [bigint, bigint], readonly [bigint, bigint]],
  readonly [bigint, bigint],
  readonly [bigint, bigint, bigint, bigint, bigint, bigint],
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
  if (publicSignals.length !== 6)
    throw new Error(`the ci verifier takes 6 public inputs, not ${publicSignals.length}`);
  return [
    [ax, ay],
    [
      [bx1, bx0],
      [by1, by0],
    ],
    [cx, cy],
    publicSignals as unknown as Calldata[3],
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
    const { address } = await viem.deployContract("CiSettleVerifier");
    const publicClient = await viem.getPublicClient();
    const verify = (args: Calldata) =>
      publicClient.readContract({ address, abi: VERIFIER_ABI, functionName: "verifyProof", args });
    const args = verifierArgs(proved.proof, proved.publicSignals);
    assert.equal(await verify(args), true);
    const changed = proved.publicSignals.with(5, proved.publicSignals[5]! + (1n << 30n));
    assert.equal(await verify([args[0], args[1], args[2], changed as unknown as Calldata[3]]), false);
    assert.equal(await verify([args[2], args[1], args[0], args[3]]), false);
    const gas = await publicClient.estimateContractGas({
      address,
      abi: VERIFIER_ABI,
      functionName: "verifyProof",
      args,
    });
    console.log(`verifyProof with ${proved.publicSignals.length} public inputs: ${gas} gas (call included)`);
    assert.ok(gas < 300_000n, `verification costs ${gas} gas`);
  });
});
