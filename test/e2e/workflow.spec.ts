// Workflow mode against the real DTM server, over HTTP and gRPC: steps recorded as they complete,
// rollback callbacks in reverse order, a real process killed mid-workflow and resumed by DTM,
// one execution per gid, a workflow whose code changed under it, re-attaching by gid. The
// participants are the recorder (HTTP and gRPC) and PostgreSQL behind the barrier.
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { status } from '@grpc/grpc-js';
import { DtmClient, DtmFailureError, DtmGidInUseError, DtmUnavailableError, DtmUsageError, DtmWorkflowPendingError, ensureBarrierSchema, pgBarrierDatabase, type DtmProtocol } from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { latch, PROTOCOLS, settledWithin, sleep, untilNotPending } from '../support/fixtures.js';
import { callGrpc } from '../support/grpc.js';
import { cronUntilStatus, dtmPost, harness, queryTrans, triggerCron, waitForTransStatus } from '../support/harness.js';
import { logEnd, logLines } from '../support/log-lines.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { freePort, minimalEnv, runDirFrom, startProcess, waitUntil, type ManagedProcess } from '../support/services/process.js';
import { AdvisedGuard, GATES, startWorkflowApp, type TransferInput } from './workflow.app.js';

const root = resolve(import.meta.dirname, '..', '..');
let dbs: FileDatabases;
let pool: pg.Pool;
let recorder: Recorder;
let app: Awaited<ReturnType<typeof startWorkflowApp>>;
let client: DtmClient;
let grpcPort: number;

beforeAll(async () => {
  dbs = await fileDatabases();
  pool = new pg.Pool({ connectionString: dbs.postgres.url });
  await pool.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
  await ensureBarrierSchema(pgBarrierDatabase(pool), { table: 'dtm_barrier' });
  recorder = await startRecorder();
  grpcPort = await freePort();
  app = await startWorkflowApp({ port: await freePort(), grpcPort, dtmUrl: harness().dtm.serverUrl, dtmGrpc: harness().dtm.grpcAddress, pgUrl: dbs.postgres.url });
  const { DtmClient: Client } = await import('nestjs-dtm');
  client = app.app.get(Client);
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
  await pool?.end();
});
beforeEach(async () => {
  recorder.reset();
  await pool.query('DELETE FROM account');
  await pool.query('INSERT INTO account VALUES (1, 100)');
});

/** The input of transfer.v1, with the recorder as steps 1 and 2. */
function input(extra: Partial<TransferInput> = {}): TransferInput {
  return {
    debit: recorder.urlFor('/Debit'),
    debitRevert: recorder.urlFor('/DebitRevert'),
    reserve: recorder.grpcTargetFor('/Reserve'),
    reserveRevert: recorder.grpcTargetFor('/ReserveRevert'),
    account: 1,
    amount: 30,
    ...extra,
  };
}

/** Has DTM's cron take the pending workflow `gid` until DTM records it succeeded. */
const untilDtmResumes = (gid: string) => cronUntilStatus(gid, 'succeed', { intervalMs: 1000 });

/**
 * `call` (a resume the test sends), again after 200 ms while it answers pending (at most 5 times): a
 * resume of DTM's running in this process at that moment is answered pending at once. Another test
 * file's /resetCronTime on the shared DTM server can have DTM resume a pending workflow any time.
 */
async function untilResumeEnds<T extends { code: number }>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const answer = await call();
    if (answer.code !== status.FAILED_PRECONDITION || attempt === 5) return answer;
    await sleep(200);
  }
}

const balance = async (id = 1) => Number((await pool.query('SELECT balance FROM account WHERE id = $1', [id])).rows[0]?.balance);
const branchLines = async (gid: string) => (await queryTrans(gid)).branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`);

describe.each(PROTOCOLS)('a workflow talking %s to DTM', (protocol: DtmProtocol) => {
  it('succeeds: an HTTP step, a gRPC step and a local step behind the barrier, each recorded in DTM as it completes', async () => {
    const gid = await client.generateGid();
    const done = await client.executeWorkflow<{ debited: string; credited: number }>('transfer.v1', gid, input(), { protocol });
    expect(done).toEqual({ status: 'succeed', result: { debited: 'recorded', credited: 130, at: expect.any(String) } });
    expect((await queryTrans(gid)).transaction).toMatchObject({ status: 'succeed', trans_type: 'workflow', protocol });
    expect(await branchLines(gid)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed', '04 action succeed']);
    expect(recorder.callsFor(gid).map((c) => `${c.method} ${c.path} ${c.query.branch_id} ${c.query.op} ${c.query.trans_type} ${c.body}`)).toEqual([
      'POST /Debit 02 action workflow {"amount":30}',
      'GRPC /Reserve 03 action workflow {"amount":30}',
    ]);
    expect(await balance()).toBe(130);
    const { rows } = await pool.query('SELECT branch_id, op, reason FROM dtm_barrier WHERE gid = $1', [gid]);
    expect(rows).toEqual([{ branch_id: '04', op: 'action', reason: 'action' }]);
  });

  it('a business failure at the local step: rollback callbacks of the gRPC step then the HTTP step run, DTM records failed with the reason', async () => {
    const gid = await client.generateGid();
    const error = await client.executeWorkflow('transfer.v1', gid, input({ account: 99 }), { protocol }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect((error as DtmFailureError).reason).toBe('no account 99');
    const { transaction } = await queryTrans(gid);
    expect(transaction).toMatchObject({ status: 'failed', rollback_reason: 'no account 99' });
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.query.branch_id} ${c.query.op}`)).toEqual([
      '/Debit 02 action',
      '/Reserve 03 action',
      '/ReserveRevert 03 rollback',
      '/DebitRevert 02 rollback',
    ]);
    expect(await branchLines(gid)).toEqual(expect.arrayContaining(['04 action failed', '03 rollback succeed', '02 rollback succeed']));
    expect(await balance()).toBe(100);
  });

  it('executeWorkflow again with the same gid answers the first execution\'s outcome and calls nothing', async () => {
    const gid = await client.generateGid();
    const first = await client.executeWorkflow('transfer.v1', gid, input(), { protocol });
    recorder.reset();
    const again = await client.executeWorkflow('transfer.v1', gid, input({ amount: 1 }), { protocol });
    expect(again).toEqual(first);
    expect(recorder.callsFor(gid)).toEqual([]);
    expect(await balance()).toBe(130);
  });

  it('a gid DTM holds for another transaction (a prepared TCC, a pending workflow of another name): refused with DtmGidInUseError, nothing runs, DTM\'s record unchanged', async () => {
    const outcome = (e: unknown) => (e instanceof Error ? `${e.constructor.name}: ${e.message}` : JSON.stringify(e));
    const lines = async (gid: string) => {
      const { transaction, branches } = await queryTrans(gid);
      return [transaction?.trans_type, transaction?.status, ...branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)];
    };
    // DTM answers prepareWorkflow of a gid it holds with that transaction, whatever its type and name
    const tcc = await client.generateGid();
    expect((await dtmPost('/prepare', { gid: tcc, trans_type: 'tcc', timeout_to_fail: 3600, retry_interval: 3600 })).status).toBe(200);
    const onTcc = await client.executeWorkflow('transfer.v1', tcc, input(), { protocol }).catch((e: unknown) => e);
    const pending = await client.generateGid();
    recorder.answer('/Reserve', 425);
    expect(await client.executeWorkflow('transfer.v1', pending, input(), { protocol, retryInterval: 60 }).catch((e: unknown) => e)).toBeInstanceOf(DtmWorkflowPendingError);
    const before = await lines(pending);
    const onPending = await client.executeWorkflow('xa-hold.v1', pending, { account: 1, amount: 40 }, { protocol }).catch((e: unknown) => e);
    expect([outcome(onTcc), outcome(onPending)]).toEqual([
      expect.stringMatching(new RegExp(`^DtmGidInUseError: DTM refused executeWorkflow\\(transfer\\.v1\\) of ${tcc}: it already holds a transaction ${tcc} that is "prepared" \\(a tcc, not workflow "transfer\\.v1"\\)`)),
      expect.stringMatching(new RegExp(`^DtmGidInUseError: DTM refused executeWorkflow\\(xa-hold\\.v1\\) of ${pending}: it already holds a transaction ${pending} that is "prepared" \\(workflow "transfer\\.v1", not workflow "xa-hold\\.v1"\\)`)),
    ]);
    expect([onTcc, onPending].every((e) => e instanceof DtmGidInUseError)).toBe(true);
    expect(await lines(tcc)).toEqual(['tcc', 'prepared']);
    expect(await lines(pending)).toEqual(before);
    expect(recorder.callsFor(tcc)).toEqual([]);
    expect(await balance()).toBe(100); // neither workflow's local step ran
    // neither is left for DTM's cron, which the other tests trigger
    expect([(await dtmPost('/abort', { gid: tcc, trans_type: 'tcc' })).status, (await dtmPost('/forceStop', { gid: pending })).status]).toEqual([200, 200]);
  });
});

describe('the resume endpoint', () => {
  it('trusts nothing of the call but the gid: a forged resume creates no workflow and calls nothing; a pending one runs with the input DTM stored', async () => {
    const url = app.app.getHttpServer().address() as { port: number };
    const resume = (gid: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`http://127.0.0.1:${url.port}/dtm/workflow/resume?gid=${gid}&op=transfer.v1&trans_type=workflow&branch_id=00`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
    const forged = await resume('forged-gid-1', { v: input({ amount: 1_000_000 }) });
    // a call this app cannot serve: 400 with why (a warning in the log, no stack), not a 500
    expect(forged.status).toBe(400);
    expect(await forged.json()).toEqual({ message: expect.stringContaining('forged-gid-1') });
    expect((await queryTrans('forged-gid-1')).transaction).toBeNull();
    expect(recorder.calls).toEqual([]);
    // a workflow name this app does not have: ONGOING (deploy it here and DTM's next call runs it), nothing called
    const unknown = await fetch(`http://127.0.0.1:${url.port}/dtm/workflow/resume?gid=forged-gid-2&op=no.such.v1&trans_type=workflow&branch_id=00`, { method: 'POST' });
    expect(unknown.status).toBe(425);
    expect(await unknown.json()).toEqual({ dtm_result: 'ONGOING', message: expect.stringContaining('which this app does not have') });
    // a gid that breaks the key rule is refused first, whatever the name
    const malformed = await fetch(`http://127.0.0.1:${url.port}/dtm/workflow/resume?gid=bad%3Bgid&op=no.such.v1&trans_type=workflow&branch_id=00`, { method: 'POST' });
    expect(malformed.status).toBe(400);
    expect(recorder.calls).toEqual([]);

    const gid = await client.generateGid();
    recorder.answer('/Reserve', 425, 200);
    await expect(client.executeWorkflow('transfer.v1', gid, input())).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    // without branch_auth_keys no token is checked: a bad one changes nothing
    const answered = await resume(gid, { v: input({ amount: 1_000_000, account: 99 }) }, { 'dtm-auth': 'transfer.v1.00=AAAAAAAAAAAAAAAAAAAAAA' });
    expect(answered.status).toBe(200);
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    expect(await balance()).toBe(130); // the stored amount (30), not the forged one
  });

  it('a resume call with a name or gid of 10 kB (line breaks in it) is answered, and logged, with each cut to 200 characters: anyone can send it, and it must not flood the log (before: the whole value, twice)', async () => {
    const url = app.app.getHttpServer().address() as { port: number };
    const long = `x\r\nforged line ${'y'.repeat(10_000)}`;
    const resume = (gid: string, op: string) => fetch(`http://127.0.0.1:${url.port}/dtm/workflow/resume?${new URLSearchParams({ gid, op, trans_type: 'workflow', branch_id: '00' })}`, { method: 'POST' });
    // a name this app does not have: ONGOING; a gid that breaks the key rule: refused
    for (const [gid, op, status] of [['forged-gid-long', long, 425], [long, 'transfer.v1', 400]] as const) {
      const answered = await resume(gid, op);
      expect(answered.status).toBe(status);
      const { message } = (await answered.json()) as { message: string };
      expect(message).toContain(`x\\r\\nforged line ${'y'.repeat(185)}…`);
      expect(message.length).toBeLessThan(1000);
    }
    expect(recorder.calls).toEqual([]);
  });
});

describe('the gRPC resume endpoint', () => {
  it("answers what the HTTP route answers, in DTM's codes: a forged resume INVALID_ARGUMENT (400), a workflow the app does not have and a pending one FAILED_PRECONDITION (425, DTM's ONGOING)", async () => {
    const resume = (gid: string, op = 'transfer.v1') => callGrpc(`127.0.0.1:${grpcPort}/workflow.Workflow/Execute`, undefined, { gid, op, trans_type: 'workflow', branch_id: '00' });
    const forged = await resume('forged-gid-3');
    expect([forged.code, forged.text]).toEqual([status.INVALID_ARGUMENT, expect.stringContaining('forged-gid-3')]);
    expect((await queryTrans('forged-gid-3')).transaction).toBeNull();
    const unknown = await resume('forged-gid-4', 'no.such.v1');
    expect([unknown.code, unknown.text]).toEqual([status.FAILED_PRECONDITION, expect.stringContaining('which this app does not have')]);
    expect(recorder.calls).toEqual([]);

    const gid = await client.generateGid();
    // ONGOING until the test lets it succeed: DTM's own resume is a minute away, but another test file's
    // /resetCronTime on the shared server can have DTM resume it any time, and it then finds the same
    let ready = false;
    recorder.handle('/Reserve', () => (ready ? 200 : 425));
    await expect(client.executeWorkflow('transfer.v1', gid, input(), { protocol: 'grpc', retryInterval: 60 })).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    const pending = await resume(gid);
    expect([pending.code, pending.text]).toEqual([status.FAILED_PRECONDITION, `workflow ${gid} is pending`]);
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    ready = true;
    const done = await untilResumeEnds(() => resume(gid));
    expect(done.code).toBe(status.OK);
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    // the execution's and the test's resume's ONGOING (and any of DTM's own resumes'), then the success
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.status}`).join(', ')).toMatch(/^\/Debit 200(, \/Reserve 425){2,}, \/Reserve 200$/);
  });
});

describe('a gRPC workflow executed again before any step was recorded', () => {
  it('with other options and headers: every execution runs with the first one\'s, which DTM keeps (its resumes run with them) and records when the workflow finishes', async () => {
    const gid = await client.generateGid();
    // ONGOING until the test lets it succeed, whoever runs it: a resume of DTM's between the executions (see untilNotPending) changes nothing
    let ready = false;
    recorder.handle('/Reserve', () => (ready ? 200 : 425));
    const record = async () => {
      const t = (await queryTrans(gid)).transaction;
      return [t?.status, t?.protocol, t?.retry_interval, t?.request_timeout, t?.branch_headers];
    };
    const run = (retryInterval: number, branchTimeout: number, tenant: string) =>
      client.executeWorkflow('reserve-only.v1', gid, { reserve: recorder.grpcTargetFor('/Reserve'), amount: 30 }, { protocol: 'grpc', retryInterval, branchTimeout, branchHeaders: { 'x-tenant': tenant } });
    expect(await run(60, 9, 'first').catch((e: unknown) => e)).toBeInstanceOf(DtmWorkflowPendingError);
    expect(await record()).toEqual(['prepared', 'grpc', 60, 9, { 'x-tenant': 'first' }]);
    expect(await run(50, 4, 'second').catch((e: unknown) => e)).toBeInstanceOf(DtmWorkflowPendingError);
    expect(await record()).toEqual(['prepared', 'grpc', 60, 9, { 'x-tenant': 'first' }]);
    ready = true;
    expect(await untilNotPending(() => run(40, 3, 'third'))).toEqual({ status: 'succeed', result: 'reserved' });
    expect(await record()).toEqual(['succeed', 'grpc', 60, 9, { 'x-tenant': 'first' }]);
    // the two pending executions' calls (and any resume's), then the one that succeeded: all with the first one's headers
    expect(recorder.callsTo('/Reserve', gid).map((c) => `${c.status} ${c.headers['x-tenant']}`).join(', ')).toMatch(/^(425 first, ){2,}200 first$/);
  });
});

describe("a gRPC workflow DTM took whose read-back over server_url fails", () => {
  it("DtmUnavailableError saying DTM holds the workflow prepared and to call again with the same gid (before: the read's bare 'could not reach', which docs/workflow.md reads as 'never reached DTM'); the same gid again on an app that reaches server_url runs it", async () => {
    const dead = await freePort();
    const lost = await startWorkflowApp({ port: await freePort(), grpcPort: await freePort(), dtmUrl: `http://127.0.0.1:${dead}/api/dtmsvr`, dtmGrpc: harness().dtm.grpcAddress, pgUrl: dbs.postgres.url });
    const gid = await client.generateGid();
    const reserveOnly = { reserve: recorder.grpcTargetFor('/Reserve'), amount: 30 };
    let first: unknown;
    try {
      first = await lost.app.get(DtmClient).executeWorkflow('reserve-only.v1', gid, reserveOnly, { protocol: 'grpc', retryInterval: 60 }).catch((e: unknown) => e);
    } finally {
      await lost.close();
    }
    expect(first).toBeInstanceOf(DtmUnavailableError);
    expect((first as Error).message).toContain(`executeWorkflow("reserve-only.v1", gid "${gid}"): DTM took the workflow over gRPC and holds it prepared, but reading it back from DTM's HTTP API (server_url) failed, so it did not run here`);
    expect((first as Error).message).toContain(`127.0.0.1:${dead}`);
    expect((first as DtmUnavailableError).gid).toBe(gid);
    expect((first as Error).cause).toBeInstanceOf(DtmUnavailableError);
    expect((await queryTrans(gid)).transaction).toMatchObject({ status: 'prepared', trans_type: 'workflow' });
    expect(recorder.callsTo('/Reserve', gid)).toEqual([]);
    expect(await untilNotPending(() => client.executeWorkflow('reserve-only.v1', gid, reserveOnly, { protocol: 'grpc' }))).toEqual({ status: 'succeed', result: 'reserved' });
    expect(await branchLines(gid)).toEqual(['01 action succeed']);
    expect(recorder.callsTo('/Reserve', gid).length).toBeGreaterThanOrEqual(1);
  });
});

describe("a gRPC workflow's HTTP step with branch headers over the HTTP limit (12 KiB)", () => {
  it("is refused before the app calls it: DtmWorkflowPendingError whose cause is the DtmUsageError naming the limit, the step never called, DTM holding no step (before: the call went out and the branch's Node server answered 431 unseen, a cause naming only that status)", async () => {
    const gid = await client.generateGid();
    const outcome = await client.executeWorkflow('transfer.v1', gid, input(), { protocol: 'grpc', retryInterval: 60, branchHeaders: { 'x-big': 'a'.repeat(17_000) } }).catch((e: unknown) => e);
    expect(outcome).toBeInstanceOf(DtmWorkflowPendingError);
    const cause = (outcome as Error).cause;
    expect(cause).toBeInstanceOf(DtmUsageError);
    expect((cause as Error).message).toMatch(/^the branch headers take 17009 bytes as DTM sends them to an HTTP branch .* over the 12288 the module allows: a Node\.js branch refuses a call whose headers pass 16 KiB/);
    const record = (await queryTrans(gid)).transaction;
    expect(record?.status).toBe('prepared');
    expect((await queryTrans(gid)).branches.filter((b) => b.op === 'action' && b.branch_id !== '01')).toEqual([]);
    expect(recorder.callsFor(gid)).toEqual([]);
    await dtmPost('/forceStop', { gid });
  });
});

describe('a local XA step', () => {
  const pendingXa = async () => (await pool.query('SELECT gid FROM pg_prepared_xacts WHERE database = current_database()')).rows;

  it('prepares in PostgreSQL; DTM-recorded success commits it, a later FAILURE rolls it back', async () => {
    const ok = await client.generateGid();
    expect(await client.executeWorkflow('xa-hold.v1', ok, { account: 1, amount: 40 })).toEqual({ status: 'succeed', result: 60 });
    expect(await balance()).toBe(60);
    expect(await branchLines(ok)).toEqual(['01 business succeed', '01 action succeed', '02 action succeed', '01 commit succeed']);

    const refused = await client.generateGid();
    await expect(client.executeWorkflow('xa-hold.v1', refused, { account: 1, amount: 40, refuse: true })).rejects.toThrow('refused after the hold');
    expect(await balance()).toBe(60);
    expect((await queryTrans(refused)).transaction?.status).toBe('failed');
    expect(await pendingXa()).toEqual([]);
    const { rows } = await pool.query('SELECT branch_id, op, reason FROM dtm_barrier WHERE gid = $1 ORDER BY reason', [refused]);
    expect(rows).toEqual([{ branch_id: '01', op: 'action', reason: 'rollback' }]);
  });
});

describe('a step\'s local transaction behind a row lock', () => {
  /** Another session holding the row lock of account 1 until `release()`. */
  async function holdAccount(): Promise<{ release(): Promise<void> }> {
    const holder = new pg.Client({ connectionString: dbs.postgres.url });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT balance FROM account WHERE id = 1 FOR UPDATE');
    return { release: async () => void (await holder.query('ROLLBACK'), await holder.end()) };
  }

  /** `executeWorkflow`'s outcome while the lock is held (`still waiting` after 15 s: the step was not bounded). */
  const settledWhileHeld = (run: Promise<unknown>) => settledWithin(run, 15_000, 'succeeded');

  it.each([
    ['a barrier step', 'transfer.v1', () => input(), 130],
    ['an XA step', 'xa-hold.v1', () => ({ account: 1, amount: 40 }), 60],
  ] as const)('%s waits no longer than the workflow\'s branch timeout: the workflow is left pending, and DTM finishes it once the lock is gone', async (_step, name, workflowInput, balanceAfter) => {
    const gid = await client.generateGid();
    const lock = await holdAccount();
    try {
      const outcome = await settledWhileHeld(client.executeWorkflow(name, gid, workflowInput(), { branchTimeout: 2 }));
      expect(outcome).toBeInstanceOf(DtmWorkflowPendingError);
      expect(String((outcome as Error).message)).toMatch(/lock timeout|canceling statement/);
      expect(await balance()).toBe(100);
    } finally {
      await lock.release();
    }
    await untilDtmResumes(gid);
    expect(await balance()).toBe(balanceAfter);
  });
});

describe('DTM resumes workflows', () => {
  it.each(PROTOCOLS)('a step that answers ONGOING leaves the workflow pending; DTM resumes it (%s resume endpoint), recorded steps are not called again', async (protocol) => {
    const gid = await client.generateGid();
    recorder.answer('/Reserve', 425, 200);
    const pending = await client.executeWorkflow('transfer.v1', gid, input(), { protocol }).catch((e: unknown) => e);
    expect(pending).toBeInstanceOf(DtmWorkflowPendingError);
    const { transaction } = await queryTrans(gid);
    expect(transaction).toMatchObject({ status: 'prepared', protocol });
    expect(transaction?.query_prepared).toMatch(protocol === 'grpc' ? /^127\.0\.0\.1:\d+\/workflow\.Workflow\/Execute$/ : /^http:\/\/127\.0\.0\.1:\d+\/dtm\/workflow\/resume$/);
    await untilDtmResumes(gid);
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.status}`)).toEqual(['/Debit 200', '/Reserve 425', '/Reserve 200']);
    expect(await balance()).toBe(130);
  });

  it.each(PROTOCOLS)('a resumed workflow (%s) runs with the options and branch headers it was started with, and DTM keeps them', async (protocol) => {
    const gid = await client.generateGid();
    recorder.answer('/Reserve', 425, 200);
    const options = { protocol, retryInterval: 7, branchTimeout: 9, branchHeaders: { 'x-tenant': 'acme' } };
    const pending = await client.executeWorkflow('transfer.v1', gid, input(), options).catch((e: unknown) => e);
    expect(pending).toBeInstanceOf(DtmWorkflowPendingError);
    await untilDtmResumes(gid);
    // the step the resumed execution called got the header, as the first call did
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.status} ${c.headers['x-tenant']}`)).toEqual(['/Debit 200 acme', '/Reserve 425 acme', '/Reserve 200 acme']);
    const record = await client.query(gid);
    expect(record).toMatchObject({ status: 'succeed', protocol, options: { retryInterval: 7, branchTimeout: 9, branchHeaders: { 'x-tenant': 'acme' } } });
  });

  it.each(PROTOCOLS)('executeWorkflow again on a pending workflow (%s; another request re-attaching by gid, with headers of its own) runs the rest with the branch headers DTM stored for it, as a resume does (before: with its own, the resumed step got x-tenant other)', async (protocol) => {
    const gid = await client.generateGid();
    recorder.answer('/Reserve', 425, 200);
    const pending = await client.executeWorkflow('transfer.v1', gid, input(), { protocol, branchHeaders: { 'x-tenant': 'acme' } }).catch((e: unknown) => e);
    expect(pending).toBeInstanceOf(DtmWorkflowPendingError);
    const again = await client.executeWorkflow('transfer.v1', gid, input(), { protocol, branchHeaders: { 'x-tenant': 'other' } });
    expect(again.status).toBe('succeed');
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.status} ${c.headers['x-tenant']}`)).toEqual(['/Debit 200 acme', '/Reserve 425 acme', '/Reserve 200 acme']);
    expect(await client.query(gid)).toMatchObject({ status: 'succeed', options: { branchHeaders: { 'x-tenant': 'acme' } } });
  });

  it('a resume that arrives while the first execution runs: one execution only', async () => {
    const gid = await client.generateGid();
    // DTM's cron logs each time it takes a transaction to resume it (its log read from here on only: see logLines)
    const logFile = harness().dtm.logFile;
    const from = logEnd(logFile);
    const resumes = () => logLines(logFile, from, gid).filter((l) => l.includes('cron job return a trans')).length;
    let finished = false;
    const gate = latch();
    GATES.set(gid, gate.wait());
    const running = client.executeWorkflow('transfer.v1', gid, input({ hold: gid }), { retryInterval: 1 }).finally(() => (finished = true));
    // DTM takes it to resume it while it runs (held after step 2): made due now (the cron's own timing under load is no part of the
    // test; DTM's cron takes one transaction at a time, and another file's slow branch can hold it for seconds)
    const deadline = Date.now() + 20_000;
    while (resumes() === 0 && !finished && Date.now() < deadline) {
      await sleep(300);
      await triggerCron();
    }
    const resumedWhileRunning = resumes() >= 1 && !finished;
    if (resumedWhileRunning) await sleep(500); // DTM logs that line as it takes the gid, then calls the app: its call lands while held
    gate.open();
    GATES.delete(gid);
    const done = await running;
    expect(done.status).toBe('succeed');
    expect(resumedWhileRunning).toBe(true);
    const executions = app.app.get((await import('./workflow.app.js')).Executions).counts.get(gid);
    expect(executions).toBe(1);
    expect(recorder.callsFor(gid).map((c) => c.path)).toEqual(['/Debit', '/Reserve']);
    expect(await balance()).toBe(130);
  });
});

describe("an app's global guard", () => {
  it('written as the module advises (isDtmBranchHandler lets DTM through; gRPC calls need a token): DTM resumes a pending gRPC workflow through it', async () => {
    const guarded = await startWorkflowApp({ port: await freePort(), grpcPort: await freePort(), dtmUrl: harness().dtm.serverUrl, dtmGrpc: harness().dtm.grpcAddress, pgUrl: dbs.postgres.url, advisedGuard: true });
    AdvisedGuard.refused.length = 0;
    try {
      const guardedClient = guarded.app.get(DtmClient);
      const gid = await guardedClient.generateGid();
      recorder.answer('/Reserve', 425, 200);
      await expect(guardedClient.executeWorkflow('transfer.v1', gid, input(), { protocol: 'grpc' })).rejects.toBeInstanceOf(DtmWorkflowPendingError);
      const resumed = await untilDtmResumes(gid).then(() => 'succeed', (e: unknown) => String(e));
      expect({ resumed, refusedByTheGuard: AdvisedGuard.refused }).toEqual({ resumed: 'succeed', refusedByTheGuard: [] });
      expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.status}`)).toEqual(['/Debit 200', '/Reserve 425', '/Reserve 200']);
      expect(await balance()).toBe(130);
    } finally {
      await guarded.close();
    }
  });
});

describe('a gRPC server without the workflow proto', () => {
  it.each([
    ['without the workflow proto', true],
    ["with the workflow proto in protoPath but not the package 'workflow' (Nest serves only the listed packages)", 'package'],
  ] as const)('%s: a gRPC workflow is refused before DTM holds anything (every resume would answer UNIMPLEMENTED); an HTTP one runs', async (_case, withoutWorkflowProto) => {
    const forgot = await startWorkflowApp({ port: await freePort(), grpcPort: await freePort(), dtmUrl: harness().dtm.serverUrl, dtmGrpc: harness().dtm.grpcAddress, pgUrl: dbs.postgres.url, withoutWorkflowProto });
    try {
      const forgotClient = forgot.app.get(DtmClient);
      const gid = await forgotClient.generateGid();
      const refused = await forgotClient.executeWorkflow('transfer.v1', gid, input(), { protocol: 'grpc' }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(DtmUsageError);
      expect((refused as Error).message).toMatch(/^cannot start a gRPC workflow: DTM resumes it at the app's gRPC server \(workflow\.Workflow\/Execute\), which does not load the workflow proto, or does not list its package 'workflow'/);
      expect(await forgotClient.query(gid)).toBeNull();
      expect(recorder.callsFor(gid)).toEqual([]);
      const http = await forgotClient.generateGid();
      expect((await forgotClient.executeWorkflow('transfer.v1', http, input(), { protocol: 'http' })).status).toBe('succeed');
    } finally {
      await forgot.close();
    }
  });
});

describe('a workflow process killed mid-workflow', () => {
  let ports: { port: number; grpcPort: number };
  let child: ManagedProcess | undefined;

  async function startChild(env: Record<string, string> = {}): Promise<ManagedProcess> {
    const runDir = runDirFrom(harness().runDir);
    const proc = startProcess({
      name: 'workflow-app',
      command: process.execPath,
      args: [join(root, '.build', 'test', 'e2e', 'workflow.app.js')],
      cwd: root,
      env: minimalEnv({
        PORT: String(ports.port),
        GRPC_PORT: String(ports.grpcPort),
        DTM_URL: harness().dtm.serverUrl,
        DTM_GRPC: harness().dtm.grpcAddress,
        PG_URL: dbs.postgres.url,
        ...env,
      }),
      runDir,
      logFile: join(runDir.path, `workflow-app-${process.pid}-${Date.now()}.log`),
    });
    await waitUntil('workflow app', async () => (await fetch(`http://127.0.0.1:${ports.port}/wf/executions`)).ok, { timeoutMs: 20_000, process: proc });
    return proc;
  }

  /** Starts transfer.v1 in the child; it stops forever after step 2 (reserve); the child is then killed. */
  async function crashAfterStep2(gid: string): Promise<void> {
    child = await startChild({ PAUSE_AFTER: 'reserve' });
    void fetch(`http://127.0.0.1:${ports.port}/wf/start`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ gid, input: input() }) }).catch(() => undefined);
    await recorder.waitForCalls('/Reserve', 1, { gid });
    await waitUntil('step 2 recorded', async () => (await branchLines(gid)).includes('03 action succeed'), { timeoutMs: 10_000 });
    await child.stop(0); // SIGKILL
  }

  beforeAll(async () => {
    ports = { port: await freePort(), grpcPort: await freePort() };
  });
  afterAll(async () => {
    await child?.stop();
  });

  it('after SIGKILL, a new process resumes it when DTM calls back: steps 1 and 2 are not executed again, step 3 runs', async () => {
    const gid = await client.generateGid();
    await crashAfterStep2(gid);
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    expect(await balance()).toBe(100);

    child = await startChild();
    await cronUntilStatus(gid, 'succeed', { timeoutMs: 40_000, intervalMs: 1000 }); // DTM resuming it in the new process
    expect(recorder.callsFor(gid).map((c) => c.path)).toEqual(['/Debit', '/Reserve']); // one call each
    expect(await balance()).toBe(130);
    expect(await branchLines(gid)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed', '04 action succeed']);
    await child.stop();
    child = undefined;
  });

  it('resumed by changed code: the divergence is logged with the position and both step names, nothing is applied', async () => {
    const gid = await client.generateGid();
    await crashAfterStep2(gid);
    child = await startChild({ DIVERGE: '1' });
    const log = child.logFile;
    await waitUntil('the divergence in the log', async () => {
      await triggerCron();
      const { readFileSync } = await import('node:fs');
      return readFileSync(log, 'utf8').includes('diverged');
    }, { timeoutMs: 30_000, intervalMs: 1000 });
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(log, 'utf8')).toContain(`workflow "transfer.v1" (gid ${gid}) diverged from what it recorded: position 03 (action) holds step "reserve", the code now has "reserve-v2" there; nothing was applied`);
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    expect(recorder.callsFor(gid).map((c) => c.path)).toEqual(['/Debit', '/Reserve']);
    expect(await balance()).toBe(100);
    await client.forceStop(gid);
    await waitForTransStatus(gid, 'failed');
  });
});

describe('with authenticated calls', () => {
  let signed: Awaited<ReturnType<typeof startWorkflowApp>>;
  let signedClient: DtmClient;
  beforeAll(async () => {
    signed = await startWorkflowApp({
      port: await freePort(),
      grpcPort: await freePort(),
      dtmUrl: harness().dtm.serverUrl,
      dtmGrpc: harness().dtm.grpcAddress,
      pgUrl: dbs.postgres.url,
      branchAuthKeys: [randomBytes(33).toString('base64')],
      passThroughHeaders: ['x-tenant', 'x-extra'],
    });
    const { DtmClient: Client } = await import('nestjs-dtm');
    signedClient = signed.app.get(Client);
  });
  afterAll(async () => {
    await signed?.close();
  });

  it.each(PROTOCOLS)('a resume without the workflow\'s token runs nothing (401); DTM\'s own resume (%s) carries it and the workflow finishes', async (protocol) => {
    const gid = await signedClient.generateGid();
    // ONGOING until the test lets it succeed. DTM's own resume (carrying the token), which another test file's /resetCronTime
    // on the shared server can bring at any moment, may meet it too; a call made while a forged resume is answered is one that resume ran
    let ready = false;
    let forging = 0;
    const ranByForged: string[] = [];
    recorder.handle('/Reserve', () => {
      if (forging > 0) ranByForged.push('/Reserve');
      return ready ? 200 : 425;
    });
    const forge = async (url: string, init?: RequestInit) => {
      forging += 1;
      try {
        return await fetch(url, init);
      } finally {
        forging -= 1;
      }
    };
    await expect(signedClient.executeWorkflow('transfer.v1', gid, input(), { protocol, retryInterval: 60 })).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    const { port } = signed.app.getHttpServer().address() as { port: number };
    const forged = await forge(`http://127.0.0.1:${port}/dtm/workflow/resume?gid=${gid}&op=transfer.v1&trans_type=workflow&branch_id=00`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(forged.status).toBe(401);
    const forgedToken = await forge(`http://127.0.0.1:${port}/dtm/workflow/resume?gid=${gid}&op=transfer.v1&trans_type=workflow&branch_id=00`, { headers: { 'dtm-auth': 'transfer.v1.00=AAAAAAAAAAAAAAAAAAAAAA' } });
    expect(forgedToken.status).toBe(401);
    // a made-up gid, or one that is no workflow of this name: the same 401 as a bad token, which tells nothing of DTM's records
    const made = await forge(`http://127.0.0.1:${port}/dtm/workflow/resume?gid=made-up-gid&op=transfer.v1&trans_type=workflow&branch_id=00`, { method: 'POST' });
    const otherName = await forge(`http://127.0.0.1:${port}/dtm/workflow/resume?gid=${gid}&op=transfer.v2&trans_type=workflow&branch_id=00`, { method: 'POST' });
    expect([made.status, otherName.status]).toEqual([401, 425]); // transfer.v2 is no workflow of this app: ONGOING before any lookup
    // a gid that breaks the key rule: the same 401, whatever the name (checked before it)
    const malformed = await Promise.all(['transfer.v1', 'transfer.v2'].map((op) => forge(`http://127.0.0.1:${port}/dtm/workflow/resume?gid=bad%3Bgid&op=${op}&trans_type=workflow&branch_id=00`, { method: 'POST' })));
    expect(malformed.map((r) => r.status)).toEqual([401, 401]);
    expect(await made.text()).toContain('the call carries no token stored by the app that started it');
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    expect(ranByForged).toEqual([]);
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.status}`).join(', ')).toMatch(/^\/Debit 200(, \/Reserve 425)+$/);

    ready = true;
    await untilDtmResumes(gid);
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.status}`).join(', ')).toMatch(/^\/Debit 200(, \/Reserve 425)+, \/Reserve 200$/);
    expect(await balance()).toBe(130);
  });

  it.each([['succeed', 1], ['failed', 99]] as const)("DTM's resume replayed with the token read from DTM once the workflow %s: no execution, no step or compensation called, account 1's balance as it ended", async (end, account) => {
    const gid = await signedClient.generateGid();
    recorder.answer('/Reserve', 425, 200);
    // account 99 does not exist: the local step answers FAILURE and the workflow rolls back
    await expect(signedClient.executeWorkflow('transfer.v1', gid, input({ account }), { retryInterval: 60 })).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    const { 'dtm-auth': token } = (await queryTrans(gid)).transaction?.branch_headers ?? {}; // what anyone reading DTM's API saw while it was pending
    const { port } = signed.app.getHttpServer().address() as { port: number };
    const resume = () => fetch(`http://127.0.0.1:${port}/dtm/workflow/resume?gid=${gid}&op=transfer.v1&trans_type=workflow&branch_id=00`, { method: 'POST', headers: { 'dtm-auth': token ?? '' } });
    expect((await resume()).status).toBe(200); // as DTM's own resume: the workflow finishes
    expect((await queryTrans(gid)).transaction?.status).toBe(end);
    const executions = signed.app.get((await import('./workflow.app.js')).Executions);
    const ran = { executions: executions.counts.get(gid), calls: recorder.callsFor(gid).map((c) => c.path), balance: await balance() };
    expect(ran.calls).toEqual(end === 'succeed' ? ['/Debit', '/Reserve', '/Reserve'] : ['/Debit', '/Reserve', '/Reserve', '/ReserveRevert', '/DebitRevert']);

    const replayed = await resume();
    // DTM's boltdb store (the harness's) keeps no custom data of a finished workflow: its record names no workflow, which the module answers as it answers a call without its token
    expect(replayed.status).toBe(401);
    expect(await replayed.text()).toContain('the call carries no token stored by the app that started it');
    expect({ executions: executions.counts.get(gid), calls: recorder.callsFor(gid).map((c) => c.path), balance: await balance() }).toEqual(ran);
    expect((await queryTrans(gid)).transaction?.status).toBe(end);
  });

  it('DTM\'s resume replayed with the token read from DTM and headers of the caller\'s own: the resumed run passes on only the headers it was started with', async () => {
    const gid = await signedClient.generateGid();
    recorder.answer('/Reserve', 425, 200);
    const started = signedClient.executeWorkflow('transfer.v1', gid, input({ notify: recorder.urlFor('/Notify') }), { retryInterval: 60, branchHeaders: { 'x-tenant': 'acme' } });
    await expect(started).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    const stored = (await queryTrans(gid)).transaction?.branch_headers ?? {};
    expect(stored['dtm-auth-headers']).toBe('x-tenant');
    const { port } = signed.app.getHttpServer().address() as { port: number };
    const resume = await fetch(`http://127.0.0.1:${port}/dtm/workflow/resume?gid=${gid}&op=transfer.v1&trans_type=workflow&branch_id=00`, {
      headers: { 'dtm-auth': stored['dtm-auth'] ?? '', 'x-tenant': 'evil', 'x-extra': 'injected' },
    });
    expect(resume.status).toBe(200);
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.status} ${c.headers['x-tenant']} ${c.headers['x-extra']}`)).toEqual([
      '/Debit 200 acme undefined',
      '/Reserve 425 acme undefined',
      '/Reserve 200 acme undefined',
    ]);
    // what the workflow's code started in the resumed run passed on the stored header, not the call's
    await waitForTransStatus(`${gid}-n`, 'succeed');
    expect(recorder.callsFor(`${gid}-n`).map((c) => `${c.path} ${c.headers['x-tenant']} ${c.headers['x-extra']}`)).toEqual(['/Notify acme undefined']);
    expect(await balance()).toBe(130);
  });
});
