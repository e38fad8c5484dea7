// Attacks on the barrier's statements and keys and on XA phase 2 (issue #13, items 3 and 4), each
// performed against the real DTM server and the real databases:
// - SQL injection through a gid on MariaDB under the NO_BACKSLASH_ESCAPES sql_mode, on a
//   multipleStatements pool: an UPDATE smuggled in, a barrier row planted for another gid;
// - barrier keys that collided: case, accents, trailing spaces and 128-character prefixes on
//   MariaDB, over-long gids and branch ids on PostgreSQL (a 500 forever);
// - a trans_type DTM never sends (over-long, in upper case, with control characters), which went
//   into the barrier row as it came (PostgreSQL: a 500 forever past 45 characters);
// - XA phase 2 of an xid the database does not know, which counted as done; on PostgreSQL, a
//   rollback arriving while the branch's action still runs, which waited without bound.
// The file runs its own DTM server (boltdb: it stores any gid, as an attacker needs, and what the
// XA tests leave unfinished reaches no other file). The barrier app's MariaDB pool has
// multipleStatements and sets NO_BACKSLASH_ESCAPES on every connection.
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Body, Controller, HttpCode, Inject, Post, type INestApplication, type LoggerService } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { DataSource } from 'typeorm';
import {
  barrierBinaryKeysSql,
  BarrierTx,
  BranchBarrier,
  BranchContext,
  DtmClient,
  DtmModule,
  DtmUsageError,
  ensureBarrierSchema,
  mysqlBarrierDatabase,
  mysqlBarrierTransaction,
  mysqlXaDatabase,
  SagaAction,
  typeormBarrierTransaction,
  UseBarrier,
  XaBranch,
  type BarrierDatabase,
  type BranchInfo,
  type DtmProtocol,
} from 'nestjs-dtm';
import { fileDatabases, onceDetached, type FileDatabases } from '../support/databases.js';
import { settledWithin } from '../support/fixtures.js';
import { callGrpc, requestBytes } from '../support/grpc.js';
import { harness } from '../support/harness.js';
import { keepConnectionsForDtm } from '../support/dtm-keep-alive.js';
import { startDtm, type DtmInfo } from '../support/services/dtm.js';
import { runDirFrom, sleep, waitUntil, type ManagedProcess } from '../support/services/process.js';
import { grpcServiceOf, Runs, startBarrierApp, type BarrierApp, type Move, type SqlStore } from './barrier-app.js';
import { pgXaAt } from '../support/pg-xa.js';

const NO_BACKSLASH_ESCAPES = "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')";
/**
 * The barrier's insert on MySQL / MariaDB. Given to mysql2's `query(sql, values)` (what the barrier did before),
 * the values are quoted into it on the client; the barrier's adapters bind them on the server.
 */
const INSERT = 'INSERT IGNORE INTO dtm_barrier (trans_type, gid, branch_id, op, barrier_id, reason) VALUES (?, ?, ?, ?, ?, ?)';
/** A gid that, quoted with backslash escapes under NO_BACKSLASH_ESCAPES, ends the insert and runs an UPDATE. */
const updateAttack = (tag: string) => `${tag}', 1, 2, 3, 4); UPDATE account SET balance = 999999 WHERE id = 1; #`;
/**
 * A gid that, quoted the same way, makes the insert write a second row: the barrier row of
 * `victim`'s action (values as hex literals: every quote after the first would get a backslash).
 */
const plantAttack = (tag: string, victim: string) =>
  `${tag}', 1, 1, 1, 1), (1, 0x${Buffer.from(victim).toString('hex')}, 0x3031, 0x616374696f6e, 0x3031, 0x616374696f6e) #`;
const row = (gid: string) => ['saga', gid, '01', 'action', '01', 'action'];

/**
 * Routes without a branch decorator that read the call with @BranchContext() and guard their work
 * with DtmClient.barrier() by hand (docs/barrier.md): no guard checks their calls. PostgreSQL over
 * HTTP and gRPC (PgBank's ManualOut*, which the barrier app does not serve otherwise), MariaDB over
 * HTTP. Each counts its business (`hand.<store>.out`, `hand.<store>.outCompensate`), run inside the barrier.
 */
@Controller('hand')
class HandBank {
  constructor(
    private readonly runs: Runs,
    @Inject(DtmClient) private readonly dtm: DtmClient,
    @Inject('pg-db') private readonly pgDb: BarrierDatabase,
    @Inject('mysql-db') private readonly mysqlDb: BarrierDatabase,
  ) {}

  private async move(store: SqlStore, b: BranchInfo, m: Move, sign: 1 | -1, key: string): Promise<{ message: string }> {
    const update = 'UPDATE account SET balance = balance + ? WHERE id = ?';
    const params = [sign * Number(m.amount), Number(m.account)];
    const outcome =
      store === 'pg'
        ? await this.dtm.barrier(b).callWithDb(this.pgDb as BarrierDatabase<pg.PoolClient>, async (tx) => {
            this.runs.add(key);
            await tx.query('UPDATE account SET balance = balance + $1 WHERE id = $2', params);
          })
        : await this.dtm.barrier(b).callWithDb(this.mysqlDb as BarrierDatabase<mysql.PoolConnection>, async (tx) => {
            this.runs.add(key);
            await tx.query(update, params);
          });
    return { message: outcome.executed ? 'executed' : outcome.reason };
  }

  @Post('pg/out')
  @HttpCode(200)
  @GrpcMethod('PgBank', 'ManualOut')
  pgOut(@Body() m: Move, @BranchContext() b: BranchInfo) {
    return this.move('pg', b, m, -1, 'hand.pg.out');
  }

  @Post('pg/out-compensate')
  @HttpCode(200)
  @GrpcMethod('PgBank', 'ManualOutCompensate')
  pgOutCompensate(@Body() m: Move, @BranchContext() b: BranchInfo) {
    return this.move('pg', b, m, 1, 'hand.pg.outCompensate');
  }

  @Post('mysql/out')
  @HttpCode(200)
  mysqlOut(@Body() m: Move, @BranchContext() b: BranchInfo) {
    return this.move('mysql', b, m, -1, 'hand.mysql.out');
  }

  @Post('mysql/out-compensate')
  @HttpCode(200)
  mysqlOutCompensate(@Body() m: Move, @BranchContext() b: BranchInfo) {
    return this.move('mysql', b, m, 1, 'hand.mysql.outCompensate');
  }
}

let dtm: { info: DtmInfo; process: ManagedProcess };
let dbs: FileDatabases;
let t: BarrierApp;
/** The test's own MariaDB pool: prepared statements (execute) for anything carrying an attack string. */
let my: mysql.Pool;
/** Another pool with NO_BACKSLASH_ESCAPES and multipleStatements, for the barrier used in your own transaction. */
let nbe: mysql.Pool;

beforeAll(async () => {
  dtm = await startDtm(runDirFrom(harness().runDir), { name: 'dtm-barrier-security' });
  dbs = await fileDatabases();
  t = await startBarrierApp(dbs, { dtm: dtm.info, mysqlPool: { multipleStatements: true }, mysqlSession: NO_BACKSLASH_ESCAPES, controllers: [HandBank] });
  my = mysql.createPool(dbs.mariadb.config);
  nbe = mysql.createPool({ ...dbs.mariadb.config, multipleStatements: true });
  nbe.on('connection', (connection) => void connection.query(NO_BACKSLASH_ESCAPES));
});
afterAll(async () => {
  await t?.close();
  await Promise.all([my?.end(), nbe?.end()]);
  await dtm?.process.stop();
});
beforeEach(async () => {
  t.runs.counts.clear();
  for (const store of ['pg', 'mysql'] as const) {
    await t.sql[store].run('DELETE FROM account');
    await t.sql[store].run('INSERT INTO account (id, balance) VALUES (1, 100), (2, 100)');
  }
});

const unique = () => randomUUID().slice(0, 8);

async function balance(store: SqlStore, id: number): Promise<number> {
  return Number((await t.sql[store].run('SELECT balance FROM account WHERE id = ?', [id])).rows[0].balance);
}

/** The barrier rows of `gid` (read with bound parameters), as `branch/op/barrier=reason`. */
async function barrierRows(store: SqlStore, gid: string): Promise<string[]> {
  const sql = 'SELECT branch_id, op, barrier_id, reason FROM dtm_barrier WHERE gid = ? ORDER BY branch_id, op, barrier_id';
  const rows = store === 'pg' ? (await t.sql.pg.run(sql, [gid])).rows : ((await my.execute(sql, [gid]))[0] as Record<string, unknown>[]);
  return rows.map((r) => `${String(r.branch_id)}/${String(r.op)}/${String(r.barrier_id)}=${String(r.reason)}`);
}

/** The target of the branch at `path` of `store`'s bank: its URL, or its gRPC method (`trans-out` → `TransOut`). */
function target(store: SqlStore, protocol: DtmProtocol, path: string): string {
  if (protocol === 'http') return `${t.url}/${store}-bank/${path}`;
  const method = path.replace(/(^|-)([a-z])/g, (_m, _d, c: string) => c.toUpperCase());
  return `${t.grpcAddress}/tests.${grpcServiceOf(store)}/${method}`;
}

/** Calls a branch directly, as DTM would (HTTP POST with the query, or gRPC with the dtm-* metadata). */
async function callBranch(store: SqlStore, protocol: DtmProtocol, path: string, query: Record<string, string>, body: Move): Promise<{ status: number; text: string }> {
  if (protocol === 'grpc') return callGrpc(target(store, protocol, path), body, query);
  const res = await fetch(`${target(store, protocol, path)}?${new URLSearchParams(query)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

/** POSTs `body` to this file's DTM server (plain HTTP, as an attacker or another SDK would). */
async function dtmPost(path: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(`${dtm.info.serverUrl}/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, text: await res.text() };
}

interface Recorded {
  transaction: { status: string; rollback_reason?: string } | null;
  branches: { branch_id: string; op: string; status: string }[];
}

/** What this file's DTM server recorded for `gid` (any gid: DtmClient.query would refuse some of these). */
async function recorded(gid: string): Promise<Recorded> {
  return (await (await fetch(`${dtm.info.serverUrl}/query?gid=${encodeURIComponent(gid)}`)).json()) as Recorded;
}

async function waitForStatus(gid: string, status: string, timeoutMs = 20_000): Promise<Recorded> {
  let last: Recorded | undefined;
  await waitUntil(`${JSON.stringify(gid)} ${status}`, async () => (last = await recorded(gid)).transaction?.status === status, { timeoutMs, intervalMs: 200 }).catch(
    (err: Error) => {
      throw new Error(`${err.message}; last seen: ${JSON.stringify(last)}`);
    },
  );
  return last!;
}

const lines = (r: Recorded) => r.branches.map((b) => `${b.op} ${b.status}`);

/**
 * Submits to this file's DTM a one-step saga on PostgreSQL whose gid (`prefix`, then over 128 characters) breaks the
 * key rule, its action and compensation `branch` (targets, the gRPC method of PgBank, the keys of their runs), and
 * asserts it ends failed, the action refused for the gid, the compensation done, no business run, no barrier row.
 */
async function expectLongGidRolledBack(protocol: DtmProtocol, prefix: string, branch: { method: string; action: string; compensate: string; runs: [string, string] }): Promise<void> {
  const gid = `${prefix}-${unique()}-${'p'.repeat(130)}`;
  const move = { account: 1, amount: 7 };
  const payload = protocol === 'grpc' ? requestBytes('tests.PgBank', branch.method, move).toString('latin1') : JSON.stringify(move);
  const submitted = await dtmPost('submit', { gid, trans_type: 'saga', protocol, steps: [{ action: branch.action, compensate: branch.compensate }], payloads: [payload] });
  expect(submitted.status).toBe(200);
  const final = await waitForStatus(gid, 'failed');
  expect(final.transaction?.rollback_reason).toContain(`branch call refused: the gid is ${gid.length} characters, over the limit of 128`);
  expect(lines(final)).toEqual(['compensate succeed', 'action failed']);
  expect(branch.runs.map((key) => t.runs.of(key))).toEqual([0, 0]);
  expect(await balance('pg', 1)).toBe(100);
  expect((await t.sql.pg.run('SELECT count(*)::int AS n FROM dtm_barrier WHERE gid LIKE ?', [`${prefix}-%`])).rows[0].n).toBe(0);
}

describe('SQL injection through a gid, on MariaDB with NO_BACKSLASH_ESCAPES and a multipleStatements pool', () => {
  it('the attack is real: the sessions run NO_BACKSLASH_ESCAPES, and values quoted on the client let a gid run an UPDATE and plant a row', async () => {
    const [mode] = (await t.sql.mysql.run('SELECT @@SESSION.sql_mode AS mode')).rows;
    expect(String(mode.mode)).toContain('NO_BACKSLASH_ESCAPES');
    // mysql2's query(sql, values) on the app's pool: what the barrier did before
    await t.sql.mysql.run(INSERT, row(updateAttack('control')));
    expect(await balance('mysql', 1)).toBe(999999);
    const victim = `v-${unique()}`;
    await t.sql.mysql.run(INSERT, row(plantAttack('control', victim)));
    expect(await barrierRows('mysql', victim)).toEqual(['01/action/01=action']);
  });

  it("a barrier built by hand with the attack gid is refused before anything is written; the barrier's adapters bind that gid on the server: stored as it is, no UPDATE runs, no row is planted (barrier database, its back-check's statement, your own transaction, TypeORM)", async () => {
    const victim = `v-${unique()}`;
    const attacks = { db: updateAttack(`db-${unique()}`), own: updateAttack(`own-${unique()}`), typeorm: plantAttack(`orm-${unique()}`, victim), check: updateAttack(`chk-${unique()}`) };
    const quote = (gid: string) => `the gid has a quote at position ${gid.indexOf("'") + 1}`;

    // a BranchInfo built by hand, through each way to a barrier: refused, DtmUsageError naming the quote
    const info = (gid: string) => ({ transType: 'saga', gid, branchId: '01', op: 'action', headers: {} }) as BranchInfo;
    expect(() => new BranchBarrier('saga', attacks.db, '01', 'action', { table: 'dtm_barrier' })).toThrow(quote(attacks.db));
    expect(() => BranchBarrier.from(info(attacks.typeorm))).toThrow(quote(attacks.typeorm));
    expect(() => t.client.barrier(info(attacks.own))).toThrow(DtmUsageError);
    expect(() => new BranchBarrier('msg', attacks.check, '00', 'msg', { table: 'dtm_barrier' })).toThrow(quote(attacks.check));

    // below the barrier, each adapter given the gid as its insert's parameter
    const db = mysqlBarrierDatabase(nbe);
    expect((await db.transaction(async (_conn, tx) => tx.execute(INSERT, row(attacks.db)))).affected).toBe(1);
    expect((await db.execute(INSERT, row(attacks.check))).affected).toBe(1); // the back-check's insert, outside any transaction

    const conn = await nbe.getConnection();
    try {
      await conn.beginTransaction();
      expect((await mysqlBarrierTransaction(conn).execute(INSERT, row(attacks.own))).affected).toBe(1);
      await conn.commit();
    } finally {
      conn.release();
    }

    const { host, port, user, password, database } = dbs.mariadb.config;
    const source = await new DataSource({ type: 'mariadb', host, port, username: user, password, database, multipleStatements: true }).initialize();
    try {
      await source.transaction(async (manager) => {
        await manager.query(NO_BACKSLASH_ESCAPES);
        expect((await typeormBarrierTransaction(manager, 'mysql').execute(INSERT, row(attacks.typeorm))).affected).toBe(1);
      });
    } finally {
      await source.destroy();
    }

    expect(await balance('mysql', 1)).toBe(100);
    expect(await barrierRows('mysql', victim)).toEqual([]);
    for (const gid of Object.values(attacks)) expect([gid, await barrierRows('mysql', gid)]).toEqual([gid, ['01/action/01=action']]);
  });

  it("a row planted for another gid cannot skip that gid's action: refused by the barrier, bound by the database adapter; the victim's saga through DTM runs its handler", async () => {
    const victim = `v-${unique()}`;
    const planted = plantAttack(`plant-${unique()}`, victim);
    expect(() => new BranchBarrier('saga', planted, '01', 'action', { table: 'dtm_barrier' })).toThrow(DtmUsageError);
    await mysqlBarrierDatabase(nbe).execute(INSERT, row(planted));
    const final = await t.client.newSaga(victim).add('mysql.transIn', { account: 2, amount: 5 }).submitAndWait();
    expect(final.status).toBe('succeed');
    expect(t.runs.of('mysql.transIn')).toBe(1);
    expect(await balance('mysql', 2)).toBe(105);
    expect(await barrierRows('mysql', victim)).toEqual(['01/action/01=action']);
    expect(await barrierRows('mysql', planted)).toEqual(['01/action/01=action']);
  });

  it.each(['http', 'grpc'] as const)('a branch call carrying the attack gid is refused as FAILURE over %s before anything runs or is written; its compensation does nothing', async (protocol) => {
    const gid = updateAttack(`call-${protocol}-${unique()}`);
    const action = await callBranch('mysql', protocol, 'trans-in', { gid, trans_type: 'saga', branch_id: '01', op: 'action' }, { account: 1, amount: 5 });
    expect(action).toEqual({ status: 409, code: protocol === 'grpc' ? 10 : undefined, text: expect.stringContaining(`branch call refused: the gid has a quote at position ${gid.indexOf("'") + 1}`) });
    const compensate = await callBranch('mysql', protocol, 'trans-in-compensate', { gid, trans_type: 'saga', branch_id: '01', op: 'compensate' }, { account: 1, amount: 5 });
    expect(compensate.status).toBe(200);
    expect([t.runs.of('mysql.transIn'), t.runs.of('mysql.transInCompensate')]).toEqual([0, 0]);
    expect(await balance('mysql', 1)).toBe(100);
    expect(await barrierRows('mysql', gid)).toEqual([]);
  });
});

describe('exact barrier keys', () => {
  it("MariaDB: ids that differ only in case are distinct barrier rows, and each branch runs; ids with accents or trailing spaces, which a barrier refuses, are distinct rows too (as a Go service sharing the table may write them)", async () => {
    const u = unique();
    const pair = [`Order-7-${u}`, `order-7-${u}`];
    for (const gid of pair) {
      const outcome = await new BranchBarrier('saga', gid, '01', 'action', { table: 'dtm_barrier' }).callWithDb(t.databases.mysql, async () => 'ran');
      expect([gid, outcome]).toEqual([gid, { executed: true, result: 'ran' }]);
    }
    const gidsIn = async (gids: string[]) => {
      const [rows] = await my.execute('SELECT gid FROM dtm_barrier WHERE gid IN (?, ?)', gids);
      return (rows as { gid: Buffer }[]).map((r) => r.gid.toString('utf8')).sort();
    };
    expect(await gidsIn(pair)).toEqual([...pair].sort());
    for (const [refused, other, problem] of [[`x-${u} `, `x-${u}`, 'a space'], [`\u00e9-${u}`, `e-${u}`, 'a non-ASCII character (U+00E9)']]) {
      expect(() => new BranchBarrier('saga', refused, '01', 'action', { table: 'dtm_barrier' })).toThrow(`the gid has ${problem} at position`);
      for (const gid of [refused, other]) expect((await my.execute(INSERT, row(gid)))[0]).toMatchObject({ affectedRows: 1 });
      expect(await gidsIn([refused, other])).toEqual([refused, other].sort());
    }
  });

  it('MariaDB: a table created before (character key columns) collides; ensureBarrierSchema names the ALTER, and after it the ids are distinct', async () => {
    await my.query('DROP TABLE IF EXISTS old_barrier');
    await my.query(`CREATE TABLE old_barrier (
      trans_type varchar(45) NOT NULL DEFAULT '', gid varchar(128) NOT NULL DEFAULT '', branch_id varchar(128) NOT NULL DEFAULT '',
      op varchar(45) NOT NULL DEFAULT '', barrier_id varchar(45) NOT NULL DEFAULT '', reason varchar(45) NOT NULL DEFAULT '',
      create_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP, update_time datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
      PRIMARY KEY (gid, branch_id, op, barrier_id)) DEFAULT CHARSET = utf8mb4`);
    const db = mysqlBarrierDatabase(my);
    const error = await ensureBarrierSchema(db, { table: 'old_barrier' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toContain('barrier table old_barrier keeps gid, branch_id, op, barrier_id in character columns');
    expect((error as Error).message).toContain(barrierBinaryKeysSql('old_barrier'));
    const call = (gid: string) => new BranchBarrier('saga', gid, '01', 'action', { table: 'old_barrier' }).callWithDb(db, async () => 'ran');
    const u = unique();
    // the finding: the second branch answers without running
    expect([await call(`Order-7-${u}`), await call(`order-7-${u}`)]).toEqual([
      { executed: true, result: 'ran' },
      { executed: false, reason: 'duplicate' },
    ]);
    await my.query(barrierBinaryKeysSql('old_barrier'));
    await expect(ensureBarrierSchema(db, { table: 'old_barrier' })).resolves.toBeUndefined();
    expect([await call(`Order-8-${u}`), await call(`order-8-${u}`)]).toEqual([
      { executed: true, result: 'ran' },
      { executed: true, result: 'ran' },
    ]);
  });

  it("MariaDB: a barrier table with character key columns (DTM's own DDL, shared with Go services, or an earlier version's) fails start-up naming the ALTER, as ensureBarrierSchema does; after the ALTER the app starts", async () => {
    await my.query('DROP TABLE IF EXISTS go_ddl_barrier');
    // sqls/dtmcli.barrier.mysql.sql of DTM v1.19, under another name
    await my.query(`CREATE TABLE go_ddl_barrier (
      id bigint(22) PRIMARY KEY AUTO_INCREMENT, trans_type varchar(45) default '', gid varchar(128) default '', branch_id varchar(128) default '',
      op varchar(45) default '', barrier_id varchar(45) default '', reason varchar(45) default '',
      create_time datetime DEFAULT now(), update_time datetime DEFAULT now(),
      key(create_time), key(update_time), UNIQUE key(gid, branch_id, op, barrier_id)) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4`);
    @Controller('go-ddl')
    @UseBarrier('mysql')
    class GoDdl {
      @Post('in') @SagaAction('goDdl.credit', { compensate: false }) credit() {}
    }
    const start = async () => {
      const moduleRef = await Test.createTestingModule({
        imports: [DtmModule.forRoot({ config: { serverUrl: dtm.info.serverUrl, barrierTable: 'go_ddl_barrier' }, barrierConnections: { mysql: mysqlBarrierDatabase(my) } })],
        controllers: [GoDdl],
      }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      const error = await app.init().then(() => undefined, (e: unknown) => e);
      await app.close();
      return error;
    };
    // the table folds ids: the second of two gids differing in case is skipped as a duplicate
    const call = (gid: string) => new BranchBarrier('saga', gid, '01', 'action', { table: 'go_ddl_barrier' }).callWithDb(mysqlBarrierDatabase(my), async () => 'ran');
    const u = unique();
    expect([await call(`Order-9-${u}`), await call(`order-9-${u}`)]).toEqual([{ executed: true, result: 'ran' }, { executed: false, reason: 'duplicate' }]);
    const error = await start();
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toContain('barrier table go_ddl_barrier keeps gid, branch_id, op, barrier_id in character columns');
    expect((error as Error).message).toContain(barrierBinaryKeysSql('go_ddl_barrier'));
    await my.query(barrierBinaryKeysSql('go_ddl_barrier'));
    expect(await start()).toBeUndefined();
    expect([await call(`Order-10-${u}`), await call(`order-10-${u}`)]).toEqual([{ executed: true, result: 'ran' }, { executed: true, result: 'ran' }]);
  });

  it('MariaDB through DTM: two sagas whose gids differ only in case both run', async () => {
    const u = unique();
    for (const gid of [`Order-7-${u}`, `order-7-${u}`]) {
      expect((await t.client.newSaga(gid).add('mysql.transIn', { account: 2, amount: 3 }).submitAndWait()).status).toBe('succeed');
      expect(await barrierRows('mysql', gid)).toEqual(['01/action/01=action']);
    }
    expect(t.runs.of('mysql.transIn')).toBe(2);
    expect(await balance('mysql', 2)).toBe(106);
  });

  it('the AP refuses such gids before DTM hears of them', async () => {
    const gid = `order-${unique()}-${'7'.repeat(130)}`;
    expect(() => t.client.newSaga(gid)).toThrow(/the gid is 145 characters, over the limit of 128/);
    expect((await recorded(gid)).transaction).toBeNull();
  });

  /** 128 characters: the two long gids below share them (on a non-strict MySQL they were one key). */
  const prefix128 = `long-${unique()}-${'l'.repeat(114)}`;
  it.each<[string, (u: string) => string, string]>([
    ['a trailing space', (u) => `x-${u} `, 'the gid has a space at position 11'],
    ['an accent', (u) => `é-${u}`, 'the gid has a non-ASCII character (U+00E9) at position 1'],
    ['129 characters, sharing its first 128 with another', () => `${prefix128}A`, 'the gid is 129 characters, over the limit of 128'],
    ['130 characters, sharing its first 128 with another', () => `${prefix128}BB`, 'the gid is 130 characters, over the limit of 128'],
  ])('MariaDB through DTM: a gid with %s (sent to DTM by another SDK) is refused; DTM rolls the saga back, the handler never runs, nothing is written', async (_what, make, problem) => {
    const gid = make(unique());
    const submitted = await dtmPost('submit', {
      gid,
      trans_type: 'saga',
      steps: [{ action: target('mysql', 'http', 'trans-in'), compensate: target('mysql', 'http', 'trans-in-compensate') }],
      payloads: [JSON.stringify({ account: 2, amount: 3 })],
    });
    expect(submitted.status).toBe(200);
    const final = await waitForStatus(gid, 'failed');
    expect(final.transaction?.rollback_reason).toContain(`branch call refused: ${problem}`);
    expect(lines(final)).toEqual(['compensate succeed', 'action failed']);
    expect([t.runs.of('mysql.transIn'), t.runs.of('mysql.transInCompensate')]).toEqual([0, 0]);
    expect(await balance('mysql', 2)).toBe(100);
    const [rows] = await my.execute('SELECT gid FROM dtm_barrier WHERE gid LIKE ?', [`%${gid.slice(2, 10)}%`]);
    expect(rows).toEqual([]);
  });

  it.each(['http', 'grpc'] as const)('PostgreSQL over %s: a gid over 128 characters ends as a rolled-back saga, not an endless 500', (protocol) =>
    expectLongGidRolledBack(protocol, `pg-${protocol}`, {
      method: 'TransOut',
      action: target('pg', protocol, 'trans-out'),
      compensate: target('pg', protocol, 'trans-out-compensate'),
      runs: ['pg.transOut', 'pg.transOutCompensate'],
    }),
  );

  it('PostgreSQL: a TCC branch id over 128 characters: its Try is refused, DTM cancels, the cancel does nothing, the transaction fails', async () => {
    const gid = `tcc-${unique()}`;
    const branchId = '0'.repeat(129);
    const move = { account: 1, amount: 40 };
    expect((await dtmPost('prepare', { gid, trans_type: 'tcc' })).status).toBe(200);
    const registered = await dtmPost('registerBranch', {
      gid,
      trans_type: 'tcc',
      branch_id: branchId,
      data: JSON.stringify(move),
      confirm: target('pg', 'http', 'tcc-out-confirm'),
      cancel: target('pg', 'http', 'tcc-out-cancel'),
    });
    expect(registered.status).toBe(200);
    // the AP calls the Try itself
    const tried = await callBranch('pg', 'http', 'tcc-out-try', { gid, trans_type: 'tcc', branch_id: branchId, op: 'try' }, move);
    expect(tried.status).toBe(409);
    expect(tried.text).toContain('branch call refused: the branch id is 129 characters, over the limit of 128');
    expect((await dtmPost('abort', { gid, trans_type: 'tcc', rollback_reason: 'try refused' })).status).toBe(200);
    const final = await waitForStatus(gid, 'failed');
    expect(lines(final)).toEqual(['cancel succeed', 'confirm prepared']);
    expect([t.runs.of('pg.tccOutTry'), t.runs.of('pg.tccOutCancel')]).toEqual([0, 0]);
    expect(await balance('pg', 1)).toBe(100);
    expect(await barrierRows('pg', gid)).toEqual([]);
  });
});

describe("a trans_type DTM never sends (v1.19 sends saga, msg, tcc, xa or workflow)", () => {
  // without branch_auth_keys the call's trans_type went into the barrier row as it came: over 45
  // characters PostgreSQL refused the insert (a 500, which DTM retries for ever), MariaDB in strict
  // mode too; a made-up value (case, control characters) was stored. gRPC metadata carries printable
  // ASCII only, so the control characters are HTTP cells.
  const odd: [string, string][] = [
    ['46 characters', 'x'.repeat(46)],
    ['SAGA (DTM spells it in lower case)', 'SAGA'],
    ['a line feed', 'saga\n'],
    ['a NUL', 'sa\u0000ga'],
  ];
  const cells = (['pg', 'mysql'] as const).flatMap((store) =>
    (['http', 'grpc'] as const).flatMap((protocol) =>
      odd.filter(([, value]) => protocol === 'http' || /^[\x20-\x7e]*$/.test(value)).map(([what, value]) => [store, protocol, what, value] as const),
    ),
  );
  it.each(cells)('%s over %s, a trans_type of %s: the action is refused as FAILURE before anything runs or is written; its compensation does nothing', async (store, protocol, _what, transType) => {
    const gid = `tt-${store}-${protocol}-${unique()}`;
    const move = { account: 1, amount: 5 };
    const action = await callBranch(store, protocol, 'trans-in', { gid, trans_type: transType, branch_id: '01', op: 'action' }, move);
    const compensate = await callBranch(store, protocol, 'trans-in-compensate', { gid, trans_type: transType, branch_id: '01', op: 'compensate' }, move);
    expect({ action, compensate: compensate.status, runs: [t.runs.of(`${store}.transIn`), t.runs.of(`${store}.transInCompensate`)], balance: await balance(store, 1), rows: await barrierRows(store, gid) }).toEqual({
      action: { status: 409, code: protocol === 'grpc' ? 10 : undefined, text: expect.stringContaining('branch call refused: the trans_type is none DTM sends') },
      compensate: 200,
      runs: [0, 0],
      balance: 100,
      rows: [],
    });
  });
});

describe('a route without a branch decorator: @BranchContext() and DtmClient.barrier() by hand get the guard\'s checks', () => {
  /** The target of the hand bank's `path` (`out`, `out-compensate`) of `store` on `protocol`. */
  const handTarget = (store: SqlStore, protocol: DtmProtocol, path: 'out' | 'out-compensate') =>
    protocol === 'http' ? `${t.url}/hand/${store}/${path}` : `${t.grpcAddress}/tests.PgBank/${path === 'out' ? 'ManualOut' : 'ManualOutCompensate'}`;
  const callHand = async (store: SqlStore, protocol: DtmProtocol, path: 'out' | 'out-compensate', query: Record<string, string>, body: Move) => {
    if (protocol === 'grpc') return callGrpc(handTarget(store, protocol, path), body, query);
    const res = await fetch(`${handTarget(store, protocol, path)}?${new URLSearchParams(query)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, text: await res.text() };
  };
  /** What the route answers for a call refused for `problem`: the guard's FAILURE, word for word. */
  const refused = (protocol: DtmProtocol, problem: string) => {
    const message = `branch call refused: ${problem}; the handler did not run and nothing was written`;
    return protocol === 'grpc' ? { status: 409, code: 10, text: message } : { status: 409, text: JSON.stringify({ dtm_result: 'FAILURE', message }) };
  };
  const transTypeProblem = 'the trans_type is none DTM sends (saga, msg, tcc, xa, workflow, in lower case)';
  const stores = [
    ['pg', 'http'],
    ['pg', 'grpc'],
    ['mysql', 'http'],
  ] as const;
  const u = () => unique();
  const bad: [string, (store: string, protocol: string) => Record<string, string>, string][] = [
    ['a trans_type of 46 characters', (s, p) => ({ gid: `hand-${s}-${p}-${u()}`, trans_type: 'x'.repeat(46) }), transTypeProblem],
    ['a trans_type SAGA', (s, p) => ({ gid: `hand-${s}-${p}-${u()}`, trans_type: 'SAGA' }), transTypeProblem],
    ['a trans_type with a line feed', (s, p) => ({ gid: `hand-${s}-${p}-${u()}`, trans_type: 'saga\n' }), transTypeProblem],
    ['a gid with a space', (s, p) => ({ gid: `hand-${s}-${p} ${u()}`, trans_type: 'saga' }), "the gid has a space at position 16 (gids and branch ids are printable ASCII without spaces, quotes, backslashes or ';')"],
    ['a gid of 129 characters', (s, p) => ({ gid: `hand-${s}-${p}-${u()}-`.padEnd(129, 'g'), trans_type: 'saga' }), "the gid is 129 characters, over the limit of 128 (DTM's SQL stores and the barrier table keep it in varchar(128))"],
    ['a branch id with a quote', (s, p) => ({ gid: `hand-${s}-${p}-${u()}`, trans_type: 'saga', branch_id: "0'1" }), "the branch id has a quote at position 2 (gids and branch ids are printable ASCII without spaces, quotes, backslashes or ';')"],
  ];
  // gRPC metadata carries printable ASCII only: the line feed is an HTTP cell
  const cells = stores.flatMap(([store, protocol]) => bad.filter(([what]) => protocol === 'http' || !what.includes('line feed')).map(([what, make, problem]) => [store, protocol, what, make, problem] as const));

  it.each(cells)('%s over %s, %s: the action is refused as the guard refuses it (FAILURE), no business runs, no row; its compensation succeeds without its business', async (store, protocol, _what, make, problem) => {
    // store and protocol padded: the gid's space is at the same position in every cell
    const keys: Record<string, string> = { branch_id: '01', ...make(store.padEnd(5, '-'), protocol.padEnd(4, '-')) };
    const move = { account: 1, amount: 5 };
    const action = await callHand(store, protocol, 'out', { ...keys, op: 'action' }, move);
    const compensate = await callHand(store, protocol, 'out-compensate', { ...keys, op: 'compensate' }, move);
    expect({ action, compensate: compensate.status, skipped: compensate.text.includes('null-compensation'), runs: [t.runs.of(`hand.${store}.out`), t.runs.of(`hand.${store}.outCompensate`)], balance: await balance(store, 1), rows: await barrierRows(store, keys.gid) }).toEqual({
      action: refused(protocol, problem),
      compensate: 200,
      skipped: true,
      runs: [0, 0],
      balance: 100,
      rows: [],
    });
  });

  it.each(stores)('%s over %s, an op DTM never sends: refused as FAILURE, nothing written; a call DTM sends runs its business behind the barrier', async (store, protocol) => {
    const gid = `hand-op-${store}-${protocol}-${unique()}`;
    const move = { account: 1, amount: 5 };
    const made = await callHand(store, protocol, 'out', { gid, trans_type: 'saga', branch_id: '01', op: 'ACTION' }, move);
    expect(made).toEqual(refused(protocol, "the op is none DTM sends (action, compensate, try, confirm, cancel, commit, rollback, msg; a workflow's resume, trans_type workflow and branch 00, its name)"));
    expect([t.runs.of(`hand.${store}.out`), await barrierRows(store, gid)]).toEqual([0, []]);
    // the same route serves DTM's calls: the business runs once, its row written
    const action = await callHand(store, protocol, 'out', { gid, trans_type: 'saga', branch_id: '01', op: 'action' }, move);
    expect({ status: action.status, executed: action.text.includes('executed'), runs: t.runs.of(`hand.${store}.out`), balance: await balance(store, 1), rows: await barrierRows(store, gid) }).toEqual({
      status: 200,
      executed: true,
      runs: 1,
      balance: 95,
      rows: ['01/action/01=action'],
    });
  });

  it.each(['http', 'grpc'] as const)('PostgreSQL over %s through DTM: a gid over 128 characters ends as a rolled-back saga, not an endless 500; no business ran, no row', (protocol) =>
    expectLongGidRolledBack(protocol, `hand-dtm-${protocol}`, {
      method: 'ManualOut',
      action: handTarget('pg', protocol, 'out'),
      compensate: handTarget('pg', protocol, 'out-compensate'),
      runs: ['hand.pg.out', 'hand.pg.outCompensate'],
    }),
  );
});

/** Error lines the XA app logged. */
const logged: string[] = [];
const captureLogger: LoggerService = {
  log: () => undefined,
  warn: () => undefined,
  debug: () => undefined,
  verbose: () => undefined,
  error: (message: unknown, ...rest: unknown[]) => void logged.push([message, ...rest].map(String).join(' ')),
};

/** The MariaDB session (thread id) each gid's XA branch ran on. */
const xaSessions = new Map<string, number>();

@Controller('xa')
class XaBank {
  @Post('mysql')
  @XaBranch('securityXaMysql', { db: 'mysql' })
  async mysql(@Body() m: Move, @BarrierTx() conn: mysql.Connection, @BranchContext() b: BranchInfo) {
    xaSessions.set(b.gid, conn.threadId);
    await conn.execute('UPDATE account SET balance = balance + ? WHERE id = ?', [m.amount, m.account]);
  }

  @Post('pg')
  @XaBranch('securityXaPg', { db: 'pg' })
  async pg(@Body() m: Move, @BarrierTx() client: pg.Client) {
    await client.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
  }
}

describe('XA phase 2 of an xid the database does not know', () => {
  let xaApp: INestApplication;
  let xaUrl: string;
  let client: DtmClient;

  beforeAll(async () => {
    // the XA branch connects to MariaDB with no more than a business account has: DML on its database
    const leastUser = `xa_${unique()}`;
    await t.sql.mysql.run(`CREATE USER '${leastUser}'@'%' IDENTIFIED BY 'xa-test'`);
    await t.sql.mysql.run(`GRANT SELECT, INSERT, UPDATE, DELETE ON \`${dbs.mariadb.database}\`.* TO '${leastUser}'@'%'`);
    const leastConfig = { ...dbs.mariadb.config, user: leastUser, password: 'xa-test' };
    const moduleRef = await Test.createTestingModule({
      imports: [
        DtmModule.forRoot({
          config: { serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress, barrierTable: 'dtm_barrier' },
          xaConnections: {
            mysql: mysqlXaDatabase(() => mysql.createConnection(leastConfig)),
            pg: pgXaAt(dbs.postgres.url),
          },
        }),
      ],
      controllers: [XaBank],
    }).compile();
    xaApp = moduleRef.createNestApplication({ logger: captureLogger, forceCloseConnections: true });
    keepConnectionsForDtm(xaApp);
    await xaApp.listen(0, '127.0.0.1');
    xaUrl = `http://127.0.0.1:${(xaApp.getHttpServer().address() as { port: number }).port}/xa`;
    client = xaApp.get(DtmClient);
  });
  afterAll(async () => {
    await xaApp?.close();
  });

  /** Phase 2 as DTM sends it: POST, empty body, the keys in the query. */
  const phase2 = async (store: SqlStore, gid: string, op: 'commit' | 'rollback') =>
    (await fetch(`${xaUrl}/${store}?${new URLSearchParams({ gid, trans_type: 'xa', branch_id: '01', op })}`, { method: 'POST' })).status;

  it.each(['mysql', 'pg'] as const)('%s: a branch rolled back behind DTM\'s back: DTM\'s commit is answered with an error and a log line naming gid and branch, never as committed', async (store) => {
    const gid = await client.generateGid();
    await client.xaGlobalTransaction(gid, async (xa) => {
      await xa.callBranch({ account: 1, amount: 30 }, `${xaUrl}/${store}`);
      // behind DTM's back: the prepared branch is rolled back in the database
      if (store === 'mysql') await onceDetached(dbs.mariadb.config, xaSessions.get(gid)!, () => t.sql.mysql.run(`XA ROLLBACK '${gid}-01'`));
      else await t.sql.pg.run(`ROLLBACK PREPARED '${gid}-01'`);
    });
    // DTM commits as soon as the transaction is submitted
    await waitUntil('the commit answered with an error and logged', async () => logged.some((l) => l.includes(`gid ${gid}, branch 01, op commit`)), { timeoutMs: 15_000 });
    expect(logged.find((l) => l.includes(`gid ${gid}, branch 01, op commit`))).toContain(
      `XA commit of gid ${gid}, branch 01: the database has no prepared XA transaction ${gid}-01, and no barrier row says it committed`,
    );
    await sleep(500);
    const record = await recorded(gid);
    expect(record.transaction?.status).toBe('submitted');
    expect(lines(record)).toEqual(['rollback prepared', 'commit prepared']);
    expect(await balance(store, 1)).toBe(100);
    expect(await barrierRows(store, gid)).toEqual([]);
    expect((await dtmPost('forceStop', { gid })).status).toBe(200);
  });

  /**
   * A MariaDB connection holding the prepared XA branch `<gid>-01` of XaBank.mysql (its barrier row
   * and +30 on account 1), as the branch leaves it just before its connection is closed.
   */
  async function preparedAndHeld(gid: string): Promise<mysql.Connection> {
    const held = await mysql.createConnection(dbs.mariadb.config);
    await held.query(`XA START '${gid}-01'`);
    await held.execute(INSERT, ['xa', gid, '01', 'action', '01', 'action']);
    await held.execute('UPDATE account SET balance = balance + 30 WHERE id = 1');
    await held.query(`XA END '${gid}-01'`);
    await held.query(`XA PREPARE '${gid}-01'`);
    return held;
  }

  it.each([
    ['commit', 130, '01/action/01=action'],
    ['rollback', 100, '01/action/01=rollback'],
  ] as const)('mysql: a %s that arrives while the connection that prepared the branch is still open waits for it to close, then finishes the branch', async (op, balanceAfter, rowAfter) => {
    const gid = `held-${unique()}`;
    const held = await preparedAndHeld(gid);
    const answered = phase2('mysql', gid, op);
    await sleep(300);
    // until now every other connection's XA COMMIT / ROLLBACK said XAER_NOTA, though XA RECOVER lists it
    expect(await balance('mysql', 1)).toBe(100);
    await held.end();
    expect(await answered).toBe(200);
    expect(await balance('mysql', 1)).toBe(balanceAfter);
    expect(await barrierRows('mysql', gid)).toEqual([rowAfter]);
    expect(logged.filter((l) => l.includes(gid))).toEqual([]);
  });

  it('mysql: a rollback that arrives while the branch\'s action still runs waits for it to prepare and let go, then rolls it back', async () => {
    const gid = `held-${unique()}`;
    const running = await mysql.createConnection(dbs.mariadb.config);
    await running.query(`XA START '${gid}-01'`);
    await running.execute(INSERT, ['xa', gid, '01', 'action', '01', 'action']);
    await running.execute('UPDATE account SET balance = balance + 30 WHERE id = 1');
    const answered = phase2('mysql', gid, 'rollback');
    await sleep(300);
    // the action ends: prepared, its connection closed (as the branch does)
    await running.query(`XA END '${gid}-01'`);
    await running.query(`XA PREPARE '${gid}-01'`);
    await running.end();
    expect(await answered).toBe(200);
    expect(await balance('mysql', 1)).toBe(100);
    expect(await barrierRows('mysql', gid)).toEqual(['01/action/01=rollback']);
    expect(logged.filter((l) => l.includes(gid))).toEqual([]);
  });

  it('mysql: a phase 2 whose branch stays held by an open connection fails after a second with an error saying so, and succeeds once it is closed', async () => {
    const gid = `held-${unique()}`;
    const held = await preparedAndHeld(gid);
    try {
      const started = Date.now();
      expect(await phase2('mysql', gid, 'commit')).toBe(500);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
      expect(logged.find((l) => l.includes(`gid ${gid}, branch 01, op commit`))).toContain(
        `XA commit of gid ${gid}, branch 01: the XA transaction ${gid}-01 is still held by the connection that runs or prepared it`,
      );
      expect(await balance('mysql', 1)).toBe(100);
    } finally {
      await held.end();
    }
    // DTM's retry
    expect(await phase2('mysql', gid, 'commit')).toBe(200);
    expect(await balance('mysql', 1)).toBe(130);
    expect(await barrierRows('mysql', gid)).toEqual(['01/action/01=action']);
  });

  /**
   * A PostgreSQL session running the action of XaBank.pg's branch `<gid>-01` as the branch does before
   * its PREPARE TRANSACTION (its barrier row and +30 on account 1): DTM's rollback can arrive now, the
   * branch being registered before it prepares.
   */
  async function pgActionRunning(gid: string): Promise<pg.Client> {
    const running = new pg.Client({ connectionString: dbs.postgres.url });
    await running.connect();
    await running.query('BEGIN');
    await running.query('INSERT INTO dtm_barrier (trans_type, gid, branch_id, op, barrier_id, reason) VALUES ($1, $2, $3, $4, $5, $6)', ['xa', gid, '01', 'action', '01', 'action']);
    await running.query('UPDATE account SET balance = balance + 30 WHERE id = 1');
    return running;
  }

  const pgPrepared = async (gid: string) => (await t.sql.pg.run('SELECT gid FROM pg_prepared_xacts WHERE gid = ?', [`${gid}-01`])).rows.map((r) => String(r.gid));

  it('pg: a rollback that arrives while the branch\'s action still runs waits for it to prepare, then rolls it back', async () => {
    const gid = `held-${unique()}`;
    const running = await pgActionRunning(gid);
    let answered: unknown;
    try {
      const call = phase2('pg', gid, 'rollback');
      await sleep(300);
      // the action ends: prepared, its connection closed (as the branch does)
      await running.query(`PREPARE TRANSACTION '${gid}-01'`);
      answered = await settledWithin(call, 5000);
    } finally {
      await running.end();
      // had the rollback not answered, it would wait on the prepared branch, which only this frees
      if (answered !== 200) await t.sql.pg.run(`ROLLBACK PREPARED '${gid}-01'`).catch(() => undefined);
    }
    expect(answered).toBe(200);
    expect(await pgPrepared(gid)).toEqual([]);
    expect(await balance('pg', 1)).toBe(100);
    expect(await barrierRows('pg', gid)).toEqual(['01/action/01=rollback']);
    expect(logged.filter((l) => l.includes(gid))).toEqual([]);
  });

  it('pg: a rollback whose branch\'s action keeps running fails after a second with an error saying so, and DTM\'s retry rolls the branch back once it prepared', async () => {
    const gid = `held-${unique()}`;
    const running = await pgActionRunning(gid);
    try {
      const started = Date.now();
      expect(await settledWithin(phase2('pg', gid, 'rollback'), 5000)).toBe(500);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
      expect(logged.find((l) => l.includes(`gid ${gid}, branch 01, op rollback`))).toContain(
        `XA rollback of gid ${gid}, branch 01: the branch's action still runs after`,
      );
      expect(await barrierRows('pg', gid)).toEqual([]);
      await running.query(`PREPARE TRANSACTION '${gid}-01'`);
    } finally {
      await running.end(); // unprepared, its transaction ends with it (and frees a rollback still waiting)
    }
    expect(await pgPrepared(gid)).toEqual([`${gid}-01`]);
    // DTM's retry
    expect(await phase2('pg', gid, 'rollback')).toBe(200);
    expect(await pgPrepared(gid)).toEqual([]);
    expect(await balance('pg', 1)).toBe(100);
    expect(await barrierRows('pg', gid)).toEqual(['01/action/01=rollback']);
  });

  it.each([
    ['mysql', 'commit', 130, '01/action/01=action'],
    ['mysql', 'rollback', 100, '01/action/01=rollback'],
    ['pg', 'commit', 130, '01/action/01=action'],
    ['pg', 'rollback', 100, '01/action/01=rollback'],
  ] as const)('%s: the same %s of a prepared branch twice at once (DTM\'s retry overlapping its first call): the branch is finished once, each call answered', async (store, op, balanceAfter, rowAfter) => {
    const gid = `twice-${unique()}`;
    if (store === 'mysql') await (await preparedAndHeld(gid)).end();
    else {
      const running = await pgActionRunning(gid);
      await running.query(`PREPARE TRANSACTION '${gid}-01'`);
      await running.end();
    }
    const answers = await Promise.all([phase2(store, gid, op), phase2(store, gid, op)]);
    const errors = logged.filter((l) => l.includes(gid));
    expect([answers, errors]).toEqual([[200, 200], []]);
    expect(await balance(store, 1)).toBe(balanceAfter);
    expect(await barrierRows(store, gid)).toEqual([rowAfter]);
  });

  it.each(['mysql', 'pg'] as const)('%s: a rollback of a committed branch is an error too; a rollback of a branch that never prepared is done, and recorded so that no commit can follow', async (store) => {
    const committed = await client.generateGid();
    await client.xaGlobalTransaction(committed, (xa) => xa.callBranch({ account: 1, amount: 30 }, `${xaUrl}/${store}`));
    expect((await waitForStatus(committed, 'succeed')).transaction?.status).toBe('succeed');
    expect(await phase2(store, committed, 'commit')).toBe(200); // a repeated commit: its barrier row says it committed
    expect(await phase2(store, committed, 'rollback')).toBe(500);
    expect(logged.find((l) => l.includes(`gid ${committed}, branch 01, op rollback`))).toContain('its barrier row says it committed');
    expect(await balance(store, 1)).toBe(130);
    expect(await barrierRows(store, committed)).toEqual(['01/action/01=action']);

    const never = `never-${unique()}`;
    expect(await phase2(store, never, 'rollback')).toBe(200);
    expect(await barrierRows(store, never)).toEqual(['01/action/01=rollback']);
    expect(await phase2(store, never, 'commit')).toBe(500);
    expect(logged.find((l) => l.includes(`gid ${never}, branch 01, op commit`))).toContain('its barrier row says it was rolled back');
  });
});
