// Local XA branches on MariaDB and PostgreSQL against the real DTM server: the participant runs in
// its own process (test/e2e/xa-participant.app.ts) so that it can be killed after XA PREPARE. Its
// branches are HTTP routes and gRPC methods at once; every scenario runs on both, the transaction
// talking the same protocol to DTM.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Body, Controller, Post, Req, type INestApplication, type NestApplicationOptions, type Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Client, credentials, Metadata, Server, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import mysql from 'mysql2/promise';
import pg from 'pg';
import {
  BarrierTx,
  BranchContext,
  DtmClient,
  DtmFailureError,
  DtmInstrumentation,
  DtmModule,
  DtmUsageError,
  defineBranches,
  ensureBarrierSchema,
  mysqlBarrierDatabase,
  mysqlXaDatabase,
  pgBarrierDatabase,
  pgXaDatabase,
  XaBranch,
  xaBranch,
  type BranchInfo,
  type DtmBranchCallEvent,
  type DtmModuleOptions,
  type DtmProtocol,
  type XaDatabase,
  type StandardSchemaV1,
} from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { startDtmApp, type DtmTestApp } from '../support/dtm-app.js';
import { cronUntilStatus, harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { startPostgres, postgresUrl, type PostgresInfo } from '../support/services/postgres.js';
import { freePort, minimalEnv, runDirFrom, startProcess, waitUntil, type ManagedProcess } from '../support/services/process.js';
import { branchLines, PROTOCOLS } from '../support/fixtures.js';
import { bindGrpcServer, callGrpc, TESTS_GRPC_PROTOS } from '../support/grpc.js';
import { startTrap } from '../support/trap.js';
import { RecordingLogger } from '../support/recording-logger.js';
import { pgXaAt } from '../support/pg-xa.js';

/** The participant's PostgreSQL XA branch as a caller's contract names it, with a schema (a move of a non-zero whole amount). */
const moveSchema: StandardSchemaV1<{ account: number; amount: number }> = {
  '~standard': {
    version: 1,
    vendor: 'nestjs-dtm-tests',
    validate: (value) => {
      const v = value as { account?: unknown; amount?: unknown } | null;
      return Number.isInteger(v?.amount) && v!.amount !== 0 && Number.isInteger(v?.account) ? { value: v as { account: number; amount: number } } : { issues: [{ message: 'must be a non-zero whole number', path: ['amount'] }] };
    },
  },
};
const XaBankBranches = defineBranches('xabank', { pgBank: xaBranch(moveSchema) });

const root = resolve(import.meta.dirname, '..', '..');
let dbs: FileDatabases;
let pgPool: pg.Pool;
let myPool: mysql.Pool;
let ap: DtmTestApp;
let client: DtmClient;
let port: number;
let grpcPort: number;
let participant: ManagedProcess;

/** Starts the participant process on `port` (again, after a kill); `authKey`: with authenticated branch calls, on ports of its own; `checkActions`: with branch_auth_check_actions too. */
async function startParticipant(authKey?: string, ports = { http: port, grpc: grpcPort }, checkActions = false): Promise<ManagedProcess> {
  const runDir = runDirFrom(harness().runDir);
  const name = `xa-participant${authKey ? '-auth' : ''}${checkActions ? '-strict' : ''}`;
  const proc = startProcess({
    name,
    command: process.execPath,
    args: [join(root, '.build', 'test', 'e2e', 'xa-participant.app.js')],
    cwd: root,
    env: minimalEnv({
      PORT: String(ports.http),
      GRPC_PORT: String(ports.grpc),
      ...(authKey ? { BRANCH_AUTH_KEY: authKey } : {}),
      ...(checkActions ? { BRANCH_AUTH_CHECK_ACTIONS: '1' } : {}),
      PG_URL: `${dbs.postgres.url}?application_name=xa-participant`,
      MYSQL_URL: dbs.mariadb.url,
      DTM_URL: harness().dtm.serverUrl,
      DTM_GRPC: harness().dtm.grpcAddress,
    }),
    runDir,
    logFile: join(runDir.path, `${name}-${process.pid}.log`),
  });
  await waitUntil('xa participant', async () => (await fetch(`http://127.0.0.1:${ports.http}/`)).status === 404, { timeoutMs: 20_000, process: proc });
  return proc;
}

/** The target of the XA branch on `store`: its URL, or its gRPC method. */
const target = (store: 'mysql' | 'pg', protocol: DtmProtocol) =>
  protocol === 'http' ? `http://127.0.0.1:${port}/xa/${store}` : `127.0.0.1:${grpcPort}/tests.XaBank/${store === 'mysql' ? 'Mysql' : 'Pg'}`;

async function balances(): Promise<{ mysql: number; pg: number }> {
  const [rows] = await myPool.query('SELECT balance FROM account WHERE id = 1');
  return { mysql: Number((rows as { balance: number }[])[0].balance), pg: Number((await pgPool.query('SELECT balance FROM account WHERE id = 1')).rows[0].balance) };
}

/** This file's gids: XA RECOVER lists the whole server's prepared XA transactions, other test files' included. */
const ours = new Set<string>();

/** Prepared XA branches of this file's transactions left in either database. */
async function pendingXa(): Promise<string[]> {
  const [recovered] = await myPool.query('XA RECOVER');
  const pgPrepared = await pgPool.query('SELECT gid FROM pg_prepared_xacts WHERE database = current_database()');
  const xids = [...(recovered as { data: string }[]).map((r) => `mysql:${r.data}`), ...pgPrepared.rows.map((r) => `pg:${r.gid}`)];
  return xids.filter((xid) => [...ours].some((gid) => xid.includes(gid)));
}

async function barrierRows(gid: string): Promise<string[]> {
  const [my] = await myPool.query('SELECT branch_id, reason FROM dtm_barrier WHERE gid = ? ORDER BY branch_id', [gid]);
  const pgRows = await pgPool.query('SELECT branch_id, reason FROM dtm_barrier WHERE gid = $1 ORDER BY branch_id', [gid]);
  return [...(my as { branch_id: string; reason: string }[]).map((r) => `mysql ${r.branch_id}=${r.reason}`), ...pgRows.rows.map((r) => `pg ${r.branch_id}=${r.reason}`)];
}

/**
 * A Nest app (not listening yet) whose XA branches (`controllers`) run on `xaConnections`, with the
 * harness's DTM and this file's barrier table unless `config` says otherwise.
 */
async function xaApp(xaConnections: Record<string, XaDatabase<unknown>>, controllers: Type[], config: DtmModuleOptions['config'] = {}, appOptions: NestApplicationOptions = { logger: false, forceCloseConnections: true }): Promise<INestApplication> {
  const module = await Test.createTestingModule({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, barrierTable: 'dtm_barrier', ...config }, xaConnections })],
    controllers,
  }).compile();
  return module.createNestApplication(appOptions);
}

/** Starts `app` on a free local port; the base URL of its routes under `path`. */
async function listenAt(app: INestApplication, path: string): Promise<string> {
  await app.listen(0, '127.0.0.1');
  return `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/${path}`;
}

/** An HTTP action call as a wire between the AP and an app saw it: its URL (path and query), dtm-* headers and content type, body. */
type TakenCall = { url: string; headers: Record<string, string>; body: string };

/**
 * An HTTP server on 127.0.0.1 between the AP and an app (at `behind()`, asked at each call): forwards
 * every call (its dtm-* headers, content type and body) and its answer, and keeps the action calls
 * in `taken` as an attacker on the wire would.
 */
async function recordingWire(behind: () => string): Promise<{ url: string; taken: TakenCall[]; close(): Promise<void> }> {
  const taken: TakenCall[] = [];
  const wire = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    req.on('end', () => {
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([name]) => name.startsWith('dtm-') || name === 'content-type')) as Record<string, string>;
      if (req.url!.includes('op=action')) taken.push({ url: req.url!, headers, body });
      void fetch(new URL(req.url!, behind()), { method: req.method, headers, body: body === '' ? undefined : body }).then(async (answer) => {
        res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(await answer.text());
      });
    });
  });
  await new Promise<void>((done) => wire.listen(0, '127.0.0.1', done));
  return { url: `http://127.0.0.1:${(wire.address() as net.AddressInfo).port}`, taken, close: () => new Promise<void>((done) => wire.close(() => done())) };
}

beforeAll(async () => {
  dbs = await fileDatabases();
  pgPool = new pg.Pool({ connectionString: dbs.postgres.url });
  myPool = mysql.createPool(dbs.mariadb.config);
  for (const run of [(s: string) => pgPool.query(s), (s: string) => myPool.query(s)]) {
    await run('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
    await run('INSERT INTO account VALUES (1, 100)');
  }
  await ensureBarrierSchema(pgBarrierDatabase(pgPool), { table: 'dtm_barrier' });
  await ensureBarrierSchema(mysqlBarrierDatabase(myPool), { table: 'dtm_barrier' });
  [port, grpcPort] = [await freePort(), await freePort()];
  participant = await startParticipant();
  ap = await startDtmApp({ grpcProtos: TESTS_GRPC_PROTOS });
  client = ap.client;
  const generateGid = client.generateGid.bind(client);
  client.generateGid = async () => {
    const gid = await generateGid();
    ours.add(gid);
    return gid;
  };
});
afterAll(async () => {
  await ap?.close();
  await participant?.stop();
  await Promise.all([pgPool?.end(), myPool?.end()]);
});

describe.each(PROTOCOLS)('local XA branches on MariaDB and PostgreSQL, over %s', (protocol) => {
  const url = (store: 'mysql' | 'pg') => target(store, protocol);

  it('commit: both branches prepared, registered, then committed by DTM; nothing left prepared', async () => {
    const before = await balances();
    const gid = await client.generateGid();
    await client.xaGlobalTransaction(
      gid,
      async (xa) => {
        await xa.callBranch({ account: 1, amount: -30 }, url('mysql'));
        await xa.callBranch({ account: 1, amount: 30 }, url('pg'));
      },
      { protocol },
    );
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('succeed');
    expect(branchLines(final)).toEqual([
      '01 rollback prepared',
      '01 commit succeed',
      '02 rollback prepared',
      '02 commit succeed',
    ]);
    expect(await balances()).toEqual({ mysql: before.mysql - 30, pg: before.pg + 30 });
    expect(await pendingXa()).toEqual([]);
    expect(await barrierRows(gid)).toEqual(['mysql 01=action', 'pg 02=action']);

    // a repeated phase 2 is harmless: the xid is unknown now, which counts as done
    for (const store of ['mysql', 'pg'] as const) {
      const branchId = store === 'mysql' ? '01' : '02';
      const query = { gid, trans_type: 'xa', branch_id: branchId, op: 'commit' };
      const again = protocol === 'grpc' ? await callGrpc(url(store), undefined, query) : await fetch(`${url(store)}?${new URLSearchParams(query)}`, { method: 'POST' });
      expect(again.status).toBe(200);
    }
    expect(await balances()).toEqual({ mysql: before.mysql - 30, pg: before.pg + 30 });
  });

  /** MariaDB's branch takes 30, then PostgreSQL's branch gives 30 with `fail`: the XA transaction must end failed; DTM's record of it. */
  async function refusedByPg(fail: string) {
    const gid = await client.generateGid();
    const run = client.xaGlobalTransaction(
      gid,
      async (xa) => {
        await xa.callBranch({ account: 1, amount: -30 }, url('mysql'));
        await xa.callBranch({ account: 1, amount: 30, fail }, url('pg'));
      },
      { protocol },
    );
    await expect(run).rejects.toBeInstanceOf(DtmFailureError);
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    return { gid, final };
  }

  it('rollback: the second branch fails, the first branch\'s prepared work is rolled back, balances unchanged', async () => {
    const before = await balances();
    const { gid, final } = await refusedByPg('yes');
    expect(final.rollbackReason).toContain('pg branch refused');
    expect(branchLines(final)).toEqual(['01 rollback succeed', '01 commit prepared']);
    expect(await balances()).toEqual(before);
    expect(await pendingXa()).toEqual([]);
    expect(await barrierRows(gid)).toEqual(['mysql 01=rollback']); // the action's row rolled back; phase 2 wrote this one
  });

  it('a PostgreSQL branch that caught an SQL error prepares nothing (PREPARE TRANSACTION answers ROLLBACK): it answers FAILURE saying so, and the transaction rolls back, the first branch\'s prepared work too', async () => {
    const before = await balances();
    const { gid, final } = await refusedByPg('swallow');
    expect(final.rollbackReason).toContain(`PostgreSQL prepared nothing (PREPARE TRANSACTION '${gid}-02' answered ROLLBACK)`);
    expect(final.rollbackReason).toContain('Fix the code: rethrow the SQL error');
    // the branch registered before its PREPARE: DTM rolls it back too, which finds nothing to undo
    expect(branchLines(final)).toEqual(['01 rollback succeed', '01 commit prepared', '02 rollback succeed', '02 commit prepared']);
    expect(await balances()).toEqual(before);
    expect(await pendingXa()).toEqual([]);
    expect(await barrierRows(gid)).toEqual(['mysql 01=rollback', 'pg 02=rollback']);
  });

  it('a PostgreSQL branch whose code commits its transaction itself (a COMMIT on the XA client) answers FAILURE saying its work is committed outside the XA transaction, not rolled back; DTM\'s rollback of it fails until that work is undone by hand as the error says, then the transaction ends failed', async () => {
    const before = await balances();
    const gid = await client.generateGid();
    const error = await client
      .xaGlobalTransaction(
        gid,
        async (xa) => {
          await xa.callBranch({ account: 1, amount: -30 }, url('mysql'));
          await xa.callBranch({ account: 1, amount: 30, fail: 'commit' }, url('pg'));
        },
        { protocol, retryInterval: 60 },
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    const message = (error as Error).message;
    expect(message).toContain(`committed its transaction itself`);
    expect(message).not.toContain('Its work is rolled back');
    await waitUntil('DTM rolling the MariaDB branch back', async () => (await client.query(gid))?.branches.find((b) => b.branchId === '01' && b.op === 'rollback')?.status === 'succeed', { timeoutMs: 20_000, intervalMs: 300 });
    const held = await client.query(gid);
    // the PostgreSQL branch's work is committed: DTM's rollback of it is refused, the transaction stays aborting
    expect([held?.status, held?.rollbackReason]).toEqual(['aborting', expect.stringContaining('committed its transaction itself')]);
    expect(await balances()).toEqual({ mysql: before.mysql, pg: before.pg + 30 });
    expect(await barrierRows(gid)).toEqual(['mysql 01=rollback', 'pg 02=action']);
    expect(await pendingXa()).toEqual([]);

    // settled by hand as the error says: the work undone and the branch's barrier row deleted in one transaction
    await pgPool.query(`BEGIN; UPDATE account SET balance = balance - 30 WHERE id = 1; DELETE FROM dtm_barrier WHERE gid = '${gid}' AND branch_id = '02'; COMMIT`);
    await cronUntilStatus(gid, 'failed', { intervalMs: 1000 }); // DTM finishing the rollback
    expect(await balances()).toEqual(before);
    expect(await barrierRows(gid)).toEqual(['mysql 01=rollback', 'pg 02=rollback']);
  });

  it('the participant is killed after XA PREPARE; once it is back, DTM\'s retry commits the prepared branch', async () => {
    const before = await balances();
    const gid = await client.generateGid();
    await client.xaGlobalTransaction(
      gid,
      async (xa) => {
        await xa.callBranch({ account: 1, amount: 7 }, url('mysql'));
        await participant.stop(0); // SIGKILL-fast: the branch stays prepared in MariaDB, nobody to commit it
      },
      { protocol },
    );
    expect(await pendingXa()).toEqual([`mysql:${gid}-01`]);
    await new Promise((r) => setTimeout(r, 1500)); // DTM's commit fails: connection refused
    expect((await client.query(gid))?.branches.map((b) => b.status)).toEqual(['prepared', 'prepared']);

    participant = await startParticipant();
    // DTM retries at once when asked; over gRPC its first retries may still fail fast while
    // grpc-go's channel to the restarted participant waits out its reconnect backoff: ask again
    await cronUntilStatus(gid, 'succeed', { intervalMs: 1000 });
    expect(await pendingXa()).toEqual([]);
    expect((await balances()).mysql).toBe(before.mysql + 7);
  });

  it('a transaction that timed out before any branch: the branch cannot register, nothing is prepared or changed', async () => {
    const before = await balances();
    const gid = await client.generateGid();
    const run = client.xaGlobalTransaction(
      gid,
      async (xa) => {
        await waitForTransStatus(gid, 'failed', 20_000); // DTM times it out
        await xa.callBranch({ account: 1, amount: 5 }, url('mysql'));
      },
      { protocol, timeoutToFail: 1, retryInterval: 1 },
    );
    await expect(run).rejects.toBeInstanceOf(DtmFailureError);
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toMatch(/Timeout after 1 seconds/);
    expect(final.branches).toEqual([]);
    expect(await balances()).toEqual(before);
    expect(await pendingXa()).toEqual([]);
  });

  it('every dedicated XA connection is closed again: after commit, phase 2, and a failed action on either database', async () => {
    for (const failing of [undefined, 'pg', 'mysql'] as const) {
      const gid = await client.generateGid();
      await client
        .xaGlobalTransaction(
          gid,
          async (xa) => {
            await xa.callBranch({ account: 1, amount: 1, fail: failing === 'mysql' ? 'yes' : '' }, url('mysql'));
            await xa.callBranch({ account: 1, amount: 1, fail: failing === 'pg' ? 'yes' : '' }, url('pg'));
          },
          { protocol },
        )
        .catch((e: unknown) => expect(e).toBeInstanceOf(DtmFailureError));
      expect((await client.waitForFinal(gid)).status).toBe(failing ? 'failed' : 'succeed');
    }
    // the participant's sessions: PostgreSQL ones by application_name; MariaDB ones are all that
    // use this file's database once the test's own pool is closed (counted from a session without one)
    await myPool.end();
    myPool = mysql.createPool(dbs.mariadb.config);
    const counter = await mysql.createConnection({ ...dbs.mariadb.config, database: undefined });
    const sessions = async () => {
      const [my] = await counter.query('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ?', [dbs.mariadb.database]);
      const pgRows = await pgPool.query("SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE application_name = 'xa-participant'");
      return { mysql: Number((my as { n: number }[])[0].n), pg: pgRows.rows[0].n as number };
    };
    try {
      const closed = async () => Object.values(await sessions()).every((n) => n === 0);
      await waitUntil('the participant closing its XA connections', closed, { timeoutMs: 3000 }).catch(() => undefined); // a session ends shortly after its QUIT
      expect(await sessions()).toEqual({ mysql: 0, pg: 0 });
    } finally {
      await counter.end();
    }
    expect(await pendingXa()).toEqual([]);
  });

  it('an action call naming another DTM server (dtm=) registers with the configured one: nothing reaches the named server, the branch commits', async () => {
    const trap = await startTrap();
    try {
      const before = await balances();
      const gid = await client.generateGid();
      // an AP that names its own DTM server: over HTTP with credentials in it, which the log must not show
      const named = protocol === 'grpc' ? trap.address : `http://admin:trap-secret@${trap.address}/api/dtmsvr`;
      await client.xaGlobalTransaction(
        gid,
        async () => {
          const query = { gid, trans_type: 'xa', branch_id: '01', op: 'action', phase2_url: url('mysql'), dtm: named };
          const body = { account: 1, amount: 4 };
          const answer =
            protocol === 'grpc'
              ? await callGrpc(url('mysql'), body, query)
              : await fetch(`${url('mysql')}?${new URLSearchParams(query)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
          expect(answer.status).toBe(200);
        },
        { protocol },
      );
      const final = await client.waitForFinal(gid);
      expect(final.status).toBe('succeed');
      expect(branchLines(final)).toEqual(['01 rollback prepared', '01 commit succeed']);
      expect((await balances()).mysql).toBe(before.mysql + 4);
      expect(await pendingXa()).toEqual([]);
      expect([trap.connections, trap.received]).toEqual([0, '']);
      const log = readFileSync(participant.logFile, 'utf8');
      const shown = protocol === 'grpc' ? `"${trap.address}"` : `"http://***@${trap.address}/api/dtmsvr"`;
      expect(log).toContain(`a branch call named ${shown} as its DTM server`);
      expect(log).not.toContain('trap-secret');
    } finally {
      await trap.close();
    }
  });

  it('a gid too long for MySQL\'s 64-byte XA id is refused up front with a clear reason', async () => {
    const before = await balances();
    const gid = `too-long-${protocol}-${'x'.repeat(60)}`;
    ours.add(gid);
    const run = client.xaGlobalTransaction(gid, (xa) => xa.callBranch({ account: 1, amount: 5 }, url('mysql')), { protocol });
    await expect(run).rejects.toThrow(/over MySQL's limit of 64: use a shorter gid/);
    expect((await client.waitForFinal(gid)).status).toBe('failed');
    expect(await balances()).toEqual(before);
  });

  it("another service's XA branch by name (a contract entry, resolved from its manifest): DTM commits it; over HTTP a payload the contract's schema refuses never reaches DTM or the branch", async () => {
    const caller = await startDtmApp({ grpcProtos: TESTS_GRPC_PROTOS, config: { services: { xabank: { url: `http://127.0.0.1:${port}` } } } });
    try {
      const before = await balances();
      const gid = await client.generateGid();
      await caller.client.xaGlobalTransaction(gid, async (xa) => void (await xa.callBranch({ account: 1, amount: 12 }, XaBankBranches.pgBank)), { protocol });
      const final = await caller.client.waitForFinal(gid);
      expect([final.status, branchLines(final)]).toEqual(['succeed', ['01 rollback prepared', '01 commit succeed']]);
      expect(final.branches[1].url).toBe(target('pg', protocol));
      expect(await balances()).toEqual({ mysql: before.mysql, pg: before.pg + 12 });
      expect(await pendingXa()).toEqual([]);
      if (protocol === 'http') {
        const refused = await client.generateGid();
        const run = caller.client.xaGlobalTransaction(refused, (xa) => xa.callBranch({ account: 1, amount: 0 }, XaBankBranches.pgBank), { protocol });
        await expect(run).rejects.toMatchObject({ name: 'DtmRemoteBranchError', problem: 'payload', message: expect.stringContaining('amount: must be a non-zero whole number') });
        const record = await client.waitForFinal(refused);
        expect([record.status, record.branches]).toEqual(['failed', []]); // prepared before the body ran, aborted without a branch
        expect(await balances()).toEqual({ mysql: before.mysql, pg: before.pg + 12 });
        expect(await barrierRows(refused)).toEqual([]);
      }
    } finally {
      await caller.close();
    }
  });
});

describe("a PostgreSQL XA database with max_prepared_transactions = 0 (PostgreSQL's default, and the postgres Docker image's)", () => {
  let off: { info: PostgresInfo; process: ManagedProcess } | undefined;
  beforeAll(async () => {
    off = await startPostgres(runDirFrom(harness().runDir), { name: `postgres-no-xa-${process.pid}`, maxPreparedTransactions: 0 });
  }, 60_000);
  afterAll(async () => {
    await off?.process.stop();
  });

  @Controller('xa-off')
  class XaOffController {
    @Post('pay')
    @XaBranch('xaOff.pay', { db: 'pg' })
    pay() {}
  }

  /** An app whose @XaBranch runs on the PostgreSQL at `url` (with this file's barrier table). */
  const appOn = async (url: string) => {
    const connect = async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    };
    return xaApp({ pg: pgXaDatabase(connect) }, [XaOffController], {}, {});
  };

  it('fails start-up with a DtmUsageError saying how to set it, and leaves no connection open; with it set, the app starts', async () => {
    const app = await appOn(postgresUrl(off!.info, 'postgres'));
    const error = await app.init().then(
      () => undefined,
      (err: unknown) => err,
    );
    await app.close();
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toContain('XA database "pg" (PostgreSQL) has max_prepared_transactions = 0');
    expect((error as Error).message).toContain('postgres:16 -c max_prepared_transactions=100');
    const admin = new pg.Client({ connectionString: postgresUrl(off!.info, 'postgres') });
    await admin.connect();
    const open = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
    await admin.end();
    expect(open.rows[0].n).toBe(0);

    const fine = await appOn(dbs.postgres.url);
    await fine.init();
    await fine.close();
  });
});

describe('an XA branch answering with an Observable (over HTTP)', () => {
  const rx = () => `http://127.0.0.1:${port}/xa/pg-rx`;

  it('its work runs before PREPARE, in the XA transaction: DTM commits it', async () => {
    const before = await balances();
    const gid = await client.generateGid();
    await client.xaGlobalTransaction(gid, (xa) => xa.callBranch({ account: 1, amount: 12 }, rx()));
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('succeed');
    expect(branchLines(final)).toEqual(['01 rollback prepared', '01 commit succeed']);
    expect(await balances()).toEqual({ ...before, pg: before.pg + 12 });
    expect(await pendingXa()).toEqual([]);
    expect(await barrierRows(gid)).toEqual(['pg 01=action']);
  });

  it('its error rolls the XA branch back, write and barrier row: the transaction fails, nothing changed', async () => {
    const before = await balances();
    const gid = await client.generateGid();
    const run = client.xaGlobalTransaction(gid, (xa) => xa.callBranch({ account: 1, amount: 12, fail: 'yes' }, rx()));
    await expect(run).rejects.toBeInstanceOf(DtmFailureError);
    expect((await client.waitForFinal(gid)).status).toBe('failed');
    expect(await balances()).toEqual(before);
    expect(await pendingXa()).toEqual([]);
    expect(await barrierRows(gid)).toEqual([]);
  });
});

describe('without branch_auth_keys, an XA action call names where DTM sends its phase 2 (phase2_url, as DTM\'s SDKs take it)', () => {
  it("anyone reaching an XA route while an XA transaction is prepared has DTM call an address of theirs with the commit, and leaves an XA branch prepared that only that address is asked to finish (docs/security.md)", async () => {
    const seen: string[] = [];
    const elsewhere = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"dtm_result":"SUCCESS"}');
    });
    await new Promise<void>((done) => elsewhere.listen(0, '127.0.0.1', done));
    const internal = `http://127.0.0.1:${(elsewhere.address() as net.AddressInfo).port}/internal/admin`;
    const real = target('mysql', 'http');
    const gid = await client.generateGid();
    try {
      await client.xaGlobalTransaction(gid, async (xa) => {
        await xa.callBranch({ account: 1, amount: 0 }, real);
        const query = { gid, trans_type: 'xa', branch_id: '09', op: 'action', phase2_url: internal };
        const forged = await fetch(`${real}?${new URLSearchParams(query)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ account: 2, amount: 0 }) }); // a row the real branch does not lock
        expect(forged.status).toBe(200);
      });
      expect((await client.waitForFinal(gid)).status).toBe('succeed');
      expect(seen).toEqual([expect.stringMatching(/^POST \/internal\/admin\?.*op=commit/)]);
      expect(await pendingXa()).toEqual([expect.stringContaining(gid)]);
    } finally {
      // the forged branch's prepared XA transaction (it holds row locks), committed at the real route
      await fetch(`${real}?${new URLSearchParams({ gid, trans_type: 'xa', branch_id: '09', op: 'commit' })}`, { method: 'POST' });
      await new Promise((done) => elsewhere.close(done));
    }
    expect(await pendingXa()).toEqual([]);
  });
});

describe('with authenticated branch calls', () => {
  const key = randomBytes(33).toString('base64');
  let ports: { http: number; grpc: number };
  let signedParticipant: ManagedProcess;
  let signedAp: DtmTestApp;
  beforeAll(async () => {
    ports = { http: await freePort(), grpc: await freePort() };
    signedParticipant = await startParticipant(key, ports);
    signedAp = await startDtmApp({ grpcProtos: TESTS_GRPC_PROTOS, config: { branchAuthKeys: [key] } });
  });
  afterAll(async () => {
    await signedAp?.close();
    await signedParticipant?.stop();
  });
  const signedUrl = (protocol: DtmProtocol) => (protocol === 'http' ? `http://127.0.0.1:${ports.http}/xa/mysql` : `127.0.0.1:${ports.grpc}/tests.XaBank/Mysql`);
  const unsigned = (protocol: DtmProtocol, query: Record<string, string>, body?: object) =>
    protocol === 'grpc'
      ? callGrpc(signedUrl(protocol), body, query)
      : fetch(`${signedUrl(protocol)}?${new URLSearchParams(query)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined }).then((r) => ({ status: r.status, code: 0 }));
  const refused = (protocol: DtmProtocol) => (protocol === 'http' ? { status: 401 } : { code: 16 });

  it.each(PROTOCOLS)('over %s: an unsigned action prepares nothing; a rollback sent before the commit is refused; the signed transaction commits', async (protocol) => {
    const before = await balances();
    const forgedGid = `forged-xa-${protocol}-${Date.now()}`;
    ours.add(forgedGid);
    const forged = await unsigned(protocol, { gid: forgedGid, trans_type: 'xa', branch_id: '01', op: 'action', phase2_url: signedUrl(protocol) }, { account: 1, amount: 1000 });
    expect(forged).toMatchObject(refused(protocol));
    expect(await pendingXa()).toEqual([]);
    expect(await barrierRows(forgedGid)).toEqual([]);

    const gid = await signedAp.client.generateGid();
    ours.add(gid);
    let early: { status: number; code?: number } | undefined;
    await signedAp.client.xaGlobalTransaction(
      gid,
      async (xa) => {
        await xa.callBranch({ account: 1, amount: 7 }, signedUrl(protocol));
        early = await unsigned(protocol, { gid, trans_type: 'xa', branch_id: '01', op: 'rollback' });
      },
      { protocol },
    );
    expect(early).toMatchObject(refused(protocol));
    const final = await signedAp.client.waitForFinal(gid);
    expect(final.status).toBe('succeed');
    expect(branchLines(final)).toEqual(['01 rollback prepared', '01 commit succeed']);
    expect((await balances()).mysql).toBe(before.mysql + 7);
    expect(await pendingXa()).toEqual([]);
  });
  it("over grpc: the app's own action call, taken off the wire and replayed with another phase2_url (where DTM would send its commit), is refused and prepares nothing", async () => {
    // an attacker on the wire between the app and the participant: serves the action's method itself, keeps the call (answers OK) and replays it with a dtm-phase2_url of its own
    const taken: { metadata: Metadata; bytes: Buffer }[] = [];
    const wire = new Server();
    const raw = (b: Buffer) => b;
    const method = { path: '/tests.XaBank/Mysql', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw };
    wire.addService({ Mysql: method }, {
      Mysql: (call: ServerUnaryCall<Buffer, Buffer>, answer: sendUnaryData<Buffer>) => {
        taken.push({ metadata: call.metadata.clone(), bytes: call.request });
        answer(null, Buffer.alloc(0));
      },
    });
    const wirePort = await bindGrpcServer(wire);
    const gid = await signedAp.client.generateGid();
    ours.add(gid);
    const before = await balances();
    let replay: number | undefined;
    try {
      await signedAp.client.xaGlobalTransaction(
        gid,
        async (xa) => {
          await xa.callBranch({ account: 1, amount: 5 }, `127.0.0.1:${wirePort}/tests.XaBank/Mysql`);
          const metadata = taken[0].metadata.clone();
          expect(metadata.get('dtm-auth-call')).toHaveLength(1);
          metadata.set('dtm-phase2_url', '127.0.0.1:9/tests.XaBank/Mysql');
          const participant = new Client(`127.0.0.1:${ports.grpc}`, credentials.createInsecure());
          replay = await new Promise<number>((done) =>
            participant.makeUnaryRequest(method.path, raw, raw, taken[0].bytes, metadata, { deadline: Date.now() + 10_000 }, (error) => {
              participant.close();
              done(error ? error.code : status.OK);
            }),
          );
        },
        { protocol: 'grpc' },
      );
    } finally {
      wire.forceShutdown();
    }
    expect(taken).toHaveLength(1);
    expect(replay).toBe(status.UNAUTHENTICATED);
    expect(await pendingXa()).toEqual([]);
    expect(await barrierRows(gid)).toEqual([]);
    expect((await balances()).mysql).toBe(before.mysql);
  });
});

describe('with authenticated branch calls, an XA action call taken off the wire and replayed once the transaction ended', () => {
  const key = randomBytes(33).toString('base64');
  /** Each run of a replay branch's business: `<port the call reached> <gid> <store>`. */
  const runs: string[] = [];

  @Controller('xa-replay')
  class XaReplayController {
    @Post('mysql')
    @XaBranch('xaReplay.mysql', { db: 'mysql' })
    async mysql(@Body() m: { amount: number }, @BarrierTx() c: mysql.Connection, @BranchContext() b: BranchInfo, @Req() req: { socket: net.Socket }) {
      runs.push(`${req.socket.localPort} ${b.gid} mysql`);
      await c.execute('UPDATE account SET balance = balance + ? WHERE id = 1', [m.amount]);
    }

    @Post('pg')
    @XaBranch('xaReplay.pg', { db: 'pg' })
    async pg(@Body() m: { amount: number }, @BarrierTx() c: pg.Client, @BranchContext() b: BranchInfo, @Req() req: { socket: net.Socket }) {
      runs.push(`${req.socket.localPort} ${b.gid} pg`);
      await c.query('UPDATE account SET balance = balance + $1 WHERE id = 1', [m.amount]);
    }
  }

  // strict checks actions against DTM's record; loose (the default) is the control: the same call, with the same token, runs its business there
  let strict: INestApplication;
  let loose: INestApplication;
  let strictUrl: string;
  let looseUrl: string;
  let signedAp: DtmTestApp;
  /** Between the AP and strict: forwards every call, keeping the action calls (URL, headers, body) as an attacker on the wire would. */
  let wire: Awaited<ReturnType<typeof recordingWire>>;
  let wireUrl: string;
  let taken: TakenCall[];
  const databases = () => ({ pg: pgXaAt(dbs.postgres.url), mysql: mysqlXaDatabase(() => mysql.createConnection(dbs.mariadb.config)) });
  beforeAll(async () => {
    strict = await xaApp(databases(), [XaReplayController], { branchAuthKeys: [key], branchAuthCheckActions: true });
    strictUrl = await listenAt(strict, 'xa-replay');
    loose = await xaApp(databases(), [XaReplayController], { branchAuthKeys: [key] });
    looseUrl = await listenAt(loose, 'xa-replay');
    wire = await recordingWire(() => strictUrl);
    ({ url: wireUrl, taken } = wire);
    signedAp = await startDtmApp({ config: { branchAuthKeys: [key] } });
  });
  afterAll(async () => {
    await signedAp?.close();
    await wire?.close();
    await strict?.close();
    await loose?.close();
  });

  const portOf = (url: string) => new URL(url).port;
  /** The action call `call` sent again, as it was taken, to the app at `base`. */
  const replay = async (call: (typeof taken)[number], base: string) => {
    const answer = await fetch(new URL(call.url, base), { method: 'POST', headers: call.headers, body: call.body });
    return { status: answer.status, text: await answer.text() };
  };

  it.each(['commit', 'rollback'] as const)('after its %s: with branch_auth_check_actions the action is refused (401) before its business runs; without it, the business runs again and its work is rolled back when DTM refuses the registration; nothing moved twice, nothing left prepared', async (end) => {
    taken.length = 0;
    const gid = await signedAp.client.generateGid();
    ours.add(gid);
    const before = await balances();
    const run = signedAp.client.xaGlobalTransaction(gid, async (xa) => {
      await xa.callBranch({ amount: 6 }, `${wireUrl}/xa-replay/mysql`);
      await xa.callBranch({ amount: 6 }, `${wireUrl}/xa-replay/pg`);
      if (end === 'rollback') throw new DtmFailureError('the order is refused');
    });
    if (end === 'rollback') await expect(run).rejects.toBeInstanceOf(DtmFailureError);
    else await run;
    const final = await signedAp.client.waitForFinal(gid);
    expect(final.status).toBe(end === 'commit' ? 'succeed' : 'failed');
    const after = end === 'commit' ? { mysql: before.mysql + 6, pg: before.pg + 6 } : before;
    expect(await balances()).toEqual(after);
    expect(taken).toHaveLength(2);
    expect(runs.filter((r) => r.includes(gid))).toEqual([`${portOf(strictUrl)} ${gid} mysql`, `${portOf(strictUrl)} ${gid} pg`]);

    const refused = [await replay(taken[0], strictUrl), await replay(taken[1], strictUrl)];
    expect(refused.map((r) => r.status)).toEqual([401, 401]);
    expect(refused[0].text).toContain(`DTM records the xa transaction as ${final.status}, and this op runs only when it is prepared`);
    expect(runs.filter((r) => r.includes(gid))).toHaveLength(2);
    // control: the token is good; without the check the business runs again, and only DTM's refusal to register the branch rolls it back
    const control = [await replay(taken[0], looseUrl), await replay(taken[1], looseUrl)];
    expect(control.map((r) => r.status)).not.toContain(200);
    expect(runs.filter((r) => r.includes(gid) && r.startsWith(portOf(looseUrl)))).toEqual([`${portOf(looseUrl)} ${gid} mysql`, `${portOf(looseUrl)} ${gid} pg`]);
    expect(await balances()).toEqual(after);
    expect(await pendingXa()).toEqual([]);
    expect((await queryTrans(gid)).transaction?.status).toBe(final.status);
  });
});

describe('with authenticated branch calls, an XA action call taken off the wire and replayed while its transaction is still prepared', () => {
  const key = randomBytes(33).toString('base64');
  /** Each run of a branch's business: `<port the call reached> <gid> <store>`. */
  const runs: string[] = [];
  /** `<gid> <store>` of the branches whose first call was refused (`fail`: the first call of a branch fails, any later one does not). */
  const failedOnce = new Set<string>();
  const business = (port: number, b: BranchInfo, store: string, fail: boolean | undefined) => {
    runs.push(`${port} ${b.gid} ${store}`);
    if (fail && !failedOnce.has(`${b.gid} ${store}`)) {
      failedOnce.add(`${b.gid} ${store}`);
      throw new DtmFailureError('not enough funds (yet)');
    }
  };

  @Controller('xa-once')
  class XaOnceController {
    @Post('mysql')
    @XaBranch('xaOnce.mysql', { db: 'mysql' })
    async mysql(@Body() m: { amount: number; fail?: boolean }, @BarrierTx() c: mysql.Connection, @BranchContext() b: BranchInfo, @Req() req: { socket: net.Socket }) {
      await c.execute('UPDATE account SET balance = balance + ? WHERE id = 1', [m.amount]);
      business(req.socket.localPort!, b, 'mysql', m.fail);
    }

    @Post('pg')
    @XaBranch('xaOnce.pg', { db: 'pg' })
    async pg(@Body() m: { amount: number; fail?: boolean }, @BarrierTx() c: pg.Client, @BranchContext() b: BranchInfo, @Req() req: { socket: net.Socket }) {
      await c.query('UPDATE account SET balance = balance + $1 WHERE id = 1', [m.amount]);
      business(req.socket.localPort!, b, 'pg', m.fail);
    }
  }

  // strict: with branch_auth_check_actions; loose (the default): the control. Both wait for locks 5 s at most (branch_timeout)
  let strict: INestApplication;
  let loose: INestApplication;
  const base: { strict: string; loose: string } = { strict: '', loose: '' };
  let signedAp: DtmTestApp;
  /** Between the AP and the app under test (`behind`): forwards every call, keeping the action calls as an attacker on the wire would. */
  let wire: Awaited<ReturnType<typeof recordingWire>>;
  let wireUrl: string;
  let behind = '';
  let taken: TakenCall[];
  const databases = () => ({ pg: pgXaAt(dbs.postgres.url), mysql: mysqlXaDatabase(() => mysql.createConnection(dbs.mariadb.config)) });
  /** The `branch.call` events of each app's hook. */
  const reported: { strict: DtmBranchCallEvent[]; loose: DtmBranchCallEvent[] } = { strict: [], loose: [] };
  /** How app `app`'s hook reported the action calls of `gid`: `<outcome> <status>`, and the error's message when it is a refusal. */
  const actionsReported = (app: 'strict' | 'loose', gid: string) =>
    reported[app].filter((e) => e.gid === gid && e.op === 'action').map((e) => `${e.outcome} ${e.status ?? '-'}${e.outcome === 'refused' ? ` ${(e.error as Error).message}` : ''}`);
  beforeAll(async () => {
    strict = await xaApp(databases(), [XaOnceController], { branchAuthKeys: [key], branchAuthCheckActions: true, branchTimeout: 5 });
    base.strict = await listenAt(strict, 'xa-once');
    loose = await xaApp(databases(), [XaOnceController], { branchAuthKeys: [key], branchTimeout: 5 });
    base.loose = await listenAt(loose, 'xa-once');
    strict.get(DtmInstrumentation).on('branch.call', (e) => reported.strict.push(e));
    loose.get(DtmInstrumentation).on('branch.call', (e) => reported.loose.push(e));
    wire = await recordingWire(() => behind);
    ({ url: wireUrl, taken } = wire);
    signedAp = await startDtmApp({ config: { branchAuthKeys: [key] } });
  });
  afterAll(async () => {
    await signedAp?.close();
    await wire?.close();
    await strict?.close();
    await loose?.close();
  });

  const portOf = (url: string) => new URL(url).port;
  const replay = async (call: (typeof taken)[number], to: string) => {
    const started = Date.now();
    const answer = await fetch(new URL(call.url, to), { method: 'POST', headers: call.headers, body: call.body });
    return { status: answer.status, text: await answer.text(), ms: Date.now() - started };
  };

  it.each([
    ['mysql', 'strict'],
    ['pg', 'strict'],
    ['mysql', 'loose'],
    ['pg', 'loose'],
  ] as const)("on %s, %s: the action failed, the app caught its error and went on, and the call is replayed while DTM holds the transaction prepared: with branch_auth_check_actions (strict) it is refused (401, nothing ran); without it (loose) it runs, prepares and registers its branch, which DTM rolls back with the abort the module sends for the failed call; nothing moved", async (store, app) => {
    taken.length = 0;
    behind = base[app];
    const gid = await signedAp.client.generateGid();
    ours.add(gid);
    const before = await balances();
    let replayed: Awaited<ReturnType<typeof replay>> | undefined;
    let midway: { prepared: string[]; branches: string[] } | undefined;
    const run = signedAp.client.xaGlobalTransaction(gid, async (xa) => {
      await expect(xa.callBranch({ amount: 9, fail: true }, `${wireUrl}/xa-once/${store}`)).rejects.toBeInstanceOf(DtmFailureError);
      // the app carries on (other branches, say) while DTM holds the transaction prepared: the call is replayed now
      expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
      replayed = await replay(taken[0], base[app]);
      midway = { prepared: await pendingXa(), branches: ((await queryTrans(gid)).branches ?? []).map((b) => `${b.branch_id} ${b.op} ${b.status}`) };
    });
    // the module aborts a body that went on after a failed callBranch, whatever came after it
    await expect(run).rejects.toBeInstanceOf(DtmUsageError);
    const final = await signedAp.client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    const ranHere = runs.filter((r) => r.includes(gid));
    if (app === 'strict') {
      expect(replayed).toMatchObject({ status: 401 });
      expect(replayed!.text).toContain('was called before');
      expect(ranHere).toEqual([`${portOf(base.strict)} ${gid} ${store}`]);
      expect(midway).toEqual({ prepared: [], branches: [] });
      // the hook has the replay as the refusal it was answered (401), not as an error of the handler
      expect(actionsReported('strict', gid)).toEqual(['failure -', expect.stringMatching(/^refused 401 .*this branch \(xid '.*'\) was called before/)]);
    } else {
      // without the check the replay runs the business (now without failing), prepares and registers its branch with DTM
      expect(replayed).toMatchObject({ status: 200 });
      expect(ranHere).toEqual([`${portOf(base.loose)} ${gid} ${store}`, `${portOf(base.loose)} ${gid} ${store}`]);
      expect(actionsReported('loose', gid)).toEqual(['failure -', 'success -']);
      expect(midway!.prepared).toEqual([`${store}:${gid}-01`]);
      expect(midway!.branches).toEqual(['01 rollback prepared', '01 commit prepared']);
      // ... and DTM rolls it back with the abort the failed call brought: nothing moved
      expect(branchLines(final)).toEqual(['01 rollback succeed', '01 commit prepared']);
    }
    expect(await balances()).toEqual(before);
    expect(await pendingXa()).toEqual([]);
  });

  it.each([
    ['mysql', 'strict'],
    ['pg', 'strict'],
    ['mysql', 'loose'],
    ['pg', 'loose'],
  ] as const)("on %s, %s: the action prepared, and its call is replayed before the commit: strict refuses it at once (401); loose answers FAILURE saying an earlier call holds the branch, at once on MariaDB (XAER_DUPID), after a second at most on PostgreSQL (its barrier row waits for the prepared branch's, no longer until lock_timeout); the work done once", async (store, app) => {
    taken.length = 0;
    behind = base[app];
    const gid = await signedAp.client.generateGid();
    ours.add(gid);
    const before = await balances();
    let replayed: Awaited<ReturnType<typeof replay>> | undefined;
    await signedAp.client.xaGlobalTransaction(gid, async (xa) => {
      await xa.callBranch({ amount: 3 }, `${wireUrl}/xa-once/${store}`);
      replayed = await replay(taken[0], base[app]);
    });
    expect((await signedAp.client.waitForFinal(gid)).status).toBe('succeed');
    const ranHere = runs.filter((r) => r.includes(gid));
    if (app === 'strict') {
      // refused at once, before XA START (BEGIN): no wait on the prepared branch's locks
      expect(replayed).toMatchObject({ status: 401 });
      expect(replayed!.ms).toBeLessThan(3000); // not the 5 s lock_timeout: slack for a loaded CI machine
      expect(ranHere).toHaveLength(1);
      expect(actionsReported('strict', gid)).toEqual(['success -', expect.stringMatching(/^refused 401 .*was called before/)]);
    } else {
      // MariaDB: XA START of an id the server holds prepared fails at once (XAER_DUPID); PostgreSQL: the barrier row waits
      // for the prepared branch's own a second at most, not until lock_timeout (branch_timeout, 5 s here): FAILURE saying why
      expect(replayed!.status).toBe(409);
      expect(replayed!.text).toContain('is held by an earlier call of it');
      expect(replayed!.ms).toBeLessThan(store === 'mysql' ? 3000 : 4000); // not the 5 s lock_timeout: slack for a loaded CI machine
      expect(ranHere).toHaveLength(1);
      // the FAILURE of a branch held by an earlier call is the module's answer after the guard: a failure, as DTM reads it
      expect(actionsReported('loose', gid)).toEqual(['success -', 'failure -']);
    }
    expect(await balances()).toEqual({ ...before, [store]: before[store] + 3 });
    expect(await pendingXa()).toEqual([]);
  });
});

describe('over grpc, with branch_auth_check_actions: an XA action call taken off the wire', () => {
  const key = randomBytes(33).toString('base64');
  let ports: { http: number; grpc: number };
  let strictParticipant: ManagedProcess;
  let signedAp: DtmTestApp;
  beforeAll(async () => {
    ports = { http: await freePort(), grpc: await freePort() };
    strictParticipant = await startParticipant(key, ports, true);
    signedAp = await startDtmApp({ grpcProtos: TESTS_GRPC_PROTOS, config: { branchAuthKeys: [key] } });
  });
  afterAll(async () => {
    await signedAp?.close();
    await strictParticipant?.stop();
  });

  it('replayed while the transaction is still prepared (the branch was called before) and after DTM committed it is refused (UNAUTHENTICATED): nothing moved twice, nothing prepared', async () => {
    // an attacker on the wire between the app and the participant: forwards every call (the action, DTM's commit), keeping the action's metadata and bytes
    const taken: { metadata: Metadata; bytes: Buffer }[] = [];
    const raw = (b: Buffer) => b;
    const method = { path: '/tests.XaBank/Mysql', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw };
    const participant = new Client(`127.0.0.1:${ports.grpc}`, credentials.createInsecure());
    const send = (bytes: Buffer, metadata: Metadata) =>
      new Promise<{ code: number; answer?: Buffer }>((done) =>
        participant.makeUnaryRequest(method.path, raw, raw, bytes, metadata, { deadline: Date.now() + 10_000 }, (error, answer) => done(error ? { code: error.code } : { code: status.OK, answer })),
      );
    const wire = new Server();
    wire.addService({ Mysql: method }, {
      Mysql: (call: ServerUnaryCall<Buffer, Buffer>, answer: sendUnaryData<Buffer>) => {
        if (call.metadata.get('dtm-op')[0] === 'action') taken.push({ metadata: call.metadata.clone(), bytes: call.request });
        void send(call.request, call.metadata.clone()).then((r) => (r.code === status.OK ? answer(null, r.answer) : answer({ code: r.code, details: 'refused by the participant' })));
      },
    });
    const wirePort = await bindGrpcServer(wire);
    const gid = await signedAp.client.generateGid();
    ours.add(gid);
    const before = await balances();
    try {
      let early: number | undefined;
      await signedAp.client.xaGlobalTransaction(
        gid,
        async (xa) => {
          await xa.callBranch({ account: 1, amount: 4 }, `127.0.0.1:${wirePort}/tests.XaBank/Mysql`);
          early = (await send(taken[0].bytes, taken[0].metadata.clone())).code;
        },
        { protocol: 'grpc' },
      );
      expect(early).toBe(status.UNAUTHENTICATED);
      expect((await signedAp.client.waitForFinal(gid)).status).toBe('succeed');
      expect((await balances()).mysql).toBe(before.mysql + 4);
      expect(taken).toHaveLength(1);
      expect((await send(taken[0].bytes, taken[0].metadata.clone())).code).toBe(status.UNAUTHENTICATED);
    } finally {
      wire.forceShutdown();
      participant.close();
    }
    expect((await balances()).mysql).toBe(before.mysql + 4);
    expect(await pendingXa()).toEqual([]);
    // the action's row, and the row of its call, written before XA START, which refuses a second call of the branch
    expect((await barrierRows(gid)).sort()).toEqual(['mysql 01=action', 'mysql 01=call']);
    const log = readFileSync(strictParticipant.logFile, 'utf8');
    expect(log).toContain(`branch call refused (XA action, gid "${gid}", branch "01"): this branch (xid '${gid}-01') was called before`);
    expect(log).toContain('DTM records the xa transaction as succeed, and this op runs only when it is prepared');
    // the participant's branch.call hook: both replays reported refused with the code answered (the first, raised in the wrapped handler, was an error)
    const plain = log.replace(/\u001b\[[0-9;]*m/g, ''); // the logger's colours
    expect(plain.split('\n').filter((l) => l.includes(`branch.call ${gid} `)).map((l) => l.slice(l.indexOf('branch.call ')).trimEnd())).toEqual([
      `branch.call ${gid} 01 action: refused 16`,
      `branch.call ${gid} 01 action: refused 16`,
    ]);
  });
});

describe('XA databases without the barrier table (each XA branch writes its barrier row there)', () => {
  @Controller('xa-tableless')
  class XaTablelessController {
    @Post('pg')
    @XaBranch('xaTableless.pg', { db: 'pg' })
    async pg(@Body() m: { amount: number }, @BarrierTx() c: pg.Client) {
      await c.query('UPDATE account SET balance = balance + $1 WHERE id = 1', [m.amount]);
    }

    @Post('mysql')
    @XaBranch('xaTableless.mysql', { db: 'mysql' })
    async mysql(@Body() m: { amount: number }, @BarrierTx() c: mysql.Connection) {
      await c.execute('UPDATE account SET balance = balance + ? WHERE id = 1', [m.amount]);
    }
  }

  /** An app whose XA branches run on this file's databases, its barrier table `table` (none there yet). */
  const appWith = (table: string, createBarrierTable: boolean) =>
    xaApp({ pg: pgXaAt(dbs.postgres.url), mysql: mysqlXaDatabase(() => mysql.createConnection(dbs.mariadb.config)) }, [XaTablelessController], { barrierTable: table, createBarrierTable });

  it('fail start-up with a DtmUsageError naming the XA database and how to create the table (every XA branch would fail); with create_barrier_table the table is made there, and an XA transaction commits', async () => {
    const table = `xa_tableless_${randomBytes(4).toString('hex')}`;
    const refused = await appWith(table, false);
    const error = await refused.init().then(
      () => undefined,
      (err: unknown) => err,
    );
    await refused.close();
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toContain(`the barrier table ${table} does not exist on XA database "`);
    expect((error as Error).message).toContain('ensureBarrierSchema');

    const app = await appWith(table, true);
    try {
      const base = await listenAt(app, 'xa-tableless');
      const before = await balances();
      const gid = await client.generateGid();
      await app.get(DtmClient).xaGlobalTransaction(gid, async (xa) => {
        await xa.callBranch({ amount: 4 }, `${base}/pg`);
        await xa.callBranch({ amount: -4 }, `${base}/mysql`);
      });
      await waitForTransStatus(gid, 'succeed', 20_000);
      expect(await balances()).toEqual({ mysql: before.mysql - 4, pg: before.pg + 4 });
      const [my] = await myPool.query(`SELECT branch_id, reason FROM ${table} WHERE gid = ?`, [gid]);
      const pgRows = await pgPool.query(`SELECT branch_id, reason FROM ${table} WHERE gid = $1`, [gid]);
      expect([my, pgRows.rows]).toEqual([[{ branch_id: Buffer.from('02'), reason: 'action' }], [{ branch_id: '01', reason: 'action' }]]);
    } finally {
      await app.close();
    }
  });
});

describe('mysqlXaDatabase given a pool\'s connection (connect: () => pool.getConnection())', () => {
  @Controller('xa-pooled')
  class XaPooledController {
    @Post('mysql')
    @XaBranch('xaPooled.mysql', { db: 'mysql' })
    async mysql(@Body() m: { amount: number }, @BarrierTx() c: mysql.Connection) {
      await c.execute('UPDATE account SET balance = balance + ? WHERE id = 1', [m.amount]);
    }
  }

  it('an XA action is refused before XA START with a DtmUsageError saying to make a connection of its own (a prepared XA transaction would go back to the pool, which hands it out again); the transaction rolls back, nothing prepared, the pool still usable', async () => {
    const pool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 1 });
    // the start-up check gets a connection of its own (a pool's fails the start-up: 'an app whose XA database's connect() gives a pool's connection' below); the branches then a pool's
    let calls = 0;
    const connect = (): Promise<mysql.Connection> => (calls++ === 0 ? mysql.createConnection(dbs.mariadb.config) : pool.getConnection());
    const app = await xaApp({ mysql: mysqlXaDatabase(connect) }, [XaPooledController]);
    try {
      const base = await listenAt(app, 'xa-pooled');
      const before = await balances();
      const gid = await client.generateGid();
      const error = await app
        .get(DtmClient)
        .xaGlobalTransaction(gid, async (xa) => {
          await xa.callBranch({ amount: -4 }, `${base}/mysql`);
          await xa.callBranch({ amount: 4 }, `${base}/mysql`);
        })
        .catch((e: unknown) => e);
      expect((error as Error).message).toContain('mysqlXaDatabase');
      expect((error as Error).message).toContain('mysql.createConnection');
      await waitForTransStatus(gid, 'failed', 20_000);
      expect(await balances()).toEqual(before);
      expect(await pendingXa()).toEqual([]);
      const [rows] = await pool.query('SELECT 1 AS one');
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      await app.close();
      await pool.end();
    }
  });
});

describe("pgXaDatabase given a pool's client (connect: () => pool.connect())", () => {
  @Controller('xa-pg-pooled')
  class XaPgPooledController {
    @Post('pg')
    @XaBranch('xaPgPooled.pg', { db: 'pg' })
    async pg(@Body() m: { amount: number }, @BarrierTx() c: pg.PoolClient) {
      await c.query('UPDATE account SET balance = balance + $1 WHERE id = 1', [m.amount]);
    }
  }

  it("two XA transactions in a row (one to commit, one the callback aborts) are refused at their first action, before BEGIN, with a DtmUsageError saying to make a client of its own (the module's end() of a lent client closed it without giving its slot back: the pool's slots ran out and the next connect() waited for ever); each rolls back, nothing prepared, the pool keeps its one slot usable", async () => {
    const pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 1, connectionTimeoutMillis: 5_000 });
    let connects = 0; // the start-up's check gets a client of its own (a pool's fails the start-up), the actions the pool's
    const connectedClient = async () => {
      const c = new pg.Client({ connectionString: dbs.postgres.url });
      await c.connect();
      return c;
    };
    const app = await xaApp({ pg: pgXaDatabase(async () => (++connects === 1 ? connectedClient() : pool.connect())) }, [XaPgPooledController]);
    try {
      const base = await listenAt(app, 'xa-pg-pooled');
      const before = await balances();
      for (const abort of [false, true]) {
        const gid = await client.generateGid();
        const error = await app
          .get(DtmClient)
          .xaGlobalTransaction(gid, async (xa) => {
            await xa.callBranch({ amount: -4 }, `${base}/pg`);
            await xa.callBranch({ amount: 4 }, `${base}/pg`);
            if (abort) throw new Error('abort');
          })
          .catch((e: unknown) => e);
        expect((error as Error).message).toContain('pgXaDatabase');
        expect((error as Error).message).toContain('new pg.Client');
        await waitForTransStatus(gid, 'failed', 20_000);
        expect(await balances()).toEqual(before);
        expect(await pendingXa()).toEqual([]);
        expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
        expect(pool.totalCount).toBeLessThanOrEqual(1);
      }
    } finally {
      await app.close();
      await pool.end();
    }
  });
});

describe('pgXaDatabase(pool): XA branches on clients a pg Pool lends', () => {
  /** How a phase-1 call ends: its handler swallows an SQL error, throws, or its session is ended by the server (pg_terminate_backend) under it. */
  type End = 'swallowed' | 'threw' | 'killed';
  /** What each phase-1 call saw: its account move, the PostgreSQL session it ran on, and how it ended. */
  const calls: { account: number; pid: number; end?: End }[] = [];
  const accounts = async () => (await pgPool.query('SELECT id, balance FROM xa_pool_account ORDER BY id')).rows.map((r) => [r.id, r.balance] as [number, number]);

  @Controller('xa-pg-pool')
  class XaPgPoolController {
    @Post('pg')
    @XaBranch('xaPgPool.pg', { db: 'pg' })
    async pg(@Body() m: { account: number; amount: number; end?: End }, @BarrierTx() c: pg.PoolClient) {
      const pid = Number((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
      calls.push({ account: m.account, pid, end: m.end });
      await c.query('UPDATE xa_pool_account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
      // an SQL error the handler swallows: the transaction is aborted, PREPARE TRANSACTION prepares nothing
      if (m.end === 'swallowed') await c.query('SELECT 1 / 0').catch(() => undefined);
      if (m.end === 'threw') throw new DtmFailureError('xa-pg-pool: refused');
      if (m.end === 'killed') {
        await pgPool.query('SELECT pg_terminate_backend($1)', [pid]);
        await c.query('SELECT 1'); // fails: the session is gone
      }
    }
  }

  it("commits and rolls back on the pool's sessions (each reused, none left in a transaction); a session the server ended under a branch, or whose transaction the handler broke, is discarded, never lent again (the next transfers work); a rolled-back one is lent again; balances and DTM agree", async () => {
    const pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 2, application_name: 'xa-pg-pool', connectionTimeoutMillis: 5_000 });
    const app = await xaApp({ pg: pgXaDatabase(pool) }, [XaPgPoolController]);
    try {
      const base = await listenAt(app, 'xa-pg-pool');
      await pgPool.query('CREATE TABLE IF NOT EXISTS xa_pool_account (id int PRIMARY KEY, balance int NOT NULL)');
      await pgPool.query('INSERT INTO xa_pool_account VALUES (1, 100), (2, 100) ON CONFLICT (id) DO UPDATE SET balance = 100');
      const run = async (end?: End): Promise<string> => {
        const gid = await client.generateGid();
        ours.add(gid);
        await app
          .get(DtmClient)
          .xaGlobalTransaction(gid, async (xa) => {
            await xa.callBranch({ account: 1, amount: -3 }, `${base}/pg`);
            await xa.callBranch({ account: 2, amount: 3, end }, `${base}/pg`);
          })
          .catch(() => undefined);
        return gid;
      };
      const committed = [await run(), await run(), await run()];
      const threw = await run('threw');
      const swallowed = await run('swallowed');
      const killed = await run('killed');
      const after = [await run(), await run()];
      for (const gid of [...committed, ...after]) await waitForTransStatus(gid, 'succeed', 20_000);
      for (const gid of [threw, swallowed, killed]) await waitForTransStatus(gid, 'failed', 20_000);
      // five transfers of 3 committed, the three others rolled back
      expect(await accounts()).toEqual([
        [1, 85],
        [2, 115],
      ]);
      expect(await pendingXa()).toEqual([]);
      expect(calls).toHaveLength(16);
      // reused: 16 phase-1 calls (and their phase-2 calls) on the pool's two sessions and the two replacing the discarded, where a client per call made 16 sessions for phase 1 alone
      expect(new Set(calls.map((c) => c.pid)).size).toBeLessThanOrEqual(4);
      for (const end of ['swallowed', 'killed'] as const) {
        const broken = calls.find((c) => c.end === end)!;
        const later = calls.slice(calls.indexOf(broken) + 1).map((c) => c.pid);
        expect(later.length).toBeGreaterThanOrEqual(4);
        expect(later).not.toContain(broken.pid);
      }
      // the session of the call that threw was rolled back, then lent again (its pid may come back), and worked
      expect(pool.totalCount).toBeLessThanOrEqual(2);
      const open = await pgPool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'xa-pg-pool' AND state LIKE 'idle in transaction%'");
      expect(open.rows[0].n).toBe(0);
    } finally {
      await app.close();
      await pool.end();
    }
  });

  it('refuses what is neither a pool nor a function: 42 when called, a pg.Client (its connect() lends nothing) at start-up, each with a DtmUsageError saying what to pass', async () => {
    expect(() => pgXaDatabase(42 as never)).toThrow(DtmUsageError);
    expect(() => pgXaDatabase(42 as never)).toThrow(/pgXaDatabase\(pool\)/);
    const single = new pg.Client({ connectionString: dbs.postgres.url });
    try {
      const app = await xaApp({ pg: pgXaDatabase(single as never) }, [XaPgPoolController]);
      const error = await app.init().then(
        () => undefined,
        (e: unknown) => e,
      );
      await app.close().catch(() => undefined);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toContain('a pg.Client itself is neither');
    } finally {
      await single.end().catch(() => undefined);
    }
  });
});

/**
 * A TCP proxy in front of a database that, once a connection's prepare (`XA PREPARE`, `PREPARE
 * TRANSACTION`) was answered, closes that connection towards the app and keeps it open, silent,
 * towards the database: a network cut the database does not see (no FIN, no RST reaches it).
 */
async function cutAfterPrepareProxy(host: string, dbPort: number, prepare: string): Promise<{ port: number; cuts: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const state = { cuts: 0 };
  const proxy = net.createServer((client) => {
    const server = net.connect(dbPort, host);
    sockets.add(client).add(server);
    let prepared = false;
    let cut = false;
    client.on('data', (chunk: Buffer) => {
      if (cut) return;
      if (chunk.includes(prepare)) prepared = true;
      server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      if (cut) return;
      client.write(chunk);
      if (prepared) {
        cut = true;
        state.cuts++;
        client.end(); // the app sees its connection closed; the database sees nothing
      }
    });
    client.on('error', () => undefined);
    server.on('error', () => client.destroy());
    client.on('close', () => {
      if (!cut) server.destroy();
    });
    server.on('close', () => client.destroy());
  });
  await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    get cuts() {
      return state.cuts;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((done) => proxy.close(done));
    },
  };
}

describe('an XA branch whose connection to the database is cut right after its prepare (the database does not see the cut)', () => {
  @Controller('xa-cut')
  class XaCutController {
    @Post('mysql')
    @XaBranch('xaCut.mysql', { db: 'mysql' })
    async mysql(@Body() m: { amount: number }, @BarrierTx() c: mysql.Connection) {
      await c.execute('UPDATE account SET balance = balance + ? WHERE id = 1', [m.amount]);
    }

    @Post('pg')
    @XaBranch('xaCut.pg', { db: 'pg' })
    async pg(@Body() m: { amount: number }, @BarrierTx() c: pg.Client) {
      await c.query('UPDATE account SET balance = balance + $1 WHERE id = 1', [m.amount]);
    }
  }

  async function cutApp(store: 'mysql' | 'pg', waitTimeout: number) {
    const proxy =
      store === 'mysql'
        ? await cutAfterPrepareProxy(String(dbs.mariadb.config.host), Number(dbs.mariadb.config.port), 'XA PREPARE')
        : await cutAfterPrepareProxy(new URL(dbs.postgres.url).hostname, Number(new URL(dbs.postgres.url).port), 'PREPARE TRANSACTION');
    const pgUrl = new URL(dbs.postgres.url);
    pgUrl.hostname = '127.0.0.1';
    pgUrl.port = String(proxy.port);
    const app = await xaApp(
      {
        mysql: mysqlXaDatabase(async () => {
          const c = await mysql.createConnection({ ...dbs.mariadb.config, host: '127.0.0.1', port: proxy.port });
          await c.query(`SET SESSION wait_timeout = ${waitTimeout}`);
          return c;
        }),
        pg: pgXaDatabase(async () => {
          const c = new pg.Client({ connectionString: pgUrl.toString() });
          c.on('error', () => undefined);
          await c.connect();
          return c;
        }),
      },
      [XaCutController],
      {},
      { forceCloseConnections: true },
    );
    const logger = new RecordingLogger();
    app.useLogger(logger);
    return { app, proxy, logger, base: await listenAt(app, 'xa-cut') };
  }

  it('MariaDB keeps the dead session and its prepared branch until the session\'s wait_timeout (here 8 s): DTM\'s commit meanwhile fails "still held" (500, logged) and is retried; once the server drops the session the next retry commits the branch, the transaction succeeds with the work done once', async () => {
    const { app, proxy, logger, base } = await cutApp('mysql', 8);
    try {
      const before = await balances();
      const gid = await app.get(DtmClient).generateGid();
      ours.add(gid);
      const started = Date.now();
      await app.get(DtmClient).xaGlobalTransaction(gid, async (xa) => {
        await xa.callBranch({ amount: 7 }, `${base}/mysql`);
      });
      expect(proxy.cuts).toBe(1);
      // the first commit, in DTM's submit, met the dead session's branch
      await waitUntil('the still-held commit logged', async () => logger.lines.some((l) => l.includes(gid) && l.includes('still held')), { timeoutMs: 20_000 });
      expect((await queryTrans(gid)).transaction?.status).toBe('submitted');
      // the line names this case and what ends it, not only a connection the app keeps open
      const held = logger.lines.find((l) => l.includes(gid) && l.includes('still held'))!;
      expect(held).toContain('DtmXaPhase2Error');
      expect(held).toContain('cut');
      expect(held).toContain('wait_timeout');
      expect(held).toContain('docs/xa.md');
      await cronUntilStatus(gid, 'succeed', { timeoutMs: Math.max(1, 60_000 - (Date.now() - started)), intervalMs: 1000 });
      expect(Date.now() - started).toBeGreaterThanOrEqual(7_000); // not before the server dropped the session
      expect(await balances()).toEqual({ ...before, mysql: before.mysql + 7 });
      expect((await pendingXa()).filter((xid) => xid.includes(gid))).toEqual([]);
    } finally {
      await app.close();
      await proxy.close();
    }
  });

  it('PostgreSQL: the prepared transaction outlives its session, so DTM\'s commit finishes at once though the database never saw the cut (nothing logged, the work done once)', async () => {
    const { app, proxy, logger, base } = await cutApp('pg', 8);
    try {
      const before = await balances();
      const gid = await app.get(DtmClient).generateGid();
      ours.add(gid);
      await app.get(DtmClient).xaGlobalTransaction(gid, async (xa) => {
        await xa.callBranch({ amount: 7 }, `${base}/pg`);
      });
      expect(proxy.cuts).toBe(1);
      await waitForTransStatus(gid, 'succeed', 5_000);
      expect(await balances()).toEqual({ ...before, pg: before.pg + 7 });
      expect((await pendingXa()).filter((xid) => xid.includes(gid))).toEqual([]);
      expect(logger.lines.filter((l) => l.includes(gid))).toEqual([]);
    } finally {
      await app.close();
      await proxy.close();
    }
  });
});

describe("an app whose XA database's connect() gives a pool's connection (pool.getConnection(), pool.connect())", () => {
  it.each(['mysql', 'pg'] as const)('%s: the start-up fails with the DtmUsageError every XA action would meet (it warned "could not check" and started, each XA action then failing); the pool keeps its slot', async (store) => {
    const myPooled = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 1 });
    const pgPooled = new pg.Pool({ connectionString: dbs.postgres.url, max: 1, connectionTimeoutMillis: 5_000 });
    const xaConnections: Record<string, XaDatabase<unknown>> = store === 'mysql' ? { mysql: mysqlXaDatabase(() => myPooled.getConnection()) } : { pg: pgXaDatabase(() => pgPooled.connect()) };
    const app = await xaApp(xaConnections, [], {}, { logger: false });
    try {
      const error = await app.init().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmUsageError);
      expect((error as Error).message).toContain(store === 'mysql' ? 'mysql.createConnection' : 'new pg.Client');
      const [rows] = await myPooled.query('SELECT 1 AS one');
      expect(rows).toEqual([{ one: 1 }]);
      expect((await pgPooled.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await app.close().catch(() => undefined);
      await Promise.all([myPooled.end(), pgPooled.end()]);
    }
  });
});
