// Gas of an outvote case on a devnet: the accusation, a dispute, the jury draw, each juror's vote
// and the resolution, plus an undisputed case finalized after its window. Used by bench/court.ts.
import { keccak256, parseEther, toHex } from "viem";
import type { Hex, TransactionReceipt } from "viem";
import type { PrivateKeyAccount } from "viem/accounts";
import {
  caseIdOf,
  createWriter,
  disputeCase,
  drawJury,
  finalizeOutvote,
  juryCourtAbi,
  readCase,
  readCourtParams,
  resolveDispute,
  slashOutvoted,
  submitJurorVote,
} from "../offchain/src/chain/index.ts";
import type { Devnet } from "../offchain/src/chain/index.ts";
import { cellDomain, jobIdOf, signReceipt } from "../offchain/src/protocol/index.ts";
import type { JobSpecMessage, Receipt } from "../offchain/src/protocol/index.ts";
import { parseEventLogs } from "viem";
import { jobSpec } from "../test/support/contracts/fixture.ts";
import { mineBlocks, stakedDonors } from "../test/support/devnet-donors.ts";

export interface DisputeGas {
  accuse: number;
  dispute: number;
  drawJury: number;
  votePerJuror: number;
  resolve: number;
  /** dispute + drawJury + every vote + resolve */
  total: number;
  finalizeUndisputed: number;
  jurors: number;
}

const DONORS = 10;
/** Donors are devnet accounts 1..10 (the devnet funds accounts 0..19 with ether). */
const FIRST_ACCOUNT = 1;

export async function measureDisputeGas(devnet: Devnet): Promise<DisputeGas> {
  const { rpcUrl, deployment } = devnet;
  const admin = createWriter(rpcUrl, deployment, devnet.deployerKey);
  const rpc = admin.publicClient.request as unknown as (call: {
    method: string;
    params?: unknown[];
  }) => Promise<unknown>;
  const gas = (receipt: TransactionReceipt) => Number(receipt.gasUsed);
  const { donors, operators } = await stakedDonors(admin, {
    rpcUrl,
    count: DONORS,
    firstAccount: FIRST_ACCOUNT,
    label: "bench-court",
    mint: parseEther("10000"),
  });
  const domain = cellDomain(deployment.chainId, deployment.donorRegistry);
  // Jobs start after every donor bonded, so the quorum may outvote.
  const startedAt = ((await admin.publicClient.getBlock()).timestamp + 1n) * 1000n;
  const signed = async (operator: PrivateKeyAccount, job: Hex, outputCid: Hex) => {
    const receipt: Receipt = {
      jobId: job,
      executor: operator.address,
      moduleCid: keccak256(toHex("module")),
      inputCid: keccak256(toHex("input")),
      outputCid,
      fuelUsed: 1_000_000n,
      status: 0,
      startedAt,
      finishedAt: startedAt + 1_000n,
    };
    return { receipt, signature: await signReceipt(operator, domain, receipt) };
  };
  const honest = keccak256(toHex("honest"));
  const wrong = keccak256(toHex("wrong"));
  async function accuse(salt: string) {
    const spec = benchSpec(salt);
    const job = jobIdOf(domain, spec);
    const accused = await signed(operators[0]!, job, wrong);
    const quorum = await Promise.all(operators.slice(1, 4).map((op) => signed(op, job, honest)));
    const receipt = await slashOutvoted(admin, spec, accused, quorum);
    return { receipt, job, caseId: caseIdOf(receipt) };
  }

  const params = await readCourtParams(admin);
  const undisputed = await accuse("undisputed");
  const disputed = await accuse("disputed");
  const disputeGas = gas(await disputeCase(donors[0]!, disputed.caseId));
  await mineBlocks(admin, params.drawDelay);
  const drawn = await drawJury(admin, disputed.caseId);
  const [event] = parseEventLogs({ abi: juryCourtAbi, logs: drawn.logs, eventName: "JurorsDrawn" });
  const jurors = event!.args.jurors;
  const votes: number[] = [];
  for (const juror of jurors) {
    const index = donors.findIndex((d) => d.walletClient.account.address === juror);
    const vote = await signed(operators[index]!, disputed.job, honest);
    votes.push(gas(await submitJurorVote(admin, disputed.caseId, vote)));
  }
  const resolveGas = gas(await resolveDispute(admin, disputed.caseId));
  const { deadline } = await readCase(admin, undisputed.caseId);
  await rpc({ method: "evm_setNextBlockTimestamp", params: [toHex(deadline + 1n)] });
  const finalizeGas = gas(await finalizeOutvote(admin, undisputed.caseId));
  const voteSum = votes.reduce((a, b) => a + b, 0);
  return {
    accuse: gas(disputed.receipt),
    dispute: disputeGas,
    drawJury: gas(drawn),
    votePerJuror: Math.round(voteSum / votes.length),
    resolve: resolveGas,
    total: disputeGas + gas(drawn) + voteSum + resolveGas,
    finalizeUndisputed: finalizeGas,
    jurors: jurors.length,
  };
}

/** The fixtures' 4-replica job spec, made distinct by `salt`. */
function benchSpec(salt: string): JobSpecMessage {
  return { ...jobSpec(4), salt: keccak256(toHex(salt)) };
}
