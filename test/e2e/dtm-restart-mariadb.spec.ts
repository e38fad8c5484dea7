// DTM on a MariaDB store (DTM's `mysql` driver; its tables in this file's own MariaDB database)
// killed (-9) with transactions in flight, and started again on what it stored (no -r). Every cell of
// dtm-restart.spec.ts (DTM on Redis; restart-bank.ts's restartCells), over HTTP and gRPC, one kill for
// all: sagas riding the restart out, submits under way in DTM's first round, TCC / XA bodies ending
// (and a TCC registering) while DTM is down, a message whose local transaction commits while DTM is
// down, a workflow resumed after the restart. Each ends as it does on Redis (what the caller's await
// gave, DTM's record, the balances): DTM's SQL store commits a submit, a prepare, a status change
// and a TCC registration each in one statement or transaction (dtmsvr/storage/sql/sql.go
// MaySaveNewTrans, ChangeGlobalStatus, LockGlobalSaveBranches), as the Redis store does in one Lua
// script, so a kill leaves either state, not a third.
// What differs: DTM v1.19 writes the result of a branch it called to a SQL store later, batched
// (dtmsvr/trans_status.go changeBranchStatus queues it unless UpdateBranchSync; dtmsvr/svr.go
// updateBranchAsync writes the queue every 200 ms), where the Redis store writes it before DTM goes
// on. A kill before that write has DTM, back, call the branch again. The cell 'saga unwritten' holds
// that write (a lock on DTM's row of the branch) until the kill: DTM calls the step again, the barrier
// takes the repeat, submitAndWait resolves succeed and the money moved once. DTM writes its queue in
// batches, one after the other: the results of the other cells' branches queued with it or after it
// are not written either, and DTM, back, calls those branches again too (they end as they must).
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import mysql from 'mysql2/promise';
import { mysqlXaDatabase, type DtmProtocol } from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { PROTOCOLS } from '../support/fixtures.js';
import { harness } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { startDtm, startDtmAgain, stopDtm, type RunningDtm, type StartDtmOptions } from '../support/services/dtm.js';
import { runDirFrom, sleep } from '../support/services/process.js';
import { pgXaAt } from '../support/pg-xa.js';
import { bankHelpers, startBarrierApp, type BarrierApp } from './barrier-app.js';
import { branchLines, flag, forwardDone, killKit, payloadOf, RESTART_AMOUNT, restartCells, restartWorkflows, RestartXaBank } from './restart-bank.js';

let t: BarrierApp;
let dtm: RunningDtm;
let recorder: Recorder;
let dtmOptions: StartDtmOptions;
let dbs: FileDatabases;
const bank = bankHelpers(() => t);
/** The cells, the gates and DTM's record of this file's own DTM. */
const kit = killKit(() => dtm, () => recorder, () => t);
/** The transactions in flight at the kill (dtm-restart.spec.ts's), by name. */
const cells = restartCells(kit, () => recorder, () => t, 'mariadbrestart.transfer');
/** By gid, the MariaDB connections holding DTM's row of the 'saga unwritten' cells' first step locked until the kill. */
const rowLocks = new Map<string, mysql.Connection>();
/** By gid, the status DTM's row of the 'saga unwritten' cell's first step had in its store once DTM was killed. */
const storedAtKill = new Map<string, string>();

/** Locks DTM's row of `gid`'s branch 01 action (by primary key: no gap is locked, DTM's other writes go on). */
async function lockFirstStepRow(gid: string): Promise<void> {
  const conn = await mysql.createConnection(dbs.mariadb.config);
  await conn.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
  await conn.query('BEGIN');
  const [rows] = await conn.query<mysql.RowDataPacket[]>("SELECT id FROM trans_branch_op WHERE gid = ? AND branch_id = '01' AND op = 'action'", [gid]);
  await conn.query('SELECT id FROM trans_branch_op WHERE id = ? FOR UPDATE', [rows[0].id]);
  rowLocks.set(gid, conn);
}

beforeAll(async () => {
  dbs = await fileDatabases();
  dtmOptions = { name: 'dtm-restart-mariadb', store: 'mysql', mariadb: harness().mariadb!, mariadbDb: dbs.mariadb.database };
  dtm = await startDtm(runDirFrom(harness().runDir), dtmOptions);
  recorder = await startRecorder();
  t = await startBarrierApp(dbs, {
    dtm: dtm.info,
    providers: [restartWorkflows('mariadbrestart.transfer', () => t)],
    controllers: [RestartXaBank],
    xaConnections: { pgxa: pgXaAt(dbs.postgres.url), myxa: mysqlXaDatabase(() => mysql.createConnection(dbs.mariadb.config)) },
    workflowResume: true,
    config: { retryInterval: 1, timeout: 10 },
  });
  const accounts = Object.fromEntries(Array.from({ length: 2 * (Object.keys(cells).length + 1) }, (_, i) => [i + 1, 100]));
  await bank.seed('pg', accounts);
  await bank.seed('mysql', accounts);
  for (const protocol of PROTOCOLS) for (const [name, c] of Object.entries(cells)) await kit.add(name, protocol, c.start(protocol));
  // every other cell in flight first: DTM's held write of the first step's result keeps locks in its
  // branch table (an INSERT ... ON DUPLICATE KEY UPDATE of the batch, next-key locks of its unique key)
  // that another transaction's insert there (a submit's branches, a TCC registration) can wait for, up
  // to MariaDB's 50 s: that cell would not reach its moment before the kill (a clean-clone CI hung so)
  await kit.untilInFlight();
  // a saga whose first step (another service) answers once DTM's row of it is locked, after both such
  // sagas were submitted (their rows inserted): DTM's write of that result waits until the kill; its
  // third step holds DTM's call until the kill
  const arrived = new Set<string>();
  const bothArrived = flag();
  const locking = new Map<string, Promise<void>>();
  for (const protocol of PROTOCOLS) {
    await kit.add('saga unwritten', protocol, (gid, m) => {
      const first = `/UnwrittenFirst${protocol}`;
      const hold = `/UnwrittenHold${protocol}`;
      recorder.handle(first, async (call) => {
        const of = String(call.query.gid);
        if (!kit.restarted) {
          arrived.add(of);
          if (arrived.size === PROTOCOLS.length) bothArrived.set();
          await bothArrived.reached;
          if (!locking.has(of)) locking.set(of, lockFirstStepRow(of));
          await locking.get(of);
        }
        return 200;
      });
      kit.holdUntilKilled(hold);
      return {
        inFlight: kit.untilHeld(hold, gid),
        outcome: t.client
          .newSaga(gid, { protocol, retryInterval: 1 })
          .add(kit.gateTarget(protocol, first), payloadOf(protocol))
          .add('pg.transOut', m)
          .add(kit.gateTarget(protocol, hold), payloadOf(protocol))
          .add('mysql.transIn', m)
          .submitAndWait({ timeout: 60 }),
      };
    });
  }
  await kit.untilInFlight();
  await stopDtm(dtm, true);
  kit.kill();
  for (const lock of rowLocks.values()) {
    // the killed DTM's write waits on the lock in a thread of its own, which would run it once the lock
    // is gone (MariaDB does not see the client gone while it waits): ended first, as the write never left DTM
    const [waiting] = await lock.query<mysql.RowDataPacket[]>(
      'SELECT r.trx_mysql_thread_id AS id FROM information_schema.INNODB_LOCK_WAITS w JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id WHERE b.trx_mysql_thread_id = CONNECTION_ID()',
    );
    for (const { id } of waiting) await lock.query(`KILL ${Number(id)}`).catch(() => undefined);
    await lock.query('ROLLBACK');
    await lock.end();
  }
  const my = await mysql.createConnection(dbs.mariadb.config);
  for (const protocol of PROTOCOLS) {
    const { gid } = kit.cell('saga unwritten', protocol);
    const [rows] = await my.query<mysql.RowDataPacket[]>("SELECT status FROM trans_branch_op WHERE gid = ? AND branch_id = '01' AND op = 'action'", [gid]);
    storedAtKill.set(gid, String(rows[0].status));
  }
  await my.end();
  await sleep(1000);
  dtm = await startDtmAgain(runDirFrom(harness().runDir), dtm, dtmOptions);
  kit.restarted = true;
}, 120_000);

afterAll(async () => {
  for (const lock of rowLocks.values()) await lock.end().catch(() => undefined);
  await t?.close();
  await recorder?.close();
  await dtm?.process.stop();
});

describe.each(PROTOCOLS)('DTM killed (-9) and restarted on its MariaDB store, over %s', (protocol: DtmProtocol) => {
  for (const c of Object.values(cells)) it(c.title, () => c.check(protocol));

  it('a saga whose first step\'s result DTM had not written at the kill (its batched write held): DTM, back, calls that step again; submitAndWait resolves succeed; the money moved once', async () => {
    const c = kit.cell('saga unwritten', protocol);
    expect(await c.outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed' }) });
    // DTM had the step's answer (200) before the kill, its store did not
    expect(storedAtKill.get(c.gid)).toBe('prepared');
    const record = await kit.untilDtmRecords(c.gid, 'succeed', forwardDone);
    expect(branchLines(record)).toEqual(['01 action succeed', '01 compensate prepared', '02 action succeed', '02 compensate prepared', '03 action succeed', '03 compensate prepared', '04 action succeed', '04 compensate prepared']);
    // once before the kill, once after: on Redis DTM writes the result before it goes on, and calls it once
    expect(recorder.callsTo(`/UnwrittenFirst${protocol}`, c.gid)).toHaveLength(2);
    expect(await bank.barrierRows('pg', c.gid)).toEqual(['02/action/01=action']);
    expect(await bank.barrierRows('mysql', c.gid)).toEqual(['04/action/01=action']);
    expect(await kit.balancesOf(c)).toEqual({ pg: 100 - RESTART_AMOUNT, mysql: 100 + RESTART_AMOUNT });
  });
});
