// Authenticated branch calls on the barrier bank (PostgreSQL and MariaDB; HTTP routes and gRPC
// methods of one hybrid app), against the real DTM server: the attacks of issue #13 that move money
// or plant barrier rows are performed over both transports, and the databases are the oracle.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { BranchBarrier, DtmUsageError, type DtmProtocol } from 'nestjs-dtm';
import { BranchAuth, targetPath } from '../../lib/auth/branch-auth.js';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { PROTOCOLS } from '../support/fixtures.js';
import { requestBytes } from '../support/grpc.js';
import { queryTrans, storedAuth, triggerCron, waitForTransStatus } from '../support/harness.js';
import { waitUntil } from '../support/services/process.js';
import { bankHelpers, grpcServiceOf, SQL_STORES, startBarrierApp, type BankAnswer, type BarrierApp, type Move, type SqlStore } from './barrier-app.js';

const KEY = randomBytes(33).toString('base64');
const CASES = SQL_STORES.flatMap((store) => PROTOCOLS.map((protocol): [SqlStore, DtmProtocol] => [store, protocol]));

let t: BarrierApp;
let dbs: FileDatabases;
beforeAll(async () => {
  dbs = await fileDatabases();
  t = await startBarrierApp(dbs, { config: { branchAuthKeys: [KEY], passThroughHeaders: ['x-tenant'] } });
});
afterAll(async () => {
  await t?.close();
});

const { seed, balances, barrierRows, callBranch: attack, target } = bankHelpers(() => t);

/** Refused as unauthenticated: HTTP 401, gRPC UNAUTHENTICATED (16). */
const refused = (protocol: DtmProtocol) => (protocol === 'http' ? { status: 401 } : { code: 16 });

/**
 * Seeds accounts 1 (100) and 2 (0) and submits a saga (deposit 30 into 2, then withdraw 30 from 1)
 * whose step 1 crashes once: DTM retries it only at the next cron round, so step 2 (the withdraw)
 * waits. Answers its gid and the branch headers DTM stored (the tokens among them).
 */
async function heldSaga(store: SqlStore, protocol: DtmProtocol, branchHeaders?: Record<string, string>): Promise<{ gid: string; stored: Record<string, string> }> {
  await seed(store, { 1: 100, 2: 0 });
  const gid = await t.client.generateGid();
  await t.client
    .newSaga(gid, { protocol, retryInterval: 60, branchHeaders })
    .add(`${store}.transIn`, { account: 2, amount: 30, fail: 'error' })
    .add(`${store}.transOut`, { account: 1, amount: 30 })
    .submit();
  // DTM calls the first step after the submit's answer: wait for that call, so what follows comes after it
  await waitUntil(`DTM's first call of ${gid}`, async () => (t.runs.headers.get(gid) ?? []).some((r) => r.key === `${store}.transIn`), { timeoutMs: 10_000 });
  return { gid, stored: (await queryTrans(gid)).transaction?.branch_headers ?? {} };
}

describe.each(CASES)('authenticated calls, barrier on %s over %s', (store, protocol) => {
  /** A message (to deliver 5 to account 1, at 0) whose local transaction fails with 'disk full': its gid. */
  const outboxFailed = async (): Promise<string> => {
    await seed(store, { 1: 0 });
    const gid = await t.client.generateGid();
    const msg = t.client.newMsg(gid, { protocol, timeoutToFail: 300 }).add(`${store}.deliver`, { account: 1, amount: 5 });
    await expect(
      msg.doAndSubmitDb(`${store}.outbox`, t.databases[store], async () => {
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    return gid;
  };

  it('a legitimate saga runs over DTM, its rollback compensates; a forged deposit with a made-up gid moves nothing', async () => {
    await seed(store, { 1: 100, 2: 0 });
    const gid = await t.client.generateGid();
    const ok = await t.client.newSaga(gid, { protocol }).add(`${store}.transOut`, { account: 1, amount: 30 }).add(`${store}.transIn`, { account: 2, amount: 30 }).submitAndWait();
    expect(ok.status).toBe('succeed');
    const gid2 = await t.client.generateGid();
    const failed = await t.client
      .newSaga(gid2, { protocol })
      .add(`${store}.transOut`, { account: 1, amount: 30 })
      .add(`${store}.transIn`, { account: 2, amount: 30, fail: 'failure' })
      .submitAndWait();
    expect(failed.status).toBe('failed');
    expect(await balances(store, [1, 2])).toEqual({ 1: 70, 2: 30 });

    const forged = await attack(store, protocol, 'trans-in', { gid: 'made-up', trans_type: 'saga', branch_id: '01', op: 'action' }, { account: 2, amount: 1_000_000 });
    expect(forged).toMatchObject(refused(protocol));
    expect(await balances(store, [1, 2])).toEqual({ 1: 70, 2: 30 });
    expect(await barrierRows(store, 'made-up')).toEqual([]);
  });

  it('the withdraw compensated before it ran, with the token read from DTM: refused, so the real withdraw still runs (no money from nothing)', async () => {
    const { gid, stored: headers } = await heldSaga(store, protocol);
    const stored = headers['dtm-auth'] ?? '';
    expect(stored).toContain('compensate.02=');
    const early = await attack(store, protocol, 'trans-out-compensate', { gid, trans_type: 'saga', branch_id: '02', op: 'compensate' }, { account: 1, amount: 30 }, storedAuth(headers));
    expect(early).toMatchObject(refused(protocol));
    expect(early.text).toContain('DTM records the saga transaction as submitted');
    expect((await barrierRows(store, gid)).filter((r) => r.startsWith('02/'))).toEqual([]);

    await triggerCron();
    expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
    expect(await balances(store, [1, 2])).toEqual({ 1: 70, 2: 30 });
    expect(await barrierRows(store, gid)).toEqual(['01/action/01=action', '02/action/01=action']);
  });

  it('TCC over DTM: cancel after a failed Try, confirm after success; a cancel sent early is refused and writes nothing', async () => {
    await seed(store, { 1: 100 });
    const gid = await t.client.generateGid();
    let early: BankAnswer | undefined;
    await t.client.tccGlobalTransaction(
      gid,
      async (tcc) => {
        await tcc.callBranch({ account: 1, amount: 40 }, `${store}.tccOut`);
        const branchId = (await queryTrans(gid)).branches[0].branch_id;
        early = await attack(store, protocol, 'tcc-out-cancel', { gid, trans_type: 'tcc', branch_id: branchId, op: 'cancel' }, { account: 1, amount: 40 });
      },
      { protocol },
    );
    expect(early).toMatchObject(refused(protocol));
    await waitForTransStatus(gid, 'succeed');
    expect(await balances(store, [1])).toEqual({ 1: 60 });
    expect((await barrierRows(store, gid)).map((r) => r.replace(/^01-[\w-]+/, '01'))).toEqual(['01/confirm/01=confirm', '01/try/01=try']);

    const gid2 = await t.client.generateGid();
    await expect(
      t.client.tccGlobalTransaction(gid2, async (tcc) => tcc.callBranch({ account: 1, amount: 1000 }, `${store}.tccOut`), { protocol }),
    ).rejects.toThrow('insufficient balance');
    await waitForTransStatus(gid2, 'failed');
    expect(await balances(store, [1])).toEqual({ 1: 60 });
  });

  it("a TCC confirm replayed with DTM's token after DTM recorded succeed, its barrier rows purged (docs/barrier.md: once DTM finished it), is refused and does not confirm again", async () => {
    await seed(store, { 1: 100 });
    const gid = await t.client.generateGid();
    await t.client.tccGlobalTransaction(gid, async (tcc) => tcc.callBranch({ account: 1, amount: 40 }, `${store}.tccOut`), { protocol });
    const done = await waitForTransStatus(gid, 'succeed');
    const confirms = t.runs.of(`${store}.tccOutConfirm`);
    await t.sql[store].run('DELETE FROM dtm_barrier WHERE gid = ?', [gid]);
    const branchId = done.branches.find((b) => b.op === 'confirm')!.branch_id;
    const replay = await attack(store, protocol, 'tcc-out-confirm', { gid, trans_type: 'tcc', branch_id: branchId, op: 'confirm' }, { account: 1, amount: 40 }, storedAuth(done));
    expect(replay).toMatchObject(refused(protocol));
    expect(replay.text).toContain('DTM records the tcc transaction as succeed');
    expect(t.runs.of(`${store}.tccOutConfirm`)).toBe(confirms);
    expect(await barrierRows(store, gid)).toEqual([]);
  });

  it("a saga compensation replayed with DTM's token after DTM recorded failed, its barrier rows purged, is refused and writes nothing", async () => {
    await seed(store, { 1: 100, 2: 0 });
    const gid = await t.client.generateGid();
    const failed = await t.client
      .newSaga(gid, { protocol })
      .add(`${store}.transOut`, { account: 1, amount: 30 })
      .add(`${store}.transIn`, { account: 2, amount: 30, fail: 'failure' })
      .submitAndWait();
    expect(failed.status).toBe('failed');
    const stored = storedAuth(await queryTrans(gid));
    await t.sql[store].run('DELETE FROM dtm_barrier WHERE gid = ?', [gid]);
    const replay = await attack(store, protocol, 'trans-out-compensate', { gid, trans_type: 'saga', branch_id: '01', op: 'compensate' }, { account: 1, amount: 30 }, stored);
    expect(replay).toMatchObject(refused(protocol));
    expect(replay.text).toContain('DTM records the saga transaction as failed');
    expect(await barrierRows(store, gid)).toEqual([]);
    expect(await balances(store, [1, 2])).toEqual({ 1: 100, 2: 0 });
  });

  it('an anonymous back-check does not block the outbox: no barrier row, the message is delivered', async () => {
    await seed(store, { 1: 0 });
    const gid = await t.client.generateGid();
    const forged = await attack(store, protocol, 'query-prepared', { gid, trans_type: 'msg', branch_id: '00', op: 'msg' }, undefined);
    expect(forged).toMatchObject(refused(protocol));
    expect(await barrierRows(store, gid)).toEqual([]);
    const msg = t.client.newMsg(gid, { protocol }).add(`${store}.deliver`, { account: 1, amount: 5 });
    await expect(msg.doAndSubmitDb(`${store}.outbox`, t.databases[store], async () => 'done')).resolves.toBe('done');
    await waitForTransStatus(gid, 'succeed');
    expect(await balances(store, [1])).toEqual({ 1: 5 });
  });

  it('a local transaction that fails with an error: the app\'s own back-check (its call token) runs, finds the rollback and the message fails at once, nothing delivered', async () => {
    const gid = await outboxFailed();
    expect((await queryTrans(gid)).transaction?.status).toBe('failed');
    expect(await barrierRows(store, gid)).toEqual(['00/msg/01=rollback']);
    expect(await balances(store, [1])).toEqual({ 1: 0 }); // nothing delivered
  });

  it("the app's own back-check taken off the wire and replayed after the message failed answers FAILURE again and writes nothing (it reads the barrier row, and the rollback row is there); DTM's back-check replayed then is refused", async () => {
    const gid = await outboxFailed();
    const stored = await queryTrans(gid);
    expect(stored.transaction?.status).toBe('failed');
    // the call as the app sent it: its dtm-auth-call is the app's HMAC of exactly this call (no body)
    const issued = stored.transaction?.branch_headers?.['dtm-auth-issued'] ?? '';
    const token = new BranchAuth([KEY]).sign({ channel: 'app', gid, transType: 'msg', branchId: '00', op: 'msg', target: targetPath(target(store, protocol, 'query-prepared')), payload: undefined, issued });
    const q = { gid, trans_type: 'msg', branch_id: '00', op: 'msg' };
    const own = await attack(store, protocol, 'query-prepared', q, undefined, { 'dtm-auth-call': token, 'dtm-auth-issued': issued });
    expect(own).toMatchObject(protocol === 'http' ? { status: 409 } : { code: 10 }); // FAILURE, as the app's own call was answered
    const dtms = await attack(store, protocol, 'query-prepared', q, undefined, storedAuth(stored));
    expect(dtms).toMatchObject(refused(protocol));
    expect(dtms.text).toContain('DTM records the msg transaction as failed, and this op runs only when it is prepared');
    expect(await barrierRows(store, gid)).toEqual(['00/msg/01=rollback']);
    expect(await balances(store, [1])).toEqual({ 1: 0 });
  });

  it('commit, then a crash before submit: DTM\'s own back-check, with its token and due, finds the commit and delivers', async () => {
    await seed(store, { 1: 0 });
    const gid = await t.client.generateGid();
    const msg = t.client.newMsg(gid, { protocol, timeoutToFail: 1, retryInterval: 1 }).add(`${store}.deliver`, { account: 1, amount: 5 });
    await msg.prepare(`${store}.outbox`);
    await new BranchBarrier('msg', gid, '00', 'msg', { table: 'dtm_barrier' }).callWithDb(t.databases[store], async () => undefined);
    expect((await t.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(await balances(store, [1])).toEqual({ 1: 5 });
  });
});

describe.each(PROTOCOLS)('forwarded headers of authenticated calls over %s', (protocol) => {
  const store: SqlStore = 'pg';
  /** The tenant each run of `gid`'s handlers saw in `BranchInfo.headers` (undefined: none). */
  const tenants = (gid: string) => (t.runs.headers.get(gid) ?? []).map((r) => [r.key, r.headers['x-tenant']]);

  it('the tokens sign them: a call read back from DTM with another tenant, without it, or without the list is refused; as signed it runs with it', async () => {
    // spaces around a value: DTM's HTTP client drops them; a gRPC branch would receive no such header, so a gRPC transaction refuses them
    if (protocol === 'grpc') expect(() => t.client.newSaga('gid-spaces', { protocol, branchHeaders: { 'x-tenant': ' t1 ' } })).toThrow('has spaces around its value');
    const { gid, stored } = await heldSaga(store, protocol, { 'x-tenant': protocol === 'http' ? ' t1 ' : 't1' });
    expect(stored['dtm-auth-headers']).toBe('x-tenant');
    const auth: Record<string, string> = { ...storedAuth(stored), 'dtm-auth-headers': 'x-tenant' };
    const withdraw = (headers: Record<string, string>) =>
      attack(store, protocol, 'trans-out', { gid, trans_type: 'saga', branch_id: '02', op: 'action' }, { account: 1, amount: 30 }, headers);

    const otherTenant = await withdraw({ ...auth, 'x-tenant': 't2' });
    const noTenant = await withdraw(auth);
    const noList = await withdraw({ 'dtm-auth': auth['dtm-auth'], 'x-tenant': 't1' });
    const badList = await withdraw({ ...auth, 'dtm-auth-headers': 'x-tenant,x-tenant', 'x-tenant': 't1' });
    for (const answer of [otherTenant, noTenant, noList, badList]) expect(answer).toMatchObject(refused(protocol));
    expect(otherTenant.text).toContain('is not this call');
    expect(noTenant.text).toContain('lacks the forwarded header x-tenant');
    expect(noList.text).toContain('is not this call');
    expect(badList.text).toContain('is not a sorted list of forwarded header names');
    expect(await balances(store, [1, 2])).toEqual({ 1: 100, 2: 0 });

    // as DTM would send it (the value's spaces dropped on the way): a step ahead of its turn runs, with the signed tenant
    const signed = await withdraw({ ...auth, 'x-tenant': 't1' });
    expect(signed.status).toBe(200);
    await triggerCron();
    expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
    expect(await balances(store, [1, 2])).toEqual({ 1: 70, 2: 30 });
    // DTM's own calls carried the tenant too (its withdraw found the barrier row of the one above).
    // How often DTM ran the deposit depends on other files' cron triggers (one DTM for the suite).
    const runs = tenants(gid);
    expect(runs[0]).toEqual([`${store}.transIn`, 't1']);
    expect(runs.filter(([, tenant]) => tenant !== 't1')).toEqual([]);
    expect(runs.filter(([key]) => key === `${store}.transOut`)).toEqual([[`${store}.transOut`, 't1']]);
    expect(runs.filter(([key]) => key === `${store}.transIn`).length).toBeGreaterThanOrEqual(2);
  });

  it('a header the caller adds to a call whose token signs none does not reach the handler', async () => {
    const { gid, stored } = await heldSaga(store, protocol);
    expect(stored['dtm-auth-headers']).toBeUndefined();
    const added = await attack(store, protocol, 'trans-out', { gid, trans_type: 'saga', branch_id: '02', op: 'action' }, { account: 1, amount: 30 }, { ...storedAuth(stored), 'x-tenant': 'evil' });
    expect(added.status).toBe(200);
    // no run saw the added header (DTM may have run its failing deposit again meanwhile: other files trigger its cron)
    const runs = tenants(gid);
    expect(runs.filter(([, tenant]) => tenant !== undefined)).toEqual([]);
    expect(runs.filter(([key]) => key === `${store}.transOut`)).toEqual([[`${store}.transOut`, undefined]]);
    await triggerCron();
    expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
    expect(await balances(store, [1, 2])).toEqual({ 1: 70, 2: 30 });
  });
});

describe('branch_auth_check_actions on the barrier bank', () => {
  let strict: BarrierApp;
  const bank = bankHelpers(() => strict);
  beforeAll(async () => {
    // the file's databases, shared with the other app (making them again would drop them under it)
    strict = await startBarrierApp(dbs, { config: { branchAuthKeys: [KEY], branchAuthCheckActions: true } });
  });
  afterAll(async () => {
    await strict?.close();
  });

  /**
   * The TCC Try call of `gid`'s first branch with `move`, as the app sent it (an attacker on the wire
   * keeps the same: its `dtm-auth-call` is the app's HMAC of exactly this call), sent again to the bank.
   */
  const replayTry = async (store: SqlStore, protocol: DtmProtocol, gid: string, move: Move): Promise<BankAnswer> => {
    const record = await queryTrans(gid);
    const branchId = record.branches[0].branch_id;
    const issued = record.transaction?.branch_headers?.['dtm-auth-issued'] ?? '';
    const payload = protocol === 'http' ? JSON.stringify(move) : requestBytes(`tests.${grpcServiceOf(store)}`, 'TccOutTry', move);
    const token = new BranchAuth([KEY]).sign({ channel: 'app', gid, transType: 'tcc', branchId, op: 'try', target: targetPath(bank.target(store, protocol, 'tcc-out-try')), payload, issued });
    return bank.callBranch(store, protocol, 'tcc-out-try', { gid, trans_type: 'tcc', branch_id: branchId, op: 'try' }, move, { 'dtm-auth-call': token, 'dtm-auth-issued': issued });
  };
  /** `gid`'s barrier rows, the TCC branch id's token left out. */
  const tccRows = async (store: SqlStore, gid: string) => (await bank.barrierRows(store, gid)).map((r) => r.replace(/^01-[\w-]+/, '01'));

  it.each(CASES)("on %s over %s: a TCC Try taken off the wire and replayed while its TCC is still prepared passes the check (DTM's record says prepared): after a first call that reserved, the barrier makes it a duplicate (answered success, nothing reserved twice)", async (store, protocol) => {
    await bank.seed(store, { 1: 100 });
    const gid = await strict.client.generateGid();
    const tries = strict.runs.of(`${store}.tccOutTry`);
    let replayed: BankAnswer | undefined;
    await strict.client.tccGlobalTransaction(
      gid,
      async (tcc) => {
        await tcc.callBranch({ account: 1, amount: 40 }, `${store}.tccOut`);
        replayed = await replayTry(store, protocol, gid, { account: 1, amount: 40 });
      },
      { protocol },
    );
    expect(replayed).toMatchObject({ status: 200 }); // its token verified, DTM's record said prepared: the barrier skipped it
    expect(strict.runs.of(`${store}.tccOutTry`)).toBe(tries + 1);
    await waitForTransStatus(gid, 'succeed');
    expect(await bank.balances(store, [1])).toEqual({ 1: 60 });
    expect(await tccRows(store, gid)).toEqual(['01/confirm/01=confirm', '01/try/01=try']);
  });

  it.each(CASES)('on %s over %s: a TCC Try whose first call failed, replayed while its TCC is still prepared, runs (its first call wrote nothing); the abort that failed call brings cancels what it reserved', async (store, protocol) => {
    await bank.seed(store, { 1: 10 });
    const gid = await strict.client.generateGid();
    let replayed: BankAnswer | undefined;
    const run = strict.client.tccGlobalTransaction(
      gid,
      async (tcc) => {
        await expect(tcc.callBranch({ account: 1, amount: 40 }, `${store}.tccOut`)).rejects.toThrow('insufficient balance');
        expect(await tccRows(store, gid)).toEqual([]); // the failed Try's barrier row rolled back with it
        await strict.sql[store].run('UPDATE account SET balance = 100 WHERE id = 1');
        replayed = await replayTry(store, protocol, gid, { account: 1, amount: 40 });
        expect(await bank.balances(store, [1])).toEqual({ 1: 60 }); // reserved by the replay
      },
      { protocol },
    );
    // the body went on after a failed callBranch: aborted all the same, so DTM cancels the branch
    await expect(run).rejects.toBeInstanceOf(DtmUsageError);
    expect(replayed).toMatchObject({ status: 200 });
    await waitForTransStatus(gid, 'failed');
    expect(await bank.balances(store, [1])).toEqual({ 1: 100 });
    expect(await tccRows(store, gid)).toEqual(['01/cancel/01=cancel', '01/try/01=try']);
  });

  it.each(CASES)('on %s over %s: the deposit after a refused withdraw, run with its token read from DTM, is refused (no money from nothing); a legitimate saga runs', async (store, protocol) => {
    await bank.seed(store, { 1: 100, 2: 0 });
    const gid = await strict.client.generateGid();
    const failed = await strict.client
      .newSaga(gid, { protocol })
      .add(`${store}.transOut`, { account: 1, amount: 30, fail: 'failure' })
      .add(`${store}.transIn`, { account: 2, amount: 30 })
      .submitAndWait();
    expect(failed.status).toBe('failed');
    const stored = storedAuth(await queryTrans(gid));
    const deposit = await bank.callBranch(store, protocol, 'trans-in', { gid, trans_type: 'saga', branch_id: '02', op: 'action' }, { account: 2, amount: 30 }, stored);
    expect(deposit).toMatchObject(refused(protocol));
    expect(deposit.text).toContain('DTM records the saga transaction as failed, and this op runs only when it is submitted');
    expect(await bank.balances(store, [1, 2])).toEqual({ 1: 100, 2: 0 });
    expect((await bank.barrierRows(store, gid)).filter((r) => r.startsWith('02/'))).toEqual([]);

    const ok = await strict.client.newSaga(await strict.client.generateGid(), { protocol }).add(`${store}.transOut`, { account: 1, amount: 30 }).add(`${store}.transIn`, { account: 2, amount: 30 }).submitAndWait();
    expect(ok.status).toBe('succeed');
    expect(await bank.balances(store, [1, 2])).toEqual({ 1: 70, 2: 30 });
  });
});
