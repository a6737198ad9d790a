// Jobs: submit a WebAssembly module through this node and watch it live (SSE): bids,
// replicas, the verdict and the vouchers it paid.
import { h, type ComponentChild } from "preact";
import { useEffect, useState } from "preact/hooks";
import { getJson, postJson, streamEvents } from "../api.ts";
import { ActionButton, ChainRef, Field, Section, TextInput } from "../ui.ts";
import { errorText } from "../view.ts";

interface JobEvent {
  type: string;
  reason?: string;
  [field: string]: unknown;
}

interface JobView {
  jobId: string;
  state: string;
  events?: JobEvent[];
  replicas?: { slot: number; peerId: string; operator: string; state: string; agrees?: boolean }[];
  verdict?: { outcome: string; quorum: number; tally: { votes: number; outputCid: string }[] };
}

/** Events shown per job; a long job's oldest drop off the list beyond this. */
const MAX_EVENTS = 500;
/** How often, and how many times, a settled job's payments are looked up. */
const PAYMENT_POLL_MS = 1_000;
const PAYMENT_POLLS = 10;

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let index = 0; index < bytes.length; index += 0x8000)
    binary += String.fromCharCode(...bytes.subarray(index, index + 0x8000));
  return btoa(binary);
}

export function JobsPage(props: { chainId: number }): ComponentChild {
  const [file, setFile] = useState<File | undefined>();
  const [input, setInput] = useState("1\nhello cell");
  const [replicas, setReplicas] = useState("3");
  const [mode, setMode] = useState<"quorum" | "spot">("quorum");
  const [jobId, setJobId] = useState<string | undefined>();
  const submit = async () => {
    if (!file) throw new Error("Module: choose a .wasm file (examples/jobs/build/ has some).");
    const count = Number(replicas);
    if (!Number.isInteger(count) || count < 1 || count > 255)
      throw new Error("Replicas: enter a whole number from 1 to 255.");
    const body = {
      moduleBase64: bytesToBase64(new Uint8Array(await file.arrayBuffer())),
      inputBase64: bytesToBase64(new TextEncoder().encode(input)),
      replicas: count,
      verification: mode,
    };
    const { jobId: submitted } = await postJson<{ jobId: string }>("/jobs", body);
    setJobId(submitted);
    return `Submitted job ${submitted}.`;
  };
  return h(
    "div",
    { class: "page" },
    h(Section, {
      title: "Submit a job",
      children: [
        h(Field, {
          label: "Module (.wasm)",
          children: h("input", {
            type: "file",
            accept: ".wasm,application/wasm",
            "data-testid": "job-module",
            onChange: (event: Event) => setFile((event.currentTarget as HTMLInputElement).files?.[0]),
          }),
        }),
        h(Field, {
          label: "Input (text; the sha256 example reads <rounds>, a newline, then the data)",
          children: h("textarea", {
            value: input,
            rows: 3,
            "data-testid": "job-input",
            onInput: (event: Event) => setInput((event.currentTarget as HTMLTextAreaElement).value),
          }),
        }),
        h(Field, {
          label: "Replicas",
          children: h(TextInput, { value: replicas, onInput: setReplicas, testId: "job-replicas" }),
        }),
        h(Field, {
          label: "Verification",
          children: h(
            "select",
            {
              value: mode,
              "data-testid": "job-mode",
              onChange: (event: Event) =>
                setMode((event.currentTarget as HTMLSelectElement).value as "quorum" | "spot"),
            },
            h("option", { value: "quorum" }, "quorum of replicas"),
            h("option", { value: "spot" }, "spot checks"),
          ),
        }),
        h(ActionButton, { label: "Submit", run: submit, testId: "submit-job" }),
      ],
    }),
    jobId && h(LiveJob, { jobId, chainId: props.chainId, key: jobId }),
  );
}

function LiveJob(props: { jobId: string; chainId: number }): ComponentChild {
  const [events, setEvents] = useState<JobEvent[]>([]);
  const [final, setFinal] = useState<JobView | undefined>();
  const [failure, setFailure] = useState<string | undefined>();
  useEffect(() => {
    const abort = new AbortController();
    streamEvents(
      `/jobs/${props.jobId}/events`,
      (event, data) => {
        if (event === "job") setEvents((list) => [...list, data as JobEvent].slice(-MAX_EVENTS));
        if (event === "end") setFinal(data as JobView);
      },
      abort.signal,
    ).catch((error: unknown) => {
      if (!abort.signal.aborted) setFailure(errorText(error));
    });
    return () => abort.abort();
  }, [props.jobId]);
  // Executors are paid after the verdict, when the event stream may have ended: the job's
  // stored events are read again a few times for its payments.
  const [payments, setPayments] = useState<JobEvent[]>([]);
  useEffect(() => {
    if (final === undefined || final.verdict?.outcome !== "accepted") return;
    let tries = 0;
    const timer = setInterval(() => {
      getJson<JobView>(`/jobs/${props.jobId}`)
        .then((view) => {
          const paid = (view.events ?? []).filter((event) => event.type === "paid");
          setPayments(paid);
          if (paid.length >= final.verdict!.quorum || ++tries >= PAYMENT_POLLS) clearInterval(timer);
        })
        .catch(() => (++tries >= PAYMENT_POLLS ? clearInterval(timer) : undefined));
    }, PAYMENT_POLL_MS);
    return () => clearInterval(timer);
  }, [final, props.jobId]);
  const bids = events.filter((event) => event.type.startsWith("bid")).length;
  const vouchers = payments.length > 0 ? payments : events.filter((event) => event.type === "paid");
  return h(Section, {
    title: `Job ${props.jobId.slice(0, 10)}…`,
    testId: "live-job",
    children: [
      h(
        "p",
        null,
        `Bids: ${bids} · state: `,
        h("strong", { "data-testid": "job-state" }, final?.state ?? events.at(-1)?.type ?? "waiting"),
      ),
      final?.verdict &&
        h(
          "p",
          { "data-testid": "job-verdict" },
          `Verdict: ${final.verdict.outcome} (quorum ${final.verdict.quorum}, votes ${final.verdict.tally.map((entry) => entry.votes).join("/")})`,
        ),
      final?.replicas &&
        h(
          "table",
          { "data-testid": "job-replicas-table" },
          h(
            "thead",
            null,
            h(
              "tr",
              null,
              ["Slot", "Operator", "State", "Agrees"].map((title) => h("th", { key: title }, title)),
            ),
          ),
          h(
            "tbody",
            null,
            final.replicas.map((replica) =>
              h(
                "tr",
                { key: `${replica.slot}-${replica.peerId}` },
                h("td", null, String(replica.slot)),
                h(
                  "td",
                  null,
                  h(ChainRef, { chainId: props.chainId, kind: "address", value: replica.operator }),
                ),
                h("td", null, replica.state),
                h("td", null, replica.agrees === undefined ? "—" : replica.agrees ? "yes" : "no"),
              ),
            ),
          ),
        ),
      vouchers.length > 0 &&
        h(
          "ul",
          { "data-testid": "job-vouchers" },
          vouchers.map((event, index) =>
            h(
              "li",
              { key: index },
              "paid ",
              h(ChainRef, { chainId: props.chainId, kind: "address", value: String(event.operator) }),
              ` ${String(event.detail ?? "")}`,
            ),
          ),
        ),
      failure && h("p", { class: "error" }, failure),
      h(
        "ol",
        { class: "events", "data-testid": "job-events" },
        events.map((event, index) =>
          h("li", { key: index }, event.type, event.reason ? ` — ${event.reason}` : ""),
        ),
      ),
    ],
  });
}
