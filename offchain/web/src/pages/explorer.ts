// Explorer: stakes, channels, settlements, slashes, anchors and the zk settlement (proven batches,
// zk channels) from the node's indexer, a donor's history, and a receipt's inclusion under its epoch's anchored root (checked
// on-chain by PaymentChannels.verifyReceiptInclusion).
import { h, type ComponentChild } from "preact";
import { useState } from "preact/hooks";
import { isAddress } from "viem";
import { getJson, postJson } from "../api.ts";
import { verifyInclusion, type InclusionProof } from "../chain.ts";
import { ActionButton, Facts, Field, RecordTable, Section, Show, TextInput, useLoad } from "../ui.ts";
import { settlementOutcomeText, type SettlementOutcomeJson } from "../view.ts";
import { readClient, type ConsoleConfig } from "../wallet.ts";

const LISTS = [
  { path: "/explorer/settlements", title: "Settlements" },
  { path: "/explorer/stakes", title: "Stakes" },
  { path: "/explorer/channels", title: "Channels" },
  { path: "/explorer/slashes", title: "Slashes" },
  { path: "/explorer/anchors", title: "Receipt anchors" },
] as const;

const PAGE_SIZE = 25;

/** The first array in a page answer (`items`, `settlements`, …) and its next cursor. */
export function pageRows(body: unknown): { rows: Record<string, unknown>[]; next?: string } {
  if (Array.isArray(body)) return { rows: body as Record<string, unknown>[] };
  const record = (body ?? {}) as Record<string, unknown>;
  const list = Object.values(record).find(Array.isArray) as Record<string, unknown>[] | undefined;
  const next = record.nextCursor ?? record.cursor;
  return { rows: list ?? [], ...(typeof next === "string" && next ? { next } : {}) };
}

export function ExplorerPage(props: { config: ConsoleConfig }): ComponentChild {
  const { config } = props;
  return h(
    "div",
    { class: "page" },
    h(IndexerStatus, null),
    h(NodeSettlements, { chainId: config.chainId }),
    LISTS.map((list) => h(PagedList, { key: list.path, ...list, chainId: config.chainId })),
    h(ZkSettlement, { chainId: config.chainId }),
    h(DonorHistory, { chainId: config.chainId }),
    h(NodeSlashes, { chainId: config.chainId }),
    h(InclusionCheck, { config }),
  );
}

function IndexerStatus(): ComponentChild {
  const [loaded] = useLoad(() => getJson<Record<string, unknown>>("/explorer/status"), [], 10_000);
  return h(Section, {
    title: "Indexer",
    testId: "indexer-status",
    children: h(Show<Record<string, unknown>>, {
      loaded,
      what: "The chain indexer",
      render: (status) => h("code", null, JSON.stringify(status)),
    }),
  });
}

/** The epochs this node settled as a payee (GET /settlements), and settling now. */
function NodeSettlements(props: { chainId: number }): ComponentChild {
  const [loaded, reload] = useLoad(() => getJson<unknown>("/settlements").then(pageRows), [], 10_000);
  const settle = async () => {
    const outcome = await postJson<SettlementOutcomeJson>("/settlement/run", {});
    reload();
    return settlementOutcomeText(outcome);
  };
  return h(Section, {
    title: "This node's settlements",
    testId: "node-settlements",
    children: [
      h(ActionButton, { label: "Settle now", run: settle, testId: "settle-now" }),
      h(Show<ReturnType<typeof pageRows>>, {
        loaded,
        what: "Settlement",
        render: ({ rows }) => h(RecordTable, { rows, chainId: props.chainId }),
      }),
    ],
  });
}

/** A proven zk batch as the console lists it (GET /explorer/zk/batches). */
export function zkBatchRows(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  return rows.map((row) => ({
    batch: row.batch,
    submitter: row.submitter,
    transfers: row.transferCount,
    queueOps: row.queueOps,
    newRoot: row.newRoot,
    tx: row.tx,
  }));
}

/** A zk channel as the console lists it (GET /explorer/zk/channels). */
export function zkChannelRows(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  return rows.map((row) => ({
    leaf: row.leaf,
    buyer: row.buyer,
    payee: row.payee,
    deposited: row.deposited,
    paid: row.paid,
    withdrawn: row.withdrawn,
    state: row.status,
  }));
}

/** Batches proven on ZkChannels and its channels (docs/zk.md); empty on a deployment without it. */
function ZkSettlement(props: { chainId: number }): ComponentChild {
  return h(
    "div",
    { "data-testid": "explorer-zk" },
    h(PagedList, {
      path: "/explorer/zk/batches",
      title: "zk settlement: proven batches",
      testId: "explorer-zk-batches",
      select: zkBatchRows,
      chainId: props.chainId,
    }),
    h(PagedList, {
      path: "/explorer/zk/channels",
      title: "zk settlement: channels",
      testId: "explorer-zk-channels",
      select: zkChannelRows,
      chainId: props.chainId,
    }),
  );
}

function PagedList(props: {
  path: string;
  title: string;
  chainId: number;
  testId?: string;
  select?: (rows: Record<string, unknown>[]) => Record<string, unknown>[];
}): ComponentChild {
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors.at(-1);
  const query = `?limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
  const [loaded] = useLoad(() => getJson<unknown>(`${props.path}${query}`).then(pageRows), [query], 10_000);
  const testId = props.testId ?? `explorer-${props.path.split("/").at(-1) ?? ""}`;
  return h(Section, {
    title: props.title,
    testId,
    children: h(Show<ReturnType<typeof pageRows>>, {
      loaded,
      what: props.title,
      render: ({ rows, next }) =>
        h(
          "div",
          null,
          h(RecordTable, { rows: props.select ? props.select(rows) : rows, chainId: props.chainId }),
          h(
            "div",
            { class: "row" },
            cursors.length > 0 && h("button", { onClick: () => setCursors(cursors.slice(0, -1)) }, "Newer"),
            next && h("button", { onClick: () => setCursors([...cursors, next]) }, "Older"),
          ),
        ),
    }),
  });
}

interface PeerRow {
  peerId: string;
  operator?: string;
  reputation?: number;
  penaltyScore: number;
  trust?: { state?: string };
}

/** Every 0x address in a history answer (the donor, its operators), lowercased. */
export function addressesIn(value: unknown): Set<string> {
  const text = JSON.stringify(value) ?? "";
  return new Set(
    [...text.matchAll(/0x[0-9a-fA-F]{40}(?![0-9a-fA-F])/g)].map((match) => match[0].toLowerCase()),
  );
}

/** This node's trust view of the donor's operators: reputation (0..65535, neutral 32768), penalties. */
export function trustRows(peers: PeerRow[], addresses: Set<string>): Record<string, unknown>[] {
  return peers
    .filter((peer) => peer.operator !== undefined && addresses.has(peer.operator.toLowerCase()))
    .map((peer) => ({
      operator: peer.operator,
      peerId: peer.peerId,
      reputation: peer.reputation === undefined ? "—" : `${((peer.reputation / 65_535) * 100).toFixed(1)}%`,
      penaltyScore: peer.penaltyScore,
      trust: peer.trust?.state ?? "ok",
    }));
}

/**
 * A donor's answer split for display: its scalar facts flattened one level (`stake.bonded`,
 * `faults.outvoted`, `trust.reputation`), and each list (its history's items, court cases).
 */
export function donorSections(body: Record<string, unknown>): {
  facts: Record<string, unknown>;
  lists: [string, Record<string, unknown>[]][];
} {
  const facts: Record<string, unknown> = {};
  const lists: [string, Record<string, unknown>[]][] = [];
  for (const [key, value] of Object.entries(body)) {
    if (Array.isArray(value)) lists.push([key, value as Record<string, unknown>[]]);
    else if (value !== null && typeof value === "object") {
      const nested = value as Record<string, unknown>;
      if (Array.isArray(nested.items)) lists.push([key, nested.items as Record<string, unknown>[]]);
      else for (const [inner, innerValue] of Object.entries(nested)) facts[`${key}.${inner}`] = innerValue;
    } else facts[key] = value;
  }
  return { facts, lists };
}

function DonorHistory(props: { chainId: number }): ComponentChild {
  const [address, setAddress] = useState("");
  const [history, setHistory] = useState<Record<string, unknown> | undefined>();
  const [trust, setTrust] = useState<Record<string, unknown>[]>([]);
  const run = async () => {
    if (!isAddress(address)) throw new Error("Donor: enter a 0x address.");
    const [found, peers] = await Promise.all([
      getJson<Record<string, unknown>>(`/explorer/donors/${address}`),
      getJson<{ peers: PeerRow[] }>("/peers"),
    ]);
    setHistory(found);
    setTrust(trustRows(peers.peers, new Set([...addressesIn(found), address.toLowerCase()])));
    return "Loaded.";
  };
  const sections = history ? donorSections(history) : undefined;
  return h(Section, {
    title: "A donor's history (faults, reputation, stakes, slashes)",
    testId: "donor-history-section",
    children: [
      h(Field, {
        label: "Donor address",
        children: h(TextInput, { value: address, onInput: setAddress, testId: "donor-address" }),
      }),
      h(ActionButton, { label: "Show", run, testId: "donor-history" }),
      sections && h(Facts, { facts: sections.facts, chainId: props.chainId, testId: "donor-facts" }),
      history && h("h3", null, "This node's view of its operators"),
      history && h(RecordTable, { rows: trust, chainId: props.chainId, testId: "donor-trust" }),
      sections?.lists.map(([name, rows]) =>
        h(
          "div",
          { key: name },
          h("h3", null, name),
          h(RecordTable, { rows: rows as Record<string, unknown>[], chainId: props.chainId }),
        ),
      ),
    ],
  });
}

function NodeSlashes(props: { chainId: number }): ComponentChild {
  const [loaded] = useLoad(
    () => getJson<{ pending: Record<string, unknown>[]; history: Record<string, unknown>[] }>("/slashes"),
    [],
    10_000,
  );
  return h(Section, {
    title: "Slashes this node submitted",
    children: h(Show<{ pending: Record<string, unknown>[]; history: Record<string, unknown>[] }>, {
      loaded,
      what: "Slashes",
      render: (slashes) =>
        h(RecordTable, { rows: [...slashes.pending, ...slashes.history], chainId: props.chainId }),
    }),
  });
}

function InclusionCheck(props: { config: ConsoleConfig }): ComponentChild {
  const [jobId, setJobId] = useState("");
  const run = async () => {
    if (!/^0x[0-9a-fA-F]{64}$/.test(jobId.trim())) throw new Error("Job id: 0x followed by 64 hex digits.");
    const proof = await getJson<InclusionProof>(`/receipts/${jobId.trim()}/proof`);
    const included = await verifyInclusion(readClient(props.config), props.config, proof);
    return included
      ? `Included: the receipt is under the root ${proof.root.slice(0, 10)}… anchored by ${proof.submitter} for epoch ${proof.epoch}.`
      : `Not included: the chain does not find this receipt under epoch ${proof.epoch}'s root.`;
  };
  return h(Section, {
    title: "Check a receipt's inclusion",
    children: [
      h(Field, {
        label: "Job id",
        children: h(TextInput, { value: jobId, onInput: setJobId, testId: "inclusion-job" }),
      }),
      h(ActionButton, { label: "Check on-chain", run, testId: "check-inclusion" }),
    ],
  });
}
