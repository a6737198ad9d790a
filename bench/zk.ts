// `npm run bench -- zk`: the zk settlement mode on the committed circuit (docs/zk.md), against
// signature-mode settlement measured in the same run on the same devnet (a Hardhat node
// simulating an OP Stack L2, with OP Mainnet's fee scalars). Prints a table; the last line is
// one JSON object.
//
// Steady state on both sides: channels are opened and paid once first, then each round raises
// every channel's cumulative amount, so no measured transfer creates a storage slot or a leaf.
import { keccak256, parseAbi, parseEther, toHex } from "viem";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  channelIdOf,
  createWriter,
  devnetPrivateKey,
  mintAtp,
  openChannel,
  openZkChannel,
  readZkParams,
  settleVouchers,
  settleZkBatch,
  signVoucher,
  startDevnet,
  withdrawZk,
  zkChannelsAbi,
  zkChannelsAddress,
} from "../offchain/src/chain/index.ts";
import type { ChainWriter, SignedVoucher, ZkProofWords } from "../offchain/src/chain/index.ts";
import {
  SettlementKey,
  ZkProver,
  ZkState,
  buildBatchWitness,
  circuitArtifacts,
  proofToCalldata,
  zkVoucherMessage,
} from "../offchain/src/zk/index.ts";
import type { QueueOp, SignedTransfer } from "../offchain/src/zk/index.ts";
import { measureOpGas, setOpMainnetFeeScalars } from "./_op-fees.ts";
import type { Measured } from "./_op-fees.ts";

const ROUNDS = Number(process.env.ZK_ROUNDS ?? 5);
const SIG_BATCH_LARGE = 100;
const GOALS = { verifyGas: 250_000, proveSeconds: 60, zkToSigRatio: 0.35 };

const artifacts = circuitArtifacts(process.env.ZK_INSTANCE ?? "ci");
const { batchSize, queueSlots } = artifacts.params;
console.log(
  `circuit ${artifacts.instance}: depth ${artifacts.params.depth}, ${queueSlots} queue slots, ${batchSize} transfers per proof, ${artifacts.constraints} constraints, ${artifacts.publicInputs} public inputs`,
);

const devnet = await startDevnet();
const prover = await ZkProver.start(artifacts);
try {
  const { rpcUrl, deployment } = devnet;
  const writer = (key: number) => createWriter(rpcUrl, deployment, devnetPrivateKey(key));
  const admin = writer(0);
  await setOpMainnetFeeScalars(admin);
  const buyer = writer(1);
  await mintAtp(admin, buyer.walletClient.account.address, parseEther("1000000"));
  const payees = Array.from(
    { length: SIG_BATCH_LARGE },
    (_, i) => privateKeyToAccount(keccak256(toHex(`bench-zk-payee-${i}`))).address,
  );
  const chain = await readZkParams(admin);
  if (
    chain.batchSize !== batchSize ||
    chain.queueSlots !== queueSlots ||
    chain.depth !== artifacts.params.depth
  )
    throw new Error("the devnet's ZkChannels was deployed for another circuit instance");

  const zk = await measureZk(admin, buyer, payees.slice(0, batchSize), chain.domainTag);
  const sigSmall = await measureSignatures(admin, buyer, payees.slice(0, batchSize));
  const sigLarge = await measureSignatures(admin, buyer, payees);

  const gasPerVoucherZk = Math.round(zk.settle.gas / batchSize);
  const gasPerVoucherSig = Math.round(sigLarge.gas / SIG_BATCH_LARGE);
  const rows: [string, string, string][] = [
    ["constraints", String(artifacts.constraints), ""],
    ["transfers per proof", String(batchSize), ""],
    [
      "proving, median of rounds",
      `${zk.proveSeconds.toFixed(2)} s`,
      `${zk.proveCpuSeconds.toFixed(2)} s CPU`,
    ],
    ["verifyProof gas", String(zk.verifyGas), ""],
    ["zk settle, per batch", `${zk.settle.gas} L2`, `${zk.settle.l1Gas} L1 data`],
    ["zk settle, per voucher", `${gasPerVoucherZk} L2`, `${Math.round(zk.settle.l1Gas / batchSize)} L1 data`],
    ["zk queue-only batch", `${zk.queueOnly.gas} L2`, `${zk.queueOnly.l1Gas} L1 data`],
    ["zk open (queues OPEN)", `${zk.open.gas} L2`, `${zk.open.l1Gas} L1 data`],
    ["zk withdraw (Merkle proof)", `${zk.withdraw.gas} L2`, `${zk.withdraw.l1Gas} L1 data`],
    [
      `sig settle, per voucher at ${batchSize}`,
      `${Math.round(sigSmall.gas / batchSize)} L2`,
      `${Math.round(sigSmall.l1Gas / batchSize)} L1 data`,
    ],
    [
      `sig settle, per voucher at ${SIG_BATCH_LARGE}`,
      `${gasPerVoucherSig} L2`,
      `${Math.round(sigLarge.l1Gas / SIG_BATCH_LARGE)} L1 data`,
    ],
  ];
  for (const [name, value, extra] of rows) console.log(`${name.padEnd(34)}${value.padStart(16)}  ${extra}`);
  const ratio = gasPerVoucherZk / gasPerVoucherSig;
  console.log(
    `goals  verify ≤ ${GOALS.verifyGas} gas ${zk.verifyGas <= GOALS.verifyGas ? "met" : "MISSED"}, proving ≤ ${GOALS.proveSeconds} s ${zk.proveSeconds <= GOALS.proveSeconds ? "met" : "MISSED"}, zk/sig per voucher ${ratio.toFixed(2)} ≤ ${GOALS.zkToSigRatio} ${ratio <= GOALS.zkToSigRatio ? "met" : "MISSED"}`,
  );
  console.log(
    JSON.stringify({
      constraints: artifacts.constraints,
      transfersPerProof: batchSize,
      proveSeconds: round(zk.proveSeconds, 2),
      verifyGas: zk.verifyGas,
      gasPerVoucherZk,
      gasPerVoucherSig,
      proveCpuSeconds: round(zk.proveCpuSeconds, 2),
      gasPerVoucherSigSameBatch: Math.round(sigSmall.gas / batchSize),
      l1DataGasPerVoucherZk: Math.round(zk.settle.l1Gas / batchSize),
      l1DataGasPerVoucherSig: Math.round(sigLarge.l1Gas / SIG_BATCH_LARGE),
      withdrawGas: zk.withdraw.gas,
      instance: artifacts.instance,
    }),
  );
} finally {
  await prover.terminate();
  await devnet.stop();
}

interface ZkFigures {
  open: Measured;
  queueOnly: Measured;
  settle: Measured;
  withdraw: Measured;
  verifyGas: number;
  proveSeconds: number;
  proveCpuSeconds: number;
}

async function measureZk(
  admin: ChainWriter,
  buyer: ChainWriter,
  payees: Address[],
  domainTag: bigint,
): Promise<ZkFigures> {
  const key = SettlementKey.generate();
  const signer = buyer.walletClient.account.address;
  let state = new ZkState(artifacts.params.depth);
  const pending: QueueOp[] = [];
  let open: Measured | undefined;
  for (const payee of payees) {
    const opened = await openZkChannel(buyer, {
      payee,
      signer,
      key: key.publicKey,
      amount: parseEther("100"),
    });
    open = await measureOpGas(admin, opened.receipt);
    pending.push({ kind: "open", leaf: opened.leaf, amount: parseEther("100"), ...key.publicKey, payee });
  }
  let queueOnly: Measured | undefined;
  while (pending.length > 0) {
    const ops = pending.splice(0, queueSlots);
    const result = await proveAndSettle(admin, state, domainTag, ops, []);
    queueOnly = result.settled;
    state = result.stateAfter;
  }
  const leaves = [...state.leaves.keys()];
  const seconds: number[] = [];
  const cpu: number[] = [];
  const settles: Measured[] = [];
  let lastProof: { words: ZkProofWords; publicSignals: bigint[] } | undefined;
  for (let round = 1; round <= ROUNDS + 1; round++) {
    const transfers = leaves.map((leaf) => signed(key, domainTag, leaf, BigInt(round) * 1_000_000n));
    const result = await proveAndSettle(admin, state, domainTag, [], transfers);
    state = result.stateAfter;
    // The first round writes each leaf's first payment; later rounds are the steady state.
    if (round === 1) continue;
    seconds.push(result.seconds);
    cpu.push(result.cpuSeconds);
    settles.push(result.settled);
    lastProof = result.proof;
  }
  const path = state.tree.path(leaves[0]!);
  const withdrawn = await withdrawZk(
    admin,
    leaves[0]!,
    state.leaves.get(leaves[0]!)!,
    path.siblings,
    state.root,
  );
  return {
    open: open!,
    queueOnly: queueOnly!,
    settle: median(settles, (m) => m.gas),
    withdraw: await measureOpGas(admin, withdrawn),
    verifyGas: await verifyGasOf(admin, lastProof!),
    proveSeconds: medianOf(seconds),
    proveCpuSeconds: medianOf(cpu),
  };
}

function signed(key: SettlementKey, domainTag: bigint, leaf: number, cumulative: bigint): SignedTransfer {
  return { leaf, cumulative, signature: key.sign(zkVoucherMessage(domainTag, leaf, cumulative)) };
}

async function proveAndSettle(
  admin: ChainWriter,
  state: ZkState,
  domainTag: bigint,
  queue: QueueOp[],
  transfers: SignedTransfer[],
) {
  const witness = buildBatchWitness({ state, domainTag, queue, transfers, params: artifacts.params });
  const proven = await prover.prove(witness.input);
  const words = proofToCalldata(proven.proof) as unknown as ZkProofWords;
  const transfersPublic = witness.publicSignals.slice(5);
  const receipt = await settleZkBatch(admin, {
    newRoot: witness.newRoot,
    opsConsumed: BigInt(queue.length),
    transfers: transfersPublic,
    proof: words,
  });
  return {
    stateAfter: witness.stateAfter,
    settled: await measureOpGas(admin, receipt),
    seconds: proven.seconds,
    cpuSeconds: proven.cpuSeconds,
    proof: { words, publicSignals: witness.publicSignals },
  };
}

/** Gas of the verifier's verifyProof alone: an estimate of the call less the 21,000 every transaction pays. */
async function verifyGasOf(
  admin: ChainWriter,
  proof: { words: ZkProofWords; publicSignals: bigint[] },
): Promise<number> {
  const zkChannels = zkChannelsAddress(admin);
  const verifier = (await admin.publicClient.readContract({
    address: zkChannels,
    abi: zkChannelsAbi,
    functionName: "verifier",
  })) as Address;
  const n = proof.publicSignals.length;
  const abi = parseAbi([
    `function verifyProof(uint256[2] a, uint256[2][2] b, uint256[2] c, uint256[${n}] pub) view returns (bool)`,
  ]);
  const w = proof.words;
  const args = [
    [w[0], w[1]],
    [
      [w[2], w[3]],
      [w[4], w[5]],
    ],
    [w[6], w[7]],
    proof.publicSignals,
  ] as const;
  const ok = await admin.publicClient.readContract({
    address: verifier,
    abi,
    functionName: "verifyProof",
    args: args as never,
  });
  if (!ok) throw new Error("the verifier refuses the proof the contract accepted");
  const gas = await admin.publicClient.estimateContractGas({
    address: verifier,
    abi,
    functionName: "verifyProof",
    args: args as never,
    account: admin.walletClient.account,
  });
  return Number(gas) - 21_000;
}

/** Signature mode on PaymentChannels: one settle per round raising every channel, no receipt anchor. */
async function measureSignatures(
  admin: ChainWriter,
  buyer: ChainWriter,
  payees: Address[],
): Promise<Measured> {
  const voucherKey = privateKeyToAccount(keccak256(toHex(`bench-zk-voucher-key-${payees.length}`)));
  const keys: SignedVoucher["key"][] = [];
  for (const [i, payee] of payees.entries()) {
    const opened = await openChannel(buyer, {
      signer: voucherKey.address,
      payee,
      amount: parseEther("100"),
      nonce: BigInt(1_000 * payees.length + i),
    });
    keys.push(opened.key);
  }
  const { deployment } = admin;
  const batchOf = async (cumulativeAmount: bigint): Promise<SignedVoucher[]> =>
    Promise.all(
      keys.map(async (key) => ({
        key,
        cumulativeAmount,
        signature: (await signVoucher(voucherKey, deployment.chainId, deployment.paymentChannels, {
          channelId: channelIdOf(key),
          cumulativeAmount,
        })) as Hex,
      })),
    );
  const zeroRoot = `0x${"00".repeat(32)}` as Hex;
  const measured: Measured[] = [];
  for (let round = 1; round <= 3; round++) {
    const receipt = await settleVouchers(admin, await batchOf(BigInt(round) * 1_000_000n), {
      epoch: BigInt(round),
      receiptRoot: zeroRoot,
      receiptCount: 0n,
    });
    if (round > 1) measured.push(await measureOpGas(admin, receipt));
  }
  return median(measured, (m) => m.gas);
}

function median<T>(values: T[], by: (value: T) => number): T {
  const sorted = [...values].sort((a, b) => by(a) - by(b));
  return sorted[Math.floor(sorted.length / 2)]!;
}

function medianOf(values: number[]): number {
  return median(values, (v) => v);
}

function round(value: number, digits: number): number {
  return Number(value.toFixed(digits));
}
