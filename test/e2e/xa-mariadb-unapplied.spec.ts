// MariaDB (seen on 10.11) acknowledges an XA COMMIT | ROLLBACK that reaches it while it is still
// detaching the prepared XA transaction from the connection that prepared it and has just closed,
// and applies nothing: the id is free for other connections a moment before InnoDB lets go of the
// transaction. The id is then gone from XA RECOVER while the transaction stays prepared with its
// row locks, until the server restarts. The module used to answer such a phase 2 as done: a commit DTM
// recorded that never happened. Here the branch is prepared on a connection of the test's (as the
// module's @XaBranch leaves it, registered with DTM), whose session holds 100 000 prepared
// statements, which the server frees inside that window (about 0.25 s); its phase 2 is sent once
// the server has begun closing that session (the process list shows it 'Killed'), so it lands in
// the window (one sent before the detach gets XAER_NOTA, its row locked, and the module's retry
// 0.1 s later could come after the window). The file runs its own MariaDB (it is restarted) and its
// own DTM.
import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Body, Controller, HttpCode, Post, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import mysql from 'mysql2/promise';
import { BarrierTx, DtmClient, DtmModule, mysqlXaDatabase, XaBranch } from 'nestjs-dtm';
import { useOwnDtm } from '../support/fixtures.js';
import { harness } from '../support/harness.js';
import { LineLogger } from '../support/line-logger.js';
import { startMariadb } from '../support/services/mariadb.js';
import { runDirFrom, waitUntil, type ManagedProcess } from '../support/services/process.js';

/**
 * Prepared statements of the branch's session, each in the smallest memory blocks (1.7 GB in all):
 * the server frees them inside the window, keeping it open for about 0.25 s.
 */
const PREPARED_STATEMENTS = 100_000;

const dtm = useOwnDtm('dtm-xa-unapplied');
let mariadb: Awaited<ReturnType<typeof startMariadb>>;
let mariadbProcess: ManagedProcess;
let config: mysql.ConnectionOptions;
let app: INestApplication;
let url: string;
let client: DtmClient;

const logger = new LineLogger();
/** The error lines the app logged about `gid`'s branch 01 and `op`. */
const errorsOf = (gid: string, op: string) => logger.lines.filter((l) => l.startsWith('error ') && l.includes(`gid ${gid}, branch 01, op ${op}`));

@Controller('xa')
class Bank {
  /** The module's XA branch; its action is not called here (the test prepares the branch itself), only its phase 2. */
  @Post('move')
  @HttpCode(200)
  @XaBranch('unappliedXa', { db: 'mysql' })
  async move(@Body() m: { account: number; amount: number }, @BarrierTx() conn: mysql.Connection) {
    await conn.execute('UPDATE account SET balance = balance + ? WHERE id = ?', [m.amount, m.account]);
  }
}

beforeAll(async () => {
  mariadb = await startMariadb(runDirFrom(harness().runDir), { name: 'mariadb-xa-unapplied' });
  mariadbProcess = mariadb.process;
  const { host, port, user, password } = mariadb.info;
  const admin = await mysql.createConnection({ host, port, user, password });
  await admin.query('CREATE DATABASE bank');
  await admin.end();
  config = { host, port, user, password, database: 'bank' };
  await sql('CREATE TABLE account (id INT PRIMARY KEY, balance INT NOT NULL)');
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { ...dtm.config(), barrierTable: 'dtm_barrier', createBarrierTable: true },
        xaConnections: { mysql: mysqlXaDatabase(() => mysql.createConnection(config)) },
      }),
    ],
    controllers: [Bank],
  }).compile();
  app = moduleRef.createNestApplication({ logger, forceCloseConnections: true });
  await app.listen(0, '127.0.0.1');
  url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/xa/move`;
  client = app.get(DtmClient);
}, 120_000);

afterAll(async () => {
  await app?.close();
  await mariadbProcess?.stop();
});

/** Runs `statement` on a new connection to the file's MariaDB (`bank`). */
async function sql(statement: string, params: unknown[] = []): Promise<mysql.RowDataPacket[]> {
  const conn = await mysql.createConnection(config);
  try {
    return (await conn.query<mysql.RowDataPacket[]>(statement, params))[0];
  } finally {
    await conn.end();
  }
}

const balance = async () => Number((await sql('SELECT balance FROM account WHERE id = 1'))[0].balance);
const barrierRows = async (gid: string) => (await sql('SELECT op, barrier_id, reason FROM dtm_barrier WHERE gid = ?', [gid])).map((r) => `${r.op}/${r.barrier_id}=${r.reason}`);
const xaRecover = async () => (await sql('XA RECOVER')).map((r) => String(r.data));
/** Whether another transaction holds the lock of `gid`'s barrier row (asked without waiting). */
async function barrierRowLocked(gid: string): Promise<boolean> {
  try {
    await sql("SELECT reason FROM dtm_barrier WHERE gid = ? AND branch_id = '01' AND op = 'action' AND barrier_id = '01' FOR UPDATE NOWAIT", [gid]);
    return false;
  } catch (err) {
    if ((err as { errno?: number }).errno === 1205) return true;
    throw err;
  }
}

/** Phase 2 as DTM sends it: POST, empty body, the keys in the query. */
async function phase2(gid: string, op: 'commit' | 'rollback'): Promise<number> {
  return (await fetch(`${url}?${new URLSearchParams({ gid, trans_type: 'xa', branch_id: '01', op })}`, { method: 'POST' })).status;
}

/**
 * Prepares XA branch 01 of `gid` as the module's @XaBranch does (its barrier row and +30 on account 1)
 * on a new connection whose session holds {@link PREPARED_STATEMENTS} prepared statements, and leaves
 * that connection open.
 */
async function preparedSlowToDetach(gid: string): Promise<mysql.Connection> {
  const held = await mysql.createConnection({ ...config, multipleStatements: true });
  await held.query(`SET GLOBAL max_prepared_stmt_count = ${2 * PREPARED_STATEMENTS}`); // (a restart resets it)
  await held.query('SET SESSION query_prealloc_size = 1024, query_alloc_block_size = 1024');
  for (let i = 0; i < PREPARED_STATEMENTS; i += 2000) {
    await held.query(Array.from({ length: 2000 }, (_, j) => `PREPARE s${i + j} FROM 'SELECT balance FROM account WHERE id = ? AND balance > ${i + j}'`).join('; '));
  }
  await held.query(`XA START '${gid}-01'`);
  await held.execute('INSERT INTO dtm_barrier (trans_type, gid, branch_id, op, barrier_id, reason) VALUES (?, ?, ?, ?, ?, ?)', ['xa', gid, '01', 'action', '01', 'action']);
  await held.execute('UPDATE account SET balance = balance + 30 WHERE id = 1');
  await held.query(`XA END '${gid}-01'`);
  await held.query(`XA PREPARE '${gid}-01'`);
  return held;
}

/** Closes `conn`, and resolves once the server has begun closing its session (its process list row 'Killed', or gone). */
async function closedOnServer(conn: mysql.Connection): Promise<void> {
  const monitor = await mysql.createConnection(config);
  try {
    await conn.end(); // resolves once the quit is sent
    await waitUntil(`session ${conn.threadId} closing`, async () => {
      const [rows] = await monitor.query<mysql.RowDataPacket[]>('SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = ?', [conn.threadId]);
      return rows.length === 0 || rows[0].COMMAND !== 'Sleep';
    }, { timeoutMs: 10_000, intervalMs: 2 });
  } finally {
    await monitor.end();
  }
}

describe('an XA phase 2 MariaDB acknowledges without applying it', () => {
  it.each([
    ['commit', 130, 'action/01=action', 'succeed', ['rollback prepared', 'commit succeed']],
    ['rollback', 100, 'action/01=rollback', 'failed', ['rollback succeed', 'commit prepared']],
  ] as const)(
    '%s: answered with an error and logged, never as done; the branch stays prepared with its locks; after a restart of MariaDB, DTM finishes it',
    async (op, balanceAfter, rowAfter, status, lines) => {
      await sql('DELETE FROM account');
      await sql('INSERT INTO account (id, balance) VALUES (1, 100)');
      const gid = await client.generateGid();
      const xid = `${gid}-01`;
      const body = client.xaGlobalTransaction(gid, async () => {
        // the branch's action, as the module's @XaBranch runs it: registered with DTM, then prepared
        expect((await dtm.dtmPost('/registerBranch', { gid, trans_type: 'xa', branch_id: '01', url })).status).toBe(200);
        const held = await preparedSlowToDetach(gid);
        // the branch's connection closes, and the phase 2 arrives as soon as the server began closing the session
        await closedOnServer(held);
        expect(await phase2(gid, op)).toBe(500);
        expect(errorsOf(gid, op)).toEqual([
          expect.stringContaining(`XA ${op} of gid ${gid}, branch 01: the database acknowledged XA ${op.toUpperCase()} '${xid}' but did not apply it`),
        ]);
        // what MariaDB left: the id gone from XA RECOVER, the branch's transaction prepared with its locks
        expect(await xaRecover()).not.toContain(xid);
        expect(await barrierRowLocked(gid)).toBe(true);
        expect(await balance()).toBe(100);
        // DTM's retry before the restart: the id unknown while the row stays locked, "still held"
        expect(await phase2(gid, op)).toBe(500);
        expect(errorsOf(gid, op)[1]).toContain(`the XA transaction ${xid} is still held`);
        mariadbProcess = await mariadb.restart();
        expect(await xaRecover()).toContain(xid);
        if (op === 'rollback') throw new Error('the transaction rolls back');
      });
      if (op === 'commit') await body;
      else await expect(body).rejects.toThrow('the transaction rolls back');
      // DTM's phase 2 after the restart finishes the branch
      await dtm.waitForTransStatus(gid, status, 30_000);
      const record = await dtm.queryTrans(gid);
      expect(record.branches.map((b) => `${b.op} ${b.status}`)).toEqual(lines);
      expect(await xaRecover()).not.toContain(xid);
      expect(await barrierRowLocked(gid)).toBe(false);
      expect(await balance()).toBe(balanceAfter);
      expect(await barrierRows(gid)).toEqual([rowAfter]);
    },
    90_000,
  );
});
