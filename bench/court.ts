// `npm run bench -- court`: gas of an outvote case from accusation to jury verdict, measured from
// transaction receipts on a devnet. Prints a table; the last line is one JSON object.
import { startDevnet } from "../offchain/src/chain/index.ts";
import { measureDisputeGas } from "./_dispute-gas.ts";

const devnet = await startDevnet();
try {
  const figures = await measureDisputeGas(devnet);
  const rows: [string, number, string][] = [
    ["accuse (slashOutvoted)", figures.accuse, "3 quorum receipts, case opened in the court"],
    ["dispute", figures.dispute, "bond transferred to the court"],
    ["drawJury", figures.drawJury, `${figures.jurors} jurors from 10 donors, accused and accusers excluded`],
    ["vote", figures.votePerJuror, "one juror receipt, mean"],
    ["resolveDispute", figures.resolve, "accused cleared: 3 accusers slashed, jurors and disputer paid"],
    ["disputeGas", figures.total, "dispute + draw + every vote + resolve"],
    ["finalizeOutvote", figures.finalizeUndisputed, "undisputed case after its window"],
  ];
  for (const [name, value, setting] of rows) {
    console.log(`${name.padEnd(24)}${String(value).padStart(9)}  ${setting}`);
  }
  console.log(JSON.stringify({ disputeGas: figures.total, ...figures }));
} finally {
  await devnet.stop();
}
