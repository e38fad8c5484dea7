// Workflow mode where an execution meets another one, a refused record, a refused or unanswered
// submit, a resume the app's own middleware answered first, an HTTP body holding DTM's
// words, an XA step that cannot be resumed, an XA step that caught an SQL error, two callbacks on
// one step, a second input, the failed step's own rollback (compensateFailedStep), and a name gRPC metadata cannot carry: each as DTM v1.19.0's Go workflow SDK and docs/workflow.md have it,
// against the real DTM server (found by a review of the workflow mode).
import 'reflect-metadata';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable, Logger, Module, type INestApplication, type LoggerService } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { NestFactory } from '@nestjs/core';
import mysql from 'mysql2/promise';
import pg from 'pg';
import {
  DtmClient,
  DtmFailureError,
  DtmGidInUseError,
  DtmModule,
  DtmUnavailableError,
  DtmUsageError,
  DtmWorkflow,
  DtmWorkflowPendingError,
  ensureBarrierSchema,
  mysqlBarrierDatabase,
  mysqlXaDatabase,
  pgBarrierDatabase,
  redisBarrierConnection,
  type WorkflowContext,
} from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { latch, settledWithin, sleep, untilNotPending } from '../support/fixtures.js';
import { RecordingLogger } from '../support/recording-logger.js';
import { harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { freePort, waitUntil } from '../support/services/process.js';
import { pgXaAt } from '../support/pg-xa.js';
import { testRedis } from '../support/redis-client.js';
import { answerSwallowingProxy } from '../support/swallow-proxy.js';

interface Urls {
  a: string;
  aRevert: string;
  b: string;
  amount?: number;
}

/** What a `review.hang.v1` execution waits on, per gid. */
const holds = new Map<string, ReturnType<typeof latch>>();

/** A new hold for gid `gid`: the `review.hang.v1` executions of it that start from now on wait on it. */
function holdNext(gid: string): ReturnType<typeof latch> {
  const hold = latch();
  holds.set(gid, hold);
  return hold;
}

/** Completed runs of callbacks, per name. */
const done = new Map<string, number>();
const attempts = new Map<string, number>();
const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

@Injectable()
class ReviewWorkflows {
  @DtmWorkflow('review.two.v1')
  async two(wf: WorkflowContext<Urls>) {
    await wf.step('a').onRollback((b) => b.http(wf.input.aRevert, { n: 1 })).http(wf.input.a, { amount: wf.input.amount ?? 1 });
    await wf.step('b').http(wf.input.b, { amount: wf.input.amount ?? 1 });
    return 'ok';
  }

  @DtmWorkflow('review.opts.v1', { transaction: { retryInterval: 45, branchTimeout: 7 } })
  async opts(wf: WorkflowContext<Urls>) {
    return wf.step('a').http(wf.input.a, { n: 1 });
  }

  @DtmWorkflow('review.hang.v1', { transaction: { branchTimeout: 1 } })
  async hang(wf: WorkflowContext<{ key: string }>) {
    await wf.step('a').run(() => 1);
    await holds.get(wf.input.key)!.wait(); // outside any step: nothing of the module bounds it
    return 'released';
  }

  @DtmWorkflow('review.one.v1')
  async one(wf: WorkflowContext<Urls>) {
    return wf.step('a').http(wf.input.a, { n: 1 });
  }

  @DtmWorkflow('review.xa.v1')
  async xa(wf: WorkflowContext<{ id: number }>) {
    await wf.step('hold').xa('pg', async (c: pg.Client) => {
      await c.query('UPDATE review_acc SET balance = balance - 1 WHERE id = $1', [wf.input.id]);
      return 1;
    });
    return 'held';
  }

  /** An XA step on MariaDB, then one on PostgreSQL whose last statement fails and whose error it catches. */
  @DtmWorkflow('review.xa-swallow.v1')
  async xaSwallow(wf: WorkflowContext<{ id: number }>) {
    await wf.step('mysql').xa('mysql', async (c: mysql.Connection) => {
      await c.execute('UPDATE review_acc SET balance = balance + 10 WHERE id = ?', [wf.input.id]);
    });
    await wf.step('pg').xa('pg', async (c: pg.Client) => {
      await c.query('UPDATE review_acc SET balance = balance - 10 WHERE id = $1', [wf.input.id]);
      await c.query('SELECT 1 / 0').catch(() => undefined); // caught: PostgreSQL's transaction is aborted now
    });
    return 'done';
  }

  @DtmWorkflow('review.tworb.v1')
  async tworb(wf: WorkflowContext<{ key: string }>) {
    await wf
      .step('a')
      .onRollback(() => void bump(done, `${wf.input.key}-cb1`))
      .onRollback(() => void bump(done, `${wf.input.key}-cb2`))
      .run(() => bump(attempts, wf.input.key));
  }

  @DtmWorkflow('review.xacb.v1')
  async xacb(wf: WorkflowContext<{ key: string }>) {
    await wf
      .step('hold')
      .onRollback(() => void bump(done, `${wf.input.key}-cb`))
      .xa('pg', () => bump(attempts, wf.input.key));
  }

  @DtmWorkflow('review.reason.v1')
  async reason(wf: WorkflowContext<{ xs: number }>) {
    await wf.step('a').run(() => {
      if (wf.input.xs < 0) throw new DtmFailureError(''); // no reason
      throw new DtmFailureError(`${'x'.repeat(wf.input.xs)}😀 and more`); // its character xs + 1 takes two UTF-16 units
    });
  }

  /** Rolls back with reason `r` (`times` times over): thrown by a local step, or (`direct`) by the workflow's code after it. */
  @DtmWorkflow('review.reason-text.v1')
  async reasonText(wf: WorkflowContext<{ r: string; times: number; direct: boolean }>) {
    const reason = wf.input.r.repeat(wf.input.times);
    await wf.step('a').run(() => {
      if (!wf.input.direct) throw new DtmFailureError(reason);
    });
    throw new DtmFailureError(reason);
  }

  /** Step b's outcome is never awaited (a forgotten `await`): the function returns while it runs. */
  @DtmWorkflow('review.unawaited.v1')
  async unawaited(wf: WorkflowContext<Urls>) {
    await wf.step('a').onRollback((b) => b.http(wf.input.aRevert, { n: 1 })).http(wf.input.a, { amount: 1 });
    void wf.step('b').http(wf.input.b, { amount: 1 });
    return 'ok';
  }

  /** Step b's onRollback starts a step of the workflow (wf.step) instead of calling through its handle; step c refuses. */
  @DtmWorkflow('review.phase2-step.v1')
  async phase2Step(wf: WorkflowContext<Urls & { key: string }>) {
    await wf.step('a').onRollback((b) => b.http(wf.input.aRevert, { n: 1 })).http(wf.input.a, { amount: 1 });
    await wf
      .step('b')
      .onRollback(async () => {
        await wf.step('refund').run(() => void bump(done, `${wf.input.key}-refund`));
      })
      .run(() => 1);
    await wf.step('c').run(() => {
      throw new DtmFailureError('c refused');
    });
  }

  /** One local step per item, after a recorded time: `n` items make `n + 1` steps. */
  @DtmWorkflow('review.many-steps.v1')
  async manySteps(wf: WorkflowContext<{ n: number }>) {
    await wf.now();
    for (let i = 0; i < wf.input.n; i++) await wf.step(`item-${i}`).run(() => i);
    return wf.input.n;
  }

  /** Returns a BigInt (or, with `step`, has a step return one), which JSON cannot hold. */
  @DtmWorkflow('review.bigint.v1')
  async bigint(wf: WorkflowContext<{ step?: boolean }>) {
    const n = await wf.step('a').run(() => 1);
    if (wf.input.step) await wf.step('b').run(() => 2n);
    return { n: BigInt(n) };
  }

  /** A local step behind the module's Redis barrier connection, which holds no local transaction. */
  @DtmWorkflow('review.redis.v1')
  async redis(wf: WorkflowContext<{ key: string }>) {
    return wf.step('a').run(() => bump(attempts, wf.input.key), { barrier: 'cache' });
  }

  /** Step a succeeds, step b answers FAILURE; each has an onRollback, which notes its step in `rolledBack` (per key, in the order they ran). */
  @DtmWorkflow('review.failed-step.v1')
  async failedStep(wf: WorkflowContext<{ key: string }>) {
    await failedStepBody(wf);
  }

  @DtmWorkflow('review.failed-step-compensated.v1', { compensateFailedStep: true })
  async failedStepCompensated(wf: WorkflowContext<{ key: string }>) {
    await failedStepBody(wf);
  }

  /** One step calling `t`, or a compensation calling it. */
  @DtmWorkflow('review.target.v1')
  async target(wf: WorkflowContext<{ t: string; a?: string }>) {
    if (wf.input.a) {
      await wf.step('a').onRollback((b) => b.http(wf.input.t)).http(wf.input.a, { n: 1 });
      throw new DtmFailureError('roll back');
    }
    return wf.step('a').http(wf.input.t, { n: 1 });
  }

  /** Rejects with no reason (a library's `reject()`), after a step. */
  @DtmWorkflow('review.reject.v1')
  async reject(wf: WorkflowContext<unknown>) {
    await wf.step('a').run(() => 1);
    return Promise.reject(undefined);
  }

  /** Step a (its runs counted per key) returns `n` characters, recorded as `{"k":"a","d":"..."}`: `n + 16` bytes. */
  @DtmWorkflow('review.big-step.v1')
  async bigStep(wf: WorkflowContext<{ key: string; n: number }>) {
    const value = await wf.step('a').run(() => {
      bump(attempts, wf.input.key);
      return 'v'.repeat(wf.input.n);
    });
    return value.length;
  }

  /** One local step; its input's `pad` only makes the input as long as a test needs (the name has 19 characters). */
  @DtmWorkflow('review.big-input.v1')
  async bigInput(wf: WorkflowContext<{ pad: string }>) {
    return wf.step('a').run(() => wf.input.pad.length);
  }

  /** A step whose onCommit notes its run (per key), and a result of `n` characters. */
  @DtmWorkflow('review.big-result.v1')
  async bigResult(wf: WorkflowContext<{ key: string; n: number }>) {
    await wf
      .step('a')
      .onCommit(() => void bump(done, `${wf.input.key}-commit`))
      .run(() => 1);
    return 'r'.repeat(wf.input.n);
  }

  /** Step a has callbacks (noted per key); step b's error is swallowed, as for a best-effort step; then it returns, or (`refuse`) throws a DtmFailureError. */
  @DtmWorkflow('review.swallow.v1')
  async swallow(wf: WorkflowContext<Urls & { key: string; refuse?: boolean }>) {
    await wf
      .step('a')
      .onCommit(() => void bump(done, `${wf.input.key}-commit`))
      .onRollback(() => void bump(done, `${wf.input.key}-rollback`))
      .run(() => 1);
    try {
      await wf.step('b').http(wf.input.b, { n: 1 });
    } catch {
      // best effort
    }
    if (wf.input.refuse) throw new DtmFailureError('refused after b');
    return 'ok';
  }

  @DtmWorkflow('überweisung')
  async transfer(wf: WorkflowContext<{ key: string }>) {
    return wf.step('a').run(() => `sent ${wf.input.key}`);
  }
}

/** The onRollback callbacks that ran, per workflow key, in their order. */
const rolledBack = new Map<string, string[]>();

async function failedStepBody(wf: WorkflowContext<{ key: string }>): Promise<void> {
  const note = (step: string) => void rolledBack.set(wf.input.key, [...(rolledBack.get(wf.input.key) ?? []), step]);
  await wf.step('a').onRollback(() => note('a')).run(() => 1);
  await wf
    .step('b')
    .onRollback(() => note('b'))
    .run(() => {
      throw new DtmFailureError('b refused');
    });
}

/** What an app of {@link startApp} is built with beyond its DTM config: an HTTP adapter of the test's, a logger. */
interface AppParts {
  adapter?: ExpressAdapter;
  logger?: LoggerService;
}

async function startApp(pgUrl: string, mysqlConfig: mysql.ConnectionOptions, redisUrl: string, dtm: { serverUrl?: string; timeout?: number } = {}, parts: AppParts = {}): Promise<{ app: INestApplication; client: DtmClient; close(): Promise<void> }> {
  const port = await freePort();
  const pool = new pg.Pool({ connectionString: pgUrl, max: 3 });
  const redis = testRedis(redisUrl);
  @Module({
    imports: [
      DtmModule.forRoot({
        config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, appUrl: `http://127.0.0.1:${port}`, barrierTable: 'dtm_barrier', retryInterval: 60, ...dtm },
        barrierConnections: { pg: pgBarrierDatabase(pool), cache: redisBarrierConnection(redis) },
        xaConnections: {
          pg: pgXaAt(pgUrl),
          mysql: mysqlXaDatabase(() => mysql.createConnection(mysqlConfig)),
        },
      }),
    ],
    providers: [ReviewWorkflows],
  })
  class ReviewModule {}
  // forceCloseConnections: DTM resumes workflows left pending on a kept-alive connection, which would hold close() (test/support/README.md)
  const options = { logger: parts.logger ?? ['error' as const], forceCloseConnections: true };
  const app = parts.adapter ? await NestFactory.create(ReviewModule, parts.adapter, options) : await NestFactory.create(ReviewModule, options);
  await app.listen(port, '127.0.0.1');
  return { app, client: app.get(DtmClient), close: async () => void (await app.close(), await pool.end(), redis.disconnect()) };
}

let dbs: FileDatabases;
let pool: pg.Pool;
let my: mysql.Pool;
let recorder: Recorder;
let A: Awaited<ReturnType<typeof startApp>>;
let B: Awaited<ReturnType<typeof startApp>>;

beforeAll(async () => {
  dbs = await fileDatabases();
  pool = new pg.Pool({ connectionString: dbs.postgres.url });
  my = mysql.createPool(dbs.mariadb.config);
  for (const run of [(s: string) => pool.query(s), (s: string) => my.query(s)]) await run('CREATE TABLE review_acc (id int PRIMARY KEY, balance int NOT NULL)');
  await ensureBarrierSchema(pgBarrierDatabase(pool), { table: 'dtm_barrier' });
  await ensureBarrierSchema(mysqlBarrierDatabase(my), { table: 'dtm_barrier' });
  recorder = await startRecorder();
  A = await startApp(dbs.postgres.url, dbs.mariadb.config, dbs.redis.url);
  B = await startApp(dbs.postgres.url, dbs.mariadb.config, dbs.redis.url);
});
afterAll(async () => {
  await A?.close();
  await B?.close();
  await recorder?.close();
  await Promise.all([pool?.end(), my?.end()]);
});
beforeEach(() => recorder.reset());

const urls = (): Urls => ({ a: recorder.urlFor('/A'), aRevert: recorder.urlFor('/ARevert'), b: recorder.urlFor('/B') });

const failure = (e: unknown) => (e instanceof Error ? `${e.constructor.name}: ${e.message}` : JSON.stringify(e));

describe('workflow mode at its edges', () => {
  it('a failure reason longer than DTM\'s SQL stores keep is cut at a character, never inside one: DTM records the first 1023 and "…"', async () => {
    const gid = await A.client.generateGid();
    const error = await A.client.executeWorkflow('review.reason.v1', gid, { xs: 1023 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    const { transaction } = await queryTrans(gid);
    expect(transaction).toMatchObject({ status: 'failed', rollback_reason: `${'x'.repeat(1023)}…` });
  });

  it("an option given as undefined when executing (an unset variable) leaves the decorator's value: DTM records the decorator's retry interval", async () => {
    const gid = await A.client.generateGid();
    const branchTimeout = process.env.NO_SUCH_VARIABLE_FOR_THIS_TEST ? Number(process.env.NO_SUCH_VARIABLE_FOR_THIS_TEST) : undefined;
    await expect(A.client.executeWorkflow('review.opts.v1', gid, urls(), { retryInterval: undefined, branchTimeout })).resolves.toMatchObject({ status: 'succeed' });
    const { transaction } = await queryTrans(gid);
    expect(transaction).toMatchObject({ status: 'succeed', retry_interval: 45, request_timeout: 7 });
  });

  it('two executions of one gid: the slower one, finding the workflow ended in success, stops without running a rollback callback', async () => {
    const gid = await A.client.generateGid();
    const slowB = latch();
    let bCalls = 0;
    recorder.handle('/B', async () => {
      bCalls += 1;
      if (bCalls === 1) await slowB.wait(); // replica A's call of step b is slow
      return 200;
    });
    const first = A.client.executeWorkflow('review.two.v1', gid, urls()).catch((e: unknown) => e);
    await slowB.reached;
    // replica B (DTM's resume, or a retried request) runs it to the end meanwhile
    expect(await B.client.executeWorkflow('review.two.v1', gid, urls())).toEqual({ status: 'succeed', result: 'ok' });
    slowB.open();
    const outcome = await first;
    // DTM refused A's record of step b (the workflow is no longer prepared): not a business FAILURE
    expect(outcome).toBeInstanceOf(DtmWorkflowPendingError);
    expect(failure(outcome)).toMatch(/DTM refused to record step 02's action .*: the workflow is no longer prepared/);
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    expect(recorder.callsTo('/ARevert', gid)).toEqual([]);
  });

  it("two executions reaching the workflow's end: DTM refuses the later one's submit (HTTP 500 'storage: NotFound'), and that execution ends with the outcome DTM recorded (before: DtmWorkflowPendingError, its cause DTM's 500, for a workflow DTM holds succeeded)", async () => {
    const gid = await A.client.generateGid();
    const first = holdNext(gid);
    const later = A.client.executeWorkflow('review.hang.v1', gid, { key: gid });
    await first.reached; // A's execution waits outside any step, step 'a' recorded
    // another replica's execution (or DTM's resume) runs it from DTM's record meanwhile, and ends first
    const second = holdNext(gid);
    const sooner = B.client.executeWorkflow('review.hang.v1', gid, { key: gid });
    await second.reached;
    second.open();
    await expect(sooner).resolves.toEqual({ status: 'succeed', result: 'released' });
    first.open();
    await expect(later.catch(failure)).resolves.toEqual({ status: 'succeed', result: 'released' });
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
  });

  it('a submit DTM took whose answer never came: executeWorkflow reads DTM\'s record and ends with the outcome it holds, a success or a rollback (before: DtmWorkflowPendingError, its cause the timeout, for a workflow DTM holds ended)', async () => {
    // a TCP proxy in front of DTM that passes a submit on and never its answer
    const proxy = await answerSwallowingProxy(harness().dtm.serverUrl, (request) => request.startsWith('POST /api/dtmsvr/submit'));
    const C = await startApp(dbs.postgres.url, dbs.mariadb.config, dbs.redis.url, { serverUrl: proxy.url, timeout: 2 });
    try {
      const [won, lost] = [await A.client.generateGid(), await A.client.generateGid()];
      recorder.answer('/A', { status: 200, body: { paid: 7 } });
      const [succeeded, rolledBack] = await Promise.all([
        settledWithin(C.client.executeWorkflow('review.one.v1', won, urls()), 20_000),
        settledWithin(C.client.executeWorkflow('review.reason-text.v1', lost, { r: 'no stock', times: 1, direct: true }), 20_000),
      ]);
      expect([succeeded, failure(rolledBack)]).toEqual([{ status: 'succeed', result: { paid: 7 } }, 'DtmFailureError: no stock']);
      expect([(await queryTrans(won)).transaction?.status, (await queryTrans(lost)).transaction]).toEqual(['succeed', expect.objectContaining({ status: 'failed', rollback_reason: 'no stock' })]);
    } finally {
      await C.close();
      await proxy.close();
    }
  });

  it('a gid running another workflow in this process: refused with DtmGidInUseError at once (not answered that workflow\'s outcome), and the running one ends as it would have', async () => {
    const gid = await A.client.generateGid();
    const slowB = latch();
    recorder.handle('/B', async () => {
      await slowB.wait();
      return 200;
    });
    const first = A.client.executeWorkflow('review.two.v1', gid, urls()).catch((e: unknown) => e);
    await slowB.reached;
    // the same gid for another workflow, while review.two.v1 waits on its step b: DTM holds that one, prepared
    const other = await settledWithin(A.client.executeWorkflow('review.one.v1', gid, urls()), 10_000);
    slowB.open();
    expect([failure(other), failure(await first)]).toEqual([
      expect.stringMatching(/^DtmGidInUseError: DTM refused executeWorkflow\(review\.one\.v1\) of \S+: it already holds a transaction \S+ that is "prepared" \(workflow "review\.two\.v1", not workflow "review\.one\.v1"\)/),
      JSON.stringify({ status: 'succeed', result: 'ok' }),
    ]);
    expect(recorder.callsFor(gid).map((c) => c.path)).toEqual(['/A', '/B']);
  });

  it('an HTTP step is read by its status alone: a 200 whose JSON holds ONGOING is its value', async () => {
    const gid = await A.client.generateGid();
    recorder.answer('/A', { status: 200, body: { order: 7, state: 'ONGOING' } });
    expect(await A.client.executeWorkflow('review.one.v1', gid, urls())).toEqual({ status: 'succeed', result: { order: 7, state: 'ONGOING' } });
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
  });

  it('an HTTP step answering 500 with FAILURE in its body leaves the workflow pending (not rolled back); run again, it succeeds', async () => {
    const gid = await A.client.generateGid();
    recorder.answer('/A', { status: 500, body: { message: 'upstream PAYMENT_FAILURE, try again' } }, 200);
    const first = await A.client.executeWorkflow('review.two.v1', gid, urls()).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(DtmWorkflowPendingError);
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    expect(await A.client.executeWorkflow('review.two.v1', gid, urls())).toEqual({ status: 'succeed', result: 'ok' });
    expect(recorder.callsTo('/ARevert', gid)).toEqual([]);
  });

  it('an XA step prepared but not recorded: the resume rolls the workflow back and rolls the prepared XA transaction back', async () => {
    await pool.query('INSERT INTO review_acc VALUES (1, 100)');
    const gid = await A.client.generateGid();
    // DTM unreachable for the one record of step 01's action (or the process died there)
    const raw = (A.client as unknown as { rawHttp: { registerBranch(r: { branchId: string; fields?: Record<string, string> }): Promise<void> } }).rawHttp;
    const original = raw.registerBranch.bind(raw);
    let failed = false;
    raw.registerBranch = async (r) => {
      if (!failed && r.branchId === '01' && r.fields?.op === 'action') {
        failed = true;
        throw new Error('connect ECONNREFUSED (simulated)');
      }
      return original(r as never);
    };
    try {
      expect(await A.client.executeWorkflow('review.xa.v1', gid, { id: 1 }).catch((e: unknown) => e)).toBeInstanceOf(DtmWorkflowPendingError);
    } finally {
      raw.registerBranch = original;
    }
    const prepared = async () => (await pool.query('SELECT gid FROM pg_prepared_xacts WHERE gid = $1', [`${gid}-01`])).rows.length;
    expect(await prepared()).toBe(1);
    const second = await A.client.executeWorkflow('review.xa.v1', gid, { id: 1 }).catch((e: unknown) => e);
    const left = await prepared();
    if (left) await pool.query(`ROLLBACK PREPARED '${gid}-01'`); // do not leave the lock to the next test
    expect(second).toBeInstanceOf(DtmFailureError);
    expect(left).toBe(0);
    expect((await pool.query('SELECT balance FROM review_acc WHERE id = 1')).rows).toEqual([{ balance: 100 }]);
    const record = await queryTrans(gid);
    expect([record.transaction?.status, record.branches.filter((b) => b.op === 'rollback').map((b) => `${b.branch_id} ${b.status}`)]).toEqual(['failed', ['01 succeed']]);
  });

  it('an XA step on PostgreSQL that caught an SQL error prepared nothing: the workflow rolls back at once (DtmFailureError saying so), the MariaDB XA step before it too', async () => {
    await pool.query('INSERT INTO review_acc VALUES (2, 100)');
    await my.query('INSERT INTO review_acc VALUES (2, 100)');
    const gid = await A.client.generateGid();
    const outcome = await A.client.executeWorkflow('review.xa-swallow.v1', gid, { id: 2 }).catch((e: unknown) => e);
    const [recovered] = await my.query('XA RECOVER');
    const mysqlPrepared = (recovered as { data: string }[]).map((r) => String(r.data)).filter((xid) => xid.startsWith(gid));
    for (const xid of mysqlPrepared) await my.query(`XA ROLLBACK '${xid}'`); // its row lock would stay for the next test
    const pgPrepared = (await pool.query('SELECT gid FROM pg_prepared_xacts WHERE gid LIKE $1', [`${gid}%`])).rows;
    expect(outcome).toBeInstanceOf(DtmFailureError);
    expect((outcome as Error).message).toContain(`PostgreSQL prepared nothing (PREPARE TRANSACTION '${gid}-02' answered ROLLBACK)`);
    expect([mysqlPrepared, pgPrepared]).toEqual([[], []]);
    const [myRows] = await my.query('SELECT balance FROM review_acc WHERE id = 2');
    expect([myRows, (await pool.query('SELECT balance FROM review_acc WHERE id = 2')).rows]).toEqual([[{ balance: 100 }], [{ balance: 100 }]]);
    const record = await queryTrans(gid);
    expect(record.transaction?.status).toBe('failed');
    expect(record.transaction?.rollback_reason).toContain(`PREPARE TRANSACTION '${gid}-02' answered ROLLBACK`);
    expect(record.branches.filter((b) => b.op === 'rollback').map((b) => `${b.branch_id} ${b.status}`).sort()).toEqual(['01 succeed', '02 succeed']);
  });

  it.each([
    ['two onRollback callbacks on one step', 'review.tworb.v1', /step "a" already has its onRollback; a step has at most one of each/],
    ['an onRollback on an XA step', 'review.xacb.v1', /XA step "hold" has an onRollback or onCommit/],
  ])('%s: refused (DtmUsageError) before its action runs', async (_, name, message) => {
    const gid = await A.client.generateGid();
    const outcome = await A.client.executeWorkflow(name, gid, { key: gid }).catch((e: unknown) => e);
    expect(outcome).toBeInstanceOf(DtmWorkflowPendingError);
    expect((outcome as Error).cause).toBeInstanceOf(DtmUsageError);
    expect((outcome as Error).message).toMatch(message);
    expect([attempts.get(gid), done.get(`${gid}-cb1`), done.get(`${gid}-cb`)]).toEqual([undefined, undefined, undefined]);
    expect((await queryTrans(gid)).branches).toEqual([]);
  });

  it("a DtmFailureError runs the onRollback of the steps before the failed one, not the failed step's own; with compensateFailedStep that one too, first", async () => {
    for (const [name, expected] of [
      ['review.failed-step.v1', ['a']],
      ['review.failed-step-compensated.v1', ['b', 'a']],
    ] as const) {
      const gid = await A.client.generateGid();
      const error = await A.client.executeWorkflow(name, gid, { key: gid }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmFailureError);
      expect((error as DtmFailureError).reason).toBe('b refused');
      expect({ name, rolledBack: rolledBack.get(gid) }).toEqual({ name, rolledBack: expected });
      expect((await queryTrans(gid)).transaction).toMatchObject({ status: 'failed' });
    }
  });

  it('executed again with another input before any step was recorded: every execution runs with the input DTM stored first', async () => {
    const gid = await A.client.generateGid();
    // a step answers ONGOING until the test lets it succeed, whoever runs it: a resume of DTM's between the executions (see untilNotPending) changes nothing
    const ready = { a: false, b: false };
    recorder.handle('/A', () => (ready.a ? 200 : 425));
    recorder.handle('/B', () => (ready.b ? 200 : 425));
    expect(await A.client.executeWorkflow('review.two.v1', gid, { ...urls(), amount: 30 }).catch((e: unknown) => e)).toBeInstanceOf(DtmWorkflowPendingError);
    ready.a = true;
    expect(await A.client.executeWorkflow('review.two.v1', gid, { ...urls(), amount: 50 }).catch((e: unknown) => e)).toBeInstanceOf(DtmWorkflowPendingError);
    ready.b = true;
    expect(await untilNotPending(() => A.client.executeWorkflow('review.two.v1', gid, { ...urls(), amount: 50 }))).toEqual({ status: 'succeed', result: 'ok' });
    const calls = recorder.callsFor(gid);
    expect([...new Set(calls.map((c) => c.body))]).toEqual(['{"amount":30}']);
    // the executions' calls (and a resume's): step a ONGOING, then its success, then step b's the same way
    expect(calls.map((c) => `${c.path} ${c.status}`).join(', ')).toMatch(/^(\/A 425, )+\/A 200, (\/B 425, )+\/B 200$/);
  });

  it('executed again while unfinished, before any step was recorded, with other options and headers: every execution runs with the first one\'s, which DTM keeps (its resumes run with them) and records when the workflow finishes (before: each ran its own steps with its own options and headers, and the one that finished left its options in DTM\'s record)', async () => {
    const gid = await A.client.generateGid();
    // ONGOING until the test lets it succeed, whoever runs it: a resume of DTM's between the executions (see untilNotPending) changes nothing
    let ready = false;
    recorder.handle('/A', () => (ready ? 200 : 425));
    const record = async () => {
      const t = (await queryTrans(gid)).transaction;
      return [t?.status, t?.retry_interval, t?.request_timeout, t?.branch_headers];
    };
    const run = (retryInterval: number, branchTimeout: number, tenant: string) => A.client.executeWorkflow('review.one.v1', gid, urls(), { retryInterval, branchTimeout, branchHeaders: { 'x-tenant': tenant } });
    expect(await run(30, 9, 'first').catch((e: unknown) => e)).toBeInstanceOf(DtmWorkflowPendingError);
    expect(await record()).toEqual(['prepared', 30, 9, { 'x-tenant': 'first' }]);
    expect(await run(5, 4, 'second').catch((e: unknown) => e)).toBeInstanceOf(DtmWorkflowPendingError);
    expect(await record()).toEqual(['prepared', 30, 9, { 'x-tenant': 'first' }]);
    ready = true;
    expect(await untilNotPending(() => run(7, 3, 'third'))).toMatchObject({ status: 'succeed' });
    expect(await record()).toEqual(['succeed', 30, 9, { 'x-tenant': 'first' }]);
    // the two pending executions' calls (and any resume's), then the one that succeeded: all with the first one's headers
    expect(recorder.callsTo('/A', gid).map((c) => `${c.status} ${c.headers['x-tenant']}`).join(', ')).toMatch(/^(425 first, ){2,}200 first$/);
  });

  it('a workflow function that never settles (awaits, outside any step, a promise that does not resolve): nothing bounds it, executeWorkflow does not resolve, DTM holds it prepared and a resume meanwhile is answered pending (425); it ends when the promise does', async () => {
    const gid = await A.client.generateGid();
    const hold = holdNext(gid);
    const execution = A.client.executeWorkflow('review.hang.v1', gid, { key: gid });
    let settled = false;
    void execution.finally(() => (settled = true)).catch(() => undefined);
    await hold.reached; // the function waits, its step 'a' recorded
    await sleep(1500); // longer than the workflow's branch timeout (1 s): no bound applies to the function itself
    expect(settled).toBe(false);
    const resume = await fetch(`${await A.app.getUrl()}/dtm/workflow/resume?gid=${gid}&op=review.hang.v1&trans_type=workflow&branch_id=00`.replace('[::1]', '127.0.0.1'), { method: 'POST' });
    expect(resume.status).toBe(425);
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    hold.open();
    await expect(execution).resolves.toEqual({ status: 'succeed', result: 'released' });
  });

  it("a resume the app answered itself before the workflow ended (a request-timeout middleware on the Express instance the app is built on): the module's late answer is dropped with a warning, never left an unhandled rejection (before: ERR_HTTP_HEADERS_SENT, unhandled, which ends a Node process); the workflow ends as it would have", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const adapter = new ExpressAdapter();
    // as connect-timeout does: the middleware answers a request still running after 100 ms, and lets it run on
    adapter.getInstance().use('/dtm/workflow/resume', (_req: unknown, res: { headersSent: boolean; status(n: number): { send(b: string): void } }, next: () => void) => {
      setTimeout(() => res.headersSent || res.status(503).send('request timed out'), 100).unref();
      next();
    });
    const logger = new RecordingLogger();
    const C = await startApp(dbs.postgres.url, dbs.mariadb.config, dbs.redis.url, {}, { adapter, logger });
    try {
      const gid = await B.client.generateGid();
      const hold = holdNext(gid);
      const execution = B.client.executeWorkflow('review.hang.v1', gid, { key: gid });
      await hold.reached; // B's execution waits, step 'a' recorded
      // C's resume runs the function too, which waits on a hold of its own: the middleware answers it meanwhile
      const resumed = holdNext(gid);
      const resume = await fetch(`${await C.app.getUrl()}/dtm/workflow/resume?gid=${gid}&op=review.hang.v1&trans_type=workflow&branch_id=00`.replace('[::1]', '127.0.0.1'), { method: 'POST' });
      expect([resume.status, await resume.text()]).toEqual([503, 'request timed out']);
      await resumed.reached;
      // B's execution ends the workflow first, then C's resume ends (its submit refused, with the success DTM recorded: answered 200)
      hold.open();
      await expect(execution).resolves.toEqual({ status: 'succeed', result: 'released' });
      resumed.open();
      const warning = `warn workflow review.hang.v1 gid=${gid}: the resume ended, but its answer (200) could not be sent`;
      await waitUntil('the warning logged', async () => logger.lines.some((l) => l.startsWith(warning)), { timeoutMs: 5_000, intervalMs: 20 }).catch(() => undefined);
      expect([logger.lines.filter((l) => l.startsWith(warning)), unhandled.map(String)]).toEqual([[expect.stringContaining('Cannot set headers after they are sent to the client')], []]);
      expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await C.close();
      Logger.overrideLogger(['error']); // the apps of this file log errors only, as before C
    }
  });

  it('a value JSON cannot hold (a BigInt): as the input, refused (DtmUsageError) before DTM holds anything; as the result or a step\'s value, the workflow is left pending (DtmWorkflowPendingError, its cause a DtmUsageError saying so), nothing submitted', async () => {
    const [input, result, step] = [await A.client.generateGid(), await A.client.generateGid(), await A.client.generateGid()];
    const outcomes = [
      await A.client.executeWorkflow('review.one.v1', input, { n: 1n }).catch((e: unknown) => e),
      await A.client.executeWorkflow('review.bigint.v1', result, {}).catch((e: unknown) => e),
      await A.client.executeWorkflow('review.bigint.v1', step, { step: true }).catch((e: unknown) => e),
    ];
    const lines = async (gid: string) => {
      const { transaction, branches } = await queryTrans(gid);
      return [transaction?.status, ...branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)];
    };
    const recorded = [await lines(input), await lines(result), await lines(step)];
    for (const gid of [result, step]) await A.client.forceStop(gid); // not left to DTM's cron
    expect(outcomes.map((e) => [failure(e), failure((e as Error).cause)])).toEqual([
      [expect.stringMatching(/^DtmUsageError: the input of workflow "review\.one\.v1" cannot be stored as JSON \(.*BigInt.*\): /), expect.anything()],
      [expect.stringMatching(/^DtmWorkflowPendingError: /), expect.stringMatching(/^DtmUsageError: the result of workflow "review\.bigint\.v1" cannot be stored as JSON \(.*BigInt.*\): /)],
      [expect.stringMatching(/^DtmWorkflowPendingError: /), expect.stringMatching(/^DtmUsageError: the value of step "b" of workflow "review\.bigint\.v1" cannot be stored as JSON \(.*BigInt.*\): /)],
    ]);
    expect(recorded).toEqual([[undefined], ['prepared', '01 action succeed'], ['prepared', '01 action succeed']]);
  });

  it('a local step behind a Redis barrier connection: DtmUsageError (the cause of DtmWorkflowPendingError) saying Redis holds no local transaction, before the step runs', async () => {
    const gid = await A.client.generateGid();
    const outcome = await A.client.executeWorkflow('review.redis.v1', gid, { key: gid }).catch((e: unknown) => e);
    const recorded = await queryTrans(gid);
    await A.client.forceStop(gid); // not left to DTM's cron
    expect([failure(outcome), failure((outcome as Error).cause)]).toEqual([
      expect.stringMatching(/^DtmWorkflowPendingError: /),
      expect.stringMatching(/^DtmUsageError: workflow "review\.redis\.v1": barrier connection "cache" is Redis, which holds no local transaction for a step; give run\(\) a PostgreSQL or MySQL barrier database/),
    ]);
    expect([attempts.get(gid), recorded.transaction?.status, recorded.branches]).toEqual([undefined, 'prepared', []]);
  });

  it('a workflow name gRPC metadata cannot carry: refused over gRPC before DTM holds anything; runs over HTTP', async () => {
    const gid = await A.client.generateGid();
    const refused = await A.client.executeWorkflow('überweisung', gid, { key: gid }, { protocol: 'grpc' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DtmUsageError);
    expect((refused as Error).message).toMatch(/workflow "überweisung" cannot run over gRPC: .* rename the workflow, or run it over HTTP/);
    expect((await queryTrans(gid)).transaction).toBeNull();
    expect(await A.client.executeWorkflow('überweisung', gid, { key: gid })).toEqual({ status: 'succeed', result: `sent ${gid}` });
  });

  it("a step or a compensation calling '', a topic:// target or a branch name: pending with a DtmUsageError saying a workflow calls only http(s) URLs and gRPC targets (before: TypeError 'Invalid URL', or 'could not reach the branch topic://x ... check that the service runs')", async () => {
    const causes: string[] = [];
    for (const input of [{ t: '' }, { t: 'topic://stock' }, { t: '', a: recorder.urlFor('/A') }, { t: 'withdraw' }, { t: 'give-back', a: recorder.urlFor('/A') }]) {
      const gid = await A.client.generateGid();
      const error = await A.client.executeWorkflow('review.target.v1', gid, input).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmWorkflowPendingError);
      causes.push(failure((error as Error).cause));
    }
    expect(causes).toEqual([
      `DtmUsageError: workflow step 01 (op action) calls "", which nothing can be called at: a workflow's steps and their callbacks call http(s):// URLs and gRPC targets (host:port/package.Service/Method) only`,
      `DtmUsageError: workflow step 01 (op action) calls "topic://stock", which nothing can be called at: a workflow's steps and their callbacks call http(s):// URLs and gRPC targets (host:port/package.Service/Method) only`,
      `DtmUsageError: workflow step 01 (op rollback) calls "", which nothing can be called at: a workflow's steps and their callbacks call http(s):// URLs and gRPC targets (host:port/package.Service/Method) only`,
      // a branch name, as a saga's add() takes (before: '"withdraw" is neither a URL ..., nor a gRPC target ..., nor a branch name', which it is)
      `DtmUsageError: workflow step 01 (op action) calls "withdraw", a branch name: a workflow's steps and their callbacks take the target itself, an http(s):// URL or a gRPC target (host:port/package.Service/Method), not a branch name; for a decorated branch of this app, app.get(DtmBranchRegistry).target(kind, name, protocol) gives it (e.g. target('saga-action', "withdraw", 'grpc') for its @GrpcMethod, 'http' for its route)`,
      `DtmUsageError: workflow step 01 (op rollback) calls "give-back", a branch name: a workflow's steps and their callbacks take the target itself, an http(s):// URL or a gRPC target (host:port/package.Service/Method), not a branch name; for a decorated branch of this app, app.get(DtmBranchRegistry).target(kind, name, protocol) gives it (e.g. target('saga-action', "give-back", 'grpc') for its @GrpcMethod, 'http' for its route)`,
    ]);
  });

  it('a workflow function rejecting with no reason: pending, the error saying so (before: "another execution of it is running", which no other execution was)', async () => {
    const gid = await A.client.generateGid();
    const error = await A.client.executeWorkflow('review.reject.v1', gid, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmWorkflowPendingError);
    expect((error as Error).message).toBe(`workflow "review.reject.v1" (gid ${gid}) is not finished (it threw undefined, no Error); DTM will call the app back to resume it: await it again with executeWorkflow(), or query the gid later`);
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
  });

  it('a pending workflow stopped with forceStop: executeWorkflow says it was stopped and that no rollback callback ran (before: DtmFailureError "FAILURE", which reads as rolled back)', async () => {
    const gid = await A.client.generateGid();
    recorder.answer('/B', 425);
    await expect(A.client.executeWorkflow('review.two.v1', gid, urls())).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    await A.client.forceStop(gid);
    const error = await A.client.executeWorkflow('review.two.v1', gid, urls()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect((error as Error).message).toBe(
      `workflow "review.two.v1" (gid ${gid}) is failed in DTM without a rollback reason: it was stopped (forceStop), and none of its rollback callbacks ran; undo its steps' effects yourself if needed`,
    );
    expect(recorder.callsTo('/ARevert', gid)).toEqual([]);
  });

  it.each([
    ['returns', false],
    ['throws a DtmFailureError', true],
  ] as const)("a step whose record DTM refuses (the workflow ended meanwhile: stopped here), its error swallowed by the workflow's code, which then %s: pending with that refusal, no callback runs (before: step a's onCommit / onRollback ran on a workflow DTM holds failed)", async (_ends, refuse) => {
    const gid = await A.client.generateGid();
    const key = `swallow-${gid}`;
    // step b's branch: DTM's record ends (forceStop, as another execution's submit would) before it answers 200
    recorder.handle('/B', async (call) => {
      await A.client.forceStop(call.query.gid);
      return 200;
    });
    const error = await A.client.executeWorkflow('review.swallow.v1', gid, { ...urls(), key, refuse }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmWorkflowPendingError);
    expect(String((error as Error).cause)).toMatch(/^Error: DTM refused to record step 02's action \(.*\): the workflow is no longer prepared/);
    expect([done.get(`${key}-commit`), done.get(`${key}-rollback`)]).toEqual([undefined, undefined]);
    const { transaction, branches } = await queryTrans(gid);
    expect(transaction?.status).toBe('failed');
    expect(branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 action succeed']);
  });

  it('a workflow rolled back by a DtmFailureError without a reason: DTM records "FAILURE" as its rollback reason, not the empty one of a forceStop', async () => {
    const gid = await A.client.generateGid();
    await expect(A.client.executeWorkflow('review.reason.v1', gid, { xs: -1 })).rejects.toThrow(DtmFailureError);
    expect((await queryTrans(gid)).transaction).toMatchObject({ status: 'failed', rollback_reason: 'FAILURE' });
    await expect(A.client.executeWorkflow('review.reason.v1', gid, { xs: -1 })).rejects.toThrow(/^FAILURE$/);
  });

  it.each([
    ['a local step\'s JSON text', '{"code":"NO_FUNDS","message":"balance 12 < 30"}', 1, false],
    ['a local step\'s text with spaces around it', '  refused by the fraud check  ', 1, false],
    ['a local step\'s text in the form of a saga\'s reason', 'url:http://bank/debit return failed: no funds FAILURE', 1, false],
    ['the workflow code\'s text over 1024 characters', 'z', 1100, true],
  ])('a rollback reason (%s) is the same on every call: the first execution throws what DTM records, and executeWorkflow of the failed workflow throws it unchanged (before: the JSON text came back as its "message", the spaces trimmed, the saga form as "no funds", the long one whole then cut)', async (_what, r, times, direct) => {
    const gid = await A.client.generateGid();
    const first = await A.client.executeWorkflow('review.reason-text.v1', gid, { r, times, direct }).catch((e: unknown) => e);
    const recorded = (await queryTrans(gid)).transaction?.rollback_reason;
    const again = await A.client.executeWorkflow('review.reason-text.v1', gid, { r, times, direct }).catch((e: unknown) => e);
    const reason = r.repeat(times);
    const expected = reason.length > 1024 ? `${reason.slice(0, 1023)}…` : reason;
    expect([recorded, (first as DtmFailureError).reason, (again as DtmFailureError).reason]).toEqual([expected, expected, expected]);
    expect(again).toBeInstanceOf(DtmFailureError);
  });

  it('a step whose outcome the workflow never awaits (a forgotten await) leaves the workflow pending with a DtmUsageError naming it, on every execution, and commits nothing (before: DTM recorded succeed while the step answered FAILURE afterwards, its rejection unhandled)', async () => {
    const gid = await A.client.generateGid();
    recorder.handle('/B', async () => {
      await new Promise((r) => setTimeout(r, 300));
      return 409;
    });
    const first = await A.client.executeWorkflow('review.unawaited.v1', gid, urls()).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(DtmWorkflowPendingError);
    expect((first as Error).cause).toBeInstanceOf(DtmUsageError);
    expect(failure((first as Error).cause)).toMatch(/step "b" \(branch 02\).*never awaited/);
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    // the step ends after the function: its FAILURE is recorded, and DTM's record stays prepared
    await recorder.waitForCalls('/B', 1, { gid });
    await new Promise((r) => setTimeout(r, 500));
    const { transaction, branches } = await queryTrans(gid);
    expect([transaction?.status, ...branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)]).toEqual(['prepared', '01 action succeed', '02 action failed']);
    // step b is called once; twice when DTM resumed the workflow before the first call was recorded (another
    // test file's /resetCronTime on the shared DTM server can bring that resume at any moment)
    const bCalls = recorder.callsTo('/B', gid).length;
    expect([1, 2]).toContain(bCalls);
    // replayed, the same: never a commit or a rollback of what the code did not wait for, nor step b (recorded) called again
    const again = await A.client.executeWorkflow('review.unawaited.v1', gid, urls()).catch((e: unknown) => e);
    expect(failure((again as Error).cause)).toMatch(/step "b" \(branch 02\).*never awaited/);
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    expect(recorder.callsTo('/ARevert', gid)).toEqual([]);
    expect(recorder.callsTo('/B', gid)).toHaveLength(bCalls);
    await A.client.forceStop(gid); // tidy: DTM would resume it every RetryInterval
  });

  it("a rollback callback starting a step of the workflow (wf.step instead of its handle): DtmUsageError at once, nothing of it recorded (before: its step was recorded after the workflow's last one, and when a later compensation failed once every resume stopped on a divergence, that compensation never run again)", async () => {
    const gid = await A.client.generateGid();
    const key = `p2-${gid}`;
    recorder.answer('/ARevert', 500, 200);
    const first = await A.client.executeWorkflow('review.phase2-step.v1', gid, { ...urls(), key }).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(DtmWorkflowPendingError);
    expect((first as Error).cause).toBeInstanceOf(DtmUsageError);
    expect(failure((first as Error).cause)).toMatch(/step "refund" started in the rollback callback of step "b"/);
    expect(done.get(`${key}-refund`)).toBeUndefined();
    const { transaction, branches } = await queryTrans(gid);
    expect([transaction?.status, ...branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)]).toEqual(['prepared', '01 action succeed', '02 action succeed', '03 action failed']);
    await A.client.forceStop(gid); // tidy: DTM would resume it every RetryInterval
  });

  it('a workflow of more steps than DTM has branch ids for (99; wf.now() is one): pending after 99, with a DtmUsageError saying a workflow takes at most 99 steps (before: "no more sub-branch ids under an empty parent", which names no step)', async () => {
    await expect(A.client.executeWorkflow('review.many-steps.v1', await A.client.generateGid(), { n: 98 })).resolves.toEqual({ status: 'succeed', result: 98 });
    const gid = await A.client.generateGid();
    const error = await A.client.executeWorkflow('review.many-steps.v1', gid, { n: 99 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmWorkflowPendingError);
    expect((error as Error).cause).toBeInstanceOf(DtmUsageError);
    expect(failure((error as Error).cause)).toMatch(/^DtmUsageError: workflow "review\.many-steps\.v1": step "item-98" would be its 100th; a workflow takes at most 99 steps/);
    expect((await queryTrans(gid)).branches).toHaveLength(99);
    await A.client.forceStop(gid); // tidy: DTM would resume it every RetryInterval
  });

  it("a step's FAILURE with a reason over 64 KB (a local step's, an HTTP step's 409 body): recorded cut as DTM's rollback reason is, the workflow rolls back (before: never recordable, it stayed pending forever and the step was run again at every resume)", async () => {
    const local = await A.client.generateGid();
    const localError = await A.client.executeWorkflow('review.reason.v1', local, { xs: 70_000 }).catch((e: unknown) => e);
    expect(failure(localError)).toBe(`DtmFailureError: ${'x'.repeat(1023)}…`);
    const remote = await A.client.generateGid();
    recorder.answer('/A', { status: 409, body: 'y'.repeat(70_000) });
    const remoteError = await A.client.executeWorkflow('review.two.v1', remote, urls()).catch((e: unknown) => e);
    expect(failure(remoteError)).toBe(`DtmFailureError: ${'y'.repeat(1023)}…`);
    for (const [gid, letter] of [[local, 'x'], [remote, 'y']]) {
      const { transaction, branches } = await queryTrans(gid);
      expect(transaction).toMatchObject({ status: 'failed', rollback_reason: `${letter.repeat(1023)}…` });
      expect(branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 action failed']);
    }
    // replayed, the recorded FAILURE gives the same reason
    await expect(A.client.executeWorkflow('review.two.v1', remote, urls())).rejects.toThrow(`${'y'.repeat(1023)}…`);
    expect(recorder.callsTo('/A', remote)).toHaveLength(1);
  });

  it.each([[719, 1020], [722, 1024], [723, 1028]])("an input of {pad: %i characters}, stored by DTM as %i characters (base64 with the name, in custom_data, varchar(1024) on its SQL stores): within 1024 the workflow runs; over it DtmUsageError before anything is sent, DTM holding nothing", async (pad, stored) => {
    const gid = await A.client.generateGid();
    const outcome = await A.client.executeWorkflow('review.big-input.v1', gid, { pad: 'p'.repeat(pad) }).catch((e: unknown) => e);
    if (stored <= 1024) {
      expect(outcome).toEqual({ status: 'succeed', result: pad });
      expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
      return;
    }
    expect(failure(outcome)).toBe(`DtmUsageError: workflow "review.big-input.v1": its input takes ${stored} characters as DTM stores it (base64, with the name), over the 1024 of DTM's SQL stores; pass less (an id to look up)`);
    expect((await queryTrans(gid)).transaction).toBeNull();
  });

  it.each([65_534, 65_535, 65_536])("a step's value recorded in %i bytes (DTM's MySQL store keeps 65535 of a branch's data, the module takes no more on any store): within it recorded and the workflow succeeds; over it the workflow is left pending, the error naming the workflow, the step, that its work ran and runs again at every resume, and that returning less finishes it", async (bytes) => {
    const gid = await A.client.generateGid();
    const key = `big-step-${gid}`;
    const outcome = await A.client.executeWorkflow('review.big-step.v1', gid, { key, n: bytes - 16 }).catch((e: unknown) => e);
    const { transaction, branches } = await queryTrans(gid);
    if (bytes <= 65_535) {
      expect(outcome).toEqual({ status: 'succeed', result: bytes - 16 });
      expect(branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 action succeed']);
      return;
    }
    await A.client.forceStop(gid); // tidy: DTM would resume it every RetryInterval
    expect(outcome).toBeInstanceOf(DtmWorkflowPendingError);
    expect(failure((outcome as Error).cause)).toBe(`DtmUsageError: workflow "review.big-step.v1": step "a" (01) returned a value recorded in 65536 bytes, over the 65535 DTM's MySQL store keeps of a step (the module records no more on any store). The workflow is left pending with the value unrecorded: its work ran, and DTM's resume runs the step again (its work again, unless a barrier or its own check stops it) and stops here again; return less from the step (an id to look up, not the data) and the next resume finishes it, or forceStop the gid`);
    expect([transaction?.status, ...branches.map((b) => b.branch_id)]).toEqual(['prepared']);
    expect(attempts.get(key)).toBe(1);
  });

  it("a result longer than DTM's SQL stores keep: the workflow is left pending before any onCommit runs (DtmWorkflowPendingError, its cause a DtmUsageError naming the workflow and saying to return less), nothing committed, on every execution (before: the commit callbacks ran and were recorded, then the submit was refused: pending for good with its commits done)", async () => {
    const gid = await A.client.generateGid();
    const key = `big-${gid}`;
    const outcomes: unknown[] = [];
    for (let i = 0; i < 2; i++) outcomes.push(await A.client.executeWorkflow('review.big-result.v1', gid, { key, n: 800 }).catch((e: unknown) => e));
    const { transaction, branches } = await queryTrans(gid);
    await A.client.forceStop(gid); // tidy: DTM would resume it every RetryInterval
    for (const outcome of outcomes) {
      expect(outcome).toBeInstanceOf(DtmWorkflowPendingError);
      expect(failure((outcome as Error).cause)).toMatch(/^DtmUsageError: workflow "review\.big-result\.v1": its result takes 1080 characters as DTM stores it \(base64\), over the 1024 of DTM's SQL stores; return less/);
    }
    expect(done.get(`${key}-commit`)).toBeUndefined();
    expect([transaction?.status, ...branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)]).toEqual(['prepared', '01 action succeed']);
    // a result DTM's stores keep: the same workflow commits and succeeds
    const small = await A.client.generateGid();
    await expect(A.client.executeWorkflow('review.big-result.v1', small, { key: `big-${small}`, n: 700 })).resolves.toEqual({ status: 'succeed', result: 'r'.repeat(700) });
    expect(done.get(`big-${small}-commit`)).toBe(1);
  });

  it("a prepareWorkflow DTM took whose answer never came: DtmUnavailableError saying the request may have reached DTM, which holds the workflow prepared and would resume it; executeWorkflow again with the same gid runs it once and finishes it", async () => {
    // a TCP proxy in front of DTM that passes a prepareWorkflow on and never its answer
    const proxy = await answerSwallowingProxy(harness().dtm.serverUrl, (request) => request.startsWith('POST /api/dtmsvr/prepareWorkflow'));
    const C = await startApp(dbs.postgres.url, dbs.mariadb.config, dbs.redis.url, { serverUrl: proxy.url, timeout: 2 });
    let gid: string;
    let first: unknown;
    try {
      gid = await A.client.generateGid();
      first = await settledWithin(C.client.executeWorkflow('review.one.v1', gid, urls()), 20_000);
    } finally {
      // closed before the execution again: a resume DTM sends to C meanwhile (another test file's /resetCronTime on the shared
      // DTM can make its cron resume the prepared workflow at once) would run there concurrently
      await C.close();
      await proxy.close();
    }
    expect(first).toBeInstanceOf(DtmUnavailableError);
    expect((first as Error).message).toMatch(/prepareWorkflow within the timeout \(2 s\).*the request may or may not have reached DTM/);
    // what to do, in the error itself: the same gid again, never a new one (DTM may hold this one and resume it)
    expect((first as Error).message).toContain(`executeWorkflow("review.one.v1", gid "${gid!}"): DTM may hold the workflow prepared and resume it by itself; call executeWorkflow again with the same gid, never a new one (both would run)`);
    expect((first as DtmUnavailableError).gid).toBe(gid!);
    expect((first as Error).cause).toBeInstanceOf(DtmUnavailableError);
    expect((await queryTrans(gid)).transaction).toMatchObject({ status: 'prepared', trans_type: 'workflow' });
    expect(recorder.callsTo('/A', gid)).toHaveLength(0);
    expect(await settledWithin(A.client.executeWorkflow('review.one.v1', gid, urls()), 20_000)).toMatchObject({ status: 'succeed' });
    expect(recorder.callsTo('/A', gid)).toHaveLength(1);
    expect((await queryTrans(gid)).transaction).toMatchObject({ status: 'succeed' });
  });
});

/** Gids whose step 'inner' already threw once after its TCC (the process "crashed" there). */
const innerCrashed = new Set<string>();

@Injectable()
class InnerTccWorkflows {
  constructor(private readonly dtm: DtmClient) {}

  /** A step running a TCC of its own under a gid made from the workflow's, which throws once after it (a crash before the step was recorded). */
  @DtmWorkflow('review.inner-tcc.v1')
  async innerTcc(wf: WorkflowContext<{ u: string }>) {
    await wf.step('pay').onRollback((b) => b.http(`${wf.input.u}/PayRevert`, { n: 1 })).http(`${wf.input.u}/Pay`, { n: 1 });
    await wf.step('inner').run(async () => {
      await this.dtm.tccGlobalTransaction(`in${wf.gid}`, async (tcc) => {
        await tcc.callBranch({ n: 1 }, `${wf.input.u}/ITry`, `${wf.input.u}/IConfirm`, `${wf.input.u}/ICancel`);
      });
      if (!innerCrashed.has(wf.gid)) {
        innerCrashed.add(wf.gid);
        throw new Error('crashed after the inner TCC');
      }
    });
    return 'ok';
  }
}

describe('a step whose own transaction finds its gid taken on a resume', () => {
  let app: INestApplication;
  let client: DtmClient;
  let rec: Recorder;
  beforeAll(async () => {
    rec = await startRecorder();
    const port = await freePort();
    @Module({ imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, appUrl: `http://127.0.0.1:${port}`, retryInterval: 60 } })], providers: [InnerTccWorkflows] })
    class InnerTccModule {}
    app = await NestFactory.create(InnerTccModule, { logger: false, forceCloseConnections: true });
    await app.listen(port, '127.0.0.1');
    client = app.get(DtmClient);
  });
  afterAll(async () => {
    await app?.close();
    await rec?.close();
  });

  it('the inner TCC succeeded in the first run; the resume\'s DtmGidInUseError (a DtmFailureError) leaves the workflow pending, not rolled back while the inner TCC stays confirmed', async () => {
    const gid = await client.generateGid();
    const first = await client.executeWorkflow('review.inner-tcc.v1', gid, { u: rec.url }).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(DtmWorkflowPendingError);
    const again = await client.executeWorkflow('review.inner-tcc.v1', gid, { u: rec.url }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(DtmWorkflowPendingError);
    expect((again as Error).cause).toBeInstanceOf(DtmGidInUseError);
    expect((await waitForTransStatus(`in${gid}`, 'succeed')).transaction?.status).toBe('succeed');
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    expect(rec.callsTo('/PayRevert')).toHaveLength(0);
    // DTM confirms the inner TCC at least once (another test file's /resetCronTime on the shared DTM can have its cron confirm
    // again): the Confirm's repeats left out, the rest exactly, in order
    expect(rec.calls.map((c) => c.path).filter((p, i, all) => p !== '/IConfirm' || all.indexOf(p) === i)).toEqual(['/Pay', '/ITry', '/IConfirm']);
    await client.forceStop(gid); // tidy: DTM would resume it every RetryInterval
  });
});
