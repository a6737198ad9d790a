import type { ServerResponse } from "node:http";
import { toJson } from "./json.ts";

export interface EventStream {
  send(event: string, data: unknown): void;
  close(): void;
  onClose(callback: () => void): void;
}

/** A Server-Sent Events response: `event: <name>` + one `data:` line of JSON per message. */
export function openEventStream(response: ServerResponse, heartbeatMs: number): EventStream {
  response.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  response.flushHeaders();
  let closed = false;
  let sequence = 0;
  const closeCallbacks: (() => void)[] = [];
  const heartbeat = setInterval(() => response.write(": keep-alive\n\n"), heartbeatMs);
  heartbeat.unref();

  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    response.end();
    for (const callback of closeCallbacks) callback();
  };
  response.on("close", close);

  return {
    send(event, data) {
      if (closed) return;
      sequence += 1;
      response.write(`id: ${sequence}\nevent: ${event}\ndata: ${toJson(data)}\n\n`);
    },
    close,
    onClose(callback) {
      closeCallbacks.push(callback);
    },
  };
}
