// DTM's MySQL store compares gids without case (docs/barrier.md): a saga or message under 'Order-7'
// submitted after one under 'order-7' is that earlier transaction there. submitAndWait() checks
// that DTM's record is of the gid asked for (its check before the submit, and the final record).
import { expect, it } from '@jest/globals';
import { DtmGidInUseError } from 'nestjs-dtm';
import { waitForTransaction } from 'nestjs-dtm/testing';
import { queryTrans } from '../support/harness.js';
import { useSqlStoreDtmApp } from '../support/sql-store-dtm.js';

const fx = useSqlStoreDtmApp('dtm-gid-case');

/** Two gids that differ only in case, new ones. */
function gids(): [string, string] {
  const lower = `order-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  return [lower, lower.replace('order', 'Order')];
}

it('a saga under Order-N while DTM holds order-N unfinished with the same steps: DtmGidInUseError naming the gid DTM answered, nothing sent (before: it resolved with order-N\'s outcome, DTM running its steps as order-N)', async () => {
  const [lower, upper] = gids();
  fx.recorder.answer('/Slow', { status: 425, body: { dtm_result: 'ONGOING' } }, { status: 425, body: { dtm_result: 'ONGOING' } }, 200);
  await fx.app.client.newSaga(lower, { retryInterval: 1 }).add(fx.recorder.urlFor('/Slow'), fx.recorder.urlFor('/SlowRevert'), { amount: 1 }).submit();
  const error = await fx.app.client.newSaga(upper).add(fx.recorder.urlFor('/Slow'), fx.recorder.urlFor('/SlowRevert'), { amount: 1 }).submitAndWait({ timeout: 15 }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DtmGidInUseError);
  expect((error as Error).message).toContain(`DTM answers it as "${lower}", a saga of another gid that differs only in case: DTM's MySQL store compares gids without case`);
  expect(fx.recorder.calls.filter((c) => c.query.gid === upper)).toEqual([]);
  // order-N goes on on its own, and succeeds
  expect((await waitForTransaction(fx.dtm.serverUrl, lower, { timeout: 15 })).status).toBe('succeed');
});

it('a saga or a message under Order-N after order-N finished: DtmGidInUseError naming the gid DTM holds, nothing sent', async () => {
  const [lower, upper] = gids();
  expect((await fx.app.client.newSaga(lower).add(fx.recorder.urlFor('/TransOut'), fx.recorder.urlFor('/TransOutRevert'), { amount: 1 }).submitAndWait({ timeout: 10 })).status).toBe('succeed');
  const saga = await fx.app.client.newSaga(upper).add(fx.recorder.urlFor('/TransOut'), fx.recorder.urlFor('/TransOutRevert'), { amount: 1 }).submitAndWait({ timeout: 10 }).catch((e: unknown) => e);
  expect(saga).toBeInstanceOf(DtmGidInUseError);
  expect((saga as Error).message).toContain(`DTM answers it as "${lower}", a saga of another gid that differs only in case`);
  const [msgLower, msgUpper] = gids();
  expect((await fx.app.client.newMsg(msgLower).add(fx.recorder.urlFor('/Notify'), { amount: 1 }).submitAndWait({ timeout: 10 })).status).toBe('succeed');
  const msg = await fx.app.client.newMsg(msgUpper).add(fx.recorder.urlFor('/Notify'), { amount: 1 }).submitAndWait({ timeout: 10 }).catch((e: unknown) => e);
  expect(msg).toBeInstanceOf(DtmGidInUseError);
  expect((msg as Error).message).toContain(`DTM answers it as "${msgLower}", a msg of another gid that differs only in case`);
  expect(fx.recorder.calls.filter((c) => c.query.gid === upper || c.query.gid === msgUpper)).toEqual([]);
  expect((await queryTrans(lower, fx.dtm.serverUrl)).transaction?.status).toBe('succeed');
});

it('a message prepared under Order-N while DTM holds order-N prepared with the same branches: DtmGidInUseError naming the gid DTM answered (before: taken as its own, delivered under both gids), order-N delivered once', async () => {
  const [lower, upper] = gids();
  const first = fx.app.client.newMsg(lower).add(fx.recorder.urlFor('/Notify'), { amount: 1 });
  await first.prepare(fx.recorder.urlFor('/QueryPrepared'));
  const second = fx.app.client.newMsg(upper).add(fx.recorder.urlFor('/Notify'), { amount: 1 });
  const error = await second.prepare(fx.recorder.urlFor('/QueryPrepared')).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DtmGidInUseError);
  expect((error as Error).message).toContain(`DTM answers it as "${lower}", a msg of another gid that differs only in case`);
  await first.submit();
  expect((await waitForTransaction(fx.dtm.serverUrl, lower, { timeout: 10 })).status).toBe('succeed');
  expect(fx.recorder.calls.map((c) => `${c.query.gid} ${c.path}`)).toEqual([`${lower} /Notify`]);
});

it('a TCC under Order-N, order-N held prepared by another TCC, then finished: DtmGidInUseError naming the gid DTM answered and the case rule, the body never run, order-N untouched', async () => {
  const [lower, upper] = gids();
  const ran: string[] = [];
  const second = () =>
    fx.app.client
      .tccGlobalTransaction(upper, async (tcc) => {
        ran.push(upper);
        await tcc.callBranch({ amount: 1 }, fx.recorder.urlFor('/Try'), fx.recorder.urlFor('/Confirm'), fx.recorder.urlFor('/Cancel'));
      })
      .catch((e: unknown) => e);
  let whilePrepared: unknown;
  await fx.app.client.tccGlobalTransaction(lower, async (tcc) => {
    await tcc.callBranch({ amount: 1 }, fx.recorder.urlFor('/Try'), fx.recorder.urlFor('/Confirm'), fx.recorder.urlFor('/Cancel'));
    whilePrepared = await second();
  });
  expect((await waitForTransaction(fx.dtm.serverUrl, lower, { timeout: 10 })).status).toBe('succeed');
  const afterFinished = await second();
  for (const error of [whilePrepared, afterFinished]) {
    expect(error).toBeInstanceOf(DtmGidInUseError);
    expect((error as Error).message).toContain(`DTM answers it as "${lower}", a tcc of another gid that differs only in case`);
  }
  expect([ran, fx.recorder.calls.map((c) => `${c.query.gid} ${c.path}`)]).toEqual([[], [`${lower} /Try`, `${lower} /Confirm`]]);
});
