// The browser console in real Chromium (playwright-core) against a Hardhat devnet and real
// nodes: three staked donors and a buyer node serving the console and its API. A test
// wallet (mock-wallet.ts) signs with a viem account. Each step is checked on the chain or in
// the node, not only on the page; a screenshot of each page goes to test/e2e/screenshots/.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { formatEther, isAddressEqual, parseEther, type Hex } from "viem";
import { createApiServer, type ApiServer } from "../../offchain/src/api/index.ts";
import {
  createWriter,
  devnetPrivateKey,
  donorParams,
  donorStake,
  getChannel,
  mintAtp,
  openedChannels,
  registrationOf,
  verifyReceiptInclusionOnChain,
} from "../../offchain/src/chain/index.ts";
import { receiptFromWire, type Receipt } from "../../offchain/src/protocol/index.ts";
import type { CellNode } from "../../offchain/src/node/index.ts";
import { buildWeb } from "../../scripts/build-web.mjs";
import { ensureJobs } from "../../scripts/build-jobs.ts";
import { fundWithEth, startCluster, startInProcess, until, type Cluster } from "./cluster.ts";
import { formatAtp } from "../../offchain/web/src/view.ts";
import { installMockWallet, type MockWallet } from "./mock-wallet.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SCREENSHOTS = fileURLToPath(new URL("./screenshots/", import.meta.url));
const TOKEN = "console-test-token-0123456789";
const DONORS = 3;
/** A Hardhat development account no node uses: the browser wallet's. */
const WALLET_ACCOUNT = 12;
const STEP_MS = 30_000;

describe("browser console in Chromium against a devnet", { timeout: 240_000 }, () => {
  let cluster: Cluster;
  let donors: CellNode[] = [];
  let buyer: CellNode;
  let api: ApiServer;
  let browser: Browser;
  let page: Page;
  let wallet: MockWallet;
  let minStake: bigint;
  /** The 3-replica job the console submitted. */
  let jobId: Hex | undefined;
  const reader = () => createWriter(cluster.devnet.rpcUrl, cluster.devnet.deployment, devnetPrivateKey(0));

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM}: apt-get install -y chromium`);
    await buildWeb();
    cluster = await startCluster();
    const prepared = await Promise.all(
      Array.from({ length: DONORS }, (_, index) =>
        cluster.prepare(`donor${index + 1}`, {
          donor: true,
          stakeWith: index + 1,
          config: {
            runtime: { poolSize: 1 },
            payments: { enabled: true, channelPollMs: 200 },
            indexer: { enabled: true },
            // Epochs end only when asked, from the console's "Settle now".
            settlement: { epochSeconds: 86_400, pollMs: 200 },
          },
        }),
      ),
    );
    const buyerNode = await cluster.prepare("buyer", {
      donor: false,
      config: {
        buyer: { heartbeatMs: 400, bidTimeoutMs: 1_000 },
        payments: { deposit: "50", topUpAmount: "0" },
        indexer: { enabled: true },
      },
    });
    const first = await startInProcess(prepared[0]!);
    const bootstrap = first.multiaddrs().slice(0, 1);
    donors = [
      first,
      ...(await Promise.all(prepared.slice(1).map((node) => startInProcess(node, bootstrap)))),
    ];
    buyer = await startInProcess(buyerNode, bootstrap);
    api = await createApiServer({ node: buyer, token: TOKEN, port: 0 });

    const faucet = createWriter(cluster.devnet.rpcUrl, cluster.devnet.deployment, cluster.devnet.deployerKey);
    // Operators pay gas for channels, settlements and withdrawals; the buyer's funds its channels.
    for (const node of [...prepared, buyerNode])
      await fundWithEth(cluster.devnet.rpcUrl, node.identity.operatorAddress);
    await mintAtp(faucet, buyerNode.identity.operatorAddress, parseEther("200"));
    minStake = (await donorParams(faucet)).minStake;
    const walletKey = devnetPrivateKey(WALLET_ACCOUNT);
    await mintAtp(
      faucet,
      createWriter(cluster.devnet.rpcUrl, cluster.devnet.deployment, walletKey).walletClient.account.address,
      minStake + parseEther("100"),
    );

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(STEP_MS);
    wallet = await installMockWallet(page, {
      privateKey: walletKey,
      rpcUrl: cluster.devnet.rpcUrl,
      chainId: cluster.devnet.chainId,
    });
    await mkdir(SCREENSHOTS, { recursive: true });
    await until(
      () => buyer.peers().filter((peer) => peer.staked).length >= DONORS,
      30_000,
      "the buyer to see the staked donors",
    );
  });

  after(async () => {
    await browser?.close();
    await api?.close();
    await buyer?.stop();
    await Promise.all(donors.map((donor) => donor.stop()));
    await cluster?.close();
  });

  const rpc = async (method: string, params: unknown[]) => {
    const response = await fetch(cluster.devnet.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    });
    const reply = (await response.json()) as { error?: { message: string } };
    if (reply.error) throw new Error(`${method}: ${reply.error.message}`);
  };
  const shot = (name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });

  it("opens with the token from the link and connects the wallet, adding and switching to the devnet", async () => {
    await page.goto(`${api.url}/#token=${TOKEN}`);
    assert.equal(new URL(page.url()).hash, "", "the token leaves the address bar");
    await page.getByTestId("connect-wallet").click();
    await page.getByTestId("connected-account").waitFor();
    const methods = wallet.calls.map((call) => call.method);
    assert.ok(methods.includes("wallet_addEthereumChain"), "the console added the devnet to the wallet");
    assert.equal(methods.filter((method) => method === "wallet_switchEthereumChain").length, 2);
    await shot("donor-connected");
  });

  it("says in words when the wallet refuses, then stakes with a permit in one transaction", async () => {
    await page.getByTestId("stake-amount").fill(formatEther(minStake));
    wallet.rejectNext();
    await page.getByTestId("stake").click();
    const refused = await page.getByTestId("stake-error").textContent();
    assert.equal(refused, "You rejected the request in your wallet.");

    const sentBefore = wallet.sent.length;
    await page.getByTestId("stake").click();
    await page.getByTestId("stake-result").waitFor();
    assert.equal(wallet.sent.length - sentBefore, 1, "stake with permit is one transaction");
    const stake = await donorStake(reader(), wallet.address);
    assert.equal(stake.bonded, minStake);
  });

  it("refuses a stake above the wallet's ATP before asking the wallet", async () => {
    const sentBefore = wallet.calls.length;
    await page.getByTestId("stake-amount").fill("1000000000");
    await page.getByTestId("stake").click();
    const text = await page.getByTestId("stake-error").textContent();
    assert.match(text ?? "", /^Not enough ATP: the wallet has .* and this needs 1,000,000,000 ATP\.$/);
    assert.ok(
      wallet.calls.slice(sentBefore).every((call) => call.method !== "eth_signTypedData_v4"),
      "no signature was asked for",
    );
  });

  it("registers this node's operator, with the proof of possession the node signs", async () => {
    await page.getByTestId("register-node").click();
    await page.getByTestId("register-node-result").waitFor();
    const registration = await registrationOf(reader(), wallet.address);
    assert.ok(isAddressEqual(registration.operator, buyer.operator));
    await page.getByTestId("registered-operator").getByText(buyer.operator.slice(0, 6)).waitFor();
    await shot("donor-registered");
  });

  it("opens a channel to a donor with a permit", async () => {
    await page.getByTestId("nav-buyer").click();
    const payee = donors[0]!.operator;
    await page.getByTestId("channel-payee").fill(payee);
    await page.getByTestId("channel-amount").fill("50");
    const sentBefore = wallet.sent.length;
    await page.getByTestId("open-channel").click();
    await page.getByTestId("open-channel-result").waitFor();
    assert.equal(wallet.sent.length - sentBefore, 1, "open with permit is one transaction");
    const opened = await openedChannels(reader(), { buyer: wallet.address });
    assert.equal(opened.length, 1);
    assert.ok(isAddressEqual(opened[0]!.key.payee, payee));
    assert.ok(
      isAddressEqual(opened[0]!.key.signer, buyer.operator),
      "the node's operator signs its vouchers",
    );
    assert.equal(opened[0]!.deposit, parseEther("50"));
    await page.getByTestId("channel-table").getByText("50 ATP").first().waitFor();
    await page.getByTestId("node-spending").waitFor();
    await shot("buyer");
  });

  it("submits a 3-replica job through the node and shows its verdict live", async () => {
    await page.getByTestId("nav-jobs").click();
    const { sha256 } = await ensureJobs(["sha256"]);
    await page.getByTestId("job-module").setInputFiles(sha256);
    await page.getByTestId("job-input").fill("1\nhello from the console");
    await page.getByTestId("job-replicas").fill("3");
    await page.getByTestId("submit-job").click();
    const submitted = (await page.getByTestId("submit-job-result").textContent()) ?? "";
    jobId = /0x[0-9a-f]{64}/.exec(submitted)?.[0] as Hex | undefined;
    assert.ok(jobId, `a job id in "${submitted}"`);
    await page.getByTestId("job-verdict").waitFor({ timeout: 90_000 });
    const shown = await page.getByTestId("job-verdict").textContent();
    const job = buyer.getJob(jobId);
    assert.equal(job?.verdict?.outcome, "accepted");
    // Each replica on its own operator. Two agreeing settle the job: a third still running is
    // cancelled, and one whose bid came too late for the first round is never placed.
    const operators = (job?.replicas ?? []).map((replica) => replica.operator.toLowerCase());
    assert.equal(new Set(operators).size, operators.length, "no operator runs two replicas");
    assert.ok(operators.length >= 2 && operators.length <= 3, `${operators.length} replicas placed`);
    assert.ok((job?.replicas?.filter((replica) => replica.state === "voted").length ?? 0) >= 2);
    assert.match(shown ?? "", /^Verdict: accepted \(quorum 2, votes /);
    assert.equal(await page.getByTestId("job-state").textContent(), "completed");
    // Each agreeing executor's pay, recorded on its channel after the verdict, shows up too.
    const paid = page.getByTestId("job-vouchers").locator("li");
    await paid.nth(1).waitFor({ timeout: 20_000 });
    const agreeing = (job?.replicas ?? []).filter((replica) => replica.agrees === true);
    for (const replica of agreeing)
      await page.getByTestId("job-vouchers").locator(`[title="${replica.operator}" i]`).first().waitFor();
    await shot("jobs");
  });

  it("shows what the node spends through the channels it opened to pay for the job", async () => {
    await page.getByTestId("nav-buyer").click();
    const paying = (buyer.paymentChannels?.() ?? []).filter((channel) => channel.spent > 0n);
    assert.ok(paying.length > 0, "the buyer paid a donor for the job");
    const table = page.getByTestId("node-channels");
    for (const channel of paying) await table.locator(`[title="${channel.payee}" i]`).first().waitFor();
    await page.getByTestId("spend-chart").waitFor();
    await shot("buyer-spending");
  });

  it("tops up the channel, then starts its close", async () => {
    await page.getByTestId("nav-buyer").click();
    const [channel] = await openedChannels(reader(), { buyer: wallet.address });
    assert.ok(channel);
    await page.getByTestId("topup-amount").fill("10");
    await page.getByTestId("topup-channel").click();
    await page.getByTestId("topup-channel-result").waitFor();
    assert.equal((await getChannel(reader(), channel.channelId)).deposit, parseEther("60"));
    await page.getByTestId("close-channel").click();
    // Once closing, the row offers the finalize step in place of top-up and close.
    await page.getByTestId("finalize-close").waitFor();
    await page
      .getByTestId("channel-table")
      .getByText(/closing, final in/)
      .waitFor();
    const closing = await getChannel(reader(), channel.channelId);
    assert.ok(closing.closesAt > 0n && closing.closesAt < 2n ** 64n - 1n, "the channel is closing");
  });

  it("unbonds, says in words why it cannot withdraw yet, and withdraws after the delay", async () => {
    await page.getByTestId("nav-donor").click();
    await page.getByTestId("unbond-amount").fill("1");
    await page.getByTestId("unbond").click();
    await page.getByTestId("unbond-result").waitFor();
    assert.equal((await donorStake(reader(), wallet.address)).unbonding, parseEther("1"));
    await page
      .getByTestId("withdraw-countdown")
      .getByText(/^1 ATP can be withdrawn in /)
      .waitFor();

    await page.getByTestId("withdraw").click();
    const early = await page.getByTestId("withdraw-error").textContent();
    assert.match(early ?? "", /^The stake is still unbonding: it can be withdrawn at \d{4}-\d\d-\d\dT/);

    const { unbondingDelay } = await donorParams(reader());
    await rpc("evm_increaseTime", [Number(unbondingDelay) + 1]);
    await rpc("evm_mine", []);
    await page.getByTestId("withdraw").click();
    await page.getByTestId("withdraw-result").waitFor();
    assert.equal((await donorStake(reader(), wallet.address)).unbonding, 0n);
    await shot("donor-withdrawn");
  });

  it("asks to connect again when the wallet switches account", async () => {
    await page.evaluate(() =>
      (
        window as unknown as { __cellTestWalletEmit: (event: string, value: unknown) => void }
      ).__cellTestWalletEmit("accountsChanged", ["0x0000000000000000000000000000000000000001"]),
    );
    await page.getByTestId("connect-wallet").waitFor();
    await page.getByTestId("connect-wallet").click();
    await page.getByTestId("connected-account").waitFor();
  });

  it("settles a donor's vouchers from its console, finds the settlement in its explorer and proves the receipt on-chain", async () => {
    assert.ok(jobId);
    const job = buyer.getJob(jobId);
    const voted = job?.replicas?.find((replica) => replica.state === "voted" && replica.agrees);
    const donor = donors.find((node) => voted && isAddressEqual(node.operator, voted.operator));
    assert.ok(donor, "a donor whose receipt was accepted");
    const donorApi = await createApiServer({ node: donor, token: TOKEN, port: 0 });
    const donorPage = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    donorPage.setDefaultTimeout(STEP_MS);
    try {
      await donorPage.goto(`${donorApi.url}/#token=${TOKEN}`);
      await donorPage.getByTestId("nav-explorer").click();
      // The buyer's voucher for the job reaches the donor after the verdict: settle once it holds it.
      let outcome = "";
      await until(
        () => outcome.startsWith("Epoch "),
        30_000,
        "a settlement run that settles",
        async () => {
          await donorPage.getByTestId("settle-now").click();
          const result = donorPage.locator("[data-testid=settle-now-result], [data-testid=settle-now-error]");
          await result.waitFor();
          outcome = (await result.textContent()) ?? "";
        },
      );
      const txHash = /transaction (0x[0-9a-f]{64})/.exec(outcome)?.[1] as Hex | undefined;
      assert.ok(txHash, outcome);
      const mined = await reader().publicClient.getTransactionReceipt({ hash: txHash });
      assert.equal(mined.status, "success");

      // The donor node's indexer reads the settlement back from the chain's events.
      await donorPage.getByTestId("explorer-settlements").locator(`[title="${txHash}"]`).first().waitFor();

      await donorPage.getByTestId("inclusion-job").fill(jobId);
      await donorPage.getByTestId("check-inclusion").click();
      const included = await donorPage.getByTestId("check-inclusion-result").textContent();
      assert.match(included ?? "", /^Included: the receipt is under the root 0x[0-9a-f]{8}… anchored by /);
      const proof = (await (
        await fetch(`${donorApi.url}/receipts/${jobId}/proof`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        })
      ).json()) as { epoch: number; submitter: Hex; receipt: Receipt; proof: Hex[] };
      const onChain = await verifyReceiptInclusionOnChain(
        reader(),
        { submitter: proof.submitter, epoch: BigInt(proof.epoch) },
        receiptFromWire(proof.receipt as never),
        proof.proof,
      );
      assert.equal(onChain, true);
      await donorPage.screenshot({ path: join(SCREENSHOTS, "explorer-settled.png"), fullPage: true });
    } finally {
      await donorPage.close();
      await donorApi.close();
    }
  });

  it("finds the wallet's stake, its channel and its history in the explorer, read from the chain's events", async () => {
    await page.getByTestId("nav-explorer").click();
    await page.getByTestId("indexer-status").locator("code").waitFor();
    const wallet12 = wallet.address;
    await page.getByTestId("explorer-stakes").locator(`[title="${wallet12}" i]`).first().waitFor();
    await page.getByTestId("explorer-channels").locator(`[title="${wallet12}" i]`).first().waitFor();
    await page.getByTestId("donor-address").fill(wallet12);
    // The indexer follows the chain every couple of seconds: ask until it has the latest stake.
    const { bonded } = await donorStake(reader(), wallet12);
    let facts = "";
    await until(
      () => facts.includes(`stake.bonded${formatAtp(bonded)}stake.`),
      20_000,
      `the explorer to show the bonded stake ${bonded}`,
      async () => {
        await page.getByTestId("donor-history").click();
        await page.getByTestId("donor-facts").waitFor();
        facts = (await page.getByTestId("donor-facts").textContent()) ?? "";
      },
    );
    await page.getByTestId("node-settlements").getByTestId("unavailable").waitFor();
    await page.getByTestId("inclusion-job").fill("0x" + "ab".repeat(32));
    await page.getByTestId("check-inclusion").click();
    const refused = await page.getByTestId("check-inclusion-error").textContent();
    assert.match(refused ?? "", /^Not available on this node: settle/);
    await shot("explorer");
  });
});
