// `npm run bench -- gas`: gas of the main on-chain operations, measured from transaction
// receipts on the devnet (a Hardhat node simulating an OP Stack L2). For each operation it reports
// the L2 gas and what the L1 data fee adds (`l1GasUsed`, `l1Fee` of the OP receipt). Prints a
// table; the last line is one JSON object.
import { measureDisputeGas } from "./_dispute-gas.ts";
import { measureOpGas, setOpMainnetFeeScalars } from "./_op-fees.ts";
import type { Measured } from "./_op-fees.ts";
import { keccak256, numberToHex, parseEther, toHex } from "viem";
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
  withdrawPaid,
} from "../offchain/src/chain/index.ts";
import type { ChainWriter, SignedVoucher } from "../offchain/src/chain/index.ts";
import { cellDomain, signReceipt } from "../offchain/src/protocol/index.ts";
import type { Receipt } from "../offchain/src/protocol/index.ts";

const devnet = await startDevnet();
try {
  const { rpcUrl, deployment } = devnet;
  const writer = (key: number | Hex) =>
    createWriter(rpcUrl, deployment, typeof key === "number" ? devnetPrivateKey(key) : key);
  const labelled = (label: string) => privateKeyToAccount(keccak256(toHex(`bench-${label}`)));
  const admin = writer(0);
  const rpc = (method: string, params: unknown[]) =>
    admin.publicClient.request({ method, params } as never) as Promise<unknown>;

  await setOpMainnetFeeScalars(admin);
  const measure = (receipt: TransactionReceipt): Promise<Measured> => measureOpGas(admin, receipt);
  const perVoucher = (m: Measured, n: number): Measured => ({
    gas: Math.round(m.gas / n),
    l1Gas: Math.round(m.l1Gas / n),
    l1Fee: m.l1Fee / BigInt(n),
  });

  async function funded(key: number | Hex): Promise<ChainWriter> {
    const w = writer(key);
    if (typeof key !== "number")
      await rpc("hardhat_setBalance", [w.walletClient.account.address, numberToHex(parseEther("10"))]);
    await mintAtp(admin, w.walletClient.account.address, parseEther("1000000"));
    await ensureAllowance(w, deployment.donorRegistry, 1n);
    await ensureAllowance(w, deployment.paymentChannels, 1n);
    return w;
  }

  // Donors: the first stake on the fresh registry (its ATP balance and the donor's slot start at
  // zero), then a second donor's first stake.
  const donors = [await funded(1), await funded(2)];
  const stakeFirst = await measure(await stake(donors[0]!, parseEther("1000")));
  const stakeSecond = await measure(await stake(donors[1]!, parseEther("1000")));
  const op = labelled("donor");
  const register = await measure(
    await registerDonor(donors[1]!, {
      operator: op,
      peerKey: keccak256(toHex("peer")),
      metadataURI: "ipfs://donor",
    }),
  );

  // Channels: buyer and voucher key; payees 10..19 (development accounts, which hold no ATP until
  // their first payment below).
  const buyer = await funded(3);
  const voucherKey = labelled("buyer");
  const payees = Array.from({ length: 10 }, (_, i) => privateKeyToAccount(devnetPrivateKey(10 + i)).address);
  let nonce = 0n;
  const open = (payee: Hex, amount = parseEther("10")) =>
    openChannel(buyer, { signer: voucherKey.address, payee, amount, nonce: nonce++ });
  const openFirst = await measure((await open(payees[0]!)).receipt);
  const opened = await open(payees[1]!);
  const openSecond = await measure(opened.receipt);

  const voucher = async (
    key: SignedVoucher["key"],
    cumulativeAmount: bigint,
    signer = voucherKey,
  ): Promise<SignedVoucher> => ({
    key,
    cumulativeAmount,
    signature: await signVoucher(signer, deployment.chainId, deployment.paymentChannels, {
      channelId: channelIdOf(key),
      cumulativeAmount,
    }),
  });
  const redeem = await measure(await redeemVoucher(buyer, await voucher(opened.key, parseEther("1"))));

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
  const calldataPerVoucher = new Map<string, number>();
  const calldataGas = (input: Hex) =>
    Buffer.from(input.slice(2), "hex").reduce((sum, byte) => sum + (byte === 0 ? 4 : 16), 0);
  async function settleBatch(label: string, batch: SignedVoucher[]): Promise<Measured> {
    const tree = buildReceiptTree(batch.map((_, i) => receipt(i)));
    const settled = await settleVouchers(admin, batch, {
      epoch: epoch++,
      receiptRoot: tree.root,
      receiptCount: BigInt(batch.length),
    });
    const tx = await admin.publicClient.getTransaction({ hash: settled.transactionHash });
    calldataPerVoucher.set(label, Math.round(calldataGas(tx.input) / batch.length));
    return perVoucher(await measure(settled), batch.length);
  }
  /** Best case: one buyer and one voucher key; payees that already hold ATP after the first batch. */
  async function settleOneBuyer(size: number): Promise<Measured> {
    const batch: SignedVoucher[] = [];
    for (let i = 0; i < size; i++) {
      const { key } = await open(payees[i % payees.length]!);
      batch.push(await voucher(key, parseEther("1")));
    }
    return settleBatch(`best-${size}`, batch);
  }
  const settle1 = await settleOneBuyer(1);
  const settle10 = await settleOneBuyer(10);
  const settle100 = await settleOneBuyer(100);

  // Realistic: 50 buyers, each with its own voucher key, pay 10 payees that have never held ATP;
  // each buyer has a channel to two of them, so the batch of 100 names 110 addresses.
  const freshPayees = Array.from({ length: 10 }, (_, i) => labelled(`fresh-payee-${i}`).address);
  const realisticBatch: SignedVoucher[] = [];
  const signerOf = new Map<Hex, ReturnType<typeof labelled>>();
  for (let b = 0; b < 50; b++) {
    const buyerKey = keccak256(toHex(`bench-buyer-${b}`));
    const w = await funded(buyerKey);
    const signer = labelled(`voucher-key-${b}`);
    for (const payee of [freshPayees[(2 * b) % 10]!, freshPayees[(2 * b + 1) % 10]!]) {
      const { key } = await openChannel(w, {
        signer: signer.address,
        payee,
        amount: parseEther("10"),
        nonce: 0n,
      });
      realisticBatch.push(await voucher(key, parseEther("1"), signer));
      signerOf.set(channelIdOf(key), signer);
    }
  }
  const settle100Realistic = await settleBatch("realistic-100", realisticBatch);

  // Withdrawals of what the realistic batch credited: each fresh payee holds no ATP yet, so its
  // first withdrawal also creates its balance, and each channel's first withdrawal its `withdrawn`
  // slot. One channel for one payee, then all ten channels of another payee in one call; then,
  // after a later settlement credits those ten again, the same withdrawal once more.
  const channelsOf = (payee: Hex) => realisticBatch.filter((v) => v.key.payee === payee).map((v) => v.key);
  const tenChannels = channelsOf(freshPayees[1]!);
  if (tenChannels.length !== 10) throw new Error("expected 10 channels per fresh payee");
  const withdraw1 = await measure(await withdrawPaid(admin, channelsOf(freshPayees[0]!).slice(0, 1)));
  const withdraw10 = await measure(await withdrawPaid(admin, tenChannels));
  const laterVouchers = await Promise.all(
    tenChannels.map((key) => voucher(key, parseEther("2"), signerOf.get(channelIdOf(key))!)),
  );
  await settleVouchers(admin, laterVouchers);
  const withdraw10Again = await measure(await withdrawPaid(admin, tenChannels));

  const domain = cellDomain(deployment.chainId, deployment.donorRegistry);
  const honest = receipt(0);
  const lie = { ...honest, outputCid: keccak256(toHex("lie")) };
  const slash = await measure(
    await slashEquivocation(
      admin,
      { receipt: honest, signature: await signReceipt(op, domain, honest) },
      { receipt: lie, signature: await signReceipt(op, domain, lie) },
    ),
  );

  const rows: [string, Measured, number | undefined, string][] = [
    [
      "stakeFirst",
      stakeFirst,
      80_000,
      "first stake on a fresh registry (cold contract), unlimited allowance",
    ],
    ["stake", stakeSecond, 80_000, "second donor's first stake, unlimited allowance"],
    ["register", register, undefined, "operator + peer key + 12-byte URI + proof of possession"],
    ["openChannelFirst", openFirst, 70_000, "first channel on a fresh contract (cold contract)"],
    ["openChannel", openSecond, 70_000, "a buyer's second channel, unlimited allowance"],
    [
      "redeem",
      redeem,
      undefined,
      "first redeem of a channel: the payee's first ATP balance, the channel's withdrawn slot",
    ],
    [
      "settlePerVoucher1",
      settle1,
      undefined,
      `1 channel, 1 payee, root anchored; calldata ${calldataPerVoucher.get("best-1")}`,
    ],
    [
      "settlePerVoucher10",
      settle10,
      undefined,
      `1 buyer, 10 channels, 10 payees, root anchored; calldata ${calldataPerVoucher.get("best-10")}/voucher`,
    ],
    [
      "settlePerVoucher100",
      settle100,
      undefined,
      `best case: 1 buyer and key, 100 channels, 10 payees holding ATP, root anchored; calldata ${calldataPerVoucher.get("best-100")}/voucher`,
    ],
    [
      "settlePerVoucher100Realistic",
      settle100Realistic,
      12_000,
      `50 buyers, 50 voucher keys, 100 channels, 10 payees with no ATP before, root anchored; calldata ${calldataPerVoucher.get("realistic-100")}/voucher`,
    ],
    [
      "withdrawPaid1",
      withdraw1,
      undefined,
      "1 channel credited by the realistic batch, payee with no ATP before",
    ],
    [
      "withdrawPaid10",
      withdraw10,
      undefined,
      "10 channels of one payee credited by the realistic batch, payee with no ATP before",
    ],
    [
      "withdrawPaid10Again",
      withdraw10Again,
      undefined,
      "the same 10 channels after a later settlement: payee holds ATP, withdrawn slots exist",
    ],
    ["slash", slash, undefined, "equivocation, reporter reward + treasury"],
  ];
  // A dispute on a devnet of its own: its ten donors and their stakes stay out of the rows above.
  const disputeDevnet = await startDevnet();
  const dispute = await measureDisputeGas(disputeDevnet).finally(() => disputeDevnet.stop());
  const gwei = (wei: bigint) => (Number(wei) / 1e9).toFixed(0);
  console.log(
    `${"operation".padEnd(30)}${"L2 gas".padStart(9)}${"goal".padStart(9)}      ${"L1 gas".padStart(7)}${"L1 fee gwei".padStart(13)}  setting`,
  );
  for (const [name, m, goal, setting] of rows) {
    const mark = goal === undefined ? "" : m.gas <= goal ? " ok" : " OVER";
    console.log(
      `${name.padEnd(30)}${String(m.gas).padStart(9)}${(goal === undefined ? "-" : String(goal)).padStart(9)}${mark.padEnd(6)}${String(m.l1Gas).padStart(7)}${gwei(m.l1Fee).padStart(13)}  ${setting}`,
    );
  }
  console.log(
    `${"disputeGas".padEnd(30)}${String(dispute.total).padStart(9)}${"-".padStart(9)}${"".padEnd(6)}${"".padStart(7)}${"".padStart(13)}  dispute + jury draw + ${dispute.jurors} votes + resolve (accused cleared); accusing ${dispute.accuse}, finalizing an undisputed case ${dispute.finalizeUndisputed}`,
  );
  console.log(
    "L1 data fee at OP Mainnet's Ecotone scalars (base 5 227, blob 1 014 213), L1 base fee and blob base fee 10 gwei; settle rows are per voucher",
  );
  console.log(
    JSON.stringify({
      stake: stakeSecond.gas,
      register: register.gas,
      openChannel: openSecond.gas,
      redeem: redeem.gas,
      settlePerVoucher1: settle1.gas,
      settlePerVoucher10: settle10.gas,
      settlePerVoucher100: settle100.gas,
      slash: slash.gas,
      stakeFirst: stakeFirst.gas,
      openChannelFirst: openFirst.gas,
      settlePerVoucher100Realistic: settle100Realistic.gas,
      withdrawPaid: {
        channels1: withdraw1.gas,
        channels10: withdraw10.gas,
        channels10Again: withdraw10Again.gas,
      },
      l1DataGasPerVoucher100: settle100Realistic.l1Gas,
      disputeGas: dispute.total,
      l1DataGas: Object.fromEntries(rows.map(([name, m]) => [name, m.l1Gas])),
      l1FeeGwei: Object.fromEntries(rows.map(([name, m]) => [name, Number(gwei(m.l1Fee))])),
    }),
  );
} finally {
  await devnet.stop();
}
