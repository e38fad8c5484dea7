// Branch decorators on @GrpcMethod handlers, against the real DTM server calling them over gRPC:
// outcomes as DTM reads them (OK / ABORTED / FAILED_PRECONDITION / other codes retried), a
// handler returning nothing, @BranchContext() from DTM's metadata, back-checks answered by the
// handler, header passthrough from an inbound gRPC call's metadata, a pure gRPC microservice,
// what the module refuses before anything is sent, start-up messages, and the gRPC branches the
// module calls itself (a -bin header carried as binary metadata, a reply that does not decode).
// The barrier, TCC and XA scenarios run over gRPC in barrier.spec.ts and xa.spec.ts.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { ConflictException, Controller, Inject, Injectable, Post, UnprocessableEntityException, type CallHandler, type ExecutionContext, type INestApplication, type NestInterceptor, type PipeTransform, type Type } from '@nestjs/common';
import { concat, EMPTY, map, mergeMap, of, throwError, timer, type Observable } from 'rxjs';
import { GrpcMethod, GrpcStreamCall, GrpcStreamMethod, Payload, RpcException, type GrpcOptions } from '@nestjs/microservices';
import { Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { Test } from '@nestjs/testing';
import { BranchBarrier, BranchContext, DtmBranchRegistry, DtmBranchRegistryError, DtmClient, DtmConfigError, DtmFailureError, DtmInstrumentation, DtmModule, DtmOngoingError, DtmOutcomeUnknownError, DtmServerError, DtmUnavailableError, DtmUsageError, ensureBarrierSchema, MsgBranch, MsgQueryPrepared, pgBarrierDatabase, redisBarrierConnection, SagaAction, SagaCompensate, TccCancel, TccConfirm, TccTry, type BranchInfo, type DtmConfigInput, type DtmModuleOptions } from 'nestjs-dtm';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { fileDatabases } from '../support/databases.js';
import { branchLines, branchTargets, dtmKeepsSteps, firstCalls, settledWithin, useOwnDtm } from '../support/fixtures.js';
import { bindGrpcServer, callGrpc, requestBytes, TESTS_GRPC_PROTOS, TESTS_LOADER, TESTS_PROTO, testsGrpcOptions } from '../support/grpc.js';
import { BranchAuth, targetPath } from '../../lib/auth/branch-auth.js';
import { dtmPost, harness, queryTrans, triggerCron, waitForTransStatus } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { freePort } from '../support/services/process.js';
import { RecordingLogger } from '../support/recording-logger.js';
import { testRedis } from '../support/redis-client.js';
import { SessionGuard, startShopApp, type ShopApp } from './grpc-app.js';

let t: ShopApp;
beforeAll(async () => {
  t = await startShopApp('hybrid');
});
afterAll(async () => {
  await t?.close();
});
beforeEach(() => {
  t.ledger.calls.length = 0;
  t.logger.lines.length = 0;
});

const item = (sku: string, script = '') => ({ sku, quantity: 2, script });

describe('saga branches served by @GrpcMethod handlers', () => {
  it('commit: DTM calls each action over gRPC with its payload and dtm-* metadata; handlers that return nothing answer an empty message', async () => {
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid).add('reserve', item('a')).add('reserve', item('b', 'reply')).submitAndWait();
    expect(final.status).toBe('succeed');
    expect(final.transaction.steps).toEqual(
      dtmKeepsSteps()
        ? [
            { action: t.target('Reserve'), compensate: t.target('ReserveRevert') },
            { action: t.target('Reserve'), compensate: t.target('ReserveRevert') },
          ]
        : [],
    );
    expect(branchTargets(final)).toEqual(['01', '02'].flatMap((id) => [`${id} compensate ${t.target('ReserveRevert')}`, `${id} action ${t.target('Reserve')}`]));
    expect(branchLines(final)).toEqual(['01 compensate prepared', '01 action succeed', '02 compensate prepared', '02 action succeed']);
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => [c.handler, c.item.sku, c.branch.transType, c.branch.branchId, c.branch.op, c.branch.dtm]))).toEqual([
      ['reserve', 'a', 'saga', '01', 'action', undefined],
      ['reserve', 'b', 'saga', '02', 'action', undefined],
    ]);
    // what a handler returning nothing answers: an empty Reply (not "Error serializing response")
    const direct = await callGrpc(t.target('Reserve'), item('c'), { gid: 'direct-1', trans_type: 'saga', branch_id: '01', op: 'action' });
    expect(direct).toEqual({ status: 200, code: 0, text: '' });
  });

  it('an object payload with a key its request type does not have (a misspelt field, or the .proto\'s snake_case where the loader spells camelCase) is refused where it is added: DTM holds nothing, no branch runs with the field missing', async () => {
    const gid = await t.client.generateGid();
    const error = await (async () => t.client.newSaga(gid).add('reserve', { sku: 'k1', qty: 2, script: '' }).submitAndWait())().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toBe(
      `the payload of ${t.target('Reserve')} does not fit the method's request type (the request type Item has no field "qty", which protobuf would drop: its fields are sku, quantity, script); fix the object`,
    );
    expect((await queryTrans(gid)).transaction).toBeNull();
    expect(t.ledger.callsOf(gid)).toEqual([]);
  });

  it('an object payload whose field protobuf would change (a fraction or an out-of-range or non-decimal string in an int64, an object in a string) is refused where it is added: DTM holds nothing, no branch runs with another value', async () => {
    const wrong: [Record<string, unknown>, string][] = [
      [{ sku: 'k1', quantity: 2.5, script: '' }, 'field "quantity" (int64) of the request type Item takes a whole number within its range (a safe integer, a bigint or a string of decimal digits), got number 2.5, which protobuf would not send as it is'],
      [{ sku: 'k1', quantity: '12.50', script: '' }, 'field "quantity" (int64) of the request type Item takes a whole number within its range (a safe integer, a bigint or a string of decimal digits), got "12.50", which protobuf would not send as it is'],
      [{ sku: 'k1', quantity: '1e3', script: '' }, 'got "1e3"'],
      [{ sku: 'k1', quantity: '99999999999999999999', script: '' }, 'got "99999999999999999999"'],
      [{ sku: 'k1', quantity: 2 ** 63, script: '' }, 'got number 9223372036854776000'],
      [{ sku: { id: 1 }, quantity: 2, script: '' }, 'field "sku" (string) of the request type Item takes a string or a number, got an object, which protobuf would not send as it is'],
    ];
    for (const [payload, message] of wrong) {
      const gid = await t.client.generateGid();
      const error = await (async () => t.client.newSaga(gid).add('reserve', payload).submitAndWait())().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toContain(message);
      expect((error as Error).message).toContain(`the payload of ${t.target('Reserve')} does not fit the method's request type`);
      expect((await queryTrans(gid)).transaction).toBeNull();
      expect(t.ledger.callsOf(gid)).toEqual([]);
    }
    // what protobuf sends as given still goes: a string of digits, a bigint, a whole number
    for (const quantity of ['3', BigInt(3), 3]) {
      const gid = await t.client.generateGid();
      const final = await t.client.newSaga(gid).add('reserve', { sku: 'k2', quantity, script: '' } as Record<string, unknown>).submitAndWait();
      expect(final.status).toBe('succeed');
      expect(t.ledger.callsOf(gid).map((c) => c.item.quantity)).toEqual([3]);
    }
  });

  it('rollback: DtmFailureError answers ABORTED; DTM compensates in reverse order, the reason recorded', async () => {
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid).add('reserve', item('a')).add('reserve', item('b')).add('reserve', item('c', 'refuse')).submitAndWait();
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('out of stock: c');
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.branchId}`))).toEqual([
      'reserve 01',
      'reserve 02',
      'reserve 03',
      'reserveRevert 03',
      'reserveRevert 02',
      'reserveRevert 01',
    ]);
  });

  it('a DtmFailureError whose reason is exactly ONGOING is still a FAILURE to DTM (rolled back, not asked again for ever), its reason recorded', async () => {
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid, { retryInterval: 1 }).add('reserve', item('a')).add('reserve', item('ONGOING', 'refuse-state')).submitAndWait({ timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('ONGOING');
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.branchId}`))).toEqual(['reserve 01', 'reserve 02', 'reserveRevert 02', 'reserveRevert 01']);
  });

  it('DtmOngoingError answers FAILED_PRECONDITION: DTM asks again at the retry interval, then the saga succeeds', async () => {
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid, { retryInterval: 1 }).add('reserve', item('a', 'ongoing-once')).submitAndWait({ timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['reserve', 'reserve']);
  });

  it('a plain thrown error answers a code DTM retries, with its message, and a log line naming handler, gid, branch and op', async () => {
    const gid = await t.client.generateGid();
    await t.client.newSaga(gid).add('reserve', item('a', 'crash-once')).submit();
    while (t.ledger.callsOf(gid).length < 1) await new Promise((r) => setTimeout(r, 50));
    await triggerCron();
    const final = await t.client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(t.ledger.callsOf(gid)).toHaveLength(2);
    expect(t.logger.lines).toContainEqual(expect.stringContaining(`error ShopController.reserve failed (grpc, saga gid ${gid}, branch 01, op action); DTM will retry the call: Error: warehouse offline`));
    const direct = await callGrpc(t.target('Reserve'), item('x', 'crash-once'), { gid: 'direct-2', trans_type: 'saga', branch_id: '01', op: 'action' });
    expect([direct.code, direct.text]).toEqual([13, 'warehouse offline (direct-2/01/action)']);
  });

  it("a thrown value String() cannot convert (Object.create(null)) answers INTERNAL, which DTM retries, with a log line naming handler, gid, branch and op and saying what it was (before: the module's own answer of it threw a TypeError, logged without the call)", async () => {
    const gid = await t.client.generateGid();
    await t.client.newSaga(gid).add('reserve', item('a', 'no-prototype-once')).submit();
    while (t.ledger.callsOf(gid).length < 1) await new Promise((r) => setTimeout(r, 50));
    await triggerCron();
    const final = await t.client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(t.logger.lines).toContainEqual(`error ShopController.reserve failed (grpc, saga gid ${gid}, branch 01, op action); DTM will retry the call: a value that cannot be converted to text`);
    const direct = await callGrpc(t.target('Reserve'), item('x', 'no-prototype-once'), { gid: 'direct-no-prototype', trans_type: 'saga', branch_id: '01', op: 'action' });
    expect([direct.code, direct.text]).toEqual([13, 'a value that cannot be converted to text']);
  });

  it('an HttpException (404) a handler throws answers the gRPC code it stands for (NOT_FOUND), and a transaction left unfinished by it names that code, not the HTTP status', async () => {
    const gid = await t.client.generateGid();
    const error = await t.client
      .newSaga(gid, { retryInterval: 60 })
      .add('reserve', item('zz', 'not-found'))
      .submitAndWait({ timeout: 2 })
      .then(() => undefined, (err: unknown) => err);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((error as DtmOutcomeUnknownError).unfinished).toEqual([expect.objectContaining({ op: 'action', cause: 'ShopController.reserve failed (gRPC status 5): no such sku: zz' })]);
    const direct = await callGrpc(t.target('Reserve'), item('zz', 'not-found'), { gid: 'direct-404', trans_type: 'saga', branch_id: '01', op: 'action' });
    expect([direct.code, direct.text]).toEqual([5, 'no such sku: zz']);
    expect((await dtmPost('/forceStop', { gid })).status).toBe(200);
  });

  it('an RpcException whose details (what grpc-js answers, in place of its message) say why, with a code DTM retries: the log line and a transaction left unfinished by it name those details, not "Rpc Exception"', async () => {
    const gid = await t.client.generateGid();
    const error = await t.client
      .newSaga(gid, { retryInterval: 60 })
      .add('reserve', item('zz', 'rpc-details-unavailable'))
      .submitAndWait({ timeout: 2 })
      .then(() => undefined, (err: unknown) => err);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((error as DtmOutcomeUnknownError).unfinished).toEqual([expect.objectContaining({ op: 'action', cause: 'ShopController.reserve failed (gRPC status 14): warehouse db down: zz' })]);
    expect(t.logger.lines).toContainEqual(expect.stringContaining(`error ShopController.reserve failed (grpc, saga gid ${gid}, branch 01, op action); DTM will retry the call: RpcException: warehouse db down: zz`));
    expect((await dtmPost('/forceStop', { gid })).status).toBe(200);
  });

  it('a handler answering with an Observable that completes without a value answers an empty message: the saga succeeds at the first call, the handler runs once', async () => {
    const gid = await t.client.generateGid();
    // a short branch timeout: a call left unanswered would be timed out and retried within the wait
    const final = await t.client.newSaga(gid, { retryInterval: 1, branchTimeout: 2 }).add('reserve', item('a', 'quiet')).submitAndWait({ timeout: 9 });
    expect(final.status).toBe('succeed');
    expect(branchLines(final)).toEqual(['01 compensate prepared', '01 action succeed']);
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => c.handler))).toEqual(['reserve']);
    const direct = await callGrpc(t.target('Reserve'), item('b', 'quiet'), { gid: 'direct-3', trans_type: 'saga', branch_id: '01', op: 'action' });
    expect(direct).toEqual({ status: 200, code: 0, text: '' });
  });

  /** The `branch.call` events of the Shop app while `run` runs, as `handler branch op outcome`. */
  async function branchCallsDuring(gid: string, run: () => Promise<void>): Promise<string[]> {
    const seen: string[] = [];
    const off = t.app.get(DtmInstrumentation).on('branch.call', (e) => {
      if (e.gid === gid) seen.push(`${e.handler} ${e.branchId} ${e.op} ${e.outcome}`);
    });
    try {
      await run();
    } finally {
      off();
    }
    return seen;
  }

  it.each([
    ['', 'rpc-abort'],
    [' (its details, which grpc-js answers in place of its message ONGOING, say why)', 'rpc-details-abort'],
  ])('an RpcException with code ABORTED%s is FAILURE: DTM rolls back, the log does not say DTM will retry the call, the hook reports failure', async (_how, script) => {
    const gid = await t.client.generateGid();
    const hooks = await branchCallsDuring(gid, async () => {
      const final = await t.client.newSaga(gid).add('reserve', item('a')).add('reserve', item('b', script)).submitAndWait({ timeout: 20 });
      expect(final.status).toBe('failed');
      expect(final.rollbackReason).toContain('out of stock: b');
    });
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => `${c.handler} ${c.branch.branchId}`))).toEqual(['reserve 01', 'reserve 02', 'reserveRevert 02', 'reserveRevert 01']);
    expect(t.logger.lines.filter((l) => l.includes(gid))).toEqual([]);
    expect(firstCalls(hooks)).toEqual([
      'ShopController.reserve 01 action success',
      'ShopController.reserve 02 action failure',
      'ShopController.reserveRevert 02 compensate success',
      'ShopController.reserveRevert 01 compensate success',
    ]);
  });

  it.each([
    ['FAILED_PRECONDITION', 'rpc-ongoing-once'],
    ['ABORTED and the message ONGOING (DTM\'s protocol before v1.10)', 'rpc-old-ongoing-once'],
    ['ABORTED and the details ONGOING (what grpc-js answers, in place of the message)', 'rpc-details-ongoing-once'],
  ])('an RpcException with code %s is ONGOING, as DTM reads it: asked again, no log line, the hook reports ongoing', async (_code, script) => {
    const gid = await t.client.generateGid();
    const hooks = await branchCallsDuring(gid, async () => {
      const final = await t.client.newSaga(gid, { retryInterval: 1 }).add('reserve', item('a', script)).submitAndWait({ timeout: 20 });
      expect(final.status).toBe('succeed');
    });
    expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['reserve', 'reserve']);
    expect(t.logger.lines.filter((l) => l.includes(gid))).toEqual([]);
    expect(hooks).toEqual(['ShopController.reserve 01 action ongoing', 'ShopController.reserve 01 action success']);
  });

  it('a call without DTM metadata, or with an op the handler does not serve, is refused (INVALID_ARGUMENT) and the handler does not run', async () => {
    const missing = await callGrpc(t.target('Reserve'), item('a'), { gid: 'g-missing' });
    expect([missing.code, missing.text]).toEqual([3, expect.stringContaining('ShopController.reserve is a DTM branch, but this call lacks dtm-trans_type, dtm-branch_id, dtm-op')]);
    const wrongOp = await callGrpc(t.target('Reserve'), item('a'), { gid: 'g-op', trans_type: 'saga', branch_id: '01', op: 'compensate' });
    expect([wrongOp.code, wrongOp.text]).toEqual([3, expect.stringContaining('ShopController.reserve serves op=action, but this call has op=compensate')]);
    expect(t.ledger.calls).toEqual([]);
  });
});

describe('an http:// step of a gRPC saga written with its scheme in capitals', () => {
  it('HTTP://... is stored and called as http://... (DTM tells HTTP steps by the lower-case prefix, and would call it over gRPC otherwise): the saga succeeds', async () => {
    const recorder = await startRecorder();
    try {
      const gid = await t.client.generateGid();
      const audit = recorder.urlFor('/audit').replace('http://', 'HTTP://');
      const final = await t.client.newSaga(gid).add('reserve', item('a')).add(audit, { sku: 'a' }).submitAndWait({ timeout: 20 });
      expect(final.status).toBe('succeed');
      const [call] = await recorder.waitForCalls('/audit', 1, { gid });
      expect([call.method, call.query.op, call.body]).toEqual(['POST', 'action', '{"sku":"a"}']);
      const stored = await queryTrans(gid);
      if (dtmKeepsSteps()) {
        expect(stored.transaction!.steps![1]).toEqual({ action: recorder.urlFor('/audit'), compensate: '' });
        expect(stored.transaction!.steps!.map((step) => step.action.startsWith('http://'))).toEqual([false, true]);
      }
      expect(stored.branches.filter((b) => b.op === 'action').map((b) => b.url)).toEqual([t.target('Reserve'), recorder.urlFor('/audit')]);
    } finally {
      await recorder.close();
    }
  });
});

describe('two-phase messages to @GrpcMethod handlers', () => {
  it('DTM delivers to the message branch over gRPC', async () => {
    const gid = await t.client.generateGid();
    const final = await t.client.newMsg(gid).add('notify', item('n1')).submitAndWait();
    expect(final.status).toBe('succeed');
    expect(firstCalls(t.ledger.callsOf(gid).map((c) => [c.handler, c.item.sku, c.branch.op]))).toEqual([['notify', 'n1', 'action']]);
  });

  it.each([
    ['success', 'succeed', ['success'], ['check', 'notify']],
    ['FAILURE', 'failed', ['failure'], ['check']],
    ['ONGOING, then success', 'succeed', ['ongoing', 'success'], ['check', 'check', 'notify']],
  ])('@MsgQueryPrepared answering %s: the message ends %s', async (_name, status, answers, handlers) => {
    const gid = await t.client.generateGid();
    t.ledger.checks.set(gid, [...answers]);
    await t.client.newMsg(gid, { timeoutToFail: 1, retryInterval: 1 }).add('notify', item('n2')).prepare('check');
    const final = await t.client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe(status);
    expect(t.ledger.callsOf(gid).map((c) => c.handler)).toEqual(handlers);
    const [check] = t.ledger.callsOf(gid);
    expect(check.branch).toMatchObject({ transType: 'msg', branchId: '00', op: 'msg' });
    expect(check.item).toEqual({ sku: '', quantity: 0, script: '' }); // DTM's back-check sends an empty message
  });

  it("doAndSubmitDb (the outbox on PostgreSQL) whose back-check is this app's @MsgQueryPrepared without a barrier: DtmUsageError saying to give it the database's barrier, before anything is sent; the business never runs, DTM holds nothing, nothing delivered", async () => {
    // that back-check cannot see the barrier row the outbox commits: before, a business that failed (rolled back) was
    // asked of it, the handler answered OK, and the message was submitted and delivered for an order never saved
    const pool = new pg.Pool({ connectionString: (await fileDatabases()).postgres.url });
    try {
      const db = pgBarrierDatabase(pool);
      await ensureBarrierSchema(db);
      const gid = await t.client.generateGid();
      let ran = false;
      const error = await t.client
        .newMsg(gid)
        .add('notify', item('outbox'))
        .doAndSubmitDb('check', db, async () => {
          ran = true;
          throw new Error('the order was not saved');
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toBe(
        `doAndSubmitDb("check", db, business) of msg ${gid}: its back-check @MsgQueryPrepared('check') on ShopController.check has no barrier, so it cannot see the barrier row the local transaction commits on postgres: it would answer for a local transaction that failed as if it had committed (the message delivered) or for one that committed as if it had not (the message lost); give the handler the barrier of that database (@UseBarrier('<name>') on its controller, or @MsgQueryPrepared('check', { barrier: '<name>' }), a postgres connection of barrierConnections); nothing was sent`,
      );
      expect(ran).toBe(false);
      expect((await queryTrans(gid)).transaction).toBeNull();
      expect(t.ledger.callsOf(gid)).toEqual([]);
    } finally {
      await pool.end();
    }
  });
});

describe('header passthrough from gRPC metadata', () => {
  it('allow-listed metadata and trace context of an inbound gRPC call reach the branch_headers of the transaction it starts, and its branches', async () => {
    const gid = await t.client.generateGid();
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const answer = await callGrpc(t.target('Checkout'), { gid, sku: 'p1' }, {}, { 'x-request-id': 'req-77', traceparent, 'x-secret': 'not-allowed' });
    expect(answer.status).toBe(200);
    const final = await t.client.waitForFinal(gid);
    expect(final.transaction.options.branchHeaders).toEqual({ 'x-request-id': 'req-77', traceparent });
    const [reserve] = t.ledger.callsOf(gid);
    expect(reserve.metadata).toMatchObject({ 'x-request-id': 'req-77', traceparent });
    expect(reserve.metadata['x-secret']).toBeUndefined();
  });

  it('pass_through_headers listing a -bin name (binary gRPC metadata, which DTM\'s text branch_headers cannot hold) fails start-up with a DtmConfigError at lynx.dtm.pass_through_headers, saying why: no app whose every transaction started while serving a call with a binary value fails', async () => {
    const error = await startShopApp('hybrid', { passThroughHeaders: ['X-Request-ID', 'X-Ctx-Bin'] }).then(
      async (started) => {
        await started.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DtmConfigError);
    expect((error as DtmConfigError).problems).toEqual([{ path: 'config.passThroughHeaders', message: expect.stringMatching(/^must not list X-Ctx-Bin: a name ending in -bin is gRPC binary metadata/) }]);
  });

  it('malformed trace context metadata is dropped, not stored in DTM nor passed on', async () => {
    const gid = await t.client.generateGid();
    const answer = await callGrpc(t.target('Checkout'), { gid, sku: 'p2' }, {}, { 'x-request-id': 'req-78', traceparent: `00-${'junk'.repeat(1000)}`, tracestate: 'vendor=ok' });
    expect(answer.status).toBe(200);
    const final = await t.client.waitForFinal(gid);
    expect(final.transaction.options.branchHeaders).toEqual({ 'x-request-id': 'req-78' });
    const [reserve] = t.ledger.callsOf(gid);
    expect(reserve.metadata.traceparent).toBeUndefined();
    expect(reserve.metadata.tracestate).toBeUndefined();
  });
});

describe('what a gRPC transaction refuses before anything is sent', () => {
  it('a gid, branch header name or value gRPC metadata cannot carry', async () => {
    expect(() => t.client.newSaga('gíd-1')).toThrow(DtmUsageError);
    expect(() => t.client.newSaga('gid-header-key', { branchHeaders: { 'X-Upper': 'v' } })).toThrow(/branch header "X-Upper" cannot be a gRPC metadata key/);
    expect(() => t.client.newSaga('gid-header-value', { branchHeaders: { 'x-name': 'Müller' } })).toThrow(/branch header x-name "Müller" cannot travel as gRPC metadata/);
    // an HTTP transaction can carry them
    expect(t.client.newSaga('gid-http', { protocol: 'http', branchHeaders: { 'x-name': 'Müller' } }).options.branchHeaders).toEqual({ 'x-name': 'Müller' });
    expect((await queryTrans('gid-header-key')).transaction).toBeNull();
  });

  it('the value of a refused branch header that looks like a credential is not shown in the error', () => {
    const headers: Record<string, string>[] = [
      { authorization: 'Bearer s3cr\u00e9t-token' }, // not printable ASCII
      { 'x-api-key': ' s3cret-key ' }, // spaces around it
    ];
    const refused = headers.map((branchHeaders) => {
      try {
        t.client.newSaga('gid-secret-header', { branchHeaders });
      } catch (err) {
        return (err as Error).message;
      }
      return 'not refused';
    });
    expect(refused).toEqual([
      expect.stringContaining('branch header authorization (value not shown: the header looks like a credential) cannot travel as gRPC metadata'),
      expect.stringContaining('branch header x-api-key (value not shown: the header looks like a credential) has spaces around its value'),
    ]);
    expect(refused.filter((m) => m.includes('s3cr'))).toEqual([]);
  });

  it('a saga step with a gRPC action and an http:// compensation (or the reverse): DTM would send the one payload to both, so the step is refused and DTM holds nothing', async () => {
    const gid = await t.client.generateGid();
    const revert = 'http://127.0.0.1:1/shop/reserve-revert';
    let refused: unknown;
    try {
      t.client.newSaga(gid).add(t.target('Reserve'), revert, item('a'));
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(DtmUsageError);
    expect((refused as Error).message).toBe(
      `saga ${gid} step 0 has its ops on different transports (action ${t.target('Reserve')}, compensate ${revert}): DTM sends the one payload of a step or TCC branch to each of its ops, encoded for one transport, so the other ops could not read it and DTM would retry them forever. ` +
        'Put all of its ops on one transport: give targets of one kind (all http(s):// URLs, or all gRPC host:port/package.Service/Method), or serve every handler of the branch name on the same transport (each with a @GrpcMethod, or none of them)',
    );
    expect(() => t.client.newSaga(gid).add('http://127.0.0.1:1/shop/reserve', t.target('ReserveRevert'), {})).toThrow(
      `saga ${gid} step 0 has its ops on different transports (action http://127.0.0.1:1/shop/reserve, compensate ${t.target('ReserveRevert')})`,
    );
    expect((await queryTrans(gid)).transaction).toBeNull();
    expect(t.ledger.calls).toEqual([]);
  });

  it('a TCC branch whose Try, Confirm and Cancel are on different transports: refused before it is registered or its Try called; the body\'s error aborts the transaction, with no branch', async () => {
    const gid = await t.client.generateGid();
    const cancel = 'http://127.0.0.1:1/shop/reserve-cancel';
    const run = t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(item('a'), t.target('Reserve'), t.target('ReserveRevert'), cancel));
    await expect(run).rejects.toThrow(
      new DtmUsageError(
        `tcc ${gid} branch has its ops on different transports (try ${t.target('Reserve')}, confirm ${t.target('ReserveRevert')}, cancel ${cancel}): DTM sends the one payload of a step or TCC branch to each of its ops, encoded for one transport, so the other ops could not read it and DTM would retry them forever. ` +
          'Put all of its ops on one transport: give targets of one kind (all http(s):// URLs, or all gRPC host:port/package.Service/Method), or serve every handler of the branch name on the same transport (each with a @GrpcMethod, or none of them)',
      ),
    );
    const record = await waitForTransStatus(gid, 'failed');
    expect(record.branches).toEqual([]);
    expect(record.transaction?.rollback_reason).toContain('has its ops on different transports');
    expect(t.ledger.calls).toEqual([]);
  });

  it('a gRPC-only branch name in an HTTP transaction', () => {
    expect(() => t.client.newSaga('gid-grpc-only', { protocol: 'http' }).add('reserve', item('a'))).toThrow(
      /@SagaAction\('reserve'\) is served over gRPC only \(ShopController.reserve\).*protocol: 'grpc'/,
    );
  });
});

describe('a pure gRPC microservice', () => {
  it('serves decorated branches, resolves their names, and warns that grpc_app_address is not set', async () => {
    const app = await startShopApp('microservice', { grpcAppAddress: undefined });
    try {
      expect(app.logger.lines).toContainEqual(expect.stringContaining(`warn lynx.dtm.grpc_app_address is not set: gRPC branch targets use ${app.grpcAddress}`));
      const gid = await app.client.generateGid();
      const final = await app.client.newSaga(gid).add('reserve', item('m1')).submitAndWait();
      expect(final.status).toBe('succeed');
      if (dtmKeepsSteps()) expect(final.transaction.steps[0].action).toBe(`${app.grpcAddress}/tests.Shop/Reserve`);
      expect(branchTargets(final)).toContain(`01 action ${app.grpcAddress}/tests.Shop/Reserve`);
      expect(app.ledger.callsOf(gid).map((c) => c.item.sku)).toEqual(['m1']);
    } finally {
      await app.close();
    }
  });
});

describe('app_url and grpc_app_address set to an address to listen on', () => {
  it('0.0.0.0 / [::] (DTM calling it calls its own host): a start-up warning for each, naming the key and the fix; the branches still run with DTM on this host', async () => {
    const port = await freePort();
    const app = await startShopApp('hybrid', { appUrl: 'http://[::]:3000', grpcAppAddress: `0.0.0.0:${port}` }, `127.0.0.1:${port}`);
    try {
      const warned = (key: string, host: string) =>
        `warn lynx.dtm.${key} names ${host}, an address a server listens on, not one DTM can call: DTM calling it reaches its own host, so only a DTM server on this host reaches this app's branches; set ${key} to this service's address as DTM sees it (its host name or IP)`;
      expect(app.logger.lines).toEqual(expect.arrayContaining([warned('app_url', '[::]'), warned('grpc_app_address', '0.0.0.0')]));
      const gid = await app.client.generateGid();
      const final = await app.client.newSaga(gid).add('reserve', item('u1')).submitAndWait();
      expect(final.status).toBe('succeed');
      expect(branchTargets(final)).toContain(`01 action 0.0.0.0:${port}/tests.Shop/Reserve`);
    } finally {
      await app.close();
    }
    // an address DTM can call: no such warning
    const fine = await startShopApp('hybrid', { appUrl: 'http://127.0.0.1:3000' });
    try {
      expect(fine.logger.lines.filter((l) => l.includes('an address a server listens on'))).toEqual([]);
    } finally {
      await fine.close();
    }
  });
});

describe('a gRPC-only app with a global guard', () => {
  it('the start-up warning names the guard (its gRPC branch methods are behind it); written as advised, the guard lets DTM through', async () => {
    const app = await startShopApp('microservice', {}, undefined, { guard: SessionGuard });
    try {
      expect(app.logger.lines).toContainEqual(expect.stringContaining('warn global guard SessionGuard (APP_GUARD or useGlobalGuards) runs before every DTM branch handler'));
      const gid = await app.client.generateGid();
      const final = await app.client.newSaga(gid).add('reserve', item('g1')).submitAndWait();
      expect(final.status).toBe('succeed');
      expect(app.ledger.callsOf(gid).map((c) => c.item.sku)).toEqual(['g1']);
    } finally {
      await app.close();
    }
  });
});

describe('object payloads without grpcProtos', () => {
  it.each(['hybrid', 'microservice'] as const)('%s app: its own gRPC methods are encoded with the protos its gRPC server loads; another service\'s method needs grpcProtos', async (kind) => {
    const app = await startShopApp(kind, {}, undefined, { grpcProtos: false });
    try {
      const gid = await app.client.generateGid();
      const final = await app.client.newSaga(gid).add('reserve', item('p1')).add('reserve', { ...item('p2'), quantity: 5 }).submitAndWait();
      expect(final.status).toBe('succeed');
      expect(app.ledger.callsOf(gid).map((c) => [c.item.sku, c.item.quantity])).toEqual([
        ['p1', 2],
        ['p2', 5],
      ]);
      // a method no proto of this app declares: refused before anything is sent, saying how to fix it
      const other = await app.client.generateGid();
      expect(() => app.client.newSaga(other).add('127.0.0.1:1/other.Service/Act', '127.0.0.1:1/other.Service/Undo', { sku: 'x' })).toThrow(/knows no proto declaring that method \(neither grpcProtos nor the protos of this app's gRPC servers\): add its \.proto to DtmModule\.forRoot\(\{ grpcProtos/);
      expect((await queryTrans(other)).transaction).toBeNull(); // DTM holds nothing
    } finally {
      await app.close();
    }
  });
});

describe('a gRPC server on port 0', () => {
  it('with no grpc_app_address: the start-up warning and adding its branch say that DTM could never reach port 0, and how to fix it (no saga that hangs)', async () => {
    const app = await startShopApp('microservice', { grpcAppAddress: undefined }, '127.0.0.1:0');
    try {
      const fix = 'give the server a fixed port (in a test: freeLocalPort() of nestjs-dtm/testing), or set lynx.dtm.grpc_app_address';
      expect(app.logger.lines).toContainEqual(expect.stringContaining('the gRPC server listens on 127.0.0.1:0, port 0'));
      let error: unknown;
      try {
        app.client.newSaga('gid-port-zero').add('reserve', item('z'));
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toContain(fix);
    } finally {
      await app.close();
    }
  });
});

describe('one branch name on both transports', () => {
  @Controller('pay')
  class Pay {
    @Post('withdraw')
    @GrpcMethod('PgBank', 'TransOut')
    @SagaAction('withdraw', { compensate: false })
    withdraw() {}

    // an action served on both transports whose compensation is an HTTP route only
    @Post('deposit')
    @GrpcMethod('PgBank', 'TransIn')
    @SagaAction('deposit')
    deposit() {}

    @Post('deposit-revert')
    @SagaCompensate('deposit')
    depositRevert() {}
  }

  /** An app serving Pay over HTTP and gRPC, talking HTTP to DTM unless a transaction says otherwise. */
  async function startPay() {
    const grpcAddress = `127.0.0.1:${await freePort()}`;
    const logger = new RecordingLogger();
    const moduleRef = await Test.createTestingModule({
      imports: [
        DtmModule.forRoot({
          config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, appUrl: 'http://pay.internal', grpcAppAddress: 'pay.internal:50051' },
          grpcProtos: TESTS_GRPC_PROTOS,
        }),
      ],
      controllers: [Pay],
    }).compile();
    const app = moduleRef.createNestApplication({ logger, forceCloseConnections: true });
    app.connectMicroservice(testsGrpcOptions(grpcAddress), { inheritAppConfig: true });
    await app.init();
    return { app, logger };
  }

  it('logs which one a transaction uses; HTTP transactions get the route, gRPC transactions the gRPC method', async () => {
    const { app, logger } = await startPay();
    try {
      expect(logger.lines).toContainEqual(
        "log @SagaAction('withdraw') is served over HTTP by Pay.withdraw and over gRPC by Pay.withdraw: HTTP transactions call the route, gRPC transactions the gRPC method",
      );
      const registry = app.get(DtmBranchRegistry);
      expect([registry.target('saga-action', 'withdraw', 'http'), registry.target('saga-action', 'withdraw', 'grpc')]).toEqual([
        'http://pay.internal/pay/withdraw',
        'pay.internal:50051/tests.PgBank/TransOut',
      ]);
    } finally {
      await app.close();
    }
  });

  it('a name whose action has a gRPC method and whose compensation is an HTTP route only: a gRPC saga refuses the step (its ops would be on two transports), DTM holds nothing', async () => {
    const { app } = await startPay();
    try {
      const registry = app.get(DtmBranchRegistry);
      expect([registry.target('saga-action', 'deposit', 'grpc'), registry.target('saga-compensate', 'deposit', 'grpc')]).toEqual([
        'pay.internal:50051/tests.PgBank/TransIn',
        'http://pay.internal/pay/deposit-revert',
      ]);
      const gid = await app.get(DtmClient).generateGid();
      expect(() => app.get(DtmClient).newSaga(gid, { protocol: 'grpc' }).add('deposit', { amount: 1 })).toThrow(
        `saga ${gid} step 0 ("deposit") has its ops on different transports (action pay.internal:50051/tests.PgBank/TransIn, compensate http://pay.internal/pay/deposit-revert)`,
      );
      expect((await queryTrans(gid)).transaction).toBeNull();
    } finally {
      await app.close();
    }
  });
});

describe('a @GrpcMethod branch the gRPC server does not serve (a service or rpc name the proto does not have)', () => {
  @Controller()
  class Typos {
    @GrpcMethod('ShopService', 'Reserve') // the proto's service is Shop
    @SagaAction('typo-service', { compensate: false })
    typoService() {}

    @GrpcMethod('Shop', 'Reserv') // the proto's rpc is Reserve
    @SagaAction('typo-rpc', { compensate: false })
    typoRpc() {}

    @GrpcMethod('tests.Shop', 'Reserve')
    @SagaAction('served', { compensate: false })
    served() {}
  }

  it('start-up warns naming each, and a gRPC transaction refuses its step (Nest answers its calls UNIMPLEMENTED, which DTM retries forever): DTM holds nothing', async () => {
    const { app, logger, grpcAddress } = await startGrpcBranchApp(Typos);
    try {
      const client = app.get(DtmClient);
      const notServed = (handler: string, grpcMethod: string) =>
        `${handler}: @GrpcMethod(${grpcMethod}) names no method the app's gRPC servers serve (they serve tests.PgBank, tests.MysqlBank, tests.XaBank, tests.Shop)`;
      for (const [name, handler, grpcMethod] of [
        ['typo-service', 'Typos.typoService', "'ShopService', 'Reserve'"],
        ['typo-rpc', 'Typos.typoRpc', "'Shop', 'Reserv'"],
      ]) {
        const gid = await client.generateGid();
        // a payload of bytes: nothing needs the method's proto before DTM calls it
        const error = await (async () => client.newSaga(gid).add(name, new Uint8Array([10, 1, 97])).submitAndWait({ timeout: 3 }))().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(DtmUsageError);
        expect((error as Error).message).toContain(notServed(handler, grpcMethod));
        expect((error as Error).message).toContain('fix the service or rpc name to those of the .proto');
        expect((await queryTrans(gid)).transaction).toBeNull();
        expect(logger.lines).toContainEqual(expect.stringContaining(notServed(handler, grpcMethod)));
      }
      expect(app.get(DtmBranchRegistry).target('saga-action', 'served', 'grpc')).toBe(`${grpcAddress}/tests.Shop/Reserve`);
      expect(logger.lines.filter((l) => l.includes('Typos.served'))).toEqual([]);
    } finally {
      await app.close();
    }
  });
});

describe('a @GrpcMethod naming its rpc in lower camel case, or its service relative to a listed parent package (both of which Nest binds)', () => {
  const called: string[] = [];

  @Controller()
  class Spelt {
    @GrpcMethod('Shop', 'reserve') // proto-loader's originalName of rpc Reserve
    @SagaAction('lower-rpc', { compensate: false })
    reserve(@Payload() _item: unknown, @BranchContext() branch: BranchInfo) {
      called.push(`reserve ${branch.gid}`);
    }

    @GrpcMethod('nested.Ledger', 'Post') // service Ledger of package tests.nested, the server listing package tests
    @SagaAction('nested-service', { compensate: false })
    post(@Payload() _entry: unknown, @BranchContext() branch: BranchInfo) {
      called.push(`post ${branch.gid}`);
    }
  }

  it('the target is the path of the method Nest bound (/tests.Shop/Reserve, /tests.nested.Ledger/Post): DTM reaches the handler and the saga succeeds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-nested-proto-'));
    const nestedProto = join(dir, 'nested.proto');
    writeFileSync(nestedProto, 'syntax = "proto3";\npackage tests.nested;\nmessage Entry { string note = 1; }\nservice Ledger { rpc Post(Entry) returns (Entry); }\n');
    const { app, grpcAddress } = await startGrpcBranchApp(Spelt, undefined, {}, { serverOptions: { package: ['tests'], protoPath: [TESTS_PROTO, nestedProto] } });
    try {
      const registry = app.get(DtmBranchRegistry);
      const client = app.get(DtmClient);
      for (const [name, handler, path] of [
        ['lower-rpc', 'reserve', 'tests.Shop/Reserve'],
        ['nested-service', 'post', 'tests.nested.Ledger/Post'],
      ]) {
        const gid = await client.generateGid();
        const final = await client.newSaga(gid, { retryInterval: 1 }).add(name, new Uint8Array()).submitAndWait({ timeout: 5 }).catch((e: unknown) => e);
        // first calls: another test file's /resetCronTime on the shared DTM can have its cron call the branch again
        expect([registry.target('saga-action', name, 'grpc'), (final as { status?: string }).status, firstCalls(called.filter((c) => c.endsWith(gid)))]).toEqual([
          `${grpcAddress}/${path}`,
          'succeed',
          [`${handler} ${gid}`],
        ]);
      }
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * An app of `controller` whose gRPC server (tests.proto) serves its branches at a free port, the
 * module talking gRPC to DTM with that server as grpc_app_address; `setup` runs before the server
 * starts (global interceptors, say); `config` adds to the module's configuration; `more` gives the
 * module its barrier connections and the protos of other services' gRPC branches, and the gRPC server
 * options to set beside testsGrpcOptions' (other protos, a message size limit). Started and initialised.
 */
async function startGrpcBranchApp(
  controller: Type,
  setup?: (app: INestApplication) => void,
  config: DtmConfigInput = {},
  more: Pick<DtmModuleOptions, 'barrierConnections' | 'grpcProtos'> & { serverOptions?: Partial<GrpcOptions['options']> } = {},
): Promise<{ app: INestApplication; logger: RecordingLogger; grpcAddress: string }> {
  const grpcAddress = `127.0.0.1:${await freePort()}`;
  const logger = new RecordingLogger();
  const { serverOptions, ...moduleOptions } = more;
  const moduleRef = await Test.createTestingModule({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, grpcAppAddress: grpcAddress, protocol: 'grpc', ...config }, ...moduleOptions })],
    controllers: [controller],
  }).compile();
  const app = moduleRef.createNestApplication({ logger, forceCloseConnections: true });
  setup?.(app);
  const options = testsGrpcOptions(grpcAddress);
  app.connectMicroservice({ ...options, options: { ...options.options, ...serverOptions } }, { inheritAppConfig: true });
  await app.startAllMicroservices();
  await app.init();
  return { app, logger, grpcAddress };
}

/** A gRPC saga of `app`'s branch `name` (an empty payload): refused with `DtmUsageError` saying `message` before anything reaches DTM (DTM holds nothing under its gid). */
async function expectSagaRefusedBeforeDtm(app: INestApplication, name: string, message: string): Promise<void> {
  const client = app.get(DtmClient);
  const gid = await client.generateGid();
  // add() may refuse the branch itself (a target it cannot build): the whole chain's error is caught
  const error = await (async () => client.newSaga(gid, { retryInterval: 1 }).add(name, new Uint8Array()).submitAndWait({ timeout: 4 }))().catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DtmUsageError);
  expect((error as Error).message).toContain(message);
  expect((await queryTrans(gid)).transaction).toBeNull();
}

describe('two gRPC microservices in one app (two ports, two proto packages) with grpc_app_address set', () => {
  const called: string[] = [];

  @Controller()
  class TwoServers {
    @GrpcMethod('Shop', 'Reserve') // served by the first server (package tests), the one grpc_app_address names
    @SagaAction('two-servers-shop', { compensate: false })
    reserve(@Payload() _item: unknown, @BranchContext() branch: BranchInfo) {
      called.push(`reserve ${branch.gid}`);
    }

    @GrpcMethod('Ledger', 'Post') // served by the second server (package ledger), on another port
    @SagaAction('two-servers-ledger', { compensate: false })
    post(@Payload() _entry: unknown, @BranchContext() branch: BranchInfo) {
      called.push(`post ${branch.gid}`);
    }
  }

  /** The app: grpc_app_address at `host`:(the first server's port, or `appPort`), the second server on its own port. */
  @Controller()
  class ShopOnly {
    @GrpcMethod('Shop', 'Reserve') // the second server (package ledger) serves no decorated branch: a health service, say
    @SagaAction('shop-only', { compensate: false })
    reserve(@Payload() _item: unknown, @BranchContext() branch: BranchInfo) {
      called.push(`shop-only ${branch.gid}`);
    }
  }

  async function twoServersApp(appPort?: number, controller: Type = TwoServers): Promise<{ app: INestApplication; first: number; second: number; dir: string; logger: RecordingLogger }> {
    const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-two-servers-'));
    const ledgerProto = join(dir, 'ledger.proto');
    writeFileSync(ledgerProto, 'syntax = "proto3";\npackage ledger;\nmessage Entry { string note = 1; }\nservice Ledger { rpc Post(Entry) returns (Entry); }\n');
    const [first, second] = [await freePort(), await freePort()];
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, grpcAppAddress: `localhost:${appPort ?? first}`, protocol: 'grpc' } })],
      controllers: [controller],
    }).compile();
    const logger = new RecordingLogger();
    const app = moduleRef.createNestApplication({ logger, forceCloseConnections: true });
    app.connectMicroservice(testsGrpcOptions(`0.0.0.0:${first}`), { inheritAppConfig: true });
    app.connectMicroservice({ ...testsGrpcOptions(`0.0.0.0:${second}`), options: { package: 'ledger', protoPath: ledgerProto, url: `0.0.0.0:${second}`, loader: TESTS_LOADER } }, { inheritAppConfig: true });
    await app.startAllMicroservices();
    await app.init();
    return { app, first, second, dir, logger };
  }

  it("each branch's target is grpc_app_address's host at the port of the server that serves it: DTM reaches both handlers and the saga succeeds", async () => {
    const { app, first, second, dir, logger } = await twoServersApp();
    try {
      expect(logger.lines.filter((l) => l.startsWith('warn') && l.includes('TwoServers'))).toEqual([]);
      const registry = app.get(DtmBranchRegistry);
      const client = app.get(DtmClient);
      expect([registry.target('saga-action', 'two-servers-shop', 'grpc'), registry.target('saga-action', 'two-servers-ledger', 'grpc')]).toEqual([
        `localhost:${first}/tests.Shop/Reserve`,
        `localhost:${second}/ledger.Ledger/Post`,
      ]);
      const gid = await client.generateGid();
      const final = await client.newSaga(gid, { retryInterval: 1 }).add('two-servers-shop', new Uint8Array()).add('two-servers-ledger', new Uint8Array()).submitAndWait({ timeout: 5 }).catch((e: unknown) => e);
      // first calls, in order: another test file's /resetCronTime on the shared DTM can have its cron call a branch again
      expect([(final as { status?: string }).status, firstCalls(called.filter((c) => c.endsWith(gid)))]).toEqual(['succeed', [`reserve ${gid}`, `post ${gid}`]]);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a grpc_app_address whose port is neither server\'s (a port mapped in front of the app): a branch of the server it cannot name is refused with a DtmUsageError saying why, DTM holds nothing', async () => {
    const { app, second, dir, logger } = await twoServersApp(await freePort());
    try {
      expect(logger.lines).toContainEqual(expect.stringContaining(`warn TwoServers.post is served by the app's gRPC server on port ${second}`));
      await expectSagaRefusedBeforeDtm(app, 'two-servers-ledger', `TwoServers.post is served by the app's gRPC server on port ${second}`);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a grpc_app_address whose port is neither server's, the decorated branches all on one server: grpc_app_address is their target as given, no warning", async () => {
    const mapped = await freePort();
    const { app, dir, logger } = await twoServersApp(mapped, ShopOnly);
    try {
      expect(logger.lines.filter((l) => l.startsWith('warn') && l.includes('ShopOnly'))).toEqual([]);
      expect(app.get(DtmBranchRegistry).target('saga-action', 'shop-only', 'grpc')).toBe(`localhost:${mapped}/tests.Shop/Reserve`);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a gRPC server with TLS credentials serving @GrpcMethod branches (DTM v1.19 dials gRPC branches without TLS)', () => {
  const called: string[] = [];

  @Controller()
  class Secure {
    @GrpcMethod('Shop', 'Reserve')
    @SagaAction('tls-reserve', { compensate: false })
    reserve(@Payload() _item: unknown, @BranchContext() branch: BranchInfo) {
      called.push(branch.gid);
    }
  }

  it('start-up warns naming the server, and without grpc_app_address a gRPC transaction refuses its branch (DTM could never call it): DTM holds nothing, the handler never runs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-tls-'));
    const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
    const credentials = ServerCredentials.createSsl(null, [{ private_key: readFileSync(key), cert_chain: readFileSync(cert) }], false);
    const { app, logger, grpcAddress: url } = await startGrpcBranchApp(Secure, undefined, { grpcAppAddress: undefined }, { serverOptions: { credentials } });
    try {
      expect(logger.lines).toContainEqual(expect.stringContaining(`warn the app's gRPC server at ${url} has TLS credentials (ServerCredentials.createSsl), but DTM v1.19 dials gRPC branches without TLS`));
      await expectSagaRefusedBeforeDtm(app, 'tls-reserve', `Secure.reserve is served by the app's gRPC server at ${url}, which has TLS credentials`);
      expect(called).toEqual([]);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a branch on a streaming gRPC handler or rpc (DTM calls every branch with one unary call)', () => {
  it('@GrpcStreamMethod / @GrpcStreamCall decorated as a branch fails start-up with a DtmBranchRegistryError naming the handler', async () => {
    @Controller()
    class Streams {
      @GrpcStreamMethod('Shop', 'Reserve')
      @SagaAction('stream-reserve', { compensate: false })
      reserve() {}

      @SagaAction('stream-call', { compensate: false })
      @GrpcStreamCall('Shop', 'ReserveRevert')
      revert() {}
    }
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, protocol: 'grpc' } })],
      controllers: [Streams],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: new RecordingLogger() });
    app.connectMicroservice(testsGrpcOptions(`127.0.0.1:${await freePort()}`), { inheritAppConfig: true });
    const error = await app.init().catch((e: unknown) => e);
    await app.close().catch(() => undefined);
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    expect((error as DtmBranchRegistryError).problems).toEqual([
      expect.stringMatching(/^Streams\.reserve is decorated as a DTM branch and is a streaming gRPC handler \(@GrpcStreamMethod\), but DTM calls a branch with one unary call/),
      expect.stringMatching(/^Streams\.revert is decorated as a DTM branch and is a streaming gRPC handler \(@GrpcStreamCall\), but DTM calls a branch with one unary call/),
    ]);
  });

  it('@GrpcMethod on an rpc the .proto declares client-streaming (which Nest does not bind it to): a start-up warning, and a gRPC transaction refuses its step; DTM holds nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nestjs-dtm-stream-proto-'));
    const proto = join(dir, 'ledger.proto');
    writeFileSync(proto, 'syntax = "proto3";\npackage ledger;\nmessage Entry { string note = 1; }\nservice Ledger { rpc Put(stream Entry) returns (Entry); rpc Post(Entry) returns (Entry); }\n');
    @Controller()
    class Ledger {
      @GrpcMethod('Ledger', 'Put')
      @SagaAction('client-stream-put', { compensate: false })
      put() {}
    }
    const { app, logger } = await startGrpcBranchApp(Ledger, undefined, {}, { serverOptions: { package: 'ledger', protoPath: proto } });
    try {
      const message = "Ledger.put: @GrpcMethod('Ledger', 'Put') names an rpc the .proto declares client-streaming";
      expect(logger.lines).toContainEqual(expect.stringContaining(`warn ${message}`));
      await expectSagaRefusedBeforeDtm(app, 'client-stream-put', message);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a global interceptor that stamps each reply object (data.message = ...) on a branch handler that returns nothing', () => {
  const called: string[] = [];
  // the handler's runs are counted: on the shared DTM another file's /resetCronTime could have its cron call the step again
  const dtm = useOwnDtm('dtm-grpc-stamped');

  @Controller()
  class Quiet {
    @GrpcMethod('Shop', 'Reserve')
    @SagaAction('stamped-reserve', { compensate: false })
    reserve(@Payload() _item: unknown, @BranchContext() branch: BranchInfo) {
      called.push(branch.gid); // no barrier: each call does the work again
    }
  }

  @Injectable()
  class Stamp implements NestInterceptor {
    intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
      return next.handle().pipe(
        map((data: unknown) => {
          if (data !== null && typeof data === 'object') (data as { message?: string }).message ??= 'stamped';
          return data;
        }),
      );
    }
  }

  it('the empty message the module answers for it is the interceptor\'s to change: DTM records the step once, the handler runs once', async () => {
    const { app, grpcAddress } = await startGrpcBranchApp(Quiet, (a) => a.useGlobalInterceptors(new Stamp()), dtm.config());
    try {
      const client = app.get(DtmClient);
      const gid = await client.generateGid();
      const final = await client.newSaga(gid, { retryInterval: 1 }).add('stamped-reserve', new Uint8Array()).submitAndWait({ timeout: 5 }).catch((e: unknown) => e);
      expect([(final as { status?: string }).status, called.filter((c) => c === gid).length]).toEqual(['succeed', 1]);
      const direct = await callGrpc(`${grpcAddress}/tests.Shop/Reserve`, { sku: 'd', quantity: 1, script: '' }, { gid: `${gid}-d`, trans_type: 'saga', branch_id: '01', op: 'action' });
      expect([direct.status, direct.text]).toEqual([200, '\n\x07stamped']);
    } finally {
      await app.close();
    }
  });
});

describe("a validating pipe configured to answer 422 (ValidationPipe's errorHttpStatusCode: HttpStatus.UNPROCESSABLE_ENTITY) on a gRPC saga action", () => {
  const called: string[] = [];

  @Injectable()
  class PositiveQuantity implements PipeTransform {
    transform(value: { quantity?: number }) {
      if (!(Number(value?.quantity) > 0)) throw new UnprocessableEntityException(['quantity must be a positive number']);
      return value;
    }
  }

  @Controller()
  class Validated {
    @GrpcMethod('Shop', 'Reserve')
    @SagaAction('validated-422', { compensate: false })
    reserve(@Payload(PositiveQuantity) _item: unknown, @BranchContext() branch: BranchInfo) {
      called.push(branch.gid);
    }
  }

  it('refuses the payload as FAILURE, as a 400 is: DTM rolls the saga back instead of retrying it forever, the handler never runs', async () => {
    const { app } = await startGrpcBranchApp(Validated);
    try {
      const client = app.get(DtmClient);
      const gid = await client.generateGid();
      const final = await client.newSaga(gid, { retryInterval: 1 }).add('validated-422', { sku: 'v', quantity: 0, script: '' }).submitAndWait({ timeout: 5 }).catch((e: unknown) => e);
      expect([(final as { status?: string }).status, called]).toEqual(['failed', []]);
      expect((await queryTrans(gid)).transaction?.rollback_reason).toContain('quantity must be a positive number');
    } finally {
      await app.close();
    }
  });
});

describe('a gRPC branch handler whose Observable emits a value and then fails', () => {
  const runs: string[] = [];
  // the handlers' runs are listed: on the shared DTM another file's /resetCronTime could have its cron call a step again
  const dtm = useOwnDtm('dtm-grpc-late-failure');
  @Controller()
  class Late {
    @GrpcMethod('Shop', 'Reserve')
    @SagaAction('late-failure', { compensate: false })
    reserve(): Observable<unknown> {
      // the failure a moment later (a second call made after the first answered, say)
      return concat(of({ message: 'a first value' }), timer(50).pipe(mergeMap(() => throwError(() => new DtmFailureError('refused after a first value')))));
    }

    /** The same from an async handler: a Promise of the Observable. */
    @GrpcMethod('Shop', 'ReserveRevert')
    @SagaAction('late-failure-async', { compensate: false })
    async reserveLater(): Promise<Observable<unknown>> {
      runs.push('late-failure-async');
      return concat(of({ message: 'a first value' }), timer(50).pipe(mergeMap(() => throwError(() => new DtmFailureError('refused after a first value')))));
    }

    /** A Promise of an Observable that completes without a value. */
    @GrpcMethod('Shop', 'Notify')
    @SagaAction('quiet-async', { compensate: false })
    async quietLater(): Promise<Observable<unknown>> {
      runs.push('quiet-async');
      return EMPTY;
    }
  }

  it('is answered as Nest answers it over HTTP, by how it ends (its last value, or its error): FAILURE, and DTM rolls the saga back; from an async handler too, and a Promise of an Observable without a value is an empty message', async () => {
    const { app } = await startGrpcBranchApp(Late, undefined, dtm.config());
    try {
      const client = app.get(DtmClient);
      const gid = await client.generateGid();
      const final = await client.newSaga(gid).add('late-failure', new Uint8Array()).submitAndWait({ timeout: 5 }).catch((e: unknown) => e);
      expect([(final as { status?: string }).status, (await dtm.queryTrans(gid)).transaction?.rollback_reason]).toEqual(['failed', expect.stringContaining('refused after a first value')]);
      // an async handler's Observable (a Promise of it) is answered the same way, by how it ends; one without a value as an empty message, at the first call
      const later = await client.generateGid();
      const failed = await client.newSaga(later).add('late-failure-async', new Uint8Array()).submitAndWait({ timeout: 5 }).catch((e: unknown) => e);
      expect([(failed as { status?: string }).status, (await dtm.queryTrans(later)).transaction?.rollback_reason]).toEqual(['failed', expect.stringContaining('refused after a first value')]);
      const quiet = await client.generateGid();
      // a short branch timeout: a call left unanswered would be timed out and retried within the wait
      const done = await client.newSaga(quiet, { retryInterval: 1, branchTimeout: 2 }).add('quiet-async', new Uint8Array()).submitAndWait({ timeout: 9 }).catch((e: unknown) => e);
      expect((done as { status?: string }).status).toBe('succeed');
      expect(runs).toEqual(['late-failure-async', 'quiet-async']);
    } finally {
      await app.close();
    }
  });
});

describe('a gRPC TCC Try of this app whose error text is of 200 KB (grpc-js sends no status that large: the call waited for its deadline)', () => {
  const LONG = `out of stock: ${Array.from({ length: 20_000 }, (_, i) => `sku${i}`).join(' ')}`;
  const calls: string[] = [];
  @Controller()
  class LongErrors {
    @GrpcMethod('Shop', 'Reserve')
    @TccTry('long-error')
    hold(@Payload() payload: { script: string }) {
      if (payload.script === 'ongoing') throw new DtmOngoingError(LONG);
      if (payload.script === 'conflict') throw new ConflictException(LONG);
      if (payload.script === 'rpc') throw new RpcException({ code: 10, message: LONG });
      throw payload.script === 'crash' ? new Error(LONG) : new DtmFailureError(LONG);
    }
    @GrpcMethod('Shop', 'ReserveRevert')
    @TccConfirm('long-error')
    confirm(@BranchContext() branch: BranchInfo) {
      calls.push(`confirm ${branch.gid}`);
    }
    @GrpcMethod('Shop', 'Notify')
    @TccCancel('long-error')
    cancel(@BranchContext() branch: BranchInfo) {
      calls.push(`cancel ${branch.gid}`);
    }
  }
  let app: INestApplication;
  beforeAll(async () => {
    ({ app } = await startGrpcBranchApp(LongErrors));
  });
  afterAll(async () => {
    await app?.close();
  });

  it("a DtmFailureError: answered ABORTED with its reason cut to 4000 characters; the caller gets the branch's FAILURE at once (before: DtmUnavailableError at the branch timeout), DTM cancels", async () => {
    const client = app.get(DtmClient);
    const gid = await client.generateGid();
    const error = await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(item('a'), 'long-error'), { branchTimeout: 5 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    const reason = (error as DtmFailureError).reason;
    expect(reason.length).toBeLessThanOrEqual(4001);
    expect(reason).toMatch(/^out of stock: sku0 sku1 .* sku\d+…$/);
    expect(LONG.startsWith(reason.slice(0, -1))).toBe(true);
    expect((await waitForTransStatus(gid, 'failed')).transaction?.rollback_reason).toMatch(/^out of stock: sku0 sku1 /);
    expect(calls).toContain(`cancel ${gid}`);
    expect(calls).not.toContain(`confirm ${gid}`);
  });

  it("a plain Error: answered INTERNAL with its message cut to 4000 characters; the caller gets the DtmServerError naming the handler at once (before: DtmUnavailableError at the branch timeout), DTM cancels", async () => {
    const client = app.get(DtmClient);
    const gid = await client.generateGid();
    const error = await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(item('a', 'crash'), 'long-error'), { branchTimeout: 5 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmServerError);
    expect((error as DtmServerError).status).toBe(13);
    expect((error as Error).message).toMatch(/answered gRPC status 13: its handler LongErrors\.hold, in this app, threw: out of stock: sku0 sku1 .* sku\d+…/);
    expect((await waitForTransStatus(gid, 'failed')).transaction?.status).toBe('failed');
    expect(calls).toContain(`cancel ${gid}`);
    expect(calls).not.toContain(`confirm ${gid}`);
  });

  it("a DtmOngoingError: answered FAILED_PRECONDITION with its message cut to 4000 characters; the caller gets the branch's ONGOING at once (before: DtmUnavailableError at the branch timeout), DTM cancels", async () => {
    const client = app.get(DtmClient);
    const gid = await client.generateGid();
    let tried: unknown;
    await client
      .tccGlobalTransaction(gid, (tcc) => tcc.callBranch(item('a', 'ongoing'), 'long-error').catch((e: unknown) => { tried = e; throw e; }), { branchTimeout: 5 })
      .catch(() => undefined);
    expect(tried).toBeInstanceOf(DtmOngoingError);
    expect((tried as DtmOngoingError).status).toBe(9);
    expect((tried as Error).message).toMatch(/answered ONGOING \(gRPC status 9\): not finished yet, saying: out of stock: sku0 sku1 .*…$/);
    expect((await waitForTransStatus(gid, 'failed')).transaction?.status).toBe('failed');
    expect(calls).toContain(`cancel ${gid}`);
    expect(calls).not.toContain(`confirm ${gid}`);
  });

  it.each([
    ['an HttpException 409 (ConflictException)', 'conflict'],
    ['an RpcException with code ABORTED', 'rpc'],
  ])("%s: answered ABORTED with its message cut to 4000 characters; the caller gets the branch's FAILURE at once (before: DtmUnavailableError at the branch timeout), DTM records the cut reason and cancels", async (_how, script) => {
    const client = app.get(DtmClient);
    const gid = await client.generateGid();
    const error = await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(item('a', script), 'long-error'), { branchTimeout: 5 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    const reason = (error as DtmFailureError).reason;
    expect(reason.length).toBeLessThanOrEqual(4001);
    expect(reason).toMatch(/^out of stock: sku0 sku1 .* sku\d+…$/);
    const recorded = (await waitForTransStatus(gid, 'failed')).transaction?.rollback_reason ?? '';
    expect(recorded).toMatch(/^out of stock: sku0 sku1 /);
    expect(recorded.length).toBeLessThanOrEqual(4001);
    expect(calls).toContain(`cancel ${gid}`);
    expect(calls).not.toContain(`confirm ${gid}`);
  });
});

/** The major version of the Node.js running the tests (20 and 24 in CI): their HTTP/2 fail a header field of 64 KiB differently. */
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

describe("a gRPC TCC Try of another service (a grpc-js server) answering ABORTED with a long message (a documented limit: docs/grpc.md, 'How long an error's message may be')", () => {
  /** A grpc-js server whose Try answers ABORTED with `reason`, its Confirm and Cancel OK (the gids of the Cancels kept). */
  async function foreign(reason: string): Promise<{ server: Server; address: string; cancels: string[] }> {
    const server = new Server();
    const cancels: string[] = [];
    const identity = (bytes: Buffer) => bytes;
    server.register('/other.Stock/Try', (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback({ code: status.ABORTED, details: reason } as never), identity, identity, 'unary');
    server.register('/other.Stock/Confirm', (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback(null, Buffer.alloc(0)), identity, identity, 'unary');
    server.register(
      '/other.Stock/Cancel',
      (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
        cancels.push(String(call.metadata.get('dtm-gid')[0]));
        callback(null, Buffer.alloc(0));
      },
      identity,
      identity,
      'unary',
    );
    const port = await bindGrpcServer(server);
    return { server, address: `127.0.0.1:${port}`, cancels };
  }
  const words = (count: number) => `no stock: ${Array.from({ length: count }, (_, i) => `sku${i}`).join(' ')}`;
  @Controller()
  class NoBranches {}
  let app: INestApplication;
  beforeAll(async () => {
    ({ app } = await startGrpcBranchApp(NoBranches));
  });
  afterAll(async () => {
    await app?.close();
  });

  it.each([
    ['of 60 KB: delivered, the caller gets its DtmFailureError (the whole reason) at once', 8_000],
    ['of 100 KB: the grpc-js server cannot send it (nghttp2 encodes no header field of 64 KiB); the caller gets DtmUnavailableError at its branch timeout (Node 20) or INTERNAL at once (Node 24)', 14_000],
  ])('%s; DTM cancels', async (_how, count) => {
    const reason = words(count);
    const { server, address, cancels } = await foreign(reason);
    try {
      const client = app.get(DtmClient);
      const gid = await client.generateGid();
      const started = Date.now();
      const error = await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(new Uint8Array(), `${address}/other.Stock/Try`, `${address}/other.Stock/Confirm`, `${address}/other.Stock/Cancel`), { branchTimeout: 2 }).catch((e: unknown) => e);
      if (reason.length < 65_536) {
        expect(error).toBeInstanceOf(DtmFailureError);
        expect((error as DtmFailureError).reason).toBe(reason);
      } else if (NODE_MAJOR <= 20) {
        // Node 20's server closes the session (COMPRESSION_ERROR) and sends nothing: the call waits for its deadline
        expect(error).toBeInstanceOf(DtmUnavailableError);
        expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
      } else {
        // Node 24's resets the stream: the caller's grpc-js reads a protocol error (INTERNAL), not the reason
        expect(error).toBeInstanceOf(DtmServerError);
        expect((error as Error).message).toMatch(/answered gRPC status 13: Received RST_STREAM with code 2 .*Protocol error/);
        expect(Date.now() - started).toBeLessThan(1900);
      }
      expect((await waitForTransStatus(gid, 'failed')).transaction?.status).toBe('failed');
      expect(cancels).toContain(gid);
    } finally {
      server.forceShutdown();
    }
  });
});

describe("a TCC Try whose payload is over its gRPC server's maxReceiveMessageLength", () => {
  const calls: string[] = [];
  @Controller()
  class Inventory {
    @GrpcMethod('Shop', 'Reserve')
    @TccTry('small-limit')
    hold() {
      calls.push('try');
    }
    @GrpcMethod('Shop', 'ReserveRevert')
    @TccConfirm('small-limit')
    confirm() {
      calls.push('confirm');
    }
    @GrpcMethod('Shop', 'Notify')
    @TccCancel('small-limit')
    cancel() {
      calls.push('cancel');
    }
  }

  it("is a DtmServerError saying the branch's server refused the request for its size (not that the branch answered more than max_answer_bytes); DTM cancels it, and its Cancel, sent the same payload, is refused too: no handler runs", async () => {
    const { app, grpcAddress } = await startGrpcBranchApp(Inventory, undefined, {}, { serverOptions: { maxReceiveMessageLength: 64 } });
    const gid = await app.get(DtmClient).generateGid();
    try {
      const error = await app
        .get(DtmClient)
        .tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ sku: 'x'.repeat(200), quantity: 1, script: '' }, 'small-limit'), { retryInterval: 1 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmServerError);
      expect((error as Error).message).toMatch(new RegExp(`^the gRPC server of the branch ${grpcAddress}/tests.Shop/Reserve refused the request: its \\d+ bytes are over the server's limit, 64 bytes \\(maxReceiveMessageLength\\)`));
      expect((await waitForTransStatus(gid, 'aborting', 5000)).transaction?.status).toBe('aborting');
      expect(calls).toEqual([]);
    } finally {
      await dtmPost('/forceStop', { gid });
      await app.close();
    }
  });
});

/**
 * An app whose one branch (`name`, `@GrpcMethod('Shop', 'Reserve')`) is served by a gRPC server
 * whose protoPath does not load (listing `packages`), the microservice connected, not started.
 */
async function appWithMissingProto(name: string, packages?: string[]): Promise<INestApplication> {
  @Controller()
  class Reserve {
    @GrpcMethod('Shop', 'Reserve')
    @SagaAction(name, { compensate: false })
    reserve() {}
  }
  const moduleRef = await Test.createTestingModule({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, protocol: 'grpc' } })],
    controllers: [Reserve],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: new RecordingLogger() });
  const options = testsGrpcOptions(`127.0.0.1:${await freePort()}`);
  app.connectMicroservice({ ...options, options: { ...options.options, ...(packages ? { package: packages } : {}), protoPath: '/nonexistent/tests.proto' } }, { inheritAppConfig: true });
  return app;
}

describe("a gRPC server whose protoPath does not load, the app initialised before it starts", () => {
  it("start-up fails with Nest's error naming the server's proto, not a DtmUsageError telling to fix grpcProtos (which the app did not set)", async () => {
    const app = await appWithMissingProto('reserve-missing-proto');
    const error = await app
      .init()
      .then(() => app.startAllMicroservices())
      .catch((e: unknown) => e);
    await app.close().catch(() => undefined);
    expect(error).not.toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toBe('The invalid .proto definition (file at "/nonexistent/tests.proto" not found)');
  });
});

describe("a gRPC server listing two packages whose protoPath does not load", () => {
  it("building a branch's target (start-up, or a transaction before the server starts) names the server's protoPath, not grpcProtos (which the app did not set)", async () => {
    const app = await appWithMissingProto('reserve-two-packages-missing-proto', ['tests', 'tests.nested']);
    const gid = `two-packages-missing-proto-${Date.now()}`;
    const error = await app
      .init()
      .then(() => app.get(DtmClient).newSaga(gid).add('reserve-two-packages-missing-proto', new Uint8Array()).submit())
      .catch((e: unknown) => e);
    await app.close().catch(() => undefined);
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).not.toContain('grpcProtos');
    expect((error as Error).message).toMatch(/^cannot load the protos of the app's gRPC server at 127\.0\.0\.1:\d+ \(.*ENOENT.*\); fix the protoPath of that gRPC microservice's options \(\/nonexistent\/tests\.proto; /);
    expect((await queryTrans(gid)).transaction).toBeNull();
  });
});

describe('gRPC branches the module calls itself (a TCC Try)', () => {
  let dir: string;
  let recorder: Recorder;
  let app: DtmTestApp;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'grpc-branches-'));
    const protoPath = join(dir, 'recorder.proto');
    writeFileSync(protoPath, 'syntax = "proto3";\npackage recorder;\nservice Recorder { rpc UndecodableTry (Req) returns (Reply); }\nmessage Req { string n = 1; }\nmessage Reply { string result = 1; }\n');
    recorder = await startRecorder();
    app = await startDtmApp({ config: { protocol: 'grpc', branchTimeout: 5 }, grpcProtos: { protoPath } });
  });
  afterAll(async () => {
    await app?.close();
    await recorder?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a "-bin" branch header reaches the Try as binary metadata, the bytes of its text, as DTM\'s grpc-go sends it to Confirm: the TCC succeeds', async () => {
    const gid = await app.client.generateGid();
    const target = (path: string) => recorder.grpcTargetFor(path);
    await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(Buffer.from('{}'), target('/BinTry'), target('/BinConfirm'), target('/BinCancel')), { branchHeaders: { 'x-ctx-bin': 'abc' } });
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    // the recorder reads a binary value as UTF-8 text
    expect(recorder.callsTo('/BinTry', gid).map((c) => c.headers['x-ctx-bin'])).toEqual(['abc']);
    // DTM confirms at least once (another test file's /resetCronTime on the shared DTM can have its cron confirm again), each time with it
    expect(new Set(recorder.callsTo('/BinConfirm', gid).map((c) => c.headers['x-ctx-bin']))).toEqual(new Set(['abc']));
  });

  it("a Try target at an HTTP/1 port (the app's HTTP port where its gRPC port belongs): the DtmUnavailableError says something there does not speak gRPC and which setting to check; the body's error aborts the TCC, DTM cancels it, the Try never reached", async () => {
    const gid = await app.client.generateGid();
    const httpAddress = new URL(recorder.url).host; // 127.0.0.1:<the recorder's HTTP port>
    const onHttp = (path: string) => `${httpAddress}/recorder.Recorder${path}`;
    // only the Try is misaddressed, so that DTM can cancel the branch and the TCC ends
    const error = await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch(Buffer.from('{}'), onHttp('/HTry'), recorder.grpcTargetFor('/HConfirm'), recorder.grpcTargetFor('/HCancel'))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUnavailableError);
    expect((error as Error).message).toContain(`Protocol error`);
    expect((error as Error).message).toContain(
      `something listens at ${httpAddress} but does not speak gRPC (HTTP/2): an HTTP/1 server, such as an app's HTTP port given where its gRPC port belongs; a gRPC target must be the address of the service's gRPC server (the url of its gRPC microservice; for this app's own @GrpcMethod branches, lynx.dtm.grpc_app_address)`,
    );
    expect((await app.client.waitForFinal(gid, { timeout: 20 })).status).toBe('failed');
    // only the Cancel, at least once (another test file's /resetCronTime on the shared DTM can have its cron cancel again)
    expect(new Set(recorder.callsFor(gid).map((c) => c.path))).toEqual(new Set(['/HCancel']));
  });

  it("a saga step whose gRPC target is an HTTP/1 port, unfinished when submitAndWait gives up: the diagnosis says that what listens there does not speak gRPC, and which setting to check", async () => {
    const gid = await app.client.generateGid();
    const httpAddress = new URL(recorder.url).host;
    const error = await app.client
      .newSaga(gid)
      .add(`${httpAddress}/recorder.Recorder/SAction`, `${httpAddress}/recorder.Recorder/SCompensate`, Buffer.from('{}'))
      .submitAndWait({ timeout: 3 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((error as DtmOutcomeUnknownError).unfinished).toEqual([
      {
        branchId: '01',
        op: 'action',
        name: 'SAction',
        target: `${httpAddress}/recorder.Recorder/SAction`,
        cause: `something listens at ${httpAddress} but answers HTTP/1, not gRPC (HTTP/2): an HTTP/1 server, such as an app's HTTP port given where its gRPC port belongs; a gRPC target must be the address of the service's gRPC server (the url of its gRPC microservice; for this app's own @GrpcMethod branches, lynx.dtm.grpc_app_address)`,
      },
    ]);
    expect((await queryTrans(gid)).transaction?.status).toBe('submitted');
    expect(recorder.callsFor(gid)).toEqual([]);
  });

  it('a Try whose OK reply does not decode with the app\'s proto: DtmServerError saying so (no uncaught exception, no hang); the body\'s error aborts the TCC, DTM cancels it', async () => {
    const uncaught: unknown[] = [];
    const record = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', record);
    try {
      const gid = await app.client.generateGid();
      // the recorder answers OK with bytes that are not a recorder.Reply (its JSON text)
      recorder.answer('/UndecodableTry', { status: 200, body: { result: 'recorded' } });
      const run = app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ n: 'x' }, recorder.grpcTargetFor('/UndecodableTry'), recorder.grpcTargetFor('/UndecodableConfirm'), recorder.grpcTargetFor('/UndecodableCancel')));
      const settled = await settledWithin(run, 10_000, 'resolved');
      expect(settled).toBeInstanceOf(DtmServerError);
      expect((settled as Error).message).toMatch(/^the branch .*\/recorder\.Recorder\/UndecodableTry answered OK with a reply \(\d+ bytes\) that does not decode as the method's reply type/);
      expect(uncaught).toEqual([]);
      expect(recorder.callsTo('/UndecodableTry', gid)).toHaveLength(1);
      const final = await app.client.waitForFinal(gid, { timeout: 20 });
      expect(final.status).toBe('failed');
      expect(recorder.callsTo('/UndecodableCancel', gid).length).toBeGreaterThanOrEqual(1); // at least once: the shared DTM's cron can cancel again
      expect(recorder.callsTo('/UndecodableConfirm', gid)).toHaveLength(0);
    } finally {
      process.off('uncaughtException', record);
    }
  });
});

describe('the Redis barrier (redisCheckAdjustAmount) on @GrpcMethod branches', () => {
  let app: INestApplication;
  let client: DtmClient;
  let redis: Redis;
  let prefix: string;
  let postgresUrl: string;
  const runs: string[] = [];
  const key = (sku: string) => `${prefix}stock-${sku}`;
  const stock = async (sku: string) => Number(await redis.get(key(sku)));

  @Controller()
  class RedisShop {
    constructor(@Inject(DtmClient) private readonly dtm: DtmClient) {}

    @GrpcMethod('Shop', 'Reserve')
    @SagaAction('rshop.reserve')
    async reserve(@Payload() item: { sku: string; quantity: number }, @BranchContext() b: BranchInfo) {
      runs.push(`reserve ${b.gid} ${b.branchId}`);
      await this.dtm.barrier(b).redisCheckAdjustAmount(redis, key(item.sku), -item.quantity);
    }

    @GrpcMethod('Shop', 'ReserveRevert')
    @SagaCompensate('rshop.reserve')
    async revert(@Payload() item: { sku: string; quantity: number }, @BranchContext() b: BranchInfo) {
      runs.push(`revert ${b.gid} ${b.branchId}`);
      await this.dtm.barrier(b).redisCheckAdjustAmount(redis, key(item.sku), item.quantity);
    }

    @GrpcMethod('Shop', 'Notify')
    @MsgBranch('rshop.notify')
    async notify(@Payload() item: { sku: string; quantity: number }, @BranchContext() b: BranchInfo) {
      await this.dtm.barrier(b).redisCheckAdjustAmount(redis, key(`${item.sku}-notified`), item.quantity);
    }

    @GrpcMethod('Shop', 'Check')
    @MsgQueryPrepared('rshop.outbox', { barrier: 'redis' })
    check() {
      throw new Error('not called: the barrier answers');
    }
  }

  beforeAll(async () => {
    const dbs = await fileDatabases();
    postgresUrl = dbs.postgres.url;
    redis = testRedis(dbs.redis.url);
    prefix = `${dbs.redis.keyPrefix}grpc-`;
    ({ app } = await startGrpcBranchApp(RedisShop, undefined, {}, { barrierConnections: { redis: redisBarrierConnection(redis) }, grpcProtos: TESTS_GRPC_PROTOS }));
    client = app.get(DtmClient);
  });
  afterAll(async () => {
    await app?.close();
    redis?.disconnect();
  });

  it('a saga whose second reservation the barrier refuses (stock would go below 0): FAILURE, DTM compensates the first (once) and the refused one (a null compensation, nothing given back); the stock is back', async () => {
    await redis.set(key('A'), 5);
    const gid = await client.generateGid();
    const final = await client.newSaga(gid).add('rshop.reserve', { sku: 'A', quantity: 3 }).add('rshop.reserve', { sku: 'A', quantity: 4 }).submitAndWait();
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('adding -4 would make it negative');
    expect(await stock('A')).toBe(5);
    // each call's first run (DTM calls at least once: the shared DTM's cron can call a compensation again, which the barrier then skips; the stock shows it applied once)
    expect(firstCalls(runs.filter((r) => r.includes(gid)))).toEqual([`reserve ${gid} 01`, `reserve ${gid} 02`, `revert ${gid} 02`, `revert ${gid} 01`]);
  });

  it('a message whose local work (redisCheckAdjustAmount) committed and then threw: the module asks the gRPC back-check, which the barrier answers from Redis, and DTM delivers once; with the work not done, the back-check writes rollback and the message is aborted', async () => {
    await redis.set(key('B'), 10);
    await redis.set(key('B-notified'), 0);
    const gid = await client.generateGid();
    const done = client.newMsg(gid).add('rshop.notify', { sku: 'B', quantity: 2 }).doAndSubmit('rshop.outbox', async (local) => {
      await BranchBarrier.from(local).redisCheckAdjustAmount(redis, key('B'), -2);
      throw new Error('crashed after the commit');
    });
    await expect(done).rejects.toThrow('crashed after the commit');
    expect((await client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect([await stock('B'), await stock('B-notified')]).toEqual([8, 2]);

    const none = await client.generateGid();
    const aborted = await client
      .newMsg(none)
      .add('rshop.notify', { sku: 'B', quantity: 2 })
      .doAndSubmit('rshop.outbox', async () => {
        throw new Error('crashed before the work');
      })
      .catch((e: unknown) => e);
    expect(aborted).toBeInstanceOf(Error);
    expect((await client.waitForFinal(none, { timeout: 20 })).status).toBe('failed');
    expect([await stock('B'), await stock('B-notified')]).toEqual([8, 2]);
  });

  it("doAndSubmitDb on PostgreSQL whose back-check's barrier is Redis (where the outbox writes no row): DtmUsageError naming the barrier, nothing sent, the business never runs", async () => {
    const pool = new pg.Pool({ connectionString: postgresUrl });
    try {
      const gid = await client.generateGid();
      let ran = false;
      const error = await client
        .newMsg(gid)
        .add('rshop.notify', { sku: 'C', quantity: 1 })
        .doAndSubmitDb('rshop.outbox', pgBarrierDatabase(pool), async () => {
          ran = true;
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toContain(`its back-check @MsgQueryPrepared('rshop.outbox') on RedisShop.check has the barrier 'redis', which stores in redis, so it cannot see the barrier row the local transaction commits on postgres`);
      expect(ran).toBe(false);
      expect((await queryTrans(gid)).transaction).toBeNull();
    } finally {
      await pool.end();
    }
  });
});

describe('with branch_auth_check_actions, a gRPC TCC Try without a barrier taken off the wire and replayed while its TCC is still prepared', () => {
  const key = randomBytes(33).toString('base64');
  let app: INestApplication;
  let client: DtmClient;
  let grpcAddress: string;
  const runs: string[] = [];

  @Controller()
  class PlainStock {
    @GrpcMethod('PgBank', 'TccOutTry')
    @TccTry('plain.tccOut')
    try(@BranchContext() b: BranchInfo) {
      runs.push(`try ${b.gid}`);
    }

    @GrpcMethod('PgBank', 'TccOutConfirm')
    @TccConfirm('plain.tccOut')
    confirm(@BranchContext() b: BranchInfo) {
      runs.push(`confirm ${b.gid}`);
    }

    @GrpcMethod('PgBank', 'TccOutCancel')
    @TccCancel('plain.tccOut')
    cancel(@BranchContext() b: BranchInfo) {
      runs.push(`cancel ${b.gid}`);
    }
  }

  beforeAll(async () => {
    ({ app, grpcAddress } = await startGrpcBranchApp(PlainStock, undefined, { branchAuthKeys: [key], branchAuthCheckActions: true }));
    client = app.get(DtmClient);
  });
  afterAll(async () => {
    await app?.close();
  });

  it("passes the check (DTM's record says prepared) and runs again: the Try ran twice, its Confirm once (docs/security.md: give every Try the barrier)", async () => {
    const gid = await client.generateGid();
    const move = { account: 1, amount: 4 };
    let replayed: number | undefined;
    await client.tccGlobalTransaction(gid, async (tcc) => {
      await tcc.callBranch(move, 'plain.tccOut');
      // the call as it went on the wire: its metadata's token is the app's HMAC of exactly this call (a wire capture holds the same)
      const record = await queryTrans(gid);
      const branchId = record.branches[0].branch_id;
      const issued = record.transaction?.branch_headers?.['dtm-auth-issued'] ?? '';
      const target = `${grpcAddress}/tests.PgBank/TccOutTry`;
      const token = new BranchAuth([key]).sign({ channel: 'app', gid, transType: 'tcc', branchId, op: 'try', target: targetPath(target), payload: requestBytes('tests.PgBank', 'TccOutTry', move), issued });
      replayed = (await callGrpc(target, move, { gid, trans_type: 'tcc', branch_id: branchId, op: 'try' }, { 'dtm-auth-call': token, 'dtm-auth-issued': issued })).code;
    });
    expect(replayed).toBe(0);
    await waitForTransStatus(gid, 'succeed');
    // the Tries are the module's call and the replay (exactly two); the Confirm is DTM's, which the shared DTM's cron can repeat: its first run
    const ofGid = runs.filter((r) => r.endsWith(gid));
    expect(ofGid.filter((r) => r.startsWith('try '))).toEqual([`try ${gid}`, `try ${gid}`]);
    expect(firstCalls(ofGid)).toEqual([`try ${gid}`, `confirm ${gid}`]);
  });
});
