// The deadlines of test/support (deadline.ts, waitUntil): a peer that accepts a connection and
// never answers fails the wait at its deadline, with an error naming what was awaited, instead of
// holding the test (and, past jest's timeouts, the file) with no word about where it stood.
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { freeLocalPort } from 'nestjs-dtm/testing';
import { closeEach, DeadlineError, postJsonWithin, within } from '../support/deadline.js';
import { waitUntil } from '../support/services/process.js';

let server: Server;
let url: string;
const sockets = new Set<Socket>();

beforeAll(async () => {
  // accepts, reads, never answers: a stuck peer
  server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', () => undefined);
  });
  const port = await freeLocalPort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
});

/** How long `run` took to settle (on the monotonic clock timers run on: the wall clock may be slewed), and what it settled to (its error's message). */
async function timed(run: Promise<unknown>): Promise<{ ms: number; outcome: string }> {
  const started = performance.now();
  const outcome = await run.then(
    () => 'resolved',
    (e: unknown) => (e as Error).message,
  );
  return { ms: performance.now() - started, outcome };
}

describe('deadlines of the test support', () => {
  it('a POST to a peer that never answers fails at its deadline, naming the method, the URL and the gid', async () => {
    const { ms, outcome } = await timed(postJsonWithin(`${url}/ap/saga`, { gid: 'g-stuck-1', branches: [] }, 600));
    expect(outcome).toBe(`POST ${url}/ap/saga (gid g-stuck-1): no answer within 600 ms`);
    expect(ms).toBeGreaterThanOrEqual(550); // libuv times from the loop's cached clock, which may be ms behind: a CI run measured 589.5
    expect(ms).toBeLessThan(5_000);
  }, 10_000);

  it("waitUntil whose probe never settles (a fetch to that peer) fails at the wait's deadline, naming what it waited for", async () => {
    const { ms, outcome } = await timed(waitUntil('go peer', async (signal) => (await fetch(`${url}/`, { signal })).status === 404, { timeoutMs: 800 }));
    expect(outcome).toMatch(/^go peer: not ready after 800 ms \(last error: the probe: no answer within \d+ ms\)$/);
    expect(ms).toBeLessThan(5_000);
  }, 10_000);

  it("waitUntil whose last probe is cut by the deadline names an earlier probe's error, which says more than that cut", async () => {
    let probes = 0;
    const hangsAfterAnError = async (signal: AbortSignal) => {
      probes += 1;
      if (probes === 1) throw new Error('connect ECONNREFUSED 127.0.0.1:1');
      return (await fetch(`${url}/`, { signal })).status === 404;
    };
    const { outcome } = await timed(waitUntil('dtm', hangsAfterAnError, { timeoutMs: 600, intervalMs: 10 }));
    expect([outcome, probes]).toEqual(['dtm: not ready after 600 ms (last error: connect ECONNREFUSED 127.0.0.1:1)', 2]);
  }, 10_000);

  it('within: a latch never opened fails with a DeadlineError naming it; an error of its own passes through', async () => {
    const never = new Promise<void>(() => undefined);
    const error = await within('the Go workflow g-1 reaching our step', 300, () => never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeadlineError);
    expect((error as Error).message).toBe('the Go workflow g-1 reaching our step: no answer within 300 ms');
    await expect(within('x', 1_000, () => Promise.reject(new Error('fetch failed')))).rejects.toThrow(/^fetch failed$/);
    expect(await within('y', 1_000, async () => 7)).toBe(7);
  });

  it('closeEach runs every close, a stuck one and a failing one included, and names both', async () => {
    const ran: string[] = [];
    const error = await closeEach(
      [
        ['afterAll: app.close()', () => new Promise(() => ran.push('app'))],
        ['afterAll: pool end()', () => Promise.reject(new Error('pool end(): already ended'))],
        ['afterAll: redis', () => void ran.push('redis')],
      ],
      300,
    ).catch((e: unknown) => e);
    expect(ran).toEqual(['app', 'redis']);
    expect((error as Error).message).toBe('afterAll: app.close(): no answer within 300 ms\npool end(): already ended');
  });
});
