// Wire compatibility with DTM's own Go SDK (dtmcli and dtmgrpc v1.19.0), through the real DTM
// server: a Go service (test/support/go-peer) starts sagas, TCC, XA and message transactions whose
// branches are nestjs-dtm handlers, and nestjs-dtm's DtmClient drives branches the Go service
// serves with the SDK's barrier and XA, over HTTP and over gRPC (the service bank.GoBank of
// go-peer/bank.proto, whose payloads DtmClient encodes from objects with that proto). Outcomes:
// what DTM recorded, the balances, and the barrier rows each side wrote into the same kind of table.
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Body, Controller, Get, HttpException, Injectable, Post, type INestApplication } from '@nestjs/common';
import { GrpcMethod, RpcException, Transport } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import {
  BarrierTx,
  BranchBarrier,
  BranchContext,
  DtmClient,
  DtmFailureError,
  DtmModule,
  DtmOngoingError,
  DtmServerError,
  DtmUnavailableError,
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
  mysqlBarrierDatabase,
  mysqlXaDatabase,
  pgBarrierDatabase,
  redisBarrierConnection,
  type BranchInfo,
  type WorkflowContext,
} from 'nestjs-dtm';
import { fileDatabases } from '../support/databases.js';
import { harness } from '../support/harness.js';
import { goPeerBinaryPath } from '../support/services/binaries.js';
import { freePort, minimalEnv, runDirFrom, startProcess, waitUntil, type ManagedProcess } from '../support/services/process.js';
import { branchLines, branchTargets, dtmKeepsSteps, latch } from '../support/fixtures.js';
import { closeEach, postJsonWithin, within } from '../support/deadline.js';
import { pgXaAt } from '../support/pg-xa.js';
import { testRedis } from '../support/redis-client.js';

interface Move {
  account: number;
  amount: number;
  fail?: boolean;
}

const withdrawSql = 'UPDATE account SET balance = balance - $1 WHERE id = $2 AND balance >= $1';
const depositSql = 'UPDATE account SET balance = balance + $1 WHERE id = $2';

/** The Nest side: PostgreSQL branches behind nestjs-dtm's barrier, and XA branches on MariaDB and PostgreSQL; each an HTTP route and a gRPC method (bank.NestBank). */
@Controller('nest')
@UseBarrier('pg')
class NestBank {
  private async withdraw(tx: pg.PoolClient, m: Move): Promise<void> {
    if ((await tx.query(withdrawSql, [m.amount, m.account])).rowCount === 0) throw new DtmFailureError(`nest: account ${m.account} has less than ${m.amount}`);
  }

  @Post('withdraw')
  @GrpcMethod('NestBank', 'Withdraw')
  @SagaAction('nest.withdraw')
  withdrawAction(@Body() m: Move, @BarrierTx() tx: pg.PoolClient) {
    // account 93: FAILURE said as gRPC says it, an RpcException with code ABORTED (its details say why), whichever transport called
    if (m.account === 93) throw new RpcException({ code: 10, message: 'ONGOING', details: 'nest: out of stock' });
    return this.withdraw(tx, m);
  }

  @Post('withdraw-compensate')
  @GrpcMethod('NestBank', 'WithdrawCompensate')
  @SagaCompensate('nest.withdraw')
  async withdrawCompensate(@Body() m: Move, @BarrierTx() tx: pg.PoolClient) {
    await tx.query(depositSql, [m.amount, m.account]);
  }

  /** The withdraw as a step without compensation whose first call, when {@link holdNext} is set, waits for it to open (after its withdrawal, before its commit). */
  @Post('withdraw-held')
  @SagaAction('nest.withdrawHeld', { compensate: false })
  async withdrawHeld(@Body() m: Move, @BarrierTx() tx: pg.PoolClient) {
    await this.withdraw(tx, m);
    const hold = holdNext;
    holdNext = undefined;
    await hold?.wait();
  }

  @Post('try')
  @GrpcMethod('NestBank', 'Try')
  @TccTry('nest.tcc')
  tryWithdraw(@Body() m: Move, @BarrierTx() tx: pg.PoolClient) {
    return this.withdraw(tx, m);
  }

  @Post('confirm')
  @GrpcMethod('NestBank', 'Confirm')
  @TccConfirm('nest.tcc')
  confirm() {}

  @Post('cancel')
  @GrpcMethod('NestBank', 'Cancel')
  @TccCancel('nest.tcc')
  async cancel(@Body() m: Move, @BarrierTx() tx: pg.PoolClient) {
    await tx.query(depositSql, [m.amount, m.account]);
  }

  @Post('deliver')
  @GrpcMethod('NestBank', 'Deliver')
  @MsgBranch('nest.deliver')
  async deliver(@Body() m: Move, @BarrierTx() tx: pg.PoolClient) {
    await tx.query(depositSql, [m.amount, m.account]);
  }

  @Post('xa')
  @GrpcMethod('NestBank', 'Xa')
  @XaBranch('nest.xa', { db: 'mysql' })
  async xa(@Body() m: Move, @BarrierTx() conn: mysql.Connection) {
    await conn.query('UPDATE account SET balance = balance + ? WHERE id = ?', [m.amount, m.account]);
    if (m.fail) throw new DtmFailureError('nest: xa branch refused');
  }

  @Post('xa-pg')
  @GrpcMethod('NestBank', 'XaPg')
  @XaBranch('nest.xaPg', { db: 'pg' })
  async xaPg(@Body() m: Move, @BarrierTx() client: pg.Client) {
    await client.query(depositSql, [m.amount, m.account]);
  }

  @Get('query-prepared')
  @GrpcMethod('NestBank', 'QueryPrepared')
  @MsgQueryPrepared('nest.check')
  queryPrepared() {}

  @Get('query-prepared-mysql')
  @GrpcMethod('NestBank', 'QueryPreparedMysql')
  @MsgQueryPrepared('nest.checkMysql', { barrier: 'mysql' })
  queryPreparedMysql() {}

  @Get('query-prepared-redis')
  @GrpcMethod('NestBank', 'QueryPreparedRedis')
  @MsgQueryPrepared('nest.checkRedis', { barrier: 'redis' })
  queryPreparedRedis() {}
}

/** When set, the next call of NestBank.withdrawHeld waits on it. */
let holdNext: ReturnType<typeof latch> | undefined;

/** The BranchInfo.headers of each gid's call to NestNested.headers. */
const seenHeaders = new Map<string, Record<string, string>>();

/**
 * A TCC branch of ours whose Try nests a TCC of its own (tccFromBranch): its sub-branch is the Go
 * peer's MariaDB withdraw (confirm: noop, cancel: deposit), over the transport the call came in on;
 * and a saga action that keeps the BranchInfo.headers it got.
 */
@Controller('nest')
class NestNested {
  constructor(private readonly dtm: DtmClient) {}

  @Post('nested-try')
  @GrpcMethod('NestBank', 'NestedTry')
  @TccTry('nest.nested')
  async nestedTry(@Body() m: Move, @BranchContext() branch: BranchInfo) {
    // accounts 91 and 92: the Try answers ONGOING, or a plain error
    if (m.account === 91) throw new DtmOngoingError('nest: not yet');
    if (m.account === 92) throw new Error('nest: plain error');
    // accounts 93 to 95: FAILURE as an RpcException with details (its message says ONGOING), ONGOING as an RpcException, FAILURE as an HttpException 409
    if (m.account === 93) throw new RpcException({ code: 10, message: 'ONGOING', details: 'nest: out of stock' });
    if (m.account === 94) throw new RpcException({ code: 9, message: 'nest: later' });
    if (m.account === 95) throw new HttpException('nest: conflict', 409);
    const overHttp = /^https?:/.test(branch.dtm ?? '');
    const go = (path: string, method: string) => (overHttp ? `${goUrl}/rm/${path}` : `${goGrpc}/bank.GoBank/${method}`);
    await this.dtm.tccFromBranch(branch).callBranch({ account: m.account, amount: m.amount }, go('mysql/withdraw', 'MysqlWithdraw'), go('noop', 'Noop'), go('mysql/deposit', 'MysqlDeposit'));
    return {};
  }

  /** The same Try whose sub-branch is the Go peer's nested Try (which nests its own TCC): three levels. */
  @Post('nested-try-deep')
  @GrpcMethod('NestBank', 'NestedTryDeep')
  @TccTry('nest.nestedDeep')
  async nestedTryDeep(@Body() m: Move, @BranchContext() branch: BranchInfo) {
    const overHttp = /^https?:/.test(branch.dtm ?? '');
    const go = (path: string, method: string) => (overHttp ? `${goUrl}/rm/${path}` : `${goGrpc}/bank.GoBank/${method}`);
    await this.dtm.tccFromBranch(branch).callBranch({ account: m.account, amount: m.amount }, go('nested/try', 'NestedTry'), go('noop', 'Noop'), go('noop', 'Noop'));
    return {};
  }

  /** The same Try whose sub-branch is another TCC branch of ours (NestBank's, behind the barrier), over the transport the call came in on. */
  @Post('nested-try-own')
  @GrpcMethod('NestBank', 'NestedTryOwn')
  @TccTry('nest.nestedOwn')
  async nestedTryOwn(@Body() m: Move, @BranchContext() branch: BranchInfo) {
    const overHttp = /^https?:/.test(branch.dtm ?? '');
    const own = (path: string, method: string) => (overHttp ? `${nestUrl}/${path}` : `${nestGrpc}/bank.NestBank/${method}`);
    await this.dtm.tccFromBranch(branch).callBranch({ account: m.account, amount: m.amount }, own('try', 'Try'), own('confirm', 'Confirm'), own('cancel', 'Cancel'));
    return {};
  }

  @Post('nested-confirm-own')
  @GrpcMethod('NestBank', 'NestedConfirmOwn')
  @TccConfirm('nest.nestedOwn')
  nestedConfirmOwn() {
    return {};
  }

  @Post('nested-cancel-own')
  @GrpcMethod('NestBank', 'NestedCancelOwn')
  @TccCancel('nest.nestedOwn')
  nestedCancelOwn() {
    return {};
  }

  @Post('nested-confirm-deep')
  @GrpcMethod('NestBank', 'NestedConfirmDeep')
  @TccConfirm('nest.nestedDeep')
  nestedConfirmDeep() {
    return {};
  }

  @Post('nested-cancel-deep')
  @GrpcMethod('NestBank', 'NestedCancelDeep')
  @TccCancel('nest.nestedDeep')
  nestedCancelDeep() {
    return {};
  }

  @Post('headers')
  @GrpcMethod('NestBank', 'Headers')
  @SagaAction('nest.headers', { compensate: false })
  headers(@BranchContext() branch: BranchInfo) {
    seenHeaders.set(branch.gid, branch.headers);
    return {};
  }

  @Post('nested-confirm')
  @GrpcMethod('NestBank', 'NestedConfirm')
  @TccConfirm('nest.nested')
  nestedConfirm() {
    return {};
  }

  @Post('nested-cancel')
  @GrpcMethod('NestBank', 'NestedCancel')
  @TccCancel('nest.nested')
  nestedCancel() {
    return {};
  }
}

/** A workflow of ours whose steps are the Go peer's dtmcli branches (steps given in the input). */
@Injectable()
class NestWorkflows {
  @DtmWorkflow('nest-to-go')
  async transfer(wf: WorkflowContext<{ steps: { action: string; compensate: string; payload: Move }[] }>) {
    for (const [i, step] of wf.input.steps.entries()) {
      await wf
        .step(`step-${i + 1}`)
        .onRollback((b) => b.http(step.compensate, step.payload))
        .http(step.action, step.payload);
    }
    return 'done';
  }

  /** The same over gRPC: steps on the Go peer's dtmgrpc branches (bank.GoBank methods). */
  @DtmWorkflow('nest-to-go-grpc')
  async transferGrpc(wf: WorkflowContext<{ steps: { action: string; compensate: string; payload: Move }[] }>) {
    for (const [i, step] of wf.input.steps.entries()) {
      await wf
        .step(`step-${i + 1}`)
        .onRollback((b) => b.grpc(step.compensate, step.payload))
        .grpc(step.action, step.payload);
    }
    return 'done';
  }
}

let pgPool: pg.Pool;
let myPool: mysql.Pool;
let redis: Redis;
/** The Redis key the Go peer's message barrier adjusts (RedisCheckAdjustAmount). */
let redisAmountKey: string;
let app: INestApplication;
let client: DtmClient;
let nestUrl: string;
let goUrl: string;
let goGrpc: string;
let nestGrpc: string;
let peer: ManagedProcess;
let startPeer: () => ManagedProcess;
/** Starts another Go peer on `port` (its gRPC on `grpcPort`) whose MariaDB is at `mysqlUrl`. */
let startOtherPeer: (port: number, grpcPort: number, mysqlUrl: string) => ManagedProcess;
/** The file's MariaDB database, as a mysql:// URL. */
let mysqlUrl: string;

/** The Go peer's proto: the same file its dtmgrpc service compiles. */
const BANK_PROTO = join(import.meta.dirname, '..', 'support', 'go-peer', 'bank.proto');

beforeAll(async () => {
  const dbs = await fileDatabases();
  pgPool = new pg.Pool({ connectionString: dbs.postgres.url, max: 10 });
  myPool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 10 });
  // the test's reads and the app's Redis barrier: testRedis's command timeout fails a command a Redis that stopped
  // answering holds ("Command timed out") instead of holding the test to jest's 60 s timeout
  redis = testRedis(dbs.redis.url);
  redisAmountKey = `${dbs.redis.keyPrefix}amount`;
  for (const run of [(s: string) => pgPool.query(s), (s: string) => myPool.query(s)]) {
    await run('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
  }
  await ensureBarrierSchema(pgBarrierDatabase(pgPool), { table: 'dtm_barrier' });
  await ensureBarrierSchema(mysqlBarrierDatabase(myPool), { table: 'dtm_barrier' });

  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, barrierTable: 'dtm_barrier', passThroughHeaders: ['x-tenant'] },
        grpcProtos: { protoPath: BANK_PROTO },
        barrierConnections: { pg: pgBarrierDatabase(pgPool), mysql: mysqlBarrierDatabase(myPool), redis: redisBarrierConnection(redis) },
        xaConnections: {
          mysql: mysqlXaDatabase(() => mysql.createConnection(dbs.mariadb.config)),
          pg: pgXaAt(dbs.postgres.url),
        },
      }),
    ],
    controllers: [NestBank, NestNested],
    providers: [NestWorkflows],
  }).compile();
  app = moduleRef.createNestApplication({ logger: ['error'], forceCloseConnections: true });
  nestGrpc = `127.0.0.1:${await freePort()}`;
  app.connectMicroservice(
    { transport: Transport.GRPC, options: { package: 'bank', protoPath: BANK_PROTO, url: nestGrpc, loader: { longs: Number, defaults: true } } },
    { inheritAppConfig: true },
  );
  await app.startAllMicroservices();
  await app.listen(0, '127.0.0.1');
  nestUrl = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/nest`;
  client = app.get(DtmClient);

  const [port, grpcPort] = [await freePort(), await freePort()];
  const runDir = runDirFrom(harness().runDir);
  mysqlUrl = dbs.mariadb.url;
  startOtherPeer = (port, grpcPort, mysqlUrl) => startProcess({
    name: 'go-peer',
    command: goPeerBinaryPath(),
    args: [],
    env: minimalEnv({
      PORT: String(port),
      GRPC_PORT: String(grpcPort),
      PG_URL: dbs.postgres.url,
      MYSQL_URL: mysqlUrl,
      REDIS_URL: dbs.redis.url,
      NEST_URL: nestUrl,
      NEST_GRPC: nestGrpc,
      DTM_URL: harness().dtm.serverUrl,
      DTM_GRPC: harness().dtm.grpcAddress,
      BARRIER_TABLE: 'dtm_barrier',
    }),
    runDir,
    logFile: join(runDir.path, `go-peer-${process.pid}-${port}.log`),
  });
  startPeer = () => startOtherPeer(port, grpcPort, dbs.mariadb.url);
  goUrl = `http://127.0.0.1:${port}`;
  goGrpc = `127.0.0.1:${grpcPort}`;
  await restartPeer();
});

/** Starts the Go peer (again, on the same ports) and waits until it listens. */
async function restartPeer(): Promise<void> {
  peer = startPeer();
  await waitUntil('go peer', async (signal) => (await fetch(`${goUrl}/`, { signal })).status === 404, { timeoutMs: 20_000, process: peer });
}
afterAll(async () => {
  // each close within its deadline, all of them: one that never ends names itself
  await closeEach([
    ['afterAll: stopping the Go peer', () => peer?.stop()],
    ['afterAll: app.close()', () => app?.close()],
    ['afterAll: the PostgreSQL pool end()', () => pgPool?.end()],
    ['afterAll: the MariaDB pool end()', () => myPool?.end()],
    ['afterAll: the Redis disconnect()', () => redis?.disconnect()],
  ]);
});
/** Why an earlier beforeEach could not reset the accounts: the later ones fail at once with it, instead of waiting out their deadline each. */
let accountsStuck: string | undefined;
beforeEach(async () => {
  if (accountsStuck) throw new Error(`an earlier beforeEach could not reset the accounts: ${accountsStuck}`);
  try {
    await within('beforeEach: resetting the accounts (PostgreSQL, MariaDB, Redis)', 20_000, async () => {
      for (const run of [(s: string) => pgPool.query(s), (s: string) => myPool.query(s)]) {
        await run('DELETE FROM account');
        await run('INSERT INTO account (id, balance) VALUES (1, 100), (2, 0)');
      }
      await redis.set(redisAmountKey, '100');
    });
  } catch (err) {
    // a prepared XA transaction an earlier test left holds rows of account: the DELETE waits on it
    // (PostgreSQL: for ever), and each later test would time out without saying why
    const left = await within('listing the prepared XA transactions', 5_000, () => pendingXa()).catch((e: unknown) => (e as Error).message);
    accountsStuck = `${(err as Error).message}; prepared XA transactions of this database: ${JSON.stringify(left)}`;
    throw new Error(accountsStuck, { cause: err });
  }
});

async function pgBalances(): Promise<number[]> {
  return (await pgPool.query('SELECT balance FROM account ORDER BY id')).rows.map((r: { balance: number }) => r.balance);
}

async function mysqlBalances(): Promise<number[]> {
  const [rows] = await myPool.query('SELECT balance FROM account ORDER BY id');
  return (rows as { balance: number }[]).map((r) => r.balance);
}

/** Barrier rows of `gid` in PostgreSQL, as `branch/op/barrier=reason`. */
async function pgBarrier(gid: string): Promise<string[]> {
  const { rows } = await pgPool.query('SELECT branch_id, op, barrier_id, reason FROM dtm_barrier WHERE gid = $1 ORDER BY branch_id, op', [gid]);
  return rows.map((r: Record<string, string>) => `${r.branch_id}/${r.op}/${r.barrier_id}=${r.reason}`);
}

/**
 * Prepared XA transactions of `gids` left in MariaDB and PostgreSQL (XA RECOVER lists the whole
 * server's, other test files' included: only these gids' count); no gids: all of them.
 */
async function pendingXa(...gids: string[]): Promise<string[]> {
  const [rows] = await myPool.query('XA RECOVER');
  const prepared = await pgPool.query('SELECT gid FROM pg_prepared_xacts WHERE database = current_database()');
  const xids = [...(rows as { data: unknown }[]).map((r) => `mysql:${String(r.data)}`), ...prepared.rows.map((r: { gid: string }) => `pg:${r.gid}`)];
  return xids.filter((xid) => gids.length === 0 || gids.some((gid) => xid.includes(gid)));
}

/** `WithdrawCompensate` → `withdraw-compensate`: a gRPC method's name as the peer's HTTP path. */
const kebab = (method: string) => method.replace(/(?<!^)([A-Z])/g, '-$1').toLowerCase();

/**
 * The two ways DTM's Go SDK reaches our branches: dtmcli starts transactions through DTM's HTTP API
 * with our routes as branches, dtmgrpc through its gRPC API with our bank.NestBank methods.
 */
const goSdks = [
  { sdk: 'dtmcli', protocol: 'http', ap: '/ap', nest: (method: string) => `${nestUrl}/${kebab(method)}` },
  { sdk: 'dtmgrpc', protocol: 'grpc', ap: '/ap/grpc', nest: (method: string) => `${nestGrpc}/bank.NestBank/${method}` },
] as const;

describe.each(goSdks)("DTM's Go SDK ($sdk) drives nestjs-dtm's $protocol branches", ({ protocol, ap, nest }) => {
  /** Asks the Go peer to start a transaction with the SDK; resolves with its HTTP status and body. */
  const goStarts = async (kind: 'saga' | 'tcc' | 'xa' | 'msg', gid: string, branches: Record<string, unknown>[], options: Record<string, unknown> = {}) => {
    return postJsonWithin(`${goUrl}${ap}/${kind}`, { gid, branches, ...options });
  };
  const step = (account: number, amount: number) => ({ action: nest('Withdraw'), compensate: nest('WithdrawCompensate'), payload: { account, amount } });

  it('saga: commits; our barrier rows are the ones the Go SDK writes', async () => {
    const gid = await client.generateGid();
    expect((await goStarts('saga', gid, [step(1, 30), step(1, 20)])).status).toBe(200);
    const final = await client.waitForFinal(gid);
    expect([final.status, final.transaction.protocol]).toEqual(['succeed', protocol]);
    expect(branchLines(final)).toEqual(['01 compensate prepared', '01 action succeed', '02 compensate prepared', '02 action succeed']);
    expect(await pgBalances()).toEqual([50, 0]);
    expect(await pgBarrier(gid)).toEqual(['01/action/01=action', '02/action/01=action']);
  });

  it('saga: our FAILURE rolls it back with our reason; the compensations leave the balances as they were', async () => {
    const gid = await client.generateGid();
    await goStarts('saga', gid, [step(1, 30), step(2, 10)]);
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('nest: account 2 has less than 10');
    expect(branchLines(final)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
    expect(await pgBalances()).toEqual([100, 0]);
    // step 2's compensation found no action row: a null compensation, as the Go SDK would record it
    expect(await pgBarrier(gid)).toEqual(['01/action/01=action', '01/compensate/01=compensate', '02/action/01=compensate', '02/compensate/01=compensate']);
  });

  it('TCC: the Go SDK calls our Try; confirm, and cancel when our Try refuses', async () => {
    const branch = (amount: number) => ({ try: nest('Try'), confirm: nest('Confirm'), cancel: nest('Cancel'), payload: { account: 1, amount } });
    const ok = await client.generateGid();
    expect((await goStarts('tcc', ok, [branch(40)])).status).toBe(200);
    expect((await client.waitForFinal(ok)).status).toBe('succeed');
    expect(await pgBalances()).toEqual([60, 0]);

    const refused = await client.generateGid();
    const answer = await goStarts('tcc', refused, [branch(10), branch(500)]);
    expect(answer.status).toBe(409);
    expect(answer.text).toContain('nest: account 1 has less than 500');
    const final = await client.waitForFinal(refused);
    expect(final.status).toBe('failed');
    expect(branchLines(final)).toEqual(['01 cancel succeed', '01 confirm prepared', '02 cancel succeed', '02 confirm prepared']);
    expect(await pgBalances()).toEqual([60, 0]);
  });

  it('XA: our @XaBranch handlers on MariaDB and PostgreSQL register with the Go SDK\'s transaction and commit; a refusal rolls the other back', async () => {
    const ok = await client.generateGid();
    const answer = await goStarts('xa', ok, [
      { action: nest('Xa'), payload: { account: 2, amount: 7 } },
      { action: nest('XaPg'), payload: { account: 2, amount: 3 } },
    ]);
    expect(answer.status).toBe(200);
    expect(branchLines(await client.waitForFinal(ok))).toEqual(['01 rollback prepared', '01 commit succeed', '02 rollback prepared', '02 commit succeed']);
    expect([await mysqlBalances(), await pgBalances()]).toEqual([
      [100, 7],
      [100, 3],
    ]);

    const refused = await client.generateGid();
    const refusal = await goStarts('xa', refused, [
      { action: nest('XaPg'), payload: { account: 2, amount: 5 } },
      { action: nest('Xa'), payload: { account: 1, amount: 5, fail: true } },
    ]);
    expect(refusal.status).toBe(409);
    expect(refusal.text).toContain('nest: xa branch refused');
    expect((await client.waitForFinal(refused)).status).toBe('failed');
    expect([await mysqlBalances(), await pgBalances()]).toEqual([
      [100, 7],
      [100, 3],
    ]);
    expect(await pendingXa(ok, refused)).toEqual([]);
  });

  it("XA: the Go AP dies once our @XaBranch branches (MariaDB, PostgreSQL) answered, before its submit: DTM times the transaction out and rolls both back, no prepared XA transaction left", async () => {
    const gid = await client.generateGid();
    const crashed = await goStarts('xa', gid, [
      { action: nest('Xa'), payload: { account: 2, amount: 7 } },
      { action: nest('XaPg'), payload: { account: 2, amount: 3 } },
    ], { timeoutToFail: 1, retryInterval: 1, crashBeforeSubmit: true }).catch((e: unknown) => (e as Error).message);
    expect(crashed).toBe('fetch failed'); // the Go service exited under its caller
    await restartPeer();
    const final = await client.waitForFinal(gid, { timeout: 30 });
    expect(final.status).toBe('failed');
    expect(branchLines(final)).toEqual(['01 rollback succeed', '01 commit prepared', '02 rollback succeed', '02 commit prepared']);
    expect([await mysqlBalances(), await pgBalances()]).toEqual([
      [100, 0],
      [100, 0],
    ]);
    expect(await pendingXa(gid)).toEqual([]);
  });

  it("msg: DTM delivers the Go SDK's message to our branch", async () => {
    const gid = await client.generateGid();
    expect((await goStarts('msg', gid, [{ action: nest('Deliver'), payload: { account: 2, amount: 9 } }])).status).toBe(200);
    expect((await client.waitForFinal(gid)).status).toBe('succeed');
    expect(await pgBalances()).toEqual([100, 9]);
    expect(await pgBarrier(gid)).toEqual(['01/action/01=action']);
  });

  it("TCC: our Try nests a TCC of its own (tccFromBranch) in the Go SDK's transaction: DTM confirms its sub-branch on the Go side with ours, or cancels it", async () => {
    const branch = (amount: number) => ({ try: nest('NestedTry'), confirm: nest('NestedConfirm'), cancel: nest('NestedCancel'), payload: { account: 1, amount } });
    const ok = await client.generateGid();
    expect(await goStarts('tcc', ok, [branch(30)])).toEqual({ status: 200, text: expect.any(String) });
    const committed = await client.waitForFinal(ok);
    expect(committed.status).toBe('succeed');
    expect(branchLines(committed).sort()).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed']);
    expect(await mysqlBalances()).toEqual([70, 0]);

    const refused = await client.generateGid();
    const answer = await goStarts('tcc', refused, [branch(900)]);
    expect([answer.status, answer.text]).toEqual([409, expect.stringContaining('go: account 1 has less than 900')]);
    const final = await client.waitForFinal(refused);
    expect(final.status).toBe('failed');
    expect(branchLines(final).sort()).toEqual(['01 cancel succeed', '01 confirm prepared', '0101 cancel succeed', '0101 confirm prepared']);
    expect(await mysqlBalances()).toEqual([70, 0]);
  });

  it("TCC: our Try nests a TCC whose sub-branch is another TCC branch of ours behind the barrier: its rows are 0101's, confirmed, or cancelled (a null cancel) when it refuses", async () => {
    const branch = (amount: number) => ({ try: nest('NestedTryOwn'), confirm: nest('NestedConfirmOwn'), cancel: nest('NestedCancelOwn'), payload: { account: 1, amount } });
    const ok = await client.generateGid();
    expect(await goStarts('tcc', ok, [branch(30)])).toEqual({ status: 200, text: expect.any(String) });
    const committed = await client.waitForFinal(ok);
    expect(committed.status).toBe('succeed');
    expect(branchLines(committed).sort()).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed']);
    expect(await pgBalances()).toEqual([70, 0]);
    expect(await pgBarrier(ok)).toEqual(['0101/confirm/01=confirm', '0101/try/01=try']);

    const refused = await client.generateGid();
    const answer = await goStarts('tcc', refused, [branch(500)]);
    expect([answer.status, answer.text]).toEqual([409, expect.stringContaining('nest: account 1 has less than 500')]);
    const final = await client.waitForFinal(refused);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('nest: account 1 has less than 500');
    expect(branchLines(final).sort()).toEqual(['01 cancel succeed', '01 confirm prepared', '0101 cancel succeed', '0101 confirm prepared']);
    expect(await pgBalances()).toEqual([70, 0]);
    expect(await pgBarrier(refused)).toEqual(['0101/cancel/01=cancel', '0101/try/01=cancel']);
  });

  it.each([
    {
      levels: "our Try (01) nests the Go SDK's Try (0101), which nests its own (010101); DTM confirms every level, or cancels every level",
      branch: (amount: number) => ({ try: nest('NestedTryDeep'), confirm: nest('NestedConfirmDeep'), cancel: nest('NestedCancelDeep'), payload: { account: 1, amount } }),
    },
    {
      levels: "the Go SDK's Try (01, TccFromQuery / TccFromGrpc) nests our Try (0101), which nests its own (tccFromBranch, 010101); confirmed, or cancelled at every level",
      branch: (amount: number) => {
        const goTry = protocol === 'http' ? `${goUrl}/rm/nested/try-nest` : `${goGrpc}/bank.GoBank/NestedTryNest`;
        const goNoop = protocol === 'http' ? `${goUrl}/rm/noop` : `${goGrpc}/bank.GoBank/Noop`;
        return { try: goTry, confirm: goNoop, cancel: goNoop, payload: { account: 1, amount } };
      },
    },
  ])('TCC, three levels: $levels', async ({ branch }) => {
    const ok = await client.generateGid();
    expect(await goStarts('tcc', ok, [branch(30)])).toEqual({ status: 200, text: expect.any(String) });
    const committed = await client.waitForFinal(ok);
    expect(committed.status).toBe('succeed');
    expect(branchLines(committed).sort()).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed', '010101 cancel prepared', '010101 confirm succeed']);
    expect(await mysqlBalances()).toEqual([70, 0]);

    const refused = await client.generateGid();
    const answer = await goStarts('tcc', refused, [branch(900)]);
    expect([answer.status, answer.text]).toEqual([409, expect.stringContaining('go: account 1 has less than 900')]);
    const final = await client.waitForFinal(refused);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('go: account 1 has less than 900');
    expect(branchLines(final).sort()).toEqual(['01 cancel succeed', '01 confirm prepared', '0101 cancel succeed', '0101 confirm prepared', '010101 cancel succeed', '010101 confirm prepared']);
    expect(await mysqlBalances()).toEqual([70, 0]);
  });

  it("saga: the Go SDK's BranchHeaders reach our branch; the pass-through one is in its BranchInfo.headers", async () => {
    const gid = await client.generateGid();
    const headers = { 'x-tenant': 't-1', 'x-other': 'o' };
    expect((await goStarts('saga', gid, [{ action: nest('Headers'), compensate: '', payload: { account: 1, amount: 1 } }], { branchHeaders: headers })).status).toBe(200);
    expect((await client.waitForFinal(gid)).status).toBe('succeed');
    expect(seenHeaders.get(gid)).toEqual({ 'x-tenant': 't-1' });
  });

  it("saga: concurrent with a branch order (step 2 after 0 and 1), as the Go SDK sends them; our FAILURE in step 2 compensates all three", async () => {
    const gid = await client.generateGid();
    expect((await goStarts('saga', gid, [step(1, 10), step(1, 20), step(1, 500)], { concurrent: true, orders: { 2: [0, 1] } })).status).toBe(200);
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.transaction.customData).toEqual({ concurrent: true, orders: { '2': [0, 1] } });
    expect(final.rollbackReason).toContain('nest: account 1 has less than 500');
    expect(branchLines(final)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action succeed', '03 compensate succeed', '03 action failed']);
    expect(await pgBalances()).toEqual([100, 0]);
  });

  it("saga: our step refusing with an RpcException with code ABORTED (a handler that is a route and a @GrpcMethod) rolls the Go SDK's saga back with its details as the reason", async () => {
    const gid = await client.generateGid();
    expect((await goStarts('saga', gid, [step(1, 30), step(93, 1)])).status).toBe(200);
    const final = await client.waitForFinal(gid, { timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('nest: out of stock');
    expect(branchLines(final)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
    expect(await pgBalances()).toEqual([100, 0]);
  });

  it('saga: a step the Go SDK adds without compensation is done once; the rollback skips it', async () => {
    const gid = await client.generateGid();
    const bare = { ...step(1, 30), compensate: '' };
    await goStarts('saga', gid, [bare, step(2, 10)]);
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    if (dtmKeepsSteps()) expect(final.transaction.steps?.[0]).toEqual({ action: nest('Withdraw'), compensate: '' });
    expect(branchTargets(final).slice(0, 2)).toEqual(['01 compensate ', `01 action ${nest('Withdraw')}`]);
    expect(branchLines(final)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
    expect(await pgBalances()).toEqual([70, 0]); // nothing undid step 1
    expect(await pgBarrier(gid)).toEqual(['01/action/01=action', '02/action/01=compensate', '02/compensate/01=compensate']);
  });

  // a plain error is an HTTP 500 Nest answers without its message (gRPC: INTERNAL with it)
  it.each([
    [91, 425, 'nest: not yet'],
    [92, 500, protocol === 'http' ? 'Internal server error' : 'nest: plain error'],
    [93, 409, 'nest: out of stock'],
    [94, 425, 'nest: later'],
    [95, 409, 'nest: conflict'],
  ])("TCC: our Try answering ONGOING or a plain error (account %d) makes the Go SDK abort (%d), DTM's record naming our reason", async (account, status, reason) => {
    const gid = await client.generateGid();
    const answer = await goStarts('tcc', gid, [{ try: nest('NestedTry'), confirm: nest('NestedConfirm'), cancel: nest('NestedCancel'), payload: { account, amount: 1 } }]);
    expect([answer.status, answer.text]).toEqual([status, expect.stringContaining(reason)]);
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain(reason);
    expect(branchLines(final)).toEqual(['01 cancel succeed', '01 confirm prepared']);
  });

  it("msg: DTM back-checks the Go SDK's prepared message at our @MsgQueryPrepared, which reads the Go SDK's barrier row: delivered when its local transaction committed, rolled back when it did not", async () => {
    const deliver = [{ action: nest('Deliver'), payload: { account: 2, amount: 9 } }];
    // the Go AP prepares with our back-check and dies before its submit (with or without its local transaction)
    const abandoned = { queryPrepared: nest('QueryPrepared'), prepareOnly: true, timeoutToFail: 1, retryInterval: 1 };
    const committed = await client.generateGid();
    expect((await goStarts('msg', committed, deliver, { ...abandoned, localCommit: true })).status).toBe(200);
    expect((await client.waitForFinal(committed, { timeout: 20 })).status).toBe('succeed');
    expect(await pgBalances()).toEqual([100, 9]);
    expect(await pgBarrier(committed)).toEqual(['00/msg/01=msg', '01/action/01=action']);

    const never = await client.generateGid();
    expect((await goStarts('msg', never, deliver, abandoned)).status).toBe(200);
    const final = await client.waitForFinal(never, { timeout: 20 });
    expect(final.status).toBe('failed');
    expect(branchLines(final)).toEqual(['01 action prepared']);
    expect(await pgBarrier(never)).toEqual(['00/msg/01=rollback']);
    expect(await pgBalances()).toEqual([100, 9]);
  });

  // the Go AP's DoAndSubmit: its local work behind the Go SDK's barrier on each store, then a plain
  // error (after the commit, or before it): the SDK asks our back-check itself, which reads the
  // row / key the Go SDK wrote (or finds none and writes rollback)
  it.each([
    { store: 'pg', check: 'QueryPrepared' },
    { store: 'mysql', check: 'QueryPreparedMysql' },
    { store: 'redis', check: 'QueryPreparedRedis' },
  ])("msg: DoAndSubmit whose local work ($store) threw asks our @MsgQueryPrepared itself: submitted and delivered after a commit, aborted before one", async ({ store, check }) => {
    const deliver = [{ action: nest('Deliver'), payload: { account: 2, amount: 9 } }];
    const local = { queryPrepared: nest(check), store, redisKey: redisAmountKey, amount: -7 };
    const msgRows = async (gid: string): Promise<string[]> => {
      if (store === 'pg') return (await pgBarrier(gid)).filter((r) => r.startsWith('00/'));
      if (store === 'mysql') {
        const [rows] = await myPool.query("SELECT reason FROM dtm_barrier WHERE gid = ? AND branch_id = '00'", [gid]);
        return (rows as { reason: string }[]).map((r) => `00/msg/01=${r.reason}`);
      }
      const value = await redis.get(`${gid}-00-msg-01`);
      return value === null ? [] : [`00/msg/01=${value === 'op' ? 'msg' : value}`];
    };

    const committed = await client.generateGid();
    expect(await goStarts('msg', committed, deliver, { ...local, crashAfterCommit: true })).toEqual({ status: 500, text: expect.stringContaining('go: crashed after the commit') });
    expect((await client.waitForFinal(committed, { timeout: 20 })).status).toBe('succeed');
    expect(await pgBalances()).toEqual([100, 9]);
    expect(await msgRows(committed)).toEqual(['00/msg/01=msg']);
    if (store === 'redis') expect(await redis.get(redisAmountKey)).toBe('93');

    const crashed = await client.generateGid();
    expect(await goStarts('msg', crashed, deliver, { ...local, businessError: true })).toEqual({ status: 500, text: expect.stringContaining('go: local transaction crashed') });
    const final = await client.waitForFinal(crashed, { timeout: 20 });
    expect(final.status).toBe('failed');
    expect(branchLines(final)).toEqual(['01 action prepared']);
    expect(await msgRows(crashed)).toEqual(['00/msg/01=rollback']);
    expect(await pgBalances()).toEqual([100, 9]);
  });
});

describe("DTM's Go SDK (dtmcli) asks our back-check itself", () => {
  it("msg: DoAndSubmit whose local transaction failed with a plain error asks our @MsgQueryPrepared, which finds no row (FAILURE): the Go SDK aborts and returns its error", async () => {
    const gid = await client.generateGid();
    const res = await postJsonWithin(`${goUrl}/ap/msg`, {
      gid,
      branches: [{ action: `${nestUrl}/deliver`, payload: { account: 2, amount: 9 } }],
      queryPrepared: `${nestUrl}/query-prepared`,
      businessError: true,
    });
    expect([res.status, res.text]).toEqual([500, expect.stringContaining('go: local transaction crashed')]);
    const final = await client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('failed');
    expect(await pgBarrier(gid)).toEqual(['00/msg/01=rollback']);
    expect(await pgBalances()).toEqual([100, 0]);
  });
});

/**
 * The Go peer's branches, the same business over both transports: dtmcli routes (`PgWithdraw` is
 * `/rm/pg/withdraw`) and dtmgrpc methods of bank.GoBank, whose payloads DtmClient encodes from
 * objects as bank.Move. `failure` is how the transport says FAILURE (HTTP 409, gRPC ABORTED).
 */
const goBranches = [
  { sdk: 'dtmcli', protocol: 'http', failure: 409, go: (method: string) => `${goUrl}/rm/${kebab(method).replace('-', '/')}` },
  { sdk: 'dtmgrpc', protocol: 'grpc', failure: 10, go: (method: string) => `${goGrpc}/bank.GoBank/${method}` },
] as const;

describe.each(goBranches)('nestjs-dtm over $protocol drives branches written with $sdk', ({ protocol, failure, go }) => {
  const options = { protocol } as const;

  it('saga: the Go SDK reads our branch calls; its barrier rows match ours; its FAILURE rolls back', async () => {
    const ok = await client.generateGid();
    const final = await client
      .newSaga(ok, options)
      .add(go('PgWithdraw'), go('PgDeposit'), { account: 1, amount: 25 })
      .add(go('PgDeposit'), go('PgWithdraw'), { account: 2, amount: 25 })
      .submitAndWait();
    expect([final.status, final.transaction.protocol]).toEqual(['succeed', protocol]);
    expect(await pgBalances()).toEqual([75, 25]);
    expect(await pgBarrier(ok)).toEqual(['01/action/01=action', '02/action/01=action']);

    const refused = await client.generateGid();
    const rolledBack = await client
      .newSaga(refused, options)
      .add(go('PgDeposit'), go('PgWithdraw'), { account: 2, amount: 5 })
      .add(go('PgWithdraw'), go('PgDeposit'), { account: 1, amount: 1000 })
      .submitAndWait();
    expect(rolledBack.status).toBe('failed');
    expect(rolledBack.rollbackReason).toContain('go: account 1 has less than 1000');
    expect(branchLines(rolledBack)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
    expect(await pgBalances()).toEqual([75, 25]);
    expect(await pgBarrier(refused)).toEqual(['01/action/01=action', '01/compensate/01=compensate', '02/action/01=compensate', '02/compensate/01=compensate']);
  });

  it('TCC: our Try calls carry what the Go SDK reads; confirm, and cancel on its FAILURE', async () => {
    const branch = (amount: number) => [{ account: 1, amount }, go('MysqlWithdraw'), go('Noop'), go('MysqlDeposit')] as const;
    const ok = await client.generateGid();
    await client.tccGlobalTransaction(ok, async (tcc) => tcc.callBranch(...branch(30)), options);
    expect(branchLines(await client.waitForFinal(ok))).toEqual(['01 cancel prepared', '01 confirm succeed']);
    expect(await mysqlBalances()).toEqual([70, 0]);

    const refused = await client.generateGid();
    const run = client.tccGlobalTransaction(
      refused,
      async (tcc) => {
        await tcc.callBranch(...branch(20));
        await tcc.callBranch(...branch(900));
      },
      options,
    );
    await expect(run).rejects.toMatchObject({ name: 'DtmFailureError', protocol, status: failure, endpoint: go('MysqlWithdraw') });
    const final = await client.waitForFinal(refused);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('go: account 1 has less than 900');
    expect(branchLines(final)).toEqual(['01 cancel succeed', '01 confirm prepared', '02 cancel succeed', '02 confirm prepared']);
    expect(await mysqlBalances()).toEqual([70, 0]);
  });

  it("TCC: the Go SDK's Try nests its own TCC (TccFromQuery / TccFromGrpc) in our transaction: DTM confirms its sub-branch with ours, or cancels it", async () => {
    const ok = await client.generateGid();
    const outcome = await client.tccGlobalTransactionAndWait(ok, async (tcc) => tcc.callBranch({ account: 1, amount: 30 }, go('NestedTry'), go('Noop'), go('Noop')), options);
    expect(outcome.status).toBe('succeed');
    expect(branchLines(outcome).sort()).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed']);
    expect(await mysqlBalances()).toEqual([70, 0]);

    const refused = await client.generateGid();
    const run = client.tccGlobalTransactionAndWait(refused, async (tcc) => tcc.callBranch({ account: 1, amount: 900 }, go('NestedTry'), go('Noop'), go('Noop')), options);
    const rolledBack = await run;
    expect(rolledBack.status).toBe('failed');
    expect(rolledBack.rollbackReason).toContain('go: account 1 has less than 900');
    expect(branchLines(rolledBack).sort()).toEqual(['01 cancel succeed', '01 confirm prepared', '0101 cancel succeed', '0101 confirm prepared']);
    expect(await mysqlBalances()).toEqual([70, 0]);
  });

  it("saga: our step without compensation on a Go branch is done once; the rollback on the Go branch's FAILURE skips it", async () => {
    const gid = await client.generateGid();
    const final = await client
      .newSaga(gid, options)
      .add(go('PgDeposit'), { account: 2, amount: 5 })
      .add(go('PgWithdraw'), go('PgDeposit'), { account: 1, amount: 1000 })
      .submitAndWait();
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('go: account 1 has less than 1000');
    if (dtmKeepsSteps()) expect(final.transaction.steps?.[0]).toEqual({ action: go('PgDeposit'), compensate: '' });
    expect(branchTargets(final).slice(0, 2)).toEqual(['01 compensate ', `01 action ${go('PgDeposit')}`]);
    expect(branchLines(final)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
    expect(await pgBalances()).toEqual([100, 5]);
    expect(await pgBarrier(gid)).toEqual(['01/action/01=action', '02/action/01=compensate', '02/compensate/01=compensate']);
  });

  it.each([
    [91, 'DtmOngoingError', DtmOngoingError, 'go: not yet'],
    [92, 'DtmServerError', DtmServerError, 'go: plain error'],
  ])("TCC: a Go Try answering ONGOING or a plain error (account %d) aborts ours (%s), DTM's record naming the Go branch's reason", async (account, _name, type, reason) => {
    const gid = await client.generateGid();
    // the cancel, behind the Go SDK's barrier, finds no Try done: a null compensation
    const run = client.tccGlobalTransaction(gid, async (tcc) => tcc.callBranch({ account, amount: 1 }, go('Noop'), go('PgDeposit'), go('PgDeposit')), options);
    await expect(run).rejects.toBeInstanceOf(type);
    await expect(run).rejects.toThrow(reason);
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain(reason);
    expect(branchLines(final)).toEqual(['01 cancel succeed', '01 confirm prepared']);
  });

  it("XA: the Go SDK's XaLocalTransaction registers with our transaction and prepares; commit, and rollback when one refuses", async () => {
    const ok = await client.generateGid();
    await client.xaGlobalTransaction(ok, async (xa) => xa.callBranch({ account: 2, amount: 11 }, go('MysqlXaDeposit')), options);
    const committed = await client.waitForFinal(ok);
    expect(branchLines(committed)).toEqual(['01 rollback prepared', '01 commit succeed']);
    expect(committed.branches[1].url).toBe(go('MysqlXaDeposit'));
    expect(await mysqlBalances()).toEqual([100, 11]);

    const refused = await client.generateGid();
    const run = client.xaGlobalTransaction(
      refused,
      async (xa) => {
        await xa.callBranch({ account: 2, amount: 3 }, go('MysqlXaDeposit'));
        await xa.callBranch({ account: 1, amount: 3, fail: true }, go('MysqlXaDeposit'));
      },
      options,
    );
    await expect(run).rejects.toBeInstanceOf(DtmFailureError);
    expect((await client.waitForFinal(refused)).status).toBe('failed');
    expect(await mysqlBalances()).toEqual([100, 11]);
    expect(await pendingXa(ok, refused)).toEqual([]);
  });

  it("msg: DTM delivers to the Go branches; DTM back-checks the Go SDK's barrier, which rolls back a message whose local transaction never committed", async () => {
    const gid = await client.generateGid();
    const msg = client.newMsg(gid, options).add(go('PgDeposit'), { account: 2, amount: 4 }).add(go('MysqlDeposit'), { account: 2, amount: 6 });
    await msg.prepare(go('PgQueryPrepared'));
    await msg.submit();
    expect((await client.waitForFinal(gid)).status).toBe('succeed');
    expect([await pgBalances(), await mysqlBalances()]).toEqual([
      [100, 4],
      [100, 6],
    ]);
    expect(await pgBarrier(gid)).toEqual(['01/action/01=action']);

    const abandoned = await client.generateGid();
    await client.newMsg(abandoned, { ...options, timeoutToFail: 1, retryInterval: 1 }).add(go('PgDeposit'), { account: 2, amount: 50 }).prepare(go('PgQueryPrepared'));
    const final = await client.waitForFinal(abandoned, { timeout: 20 });
    expect(final.status).toBe('failed');
    expect(branchLines(final)).toEqual(['01 action prepared']);
    expect(await pgBarrier(abandoned)).toEqual(['00/msg/01=rollback']);
    expect(await pgBalances()).toEqual([100, 4]);
  });

  it("msg: doAndSubmit whose local work is on Redis (redisCheckAdjustAmount) threw: the Go SDK's RedisQueryPrepared finds our key (submitted, delivered) or none (aborted, rollback written)", async () => {
    const committed = await client.generateGid();
    const afterCommit = await client
      .newMsg(committed, options)
      .add(go('PgDeposit'), { account: 2, amount: 7 })
      .doAndSubmit(go('RedisQueryPrepared'), async (local) => {
        await BranchBarrier.from(local).redisCheckAdjustAmount(redis, redisAmountKey, -7);
        throw new Error('nest: crashed after the commit');
      })
      .catch((e: unknown) => e);
    expect((afterCommit as Error).message).toBe('nest: crashed after the commit');
    expect((await client.waitForFinal(committed)).status).toBe('succeed');
    expect(await pgBalances()).toEqual([100, 7]);
    // our key's value is the call's own mark (op:<uuid>): the Go SDK reads only rollback
    expect([await redis.get(redisAmountKey), await redis.get(`${committed}-00-msg-01`)]).toEqual(['93', expect.stringMatching(/^op:/)]);

    const crashed = await client.generateGid();
    const beforeCommit = await client
      .newMsg(crashed, options)
      .add(go('PgDeposit'), { account: 2, amount: 5 })
      .doAndSubmit(go('RedisQueryPrepared'), async () => {
        throw new Error('nest: crashed before the commit');
      })
      .catch((e: unknown) => e);
    expect((beforeCommit as Error).message).toBe('nest: crashed before the commit');
    expect((await client.waitForFinal(crashed)).status).toBe('failed');
    expect(await redis.get(`${crashed}-00-msg-01`)).toBe('rollback');
    expect([await pgBalances(), await redis.get(redisAmountKey)]).toEqual([[100, 7], '93']);
  });

  it("msg: doAndSubmit asks the Go SDK's QueryPrepared itself after its local work threw: it finds our barrier row (submitted, delivered) or none (aborted)", async () => {
    const barrier = (local: Parameters<typeof BranchBarrier.from>[0]) => BranchBarrier.from(local, { table: 'dtm_barrier' });
    const committed = await client.generateGid();
    const afterCommit = await client
      .newMsg(committed, options)
      .add(go('PgDeposit'), { account: 2, amount: 4 })
      .doAndSubmit(go('PgQueryPrepared'), async (local) => {
        await barrier(local).callWithDb(pgBarrierDatabase(pgPool), async () => undefined);
        throw new Error('nest: crashed after the commit');
      })
      .catch((e: unknown) => e);
    expect((afterCommit as Error).message).toBe('nest: crashed after the commit');
    expect((await client.waitForFinal(committed)).status).toBe('succeed');
    expect(await pgBalances()).toEqual([100, 4]);
    expect(await pgBarrier(committed)).toEqual(['00/msg/01=msg', '01/action/01=action']);

    const crashed = await client.generateGid();
    const beforeCommit = await client
      .newMsg(crashed, options)
      .add(go('PgDeposit'), { account: 2, amount: 5 })
      .doAndSubmit(go('PgQueryPrepared'), async () => {
        throw new Error('nest: crashed before the commit');
      })
      .catch((e: unknown) => e);
    expect((beforeCommit as Error).message).toBe('nest: crashed before the commit');
    expect((await client.waitForFinal(crashed)).status).toBe('failed');
    expect(await pgBarrier(crashed)).toEqual(['00/msg/01=rollback']);
    expect(await pgBalances()).toEqual([100, 4]);
  });
});

describe('workflows across the two SDKs', () => {
  it("a workflow written with DTM's Go SDK calls our decorated saga and TCC branches (ops action, commit, rollback); success", async () => {
    const gid = await client.generateGid();
    const steps = [
      { action: `${nestUrl}/withdraw`, compensate: `${nestUrl}/withdraw-compensate`, payload: { account: 1, amount: 30 } },
      { action: `${nestUrl}/try`, commit: `${nestUrl}/confirm`, compensate: `${nestUrl}/cancel`, payload: { account: 1, amount: 20 } },
    ];
    const res = await postJsonWithin(`${goUrl}/ap/workflow`, { gid, name: 'go-transfer', input: { steps } });
    expect(res.status).toBe(200);
    expect((await client.waitForFinal(gid)).status).toBe('succeed');
    expect(await pgBalances()).toEqual([50, 0]);
    // our barrier recorded the workflow's ops as it records a saga's / TCC's
    expect(await pgBarrier(gid)).toEqual(['01/action/01=action', '02/action/01=action', '02/commit/01=commit']);
  });

  it("a Go workflow killed (kill -9) during its second step, on our route, is resumed by DTM through the Go SDK's callback once the Go service is back: the step it runs again (ours, committed while the Go service was dead) is skipped by our barrier: each withdrawal made once", async () => {
    const gid = await client.generateGid();
    const steps = [
      { action: `${nestUrl}/withdraw`, payload: { account: 1, amount: 30 } },
      { action: `${nestUrl}/withdraw-held`, payload: { account: 1, amount: 20 } },
    ];
    const hold = (holdNext = latch());
    const started = postJsonWithin(`${goUrl}/ap/workflow`, { gid, name: 'go-transfer-fast', input: { steps } }).then(
      (res) => res.status,
      (e: unknown) => (e as Error).message,
    );
    await within(`the Go workflow ${gid} reaching our step withdraw-held`, 30_000, () => hold.reached);
    try {
      await peer.kill();
      expect(await started).toBe('fetch failed'); // the Go service died under its caller
      hold.open(); // our step commits its withdrawal; nobody reads its answer
      expect((await client.query(gid))?.status).toBe('prepared');
    } finally {
      hold.open();
      await restartPeer();
    }
    // DTM calls the Go SDK's resume callback (the first calls, while the peer was down, refused)
    const final = await client.waitForFinal(gid, { timeout: 45 });
    expect(final.status).toBe('succeed');
    expect(await pgBalances()).toEqual([50, 0]);
    expect(await pgBarrier(gid)).toEqual(['01/action/01=action', '02/action/01=action']);
  }, 90_000);

  it("a Go workflow whose second step our TCC Try refuses: the Go SDK rolls step 1 back through our compensation (op rollback)", async () => {
    const gid = await client.generateGid();
    const steps = [
      { action: `${nestUrl}/withdraw`, compensate: `${nestUrl}/withdraw-compensate`, payload: { account: 1, amount: 30 } },
      { action: `${nestUrl}/try`, commit: `${nestUrl}/confirm`, compensate: `${nestUrl}/cancel`, payload: { account: 1, amount: 500 } },
    ];
    const res = await postJsonWithin(`${goUrl}/ap/workflow`, { gid, name: 'go-transfer', input: { steps } });
    expect(res.status).toBe(409);
    expect(res.text).toContain('nest: account 1 has less than 500');
    const final = await client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(await pgBalances()).toEqual([100, 0]);
    expect(await pgBarrier(gid)).toEqual(['01/action/01=action', '01/rollback/01=rollback']);
  });

  it("a Go workflow calls our gRPC branches through the SDK's workflow.Interceptor (ops action, commit, rollback); our Try's refusal rolls step 1 back", async () => {
    const nest = (method: string) => `${nestGrpc}/bank.NestBank/${method}`;
    const steps = (amount: number) => [
      { action: nest('Withdraw'), compensate: nest('WithdrawCompensate'), payload: { account: 1, amount: 30 } },
      { action: nest('Try'), commit: nest('Confirm'), compensate: nest('Cancel'), payload: { account: 1, amount } },
    ];
    const goWorkflow = (gid: string, amount: number) =>
      postJsonWithin(`${goUrl}/ap/workflow`, { gid, name: 'go-transfer', input: { steps: steps(amount) } });
    const ok = await client.generateGid();
    expect((await goWorkflow(ok, 20)).status).toBe(200);
    expect((await client.waitForFinal(ok)).status).toBe('succeed');
    expect(await pgBalances()).toEqual([50, 0]);
    expect(await pgBarrier(ok)).toEqual(['01/action/01=action', '02/action/01=action', '02/commit/01=commit']);

    const refused = await client.generateGid();
    const res = await goWorkflow(refused, 500);
    expect([res.status, res.text]).toEqual([409, expect.stringContaining('nest: account 1 has less than 500')]);
    expect((await client.waitForFinal(refused)).status).toBe('failed');
    expect(await pgBalances()).toEqual([50, 0]);
    expect(await pgBarrier(refused)).toEqual(['01/action/01=action', '01/rollback/01=rollback']);
  });

  it.each([
    { sdk: 'branches written with dtmcli', workflow: 'nest-to-go', withdraw: () => `${goUrl}/rm/pg/withdraw`, deposit: () => `${goUrl}/rm/pg/deposit` },
    { sdk: 'gRPC branches written with dtmgrpc', workflow: 'nest-to-go-grpc', withdraw: () => `${goGrpc}/bank.GoBank/PgWithdraw`, deposit: () => `${goGrpc}/bank.GoBank/PgDeposit` },
  ])('our workflow calls $sdk; their FAILURE rolls our step 1 back on the Go side', async ({ workflow, withdraw, deposit }) => {
    const ok = await client.generateGid();
    const done = await client.executeWorkflow(workflow, ok, {
      steps: [
        { action: withdraw(), compensate: deposit(), payload: { account: 1, amount: 25 } },
        { action: deposit(), compensate: withdraw(), payload: { account: 2, amount: 25 } },
      ],
    });
    expect(done).toEqual({ status: 'succeed', result: 'done' });
    expect(await pgBalances()).toEqual([75, 25]);
    expect(await pgBarrier(ok)).toEqual(['01/action/01=action', '02/action/01=action']);

    const refused = await client.generateGid();
    const error = await client
      .executeWorkflow(workflow, refused, {
        steps: [
          { action: deposit(), compensate: withdraw(), payload: { account: 2, amount: 5 } },
          { action: withdraw(), compensate: deposit(), payload: { account: 1, amount: 1000 } },
        ],
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect((error as DtmFailureError).reason).toContain('go: account 1 has less than 1000');
    expect((await client.waitForFinal(refused)).status).toBe('failed');
    expect(await pgBalances()).toEqual([75, 25]);
    // dtm's Go barrier took our op=rollback as the compensation of branch 01's action
    expect(await pgBarrier(refused)).toEqual(['01/action/01=action', '01/rollback/01=rollback']);
  });
});

/** A second app of ours with authenticated branch calls (branch_auth_keys), whose transactions drive the Go peer's branches. */
async function keyedApp(): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, barrierTable: 'dtm_barrier', branchAuthKeys: ['k'.repeat(40)] },
        grpcProtos: { protoPath: BANK_PROTO },
      }),
    ],
  }).compile();
  const keyed = moduleRef.createNestApplication({ logger: ['error'], forceCloseConnections: true });
  return keyed.init();
}

describe.each(goBranches)('nestjs-dtm with branch_auth_keys, over $protocol, drives branches written with $sdk', ({ protocol, go }) => {
  let keyed: INestApplication;
  beforeAll(async () => {
    keyed = await keyedApp();
  });
  afterAll(async () => {
    await closeEach([['afterAll: closing the app with branch_auth_keys', () => keyed?.close()]]);
  });

  it('TCC (its branch ids carry the token: 01-<token>), saga and XA: the Go SDK\'s barrier and XA take the calls, ignoring the tokens', async () => {
    const dtm = keyed.get(DtmClient);
    const options = { protocol } as const;
    const tcc = await dtm.generateGid();
    const outcome = await dtm.tccGlobalTransactionAndWait(tcc, async (t) => t.callBranch({ account: 1, amount: 30 }, go('MysqlWithdraw'), go('Noop'), go('MysqlDeposit')), options);
    expect(outcome.status).toBe('succeed');
    expect(outcome.branches.map((b) => b.branchId)).toEqual([expect.stringMatching(/^01-.{22}$/), expect.stringMatching(/^01-.{22}$/)]);
    expect(await mysqlBalances()).toEqual([70, 0]);

    const saga = await dtm.generateGid();
    expect((await dtm.newSaga(saga, options).add(go('PgWithdraw'), go('PgDeposit'), { account: 1, amount: 25 }).submitAndWait()).status).toBe('succeed');
    expect(await pgBalances()).toEqual([75, 0]);

    const xa = await dtm.generateGid();
    await dtm.xaGlobalTransaction(xa, async (x) => x.callBranch({ account: 2, amount: 11 }, go('MysqlXaDeposit')), options);
    expect((await dtm.waitForFinal(xa)).status).toBe('succeed');
    expect(await mysqlBalances()).toEqual([70, 11]);
  });
});

/** The calls each gid's step reached KeyedBank's handler with, by op. */
const keyedRuns = new Map<string, number>();

/** A saga action of ours (no compensation) that counts the calls its handler runs. */
@Controller('nest')
class KeyedBank {
  @Post('headers')
  @GrpcMethod('NestBank', 'Headers')
  @SagaAction('keyed.step', { compensate: false })
  step(@BranchContext() branch: BranchInfo) {
    keyedRuns.set(branch.gid, (keyedRuns.get(branch.gid) ?? 0) + 1);
    return {};
  }
}

/**
 * An app of ours serving KeyedBank on the given HTTP port and gRPC address, with branch_auth_keys
 * or without; its 'branch.call' events with outcome refused go to `refused` (gids).
 */
async function keyedBranchApp(keys: boolean, port: number, grpcAddress: string, refused: string[]): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, ...(keys ? { branchAuthKeys: ['k'.repeat(40)] } : {}) },
        grpcProtos: { protoPath: BANK_PROTO },
        instrumentation: { hooks: { 'branch.call': (e) => void (e.outcome === 'refused' && refused.push(e.gid)) } },
      }),
    ],
    controllers: [KeyedBank],
  }).compile();
  const served = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
  served.connectMicroservice({ transport: Transport.GRPC, options: { package: 'bank', protoPath: BANK_PROTO, url: grpcAddress } }, { inheritAppConfig: true });
  await served.startAllMicroservices();
  await served.listen(port, '127.0.0.1');
  return served;
}

describe.each(goSdks)("DTM's Go SDK ($sdk) and our $protocol branches with branch_auth_keys", ({ protocol, ap }) => {
  it("a Go saga on our routes is refused (it cannot sign): DTM keeps it submitted, the handler never runs; with the setting off (security.md's advice), DTM's next retry runs the step once", async () => {
    const [port, grpcAddress] = [await freePort(), `127.0.0.1:${await freePort()}`];
    const refused: string[] = [];
    const step = protocol === 'http' ? `http://127.0.0.1:${port}/nest/headers` : `${grpcAddress}/bank.NestBank/Headers`;
    let served = await keyedBranchApp(true, port, grpcAddress, refused);
    try {
      const gid = await client.generateGid();
      const res = await postJsonWithin(`${goUrl}${ap}/saga`, { gid, branches: [{ action: step, compensate: '', payload: { account: 1, amount: 1 } }], retryInterval: 1 });
      expect(res.status).toBe(200);
      await waitUntil('the step refused', async () => refused.includes(gid), { timeoutMs: 20_000 });
      expect((await client.query(gid))?.status).toBe('submitted');
      expect(keyedRuns.get(gid)).toBeUndefined();

      await served.close();
      served = await keyedBranchApp(false, port, grpcAddress, refused);
      expect((await client.waitForFinal(gid, { timeout: 60 })).status).toBe('succeed');
      expect(keyedRuns.get(gid)).toBe(1);
    } finally {
      await closeEach([['closing the app serving KeyedBank', () => served.close()]]);
    }
  }, 100_000); // its waitForFinal waits up to 60 s (DTM's retries back off): its error, naming the gid, comes before jest's
});

describe("nestjs-dtm with branch_auth_keys and a Go Try that nests a TCC of its own", () => {
  it("over HTTP: DTM's Go SDK refuses a parent branch id of 20 characters or more (panics), which 01-<token> is: the call is reset, our TCC aborted, nothing withdrawn", async () => {
    const keyed = await keyedApp();
    try {
      const dtm = keyed.get(DtmClient);
      const gid = await dtm.generateGid();
      const run = dtm.tccGlobalTransaction(gid, async (t) => t.callBranch({ account: 1, amount: 5 }, `${goUrl}/rm/nested/try`, `${goUrl}/rm/noop`, `${goUrl}/rm/noop`));
      await expect(run).rejects.toBeInstanceOf(DtmUnavailableError);
      const final = await dtm.waitForFinal(gid);
      expect(final.status).toBe('failed');
      expect(final.branches.map((b) => b.branchId)).toEqual([expect.stringMatching(/^01-.{22}$/), expect.stringMatching(/^01-.{22}$/)]); // no sub-branch registered
      expect(await mysqlBalances()).toEqual([100, 0]);
    } finally {
      await closeEach([['closing the app with branch_auth_keys', () => keyed.close()]]);
    }
  });
});

describe('a gRPC transaction of ours with http:// branches written with dtmcli beside dtmgrpc ones', () => {
  const grpcGo = (method: string) => `${goGrpc}/bank.GoBank/${method}`;
  const httpGo = (path: string) => `${goUrl}/rm/${path}`;
  const options = { protocol: 'grpc' } as const;

  it("TCC: an http:// Try written with dtmcli that nests its own TCC (TccFromQuery, over DTM's HTTP API) in our gRPC transaction: DTM confirms its http:// sub-branch, or cancels it", async () => {
    const ok = await client.generateGid();
    const outcome = await client.tccGlobalTransactionAndWait(ok, async (tcc) => tcc.callBranch({ account: 1, amount: 30 }, httpGo('nested/try'), httpGo('noop'), httpGo('noop')), options);
    expect(outcome.status).toBe('succeed');
    expect(branchLines(outcome).sort()).toEqual(['01 cancel prepared', '01 confirm succeed', '0101 cancel prepared', '0101 confirm succeed']);
    expect(await mysqlBalances()).toEqual([70, 0]);

    const refused = await client.generateGid();
    const rolledBack = await client.tccGlobalTransactionAndWait(refused, async (tcc) => tcc.callBranch({ account: 1, amount: 900 }, httpGo('nested/try'), httpGo('noop'), httpGo('noop')), options);
    expect(rolledBack.status).toBe('failed');
    expect(rolledBack.rollbackReason).toContain('go: account 1 has less than 900');
    expect(branchLines(rolledBack).sort()).toEqual(['01 cancel succeed', '01 confirm prepared', '0101 cancel succeed', '0101 confirm prepared']);
    expect(await mysqlBalances()).toEqual([70, 0]);
  });

  it('saga, TCC, XA, and a message whose back-check is an http:// one', async () => {
    const saga = await client.generateGid();
    const final = await client
      .newSaga(saga, options)
      .add(grpcGo('PgWithdraw'), grpcGo('PgDeposit'), { account: 1, amount: 25 })
      .add(httpGo('pg/deposit'), httpGo('pg/withdraw'), { account: 2, amount: 25 })
      .submitAndWait();
    expect(final.status).toBe('succeed');
    expect(await pgBalances()).toEqual([75, 25]);
    expect(await pgBarrier(saga)).toEqual(['01/action/01=action', '02/action/01=action']);

    const tcc = await client.generateGid();
    const outcome = await client.tccGlobalTransactionAndWait(
      tcc,
      async (t) => {
        await t.callBranch({ account: 1, amount: 30 }, grpcGo('MysqlWithdraw'), grpcGo('Noop'), grpcGo('MysqlDeposit'));
        await t.callBranch({ account: 1, amount: 20 }, httpGo('mysql/withdraw'), httpGo('noop'), httpGo('mysql/deposit'));
      },
      options,
    );
    expect(outcome.status).toBe('succeed');
    expect(await mysqlBalances()).toEqual([50, 0]);

    const xa = await client.generateGid();
    await client.xaGlobalTransaction(
      xa,
      async (x) => {
        await x.callBranch({ account: 2, amount: 3 }, grpcGo('MysqlXaDeposit'));
        await x.callBranch({ account: 1, amount: 4 }, httpGo('mysql/xa-deposit')); // another row: the first branch's prepared XA transaction holds row 2
      },
      options,
    );
    const committed = await client.waitForFinal(xa);
    expect(committed.status).toBe('succeed');
    expect(await mysqlBalances()).toEqual([54, 3]);
    expect(await pendingXa(xa)).toEqual([]);

    // a message with an http:// back-check: asked by our doAndSubmit, and by DTM for one left prepared
    const msg = await client.generateGid();
    const thrown = await client
      .newMsg(msg, options)
      .add(grpcGo('PgDeposit'), { account: 2, amount: 4 })
      .doAndSubmit(httpGo('pg/query-prepared'), async () => {
        throw new Error('nest: crashed before the commit');
      })
      .catch((e: unknown) => e);
    expect((thrown as Error).message).toBe('nest: crashed before the commit');
    expect((await client.waitForFinal(msg)).status).toBe('failed');
    expect(await pgBarrier(msg)).toEqual(['00/msg/01=rollback']);

    const abandoned = await client.generateGid();
    await client.newMsg(abandoned, { ...options, timeoutToFail: 1, retryInterval: 1 }).add(grpcGo('PgDeposit'), { account: 2, amount: 50 }).prepare(httpGo('pg/query-prepared'));
    expect((await client.waitForFinal(abandoned, { timeout: 20 })).status).toBe('failed');
    expect(await pgBarrier(abandoned)).toEqual(['00/msg/01=rollback']);
    expect(await pgBalances()).toEqual([75, 25]);
  });
});

/**
 * A TCP proxy on 127.0.0.1 in front of MariaDB at `upstream` (a mysql:// URL; answers its URL
 * through the proxy) that holds a client's COM_QUIT, and its close, `ms` before passing them on: the
 * server keeps the connection, and an XA transaction it prepared stays attached to it, that long
 * after the client let go (what a loaded server does for a moment). `quits`: the ones passed on.
 */
async function quitHoldingProxy(upstream: string, ms: number): Promise<{ url: string; quits: () => number; close: () => Promise<void> }> {
  const target = new URL(upstream);
  const sockets = new Set<Socket>();
  let quits = 0;
  const COM_QUIT = Buffer.from([1, 0, 0, 0, 1]);
  const server = createServer((client) => {
    const up = connect(Number(target.port), target.hostname);
    for (const socket of [client, up]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    let quitting = false;
    client.on('data', (chunk: Buffer) => {
      if (!chunk.equals(COM_QUIT)) return void up.write(chunk);
      quitting = true;
      setTimeout(() => {
        up.end(chunk);
        quits += 1;
      }, ms);
    });
    up.on('data', (chunk: Buffer) => void client.write(chunk));
    client.on('close', () => void (quitting || up.destroy()));
    up.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(upstream);
  url.port = String((server.address() as AddressInfo).port);
  return {
    url: url.toString(),
    quits: () => quits,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe("DTM's Go SDK's XA phase 2 on MariaDB", () => {
  it("DTM's commit reaches the Go XA branch while MariaDB still holds its prepared XA transaction attached to the connection the SDK closed: committed all the same, nothing left prepared", async () => {
    // the SDK's XaHandlePhase2 took the XAER_NOTA MariaDB answers then for a repeated commit: DTM
    // recorded the branch committed, the deposit never was, and the prepared transaction stayed,
    // holding its rows: every later write to them (each test's reset of the accounts) waited 50 s
    const proxy = await quitHoldingProxy(mysqlUrl, 400);
    const [port, grpcPort] = [await freePort(), await freePort()];
    const other = startOtherPeer(port, grpcPort, proxy.url);
    const gid = await client.generateGid();
    try {
      await waitUntil('the second go peer', async (signal) => (await fetch(`http://127.0.0.1:${port}/`, { signal })).status === 404, { timeoutMs: 20_000, process: other });
      const quitsBefore = proxy.quits();
      await client.xaGlobalTransaction(gid, async (xa) => xa.callBranch({ account: 2, amount: 11 }, `http://127.0.0.1:${port}/rm/mysql/xa-deposit`));
      expect((await client.waitForFinal(gid)).status).toBe('succeed');
      // the branch's connection has quit: its prepared transaction, if any, is detached and listed
      await waitUntil('the XA branch connection quit', async () => proxy.quits() > quitsBefore, { timeoutMs: 10_000 });
      expect(await pendingXa(gid)).toEqual([]);
      expect(await mysqlBalances()).toEqual([100, 11]);
    } finally {
      // one left prepared would stall every later test: rolled back here
      for (const xid of await pendingXa(gid)) await myPool.query(`XA ROLLBACK '${xid.slice('mysql:'.length)}'`).catch(() => undefined);
      await closeEach([
        ['stopping the second Go peer', () => other.stop()],
        ['closing the proxy', () => proxy.close()],
      ]);
    }
  });
});
