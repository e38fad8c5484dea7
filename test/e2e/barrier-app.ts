// A Nest app whose branches are guarded by the sub-transaction barrier, for barrier.spec.ts: one
// bank per store (PostgreSQL, MariaDB: decorated handlers with @UseBarrier; Redis: handlers calling
// redisCheckAdjustAmount), each with saga, TCC and message branches. A hybrid app: the SQL banks'
// handlers are HTTP routes and gRPC methods at once (services PgBank and MysqlBank of
// test/e2e/protos/tests.proto), served by the same controller classes.
import 'reflect-metadata';
import { Body, Controller, Get, Inject, Injectable, Post, type INestApplication, type Type } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { Redis } from 'ioredis';
import { defer, type Observable } from 'rxjs';
import {
  BarrierTx,
  BranchContext,
  DtmClient,
  DtmFailureError,
  DtmModule,
  MsgBranch,
  MsgQueryPrepared,
  SagaAction,
  SagaCompensate,
  TccCancel,
  TccConfirm,
  TccTry,
  UseBarrier,
  ensureBarrierSchema,
  mysqlBarrierDatabase,
  pgBarrierDatabase,
  redisBarrierConnection,
  type BarrierDatabase,
  type BranchInfo,
  type DtmConfigInput,
  type DtmProtocol,
  type XaDatabase,
} from 'nestjs-dtm';
import type { FileDatabases } from '../support/databases.js';
import { callGrpc, TESTS_GRPC_PROTOS, testsGrpcOptions } from '../support/grpc.js';
import { harness } from '../support/harness.js';
import { keepConnectionsForDtm } from '../support/dtm-keep-alive.js';
import { testRedis } from '../support/redis-client.js';
import { freePort } from '../support/services/process.js';

/** The SQL stores under test. */
export const SQL_STORES = ['pg', 'mysql'] as const;
/** One of {@link SQL_STORES}. */
export type SqlStore = (typeof SQL_STORES)[number];

/** A transfer step's body; `fail` makes the action fail after its write (which must then roll back). */
export interface Move {
  account: number;
  amount: number;
  fail?: 'failure' | 'error';
}

/** What the handlers count, besides balances: business runs per handler. */
@Injectable()
export class Runs {
  counts = new Map<string, number>();
  /** Errors thrown once per handler key (for "fails, then succeeds on retry"). */
  errorOnce = new Set<string>();
  /** The forwarded headers (`BranchInfo.headers`) of the runs added with their branch, by gid. */
  headers = new Map<string, { key: string; headers: Record<string, string> }[]>();
  add(key: string, branch?: BranchInfo): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (branch) this.headers.set(branch.gid, [...(this.headers.get(branch.gid) ?? []), { key, headers: { ...branch.headers } }]);
  }
  of(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

/** A SQL client for one store: `run(sql, params)` with `?` placeholders on both. */
export interface SqlClient {
  run(sql: string, params?: unknown[]): Promise<{ affected: number; rows: Record<string, unknown>[] }>;
}

/** Placeholders: the tests write `?`; PostgreSQL wants `$1, $2, ...`. */
function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

/** Runs `sql` on a pg client or mysql2 connection (whatever `@BarrierTx()` gave the handler). */
async function exec(store: SqlStore, handle: unknown, sql: string, params: unknown[]): Promise<number> {
  if (store === 'pg') return (await (handle as pg.PoolClient).query(numbered(sql), params)).rowCount ?? 0;
  const [result] = await (handle as mysql.PoolConnection).query(sql, params);
  return (result as mysql.ResultSetHeader).affectedRows;
}

/** The gRPC service of a SQL store's bank. */
export const grpcServiceOf = (store: SqlStore): string => (store === 'pg' ? 'PgBank' : 'MysqlBank');

/** The bank of one SQL store: saga, TCC and message branches, all behind the barrier, over HTTP and gRPC. */
function sqlBank(store: SqlStore): Type {
  const Grpc = (method: string) => GrpcMethod(grpcServiceOf(store), method);
  const update = 'UPDATE account SET balance = balance + ? WHERE id = ?';
  const withdraw = 'UPDATE account SET balance = balance - ? WHERE id = ? AND balance >= ?';

  @Controller(`${store}-bank`)
  @UseBarrier(store)
  class SqlBank {
    constructor(
      private readonly runs: Runs,
      @Inject(DtmClient) private readonly dtm: DtmClient,
      @Inject(`${store}-db`) private readonly db: BarrierDatabase,
    ) {}

    /** Takes the amount out; FAILURE (roll back) when the balance is too low. */
    @Post('trans-out')
    @Grpc('TransOut')
    @SagaAction(`${store}.transOut`)
    async transOut(@Body() m: Move, @BarrierTx() tx: unknown, @BranchContext() b: BranchInfo) {
      this.runs.add(`${store}.transOut`, b);
      if ((await exec(store, tx, withdraw, [m.amount, m.account, m.amount])) === 0) throw new DtmFailureError(`account ${m.account}: insufficient balance`);
      this.failIfAsked(m, b);
    }

    @Post('trans-out-compensate')
    @Grpc('TransOutCompensate')
    @SagaCompensate(`${store}.transOut`)
    async transOutCompensate(@Body() m: Move, @BarrierTx() tx: unknown) {
      this.runs.add(`${store}.transOutCompensate`);
      await exec(store, tx, update, [m.amount, m.account]);
    }

    @Post('trans-in')
    @Grpc('TransIn')
    @SagaAction(`${store}.transIn`)
    async transIn(@Body() m: Move, @BarrierTx() tx: unknown, @BranchContext() b: BranchInfo) {
      this.runs.add(`${store}.transIn`, b);
      await exec(store, tx, update, [m.amount, m.account]);
      this.failIfAsked(m, b); // after the write: the write must roll back
    }

    @Post('trans-in-compensate')
    @Grpc('TransInCompensate')
    @SagaCompensate(`${store}.transIn`)
    async transInCompensate(@Body() m: Move, @BarrierTx() tx: unknown) {
      this.runs.add(`${store}.transInCompensate`);
      await exec(store, tx, update, [-m.amount, m.account]);
    }

    @Post('tcc-out-try')
    @Grpc('TccOutTry')
    @TccTry(`${store}.tccOut`)
    async tccOutTry(@Body() m: Move, @BarrierTx() tx: unknown) {
      this.runs.add(`${store}.tccOutTry`);
      if ((await exec(store, tx, withdraw, [m.amount, m.account, m.amount])) === 0) throw new DtmFailureError(`account ${m.account}: insufficient balance`);
    }

    @Post('tcc-out-confirm')
    @Grpc('TccOutConfirm')
    @TccConfirm(`${store}.tccOut`)
    tccOutConfirm() {
      this.runs.add(`${store}.tccOutConfirm`);
    }

    @Post('tcc-out-cancel')
    @Grpc('TccOutCancel')
    @TccCancel(`${store}.tccOut`)
    async tccOutCancel(@Body() m: Move, @BarrierTx() tx: unknown) {
      this.runs.add(`${store}.tccOutCancel`);
      await exec(store, tx, update, [m.amount, m.account]);
    }

    /**
     * transIn answered as an Observable (Nest allows one; common for @GrpcMethod handlers): its
     * work must run when the barrier's transaction is open. Counts `<store>.transInRx.inTx` when
     * the barrier row is visible through `tx` but not yet committed (not visible to the pool).
     */
    @Post('trans-in-rx')
    @Grpc('TransInRx')
    @SagaAction(`${store}.transInRx`, { compensate: false })
    transInRx(@Body() m: Move, @BarrierTx() tx: unknown, @BranchContext() b: BranchInfo): Observable<{ message: string }> {
      return defer(async () => {
        this.runs.add(`${store}.transInRx`, b);
        const count = 'SELECT count(*) AS n FROM dtm_barrier WHERE gid = ? AND branch_id = ?';
        const keys = [b.gid, b.branchId];
        const inTx = store === 'pg' ? (await (tx as pg.PoolClient).query(numbered(count), keys)).rows : (await (tx as mysql.PoolConnection).query(count, keys))[0];
        const committed = (await this.db.execute(store === 'pg' ? numbered(count) : count, keys)).rows;
        if (Number((inTx as { n: unknown }[])[0].n) === 1 && Number(committed[0].n) === 0) this.runs.add(`${store}.transInRx.inTx`);
        await exec(store, tx, update, [m.amount, m.account]);
        this.failIfAsked(m, b); // after the write: the write must roll back
        return { message: `in ${m.amount}` };
      });
    }

    /** Two local transactions in one handler: barrier ids 01 and 02. */
    @Post('double')
    @Grpc('Double')
    @SagaAction(`${store}.double`, { compensate: false, barrier: false })
    async double(@Body() m: Move, @BranchContext() b: BranchInfo) {
      const barrier = this.dtm.barrier(b);
      for (const part of ['first', 'second']) {
        await barrier.callWithDb(this.db, async (tx) => {
          this.runs.add(`${store}.double.${part}`);
          await exec(store, tx, update, [m.amount, m.account]);
        });
      }
    }

    @Post('deliver')
    @Grpc('Deliver')
    @MsgBranch(`${store}.deliver`)
    async deliver(@Body() m: Move, @BarrierTx() tx: unknown) {
      this.runs.add(`${store}.deliver`);
      await exec(store, tx, update, [m.amount, m.account]);
    }

    @Get('query-prepared')
    @Grpc('QueryPrepared')
    @MsgQueryPrepared(`${store}.outbox`)
    queryPrepared() {
      throw new Error('not called: the barrier answers');
    }

    private failIfAsked(m: Move, b: BranchInfo): void {
      const key = `${b.gid}/${b.branchId}`;
      if (m.fail === 'failure') throw new DtmFailureError(`refused after writing (${key})`);
      if (m.fail === 'error' && !this.runs.errorOnce.has(key)) {
        this.runs.errorOnce.add(key);
        throw new Error(`crashed after writing (${key})`);
      }
    }
  }
  return SqlBank;
}

/** The Redis bank: amounts in keys, guarded by redisCheckAdjustAmount (DTM's Redis barrier). */
function redisBank(keyPrefix: string): Type {
  @Controller('redis-bank')
  class RedisBank {
    constructor(
      private readonly runs: Runs,
      @Inject(DtmClient) private readonly dtm: DtmClient,
      @Inject('redis') private readonly redis: Redis,
    ) {}

    private adjust(b: BranchInfo, m: Move, sign: 1 | -1, key: string) {
      this.runs.add(key);
      return this.dtm.barrier(b).redisCheckAdjustAmount(this.redis, `${keyPrefix}account-${m.account}`, sign * m.amount);
    }

    @Post('trans-out')
    @SagaAction('redis.transOut')
    async transOut(@Body() m: Move, @BranchContext() b: BranchInfo) {
      await this.adjust(b, m, -1, 'redis.transOut');
    }

    @Post('trans-out-compensate')
    @SagaCompensate('redis.transOut')
    async transOutCompensate(@Body() m: Move, @BranchContext() b: BranchInfo) {
      await this.adjust(b, m, 1, 'redis.transOutCompensate');
    }

    @Post('trans-in')
    @SagaAction('redis.transIn')
    async transIn(@Body() m: Move, @BranchContext() b: BranchInfo) {
      await this.adjust(b, m, 1, 'redis.transIn');
    }

    @Post('trans-in-compensate')
    @SagaCompensate('redis.transIn')
    async transInCompensate(@Body() m: Move, @BranchContext() b: BranchInfo) {
      await this.adjust(b, m, -1, 'redis.transInCompensate');
    }

    @Post('tcc-out-try')
    @TccTry('redis.tccOut')
    async tccOutTry(@Body() m: Move, @BranchContext() b: BranchInfo) {
      await this.adjust(b, m, -1, 'redis.tccOutTry');
    }

    @Post('tcc-out-confirm')
    @TccConfirm('redis.tccOut')
    tccOutConfirm() {
      this.runs.add('redis.tccOutConfirm');
    }

    @Post('tcc-out-cancel')
    @TccCancel('redis.tccOut')
    async tccOutCancel(@Body() m: Move, @BranchContext() b: BranchInfo) {
      await this.adjust(b, m, 1, 'redis.tccOutCancel');
    }

    @Post('deliver')
    @MsgBranch('redis.deliver')
    async deliver(@Body() m: Move, @BranchContext() b: BranchInfo) {
      await this.adjust(b, m, 1, 'redis.deliver');
    }

    @Get('query-prepared')
    @MsgQueryPrepared('redis.outbox', { barrier: 'redis' })
    queryPrepared() {
      throw new Error('not called: the barrier answers');
    }
  }
  return RedisBank;
}

/** The running barrier test app and its stores. */
export interface BarrierApp {
  app: INestApplication;
  url: string;
  /** `host:port` of its gRPC server. */
  grpcAddress: string;
  client: DtmClient;
  runs: Runs;
  databases: Record<SqlStore, BarrierDatabase>;
  sql: Record<SqlStore, SqlClient>;
  redis: Redis;
  redisKey(account: number): string;
  close(): Promise<void>;
}

/** How {@link startBarrierApp} sets the app up, beyond its defaults. */
export interface BarrierAppOptions {
  /** The DTM server the app talks to; default: the harness's. */
  dtm?: { serverUrl: string; grpcAddress: string };
  /** More options of the app's mysql2 pool (e.g. `multipleStatements`). */
  mysqlPool?: mysql.PoolOptions;
  /** A statement run first on every connection of the app's MariaDB pool (e.g. setting the sql_mode). */
  mysqlSession?: string;
  /** More `lynx.dtm` settings of the app's module (e.g. `branchAuthKeys`). */
  config?: DtmConfigInput;
  /** More providers (e.g. workflows calling the app's own branches; they can inject `pg-db`, `mysql-db`). */
  providers?: Type[];
  /** The module's `xaConnections`. */
  xaConnections?: Record<string, XaDatabase>;
  /** More controllers (e.g. XA branches on `xaConnections`). */
  controllers?: Type[];
  /** Its gRPC server also serves DTM's workflow resume (gRPC workflows). */
  workflowResume?: boolean;
}

/**
 * Starts the barrier test app on this test file's databases; creates the `account` table (ids 1..n,
 * balance 100 each) and the barrier table (`dtm_barrier`, in the file's database) in both.
 */
export async function startBarrierApp(dbs: FileDatabases, options: BarrierAppOptions = {}): Promise<BarrierApp> {
  const pgPool = new pg.Pool({ connectionString: dbs.postgres.url, max: 20 });
  const myPool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 20, ...options.mysqlPool });
  const session = options.mysqlSession;
  // queued on the new connection before the pool hands it out
  if (session) myPool.on('connection', (connection) => void connection.query(session));
  const redis = testRedis(dbs.redis.url);
  const databases = { pg: pgBarrierDatabase(pgPool), mysql: mysqlBarrierDatabase(myPool) };
  const sql: Record<SqlStore, SqlClient> = {
    pg: {
      run: async (s, p = []) => {
        const r = await pgPool.query(numbered(s), p);
        return { affected: r.rowCount ?? 0, rows: r.rows };
      },
    },
    mysql: {
      run: async (s, p = []) => {
        const [r] = await myPool.query(s, p);
        return Array.isArray(r) ? { affected: 0, rows: r as Record<string, unknown>[] } : { affected: (r as mysql.ResultSetHeader).affectedRows, rows: [] };
      },
    },
  };
  for (const store of SQL_STORES) {
    await sql[store].run('DROP TABLE IF EXISTS account');
    await sql[store].run('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
    await ensureBarrierSchema(databases[store], { table: 'dtm_barrier' });
  }
  const grpcAddress = `127.0.0.1:${await freePort()}`;
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: {
          serverUrl: options.dtm?.serverUrl ?? harness().dtm.serverUrl,
          grpcServer: options.dtm?.grpcAddress ?? harness().dtm.grpcAddress,
          grpcAppAddress: grpcAddress,
          barrierTable: 'dtm_barrier',
          ...options.config,
        },
        barrierConnections: { pg: databases.pg, mysql: databases.mysql, redis: redisBarrierConnection(redis) },
        xaConnections: options.xaConnections,
        grpcProtos: TESTS_GRPC_PROTOS,
      }),
    ],
    controllers: [sqlBank('pg'), sqlBank('mysql'), redisBank(dbs.redis.keyPrefix), ...(options.controllers ?? [])],
    providers: [...(options.providers ?? []), Runs, { provide: 'pg-db', useValue: databases.pg }, { provide: 'mysql-db', useValue: databases.mysql }, { provide: 'redis', useValue: redis }],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: ['error'], forceCloseConnections: true });
  app.connectMicroservice(testsGrpcOptions(grpcAddress, { workflowResume: options.workflowResume }), { inheritAppConfig: true });
  await app.startAllMicroservices();
  keepConnectionsForDtm(app);
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    grpcAddress,
    client: app.get(DtmClient),
    runs: app.get(Runs),
    databases,
    sql,
    redis,
    redisKey: (account) => `${dbs.redis.keyPrefix}account-${account}`,
    async close() {
      const timed = async (what: string, step: Promise<unknown>) => {
        const started = Date.now();
        await step;
        const ms = Date.now() - started;
        if (ms > 1000) process.stderr.write(`[barrier-app] close: ${what} took ${ms} ms (pg pool: ${pgPool.totalCount} clients, ${pgPool.idleCount} idle, ${pgPool.waitingCount} waiting)\n`);
      };
      await timed('app.close()', app.close());
      await timed('pools end()', Promise.all([pgPool.end(), myPool.end()]));
      redis.disconnect();
    },
  };
}

/** A bank of the barrier app: a SQL store's, or the Redis one. */
export type BankStore = SqlStore | 'redis';

/** What a direct branch call answered (HTTP status, or for gRPC the status DTM would read and the code). */
export interface BankAnswer {
  status: number;
  code?: number;
  text: string;
}

/** Test helpers on the barrier app `app()` (read when called: the app starts in beforeAll). */
export function bankHelpers(app: () => BarrierApp) {
  /** The target of the branch at `path` of `store`'s bank on `protocol`: its URL, or its gRPC method (`trans-out` → `TransOut`). */
  const target = (store: BankStore, protocol: DtmProtocol, path: string): string => {
    const t = app();
    if (protocol === 'http') return `${t.url}/${store}-bank/${path}`;
    const method = path.replace(/(^|-)([a-z])/g, (_m, _d, c: string) => c.toUpperCase());
    return `${t.grpcAddress}/tests.${grpcServiceOf(store as SqlStore)}/${method}`;
  };
  return {
    target,
    /** Sets the accounts of `store` to exactly `balances`. */
    async seed(store: BankStore, balances: Record<number, number>): Promise<void> {
      const t = app();
      if (store === 'redis') {
        for (const [id, balance] of Object.entries(balances)) await t.redis.set(t.redisKey(Number(id)), balance);
        return;
      }
      await t.sql[store].run('DELETE FROM account');
      for (const [id, balance] of Object.entries(balances)) await t.sql[store].run('INSERT INTO account (id, balance) VALUES (?, ?)', [Number(id), balance]);
    },
    /** The balances of accounts `ids` in `store`. */
    async balances(store: BankStore, ids: number[]): Promise<Record<number, number>> {
      const t = app();
      const result: Record<number, number> = {};
      for (const id of ids) {
        if (store === 'redis') result[id] = Number(await t.redis.get(t.redisKey(id)));
        else result[id] = Number((await t.sql[store].run('SELECT balance FROM account WHERE id = ?', [id])).rows[0].balance);
      }
      return result;
    },
    /** The barrier rows of `gid` in `store`, as `branch_id/op/barrier_id=reason`, in key order. */
    async barrierRows(store: SqlStore, gid: string): Promise<string[]> {
      const { rows } = await app().sql[store].run('SELECT branch_id, op, barrier_id, reason FROM dtm_barrier WHERE gid = ? ORDER BY branch_id, op, barrier_id', [gid]);
      return rows.map((r) => `${r.branch_id}/${r.op}/${r.barrier_id}=${r.reason}`);
    },
    /**
     * Calls a branch of `store`'s bank directly, as DTM (or an attacker) would: HTTP POST with the
     * query, or gRPC with the dtm-* metadata; `headers` as headers / metadata; `body` undefined: no
     * body (GET) / an empty message.
     */
    async callBranch(store: BankStore, protocol: DtmProtocol, path: string, query: Record<string, string>, body?: Move, headers: Record<string, string> = {}): Promise<BankAnswer> {
      if (protocol === 'grpc') return callGrpc(target(store, protocol, path), body, query, headers);
      const res = await fetch(`${target(store, protocol, path)}?${new URLSearchParams(query)}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, text: await res.text() };
    },
  };
}
