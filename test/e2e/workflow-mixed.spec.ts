// One workflow mixing every kind of step, against the real DTM server: a saga-style step (action +
// compensation) and a TCC-style step (Try, Confirm, Cancel) on this app's own decorated branches
// behind the barrier (over HTTP or gRPC), a step of another service (the recorder) that answers
// ONGOING or whose compensation fails a few times, a local step behind the barrier with a
// compensation of its own, and a local XA step. What DTM records, what each branch received, and
// what the databases hold, across DTM's resumes.
import 'reflect-metadata';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Inject, Injectable } from '@nestjs/common';
import type pg from 'pg';
import { DtmFailureError, DtmWorkflow, DtmWorkflowPendingError, type BarrierDatabase, type DtmProtocol, type WorkflowContext } from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { PROTOCOLS } from '../support/fixtures.js';
import { cronUntilStatus, queryTrans, type TransStatus } from '../support/harness.js';
import { pgXaAt } from '../support/pg-xa.js';
import { startRecorder, type Recorder } from '../support/recorder.js';
import { bankHelpers, startBarrierApp, type BarrierApp } from './barrier-app.js';

interface MixedInput {
  /** This app's branches (the barrier app's banks): saga transOut on PostgreSQL, TCC tccOut on MariaDB. */
  withdraw: string;
  withdrawRevert: string;
  holdTry: string;
  holdConfirm: string;
  holdCancel: string;
  /** Another service's branch and its compensation. */
  notify: string;
  notifyRevert: string;
  amount: number;
  /** Refuse after every step: the workflow rolls back. */
  refuse?: boolean;
}

@Injectable()
class MixedWorkflows {
  /** Executions per gid. */
  static executions = new Map<string, number>();

  constructor(@Inject('pg-db') private readonly pgDb: BarrierDatabase<pg.PoolClient>) {}

  @DtmWorkflow('mixed.v1')
  async mixed(wf: WorkflowContext<MixedInput>) {
    MixedWorkflows.executions.set(wf.gid, (MixedWorkflows.executions.get(wf.gid) ?? 0) + 1);
    const i = wf.input;
    const move = { account: 1, amount: i.amount };
    await wf.step('withdraw').onRollback((b) => b.http(i.withdrawRevert, move)).http(i.withdraw, move);
    await wf
      .step('hold')
      .onRollback((b) => b.http(i.holdCancel, move))
      .onCommit((b) => b.http(i.holdConfirm, move))
      .http(i.holdTry, move);
    await wf.step('notify').onRollback((b) => b.http(i.notifyRevert, { amount: i.amount })).http(i.notify, { amount: i.amount });
    await wf
      .step('ledger')
      .onRollback((b) => b.barrier.callWithDb(this.pgDb, (tx: pg.PoolClient) => tx.query('UPDATE account SET balance = balance - $1 WHERE id = 2', [i.amount])))
      .run((tx: pg.PoolClient) => tx.query('UPDATE account SET balance = balance + $1 WHERE id = 2', [i.amount]).then(() => 'booked'), { barrier: 'pg' });
    await wf.step('escrow').xa('pgxa', (c: pg.Client) => c.query('UPDATE account SET balance = balance + $1 WHERE id = 3', [i.amount]).then(() => 'held'));
    if (i.refuse) throw new DtmFailureError('refused after every step');
    return { amount: i.amount };
  }
}

let dbs: FileDatabases;
let t: BarrierApp;
let recorder: Recorder;
const bank = bankHelpers(() => t);

beforeAll(async () => {
  dbs = await fileDatabases();
  recorder = await startRecorder();
  t = await startBarrierApp(dbs, { providers: [MixedWorkflows], xaConnections: { pgxa: pgXaAt(dbs.postgres.url) }, config: { retryInterval: 1 } });
});
afterAll(async () => {
  await t?.close();
  await recorder?.close();
});
beforeEach(async () => {
  recorder.reset();
  await bank.seed('pg', { 1: 100, 2: 100, 3: 100 });
  await bank.seed('mysql', { 1: 100 });
});

function input(protocol: DtmProtocol, extra: Partial<MixedInput> = {}): MixedInput {
  return {
    withdraw: bank.target('pg', protocol, 'trans-out'),
    withdrawRevert: bank.target('pg', protocol, 'trans-out-compensate'),
    holdTry: bank.target('mysql', protocol, 'tcc-out-try'),
    holdConfirm: bank.target('mysql', protocol, 'tcc-out-confirm'),
    holdCancel: bank.target('mysql', protocol, 'tcc-out-cancel'),
    notify: recorder.urlFor('/Notify'),
    notifyRevert: recorder.urlFor('/NotifyRevert'),
    amount: 30,
    ...extra,
  };
}

/** Has DTM's cron take the pending workflow `gid` until DTM records `status`. */
const untilDtmRecords = (gid: string, status: TransStatus) => cronUntilStatus(gid, status, { timeoutMs: 40_000, intervalMs: 1000 });

const runsOf = (...keys: string[]) => Object.fromEntries(keys.map((k) => [k, t.runs.of(k)]));

describe.each(PROTOCOLS)("a workflow mixing steps, this app's branches called over %s", (protocol: DtmProtocol) => {
  it('another service answers ONGOING once: pending; DTM resumes it, the recorded steps are not run again, the TCC step is confirmed, and it succeeds', async () => {
    const gid = await t.client.generateGid();
    const before = runsOf('pg.transOut', 'mysql.tccOutTry', 'mysql.tccOutConfirm', 'mysql.tccOutCancel', 'pg.transOutCompensate');
    recorder.answer('/Notify', 425, 200);
    await expect(t.client.executeWorkflow('mixed.v1', gid, input(protocol))).rejects.toBeInstanceOf(DtmWorkflowPendingError);
    await untilDtmRecords(gid, 'succeed');
    const after = runsOf('pg.transOut', 'mysql.tccOutTry', 'mysql.tccOutConfirm', 'mysql.tccOutCancel', 'pg.transOutCompensate');
    expect(Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k]]))).toEqual({ 'pg.transOut': 1, 'mysql.tccOutTry': 1, 'mysql.tccOutConfirm': 1, 'mysql.tccOutCancel': 0, 'pg.transOutCompensate': 0 });
    expect(MixedWorkflows.executions.get(gid)).toBe(2);
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.query.branch_id} ${c.query.op}`)).toEqual(['/Notify 03 action', '/Notify 03 action']);
    const { transaction, branches } = await queryTrans(gid);
    expect(transaction).toMatchObject({ status: 'succeed', trans_type: 'workflow' });
    expect(branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`).sort()).toEqual(
      ['01 action succeed', '02 action succeed', '02 commit succeed', '03 action succeed', '04 action succeed', '05 action succeed', '05 business succeed', '05 commit succeed'].sort(),
    );
    expect(await bank.balances('pg', [1, 2, 3])).toEqual({ 1: 70, 2: 130, 3: 130 });
    expect(await bank.balances('mysql', [1])).toEqual({ 1: 70 });
    await expect(t.client.executeWorkflow('mixed.v1', gid, input(protocol))).resolves.toEqual({ status: 'succeed', result: { amount: 30 } });
  });

  it("refused after every step, another service's compensation failing twice: each compensation runs once, in reverse order, across DTM's resumes; DTM records failed with the reason, every balance back", async () => {
    const gid = await t.client.generateGid();
    const before = runsOf('pg.transOut', 'mysql.tccOutTry', 'mysql.tccOutConfirm', 'mysql.tccOutCancel', 'pg.transOutCompensate');
    recorder.answer('/NotifyRevert', 500, 500, 200);
    const first = await t.client.executeWorkflow('mixed.v1', gid, input(protocol, { refuse: true })).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(DtmWorkflowPendingError); // a compensation failed: DTM resumes the rollback
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    await untilDtmRecords(gid, 'failed');
    const after = runsOf('pg.transOut', 'mysql.tccOutTry', 'mysql.tccOutConfirm', 'mysql.tccOutCancel', 'pg.transOutCompensate');
    expect(Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k]]))).toEqual({ 'pg.transOut': 1, 'mysql.tccOutTry': 1, 'mysql.tccOutConfirm': 0, 'mysql.tccOutCancel': 1, 'pg.transOutCompensate': 1 });
    expect(recorder.callsFor(gid).map((c) => `${c.path} ${c.query.branch_id} ${c.query.op}`)).toEqual([
      '/Notify 03 action',
      '/NotifyRevert 03 rollback',
      '/NotifyRevert 03 rollback',
      '/NotifyRevert 03 rollback',
    ]);
    const { transaction, branches } = await queryTrans(gid);
    expect(transaction).toMatchObject({ status: 'failed', rollback_reason: 'refused after every step' });
    // every compensation recorded once; XA escrow rolled back first, then the ledger, the notification, the hold, the withdrawal
    const rollbacks = branches.filter((b) => b.op === 'rollback');
    expect(rollbacks.map((b) => `${b.branch_id} ${b.status}`)).toEqual(expect.arrayContaining(['05 succeed', '04 succeed', '03 succeed', '02 succeed', '01 succeed']));
    expect(rollbacks).toHaveLength(5);
    expect(await bank.balances('pg', [1, 2, 3])).toEqual({ 1: 100, 2: 100, 3: 100 });
    expect(await bank.balances('mysql', [1])).toEqual({ 1: 100 });
    const barrier = await bank.barrierRows('pg', gid);
    // the workflow's own ops: the compensation of this app's saga step is a rollback; the XA step's rollback leaves its row
    expect(barrier).toEqual(['01/action/01=action', '01/rollback/01=rollback', '04/action/01=action', '04/rollback/01=rollback', '05/action/01=rollback']);
    await expect(t.client.executeWorkflow('mixed.v1', gid, input(protocol))).rejects.toThrow(DtmFailureError);
  });
});
