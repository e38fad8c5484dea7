// Three services as a shop runs them, against the real DTM server, with branch_auth_keys on and
// pass_through_headers (a tenant and a request id) everywhere: orders (the caller: HTTP, its outbox
// on PostgreSQL, a workflow), bank (HTTP branches behind the barrier on PostgreSQL, an XA branch, a
// TCC Try nesting the stock's) and stock (gRPC branches only, behind the barrier on MariaDB).
// Orders adds branches by name (contracts and `{ service, branch }`) and by URL, talks gRPC to DTM
// for sagas and TCCs, HTTP for messages, XA and workflows. Asserts what DTM recorded, the rows, what
// each branch ran and which headers it got.
import 'reflect-metadata';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Body, Controller, Get, Inject, Injectable, Post, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { GrpcMethod, Payload, Transport } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import mysql from 'mysql2/promise';
import pg from 'pg';
import {
  BarrierTx,
  BranchContext,
  DTM_BRANCHES_PROTO,
  DtmClient,
  DtmFailureError,
  DtmModule,
  DtmWorkflow,
  DtmWorkflowPendingError,
  MsgBranch,
  MsgQueryPrepared,
  SagaAction,
  SagaCompensate,
  TccCancel,
  TccConfirm,
  TccTry,
  UseBarrier,
  XaBranch,
  defineBranches,
  ensureBarrierSchema,
  msgBranch,
  mysqlBarrierDatabase,
  pgBarrierDatabase,
  sagaBranch,
  tccBranch,
  xaBranch,
  type BarrierDatabase,
  type BranchInfo,
  type WorkflowContext,
} from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { latch } from '../support/fixtures.js';
import { TESTS_GRPC_PROTOS, TESTS_LOADER, TESTS_PROTO } from '../support/grpc.js';
import { cronUntilStatus, harness, queryTrans, triggerCron, type TransStatus } from '../support/harness.js';
import { pgXaAt } from '../support/pg-xa.js';
import { freePort } from '../support/services/process.js';

/** A movement: `account` (a bank account or a stock item), `amount`; `fail`: 'failure' refuses, 'error' fails once per gid. */
interface Move {
  account: number;
  amount: number;
  fail?: string;
}

const Bank = defineBranches('bank', { withdraw: sagaBranch<Move>(), hold: tccBranch<Move>(), credit: msgBranch<Move>(), xa: xaBranch<Move>() });
const Stock = defineBranches('stock', { take: sagaBranch<Move>(), reserve: tccBranch<Move>(), ship: msgBranch<Move>() });

const KEY = 'integration-key-0123456789-abcdefghijklmnop';
const PASSED = ['x-tenant', 'x-request-id'];

/** Every branch call a service's handler ran: `service.op`, the call, the headers it was given. */
const seen: { what: string; gid: string; branchId: string; op: string; headers: Record<string, string> }[] = [];
const see = (what: string, b: BranchInfo) => seen.push({ what, gid: b.gid, branchId: b.branchId, op: b.op, headers: { ...b.headers } });
const seenOf = (gid: string) => seen.filter((s) => s.gid === gid);
/** Errors thrown once per `gid/what`. */
const failedOnce = new Set<string>();
function failIfAsked(m: Move, what: string, b: BranchInfo): void {
  if (m.fail === 'failure') throw new DtmFailureError(`${what} refused`);
  if (m.fail === 'error' && !failedOnce.has(`${b.gid}/${what}`)) {
    failedOnce.add(`${b.gid}/${what}`);
    throw new Error(`${what} crashed once`);
  }
}
/** While set, the bank's withdraw compensation fails, and says it was called (the shutdown test). */
let bankDown: (() => void) | undefined;
/** Holds the stock's TransOut while set (the shutdown test). */
let stockHold: ReturnType<typeof latch> | undefined;

const UPDATE = 'UPDATE account SET balance = balance + ? WHERE id = ?';
const pgSql = (sql: string) => {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
};

@Controller('bank')
@UseBarrier('pg')
class BankController {
  constructor(@Inject(DtmClient) private readonly dtm: DtmClient) {}

  @Post('withdraw')
  @SagaAction(Bank.withdraw)
  async withdraw(@Body() m: Move, @BarrierTx() tx: pg.PoolClient, @BranchContext() b: BranchInfo) {
    see('bank.withdraw', b);
    const r = await tx.query('UPDATE account SET balance = balance - $1 WHERE id = $2 AND balance >= $1', [m.amount, m.account]);
    if (r.rowCount === 0) throw new DtmFailureError(`account ${m.account}: insufficient balance`);
    failIfAsked(m, 'bank.withdraw', b);
  }

  @Post('withdraw-compensate')
  @SagaCompensate(Bank.withdraw)
  async withdrawCompensate(@Body() m: Move, @BarrierTx() tx: pg.PoolClient, @BranchContext() b: BranchInfo) {
    see('bank.withdraw-compensate', b);
    await tx.query(pgSql(UPDATE), [m.amount, m.account]);
    if (m.fail === 'compensate-error') failIfAsked({ ...m, fail: 'error' }, 'bank.withdraw-compensate', b);
    if (bankDown) {
      bankDown();
      throw new Error('the bank is going down');
    }
  }

  @Post('deposit')
  @SagaAction('bank.deposit')
  async deposit(@Body() m: Move, @BarrierTx() tx: pg.PoolClient, @BranchContext() b: BranchInfo) {
    see('bank.deposit', b);
    await tx.query(pgSql(UPDATE), [m.amount, m.account]);
    failIfAsked(m, 'bank.deposit', b);
  }

  @Post('deposit-compensate')
  @SagaCompensate('bank.deposit')
  async depositCompensate(@Body() m: Move, @BarrierTx() tx: pg.PoolClient, @BranchContext() b: BranchInfo) {
    see('bank.deposit-compensate', b);
    await tx.query(pgSql(UPDATE), [-m.amount, m.account]);
  }

  /** Holds the amount, then reserves it in the stock: a nested TCC. */
  @Post('hold-try')
  @TccTry(Bank.hold)
  async holdTry(@Body() m: Move, @BarrierTx() tx: pg.PoolClient, @BranchContext() b: BranchInfo) {
    see('bank.hold-try', b);
    await tx.query(pgSql(UPDATE), [-m.amount, m.account]);
    await this.dtm.tccFromBranch(b).callBranch({ account: 1, amount: m.amount, fail: m.fail }, Stock.reserve);
  }

  @Post('hold-confirm')
  @TccConfirm(Bank.hold)
  holdConfirm(@BranchContext() b: BranchInfo) {
    see('bank.hold-confirm', b);
  }

  @Post('hold-cancel')
  @TccCancel(Bank.hold)
  async holdCancel(@Body() m: Move, @BarrierTx() tx: pg.PoolClient, @BranchContext() b: BranchInfo) {
    see('bank.hold-cancel', b);
    await tx.query(pgSql(UPDATE), [m.amount, m.account]);
  }

  @Post('credit')
  @MsgBranch(Bank.credit)
  async credit(@Body() m: Move, @BarrierTx() tx: pg.PoolClient, @BranchContext() b: BranchInfo) {
    see('bank.credit', b);
    await tx.query(pgSql(UPDATE), [m.amount, m.account]);
  }
}

@Controller('bank-xa')
class BankXaController {
  @Post('escrow')
  @XaBranch(Bank.xa, { db: 'pgxa' })
  async escrow(@Body() m: Move, @BarrierTx() c: pg.Client, @BranchContext() b: BranchInfo) {
    see('bank.xa', b);
    await c.query(pgSql(UPDATE), [m.amount, m.account]);
    if (m.fail) throw new DtmFailureError('escrow refused');
    return { ok: true };
  }
}

/** The gid of the saga the stock's ship started, by the message's gid. */
const chained = new Map<string, string>();

@Controller()
@UseBarrier('mysql')
class StockController {
  constructor(@Inject(DtmClient) private readonly dtm: DtmClient) {}

  @GrpcMethod('MysqlBank', 'TransOut')
  @SagaAction(Stock.take)
  async take(@Payload() m: Move, @BarrierTx() tx: mysql.PoolConnection, @BranchContext() b: BranchInfo) {
    see('stock.take', b);
    if (stockHold) await stockHold.wait();
    const [r] = await tx.query('UPDATE account SET balance = balance - ? WHERE id = ? AND balance >= ?', [m.amount, m.account, m.amount]);
    if ((r as mysql.ResultSetHeader).affectedRows === 0) throw new DtmFailureError(`item ${m.account}: out of stock`);
    failIfAsked(m, 'stock.take', b);
  }

  @GrpcMethod('MysqlBank', 'TransOutCompensate')
  @SagaCompensate(Stock.take)
  async takeCompensate(@Payload() m: Move, @BarrierTx() tx: mysql.PoolConnection, @BranchContext() b: BranchInfo) {
    see('stock.take-compensate', b);
    await tx.query(UPDATE, [m.amount, m.account]);
    failIfAsked(m, 'stock.take-compensate', b);
  }

  @GrpcMethod('MysqlBank', 'TccOutTry')
  @TccTry(Stock.reserve)
  async reserveTry(@Payload() m: Move, @BarrierTx() tx: mysql.PoolConnection, @BranchContext() b: BranchInfo) {
    see('stock.reserve-try', b);
    await tx.query(UPDATE, [-m.amount, m.account]);
    failIfAsked(m, 'stock.reserve-try', b);
  }

  @GrpcMethod('MysqlBank', 'TccOutConfirm')
  @TccConfirm(Stock.reserve)
  reserveConfirm(@BranchContext() b: BranchInfo) {
    see('stock.reserve-confirm', b);
  }

  @GrpcMethod('MysqlBank', 'TccOutCancel')
  @TccCancel(Stock.reserve)
  async reserveCancel(@Payload() m: Move, @BarrierTx() tx: mysql.PoolConnection, @BranchContext() b: BranchInfo) {
    see('stock.reserve-cancel', b);
    await tx.query(UPDATE, [m.amount, m.account]);
  }

  @GrpcMethod('MysqlBank', 'Deliver')
  @MsgBranch(Stock.ship)
  async ship(@Payload() m: Move, @BarrierTx() tx: mysql.PoolConnection, @BranchContext() b: BranchInfo) {
    see('stock.ship', b);
    await tx.query(UPDATE, [-m.amount, m.account]);
    if (m.fail === 'chain') {
      // the stock starts a transaction of its own from the branch call: it passes on what the call's token signed
      const gid = await this.dtm.generateGid();
      chained.set(b.gid, gid);
      await this.dtm.newSaga(gid, { protocol: 'grpc' }).add(`${bankUrl}/bank/deposit`, `${bankUrl}/bank/deposit-compensate`, { account: 3, amount: m.amount }).submit();
    }
  }
}

/** The workflow's input: where its steps go. */
interface PlaceInput {
  stock: string;
  bank: string;
  amount: number;
  fail?: string;
  compensateFail?: string;
}

@Injectable()
class OrderWorkflows {
  @DtmWorkflow('orders.place')
  async place(wf: WorkflowContext<PlaceInput>) {
    const { stock, bank, amount, fail } = wf.input;
    await wf
      .step('take')
      .onRollback((b) => b.grpc(`${stock}/tests.MysqlBank/TransOutCompensate`, { account: 1, amount, fail: wf.input.compensateFail }))
      .grpc(`${stock}/tests.MysqlBank/TransOut`, { account: 1, amount });
    await wf
      .step('pay')
      .onRollback((b) => b.http(`${bank}/bank/withdraw-compensate`, { account: 1, amount }))
      .http(`${bank}/bank/withdraw`, { account: 1, amount, fail });
    return { placed: amount };
  }
}

let orderSeq = 0;

@Controller('orders')
class OrdersController {
  constructor(
    @Inject(DtmClient) private readonly dtm: DtmClient,
    @Inject('orders-db') private readonly db: BarrierDatabase<pg.PoolClient>,
  ) {}

  /** A saga over gRPC: the stock's take by contract (gRPC), the bank's withdraw by `{ service, branch }` (HTTP only), a deposit by URL. */
  @Post('saga')
  async saga(@Body() o: { gid: string; amount: number; bank: string; fail?: string; withdrawFail?: string }) {
    return this.dtm
      .newSaga(o.gid, { protocol: 'grpc' })
      .add(Stock.take, { account: 1, amount: o.amount })
      .add({ service: 'bank', branch: 'withdraw' }, { account: 1, amount: o.amount, fail: o.withdrawFail })
      .add(`${o.bank}/bank/deposit`, `${o.bank}/bank/deposit-compensate`, { account: 2, amount: o.amount, fail: o.fail })
      .submitAndWait({ timeout: 20 });
  }

  /** A TCC over gRPC: the bank's hold, whose Try nests the stock's reserve. */
  @Post('tcc')
  async tcc(@Body() o: { gid: string; amount: number; fail?: string }) {
    try {
      await this.dtm.tccGlobalTransactionAndWait(o.gid, (tcc) => tcc.callBranch({ account: 1, amount: o.amount, fail: o.fail }, Bank.hold), { protocol: 'grpc' }, { timeout: 20 });
    } catch (err) {
      if (!(err instanceof DtmFailureError)) throw err;
    }
    return this.dtm.waitForFinal(o.gid, { timeout: 20 });
  }

  /** A message over HTTP from the outbox: the bank's credit by contract, its local transaction an order row. */
  @Post('msg')
  async msg(@Body() o: { gid: string; amount: number; crash?: 'before' | 'after'; protocol?: 'http' | 'grpc'; chain?: boolean }) {
    const msg = this.dtm.newMsg(o.gid, { protocol: o.protocol ?? 'http', timeoutToFail: 1 }).add(Bank.credit, { account: 2, amount: o.amount });
    if (o.protocol === 'grpc') msg.add(Stock.ship, { account: 1, amount: o.amount, fail: o.chain ? 'chain' : undefined });
    if (!o.crash) {
      await msg.doAndSubmitDb('orders.check', this.db, (tx) => tx.query('INSERT INTO orders (id, gid) VALUES ($1, $2)', [++orderSeq, o.gid]));
      return this.dtm.waitForFinal(o.gid, { timeout: 20 });
    }
    // the process dies after the prepare: before its local transaction, or after it committed
    await msg.prepare('orders.check');
    if (o.crash === 'after') {
      await this.dtm.barrier({ gid: o.gid, transType: 'msg', branchId: '00', op: 'msg', headers: {} }).callWithDb(this.db, (tx) => tx.query('INSERT INTO orders (id, gid) VALUES ($1, $2)', [++orderSeq, o.gid]));
    }
    return { gid: o.gid };
  }

  /** XA over HTTP: the bank's escrow by contract. */
  @Post('xa')
  async xa(@Body() o: { gid: string; amount: number; fail?: string; protocol?: 'http' | 'grpc' }) {
    try {
      await this.dtm.xaGlobalTransactionAndWait(o.gid, (xa) => xa.callBranch({ account: 3, amount: o.amount, fail: o.fail }, Bank.xa), { protocol: o.protocol ?? 'http' }, { timeout: 20 });
    } catch (err) {
      if (!(err instanceof DtmFailureError)) throw err;
    }
    return this.dtm.waitForFinal(o.gid, { timeout: 20 });
  }

  @Post('workflow')
  async workflow(@Body() o: { gid: string; input: PlaceInput }) {
    try {
      return await this.dtm.executeWorkflow('orders.place', o.gid, o.input);
    } catch (err) {
      if (err instanceof DtmWorkflowPendingError) return { pending: true };
      if (err instanceof DtmFailureError) return { failed: err.message };
      throw err;
    }
  }

  @Get('check')
  @MsgQueryPrepared('orders.check', { barrier: 'pg' })
  check() {
    throw new Error('not called: the barrier answers');
  }
}

let dbs: FileDatabases;
let pgPool: pg.Pool;
let myPool: mysql.Pool;
let bank: INestApplication;
let bankUrl: string;
let stock: INestMicroservice | undefined;
let stockAddress: string;
let orders: INestApplication;
let ordersUrl: string;

const dtmConfig = () => ({ serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, branchAuthKeys: [KEY], branchAuthCheckActions: true, passThroughHeaders: PASSED, barrierTable: 'dtm_barrier', retryInterval: 1 });

async function startStock(): Promise<INestMicroservice> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { ...dtmConfig(), grpcAppAddress: stockAddress, publishBranches: true },
        barrierConnections: { mysql: mysqlBarrierDatabase(myPool) },
        grpcProtos: TESTS_GRPC_PROTOS,
      }),
    ],
    controllers: [StockController],
  }).compile();
  const app = moduleRef.createNestMicroservice({
    logger: ['error'],
    transport: Transport.GRPC,
    options: { package: ['tests', 'nestjs_dtm'], protoPath: [TESTS_PROTO, DTM_BRANCHES_PROTO], url: stockAddress, loader: TESTS_LOADER },
  });
  await app.listen();
  return app;
}

async function startBank(port: number): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { ...dtmConfig(), appUrl: bankUrl, publishBranches: true, services: { stock: { grpc: stockAddress } } },
        barrierConnections: { pg: pgBarrierDatabase(pgPool) },
        xaConnections: { pgxa: pgXaAt(dbs.postgres.url) },
        contracts: [Stock],
        grpcProtos: TESTS_GRPC_PROTOS,
      }),
    ],
    controllers: [BankController, BankXaController],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: ['error'], forceCloseConnections: true });
  await app.listen(port, '127.0.0.1');
  return app;
}

beforeAll(async () => {
  dbs = await fileDatabases();
  pgPool = new pg.Pool({ connectionString: dbs.postgres.url, max: 10 });
  myPool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 10 });
  await pgPool.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
  await pgPool.query('CREATE TABLE orders (id int PRIMARY KEY, gid text NOT NULL)');
  await myPool.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
  await ensureBarrierSchema(pgBarrierDatabase(pgPool), { table: 'dtm_barrier' });
  await ensureBarrierSchema(mysqlBarrierDatabase(myPool), { table: 'dtm_barrier' });
  stockAddress = `127.0.0.1:${await freePort()}`;
  stock = await startStock();
  const bankPort = await freePort();
  bankUrl = `http://127.0.0.1:${bankPort}`;
  bank = await startBank(bankPort);
  const ordersPort = await freePort();
  ordersUrl = `http://127.0.0.1:${ordersPort}`;
  const ordersDb = pgBarrierDatabase(pgPool);
  const ordersModuleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { ...dtmConfig(), passThroughHeaders: ['X-Tenant', 'X-Request-ID'], appUrl: ordersUrl, services: { bank: { url: bankUrl }, stock: { grpc: stockAddress } } },
        barrierConnections: { pg: ordersDb },
        contracts: [Bank, Stock],
        grpcProtos: TESTS_GRPC_PROTOS,
      }),
    ],
    controllers: [OrdersController],
    providers: [OrderWorkflows, { provide: 'orders-db', useValue: ordersDb }],
  }).compile();
  orders = ordersModuleRef.createNestApplication({ logger: ['error'], forceCloseConnections: true });
  await orders.listen(ordersPort, '127.0.0.1');
});
afterAll(async () => {
  await orders?.close();
  await bank?.close();
  await stock?.close();
  await pgPool?.end();
  await myPool?.end();
});

beforeEach(async () => {
  await pgPool.query('DELETE FROM account');
  await pgPool.query('INSERT INTO account VALUES (1, 100), (2, 100), (3, 100)');
  await myPool.query('DELETE FROM account');
  await myPool.query('INSERT INTO account VALUES (1, 10)');
});

let requestSeq = 0;
/** Calls orders as a user's request does: the tenant, a request id, and headers that must not travel. */
async function order(path: string, body: object): Promise<{ requestId: string; answer: Record<string, unknown> }> {
  const requestId = `req-${++requestSeq}`;
  const res = await fetch(`${ordersUrl}/orders/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-tenant': 'acme', 'x-request-id': requestId, authorization: 'Bearer s3cret', cookie: 'sid=1', 'x-other': 'no' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`orders answered ${res.status}: ${text}`);
  return { requestId, answer: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const balances = async () => ({
  bank: Object.fromEntries((await pgPool.query('SELECT id, balance FROM account ORDER BY id')).rows.map((r: { id: number; balance: number }) => [r.id, r.balance])),
  stock: Number(((await myPool.query('SELECT balance FROM account WHERE id = 1'))[0] as { balance: number }[])[0].balance),
});

/** Each call the branches ran for `gid`, `what op`, and that each got exactly the forwarded headers. */
function expectHeaders(gid: string, requestId: string): void {
  for (const s of seenOf(gid)) expect([s.what, s.op, s.headers]).toEqual([s.what, s.op, { 'x-tenant': 'acme', 'x-request-id': requestId }]);
}

/** Has DTM's cron take `gid` until it records `status`. */
const untilDtmRecords = (gid: string, status: TransStatus) => cronUntilStatus(gid, status, { timeoutMs: 25_000, intervalMs: 700 });

describe('a saga over gRPC: by contract (gRPC), by { service, branch } (HTTP only) and by URL', () => {
  it('succeeds: each step once, over its own transport, with the forwarded headers only', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('saga', { gid, amount: 3, bank: bankUrl });
    expect(answer.status).toBe('succeed');
    expect(seenOf(gid).map((s) => `${s.what} ${s.op}`)).toEqual(['stock.take action', 'bank.withdraw action', 'bank.deposit action']);
    expectHeaders(gid, requestId);
    const { transaction, branches } = await queryTrans(gid);
    expect(transaction?.branch_headers).toMatchObject({ 'x-tenant': 'acme', 'x-request-id': requestId });
    expect(Object.keys(transaction?.branch_headers ?? {})).not.toContain('authorization');
    expect(branches.filter((b) => b.op === 'action').map((b) => b.url?.startsWith('http') ? 'http' : 'grpc')).toEqual(['grpc', 'http', 'http']);
    expect(await balances()).toEqual({ bank: { 1: 97, 2: 103, 3: 100 }, stock: 7 });
  });

  it('the last step refuses after an error once: DTM compensates every step, each once, with the headers; everything back', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('saga', { gid, amount: 3, bank: bankUrl, fail: 'failure' });
    expect(answer).toMatchObject({ status: 'failed' });
    const ran = seenOf(gid).map((s) => `${s.what} ${s.op}`);
    // the deposit's own write rolled back with its FAILURE: the barrier takes its compensation as a null one (no body)
    expect(ran.filter((r) => !r.endsWith('action')).sort()).toEqual(['bank.withdraw-compensate compensate', 'stock.take-compensate compensate']);
    expectHeaders(gid, requestId);
    expect(await balances()).toEqual({ bank: { 1: 100, 2: 100, 3: 100 }, stock: 10 });
  });

  it('a compensation failing once is retried by DTM later, still signed and in its phase: it runs, everything back', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('saga', { gid, amount: 3, bank: bankUrl, fail: 'failure', withdrawFail: 'compensate-error' });
    if (answer.status !== 'failed') await untilDtmRecords(gid, 'failed');
    expect(seenOf(gid).filter((s) => s.what === 'bank.withdraw-compensate')).toHaveLength(2);
    expectHeaders(gid, requestId);
    expect(await balances()).toEqual({ bank: { 1: 100, 2: 100, 3: 100 }, stock: 10 });
  });
});

describe('a TCC over gRPC whose bank Try nests the stock', () => {
  it('confirms: the nested reserve and the hold confirmed once each, headers forwarded', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('tcc', { gid, amount: 4 });
    expect(answer.status).toBe('succeed');
    expect(seenOf(gid).map((s) => `${s.what} ${s.op}`).sort()).toEqual(['bank.hold-confirm confirm', 'bank.hold-try try', 'stock.reserve-confirm confirm', 'stock.reserve-try try']);
    expectHeaders(gid, requestId);
    expect(await balances()).toEqual({ bank: { 1: 96, 2: 100, 3: 100 }, stock: 6 });
  });

  it('the nested Try refuses: everything cancelled, nothing taken', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('tcc', { gid, amount: 4, fail: 'failure' });
    expect(answer.status).toBe('failed');
    expectHeaders(gid, requestId);
    expect(seenOf(gid).some((s) => s.op === 'confirm')).toBe(false);
    expect(await balances()).toEqual({ bank: { 1: 100, 2: 100, 3: 100 }, stock: 10 });
  });
});

describe('a message over HTTP from the outbox', () => {
  it('delivered once with the headers', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('msg', { gid, amount: 5 });
    expect(answer.status).toBe('succeed');
    expect(seenOf(gid).map((s) => `${s.what} ${s.op}`)).toEqual(['bank.credit action']);
    expectHeaders(gid, requestId);
    expect((await balances()).bank).toEqual({ 1: 100, 2: 105, 3: 100 });
  });
});

describe.each(['http', 'grpc'] as const)('XA over %s', (protocol) => {
  it.each([undefined, 'failure'])('fail %s: committed or rolled back', async (fail) => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('xa', { gid, amount: 6, fail, protocol });
    expect(answer.status).toBe(fail ? 'failed' : 'succeed');
    expectHeaders(gid, requestId);
    expect((await balances()).bank).toEqual({ 1: 100, 2: 100, 3: fail ? 100 : 106 });
  });
});

describe('a message over gRPC (the bank over HTTP, the stock over gRPC) with its back-check over HTTP', () => {
  it.each([undefined, 'after', 'before'] as const)('crash %s: delivered to both, or dropped, with the headers', async (crash) => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId } = await order('msg', { gid, amount: 2, crash, protocol: 'grpc' });
    await untilDtmRecords(gid, crash === 'before' ? 'failed' : 'succeed');
    expectHeaders(gid, requestId);
    expect(seenOf(gid).map((s) => `${s.what} ${s.op}`).sort()).toEqual(crash === 'before' ? [] : ['bank.credit action', 'stock.ship action']);
    expect(await balances()).toEqual(crash === 'before' ? { bank: { 1: 100, 2: 100, 3: 100 }, stock: 10 } : { bank: { 1: 100, 2: 102, 3: 100 }, stock: 8 });
  });
});

describe('a workflow mixing a gRPC and an HTTP step', () => {
  it('the HTTP step fails once: pending; DTM resumes it (signed), the steps get the headers; succeeds, each business once', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('workflow', { gid, input: { stock: stockAddress, bank: bankUrl, amount: 2, fail: 'error' } });
    expect(answer).toEqual({ pending: true });
    await untilDtmRecords(gid, 'succeed');
    expectHeaders(gid, requestId);
    expect(seenOf(gid).map((s) => `${s.what} ${s.op}`)).toEqual(['stock.take action', 'bank.withdraw action', 'bank.withdraw action']);
    expect(await balances()).toEqual({ bank: { 1: 98, 2: 100, 3: 100 }, stock: 8 });
  });

  it('the HTTP step refuses: the gRPC step is compensated with the headers', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('workflow', { gid, input: { stock: stockAddress, bank: bankUrl, amount: 2, fail: 'failure' } });
    expect(answer).toMatchObject({ failed: expect.any(String) });
    expectHeaders(gid, requestId);
    expect(seenOf(gid).map((s) => `${s.what} ${s.op}`)).toContain('stock.take-compensate rollback');
    expect(await balances()).toEqual({ bank: { 1: 100, 2: 100, 3: 100 }, stock: 10 });
  });

  it('the HTTP step refuses and the gRPC compensation fails once: DTM resumes the rollback (signed), the compensation gets the headers and runs once', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId, answer } = await order('workflow', { gid, input: { stock: stockAddress, bank: bankUrl, amount: 2, fail: 'failure', compensateFail: 'error' } });
    expect(answer).toEqual({ pending: true });
    await untilDtmRecords(gid, 'failed');
    expectHeaders(gid, requestId);
    expect(seenOf(gid).filter((s) => s.what === 'stock.take-compensate')).toHaveLength(2);
    expect(await balances()).toEqual({ bank: { 1: 100, 2: 100, 3: 100 }, stock: 10 });
  });
});

describe('a branch starting a transaction of its own', () => {
  it("the stock's message branch starts a saga: the saga's branches get the headers the call's token signed", async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const { requestId } = await order('msg', { gid, amount: 2, protocol: 'grpc', chain: true });
    await untilDtmRecords(gid, 'succeed');
    const child = chained.get(gid)!;
    await untilDtmRecords(child, 'succeed');
    expect(seenOf(child).map((s) => `${s.what} ${s.op}`)).toEqual(['bank.deposit action']);
    expectHeaders(child, requestId);
    expect((await queryTrans(child)).transaction?.branch_headers).toMatchObject({ 'x-tenant': 'acme', 'x-request-id': requestId });
  });
});

describe('the stock shut down while DTM calls it, then started again', () => {
  it('a step in flight at app.close() is not taken as done: DTM retries it once the stock is back, its business runs once', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    stockHold = latch();
    const held = stockHold;
    const run = order('saga', { gid, amount: 1, bank: bankUrl });
    await held.reached;
    const closing = stock!.close();
    held.open();
    await closing;
    stockHold = undefined;
    stock = await startStock();
    const { requestId, answer } = await run;
    if (answer.status !== 'succeed') await untilDtmRecords(gid, 'succeed');
    expectHeaders(gid, requestId);
    expect(await balances()).toEqual({ bank: { 1: 99, 2: 101, 3: 100 }, stock: 9 });
    expect(seenOf(gid).filter((s) => s.what === 'bank.withdraw')).toHaveLength(1);
    // the bank's kept channel to the stock (its nested Tries) serves the stock started again
    const tccGid = await orders.get(DtmClient).generateGid();
    expect((await order('tcc', { gid: tccGid, amount: 1 })).answer.status).toBe('succeed');
    expect(await balances()).toEqual({ bank: { 1: 98, 2: 101, 3: 100 }, stock: 8 });
  });
});

describe('the bank shut down while DTM retries a compensation into it, then started again', () => {
  it('the compensation is not taken as done: it runs once the bank is back, everything back', async () => {
    const gid = await orders.get(DtmClient).generateGid();
    const down = new Promise<void>((resolve) => (bankDown = resolve));
    const run = order('saga', { gid, amount: 3, bank: bankUrl, fail: 'failure' });
    await down;
    await bank.close();
    bankDown = undefined;
    // DTM retries into the closed bank: refused connections, still aborting
    await triggerCron();
    await new Promise((r) => setTimeout(r, 500));
    expect((await queryTrans(gid)).transaction?.status).toBe('aborting');
    bank = await startBank(Number(new URL(bankUrl).port));
    await untilDtmRecords(gid, 'failed');
    const { requestId, answer } = await run;
    expect(answer.status).toBe('failed');
    expectHeaders(gid, requestId);
    expect(seenOf(gid).filter((s) => s.what === 'bank.withdraw-compensate').length).toBeGreaterThanOrEqual(2);
    expect(await balances()).toEqual({ bank: { 1: 100, 2: 100, 3: 100 }, stock: 10 });
  });
});
