// The barrier under real races and in broken local transactions, on every SQL adapter (pg,
// mysql2 on MariaDB, TypeORM on both): a Cancel arriving while its Try still runs, two deliveries
// of one op at once, PostgreSQL's REPEATABLE READ and SERIALIZABLE, and a handler that caught a failed statement
// (PostgreSQL then aborts the transaction, and COMMIT silently rolls it back). Each race is made
// deterministic: the first call is held inside its business by a latch, and the second is seen
// waiting on the database's row lock before the latch opens.
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { BranchBarrier, DtmUsageError, ensureBarrierSchema, mysqlBarrierDatabase, pgBarrierDatabase, typeormBarrierDatabase, type BarrierDatabase, type BarrierDialect } from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { latch, settledWithin, sleep } from '../support/fixtures.js';

let dbs: FileDatabases;
let pgPool: pg.Pool;
let myPool: mysql.Pool;
let pgSource: DataSource;
let mySource: DataSource;

/** One barrier database under test, with the SQL the tests need on it. */
interface Store {
  dialect: BarrierDialect;
  db: () => BarrierDatabase;
  /** Runs `sql` (`?` placeholders) on the handle the business got. */
  run: (handle: unknown, sql: string, params: unknown[]) => Promise<unknown>;
  /** Runs `sql` (`?` placeholders) outside any barrier. */
  query: (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;
  /** How many sessions of this database wait on a row lock. */
  lockWaits: () => Promise<number>;
}

const numbered = (sql: string) => {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
};
const pgLockWaits = async () =>
  Number((await pgPool.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n);
// a barrier insert still running waits on a row lock (INNODB_TRX needs the PROCESS privilege to show other sessions)
const myLockWaits = async () =>
  Number(((await myPool.query("SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND INFO LIKE 'INSERT IGNORE%'"))[0] as { n: number }[])[0].n);
const pgQuery = async (sql: string, params: unknown[] = []) => (await pgPool.query(numbered(sql), params)).rows;
const myQuery = async (sql: string, params: unknown[] = []) => (await myPool.query(sql, params))[0] as Record<string, unknown>[];

const STORES: Record<string, Store> = {
  pg: {
    dialect: 'postgres',
    db: () => pgBarrierDatabase(pgPool),
    run: (handle, sql, params) => (handle as pg.PoolClient).query(numbered(sql), params),
    query: pgQuery,
    lockWaits: pgLockWaits,
  },
  mysql: {
    dialect: 'mysql',
    db: () => mysqlBarrierDatabase(myPool),
    run: (handle, sql, params) => (handle as mysql.PoolConnection).execute(sql, params as string[]),
    query: myQuery,
    lockWaits: myLockWaits,
  },
  'typeorm-pg': {
    dialect: 'postgres',
    db: () => typeormBarrierDatabase(pgSource),
    run: (handle, sql, params) => (handle as DataSource['manager']).query(numbered(sql), params),
    query: pgQuery,
    lockWaits: pgLockWaits,
  },
  'typeorm-mysql': {
    dialect: 'mysql',
    db: () => typeormBarrierDatabase(mySource),
    run: (handle, sql, params) => (handle as DataSource['manager']).query(sql, params),
    query: myQuery,
    lockWaits: myLockWaits,
  },
};

beforeAll(async () => {
  dbs = await fileDatabases();
  pgPool = new pg.Pool({ connectionString: dbs.postgres.url });
  myPool = mysql.createPool(dbs.mariadb.config);
  await ensureBarrierSchema(pgBarrierDatabase(pgPool));
  await ensureBarrierSchema(mysqlBarrierDatabase(myPool), { table: `${dbs.name}.dtm_barrier` });
  await pgPool.query('CREATE TABLE account (id text PRIMARY KEY, balance int NOT NULL, frozen int NOT NULL)');
  await myPool.query('CREATE TABLE account (id varchar(64) PRIMARY KEY, balance int NOT NULL, frozen int NOT NULL)');
  pgSource = await new DataSource({ type: 'postgres', url: dbs.postgres.url }).initialize();
  const { host, port, user, password, database } = dbs.mariadb.config;
  mySource = await new DataSource({ type: 'mariadb', host, port, username: user, password, database }).initialize();
});
afterAll(async () => {
  await Promise.all([pgPool?.end(), myPool?.end(), pgSource?.destroy(), mySource?.destroy()]);
});

const tableOf = (dialect: BarrierDialect) => (dialect === 'postgres' ? 'dtm_barrier.barrier' : `${dbs.name}.dtm_barrier`);
const barrier = (store: Store, gid: string, op: string, transType = 'tcc') => new BranchBarrier(transType, gid, '01', op, { table: tableOf(store.dialect) });

async function seed(store: Store, id: string, balance: number): Promise<void> {
  await store.query('DELETE FROM account WHERE id = ?', [id]);
  await store.query('INSERT INTO account (id, balance, frozen) VALUES (?, ?, 0)', [id, balance]);
}
async function account(store: Store, id: string): Promise<{ balance: number; frozen: number }> {
  const [row] = await store.query('SELECT balance, frozen FROM account WHERE id = ?', [id]);
  return { balance: Number(row.balance), frozen: Number(row.frozen) };
}
async function barrierRows(store: Store, gid: string): Promise<string[]> {
  const rows = await store.query(`SELECT op, reason FROM ${tableOf(store.dialect)} WHERE gid = ? ORDER BY op`, [gid]);
  return rows.map((r) => `${String(r.op)}=${String(r.reason)}`);
}
/** Resolves once `n` sessions wait on a row lock (the second call is parked behind the first). */
async function untilLockWaits(store: Store, n = 1): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await store.lockWaits()) >= n) return;
    await sleep(25);
  }
  throw new Error(`no session waited on a row lock within 5 s`);
}
/** `call`, with its rejection handled (a test that fails before awaiting it must not crash the worker). */
function started<T>(call: Promise<T>): Promise<T> {
  call.catch(() => undefined);
  return call;
}
/**
 * Starts `first` (its business held at the latch it is given) and, once it got there, `second`,
 * which then waits on `first`'s row lock: both calls, and `release`, which lets `first` go on.
 */
async function heldThenWaiting<A, B>(store: Store, first: (held: ReturnType<typeof latch>) => Promise<A>, second: () => Promise<B>): Promise<{ first: Promise<A>; second: Promise<B>; release: () => void }> {
  const held = latch();
  const firstCall = started(first(held));
  await held.reached;
  const secondCall = started(second());
  await untilLockWaits(store);
  return { first: firstCall, second: secondCall, release: held.open };
}

// TCC: the Try freezes the amount, the Cancel unfreezes what the Try froze
const tryFreeze = (store: Store, id: string, amount: number, held?: ReturnType<typeof latch>) => async (handle: unknown) => {
  await store.run(handle, 'UPDATE account SET balance = balance - ?, frozen = frozen + ? WHERE id = ?', [amount, amount, id]);
  if (held) await held.wait();
};
const cancelFreeze = (store: Store, id: string, amount: number) => (handle: unknown) =>
  store.run(handle, 'UPDATE account SET balance = balance + ?, frozen = frozen - ? WHERE id = ?', [amount, amount, id]);

describe.each(Object.keys(STORES))('races on %s', (name) => {
  const store = STORES[name];

  it('a Cancel arriving while its Try runs waits for it, then undoes exactly what it did', async () => {
    const gid = `race-commit-${name}`;
    await seed(store, gid, 100);
    const { first: tryCall, second: cancelCall, release } = await heldThenWaiting(
      store,
      (held) => barrier(store, gid, 'try').callWithDb(store.db(), tryFreeze(store, gid, 40, held)),
      () => barrier(store, gid, 'cancel').callWithDb(store.db(), cancelFreeze(store, gid, 40)),
    );
    expect(await settledWithin(cancelCall, 100)).toBe('still waiting');
    release();
    expect(await tryCall).toEqual({ executed: true, result: undefined });
    expect((await cancelCall).executed).toBe(true);
    expect(await account(store, gid)).toEqual({ balance: 100, frozen: 0 });
    expect(await barrierRows(store, gid)).toEqual(['cancel=cancel', 'try=try']);
  });

  it('a Cancel arriving while its Try runs, the Try then failing: a null compensation, and the Try retried later does nothing', async () => {
    const gid = `race-rollback-${name}`;
    await seed(store, gid, 100);
    const { first: tryCall, second: cancelCall, release } = await heldThenWaiting(
      store,
      (held) =>
        barrier(store, gid, 'try').callWithDb(store.db(), async (handle) => {
          await tryFreeze(store, gid, 40, held)(handle);
          throw new Error('the Try failed after its write');
        }),
      () => barrier(store, gid, 'cancel').callWithDb(store.db(), cancelFreeze(store, gid, 40)),
    );
    release();
    await expect(tryCall).rejects.toThrow('the Try failed after its write');
    expect(await cancelCall).toEqual({ executed: false, reason: 'null-compensation' });
    expect(await barrier(store, gid, 'try').callWithDb(store.db(), tryFreeze(store, gid, 40))).toEqual({ executed: false, reason: 'duplicate' });
    expect(await account(store, gid)).toEqual({ balance: 100, frozen: 0 });
    expect(await barrierRows(store, gid)).toEqual(['cancel=cancel', 'try=cancel']);
  });

  it('a Try arriving while its null Cancel is still in its transaction waits for it, then does nothing', async () => {
    const gid = `race-hanging-${name}`;
    await seed(store, gid, 100);
    const { first: cancelCall, second: tryCall, release } = await heldThenWaiting(
      store,
      // the Cancel's transaction held open after the barrier decided (a null compensation runs no business to hold)
      (held) =>
        store.db().transaction(async (_handle, tx) => {
          const outcome = await barrier(store, gid, 'cancel').call(tx, () => Promise.reject(new Error('a null compensation runs nothing')));
          await held.wait();
          return outcome;
        }),
      () => barrier(store, gid, 'try').callWithDb(store.db(), tryFreeze(store, gid, 40)),
    );
    expect(await settledWithin(tryCall, 100)).toBe('still waiting');
    release();
    expect(await cancelCall).toEqual({ executed: false, reason: 'null-compensation' });
    expect(await tryCall).toEqual({ executed: false, reason: 'duplicate' });
    expect(await account(store, gid)).toEqual({ balance: 100, frozen: 0 });
    expect(await barrierRows(store, gid)).toEqual(['cancel=cancel', 'try=cancel']);
  });

  it('two deliveries of one Try at once: the second waits for the first and is skipped, the business runs once', async () => {
    const gid = `race-dup-${name}`;
    await seed(store, gid, 100);
    const { first, second, release } = await heldThenWaiting(
      store,
      (held) => barrier(store, gid, 'try').callWithDb(store.db(), tryFreeze(store, gid, 40, held)),
      () => barrier(store, gid, 'try').callWithDb(store.db(), tryFreeze(store, gid, 40)),
    );
    release();
    expect((await first).executed).toBe(true);
    expect(await second).toEqual({ executed: false, reason: 'duplicate' });
    expect(await account(store, gid)).toEqual({ balance: 60, frozen: 40 });
  });

  it('a handler that caught the error of a failed statement and answered: never a success whose work was not committed', async () => {
    const gid = `aborted-${name}`;
    await seed(store, gid, 100);
    const call = barrier(store, gid, 'try').callWithDb(store.db(), async (handle) => {
      await tryFreeze(store, gid, 40)(handle);
      // e.g. "insert, ignore a unique violation": on PostgreSQL the transaction is now aborted
      await store.run(handle, 'INSERT INTO account (id, balance, frozen) VALUES (?, 0, 0)', [gid]).catch(() => undefined);
      return 'answered';
    });
    const outcome = await call.then(
      (value) => value,
      (err: unknown) => err,
    );
    const committed = await account(store, gid);
    const rows = await barrierRows(store, gid);
    if (store.dialect === 'mysql') {
      // MySQL / MariaDB roll back the failed statement only: the transaction commits the rest
      expect(outcome).toEqual({ executed: true, result: 'answered' });
      expect([committed, rows]).toEqual([{ balance: 60, frozen: 40 }, ['try=try']]);
      return;
    }
    // PostgreSQL: nothing was committed, so the call must not resolve as done
    expect([committed, rows]).toEqual([{ balance: 100, frozen: 0 }, []]);
    expect(outcome).toBeInstanceOf(DtmUsageError);
    expect((outcome as Error).message).toMatch(/not committed.*SAVEPOINT/s);
    // the retry, with the statement fixed, runs the business
    expect((await barrier(store, gid, 'try').callWithDb(store.db(), tryFreeze(store, gid, 40))).executed).toBe(true);
    expect(await account(store, gid)).toEqual({ balance: 60, frozen: 40 });
  });
});

describe.each(['pg', 'typeorm-pg'])('PostgreSQL on %s: a business that ended the transaction itself', (name) => {
  it('ROLLBACK in the business: the call is an error, not a success whose work and barrier rows are gone', async () => {
    const store = STORES[name];
    const gid = `ended-${name}`;
    await seed(store, gid, 100);
    const call = barrier(store, gid, 'try').callWithDb(store.db(), async (handle) => {
      await tryFreeze(store, gid, 40)(handle);
      await store.run(handle, 'ROLLBACK', []);
    });
    await expect(call).rejects.toThrow(DtmUsageError);
    await expect(call).rejects.toThrow(/no longer open/);
    expect([await account(store, gid), await barrierRows(store, gid)]).toEqual([{ balance: 100, frozen: 0 }, []]);
  });

  it('COMMIT in the business (a helper with its own BEGIN / COMMIT): the call is an error saying its work and barrier row were committed (not that nothing was kept); the retry is a duplicate, the work applied once', async () => {
    const store = STORES[name];
    const gid = `ended-c-${name}`;
    await seed(store, gid, 100);
    const error = await barrier(store, gid, 'try')
      .callWithDb(store.db(), async (handle) => {
        await tryFreeze(store, gid, 40)(handle);
        await store.run(handle, 'COMMIT', []);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).not.toContain('Nothing of the call is kept');
    expect((error as Error).message).toContain('with COMMIT, its work and barrier rows are committed');
    expect([await account(store, gid), await barrierRows(store, gid)]).toEqual([{ balance: 60, frozen: 40 }, ['try=try']]);
    expect(await barrier(store, gid, 'try').callWithDb(store.db(), tryFreeze(store, gid, 40))).toEqual({ executed: false, reason: 'duplicate' });
    expect(await account(store, gid)).toEqual({ balance: 60, frozen: 40 });
  });
});

describe.each(['repeatable read', 'serializable'])('PostgreSQL at %s', (isolation) => {
  it('a Cancel that waited for its Try fails with a serialization error (an error DTM retries: neither FAILURE nor success), and its retry undoes the Try', async () => {
    const pool = new pg.Pool({ connectionString: dbs.postgres.url, options: `-c default_transaction_isolation=${isolation.replace(' ', '\\ ')}` });
    try {
      const store: Store = { ...STORES.pg, db: () => pgBarrierDatabase(pool) };
      expect((await pool.query('SHOW transaction_isolation')).rows[0].transaction_isolation).toBe(isolation);
      const gid = `iso-${isolation.replace(' ', '-')}`;
      await seed(store, gid, 100);
      const { first: tryCall, second: cancelCall, release } = await heldThenWaiting(
        store,
        (held) => barrier(store, gid, 'try').callWithDb(store.db(), tryFreeze(store, gid, 40, held)),
        () => barrier(store, gid, 'cancel').callWithDb(store.db(), cancelFreeze(store, gid, 40)),
      );
      release();
      expect((await tryCall).executed).toBe(true);
      // its snapshot predates the Try's commit: PostgreSQL refuses the insert that conflicts with the Try's row
      await expect(cancelCall).rejects.toMatchObject({ code: '40001' });
      expect(await barrierRows(store, gid)).toEqual(['try=try']);
      expect((await barrier(store, gid, 'cancel').callWithDb(store.db(), cancelFreeze(store, gid, 40))).executed).toBe(true);
      expect(await account(store, gid)).toEqual({ balance: 100, frozen: 0 });
      expect(await barrierRows(store, gid)).toEqual(['cancel=cancel', 'try=try']);
    } finally {
      await pool.end();
    }
  });
});
