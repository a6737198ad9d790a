// `npm run bench -- gas`: gas of the main on-chain operations, measured from transaction
// receipts on a real Hardhat node. Prints a table; the last line is one JSON object.
import { keccak256, parseEther, toHex } from "viem";
import type { Hex, TransactionReceipt } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  buildReceiptTree,
  channelIdOf,
  createWriter,
  devnetPrivateKey,
  ensureAllowance,
  mintAtp,
  openChannel,
  redeemVoucher,
  registerDonor,
  settleVouchers,
  signVoucher,
  slashEquivocation,
  stake,
  startDevnet,
} from "../offchain/src/chain/index.ts";
import type { ChainWriter, SignedVoucher } from "../offchain/src/chain/index.ts";
import { cellDomain, signReceipt } from "../offchain/src/protocol/index.ts";
import type { Receipt } from "../offchain/src/protocol/index.ts";

const devnet = await startDevnet();
try {
  const { rpcUrl, deployment } = devnet;
  const writer = (index: number) => createWriter(rpcUrl, deployment, devnetPrivateKey(index));
  const operator = (label: string) => privateKeyToAccount(keccak256(toHex(`bench-${label}`)));
  const admin = writer(0);
  const gas = (receipt: TransactionReceipt) => Number(receipt.gasUsed);

  async function funded(index: number): Promise<ChainWriter> {
    const w = writer(index);
    await mintAtp(admin, w.walletClient.account.address, parseEther("1000000"));
    await ensureAllowance(w, deployment.donorRegistry, 1n);
    await ensureAllowance(w, deployment.paymentChannels, 1n);
    return w;
  }

  // Donors: the first warms the registry's token balance; the second is measured.
  const donors = [await funded(1), await funded(2)];
  await stake(donors[0]!, parseEther("1000"));
  const stakeGas = gas(await stake(donors[1]!, parseEther("1000")));
  const op = operator("donor");
  const registerGas = gas(
    await registerDonor(donors[1]!, {
      operator: op,
      peerKey: keccak256(toHex("peer")),
      metadataURI: "ipfs://donor",
    }),
  );

  // Channels: buyer and voucher key; payees 10..19.
  const buyer = await funded(3);
  const voucherKey = operator("buyer");
  const payees = Array.from({ length: 10 }, (_, i) => privateKeyToAccount(devnetPrivateKey(10 + i)).address);
  let nonce = 0n;
  const open = (payee: Hex, amount = parseEther("10")) =>
    openChannel(buyer, { signer: voucherKey.address, payee, amount, nonce: nonce++ });
  await open(payees[0]!);
  const opened = await open(payees[1]!);
  const openGas = gas(opened.receipt);

  const voucher = async (key: SignedVoucher["key"], cumulativeAmount: bigint): Promise<SignedVoucher> => ({
    key,
    cumulativeAmount,
    signature: await signVoucher(voucherKey, deployment.chainId, deployment.paymentChannels, {
      channelId: channelIdOf(key),
      cumulativeAmount,
    }),
  });
  const redeemGas = gas(await redeemVoucher(buyer, await voucher(opened.key, parseEther("1"))));

  const receipt = (i: number): Receipt => ({
    jobId: keccak256(toHex(`job-${i}`)),
    executor: op.address,
    moduleCid: keccak256(toHex("module")),
    inputCid: keccak256(toHex("input")),
    outputCid: keccak256(toHex(`output-${i}`)),
    fuelUsed: 1_000_000n,
    status: 0,
    startedAt: 1n,
    finishedAt: 2n,
  });
  let epoch = 0n;
  const calldataPerVoucher = new Map<number, number>();
  const calldataGas = (input: Hex) =>
    Buffer.from(input.slice(2), "hex").reduce((sum, byte) => sum + (byte === 0 ? 4 : 16), 0);
  async function settlePerVoucher(size: number): Promise<number> {
    const batch: SignedVoucher[] = [];
    for (let i = 0; i < size; i++) {
      const { key } = await open(payees[i % payees.length]!);
      batch.push(await voucher(key, parseEther("1")));
    }
    const tree = buildReceiptTree(Array.from({ length: size }, (_, i) => receipt(i)));
    const settled = await settleVouchers(admin, batch, {
      epoch: epoch++,
      receiptRoot: tree.root,
      receiptCount: BigInt(size),
    });
    const tx = await admin.publicClient.getTransaction({ hash: settled.transactionHash });
    calldataPerVoucher.set(size, Math.round(calldataGas(tx.input) / size));
    return Math.round(gas(settled) / size);
  }
  const settlePerVoucher1 = await settlePerVoucher(1);
  const settlePerVoucher10 = await settlePerVoucher(10);
  const settlePerVoucher100 = await settlePerVoucher(100);

  const domain = cellDomain(deployment.chainId, deployment.donorRegistry);
  const honest = receipt(0);
  const lie = { ...honest, outputCid: keccak256(toHex("lie")) };
  const slashGas = gas(
    await slashEquivocation(
      admin,
      { receipt: honest, signature: await signReceipt(op, domain, honest) },
      { receipt: lie, signature: await signReceipt(op, domain, lie) },
    ),
  );

  const rows: [string, number, number | undefined, string][] = [
    ["stake", stakeGas, 80_000, "second donor's first stake, unlimited allowance"],
    ["register", registerGas, undefined, "operator + peer key + 12-byte URI + proof of possession"],
    ["openChannel", openGas, 70_000, "new channel, unlimited allowance"],
    ["redeem", redeemGas, undefined, "first redeem of a channel"],
    [
      "settlePerVoucher1",
      settlePerVoucher1,
      undefined,
      `1 channel, 1 payee, root anchored; calldata ${calldataPerVoucher.get(1)}`,
    ],
    [
      "settlePerVoucher10",
      settlePerVoucher10,
      undefined,
      `10 channels, 10 payees, root anchored; calldata ${calldataPerVoucher.get(10)}/voucher`,
    ],
    [
      "settlePerVoucher100",
      settlePerVoucher100,
      12_000,
      `100 channels, 10 payees, root anchored; calldata ${calldataPerVoucher.get(100)}/voucher`,
    ],
    ["slash", slashGas, undefined, "equivocation, reporter reward + treasury"],
  ];
  console.log(`${"operation".padEnd(22)}${"gas".padStart(9)}${"goal".padStart(9)}  setting`);
  for (const [name, value, goal, setting] of rows) {
    const mark = goal === undefined ? "" : value <= goal ? " ok" : " OVER";
    console.log(
      `${name.padEnd(22)}${String(value).padStart(9)}${(goal === undefined ? "-" : String(goal)).padStart(9)}${mark.padEnd(6)} ${setting}`,
    );
  }
  console.log(
    JSON.stringify({
      stake: stakeGas,
      register: registerGas,
      openChannel: openGas,
      redeem: redeemGas,
      settlePerVoucher1,
      settlePerVoucher10,
      settlePerVoucher100,
      slash: slashGas,
    }),
  );
} finally {
  await devnet.stop();
}
