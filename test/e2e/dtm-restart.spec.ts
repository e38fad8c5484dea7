// DTM killed (-9) while transactions of every kind are in flight, and started again on the same
// store: its Redis (dtm-restart-mariadb.spec.ts runs the same cells on a MariaDB store,
// dtm-restart-sql.spec.ts others on PostgreSQL; outcome-certainty.spec.ts restarts one on boltdb).
// The cells are restart-bank.ts's restartCells. One kill for all the cells, over HTTP and gRPC each:
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
import { afterAll, beforeAll, describe, it } from '@jest/globals';
import mysql from 'mysql2/promise';
import { mysqlXaDatabase } from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { PROTOCOLS } from '../support/fixtures.js';
import { harness } from '../support/harness.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { startDtm, startDtmAgain, stopDtm, type RunningDtm, type StartDtmOptions } from '../support/services/dtm.js';
import { runDirFrom, sleep } from '../support/services/process.js';
import { pgXaAt } from '../support/pg-xa.js';
import { bankHelpers, startBarrierApp, type BarrierApp } from './barrier-app.js';
import { killKit, restartCells, restartWorkflows, RestartXaBank } from './restart-bank.js';

let t: BarrierApp;

const STORE_PREFIX = `{dtm-restart-${process.pid}-${Date.now()}}`;
let dtmOptions: StartDtmOptions;
let dtm: RunningDtm;
let dbs: FileDatabases;
let recorder: Recorder;
const bank = bankHelpers(() => t);
/** The cells, the gates and DTM's record of this file's own DTM. */
const kit = killKit(() => dtm, () => recorder, () => t);
/** The transactions in flight at the kill (shared with dtm-restart-mariadb.spec.ts), by name. */
const cells = restartCells(kit, () => recorder, () => t, 'restart.transfer');

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

  for (const protocol of PROTOCOLS) for (const [name, c] of Object.entries(cells)) await kit.add(name, protocol, c.start(protocol));
  await kit.untilInFlight();
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
  for (const c of Object.values(cells)) it(c.title, () => c.check(protocol));
});
