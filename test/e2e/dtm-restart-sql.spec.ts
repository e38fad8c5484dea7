// DTM on a SQL store (PostgreSQL: its tables in schema `dtm` of this file's own database) killed (-9)
// with transactions in flight, and started again on what it stored (without -r, which would drop
// its tables). dtm-restart.spec.ts does the same on Redis; a SQL store differs in that DTM v1.19
// writes branch results asynchronously (batched every 200 ms, dtmsvr/trans_status.go
// changeBranchStatus), so what it did just before the kill may be done again. One kill for all
// cells, over HTTP and gRPC each:
// - an XA transaction in its commit round: both branches prepared, DTM's phase 2 of the first held
//   at the branch (its COMMIT PREPARED waits) until DTM is killed, then run while DTM is down;
// - a saga whose branches run: its second step held until the kill;
// - a workflow whose step (another service) answers only once DTM is down;
// - a message prepared, then submitted, DTM delivering it: its first branch held until the kill;
// - a saga rolling back (its third step FAILURE) whose actions' results DTM had not written at the
//   kill: a lock on DTM's rows of the saga (trans_branch_op) holds DTM's writes, which it makes up
//   to 200 ms late anyway, so that the kill finds them unwritten every time; DTM's default (written
//   asynchronously, the kill during the compensations) and with a timeoutToFail (written before DTM
//   goes on: trans_type_saga.go sets updateBranchSync), the kill while the first write waits.
// Last, with no kill: the same saga whose write is held while a compensation fails once (DTM reads
// the saga back from its store for the next round).
// Each asserts what the caller's await gave, DTM's record after the restart, the barrier banks'
// balances (moved once, PostgreSQL to MariaDB), and for XA that nothing stays prepared in either
// database and that DTM's repeated phase 2 of the branch committed while it was down is taken as done.
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import mysql from 'mysql2/promise';
import pg from 'pg';
import {
  DtmWorkflowPendingError,
  mysqlXaDatabase,
  type XaDatabase,
} from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { PROTOCOLS } from '../support/fixtures.js';
import { harness } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { startDtm, startDtmAgain, stopDtm, type RunningDtm, type StartDtmOptions } from '../support/services/dtm.js';
import { runDirFrom, waitUntil } from '../support/services/process.js';
import { pgXaAt } from '../support/pg-xa.js';
import { bankHelpers, startBarrierApp, type BarrierApp } from './barrier-app.js';
import { branchLines, killKit, payloadOf, RESTART_AMOUNT, restartWorkflows, RestartXaBank, type KillCell, type RestartTransfer } from './restart-bank.js';

let t: BarrierApp;
let dtm: RunningDtm;
let recorder: Recorder;
/** The cells, the gates and DTM's record of this file's own DTM. */
const kit = killKit(() => dtm, () => recorder, () => t);
const { cell, untilDtmRecords, holdUntilKilled, untilHeld, gateTarget, balancesOf } = kit;
/** By gid, the transactions holding DTM's rows of the 'saga aborting' cells' branches locked until the kill. */
const branchRowsLocks = new Map<string, { client: pg.Client; pid: number }>();
/** By gid, the 'saga aborting' cells' branch lines in DTM's store once the killed DTM's sessions were ended: what the restarted DTM reads. */
const atKill = new Map<string, string[]>();
/** The application name of the file's DTM's PostgreSQL sessions (its PGAPPNAME). */
const DTM_SESSIONS = 'dtm-restart-sql';
/** The gids whose lock a DTM write waits on. */
const waitingOnLock = new Set<string>();
/** The XA ids whose phase-2 commit the branch holds until the kill. */
const holdCommitOf = new Set<string>();
/** Each phase-2 statement the XA branches ran (`XA COMMIT '<xid>'`, `COMMIT PREPARED '<xid>'`), with what it gave. */
const phase2Runs: string[] = [];

/** `db` whose phase-2 commit of an id in {@link holdCommitOf} waits until DTM was killed (before the restart only), every phase-2 statement noted in {@link phase2Runs}. */
function holdingCommits<H>(db: XaDatabase<H>): XaDatabase<H> {
  return {
    dialect: db.dialect,
    async connect() {
      const conn = await db.connect();
      return {
        handle: conn.handle,
        close: (clean?: boolean) => conn.close(clean),
        async execute(sql: string, params?: unknown[]) {
          const xid = /^(?:XA COMMIT|COMMIT PREPARED|XA ROLLBACK|ROLLBACK PREPARED) '(.+)'$/.exec(sql)?.[1];
          if (xid === undefined) return conn.execute(sql, params);
          if (!kit.restarted && holdCommitOf.has(xid) && /COMMIT/.test(sql)) {
            phase2Runs.push(`held ${sql}`);
            await kit.killed;
          }
          return conn.execute(sql, params).then(
            (r) => (phase2Runs.push(`${sql} ran`), r),
            (err: unknown) => {
              phase2Runs.push(`${sql} failed: ${(err as Error).message}`);
              throw err;
            },
          );
        },
      };
    },
  };
}

let dtmOptions: StartDtmOptions;
let dbs: FileDatabases;
const bank = bankHelpers(() => t);

/** Resolves once `held()` says so. */
const until = (what: string, held: () => boolean) => waitUntil(what, async () => held(), { timeoutMs: 20_000, intervalMs: 50 });

beforeAll(async () => {
  dbs = await fileDatabases();
  dtmOptions = { name: 'dtm-restart-sql', store: 'postgres', postgres: harness().postgres!, postgresDb: dbs.postgres.database, env: { PGAPPNAME: DTM_SESSIONS } };
  dtm = await startDtm(runDirFrom(harness().runDir), dtmOptions);
  recorder = await startRecorder();
  t = await startBarrierApp(dbs, {
    dtm: dtm.info,
    providers: [restartWorkflows('sqlrestart.transfer', () => t)],
    controllers: [RestartXaBank],
    xaConnections: { pgxa: holdingCommits(pgXaAt(dbs.postgres.url)), myxa: holdingCommits(mysqlXaDatabase(() => mysql.createConnection(dbs.mariadb.config))) },
    workflowResume: true,
    config: { retryInterval: 1, timeout: 10 },
  });
  const accounts = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [i + 1, 100]));
  await bank.seed('pg', accounts);
  await bank.seed('mysql', accounts);

  const client = t.client;
  for (const protocol of PROTOCOLS) {
    // XA: both branches prepared, the submit taken; DTM's commit of branch 01 held at the branch until the kill
    await kit.add('xa', protocol, (gid, m) => {
      holdCommitOf.add(`${gid}-01`);
      return {
        inFlight: until(`phase 2 of ${gid}-01 held`, () => phase2Runs.some((r) => r.startsWith('held') && r.includes(`'${gid}-01'`))),
        outcome: client.xaGlobalTransactionAndWait(
          gid,
          async (xa) => {
            await xa.callBranch({ account: m.account, amount: -m.amount }, 'xa.pg');
            await xa.callBranch(m, 'xa.mysql');
            return 'prepared';
          },
          { protocol, timeoutToFail: 60, retryInterval: 1 },
          { timeout: 45 },
        ),
      };
    });
    // a saga whose second step holds DTM's call until the kill
    await kit.add('saga', protocol, (gid, m) => {
      const path = `/SagaGate${protocol}`;
      holdUntilKilled(path);
      return {
        inFlight: untilHeld(path, gid),
        outcome: client.newSaga(gid, { protocol, retryInterval: 1 }).add('pg.transOut', m).add(gateTarget(protocol, path), payloadOf(protocol)).add('mysql.transIn', m).submitAndWait({ timeout: 45 }),
      };
    });
    // a workflow whose gate step (another service) answers only once DTM is down
    await kit.add('workflow', protocol, (gid, m) => {
      const path = `/WorkflowGate${protocol}`;
      holdUntilKilled(path);
      return {
        inFlight: untilHeld(path, gid),
        outcome: client.executeWorkflow('sqlrestart.transfer', gid, { protocol, ...m, gate: gateTarget(protocol, path) } satisfies RestartTransfer, { protocol, retryInterval: 1 }),
      };
    });
    // a message prepared, then submitted (no waitResult); DTM's call of its first branch held until the kill
    await kit.add('msg', protocol, (gid, m) => {
      const path = `/MsgGate${protocol}`;
      holdUntilKilled(path);
      const msg = client.newMsg(gid, { protocol, timeoutToFail: 60, retryInterval: 1 }).add(gateTarget(protocol, path), payloadOf(protocol)).add('mysql.deliver', m);
      return {
        inFlight: untilHeld(path, gid),
        outcome: msg.prepare(bank.target('pg', protocol, 'query-prepared')).then(() => msg.submit()),
      };
    });
  }
  // the sessions DTM's writes wait behind are watched and ended from a session of its own, outside the
  // locks' transactions: pg_stat_activity read in a transaction stays what it was at its first read
  // there, without the sessions opened since (DTM opens more as its writes wait)
  const admin = new pg.Client({ connectionString: dbs.postgres.url });
  await admin.connect();
  // a saga whose third step fails, DTM's writes of the actions' results not yet made at the kill (they
  // wait up to 200 ms in DTM; here a lock on DTM's rows of the saga holds them), its compensations under
  // way; and the same saga with a timeoutToFail, whose branch results DTM writes before it goes on
  const lostSaga = (name: string, options: { timeoutToFail?: number }) =>
    kit.add(name, 'http', (gid, m) => {
      const path = (p: string) => `/${name.replace(/\W/g, '')}${p}`;
      recorder.handle(path('Gate'), async () => {
        if (!kit.restarted && !branchRowsLocks.has(gid)) {
          const client = new pg.Client({ connectionString: dbs.postgres.url });
          await client.connect();
          await client.query('BEGIN');
          await client.query('SELECT id FROM dtm.trans_branch_op WHERE gid = $1 FOR UPDATE', [gid]);
          branchRowsLocks.set(gid, { client, pid: (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid });
        }
        return 200;
      });
      recorder.answer(path('Fail'), 409);
      holdUntilKilled(path('FailRevert'));
      return {
        // asynchronous writes: DTM went on to the compensations; synchronous: its write of the first result waits on the lock
        inFlight: options.timeoutToFail
          ? until(`DTM's write of ${gid} waiting on the lock`, () => waitingOnLock.has(gid))
          : untilHeld(path('FailRevert'), gid),
        outcome: client
          .newSaga(gid, { protocol: 'http', retryInterval: 1, ...options })
          .add(recorder.urlFor(path('Gate')), recorder.urlFor(path('GateRevert')), {})
          .add('pg.transOut', m)
          .add(recorder.urlFor(path('Fail')), recorder.urlFor(path('FailRevert')), {})
          .submitAndWait({ timeout: 45 }),
      };
    });
  await lostSaga('saga aborting', {});
  await lostSaga('saga aborting sync', { timeoutToFail: 60 });
  const watching = setInterval(() => {
    for (const [gid, lock] of branchRowsLocks) {
      void admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [lock.pid]).then(({ rows }) => rows[0].n > 0 && waitingOnLock.add(gid), () => undefined);
    }
  }, 100);
  await kit.untilInFlight();
  const dtmSessions = async () => (await admin.query('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [DTM_SESSIONS])).rows.length;
  if ((await dtmSessions()) === 0) throw new Error(`DTM has no PostgreSQL session named ${DTM_SESSIONS}: did it not read PGAPPNAME?`);
  await stopDtm(dtm, true);
  kit.kill();
  clearInterval(watching);
  // every session of the killed DTM (its application name) is ended before the locks go: no write it
  // sent before the kill, waiting on a lock or read and not yet begun (PostgreSQL does not see the
  // client gone meanwhile), runs after them
  await waitUntil('the killed DTM\'s PostgreSQL sessions ended', async () => {
    await admin.query('SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1', [DTM_SESSIONS]);
    return (await dtmSessions()) === 0;
  }, { timeoutMs: 20_000, intervalMs: 50 });
  for (const [gid, { client: lock }] of branchRowsLocks) {
    atKill.set(gid, (await lock.query("SELECT branch_id || ' ' || op || ' ' || status AS line FROM dtm.trans_branch_op WHERE gid = $1 ORDER BY 1", [gid])).rows.map((r: { line: string }) => r.line));
    await lock.query('ROLLBACK');
    await lock.end();
  }
  await admin.end();
  dtm = await startDtmAgain(runDirFrom(harness().runDir), dtm, dtmOptions);
  kit.restarted = true;
}, 60_000);

afterAll(async () => {
  await t?.close();
  await recorder?.close();
  await dtm?.process.stop();
});

/** The barrier rows of the cell's gid in both banks: one per branch that ran, whatever DTM repeated. */
const barrierOf = async (c: KillCell) => ({ pg: await bank.barrierRows('pg', c.gid), mysql: await bank.barrierRows('mysql', c.gid) });
const allDone = (lines: string[]) => lines.every((l) => !/ (action|commit) prepared$/.test(l));

describe.each(PROTOCOLS)('DTM killed (-9) and restarted on its PostgreSQL store, over %s', (protocol) => {
  it('an XA transaction in its commit round (phase 2 of branch 01 held at the branch, run while DTM is down): xaGlobalTransactionAndWait resolves succeed; DTM calls that phase 2 again, taken as done; both committed once, nothing left prepared', async () => {
    const c = cell('xa', protocol);
    expect(await c.outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed', result: 'prepared' }) });
    const record = await untilDtmRecords(c.gid, 'succeed', allDone);
    expect(branchLines(record)).toEqual(['01 commit succeed', '01 rollback prepared', '02 commit succeed', '02 rollback prepared']);
    // the held commit ran once DTM was down; DTM, back, had no result of it and sent it again: the database no longer knows the id
    const runs = phase2Runs.filter((r) => r.includes(`'${c.gid}-01'`));
    expect(runs[0]).toBe(`held COMMIT PREPARED '${c.gid}-01'`);
    expect(runs).toContain(`COMMIT PREPARED '${c.gid}-01' ran`);
    expect(runs.filter((r) => /failed: prepared transaction with identifier .* does not exist/.test(r)).length).toBeGreaterThanOrEqual(1);
    expect(phase2Runs.filter((r) => r === `XA COMMIT '${c.gid}-02' ran`)).toHaveLength(1);
    expect(await barrierOf(c)).toEqual({ pg: ['01/action/01=action'], mysql: ['02/action/01=action'] });
    expect(await balancesOf(c)).toEqual({ pg: 100 - RESTART_AMOUNT, mysql: 100 + RESTART_AMOUNT });
    expect((await t.sql.pg.run('SELECT gid FROM pg_prepared_xacts WHERE gid LIKE ?', [`${c.gid}%`])).rows).toEqual([]);
    expect((await t.sql.mysql.run('XA RECOVER')).rows.filter((r) => String(r.data).startsWith(c.gid))).toEqual([]);
  });

  it('a saga whose second step is under way: submitAndWait rides the restart out and resolves succeed; DTM calls that step again; the money moved once', async () => {
    const c = cell('saga', protocol);
    expect(await c.outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed' }) });
    const record = await untilDtmRecords(c.gid, 'succeed', allDone);
    expect(branchLines(record)).toEqual(['01 action succeed', '01 compensate prepared', '02 action succeed', '02 compensate prepared', '03 action succeed', '03 compensate prepared']);
    expect(recorder.callsTo(`/SagaGate${protocol}`, c.gid).length).toBeGreaterThanOrEqual(2);
    expect(await barrierOf(c)).toEqual({ pg: ['01/action/01=action'], mysql: ['03/action/01=action'] });
    expect(await balancesOf(c)).toEqual({ pg: 100 - RESTART_AMOUNT, mysql: 100 + RESTART_AMOUNT });
  });

  it('a workflow whose step answers while DTM is down: DtmWorkflowPendingError; DTM resumes it after the restart, it succeeds, each bank step moved once', async () => {
    const c = cell('workflow', protocol);
    const outcome = await c.outcome;
    expect(outcome.error).toBeInstanceOf(DtmWorkflowPendingError);
    expect(outcome.error).toMatchObject({ gid: c.gid });
    const record = await untilDtmRecords(c.gid, 'succeed', allDone);
    expect(branchLines(record)).toEqual(['01 action succeed', '02 action succeed', '03 action succeed']);
    expect(await barrierOf(c)).toEqual({ pg: ['01/action/01=action'], mysql: ['03/action/01=action'] });
    expect(await balancesOf(c)).toEqual({ pg: 100 - RESTART_AMOUNT, mysql: 100 + RESTART_AMOUNT });
  });

  it('a message prepared and submitted, DTM delivering it: submit() resolved; DTM, back, delivers every branch, MariaDB credited once', async () => {
    const c = cell('msg', protocol);
    expect(await c.outcome).toEqual({ value: undefined });
    const record = await untilDtmRecords(c.gid, 'succeed', allDone);
    expect(branchLines(record)).toEqual(['01 action succeed', '02 action succeed']);
    expect(recorder.callsTo(`/MsgGate${protocol}`, c.gid).length).toBeGreaterThanOrEqual(2);
    expect(await barrierOf(c)).toEqual({ pg: [], mysql: ['02/action/01=action'] });
    expect(await balancesOf(c)).toEqual({ pg: 100, mysql: 100 + RESTART_AMOUNT });
  });
});

/** A saga of three steps whose branch results DTM's store does not have. */
const ALL_PREPARED = ['01 action prepared', '01 compensate prepared', '02 action prepared', '02 compensate prepared', '03 action prepared', '03 compensate prepared'];
describe('DTM killed (-9) and restarted on its PostgreSQL store, a saga rolling back (its third step FAILURE) before DTM wrote its actions\' results', () => {
  const callLines = (gid: string) => [...recorder.callsFor(gid)].sort((a, b) => a.at - b.at).map((x) => `${x.path.replace(/^\/sagaaborting(sync)?/, '')} ${x.status}`);

  it('DTM\'s default (results written asynchronously, up to 200 ms later), the kill during the compensations: DTM, back, compensates the first step only, records the saga failed, and the second step\'s withdrawal stays (money lost: DTM v1.19, documented)', async () => {
    const c = cell('saga aborting', 'http');
    // what the restarted DTM read: none of the results the killed DTM had
    expect(atKill.get(c.gid)).toEqual(ALL_PREPARED);
    expect(await c.outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'failed' }) });
    const record = await untilDtmRecords(c.gid, 'failed', (lines) => lines.includes('01 compensate succeed'));
    expect(record.transaction?.rollback_reason).toMatch(/sagaabortingFail return failed: .*FAILURE/);
    // every action 'prepared': after the restart DTM took the first as possibly run and the others as never run
    expect(branchLines(record)).toEqual(['01 action prepared', '01 compensate succeed', '02 action prepared', '02 compensate prepared', '03 action prepared', '03 compensate prepared']);
    expect(callLines(c.gid)).toEqual(['Gate 200', 'Fail 409', 'FailRevert 200', 'GateRevert 200']);
    // step 02 ran (its barrier row), its compensation was never called: PostgreSQL keeps the withdrawal, MariaDB got nothing
    expect(await bank.barrierRows('pg', c.gid)).toEqual(['02/action/01=action']);
    expect(await balancesOf(c)).toEqual({ pg: 100 - RESTART_AMOUNT, mysql: 100 });
  });

  it('with a timeoutToFail (DTM then writes the saga\'s branch results before going on), the kill while its first write waits: DTM, back, runs the saga again from its first step and compensates every step; the money is back', async () => {
    const c = cell('saga aborting sync', 'http');
    expect(atKill.get(c.gid)).toEqual(ALL_PREPARED);
    expect(await c.outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'failed' }) });
    const record = await untilDtmRecords(c.gid, 'failed', (lines) => lines.includes('01 compensate succeed'));
    expect(record.transaction?.rollback_reason).toMatch(/sagaabortingsyncFail return failed: .*FAILURE/);
    expect(branchLines(record)).toEqual(['01 action succeed', '01 compensate succeed', '02 action succeed', '02 compensate succeed', '03 action failed', '03 compensate succeed']);
    expect(callLines(c.gid)).toEqual(['Gate 200', 'Gate 200', 'Fail 409', 'FailRevert 200', 'GateRevert 200']);
    expect(await bank.barrierRows('pg', c.gid)).toEqual(['02/action/01=action', '02/compensate/01=compensate']);
    expect(await balancesOf(c)).toEqual({ pg: 100, mysql: 100 });
  });
});

describe('DTM on its PostgreSQL store, not killed: a saga rolling back while DTM\'s writes of its actions\' results are late', () => {
  it('a compensation failing once (retried a round later), DTM\'s write of the actions\' results still waiting on its store then: the later round compensates the first step only and records the saga failed; the second step\'s withdrawal stays (DTM v1.19, documented)', async () => {
    const gid = await t.client.generateGid();
    const account = 11;
    let lock: pg.Client | undefined;
    recorder.handle('/StallGate', async () => {
      if (!lock) {
        lock = new pg.Client({ connectionString: dbs.postgres.url });
        await lock.connect();
        await lock.query('BEGIN');
        await lock.query('SELECT id FROM dtm.trans_branch_op WHERE gid = $1 FOR UPDATE', [gid]);
      }
      return 200;
    });
    recorder.answer('/StallFail', 409);
    recorder.answer('/StallFailRevert', 500, 200);
    try {
      const outcome = await t.client
        .newSaga(gid, { protocol: 'http', retryInterval: 1 })
        .add(recorder.urlFor('/StallGate'), recorder.urlFor('/StallGateRevert'), {})
        .add('pg.transOut', { account, amount: RESTART_AMOUNT })
        .add(recorder.urlFor('/StallFail'), recorder.urlFor('/StallFailRevert'), {})
        .submitAndWait({ timeout: 30 });
      expect(outcome).toMatchObject({ gid, status: 'failed' });
    } finally {
      await lock?.query('ROLLBACK');
      await lock?.end();
    }
    // the late writes land, then the first step's compensation: the second's never ran
    const record = await untilDtmRecords(gid, 'failed', (lines) => lines.includes('01 compensate succeed') && lines.includes('02 action succeed'));
    expect(branchLines(record)).toEqual(['01 action succeed', '01 compensate succeed', '02 action succeed', '02 compensate prepared', '03 action failed', '03 compensate prepared']);
    expect([...recorder.callsFor(gid)].sort((a, b) => a.at - b.at).map((x) => `${x.path} ${x.status}`)).toEqual(['/StallGate 200', '/StallFail 409', '/StallFailRevert 500', '/StallGateRevert 200']);
    expect(await bank.barrierRows('pg', gid)).toEqual(['02/action/01=action']);
    expect({ pg: (await bank.balances('pg', [account]))[account], mysql: (await bank.balances('mysql', [account]))[account] }).toEqual({ pg: 100 - RESTART_AMOUNT, mysql: 100 });
  }, 40_000);
});
