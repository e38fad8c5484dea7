// The participant side against the real DTM server: branches written with the decorators, on
// Express and on Fastify. The app runs with global prefix "api" and URI versioning (bank is v1).
import net from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Controller, Post } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { BranchContext, DtmBranchRegistry, DtmClient, DtmConfigError, DtmFailureError, DtmModule, DtmUsageError, SagaAction, SagaCompensate, TccCancel, TccConfirm, TccTry, type BranchInfo, type DtmConfigInput } from 'nestjs-dtm';
import { ADAPTERS, CapturingLogger, startBranchApp as startBranchAppWith, type AdapterName, type BranchApp, type Outcome } from './branch-app.js';
import { branchLines, firstCalls, useOwnDtm } from '../support/fixtures.js';
import { startTrap } from '../support/trap.js';
import { recordedBranchFailure } from '../../lib/diagnostics/branch-failures.js';

/**
 * This file's own DTM server: its tests count the calls of handlers without a barrier (whose every repeat moves the
 * ledger's money again), and on the shared one another file's /resetCronTime can have DTM's cron call a branch of an
 * unfinished transaction again meanwhile (DTM calls at least once). The harness's helpers, aimed at it.
 */
const dtm = useOwnDtm('dtm-branches');
const { queryTrans, triggerCron, waitForTransStatus, dtmPost } = dtm;
/** The branch app, on this file's DTM server unless `config` names another. */
const startBranchApp = (adapter: AdapterName, config: DtmConfigInput = {}) => startBranchAppWith(adapter, { serverUrl: dtm.info.serverUrl, ...config });

/** The largest body the module reads of a branch call (MAX_BRANCH_BODY_BYTES). */
const MAX_BRANCH_BODY = 1024 * 1024;

/**
 * Writes `head` and `chunks` on a raw connection to `url`'s port (`gapMs` apart, so that each
 * arrives on its own), and resolves with what the server answered once its answer's head is in (or
 * it closed, or 5 s passed).
 */
function rawExchange(url: string, head: string, chunks: Buffer[] = [], gapMs = 0): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
    let answer = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(done, 5000);
    socket.on('data', (data: Buffer) => {
      answer += data.toString('latin1');
      if (answer.includes('\r\n\r\n')) setTimeout(done, 50); // the body of a short answer follows at once
    });
    socket.on('error', () => undefined); // the server may reset the unread rest; 'close' follows
    socket.on('close', done);
    socket.write(head.replace(/\n/g, '\r\n'));
    void (async () => {
      for (const chunk of chunks) {
        if (gapMs > 0) await new Promise((wait) => setTimeout(wait, gapMs));
        socket.write(chunk);
      }
    })();
  });
}

/**
 * Sends `head` and the first `first` bytes of `body` on a raw connection to `url`'s port, the rest of the
 * body once the answer is in (as DTM's Go client goes on writing a body the server answered early),
 * then `next`, a second request on the same connection; resolves once the server closed the
 * connection (or 25 s passed: `closed` false) with what it answered and the socket error met, if any
 * (writing to a connection the server closed with unread data in it fails: EPIPE, ECONNRESET).
 */
function rawSendAround(url: string, head: string, body: Buffer, first: number, next: string): Promise<{ answer: string; error?: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
    let answer = '';
    let error: string | undefined;
    let rest: (() => void) | undefined;
    const answered = new Promise<void>((resolveAnswered) => (rest = resolveAnswered));
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ answer, error, closed });
    };
    const timer = setTimeout(() => done(false), 25_000);
    socket.on('data', (data: Buffer) => {
      answer += data.toString('latin1');
      const end = answer.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *(\d+)/i.exec(answer.slice(0, end));
      if (end >= 0 && (length ? answer.length >= end + 4 + Number(length[1]) : answer.endsWith('\r\n0\r\n\r\n'))) rest!(); // the answer's body is in
    });
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
    socket.on('close', () => done(true));
    socket.write(head.replace(/\n/g, '\r\n'));
    socket.write(body.subarray(0, first));
    void (async () => {
      await answered;
      for (let at = first; at < body.length && !socket.destroyed; at += 64 * 1024) {
        await new Promise((written) => socket.write(body.subarray(at, at + 64 * 1024), written));
      }
      if (!socket.destroyed) socket.write(next.replace(/\n/g, '\r\n'));
    })();
  });
}

/** A well-formed W3C traceparent. */
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe.each(ADAPTERS)('decorated branches on %s', (adapter) => {
  let t: BranchApp;
  beforeAll(async () => {
    t = await startBranchApp(adapter);
  });
  afterAll(async () => {
    await t?.close();
  });
  beforeEach(() => t.ledger.reset());

  it('resolves branch names to routes with the global prefix and the URI version', () => {
    const routes = t.app.get(DtmBranchRegistry).all.map((r) => `${r.kind} ${r.name} ${r.http?.method} ${r.http?.path}`);
    expect(routes).toEqual(
      expect.arrayContaining([
        'saga-action transOut POST /api/v1/bank/trans-out',
        'tcc-try inventory POST /api/inventory/try',
        'msg-query-prepared order GET /api/outbox/query-prepared',
        'xa bank POST /api/outbox/xa',
      ]),
    );
    const registry = t.app.get(DtmBranchRegistry);
    expect([registry.target('saga-action', 'transOut', 'http'), registry.target('saga-compensate', 'transOut', 'http'), registry.target('saga-action', 'audit', 'http')]).toEqual([
      `${t.url}/api/v1/bank/trans-out`,
      `${t.url}/api/v1/bank/trans-out-compensate`,
      `${t.url}/api/v1/bank/audit`,
    ]);
  });

  it('warns at start-up that, without app_url, branch URLs use the listening address', () => {
    expect(t.logger.warnings).toContainEqual(expect.stringContaining(`lynx.dtm.app_url is not set: branch URLs use ${t.url}, the address this app listens on`));
  });

  it('logs no start-up warning for pass_through_headers that hold no credential (X-Request-ID, as the Go-Lynx plugin\'s example lists)', () => {
    expect(t.client.config.passThroughHeaders).toEqual(['x-request-id']);
    expect(t.logger.warnings.filter((w) => w.includes('pass_through_headers'))).toEqual([]);
  });

  it('saga success: DTM calls the decorated actions, which get parsed bodies and their branch info', async () => {
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submitAndWait();

    expect(final.status).toBe('succeed');
    expect(final.branches.map((b) => b.status)).toEqual(['prepared', 'succeed', 'prepared', 'succeed']);
    const calls = t.ledger.callsOf(gid);
    expect(firstCalls(calls.map((c) => [c.handler, c.body]))).toEqual([
      ['transOut', { amount: 30 }],
      ['transIn', { amount: 30 }],
    ]);
    expect(calls[0].branch).toMatchObject({ gid, transType: 'saga', branchId: '01', op: 'action' });
    expect(Object.fromEntries(t.ledger.balances)).toEqual({ alice: 70, bob: 30 });
  });

  it('a message (trans_type msg) whose branch is a @SagaAction route: delivered, the handler run once with transType msg (DTM and its SDKs pick a handler by op alone; the call\'s trans_type is not checked against the decorator)', async () => {
    const gid = await t.client.generateGid();
    const final = await t.client.newMsg(gid).add(`${t.url}/api/v1/bank/audit`, { n: 1 }).submitAndWait();
    expect(final.status).toBe('succeed');
    expect(branchLines(final)).toEqual(['01 action succeed']);
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => [c.handler, c.branch.transType, c.branch.op]))).toEqual([['audit', 'msg', 'action']]);
  });

  it('saga rollback: a DtmFailureError is a 409 DTM rolls back on, and the failed step\'s compensation runs too', async () => {
    t.ledger.script('transIn', 'failure');
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submitAndWait();

    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('transIn refused: account frozen');
    expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'succeed', 'succeed', 'failed']);
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.op}`))).toEqual([
      'transOut action',
      'transIn action',
      'transInCompensate compensate',
      'transOutCompensate compensate',
    ]);
  });

  it('a DtmFailureError whose reason holds ONGOING is still a FAILURE to DTM (rolled back, not retried forever), and its reason reads back whole', async () => {
    t.ledger.script('transIn', 'failure-ongoing');
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid).add('transOut', { amount: 30 }).add('transIn', { amount: 30 }).submitAndWait();

    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('transIn refused: review ONGOING');
    expect(final.rawRollbackReason).not.toContain('ONGOING');
    expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'succeed', 'succeed', 'failed']);
  });

  it('TCC by name: the Try runs, then DTM confirms', async () => {
    const gid = await t.client.generateGid();
    const answer = await t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ sku: 'a', qty: 2 }, 'inventory'));
    expect(answer.body).toEqual({ reserved: true });
    const final = await t.client.waitForFinal(gid);

    expect(final.status).toBe('succeed');
    expect(final.branches.map((b) => `${b.op} ${b.status}`)).toEqual(['cancel prepared', 'confirm succeed']);
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => [c.handler, c.branch.op, c.body]))).toEqual([
      ['inventoryTry', 'try', { sku: 'a', qty: 2 }],
      ['inventoryConfirm', 'confirm', { sku: 'a', qty: 2 }],
    ]);
    expect(t.ledger.callsOf(gid)[0].branch.dtm).toBe(t.client.config.serverUrl);
  });

  it('TCC cancel: a Try answering FAILURE makes DTM cancel the branch', async () => {
    t.ledger.script('inventoryTry', 'failure');
    const gid = await t.client.generateGid();
    await expect(t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ sku: 'a' }, 'inventory'))).rejects.toBeInstanceOf(DtmFailureError);
    const final = await t.client.waitForFinal(gid);

    expect(final.status).toBe('failed');
    expect(final.branches.map((b) => `${b.op} ${b.status}`)).toEqual(['cancel succeed', 'confirm prepared']);
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => c.handler))).toEqual(['inventoryTry', 'inventoryCancel']);
  });

  it('a DtmOngoingError is a 425: DTM asks again at the retry interval, then succeeds', async () => {
    t.ledger.script('transIn', 'ongoing');
    const gid = await t.client.generateGid();
    const final = await t.client
      .newSaga(gid, { retryInterval: 1 })
      .add('transOut', { amount: 5 })
      .add('transIn', { amount: 5 })
      .submitAndWait({ timeout: 20 });

    expect(final.status).toBe('succeed');
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => c.handler))).toEqual(['transOut', 'transIn']);
    expect(t.ledger.callsOf(gid).filter((c) => c.handler === 'transIn').length).toBeGreaterThanOrEqual(2); // its answer, then DTM's retry
  });

  /** A saga of 5 whose transIn answers `outcome` once: DTM retries it (at a cron trigger) and the saga succeeds, transIn run twice, the money moved once. */
  async function sagaRetriedOnce(outcome: Outcome): Promise<void> {
    t.ledger.script('transIn', outcome);
    const gid = await t.client.generateGid();
    await t.client.newSaga(gid).add('transOut', { amount: 5 }).add('transIn', { amount: 5 }).submit();
    await waitForCall(t, gid, 'transIn');
    await triggerCron();
    const final = await t.client.waitForFinal(gid, { timeout: 20 });

    expect(final.status).toBe('succeed');
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => c.handler))).toEqual(['transOut', 'transIn']);
    expect(t.ledger.callsOf(gid).filter((c) => c.handler === 'transIn').length).toBeGreaterThanOrEqual(2); // its answer, then DTM's retry
    expect(Object.fromEntries(t.ledger.balances)).toEqual({ alice: 95, bob: 5 });
  }

  it('any other error is a 500: DTM retries the branch, and a retry succeeds', async () => {
    await sagaRetriedOnce('error');
    expect(t.logger.errors.some((e) => e.includes('transIn crashed'))).toBe(true);
  });

  it.each(['throw-no-prototype', 'throw-bad-tostring'] as const)("a handler throwing a value String() cannot convert (%s) is an error DTM retries like any other: a 500, a readable log line and diagnosis, and a retry succeeds (before: the module's own report of it threw, and DTM got no answer)", async (outcome) => {
    await sagaRetriedOnce(outcome);
    const first = t.ledger.calls.find((c) => c.handler === 'transIn')!.branch;
    expect(t.logger.errors.filter((e) => e.includes(`gid ${first.gid}, branch 02, op action`) && e.includes('a value that cannot be converted to text'))).not.toEqual([]);
    expect(recordedBranchFailure(first.gid, first.branchId, 'action')).toMatchObject({ handler: 'BankController.transIn', status: 500, message: 'a value that cannot be converted to text' });
  });

  it('an HttpException of another status whose message holds FAILURE (a 503) is an error DTM retries, not a FAILURE it rolls back on; clients read the message back whole', async () => {
    await sagaRetriedOnce('unavailable-saying-failure');
    // what a client of the route reads: the 503 and the exception's own message, decoded from JSON
    t.ledger.script('transIn', 'unavailable-saying-failure');
    const answer = await fetch(`${t.url}/api/v1/bank/trans-in?${new URLSearchParams({ gid: 'direct-1', trans_type: 'saga', branch_id: '02', op: 'action' })}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 1 }),
    });
    const text = await answer.text();
    expect(answer.status).toBe(503);
    expect(text).not.toMatch(/FAILURE|ONGOING/);
    expect((JSON.parse(text) as { message: string }).message).toBe('transIn: the card gateway answered FAILURE, try later');
  });

  it('a raw submit whose payloads are null and a JSON string reaches the handler with those values', async () => {
    const gid = await t.client.generateGid();
    const submit = await dtmPost('/submit', {
      gid,
      trans_type: 'saga',
      steps: [
        { action: `${t.url}/api/v1/bank/audit`, compensate: '' },
        { action: `${t.url}/api/v1/bank/audit`, compensate: '' },
      ],
      payloads: ['null', '"just a string"'],
    });
    expect(submit.status).toBe(200);
    await waitForTransStatus(gid, 'succeed');
    expect(t.ledger.callsOf(gid).map((c) => c.body)).toEqual([null, 'just a string']);
  });

  it('a call without DTM\'s query parameters answers 400 naming them, and the handler does not run', async () => {
    const res = await fetch(`${t.url}/api/v1/bank/trans-out?gid=g1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 50 }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { message: string };
    expect(body.message).toContain('BankController.transOut is a DTM branch, but this call lacks trans_type, branch_id, op (DTM sends gid, trans_type, branch_id and op: in the query over HTTP');
    expect(t.ledger.calls).toEqual([]);
    expect(Object.fromEntries(t.ledger.balances)).toEqual({ alice: 100, bob: 0 });
  });

  it('a call with an op this branch does not serve answers 400 naming both, and the handler does not run', async () => {
    const call = (path: string, op: string) =>
      fetch(`${t.url}/api/v1/bank/${path}?gid=g1&trans_type=saga&branch_id=01&op=${op}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ amount: 50 }),
      });
    const res = await call('trans-out', 'compensate');
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toContain(
      'BankController.transOut serves op=action, but this call has op=compensate: the URL registered with DTM for op=compensate points at the wrong handler',
    );
    expect((await call('trans-out', '')).status).toBe(400);
    // the op is the caller's: a long one with a line break is shown cut and quoted, not as sent
    const forged = `x\r\n${'y'.repeat(5000)}`;
    const long = await call('trans-out', encodeURIComponent(forged));
    expect(long.status).toBe(400);
    const message = ((await long.json()) as { message: string }).message;
    expect(message).toContain(`but this call has op=${JSON.stringify(`${forged.slice(0, 200)}…`)}: the URL`);
    expect(message.length).toBeLessThan(800);
    expect(message).not.toMatch(/[\r\n]/);
    expect(t.ledger.calls).toEqual([]);
    expect(Object.fromEntries(t.ledger.balances)).toEqual({ alice: 100, bob: 0 });
  });

  it("serves a workflow's calls with the ops that mean the same (rollback for a compensation), and only in a workflow's call", async () => {
    const call = (path: string, transType: string, op: string) =>
      fetch(`${t.url}/api/v1/bank/${path}?gid=g-wf&trans_type=${transType}&branch_id=01&op=${op}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ amount: 5 }),
      });
    expect((await call('trans-out-compensate', 'saga', 'rollback')).status).toBe(400);
    expect(t.ledger.calls).toEqual([]);
    expect((await call('trans-out-compensate', 'workflow', 'rollback')).status).toBe(200);
    expect((await call('trans-out', 'workflow', 'action')).status).toBe(200);
    expect((await call('trans-out', 'workflow', 'commit')).status).toBe(400);
    expect(t.ledger.calls.map((c) => `${c.handler} ${c.branch.transType} ${c.branch.op}`)).toEqual(['transOutCompensate workflow rollback', 'transOut workflow action']);
  });

  it('answers 200, not Nest\'s 201, and refuses a success body DTM would misread', async () => {
    const ok = await fetch(`${t.url}/api/v1/bank/audit?gid=g2&trans_type=saga&branch_id=01&op=action`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(ok.status).toBe(200);
    const chatty = await fetch(`${t.url}/api/v1/bank/chatty?gid=g3&trans_type=saga&branch_id=01&op=action`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(chatty.status).toBe(500);
    const text = await chatty.text();
    expect(text).not.toMatch(/FAILURE|ONGOING/);
    expect(t.logger.errors.some((e) => e.includes('BankController.chatty answered 200 with a body containing FAILURE or ONGOING'))).toBe(true);
  });

  it('a handler answering { dtm_result: \'FAILURE\' } (DTM\'s result protocol before v1.10) answers FAILURE, as DTM reads it in production, not a 500 retried forever: the saga rolls back with its message', async () => {
    const direct = await fetch(`${t.url}/api/v1/bank/old-protocol?gid=g5&trans_type=saga&branch_id=01&op=action`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(direct.status).toBe(409);
    expect(await direct.json()).toEqual({ dtm_result: 'FAILURE', message: 'card declined' });
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid, { retryInterval: 1 }).add('transOut', { amount: 3 }).add('oldProtocol', {}).submitAndWait({ timeout: 20 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('card declined');
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => c.handler))).toEqual(['transOut', 'oldProtocol', 'transOutCompensate']);
  });

  it('a handler answering with an Observable that completes without a value answers 200 with no body (not a 500): the saga succeeds at the first call', async () => {
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid, { retryInterval: 1 }).add('quiet', { amount: 1 }).submitAndWait({ timeout: 9 });
    expect(final.status).toBe('succeed');
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => c.handler))).toEqual(['quiet']);
    const direct = await fetch(`${t.url}/api/v1/bank/quiet?gid=g4&trans_type=saga&branch_id=01&op=action`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect([direct.status, await direct.text()]).toEqual([200, '']);
  });

  it('warns, naming the handler, when a compensation throws DtmFailureError (DTM can only retry it)', async () => {
    t.ledger.script('transInCompensate', 'failure');
    t.ledger.script('transIn', 'failure');
    const gid = await t.client.generateGid();
    await t.client.newSaga(gid).add('transOut', { amount: 5 }).add('transIn', { amount: 5 }).submit();
    await waitForCall(t, gid, 'transInCompensate');
    await triggerCron();
    const final = await t.client.waitForFinal(gid, { timeout: 20 });

    expect(final.status).toBe('failed');
    expect(t.ledger.callsOf(gid).filter((c) => c.handler === 'transInCompensate').length).toBeGreaterThanOrEqual(2); // its failure, then the cron's retry (at least once each: the shared DTM may call again)
    expect(t.logger.warnings.some((w) => w.includes(`BankController.transInCompensate (saga-compensate, saga gid ${gid}, branch 02, op compensate) threw DtmFailureError`))).toBe(true);
  });

  it('passes allow-listed headers (and trace context) to every branch, a cron retry included; nothing else', async () => {
    t.ledger.script('transIn', 'error');
    const gid = await t.client.generateGid();
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const started = await fetch(`${t.url}/api/start/transfer`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-request-id': 'req-7',
        traceparent,
        'x-secret': 'do-not-forward',
        authorization: 'Bearer token',
        cookie: 'session=1',
      },
      body: JSON.stringify({ gid, amount: 3 }),
    });
    expect(started.status).toBe(200);
    await waitForCall(t, gid, 'transIn');
    await triggerCron();
    await t.client.waitForFinal(gid, { timeout: 20 });

    const calls = t.ledger.callsOf(gid);
    expect(firstCalls(calls.map((c) => c.handler))).toEqual(['transOut', 'transIn']);
    expect(calls.filter((c) => c.handler === 'transIn').length).toBeGreaterThanOrEqual(2); // its error, then the cron's retry
    for (const call of calls) {
      expect(call.headers['x-request-id']).toBe('req-7');
      expect(call.headers.traceparent).toBe(traceparent);
      expect(call.headers['x-secret']).toBeUndefined();
      expect(call.headers.authorization).toBeUndefined();
      expect(call.headers.cookie).toBeUndefined();
      expect(call.branch.headers).toEqual({ 'x-request-id': 'req-7', traceparent });
    }
    expect((await queryTrans(gid)).transaction?.branch_headers).toEqual({ 'x-request-id': 'req-7', traceparent });
  });

  it('passes them on the module\'s own Try call too', async () => {
    const gid = await t.client.generateGid();
    const res = await fetch(`${t.url}/api/start/reserve`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'req-8', 'x-secret': 'no' },
      body: JSON.stringify({ gid }),
    });
    expect(res.status).toBe(200);
    await waitForTransStatus(gid, 'succeed');
    const [tryCall, confirmCall] = t.ledger.callsOf(gid);
    expect(tryCall.handler).toBe('inventoryTry');
    expect(tryCall.headers['x-request-id']).toBe('req-8');
    expect(confirmCall.headers['x-request-id']).toBe('req-8');
    expect(tryCall.headers['x-secret']).toBeUndefined();
  });

  it('outside a request nothing is captured, and explicit branchHeaders win', async () => {
    const [explicit, none] = [await t.client.generateGid(), await t.client.generateGid()];
    const withHeaders = await t.client.newSaga(explicit, { branchHeaders: { 'x-request-id': 'explicit' } }).add('audit', {}).submitAndWait();
    const without = await t.client.newSaga(none).add('audit', {}).submitAndWait();
    expect(withHeaders.transaction.options.branchHeaders).toEqual({ 'x-request-id': 'explicit' });
    expect(without.transaction.options.branchHeaders).toEqual({});
    expect(t.ledger.callsOf(explicit)[0].headers['x-request-id']).toBe('explicit');
    expect(t.ledger.callsOf(none)[0].headers['x-request-id']).toBeUndefined();
  });

  it('nested TCC: a Try registers sub-branches 0101 and 0102 of its branch, DTM confirms all three', async () => {
    const gid = await t.client.generateGid();
    await t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ items: ['a', 'b'] }, 'order'));
    const final = await t.client.waitForFinal(gid);

    expect(final.status).toBe('succeed');
    expect(branchLines(final)).toEqual([
      '01 cancel prepared',
      '01 confirm succeed',
      '0101 cancel prepared',
      '0101 confirm succeed',
      '0102 cancel prepared',
      '0102 confirm succeed',
    ]);
    const tries = t.ledger.callsOf(gid).filter((c) => c.branch.op === 'try');
    expect(tries.map((c) => `${c.handler} ${c.branch.branchId}`)).toEqual(['orderTry 01', 'inventoryTry 0101', 'inventoryTry 0102']);
  });

  it('a Try call naming another DTM server (dtm=): its nested sub-branch is registered with the configured one; nothing reaches the named one', async () => {
    const trap = await startTrap();
    try {
      const gid = await t.client.generateGid();
      expect((await dtmPost('/prepare', { gid, trans_type: 'tcc' })).status).toBe(200);
      const query = new URLSearchParams({ gid, trans_type: 'tcc', branch_id: '01', op: 'try', dtm: trap.url });
      const res = await fetch(`${t.url}/api/inventory/order-try?${query}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ items: ['a'] }),
      });
      expect(res.status).toBe(200);
      expect([trap.connections, trap.received]).toEqual([0, '']);
      expect(branchLines((await t.client.query(gid))!)).toEqual(['0101 cancel prepared', '0101 confirm prepared']);
      const [subTry] = t.ledger.callsOf(gid).filter((c) => c.handler === 'inventoryTry');
      expect(subTry.branch).toMatchObject({ branchId: '0101', op: 'try', dtm: dtm.info.serverUrl });
      expect(t.logger.warnings).toContainEqual(expect.stringContaining(`a branch call named "${trap.url}" as its DTM server`));

      expect((await dtmPost('/submit', { gid, trans_type: 'tcc' })).status).toBe(200);
      await waitForTransStatus(gid, 'succeed');
      expect(firstCalls(t.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.branchId}`))).toEqual(['orderTry 01', 'inventoryTry 0101', 'inventoryConfirm 0101']);
      expect(trap.connections).toBe(0);
    } finally {
      await trap.close();
    }
  });

  it('an undecorated route keeps the app\'s own body parsing: a text/plain POST with a branch call\'s query is not parsed by the module', async () => {
    const res = await fetch(`${t.url}/api/start/echo?gid=g-csrf&trans_type=saga&branch_id=01&op=action`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ amount: 1 }),
    });
    expect(res.status).toBe(200);
    const { received } = (await res.json()) as { received: unknown };
    // Express's JSON parser skips text/plain; Fastify's own text parser gives the text
    expect(received).toEqual(adapter === 'fastify' ? '{"amount":1}' : 'nothing');
  });

  it('a branch call body that arrives in several pieces is read whole, as is one that arrives at once', async () => {
    const body = JSON.stringify({ amount: 7, note: 'é'.repeat(3000) }); // a 2-byte character cut between two pieces
    const bytes = Buffer.from(body);
    const head = (gid: string) =>
      `POST /api/v1/bank/audit?gid=${gid}&trans_type=saga&branch_id=01&op=action HTTP/1.1\nHost: app\nContent-Type: application/json\nContent-Length: ${bytes.length}\nConnection: close\n\n`;
    const pieces = [bytes.subarray(0, 1001), bytes.subarray(1001, 4001), bytes.subarray(4001)];
    expect(await rawExchange(t.url, head('g-pieces'), pieces, 30)).toMatch(/^HTTP\/1\.1 200 /);
    expect(await rawExchange(t.url, head('g-whole'), [bytes])).toMatch(/^HTTP\/1\.1 200 /);
    expect(t.ledger.calls.map((c) => [c.branch.gid, c.body])).toEqual([
      ['g-pieces', JSON.parse(body)],
      ['g-whole', JSON.parse(body)],
    ]);
  });

  it('a branch call whose Content-Length is over the limit is answered before its body is read (an action FAILURE, a compensation success, another op 413: by op, whatever the trans_type); the handler does not run', async () => {
    const call = (path: string, op: string, transType = 'saga', gid = 'g-big') =>
      rawExchange(t.url, `POST /api/v1/bank/${path}?gid=${gid}&trans_type=${transType}&branch_id=01&op=${op} HTTP/1.1\nHost: app\nContent-Type: application/json\nContent-Length: ${2 * MAX_BRANCH_BODY}\n\n`); // no byte of the body is ever sent
    const action = await call('audit', 'action');
    expect(action).toMatch(/^HTTP\/1\.1 409 /);
    expect(action).toContain(`{"dtm_result":"FAILURE","message":"a DTM branch call's body may be at most ${MAX_BRANCH_BODY} bytes`);
    expect(await call('trans-out-compensate', 'compensate')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await call('audit', 'confirm')).toMatch(/^HTTP\/1\.1 413 /);
    expect(t.ledger.calls).toEqual([]);
    // no hook, span or metric sees such a call (it never reaches Nest): one warning per call says what happened
    const warned = t.logger.warnings.filter((w) => w.includes('gid g-big'));
    expect(warned).toEqual([
      `a DTM branch call to /api/v1/bank/audit (gid g-big, branch 01, op action) was answered 409 before Nest routed it: its body, ${2 * MAX_BRANCH_BODY} bytes, is over the ${MAX_BRANCH_BODY} bytes a branch call's body may have (no guard, handler, hook, span or metric of the app sees it); FAILURE: DTM rolls the transaction back. Send less (an id of the data, not the data)`,
      expect.stringContaining('/api/v1/bank/trans-out-compensate (gid g-big, branch 01, op compensate) was answered 200 before Nest routed it'),
      expect.stringContaining('/api/v1/bank/audit (gid g-big, branch 01, op confirm) was answered 413 before Nest routed it'),
    ]);
    expect(warned[1]).toContain('success without running the handler (its action was refused the same way)');
    expect(warned[2]).toContain('DTM retries it');
    // a message branch's op is action too: FAILURE, which DTM retries (a message has no rollback), and the warning says so
    expect(await call('audit', 'action', 'msg', 'g-big-msg')).toMatch(/^HTTP\/1\.1 409 /);
    expect(t.logger.warnings.filter((w) => w.includes('gid g-big-msg'))).toEqual([expect.stringContaining('was answered 409 before Nest routed it')]);
    expect(t.logger.warnings.find((w) => w.includes('gid g-big-msg'))).toContain('FAILURE, which DTM retries for ever: a message has no rollback');
  });

  it('a saga step whose payload is over the limit ends failed with the limit as reason (its action answered FAILURE, its compensation success, neither handler run), not retried for ever', async () => {
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid, { retryInterval: 1 }).add('transOut', { amount: 5, pad: 'x'.repeat(MAX_BRANCH_BODY) }).submitAndWait({ timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain(`a DTM branch call's body may be at most ${MAX_BRANCH_BODY} bytes`);
    // what the caller reads says what to do: the limit is the module's, no setting raises it
    expect(final.rollbackReason).toContain('(a fixed limit of nestjs-dtm, no setting raises it); this one is larger, and was not read: send less in the step (an id or a URL of the data, not the data)');
    expect(branchLines(final)).toEqual(['01 compensate succeed', '01 action failed']);
    expect(t.ledger.calls).toEqual([]);
  }, 30_000);

  it('a saga step whose payload is over the limit ends failed at DTM\'s first call of each op, with DTM\'s default retry interval: the answer reaches DTM', async () => {
    const gid = await t.client.generateGid();
    const seen: string[] = [];
    const server = t.app.getHttpServer() as import('node:http').Server;
    const onRequest = (req: import('node:http').IncomingMessage) => {
      if (req.url?.includes(`gid=${gid}`)) seen.push(new URL(req.url, 'http://app').searchParams.get('op')!);
    };
    server.on('request', onRequest);
    try {
      // no retryInterval: DTM's default, 10 s, then 20 s ...; a lost answer is called again only then. Read
      // with the harness's /query: DTM's answer holds the payload of each op, more than the client reads (each
      // read of several MiB, slow on a busy machine: the wait is generous, DTM's own clock says when it ended)
      await t.client.newSaga(gid).add('transOut', { amount: 5, pad: 'x'.repeat(4 * MAX_BRANCH_BODY) }).submit();
      const final = await waitForTransStatus(gid, ['failed', 'succeed'], 25_000);
      expect([final.transaction?.status, final.transaction?.rollback_reason]).toEqual(['failed', expect.stringContaining(`a DTM branch call's body may be at most ${MAX_BRANCH_BODY} bytes`)]);
      expect(final.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 compensate succeed', '01 action failed']);
      // DTM ended the saga less than its 10 s retry interval after taking it: each op's answer reached DTM at its first
      // call. Its calls: the action, then its compensation; more only if another test file's /resetCronTime had DTM's
      // cron run the saga again meanwhile (at least once)
      const { create_time: created, rollback_time: rolledBack } = final.transaction!;
      expect(Date.parse(rolledBack!) - Date.parse(created)).toBeLessThan(10_000);
      expect(seen.join(', ')).toMatch(/^(action, )+compensate(, compensate)*$/);
    } finally {
      server.off('request', onRequest);
    }
    expect(t.ledger.calls).toEqual([]);
  }, 40_000);

  it('a chunked branch call body (a proxy re-chunked it) is cut once it passes the limit and answered as above (an action FAILURE, a compensation success, another op 413); the handler does not run', async () => {
    const size = MAX_BRANCH_BODY + 4096;
    const chunk = Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), Buffer.alloc(size, 0x61), Buffer.from('\r\n')]);
    const call = (path: string, op: string) =>
      rawExchange(t.url, `POST /api/v1/bank/${path}?gid=g-chunked&trans_type=saga&branch_id=01&op=${op} HTTP/1.1\nHost: app\nContent-Type: application/json\nTransfer-Encoding: chunked\n\n`, [chunk]); // the last chunk is never sent: the request never ends
    const action = await call('audit', 'action');
    expect(action).toMatch(/^HTTP\/1\.1 409 /);
    expect(action).toContain(`{"dtm_result":"FAILURE","message":"a DTM branch call's body may be at most ${MAX_BRANCH_BODY} bytes`);
    expect(await call('trans-out-compensate', 'compensate')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await call('audit', 'confirm')).toMatch(/^HTTP\/1\.1 413 /);
    expect(t.ledger.calls).toEqual([]);
    expect(t.logger.warnings.filter((w) => w.includes('gid g-chunked')).map((w) => w.replace(/ \(gid.*?\) /, ' '))).toEqual(
      [['audit', 409], ['trans-out-compensate', 200], ['audit', 413]].map(([path, status]) => expect.stringContaining(`a DTM branch call to /api/v1/bank/${path} was answered ${status} before Nest routed it: its body, more than ${MAX_BRANCH_BODY} bytes (sent chunked), is over`)),
    );
  });

  it.each([
    ['with Content-Length', (bytes: Buffer) => [`Content-Length: ${bytes.length}`, bytes] as const],
    ['chunked', (bytes: Buffer) => ['Transfer-Encoding: chunked', Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n0\r\n\r\n')])] as const],
  ])('at the limit (%s): a body of the limit less one byte and one of exactly the limit are read and run the handler, one byte more is answered FAILURE, as the message says ("at most N bytes")', async (_how, framed) => {
    const frame = JSON.stringify({ amount: 1, pad: '' }).length;
    const json = (size: number) => Buffer.from(JSON.stringify({ amount: 1, pad: 'x'.repeat(size - frame) }));
    const answers: string[] = [];
    for (const size of [MAX_BRANCH_BODY - 1, MAX_BRANCH_BODY, MAX_BRANCH_BODY + 1]) {
      expect(json(size).length).toBe(size);
      const [header, body] = framed(json(size));
      const answer = await rawExchange(t.url, `POST /api/v1/bank/audit?gid=g-edge-${size}&trans_type=saga&branch_id=01&op=action HTTP/1.1\nHost: app\nContent-Type: application/json\n${header}\nConnection: close\n\n`, [body]);
      answers.push(`${size - MAX_BRANCH_BODY} ${/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]}`);
      if (size > MAX_BRANCH_BODY) expect(answer).toContain(`{"dtm_result":"FAILURE","message":"a DTM branch call's body may be at most ${MAX_BRANCH_BODY} bytes`);
    }
    expect(answers).toEqual(['-1 200', '0 200', '1 409']);
    expect(t.ledger.calls.map((c) => [c.branch.gid, (c.body as { pad: string }).pad.length])).toEqual([
      [`g-edge-${MAX_BRANCH_BODY - 1}`, MAX_BRANCH_BODY - 1 - frame],
      [`g-edge-${MAX_BRANCH_BODY}`, MAX_BRANCH_BODY - frame],
    ]);
  });

  it.each([
    ['with Content-Length', (size: number) => [`Content-Length: ${size}`, Buffer.alloc(size, 0x61)] as const],
    ['chunked', (size: number) => ['Transfer-Encoding: chunked', Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), Buffer.alloc(size, 0x61), Buffer.from('\r\n0\r\n\r\n')])] as const],
  ])('a body over the limit (%s) whose sender goes on writing it after the answer came is read to its end and dropped, not reset: the connection serves the next request', async (_how, framed) => {
    const [header, body] = framed(2 * MAX_BRANCH_BODY);
    const call = (path: string, op: string) =>
      rawSendAround(t.url, `POST /api/v1/bank/${path}?gid=g-whole-big&trans_type=saga&branch_id=01&op=${op} HTTP/1.1\nHost: app\nContent-Type: application/json\n${header}\n\n`, body, MAX_BRANCH_BODY + 64 * 1024, 'GET /api/no-such-route HTTP/1.1\nHost: app\nConnection: close\n\n');
    const answers = (exchange: { answer: string }) => exchange.answer.match(/HTTP\/1\.1 \d{3}(?= )/g);
    const action = await call('audit', 'action');
    expect([action.error, answers(action)]).toEqual([undefined, ['HTTP/1.1 409', 'HTTP/1.1 404']]);
    expect(action.answer).toContain(`{"dtm_result":"FAILURE","message":"a DTM branch call's body may be at most ${MAX_BRANCH_BODY} bytes`);
    const compensate = await call('trans-out-compensate', 'compensate');
    expect([compensate.error, answers(compensate)]).toEqual([undefined, ['HTTP/1.1 200', 'HTTP/1.1 404']]);
    const confirm = await call('audit', 'confirm');
    expect([confirm.error, answers(confirm)]).toEqual([undefined, ['HTTP/1.1 413', 'HTTP/1.1 404']]);
    expect(t.ledger.calls).toEqual([]);
  });

  it.each([
    ['with Content-Length', (size: number) => [`Content-Length: ${size}`, Buffer.alloc(size, 0x61)] as const],
    ['chunked', (size: number) => ['Transfer-Encoding: chunked', Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), Buffer.alloc(size, 0x61), Buffer.from('\r\n0\r\n\r\n')])] as const],
  ])('a body over the limit (%s) is read and dropped up to 8 MiB only: a sender going beyond is cut after its answer, and the connection serves nothing more', async (_how, framed) => {
    const [header, body] = framed(8 * MAX_BRANCH_BODY + 64 * 1024);
    const exchange = await rawSendAround(t.url, `POST /api/v1/bank/audit?gid=g-huge&trans_type=saga&branch_id=01&op=action HTTP/1.1\nHost: app\nContent-Type: application/json\n${header}\n\n`, body, MAX_BRANCH_BODY + 64 * 1024, 'GET /api/no-such-route HTTP/1.1\nHost: app\nConnection: close\n\n');
    expect(exchange.answer.match(/HTTP\/1\.1 \d{3}(?= )/g)).toEqual(['HTTP/1.1 409']);
    expect(exchange.answer).toContain(`{"dtm_result":"FAILURE","message":"a DTM branch call's body may be at most ${MAX_BRANCH_BODY} bytes`);
    expect(t.ledger.calls).toEqual([]);
  });

  it('a sender that stops sending a body over the limit after its answer is cut within 10 s, not waited for for ever', async () => {
    const exchange = await rawSendAround(t.url, `POST /api/v1/bank/audit?gid=g-stalled&trans_type=saga&branch_id=01&op=action HTTP/1.1\nHost: app\nContent-Type: application/json\nContent-Length: ${2 * MAX_BRANCH_BODY}\n\n`, Buffer.alloc(MAX_BRANCH_BODY + 64 * 1024, 0x61), MAX_BRANCH_BODY + 64 * 1024, '');
    expect([exchange.closed, exchange.answer.match(/HTTP\/1\.1 \d{3}(?= )/g)]).toEqual([true, ['HTTP/1.1 409']]);
    expect(t.ledger.calls).toEqual([]);
  }, 40_000);

  it('passes on only well-formed W3C trace context: a malformed or oversized traceparent / tracestate is dropped, not stored in DTM', async () => {
    const cases: [Record<string, string>, Record<string, string>][] = [
      [{ traceparent: `00-${'junk'.repeat(1500)}` }, {}],
      [{ traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01', tracestate: 'vendor=ok' }, {}],
      [{ traceparent: TRACEPARENT, tracestate: `vendor=${'x'.repeat(600)}` }, { traceparent: TRACEPARENT }],
      [{ traceparent: TRACEPARENT, tracestate: 'vendor=ok,Bad Key=1' }, { traceparent: TRACEPARENT }],
      [{ tracestate: 'vendor=ok' }, {}],
      [{ traceparent: TRACEPARENT, tracestate: 'congo=t61rcWkgMzE, rojo=00f067aa0ba902b7' }, { traceparent: TRACEPARENT, tracestate: 'congo=t61rcWkgMzE, rojo=00f067aa0ba902b7' }],
    ];
    for (const [sent, forwarded] of cases) {
      const gid = await t.client.generateGid();
      const res = await fetch(`${t.url}/api/start/transfer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'req-tc', ...sent },
        body: JSON.stringify({ gid, amount: 1 }),
      });
      expect(res.status).toBe(200);
      await waitForTransStatus(gid, 'succeed');
      const expected = { 'x-request-id': 'req-tc', ...forwarded };
      expect((await queryTrans(gid)).transaction?.branch_headers).toEqual(expected);
      for (const call of t.ledger.callsOf(gid)) expect(call.branch.headers).toEqual(expected);
    }
  });

  it('msg and XA by name: DTM calls the decorated message branch, back-check and XA route', async () => {
    const msgGid = await t.client.generateGid();
    await t.client.newMsg(msgGid, { timeoutToFail: 1, retryInterval: 1 }).add('notify', { n: 1 }).prepare('order');
    const delivered = await t.client.waitForFinal(msgGid, { timeout: 20 });
    expect(delivered.status).toBe('succeed');
    expect(firstCalls(t.ledger.callsOf(msgGid).map((c) => `${c.handler} ${c.branch.op}`))).toEqual(['queryPrepared msg', 'notify action']);

    // XA by name; the branch registers itself with DTM like DTM's Go SDK does (local XA work: a later issue)
    const xaGid = await t.client.generateGid();
    await t.client.xaGlobalTransaction(xaGid, (xa) => xa.callBranch({ amount: 1 }, 'bank'));
    await waitForTransStatus(xaGid, 'succeed');
    expect(firstCalls(t.ledger.callsOf(xaGid).map((c) => `${c.handler} ${c.branch.phase2Url ?? '-'}`))).toEqual([
      `xa-action ${t.url}/api/outbox/xa`,
      'xa-commit -',
    ]);
    expect(t.ledger.callsOf(xaGid).find((c) => c.handler === 'xa-commit')?.body).toBeUndefined(); // DTM's phase 2 has an empty body
  });
});

async function waitForCall(t: BranchApp, gid: string, handler: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!t.ledger.callsOf(gid).some((c) => c.handler === handler)) {
    if (Date.now() > deadline) throw new Error(`${handler} of ${gid} was not called`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('branch URLs and header allow-list settings', () => {
  it('app_url is the base of every resolved branch URL', async () => {
    const t = await startBranchApp('express', { appUrl: 'http://orders.internal:8080' });
    try {
      const registry = t.app.get(DtmBranchRegistry);
      expect([registry.target('saga-action', 'transOut', 'http'), registry.target('saga-compensate', 'transOut', 'http')]).toEqual([
        'http://orders.internal:8080/api/v1/bank/trans-out',
        'http://orders.internal:8080/api/v1/bank/trans-out-compensate',
      ]);
      // orders.internal resolves nowhere here: that start-up warning aside, none about app_url
      expect(t.logger.warnings.filter((w) => w.includes('app_url') && !w.includes('does not resolve here'))).toEqual([]);
      expect(t.logger.warnings.filter((w) => w.includes('does not resolve here'))).toEqual([expect.stringContaining('lynx.dtm.app_url names orders.internal, which does not resolve here (ENOTFOUND)')]);
    } finally {
      await t.close();
    }
  });

  it('the app\'s own body limit holds on an undecorated route, whatever its query', async () => {
    const t = await startBranchApp('express');
    try {
      const big = JSON.stringify({ pad: 'x'.repeat(200 * 1024) }); // over Express's default 100 kB, under the module's 1 MiB
      const res = await fetch(`${t.url}/api/start/echo?gid=g-limit&trans_type=saga&branch_id=01&op=action`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
      expect(res.status).toBe(413);
    } finally {
      await t.close();
    }
  });

  it('refuses at start-up a framing or connection header in pass_through_headers (Host, Content-Length, ...), naming the setting', async () => {
    for (const header of ['Host', 'Content-Length', 'transfer-encoding', 'Proxy-Authorization']) {
      const failed = await startBranchApp('express', { passThroughHeaders: ['X-Request-ID', header] }).then(
        async (t) => {
          await t.close();
          return undefined;
        },
        (err: unknown) => err,
      );
      expect(failed).toBeInstanceOf(DtmConfigError);
      expect((failed as DtmConfigError).problems).toEqual([{ path: 'config.passThroughHeaders', message: expect.stringContaining(`must not list ${header}: framing, connection and proxy headers`) }]);
    }
  });

  it('explicit branchHeaders win over a pass-through header of the same name in another spelling: DTM stores one, the branch gets it', async () => {
    const t = await startBranchApp('fastify', { passThroughHeaders: ['X-Request-ID', 'X-Tenant'] });
    try {
      const gid = await t.client.generateGid();
      const res = await fetch(`${t.url}/api/start/audit-as`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-tenant': 'inbound', 'x-request-id': 'req-t' },
        body: JSON.stringify({ gid, tenant: 'explicit' }),
      });
      expect(res.status).toBe(200);
      await waitForTransStatus(gid, 'succeed');
      expect((await queryTrans(gid)).transaction?.branch_headers).toEqual({ 'x-request-id': 'req-t', 'X-Tenant': 'explicit' });
      const [audit] = t.ledger.callsOf(gid);
      expect(audit.headers['x-tenant']).toBe('explicit');
    } finally {
      await t.close();
    }
  });

  it('pass_trace_context: false passes on no trace context', async () => {
    const t = await startBranchApp('express', { passTraceContext: false });
    try {
      const gid = await t.client.generateGid();
      const res = await fetch(`${t.url}/api/start/transfer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'req-nt', traceparent: TRACEPARENT, tracestate: 'vendor=ok' },
        body: JSON.stringify({ gid, amount: 1 }),
      });
      expect(res.status).toBe(200);
      await waitForTransStatus(gid, 'succeed');
      expect((await queryTrans(gid)).transaction?.branch_headers).toEqual({ 'x-request-id': 'req-nt' });
      for (const call of t.ledger.callsOf(gid)) expect(call.headers.traceparent).toBeUndefined();
    } finally {
      await t.close();
    }
  });

  it('Authorization is passed on only when listed, with a warning at start-up that DTM stores it and returns it through its API', async () => {
    const t = await startBranchApp('fastify', { passThroughHeaders: ['Authorization', 'X-Tenant', 'X-Api-Key'] });
    try {
      expect(t.logger.warnings).toContainEqual(expect.stringContaining('lynx.dtm.pass_through_headers forwards authorization, x-api-key of the request being served to every branch'));
      expect(t.logger.warnings.filter((w) => w.includes('pass_through_headers forwards'))).toHaveLength(1);
      const gid = await t.client.generateGid();
      const res = await fetch(`${t.url}/api/start/reserve`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer abc', 'x-request-id': 'not-listed-here' },
        body: JSON.stringify({ gid }),
      });
      expect(res.status).toBe(200);
      await waitForTransStatus(gid, 'succeed');
      for (const call of t.ledger.callsOf(gid)) {
        expect(call.headers.authorization).toBe('Bearer abc');
        expect(call.headers['x-request-id']).toBeUndefined();
      }
      // what the warning is about: anyone who can read DTM's API reads the token
      expect((await queryTrans(gid)).transaction?.branch_headers).toEqual({ authorization: 'Bearer abc' });
    } finally {
      await t.close();
    }
  });

  it("an app_url on this host's loopback at a port the app does not listen on (a newcomer's typo, or a port changed in one place): a start-up warning names both ports (IPv4, IPv6, localhost; the scheme's default port); none for another host", async () => {
    const wrong = await startBranchApp('express', { appUrl: 'http://localhost:9' });
    const port = Number(new URL(wrong.url).port);
    try {
      expect(wrong.logger.warnings.filter((w) => w.includes('lynx.dtm.app_url'))).toEqual([
        `lynx.dtm.app_url (http://localhost:9) names this host's loopback at port 9, but the app listens on port ${port}: DTM would call every branch where nothing of this app answers (connection refused, retried forever), unless a proxy on this host forwards that port to the app; set app_url's port to ${port} (and its host to this service's address as DTM sees it, when DTM runs elsewhere)`,
      ]);
    } finally {
      await wrong.close();
    }
    for (const appUrl of ['http://bank.internal:9', 'http://[::1]:9', 'https://127.0.0.2']) {
      const t = await startBranchApp('express', { appUrl });
      try {
        expect(t.logger.warnings.filter((w) => w.includes("names this host's loopback"))).toEqual(appUrl.includes('bank.internal') ? [] : [expect.stringContaining(`but the app listens on port ${new URL(t.url).port}`)]);
      } finally {
        await t.close();
      }
    }
  });

  it("an app_url / grpc_app_address on this host's loopback while server_url names another host (DTM in another container or host, the app_url copied from a local set-up): a start-up warning names the key, the loopback and DTM's host; none when DTM is on the loopback too", async () => {
    const remote = await startBranchApp('express', { serverUrl: 'http://dtm.example:36789/api/dtmsvr', appUrl: 'http://127.0.0.1:9', grpcAppAddress: 'localhost:50051' });
    try {
      expect(remote.logger.warnings.filter((w) => w.includes("this host's loopback, while DTM"))).toEqual([
        "lynx.dtm.app_url names 127.0.0.1, this host's loopback, while DTM is at dtm.example (lynx.dtm.server_url): DTM calling 127.0.0.1 reaches its own host, not this app, so every branch call fails and is retried forever, unless DTM runs on this host under that name; set app_url to this service's address as DTM sees it (its host name or IP; from a DTM container, host.docker.internal for an app on the Docker host)",
        expect.stringMatching(/^lynx\.dtm\.grpc_app_address names localhost, this host's loopback, while DTM is at dtm\.example/),
      ]);
    } finally {
      await remote.close();
    }
    const local = await startBranchApp('express', { appUrl: 'http://127.0.0.1:9', grpcAppAddress: 'localhost:50051' });
    try {
      expect(local.logger.warnings.filter((w) => w.includes("this host's loopback, while DTM"))).toEqual([]);
    } finally {
      await local.close();
    }
  });

  it('an app_url with credentials (publish_branches off) warns at start-up that DTM stores them in every branch URL, without showing them', async () => {
    const t = await startBranchApp('express', { appUrl: 'http://bank:s3cret-pw@bank.internal:3000' });
    try {
      expect(t.logger.warnings.filter((w) => w.includes('lynx.dtm.app_url') && !w.includes('does not resolve here'))).toEqual([expect.stringContaining('lynx.dtm.app_url (http://***@bank.internal:3000) holds credentials (user:password@): they are in every branch URL')]);
      expect(t.logger.warnings.filter((w) => w.includes('s3cret'))).toEqual([]);
    } finally {
      await t.close();
    }
  });
});

// the start-up validation that needs no server is in test/unit/branch-registry.spec.ts
describe('start-up validation of decorated branches', () => {
  it('an unknown name used in a transaction is a typed error listing the known names', async () => {
    const t = await startBranchApp('express');
    try {
      expect(() => t.client.newSaga('g').add('transfer', {})).toThrow(DtmUsageError);
      expect(() => t.client.newSaga('g').add('transfer', {})).toThrow('no @SagaAction branch named "transfer" (known: transOut, transIn, credit, audit, quiet, oldProtocol, chatty)');
      await expect(t.client.tccGlobalTransaction(await t.client.generateGid(), (tcc) => tcc.callBranch({}, 'stock'))).rejects.toThrow(
        'no @TccTry branch named "stock" (known: inventory, order, bundle)',
      );
    } finally {
      await t.close();
    }
  });
});

/** A controller with decorated branches that no module lists (the newcomer's forgotten `controllers: [...]`). */
@Controller('unlisted')
class UnlistedBankController {
  @Post('pay')
  @SagaAction('unlisted.pay')
  pay() {}

  @Post('refund')
  @SagaCompensate('unlisted.pay')
  refund() {}
}

describe('a decorated branch whose controller no module lists', () => {
  it("is named in the unknown name's error, which says to list its class in a module's controllers", async () => {
    expect(UnlistedBankController.name).toBe('UnlistedBankController'); // defined (decorated) in this process, in no module
    const t = await startBranchApp('express');
    try {
      expect(() => t.client.newSaga('g').add('unlisted.pay', {})).toThrow(DtmUsageError);
      expect(() => t.client.newSaga('g').add('unlisted.pay', {})).toThrow(
        'no @SagaAction branch named "unlisted.pay" among the controllers of this app (known: transOut, transIn, credit, audit, quiet, oldProtocol, chatty): UnlistedBankController.pay is decorated @SagaAction(\'unlisted.pay\'), but Nest never created UnlistedBankController as a controller; list it in the controllers of a module the app imports (not in providers)',
      );
    } finally {
      await t.close();
    }
  });
});

describe('the branch manifest, read by anyone who reaches the app', () => {
  it.each(ADAPTERS)("never shows app_url's credentials (%s): publish_branches with an app_url that holds some fails start-up, naming app_url, without them", async (adapter) => {
    const started = await startBranchApp(adapter, { appUrl: 'http://dtm-caller:s3cret-pw@127.0.0.1:9', publishBranches: true }).catch((err: unknown) => err);
    let manifest: string | undefined;
    if (!(started instanceof Error)) {
      const t = started as BranchApp;
      try {
        manifest = await (await fetch(`${t.url}/dtm/branches`)).text(); // what an attacker would read
      } finally {
        await t.close();
      }
    }
    expect(manifest).toBeUndefined();
    expect(started).toBeInstanceOf(DtmConfigError);
    const problems = (started as DtmConfigError).problems;
    expect(problems).toEqual([expect.objectContaining({ path: 'lynx.dtm.app_url', message: expect.stringContaining('publish_branches') })]);
    expect(JSON.stringify(problems)).not.toContain('s3cret-pw');
  });
});

describe('the branch manifest\'s targets', () => {
  it.each(ADAPTERS)('are the URLs DTM is given, global prefix and URI version included (%s): each reaches its handler when called as DTM calls it; with app_url, its origin and path come first', async (adapter) => {
    const t = await startBranchApp(adapter, { publishBranches: true });
    try {
      const manifest = (await (await fetch(`${t.url}/dtm/branches`)).json()) as { branches: { name: string; kind: string; ops: Record<string, { http?: string }> }[] };
      const transOut = manifest.branches.find((b) => b.kind === 'saga' && b.name === 'transOut');
      expect(transOut?.ops).toEqual({ action: { http: `${t.url}/api/v1/bank/trans-out` }, compensate: { http: `${t.url}/api/v1/bank/trans-out-compensate` } });
      expect(transOut?.ops.action.http).toBe(t.app.get(DtmBranchRegistry).target('saga-action', 'transOut', 'http'));
      const inventory = manifest.branches.find((b) => b.kind === 'tcc' && b.name === 'inventory');
      expect(inventory?.ops.try.http).toBe(`${t.url}/api/inventory/try`);
      for (const [op, target] of Object.entries(transOut!.ops)) {
        const res = await fetch(`${target.http}?gid=g-manifest&trans_type=saga&branch_id=01&op=${op}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ amount: 1 }) });
        expect(`${op} ${res.status}`).toBe(`${op} 200`);
      }
      expect(t.ledger.calls.map((c) => `${c.handler} ${c.branch.op}`)).toEqual(['transOut action', 'transOutCompensate compensate']);
    } finally {
      await t.close();
    }
    const behind = await startBranchApp(adapter, { publishBranches: true, appUrl: 'http://bank.internal:8080/svc' });
    try {
      const manifest = (await (await fetch(`${behind.url}/dtm/branches`)).json()) as { branches: { name: string; kind: string; ops: Record<string, { http?: string }> }[] };
      expect(manifest.branches.find((b) => b.kind === 'saga' && b.name === 'transOut')?.ops.action.http).toBe('http://bank.internal:8080/svc/api/v1/bank/trans-out');
    } finally {
      await behind.close();
    }
  });
});

describe('lynx.dtm.enabled: false', () => {
  it('logs no start-up warning about DTM (the app does not use it), and its branches still run the transactions other apps start', async () => {
    const disabled = await startBranchApp('express', { enabled: false });
    const other = await startBranchApp('express');
    try {
      expect(disabled.logger.warnings).toEqual([]);
      const gid = await other.client.generateGid();
      const final = await other.client
        .newSaga(gid)
        .add(`${disabled.url}/api/v1/bank/trans-out`, `${disabled.url}/api/v1/bank/trans-out-compensate`, { amount: 30 })
        .submitAndWait();
      expect(final.status).toBe('succeed');
      expect(firstCalls(disabled.ledger.callsOf(gid).map((c) => [c.handler, c.body]))).toEqual([['transOut', { amount: 30 }]]);
    } finally {
      await disabled.close();
      await other.close();
    }
  });
});

describe('in production (NODE_ENV=production: no development checks of success bodies)', () => {
  /** A TCC branch whose Confirm answers DTM's result protocol (`{ dtm_result: 'FAILURE' }`) the first time, as DTM's Go examples do. */
  function productionController(confirmed: string[]) {
    const previous = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production'; // the decorators read it when they run: now, as the class is defined
    try {
      @Controller('prod-tcc')
      class ProdTccController {
        @Post('try')
        @TccTry('prodReserve')
        reserve(): void {}

        @Post('confirm')
        @TccConfirm('prodReserve')
        confirm(@BranchContext() branch: BranchInfo): unknown {
          confirmed.push(branch.gid);
          return confirmed.filter((gid) => gid === branch.gid).length === 1 ? { dtm_result: 'FAILURE', message: 'not yet' } : { confirmed: true };
        }

        @Post('cancel')
        @TccCancel('prodReserve')
        cancel(): void {}
      }
      return ProdTccController;
    } finally {
      process.env.NODE_ENV = previous;
    }
  }

  it.each(ADAPTERS)('%s: a Confirm answering a FAILURE body is logged as a FAILURE DTM can only retry (as a thrown DtmFailureError is), then DTM\'s retry confirms', async (adapter) => {
    const confirmed: string[] = [];
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: dtm.info.serverUrl } })],
      controllers: [productionController(confirmed)],
    }).compile();
    const app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter(), { forceCloseConnections: true }) : moduleRef.createNestApplication({ forceCloseConnections: true });
    const logger = new CapturingLogger();
    app.useLogger(logger);
    await app.listen(0, '127.0.0.1');
    try {
      const client = app.get(DtmClient);
      const gid = await client.generateGid();
      await client.tccGlobalTransaction(gid, async (tcc) => {
        await tcc.callBranch({ sku: 'w' }, 'prodReserve');
      });
      const deadline = Date.now() + 10_000;
      while (!confirmed.includes(gid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await triggerCron();
      const final = await client.waitForFinal(gid, { timeout: 20 });

      expect(final.status).toBe('succeed');
      expect(confirmed.filter((g) => g === gid).length).toBe(2);
      expect(logger.warnings.filter((w) => w.includes('ProdTccController.confirm') && w.includes('cannot roll anything back'))).toHaveLength(1);
    } finally {
      await app.close();
    }
  });
});
