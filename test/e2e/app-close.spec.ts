// Why a test app's close once took over a minute (barrier.spec.ts's afterAll, on a loaded machine):
// Node's server.close() closes the keep-alive connections that are idle at that moment, but one
// with a request in flight stays open after its answer, and a client that keeps calling on it (DTM's
// cron retrying branches over its pooled keep-alive connections) keeps it open for good: close()
// never resolves. The harness's apps are created with forceCloseConnections, so Nest destroys the
// open connections on close. This pins both: plain Node keeps serving, the recorder app closes.
import http from 'node:http';
import { expect, it } from '@jest/globals';
import { startRecorder } from '../support/recorder.js';

/** Calls `port` on one keep-alive connection every `everyMs`, the next call sent as soon as the previous answer came. */
function keepCalling(port: number, everyMs: number): { answered: () => number; stop(): void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let answered = 0;
  let stopped = false;
  const call = () => {
    if (stopped) return;
    const req = http.request({ port, host: '127.0.0.1', path: '/Slow', method: 'POST', agent }, (res) => {
      res.resume();
      res.on('end', () => {
        answered++;
        setTimeout(call, everyMs);
      });
    });
    req.on('error', () => undefined);
    req.end('{}');
  };
  call();
  return { answered: () => answered, stop: () => ((stopped = true), agent.destroy()) };
}

it('plain Node: close() with a keep-alive request in flight never ends while the client keeps calling', async () => {
  let received!: () => void;
  const inFlight = new Promise<void>((resolve) => (received = resolve));
  const server = http.createServer((_req, res) => {
    received();
    setTimeout(() => res.end('ok'), 150);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const caller = keepCalling((server.address() as { port: number }).port, 300);
  await inFlight; // a request in flight (not a fixed wait: a worker stalled past it would close a connection not yet accepted)
  let closed = false;
  server.close(() => (closed = true));
  const before = caller.answered();
  await new Promise((resolve) => setTimeout(resolve, 3000));
  expect(closed).toBe(false);
  expect(caller.answered() - before).toBeGreaterThanOrEqual(3); // still served after close()
  caller.stop();
  server.closeAllConnections();
});

it('the harness\'s apps (forceCloseConnections): close() ends at once although the client keeps calling', async () => {
  const recorder = await startRecorder();
  let received!: () => void;
  const inFlight = new Promise<void>((resolve) => (received = resolve));
  recorder.handle('/Slow', async () => {
    received();
    await new Promise((resolve) => setTimeout(resolve, 150));
    return 200;
  });
  const caller = keepCalling(Number(new URL(recorder.url).port), 300);
  await inFlight; // a request in flight
  const started = Date.now();
  await recorder.close();
  caller.stop();
  expect(Date.now() - started).toBeLessThan(5000); // without forceCloseConnections it never ends (the first test)
});
