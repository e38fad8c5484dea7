// Database errors at the barrier, against the real DTM server, PostgreSQL and MariaDB: a barrier table
// the app's database user may read but not write (no INSERT granted, a read-only database or session),
// what the start-up check says of it and what DTM gets from a branch call behind it.
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Body, Controller, Get, Post, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { BarrierTx, BranchBarrier, BranchContext, DtmClient, DtmGidInUseError, DtmModule, DtmOutcomeUnknownError, DtmUsageError, MsgBranch, MsgQueryPrepared, type BranchInfo, ensureBarrierSchema, mysqlBarrierDatabase, mysqlBarrierTransaction, mysqlXaDatabase, pgBarrierDatabase, pgBarrierTransaction, pgXaDatabase, SagaAction, XaBranch, UseBarrier, type BarrierDatabase, type XaDatabase } from 'nestjs-dtm';
import { CapturingLogger } from './branch-app.js';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { harness, queryTrans, triggerCron } from '../support/harness.js';
import { freePort, waitUntil } from '../support/services/process.js';
import { answerSwallowingProxy } from '../support/swallow-proxy.js';

const TABLE = 'dberr_barrier';

/** The times each store's branch ran its business. */
const runs: Record<string, number> = {};

@Controller('dberr-pg')
@UseBarrier('pg')
class PgBranches {
  @Post('credit')
  @SagaAction('dberr.pg.credit', { compensate: false })
  credit() {
    runs.pg = (runs.pg ?? 0) + 1;
  }
}

@Controller('dberr-mysql')
@UseBarrier('mysql')
class MysqlBranches {
  @Post('credit')
  @SagaAction('dberr.mysql.credit', { compensate: false })
  credit() {
    runs.mysql = (runs.mysql ?? 0) + 1;
  }
}

/** The gids whose message DTM delivered to the outbox's branch. */
const shipped: string[] = [];

@Controller('dberr-outbox')
class OutboxBranches {
  @Get('check')
  @MsgQueryPrepared('dberr.outbox.check', { barrier: 'pg' })
  check() {}

  @Post('ship')
  @MsgBranch('dberr.outbox.ship')
  ship(@BranchContext() branch: BranchInfo) {
    shipped.push(branch.gid);
  }
}

@Controller('dberr-outbox-mysql')
class MysqlOutboxBranches {
  @Get('check')
  @MsgQueryPrepared('dberr.outboxMysql.check', { barrier: 'mysql' })
  check() {}

  @Post('ship')
  @MsgBranch('dberr.outboxMysql.ship')
  ship(@BranchContext() branch: BranchInfo) {
    shipped.push(branch.gid);
  }
}

/** The times each store's XA branch ran its business. */
const xaRuns: Record<string, number> = {};

@Controller('dberr-xa')
class XaBranches {
  @Post('pg')
  @XaBranch('dberr.xa.pg', { db: 'pg' })
  async pg(@Body() m: { amount: number }, @BarrierTx() c: pg.Client) {
    xaRuns.pg = (xaRuns.pg ?? 0) + 1;
    await c.query('SELECT $1::int', [m.amount]);
  }

  @Post('mysql')
  @XaBranch('dberr.xa.mysql', { db: 'mysql' })
  async mysql(@Body() m: { amount: number }, @BarrierTx() c: mysql.Connection) {
    xaRuns.mysql = (xaRuns.mysql ?? 0) + 1;
    await c.execute('SELECT ?', [m.amount]);
  }
}

type Store = 'pg' | 'mysql';

let dbs: FileDatabases;
let admin: { pg: pg.Pool; mysql: mysql.Pool };
/** A database user that may read the barrier table and not insert into it, per store. */
let readOnlyUser: { pg: string; mysql: string };
/** A database user that may read and insert into the barrier table, and create nothing (both stores). */
let writerUser: string;
const closers: (() => Promise<unknown>)[] = [];
const apps: INestApplication[] = [];

beforeAll(async () => {
  dbs = await fileDatabases();
  admin = { pg: new pg.Pool({ connectionString: dbs.postgres.url, max: 2 }), mysql: mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 2 }) };
  for (const store of ['pg', 'mysql'] as const) await ensureBarrierSchema(store === 'pg' ? pgBarrierDatabase(admin.pg) : mysqlBarrierDatabase(admin.mysql), { table: TABLE });
  const user = `${dbs.name}_sel`.slice(0, 60);
  // roles are the server's, not the database's: the file's database was dropped with the grants, so the role can go
  await admin.pg.query(`DROP ROLE IF EXISTS ${user}`);
  await admin.pg.query(`CREATE ROLE ${user} LOGIN PASSWORD 'sel'`);
  await admin.pg.query(`GRANT SELECT ON ${TABLE} TO ${user}`);
  await admin.mysql.query(`DROP USER IF EXISTS '${user}'@'%'`);
  await admin.mysql.query(`CREATE USER '${user}'@'%' IDENTIFIED BY 'sel'`);
  await admin.mysql.query(`GRANT SELECT ON ${dbs.name}.* TO '${user}'@'%'`);
  readOnlyUser = { pg: user, mysql: user };
  writerUser = `${dbs.name}_rw`.slice(0, 60);
  await admin.pg.query(`DROP ROLE IF EXISTS ${writerUser}`);
  await admin.pg.query(`CREATE ROLE ${writerUser} LOGIN PASSWORD 'rw'`);
  await admin.pg.query(`GRANT SELECT, INSERT ON ${TABLE} TO ${writerUser}`);
  await admin.mysql.query(`DROP USER IF EXISTS '${writerUser}'@'%'`);
  await admin.mysql.query(`CREATE USER '${writerUser}'@'%' IDENTIFIED BY 'rw'`);
  await admin.mysql.query(`GRANT SELECT, INSERT ON ${dbs.name}.${TABLE} TO '${writerUser}'@'%'`);
});

afterAll(async () => {
  for (const app of apps) await app.close().catch(() => undefined);
  for (const close of closers) await close().catch(() => undefined);
  await admin.mysql.query(`DROP USER IF EXISTS '${readOnlyUser.mysql}'@'%'`).catch(() => undefined);
  await admin.mysql.query(`DROP USER IF EXISTS '${writerUser}'@'%'`).catch(() => undefined);
  await admin.pg.end();
  await admin.mysql.end();
});

/** A barrier database of `store` as `how`: a user without INSERT on the barrier table, every session read-only, or a user who may only read and insert. */
function barrierDatabase(store: Store, how: 'no-insert' | 'read-only' | 'no-create'): BarrierDatabase {
  if (store === 'pg') {
    const h = harness().postgres!;
    const pool =
      how === 'no-insert'
        ? new pg.Pool({ host: h.host, port: h.port, database: dbs.name, user: readOnlyUser.pg, password: 'sel', max: 2 })
        : how === 'no-create'
          ? new pg.Pool({ host: h.host, port: h.port, database: dbs.name, user: writerUser, password: 'rw', max: 2 })
          : new pg.Pool({ connectionString: dbs.postgres.url, max: 2, options: '-c default_transaction_read_only=on' });
    pool.on('error', () => undefined);
    closers.push(() => pool.end());
    return pgBarrierDatabase(pool);
  }
  const user = { 'no-insert': { user: readOnlyUser.mysql, password: 'sel' }, 'no-create': { user: writerUser, password: 'rw' }, 'read-only': {} }[how];
  const pool = mysql.createPool({ ...dbs.mariadb.config, ...user, connectionLimit: 2 });
  // MariaDB's read_only is global (SUPER users pass it; it would stop every other test file on the shared
  // server): a session whose transactions are read-only meets the same refusal of the barrier's insert
  if (how === 'read-only') pool.on('connection', (conn) => void conn.query('SET SESSION TRANSACTION READ ONLY'));
  closers.push(() => pool.end());
  return mysqlBarrierDatabase(pool);
}

/** An XA database of `store` connecting as the user without INSERT on the barrier table (`noInsert`), else as the file's own. */
function xaDatabase(store: Store, noInsert: boolean): XaDatabase<unknown> {
  if (store === 'pg') {
    const h = harness().postgres!;
    return pgXaDatabase(async () => {
      const client = new pg.Client(noInsert ? { host: h.host, port: h.port, database: dbs.name, user: readOnlyUser.pg, password: 'sel' } : { connectionString: dbs.postgres.url });
      await client.connect();
      return client;
    }) as XaDatabase<unknown>;
  }
  return mysqlXaDatabase(() => mysql.createConnection(noInsert ? { ...dbs.mariadb.config, user: readOnlyUser.mysql, password: 'sel' } : dbs.mariadb.config)) as XaDatabase<unknown>;
}

/** Starts (or fails to start) an app whose `store` branch is behind `db` (or with `db` as its XA database, no branch). */
async function start(store: Store, db: BarrierDatabase | { xa: XaDatabase<unknown> }, createBarrierTable = false): Promise<{ app?: INestApplication; error?: unknown; logger: CapturingLogger }> {
  const port = await freePort();
  const databases = 'xa' in db ? { xaConnections: { [store]: db.xa } } : { barrierConnections: { [store]: db } };
  const moduleRef = await Test.createTestingModule({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, appUrl: `http://127.0.0.1:${port}`, barrierTable: TABLE, createBarrierTable }, ...databases })],
    controllers: 'xa' in db ? [] : [store === 'pg' ? PgBranches : MysqlBranches],
  }).compile();
  const app = moduleRef.createNestApplication({ forceCloseConnections: true });
  const logger = new CapturingLogger();
  app.useLogger(logger);
  const error = await app.listen(port, '127.0.0.1').then(
    () => undefined,
    (e: unknown) => e,
  );
  if (error !== undefined) {
    await app.close().catch(() => undefined);
    return { error, logger };
  }
  apps.push(app);
  return { app, logger };
}

describe.each(['pg', 'mysql'] as const)('the barrier table on %s', (store) => {
  it('a database user without INSERT on the barrier table: start-up fails with DtmUsageError naming the table and the grant, instead of an app whose every branch call fails', async () => {
    const { app, error } = await start(store, barrierDatabase(store, 'no-insert'));
    if (app) await app.close();
    expect(error).toBeInstanceOf(DtmUsageError);
    const message = (error as Error).message;
    expect(message).toContain(`the barrier table ${TABLE} on barrier connection "${store}" (${store === 'pg' ? 'postgres' : 'mysql'}) refuses the barrier's insert`);
    expect(message).toContain(`GRANT SELECT, INSERT ON ${TABLE} TO`);
    expect(message).toMatch(store === 'pg' ? /permission denied for table dberr_barrier/ : /INSERT command denied/);
  });

  it('a read-only database (session): start-up warns, naming the table; a branch call behind it is an error DTM retries (never FAILURE), its log line naming the barrier table and the read-only database', async () => {
    const { app, logger } = await start(store, barrierDatabase(store, 'read-only'));
    expect(app).toBeDefined();
    expect(logger.warnings).toContainEqual(expect.stringContaining(`the barrier table ${TABLE} on barrier connection "${store}" (${store === 'pg' ? 'postgres' : 'mysql'}) refuses the barrier's insert: the database is read-only`));
    const client = app!.get(DtmClient);
    const gid = await client.generateGid();
    await client.newSaga(gid, { retryInterval: 60 }).add(`dberr.${store}.credit`, { amount: 1 }).submit();
    await waitUntil('the branch call failing', async () => logger.errors.some((line) => line.includes(gid)), { timeoutMs: 15_000, intervalMs: 100 });
    const stored = await queryTrans(gid);
    expect(stored.transaction?.status).toBe('submitted');
    expect(stored.branches.filter((b) => b.op === 'action').map((b) => b.status)).toEqual(['prepared']);
    expect(logger.errors.find((line) => line.includes(gid))).toContain('DTM will retry the call');
    expect(logger.errors.find((line) => line.includes(gid))).toContain(`the database refused the barrier's statement on its table ${TABLE}`);
    expect(logger.errors.find((line) => line.includes(gid))).toContain('the database is read-only');
    expect(runs[store] ?? 0).toBe(0);
    await client.forceStop(gid);
  });

  it('create_barrier_table with the table there, as a database user who may read and insert into it but create nothing (a migration made it): the app starts without a warning, and its branch runs', async () => {
    const { app, error, logger } = await start(store, barrierDatabase(store, 'no-create'), true);
    expect(error).toBeUndefined();
    expect(logger.warnings.filter((line) => line.includes('barrier'))).toEqual([]);
    const client = app!.get(DtmClient);
    const gid = await client.generateGid();
    const before = runs[store] ?? 0;
    expect((await client.newSaga(gid).add(`dberr.${store}.credit`, { amount: 1 }).submitAndWait()).status).toBe('succeed');
    expect(runs[store]).toBe(before + 1);
  });

  it("an XA database whose user may not insert into the barrier table (every XA branch writes its row there): start-up fails naming the grant; as a user who may, it starts without a warning", async () => {
    const refused = await start(store, { xa: xaDatabase(store, true) });
    if (refused.app) await refused.app.close();
    expect(refused.error).toBeInstanceOf(DtmUsageError);
    expect((refused.error as Error).message).toContain(`the barrier table ${TABLE} on XA database "${store}" (${store === 'pg' ? 'postgres' : 'mysql'}) refuses the barrier's insert`);
    expect((refused.error as Error).message).toContain('every XA branch writes its barrier row there');
    const allowed = await start(store, { xa: xaDatabase(store, false) });
    expect(allowed.error).toBeUndefined();
    expect(allowed.logger.warnings.filter((line) => line.includes('barrier'))).toEqual([]);
  });
});

describe('the outbox (doAndSubmitDb) on PostgreSQL', () => {
  let outbox: { app: INestApplication; client: DtmClient };
  beforeAll(async () => {
    await admin.pg.query('CREATE TABLE IF NOT EXISTS dberr_orders (id text PRIMARY KEY)');
    const port = await freePort();
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, appUrl: `http://127.0.0.1:${port}`, barrierTable: TABLE }, barrierConnections: { pg: pgBarrierDatabase(admin.pg) } })],
      controllers: [OutboxBranches],
    }).compile();
    const app = moduleRef.createNestApplication({ forceCloseConnections: true, logger: false });
    await app.listen(port, '127.0.0.1');
    apps.push(app);
    outbox = { app, client: app.get(DtmClient) };
  });

  const order = (gid: string) => outbox.client.newMsg(gid, { timeoutToFail: 3, retryInterval: 1 }).add('dberr.outbox.ship', { id: gid });
  const saved = async (gid: string) => (await admin.pg.query('SELECT 1 FROM dberr_orders WHERE id = $1', [gid])).rowCount;

  it("its COMMIT's answer lost (the connection dropped after PostgreSQL committed): the back-check finds the commit and DTM delivers; the caller gets DtmOutcomeUnknownError (submitted) saying the local transaction committed, not the bare connection error", async () => {
    const proxy = await answerSwallowingProxy(dbs.postgres.url.replace(/^postgres(ql)?:/, 'http:'), (request) => request.includes('COMMIT'));
    const url = new URL(dbs.postgres.url);
    url.host = new URL(proxy.url).host;
    const pool = new pg.Pool({ connectionString: url.toString(), max: 1 });
    pool.on('error', () => undefined);
    closers.push(() => pool.end());
    const gid = await outbox.client.generateGid();
    const done = order(gid)
      .doAndSubmitDb('dberr.outbox.check', pgBarrierDatabase(pool), (client) => client.query('INSERT INTO dberr_orders (id) VALUES ($1)', [gid]))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    await waitUntil('PostgreSQL committing the local transaction', async () => (await saved(gid)) === 1, { timeoutMs: 10_000, intervalMs: 50 });
    await proxy.close();
    const error = await done;
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error).toMatchObject({ gid, lastStatus: 'submitted' });
    expect((error as Error).message).toContain('committed');
    expect((error as Error).cause).toBeInstanceOf(Error);
    expect((await outbox.client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    expect(shipped.filter((g) => g === gid)).toEqual([gid]);
    expect(await saved(gid)).toBe(1);
  });

  it('a serialization failure (40001) of the local transaction under SERIALIZABLE: rolled back, the message failed and never delivered, the caller gets the database error (code 40001); the same gid again is DtmGidInUseError, nothing run', async () => {
    await admin.pg.query('CREATE TABLE IF NOT EXISTS dberr_seats (gid text PRIMARY KEY)');
    const pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 2, options: '-c default_transaction_isolation=serializable' });
    pool.on('error', () => undefined);
    closers.push(() => pool.end());
    const db = pgBarrierDatabase(pool);
    let read = 0;
    let bothRead!: () => void;
    const gate = new Promise<void>((resolve) => (bothRead = resolve));
    // write skew: each counts the seats, then takes one; SSI lets only one of the two commit
    const takeSeat = (gid: string) => async (client: { query(sql: string, params?: unknown[]): Promise<unknown> }) => {
      await client.query('SELECT count(*) FROM dberr_seats');
      if (++read === 2) bothRead();
      await gate;
      await client.query('INSERT INTO dberr_seats (gid) VALUES ($1)', [gid]);
    };
    const gids = [await outbox.client.generateGid(), await outbox.client.generateGid()];
    const results = await Promise.all(gids.map((gid) => order(gid).doAndSubmitDb('dberr.outbox.check', db, takeSeat(gid)).then(() => 'ok', (e: unknown) => e)));
    const failed = results.findIndex((r) => r !== 'ok');
    expect(results.filter((r) => r === 'ok')).toHaveLength(1);
    expect(results[failed]).toMatchObject({ code: '40001' });
    const loser = gids[failed];
    expect((await outbox.client.waitForFinal(loser, { timeout: 20 })).status).toBe('failed');
    expect((await outbox.client.waitForFinal(gids[1 - failed], { timeout: 20 })).status).toBe('succeed');
    expect((await admin.pg.query('SELECT gid FROM dberr_seats WHERE gid = ANY($1)', [gids])).rows.map((r: { gid: string }) => r.gid)).toEqual([gids[1 - failed]]);
    const again = await order(loser).doAndSubmitDb('dberr.outbox.check', db, takeSeat(loser)).then(() => 'ok', (e: unknown) => e);
    expect(again).toBeInstanceOf(DtmGidInUseError);
    expect(read).toBe(2);
    expect((again as Error).message).toContain('use a new one');
    expect(shipped).not.toContain(loser);
  });
  it("a serialization failure (40001) of the local transaction while DTM's back-check of the same message waits on its barrier row: the back-check answers FAILURE once the transaction rolled back (the winner's answers success), the caller gets the database error (40001), the message fails and is never delivered", async () => {
    await admin.pg.query('CREATE TABLE IF NOT EXISTS dberr_seats2 (gid text PRIMARY KEY)');
    const pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 2, options: '-c default_transaction_isolation=serializable' });
    pool.on('error', () => undefined);
    closers.push(() => pool.end());
    const db = pgBarrierDatabase(pool);
    const gids = [await outbox.client.generateGid(), await outbox.client.generateGid()];
    let read = 0;
    let bothRead!: () => void;
    const gate = new Promise<void>((resolve) => (bothRead = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const takeSeat = (gid: string) => async (client: { query(sql: string, params?: unknown[]): Promise<unknown> }) => {
      await client.query('SELECT count(*) FROM dberr_seats2');
      if (++read === 2) bothRead();
      await released;
      await client.query('INSERT INTO dberr_seats2 (gid) VALUES ($1)', [gid]);
    };
    const results = Promise.all(gids.map((gid) => order(gid).doAndSubmitDb('dberr.outbox.check', db, takeSeat(gid)).then(() => 'ok', (e: unknown) => e)));
    await gate;
    // DTM's back-check of each message, as DTM calls it, while both local transactions hold their barrier rows
    const base = (await outbox.app.getUrl()).replace('[::1]', '127.0.0.1');
    const checks = gids.map((gid) => fetch(`${base}/dberr-outbox/check?gid=${gid}&trans_type=msg&branch_id=00&op=msg`).then((r) => r.status));
    // on a client of its own: the back-checks hold the module's pool (admin.pg) while they wait
    const monitor = new pg.Client({ connectionString: dbs.postgres.url });
    await monitor.connect();
    closers.push(() => monitor.end());
    const waiting = async () => (await monitor.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%dberr_barrier%'")).rows[0].n as number;
    // ours, and DTM's own once the messages' timeoutToFail passed
    await waitUntil('both back-checks waiting on the barrier rows', async () => (await waiting()) >= 2, { timeoutMs: 10_000, intervalMs: 50 }).finally(release);
    const outcome = await results;
    const failed = outcome.findIndex((r) => r !== 'ok');
    expect(outcome.filter((r) => r === 'ok')).toHaveLength(1);
    expect(outcome[failed]).toMatchObject({ code: '40001' });
    const answers = await Promise.all(checks);
    expect(answers[failed]).toBe(409);
    expect(answers[1 - failed]).toBe(200);
    expect((await outbox.client.waitForFinal(gids[failed], { timeout: 20 })).status).toBe('failed');
    expect((await outbox.client.waitForFinal(gids[1 - failed], { timeout: 20 })).status).toBe('succeed');
    expect(shipped).not.toContain(gids[failed]);
    expect((await admin.pg.query('SELECT gid FROM dberr_seats2 WHERE gid = ANY($1)', [gids])).rows.map((r: { gid: string }) => r.gid)).toEqual([gids[1 - failed]]);
  });
});

describe('MariaDB deadlocks (1213) in the business', () => {
  /** Two businesses taking rows 1 and 2 in opposite orders, each waiting until both hold their first row: InnoDB kills one. */
  const crossing = () => {
    let held = 0;
    let bothHeld!: () => void;
    const gate = new Promise<void>((resolve) => (bothHeld = resolve));
    return (first: number, second: number) => async (conn: mysql.PoolConnection) => {
      await conn.execute('UPDATE dberr_stock SET n = n - 1 WHERE id = ?', [first]);
      if (++held === 2) bothHeld();
      await gate;
      await conn.execute('UPDATE dberr_stock SET n = n - 1 WHERE id = ?', [second]);
    };
  };
  const stock = async () => ((await admin.mysql.query('SELECT id, n FROM dberr_stock ORDER BY id'))[0] as { n: number }[]).map((r) => r.n);
  beforeAll(async () => {
    await admin.mysql.query('CREATE TABLE IF NOT EXISTS dberr_stock (id int PRIMARY KEY, n int NOT NULL)');
  });

  it('behind callWithDb: the victim throws ER_LOCK_DEADLOCK (an error DTM retries), nothing of it kept; its retry runs the business once', async () => {
    await admin.mysql.query('REPLACE INTO dberr_stock (id, n) VALUES (1, 10), (2, 10)');
    const pool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 2 });
    closers.push(() => pool.end());
    const db = mysqlBarrierDatabase(pool);
    const take = crossing();
    const barrier = (gid: string) => new BranchBarrier('saga', gid, '01', 'action', { table: TABLE, timeoutSeconds: 10 });
    const gids = [`dl-a-${Date.now()}`, `dl-b-${Date.now()}`];
    const results = await Promise.all([barrier(gids[0]).callWithDb(db, take(1, 2)), barrier(gids[1]).callWithDb(db, take(2, 1))].map((p) => p.then((r) => r, (e: unknown) => e)));
    const victim = results.findIndex((r) => r instanceof Error);
    expect(results[1 - victim]).toEqual({ executed: true, result: undefined });
    expect(results[victim]).toMatchObject({ code: 'ER_LOCK_DEADLOCK' });
    expect(await stock()).toEqual([9, 9]);
    const [rows] = await admin.mysql.query(`SELECT gid FROM ${TABLE} WHERE gid = ?`, [gids[victim]]);
    expect(rows).toEqual([]);
    // DTM's retry of the victim
    const retry = await barrier(gids[victim]).callWithDb(db, async (conn) => {
      await conn.execute('UPDATE dberr_stock SET n = n - 1 WHERE id IN (1, 2)', []);
    });
    expect(retry).toEqual({ executed: true, result: undefined });
    expect(await barrier(gids[victim]).callWithDb(db, async () => 'again')).toEqual({ executed: false, reason: 'duplicate' });
    expect(await stock()).toEqual([8, 8]);
  });
});

describe('barrier statements the database refuses outside callWithDb', () => {
  /** Whether the XA databases of {@link startXa}'s app give read-only connections from now on. */
  let xaReadOnly = true;
  /** An app whose XA branches (XaBranches) run on this file's databases, read-only while {@link xaReadOnly}. */
  const startXa = async () => {
    const xa = {
      pg: pgXaDatabase(async () => {
        const c = new pg.Client({ connectionString: dbs.postgres.url, options: xaReadOnly ? '-c default_transaction_read_only=on' : undefined });
        await c.connect();
        return c;
      }),
      mysql: mysqlXaDatabase(async () => {
        const c = await mysql.createConnection(dbs.mariadb.config);
        if (xaReadOnly) await c.query('SET SESSION TRANSACTION READ ONLY');
        return c;
      }),
    };
    const port = await freePort();
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, appUrl: `http://127.0.0.1:${port}`, barrierTable: TABLE }, xaConnections: xa })],
      controllers: [XaBranches],
    }).compile();
    const app = moduleRef.createNestApplication({ forceCloseConnections: true });
    const logger = new CapturingLogger();
    app.useLogger(logger);
    await app.listen(port, '127.0.0.1');
    apps.push(app);
    return { client: app.get(DtmClient), logger };
  };

  it.each(['pg', 'mysql'] as const)('an XA branch on %s whose database is read-only: the branch call fails with the DtmUsageError naming the barrier table and the read-only database (not the bare driver error), the business never runs, the XA transaction is rolled back', async (store) => {
    xaReadOnly = true;
    const { client, logger } = await startXa();
    const gid = await client.generateGid();
    const error = await client
      .xaGlobalTransaction(gid, async (x) => {
        await x.callBranch({ amount: 1 }, `dberr.xa.${store}`);
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(Error);
    expect((await client.waitForFinal(gid, { timeout: 20 })).status).toBe('failed');
    expect(xaRuns[store] ?? 0).toBe(0);
    const line = logger.errors.find((l) => l.includes(gid));
    expect(line).toContain(`the database refused the barrier's statement on its table ${TABLE}`);
    expect(line).toContain('the database is read-only');
    expect(line).toContain('DtmUsageError');
  });

  it.each(['pg', 'mysql'] as const)("an XA branch on %s prepared, whose rollback meets a read-only database (a failover to a replica): the rollback's barrier row refused is the DtmUsageError naming the table (DTM retries), and once the database takes writes the rollback finishes", async (store) => {
    xaReadOnly = false;
    const { client, logger } = await startXa();
    const gid = await client.generateGid();
    const before = xaRuns[store] ?? 0;
    const error = await client
      .xaGlobalTransaction(gid, async (x) => {
        await x.callBranch({ amount: 1 }, `dberr.xa.${store}`);
        xaReadOnly = true;
        throw new Error('the AP gives up');
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect((error as Error).message).toContain('the AP gives up');
    expect(xaRuns[store]).toBe(before + 1);
    await waitUntil('the rollback refused', async () => logger.errors.some((l) => l.includes(gid) && l.includes('op rollback')), { timeoutMs: 15_000, intervalMs: 100 });
    const line = logger.errors.find((l) => l.includes(gid) && l.includes('op rollback'));
    expect(line).toContain(`the database refused the barrier's statement on its table ${TABLE}`);
    expect(line).toContain("the XA branch's rollback could not record itself");
    expect(line).toContain('the database is read-only');
    xaReadOnly = false;
    await triggerCron();
    expect((await client.waitForFinal(gid, { timeout: 30 })).status).toBe('failed');
  });

  it.each(['pg', 'mysql'] as const)("BranchBarrier.call() in the caller's own transaction on %s, as a database user without INSERT on the barrier table: DtmUsageError naming the table and the grant, with the driver's error as its cause; the business never runs", async (store) => {
    let ran = 0;
    const barrier = new BranchBarrier('saga', `call-${store}-${Date.now()}`, '01', 'action', { table: TABLE });
    let error: unknown;
    if (store === 'pg') {
      const h = harness().postgres!;
      const c = new pg.Client({ host: h.host, port: h.port, database: dbs.name, user: readOnlyUser.pg, password: 'sel' });
      await c.connect();
      try {
        await c.query('BEGIN');
        error = await barrier.call(pgBarrierTransaction(c), async () => ran++).then(() => undefined, (e: unknown) => e);
        await c.query('ROLLBACK');
      } finally {
        await c.end();
      }
    } else {
      const c = await mysql.createConnection({ ...dbs.mariadb.config, user: readOnlyUser.mysql, password: 'sel' });
      try {
        await c.beginTransaction();
        error = await barrier.call(mysqlBarrierTransaction(c), async () => ran++).then(() => undefined, (e: unknown) => e);
        await c.rollback();
      } finally {
        await c.end();
      }
    }
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toContain(`the database refused the barrier's statement on its table ${TABLE}`);
    expect((error as Error).message).toContain(`GRANT SELECT, INSERT ON ${TABLE} TO`);
    expect((error as Error).cause).toMatchObject({ code: store === 'pg' ? '42501' : 'ER_TABLEACCESS_DENIED_ERROR' });
    expect(ran).toBe(0);
  });
});

describe('MariaDB lock wait timeout (1205) in the business (innodb_rollback_on_timeout OFF: only the statement is rolled back)', () => {
  /** Another session holding row `id` of dberr_stock locked until `release()`. */
  const holdRow = async (id: number) => {
    const conn = await admin.mysql.getConnection();
    await conn.beginTransaction();
    await conn.query('SELECT n FROM dberr_stock WHERE id = ? FOR UPDATE', [id]);
    return async () => {
      await conn.rollback();
      conn.release();
    };
  };
  /** The business: takes row 2 (not locked), then row 1 (locked by the other session: 1205 after the session's lock wait). */
  const takeBoth = (conn: mysql.PoolConnection) =>
    (async () => {
      await conn.execute('UPDATE dberr_stock SET n = n - 1 WHERE id = 2', []);
      await conn.execute('UPDATE dberr_stock SET n = n - 1 WHERE id = 1', []);
    })();
  const stock = async () => ((await admin.mysql.query('SELECT id, n FROM dberr_stock ORDER BY id'))[0] as { n: number }[]).map((r) => r.n);
  beforeAll(async () => {
    expect(((await admin.mysql.query('SELECT @@GLOBAL.innodb_rollback_on_timeout AS v'))[0] as { v: number }[])[0].v).toBe(0);
    await admin.mysql.query('CREATE TABLE IF NOT EXISTS dberr_stock (id int PRIMARY KEY, n int NOT NULL)');
  });

  it("behind callWithDb: the business's half (row 2) is not committed with the barrier row: the whole local transaction is rolled back, the caller gets ER_LOCK_WAIT_TIMEOUT (an error DTM retries), and the retry runs the business once", async () => {
    await admin.mysql.query('REPLACE INTO dberr_stock (id, n) VALUES (1, 10), (2, 10)');
    const pool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 2 });
    closers.push(() => pool.end());
    const db = mysqlBarrierDatabase(pool);
    const gid = `lw-${Date.now()}`;
    const barrier = () => new BranchBarrier('saga', gid, '01', 'action', { table: TABLE, timeoutSeconds: 1 });
    const release = await holdRow(1);
    let error: unknown;
    try {
      error = await barrier()
        .callWithDb(db, takeBoth)
        .then(() => undefined, (e: unknown) => e);
    } finally {
      await release();
    }
    expect(error).toMatchObject({ code: 'ER_LOCK_WAIT_TIMEOUT' });
    expect(await stock()).toEqual([10, 10]);
    expect((await admin.mysql.query(`SELECT reason FROM ${TABLE} WHERE gid = ?`, [gid]))[0]).toEqual([]);
    expect(await barrier().callWithDb(db, takeBoth)).toEqual({ executed: true, result: undefined });
    expect(await barrier().callWithDb(db, takeBoth)).toEqual({ executed: false, reason: 'duplicate' });
    expect(await stock()).toEqual([9, 9]);
  });

  it("inside doAndSubmitDb: the local transaction is rolled back whole (row 2 untouched), the caller gets ER_LOCK_WAIT_TIMEOUT, DTM's back-check answers FAILURE: the message fails, never delivered", async () => {
    await admin.mysql.query('REPLACE INTO dberr_stock (id, n) VALUES (1, 10), (2, 10)');
    const pool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 2 });
    pool.on('connection', (conn) => void conn.query('SET SESSION innodb_lock_wait_timeout = 1'));
    closers.push(() => pool.end());
    const port = await freePort();
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, appUrl: `http://127.0.0.1:${port}`, barrierTable: TABLE }, barrierConnections: { mysql: mysqlBarrierDatabase(admin.mysql) } })],
      controllers: [MysqlOutboxBranches],
    }).compile();
    const app = moduleRef.createNestApplication({ forceCloseConnections: true, logger: false });
    await app.listen(port, '127.0.0.1');
    apps.push(app);
    const client = app.get(DtmClient);
    const gid = await client.generateGid();
    const release = await holdRow(1);
    let error: unknown;
    try {
      error = await client
        .newMsg(gid, { timeoutToFail: 3, retryInterval: 1 })
        .add('dberr.outboxMysql.ship', { id: gid })
        .doAndSubmitDb('dberr.outboxMysql.check', mysqlBarrierDatabase(pool), takeBoth)
        .then(() => undefined, (e: unknown) => e);
    } finally {
      await release();
    }
    expect(error).toMatchObject({ code: 'ER_LOCK_WAIT_TIMEOUT' });
    expect(await stock()).toEqual([10, 10]);
    expect((await client.waitForFinal(gid, { timeout: 20 })).status).toBe('failed');
    expect(shipped).not.toContain(gid);
    expect((await admin.mysql.query(`SELECT reason FROM ${TABLE} WHERE gid = ?`, [gid]))[0]).toEqual([{ reason: 'rollback' }]);
  });
});
