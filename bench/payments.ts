// `npm run bench -- payments`: how many vouchers one payee node verifies and stores durably per
// second. A real SQLite file (WAL, synchronous=FULL), real secp256k1 signatures, batches of 256
// as `/cell/voucher/1` carries them, each answered only after its fsynced group commit. The
// vouchers pay one job each on 256 channels of 16 buyers, as a busy payee's traffic looks; they
// are signed before the clock starts (signing is the buyer's cost). Run once with one batch at a
// time and once with 4 open at once (several buyers paying: their batches share an fsync). Last
// line: one JSON object.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { keccak256, toHex } from "viem";
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { channelIdOf, signVoucher } from "../offchain/src/chain/index.ts";
import type { ChannelKey } from "../offchain/src/chain/index.ts";
import { PayeeLedger, VOUCHER_BATCH_MAX } from "../offchain/src/payments/index.ts";
import type { PayeeChannelView, VoucherBatch } from "../offchain/src/payments/index.ts";
import { openStore } from "../offchain/src/store/index.ts";
import { measureSettlement } from "./_payments-settle.ts";

const BUYERS = 16;
const CHANNELS_PER_BUYER = 16;
const BATCHES = Number(process.env.PAYMENTS_BATCHES ?? 40);
const WARMUP_BATCHES = 2;
/** Batches open at once in the second run, as several buyers paying at the same time send them. */
const CONCURRENT_BATCHES = 4;
const JOB_AMOUNT = 1_000n;
const CHAIN_ID = 31337;
const PAYMENT_CHANNELS: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const PAYEE: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

const buyers = Array.from({ length: BUYERS }, (_, i) =>
  privateKeyToAccount(keccak256(toHex(`bench-buyer-${i}`))),
);
const channels: { key: ChannelKey; channelId: Hex; signer: (typeof buyers)[number] }[] = buyers.flatMap(
  (signer, b) =>
    Array.from({ length: CHANNELS_PER_BUYER }, (_, c) => {
      const key = {
        buyer: signer.address,
        signer: signer.address,
        payee: PAYEE,
        nonce: BigInt(b * 1000 + c),
      };
      return { key, channelId: channelIdOf(key), signer };
    }),
);

const dir = mkdtempSync(join(tmpdir(), "cell-bench-payments-"));
const store = openStore(dir);
try {
  const jobId = (batch: number, i: number): Hex => toHex(batch * VOUCHER_BATCH_MAX + i + 1, { size: 32 });
  await store.commit(() => {
    for (const { channelId, key } of channels)
      store.payeeLedger.putChannel({ channelId, key, deposit: 10n ** 24n, paid: 0n, closesAt: 0n });
    for (let batch = 0; batch < BATCHES; batch++)
      for (let i = 0; i < VOUCHER_BATCH_MAX; i++)
        store.payeeLedger.addEarning({
          jobId: jobId(batch, i),
          signer: channels[i % channels.length]!.key.signer,
          amount: JOB_AMOUNT,
        });
  });
  const book = {
    channel: async (channelId: Hex): Promise<PayeeChannelView | undefined> =>
      store.payeeLedger.channel(channelId),
  };
  const ledger = new PayeeLedger({
    store,
    channels: book,
    payee: PAYEE,
    chainId: CHAIN_ID,
    paymentChannels: PAYMENT_CHANNELS,
  });

  const signStarted = performance.now();
  const batches: VoucherBatch[] = [];
  for (let batch = 0; batch < BATCHES; batch++) {
    const vouchers = await Promise.all(
      Array.from({ length: VOUCHER_BATCH_MAX }, async (_, i) => {
        const { key, channelId, signer } = channels[i % channels.length]!;
        // Channel i is paid once per batch: its cumulative amount is one job more each time.
        const cumulativeAmount = JOB_AMOUNT * BigInt(batch + 1);
        const signature = await signVoucher(signer, CHAIN_ID, PAYMENT_CHANNELS, {
          channelId,
          cumulativeAmount,
        });
        return {
          key: { ...key, nonce: key.nonce.toString() },
          cumulativeAmount: cumulativeAmount.toString(),
          signature,
          jobs: [jobId(batch, i)],
        };
      }),
    );
    batches.push({ type: "vouchers", vouchers });
  }
  console.log(
    `signed ${BATCHES * VOUCHER_BATCH_MAX} vouchers in ${Math.round(performance.now() - signStarted)} ms`,
  );

  let accepted = 0;
  const receive = async (batch: VoucherBatch) => {
    const { results } = await ledger.receive(batch);
    const refused = results.find((result) => result.status !== "accepted");
    if (refused) throw new Error(`a voucher was refused: ${JSON.stringify(refused)}`);
    accepted += results.length;
  };
  for (const batch of batches.slice(0, WARMUP_BATCHES)) await receive(batch);

  /** Receives `measured` with up to `inFlight` batches open at once (as that many buyers would send). */
  const run = async (measured: VoucherBatch[], inFlight: number) => {
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    accepted = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < measured.length) await receive(measured[next++]!);
      }),
    );
    const elapsedMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    return {
      vouchers: accepted,
      batches: measured.length,
      "wall ms": Math.round(elapsedMs),
      "vouchers/s": Math.round((accepted * 1000) / elapsedMs),
      "CPU ms per 1000 vouchers": Number((((cpu.user + cpu.system) / 1000) * (1000 / accepted)).toFixed(1)),
      "ms per batch": Number((elapsedMs / measured.length).toFixed(2)),
    };
  };
  const half = WARMUP_BATCHES + Math.floor((BATCHES - WARMUP_BATCHES) / 2);
  const oneAtATime = await run(batches.slice(WARMUP_BATCHES, half), 1);
  const concurrent = await run(batches.slice(half), CONCURRENT_BATCHES);
  console.log("payee ledger: batches of 256, each answered after its fsynced group commit");
  console.table({ "one batch at a time": oneAtATime, [`${CONCURRENT_BATCHES} batches at once`]: concurrent });
  const settled = await measureSettlement((line) => console.log(line));
  const per = (gas: number, count: number) => (count > 0 ? Math.round(gas / count) : null);
  console.log(
    `settlement: ${settled.settlements} transactions (one per donor) settled ${settled.batchEntries} channel vouchers and anchored ${settled.receiptsAnchored} receipts`,
  );
  console.table({
    "per job payment (voucher)": {
      count: settled.jobPayments,
      "L2 gas": per(settled.l2Gas, settled.jobPayments),
      "L1 data gas": per(settled.l1DataGas, settled.jobPayments),
    },
    "per voucher request sent": {
      count: settled.signedVouchers,
      "L2 gas": per(settled.l2Gas, settled.signedVouchers),
      "L1 data gas": per(settled.l1DataGas, settled.signedVouchers),
    },
    "per settlement batch entry": {
      count: settled.batchEntries,
      "L2 gas": per(settled.l2Gas, settled.batchEntries),
      "L1 data gas": per(settled.l1DataGas, settled.batchEntries),
    },
  });
  console.log(
    "(vouchers are cumulative: a channel's latest voucher in one settlement pays every voucher before it; bench gas shows 100 channels in one batch)",
  );
  const settleGasPerVoucher = per(settled.l2Gas, settled.jobPayments);
  console.log(
    `goals  ≥ 5,000 vouchers/s ${concurrent["vouchers/s"] >= 5_000 ? "met" : "MISSED"}, ≤ 12,000 gas per voucher ${settleGasPerVoucher !== null && settleGasPerVoucher <= 12_000 ? "met" : "MISSED"}`,
  );
  console.log(
    JSON.stringify({
      vouchersPerSec: concurrent["vouchers/s"],
      vouchersPerSecOneBatchAtATime: oneAtATime["vouchers/s"],
      cpuMsPer1000Vouchers: concurrent["CPU ms per 1000 vouchers"],
      settleGasPerVoucher,
      l1DataGasPerVoucher: per(settled.l1DataGas, settled.jobPayments),
      settleGasPerBatchEntry: per(settled.l2Gas, settled.batchEntries),
      l1DataGasPerBatchEntry: per(settled.l1DataGas, settled.batchEntries),
    }),
  );
} finally {
  store.close();
  rmSync(dir, { recursive: true, force: true });
}
