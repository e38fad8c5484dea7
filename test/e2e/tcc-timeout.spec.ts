// transaction_timeout (DTM timeout_to_fail) of a TCC whose Try is still running when DTM times the
// transaction out, against the real DTM server, behind the barrier on PostgreSQL and MariaDB: DTM
// calls the Cancel while the Try's local transaction is open; the barrier makes the Cancel wait for
// the Try and undo it, never confirm it, never lose it.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DtmError, DtmFailureError, DtmUnavailableError } from 'nestjs-dtm';
import { fileDatabases, holdRowLock, type FileDatabases } from '../support/databases.js';
import { waitForTransStatus } from '../support/harness.js';
import { bankHelpers, SQL_STORES, startBarrierApp, type BarrierApp } from './barrier-app.js';

let dbs: FileDatabases;
let t: BarrierApp;
beforeAll(async () => {
  dbs = await fileDatabases();
  t = await startBarrierApp(dbs, { config: { branchTimeout: 15 } });
});
afterAll(async () => {
  await t?.close();
});

const { seed, balances, barrierRows } = bankHelpers(() => t);

describe.each(SQL_STORES)('a TCC timed out by DTM while its Try still runs, on %s', (store) => {
  it('DTM rolls back: the Cancel waits for the Try and undoes it, the Confirm never runs, the balance is whole; the caller gets an error, not success', async () => {
    await seed(store, { 1: 100 });
    const before = { try: t.runs.of(`${store}.tccOutTry`), cancel: t.runs.of(`${store}.tccOutCancel`), confirm: t.runs.of(`${store}.tccOutConfirm`) };
    const lock = await holdRowLock(dbs, store, 1);
    const gid = await t.client.generateGid();
    const started = Date.now();
    const outcome = t.client
      .tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ account: 1, amount: 30 }, `${store}.tccOut`), { timeoutToFail: 2, retryInterval: 1 })
      .then(() => 'resolved', (e: unknown) => e);
    // DTM times the TCC out while the Try waits for the row (its barrier row written, not committed)
    await waitForTransStatus(gid, 'aborting', 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    await lock.release();
    const result = await outcome;
    // an error, never success. Which one depends on timing: the Try answered once it could run, and the body's
    // submit met DTM rolling back (DtmFailureError: still aborting, or DTM's reason once it failed); on a loaded
    // machine the Try's call may pass branch_timeout first (DtmUnavailableError: the transaction is DTM's to end)
    expect(result).toBeInstanceOf(DtmError);
    if (result instanceof DtmFailureError) expect(result.message).toMatch(/current status 'aborting'|Timeout after 2 seconds/);
    else expect(result).toBeInstanceOf(DtmUnavailableError);
    expect(Date.now() - started).toBeLessThan(30_000);
    const final = await t.client.waitForFinal(gid, { timeout: 60 });
    expect(final.status).toBe('failed');
    expect(await balances(store, [1])).toEqual({ 1: 100 });
    expect(t.runs.of(`${store}.tccOutTry`) - before.try).toBe(1);
    expect(t.runs.of(`${store}.tccOutCancel`) - before.cancel).toBe(1);
    expect(t.runs.of(`${store}.tccOutConfirm`) - before.confirm).toBe(0);
    expect(await barrierRows(store, gid)).toEqual(['01/cancel/01=cancel', '01/try/01=try']);
  }, 90_000);
});
