// DtmClient sagas against the real DTM server: the scenarios of client-saga.cases.ts with DtmClient
// talking HTTP to DTM (client-saga-grpc.spec.ts: gRPC), then those on branch headers at the HTTP
// limit and a step slower than DTM's round; branches are the recorder app.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { DtmUsageError } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { firstCalls, sleep, useDtmAppWithRecorder } from '../support/fixtures.js';
import { queryTrans, triggerCron } from '../support/harness.js';
import { waitUntil } from '../support/services/process.js';
import { describeClientSagas } from './client-saga.cases.js';

describeClientSagas('http');

describe("branch headers at the HTTP limit (12 KiB, each 'name: value' and a line end: a Node.js branch refuses a call whose headers pass 16 KiB, 431, which DTM retries for ever)", () => {
  const http = useDtmAppWithRecorder('http');
  const grpc = useDtmAppWithRecorder('grpc');
  let signing: DtmTestApp | undefined;
  beforeAll(async () => {
    signing = await startDtmApp({ config: { branchAuthKeys: [randomBytes(33).toString('base64')] } });
  });
  afterAll(async () => signing?.close());
  const LIMIT = 12 * 1024;
  /** One header `x-big` taking `bytes` as sent ('x-big: ' and CRLF are 9 bytes). */
  const big = (bytes: number) => ({ 'x-big': 'a'.repeat(bytes - 9) });
  // a branch URL as long as DTM's SQL stores keep one (1024 characters): what DTM sends of its own still fits
  const longPath = (fx: { target(path: string): string }) => `/Big${'x'.repeat(1024 - fx.target('/Big').length)}`;

  it.each([LIMIT - 1, LIMIT])('%i bytes: taken, the saga succeeds and its branch, at a URL of 1024 characters, gets the header whole', async (bytes) => {
    const gid = await http.client.generateGid();
    const path = longPath(http);
    expect(http.target(path)).toHaveLength(1024);
    const final = await http.client.newSaga(gid, { branchHeaders: big(bytes) }).add(http.target(path), http.target('/BigRevert'), { n: 1 }).submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(firstCalls(http.recorder.callsFor(gid).map((c) => [c.path, c.headers['x-big']?.length]))).toEqual([[path, bytes - 9]]);
  }, 60_000);

  it.each([LIMIT + 1, 17_000])("%i bytes: refused where the saga is made (DtmUsageError saying so and what to do), nothing sent (before: 17000 bytes were taken, DTM's every call of the step answered 431 unseen, the saga 'submitted' for ever, submitAndWait DtmOutcomeUnknownError)", async (bytes) => {
    const gid = await http.client.generateGid();
    let error: unknown;
    try {
      await http.client.newSaga(gid, { branchHeaders: big(bytes) }).add(http.target('/Big'), http.target('/BigRevert'), { n: 1 }).submitAndWait({ timeout: 8 });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toBe(`the branch headers take ${bytes} bytes as DTM sends them to an HTTP branch (each "name: value" and a line end), over the 12288 the module allows: a Node.js branch refuses a call whose headers pass 16 KiB (431, before any handler runs, http.maxHeaderSize), and DTM would retry every call for ever, the transaction never ending. Forward less (an id to look up, not the data; fewer pass_through_headers)`);
    // setOptions() over it is refused too, the saga keeping its headers
    const saga = http.client.newSaga(gid, { branchHeaders: big(100) });
    expect(() => saga.setOptions({ branchHeaders: { 'x-more': 'b'.repeat(LIMIT) } })).toThrow(DtmUsageError);
    expect((await queryTrans(gid)).transaction).toBeNull();
    expect(http.recorder.callsFor(gid)).toEqual([]);
  }, 60_000);

  it('over gRPC (metadata, which neither DTM nor grpc-js bounds there) the same 17000 bytes are taken and reach the branch', async () => {
    const gid = await grpc.client.generateGid();
    const final = await grpc.client.newSaga(gid, { branchHeaders: big(17_000) }).add(grpc.target('/Big'), grpc.target('/BigRevert'), grpc.payload({ n: 1 })).submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(firstCalls(grpc.recorder.callsFor(gid).map((c) => c.headers['x-big']?.length))).toEqual([17_000 - 9]);
  }, 60_000);

  it("a gRPC saga with an HTTP step (DTM calls it over HTTP, with the branch headers): 17000 bytes are refused where the step is added, DtmUsageError, nothing sent; headers grown past the limit by setOptions() after it are refused too (before: taken, DTM's every call of the step answered 431 unseen, submitAndWait DtmOutcomeUnknownError 'still submitted' naming no cause)", async () => {
    const gid = await grpc.client.generateGid();
    let error: unknown;
    try {
      await grpc.client.newSaga(gid, { branchHeaders: big(17_000) }).add(grpc.recorder.urlFor('/Big'), grpc.recorder.urlFor('/BigRevert'), { n: 1 }).submitAndWait({ timeout: 8 });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toMatch(/^the branch headers take 17000 bytes as DTM sends them to an HTTP branch .* over the 12288 the module allows/);
    const saga = grpc.client.newSaga(gid, { branchHeaders: big(100) }).add(grpc.recorder.urlFor('/Big'), grpc.recorder.urlFor('/BigRevert'), { n: 1 });
    expect(() => saga.setOptions({ branchHeaders: { 'x-more': 'b'.repeat(LIMIT) } })).toThrow(DtmUsageError);
    expect((await queryTrans(gid)).transaction).toBeNull();
    expect(grpc.recorder.callsFor(gid)).toEqual([]);
    // within the limit the same saga runs, its HTTP step getting the header whole
    const final = await saga.submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(firstCalls(grpc.recorder.callsFor(gid).map((c) => [c.path, c.headers['x-big']?.length]))).toEqual([['/Big', 100 - 9]]);
  }, 60_000);

  it("with branch_auth_keys, the tokens of DTM's calls count (one per step and op): 150 steps succeed; 260 are refused at the submit, nothing sent (before: DTM held the saga 'submitted' for ever, every call answered 431 unseen)", async () => {
    const app = signing!;
    const many = async (count: number) => {
      const gid = await app.client.generateGid();
      const saga = app.client.newSaga(gid);
      for (let i = 1; i <= count; i += 1) saga.add(http.target('/Step'), http.target('/StepRevert'), { i });
      return { gid, outcome: await saga.submitAndWait({ timeout: 30 }).catch((e: unknown) => e) };
    };
    const fits = await many(150);
    expect(fits.outcome).toMatchObject({ status: 'succeed' });
    // every step called and answered 200 (none 431), none compensated; DTM may call a step again (a round cut short
    // under load, another file's cron nudge on the shared DTM): at least once each
    const calls = http.recorder.callsFor(fits.gid);
    expect(new Set(calls.map((c) => c.body))).toEqual(new Set(Array.from({ length: 150 }, (_, k) => JSON.stringify({ i: k + 1 }))));
    expect(calls.filter((c) => c.path !== '/Step' || c.status !== 200)).toEqual([]);

    const over = await many(260);
    expect(over.outcome).toBeInstanceOf(DtmUsageError);
    expect((over.outcome as Error).message).toMatch(/^the branch headers take \d+ bytes as DTM sends them to an HTTP branch \(each "name: value" and a line end; the tokens of DTM's calls, lynx\.dtm\.branch_auth_keys, take \d+ of them, one per step and op\), over the 12288 the module allows: .* Split the work into transactions of fewer steps, or forward less$/);
    expect((await queryTrans(over.gid)).transaction).toBeNull();
    expect(http.recorder.callsFor(over.gid)).toEqual([]);
  }, 120_000);
});

describe("a saga step slower than DTM's round (its server's RequestTimeout + 2 s: 5 s with DTM's default), within branch_timeout", () => {
  const fx = useDtmAppWithRecorder('http');

  it('ends the round unfinished; the next round calls the step again while its first call still runs (docs/saga.md)', async () => {
    const gid = await fx.client.generateGid();
    // every call of the step runs until the test, past DTM's round, has seen a second one arrive (12 s at
    // most, as the 12 s step this test had); the recorder records a call once answered
    let arrived = 0;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    fx.recorder.handle('/Slow', async () => {
      arrived += 1;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([released, new Promise((resolve) => (timer = setTimeout(resolve, 12_000)))]);
      clearTimeout(timer);
      return 200;
    });
    const submitted = Date.now();
    await fx.client.newSaga(gid, { retryInterval: 1 }).add(fx.target('/Slow'), fx.target('/SlowRevert'), fx.payload({ amount: 1 })).submit();
    await sleep(6_000 - (Date.now() - submitted)); // past DTM's round: the first call still runs
    expect((await queryTrans(gid)).transaction?.status).toBe('submitted');
    await triggerCron();
    await waitUntil('a second call of /Slow', async () => arrived >= 2, { timeoutMs: 20_000, intervalMs: 50 });
    release();
    const calls = await fx.recorder.waitForCalls('/Slow', 2, { gid, timeoutMs: 20_000 });
    expect(calls[1].at).toBeLessThan(calls[0].answeredAt); // the second call arrived before the first was answered
    expect((await fx.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
  }, 40_000);
});
