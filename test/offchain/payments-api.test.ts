// GET /payments/channels and `cell payments status` over a real loopback API: the channels
// come from the buyer's real channel manager over an in-memory SQLite store, on a clock the
// test moves; the CLI runs as a child process the way a user runs it.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getAddress } from "viem";
import type { Address, Hex } from "viem";
import { createApiClient, createApiServer } from "../../offchain/src/api/index.ts";
import type { ApiNode, ApiServer } from "../../offchain/src/api/index.ts";
import { channelIdOf } from "../../offchain/src/chain/index.ts";
import type { ChannelKey } from "../../offchain/src/chain/index.ts";
import { BuyerChannels } from "../../offchain/src/payments/index.ts";
import { openStore } from "../../offchain/src/store/index.ts";
import type { Store } from "../../offchain/src/store/index.ts";
import { duration } from "../../offchain/src/cli/commands/payments.ts";
import { runCell } from "../support/cell-cli.ts";

const TOKEN = "payments-token-0123456789";
const OPERATOR: Address = "0x00000000000000000000000000000000000000b0";
const PAYEE: Address = "0x00000000000000000000000000000000000000d1";
const ATP = 10n ** 18n;
const jobId = (n: number): Hex => `0x${n.toString(16).padStart(64, "0")}`;

describe("payments status: API and CLI", () => {
  let dir: string;
  let store: Store;
  let server: ApiServer;
  let tokenFile: string;
  const clock = { now: 1_000_000 };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "cell-pay-api-"));
    tokenFile = join(dir, "token");
    await writeFile(tokenFile, TOKEN);
    store = openStore(":memory:");
    const channels = new BuyerChannels(
      {
        chain: {
          open: async (payee, deposit) => {
            const key: ChannelKey = { buyer: OPERATOR, signer: OPERATOR, payee, nonce: 1n };
            return { key, channelId: channelIdOf(key), deposit, paid: 0n };
          },
          findOpen: async () => [],
          topUp: async () => {
            throw new Error("no top-ups here");
          },
        },
        store,
        clock: { now: () => clock.now },
        log: { info: () => {}, warn: () => {} },
      },
      { operator: OPERATOR, deposit: 10n * ATP, topUpBelow: 0, topUpAmount: 0n, lowBalanceFraction: 0.5 },
    );
    // 6 ATP spent over 6 minutes: 60 ATP an hour, 4 ATP left, empty in 4 minutes.
    for (let minute = 0; minute < 6; minute++) {
      await channels.pay(PAYEE, jobId(minute + 1), ATP, "peer-d1");
      clock.now += 60_000;
    }
    const node: ApiNode = {
      peerId: "12D3KooWPaymentsApiTestNode",
      did: "did:key:z6MkPayments",
      operator: OPERATOR,
      chainInfo: { chainId: 31337, rpcUrl: "http://127.0.0.1:1", contracts: {} },
      multiaddrs: () => [],
      submitJob: async () => {
        throw new Error("not here");
      },
      getJob: () => undefined,
      listJobs: () => [],
      peers: () => [],
      on: () => undefined,
      paymentChannels: () => channels.views(),
    };
    server = await createApiServer({ node, token: TOKEN });
  });

  after(async () => {
    await server?.close();
    store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("GET /payments/channels lists each channel with spend, rate, time to empty and the low flag", async () => {
    const client = createApiClient({ url: server.url, token: TOKEN });
    const [channel] = (await client.paymentChannels()) as Record<string, unknown>[];
    assert.ok(channel);
    assert.equal(channel.payee, getAddress(PAYEE));
    assert.equal(channel.deposit, (10n * ATP).toString());
    assert.equal(channel.spent, (6n * ATP).toString());
    assert.equal(channel.remaining, (4n * ATP).toString());
    assert.equal(channel.spendPerHour, (60n * ATP).toString());
    assert.equal(channel.secondsToEmpty, 240);
    assert.equal(channel.low, true);
  });

  it("`cell payments status` prints ATP amounts and time to empty, or JSON", async () => {
    const api = ["--api", server.url, "--token-file", tokenFile];
    const text = await runCell(["payments", "status", ...api]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`payee ${getAddress(PAYEE)}`));
    assert.match(
      text.stdout,
      /deposit 10 ATP {2}spent 6 ATP {2}remaining 4 ATP {2}60 ATP\/h {2}empty in 4m 0s {2}LOW/,
    );
    const json = await runCell(["payments", "status", "--json", ...api]);
    assert.equal(json.code, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as { spent: string }[];
    assert.deepEqual(
      rows.map((row) => row.spent),
      [(6n * ATP).toString()],
    );
    const help = await runCell(["payments", "status", "--help"]);
    assert.match(help.stdout, /Example:\n\s+\$ cell payments status/);
  });

  it("durations read as days, hours, minutes or seconds", () => {
    assert.equal(duration(42), "42s");
    assert.equal(duration(725), "12m 5s");
    assert.equal(duration(14_940), "4h 9m");
    assert.equal(duration(273_600), "3d 4h");
  });
});
