// TCC and XA global transactions through DtmClient and TransactionHelper, against the real DTM
// server. The XA resource managers are recorder handlers that register their branch with DTM the
// way DTM's Go SDK does (registerBranch with the phase-2 URL, before answering the action).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { DtmFailureError, type DtmClient, type TransactionHelper } from 'nestjs-dtm';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { dtmPost, harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { startRecorder, type Recorder, type RecordedCall } from '../support/recorder.js';

let app: DtmTestApp;
let client: DtmClient;
let helper: TransactionHelper;
let recorder: Recorder;

beforeAll(async () => {
  recorder = await startRecorder();
  app = await startDtmApp();
  client = app.client;
  helper = app.helper;
});
afterAll(async () => {
  await app?.close();
  await recorder?.close();
});
beforeEach(() => recorder.reset());

describe('TCC', () => {
  it('confirms every branch after the Tries succeeded; Tries get the query DTM SDKs send', async () => {
    const gid = await client.generateGid();
    recorder.answer('/InventoryTry', { status: 200, body: { reserved: 2 } });
    const answers = await client.tccGlobalTransaction(gid, async (tcc) => [
      await tcc.callBranch({ sku: 'a', qty: 2 }, recorder.urlFor('/InventoryTry'), recorder.urlFor('/InventoryConfirm'), recorder.urlFor('/InventoryCancel')),
      await tcc.callBranch({ amount: 10 }, recorder.urlFor('/PaymentTry'), recorder.urlFor('/PaymentConfirm'), recorder.urlFor('/PaymentCancel')),
    ]);
    expect(answers[0].body).toEqual({ reserved: 2 });

    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('succeed');
    expect(final.branches.map((b) => `${b.branchId} ${b.op} ${b.status}`)).toEqual([
      '01 cancel prepared',
      '01 confirm succeed',
      '02 cancel prepared',
      '02 confirm succeed',
    ]);
    const [tryCall] = recorder.callsTo('/InventoryTry', gid);
    expect(tryCall).toMatchObject({
      method: 'POST',
      query: { gid, trans_type: 'tcc', branch_id: '01', op: 'try', dtm: harness().dtm.serverUrl },
      body: '{"sku":"a","qty":2}',
    });
    // DTM confirms from the last branch to the first, with the registered payload as body
    expect(recorder.callsFor(gid).filter((c) => c.query.op === 'confirm').map((c) => [c.path, c.body])).toEqual([
      ['/PaymentConfirm', '{"amount":10}'],
      ['/InventoryConfirm', '{"sku":"a","qty":2}'],
    ]);
  });

  it('a Try answering FAILURE aborts: every registered branch is cancelled and the reason recorded', async () => {
    const gid = await client.generateGid();
    recorder.answer('/PaymentTry', { status: 409, body: { message: 'card declined' } });
    const run = client.tccGlobalTransaction(gid, async (tcc) => {
      await tcc.callBranch({ sku: 'a' }, recorder.urlFor('/InventoryTry'), recorder.urlFor('/InventoryConfirm'), recorder.urlFor('/InventoryCancel'));
      await tcc.callBranch({ amount: 10 }, recorder.urlFor('/PaymentTry'), recorder.urlFor('/PaymentConfirm'), recorder.urlFor('/PaymentCancel'));
    });
    await expect(run).rejects.toBeInstanceOf(DtmFailureError);

    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('card declined');
    expect(final.branches.map((b) => b.status)).toEqual(['succeed', 'prepared', 'succeed', 'prepared']);
    expect(recorder.callsFor(gid).filter((c) => c.query.op === 'cancel').map((c) => c.path)).toEqual(['/PaymentCancel', '/InventoryCancel']);
    expect(recorder.callsFor(gid).filter((c) => c.query.op === 'confirm')).toHaveLength(0);
  });

  it('TransactionHelper.executeTcc returns the Try answers, and a rollback as a result with waitForFinal', async () => {
    const ok = await helper.mustGenGid();
    recorder.answer('/InventoryTry', { status: 200, body: { reserved: 1 } });
    const branch = (name: string, data: object) => ({
      try: recorder.urlFor(`/${name}Try`),
      confirm: recorder.urlFor(`/${name}Confirm`),
      cancel: recorder.urlFor(`/${name}Cancel`),
      data,
    });
    const done = await helper.executeTcc(ok, [branch('Inventory', { sku: 'b' }), branch('Payment', { amount: 3 })], { waitForFinal: true });
    expect(done.answers.map((a) => a.body)).toEqual([{ reserved: 1 }, { result: 'recorded' }]);
    expect(done.final?.status).toBe('succeed');

    const bad = await helper.mustGenGid();
    recorder.answer('/PaymentTry', 409);
    const rolledBack = await helper.executeTcc(bad, [branch('Inventory', { sku: 'b' }), branch('Payment', { amount: 3 })], { waitForFinal: true });
    expect(rolledBack.final?.status).toBe('failed');
    expect(rolledBack.final?.rollbackReason).toContain('recorder answered 409');
  });
});

/** An XA resource manager as DTM's Go SDK runs one: registers its branch before answering the action. */
function xaResourceManager(outcome: 'prepare' | 'fail') {
  return async (call: Omit<RecordedCall, 'status' | 'answeredAt'>) => {
    if (call.query.op !== 'action') return 200; // commit / rollback
    if (outcome === 'fail') return { status: 409, body: { message: 'insufficient balance' } };
    const registered = await dtmPost('/registerBranch', {
      gid: call.query.gid,
      trans_type: 'xa',
      branch_id: call.query.branch_id,
      url: call.query.phase2_url,
    });
    return registered.status === 200 ? 200 : 500;
  };
}

describe('XA (application side)', () => {
  it('commits every branch after the actions succeeded', async () => {
    recorder.handle('/BankA', xaResourceManager('prepare'));
    recorder.handle('/BankB', xaResourceManager('prepare'));
    const gid = await client.generateGid();
    await client.xaGlobalTransaction(gid, async (xa) => {
      await xa.callBranch({ amount: -30 }, recorder.urlFor('/BankA'));
      await xa.callBranch({ amount: 30 }, recorder.urlFor('/BankB'));
    });

    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('succeed');
    expect(final.branches.map((b) => `${b.branchId} ${b.op} ${b.status}`)).toEqual([
      '01 rollback prepared',
      '01 commit succeed',
      '02 rollback prepared',
      '02 commit succeed',
    ]);
    const [action] = recorder.callsTo('/BankA', gid);
    expect(action.query).toMatchObject({ gid, trans_type: 'xa', branch_id: '01', op: 'action', phase2_url: recorder.urlFor('/BankA') });
    expect(recorder.callsFor(gid).filter((c) => c.query.op === 'commit').map((c) => `${c.path} ${c.method} ${c.body}`)).toEqual([
      '/BankA POST ',
      '/BankB POST ',
    ]);
  });

  it('rolls back the prepared branch when the second branch fails, with the reason', async () => {
    recorder.handle('/BankA', xaResourceManager('prepare'));
    recorder.handle('/BankB', xaResourceManager('fail'));
    const gid = await client.generateGid();
    const run = client.xaGlobalTransaction(gid, async (xa) => {
      await xa.callBranch({ amount: -30 }, recorder.urlFor('/BankA'));
      await xa.callBranch({ amount: 30 }, recorder.urlFor('/BankB'));
    });
    await expect(run).rejects.toThrow(/insufficient balance/);

    const final = await waitForTransStatus(gid, 'failed');
    expect(final.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 rollback succeed', '01 commit prepared']);
    expect(final.transaction?.rollback_reason).toContain('insufficient balance');
    expect(recorder.callsFor(gid).filter((c) => c.query.op === 'rollback').map((c) => c.path)).toEqual(['/BankA']);
  });

  it('TransactionHelper.executeXa commits, waiting for the final status', async () => {
    recorder.handle('/BankA', xaResourceManager('prepare'));
    const gid = await helper.mustGenGid();
    const result = await helper.executeXa(gid, [{ action: recorder.urlFor('/BankA'), data: { amount: 1 } }], { waitForFinal: { timeoutMs: 10_000 } });
    expect(result.final?.status).toBe('succeed');
    expect((await queryTrans(gid)).branches.map((b) => b.status)).toEqual(['prepared', 'succeed']);
  });
});

describe('TransactionHelper saga and msg', () => {
  it('executeSaga and executeMsg submit what they are given', async () => {
    const sagaGid = await helper.mustGenGid();
    const saga = await helper.executeSaga(
      sagaGid,
      [
        { action: recorder.urlFor('/TransOut'), compensate: recorder.urlFor('/TransOutRevert'), data: { amount: 1 } },
        { action: recorder.urlFor('/TransIn'), compensate: recorder.urlFor('/TransInRevert'), data: { amount: 1 } },
      ],
      { waitForFinal: true },
    );
    expect(saga.final?.status).toBe('succeed');

    const msgGid = await helper.mustGenGid();
    const msg = await helper.executeMsg(msgGid, recorder.urlFor('/QueryPrepared'), [{ action: recorder.urlFor('/Notify'), data: { id: 1 } }], {
      waitForFinal: true,
    });
    expect(msg.final?.status).toBe('succeed');
    expect(recorder.callsTo('/Notify', msgGid)).toHaveLength(1);
    await expect(helper.executeSaga(sagaGid, [])).rejects.toThrow('executeSaga needs at least one branch');
  });
});
