// The wallet CLI as a new user meets it, on a real devnet through the real `bin/cell.mjs`:
// a wallet is created and funded, stakes with a permit in one transaction, registers a
// node, opens a channel to a donor (one transaction), tops it up, lists it, starts a close,
// finalizes it after the challenge window and gets its refund. Reverts read as sentences.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { decryptKeystoreJson } from "ethers";
import { formatUnits, parseEther, toHex } from "viem";
import type { Address, Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  atpBalance,
  createWriter,
  devnetPrivateKey,
  donorParams,
  getChannel,
  isActiveOperator,
  mintAtp,
  registerDonor,
  registrationOf,
  stake,
  startDevnet,
} from "../../offchain/src/chain/index.ts";
import type { ChainWriter, Devnet } from "../../offchain/src/chain/index.ts";
import { runCell } from "../support/cell-cli.ts";

const ATP = 10n ** 18n;
const WALLET_PASSWORD = "new user wallet password";
const NODE_PASSPHRASE = "new user node passphrase";

describe("the wallet CLI on a devnet, as a new user", { timeout: 300_000 }, () => {
  let devnet: Devnet;
  let dir: string;
  let faucet: ChainWriter;
  let chainArgs: string[];
  let walletFile: string;
  let env: NodeJS.ProcessEnv;
  let user: Address;
  let minStake: bigint;
  /** Another donor, registered directly: the payee of the user's channel. */
  let donor: { wallet: Address; operator: Address };
  let channelId: Hex;

  /** Chain commands get the devnet's options; `wallet` only its file; `keys` nothing. */
  const cell = async (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
    const options = args[0] === "keys" ? [] : args[0] === "wallet" ? ["--wallet", walletFile] : chainArgs;
    return runCell([...args, ...options], { ...env, ...extraEnv });
  };
  const ok = async (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
    const result = await cell(args, extraEnv);
    assert.equal(result.code, 0, `cell ${args.join(" ")}\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  };
  const increaseTime = async (seconds: number) => {
    await faucet.publicClient.request({ method: "evm_increaseTime" as never, params: [seconds] as never });
    await faucet.publicClient.request({ method: "evm_mine" as never, params: [] as never });
  };
  const txCount = () => faucet.publicClient.getTransactionCount({ address: user });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "cell-wallet-cli-"));
    devnet = await startDevnet({ deploymentsDir: dir });
    faucet = createWriter(devnet.rpcUrl, devnet.deployment, devnet.deployerKey);
    walletFile = join(dir, "wallet.json");
    const deploymentFile = join(dir, `${devnet.chainId}.json`);
    chainArgs = ["--rpc", devnet.rpcUrl, "--deployment", deploymentFile, "--wallet", walletFile];
    env = { CELL_WALLET_PASSWORD: WALLET_PASSWORD };
    ({ minStake } = await donorParams(faucet));
    const donorWallet = createWriter(devnet.rpcUrl, devnet.deployment, devnetPrivateKey(1));
    const operator = privateKeyToAccount(generatePrivateKey());
    await mintAtp(faucet, donorWallet.walletClient.account.address, minStake);
    await stake(donorWallet, minStake);
    await registerDonor(donorWallet, { operator, peerKey: toHex(randomBytes(32)), metadataURI: "" });
    donor = { wallet: donorWallet.walletClient.account.address, operator: operator.address };
  });

  after(async () => {
    await devnet?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("creates a wallet, shows its address without the password, and refuses to overwrite it", async () => {
    const created = JSON.parse(await ok(["wallet", "create", "--scrypt-n", "1024", "--json"]));
    user = created.address;
    assert.match(user, /^0x[0-9a-fA-F]{40}$/);
    assert.match(
      await ok(["wallet", "address"], { CELL_WALLET_PASSWORD: "" }),
      new RegExp(`address\\s+${user}`),
    );
    const again = await cell(["wallet", "create", "--scrypt-n", "1024"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists; use --force/);
  });

  test("a wallet without ETH or ATP is rejected before anything is sent; a wrong password is named", async () => {
    const noEth = await cell(["donor", "stake", "10"]);
    assert.equal(noEth.code, 1);
    assert.equal(noEth.stderr.trim(), `error: rejected: the wallet ${user} has no ETH to pay for gas`);
    const hash = await faucet.walletClient.sendTransaction({
      to: user,
      value: parseEther("1"),
      account: faucet.walletClient.account,
      chain: faucet.walletClient.chain,
    });
    await faucet.publicClient.waitForTransactionReceipt({ hash });
    const noAtp = await cell(["donor", "stake", "10"]);
    assert.equal(noAtp.code, 1);
    assert.equal(noAtp.stderr.trim(), "error: rejected: not enough ATP (have 0 ATP, need 10 ATP)");
    const wrong = await cell(["donor", "stake", "10"], { CELL_WALLET_PASSWORD: "not the password" });
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      /^error: cannot decrypt wallet \S+wallet\.json: wrong passphrase or the file was modified$/m,
    );
    assert.equal(await txCount(), 0);
  });

  test("stakes with a permit in one transaction and registers a fresh node", async () => {
    await mintAtp(faucet, user, minStake + 100n * ATP);
    const staked = await ok(["donor", "stake", formatUnits(minStake, 18)]);
    assert.match(
      staked,
      new RegExp(
        `^staked ${formatUnits(minStake, 18)} ATP: tx 0x[0-9a-f]{64} \\(block \\d+, gas \\d+\\)$`,
        "m",
      ),
    );
    assert.equal(await txCount(), 1, "one transaction: no separate approval");

    const nodeDir = join(dir, "node");
    const keys = JSON.parse(
      await ok(["keys", "init", "--dir", nodeDir, "--scrypt-n", "1024", "--json"], {
        CELL_PASSPHRASE: NODE_PASSPHRASE,
      }),
    );
    const registered = await ok(["donor", "register", "--node-dir", nodeDir], {
      CELL_PASSPHRASE: NODE_PASSPHRASE,
    });
    assert.match(registered, new RegExp(`^registered operator ${keys.operator}: tx 0x[0-9a-f]{64}`, "m"));
    const registration = await registrationOf(faucet, user);
    assert.equal(registration.operator, keys.operator);
    assert.equal(registration.peerKey, keys.peerKey);
    assert.equal(await isActiveOperator(faucet, keys.operator), true);

    const status = JSON.parse(await ok(["donor", "status", "--json"], { CELL_WALLET_PASSWORD: "" }));
    assert.deepEqual(
      {
        bonded: status.bonded,
        operator: status.operator,
        peerKey: status.peerKey,
        active: status.active,
        jailedUntil: status.jailedUntil,
      },
      {
        bonded: `${formatUnits(minStake, 18)} ATP`,
        operator: keys.operator,
        peerKey: keys.peerKey,
        active: true,
        jailedUntil: null,
      },
    );
    // A node's config names the chain as well as --rpc and --deployment do.
    const config = join(dir, "node.toml");
    await writeFile(
      config,
      `[chain]\nrpcUrl = "${devnet.rpcUrl}"\ndeploymentFile = "${devnet.chainId}.json"\n`,
    );
    const fromConfig = await runCell(["donor", "status", "--config", config, "--wallet", walletFile]);
    assert.equal(fromConfig.code, 0, fromConfig.stderr);
    assert.match(fromConfig.stdout, /^active\s+yes$/m);
    assert.match(fromConfig.stdout, new RegExp(`^operator\\s+${keys.operator}$`, "m"));
  });

  test("unbonding more than is bonded fails with the contract's reason as a sentence", async () => {
    const result = await cell(["donor", "unbond", formatUnits(minStake + ATP, 18)]);
    assert.equal(result.code, 1, result.stdout);
    assert.equal(
      result.stderr.trim(),
      `error: cannot unbond ${formatUnits(minStake + ATP, 18)} ATP: only ${formatUnits(minStake, 18)} ATP is bonded`,
    );
  });

  test("opens a channel to a donor named by its operator address, in one transaction, signed for the node", async () => {
    const before = await txCount();
    const opened = await ok(["channel", "open", donor.operator, "20.5", "--node-dir", join(dir, "node")]);
    assert.equal(await txCount(), before + 1, "one transaction: the deposit comes with a permit");
    assert.match(opened, /^opened a channel with 20\.5 ATP: tx 0x[0-9a-f]{64}/m);
    assert.match(opened, new RegExp(`^payee\\s+${donor.wallet}$`, "m"), "paid to the donor's staking wallet");
    channelId = opened.match(/^channel\s+(0x[0-9a-f]{64})$/m)?.[1] as Hex;
    assert.ok(channelId, opened);
    assert.equal((await getChannel(faucet, channelId)).deposit, (205n * ATP) / 10n);
  });

  test("tops the channel up by its payee and lists it", async () => {
    const topped = await ok(["channel", "topup", donor.wallet, "4.5"]);
    assert.match(topped, /^approved 4\.5 ATP for PaymentChannels: tx 0x[0-9a-f]{64}/m);
    assert.match(topped, new RegExp(`^topped up ${channelId} with 4\\.5 ATP: tx 0x[0-9a-f]{64}`, "m"));
    assert.match(topped, /^deposit\s+25 ATP$/m);
    const list = JSON.parse(await ok(["channel", "list", "--json"], { CELL_WALLET_PASSWORD: "" }));
    assert.equal(list.length, 1);
    assert.deepEqual(
      {
        id: list[0].channelId,
        payee: list[0].payee,
        deposit: list[0].deposit,
        paid: list[0].paid,
        state: list[0].state,
      },
      { id: channelId, payee: donor.wallet, deposit: "25 ATP", paid: "0 ATP", state: "open" },
    );
  });

  test("starts a close, cannot finalize inside the window, finalizes after it and gets the refund", async () => {
    const started = await ok(["channel", "close", channelId]);
    assert.match(started, new RegExp(`^started closing ${channelId}: tx`, "m"));
    assert.match(started, new RegExp(`cell channel close ${channelId} --finalize`));
    assert.match(await ok(["channel", "status", channelId]), /^state\s+closing, can be finalized at /m);

    const early = await cell(["channel", "close", channelId, "--finalize"]);
    assert.equal(early.code, 1);
    assert.match(
      early.stderr,
      /^error: the challenge window is still open: the channel can be finalized at \S+ \(in /m,
    );

    await increaseTime(61);
    const balance = await atpBalance(faucet, user);
    const closed = await ok(["channel", "close", channelId, "--finalize"]);
    assert.match(closed, new RegExp(`^refund\\s+25 ATP to ${user}$`, "m"));
    assert.equal(await atpBalance(faucet, user), balance + 25n * ATP);
    const status = JSON.parse(await ok(["channel", "status", channelId, "--json"]));
    assert.equal(status.state, "closed");
  });

  test("unbonds part of the stake, sees the countdown, cannot withdraw early, withdraws after the delay", async () => {
    const unbond = await ok(["donor", "unbond", "10"]);
    assert.match(unbond, /^unbonding 10 ATP: tx 0x[0-9a-f]{64}/m);
    assert.match(unbond, /^withdrawable at \S+ \(in \dm( \d+s)?\) \(cell donor withdraw\)$/m);
    const status = await ok(["donor", "status"]);
    assert.match(status, /^unbonding\s+10 ATP$/m);
    assert.match(status, /^unbondable \S+ \(in \dm/m);

    const early = await cell(["donor", "withdraw"]);
    assert.equal(early.code, 1);
    assert.match(early.stderr, /^error: the stake is still unbonding: it can be withdrawn at \S+ \(in /m);

    const { unbondingDelay } = await donorParams(faucet);
    await increaseTime(unbondingDelay + 1);
    const balance = await atpBalance(faucet, user);
    assert.match(await ok(["donor", "withdraw"]), /^withdrew 10 ATP: tx 0x[0-9a-f]{64}/m);
    assert.equal(await atpBalance(faucet, user), balance + 10n * ATP);
  });

  test("a wallet imported from a private key file is a v3 keystore ethers (and cast) can open", async () => {
    const key = generatePrivateKey();
    const keyFile = join(dir, "key.txt");
    await writeFile(keyFile, `${key}\n`, { mode: 0o600 });
    const imported = join(dir, "imported.json");
    const result = await runCell(
      ["wallet", "import", keyFile, "--wallet", imported, "--scrypt-n", "1024"],
      env,
    );
    assert.equal(result.code, 0, result.stderr);
    const address = privateKeyToAccount(key).address;
    assert.match(result.stdout, new RegExp(`^address\\s+${address}$`, "m"));
    const opened = await decryptKeystoreJson(await readFile(imported, "utf8"), WALLET_PASSWORD);
    assert.equal(opened.privateKey, key);
  });
});
