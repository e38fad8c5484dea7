// A transaction DTM forgot (its Redis store deletes a finished one after FinishedDataExpire, 1 day by
// default; 4 s here), re-created under its gid through DTM's API with what DTM's /query showed of it
// while it was held (branch headers with the dtm-auth tokens, targets, payloads): DTM then makes
// calls whose tokens verify and whose phase DTM's new record confirms. Every token signs when it was
// issued (the dtm-auth-issued branch header), and a check that reads DTM's record refuses a record
// created farther from it than branch_auth_issue_window (5 s here): each attack below is performed
// against a DTM server of this file's own on a Redis store, with the barrier bank on PostgreSQL and
// branch_auth_keys, and refused.
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Injectable } from '@nestjs/common';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { harness, type DtmQueryAnswer } from '../support/harness.js';
import { startDtm, type DtmInfo } from '../support/services/dtm.js';
import { runDirFrom, waitUntil, type ManagedProcess } from '../support/services/process.js';
import { startRedis } from '../support/services/redis.js';
import { DtmWorkflow } from 'nestjs-dtm';
import { RecordingLogger } from '../support/recording-logger.js';
import { bankHelpers, startBarrierApp, type BarrierApp } from './barrier-app.js';

const KEY = randomBytes(33).toString('base64');
/** The app's branch_auth_issue_window, seconds. */
const WINDOW = 5;
/**
 * Seconds DTM keeps a finished transaction here (its FinishedDataExpire): each test reads DTM's record of one it just
 * finished, which a loaded machine did more than 1 s after (the record gone: null). Below WINDOW: {@link forgotten}
 * waits past the window anyway, so the tests take no longer.
 */
const FINISHED_EXPIRE = 4;
const logger = new RecordingLogger();

/** A workflow that counts its executions, and waits for `release` before it ends (so DTM's record of it can be read while it runs). */
@Injectable()
class CountedWorkflows {
  static runs = 0;
  static release: Promise<void> = Promise.resolve();
  @DtmWorkflow('recreated.v1')
  async run(): Promise<string> {
    CountedWorkflows.runs++;
    await CountedWorkflows.release;
    return 'ran';
  }
}

let t: BarrierApp;
let dbs: FileDatabases;
let redis: ManagedProcess | undefined;
let dtm: { info: DtmInfo; process: ManagedProcess } | undefined;
/** A step target of the attacker's: answers every call FAILURE, so DTM rolls the re-created saga back. */
let refuser: Server;
let refuserUrl: string;

beforeAll(async () => {
  const runDir = runDirFrom(harness().runDir);
  const started = await startRedis(runDir, { name: 'redis-recreated' });
  redis = started.process;
  const store = { Driver: 'redis', Host: started.info.host, Port: started.info.port, User: '', Password: '', RedisPrefix: '{dtm}', FinishedDataExpire: FINISHED_EXPIRE };
  dtm = await startDtm(runDir, { name: 'dtm-recreated', store: 'redis', redis: started.info, extraConfig: { Store: store } });
  dbs = await fileDatabases();
  t = await startBarrierApp(dbs, { dtm: { serverUrl: dtm.info.serverUrl, grpcAddress: dtm.info.grpcAddress }, config: { branchAuthKeys: [KEY], branchAuthCheckActions: true, branchAuthIssueWindow: WINDOW }, providers: [CountedWorkflows] });
  t.app.useLogger(logger);
  refuser = createServer((_req, res) => res.writeHead(409, { 'content-type': 'application/json' }).end('{"dtm_result":"FAILURE"}'));
  await new Promise<void>((resolve) => refuser.listen(0, '127.0.0.1', resolve));
  refuserUrl = `http://127.0.0.1:${(refuser.address() as AddressInfo).port}/fail`;
});
afterAll(async () => {
  await t?.close();
  refuser?.closeAllConnections(); // DTM's keep-alive connection, one with a call in flight included: close() alone waits for it (app-close.spec)
  await new Promise((resolve) => refuser?.close(resolve));
  await dtm?.process.stop();
  await redis?.stop();
});

const { seed, balances } = bankHelpers(() => t);

/** The saga or message DTM showed (`seen`) submitted again under its gid, as it was: its steps' targets and payloads, its branch headers. */
async function resubmit(seen: DtmQueryAnswer): Promise<void> {
  const ids = [...new Set(seen.branches.map((b) => b.branch_id))];
  const branch = (id: string, op: string) => seen.branches.find((b) => b.branch_id === id && b.op === op);
  const steps = ids.map((id) => ({ action: branch(id, 'action')!.url, ...(branch(id, 'compensate') ? { compensate: branch(id, 'compensate')!.url } : {}) }));
  const payloads = ids.map((id) => Buffer.from(branch(id, 'action')!.bin_data ?? '', 'base64').toString('utf8'));
  const { gid, trans_type, branch_headers } = seen.transaction!;
  expect((await dtmApi('/submit', { gid, trans_type, steps, payloads, branch_headers })).status).toBe(200);
}

/** DTM's HTTP API, as the attacker reaches it. */
async function dtmApi(path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${dtm!.info.serverUrl}${path}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as unknown) : undefined };
}
const query = async (gid: string) => (await dtmApi(`/query?gid=${encodeURIComponent(gid)}`)).json as DtmQueryAnswer;
/** Waits until DTM forgot `seen` and its tokens' issue time is more than the window behind. */
async function forgotten(seen: DtmQueryAnswer): Promise<void> {
  const gid = seen.transaction!.gid;
  await waitUntil(`DTM forgetting ${gid}`, async () => !(await query(gid)).transaction, { timeoutMs: 30_000 });
  const issued = Number(seen.transaction!.branch_headers!['dtm-auth-issued']);
  expect(Math.abs(issued - Date.parse(seen.transaction!.create_time) / 1000)).toBeLessThanOrEqual(WINDOW);
  const late = (issued + WINDOW + 1.5) * 1000 - Date.now();
  if (late > 0) await new Promise((resolve) => setTimeout(resolve, late));
}
/** DTM's status of `gid` once the app refused a call of it as one of a re-created transaction (the refusal logged). */
async function refusedAsRecreated(gid: string): Promise<string | undefined> {
  await waitUntil(`a call of ${gid} refused`, async () => logger.lines.some((l) => l.includes(`gid "${gid}"`) && l.includes('branch_auth_issue_window')), { timeoutMs: 30_000 });
  return (await query(gid)).transaction?.status;
}
const finalStatus = async (gid: string) => {
  let status: string | undefined;
  await waitUntil(`${gid} final`, async () => ['succeed', 'failed'].includes((status = (await query(gid)).transaction?.status) ?? ''), { timeoutMs: 30_000 });
  return status;
};

describe('branch_auth_keys, a transaction DTM forgot and someone re-created with its tokens', () => {
  it("a saga that succeeded: re-created with a first step of the attacker's that fails, DTM calls the real step's compensation with its stored token, and the app refuses it: the withdrawal is not given back", async () => {
    await seed('pg', { 1: 100, 2: 0 });
    const gid = await t.client.generateGid();
    const ok = await t.client.newSaga(gid).add('pg.transOut', { account: 1, amount: 30 }).add('pg.transIn', { account: 2, amount: 30 }).submitAndWait();
    expect(ok.status).toBe('succeed');
    expect(await balances('pg', [1, 2])).toEqual({ 1: 70, 2: 30 });
    // what anyone reading DTM's API saw while DTM held it
    const seen = await query(gid);
    const compensate = seen.branches.find((b) => b.branch_id === '01' && b.op === 'compensate')!;
    const headers = seen.transaction!.branch_headers!;
    expect(headers['dtm-auth']).toContain('compensate.01=');

    await forgotten(seen);
    // re-created: step 01's action is the attacker's (FAILURE), its compensation the bank's, with the payload and tokens DTM showed
    const submit = await dtmApi('/submit', { gid, trans_type: 'saga', steps: [{ action: refuserUrl, compensate: compensate.url }], payloads: [Buffer.from(compensate.bin_data ?? '', 'base64').toString('utf8')], branch_headers: headers });
    expect(submit.status).toBe(200);
    // the compensation refused (DTM retries it, the saga stays aborting): account 1 keeps its withdrawal
    expect(await refusedAsRecreated(gid)).toBe('aborting');
    expect(t.runs.of('pg.transOutCompensate')).toBe(0);
    expect(await balances('pg', [1, 2])).toEqual({ 1: 70, 2: 30 });
  });

  it('the same with the issue time in the branch headers set to the re-creation\'s: the tokens signed the old one, so none verifies', async () => {
    await seed('pg', { 1: 100, 2: 0 });
    const gid = await t.client.generateGid();
    expect((await t.client.newSaga(gid).add('pg.transOut', { account: 1, amount: 30 }).add('pg.transIn', { account: 2, amount: 30 }).submitAndWait()).status).toBe('succeed');
    const seen = await query(gid);
    const compensate = seen.branches.find((b) => b.branch_id === '01' && b.op === 'compensate')!;
    await forgotten(seen);
    const headers = { ...seen.transaction!.branch_headers!, 'dtm-auth-issued': String(Math.floor(Date.now() / 1000)) };
    expect((await dtmApi('/submit', { gid, trans_type: 'saga', steps: [{ action: refuserUrl, compensate: compensate.url }], payloads: [Buffer.from(compensate.bin_data ?? '', 'base64').toString('utf8')], branch_headers: headers })).status).toBe(200);
    await waitUntil(`the compensation of ${gid} refused`, async () => logger.lines.some((l) => l.includes(`gid "${gid}"`) && l.includes('is not this call')), { timeoutMs: 30_000 });
    expect((await query(gid)).transaction?.status).toBe('aborting');
    expect(t.runs.of('pg.transOutCompensate')).toBe(0);
    expect(await balances('pg', [1, 2])).toEqual({ 1: 70, 2: 30 });
  });

  it('a TCC that was confirmed: re-created (prepare, its branch registered with the id and targets DTM showed, abort), DTM sends the cancel with the token in the branch id, and the app refuses it: the hold is not given back after the confirm', async () => {
    await seed('pg', { 1: 100 });
    const gid = await t.client.generateGid();
    await t.client.tccGlobalTransaction(gid, async (tcc) => tcc.callBranch({ account: 1, amount: 40 }, 'pg.tccOut'));
    expect(await finalStatus(gid)).toBe('succeed');
    expect(await balances('pg', [1])).toEqual({ 1: 60 });
    const seen = await query(gid);
    const cancel = seen.branches.find((b) => b.op === 'cancel')!;
    const confirm = seen.branches.find((b) => b.op === 'confirm')!;
    expect(cancel.branch_id).toMatch(/^01-/);

    await forgotten(seen);
    expect((await dtmApi('/prepare', { gid, trans_type: 'tcc', branch_headers: seen.transaction!.branch_headers ?? {} })).status).toBe(200);
    const data = Buffer.from(cancel.bin_data ?? '', 'base64').toString('utf8');
    expect((await dtmApi('/registerBranch', { gid, trans_type: 'tcc', branch_id: cancel.branch_id, data, confirm: confirm.url, cancel: cancel.url })).status).toBe(200);
    expect((await dtmApi('/abort', { gid, trans_type: 'tcc' })).status).toBe(200);
    expect(await refusedAsRecreated(gid)).toBe('aborting');
    expect(t.runs.of('pg.tccOutCancel')).toBe(0);
    expect(await balances('pg', [1])).toEqual({ 1: 60 });
  });

  it('a workflow that succeeded: prepared again as DTM showed it (its input, resume target and tokens), DTM resumes it with the stored token, and the app refuses the resume: the workflow does not run again', async () => {
    const gid = await t.client.generateGid();
    let release!: () => void;
    CountedWorkflows.release = new Promise((resolve) => (release = resolve));
    const execution = t.client.executeWorkflow('recreated.v1', gid, { n: 1 });
    await waitUntil('the workflow running', async () => CountedWorkflows.runs === 1, { timeoutMs: 10_000 });
    // what anyone reading DTM's API saw while it ran (a finished workflow's record no longer shows its input)
    const seen = await query(gid);
    expect(seen.transaction!.custom_data).toContain('recreated.v1');
    release();
    expect(await execution).toMatchObject({ status: 'succeed' });

    await forgotten(seen);
    const { trans_type, custom_data, query_prepared, branch_headers } = seen.transaction!;
    expect((await dtmApi('/prepareWorkflow', { gid, trans_type, custom_data, query_prepared, branch_headers })).status).toBe(200);
    // DTM resumes a prepared workflow that is due
    await waitUntil(`the resume of ${gid} refused`, async () => {
      await dtmApi('/resetCronTime?timeout=0&limit=100');
      return logger.lines.some((l) => l.includes(`gid "${gid}"`) && l.includes('branch_auth_issue_window'));
    }, { timeoutMs: 30_000, intervalMs: 1000 });
    expect((await query(gid)).transaction?.status).toBe('prepared');
    expect(CountedWorkflows.runs).toBe(1);
  });

  it.each(['pg', 'mysql', 'redis'] as const)("a saga and a message (barrier on %s) submitted again as DTM showed them: DTM calls the steps with their tokens, and branch_auth_check_actions refuses them: nothing moves again", async (store) => {
    await seed(store, { 1: 100, 2: 0 });
    const saga = await t.client.generateGid();
    expect((await t.client.newSaga(saga).add(`${store}.transOut`, { account: 1, amount: 30 }).add(`${store}.transIn`, { account: 2, amount: 30 }).submitAndWait()).status).toBe('succeed');
    const seenSaga = await query(saga);
    const msg = await t.client.generateGid();
    await t.client.newMsg(msg).add(`${store}.deliver`, { account: 2, amount: 5 }).submit();
    expect(await finalStatus(msg)).toBe('succeed');
    const seen = [seenSaga, await query(msg)];
    expect(await balances(store, [1, 2])).toEqual({ 1: 70, 2: 35 });

    for (const one of seen) await forgotten(one);
    for (const one of seen) await resubmit(one);
    expect(await refusedAsRecreated(saga)).toBe('submitted');
    expect(await refusedAsRecreated(msg)).toBe('submitted');
    expect(await balances(store, [1, 2])).toEqual({ 1: 70, 2: 35 });
  });
});
