// The barrier inside the caller's own transaction, through each shipped adapter: a raw pg client,
// a mysql2 connection, TypeORM (EntityManager and QueryRunner) on PostgreSQL and MariaDB; the lock
// bounds of the TypeORM adapter; the decisions each adapter tells onDecision; the adapter of your own that
// docs/barrier.md shows, loaded from the page.
import 'reflect-metadata';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import mysqlCallback from 'mysql2';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { DataSource } from 'typeorm';
import ts from 'typescript';
import {
  BranchBarrier,
  DtmFailureError,
  DtmUsageError,
  ensureBarrierSchema,
  mysqlBarrierDatabase,
  mysqlBarrierTransaction,
  pgBarrierDatabase,
  pgBarrierTransaction,
  typeormBarrierDatabase,
  typeormBarrierTransaction,
  type BarrierDatabase,
  type BarrierDialect,
  type BarrierTransaction,
  type PgClientLike,
  type PgPoolLike,
} from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { fencedBlocks, REPO_ROOT } from '../support/docs.js';
import { settledWithin } from '../support/fixtures.js';

let dbs: FileDatabases;
let pgPool: pg.Pool;
let myPool: mysql.Pool;
const sources: Record<BarrierDialect, DataSource | undefined> = { postgres: undefined, mysql: undefined };

beforeAll(async () => {
  dbs = await fileDatabases();
  pgPool = new pg.Pool({ connectionString: dbs.postgres.url });
  myPool = mysql.createPool(dbs.mariadb.config);
  await ensureBarrierSchema(pgBarrierDatabase(pgPool)); // the default table: schema dtm_barrier
  await ensureBarrierSchema(pgBarrierDatabase(pgPool)); // idempotent
  await ensureBarrierSchema(mysqlBarrierDatabase(myPool), { table: `${dbs.name}.dtm_barrier` });
  await pgPool.query('CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)');
  await pgPool.query('INSERT INTO counter VALUES (1, 0)');
  await myPool.query('CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)');
  await myPool.query('INSERT INTO counter VALUES (1, 0)');
  sources.postgres = await new DataSource({ type: 'postgres', url: dbs.postgres.url }).initialize();
  const { host, port, user, password, database } = dbs.mariadb.config;
  sources.mysql = await new DataSource({ type: 'mariadb', host, port, username: user, password, database }).initialize();
});
afterAll(async () => {
  await Promise.all([pgPool?.end(), myPool?.end(), sources.postgres?.destroy(), sources.mysql?.destroy()]);
});

const count = async (dialect: BarrierDialect) =>
  dialect === 'postgres'
    ? Number((await pgPool.query('SELECT n FROM counter WHERE id = 1')).rows[0].n)
    : Number(((await myPool.query('SELECT n FROM counter WHERE id = 1'))[0] as { n: number }[])[0].n);
const tableOf = (dialect: BarrierDialect) => (dialect === 'postgres' ? 'dtm_barrier.barrier' : `${dbs.name}.dtm_barrier`);
const barrierFor = (dialect: BarrierDialect, gid: string, op = 'action') => new BranchBarrier('saga', gid, '01', op, { table: tableOf(dialect) });

describe('inside your own transaction', () => {
  it('raw pg client: BEGIN, barrier.call, COMMIT; a second delivery is skipped', async () => {
    for (const attempt of [1, 2]) {
      const client = await pgPool.connect();
      try {
        await client.query('BEGIN');
        const outcome = await barrierFor('postgres', 'own-pg').call(pgBarrierTransaction(client), async () => {
          await client.query('UPDATE counter SET n = n + 1 WHERE id = 1');
        });
        await client.query('COMMIT');
        expect([attempt, outcome.executed]).toEqual([attempt, attempt === 1]);
      } finally {
        client.release();
      }
    }
    expect(await count('postgres')).toBe(1);
  });

  it('mysql2 connection: beginTransaction, barrier.call; the business error propagates and the rollback removes the barrier rows', async () => {
    const conn = await myPool.getConnection();
    try {
      await conn.beginTransaction();
      const failing = barrierFor('mysql', 'own-my').call(mysqlBarrierTransaction(conn), async () => {
        await conn.query('UPDATE counter SET n = n + 1 WHERE id = 1');
        throw new Error('business failed');
      });
      await expect(failing).rejects.toThrow('business failed');
      await conn.rollback();
      const [rows] = await conn.query(`SELECT count(*) AS c FROM ${tableOf('mysql')} WHERE gid = 'own-my'`);
      expect(Number((rows as { c: number }[])[0].c)).toBe(0);

      await conn.beginTransaction();
      const ok = await barrierFor('mysql', 'own-my').call(mysqlBarrierTransaction(conn), async () => {
        await conn.query('UPDATE counter SET n = n + 1 WHERE id = 1');
      });
      await conn.commit();
      expect(ok.executed).toBe(true);
    } finally {
      conn.release();
    }
    expect(await count('mysql')).toBe(1);
  });

  it.each(['action', 'compensate'])('mysql2 connection with no transaction open (beginTransaction() forgotten), op %s: DtmUsageError before the business, the barrier rows it committed deleted again; begun, the same call runs', async (op) => {
    const gid = `own-my-nobegin-${op}-${Date.now()}`;
    const rowsOf = async () => ((await myPool.query(`SELECT op, reason FROM ${tableOf('mysql')} WHERE gid = ?`, [gid]))[0] as { op: Buffer; reason: string }[]).map((r) => `${String(r.op)}=${r.reason}`).sort();
    const conn = await myPool.getConnection();
    const ran: string[] = [];
    try {
      const refused = await barrierFor('mysql', gid, op).call(mysqlBarrierTransaction(conn), async () => void ran.push('no begin')).catch((e: unknown) => e);
      expect([refused, (refused as Error).message, ran, await rowsOf()]).toEqual([expect.any(DtmUsageError), expect.stringContaining('no transaction open'), [], []]);

      await conn.beginTransaction();
      const done = await barrierFor('mysql', gid, op).call(mysqlBarrierTransaction(conn), async () => void ran.push('begun'));
      await conn.commit();
      // a compensation whose action never ran is a null compensation (its origin row written), as for any call
      expect([done.executed, ran, await rowsOf()]).toEqual(op === 'action' ? [true, ['begun'], ['action=action']] : [false, [], ['action=compensate', 'compensate=compensate']]);
    } finally {
      conn.release();
    }
  });

  it.each(['postgres', 'mysql'] as const)('TypeORM on %s: EntityManager in dataSource.transaction, and a QueryRunner', async (dialect) => {
    const source = sources[dialect]!;
    const before = await count(dialect);
    const gid = `typeorm-${dialect}`;
    const bump = (run: (sql: string) => Promise<unknown>) => run('UPDATE counter SET n = n + 1 WHERE id = 1');
    const first = await source.transaction((manager) =>
      barrierFor(dialect, gid).call(typeormBarrierTransaction(manager, dialect), () => bump((sql) => manager.query(sql))),
    );
    expect(first.executed).toBe(true);

    const runner = source.createQueryRunner();
    await runner.startTransaction();
    const again = await barrierFor(dialect, gid).call(typeormBarrierTransaction(runner, dialect), () => bump((sql) => runner.query(sql)));
    await runner.commitTransaction();
    await runner.release();
    expect(again).toEqual({ executed: false, reason: 'duplicate' });

    // and TypeORM as a barrier database: a compensation whose action ran undoes it once
    const db = typeormBarrierDatabase(source);
    const compensation = await barrierFor(dialect, gid, 'compensate').callWithDb(db, (manager) => manager.query('UPDATE counter SET n = n - 1 WHERE id = 1'));
    expect(compensation.executed).toBe(true);
    expect(await count(dialect)).toBe(before);
  });
});

describe('mysql2 objects the adapters cannot use', () => {
  // what a JavaScript caller, or one passing an `any` (TypeORM's queryRunner.connect(), Knex's raw connection), can give
  it('a connection (no pool) or a callback-API pool to mysqlBarrierDatabase, a callback-API connection to mysqlBarrierTransaction: DtmUsageError saying what to pass, nothing written', async () => {
    const conn = await mysql.createConnection(dbs.mariadb.config);
    const callbackPool = mysqlCallback.createPool(dbs.mariadb.config);
    const callbackConn = mysqlCallback.createConnection(dbs.mariadb.config);
    const gids = ['odd-conn', 'odd-callback-pool', 'odd-callback-conn'].map((g) => `${g}-${Date.now()}`);
    const ran: string[] = [];
    const attempt = async (gid: string, make: () => BarrierDatabase | BarrierTransaction): Promise<unknown> => {
      try {
        const adapter = make();
        const business = async () => void ran.push(gid);
        return await ('transaction' in adapter ? barrierFor('mysql', gid).callWithDb(adapter, business) : barrierFor('mysql', gid).call(adapter, business));
      } catch (err) {
        return err;
      }
    };
    try {
      const results = [
        await attempt(gids[0], () => mysqlBarrierDatabase(conn as never)),
        await attempt(gids[1], () => mysqlBarrierDatabase(callbackPool as never)),
        await attempt(gids[2], () => mysqlBarrierTransaction(callbackConn as never)),
      ];
      const [rows] = await myPool.query(`SELECT gid FROM ${tableOf('mysql')} WHERE gid IN (?, ?, ?)`, gids);
      expect([results, rows, ran]).toEqual([[expect.any(DtmUsageError), expect.any(DtmUsageError), expect.any(DtmUsageError)], [], []]);
      expect((results[0] as Error).message).toMatch(/mysqlBarrierDatabase\(\) takes a mysql2\/promise pool, got a connection/);
      expect((results[1] as Error).message).toMatch(/callback-API mysql2 pool.*pool\.promise\(\)/);
      expect((results[2] as Error).message).toMatch(/callback-API mysql2 connection.*\.promise\(\)/);
    } finally {
      await conn.end();
      await new Promise((resolve) => callbackPool.end(resolve));
      await new Promise((resolve) => callbackConn.end(resolve));
    }
  });
});

describe('a pool with no connection free: the wait for one is the pool\'s, not bounded by timeoutSeconds', () => {
  it.each([
    ['the Try queued first, then its Cancel', ['try', 'cancel'], ['try', 'cancel']],
    ['the Cancel queued first (DTM gave up on the Try), then the late Try', ['cancel', 'try'], []],
  ])('pg pool of 1 held elsewhere: %s still wait after 2 s (timeoutSeconds 1); once free, the barrier applies them in that order, the counter back where it was', async (_what, order, ran) => {
    const pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 1 });
    const holder = await pool.connect();
    const gid = `pool-wait-${order[0]}-${Date.now()}`;
    const before = await count('postgres');
    const log: string[] = [];
    try {
      const calls = order.map((op) =>
        new BranchBarrier('tcc', gid, '01', op, { table: tableOf('postgres'), timeoutSeconds: 1 }).callWithDb(pgBarrierDatabase(pool), async (client) => {
          log.push(op);
          await client.query(`UPDATE counter SET n = n ${op === 'try' ? '+' : '-'} 1 WHERE id = 1`);
        }),
      );
      expect(await settledWithin(Promise.all(calls), 2000)).toBe('still waiting');
      holder.release();
      await Promise.all(calls);
      expect([log, await count('postgres')]).toEqual([ran, before]);
    } finally {
      await pool.end();
    }
  });

  it('with the pool\'s own bound (pg: connectionTimeoutMillis) the call fails within it, an error DTM retries, nothing written', async () => {
    const pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 1, connectionTimeoutMillis: 1000 });
    const holder = await pool.connect();
    const gid = `pool-bounded-${Date.now()}`;
    try {
      const outcome = await settledWithin(barrierFor('postgres', gid).callWithDb(pgBarrierDatabase(pool), async () => 'ran'), 5000);
      expect(String(outcome)).toMatch(/timeout exceeded when trying to connect/);
      holder.release();
      expect((await pgPool.query(`SELECT 1 FROM ${tableOf('postgres')} WHERE gid = $1`, [gid])).rowCount).toBe(0);
      expect(await barrierFor('postgres', gid).callWithDb(pgBarrierDatabase(pool), async () => 'ran')).toEqual({ executed: true, result: 'ran' });
    } finally {
      await pool.end();
    }
  });
});

describe('TypeORM as a barrier database: lock waits bounded by timeoutSeconds', () => {
  /** Another session holding the row lock of counter 1 until `release()`. */
  async function holdCounter(dialect: BarrierDialect): Promise<{ release(): Promise<void> }> {
    if (dialect === 'postgres') {
      const client = await pgPool.connect();
      await client.query('BEGIN');
      await client.query('SELECT n FROM counter WHERE id = 1 FOR UPDATE');
      return { release: async () => void (await client.query('ROLLBACK'), client.release()) };
    }
    const connection = await myPool.getConnection();
    await connection.beginTransaction();
    await connection.query('SELECT n FROM counter WHERE id = 1 FOR UPDATE');
    return { release: async () => void (await connection.rollback(), connection.release()) };
  }

  it.each(['postgres', 'mysql'] as const)('%s: a call behind a held row lock fails after timeoutSeconds and leaves nothing; once the lock is gone it runs', async (dialect) => {
    const source = sources[dialect]!;
    const gid = `typeorm-bounded-${dialect}`;
    const barrier = () => new BranchBarrier('saga', gid, '01', 'action', { table: tableOf(dialect), timeoutSeconds: 1 });
    const bump = () => barrier().callWithDb(typeormBarrierDatabase(source), (manager) => manager.query('UPDATE counter SET n = n + 1 WHERE id = 1'));
    const before = await count(dialect);
    const lock = await holdCounter(dialect);
    try {
      // unbounded, it would wait until the lock is gone (PostgreSQL) or 50 s (MariaDB)
      const outcome = await settledWithin(bump(), 15_000, 'ran');
      expect(outcome).toBeInstanceOf(Error);
      expect(String((outcome as Error).message)).toMatch(/lock timeout|statement timeout|Lock wait timeout/);
    } finally {
      await lock.release();
    }
    expect(await count(dialect)).toBe(before);
    // the failed call's barrier row went with its transaction: the retry runs
    expect((await bump()).executed).toBe(true);
    expect(await count(dialect)).toBe(before + 1);
  });
});

describe('onDecision: what the barrier decided, told on every adapter', () => {
  const adapters: [string, BarrierDialect, () => BarrierDatabase<unknown>][] = [
    ['pg', 'postgres', () => pgBarrierDatabase(pgPool)],
    ['mysql2', 'mysql', () => mysqlBarrierDatabase(myPool)],
    ['TypeORM on postgres', 'postgres', () => typeormBarrierDatabase(sources.postgres!)],
    ['TypeORM on mysql', 'mysql', () => typeormBarrierDatabase(sources.mysql!)],
  ];

  it.each(adapters)('%s: executed, duplicate, null compensation, hanging prevented; the business ran once', async (name, dialect, database) => {
    const db = database();
    const decisions: string[] = [];
    const barrier = (gid: string, op: string) => new BranchBarrier('saga', gid, '01', op, { table: tableOf(dialect), onDecision: (d) => decisions.push(`${op} ${d}`) });
    const bump = (gid: string, op: string) => barrier(gid, op).callWithDb(db, () => db.execute('UPDATE counter SET n = n + 1 WHERE id = 1', []));
    const before = await count(dialect);
    const [ran, late] = [`decided-${name}-ran`.replace(/ /g, '-'), `decided-${name}-late`.replace(/ /g, '-')];
    await bump(ran, 'action');
    await bump(ran, 'action');
    await bump(late, 'compensate');
    await bump(late, 'action');
    expect(decisions).toEqual(['action executed', 'action duplicate', 'compensate null-compensation', 'action hanging-prevented']);
    expect(await count(dialect)).toBe(before + 1);
  });

  it('inside your own transaction (call): the same decisions, the hanging check asked in that transaction', async () => {
    const decisions: string[] = [];
    const barrier = (gid: string, op: string) => new BranchBarrier('saga', gid, '01', op, { table: tableOf('postgres'), onDecision: (d) => decisions.push(`${op} ${d}`) });
    const inOwnTransaction = async (gid: string, op: string) => {
      const client = await pgPool.connect();
      try {
        await client.query('BEGIN');
        await barrier(gid, op).call(pgBarrierTransaction(client), () => client.query('UPDATE counter SET n = n + 1 WHERE id = 1'));
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    const before = await count('postgres');
    await inOwnTransaction('decided-own-late', 'compensate');
    await inOwnTransaction('decided-own-late', 'action');
    await inOwnTransaction('decided-own-ran', 'action');
    expect(decisions).toEqual(['compensate null-compensation', 'action hanging-prevented', 'action executed']);
    expect(await count('postgres')).toBe(before + 1);
  });
});

describe("a compensation whose action's barrier row was purged (by create_time) while its own row stayed", () => {
  const adapters: [string, BarrierDialect, () => BarrierDatabase<unknown>][] = [
    ['pg', 'postgres', () => pgBarrierDatabase(pgPool)],
    ['mysql2', 'mysql', () => mysqlBarrierDatabase(myPool)],
    ['TypeORM on postgres', 'postgres', () => typeormBarrierDatabase(sources.postgres!)],
    ['TypeORM on mysql', 'mysql', () => typeormBarrierDatabase(sources.mysql!)],
  ];
  const purge = (dialect: BarrierDialect, gid: string, op: string) =>
    dialect === 'postgres'
      ? pgPool.query(`DELETE FROM ${tableOf(dialect)} WHERE gid = $1 AND op = $2`, [gid, op])
      : myPool.execute(`DELETE FROM ${tableOf(dialect)} WHERE gid = ? AND op = ?`, [gid, op]);
  const rowsOf = async (dialect: BarrierDialect, gid: string) => {
    const sql = `SELECT op, reason FROM ${tableOf(dialect)} WHERE gid = ${dialect === 'postgres' ? '$1' : '?'} ORDER BY op`;
    const rows = dialect === 'postgres' ? (await pgPool.query(sql, [gid])).rows : ((await myPool.execute(sql, [gid]))[0] as Record<string, unknown>[]);
    return rows.map((r) => `${String(r.op)}=${String(r.reason)}`);
  };

  it.each(adapters)("%s: a repeated compensation is skipped as a duplicate (as DTM's Go SDK skips it), not run a second time", async (name, dialect, database) => {
    const db = database();
    const g = `purged-${name}`.replace(/ /g, '-');
    const bump = (op: string, by: number) => barrierFor(dialect, g, op).callWithDb(db, () => db.execute(`UPDATE counter SET n = n + ${by} WHERE id = 1`, []));
    const before = await count(dialect);
    expect((await bump('action', 1)).executed).toBe(true);
    expect((await bump('compensate', -1)).executed).toBe(true);
    await purge(dialect, g, 'action'); // the older row went first
    expect(await bump('compensate', -1)).toEqual({ executed: false, reason: 'duplicate' }); // DTM repeats the compensation
    expect(await count(dialect)).toBe(before); // undone once, not twice
    // the other cases decide as before: a duplicate, a null compensation, a compensation after its action
    expect(await bump('compensate', -1)).toEqual({ executed: false, reason: 'duplicate' });
    expect(await barrierFor(dialect, `${g}-null`, 'compensate').callWithDb(db, async () => 'ran')).toEqual({ executed: false, reason: 'null-compensation' });
    expect(await rowsOf(dialect, `${g}-null`)).toEqual(['action=compensate', 'compensate=compensate']);
    expect(await count(dialect)).toBe(before);
  });

  it('TCC on pg: a repeated cancel whose Try row was purged is skipped', async () => {
    const db = pgBarrierDatabase(pgPool);
    const barrier = (op: string) => new BranchBarrier('tcc', 'purged-tcc', '01', op, { table: tableOf('postgres') });
    const bump = (op: string, by: number) => barrier(op).callWithDb(db, (client) => client.query(`UPDATE counter SET n = n + ${by} WHERE id = 1`));
    const before = await count('postgres');
    expect((await bump('try', 1)).executed).toBe(true);
    expect((await bump('cancel', -1)).executed).toBe(true);
    await purge('postgres', 'purged-tcc', 'try');
    expect(await bump('cancel', -1)).toEqual({ executed: false, reason: 'duplicate' });
    expect(await count('postgres')).toBe(before);
  });
});

describe('PostgreSQL barrier tables', () => {
  const dtmDdlTable = 'dtm_ddl.go_barrier'; // another name than DTM's: its constraint is still uniq_barrier
  it('several barrier tables in one schema: all created (uniq_barrier for the first, as DTM\'s SDKs want; then named after the table, within 63 bytes), all guard', async () => {
    const db = pgBarrierDatabase(pgPool);
    const long = ['1', '2'].map((n) => `two.${'b'.repeat(60)}${n}`); // uniq_<name> would be over 63 bytes
    for (const table of ['two.go_shared', 'two.barrier_b', 'two.barrier_c', ...long]) {
      await ensureBarrierSchema(db, { table });
      const run = (op: string) => new BranchBarrier('saga', 'two-tables', '01', op, { table }).callWithDb(db, async () => 'ran');
      expect([await run('action'), await run('action'), await run('compensate')]).toEqual([
        { executed: true, result: 'ran' },
        { executed: false, reason: 'duplicate' },
        { executed: true, result: 'ran' },
      ]);
    }
    await ensureBarrierSchema(db, { table: 'two.barrier_b' }); // idempotent
    const { rows } = await pgPool.query("SELECT conrelid::regclass::text AS t, conname FROM pg_constraint WHERE connamespace = 'two'::regnamespace ORDER BY conname");
    const names = Object.fromEntries(rows.map((r: { t: string; conname: string }) => [r.t, r.conname]));
    expect(names['two.go_shared']).toBe('uniq_barrier');
    expect([names['two.barrier_b'], names['two.barrier_c']]).toEqual(['uniq_barrier_b', 'uniq_barrier_c']);
    const longNames = long.map((table) => names[table] as string);
    expect(longNames.map((n) => [n.length, n.startsWith(`uniq_${'b'.repeat(40)}`)])).toEqual([
      [63, true],
      [63, true],
    ]);
    expect(longNames[0]).not.toBe(longNames[1]);
  });

  it("a table made with DTM's own DDL (surrogate id, unique constraint uniq_barrier), under another name, works as it is", async () => {
    // DTM v1.19.0's sqls/dtmcli.barrier.postgres.sql, in a schema of its own, the table renamed (BarrierTableName)
    await pgPool.query(`CREATE SCHEMA dtm_ddl;
      CREATE SEQUENCE dtm_ddl.barrier_seq;
      CREATE TABLE ${dtmDdlTable} (
        id bigint NOT NULL DEFAULT NEXTVAL ('dtm_ddl.barrier_seq'),
        trans_type varchar(45) default '', gid varchar(128) default '', branch_id varchar(128) default '',
        op varchar(45) default '', barrier_id varchar(45) default '', reason varchar(45) default '',
        create_time timestamp(0) with time zone DEFAULT NULL, update_time timestamp(0) with time zone DEFAULT NULL,
        PRIMARY KEY(id),
        CONSTRAINT uniq_barrier unique(gid, branch_id, op, barrier_id)
      )`);
    const db = pgBarrierDatabase(pgPool);
    const run = (gid: string, op: string) => new BranchBarrier('saga', gid, '01', op, { table: dtmDdlTable }).callWithDb(db, async () => 'ran');
    expect([await run('dtm-ddl', 'action'), await run('dtm-ddl', 'action'), await run('dtm-ddl', 'compensate'), await run('dtm-ddl-null', 'compensate')]).toEqual([
      { executed: true, result: 'ran' },
      { executed: false, reason: 'duplicate' },
      { executed: true, result: 'ran' },
      { executed: false, reason: 'null-compensation' },
    ]);
    await new BranchBarrier('msg', 'dtm-ddl-msg', '00', 'msg', { table: dtmDdlTable }).callWithDb(db, async () => undefined);
    await expect(new BranchBarrier('msg', 'dtm-ddl-msg', '00', 'msg', { table: dtmDdlTable }).queryPrepared(db)).resolves.toBeUndefined();
    const { rows } = await pgPool.query(`SELECT gid, op, reason FROM ${dtmDdlTable} ORDER BY id`);
    expect(rows).toEqual([
      { gid: 'dtm-ddl', op: 'action', reason: 'action' },
      { gid: 'dtm-ddl', op: 'compensate', reason: 'compensate' },
      { gid: 'dtm-ddl-null', op: 'action', reason: 'compensate' },
      { gid: 'dtm-ddl-null', op: 'compensate', reason: 'compensate' },
      { gid: 'dtm-ddl-msg', op: 'msg', reason: 'msg' },
    ]);
  });
});

describe('a barrier table named by a reserved word', () => {
  it.each([
    ['postgres', 'order'],
    ['postgres', 'user.barrier'],
    ['mysql', 'order'],
  ] as const)('%s, table %s: created by ensureBarrierSchema, guards each op, answers the back-check', async (dialect, table) => {
    const db: BarrierDatabase = dialect === 'postgres' ? pgBarrierDatabase(pgPool) : mysqlBarrierDatabase(myPool);
    await ensureBarrierSchema(db, { table });
    const run = (gid: string, op: string) => new BranchBarrier('saga', gid, '01', op, { table }).callWithDb(db, async () => 'ran');
    expect([await run('kw', 'action'), await run('kw', 'action'), await run('kw', 'compensate'), await run('kw-null', 'compensate'), await run('kw-null', 'action')]).toEqual([
      { executed: true, result: 'ran' },
      { executed: false, reason: 'duplicate' },
      { executed: true, result: 'ran' },
      { executed: false, reason: 'null-compensation' },
      { executed: false, reason: 'duplicate' },
    ]);
    const msg = (gid: string) => new BranchBarrier('msg', gid, '00', 'msg', { table });
    await msg('kw-msg').callWithDb(db, async () => undefined);
    await expect(msg('kw-msg').queryPrepared(db)).resolves.toBeUndefined();
    await expect(msg('kw-msg-none').queryPrepared(db)).rejects.toBeInstanceOf(DtmFailureError);
    const quoted = table.split('.').map((part) => (dialect === 'postgres' ? `"${part}"` : `\`${part}\``)).join('.');
    const sql = `SELECT gid, op, reason FROM ${quoted} ORDER BY gid, op`;
    const rows = dialect === 'postgres' ? (await pgPool.query(sql)).rows : ((await myPool.query(sql))[0] as Record<string, unknown>[]);
    expect(rows.map((r) => `${String(r.gid)} ${String(r.op)} ${String(r.reason)}`)).toEqual([
      'kw action action',
      'kw compensate compensate',
      'kw-msg msg msg',
      'kw-msg-none msg rollback',
      'kw-null action compensate',
      'kw-null compensate compensate',
    ]);
  });

  it('PostgreSQL: a name with capitals is the table PostgreSQL folds it to, as before (one made unquoted is found)', async () => {
    await pgPool.query('CREATE SCHEMA Folded_Schema; CREATE TABLE Folded_Schema.Barrier (trans_type varchar(45), gid varchar(128), branch_id varchar(128), op varchar(45), barrier_id varchar(45), reason varchar(45), UNIQUE (gid, branch_id, op, barrier_id))');
    const db = pgBarrierDatabase(pgPool);
    await ensureBarrierSchema(db, { table: 'Folded_Schema.Barrier' });
    const run = (op: string) => new BranchBarrier('saga', 'folded', '01', op, { table: 'Folded_Schema.Barrier' }).callWithDb(db, async () => 'ran');
    expect([await run('action'), await run('action')]).toEqual([{ executed: true, result: 'ran' }, { executed: false, reason: 'duplicate' }]);
    expect((await pgPool.query('SELECT gid, op FROM folded_schema.barrier')).rows).toEqual([{ gid: 'folded', op: 'action' }]);
  });
});

describe('how the adapters send the barrier inserts', () => {
  /** A compensation then its late action, on `db`: the compensation undoes nothing, the action is skipped. */
  async function nullCompensationThenHanging(db: BarrierDatabase, dialect: BarrierDialect, gid: string) {
    const compensate = await barrierFor(dialect, gid, 'compensate').callWithDb(db, async () => 'ran');
    const action = await barrierFor(dialect, gid, 'action').callWithDb(db, async () => 'ran');
    return [compensate, action];
  }

  it('mysql2 with multipleStatements: same decisions (the inserts are prepared statements, never batched into one query)', async () => {
    const pool = mysql.createPool({ ...dbs.mariadb.config, multipleStatements: true });
    try {
      const outcomes = await nullCompensationThenHanging(mysqlBarrierDatabase(pool), 'mysql', 'multi-my');
      expect(outcomes).toEqual([
        { executed: false, reason: 'null-compensation' },
        { executed: false, reason: 'duplicate' },
      ]);
      const fresh = await barrierFor('mysql', 'multi-my-2').callWithDb(mysqlBarrierDatabase(pool), async () => 'ran');
      expect(fresh).toEqual({ executed: true, result: 'ran' });
    } finally {
      await pool.end();
    }
  });

  it('pg without literal quoting (another client library): BEGIN, then the inserts one by one, same decisions', async () => {
    const plain: PgPoolLike<PgClientLike & { release(): void }> = {
      query: (sql, params) => pgPool.query(sql, params),
      connect: async () => {
        const client = await pgPool.connect();
        return { query: (sql: string, params?: unknown[]) => client.query(sql, params), release: () => client.release() };
      },
    };
    const outcomes = await nullCompensationThenHanging(pgBarrierDatabase(plain), 'postgres', 'plain-pg');
    expect(outcomes).toEqual([
      { executed: false, reason: 'null-compensation' },
      { executed: false, reason: 'duplicate' },
    ]);
  });
});

describe('the msg back-check on a barrier database', () => {
  it('answers FAILURE for a local transaction that never committed, and success for one that did', async () => {
    const db = pgBarrierDatabase(pgPool);
    await new BranchBarrier('msg', 'msg-done', '00', 'msg').callWithDb(db, async () => undefined);
    await expect(new BranchBarrier('msg', 'msg-done', '00', 'msg').queryPrepared(db)).resolves.toBeUndefined();
    await expect(new BranchBarrier('msg', 'msg-never', '00', 'msg').queryPrepared(db)).rejects.toThrow(/did not commit/);
    const rows = await pgPool.query("SELECT gid, reason FROM dtm_barrier.barrier WHERE gid LIKE 'msg-%' ORDER BY gid");
    expect(rows.rows).toEqual([
      { gid: 'msg-done', reason: 'msg' },
      { gid: 'msg-never', reason: 'rollback' },
    ]);
  });
});

describe('the msg back-check racing the local transaction (DTM asks while it is still open)', () => {
  const adapters: [string, BarrierDialect, () => BarrierDatabase][] = [
    ['pg', 'postgres', () => pgBarrierDatabase(pgPool)],
    ['mysql2', 'mysql', () => mysqlBarrierDatabase(myPool)],
    ['TypeORM postgres', 'postgres', () => typeormBarrierDatabase(sources.postgres!)],
    ['TypeORM mariadb', 'mysql', () => typeormBarrierDatabase(sources.mysql!)],
  ];
  it.each(adapters)('%s: the back-check waits for the open local transaction; success once it commits, FAILURE once it rolls back (and then no late commit)', async (name, dialect, db) => {
    const table = tableOf(dialect);
    for (const outcome of ['commit', 'rollback'] as const) {
      const gid = `race-${name.replace(/\W/g, '-')}-${outcome}`;
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let opened!: () => void;
      const isOpen = new Promise<void>((resolve) => (opened = resolve));
      const local = new BranchBarrier('msg', gid, '00', 'msg', { table }).callWithDb(db(), async () => {
        opened();
        await held;
        if (outcome === 'rollback') throw new Error('local transaction failed');
      });
      await isOpen;
      const check = new BranchBarrier('msg', gid, '00', 'msg', { table }).queryPrepared(db());
      expect(await settledWithin(check, 500)).toBe('still waiting');
      release();
      if (outcome === 'commit') {
        await expect(local).resolves.toMatchObject({ executed: true });
        await expect(check).resolves.toBeUndefined();
      } else {
        await expect(local).rejects.toThrow('local transaction failed');
        await expect(check).rejects.toThrow(/did not commit/);
        // a late local transaction finds the back-check's row
        await expect(new BranchBarrier('msg', gid, '00', 'msg', { table }).callWithDb(db(), async () => undefined)).rejects.toThrow(/back-check ran first/);
      }
    }
  });
});

describe("docs/barrier.md's adapter for another ORM or driver, as the page shows it", () => {
  /** The page's block, compiled to JavaScript (its imports are types only) and loaded as a module. */
  async function docsAdapter(): Promise<(pool: pg.Pool) => BarrierDatabase<pg.PoolClient>> {
    const block = fencedBlocks('docs/barrier.md').find((b) => b.lang === 'ts' && b.code.includes('export const myBarrierDatabase'));
    expect(block).toBeDefined();
    const { outputText } = ts.transpileModule(block!.code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    mkdirSync(join(REPO_ROOT, '.build'), { recursive: true });
    const dir = mkdtempSync(join(REPO_ROOT, '.build', 'docs-adapter-'));
    writeFileSync(join(dir, 'adapter.mjs'), outputText);
    try {
      return ((await import(pathToFileURL(join(dir, 'adapter.mjs')).href)) as { myBarrierDatabase: (pool: pg.Pool) => BarrierDatabase<pg.PoolClient> }).myBarrierDatabase;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('runs the business once behind the barrier; a business whose statement failed (its error caught) is refused, not answered success with nothing committed', async () => {
    const db = (await docsAdapter())(pgPool);
    const gid = `docs-adapter-${Date.now()}`;
    const before = await count('postgres');
    const business = async (client: pg.PoolClient) => void (await client.query('UPDATE counter SET n = n + 1 WHERE id = 1'));
    expect(await barrierFor('postgres', gid).callWithDb(db, business)).toEqual({ executed: true, result: undefined });
    expect(await barrierFor('postgres', gid).callWithDb(db, business)).toEqual({ executed: false, reason: 'duplicate' });
    expect(await count('postgres')).toBe(before + 1);

    const swallowed = `${gid}-x`;
    const outcome = await barrierFor('postgres', swallowed)
      .callWithDb(db, async (client) => {
        await client.query('UPDATE counter SET n = n + 1 WHERE id = 1');
        await client.query('SELECT 1/0').catch(() => undefined); // the transaction is aborted now: its COMMIT answers ROLLBACK
      })
      .catch((e: unknown) => e);
    expect(outcome).toBeInstanceOf(Error);
    expect(await count('postgres')).toBe(before + 1);
    expect((await pgPool.query('SELECT count(*)::int AS n FROM dtm_barrier.barrier WHERE gid = $1', [swallowed])).rows[0].n).toBe(0);
  });
});
