// DTM's MySQL store compares gids without case (docs/barrier.md): a saga or message under 'Order-7'
// submitted after one under 'order-7' is that earlier transaction there. submitAndWait() checks
// that DTM's record is of the gid asked for (its check before the submit, and the final record).
import { afterAll, beforeAll, beforeEach, expect, it } from '@jest/globals';
import { DtmGidInUseError } from 'nestjs-dtm';
import { waitForTransaction } from 'nestjs-dtm/testing';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { queryTrans } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import type { DtmInfo } from '../support/services/dtm.js';
import { sqlStoreDtm } from '../support/sql-store-dtm.js';

let sqlStore: Awaited<ReturnType<typeof sqlStoreDtm>> | undefined;
let dtm: DtmInfo;
let app: DtmTestApp;
let recorder: Recorder;

beforeAll(async () => {
  sqlStore = await sqlStoreDtm('dtm-gid-case');
  dtm = sqlStore.info;
  recorder = await startRecorder();
  app = await startDtmApp({ config: { serverUrl: dtm.serverUrl, protocol: 'http' } });
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
  await sqlStore?.stop();
});
beforeEach(() => recorder.reset());

/** Two gids that differ only in case, new ones. */
function gids(): [string, string] {
  const lower = `order-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  return [lower, lower.replace('order', 'Order')];
}

it('a saga under Order-N while DTM holds order-N unfinished with the same steps: DtmGidInUseError naming the gid DTM answered, nothing sent (before: it resolved with order-N\'s outcome, DTM running its steps as order-N)', async () => {
  const [lower, upper] = gids();
  recorder.answer('/Slow', { status: 425, body: { dtm_result: 'ONGOING' } }, { status: 425, body: { dtm_result: 'ONGOING' } }, 200);
  await app.client.newSaga(lower, { retryInterval: 1 }).add(recorder.urlFor('/Slow'), recorder.urlFor('/SlowRevert'), { amount: 1 }).submit();
  const error = await app.client.newSaga(upper).add(recorder.urlFor('/Slow'), recorder.urlFor('/SlowRevert'), { amount: 1 }).submitAndWait({ timeout: 15 }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DtmGidInUseError);
  expect((error as Error).message).toContain(`DTM answers it as "${lower}", a saga of another gid that differs only in case: DTM's MySQL store compares gids without case`);
  expect(recorder.calls.filter((c) => c.query.gid === upper)).toEqual([]);
  // order-N goes on on its own, and succeeds
  expect((await waitForTransaction(dtm.serverUrl, lower, { timeout: 15 })).status).toBe('succeed');
});

it('a saga or a message under Order-N after order-N finished: DtmGidInUseError naming the gid DTM holds, nothing sent', async () => {
  const [lower, upper] = gids();
  expect((await app.client.newSaga(lower).add(recorder.urlFor('/TransOut'), recorder.urlFor('/TransOutRevert'), { amount: 1 }).submitAndWait({ timeout: 10 })).status).toBe('succeed');
  const saga = await app.client.newSaga(upper).add(recorder.urlFor('/TransOut'), recorder.urlFor('/TransOutRevert'), { amount: 1 }).submitAndWait({ timeout: 10 }).catch((e: unknown) => e);
  expect(saga).toBeInstanceOf(DtmGidInUseError);
  expect((saga as Error).message).toContain(`DTM answers it as "${lower}", a saga of another gid that differs only in case`);
  const [msgLower, msgUpper] = gids();
  expect((await app.client.newMsg(msgLower).add(recorder.urlFor('/Notify'), { amount: 1 }).submitAndWait({ timeout: 10 })).status).toBe('succeed');
  const msg = await app.client.newMsg(msgUpper).add(recorder.urlFor('/Notify'), { amount: 1 }).submitAndWait({ timeout: 10 }).catch((e: unknown) => e);
  expect(msg).toBeInstanceOf(DtmGidInUseError);
  expect((msg as Error).message).toContain(`DTM answers it as "${msgLower}", a msg of another gid that differs only in case`);
  expect(recorder.calls.filter((c) => c.query.gid === upper || c.query.gid === msgUpper)).toEqual([]);
  expect((await queryTrans(lower, dtm.serverUrl)).transaction?.status).toBe('succeed');
});

it('a message prepared under Order-N while DTM holds order-N prepared with the same branches: DtmGidInUseError naming the gid DTM answered (before: taken as its own, delivered under both gids), order-N delivered once', async () => {
  const [lower, upper] = gids();
  const first = app.client.newMsg(lower).add(recorder.urlFor('/Notify'), { amount: 1 });
  await first.prepare(recorder.urlFor('/QueryPrepared'));
  const second = app.client.newMsg(upper).add(recorder.urlFor('/Notify'), { amount: 1 });
  const error = await second.prepare(recorder.urlFor('/QueryPrepared')).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DtmGidInUseError);
  expect((error as Error).message).toContain(`DTM answers it as "${lower}", a msg of another gid that differs only in case`);
  await first.submit();
  expect((await waitForTransaction(dtm.serverUrl, lower, { timeout: 10 })).status).toBe('succeed');
  expect(recorder.calls.map((c) => `${c.query.gid} ${c.path}`)).toEqual([`${lower} /Notify`]);
});
