import * as net from 'node:net';

/** A TCP proxy from {@link answerSwallowingProxy}. */
export interface AnswerSwallowingProxy {
  /** The upstream URL with the proxy's host and port (its path kept). */
  url: string;
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 in front of `upstream` (a URL, e.g. DTM's server URL) that passes every
 * request on, and never the answer on a connection whose request begins with text `swallows` picks
 * (e.g. `POST /api/dtmsvr/prepare`): the upstream acts on the request, its caller never hears.
 */
export async function answerSwallowingProxy(upstream: string, swallows: (request: string) => boolean): Promise<AnswerSwallowingProxy> {
  const target = new URL(upstream);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const up = net.connect(Number(target.port), target.hostname);
    for (const socket of [client, up]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    }
    let swallow = false;
    client.on('data', (chunk: Buffer) => {
      if (swallows(chunk.toString('latin1'))) swallow = true;
      up.write(chunk);
    });
    up.on('data', (chunk: Buffer) => void (swallow || client.write(chunk)));
    client.on('error', () => undefined);
    up.on('error', () => undefined);
    client.on('close', () => up.destroy());
    up.on('close', () => void (swallow || client.destroy()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}${target.pathname}`,
    // a swallowed answer's connections too: closing never waits for them
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
