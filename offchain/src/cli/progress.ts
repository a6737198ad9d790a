import type { ApiJobEvent } from "../api/index.ts";

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const DETAIL_FIELDS = ["reason", "detail", "peerId", "operator", "pricePerMegaFuel", "attempt"];

export interface ProgressView {
  event(event: ApiJobEvent): void;
  stop(): void;
}

/**
 * Job progress on stderr: one line per event, and on a terminal a spinner line below
 * them showing the current step and the time since submission.
 */
export function createProgressView(
  stream: NodeJS.WriteStream = process.stderr,
  startedAt = performance.now(),
): ProgressView {
  const elapsed = () => `${((performance.now() - startedAt) / 1000).toFixed(2)}s`;
  if (!stream.isTTY) {
    return { event: (event) => stream.write(`[${elapsed()}] ${describeEvent(event)}\n`), stop: () => {} };
  }
  let current = "submitted";
  let frame = 0;
  const clearLine = () => stream.write("\r\x1b[2K");
  const draw = () => {
    clearLine();
    stream.write(`${SPINNER[frame % SPINNER.length]} ${current} (${elapsed()})`);
    frame += 1;
  };
  const timer = setInterval(draw, 80);
  draw();
  return {
    event(event) {
      clearLine();
      stream.write(`  ${elapsed().padStart(7)}  ${describeEvent(event)}\n`);
      current = event.type;
      draw();
    },
    stop() {
      clearInterval(timer);
      clearLine();
    },
  };
}

/** `bid_rejected reason=price_too_high peerId=12D3…` */
export function describeEvent(event: ApiJobEvent): string {
  const details = DETAIL_FIELDS.filter((field) => event[field] !== undefined && event[field] !== null).map(
    (field) => `${field}=${shorten(String(event[field]))}`,
  );
  return [event.type, ...details].join(" ");
}

function shorten(value: string): string {
  return value.length > 60 ? `${value.slice(0, 28)}…${value.slice(-12)}` : value;
}
