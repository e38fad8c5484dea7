// DtmClient sagas against the real DTM server; branches are the recorder app.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import type { DtmClient, Saga } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { queryTrans, triggerCron } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';

let app: DtmTestApp;
let client: DtmClient;
let recorder: Recorder;

beforeAll(async () => {
  recorder = await startRecorder();
  app = await startDtmApp();
  client = app.client;
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
});
beforeEach(() => recorder.reset());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** transfer saga: TransOut then TransIn, with their compensations */
function transfer(saga: Saga, amount = 30): Saga {
  return saga
    .add(recorder.urlFor('/TransOut'), recorder.urlFor('/TransOutRevert'), { amount })
    .add(recorder.urlFor('/TransIn'), recorder.urlFor('/TransInRevert'), { amount });
}

describe('DtmClient sagas', () => {
  it('succeeds: DTM records both steps done and the branches got the JSON payloads', async () => {
    const gid = await client.generateGid();
    const final = await transfer(client.newSaga(gid)).submitAndWait();

    expect(final.status).toBe('succeed');
    expect(final.branches.map((b) => `${b.branchId} ${b.op} ${b.status}`)).toEqual([
      '01 compensate prepared',
      '01 action succeed',
      '02 compensate prepared',
      '02 action succeed',
    ]);
    expect(recorder.callsFor(gid).map((c) => [c.path, c.body])).toEqual([
      ['/TransOut', '{"amount":30}'],
      ['/TransIn', '{"amount":30}'],
    ]);
  });

  it('rolls back as a result, not an exception: compensations in reverse order including the failed step', async () => {
    const gid = await client.generateGid();
    recorder.answer('/TransIn', { status: 409, body: { message: 'account frozen' } });
    const final = await transfer(client.newSaga(gid)).submitAndWait();

    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('account frozen');
    expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'succeed', 'succeed', 'failed']);
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.query.op}`)).toEqual([
      '/TransOut action',
      '/TransIn action',
      '/TransInRevert compensate',
      '/TransOutRevert compensate',
    ]);
  });

  it('runs concurrent steps in parallel and starts an ordered step only after its predecessors', async () => {
    const gid = await client.generateGid();
    const slow = async () => {
      await sleep(400);
      return 200;
    };
    recorder.handle('/A', slow);
    recorder.handle('/B', slow);
    const final = await client
      .newSaga(gid)
      .add(recorder.urlFor('/A'), recorder.urlFor('/Ac'), { step: 'A' })
      .add(recorder.urlFor('/B'), recorder.urlFor('/Bc'), { step: 'B' })
      .add(recorder.urlFor('/C'), recorder.urlFor('/Cc'), { step: 'C' })
      .enableConcurrent()
      .addBranchOrder(2, [0, 1])
      .submitAndWait();

    expect(final.status).toBe('succeed');
    const [a] = recorder.callsTo('/A', gid);
    const [b] = recorder.callsTo('/B', gid);
    const [c] = recorder.callsTo('/C', gid);
    expect(b.at).toBeLessThan(a.answeredAt); // A and B overlapped
    expect(a.at).toBeLessThan(b.answeredAt);
    expect(c.at).toBeGreaterThanOrEqual(Math.max(a.answeredAt, b.answeredAt)); // C waited for both
    expect(final.transaction.customData).toEqual({ concurrent: true, orders: { '2': [0, 1] } });
  });

  it('retryLimit: DTM re-runs a failing action that many times, then rolls back with its reason', async () => {
    const enough = await client.generateGid();
    recorder.answer('/TransIn', 500, 500, 500, 200);
    const ok = await transfer(client.newSaga(enough)).setRetryLimit(3).submitAndWait();
    expect(ok.status).toBe('succeed');
    expect(recorder.callsTo('/TransIn', enough).map((c) => c.status)).toEqual([500, 500, 500, 200]);

    recorder.reset();
    const tooFew = await client.generateGid();
    recorder.answer('/TransIn', 500, 500, 500, 200);
    const failed = await transfer(client.newSaga(tooFew)).setRetryLimit(1).submitAndWait();
    expect(failed.status).toBe('failed');
    expect(failed.rollbackReason).toBe('RetryCount is greater than RetryLimit, RetryLimit: 1');
    expect(failed.branches.map((b) => b.status)).toEqual(['succeed', 'succeed', 'succeed', 'prepared']);
  });

  it('timeoutToFail: a saga still unfinished after it fails with "Timeout after" and is compensated', async () => {
    const gid = await client.generateGid();
    recorder.answer('/TransOut', 425); // ONGOING forever
    const final = await transfer(client.newSaga(gid, { timeoutToFail: 1, retryInterval: 1 })).submitAndWait({ timeoutMs: 20_000 });

    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toBe('Timeout after 1 seconds');
    expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'prepared', 'prepared', 'prepared']);
    expect(recorder.callsTo('/TransOutRevert', gid)).toHaveLength(1);
    expect(recorder.callsTo('/TransIn', gid)).toHaveLength(0);
  });

  it('ONGOING then success: DTM polls the step again at the retry interval', async () => {
    const gid = await client.generateGid();
    recorder.answer('/TransOut', 425, 200);
    const final = await transfer(client.newSaga(gid, { retryInterval: 1 })).submitAndWait({ timeoutMs: 20_000 });

    expect(final.status).toBe('succeed');
    expect(recorder.callsTo('/TransOut', gid).map((c) => c.status)).toEqual([425, 200]);
  });

  it('a 500 then success: DTM retries the step (here taken by the cron at once)', async () => {
    const gid = await client.generateGid();
    recorder.answer('/TransIn', 500, 200);
    await transfer(client.newSaga(gid)).submit();
    await recorder.waitForCalls('/TransIn', 1, { gid });
    await triggerCron();
    const final = await client.waitForFinal(gid, { timeoutMs: 20_000 });

    expect(final.status).toBe('succeed');
    expect(recorder.callsTo('/TransIn', gid).map((c) => c.status)).toEqual([500, 200]);
    // the retry came from DTM's cron, after the first answer
    const [first, second] = recorder.callsTo('/TransIn', gid);
    expect(second.at).toBeGreaterThan(first.answeredAt);
  });

  it('branchHeaders reach every branch call, the cron retry included', async () => {
    const gid = await client.generateGid();
    recorder.answer('/TransIn', 500, 200);
    await transfer(client.newSaga(gid, { branchHeaders: { 'x-tenant': 'acme', 'x-request-id': 'r-42' } })).submit();
    await recorder.waitForCalls('/TransIn', 1, { gid });
    await triggerCron();
    const final = await client.waitForFinal(gid, { timeoutMs: 20_000 });

    expect(final.status).toBe('succeed');
    const calls = recorder.callsFor(gid);
    expect(calls.map((c) => c.path)).toEqual(['/TransOut', '/TransIn', '/TransIn']);
    for (const call of calls) expect(call.headers).toMatchObject({ 'x-tenant': 'acme', 'x-request-id': 'r-42' });
    expect(final.transaction.options.branchHeaders).toEqual({ 'x-tenant': 'acme', 'x-request-id': 'r-42' });
  });

  it('waitResult: submit resolves after the first round, and fails (409) when that round did not succeed', async () => {
    const ok = await client.generateGid();
    await transfer(client.newSaga(ok, { waitResult: true })).submit();
    expect((await queryTrans(ok)).transaction?.status).toBe('succeed');

    const ongoing = await client.generateGid();
    recorder.answer('/TransOut', 425, 200);
    await expect(transfer(client.newSaga(ongoing, { waitResult: true, retryInterval: 1 })).submit()).rejects.toThrow(
      /did not succeed in DTM's first round .* use submitAndWait\(\)/,
    );
    // ...and submitAndWait() with waitResult reads the 409 as "not final yet"
    expect((await client.waitForFinal(ongoing, { timeoutMs: 20_000 })).status).toBe('succeed');
  });
});
