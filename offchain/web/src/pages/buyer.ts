// Buyer: open (with a permit), top up and close channels; the node's spending through them
// over time (a chart) and how long each lasts at the current rate.
import { h, type ComponentChild } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { getAddress, isAddress, type Address } from "viem";
import {
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";
import { getJson } from "../api.ts";
import {
  atpBalance,
  finalizeClose,
  myChannels,
  openChannelWithPermit,
  startClose,
  topUpChannel,
  type ChannelRow,
} from "../chain.ts";
import { ActionButton, ChainRef, Field, Section, Show, TextInput, useLoad } from "../ui.ts";
import {
  appendSample,
  countdown,
  formatAtp,
  formatTimeToEmpty,
  parseAtpInput,
  shortfallText,
  timeToEmptySeconds,
} from "../view.ts";
import type { ConsoleConfig, Connection } from "../wallet.ts";

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Tooltip, Legend);

/** One row of the node's GET /payments/channels. */
interface NodeChannel {
  payee: Address;
  channelId: string;
  deposit: string;
  spent: string;
  remaining: string;
  spendPerHour?: string;
  secondsToEmpty?: number | null;
  low?: boolean;
}

/** Samples of total spend kept for the chart: one per refresh, the oldest dropped beyond this. */
const MAX_SPEND_SAMPLES = 120;
const CHANNEL_CLOSED = 2n ** 64n - 1n;

export function BuyerPage(props: { config: ConsoleConfig; connection: Connection }): ComponentChild {
  const { config, connection } = props;
  const [version, setVersion] = useState(0);
  const refresh = () => setVersion((value) => value + 1);
  const [channels] = useLoad(() => myChannels(connection, config), [connection.account, version], 5_000);
  return h(
    "div",
    { class: "page" },
    h(OpenForm, { config, connection, onDone: refresh }),
    h(Section, {
      title: "Your channels (on-chain)",
      testId: "my-channels",
      children: h(Show<ChannelRow[]>, {
        loaded: channels,
        what: "channels",
        render: (rows) => h(ChannelTable, { rows, config, connection, onDone: refresh }),
      }),
    }),
    h(NodeSpending, { config }),
  );
}

function OpenForm(props: {
  config: ConsoleConfig;
  connection: Connection;
  onDone: () => void;
}): ComponentChild {
  const { config, connection } = props;
  const [payee, setPayee] = useState("");
  const [amount, setAmount] = useState("");
  const [signer, setSigner] = useState<string>(config.operator);
  const run = async () => {
    if (!isAddress(payee)) throw new Error("Payee: enter the donor's 0x address.");
    if (!isAddress(signer)) throw new Error("Signer: enter a 0x address (this node's operator by default).");
    const wei = parseAtpInput(amount, "Deposit");
    const shortfall = shortfallText(await atpBalance(connection, config), wei);
    if (shortfall) throw new Error(shortfall);
    const hash = await openChannelWithPermit(connection, config, {
      signer: getAddress(signer),
      payee: getAddress(payee),
      amount: wei,
    });
    props.onDone();
    return `Opened a channel of ${formatAtp(wei)} (transaction ${hash.slice(0, 10)}…).`;
  };
  return h(Section, {
    title: "Open a channel (one transaction, with a permit)",
    children: [
      h(Field, {
        label: "Payee (donor address)",
        children: h(TextInput, { value: payee, onInput: setPayee, testId: "channel-payee" }),
      }),
      h(Field, {
        label: "Deposit (ATP)",
        children: h(TextInput, { value: amount, onInput: setAmount, testId: "channel-amount" }),
      }),
      h(Field, {
        label: "Signer (the key whose vouchers it honours; this node's operator pays from it)",
        children: h(TextInput, { value: signer, onInput: setSigner }),
      }),
      h(ActionButton, { label: "Open channel", run, testId: "open-channel" }),
    ],
  });
}

function ChannelTable(props: {
  rows: ChannelRow[];
  config: ConsoleConfig;
  connection: Connection;
  onDone: () => void;
}): ComponentChild {
  const { rows, config, connection } = props;
  if (rows.length === 0) return h("p", { class: "muted" }, "No channels yet.");
  const now = Math.floor(Date.now() / 1000);
  return h(
    "table",
    { "data-testid": "channel-table" },
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        ["Payee", "Deposit", "Paid", "Balance", "State", ""].map((title) => h("th", { key: title }, title)),
      ),
    ),
    h(
      "tbody",
      null,
      rows.map((row) =>
        h(
          "tr",
          { key: row.channelId },
          h("td", null, h(ChainRef, { chainId: config.chainId, kind: "address", value: row.key.payee })),
          h("td", null, formatAtp(row.deposit)),
          h("td", null, formatAtp(row.paid)),
          h("td", null, formatAtp(row.deposit - row.paid)),
          h("td", null, channelState(row, now)),
          h("td", null, h(ChannelActions, { row, config, connection, onDone: props.onDone, now })),
        ),
      ),
    ),
  );
}

function channelState(row: ChannelRow, now: number): string {
  if (row.closesAt === CHANNEL_CLOSED) return "closed";
  if (row.closesAt === 0n) return "open";
  return `closing, final ${countdown(row.closesAt, now)}`;
}

function ChannelActions(props: {
  row: ChannelRow;
  config: ConsoleConfig;
  connection: Connection;
  onDone: () => void;
  now: number;
}): ComponentChild {
  const { row, config, connection, onDone, now } = props;
  const [amount, setAmount] = useState("");
  if (row.closesAt === CHANNEL_CLOSED) return h("span", null, "");
  if (row.closesAt !== 0n)
    return h(ActionButton, {
      label: "Finalize close",
      disabled: Number(row.closesAt) > now,
      testId: "finalize-close",
      run: async () => {
        await finalizeClose(connection, config, row.key);
        onDone();
        return "Closed; the rest of the deposit is back in your wallet.";
      },
    });
  return h(
    "div",
    { class: "row" },
    h(TextInput, { value: amount, onInput: setAmount, placeholder: "ATP", testId: "topup-amount" }),
    h(ActionButton, {
      label: "Top up",
      testId: "topup-channel",
      run: async () => {
        await topUpChannel(connection, config, row.key, parseAtpInput(amount, "Top-up"));
        onDone();
        return "Topped up.";
      },
    }),
    h(ActionButton, {
      label: "Close",
      testId: "close-channel",
      run: async () => {
        await startClose(connection, config, row.key);
        onDone();
        return "Close started: the payee may still present its last voucher during the challenge window.";
      },
    }),
  );
}

/** The node's own view of what it spends through its channels (GET /payments/channels). */
function NodeSpending(props: { config: ConsoleConfig }): ComponentChild {
  const [loaded] = useLoad(() => getJson<{ channels: NodeChannel[] }>("/payments/channels"), [], 5_000);
  const [samples, setSamples] = useState<{ at: string; spent: number }[]>([]);
  useEffect(() => {
    if (loaded.state !== "ready") return;
    const spent = loaded.value.channels.reduce((sum, channel) => sum + BigInt(channel.spent), 0n);
    const sample = { at: new Date().toLocaleTimeString(), spent: Number(spent) / 1e18 };
    setSamples((series) => appendSample(series, sample, MAX_SPEND_SAMPLES));
  }, [loaded]);
  return h(Section, {
    title: "This node's spending",
    testId: "node-spending",
    children: h(Show<{ channels: NodeChannel[] }>, {
      loaded,
      what: "Channel spending",
      render: ({ channels }) =>
        h(
          "div",
          null,
          h(SpendChart, { samples }),
          h(
            "table",
            { "data-testid": "node-channels" },
            h(
              "thead",
              null,
              h(
                "tr",
                null,
                ["Payee", "Remaining", "Spend / hour", "Empty in"].map((title) =>
                  h("th", { key: title }, title),
                ),
              ),
            ),
            h(
              "tbody",
              null,
              channels.map((channel) =>
                h(
                  "tr",
                  { key: channel.channelId, class: channel.low ? "low" : "" },
                  h(
                    "td",
                    null,
                    h(ChainRef, { chainId: props.config.chainId, kind: "address", value: channel.payee }),
                  ),
                  h("td", null, formatAtp(channel.remaining)),
                  h("td", null, formatAtp(channel.spendPerHour ?? "0")),
                  h(
                    "td",
                    null,
                    formatTimeToEmpty(
                      channel.secondsToEmpty ??
                        timeToEmptySeconds(BigInt(channel.remaining), BigInt(channel.spendPerHour ?? "0")),
                    ),
                  ),
                ),
              ),
            ),
          ),
        ),
    }),
  });
}

function SpendChart(props: { samples: { at: string; spent: number }[] }): ComponentChild {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  useEffect(() => {
    if (!canvas.current) return;
    chart.current = new Chart(canvas.current, {
      type: "line",
      data: {
        labels: [],
        datasets: [{ label: "ATP spent", data: [], borderColor: "#2f6fde", tension: 0.2 }],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { y: { ticks: { callback: (value) => `${Number(value).toPrecision(3)} ATP` } } },
      },
    });
    return () => chart.current?.destroy();
  }, []);
  useEffect(() => {
    const current = chart.current;
    if (!current) return;
    current.data.labels = props.samples.map((sample) => sample.at);
    current.data.datasets[0]!.data = props.samples.map((sample) => sample.spent);
    current.update();
  }, [props.samples]);
  return h("div", { class: "chart" }, h("canvas", { ref: canvas, "data-testid": "spend-chart" }));
}
