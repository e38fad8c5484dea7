// How the barrier is wired into decorated handlers, whatever way a user writes the controller:
// decorator order, inherited handlers, request-scoped controllers, handlers that never ask for the
// transaction, @BarrierTx() where there is none, and a DtmModule the controller's module cannot see.
// Each handler is called twice as DTM would (a redelivery): the business must run once, and the
// barrier rows must be in PostgreSQL.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Body, Controller, Inject, Injectable, Module, Post, Query, Scope, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { defer, from, ignoreElements } from 'rxjs';
import {
  BarrierTx,
  BranchContext,
  DtmBranchRegistryError,
  DtmClient,
  DtmModule,
  DtmUsageError,
  SagaAction,
  SagaCompensate,
  UseBarrier,
  ensureBarrierSchema,
  mysqlBarrierDatabase,
  pgBarrierDatabase,
  pgBarrierTransaction,
  type BranchInfo,
} from 'nestjs-dtm';
import { fileDatabases } from '../support/databases.js';
import { harness } from '../support/harness.js';

/** Business runs per handler, and what each run received. */
@Injectable()
class Runs {
  calls: { handler: string; body: unknown; tx: boolean; note?: unknown }[] = [];
  of(handler: string): number {
    return this.calls.filter((c) => c.handler === handler).length;
  }
}

/** Inserts a row marking that `handler` ran for `gid`, through the barrier's transaction. */
async function mark(tx: unknown, gid: string, handler: string): Promise<void> {
  await (tx as pg.PoolClient).query('INSERT INTO ran (gid, handler) VALUES ($1, $2)', [gid, handler]);
}

@Controller('order')
class DecoratorOrder {
  constructor(private readonly runs: Runs) {}

  /** The branch decorator above the route decorator. */
  @SagaAction('above', { compensate: false, barrier: 'pg' })
  @Post('above')
  async above(@Body() body: unknown, @BarrierTx() tx: unknown, @BranchContext() b: BranchInfo) {
    this.runs.calls.push({ handler: 'above', body, tx: tx !== undefined });
    await mark(tx, b.gid, 'above');
    return { ok: 'above' };
  }

  /** The route decorator above the branch decorator, the transaction first, a query parameter last. */
  @Post('below')
  @SagaAction('below', { compensate: false, barrier: 'pg' })
  async below(@BarrierTx() tx: unknown, @BranchContext() b: BranchInfo, @Body() body: unknown, @Query('op') op: string) {
    this.runs.calls.push({ handler: 'below', body, tx: tx !== undefined, note: op });
    await mark(tx, b.gid, 'below');
  }

  /** Guarded, but never asks for the transaction (the barrier still makes it run once). */
  @Post('no-tx')
  @SagaAction('noTx', { compensate: false, barrier: 'pg' })
  noTx(@Body() body: unknown) {
    this.runs.calls.push({ handler: 'noTx', body, tx: false });
  }

  /** A route that is no branch asking for a transaction it does not have (a decorated branch doing so fails start-up: StrayTx). */
  @Post('stray-tx')
  strayTx(@BarrierTx() tx: unknown) {
    this.runs.calls.push({ handler: 'strayTx', body: undefined, tx: tx !== undefined });
  }
}

/** Branches asking for a transaction they do not have: no barrier on the first, opted out of its controller's on the second. */
@Controller('stray')
@UseBarrier('pg')
class StrayTx {
  @Post('plain')
  @SagaAction('strayPlain', { compensate: false, barrier: false })
  plain(@BarrierTx() tx: unknown) {
    return tx;
  }

  @Post('opted-out')
  @SagaAction('strayOptedOut', { barrier: false })
  optedOut(@Body() body: unknown, @BarrierTx() tx: unknown) {
    return [body, tx];
  }

  @Post('opted-out-compensate')
  @SagaCompensate('strayOptedOut')
  optedOutCompensate() {}
}

/** Handlers answering with an Observable (Nest subscribes to it): the barrier waits for it inside its transaction. */
@Controller('rx')
class ObservableAnswers {
  constructor(private readonly runs: Runs) {}

  /** Completes without a value: the answer is empty. */
  @Post('empty')
  @SagaAction('rxEmpty', { compensate: false, barrier: 'pg' })
  empty(@BarrierTx() tx: unknown, @BranchContext() b: BranchInfo) {
    return from(mark(tx, b.gid, 'rxEmpty')).pipe(ignoreElements());
  }

  /** Writes, then errors on its first run: the write and the barrier row roll back. */
  @Post('flaky')
  @SagaAction('rxFlaky', { compensate: false, barrier: 'pg' })
  flaky(@BarrierTx() tx: unknown, @BranchContext() b: BranchInfo) {
    return defer(async () => {
      this.runs.calls.push({ handler: 'rxFlaky', body: undefined, tx: tx !== undefined });
      await mark(tx, b.gid, 'rxFlaky');
      if (this.runs.of('rxFlaky') === 1) throw new Error('transient');
      return { ok: 'rx' };
    });
  }
}

/** A base class with decorated handlers; the subclass below supplies the barrier with @UseBarrier. */
abstract class BaseAccount {
  constructor(protected readonly runs: Runs) {}

  @Post('debit')
  @SagaAction('inherited')
  async debit(@Body() body: unknown, @BarrierTx() tx: unknown, @BranchContext() b: BranchInfo) {
    this.runs.calls.push({ handler: 'inherited', body, tx: tx !== undefined });
    await mark(tx, b.gid, 'inherited');
  }

  @Post('debit-compensate')
  @SagaCompensate('inherited')
  async debitCompensate(@BarrierTx() tx: unknown, @BranchContext() b: BranchInfo) {
    this.runs.calls.push({ handler: 'inheritedCompensate', body: undefined, tx: tx !== undefined });
    await mark(tx, b.gid, 'inheritedCompensate');
  }
}

@Controller('derived')
@UseBarrier('pg')
class DerivedAccount extends BaseAccount {
  constructor(runs: Runs) {
    super(runs);
  }
}

/** A base class with a barrier of its own, on PostgreSQL... */
@UseBarrier('pg')
abstract class PgLedger {
  constructor(protected readonly runs: Runs) {}

  @Post('book')
  @SagaAction('ledger', { compensate: false })
  book(@BarrierTx() tx: unknown) {
    this.runs.calls.push({ handler: 'ledger', body: undefined, tx: tx !== undefined, note: tx instanceof pg.Client ? 'pg' : 'mysql' });
  }
}

/** ...and a subclass that moves it to MariaDB. */
@Controller('ledger-mysql')
@UseBarrier('mysql')
class MysqlLedger extends PgLedger {
  constructor(runs: Runs) {
    super(runs);
  }
}

/** A new controller instance per request: the wrapped handler must still find the module's connections. */
@Controller({ path: 'scoped', scope: Scope.REQUEST })
@UseBarrier('pg')
class RequestScoped {
  constructor(private readonly runs: Runs) {}

  @Post('go')
  @SagaAction('scoped', { compensate: false })
  async go(@Body() body: unknown, @BarrierTx() tx: unknown, @BranchContext() b: BranchInfo) {
    this.runs.calls.push({ handler: 'scoped', body, tx: tx !== undefined });
    await mark(tx, b.gid, 'scoped');
  }
}

/** Handlers behind @UseBarrier that guard their work with DtmClient.barrier() again, as the docs show for a transaction of your own. */
@Controller('nested')
@UseBarrier('pg')
class NestedBarrier {
  constructor(
    private readonly runs: Runs,
    @Inject(DtmClient) private readonly dtm: DtmClient,
  ) {}

  /** In the barrier's own transaction: the same barrier row, which the module's barrier inserted already. */
  @SagaAction('nestedOwnTx', { compensate: false })
  @Post('own-tx')
  async ownTx(@BarrierTx() tx: pg.PoolClient, @BranchContext() b: BranchInfo) {
    try {
      await this.dtm.barrier(b).call(pgBarrierTransaction(tx), () => mark(tx, b.gid, 'nestedOwnTx'));
    } catch (err) {
      this.runs.calls.push({ handler: 'nestedError', body: undefined, tx: true, note: err });
      throw err;
    }
  }
}

let pool: pg.Pool;
let myPool: mysql.Pool;
let app: INestApplication;
let url: string;
let runs: Runs;
const barrierConnections = () => ({ pg: pgBarrierDatabase(pool), mysql: mysqlBarrierDatabase(myPool) });

beforeAll(async () => {
  const dbs = await fileDatabases();
  pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 10 });
  await pool.query('CREATE TABLE ran (gid text NOT NULL, handler text NOT NULL)');
  myPool = mysql.createPool({ ...dbs.mariadb.config, connectionLimit: 5 });
  await ensureBarrierSchema(pgBarrierDatabase(pool), { table: 'dtm_barrier' });
  await ensureBarrierSchema(mysqlBarrierDatabase(myPool), { table: 'dtm_barrier' });
  const moduleRef = await Test.createTestingModule({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, barrierTable: 'dtm_barrier' }, barrierConnections: barrierConnections() })],
    controllers: [DecoratorOrder, DerivedAccount, MysqlLedger, RequestScoped, ObservableAnswers, NestedBarrier],
    providers: [Runs],
  }).compile();
  app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
  await app.listen(0, '127.0.0.1');
  url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
  runs = app.get(Runs);
});
afterAll(async () => {
  await app?.close();
  await pool?.end();
  await myPool?.end();
});
beforeEach(() => {
  runs.calls = [];
});

let counter = 0;
/** A gid of this file's own (these calls are DTM-shaped but DTM never hears of them). */
const gid = () => `wiring-${process.pid}-${++counter}`;

/** Posts to `path` as DTM would call branch `01` of a saga with `op`. */
async function call(path: string, g: string, op = 'action', body: unknown = { amount: 1 }) {
  const query = new URLSearchParams({ gid: g, trans_type: 'saga', branch_id: '01', op });
  const res = await fetch(`${url}/${path}?${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, text: await res.text() };
}

/** The handlers that marked a run for `g`, and the barrier rows of `g` as `branch/op/barrier=reason`. */
async function recorded(g: string) {
  const ran = (await pool.query('SELECT handler FROM ran WHERE gid = $1 ORDER BY handler', [g])).rows.map((r: { handler: string }) => r.handler);
  const barrier = (
    await pool.query('SELECT branch_id, op, barrier_id, reason FROM dtm_barrier WHERE gid = $1 ORDER BY op, barrier_id', [g])
  ).rows.map((r: { branch_id: string; op: string; barrier_id: string; reason: string }) => `${r.branch_id}/${r.op}/${r.barrier_id}=${r.reason}`);
  return { ran, barrier };
}

describe('barrier wiring', () => {
  it.each([
    ['branch decorator above @Post', 'order/above', 'above'],
    ['branch decorator below @Post, @BarrierTx() first', 'order/below', 'below'],
  ])('%s: runs once in the barrier transaction, answers 200', async (_title, path, handler) => {
    const g = gid();
    const first = await call(path, g, 'action', { amount: 7 });
    const again = await call(path, g, 'action', { amount: 7 });
    expect([first.status, again.status]).toEqual([200, 200]);
    expect(runs.calls).toEqual([{ handler, body: { amount: 7 }, tx: true, ...(handler === 'below' ? { note: 'action' } : {}) }]);
    expect(await recorded(g)).toEqual({ ran: [handler], barrier: ['01/action/01=action'] });
  });

  it('the value the handler returns is the response body', async () => {
    expect(await call('order/above', gid())).toEqual({ status: 200, text: '{"ok":"above"}' });
  });

  it('a guarded handler without @BarrierTx() still runs once per branch', async () => {
    const g = gid();
    await call('order/no-tx', g);
    await call('order/no-tx', g);
    expect(runs.of('noTx')).toBe(1);
    expect((await recorded(g)).barrier).toEqual(['01/action/01=action']);
  });

  it('an inherited handler gets the barrier of the subclass\'s @UseBarrier, compensation included', async () => {
    const g = gid();
    expect((await call('derived/debit', g)).status).toBe(200);
    expect((await call('derived/debit', g)).status).toBe(200);
    expect((await call('derived/debit-compensate', g, 'compensate')).status).toBe(200);
    expect((await call('derived/debit-compensate', g, 'compensate')).status).toBe(200);
    expect(runs.calls.map((c) => [c.handler, c.tx])).toEqual([
      ['inherited', true],
      ['inheritedCompensate', true],
    ]);
    expect(await recorded(g)).toEqual({ ran: ['inherited', 'inheritedCompensate'], barrier: ['01/action/01=action', '01/compensate/01=compensate'] });
  });

  it('DtmClient.barrier() inside a handler already behind the barrier: a DtmUsageError naming the fix, never a business silently skipped as its own duplicate', async () => {
    const g = gid();
    const answer = await call('nested/own-tx', g);
    expect(await recorded(g)).toEqual({ ran: [], barrier: [] });
    expect(answer.status).toBe(500);
    expect(runs.calls.map((c) => c.handler)).toEqual(['nestedError']);
    const error = runs.calls[0].note as Error;
    expect(error).toBeInstanceOf(DtmUsageError);
    expect(error.message).toContain('@BarrierTx()');
    expect(error.message).toContain('{ barrier: false }');
  });

  it('a compensation arriving before its action is a null compensation, and the late action is refused', async () => {
    const g = gid();
    expect((await call('derived/debit-compensate', g, 'compensate')).status).toBe(200);
    expect((await call('derived/debit', g)).status).toBe(200);
    expect(runs.calls).toEqual([]);
    expect(await recorded(g)).toEqual({ ran: [], barrier: ['01/action/01=compensate', '01/compensate/01=compensate'] });
  });

  it("a subclass's @UseBarrier replaces the one its base class gave the inherited handlers", async () => {
    const g = gid();
    await call('ledger-mysql/book', g);
    await call('ledger-mysql/book', g);
    expect(runs.calls).toEqual([{ handler: 'ledger', body: undefined, tx: true, note: 'mysql' }]);
    const [rows] = await myPool.query('SELECT branch_id, op, barrier_id, reason FROM dtm_barrier WHERE gid = ?', [g]);
    expect((rows as Record<string, string>[]).map((r) => `${r.branch_id}/${r.op}/${r.barrier_id}=${r.reason}`)).toEqual(['01/action/01=action']);
    expect((await recorded(g)).barrier).toEqual([]);
  });

  it('a request-scoped controller is guarded like any other', async () => {
    const g = gid();
    await call('scoped/go', g);
    await call('scoped/go', g);
    expect(runs.calls).toEqual([{ handler: 'scoped', body: { amount: 1 }, tx: true }]);
    expect(await recorded(g)).toEqual({ ran: ['scoped'], barrier: ['01/action/01=action'] });
  });

  it('an Observable answer runs inside the barrier\'s transaction: its error rolls back the write and the barrier row, the redelivery runs it', async () => {
    const g = gid();
    expect((await call('rx/flaky', g)).status).toBe(500);
    expect(await recorded(g)).toEqual({ ran: [], barrier: [] });
    expect(await call('rx/flaky', g)).toEqual({ status: 200, text: '{"ok":"rx"}' });
    expect((await call('rx/flaky', g)).status).toBe(200); // a duplicate: skipped
    expect(runs.of('rxFlaky')).toBe(2);
    expect(await recorded(g)).toEqual({ ran: ['rxFlaky'], barrier: ['01/action/01=action'] });
  });

  it('an Observable that completes without a value answers empty, its work committed with the barrier row', async () => {
    const g = gid();
    expect(await call('rx/empty', g)).toEqual({ status: 200, text: '' });
    expect(await recorded(g)).toEqual({ ran: ['rxEmpty'], barrier: ['01/action/01=action'] });
  });

  it('@BarrierTx() on a route that is no branch answers 500 naming the fix, and the handler does not run', async () => {
    const g = gid();
    const res = await call('order/stray-tx', g);
    expect(res.status).toBe(500);
    expect(JSON.parse(res.text).message).toContain("DecoratorOrder.strayTx asks for @BarrierTx(), but runs without a barrier or XA database: give its decorator { barrier: '<connection>' }");
    expect(runs.calls).toEqual([]);
    expect(await recorded(g)).toEqual({ ran: [], barrier: [] });
  });
});

describe('@BarrierTx() on a decorated branch without a barrier or XA database', () => {
  it('fails start-up naming each such handler and the fix (every call DTM made would answer 500 and be retried forever)', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, barrierTable: 'dtm_barrier' }, barrierConnections: barrierConnections() })],
      controllers: [StrayTx],
    }).compile();
    const stray = moduleRef.createNestApplication({ logger: false });
    const error = await stray.listen(0, '127.0.0.1').then(() => undefined, (e: unknown) => e);
    await stray.close();
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    const fix = "asks for @BarrierTx(), but runs without a barrier or XA database, so every call DTM makes would answer 500 and be retried forever: give its decorator { barrier: '<connection>' } (its controller @UseBarrier()), use @XaBranch(name, { db }), or drop the @BarrierTx() parameter";
    expect((error as DtmBranchRegistryError).problems).toEqual([expect.stringContaining(`StrayTx.plain ${fix}`), expect.stringContaining(`StrayTx.optedOut ${fix}`)]);
  });
});

describe('a controller in a feature module', () => {
  @Controller('feature')
  class FeatureBank {
    @Post('in')
    @SagaAction('feature', { compensate: false, barrier: 'pg' })
    in() {}
  }
  @Module({ controllers: [FeatureBank] })
  class FeatureModule {}

  const boot = async (isGlobal: boolean) => {
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, barrierTable: 'dtm_barrier' }, barrierConnections: barrierConnections(), isGlobal }), FeatureModule],
    }).compile();
    const feature = moduleRef.createNestApplication({ logger: false });
    const error = await feature.listen(0, '127.0.0.1').then(() => undefined, (e: unknown) => e);
    return { feature, error };
  };

  it('fails at start-up when the DtmModule is neither imported there nor global', async () => {
    const { feature, error } = await boot(false);
    await feature.close();
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    expect((error as DtmBranchRegistryError).problems).toEqual([
      expect.stringContaining('FeatureBank.in runs in a local transaction (barrier or XA database), but no DtmModule serves it: import DtmModule in its module, or make it global (isGlobal: true)'),
    ]);
  });

  it('is guarded when the DtmModule is global', async () => {
    const { feature, error } = await boot(true);
    try {
      expect(error).toBeUndefined();
      const port = (feature.getHttpServer().address() as { port: number }).port;
      const g = gid();
      const query = new URLSearchParams({ gid: g, trans_type: 'saga', branch_id: '01', op: 'action' });
      const res = await fetch(`http://127.0.0.1:${port}/feature/in?${query}`, { method: 'POST' });
      expect(res.status).toBe(200);
      expect((await recorded(g)).barrier).toEqual(['01/action/01=action']);
    } finally {
      await feature.close();
    }
  });
});
