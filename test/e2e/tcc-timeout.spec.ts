// transaction_timeout (DTM timeout_to_fail) of a TCC whose Try is still running when DTM times the
// transaction out, against the real DTM server, behind the barrier on PostgreSQL and MariaDB: DTM
// calls the Cancel while the Try's local transaction is open; the barrier makes the Cancel wait for
// the Try and undo it, never confirm it, never lose it.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { DtmFailureError } from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { waitForTransStatus } from '../support/harness.js';
import { bankHelpers, SQL_STORES, startBarrierApp, type BarrierApp, type SqlStore } from './barrier-app.js';

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

/** Another session holding the row lock of account `id` in `store` until `release()`. */
async function holdRowLock(store: SqlStore, id: number): Promise<{ release(): Promise<void> }> {
  if (store === 'pg') {
    const client = new pg.Client({ connectionString: dbs.postgres.url });
    await client.connect();
    await client.query('BEGIN');
    await client.query('SELECT balance FROM account WHERE id = $1 FOR UPDATE', [id]);
    return { release: async () => void (await client.query('ROLLBACK'), await client.end()) };
  }
  const connection = await mysql.createConnection(dbs.mariadb.config);
  await connection.beginTransaction();
  await connection.query('SELECT balance FROM account WHERE id = ? FOR UPDATE', [id]);
  return { release: async () => void (await connection.rollback(), await connection.end()) };
}

describe.each(SQL_STORES)('a TCC timed out by DTM while its Try still runs, on %s', (store) => {
  it('DTM rolls back: the Cancel waits for the Try and undoes it, the Confirm never runs, the balance is whole; the caller gets an error, not success', async () => {
    await seed(store, { 1: 100 });
    const before = { try: t.runs.of(`${store}.tccOutTry`), cancel: t.runs.of(`${store}.tccOutCancel`), confirm: t.runs.of(`${store}.tccOutConfirm`) };
    const lock = await holdRowLock(store, 1);
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
    // the Try answered success once it could run, and the body's submit then met DTM rolling back
    expect(result).toBeInstanceOf(DtmFailureError);
    expect((result as Error).message).toContain("current status 'aborting'");
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
