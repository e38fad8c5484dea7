// branch_auth_check_actions against DTM on a MySQL-compatible store (MariaDB). There DTM writes a
// sequential saga's branch statuses in batches every 200 ms (dtmsvr/trans_status.go,
// changeBranchStatus: synchronously only on Redis / boltdb, for concurrent sagas or sagas with a
// timeout), so when DTM calls step 2 its record may still say step 1 is prepared. The check must
// not refuse DTM's own call then (it would wait a retry interval per step).
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { queryTrans, rawQueryTrans } from '../support/harness.js';
import type { DtmInfo } from '../support/services/dtm.js';
import { sqlStoreDtm } from '../support/sql-store-dtm.js';
import { waitUntil } from '../support/services/process.js';
import { startBranchApp, type BranchApp } from './branch-app.js';

let sqlStore: Awaited<ReturnType<typeof sqlStoreDtm>> | undefined;
let dtm: DtmInfo;
let app: BranchApp;

beforeAll(async () => {
  sqlStore = await sqlStoreDtm('dtm-sql-store');
  dtm = sqlStore.info;
  app = await startBranchApp('express', { serverUrl: dtm.serverUrl, branchAuthKeys: [randomBytes(33).toString('base64')], branchAuthCheckActions: true, retryInterval: 30 });
});
afterAll(async () => {
  await app?.close();
  await sqlStore?.stop();
});

it('DTM on MariaDB: every step of a sequential saga DTM calls runs at its first call, although DTM writes the statuses of the steps before it later', async () => {
  const gid = await app.client.generateGid();
  const saga = app.client.newSaga(gid).add('transOut', { amount: 10 }).add('transIn', { amount: 5 }).add('transIn', { amount: 5 });
  const done = await saga.submitAndWait({ timeout: 20 });
  expect(done.status).toBe('succeed');
  expect(app.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.branchId}`)).toEqual(['transOut 01', 'transIn 02', 'transIn 03']);
  // the statuses DTM writes in batches (the last one may still read prepared once the saga succeeded)
  const branches = async () => (await queryTrans(gid, dtm.serverUrl)).branches.map((b) => `${b.branch_id}/${b.op}=${b.status}`);
  await waitUntil('DTM writing the branch statuses', async () => (await branches()).filter((b) => b.endsWith('action=succeed')).length === 3, { timeoutMs: 5000, intervalMs: 50 });
  expect(await branches()).toEqual([
    '01/compensate=prepared',
    '01/action=succeed',
    '02/compensate=prepared',
    '02/action=succeed',
    '03/compensate=prepared',
    '03/action=succeed',
  ]);
  // DTM called each step once: no refusal it would have retried
  const refused = readFileSync(dtm.logFile, 'utf8').split('\n').filter((line) => line.includes(gid) && line.includes('branch call refused'));
  expect(refused).toEqual([]);
});

it('DTM on MariaDB: query() and list() show the options the saga was submitted with (DTM answers them only in its `options` text there)', async () => {
  const gid = await app.client.generateGid();
  const options = { timeoutToFail: 300, retryInterval: 7, branchTimeout: 5, retryLimit: 4, branchHeaders: { 'x-tenant': 't1' } };
  const done = await app.client.newSaga(gid, options).add('transOut', { amount: 1 }).add('transIn', { amount: 1 }).submitAndWait({ timeout: 20 });
  expect(done.status).toBe('succeed');
  // DTM's answer: no top-level option fields, the options as JSON text
  const raw = (await rawQueryTrans(gid, dtm.serverUrl)).transaction as unknown as Record<string, unknown>;
  expect([raw.timeout_to_fail, raw.retry_interval, raw.branch_headers]).toEqual([undefined, undefined, undefined]);
  expect(JSON.parse(raw.options as string)).toMatchObject({ timeout_to_fail: 300, retry_interval: 7, request_timeout: 5, retry_limit: 4 });
  const expected = { timeoutToFail: 300, retryInterval: 7, branchTimeout: 5, retryLimit: 4, branchHeaders: { 'x-tenant': 't1' } };
  const record = await app.client.query(gid);
  expect(record?.options).toMatchObject(expected);
  // the steps are not answered on SQL stores (documented): the branches are
  expect([record?.steps, record?.branches.length]).toEqual([[], 4]);
  const page = await app.client.list({ gid });
  expect(page.transactions.find((t) => t.gid === gid)?.options).toMatchObject(expected);
});
