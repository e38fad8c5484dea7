// What the module does when its app closes with work under way, against the real DTM server: Nest
// runs onModuleDestroy before it stops its HTTP server, so a request being served (or drained by
// Node's server.close()) may still be running a transaction with the app's DtmClient meanwhile.
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { startDtmApp } from '../support/dtm-app.js';
import { DtmOutcomeUnknownError, type FinalResult } from 'nestjs-dtm';
import { connectionsListTo, connectionsTo, latch, PROTOCOLS, settledWithin, sleep } from '../support/fixtures.js';
import { dtmPost, harness, newGid, waitForTransStatus } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';

/**
 * Polls `closed` (connections counted from /proc) for up to 5 s: a loaded CI machine closes a closed app's sockets and gRPC
 * sessions late. Not an assertion: the test's own follows, and a connection left open still fails it.
 */
async function untilClosed(closed: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 5000; !closed() && Date.now() < deadline; ) await sleep(50);
}

let recorder: Recorder;
beforeAll(async () => {
  recorder = await startRecorder();
});
afterAll(() => recorder?.close());

describe('app.close() while a transaction is under way', () => {
  it.each(PROTOCOLS)('over %s: a TCC whose Try (a branch the module calls) is in flight when the app closes goes on: the call is not cut, DTM confirms, and no connection is left open after it', async (protocol) => {
    const app = await startDtmApp({ config: { protocol } });
    const grpc = protocol === 'grpc';
    const target = (path: string) => (grpc ? recorder.grpcTargetFor(path) : recorder.urlFor(path));
    const held = latch();
    recorder.handle('/CloseTry', async () => {
      await held.wait();
      return 200;
    });
    const gid = await newGid();
    const run = app.client.tccGlobalTransaction(gid, async (tcc) => {
      await tcc.callBranch(grpc ? Buffer.from('{"n":1}') : { n: 1 }, target('/CloseTry'), target('/CloseConfirm'), target('/CloseCancel'));
      return 'tried';
    }, { protocol });
    await held.reached;
    await app.close();
    held.open();
    await expect(run).resolves.toBe('tried');
    expect((await waitForTransStatus(gid, ['succeed', 'failed'], 15_000)).transaction?.status).toBe('succeed');
    expect(recorder.callsTo('/CloseTry', gid)).toHaveLength(1);
    // DTM confirms at least once: another test file's /resetCronTime on the shared DTM can have its cron confirm again meanwhile
    expect(recorder.callsTo('/CloseConfirm', gid).length).toBeGreaterThanOrEqual(1);
    expect(recorder.callsTo('/CloseCancel', gid)).toHaveLength(0);
    // what the closed app connected to is not kept open: the branch's server, and DTM's gRPC server (only the module's clients connect there)
    const ports = grpc ? [Number(recorder.grpcAddress.split(':')[1]), Number(harness().dtm.grpcAddress.split(':')[1])] : [Number(new URL(recorder.url).port)];
    await untilClosed(() => ports.every((port) => connectionsTo(port) === 0));
    expect(ports.map(connectionsTo)).toEqual(ports.map(() => 0));
  });

  it("over grpc: a TCC whose first call to DTM is still waiting for its connection (a fresh channel) when the app closes goes on: grpc-js does not cancel it, DTM confirms, and no connection is left open after it", async () => {
    const app = await startDtmApp({ config: { protocol: 'grpc' } });
    recorder.handle('/FirstTry', () => 200);
    const gid = await newGid();
    // the app's first gRPC call: its channel to DTM is made now and is still connecting when close() runs
    const run = app.client.tccGlobalTransaction(gid, async (tcc) => {
      await tcc.callBranch(Buffer.from('{"n":1}'), recorder.grpcTargetFor('/FirstTry'), recorder.grpcTargetFor('/FirstConfirm'), recorder.grpcTargetFor('/FirstCancel'));
      return 'tried';
    }, { protocol: 'grpc' });
    await app.close();
    await expect(run).resolves.toBe('tried');
    expect((await waitForTransStatus(gid, ['succeed', 'failed'], 15_000)).transaction?.status).toBe('succeed');
    expect(recorder.callsTo('/FirstTry', gid)).toHaveLength(1);
    expect(recorder.callsTo('/FirstConfirm', gid).length).toBeGreaterThanOrEqual(1); // at least once, as above
    expect(recorder.callsTo('/FirstCancel', gid)).toHaveLength(0);
    const ports = [Number(recorder.grpcAddress.split(':')[1]), Number(harness().dtm.grpcAddress.split(':')[1])];
    await untilClosed(() => ports.every((port) => connectionsTo(port) === 0));
    expect(ports.map(connectionsTo)).toEqual([0, 0]);
  });
});

describe('app.close() with many transactions under way', () => {
  it.each(PROTOCOLS)('over %s: 50 TCCs whose Tries are in flight when the app closes all go on: each is confirmed, and no connection to the branch server or DTM is left open after them', async (protocol) => {
    const gids: string[] = [];
    for (let i = 0; i < 50; i++) gids.push(await newGid());
    const dtmPort = protocol === 'grpc' ? Number(harness().dtm.grpcAddress.split(':')[1]) : Number(new URL(harness().dtm.serverUrl).port);
    // the harness's own connection to DTM's HTTP port (its queries), not the app's
    const harnessOwn = connectionsTo(dtmPort);
    const app = await startDtmApp({ config: { protocol } });
    const grpc = protocol === 'grpc';
    const target = (path: string) => (grpc ? recorder.grpcTargetFor(path) : recorder.urlFor(path));
    const held = latch();
    let entered = 0;
    recorder.handle('/ManyTry', async () => {
      entered++;
      await held.wait();
      return 200;
    });
    const runs = gids.map((gid) =>
      app.client.tccGlobalTransaction(gid, async (tcc) => {
        await tcc.callBranch(grpc ? Buffer.from('{"n":1}') : { n: 1 }, target('/ManyTry'), target('/ManyConfirm'), target('/ManyCancel'));
        return 'tried';
      }, { protocol }),
    );
    for (const deadline = Date.now() + 20_000; entered < 50 && Date.now() < deadline; ) await sleep(50);
    expect(entered).toBe(50);
    await app.close();
    held.open();
    expect(await Promise.all(runs)).toEqual(gids.map(() => 'tried'));
    for (const gid of gids) expect((await waitForTransStatus(gid, ['succeed', 'failed'], 15_000)).transaction?.status).toBe('succeed');
    // each confirmed (at least once: another test file's /resetCronTime can have DTM's cron confirm one again meanwhile), none cancelled
    expect(gids.filter((gid) => recorder.callsTo('/ManyConfirm', gid).length === 0)).toEqual([]);
    expect(gids.flatMap((gid) => recorder.callsTo('/ManyCancel', gid))).toEqual([]);
    const branchPort = grpc ? Number(recorder.grpcAddress.split(':')[1]) : Number(new URL(recorder.url).port);
    await untilClosed(() => connectionsTo(branchPort) === 0 && connectionsTo(dtmPort) <= harnessOwn + (grpc ? 0 : 1));
    expect(connectionsTo(branchPort)).toBe(0);
    expect(connectionsTo(dtmPort)).toBeLessThanOrEqual(harnessOwn + (grpc ? 0 : 1));
  }, 60_000);
});

describe('app.close() while a wait for an outcome is under way', () => {
  it.each(PROTOCOLS)("over %s: a submitAndWait() whose saga DTM cannot finish yet ends as soon as the app closes, with DtmOutcomeUnknownError saying so (not after its timeout, polling DTM meanwhile); a wait started after close looks once", async (protocol) => {
    const app = await startDtmApp({ config: { protocol } });
    const grpc = protocol === 'grpc';
    const target = (path: string) => (grpc ? recorder.grpcTargetFor(path) : recorder.urlFor(path));
    recorder.answer('/StuckStep', 425); // ONGOING: DTM retries it at its retry interval (60 s), the saga stays submitted
    const gid = await newGid();
    const run = app.client.newSaga(gid, { retryInterval: 60 }).add(target('/StuckStep'), target('/StuckBack'), grpc ? Buffer.from('{"n":1}') : { n: 1 }).submitAndWait({ timeout: 60 });
    await recorder.waitForCalls('/StuckStep', 1, { gid });
    const closedAt = Date.now();
    await app.close();
    const outcome = await settledWithin(run, 10_000);
    expect(outcome).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(outcome).toMatchObject({ gid, lastStatus: 'submitted' });
    expect((outcome as Error).message).toContain('the app closed while waiting');
    expect(Date.now() - closedAt).toBeLessThan(10_000);
    // after close: one look at DTM's record, no polling
    const later = await settledWithin(app.client.waitForFinal(gid, { timeout: 60 }), 10_000);
    expect(later).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(later).toMatchObject({ gid, lastStatus: 'submitted' });
    await dtmPost('/forceStop', { gid });
    expect((await settledWithin(app.client.waitForFinal(gid, { timeout: 60 }), 10_000)) as FinalResult).toMatchObject({ gid, status: 'failed' });
  });
});

describe('a long-lived app over grpc', () => {
  it("closes its channel to a branch server idle for 10 minutes (a target of another service's deploy, gone since), never one with a call under way", async () => {
    // only setInterval is faked: the module's sweep of idle channels; grpc-js and the harness keep real time
    jest.useFakeTimers({ doNotFake: ['Date', 'hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setTimeout', 'clearTimeout'] });
    const app = await startDtmApp({ config: { protocol: 'grpc' } });
    try {
      const branchPort = Number(recorder.grpcAddress.split(':')[1]);
      const held = latch();
      recorder.handle('/IdleTry', async () => {
        await held.wait();
        return 200;
      });
      const gid = await newGid();
      const run = app.client.tccGlobalTransaction(gid, async (tcc) => {
        await tcc.callBranch(Buffer.from('{"n":1}'), recorder.grpcTargetFor('/IdleTry'), recorder.grpcTargetFor('/IdleConfirm'), recorder.grpcTargetFor('/IdleCancel'));
        return 'tried';
      }, { protocol: 'grpc' });
      await held.reached;
      // 20 minutes with the Try under way: its channel stays, and the call is answered
      jest.advanceTimersByTime(20 * 60_000);
      held.open();
      await expect(run).resolves.toBe('tried');
      expect((await waitForTransStatus(gid, ['succeed', 'failed'], 15_000)).transaction?.status).toBe('succeed');
      expect(recorder.callsTo('/IdleTry', gid)).toHaveLength(1);
      // listed, so that a failure shows the sockets (one CI run on 2026-12-07 saw 2 here, cause not found)
      expect(connectionsListTo(branchPort)).toHaveLength(1);
      // then 10 minutes with no call to that server: the channel is closed
      jest.advanceTimersByTime(10 * 60_000);
      await untilClosed(() => connectionsTo(branchPort) === 0);
      expect(connectionsTo(branchPort)).toBe(0);
    } finally {
      jest.useRealTimers();
      await app.close();
    }
  });
});
