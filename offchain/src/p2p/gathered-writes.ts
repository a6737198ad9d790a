import { Socket } from "node:net";
import type { ConnectionEncrypter, MessageStream } from "@libp2p/interface";

/**
 * Wraps a connection encrypter so that everything it writes to a TCP socket within one
 * tick leaves in a single system call.
 *
 * The TCP transport calls `socket.write` once per chunk it is handed, and Noise hands it
 * each frame as a list: the length prefix, the ciphertext of every part of the frame and
 * the tag. A 3-byte yamux message thus went out as four writes and as many TCP segments,
 * each read and reassembled by the peer. Corked until the end of the tick, the socket
 * sends those chunks, and any other frame of the same tick, with one `writev`.
 * Back-pressure is unchanged: `socket.write` still reports a full buffer.
 */
export function gatheredWrites<Components, Extension>(
  encrypter: (components: Components) => ConnectionEncrypter<Extension>,
): (components: Components) => ConnectionEncrypter<Extension> {
  return (components) => {
    const inner = encrypter(components);
    const secureInbound = inner.secureInbound.bind(inner);
    const secureOutbound = inner.secureOutbound.bind(inner);
    inner.secureInbound = (connection, options) => secureInbound(corkedPerTick(connection), options);
    inner.secureOutbound = (connection, options) => secureOutbound(corkedPerTick(connection), options);
    return inner;
  };
}

/** A connection over a socket of its own (the TCP transport's) gathers its writes; any other is left as is. */
function corkedPerTick(connection: MessageStream): MessageStream {
  const socket: unknown = (connection as { socket?: unknown }).socket;
  if (!(socket instanceof Socket)) return connection;
  const send = connection.send.bind(connection);
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  connection.send = (data) => {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return send(data);
  };
  return connection;
}
