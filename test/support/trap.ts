// A listener that proves nothing was sent to an address: it records every TCP connection and
// every byte it receives, and answers nothing (it closes each connection shortly after it opens,
// so a caller that did connect fails fast instead of waiting for a timeout). With { hold: true } it
// keeps each connection open until close(): a peer that accepts and never answers.
import net from 'node:net';

/** A running trap. */
export interface Trap {
  /** `host:port`: a gRPC server address to name. */
  readonly address: string;
  /** An HTTP URL on it, shaped like a DTM server URL (`http://host:port/api/dtmsvr`). */
  readonly url: string;
  /** How many connections were opened to it. */
  readonly connections: number;
  /** Everything received, as text. */
  readonly received: string;
  close(): Promise<void>;
}

/** Starts a trap on 127.0.0.1 (a free port); `hold`: never close a connection (the caller's timeout must end it). */
export async function startTrap(options: { hold?: boolean } = {}): Promise<Trap> {
  let connections = 0;
  let received = '';
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('data', (chunk) => (received += chunk.toString('utf8')));
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    if (!options.hold) setTimeout(() => socket.destroy(), 100).unref();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/api/dtmsvr`,
    get connections() {
      return connections;
    },
    get received() {
      return received;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
