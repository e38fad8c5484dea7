// Authenticated branch calls (lynx.dtm.branch_auth_keys) against the real DTM server, on Express
// and Fastify: legitimate saga, TCC (nested too), msg and XA transactions run, with DTM's retries;
// every attack of issue #13 is performed and runs nothing. What an attacker can read back from DTM
// (/query: branch_headers, branch ids, payloads) is used as the attacker would use it.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Body, Controller, Injectable, Module, Post, type Provider } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { DtmBranchRegistryError, DtmFailureError, DtmInstrumentation, DtmModule, DtmWorkflow, DtmWorkflowPendingError, SagaAction, type DtmBranchCallEvent, type DtmConfigInput, type WorkflowContext } from 'nestjs-dtm';
import { BranchAuth, targetPath } from '../../lib/auth/branch-auth.js';
import { storedAuth, type DtmQueryAnswer } from '../support/harness.js';
import { firstCalls, PROTOCOLS, sleep, useOwnDtm } from '../support/fixtures.js';
import { RecordingLogger } from '../support/recording-logger.js';
import { waitUntil } from '../support/services/process.js';
import { ADAPTERS, startBranchApp as startBranchAppWith, type AdapterName, type BranchApp } from './branch-app.js';
import { startShopApp } from './grpc-app.js';
import { callGrpc, requestBytes } from '../support/grpc.js';

/**
 * This file's own DTM server: its tests count the calls of handlers without a barrier (whose every repeat moves the
 * ledger's money again) and DTM's retries, and on the shared one another file's /resetCronTime can have DTM's cron call
 * a branch of an unfinished transaction again meanwhile (DTM calls at least once). The harness's helpers, aimed at it.
 */
const dtm = useOwnDtm('dtm-branch-auth');
const { cronUntilStatus, queryTrans, triggerCron, waitForTransStatus } = dtm;
/** The branch app, on this file's DTM server. */
const startBranchApp = (adapter: AdapterName, config: DtmConfigInput = {}, providers: Provider[] = []) => startBranchAppWith(adapter, { serverUrl: dtm.info.serverUrl, ...config }, providers);

const KEY = randomBytes(33).toString('base64');
const OLD_KEY = randomBytes(33).toString('base64');
const OTHER_KEY = randomBytes(33).toString('base64');

/** A branch call made by hand, as an attacker (or DTM) would: query keys, headers, JSON body. */
async function call(
  t: BranchApp,
  path: string,
  query: Record<string, string>,
  options: { body?: unknown; headers?: Record<string, string>; method?: string } = {},
): Promise<{ status: number; text: string }> {
  const url = `${t.url}${path}?${new URLSearchParams(query).toString()}`;
  const hasBody = options.body !== undefined;
  const res = await fetch(url, {
    method: options.method ?? (hasBody ? 'POST' : 'GET'),
    headers: { ...(hasBody ? { 'content-type': 'application/json' } : {}), ...options.headers },
    body: hasBody ? JSON.stringify(options.body) : undefined,
  });
  return { status: res.status, text: await res.text() };
}

const storedTokens = (answer: DtmQueryAnswer): string => answer.transaction?.branch_headers?.['dtm-auth'] ?? '';

/** Records the `branch.call` events of `t`'s hook; their `<op> <outcome> <status>` of a gid with `of(gid)`. */
function recordBranchCalls(t: BranchApp): { of(gid: string): string[] } {
  const events: DtmBranchCallEvent[] = [];
  t.app.get(DtmInstrumentation).on('branch.call', (e) => events.push(e));
  return { of: (gid) => events.filter((e) => e.gid === gid).map((e) => `${e.op} ${e.outcome} ${e.status ?? '-'}`) };
}

describe.each(ADAPTERS)('authenticated branch calls on %s', (adapter) => {
  let t: BranchApp;
  let reported: ReturnType<typeof recordBranchCalls>;
  beforeAll(async () => {
    t = await startBranchApp(adapter, { branchAuthKeys: [KEY, OLD_KEY] });
    reported = recordBranchCalls(t);
  });
  afterAll(async () => {
    await t?.close();
  });
  beforeEach(() => t.ledger.reset());

  it('a legitimate saga runs; a rollback runs the compensations; DTM stores only tokens bound to each call', async () => {
    const gid = await t.client.generateGid();
    const ok = await t.client.newSaga(gid).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submitAndWait();
    expect(ok.status).toBe('succeed');
    expect(Object.fromEntries(t.ledger.balances)).toEqual({ alice: 70, bob: 30 });
    const tokens = storedTokens(await queryTrans(gid));
    expect(tokens.split(',').map((e) => e.split('=')[0])).toEqual(['action.01', 'compensate.01', 'action.02', 'compensate.02']);

    t.ledger.reset();
    t.ledger.script('transIn', 'failure');
    const gid2 = await t.client.generateGid();
    const failed = await t.client.newSaga(gid2).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submitAndWait();
    expect(failed.status).toBe('failed');
    expect(firstCalls(t.ledger.callsOf(gid2).map((c) => c.handler))).toEqual(['transOut', 'transIn', 'transInCompensate', 'transOutCompensate']);
    expect(failed.rollbackReason).toContain('transIn refused: account frozen');
  });

  it('a forged call (made-up gid, no token) runs nothing: 401', async () => {
    const forged = await call(t, '/api/v1/bank/trans-in', { gid: 'made-up', trans_type: 'saga', branch_id: '01', op: 'action' }, { body: { amount: 1_000_000 } });
    expect(forged.status).toBe(401);
    expect(forged.text).toContain('carries no token');
    const garbage = await call(t, '/api/v1/bank/trans-in', { gid: 'made-up', trans_type: 'saga', branch_id: '01', op: 'action' }, { body: { amount: 1 }, headers: { 'dtm-auth': 'action.01=AAAAAAAAAAAAAAAAAAAAAA', 'dtm-auth-call': 'x' } });
    expect(garbage.status).toBe(401);
    expect(t.ledger.calls).toEqual([]);
    expect(Object.fromEntries(t.ledger.balances)).toEqual({ alice: 100, bob: 0 });
  });

  it('odd input without a key (__proto__ and constructor.prototype in the query, headers, token list and body; duplicate keys, a huge number, nesting 400 000 deep) runs nothing and pollutes no prototype: 401 or FAILURE, the app still serves', async () => {
    const q = { gid: 'made-up-odd', trans_type: 'saga', branch_id: '01', op: 'action' };
    const raw = async (query: string, body: string, headers: Record<string, string> = {}, path = '/api/v1/bank/trans-in') =>
      (await fetch(`${t.url}${path}?${query}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })).status;
    const keys = new URLSearchParams(q).toString();
    const statuses = [
      await raw(`${keys}&__proto__[polluted]=1&constructor[prototype][polluted]=1`, '{"amount":1}'),
      await raw(keys, '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"amount":1,"amount":1e400}'),
      await raw(keys, '{"amount":1}', { 'dtm-auth-headers': '__proto__,constructor', 'dtm-auth': '__proto__.01=AAAAAAAAAAAAAAAAAAAAAA,action.01=AAAAAAAAAAAAAAAAAAAAAA' }),
      await raw(keys, '{"amount":1}', { 'dtm-auth-headers': 'x-tenant', 'x-tenant': 'a', 'dtm-auth-call': 'AAAAAAAAAAAAAAAAAAAAAA', 'dtm-auth-issued': '1e400' }),
      await raw(keys, `${'['.repeat(400_000)}${']'.repeat(400_000)}`),
      await raw(`gid=made-up-odd&gid=other&trans_type=saga&branch_id=01&op=action`, '{"amount":1}'),
    ];
    // the duplicate gid: DTM's keys incomplete (400), the rest: no token of this call (401)
    expect(statuses).toEqual([401, 401, 401, 401, 401, 400]);
    // an undo call whose gid breaks the key rule passes without a token and its handler does not run
    expect(await raw('gid=__proto__%20x&trans_type=saga&branch_id=01&op=compensate', '{"__proto__":{"polluted":true}}', {}, '/api/v1/bank/trans-in-compensate')).toBe(200);
    for (const o of [{}, Object.prototype, Object.create(Object.prototype)]) expect((o as { polluted?: unknown }).polluted).toBeUndefined();
    expect(t.ledger.calls).toEqual([]);
    // the app still serves: DTM's own call runs
    const gid = await t.client.generateGid();
    expect((await t.client.newSaga(gid).add('transIn', { amount: 5 }).submitAndWait()).status).toBe('succeed');
    expect(Object.fromEntries(t.ledger.balances)).toEqual({ alice: 100, bob: 5 });
  });

  it('tokens read back from DTM run no other gid, branch, op, endpoint or body, and no early compensation', async () => {
    // step 1 answers ONGOING: the saga stays submitted, its tokens readable in DTM, step 2 not run yet
    t.ledger.script('transOut', 'ongoing');
    const gid = await t.client.generateGid();
    await t.client.newSaga(gid, { retryInterval: 1 }).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submit();
    const stored = await waitForTransStatus(gid, 'submitted');
    // DTM calls step 1 after it answered the submit: on a busy machine the attempts below could all come before that call
    await waitUntil('DTM calling step 1 of the saga', async () => t.ledger.callsOf(gid).length > 0, { timeoutMs: 10_000 });
    const headers = storedAuth(stored);
    const q = (over: Record<string, string> = {}) => ({ gid, trans_type: 'saga', branch_id: '02', op: 'action', ...over });

    const attempts = [
      await call(t, '/api/v1/bank/trans-in', q(), { body: { amount: 1_000_000 }, headers }), // another body
      await call(t, '/api/v1/bank/trans-in', q({ gid: `${gid}x` }), { body: { amount: 30 }, headers }), // another gid
      await call(t, '/api/v1/bank/trans-in', q({ branch_id: '01' }), { body: { amount: 30 }, headers }), // another branch
      await call(t, '/api/v1/bank/trans-out', q(), { body: { amount: 30 }, headers }), // another endpoint
      await call(t, '/api/v1/bank/trans-in-compensate', q({ op: 'compensate' }), { body: { amount: 30 }, headers }), // early compensation, valid token
      await call(t, '/api/v1/bank/trans-in', q(), { body: { amount: 30 }, headers: { 'dtm-auth-call': headers['dtm-auth'].split(',')[2].split('=')[1] } }), // a stored token as the app's own
    ];
    expect(attempts.map((a) => a.status)).toEqual([401, 401, 401, 401, 401, 401]);
    expect(attempts[4].text).toContain('DTM records the saga transaction as submitted');
    expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transOut']);

    await triggerCron();
    const final = await waitForTransStatus(gid, ['succeed', 'failed']);
    expect(final.transaction?.status).toBe('succeed');
    expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transOut', 'transOut', 'transIn']);
    expect(Object.fromEntries(t.ledger.balances)).toEqual({ alice: 70, bob: 30 });
  });

  it("a token read back from DTM runs its step only with its target's query: another account in it, or a second one, is refused and credits nobody", async () => {
    // step 1 held ONGOING: the saga stays submitted, step 2 (whose target names the account in its query) not run yet, its token readable in DTM
    t.ledger.script('transOut', ...HELD);
    const gid = await t.client.generateGid();
    await t.client.newSaga(gid, { retryInterval: 1 }).add('transOut', { amount: 30 }).add(`${t.url}/api/v1/bank/credit?account=bob`, { amount: 30 }).submit();
    const stored = await waitForTransStatus(gid, 'submitted');
    const keys = `gid=${gid}&trans_type=saga&branch_id=02&op=action`;
    const attack = async (query: string) => {
      const res = await fetch(`${t.url}/api/v1/bank/credit?${query}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...storedAuth(stored) },
        body: JSON.stringify({ amount: 30 }),
      });
      return res.status;
    };
    const statuses = [await attack(`account=mallory&${keys}`), await attack(`${keys}&account=mallory`), await attack(`account=bob&account=mallory&${keys}`), await attack(`account=bob&to=mallory&${keys}`)];
    expect(statuses).toEqual([401, 401, 401, 401]);
    expect(t.ledger.callsOf(gid).every((c) => c.handler === 'transOut')).toBe(true);

    // DTM's own call (the account=bob it stored, its keys appended) still runs
    t.ledger.script('transOut');
    await triggerCron();
    expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
    expect(t.ledger.callsOf(gid).at(-1)?.handler).toBe('credit bob');
    expect(Object.fromEntries(t.ledger.balances)).toEqual({ alice: 70, bob: 30 });
  });

  it("a token read back from DTM runs its step only with its target's query as it was written: a malformed escape spelled otherwise (which Express's parser reads as another account) is refused", async () => {
    // the account its target names, '%41%ZZ', spelled '%2541%25ZZ'; sent as '%41%ZZ', node:querystring (Express 5) reads 'A%ZZ'
    t.ledger.script('transOut', ...HELD);
    const gid = await t.client.generateGid();
    await t.client.newSaga(gid, { retryInterval: 1 }).add('transOut', { amount: 30 }).add(`${t.url}/api/v1/bank/credit?account=%2541%25ZZ`, { amount: 30 }).submit();
    const stored = await waitForTransStatus(gid, 'submitted');
    const res = await fetch(`${t.url}/api/v1/bank/credit?account=%41%ZZ&gid=${gid}&trans_type=saga&branch_id=02&op=action`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...storedAuth(stored) },
      body: JSON.stringify({ amount: 30 }),
    });
    expect(res.status).toBe(401);
    expect(t.ledger.callsOf(gid).every((c) => c.handler === 'transOut')).toBe(true);
    // DTM's own call (the query it stored, its keys appended) still runs, for the account the target names
    t.ledger.script('transOut');
    await triggerCron();
    expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
    expect(t.ledger.callsOf(gid).at(-1)?.handler).toBe('credit %41%ZZ');
  });

  it('a token read back from DTM runs its call only with the value its body signed: the same bytes under another content type are not read as another value', async () => {
    // step 1 held ONGOING: step 2 not run yet, its token readable in DTM
    t.ledger.script('transOut', ...HELD);
    const gid = await t.client.generateGid();
    await t.client.newSaga(gid, { retryInterval: 1 }).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submit();
    const stored = await waitForTransStatus(gid, 'submitted');
    const q = new URLSearchParams({ gid, trans_type: 'saga', branch_id: '02', op: 'action' });
    const attacks = [];
    for (const type of ['text/plain', 'text/plain; charset=utf-8']) {
      const res = await fetch(`${t.url}/api/v1/bank/trans-in?${q}`, { method: 'POST', headers: { 'content-type': type, ...storedAuth(stored) }, body: '{"amount":30}' });
      attacks.push(res.status);
    }
    // the call it signed, as DTM would make it (the barrier makes DTM's own a no-op), or refused: never a string where the payload was an object
    for (const status of attacks) expect([200, 401]).toContain(status);
    expect(t.ledger.callsOf(gid).filter((c) => c.handler === 'transIn').map((c) => c.body)).toEqual(attacks.filter((s) => s === 200).map(() => ({ amount: 30 })));
    t.ledger.script('transOut');
    await triggerCron();
    expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
  });

  it("the app's own calls (TCC Try) and DTM's confirm run at targets with a query; the confirm replayed with another query is refused", async () => {
    const gid = await t.client.generateGid();
    // a stray % (no valid escape): DTM sends it as it is, the app's own call as the URL writes it again (50%25); every parser reads 50%
    const target = (op: string) => `${t.url}/api/inventory/${op}?warehouse=north%20hall&lot=7+b&share=50%`;
    await t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ sku: 'x' }, target('try'), target('confirm'), target('cancel')));
    const done = await waitForTransStatus(gid, 'succeed');
    // DTM's confirm at least once (the shared DTM's cron may send it again while the first runs); then nothing more runs
    const ran = t.ledger.callsOf(gid).map((c) => c.handler);
    expect(firstCalls(ran)).toEqual(['inventoryTry', 'inventoryConfirm']);
    const q = { gid, trans_type: 'tcc', branch_id: done.branches[0].branch_id, op: 'confirm' };
    const replay = await call(t, '/api/inventory/confirm', { warehouse: 'south', lot: '7 b', ...q }, { body: { sku: 'x' } });
    expect(replay.status).toBe(401);
    expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(ran);
  });

  it('TCC: confirm and cancel run with the token in the branch id, in their phase only; nested TCC signs its own sub-branches', async () => {
    const gid = await t.client.generateGid();
    await t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ sku: 'x' }, 'inventory'));
    const done = await waitForTransStatus(gid, 'succeed');
    const branchId = done.branches[0].branch_id;
    expect(branchId).toMatch(/^01-[\w-]{22}$/);
    const ran = t.ledger.callsOf(gid).map((c) => c.handler); // DTM's confirm at least once; the replays below run nothing more
    expect(firstCalls(ran)).toEqual(['inventoryTry', 'inventoryConfirm']);

    const q = { gid, trans_type: 'tcc', branch_id: branchId, op: 'cancel' };
    const lateCancel = await call(t, '/api/inventory/cancel', q, { body: { sku: 'x' }, headers: storedAuth(done) });
    expect(lateCancel.status).toBe(401);
    expect(lateCancel.text).toContain('DTM records the tcc transaction as succeed');
    const otherBody = await call(t, '/api/inventory/confirm', { ...q, op: 'confirm' }, { body: { sku: 'y' } });
    expect(otherBody.status).toBe(401);
    const noToken = await call(t, '/api/inventory/confirm', { ...q, op: 'confirm', branch_id: '01' }, { body: { sku: 'x' } });
    expect(noToken.status).toBe(401);
    // a made-up token, on this gid or on one DTM does not hold: one answer, which says nothing of DTM's record, and shows no token
    const madeUp = '01-AAAAAAAAAAAAAAAAAAAAAA';
    const guesses = [
      await call(t, '/api/inventory/cancel', { ...q, branch_id: madeUp }, { body: { sku: 'x' } }),
      await call(t, '/api/inventory/cancel', { ...q, gid: 'no-such-gid', branch_id: madeUp }, { body: { sku: 'x' } }),
      await call(t, '/api/inventory/confirm', { ...q, op: 'confirm', gid: 'no-such-gid', branch_id: branchId }, { body: { sku: 'x' } }),
    ];
    expect(guesses.map((g) => g.status)).toEqual([401, 401, 401]);
    for (const g of guesses) {
      expect(g.text).toContain('branch \\"01-<token>\\"');
      expect(g.text).not.toMatch(/no such transaction|records the tcc|does not name/);
      expect(g.text).not.toContain(branchId.slice(3));
      expect(g.text).not.toContain('AAAAAAAAAAAAAAAAAAAAAA');
    }
    // a valid token replayed out of its phase still says why (the caller holds the token)
    expect(lateCancel.text).not.toContain(branchId.slice(3));
    expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(ran);

    // nested: the order Try registers two inventory sub-branches of its own branch id
    const nested = await t.client.generateGid();
    await t.client.tccGlobalTransaction(nested, (tcc) => tcc.callBranch({ items: ['a', 'b'] }, 'order'));
    const final = await waitForTransStatus(nested, 'succeed');
    expect(final.branches.map((b) => b.branch_id.split('-')[0])).toEqual(['01', '01', '0101', '0101', '0102', '0102']);
    expect(t.ledger.callsOf(nested).map((c) => c.handler).sort()).toEqual(['inventoryConfirm', 'inventoryConfirm', 'inventoryTry', 'inventoryTry', 'orderConfirm', 'orderTry']);
  });

  it('forwarded headers: TCC Try (the app\'s own call) and the confirm DTM sends get them; the confirm replayed with another value, or without their list, is refused', async () => {
    const gid = await t.client.generateGid();
    await t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ sku: 'x' }, 'inventory'), { branchHeaders: { 'x-request-id': 'r1' } });
    const done = await waitForTransStatus(gid, 'succeed');
    expect(done.transaction?.branch_headers?.['dtm-auth-headers']).toBe('x-request-id');
    const seen = () => t.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.headers['x-request-id']}`);
    expect(seen()).toEqual(['inventoryTry r1', 'inventoryConfirm r1']);

    const q = { gid, trans_type: 'tcc', branch_id: done.branches[0].branch_id, op: 'confirm' };
    const replay = (headers: Record<string, string>) => call(t, '/api/inventory/confirm', q, { body: { sku: 'x' }, headers: { ...storedAuth(done), ...headers } });
    const other = await replay({ 'dtm-auth-headers': 'x-request-id', 'x-request-id': 'r2' });
    const noList = await replay({ 'x-request-id': 'r1' });
    expect([other.status, noList.status]).toEqual([401, 401]);
    expect(other.text).toContain('the token in branch id is not this call');
    expect(seen()).toEqual(['inventoryTry r1', 'inventoryConfirm r1']);
    // DTM's own confirm, replayed as it was: its token verifies (the refusal says why: DTM ended the TCC), and it runs nothing
    const asSigned = await replay({ 'dtm-auth-headers': 'x-request-id', 'x-request-id': 'r1' });
    expect([asSigned.status, asSigned.text]).toEqual([401, expect.stringContaining('DTM records the tcc transaction as succeed')]);
    expect(seen()).toEqual(['inventoryTry r1', 'inventoryConfirm r1']);
  });

  it('forwarded headers, nested TCC two levels deep: every sub-branch\'s calls carry the headers DTM holds, also one this app does not pass on', async () => {
    const gid = await t.client.generateGid();
    // x-other is not in this app's pass_through_headers; DTM sends it with every confirm, so the sub-branches' calls carry it too
    await t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ items: ['a', 'b'] }, 'bundle'), { branchHeaders: { 'x-request-id': 'r1', 'x-other': 'o' } });
    const done = await waitForTransStatus(gid, ['succeed', 'failed']);
    expect(done.transaction?.status).toBe('succeed');
    expect(done.transaction?.branch_headers?.['dtm-auth-headers']).toBe('x-other,x-request-id');
    const seen = t.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.headers['x-request-id']} ${c.headers['x-other']}`);
    expect(seen.sort()).toEqual([
      'bundleConfirm r1 o',
      'bundleTry r1 o',
      'inventoryConfirm r1 o',
      'inventoryConfirm r1 o',
      'inventoryTry r1 o',
      'inventoryTry r1 o',
      'orderConfirm r1 o',
      'orderTry r1 o',
    ]);
    // a sub-branch cannot add headers DTM would not send to it, and needs the verified call's own BranchInfo
    const info = t.ledger.callsOf(gid).find((c) => c.handler === 'bundleTry')!.branch;
    expect(() => t.client.tccFromBranch({ ...info })).toThrow('needs the BranchInfo that @BranchContext() gave');
    expect(() => t.client.tccFromBranch(info, { branchHeaders: { 'x-more': '1' } })).toThrow('cannot set branchHeaders with lynx.dtm.branch_auth_keys');
  });

  it("a TCC confirm that fails logs its branch id without the token in it (01-<token>), as refusals do", async () => {
    t.ledger.script('inventoryConfirm', 'error', 'failure');
    const gid = await t.client.generateGid();
    await t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ sku: 'x' }, 'inventory'), { retryInterval: 1 });
    await cronUntilStatus(gid, 'succeed'); // DTM confirming the branch after its two failed confirms
    const token = (await queryTrans(gid)).branches[0].branch_id.slice(3);
    expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['inventoryTry', 'inventoryConfirm', 'inventoryConfirm', 'inventoryConfirm']);
    const lines = [...t.logger.errors, ...t.logger.warnings].filter((l) => l.includes(gid));
    expect(lines).toEqual([expect.stringContaining('inventoryConfirm crashed'), expect.stringContaining('threw DtmFailureError')]);
    for (const line of lines) {
      expect(line).toContain('branch 01-<token>');
      expect(line).not.toContain(token);
    }
  });

  it('TCC rollback: the cancel DTM sends runs', async () => {
    t.ledger.script('inventoryTry', 'failure');
    const gid = await t.client.generateGid();
    await expect(t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ sku: 'x' }, 'inventory'))).rejects.toBeInstanceOf(DtmFailureError);
    await waitForTransStatus(gid, 'failed');
    expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['inventoryTry', 'inventoryCancel']);
  });

  it('msg: an anonymous or early back-check runs nothing; DTM\'s own, once due, runs and the message is delivered', async () => {
    const gid = await t.client.generateGid();
    await t.client.newMsg(gid, { timeoutToFail: 3 }).add('notify', { order: 7 }).prepare('order');
    const q = { gid, trans_type: 'msg', branch_id: '00', op: 'msg' };
    expect((await call(t, '/api/outbox/query-prepared', q)).status).toBe(401);
    const early = await call(t, '/api/outbox/query-prepared', q, { headers: storedAuth(await queryTrans(gid)) });
    expect(early.status).toBe(401);
    expect(early.text).toContain('DTM back-checks this message only after');
    expect(t.ledger.callsOf(gid)).toEqual([]);
    // both refused before the handler, the early one by the phase check after its token verified: reported so, with the answer
    expect(reported.of(gid).slice(0, 2)).toEqual(['msg refused 401', 'msg refused 401']);

    await new Promise((resolve) => setTimeout(resolve, 3000));
    await triggerCron();
    await waitForTransStatus(gid, 'succeed');
    expect(t.ledger.callsOf(gid).map((c) => [c.handler, c.body])).toEqual([
      ['queryPrepared', undefined],
      ['notify', { order: 7 }],
    ]);
  });

  it("msg prepared with timeoutToFail 0 (DTM's own TimeoutToFail applies, 35 s by default): a back-check with the token read from DTM right after the prepare runs nothing", async () => {
    const gid = await t.client.generateGid();
    await t.client.newMsg(gid, { timeoutToFail: 0 }).add('notify', { order: 8 }).prepare('order');
    const stored = await queryTrans(gid);
    expect(stored.transaction?.status).toBe('prepared');
    const early = await call(t, '/api/outbox/query-prepared', { gid, trans_type: 'msg', branch_id: '00', op: 'msg' }, { headers: storedAuth(stored) });
    expect([early.status, early.text]).toEqual([401, expect.stringContaining('DTM back-checks this message only after')]);
    expect(t.ledger.callsOf(gid)).toEqual([]);
    await t.client.forceStop(gid);
  });

  it('XA: a rollback sent before the commit runs nothing, the commit DTM sends runs', async () => {
    const gid = await t.client.generateGid();
    let attack: { status: number; text: string } | undefined;
    await t.client.xaGlobalTransaction(gid, async (xa) => {
      await xa.callBranch({ amount: 5 }, 'bank');
      attack = await call(t, '/api/outbox/xa', { gid, trans_type: 'xa', branch_id: '01', op: 'rollback' }, { method: 'POST' });
    });
    expect(attack?.status).toBe(401);
    expect(attack?.text).toContain("DTM's record does not show this XA branch due for its rollback");
    expect(t.logger.warnings.filter((w) => w.includes(gid)).join('\n')).toContain('DTM records the xa transaction as prepared');
    await waitForTransStatus(gid, 'succeed');
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => c.handler))).toEqual(['xa-action', 'xa-commit']);
  });

  it("XA: a commit or rollback sent by anyone (no token: none is signed) answers the same for a made-up gid, another type's gid, an XA in another phase: DTM's record is only in the app's log", async () => {
    const saga = await t.client.generateGid();
    expect((await t.client.newSaga(saga).add('transOut', { amount: 1 }).submitAndWait()).status).toBe('succeed');
    const xaGid = await t.client.generateGid();
    const answers: { status: number; text: string }[] = [];
    await t.client.xaGlobalTransaction(xaGid, async (xa) => {
      await xa.callBranch({ amount: 5 }, 'bank');
      const probe = (gid: string) => call(t, '/api/outbox/xa', { gid, trans_type: 'xa', branch_id: '01', op: 'commit' }, { method: 'POST' });
      answers.push(await probe('made-up-xa-gid')); // DTM holds no such gid
      answers.push(await probe(saga)); // a saga DTM finished
      answers.push(await probe(xaGid)); // the XA, still prepared
    });
    expect(answers.map((a) => a.status)).toEqual([401, 401, 401]);
    const shown = answers.map((a, i) => a.text.replace(['made-up-xa-gid', saga, xaGid][i], '<gid>'));
    expect(new Set(shown).size).toBe(1);
    expect(shown[0]).not.toMatch(/DTM (records|has no)|does not name/);
    // the app's warnings keep what DTM's record said, for its operators
    const warned = (gid: string) => t.logger.warnings.filter((w) => w.includes(gid)).join('\n');
    expect(warned('made-up-xa-gid')).toContain('DTM has no such transaction');
    expect(warned(saga)).toContain('DTM records the saga transaction as succeed');
    expect(warned(xaGid)).toContain('DTM records the xa transaction as prepared');
    await waitForTransStatus(xaGid, 'succeed');
    expect(firstCalls(t.ledger.callsOf(xaGid).map((c) => c.handler))).toEqual(['xa-action', 'xa-commit']);
  });

  it("XA: the app's own action call, taken off the wire and replayed with another phase2_url (where DTM would send its commit), is refused and prepares nothing", async () => {
    // an attacker on the wire between the app and the branch: keeps the action call (answers it) and replays it with a phase2_url of its own
    const taken: { url: string; headers: IncomingHttpHeaders; body: string }[] = [];
    const wire = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      req.on('end', () => {
        taken.push({ url: req.url!, headers: req.headers, body });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((done) => wire.listen(0, '127.0.0.1', done));
    const gid = await t.client.generateGid();
    let replay: number | undefined;
    try {
      await t.client.xaGlobalTransaction(gid, async (xa) => {
        await xa.callBranch({ amount: 5 }, `http://127.0.0.1:${(wire.address() as { port: number }).port}/api/outbox/xa`);
        const url = new URL(taken[0].url, t.url);
        url.searchParams.set('phase2_url', 'http://127.0.0.1:9/api/outbox/xa');
        const { 'dtm-auth-call': token, 'content-type': type } = taken[0].headers;
        replay = (await fetch(url, { method: 'POST', headers: { 'dtm-auth-call': String(token), 'content-type': String(type) }, body: taken[0].body })).status;
      });
    } finally {
      await new Promise<void>((done) => wire.close(() => done()));
    }
    expect(taken).toHaveLength(1);
    expect(replay).toBe(401);
    expect(t.ledger.callsOf(gid)).toEqual([]);
  });

  it('key rotation: calls signed with the second key run; calls signed with a key the app does not hold do not', async () => {
    const old = await startBranchApp(adapter, { branchAuthKeys: [OLD_KEY] });
    try {
      const gid = await old.client.generateGid();
      const target = (path: string) => `${t.url}/api/v1/bank/${path}`;
      const final = await old.client.newSaga(gid).add(target('trans-out'), target('trans-out-compensate'), { amount: 10 }).submitAndWait();
      expect(final.status).toBe('succeed');
      expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transOut']);
    } finally {
      await old.close();
    }
    const stranger = new BranchAuth([OTHER_KEY]);
    const signed = stranger.sign({ channel: 'app', gid: 'g-stranger', transType: 'saga', branchId: '01', op: 'action', target: '/api/v1/bank/trans-in', payload: '{"amount":5}' });
    const refused = await call(t, '/api/v1/bank/trans-in', { gid: 'g-stranger', trans_type: 'saga', branch_id: '01', op: 'action' }, { body: { amount: 5 }, headers: { 'dtm-auth-call': signed } });
    expect(refused.status).toBe(401);
    const withKey = new BranchAuth([KEY]).sign({ channel: 'app', gid: 'g-stranger', transType: 'saga', branchId: '01', op: 'action', target: '/api/v1/bank/trans-in', payload: '{"amount":5}' });
    const accepted = await call(t, '/api/v1/bank/trans-in', { gid: 'g-stranger', trans_type: 'saga', branch_id: '01', op: 'action' }, { body: { amount: 5 }, headers: { 'dtm-auth-call': withKey } });
    expect(accepted.status).toBe(200);
    expect(t.ledger.callsOf('g-stranger').map((c) => c.handler)).toEqual(['transIn']);
  });
});

/** Enough ONGOING answers to hold a step until the test releases it (`ledger.script(handler)`). */
const HELD = Array.from({ length: 100 }, () => 'ongoing' as const);

/** `calls`: the held step `held` answered ONGOING at least once, then succeeded, and only then did DTM run `next`. */
function expectHeldThenRun(calls: string[], held: string, next: string): void {
  // DTM calls each at least once (a cron pass another file's /resetCronTime starts can call a step again): the calls DTM first made
  expect(firstCalls(calls)).toEqual([held, next]);
  expect(calls.indexOf(next)).toBeGreaterThanOrEqual(2);
}

/** bank-in.v1: one step calling the bank's transIn of the app at `base` (its rollback: transInCompensate), then FAILURE when `fail`. */
@Injectable()
class BankWorkflows {
  @DtmWorkflow('bank-in.v1')
  async bankIn(wf: WorkflowContext<{ base: string; fail: boolean }>) {
    const { base, fail } = wf.input;
    await wf
      .step('in')
      .onRollback((b) => b.http(`${base}/api/v1/bank/trans-in-compensate`, { amount: 30 }))
      .http(`${base}/api/v1/bank/trans-in`, { amount: 30 });
    if (fail) throw new DtmFailureError('the transfer is refused');
    return 'done';
  }

  /** shop-reserve.v1: one gRPC step, `item` (base64 bytes of a tests.Item) to the Shop's Reserve at `target`. */
  @DtmWorkflow('shop-reserve.v1')
  async shopReserve(wf: WorkflowContext<{ target: string; item: string }>) {
    await wf.step('reserve').grpc(wf.input.target, Buffer.from(wf.input.item, 'base64'));
    return 'done';
  }
}

describe('branch_auth_check_actions: a token read back from DTM runs no step DTM has not called', () => {
  // strict checks actions against DTM's record; loose (the default) is the control: the same call, with the same token, runs there
  let strict: BranchApp;
  let loose: BranchApp;
  beforeAll(async () => {
    strict = await startBranchApp('express', { branchAuthKeys: [KEY], branchAuthCheckActions: true, grpcServer: dtm.info.grpcAddress }, [BankWorkflows]);
    loose = await startBranchApp('express', { branchAuthKeys: [KEY] });
    reported = recordBranchCalls(strict);
  });
  afterAll(async () => {
    await strict?.close();
    await loose?.close();
  });
  let reported: ReturnType<typeof recordBranchCalls>;
  beforeEach(() => {
    strict.ledger.reset();
    loose.ledger.reset();
  });

  it('the step after a failed one (DTM neither calls nor compensates it) is refused; legitimate sagas and messages run', async () => {
    strict.ledger.script('transOut', 'failure');
    const gid = await strict.client.generateGid();
    const failed = await strict.client.newSaga(gid).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submitAndWait();
    expect(failed.status).toBe('failed');
    expect(strict.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transOut', 'transOutCompensate']);
    const headers = storedAuth(await queryTrans(gid));
    const q = { gid, trans_type: 'saga', branch_id: '02', op: 'action' };
    const balances = Object.fromEntries(strict.ledger.balances);
    const refused = await call(strict, '/api/v1/bank/trans-in', q, { body: { amount: 30 }, headers });
    expect(refused.status).toBe(401);
    expect(refused.text).toContain('DTM records the saga transaction as failed, and this op runs only when it is submitted');
    expect(strict.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transOut', 'transOutCompensate']);
    expect(Object.fromEntries(strict.ledger.balances)).toEqual(balances);
    // control: the token is good, and without the check the step runs (money out of nowhere)
    expect((await call(loose, '/api/v1/bank/trans-in', q, { body: { amount: 30 }, headers })).status).toBe(200);
    expect(loose.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transIn']);

    strict.ledger.reset();
    const ok = await strict.client.newSaga(await strict.client.generateGid()).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submitAndWait();
    expect(ok.status).toBe('succeed');
    expect(Object.fromEntries(strict.ledger.balances)).toEqual({ alice: 70, bob: 30 });
  });

  it('a step ahead of its turn is refused while the step before it is not done; DTM then runs both in order', async () => {
    strict.ledger.script('transOut', ...HELD); // ONGOING until released: other files' cron triggers make DTM retry at any time
    const gid = await strict.client.generateGid();
    await strict.client.newSaga(gid, { retryInterval: 1 }).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submit();
    const headers = storedAuth(await waitForTransStatus(gid, 'submitted'));
    const q = { gid, trans_type: 'saga', branch_id: '02', op: 'action' };
    const early = await call(strict, '/api/v1/bank/trans-in', q, { body: { amount: 30 }, headers });
    expect(early.status).toBe(401);
    expect(early.text).toContain('DTM has not called this saga step yet: the step before it (branch 01) is not done');
    expect((await call(loose, '/api/v1/bank/trans-in', q, { body: { amount: 30 }, headers })).status).toBe(200); // control

    strict.ledger.script('transOut'); // released: DTM's next call succeeds
    await triggerCron();
    expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
    expectHeldThenRun(strict.ledger.callsOf(gid).map((c) => c.handler), 'transOut', 'transIn');
  });

  it.each(PROTOCOLS)('a concurrent saga (submitted over %s): a step whose ordered step is not done is refused, a step without an order is due; DTM then runs them all', async (protocol) => {
    strict.ledger.script('transOut', ...HELD); // ONGOING until released: other files' cron triggers make DTM retry at any time
    const gid = await strict.client.generateGid();
    const url = (path: string) => `${strict.url}/api/v1/bank/${path}`;
    await strict.client
      .newSaga(gid, { protocol, retryInterval: 1 })
      .add(url('trans-out'), url('trans-out-compensate'), { amount: 30 })
      .add(url('trans-in'), url('trans-in-compensate'), { amount: 30 })
      .add(url('trans-in'), url('trans-in-compensate'), { amount: 5 })
      .enableConcurrent()
      .addBranchOrder(1, [0])
      .submit();
    const stored = await waitForTransStatus(gid, 'submitted');
    const headers = storedAuth(stored);
    const q = { gid, trans_type: 'saga', branch_id: '02', op: 'action' };
    const early = await call(strict, '/api/v1/bank/trans-in', q, { body: { amount: 30 }, headers });
    expect(early.status).toBe(401);
    expect(early.text).toContain('the step before it (branch 01) is not done');
    // the third step waits for nothing: DTM calls it at once, and so may its token
    expect((await call(strict, '/api/v1/bank/trans-in', { ...q, branch_id: '03' }, { body: { amount: 5 }, headers })).status).toBe(200);
    expect((await call(loose, '/api/v1/bank/trans-in', q, { body: { amount: 30 }, headers })).status).toBe(200); // control

    strict.ledger.script('transOut'); // released: DTM's next call succeeds
    await triggerCron();
    expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
    const calls = strict.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.branchId}`);
    expectHeldThenRun(calls.filter((c) => c !== 'transIn 03'), 'transOut 01', 'transIn 02');
    expect(calls.filter((c) => c === 'transIn 03').length).toBeGreaterThanOrEqual(2); // DTM's call (at least once) and the replay (this app has no barrier; its 200 above)
  });

  it.each(['succeed', 'failed'] as const)("a TCC Try (the app's own call) taken off the wire and replayed once the TCC %s is refused before it runs; without the check it runs again, reserving what nothing will confirm or cancel", async (end) => {
    const gid = await strict.client.generateGid();
    const run = strict.client.tccGlobalTransaction(gid, async (tcc) => {
      await tcc.callBranch({ sku: 'x' }, 'inventory');
      if (end === 'failed') throw new DtmFailureError('the order is refused');
    });
    if (end === 'failed') await expect(run).rejects.toBeInstanceOf(DtmFailureError);
    else await run;
    await waitForTransStatus(gid, end);
    const [tried] = strict.ledger.callsOf(gid);
    expect(tried.handler).toBe('inventoryTry');
    const q = { gid, trans_type: 'tcc', branch_id: tried.branch.branchId, op: 'try' };
    const headers = { 'dtm-auth-call': String(tried.headers['dtm-auth-call']), 'dtm-auth-issued': String(tried.headers['dtm-auth-issued']) };
    const calls = strict.ledger.callsOf(gid).map((c) => c.handler);
    const replayed = await call(strict, '/api/inventory/try', q, { body: { sku: 'x' }, headers });
    expect(replayed.status).toBe(401);
    expect(replayed.text).toContain(`DTM records the tcc transaction as ${end}, and this op runs only when it is prepared`);
    expect(reported.of(gid).filter((e) => e.startsWith('try '))).toEqual(['try success -', 'try refused 401']);
    expect(strict.ledger.callsOf(gid).map((c) => c.handler)).toEqual(calls);
    expect((await call(loose, '/api/inventory/try', q, { body: { sku: 'x' }, headers })).status).toBe(200); // control
    expect(loose.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['inventoryTry']);
  });

  it("a TCC Try (the app's own call) taken off the wire and replayed while its TCC is still prepared passes the check (DTM's record says prepared): without a barrier it runs again, reserving what one confirm will not release", async () => {
    const gid = await strict.client.generateGid();
    let replayed: { status: number; text: string } | undefined;
    await strict.client.tccGlobalTransaction(gid, async (tcc) => {
      await tcc.callBranch({ sku: 'x' }, 'inventory');
      // the body goes on (other branches): an attacker on the wire sends the Try's call again, as it went
      const [tried] = strict.ledger.callsOf(gid);
      const q = { gid, trans_type: 'tcc', branch_id: tried.branch.branchId, op: 'try' };
      replayed = await call(strict, '/api/inventory/try', q, { body: { sku: 'x' }, headers: { 'dtm-auth-call': String(tried.headers['dtm-auth-call']), 'dtm-auth-issued': String(tried.headers['dtm-auth-issued']) } });
    });
    expect(replayed?.status).toBe(200);
    await waitForTransStatus(gid, 'succeed');
    // the Try ran twice, its Confirm once (DTM confirms each branch once): behind the barrier the replay is a duplicate (branch-auth-barrier.spec)
    expect(strict.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['inventoryTry', 'inventoryTry', 'inventoryConfirm']);
  });

  it.each(['succeed', 'failed'] as const)("a workflow step's calls (the app's own) taken off the wire and replayed once the workflow %s are refused before they run; without the check they run again", async (end) => {
    const gid = await strict.client.generateGid();
    // the workflow's own calls go to the strict app itself: with the check on, its step and its rollback run (DTM holds the workflow prepared while they do)
    const run = strict.client.executeWorkflow('bank-in.v1', gid, { base: strict.url, fail: end === 'failed' });
    if (end === 'failed') await expect(run).rejects.toThrow('the transfer is refused');
    else expect(await run).toEqual({ status: 'succeed', result: 'done' });
    expect((await queryTrans(gid)).transaction?.status).toBe(end);
    const made = strict.ledger.callsOf(gid);
    expect(made.map((c) => `${c.handler} ${c.branch.transType} ${c.branch.op}`)).toEqual(end === 'succeed' ? ['transIn workflow action'] : ['transIn workflow action', 'transInCompensate workflow rollback']);
    const balances = Object.fromEntries(strict.ledger.balances);
    for (const c of made) {
      const path = c.handler === 'transIn' ? '/api/v1/bank/trans-in' : '/api/v1/bank/trans-in-compensate';
      const q = { gid, trans_type: 'workflow', branch_id: c.branch.branchId, op: c.branch.op };
      const headers = { 'dtm-auth-call': String(c.headers['dtm-auth-call']), 'dtm-auth-issued': String(c.headers['dtm-auth-issued']) };
      const replayed = await call(strict, path, q, { body: { amount: 30 }, headers });
      expect(replayed.status).toBe(401);
      expect(replayed.text).toContain(`DTM records the workflow transaction as ${end}, and this op runs only when it is prepared`);
      expect((await call(loose, path, q, { body: { amount: 30 }, headers })).status).toBe(200); // control: the token verifies, and the handler runs again
    }
    expect(strict.ledger.callsOf(gid)).toHaveLength(made.length);
    // each replay refused by the phase check, before the handler: reported so, with the answer
    expect(reported.of(gid)).toEqual([...made.map((c) => `${c.branch.op} success -`), ...made.map((c) => `${c.branch.op} refused 401`)]);
    expect(Object.fromEntries(strict.ledger.balances)).toEqual(balances);
    expect(loose.ledger.callsOf(gid).map((c) => c.handler)).toEqual(made.map((c) => c.handler));
  });

  it("a workflow step's call (the app's own) taken off the wire and replayed while the workflow is still prepared passes the check: the step runs, and without a barrier it runs again at the workflow's next call of it", async () => {
    strict.ledger.script('transIn', ...HELD); // ONGOING: the workflow stays prepared (other files' cron triggers make DTM resume it at any time)
    const gid = await strict.client.generateGid();
    await expect(strict.client.executeWorkflow('bank-in.v1', gid, { base: strict.url, fail: false }, { retryInterval: 60 })).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    const [first] = strict.ledger.callsOf(gid);
    expect(`${first.handler} ${first.branch.op}`).toBe('transIn action');
    strict.ledger.script('transIn', 'ok', ...HELD);
    const q = { gid, trans_type: 'workflow', branch_id: first.branch.branchId, op: 'action' };
    const replayed = await call(strict, '/api/v1/bank/trans-in', q, { body: { amount: 30 }, headers: { 'dtm-auth-call': String(first.headers['dtm-auth-call']), 'dtm-auth-issued': String(first.headers['dtm-auth-issued']) } });
    expect(replayed.status).toBe(200);
    expect(strict.ledger.balances.get('bob')).toBe(30);
    // the workflow's resume calls the step again (its first call answered ONGOING): the bank, without a barrier, credits again
    strict.ledger.script('transIn');
    const { 'dtm-auth': token } = (await queryTrans(gid)).transaction?.branch_headers ?? {};
    const { port } = strict.app.getHttpServer().address() as { port: number };
    const resumed = await fetch(`http://127.0.0.1:${port}/dtm/workflow/resume?gid=${gid}&op=bank-in.v1&trans_type=workflow&branch_id=00`, { method: 'POST', headers: { 'dtm-auth': token ?? '' } });
    expect(resumed.status).toBe(200);
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    expect(strict.ledger.balances.get('bob')).toBe(60);
  });

  it("over gRPC: a workflow step's call (the app's own) replayed once the workflow succeed is refused UNAUTHENTICATED before it runs; without the check it runs again", async () => {
    const [shop, looseShop] = await Promise.all([startShopApp('microservice', { ...dtm.config(), branchAuthKeys: [KEY], branchAuthCheckActions: true }), startShopApp('microservice', { ...dtm.config(), branchAuthKeys: [KEY] })]);
    try {
      const gid = await strict.client.generateGid();
      const item = requestBytes('tests.Shop', 'Reserve', { sku: 'wf-grpc', quantity: 1, script: '' });
      // the workflow's own call goes to the checking Shop: it runs (DTM holds the workflow prepared)
      expect(await strict.client.executeWorkflow('shop-reserve.v1', gid, { target: shop.target('Reserve'), item: item.toString('base64') })).toEqual({ status: 'succeed', result: 'done' });
      const stored = await queryTrans(gid);
      expect(stored.transaction?.status).toBe('succeed');
      expect(shop.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.transType} ${c.branch.op}`)).toEqual(['reserve workflow action']);
      // the call as it went on the wire: its metadata's token is the app's HMAC of exactly this call (a wire capture holds the same)
      const issued = stored.transaction?.branch_headers?.['dtm-auth-issued'] ?? '';
      const token = new BranchAuth([KEY]).sign({ channel: 'app', gid, transType: 'workflow', branchId: '01', op: 'action', target: targetPath(shop.target('Reserve')), payload: item, issued });
      const keys = { gid, trans_type: 'workflow', branch_id: '01', op: 'action' };
      const headers = { 'dtm-auth-call': token, 'dtm-auth-issued': issued };
      const replayed = await callGrpc(shop.target('Reserve'), { sku: 'wf-grpc', quantity: 1, script: '' }, keys, headers);
      expect(replayed.code).toBe(16); // UNAUTHENTICATED
      expect(replayed.text).toContain('DTM records the workflow transaction as succeed, and this op runs only when it is prepared');
      expect(shop.ledger.callsOf(gid)).toHaveLength(1);
      // control: the same call (a token signs the method, not the host) verifies on a Shop without the check, and runs there
      expect((await callGrpc(looseShop.target('Reserve'), { sku: 'wf-grpc', quantity: 1, script: '' }, keys, headers)).code).toBe(0);
      expect(looseShop.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['reserve']);
    } finally {
      await Promise.all([shop.close(), looseShop.close()]);
    }
  });

  it("a workflow resumed later than branch_auth_issue_window after it was started: its steps still run (they sign the issue time of the tokens DTM stored, not the resume's)", async () => {
    const windowed = await startBranchApp('express', { branchAuthKeys: [KEY], branchAuthCheckActions: true, branchAuthIssueWindow: 2 }, [BankWorkflows]);
    try {
      // ONGOING until the window has passed: a resume of DTM's before it (another file's /resetCronTime) runs the step, not to its end
      windowed.ledger.script('transIn', ...Array<'ongoing'>(100).fill('ongoing'));
      const gid = await windowed.client.generateGid();
      await expect(windowed.client.executeWorkflow('bank-in.v1', gid, { base: windowed.url, fail: false }, { retryInterval: 60 })).rejects.toBeInstanceOf(DtmWorkflowPendingError);
      await sleep(3500); // the resume comes more than the window after the workflow's tokens were issued
      windowed.ledger.script('transIn');
      const before = windowed.ledger.callsOf(gid).length;
      const { 'dtm-auth': token } = (await queryTrans(gid)).transaction?.branch_headers ?? {};
      const { port } = windowed.app.getHttpServer().address() as { port: number };
      const resumed = await fetch(`http://127.0.0.1:${port}/dtm/workflow/resume?gid=${gid}&op=bank-in.v1&trans_type=workflow&branch_id=00`, { method: 'POST', headers: { 'dtm-auth': token ?? '' } });
      expect(resumed.status).toBe(200);
      expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
      // the step ran to its end after the window (every earlier call answered ONGOING): its call signed, not refused
      const calls = windowed.ledger.callsOf(gid).map((c) => c.handler);
      expect(calls.length).toBeGreaterThan(before);
      expect(new Set(calls)).toEqual(new Set(['transIn']));
      // no warning but those of the ONGOING answers before the window passed (a refused step is warned of)
      expect(windowed.logger.warnings.filter((w) => w.includes(gid) && !w.includes('saying: transIn not ready'))).toEqual([]);
    } finally {
      await windowed.close();
    }
  });

  it('a branch of a message still prepared is refused; once DTM has it submitted, its own call runs', async () => {
    const gid = await strict.client.generateGid();
    await strict.client.newMsg(gid).add('notify', { order: 7 }).prepare('order');
    const headers = storedAuth(await queryTrans(gid));
    const q = { gid, trans_type: 'msg', branch_id: '01', op: 'action' };
    const early = await call(strict, '/api/outbox/notify', q, { body: { order: 7 }, headers });
    expect(early.status).toBe(401);
    expect(early.text).toContain('DTM records the msg transaction as prepared, and this op runs only when it is submitted');
    expect((await call(loose, '/api/outbox/notify', q, { body: { order: 7 }, headers })).status).toBe(200); // control
    expect(strict.ledger.callsOf(gid)).toEqual([]);

    await strict.client.newMsg(gid).add('notify', { order: 7 }).submit();
    await waitForTransStatus(gid, 'succeed');
    expect(firstCalls(strict.ledger.callsOf(gid).map((c) => [c.handler, c.body]))).toEqual([['notify', { order: 7 }]]);
  });
});

describe('branch_auth_keys and a controller in a feature module', () => {
  const ran: unknown[] = [];
  @Controller('feature')
  class FeatureBank {
    @Post('in')
    @SagaAction('feature.in', { compensate: false })
    in(@Body() body: unknown) {
      ran.push(body);
    }
  }
  @Module({ controllers: [FeatureBank] })
  class FeatureModule {}

  /** The app with DtmModule (branch_auth_keys set) in the root module, not global, and FeatureBank in a module that does not import it. */
  const boot = async (isGlobal: boolean) => {
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: dtm.info.serverUrl, branchAuthKeys: [KEY] }, isGlobal }), FeatureModule],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    const error = await app.listen(0, '127.0.0.1').then(() => undefined, (e: unknown) => e);
    return { app, error };
  };
  const forge = (app: { getHttpServer(): { address(): unknown } }) =>
    fetch(`http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/feature/in?gid=forged&trans_type=saga&branch_id=01&op=action`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 1_000_000 }),
    });

  it('fails at start-up when the DtmModule is neither imported there nor global: its unsigned calls would run', async () => {
    ran.length = 0;
    const { app, error } = await boot(false);
    // what it would do: a forged call, without any token, runs the handler
    const forged = error === undefined ? await forge(app) : undefined;
    await app.close();
    expect(forged?.status).toBeUndefined();
    expect(ran).toEqual([]);
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    expect((error as DtmBranchRegistryError).problems).toEqual([
      expect.stringContaining('FeatureBank.in: lynx.dtm.branch_auth_keys is set, but no DtmModule serves this controller, so its calls would run unauthenticated: import DtmModule in its module, or make it global (isGlobal: true)'),
    ]);
  });

  it('refuses the forged call (401) when the DtmModule is global', async () => {
    ran.length = 0;
    const { app, error } = await boot(true);
    try {
      expect(error).toBeUndefined();
      expect((await forge(app)).status).toBe(401);
      expect(ran).toEqual([]);
    } finally {
      await app.close();
    }
  });
});

@Injectable()
class ResumeLogWorkflows {
  @DtmWorkflow('resume-log.v1')
  run() {
    return 'ran';
  }
}

describe.each(ADAPTERS)('the workflow resume route on %s, called by anyone', (adapter) => {
  it.each([['without keys'], ['with keys']])("logs the name and gid a caller sends quoted, on the warning's one line: no forged log line (%s)", async (keys) => {
    @Module({ imports: [DtmModule.forRoot({ config: { serverUrl: dtm.info.serverUrl, ...(keys === 'with keys' ? { branchAuthKeys: [KEY] } : {}) } })], providers: [ResumeLogWorkflows] })
    class ResumeLogModule {}
    const moduleRef = await Test.createTestingModule({ imports: [ResumeLogModule] }).compile();
    const app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter(), { forceCloseConnections: true }) : moduleRef.createNestApplication({ forceCloseConnections: true });
    const logger = new RecordingLogger();
    app.useLogger(logger);
    await app.listen(0, '127.0.0.1');
    try {
      const { port } = app.getHttpServer().address() as { port: number };
      // CR / LF, and what JSON.stringify leaves as it is: NEL (U+0085) and U+2028 / U+2029 (line breaks to Unicode-aware viewers), C1's CSI (U+009B, an ANSI escape to some terminals), DEL
      const forged = encodeURIComponent('\n[Nest] 1  - 12/04/2026, 7:00:00 PM     LOG [Auth] forged: admin logged in\r\u0085\u2028\u2029\u009b31m\u007f');
      const resume = (op: string, gid: string) => fetch(`http://127.0.0.1:${port}/dtm/workflow/resume?op=${op}&gid=${gid}`, { method: 'POST' });
      const unknownName = await resume(`no.such.v1${forged}`, 'g1');
      const unknownGid = await resume('resume-log.v1', `no-such-gid${forged}`);
      expect([unknownName.status, unknownGid.status]).toEqual([425, keys === 'with keys' ? 401 : 400]);
      const warnings = logger.lines.filter((l) => l.includes('forged'));
      expect(warnings).toHaveLength(2);
      for (const line of warnings) expect(line).not.toMatch(/[\r\n\u0085\u2028\u2029\u009b\u007f]/);
    } finally {
      await app.close();
    }
  });
});
