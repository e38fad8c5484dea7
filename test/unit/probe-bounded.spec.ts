// The diagnosis probe of one of this app's routes is bounded by its timeout as a whole (the DNS
// lookup, the connection and the request together), against a slow resolver: the name's lookup is
// made to take most of the timeout, and the route's server accepts and never answers.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';

/** How long the (mocked) resolver takes to answer a lookup, in ms. */
const RESOLVER_MS = 700;
const lookups: string[] = [];
const dns = await import('node:dns/promises');
jest.unstable_mockModule('node:dns/promises', () => ({
  ...dns,
  lookup: async (host: string) => {
    lookups.push(host);
    await new Promise((resolve) => setTimeout(resolve, RESOLVER_MS));
    return { address: '127.0.0.1', family: 4 };
  },
}));
const { probeConnect, probeOwnRoute } = await import('../../lib/diagnostics/probe.js');

let server: http.Server;
let port: number;
const sockets = new Set<Socket>();
/** Requests the silent server received (the probe's request did reach it). */
const received: string[] = [];
beforeAll(async () => {
  // accepts every connection and request, never answers
  server = http.createServer((req) => void received.push(`${req.method} ${req.url}`));
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => server.close(resolve));
});

describe('probes with a slow resolver', () => {
  it('an own route that never answers: "timeout" within the probe\'s timeout in all, DNS lookup and connection included, and the name looked up once', async () => {
    lookups.length = 0;
    received.length = 0;
    const started = Date.now();
    // 2000 ms: after the 700 ms lookup, room for the connection and the request on a loaded machine
    const result = await probeOwnRoute(`http://localhost:${port}/diag/debit?gid=x`, 'POST', 2000);
    const elapsed = Date.now() - started;
    expect(result).toEqual({ kind: 'timeout', address: `localhost:${port}`, ms: 2000 });
    // the request was sent (to the address the lookup gave) and not answered
    expect(received).toEqual(['POST /diag/debit']);
    expect(lookups).toEqual(['localhost']);
    // each with the whole timeout (the code before c5e039b) it took the lookup's 700 ms more at least
    expect(elapsed).toBeGreaterThanOrEqual(1950);
    expect(elapsed).toBeLessThan(2600);
  });

  it('a lookup that takes longer than the timeout: "timeout" at the timeout, nothing connected', async () => {
    received.length = 0;
    const started = Date.now();
    expect(await probeOwnRoute(`http://localhost:${port}/diag/debit`, 'POST', 400)).toEqual({ kind: 'timeout', address: `localhost:${port}`, ms: 400 });
    expect(await probeConnect('localhost', port, 400)).toEqual({ kind: 'timeout', address: `localhost:${port}`, ms: 400 });
    // each ended at its 400 ms, not after the lookup's 700: waiting for the lookups would take 1400 ms at least. The
    // bound is that, not 1100 ms (300 ms for two timers' lateness, which a loaded machine can exceed)
    expect(Date.now() - started).toBeLessThan(2 * RESOLVER_MS);
    expect(received).toEqual([]);
  });
});
