// Workflow mode against a DTM server on a SQL store (MariaDB), over HTTP and gRPC. workflow.spec.ts
// runs it on the harness's boltdb store only, and a SQL store keeps a workflow differently: its
// options (branch headers, request timeout, retry interval, the branch-auth tokens) only as the
// JSON text of the `options` column (the query answers no top-level option fields), custom data
// (the stored input), result and rollback reason in varchar(1024) columns, each recorded step in a
// BLOB row, and no steps. DTM's resume of an interrupted workflow reads all of that back (the
// input it calls the app with, the branch headers it sends), and the app's resume reads the same
// back from DTM's query (the input, the options it resumes with, the step results it replays). So:
// a workflow that succeeds, one whose app dies mid-workflow and that DTM resumes in a new app
// (recorded steps replayed, not called again), one resumed with the branch headers and branch
// timeout it was started with (read from the `options` text), one that rolls back in the resumed
// run, a rollback reason longer than the column, and a resume authenticated by the token DTM keeps
// in the `options` text. The participants are the recorder's HTTP and gRPC endpoints.
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DtmClient, DtmFailureError, DtmGidInUseError, DtmModule, DtmWorkflow, DtmWorkflowPendingError, type DtmProtocol, type WorkflowContext } from 'nestjs-dtm';
import { PROTOCOLS } from '../support/fixtures.js';
import { testsGrpcOptions } from '../support/grpc.js';
import { cronUntilStatus, queryTrans, rawQueryTrans } from '../support/harness.js';
import { startRecorder, type RecordedCall, type Recorder } from '../support/recorder.js';
import type { DtmInfo } from '../support/services/dtm.js';
import { freePort, waitUntil } from '../support/services/process.js';
import { sqlStoreDtm } from '../support/sql-store-dtm.js';

/** The input of sqlwf.transfer.v1: step 02 an HTTP branch, step 03 a gRPC branch (the recorder's), each with its compensation. */
interface TransferInput {
  debit: string;
  debitRevert: string;
  reserve: string;
  reserveRevert: string;
  amount: number;
  /** The local step 04 refuses (FAILURE): the workflow rolls back. */
  refuse?: boolean;
}

/** How often each workflow function started, per gid (over every app of this file). */
const executions = new Map<string, number>();
/** Gids whose next execution throws a plain error at step 04 (an interruption, not a FAILURE). */
const interrupts = new Set<string>();
/** Gids whose next execution waits at step 04 until the promise settles (the process "dies" there). */
const holds = new Map<string, Promise<void>>();

@Injectable()
class SqlStoreWorkflows {
  @DtmWorkflow('sqlwf.transfer.v1')
  async transfer(wf: WorkflowContext<TransferInput>) {
    executions.set(wf.gid, (executions.get(wf.gid) ?? 0) + 1);
    const { amount } = wf.input;
    const at = await wf.now(); // 01: recorded, so a resumed run sees the first run's time
    const debited = await wf
      .step('debit') // 02
      .onRollback((b) => b.http(wf.input.debitRevert, { amount }))
      .http<{ result: string }>(wf.input.debit, { amount });
    await wf
      .step('reserve') // 03
      .onRollback((b) => b.grpc(wf.input.reserveRevert, Buffer.from(JSON.stringify({ amount }))))
      .grpc(wf.input.reserve, Buffer.from(JSON.stringify({ amount })));
    const checked = await wf.step('check').run(async () => {
      // 04
      const hold = holds.get(wf.gid);
      holds.delete(wf.gid);
      if (hold) await hold;
      if (interrupts.delete(wf.gid)) throw new Error('interrupted before step 04 (simulated)');
      if (wf.input.refuse) throw new DtmFailureError(`refused: amount ${amount} over the limit`);
      return amount * 2;
    });
    return { debited: debited.result, checked, at: at.toISOString() };
  }

  @DtmWorkflow('sqlwf.refuse.v1')
  async refuse(wf: WorkflowContext<{ xs: number }>) {
    await wf.step('a').run(() => {
      throw new DtmFailureError(`${'x'.repeat(wf.input.xs)}😀 and more`); // its character xs + 1 takes two UTF-16 units
    });
  }
}

/** A Nest app serving the workflows (HTTP resume route on `port`, gRPC workflow.Workflow/Execute on `grpcPort`), talking to the SQL-store DTM. */
interface WorkflowApp {
  app: INestApplication;
  client: DtmClient;
  port: number;
  grpcPort: number;
  close(): Promise<void>;
}

async function startApp(ports: { port: number; grpcPort: number }, auth: { branchAuthKeys?: string[]; passThroughHeaders?: string[] } = {}): Promise<WorkflowApp> {
  @Module({
    imports: [
      DtmModule.forRoot({
        config: {
          serverUrl: dtm.serverUrl,
          grpcServer: dtm.grpcAddress,
          appUrl: `http://127.0.0.1:${ports.port}`,
          grpcAppAddress: `127.0.0.1:${ports.grpcPort}`,
          retryInterval: 60, // DTM resumes only when a test has its cron take the workflow
          ...auth,
        },
      }),
    ],
    providers: [SqlStoreWorkflows],
  })
  class SqlStoreWorkflowModule {}
  const app = await NestFactory.create(SqlStoreWorkflowModule, { logger: ['error'], forceCloseConnections: true });
  app.connectMicroservice(testsGrpcOptions(`127.0.0.1:${ports.grpcPort}`, { workflowResume: true }), { inheritAppConfig: true });
  await app.startAllMicroservices();
  await app.listen(ports.port, '127.0.0.1');
  return { app, client: app.get(DtmClient), ...ports, close: () => app.close() };
}

let sqlStore: Awaited<ReturnType<typeof sqlStoreDtm>> | undefined;
let dtm: DtmInfo;
let recorder: Recorder;
let app: WorkflowApp;

beforeAll(async () => {
  sqlStore = await sqlStoreDtm('dtm-sql-workflow');
  dtm = sqlStore.info;
  recorder = await startRecorder();
  app = await startApp({ port: await freePort(), grpcPort: await freePort() });
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
  await sqlStore?.stop();
});
beforeEach(() => recorder.reset());

function input(extra: Partial<TransferInput> = {}): TransferInput {
  return {
    debit: recorder.urlFor('/Debit'),
    debitRevert: recorder.urlFor('/DebitRevert'),
    reserve: recorder.grpcTargetFor('/Reserve'),
    reserveRevert: recorder.grpcTargetFor('/ReserveRevert'),
    amount: 30,
    ...extra,
  };
}

/** What the SQL-store DTM holds for `gid` (`/query`, not through the module). */
const record = (gid: string) => queryTrans(gid, dtm.serverUrl);
const branchLines = async (gid: string) => (await record(gid)).branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`);
/** A recorded step's value as the module stored it in the branch row (`bin_data`, base64 of its JSON). */
const stepRecord = async (gid: string, branchId: string, op = 'action') => {
  const row = (await record(gid)).branches.find((b) => b.branch_id === branchId && b.op === op);
  return row?.bin_data === undefined ? undefined : (JSON.parse(Buffer.from(row.bin_data, 'base64').toString('utf8')) as unknown);
};
const decoded = (base64: string | undefined) => (base64 ? (JSON.parse(Buffer.from(base64, 'base64').toString('utf8')) as unknown) : undefined);
/** The calls of `gid` in the order they arrived: `path op status x-tenant`. */
const callLines = (gid: string, withTenant = false) =>
  [...recorder.callsFor(gid)].sort((a, b) => a.at - b.at).map((c) => `${c.path} ${c.query.op} ${c.status}${withTenant ? ` ${c.headers['x-tenant']}` : ''}`);

/** Has DTM's cron take the pending workflow `gid` (so that DTM calls the app's resume endpoint) until DTM records it `status`. */
const untilDtmResumes = (gid: string, status: 'succeed' | 'failed' = 'succeed') => cronUntilStatus(gid, status, { timeoutMs: 25_000, serverUrl: dtm.serverUrl });

const resumeTargetOf = (a: WorkflowApp, protocol: DtmProtocol) => (protocol === 'grpc' ? `127.0.0.1:${a.grpcPort}/workflow.Workflow/Execute` : `http://127.0.0.1:${a.port}/dtm/workflow/resume`);

describe.each(PROTOCOLS)('a workflow talking %s to DTM on MariaDB', (protocol: DtmProtocol) => {
  it('under a gid that differs only in case from a finished workflow of the same name (DTM\'s MySQL store finds gids without case): DtmGidInUseError naming the gid DTM answered, the workflow not run, nothing called (before: the other\'s outcome and result as its own)', async () => {
    const lower = `wfcase-${randomBytes(6).toString('hex')}`;
    const upper = lower.replace('wfcase', 'WfCase');
    expect((await app.client.executeWorkflow('sqlwf.transfer.v1', lower, input(), { protocol, retryInterval: 60 })).status).toBe('succeed');
    recorder.reset();
    const other = await app.client.executeWorkflow('sqlwf.transfer.v1', upper, input({ amount: 5 }), { protocol, retryInterval: 60 }).catch((e: unknown) => e);
    expect([other, executions.get(upper), recorder.calls]).toEqual([expect.any(DtmGidInUseError), undefined, []]);
    expect((other as Error).message).toContain(`DTM answers it as "${lower}", a workflow of another gid that differs only in case`);
    expect((await record(lower)).transaction?.status).toBe('succeed');
  });

  it('under a gid that differs only in case from an unfinished workflow of the same name (pending, its step answered ONGOING): DtmGidInUseError naming the gid DTM answered, nothing run or called; the other one then finishes as it would have', async () => {
    const lower = `wfcase-${randomBytes(6).toString('hex')}`;
    const upper = lower.replace('wfcase', 'WfCase');
    recorder.answer('/Debit', 425, 200);
    expect(await app.client.executeWorkflow('sqlwf.transfer.v1', lower, input(), { protocol, retryInterval: 60 }).catch((e: unknown) => e)).toBeInstanceOf(DtmWorkflowPendingError);
    expect((await record(lower)).transaction?.status).toBe('prepared');
    recorder.reset();
    const other = await app.client.executeWorkflow('sqlwf.transfer.v1', upper, input({ amount: 5 }), { protocol, retryInterval: 60 }).catch((e: unknown) => e);
    expect([other, executions.get(upper), recorder.calls]).toEqual([expect.any(DtmGidInUseError), undefined, []]);
    expect((other as Error).message).toContain(`DTM answers it as "${lower}", a workflow of another gid that differs only in case`);
    expect((await record(lower)).transaction?.status).toBe('prepared');
    expect((await app.client.executeWorkflow('sqlwf.transfer.v1', lower, input(), { protocol, retryInterval: 60 })).status).toBe('succeed');
    expect(recorder.calls.every((c) => c.query.gid === lower)).toBe(true);
  });

  it('succeeds: DTM records succeed with the result, the stored input, and one row per step holding its value', async () => {
    const gid = await app.client.generateGid();
    const done = await app.client.executeWorkflow('sqlwf.transfer.v1', gid, input(), { protocol, retryInterval: 60 });
    expect(done).toEqual({ status: 'succeed', result: { debited: 'recorded', checked: 60, at: expect.any(String) } });
    const { transaction, branches } = await record(gid);
    expect(transaction).toMatchObject({ status: 'succeed', trans_type: 'workflow', protocol, query_prepared: resumeTargetOf(app, protocol) });
    expect(decoded(transaction?.result)).toEqual({ v: done.result });
    const custom = JSON.parse(transaction?.custom_data ?? '{}') as { name: string; data: string };
    expect([custom.name, decoded(custom.data)]).toEqual(['sqlwf.transfer.v1', { v: input() }]);
    expect(branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed', '04 action succeed']);
    expect(await stepRecord(gid, '01')).toEqual({ k: '$now', d: (done.result as { at: string }).at });
    expect(await stepRecord(gid, '02')).toEqual({ k: 'debit', d: { result: 'recorded' } });
    expect(await stepRecord(gid, '04')).toEqual({ k: 'check', d: 60 });
    expect(recorder.callsFor(gid).map((c) => `${c.method} ${c.path} ${c.query.branch_id} ${c.query.op} ${c.query.trans_type} ${c.body}`)).toEqual([
      'POST /Debit 02 action workflow {"amount":30}',
      'GRPC /Reserve 03 action workflow {"amount":30}',
    ]);
    // the module reads the same record back (the query path a resume takes)
    expect(await app.client.query(gid)).toMatchObject({ status: 'succeed', protocol, customData: { name: 'sqlwf.transfer.v1' } });
    // executed again: the result read back from DTM's `result` column, nothing called
    recorder.reset();
    expect(await app.client.executeWorkflow('sqlwf.transfer.v1', gid, input({ amount: 1 }), { protocol })).toEqual(done);
    expect(recorder.callsFor(gid)).toEqual([]);
  });

  it('its app dies in step 04: DTM resumes it in a new app (the stored input), steps 01-03 are replayed, not called again, and it succeeds', async () => {
    const gid = await app.client.generateGid();
    let die!: (err: Error) => void;
    holds.set(gid, new Promise<void>((_, reject) => (die = reject)));
    const first = app.client.executeWorkflow('sqlwf.transfer.v1', gid, input(), { protocol, retryInterval: 60 }).catch((e: unknown) => e);
    await waitUntil('steps 01-03 recorded, step 04 running', async () => (await branchLines(gid)).length === 3 && executions.get(gid) === 1, { timeoutMs: 10_000 });
    expect((await record(gid)).transaction).toMatchObject({ status: 'prepared', query_prepared: resumeTargetOf(app, protocol) });
    const recordedAt = ((await stepRecord(gid, '01')) as { d: string }).d;

    // the process is gone: a new one on the same address, knowing nothing of the first execution
    await app.close();
    app = await startApp({ port: app.port, grpcPort: app.grpcPort });
    await untilDtmResumes(gid);
    die(new Error('the first process died'));
    expect(await first).toBeInstanceOf(DtmWorkflowPendingError); // it sent nothing after its step 03

    const { transaction } = await record(gid);
    expect(transaction).toMatchObject({ status: 'succeed', protocol });
    // the resumed run replayed 01 (the first run's time) and 02 (the HTTP step's answer)
    expect(decoded(transaction?.result)).toEqual({ v: { debited: 'recorded', checked: 60, at: recordedAt } });
    expect(await branchLines(gid)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed', '04 action succeed']);
    expect(callLines(gid)).toEqual(['/Debit action 200', '/Reserve action 200']);
    expect(executions.get(gid)).toBe(2);
  });

  it('a step answering ONGOING leaves it pending; DTM\'s resume runs with the branch headers and branch timeout read back from DTM\'s `options` text', async () => {
    const gid = await app.client.generateGid();
    let reserveCalls = 0;
    let releaseSlow!: () => void;
    const slowReleased = new Promise<void>((resolve) => (releaseSlow = resolve));
    recorder.handle('/Reserve', async () => {
      reserveCalls += 1;
      if (reserveCalls === 1) return 425; // the first run: ONGOING
      if (reserveCalls === 2) {
        // the first resumed run: slower than the workflow's branch timeout (2 s), far below the module's (30 s)
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([slowReleased, new Promise((resolve) => (timer = setTimeout(resolve, 8000)))]);
        clearTimeout(timer);
        return 200;
      }
      releaseSlow();
      return 200;
    });
    const options = { protocol, retryInterval: 60, branchTimeout: 2, branchHeaders: { 'x-tenant': 'acme' } };
    const pending = await app.client.executeWorkflow('sqlwf.transfer.v1', gid, input(), options).catch((e: unknown) => e);
    expect(pending).toBeInstanceOf(DtmWorkflowPendingError);
    // on MariaDB, DTM answers the options only as its `options` text
    const stored = (await rawQueryTrans(gid, dtm.serverUrl)).transaction as unknown as Record<string, unknown>;
    expect([stored.status, stored.branch_headers, stored.request_timeout]).toEqual(['prepared', undefined, undefined]);
    expect(JSON.parse(stored.options as string)).toMatchObject({ request_timeout: 2, retry_interval: 60, branch_headers: { 'x-tenant': 'acme' } });

    await untilDtmResumes(gid);
    // every call carried the header; the resumed run gave up on the slow answer after 2 s (its next
    // call came before that answer), and its step 02 was replayed
    expect(callLines(gid, true)).toEqual(['/Debit action 200 acme', '/Reserve action 425 acme', '/Reserve action 200 acme', '/Reserve action 200 acme']);
    const [, slow, fast] = recorder.callsTo('/Reserve', gid).sort((a: RecordedCall, b: RecordedCall) => a.at - b.at);
    expect(fast.at).toBeLessThanOrEqual(slow.answeredAt); // the slow one is answered only once the next call arrived
    expect(fast.at - slow.at).toBeGreaterThanOrEqual(1900);
    expect(await branchLines(gid)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed', '04 action succeed']);
    expect(await app.client.query(gid)).toMatchObject({ status: 'succeed', protocol, options: { branchTimeout: 2, retryInterval: 60, branchHeaders: { 'x-tenant': 'acme' } } });
  });

  it('interrupted, then refused in the resumed run: the rollbacks of the steps recorded by the first run run, DTM records failed with the reason', async () => {
    const gid = await app.client.generateGid();
    interrupts.add(gid);
    const pending = await app.client.executeWorkflow('sqlwf.transfer.v1', gid, input({ refuse: true }), { protocol, retryInterval: 60 }).catch((e: unknown) => e);
    expect(pending).toBeInstanceOf(DtmWorkflowPendingError);
    expect((pending as Error).message).toContain('interrupted before step 04');
    expect(await branchLines(gid)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed']);

    await untilDtmResumes(gid, 'failed');
    const { transaction } = await record(gid);
    expect(transaction).toMatchObject({ status: 'failed', rollback_reason: 'refused: amount 30 over the limit' });
    expect(callLines(gid)).toEqual(['/Debit action 200', '/Reserve action 200', '/ReserveRevert rollback 200', '/DebitRevert rollback 200']);
    expect(await branchLines(gid)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed', '04 action failed', '03 rollback succeed', '02 rollback succeed']);
    expect(await stepRecord(gid, '04')).toEqual({ k: 'check', e: 'refused: amount 30 over the limit' });
    // executed again with the same gid: the stored outcome, nothing called
    recorder.reset();
    const again = await app.client.executeWorkflow('sqlwf.transfer.v1', gid, input(), { protocol }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(DtmFailureError);
    expect((again as DtmFailureError).reason).toBe('refused: amount 30 over the limit');
    expect(recorder.callsFor(gid)).toEqual([]);
  });

  it('a failure reason longer than the rollback_reason column: DTM on MariaDB records its first 1023 characters and "…" (else its submit would fail forever)', async () => {
    const gid = await app.client.generateGid();
    const error = await app.client.executeWorkflow('sqlwf.refuse.v1', gid, { xs: 1023 }, { protocol }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect((await record(gid)).transaction).toMatchObject({ status: 'failed', rollback_reason: `${'x'.repeat(1023)}…` });
    expect(await branchLines(gid)).toEqual(['01 action failed']);
  });
});

describe('with authenticated calls', () => {
  let signed: WorkflowApp;
  beforeAll(async () => {
    signed = await startApp({ port: await freePort(), grpcPort: await freePort() }, { branchAuthKeys: [randomBytes(33).toString('base64')], passThroughHeaders: ['x-tenant'] });
  });
  afterAll(async () => {
    await signed?.close();
  });

  it.each(PROTOCOLS)('DTM\'s resume (%s) carries the token it keeps in its `options` text, which verifies against the headers stored there; a resume without it runs nothing', async (protocol) => {
    const gid = await signed.client.generateGid();
    recorder.answer('/Reserve', 425, 200);
    const pending = await signed.client.executeWorkflow('sqlwf.transfer.v1', gid, input(), { protocol, retryInterval: 60, branchHeaders: { 'x-tenant': 'acme' } }).catch((e: unknown) => e);
    expect(pending).toBeInstanceOf(DtmWorkflowPendingError);
    const stored = (await rawQueryTrans(gid, dtm.serverUrl)).transaction as unknown as Record<string, unknown>;
    expect(stored.branch_headers).toBeUndefined();
    const headers = (JSON.parse(stored.options as string) as { branch_headers: Record<string, string> }).branch_headers;
    expect(headers).toMatchObject({ 'x-tenant': 'acme', 'dtm-auth-headers': 'x-tenant', 'dtm-auth': expect.stringMatching(/^sqlwf\.transfer\.v1\.00=/) });

    const forged = await fetch(`http://127.0.0.1:${signed.port}/dtm/workflow/resume?gid=${gid}&op=sqlwf.transfer.v1&trans_type=workflow&branch_id=00`, { method: 'POST', headers: { 'x-tenant': 'acme' } });
    expect(forged.status).toBe(401);
    expect(callLines(gid)).toEqual(['/Debit action 200', '/Reserve action 425']);

    await untilDtmResumes(gid);
    expect(callLines(gid, true)).toEqual(['/Debit action 200 acme', '/Reserve action 425 acme', '/Reserve action 200 acme']);
    expect(await branchLines(gid)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed', '04 action succeed']);
  });
});
