// Small shared pieces of the console's pages (Preact, written with `h`).
import { h, type ComponentChildren, type ComponentChild } from "preact";
import { useEffect, useState } from "preact/hooks";
import { NotAvailableError } from "./api.ts";
import { errorText, explorerLink, formatAtp, isAtpAmount, shortHex } from "./view.ts";

export function Section(props: {
  title: string;
  children?: ComponentChildren;
  testId?: string;
}): ComponentChild {
  return h(
    "section",
    { class: "card", "data-testid": props.testId },
    h("h2", null, props.title),
    props.children,
  );
}

export function Field(props: { label: string; children?: ComponentChildren }): ComponentChild {
  return h("label", { class: "field" }, h("span", null, props.label), props.children);
}

export function TextInput(props: {
  value: string;
  onInput: (value: string) => void;
  placeholder?: string;
  testId?: string;
}): ComponentChild {
  return h("input", {
    value: props.value,
    placeholder: props.placeholder,
    "data-testid": props.testId,
    onInput: (event: Event) => props.onInput((event.currentTarget as HTMLInputElement).value),
  });
}

type Outcome =
  { kind: "idle" } | { kind: "busy" } | { kind: "done"; text: string } | { kind: "error"; text: string };

/**
 * A button that runs an async action once at a time and says how it went: its result
 * text, or the error in words (wallet rejection, a contract's custom error, …).
 */
export function ActionButton(props: {
  label: string;
  run: () => Promise<string | void>;
  disabled?: boolean;
  testId: string;
}): ComponentChild {
  const [outcome, setOutcome] = useState<Outcome>({ kind: "idle" });
  const onClick = async () => {
    setOutcome({ kind: "busy" });
    try {
      const text = await props.run();
      setOutcome({ kind: "done", text: text ?? "Done." });
    } catch (error) {
      setOutcome({ kind: "error", text: errorText(error) });
    }
  };
  return h(
    "div",
    { class: "action" },
    h(
      "button",
      { onClick, disabled: props.disabled || outcome.kind === "busy", "data-testid": props.testId },
      outcome.kind === "busy" ? `${props.label}…` : props.label,
    ),
    outcome.kind === "done" &&
      h("span", { class: "ok", "data-testid": `${props.testId}-result` }, outcome.text),
    outcome.kind === "error" &&
      h("span", { class: "error", "data-testid": `${props.testId}-error` }, outcome.text),
  );
}

/** An address or transaction hash, linked to the chain's explorer on public chains. */
export function ChainRef(props: { chainId: number; kind: "address" | "tx"; value: string }): ComponentChild {
  const href = explorerLink(props.chainId, props.kind, props.value);
  const label = shortHex(props.value);
  return href
    ? h("a", { href, target: "_blank", rel: "noopener noreferrer", title: props.value }, label)
    : h("code", { title: props.value }, label);
}

export function Unavailable(props: { what: string; reason?: string }): ComponentChild {
  const why = props.reason ? ` (${props.reason})` : "";
  return h(
    "p",
    { class: "muted", "data-testid": "unavailable" },
    `${props.what}: not available on this node${why}.`,
  );
}

export type Loaded<T> =
  | { state: "loading" }
  | { state: "ready"; value: T }
  | { state: "unavailable"; reason?: string }
  | { state: "error"; text: string };

function unavailableReason(error: NotAvailableError): string | undefined {
  const prefix = "not available on this node: ";
  return error.message.startsWith(prefix) ? error.message.slice(prefix.length) : undefined;
}

/** Loads `load()` now and every `refreshMs` (and when `deps` change); a 404 route is "unavailable". */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], refreshMs = 0): [Loaded<T>, () => void] {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: "loading" });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    const run = () =>
      load().then(
        (value) => live && setLoaded({ state: "ready", value }),
        (error: unknown) =>
          live &&
          setLoaded(
            error instanceof NotAvailableError
              ? { state: "unavailable", reason: unavailableReason(error) }
              : { state: "error", text: errorText(error) },
          ),
      );
    void run();
    const timer = refreshMs > 0 ? setInterval(() => void run(), refreshMs) : undefined;
    return () => {
      live = false;
      if (timer) clearInterval(timer);
    };
  }, [...deps, tick]);
  return [loaded, () => setTick((value) => value + 1)];
}

/** Renders a loaded value, or the loading / not-available / error state. */
export function Show<T>(props: {
  loaded: Loaded<T>;
  what: string;
  render: (value: T) => ComponentChild;
}): ComponentChild {
  const { loaded } = props;
  if (loaded.state === "loading") return h("p", { class: "muted" }, "Loading…");
  if (loaded.state === "unavailable") return h(Unavailable, { what: props.what, reason: loaded.reason });
  if (loaded.state === "error") return h("p", { class: "error" }, loaded.text);
  return props.render(loaded.value);
}

/** A table of records; a cell that looks like an address or hash links to the explorer. */
export function RecordTable(props: {
  rows: Record<string, unknown>[];
  chainId: number;
  testId?: string;
}): ComponentChild {
  const { rows, chainId } = props;
  if (rows.length === 0) return h("p", { class: "muted", "data-testid": props.testId }, "Nothing yet.");
  const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))].slice(0, 10);
  return h(
    "table",
    { "data-testid": props.testId },
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        columns.map((column) => h("th", { key: column }, column)),
      ),
    ),
    h(
      "tbody",
      null,
      rows.map((row, index) =>
        h(
          "tr",
          { key: index },
          columns.map((column) => h("td", { key: column }, cell(row[column], chainId, column))),
        ),
      ),
    ),
  );
}

/** One record as a list of `name: value` lines, for records too wide for a table. */
export function Facts(props: {
  facts: Record<string, unknown>;
  chainId: number;
  testId?: string;
}): ComponentChild {
  return h(
    "dl",
    { "data-testid": props.testId },
    Object.entries(props.facts).flatMap(([name, value]) => [
      h("dt", { key: `${name}-t` }, name),
      h("dd", { key: `${name}-d` }, cell(value, props.chainId, name)),
    ]),
  );
}

function cell(value: unknown, chainId: number, column: string): ComponentChildren {
  if (typeof value === "string" && /^0x[0-9a-fA-F]{40}$/.test(value))
    return h(ChainRef, { chainId, kind: "address", value });
  if (typeof value === "string" && /^0x[0-9a-fA-F]{64}$/.test(value))
    return /tx|transaction/i.test(column)
      ? h(ChainRef, { chainId, kind: "tx", value })
      : h("code", { title: value }, shortHex(value));
  if (value === null || value === undefined) return "—";
  if (isAtpAmount(column, value)) return h("span", { title: `${value} base units` }, formatAtp(value));
  if (typeof value === "object") return h("code", null, JSON.stringify(value).slice(0, 80));
  return String(value);
}
