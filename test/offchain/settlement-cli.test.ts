// `cell settle now`, `cell settlements list` and `cell receipt prove` through the node's API,
// with the real settlement service on a Hardhat devnet.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createApiServer } from "../../offchain/src/api/index.ts";
import type { ApiNode, ApiServer } from "../../offchain/src/api/index.ts";
import {
  createReader,
  createWriter,
  devnetPrivateKey,
  startDevnet,
  verifyReceiptInclusionOnChain,
} from "../../offchain/src/chain/index.ts";
import type { Devnet } from "../../offchain/src/chain/index.ts";
import { ReceiptWireSchema, receiptFromWire } from "../../offchain/src/protocol/index.ts";
import { SettlementService } from "../../offchain/src/settlement/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";
import { apiOnlyNode } from "../support/api-node.ts";
import { runCell } from "../support/cell-cli.ts";
import { ChainIndexer, explorerSourceOf } from "../../offchain/src/indexer/index.ts";
import {
  MemoryVault,
  heldVoucher,
  openFundedChannel,
  silentLog,
  storeOwnReceipts,
} from "../support/settlement-fixture.ts";

const TOKEN = "settlement-cli-test-token";
const operatorKey = devnetPrivateKey(5);
const operator = privateKeyToAccount(operatorKey).address;

describe("settlement commands", { timeout: 180_000 }, () => {
  let devnet: Devnet;
  let otherChain: Devnet;
  let dir: string;
  let store: Store;
  let service: SettlementService;
  let api: ApiServer;
  let jobIds: Hex[];
  let apiArgs: string[];
  let indexer: ChainIndexer;

  before(async () => {
    [devnet, otherChain] = await Promise.all([startDevnet(), startDevnet()]);
    dir = await mkdtemp(join(tmpdir(), "cell-settle-cli-"));
    store = openStore(join(dir, "node"));
    const vault = new MemoryVault();
    const buyerKey = devnetPrivateKey(1);
    const buyer = createWriter(devnet.rpcUrl, devnet.deployment, buyerKey);
    const key = await openFundedChannel(devnet, buyer, operator, 1_000_000n);
    vault.hold(await heldVoucher(devnet, privateKeyToAccount(buyerKey), key, 4_321n));
    jobIds = storeOwnReceipts(store, operator, 4, "cli");
    service = new SettlementService({
      store,
      writer: createWriter(devnet.rpcUrl, devnet.deployment, operatorKey),
      vault,
      settings: {
        epochSeconds: 3_600,
        confirmations: 1,
        bumpAfterMs: 60_000,
        maxVouchersPerBatch: 100,
        pollMs: 100,
      },
      logBlockRange: 1_000,
      log: silentLog,
    });
    service.start();
    indexer = new ChainIndexer(createReader(devnet.rpcUrl, devnet.deployment), store, {
      confirmations: 0,
      blockRange: 1_000,
      pollMs: 60_000,
    });
    api = await createApiServer({
      node: { ...apiNodeOf(devnet, service), explorer: explorerSourceOf(store, indexer) },
      token: TOKEN,
    });
    const tokenFile = join(dir, "token");
    await writeFile(tokenFile, TOKEN);
    apiArgs = ["--api", api.url, "--token-file", tokenFile];
  });

  after(async () => {
    await api?.close();
    await service?.stop();
    store?.close();
    await Promise.all([devnet?.stop(), otherChain?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  it("cell settle now settles the held voucher and anchors the receipts", async () => {
    const result = await runCell(["settle", "now", ...apiArgs, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    const outcome = JSON.parse(result.stdout) as Record<string, unknown>;
    assert.equal(outcome.state, "settled");
    assert.equal(outcome.voucherCount, 1);
    assert.equal(outcome.paidCount, 1);
    assert.equal(outcome.total, "4321");
    assert.equal(outcome.receiptCount, 4);

    const human = await runCell(["settlements", "list", "--mine", ...apiArgs]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      /^epoch \d+ settled: 1 vouchers \(1 paid\) 0\.000000000000004321 ATP 4 receipts tx 0x[0-9a-f]{64}/,
    );
  });

  it("cell settle now --zk on a node without the zk mode says how to turn it on", async () => {
    const result = await runCell(["settle", "now", "--zk", ...apiArgs]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /does not settle zk vouchers: set settlement\.zk\.enabled/);
  });

  it("cell settlements list reads every settlement from the chain index, filtered by submitter", async () => {
    await indexer.poll();
    const human = await runCell(["settlements", "list", ...apiArgs, "--submitter", operator]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      new RegExp(
        `^block \\d+ by ${operator}: 1 vouchers 0\\.000000000000004321 ATP epoch \\d+ root 0x[0-9a-f]{64} \\(4 receipts\\) tx 0x[0-9a-f]{64}`,
        "i",
      ),
    );
    const nobody = await runCell([
      "settlements",
      "list",
      ...apiArgs,
      "--submitter",
      devnet.deployment.atpToken,
    ]);
    assert.equal(nobody.stdout, "no settlements\n");
  });

  it("cell receipt prove prints a proof that PaymentChannels accepts", async () => {
    const result = await runCell(["receipt", "prove", jobIds[2]!, ...apiArgs, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    const printed = JSON.parse(result.stdout) as {
      epoch: number;
      submitter: Hex;
      receipt: unknown;
      proof: Hex[];
      verified: boolean;
    };
    assert.equal(printed.verified, true);
    const receipt = receiptFromWire(ReceiptWireSchema.parse(printed.receipt));
    assert.equal(receipt.jobId, jobIds[2]);
    const reader = createWriter(devnet.rpcUrl, devnet.deployment, operatorKey);
    const accepted = await verifyReceiptInclusionOnChain(
      reader,
      { submitter: printed.submitter, epoch: BigInt(printed.epoch) },
      receipt,
      printed.proof,
    );
    assert.equal(accepted, true);
  });

  it("cell receipt prove exits non-zero when the chain does not accept the proof", async () => {
    const result = await runCell([
      "receipt",
      "prove",
      jobIds[0]!,
      ...apiArgs,
      "--rpc-url",
      otherChain.rpcUrl,
    ]);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /NOT verified/);
  });

  it("GET /settlements pages with before and refuses a bad query, naming it", async () => {
    const pageArgs = ["settlements", "list", "--mine", ...apiArgs, "--json", "--limit", "1"];
    const first = JSON.parse((await runCell(pageArgs)).stdout) as {
      settlements: { epoch: number }[];
      next: number;
    };
    assert.equal(first.settlements.length, 1);
    assert.equal(first.next, first.settlements[0]!.epoch);
    const older = await runCell([...pageArgs, "--before", String(first.next)]);
    assert.deepEqual(JSON.parse(older.stdout), { settlements: [], next: null });
    const bad = await runCell(["settlements", "list", "--mine", ...apiArgs, "--limit", "0"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /HTTP 400 bad_request[\s\S]*limit/);
  });

  it("a node without a payee ledger answers the settlement routes with a reason", async () => {
    const { settlement: _none, ...bare } = apiNodeOf(devnet, service);
    const server = await createApiServer({ node: bare, token: TOKEN });
    try {
      const result = await runCell(["settle", "now", "--api", server.url, ...apiArgs.slice(2)]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /this node does not settle/);
    } finally {
      await server.close();
    }
  });

  it("cell receipt prove names a job no epoch anchored", async () => {
    const unknown = `0x${"ab".repeat(32)}`;
    const result = await runCell(["receipt", "prove", unknown, ...apiArgs]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no settled epoch of this node anchored a receipt for job 0xabab/);
  });
});

/** The API's face of a node that only settles: jobs and peers are empty. */
function apiNodeOf(devnet: Devnet, settlement: SettlementService): ApiNode {
  return apiOnlyNode({
    peerId: "12D3KooWSettlementOnly",
    did: "did:key:settlement-only",
    operator,
    chainInfo: {
      chainId: devnet.chainId,
      rpcUrl: devnet.rpcUrl,
      contracts: { paymentChannels: devnet.deployment.paymentChannels },
    },
    settlement,
  });
}
