// The barrier's local transaction meeting faults of the database and of the handler, on every SQL
// adapter (pg, mysql2 on MariaDB, TypeORM on both), with small pools: the session killed by the
// server (pg_terminate_backend, MariaDB KILL) while the business is in its transaction, and many
// handlers that throw. The call must be an error DTM retries (never a resolved call), nothing of it
// kept, the process alive and the pool serving again.
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import mysql from 'mysql2/promise';
import mysqlCallbacks from 'mysql2';
import * as net from 'node:net';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { BranchBarrier, DtmConfigError, DtmFailureError, DtmUsageError, ensureBarrierSchema, resolveDtmConfig, mysqlBarrierDatabase, pgBarrierDatabase, typeormBarrierDatabase, type BarrierDatabase, type BarrierDialect } from 'nestjs-dtm';
import { mysqlXaDatabase, pgXaDatabase, type XaDatabase } from 'nestjs-dtm';
import { prepareXa, xidOf } from '../../lib/xa/xa-local-transaction.js';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { latch, settledWithin, sleep } from '../support/fixtures.js';
import { testRedis } from '../support/redis-client.js';

let dbs: FileDatabases;
let pgPool: pg.Pool;
let myPool: mysql.Pool;
let pgSource: DataSource;
let mySource: DataSource;
let admin: { pg: pg.Pool; my: mysql.Pool };

interface Store {
  dialect: BarrierDialect;
  db: () => BarrierDatabase;
  /** Runs `sql` (`?` placeholders) on the handle the business got. */
  run: (handle: unknown, sql: string, params: unknown[]) => Promise<unknown>;
  /** The server's id of the session behind the handle the business got. */
  sessionOf: (handle: unknown) => Promise<number>;
  /** Kills the session `id` from another connection. */
  kill: (id: number) => Promise<void>;
  query: (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;
}

const numbered = (sql: string) => {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
};
const pgQuery = async (sql: string, params: unknown[] = []) => (await admin.pg.query(numbered(sql), params)).rows;
const myQuery = async (sql: string, params: unknown[] = []) => (await admin.my.query(sql, params))[0] as Record<string, unknown>[];
const pgKill = async (id: number) => void (await admin.pg.query('SELECT pg_terminate_backend($1)', [id]));
const myKill = async (id: number) => void (await admin.my.query(`KILL ${Number(id)}`));
const firstValue = (rows: unknown) => Number(Object.values((rows as Record<string, unknown>[])[0])[0]);

const STORES: Record<string, Store> = {
  pg: {
    dialect: 'postgres',
    db: () => pgBarrierDatabase(pgPool),
    run: (handle, sql, params) => (handle as pg.PoolClient).query(numbered(sql), params),
    sessionOf: async (handle) => Number((await (handle as pg.PoolClient).query('SELECT pg_backend_pid() AS id')).rows[0].id),
    kill: pgKill,
    query: pgQuery,
  },
  mysql: {
    dialect: 'mysql',
    db: () => mysqlBarrierDatabase(myPool),
    run: (handle, sql, params) => (handle as mysql.PoolConnection).execute(sql, params as string[]),
    sessionOf: async (handle) => firstValue((await (handle as mysql.PoolConnection).query('SELECT CONNECTION_ID() AS id'))[0]),
    kill: myKill,
    query: myQuery,
  },
  'typeorm-pg': {
    dialect: 'postgres',
    db: () => typeormBarrierDatabase(pgSource),
    run: (handle, sql, params) => (handle as DataSource['manager']).query(numbered(sql), params),
    sessionOf: async (handle) => firstValue(await (handle as DataSource['manager']).query('SELECT pg_backend_pid() AS id')),
    kill: pgKill,
    query: pgQuery,
  },
  'typeorm-mysql': {
    dialect: 'mysql',
    db: () => typeormBarrierDatabase(mySource),
    run: (handle, sql, params) => (handle as DataSource['manager']).query(sql, params),
    sessionOf: async (handle) => firstValue(await (handle as DataSource['manager']).query('SELECT CONNECTION_ID() AS id')),
    kill: myKill,
    query: myQuery,
  },
};

beforeAll(async () => {
  dbs = await fileDatabases();
  // the pools under test are small: a connection that is not given back shows at once
  pgPool = new pg.Pool({ connectionString: dbs.postgres.url, max: 2 });
  myPool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 2 });
  admin = { pg: new pg.Pool({ connectionString: dbs.postgres.url, max: 2 }), my: mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 2 }) };
  await ensureBarrierSchema(pgBarrierDatabase(admin.pg));
  await ensureBarrierSchema(mysqlBarrierDatabase(admin.my), { table: `${dbs.name}.dtm_barrier` });
  await admin.pg.query('CREATE TABLE account (id text PRIMARY KEY, balance int NOT NULL)');
  await admin.my.query('CREATE TABLE account (id varchar(64) PRIMARY KEY, balance int NOT NULL)');
  pgSource = await new DataSource({ type: 'postgres', url: dbs.postgres.url, poolSize: 2 }).initialize();
  const { host, port, user, password, database } = dbs.mariadb.config;
  mySource = await new DataSource({ type: 'mariadb', host, port, username: user, password, database, poolSize: 2 }).initialize();
});
afterAll(async () => {
  await Promise.all([pgPool?.end(), myPool?.end(), pgSource?.destroy(), mySource?.destroy(), admin?.pg.end(), admin?.my.end()]);
});

const tableOf = (dialect: BarrierDialect) => (dialect === 'postgres' ? 'dtm_barrier.barrier' : `${dbs.name}.dtm_barrier`);
const barrier = (store: Store, gid: string, op = 'action') => new BranchBarrier('saga', gid, '01', op, { table: tableOf(store.dialect), timeoutSeconds: 5 });

async function seed(store: Store, id: string, balance: number): Promise<void> {
  await store.query('DELETE FROM account WHERE id = ?', [id]);
  await store.query('INSERT INTO account (id, balance) VALUES (?, ?)', [id, balance]);
}
async function balance(store: Store, id: string): Promise<number> {
  const [row] = await store.query('SELECT balance FROM account WHERE id = ?', [id]);
  return Number(row.balance);
}
async function barrierRows(store: Store, gid: string): Promise<number> {
  return (await store.query(`SELECT op FROM ${tableOf(store.dialect)} WHERE gid = ?`, [gid])).length;
}

/** How `call` settled within 10 s: `{ resolved }`, `{ rejected }`, or 'still waiting'. */
const outcomeOf = (call: Promise<unknown>) =>
  settledWithin(
    call.then(
      (resolved) => ({ resolved }),
      (rejected: unknown) => ({ rejected }),
    ),
    10_000,
  );

describe.each(Object.keys(STORES))('%s: the session killed while the business is in its transaction', (name) => {
  const store = STORES[name];

  it('between two statements (the business awaiting something else): an error, nothing kept, the process alive, the pool serving; the retry applies it once', async () => {
    const gid = `kill-idle-${name}-${Date.now()}`;
    await seed(store, gid, 100);
    const held = latch();
    let session = 0;
    const call = barrier(store, gid).callWithDb(store.db(), async (handle) => {
      await store.run(handle, 'UPDATE account SET balance = balance - 30 WHERE id = ?', [gid]);
      session = await store.sessionOf(handle);
      await held.wait();
      await store.run(handle, 'UPDATE account SET balance = balance - 1 WHERE id = ?', [gid]);
    });
    call.catch(() => undefined);
    await held.reached;
    await store.kill(session);
    await sleep(300);
    held.open();
    const outcome = await outcomeOf(call);
    expect(outcome).toHaveProperty('rejected');
    expect((outcome as { rejected: unknown }).rejected).not.toBeInstanceOf(DtmFailureError);
    expect(await balance(store, gid)).toBe(100);
    expect(await barrierRows(store, gid)).toBe(0);
    // DTM's retry: the pool serves again and the work is done once
    for (let i = 0; i < 4; i++) {
      const again = await settledWithin(barrier(store, gid).callWithDb(store.db(), (handle) => store.run(handle, 'UPDATE account SET balance = balance - 30 WHERE id = ?', [gid])), 10_000);
      expect(again).toMatchObject({ executed: i === 0 });
    }
    expect(await balance(store, gid)).toBe(70);
  });

  it('during a statement: an error DTM retries, nothing kept, the pool serving', async () => {
    const gid = `kill-busy-${name}-${Date.now()}`;
    await seed(store, gid, 100);
    let session = 0;
    const reached = latch();
    const call = barrier(store, gid).callWithDb(store.db(), async (handle) => {
      await store.run(handle, 'UPDATE account SET balance = balance - 30 WHERE id = ?', [gid]);
      session = await store.sessionOf(handle);
      const slow = store.run(handle, store.dialect === 'postgres' ? 'SELECT pg_sleep(3)' : 'SELECT SLEEP(3)', []);
      void reached.wait();
      await slow;
    });
    call.catch(() => undefined);
    await reached.reached;
    await sleep(300);
    await store.kill(session);
    const outcome = await outcomeOf(call);
    expect(outcome).toHaveProperty('rejected');
    expect((outcome as { rejected: unknown }).rejected).not.toBeInstanceOf(DtmFailureError);
    expect(await balance(store, gid)).toBe(100);
    expect(await barrierRows(store, gid)).toBe(0);
    for (let i = 0; i < 3; i++) {
      expect(await settledWithin(barrier(store, `${gid}-${i}`).callWithDb(store.db(), async () => 'ok'), 10_000)).toEqual({ executed: true, result: 'ok' });
    }
  });
});

describe.each(Object.keys(STORES))('%s: handlers that throw, on a pool of 2', (name) => {
  const store = STORES[name];
  it('100 failing calls roll everything back and give every connection back; the next call runs', async () => {
    const gid = `throw-${name}-${Date.now()}`;
    await seed(store, gid, 100);
    const calls = Array.from({ length: 100 }, (_, i) =>
      barrier(store, `${gid}-${i}`)
        .callWithDb(store.db(), async (handle) => {
          await store.run(handle, 'UPDATE account SET balance = balance - 1 WHERE id = ?', [gid]);
          throw i % 2 ? new DtmFailureError('refused') : new Error('boom');
        })
        .then(
          () => 'resolved',
          (e: unknown) => (e instanceof DtmFailureError ? 'failure' : 'error'),
        ),
    );
    const outcomes = (await settledWithin(Promise.all(calls), 60_000)) as string[];
    expect(outcomes.filter((o) => o === 'failure')).toHaveLength(50);
    expect(outcomes.filter((o) => o === 'error')).toHaveLength(50);
    expect(await balance(store, gid)).toBe(100);
    expect((await store.query(`SELECT count(*) AS n FROM ${tableOf(store.dialect)} WHERE gid LIKE ?`, [`${gid}-%`]))[0].n).toEqual(store.dialect === 'postgres' ? '0' : 0);
    expect(await settledWithin(barrier(store, `${gid}-next`).callWithDb(store.db(), async () => 'ok'), 10_000)).toEqual({ executed: true, result: 'ok' });
  });
});

/** A barrier database under a session setting a user may have, for the race below. */
interface RaceStore {
  store: Store;
  db: () => BarrierDatabase;
}
const raceStores: Record<string, () => RaceStore> = {};
const extraPools: { end(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(extraPools.map((p) => p.end()));
});
for (const level of ['serializable', 'repeatable read']) {
  raceStores[`pg, default_transaction_isolation ${level}`] = () => {
    const pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 10, options: `-c default_transaction_isolation=${level.replace(' ', '\\ ')}` });
    extraPools.push(pool);
    return { store: STORES.pg, db: () => pgBarrierDatabase(pool) };
  };
}
for (const level of ['READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE']) {
  raceStores[`mysql, ${level}`] = () => {
    const pool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 10 });
    pool.pool.on('connection', (conn) => conn.query(`SET SESSION TRANSACTION ISOLATION LEVEL ${level}`));
    extraPools.push(pool);
    return { store: STORES.mysql, db: () => mysqlBarrierDatabase(pool) };
  };
}
raceStores.pg = () => ({ store: STORES.pg, db: STORES.pg.db });
raceStores['typeorm-pg'] = () => ({ store: STORES['typeorm-pg'], db: STORES['typeorm-pg'].db });
raceStores['typeorm-mysql'] = () => ({ store: STORES['typeorm-mysql'], db: STORES['typeorm-mysql'].db });

describe.each(Object.keys(raceStores))('%s: 50 sagas, each action delivered twice at once and its compensation racing them', (name) => {
  it('every call settles (retried as DTM would on an error), each business committed at most once, the compensation undoes exactly what ran, no FAILURE or usage error', async () => {
    const { store, db } = raceStores[name]();
    const run = `race-${name.replace(/[^a-z]+/gi, '')}-${Date.now()}`;
    const ids = Array.from({ length: 50 }, (_, i) => `${run}-${i}`);
    for (const id of ids) await seed(store, id, 100);
    const ran = new Map<string, number>();
    let started = 0;
    const errors = new Map<string, number>();
    const deliver = async (id: string, op: 'action' | 'compensate', delayMs: number) => {
      await sleep(delayMs);
      for (let attempt = 1; ; attempt++) {
        try {
          const outcome = await barrier(store, id, op).callWithDb(db(), async (handle) => {
            await store.run(handle, 'UPDATE account SET balance = balance + ? WHERE id = ?', [op === 'action' ? -10 : 10, id]);
            await sleep(5);
            started += 1;
          });
          // counted once its local transaction committed: under SERIALIZABLE a business that ran can still
          // be rolled back at commit (40001) and run again on DTM's retry, which is not a second run
          if (outcome.executed) ran.set(`${id} ${op}`, (ran.get(`${id} ${op}`) ?? 0) + 1);
          return outcome;
        } catch (err) {
          const e = err as { code?: string; constructor: { name: string } };
          const key = `${e.constructor.name} ${e.code ?? ''}`;
          errors.set(key, (errors.get(key) ?? 0) + 1);
          if (err instanceof DtmFailureError || e.constructor.name === 'DtmUsageError' || attempt >= 20) throw err;
          await sleep(20);
        }
      }
    };
    const results = await Promise.allSettled(ids.flatMap((id, i) => [deliver(id, 'action', 0), deliver(id, 'action', 0), deliver(id, 'compensate', i % 10)]));
    const rejected = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    expect({ rejected, errors: [...errors] }).toEqual({ rejected: [], errors: expect.any(Array) });
    for (const id of ids) {
      const action = ran.get(`${id} action`) ?? 0;
      expect([id, action, ran.get(`${id} compensate`) ?? 0]).toEqual([id, action, action]);
      expect(action).toBeLessThanOrEqual(1);
      expect(await balance(store, id)).toBe(100);
    }
    // what the retries met, for the record
    process.stdout.write(`${name}: errors retried ${JSON.stringify([...errors])}, actions committed ${[...ran].filter(([k]) => k.endsWith('action')).length}, businesses started ${started}\n`);
  });
});

describe('database settings a user may have', () => {
  /** What the barrier decided for `ops` of one branch, called in this order. */
  const decisions = async (db: BarrierDatabase, table: string, gid: string, ops = ['compensate', 'action', 'compensate']) => {
    const decided: string[] = [];
    for (const op of ops) {
      const outcome = await new BranchBarrier('saga', gid, '01', op, { table, timeoutSeconds: 5 }).callWithDb(db, async () => op);
      decided.push(outcome.executed ? 'executed' : outcome.reason);
    }
    return decided;
  };

  it('MariaDB sql_mode ANSI (ANSI_QUOTES, PIPES_AS_CONCAT) with STRICT_ALL_TABLES and NO_BACKSLASH_ESCAPES: the table is made, each op guarded, the back-check answered', async () => {
    const pool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 2 });
    extraPools.push(pool);
    pool.pool.on('connection', (conn) => conn.query("SET SESSION sql_mode = 'ANSI,STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,ONLY_FULL_GROUP_BY'"));
    const db = mysqlBarrierDatabase(pool);
    const table = `${dbs.name}.ansi_barrier`;
    await ensureBarrierSchema(db, { table });
    expect((await pool.query('SELECT @@SESSION.sql_mode AS m'))[0]).toEqual([{ m: expect.stringContaining('ANSI_QUOTES') }]);
    expect(await decisions(db, table, `ansi-${Date.now()}`)).toEqual(['null-compensation', 'duplicate', 'duplicate']);
    expect(await decisions(db, table, `ansi-ok-${Date.now()}`, ['action', 'action', 'compensate', 'compensate'])).toEqual(['executed', 'duplicate', 'executed', 'duplicate']);
    const msg = `ansi-msg-${Date.now()}`;
    await new BranchBarrier('msg', msg, '00', 'msg', { table, timeoutSeconds: 5 }).callWithDb(db, async () => undefined);
    await expect(new BranchBarrier('msg', msg, '00', 'msg', { table, timeoutSeconds: 5 }).queryPrepared(db)).resolves.toBeUndefined();
  });

  it('PostgreSQL search_path another schema than public, the table named without a schema: made in that schema and used there', async () => {
    await admin.pg.query('CREATE SCHEMA IF NOT EXISTS app');
    const pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 2, options: '-c search_path=app' });
    extraPools.push(pool);
    const db = pgBarrierDatabase(pool);
    await ensureBarrierSchema(db, { table: 'barrier' });
    const gid = `path-${Date.now()}`;
    expect(await decisions(db, 'barrier', gid)).toEqual(['null-compensation', 'duplicate', 'duplicate']);
    expect(await decisions(db, 'barrier', `${gid}-ok`, ['action', 'compensate', 'compensate'])).toEqual(['executed', 'executed', 'duplicate']);
    const rows = await admin.pg.query("SELECT op, reason FROM app.barrier WHERE gid LIKE $1 || '%' ORDER BY gid, op", [gid]);
    expect(rows.rows.map((r: { op: string; reason: string }) => `${r.op}=${r.reason}`)).toEqual(['action=compensate', 'compensate=compensate', 'action=action', 'compensate=compensate']);
  });
});

/**
 * XA databases making a new connection each call, as docs/xa.md shows them. MySQL's is mysql2's
 * callback API made promise-based (`.promise()`): unlike `mysql2/promise`'s `createConnection`, which
 * leaves a listener of its own on the connection, nothing listens for its 'error' there.
 */
const XA_DATABASES: Record<'pg' | 'mysql', () => XaDatabase> = {
  pg: () =>
    pgXaDatabase(async () => {
      const client = new pg.Client({ connectionString: dbs.postgres.url });
      await client.connect();
      return client;
    }),
  mysql: () => mysqlXaDatabase(async () => mysqlCallbacks.createConnection(dbs.mariadb.config).promise()),
};
/** The XA ids `store`'s server holds prepared. */
const preparedXids = async (store: 'pg' | 'mysql'): Promise<string[]> =>
  store === 'pg' ? (await pgQuery('SELECT gid FROM pg_prepared_xacts')).map((r) => String(r.gid)) : (await myQuery('XA RECOVER')).map((r) => String(r.data));

describe.each(['pg', 'mysql'] as const)('an XA branch on %s, a new connection each call', (name) => {
  it('its session killed while the business is in phase 1, awaiting something else: an error, nothing prepared or kept, the process alive', async () => {
    const store = STORES[name];
    const gid = `xa-kill-${Date.now()}`;
    await seed(store, gid, 100);
    const held = latch();
    let session = 0;
    const xid = xidOf({ gid, branchId: '01' }, store.dialect);
    const row = { transType: 'xa', gid, branchId: '01', table: tableOf(store.dialect) };
    const call = prepareXa(
      XA_DATABASES[name](),
      xid,
      row,
      async (handle) => {
        await store.run(handle, 'UPDATE account SET balance = balance - 30 WHERE id = ?', [gid]);
        session = await store.sessionOf(handle);
        await held.wait();
        await store.run(handle, 'UPDATE account SET balance = balance - 1 WHERE id = ?', [gid]);
      },
      async () => undefined,
      { timeoutSeconds: 5 },
    );
    call.catch(() => undefined);
    await held.reached;
    await store.kill(session);
    await sleep(300); // the connection's end reaches the idle client: unheard, its 'error' would end this process
    held.open();
    expect(await outcomeOf(call)).toHaveProperty('rejected');
    expect(await balance(store, gid)).toBe(100);
    expect(await barrierRows(store, gid)).toBe(0);
    expect(await preparedXids(name)).not.toContain(xid);
  });
});

describe('redis: 50 sagas, each action delivered twice at once and its compensation racing them', () => {
  it('each amount moved at most once and given back exactly when it moved', async () => {
    const redis = testRedis(dbs.redis.url);
    try {
      const run = `${dbs.redis.keyPrefix}race-${Date.now()}`;
      const ids = Array.from({ length: 50 }, (_, i) => `${run}-${i}`);
      await Promise.all(ids.map((id) => redis.set(`${id}:balance`, '100')));
      const call = (id: string, op: 'action' | 'compensate', delayMs: number) =>
        sleep(delayMs).then(() => new BranchBarrier('saga', id, '01', op).redisCheckAdjustAmount(redis, `${id}:balance`, op === 'action' ? -10 : 10, 600));
      const outcomes = await Promise.all(ids.flatMap((id, i) => [call(id, 'action', 0), call(id, 'action', 0), call(id, 'compensate', i % 10)]));
      for (const [i, id] of ids.entries()) {
        const [a1, a2, c] = outcomes.slice(i * 3, i * 3 + 3);
        const actions = Number(a1.executed) + Number(a2.executed);
        expect([id, actions, Number(c.executed)]).toEqual([id, actions, actions]);
        expect(actions).toBeLessThanOrEqual(1);
        expect(await redis.get(`${id}:balance`)).toBe('100');
      }
    } finally {
      redis.disconnect();
    }
  });
});

/**
 * A TCP proxy in front of Redis that, for the first command whose bytes contain `marker`, passes it
 * on and then cuts the connection before Redis's answer reaches the client: the script ran, its
 * caller never heard. ioredis reconnects and sends the unanswered command again.
 */
async function cuttingRedisProxy(upstream: string, marker: string): Promise<{ url: string; cuts: () => number; close: () => Promise<void> }> {
  const target = new URL(upstream);
  const sockets = new Set<net.Socket>();
  let cuts = 0;
  const server = net.createServer((client) => {
    const up = net.connect(Number(target.port), target.hostname);
    for (const socket of [client, up]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    let cutting = false;
    client.on('data', (chunk: Buffer) => {
      if (cuts === 0 && chunk.includes(marker)) {
        cuts++;
        cutting = true;
        up.write(chunk);
        setTimeout(() => (client.destroy(), up.destroy()), 200);
        return;
      }
      up.write(chunk);
    });
    up.on('data', (chunk: Buffer) => void (cutting || client.write(chunk)));
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    cuts: () => cuts,
    close: () => new Promise<void>((resolve) => (sockets.forEach((s) => s.destroy()), server.close(() => resolve()))),
  };
}

describe('redis: the connection cut after Redis ran the script, before its answer arrived (ioredis sends the command again on reconnect)', () => {
  it.each(['msg', 'action'])('%s: the call resolves as applied (it was, once), not as a duplicate of itself', async (op) => {
    const gid = `${dbs.redis.keyPrefix}cut-${op}-${Date.now()}`;
    const direct = testRedis(dbs.redis.url);
    const proxy = await cuttingRedisProxy(dbs.redis.url, gid);
    const redis = testRedis(proxy.url, { retryStrategy: () => 50 });
    try {
      await direct.set(`${gid}:balance`, '100');
      const decisions: string[] = [];
      const barrier = new BranchBarrier(op === 'msg' ? 'msg' : 'saga', gid, op === 'msg' ? '00' : '01', op, { onDecision: (d) => decisions.push(d) });
      const outcome = await barrier.redisCheckAdjustAmount(redis, `${gid}:balance`, -30, 600).catch((e: unknown) => e);
      expect(proxy.cuts()).toBe(1);
      expect(await direct.get(`${gid}:balance`)).toBe('70');
      expect([outcome, decisions]).toEqual([{ executed: true, result: undefined }, ['executed']]);
      // DTM's back-check of the message reads it as committed (and delivers it)
      if (op === 'msg') await expect(new BranchBarrier('msg', gid, '00', 'msg').redisQueryPrepared(direct)).resolves.toBeUndefined();
    } finally {
      redis.disconnect();
      direct.disconnect();
      await proxy.close();
    }
  });
});

describe('a barrier table name longer than the databases take (PostgreSQL cuts a name at 63 bytes without a word, MySQL / MariaDB refuse one over 64 characters)', () => {
  const long = (n: number) => `t${'x'.repeat(n - 1)}`;

  it('a part over 63 characters is refused where it is given (the config, a BranchBarrier), naming the limit; 63 is taken', async () => {
    for (const table of [long(64), `dtm.${long(64)}`, `${long(64)}.barrier`]) {
      expect(() => resolveDtmConfig({ config: { barrierTable: table } }, {})).toThrow(DtmConfigError);
      expect(() => resolveDtmConfig({ config: { barrierTable: table } }, {})).toThrow(/63/);
      expect(() => new BranchBarrier('saga', 'g', '01', 'action', { table })).toThrow(DtmUsageError);
      expect(() => new BranchBarrier('saga', 'g', '01', 'action', { table })).toThrow(/63/);
    }
    const table = `${dbs.name}.${long(63)}`;
    expect(resolveDtmConfig({ config: { barrierTable: table } }, {}).barrierTable).toBe(table);
    await ensureBarrierSchema(mysqlBarrierDatabase(admin.my), { table });
    const outcome = await new BranchBarrier('saga', `long-${Date.now()}`, '01', 'action', { table }).callWithDb(mysqlBarrierDatabase(admin.my), async () => 'ran');
    expect(outcome).toEqual({ executed: true, result: 'ran' });
  });
});
