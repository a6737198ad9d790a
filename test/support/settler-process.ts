// One settlement run in a process of its own, so a test can SIGKILL it between sending and
// mining. Input (JSON in CELL_SETTLER_INPUT): rpcUrl, deployment, storeDir, operatorKey, vouchers.
// Prints `journalled <hash>` once the settlement transaction is in the journal, then waits.
import type { Hex } from "viem";
import { parseDeployment } from "../../offchain/src/chain/index.ts";
import { settlePurpose } from "../../offchain/src/settlement/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import { MemoryVault, settlementParts, vouchersFromJson } from "./settlement-fixture.ts";

const input = JSON.parse(process.env.CELL_SETTLER_INPUT ?? "{}") as {
  rpcUrl: string;
  deployment: unknown;
  storeDir: string;
  operatorKey: Hex;
  vouchers: unknown;
};
const chain = { rpcUrl: input.rpcUrl, deployment: parseDeployment(input.deployment) };
const store = openStore(input.storeDir);
const vault = new MemoryVault();
for (const voucher of vouchersFromJson(input.vouchers)) vault.hold(voucher);
const parts = settlementParts(chain, store, vault, input.operatorKey);
parts.sender.start(100);
const epoch = parts.settler.epochAt(Date.now());
void parts.settler.settleNow();
const timer = setInterval(() => {
  const [tx] = store.settlements.txsOf(settlePurpose(epoch));
  if (!tx) return;
  clearInterval(timer);
  process.stdout.write(`journalled ${tx.hash}\n`);
}, 20);
