// The app of observability.spec.ts: one Nest app that is both the AP (its DtmClient starts the
// transactions) and the participant (saga, TCC and msg branches behind the PostgreSQL barrier, an
// XA branch on PostgreSQL), each branch an HTTP route and a gRPC method (services PgBank and
// XaBank of test/e2e/protos/tests.proto), so that every span of a transaction lands in one
// in-memory exporter; a route that starts a message whose branch starts a saga (Relay), with
// `x-tenant` as pass-through header; a TCC branch whose Try nests a TCC; branches that use the barrier by hand, on PostgreSQL and on
// Redis (ManualBarrierBank); a workflow. Its logger records every line.
import 'reflect-metadata';
import { BadRequestException, Body, Controller, Get, Injectable, Post, RequestTimeoutException, UnprocessableEntityException, UseInterceptors, type CallHandler, type INestApplication, type NestInterceptor, type PipeTransform } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import { map, throwError, timeout, timer, type Observable } from 'rxjs';
import pg from 'pg';
import {
  BarrierTx,
  BranchContext,
  DtmClient,
  DtmFailureError,
  DtmInstrumentation,
  DtmModule,
  DtmWorkflow,
  MsgBranch,
  MsgQueryPrepared,
  SagaAction,
  SagaCompensate,
  TccCancel,
  TccConfirm,
  TccTry,
  UseBarrier,
  XaBranch,
  ensureBarrierSchema,
  pgBarrierDatabase,
  type BarrierDatabase,
  type BranchInfo,
  type DtmConfigInput,
  type DtmInstrumentationOptions,
  type DtmProtocol,
  type WorkflowContext,
} from 'nestjs-dtm';
import type { FileDatabases } from '../support/databases.js';
import { TESTS_GRPC_PROTOS, testsGrpcOptions } from '../support/grpc.js';
import { harness } from '../support/harness.js';
import { LineLogger } from '../support/line-logger.js';
import { freePort } from '../support/services/process.js';
import { pgXaAt } from '../support/pg-xa.js';
import { testRedis } from '../support/redis-client.js';

/** A transfer step's body; `fail` set: FAILURE after the write (which rolls back); `crash`: a plain Error instead; `old-protocol`: returns `{ dtm_result: 'FAILURE' }` instead; `bad-request`: throws a BadRequestException (FAILURE); `unprocessable`: an UnprocessableEntityException (422, FAILURE); `compensate`: the compensation throws FAILURE; `confirm`: a TCC confirm throws a plain Error; `undo-once`: transOut's compensation throws a plain Error at its first call of a gid. */
export interface Move {
  account: number;
  amount: number;
  fail?: string;
}

let db: BarrierDatabase;
/** The gids whose transOut compensation already crashed once (`fail: 'undo-once'`). */
const undoneOnce = new Set<string>();
let redis: Redis;
let redisPrefix: string;
const add = 'UPDATE account SET balance = balance + $1 WHERE id = $2';
const withdraw = 'UPDATE account SET balance = balance - $1 WHERE id = $2 AND balance >= $1';

async function exec(tx: unknown, sql: string, params: unknown[]): Promise<number> {
  return (await (tx as pg.PoolClient).query(sql, params)).rowCount ?? 0;
}

@Controller('bank')
@UseBarrier('pg')
class Bank {
  @Post('trans-out')
  @GrpcMethod('PgBank', 'TransOut')
  @SagaAction('transOut')
  async transOut(@Body() m: Move, @BarrierTx() tx: unknown) {
    if ((await exec(tx, withdraw, [m.amount, m.account])) === 0) throw new DtmFailureError(`account ${m.account}: insufficient balance`);
  }

  @Post('trans-out-compensate')
  @GrpcMethod('PgBank', 'TransOutCompensate')
  @SagaCompensate('transOut')
  async transOutCompensate(@Body() m: Move, @BarrierTx() tx: unknown, @BranchContext() b: BranchInfo) {
    if (m.fail === 'undo-once' && !undoneOnce.has(b.gid)) {
      undoneOnce.add(b.gid);
      throw new Error('ledger offline'); // DTM calls the compensation again at its next retry
    }
    await exec(tx, add, [m.amount, m.account]);
  }

  @Post('trans-in')
  @GrpcMethod('PgBank', 'TransIn')
  @SagaAction('transIn')
  async transIn(@Body() m: Move, @BarrierTx() tx: unknown) {
    await exec(tx, add, [m.amount, m.account]);
    if (m.fail === 'crash') throw new Error('ledger disk full');
    if (m.fail === 'bad-request') throw new BadRequestException(`account ${m.account} is closed`); // answered FAILURE by the module's filter
    if (m.fail === 'unprocessable') throw new UnprocessableEntityException(`account ${m.account} is closed`); // a 422: answered FAILURE too
    if (m.fail === 'old-protocol') return { dtm_result: 'FAILURE', message: `account ${m.account} is frozen` }; // DTM's result protocol before v1.10, which v1.19 still reads
    if (m.fail) throw new DtmFailureError(`account ${m.account} is frozen`);
  }

  @Post('trans-in-compensate')
  @GrpcMethod('PgBank', 'TransInCompensate')
  @SagaCompensate('transIn')
  async transInCompensate(@Body() m: Move, @BarrierTx() tx: unknown) {
    if (m.fail === 'compensate') throw new DtmFailureError('cannot undo');
    await exec(tx, add, [-m.amount, m.account]);
  }

  @Post('tcc-out-try')
  @GrpcMethod('PgBank', 'TccOutTry')
  @TccTry('tccOut')
  async tccOutTry(@Body() m: Move, @BarrierTx() tx: unknown) {
    if ((await exec(tx, withdraw, [m.amount, m.account])) === 0) throw new DtmFailureError(`account ${m.account}: insufficient balance`);
  }

  @Post('tcc-out-confirm')
  @GrpcMethod('PgBank', 'TccOutConfirm')
  @TccConfirm('tccOut')
  tccOutConfirm(@Body() m: Move) {
    if (m.fail === 'confirm') throw new Error('confirm: ledger offline'); // DTM retries it
  }

  @Post('tcc-out-cancel')
  @GrpcMethod('PgBank', 'TccOutCancel')
  @TccCancel('tccOut')
  async tccOutCancel(@Body() m: Move, @BarrierTx() tx: unknown) {
    await exec(tx, add, [m.amount, m.account]);
  }

  @Post('deliver')
  @GrpcMethod('PgBank', 'Deliver')
  @MsgBranch('deliver')
  async deliver(@Body() m: Move, @BarrierTx() tx: unknown) {
    await exec(tx, add, [m.amount, m.account]);
    if (m.fail === 'crash') throw new Error('ledger disk full'); // DTM retries it
    if (m.fail) throw new DtmFailureError(`account ${m.account} is frozen`); // a message cannot roll back: DTM retries it too
  }

  @Get('query-prepared')
  @GrpcMethod('PgBank', 'QueryPrepared')
  @MsgQueryPrepared('outbox')
  queryPrepared() {
    throw new Error('not called: the barrier answers');
  }
}

/**
 * A saga action behind the barrier defined as in production (NODE_ENV=production while its decorators
 * run: no development check of success bodies), answering a body that holds FAILURE outside DTM's
 * result protocol (no `dtm_result`), which the module does not read on a success (docs/branches.md).
 */
function productionBank() {
  const previous = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    @Controller('prod-bank')
    @UseBarrier('pg')
    class ProdBank {
      @Post('trans-in')
      @SagaAction('prodTransIn', { compensate: false })
      async transIn(@Body() m: Move, @BarrierTx() tx: unknown) {
        await exec(tx, add, [m.amount, m.account]);
        return { account: m.account, note: 'last check: no FAILURE' };
      }
    }
    return ProdBank;
  } finally {
    process.env.NODE_ENV = previous;
  }
}

@Controller('xa')
class XaBank {
  @Post('pg')
  @GrpcMethod('XaBank', 'Pg')
  @XaBranch('xaPg', { db: 'pg' })
  async pg(@Body() m: Move, @BarrierTx() client: pg.Client) {
    await client.query(add, [m.amount, m.account]);
    if (m.fail) throw new DtmFailureError('pg branch refused');
    return { message: 'ok' };
  }
}

/**
 * Branches that use the barrier by hand (`DtmClient.barrier(branch)`, no `@UseBarrier`): on the
 * PostgreSQL database (`callWithDb`) and on Redis (`redisCheckAdjustAmount`, the amounts under
 * `<redisPrefix>account-<id>`).
 */
@Controller('manual')
class ManualBarrierBank {
  constructor(private readonly dtm: DtmClient) {}

  @Post('out')
  @GrpcMethod('PgBank', 'ManualOut')
  @SagaAction('manualOut')
  async out(@Body() m: Move, @BranchContext() b: BranchInfo) {
    await this.dtm.barrier(b).callWithDb(db, (tx) => exec(tx, withdraw, [m.amount, m.account]));
  }

  @Post('out-compensate')
  @GrpcMethod('PgBank', 'ManualOutCompensate')
  @SagaCompensate('manualOut')
  async outCompensate(@Body() m: Move, @BranchContext() b: BranchInfo) {
    await this.dtm.barrier(b).callWithDb(db, (tx) => exec(tx, add, [m.amount, m.account]));
  }

  @Post('redis-out')
  @SagaAction('redisOut')
  async redisOut(@Body() m: Move, @BranchContext() b: BranchInfo) {
    await this.dtm.barrier(b).redisCheckAdjustAmount(redis, `${redisPrefix}account-${m.account}`, -m.amount);
  }

  @Post('redis-out-compensate')
  @SagaCompensate('redisOut')
  async redisOutCompensate(@Body() m: Move, @BranchContext() b: BranchInfo) {
    await this.dtm.barrier(b).redisCheckAdjustAmount(redis, `${redisPrefix}account-${m.account}`, m.amount);
  }
}

/** A TCC branch whose Try nests a TCC (`tccFromBranch`) trying the bank's `tccOut` with the same move. */
@Controller('nesting')
class NestingBank {
  constructor(private readonly dtm: DtmClient) {}

  @Post('try')
  @TccTry('nestOut')
  async try(@Body() m: Move, @BranchContext() b: BranchInfo) {
    await this.dtm.tccFromBranch(b).callBranch(m, 'tccOut');
  }

  @Post('confirm')
  @TccConfirm('nestOut')
  confirm() {}

  @Post('cancel')
  @TccCancel('nestOut')
  cancel() {}
}

/** A pipe that refuses (400, which the module answers FAILURE) a move of more than 100. */
class AtMost100 implements PipeTransform<Move, Move> {
  transform(m: Move): Move {
    if (m.amount > 100) throw new BadRequestException(`amount ${m.amount} is over 100`);
    return m;
  }
}

/** A pipe that refuses a move of more than 100 as ValidationPipe does with `errorHttpStatusCode: 422` (also answered FAILURE). */
class AtMost100As422 implements PipeTransform<Move, Move> {
  transform(m: Move): Move {
    if (m.amount > 100) throw new UnprocessableEntityException(`amount ${m.amount} is over 100`);
    return m;
  }
}

/** A Standard Schema that refuses a move of more than 100 (the guard answers FAILURE before the handler). */
const atMost100 = {
  '~standard': {
    version: 1 as const,
    vendor: 'observability-test',
    validate: (value: unknown) => ((value as Move).amount > 100 ? { issues: [{ message: 'amount over 100', path: ['amount'] }] } : { value }),
  },
};

/** Actions whose payload is refused before the handler runs: by a pipe (400, or 422), and by the decorator's `{ schema }`. */
@Controller('checked')
class CheckedBank {
  @Post('piped-in')
  @SagaAction('pipedIn')
  pipedIn(@Body(new AtMost100()) _m: Move) {}

  @Post('piped-in-compensate')
  @SagaCompensate('pipedIn')
  pipedInCompensate() {}

  @Post('piped-422-in')
  @SagaAction('piped422In')
  piped422In(@Body(new AtMost100As422()) _m: Move) {}

  @Post('piped-422-in-compensate')
  @SagaCompensate('piped422In')
  piped422InCompensate() {}

  @Post('schema-in')
  @SagaAction('schemaIn', { schema: atMost100 })
  schemaIn(@Body() _m: Move) {}

  @Post('schema-in-compensate')
  @SagaCompensate('schemaIn')
  schemaInCompensate() {}
}

/** Gives up on a handler's answer after 50 ms, as a timeout interceptor of an app does: 408, the handler's Observable unsubscribed. */
@Injectable()
class GiveUpAfter50Ms implements NestInterceptor {
  intercept(_context: unknown, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(timeout({ first: 50, with: () => throwError(() => new RequestTimeoutException('gave up after 50 ms')) }));
  }
}

/** An async action without a barrier that answers an Observable (as `HttpService` calls give), which fails with `fail`. */
@Controller('reactive')
class ReactiveBank {
  @Post('in')
  @SagaAction('reactiveIn')
  async reactiveIn(@Body() m: Move): Promise<Observable<object>> {
    await Promise.resolve();
    return timer(20).pipe(
      map(() => {
        if (m.fail) throw new DtmFailureError(`account ${m.account} refused the deposit`);
        return { moved: m.amount };
      }),
    );
  }

  @Post('in-compensate')
  @SagaCompensate('reactiveIn')
  reactiveInCompensate() {}

  /** An Observable that answers after 3 s, which its interceptor gives up on after 50 ms. */
  @Post('slow')
  @SagaAction('reactiveSlow')
  @UseInterceptors(GiveUpAfter50Ms)
  async reactiveSlow(): Promise<Observable<object>> {
    await Promise.resolve();
    return timer(3_000).pipe(map(() => ({ late: true })));
  }

  @Post('slow-compensate')
  @SagaCompensate('reactiveSlow')
  reactiveSlowCompensate() {}

  /** An Observable answered after 300 ms, when its interceptor gave up (after 50 ms): Nest drops it, never subscribed. */
  @Post('late')
  @SagaAction('reactiveLate')
  @UseInterceptors(GiveUpAfter50Ms)
  async reactiveLate(): Promise<Observable<object>> {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return timer(0).pipe(map(() => ({ late: true })));
  }

  @Post('late-compensate')
  @SagaCompensate('reactiveLate')
  reactiveLateCompensate() {}
}

/** Transactions started inside requests, to show the pass-through header `x-tenant` travelling. */
@Controller('relay')
class Relay {
  constructor(private readonly dtm: DtmClient) {}

  /** Not a branch: an inbound request that submits message `gid`, whose one branch is `relay`, over `protocol`. */
  @Post('orders')
  async order(@Body() o: { gid: string; protocol: DtmProtocol }) {
    await this.dtm.newMsg(o.gid, { protocol: o.protocol }).add('relay', { account: 3, amount: 5 }).submit();
    return { gid: o.gid };
  }

  /** The message's branch: starts saga `<gid>-nested` (`amount` from account 3 to account 2) and waits for its outcome. */
  @Post('relay')
  @GrpcMethod('PgBank', 'Relay')
  @MsgBranch('relay')
  async relay(@Body() m: Move, @BranchContext() b: BranchInfo) {
    const nested = await this.dtm.newSaga(`${b.gid}-nested`).add('transOut', { account: 3, amount: m.amount }).add('transIn', { account: 2, amount: m.amount }).submitAndWait();
    if (nested.status !== 'succeed') throw new DtmFailureError(`saga ${b.gid}-nested ended ${nested.status}`);
  }
}

/**
 * A workflow over the bank's saga branches: out (with its compensation), then in (`fail`: FAILURE,
 * the workflow rolls back). `pauseOnce`: the first execution of a gid stops after out with an
 * error (the workflow stays pending, DTM resumes it).
 */
@Injectable()
class Transfers {
  private readonly paused = new Set<string>();

  @DtmWorkflow('observed.transfer')
  async transfer(wf: WorkflowContext<{ base: string; fail: string; pauseOnce?: boolean }>) {
    const { base, fail, pauseOnce } = wf.input;
    await wf
      .step('out')
      .onRollback((b) => b.http(`${base}/bank/trans-out-compensate`, { account: 1, amount: 20 }))
      .http(`${base}/bank/trans-out`, { account: 1, amount: 20 });
    if (pauseOnce && !this.paused.has(wf.gid)) {
      this.paused.add(wf.gid);
      throw new Error('paused after out: DTM resumes the workflow');
    }
    await wf.step('in').http(`${base}/bank/trans-in`, { account: 2, amount: 20, fail });
    return 'moved';
  }
}

/** The running app. */
export interface ObservedApp {
  app: INestApplication;
  /** The base URL of its HTTP server. */
  url: string;
  /** The `host:port` of its gRPC server. */
  grpcAddress: string;
  client: DtmClient;
  instrumentation: DtmInstrumentation;
  logger: LineLogger;
  /** Runs SQL on the app's database. */
  sql(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /** The Redis client of the hand-written Redis barrier, and the prefix of its keys (`<prefix>account-<id>`); absent without `dbs.redis`. */
  redis?: { client: Redis; prefix: string };
  /** The balances of accounts `ids`. */
  balances(ids: number[]): Promise<Record<number, number>>;
  close(): Promise<void>;
}

/**
 * Starts the app on this file's PostgreSQL database (accounts 1..3 with 100 each), with `instrumentation` as its module option and `config` over its `lynx.dtm` config
 * (or what `config` makes of the app's own addresses, its HTTP base URL and gRPC address: to name it under `services`, say).
 */
export async function startObservedApp(dbs: FileDatabases, instrumentation: DtmInstrumentationOptions, config: DtmConfigInput | ((own: { url: string; grpcAddress: string }) => DtmConfigInput) = {}): Promise<ObservedApp> {
  const pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 10 });
  db = pgBarrierDatabase(pool);
  await pool.query('DROP TABLE IF EXISTS account');
  await pool.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
  await pool.query('INSERT INTO account VALUES (1, 100), (2, 100), (3, 100)');
  await ensureBarrierSchema(db, { table: 'dtm_barrier' });
  // the controllers use the last app's client; each app closes its own (none without dbs.redis: the instrumented child's)
  const redisClient = dbs.redis && (redis = testRedis(dbs.redis.url));
  redisPrefix = dbs.redis?.keyPrefix ?? '';
  const grpcAddress = `127.0.0.1:${await freePort()}`;
  const httpPort = await freePort();
  const overrides = typeof config === 'function' ? config({ url: `http://127.0.0.1:${httpPort}`, grpcAddress }) : config;
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, grpcAppAddress: grpcAddress, barrierTable: 'dtm_barrier', passThroughHeaders: ['x-tenant'], ...overrides },
        barrierConnections: { pg: db },
        xaConnections: {
          pg: pgXaAt(dbs.postgres.url),
        },
        grpcProtos: TESTS_GRPC_PROTOS,
        instrumentation,
      }),
    ],
    controllers: [Bank, XaBank, Relay, ManualBarrierBank, CheckedBank, ReactiveBank, NestingBank, productionBank()],
    providers: [Transfers],
  }).compile();
  const logger = new LineLogger();
  const app = moduleRef.createNestApplication({ logger, forceCloseConnections: true });
  app.connectMicroservice(testsGrpcOptions(grpcAddress, { workflowResume: true }), { inheritAppConfig: true });
  await app.startAllMicroservices();
  await app.listen(httpPort, '127.0.0.1');
  return {
    app,
    url: `http://127.0.0.1:${httpPort}`,
    grpcAddress,
    client: app.get(DtmClient),
    instrumentation: app.get(DtmInstrumentation),
    logger,
    sql: async (text, params = []) => (await pool.query(text, params)).rows,
    redis: redisClient && { client: redisClient, prefix: redisPrefix },
    async balances(ids) {
      const result: Record<number, number> = {};
      for (const id of ids) result[id] = Number((await pool.query('SELECT balance FROM account WHERE id = $1', [id])).rows[0].balance);
      return result;
    },
    async close() {
      await app.close();
      await pool.end();
      redisClient?.disconnect();
    },
  };
}
