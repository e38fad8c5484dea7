// DTM killed (-9) while transactions of every kind are in flight, and started again on the same
// store: its Redis (a SQL store would do as well, but the harness's DTM on MariaDB re-creates its
// schema with -r at each start; outcome-certainty.spec.ts restarts one on boltdb). One kill for all
// the cells, over HTTP and gRPC each:
// - a saga whose branches run (one answering ONGOING until after the restart): submitAndWait;
// - a saga whose submit with waitResult is under way (a branch holds DTM's first round): submitAndWait, and a bare submit();
// - tccGlobalTransaction with waitResult, a Confirm holding DTM's first round (the submit under way);
// - a message's submit() with waitResult after its prepare(), a branch holding DTM's first round;
// - a TCC body, and an XA body (its branches prepared), that end while DTM is down: the ...AndWait forms;
// - a TCC body registering its second branch while DTM is down;
// - a message whose local transaction (doAndSubmitDb) commits while DTM is down;
// - a workflow whose step (another service) answers while DTM is down.
// Each asserts what the caller's await gave (the value, or the error's class and what it says), DTM's
// record after the restart, and the balances of the barrier app's banks: the right accounts moved,
// each exactly once (DTM calls a branch again after the restart; the barrier takes the repeat).
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import mysql from 'mysql2/promise';
import {
  DtmOutcomeUnknownError,
  DtmUnavailableError,
  DtmWorkflowPendingError,
  mysqlXaDatabase,
  type DtmClient,
} from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { PROTOCOLS } from '../support/fixtures.js';
import { harness } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { startDtm, startDtmAgain, stopDtm, type RunningDtm, type StartDtmOptions } from '../support/services/dtm.js';
import { runDirFrom, sleep } from '../support/services/process.js';
import { pgXaAt } from '../support/pg-xa.js';
import { bankHelpers, startBarrierApp, type BarrierApp } from './barrier-app.js';
import { branchLines, killKit, payloadOf, restartWorkflows, RestartXaBank, settle, type RestartTransfer } from './restart-bank.js';

let t: BarrierApp;

const STORE_PREFIX = `{dtm-restart-${process.pid}-${Date.now()}}`;
let dtmOptions: StartDtmOptions;
let dtm: RunningDtm;
let dbs: FileDatabases;
let recorder: Recorder;
const bank = bankHelpers(() => t);
/** The cells, the gates and DTM's record of this file's own DTM. */
const kit = killKit(() => dtm, () => recorder, () => t);
const { cells, cell, untilDtmRecords, holdUntilKilled, untilHeld, gateTarget, balancesOf } = kit;

/** A promise (`reached`) and the function that resolves it (`set`). */
function flag(): { set: () => void; reached: Promise<void> } {
  let set!: () => void;
  const reached = new Promise<void>((resolve) => (set = resolve));
  return { set, reached };
}
const AMOUNT = 10;

beforeAll(async () => {
  dtmOptions = { name: 'dtm-restart', store: 'redis', redis: harness().redis!, redisPrefix: STORE_PREFIX };
  dtm = await startDtm(runDirFrom(harness().runDir), dtmOptions);
  dbs = await fileDatabases();
  recorder = await startRecorder();
  t = await startBarrierApp(dbs, {
    dtm: dtm.info,
    providers: [restartWorkflows('restart.transfer', () => t)],
    controllers: [RestartXaBank],
    xaConnections: { pgxa: pgXaAt(dbs.postgres.url), myxa: mysqlXaDatabase(() => mysql.createConnection(dbs.mariadb.config)) },
    workflowResume: true,
    config: { retryInterval: 1, timeout: 10 },
  });
  const accounts = Object.fromEntries(Array.from({ length: 22 }, (_, i) => [i + 1, 100]));
  await bank.seed('pg', accounts);
  await bank.seed('mysql', accounts);

  const client: DtmClient = t.client;
  let account = 0;
  for (const protocol of PROTOCOLS) {
    const move = () => ({ account: ++account, amount: AMOUNT });
    const add = async (name: string, start: (gid: string, m: { account: number; amount: number }) => { inFlight: Promise<unknown>; outcome: Promise<unknown> }) => {
      const gid = await client.generateGid();
      const m = move();
      const { inFlight, outcome } = start(gid, m);
      cells.set(`${name} ${protocol}`, { gid, account: m.account, inFlight, outcome: settle(outcome) });
    };

    // a saga whose gate answers ONGOING until DTM is back: submitted, DTM's rounds under way at the kill
    await add('saga running', (gid, m) => {
      const path = `/SagaGate${protocol}`;
      recorder.handle(path, () => (kit.restarted ? 200 : 425));
      return {
        inFlight: recorder.waitForCalls(path, 1, { gid, timeoutMs: 20_000 }),
        outcome: client.newSaga(gid, { protocol, retryInterval: 1 }).add('pg.transOut', m).add(gateTarget(protocol, path), payloadOf(protocol)).add('mysql.transIn', m).submitAndWait({ timeout: 60 }),
      };
    });
    // a saga with waitResult whose gate holds DTM's first round until the kill: the submit is under way
    await add('saga submit', (gid, m) => {
      const path = `/SubmitGate${protocol}`;
      holdUntilKilled(path);
      return {
        inFlight: untilHeld(path, gid),
        outcome: client.newSaga(gid, { protocol, retryInterval: 1, waitResult: true }).add('pg.transOut', m).add(gateTarget(protocol, path), payloadOf(protocol)).add('mysql.transIn', m).submitAndWait({ timeout: 60 }),
      };
    });
    // tccGlobalTransaction with waitResult, its Confirm (another service) held by DTM's first round until the kill: the submit is under way
    await add('tcc bare submit', (gid, m) => {
      const path = `/ConfirmGate${protocol}`;
      holdUntilKilled(path);
      return {
        inFlight: untilHeld(path, gid),
        outcome: client.tccGlobalTransaction(
          gid,
          async (tcc) => {
            await tcc.callBranch(m, 'pg.tccOut');
            await tcc.callBranch(payloadOf(protocol), gateTarget(protocol, `/TryOk${protocol}`), gateTarget(protocol, path), gateTarget(protocol, `/CancelOk${protocol}`));
            return 'tried';
          },
          { protocol, timeoutToFail: 60, retryInterval: 1, waitResult: true },
        ),
      };
    });
    // a saga's bare submit() with waitResult, its gate held by DTM's first round until the kill
    await add('saga bare submit', (gid, m) => {
      const path = `/BareGate${protocol}`;
      holdUntilKilled(path);
      return {
        inFlight: untilHeld(path, gid),
        outcome: client.newSaga(gid, { protocol, retryInterval: 1, waitResult: true }).add('pg.transOut', m).add(gateTarget(protocol, path), payloadOf(protocol)).add('mysql.transIn', m).submit(),
      };
    });
    // a message prepared, then its submit() with waitResult, its first branch (another service) held by DTM's first round until the kill
    await add('msg bare submit', (gid, m) => {
      const path = `/MsgGate${protocol}`;
      holdUntilKilled(path);
      const msg = client.newMsg(gid, { protocol, timeoutToFail: 60, retryInterval: 1, waitResult: true }).add(gateTarget(protocol, path), payloadOf(protocol)).add('mysql.deliver', m);
      return {
        inFlight: untilHeld(path, gid),
        outcome: msg.prepare(protocol === 'grpc' ? bank.target('pg', 'grpc', 'query-prepared') : bank.target('pg', 'http', 'query-prepared')).then(() => msg.submit()),
      };
    });
    // a TCC body whose Try ran, ending once DTM is down: its submit meets no DTM
    await add('tcc submit', (gid, m) => {
      const { set: tried, reached: inFlight } = flag();
      return {
        inFlight,
        outcome: client.tccGlobalTransactionAndWait(
          gid,
          async (tcc) => {
            await tcc.callBranch(m, 'pg.tccOut');
            tried();
            await kit.killed;
            return 'tried';
          },
          { protocol, timeoutToFail: 60, retryInterval: 1 },
          { timeout: 60 },
        ),
      };
    });
    // a TCC body whose first Try ran, registering its second branch once DTM is down
    await add('tcc register', (gid, m) => {
      const { set: tried, reached: inFlight } = flag();
      return {
        inFlight,
        outcome: client.tccGlobalTransactionAndWait(
          gid,
          async (tcc) => {
            await tcc.callBranch(m, 'pg.tccOut');
            tried();
            await kit.killed;
            await tcc.callBranch(m, 'mysql.tccOut');
            return 'tried both';
          },
          { protocol, timeoutToFail: 4, retryInterval: 1 },
          { timeout: 60 },
        ),
      };
    });
    // an XA body whose branches are prepared (PostgreSQL and MariaDB), ending once DTM is down: its submit meets no DTM
    await add('xa submit', (gid, m) => {
      const { set: prepared, reached: inFlight } = flag();
      return {
        inFlight,
        outcome: client.xaGlobalTransactionAndWait(
          gid,
          async (xa) => {
            await xa.callBranch({ account: m.account, amount: -m.amount }, 'xa.pg');
            await xa.callBranch(m, 'xa.mysql');
            prepared();
            await kit.killed;
            return 'prepared';
          },
          { protocol, timeoutToFail: 60, retryInterval: 1 },
          { timeout: 60 },
        ),
      };
    });
    // a message whose local transaction (the outbox on PostgreSQL) commits once DTM is down: its submit meets no DTM
    await add('msg', (gid, m) => {
      const { set: saving, reached: inFlight } = flag();
      return {
        inFlight,
        outcome: client
          .newMsg(gid, { protocol, timeoutToFail: 8, retryInterval: 1 })
          .add('mysql.deliver', m)
          .doAndSubmitDb('pg.outbox', t.databases.pg, async (tx: unknown) => {
            await (tx as { query(s: string, p: unknown[]): Promise<unknown> }).query('UPDATE account SET balance = balance - $1 WHERE id = $2', [m.amount, m.account]);
            saving();
            await kit.killed;
            return 'saved';
          }),
      };
    });
    // a workflow whose gate step (another service) answers only once DTM is down
    await add('workflow', (gid, m) => {
      const path = `/WorkflowGate${protocol}`;
      holdUntilKilled(path);
      return {
        inFlight: untilHeld(path, gid),
        outcome: client.executeWorkflow('restart.transfer', gid, { protocol, ...m, gate: gateTarget(protocol, path) } satisfies RestartTransfer, { protocol, retryInterval: 1 }),
      };
    });
  }
  await Promise.all([...cells.values()].map((c) => c.inFlight));
  await stopDtm(dtm, true);
  kit.kill();
  await sleep(1000);
  dtm = await startDtmAgain(runDirFrom(harness().runDir), dtm, dtmOptions);
  kit.restarted = true;
}, 60_000);

afterAll(async () => {
  await t?.close();
  await recorder?.close();
  await dtm?.process.stop();
});


describe.each(PROTOCOLS)('DTM killed (-9) and restarted on its Redis store, over %s', (protocol) => {
  it('a saga whose branches run (one answering ONGOING): submitAndWait rides the restart out and resolves succeed; the money moved once, PostgreSQL to MariaDB', async () => {
    const c = cell('saga running', protocol);
    const outcome = await c.outcome;
    expect(outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed' }) });
    const record = await untilDtmRecords(c.gid, 'succeed');
    expect(branchLines(record)).toEqual(['01 action succeed', '01 compensate prepared', '02 action succeed', '02 compensate prepared', '03 action succeed', '03 compensate prepared']);
    expect(await balancesOf(c)).toEqual({ pg: 100 - AMOUNT, mysql: 100 + AMOUNT });
  });

  it('a saga whose submit (waitResult) is under way in DTM\'s first round: submitAndWait rides the restart out and resolves succeed; the money moved once', async () => {
    const c = cell('saga submit', protocol);
    const outcome = await c.outcome;
    expect(outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed' }) });
    await untilDtmRecords(c.gid, 'succeed');
    expect(await balancesOf(c)).toEqual({ pg: 100 - AMOUNT, mysql: 100 + AMOUNT });
  });

  it('tccGlobalTransaction with waitResult, DTM killed in its first round (a Confirm under way): DtmOutcomeUnknownError "unknown" (DTM could not be asked; it held the submit), not "prepared"; DTM, back, confirms', async () => {
    const c = cell('tcc bare submit', protocol);
    const outcome = (await c.outcome) as { error?: Error };
    expect(outcome.error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(outcome.error).toMatchObject({ gid: c.gid, lastStatus: 'unknown' });
    expect(outcome.error?.message).toMatch(/may or may not have reached DTM .*DTM could not be asked what it holds then .*either prepared .*or submitted \(it confirms the branches\).*never start it again under a new gid/);
    const record = await untilDtmRecords(c.gid, 'succeed');
    expect(branchLines(record)).toEqual(['01 cancel prepared', '01 confirm succeed', '02 cancel prepared', '02 confirm succeed']);
    expect(recorder.callsTo(`/CancelOk${protocol}`, c.gid)).toHaveLength(0);
    expect(await balancesOf(c)).toEqual({ pg: 100 - AMOUNT, mysql: 100 });
  });

  it('a saga\'s bare submit() with waitResult, DTM killed in its first round: DtmUnavailableError saying the submit may have reached DTM (as documented for a bare submit); DTM, back, runs the saga, the money moved once', async () => {
    const c = cell('saga bare submit', protocol);
    const outcome = (await c.outcome) as { error?: Error };
    expect(outcome.error).toBeInstanceOf(DtmUnavailableError);
    expect(outcome.error?.message).toContain('the request may or may not have reached the DTM server');
    await untilDtmRecords(c.gid, 'succeed');
    expect(await balancesOf(c)).toEqual({ pg: 100 - AMOUNT, mysql: 100 + AMOUNT });
  });

  it('a message\'s submit() with waitResult after its prepare(), DTM killed in its first round: DtmOutcomeUnknownError "unknown" (DTM could not be asked; it held the submit), not "prepared", as for TCC; DTM, back, delivers every branch once', async () => {
    const c = cell('msg bare submit', protocol);
    const outcome = (await c.outcome) as { error?: Error };
    expect(outcome.error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(outcome.error).toMatchObject({ gid: c.gid, lastStatus: 'unknown' });
    expect(outcome.error?.message).toMatch(/^the submit of msg \S+ may or may not have reached DTM .*DTM could not be asked what it holds then .*either prepared \(no submit got through: it back-checks .*\) or submitted \(it delivers it\).*never send it again under a new gid/);
    await untilDtmRecords(c.gid, 'succeed');
    expect(await balancesOf(c)).toEqual({ pg: 100, mysql: 100 + AMOUNT });
  });

  it('a TCC body that ends while DTM is down: tccGlobalTransactionAndWait sends the submit again once DTM is back and resolves succeed; confirmed, not cancelled', async () => {
    const c = cell('tcc submit', protocol);
    const outcome = await c.outcome;
    expect(outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed', result: 'tried' }) });
    const record = await untilDtmRecords(c.gid, 'succeed');
    expect(branchLines(record)).toEqual(['01 cancel prepared', '01 confirm succeed']);
    expect(await balancesOf(c)).toEqual({ pg: 100 - AMOUNT, mysql: 100 });
  });

  it('a TCC body registering its second branch while DTM is down: the body\'s DtmUnavailableError (its registration); DTM, back, cancels the first branch at timeoutToFail; the second Try never ran', async () => {
    const c = cell('tcc register', protocol);
    const outcome = (await c.outcome) as { error?: Error };
    expect(outcome.error).toBeInstanceOf(DtmUnavailableError);
    expect(outcome.error).toMatchObject({ gid: c.gid, branchId: '02', protocol });
    // refused (nothing sent), or the reset of a connection kept alive from before the kill (it may have reached DTM): as timing has it
    expect(outcome.error?.message).toMatch(/^could not reach \S+(\/registerBranch|\/RegisterBranch) \(.*(ECONNREFUSED|the request may or may not have reached the DTM server)/);
    const record = await untilDtmRecords(c.gid, 'failed');
    expect(record.transaction?.rollback_reason).toMatch(/Timeout after 4 seconds/);
    expect(branchLines(record)).toEqual(['01 cancel succeed', '01 confirm prepared']);
    expect(await balancesOf(c)).toEqual({ pg: 100, mysql: 100 });
  });

  it('an XA body whose branches are prepared, ending while DTM is down: xaGlobalTransactionAndWait sends the submit again once DTM is back and resolves succeed; both branches committed once', async () => {
    const c = cell('xa submit', protocol);
    const outcome = await c.outcome;
    expect(outcome).toEqual({ value: expect.objectContaining({ gid: c.gid, status: 'succeed', result: 'prepared' }) });
    const record = await untilDtmRecords(c.gid, 'succeed');
    expect(branchLines(record)).toEqual(['01 commit succeed', '01 rollback prepared', '02 commit succeed', '02 rollback prepared']);
    expect(await balancesOf(c)).toEqual({ pg: 100 - AMOUNT, mysql: 100 + AMOUNT });
  });

  it('a message whose local transaction committed while DTM is down: DtmOutcomeUnknownError (prepared: the submit never reached DTM, which answered no query either, or held it prepared when asked after its restart); DTM back-checks it after the restart and delivers once', async () => {
    const c = cell('msg', protocol);
    const outcome = (await c.outcome) as { error?: Error };
    expect(outcome.error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(outcome.error).toMatchObject({ gid: c.gid, lastStatus: 'prepared' });
    // DTM is started again 1 s after the kill: a loaded machine can get to the query after the failed submit once it is back
    expect(outcome.error?.message).toMatch(/^the local transaction of msg \S+ committed, but its submit did not get through \(.*\): (it did not reach DTM, which answered no query either: DTM holds the message prepared\.|DTM, asked after it, holds the message prepared \(a submit still on its way to DTM may yet take it\)\.) DTM back-checks its query-prepared target once its timeout_to_fail \(8 s\) passed .*Do not run the local transaction again/);
    await untilDtmRecords(c.gid, 'succeed');
    expect(await balancesOf(c)).toEqual({ pg: 100 - AMOUNT, mysql: 100 + AMOUNT });
  });

  it('a workflow whose step answers while DTM is down: DtmWorkflowPendingError; DTM resumes it after the restart, it succeeds, each step moved once', async () => {
    const c = cell('workflow', protocol);
    const outcome = (await c.outcome) as { error?: Error };
    expect(outcome.error).toBeInstanceOf(DtmWorkflowPendingError);
    await untilDtmRecords(c.gid, 'succeed');
    expect(await balancesOf(c)).toEqual({ pg: 100 - AMOUNT, mysql: 100 + AMOUNT });
  });
});
