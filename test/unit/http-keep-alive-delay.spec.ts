// The HTTP transport's pooled connections keep one TCP keep-alive delay: axios sets 60 s on the
// connection of every request, Node's agent sets its keepAliveMsecs back when the answer frees it.
// Two different figures made every request change it twice (eight setsockopt system calls, on
// every call to DTM and every branch call the module makes itself).
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { resolveDtmConfig } from 'nestjs-dtm';
import { HttpTransport } from '../../lib/transport/http/http.transport.js';

describe('the HTTP transport on a pooled connection', () => {
  let server: http.Server;
  let url: string;
  const connections = new Set<net.Socket>();

  beforeAll(async () => {
    let n = 0;
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end(JSON.stringify({ gid: `KeepAliveGid${++n}` })));
    });
    server.on('connection', (socket) => connections.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/api/dtmsvr`;
  });

  afterAll(async () => {
    for (const socket of connections) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('keeps one TCP keep-alive delay from call to call (none changed per request), on one connection', async () => {
    const transport = new HttpTransport(resolveDtmConfig({ config: { serverUrl: url } }, {}));
    const delays: number[] = [];
    const sockets = new Set<net.Socket>();
    const setKeepAlive = net.Socket.prototype.setKeepAlive;
    net.Socket.prototype.setKeepAlive = function (this: net.Socket, enable?: boolean, initialDelay?: number) {
      sockets.add(this);
      delays.push(enable ? (initialDelay ?? 0) : -1);
      return setKeepAlive.call(this, enable, initialDelay);
    };
    try {
      const gids: string[] = [];
      for (let i = 0; i < 4; i++) gids.push(await transport.newGid());
      expect(gids).toEqual(['KeepAliveGid1', 'KeepAliveGid2', 'KeepAliveGid3', 'KeepAliveGid4']);
    } finally {
      net.Socket.prototype.setKeepAlive = setKeepAlive;
      transport.close();
    }
    expect(connections.size).toBe(1); // the four calls went on one pooled connection
    expect(sockets.size).toBe(1);
    // each request set the delay (axios on sending, the agent on freeing it), always the same one
    expect(delays.length).toBeGreaterThanOrEqual(8);
    expect(new Set(delays)).toEqual(new Set([60_000]));
  });
});
