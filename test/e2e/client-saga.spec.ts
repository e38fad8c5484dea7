// DtmClient sagas against the real DTM server; branches are the recorder app.
import { describe, expect, it } from '@jest/globals';
import type { Saga } from 'nestjs-dtm';
import { branchLines, sleep, useDtmAppWithRecorder } from '../support/fixtures.js';
import { queryTrans, triggerCron } from '../support/harness.js';

const fx = useDtmAppWithRecorder();

/** transfer saga: TransOut then TransIn, with their compensations */
function transfer(saga: Saga, amount = 30): Saga {
  return saga
    .add(fx.recorder.urlFor('/TransOut'), fx.recorder.urlFor('/TransOutRevert'), { amount })
    .add(fx.recorder.urlFor('/TransIn'), fx.recorder.urlFor('/TransInRevert'), { amount });
}

describe('DtmClient sagas', () => {
  it('succeeds: DTM records both steps done and the branches got the JSON payloads', async () => {
    const gid = await fx.client.generateGid();
    const final = await transfer(fx.client.newSaga(gid)).submitAndWait();

    expect(final.status).toBe('succeed');
    expect(branchLines(final)).toEqual([
      '01 compensate prepared',
      '01 action succeed',
      '02 compensate prepared',
      '02 action succeed',
    ]);
    expect(fx.recorder.callsFor(gid).map((c) => [c.path, c.body])).toEqual([
      ['/TransOut', '{"amount":30}'],
      ['/TransIn', '{"amount":30}'],
    ]);
  });

  it('rolls back as a result, not an exception: compensations in reverse order including the failed step', async () => {
    const gid = await fx.client.generateGid();
    fx.recorder.answer('/TransIn', { status: 409, body: { message: 'account frozen' } });
    const final = await transfer(fx.client.newSaga(gid)).submitAndWait();

    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('account frozen');
    expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'succeed', 'succeed', 'failed']);
    expect(fx.recorder.callsFor(gid).map((c) => `${c.path} ${c.query.op}`)).toEqual([
      '/TransOut action',
      '/TransIn action',
      '/TransInRevert compensate',
      '/TransOutRevert compensate',
    ]);
  });

  it('runs concurrent steps in parallel and starts an ordered step only after its predecessors', async () => {
    const gid = await fx.client.generateGid();
    const slow = async () => {
      await sleep(400);
      return 200;
    };
    fx.recorder.handle('/A', slow);
    fx.recorder.handle('/B', slow);
    const final = await fx.client
      .newSaga(gid)
      .add(fx.recorder.urlFor('/A'), fx.recorder.urlFor('/Ac'), { step: 'A' })
      .add(fx.recorder.urlFor('/B'), fx.recorder.urlFor('/Bc'), { step: 'B' })
      .add(fx.recorder.urlFor('/C'), fx.recorder.urlFor('/Cc'), { step: 'C' })
      .enableConcurrent()
      .addBranchOrder(2, [0, 1])
      .submitAndWait();

    expect(final.status).toBe('succeed');
    const [a] = fx.recorder.callsTo('/A', gid);
    const [b] = fx.recorder.callsTo('/B', gid);
    const [c] = fx.recorder.callsTo('/C', gid);
    expect(b.at).toBeLessThan(a.answeredAt); // A and B overlapped
    expect(a.at).toBeLessThan(b.answeredAt);
    expect(c.at).toBeGreaterThanOrEqual(Math.max(a.answeredAt, b.answeredAt)); // C waited for both
    expect(final.transaction.customData).toEqual({ concurrent: true, orders: { '2': [0, 1] } });
  });

  it('retryLimit: DTM re-runs a failing action that many times, then rolls back with its reason', async () => {
    const enough = await fx.client.generateGid();
    fx.recorder.answer('/TransIn', 500, 500, 500, 200);
    const ok = await transfer(fx.client.newSaga(enough)).setRetryLimit(3).submitAndWait();
    expect(ok.status).toBe('succeed');
    expect(fx.recorder.callsTo('/TransIn', enough).map((c) => c.status)).toEqual([500, 500, 500, 200]);

    fx.recorder.reset();
    const tooFew = await fx.client.generateGid();
    fx.recorder.answer('/TransIn', 500, 500, 500, 200);
    const failed = await transfer(fx.client.newSaga(tooFew)).setRetryLimit(1).submitAndWait();
    expect(failed.status).toBe('failed');
    expect(failed.rollbackReason).toBe('RetryCount is greater than RetryLimit, RetryLimit: 1');
    expect(failed.branches.map((b) => b.status)).toEqual(['succeed', 'succeed', 'succeed', 'prepared']);
  });

  it('timeoutToFail: a saga still unfinished after it fails with "Timeout after" and is compensated', async () => {
    const gid = await fx.client.generateGid();
    fx.recorder.answer('/TransOut', 425); // ONGOING forever
    const final = await transfer(fx.client.newSaga(gid, { timeoutToFail: 1, retryInterval: 1 })).submitAndWait({ timeoutMs: 20_000 });

    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toBe('Timeout after 1 seconds');
    expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'prepared', 'prepared', 'prepared']);
    expect(fx.recorder.callsTo('/TransOutRevert', gid)).toHaveLength(1);
    expect(fx.recorder.callsTo('/TransIn', gid)).toHaveLength(0);
  });

  it('ONGOING then success: DTM polls the step again at the retry interval', async () => {
    const gid = await fx.client.generateGid();
    fx.recorder.answer('/TransOut', 425, 200);
    const final = await transfer(fx.client.newSaga(gid, { retryInterval: 1 })).submitAndWait({ timeoutMs: 20_000 });

    expect(final.status).toBe('succeed');
    expect(fx.recorder.callsTo('/TransOut', gid).map((c) => c.status)).toEqual([425, 200]);
  });

  it('a 500 then success: DTM retries the step (here taken by the cron at once)', async () => {
    const gid = await fx.client.generateGid();
    fx.recorder.answer('/TransIn', 500, 200);
    await transfer(fx.client.newSaga(gid)).submit();
    await fx.recorder.waitForCalls('/TransIn', 1, { gid });
    await triggerCron();
    const final = await fx.client.waitForFinal(gid, { timeoutMs: 20_000 });

    expect(final.status).toBe('succeed');
    expect(fx.recorder.callsTo('/TransIn', gid).map((c) => c.status)).toEqual([500, 200]);
    // the retry came from DTM's cron, after the first answer
    const [first, second] = fx.recorder.callsTo('/TransIn', gid);
    expect(second.at).toBeGreaterThan(first.answeredAt);
  });

  it('branchHeaders reach every branch call, the cron retry included', async () => {
    const gid = await fx.client.generateGid();
    fx.recorder.answer('/TransIn', 500, 200);
    await transfer(fx.client.newSaga(gid, { branchHeaders: { 'x-tenant': 'acme', 'x-request-id': 'r-42' } })).submit();
    await fx.recorder.waitForCalls('/TransIn', 1, { gid });
    await triggerCron();
    const final = await fx.client.waitForFinal(gid, { timeoutMs: 20_000 });

    expect(final.status).toBe('succeed');
    const calls = fx.recorder.callsFor(gid);
    expect(calls.map((c) => c.path)).toEqual(['/TransOut', '/TransIn', '/TransIn']);
    for (const call of calls) expect(call.headers).toMatchObject({ 'x-tenant': 'acme', 'x-request-id': 'r-42' });
    expect(final.transaction.options.branchHeaders).toEqual({ 'x-tenant': 'acme', 'x-request-id': 'r-42' });
  });

  it('waitResult: submit resolves after the first round, and fails (409) when that round did not succeed', async () => {
    const ok = await fx.client.generateGid();
    await transfer(fx.client.newSaga(ok, { waitResult: true })).submit();
    expect((await queryTrans(ok)).transaction?.status).toBe('succeed');

    const ongoing = await fx.client.generateGid();
    fx.recorder.answer('/TransOut', 425, 200);
    await expect(transfer(fx.client.newSaga(ongoing, { waitResult: true, retryInterval: 1 })).submit()).rejects.toThrow(
      /did not succeed in DTM's first round .* use submitAndWait\(\)/,
    );
    // ...and submitAndWait() with waitResult reads the 409 as "not final yet"
    expect((await fx.client.waitForFinal(ongoing, { timeoutMs: 20_000 })).status).toBe('succeed');
  });
});
