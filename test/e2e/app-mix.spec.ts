// The module among the rest of a real Nest app, against the real DTM: DtmModule set up by more than
// one module of the app; request-scoped controllers (over HTTP and gRPC, no instance kept); the app's
// catch-all filters, a response-wrapping interceptor and a guard for the whole app, a global prefix
// with exclusions, URI versioning, forRootAsync with ConfigService; an exception-mapping interceptor.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  BadGatewayException,
  Body,
  Catch,
  Controller,
  Inject,
  Injectable,
  Module,
  Post,
  RequestMethod,
  Scope,
  UseFilters,
  VersioningType,
  type ArgumentsHost,
  type CallHandler,
  type CanActivate,
  type ExceptionFilter,
  type ExecutionContext,
  type INestApplication,
  type MiddlewareConsumer,
  type NestInterceptor,
  type NestModule,
} from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR, REQUEST } from '@nestjs/core';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { GrpcMethod, Payload } from '@nestjs/microservices';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import { catchError, map, throwError, timeout } from 'rxjs';
import {
  BranchContext,
  DtmAwareGuard,
  DtmBranchRegistryError,
  DtmClient,
  DtmFailureError,
  DtmModule,
  DtmOutcomeUnknownError,
  DtmUsageError,
  SagaAction,
  SagaCompensate,
  TccCancel,
  TccConfirm,
  TccTry,
  UseBarrier,
  ensureBarrierSchema,
  isDtmBranchHandler,
  pgBarrierDatabase,
  type BranchInfo,
} from 'nestjs-dtm';
import { fileDatabases } from '../support/databases.js';
import { testsGrpcOptions } from '../support/grpc.js';
import { harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { freePort } from '../support/services/process.js';

let pool: pg.Pool;
/** The calls the handlers received, as `<handler> <gid>`. */
const seen: string[] = [];

@Controller('mix-pay')
@UseBarrier('pg')
class PayController {
  @Post('debit')
  @SagaAction('mixDebit')
  async debit(@Body() _m: unknown, @BranchContext() b: BranchInfo) {
    seen.push(`debit ${b.gid}`);
  }

  @Post('debit-compensate')
  @SagaCompensate('mixDebit')
  undo(@BranchContext() b: BranchInfo) {
    seen.push(`undo ${b.gid}`);
  }
}

@Controller('mix-hold')
class HoldController {
  @Post('try')
  @TccTry('mixHold')
  hold(@BranchContext() b: BranchInfo) {
    seen.push(`try ${b.gid}`);
  }

  @Post('confirm')
  @TccConfirm('mixHold')
  confirm(@BranchContext() b: BranchInfo) {
    seen.push(`confirm ${b.gid}`);
  }

  @Post('cancel')
  @TccCancel('mixHold')
  cancel(@BranchContext() b: BranchInfo) {
    seen.push(`cancel ${b.gid}`);
  }
}

type Adapter = 'express' | 'fastify';

/** Creates and starts an app of `root` on `adapter`, listening on 127.0.0.1. */
async function listen(root: object, adapter: Adapter): Promise<INestApplication> {
  const module = await Test.createTestingModule({ imports: [root as never] }).compile();
  const options = { logger: false as const, forceCloseConnections: true };
  const app = adapter === 'fastify' ? module.createNestApplication(new FastifyAdapter(), options) : module.createNestApplication(options);
  try {
    await app.listen(0, '127.0.0.1');
  } catch (err) {
    await app.close().catch(() => undefined);
    throw err;
  }
  return app;
}

beforeAll(async () => {
  const dbs = await fileDatabases();
  pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 6 });
  await ensureBarrierSchema(pgBarrierDatabase(pool), {});
  await pool.query('CREATE TABLE IF NOT EXISTS mix_moves (gid text NOT NULL, what text NOT NULL, tenant text)');
});
afterAll(async () => {
  await pool?.end();
});

describe.each(['express', 'fastify'] as const)('DtmModule set up by two modules of one app, on %s', (adapter) => {
  it.each([
    ['different options (a barrier connection in one only)', false],
    ['the same options', true],
  ])('%s: start-up fails with a DtmUsageError naming both modules and saying to set it up once, not a misleading "unknown barrier" or an uncaught Fastify error', async (_title, same) => {
    const config = { serverUrl: harness().dtm.serverUrl };
    @Module({ imports: [DtmModule.forRoot({ config, barrierConnections: { pg: pgBarrierDatabase(pool) } })], controllers: [PayController] })
    class PaymentsModule {}
    @Module({ imports: [same ? DtmModule.forRoot({ config, barrierConnections: { pg: pgBarrierDatabase(pool) } }) : DtmModule.forRoot({ config })], controllers: [HoldController] })
    class HoldsModule {}
    @Module({ imports: [PaymentsModule, HoldsModule] })
    class ShopModule {}
    const error = await listen(ShopModule, adapter).then(
      async (app) => {
        await app.close();
        return undefined;
      },
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(DtmUsageError);
    expect((error as Error).message).toMatch(/^DtmModule is set up 2 times in this app \(DtmModule\.forRoot \/ forRootAsync imported by PaymentsModule, HoldsModule\)/);
    expect((error as Error).message).toContain('isGlobal: true');
  });

  it.each([
    ['in a module that exports it', 'exported'],
    ['as one forRoot() result both feature modules import (Nest makes one module of it)', 'shared'],
  ])('set up once %s, used by two feature modules: a saga behind the barrier and a TCC both succeed', async (_title, how) => {
    const config = { serverUrl: harness().dtm.serverUrl };
    const dtmModule = DtmModule.forRoot({ config, barrierConnections: { pg: pgBarrierDatabase(pool) } });
    @Module({ imports: [dtmModule], exports: [DtmModule] })
    class DtmSetupModule {}
    @Module({ imports: [how === 'exported' ? DtmSetupModule : dtmModule], controllers: [PayController] })
    class PaymentsModule {}
    @Module({ imports: [how === 'exported' ? DtmSetupModule : dtmModule], controllers: [HoldController] })
    class HoldsModule {}
    @Module({ imports: [PaymentsModule, HoldsModule] })
    class ShopModule {}
    const app = await listen(ShopModule, adapter);
    try {
      const dtm = app.get(DtmClient);
      const saga = await dtm.generateGid();
      await dtm.newSaga(saga).add('mixDebit', { amount: 1 }).submitAndWait({ timeout: 10 });
      const tcc = await dtm.generateGid();
      await dtm.tccGlobalTransactionAndWait(tcc, async (t) => void (await t.callBranch({ amount: 1 }, 'mixHold')), {}, { timeout: 10 });
      expect((await queryTrans(saga)).transaction?.status).toBe('succeed');
      expect((await queryTrans(tcc)).transaction?.status).toBe('succeed');
      // each at least once (a cron pass another file's /resetCronTime starts may call a branch again), nothing else
      expect(new Set(seen.filter((s) => s.endsWith(saga) || s.endsWith(tcc)))).toEqual(new Set([`debit ${saga}`, `try ${tcc}`, `confirm ${tcc}`]));
      const rows = (await pool.query('SELECT branch_id, op FROM dtm_barrier.barrier WHERE gid = $1', [saga])).rows;
      expect(rows).toEqual([{ branch_id: '01', op: 'action' }]);
    } finally {
      await app.close();
    }
  });
});

/** A request-scoped provider reading the request, as apps have for a tenant. */
@Injectable({ scope: Scope.REQUEST })
class Tenant {
  constructor(@Inject(REQUEST) private readonly request: { headers?: Record<string, string | undefined> }) {}

  get id(): string | undefined {
    return this.request.headers?.['x-tenant'];
  }
}

/** Request-scoped (through Tenant), behind the barrier; its routes excluded from the global prefix. */
@Controller('mix-wallet')
@UseBarrier('pg')
class WalletController {
  constructor(private readonly tenant: Tenant) {}

  @Post('debit')
  @SagaAction('mixWallet')
  async debit(@Body() m: { amount: number }, @BranchContext() b: BranchInfo) {
    if (m.amount > 100) throw new DtmFailureError(`${m.amount} is too much`);
    await pool.query('INSERT INTO mix_moves (gid, what, tenant) VALUES ($1, $2, $3)', [b.gid, 'debit', this.tenant.id ?? null]);
    return { ok: true };
  }

  @Post('debit-compensate')
  @SagaCompensate('mixWallet')
  async undo(@BranchContext() b: BranchInfo) {
    await pool.query('INSERT INTO mix_moves (gid, what, tenant) VALUES ($1, $2, $3)', [b.gid, 'undo', this.tenant.id ?? null]);
  }
}

/** Request-scoped too, under the global prefix and the URI version. */
@Controller('mix-reserve')
class ReserveController {
  constructor(private readonly tenant: Tenant) {}

  @Post('try')
  @TccTry('mixReserve')
  async hold(@Body() m: { amount: number }, @BranchContext() b: BranchInfo) {
    if (m.amount > 100) throw new DtmFailureError(`cannot hold ${m.amount}`);
    await pool.query('INSERT INTO mix_moves (gid, what, tenant) VALUES ($1, $2, $3)', [b.gid, 'try', this.tenant.id ?? null]);
  }

  @Post('confirm')
  @TccConfirm('mixReserve')
  async confirm(@BranchContext() b: BranchInfo) {
    await pool.query('INSERT INTO mix_moves (gid, what, tenant) VALUES ($1, $2, $3)', [b.gid, 'confirm', this.tenant.id ?? null]);
  }

  @Post('cancel')
  @TccCancel('mixReserve')
  async cancel(@BranchContext() b: BranchInfo) {
    await pool.query('INSERT INTO mix_moves (gid, what, tenant) VALUES ($1, $2, $3)', [b.gid, 'cancel', this.tenant.id ?? null]);
  }
}

/** The app's own route starting a saga (a request carrying the tenant header, passed through). */
@Controller('mix-orders')
class OrdersController {
  constructor(private readonly dtm: DtmClient) {}

  @Post()
  async order(@Body() m: { gid: string; amount: number }) {
    await this.dtm.newSaga(m.gid).add('mixWallet', { amount: m.amount }).submitAndWait({ timeout: 10 });
    return { gid: m.gid };
  }
}

/** A catch-all filter answering every error 400 with a body of its own. */
@Catch()
class EverythingIs400 implements ExceptionFilter {
  catch(err: unknown, host: ArgumentsHost) {
    const res = host.switchToHttp().getResponse<{ code?: (s: number) => { send(b: unknown): void }; status?: (s: number) => { json(b: unknown): void } }>();
    const body = { error: String(err) };
    if (res.code) res.code(400).send(body);
    else res.status!(400).json(body);
  }
}

/** A response envelope with a timeout, as apps have. */
@Injectable()
class Envelope implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(
      timeout(8000),
      map((data: unknown) => ({ data })),
    );
  }
}

/** The app's auth guard, letting DTM's calls through as advised. */
@DtmAwareGuard()
@Injectable()
class SessionGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    if (isDtmBranchHandler(context.getHandler())) return true;
    return context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers.authorization === 'Bearer ok';
  }
}

@Module({ controllers: [WalletController, ReserveController, OrdersController], providers: [Tenant] })
class ShopFeatureModule {}

describe.each(['express', 'fastify'] as const)('a real app around the branches, on %s', (adapter) => {
  let app: INestApplication;
  let dtm: DtmClient;
  let base: string;

  beforeAll(async () => {
    @Module({
      imports: [
        ConfigModule.forRoot({ ignoreEnvFile: true, isGlobal: true, load: [() => ({ dtm: { serverUrl: harness().dtm.serverUrl, passThroughHeaders: ['x-tenant'] } })] }),
        DtmModule.forRootAsync({ isGlobal: true, inject: [ConfigService], useFactory: (c: ConfigService) => ({ config: c.get('dtm'), barrierConnections: { pg: pgBarrierDatabase(pool) } }) }),
        ShopFeatureModule,
      ],
      providers: [
        { provide: APP_FILTER, useClass: EverythingIs400 },
        { provide: APP_INTERCEPTOR, useClass: Envelope },
        { provide: APP_GUARD, useClass: SessionGuard },
      ],
    })
    class AppModule {}
    const module = await Test.createTestingModule({ imports: [AppModule] }).compile();
    const options = { logger: false as const, forceCloseConnections: true };
    app = adapter === 'fastify' ? module.createNestApplication(new FastifyAdapter(), options) : module.createNestApplication(options);
    app.setGlobalPrefix('api', { exclude: ['mix-wallet/{*rest}'] });
    app.enableVersioning({ type: VersioningType.URI, defaultVersion: '2' });
    app.useGlobalFilters(new EverythingIs400());
    app.enableShutdownHooks();
    await app.listen(0, '127.0.0.1');
    dtm = app.get(DtmClient);
    base = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await app?.close();
  });

  const moves = async (gid: string) => (await pool.query('SELECT what, tenant FROM mix_moves WHERE gid = $1 ORDER BY what', [gid])).rows as { what: string; tenant: string | null }[];

  it('a saga behind the barrier: success committed; a FAILURE reaches DTM through the catch-all filters (rolled back with its reason, nothing committed, the compensation a null one)', async () => {
    const ok = await dtm.generateGid();
    await dtm.newSaga(ok).add('mixWallet', { amount: 5 }).submitAndWait({ timeout: 10 });
    const okRecord = await queryTrans(ok);
    expect(okRecord.transaction?.status).toBe('succeed');
    expect(okRecord.branches.find((b) => b.op === 'action')?.url).toMatch(/\/v2\/mix-wallet\/debit$/);
    expect(await moves(ok)).toEqual([{ what: 'debit', tenant: null }]);
    const refused = await dtm.generateGid();
    await dtm.newSaga(refused).add('mixWallet', { amount: 500 }).submitAndWait({ timeout: 10 });
    const record = await queryTrans(refused);
    expect(record.transaction?.status).toBe('failed');
    expect(record.transaction?.rollback_reason).toContain('500 is too much');
    expect(await moves(refused)).toEqual([]);
  });

  it('a saga started by a request of the app: its pass-through header reaches the request-scoped provider of the branch', async () => {
    const gid = await dtm.generateGid();
    const res = await fetch(`${base}/api/v2/mix-orders`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-tenant': 'acme', authorization: 'Bearer ok' }, body: JSON.stringify({ gid, amount: 3 }) });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ data: { gid } });
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    expect(await moves(gid)).toEqual([{ what: 'debit', tenant: 'acme' }]);
  });

  it('a TCC: confirmed; a Try refused is DTM\'s FAILURE (the caller gets its reason, DTM cancels)', async () => {
    const ok = await dtm.generateGid();
    await dtm.tccGlobalTransactionAndWait(ok, async (tcc) => void (await tcc.callBranch({ amount: 1 }, 'mixReserve')), {}, { timeout: 10 });
    expect((await queryTrans(ok)).transaction?.status).toBe('succeed');
    expect((await moves(ok)).map((m) => m.what)).toEqual(['confirm', 'try']);
    const refused = await dtm.generateGid();
    const error = await dtm.tccGlobalTransaction(refused, async (tcc) => void (await tcc.callBranch({ amount: 1000 }, 'mixReserve'))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect((error as Error).message).toContain('cannot hold 1000');
    await waitForTransStatus(refused, 'failed');
    expect((await moves(refused)).map((m) => m.what)).toEqual(['cancel']);
  });
});

describe('a request-scoped controller serving a saga over gRPC and HTTP', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const instances: WeakRef<object>[] = [];
  const calls: string[] = [];

  @Injectable({ scope: Scope.REQUEST })
  class CallScope {
    constructor(@Inject(REQUEST) readonly request: unknown) {}
  }

  @Controller('mix-scoped')
  class ScopedShop {
    constructor(private readonly scope: CallScope) {
      instances.push(new WeakRef(this));
    }

    @GrpcMethod('Shop', 'Reserve')
    @Post('reserve')
    @SagaAction('mixScoped')
    reserve(@Payload() item: { sku?: string }, @BranchContext() b: BranchInfo) {
      calls.push(`reserve ${b.gid} ${typeof this.scope.request}`);
      if (item?.sku === 'none') throw new DtmFailureError('no such sku');
      return {};
    }

    @GrpcMethod('Shop', 'ReserveRevert')
    @Post('revert')
    @SagaCompensate('mixScoped')
    revert(@BranchContext() b: BranchInfo) {
      calls.push(`revert ${b.gid}`);
      return {};
    }
  }

  it('each call its own instance, DTM\'s outcomes as for a default-scope one, and no instance kept once the calls are over', async () => {
    const grpcAddress = `127.0.0.1:${await freePort()}`;
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, grpcAppAddress: grpcAddress } })],
      controllers: [ScopedShop],
      providers: [CallScope],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    app.connectMicroservice(testsGrpcOptions(grpcAddress), { inheritAppConfig: true });
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    try {
      const dtm = app.get(DtmClient);
      for (const protocol of ['grpc', 'http'] as const) {
        const ok = await dtm.generateGid();
        await dtm.newSaga(ok, { protocol }).add('mixScoped', { sku: 'w' }).submitAndWait({ timeout: 10 });
        expect((await queryTrans(ok)).transaction?.status).toBe('succeed');
        const refused = await dtm.generateGid();
        await dtm.newSaga(refused, { protocol }).add('mixScoped', { sku: 'none' }).submitAndWait({ timeout: 10 });
        expect((await queryTrans(refused)).transaction?.status).toBe('failed');
        expect((await queryTrans(refused)).transaction?.rollback_reason).toContain('no such sku');
        // each at least once (a cron pass another file's /resetCronTime starts may call a branch again), nothing else
        expect(new Set(calls.filter((c) => c.includes(ok) || c.includes(refused)))).toEqual(new Set([`reserve ${ok} object`, `reserve ${refused} object`, `revert ${refused}`]));
      }
      for (let i = 0; i < 30; i++) {
        const gid = await dtm.generateGid();
        await dtm.newSaga(gid, { protocol: i % 2 ? 'grpc' : 'http' }).add('mixScoped', { sku: 'w' }).submitAndWait({ timeout: 10 });
      }
      expect(instances.length).toBeGreaterThanOrEqual(36);
      await new Promise((resolve) => setTimeout(resolve, 300));
      gc();
      await new Promise((resolve) => setTimeout(resolve, 100));
      gc();
      expect(instances.filter((r) => r.deref() !== undefined).length).toBeLessThanOrEqual(2);
    } finally {
      await app.close();
    }
  });
});

describe('an interceptor of the app mapping errors to other errors (documented in docs/branches.md)', () => {
  @Injectable()
  class BadGatewayForAll implements NestInterceptor {
    intercept(_context: ExecutionContext, next: CallHandler) {
      return next.handle().pipe(catchError(() => throwError(() => new BadGatewayException())));
    }
  }

  @Controller('mix-mapped')
  class Mapped {
    @Post('take')
    @SagaAction('mixMapped', { compensate: false })
    take() {
      throw new DtmFailureError('out of stock');
    }
  }

  it('turns a saga action\'s FAILURE into a 502, which DTM retries: the saga stays submitted, its action prepared, the diagnosis naming the 502', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl } })],
      controllers: [Mapped],
      providers: [{ provide: APP_INTERCEPTOR, useClass: BadGatewayForAll }],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    await app.listen(0, '127.0.0.1');
    const dtm = app.get(DtmClient);
    const gid = await dtm.generateGid();
    try {
      const error = await dtm.newSaga(gid).add('mixMapped', {}).submitAndWait({ timeout: 3 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
      expect((error as Error).message).toContain('Mapped.take failed (HTTP 502)');
      const record = await queryTrans(gid);
      expect(record.transaction?.status).toBe('submitted');
      expect(record.branches.find((b) => b.op === 'action')?.status).toBe('prepared');
    } finally {
      await dtm.forceStop(gid).catch(() => undefined);
      await app.close();
    }
  });
});

describe('a filter of the app on a branch method itself, tried before the module\'s', () => {
  /** Answers every error 200 with a body of its own, as an API's "errors as results" filter does. */
  @Catch()
  class ErrorsAsResults implements ExceptionFilter {
    catch(err: unknown, host: ArgumentsHost) {
      host.switchToHttp().getResponse<{ status(s: number): { json(b: unknown): void } }>().status(200).json({ ok: false, error: String(err) });
    }
  }

  /** Only a database's errors: never one of the module's answers. */
  class QueryFailed extends Error {}
  @Catch(QueryFailed)
  class QueryFailedIs503 implements ExceptionFilter {
    catch(_err: unknown, host: ArgumentsHost) {
      host.switchToHttp().getResponse<{ status(s: number): { json(b: unknown): void } }>().status(503).json({ retry: true });
    }
  }

  const ran: string[] = [];

  @Controller('mix-filtered')
  class Filtered {
    @Post('take')
    @UseFilters(ErrorsAsResults) // above the branch decorator: Nest tries it before the module's filter
    @SagaAction('mixFiltered')
    take(@BranchContext() b: BranchInfo) {
      ran.push(`take ${b.gid}`);
      throw new DtmFailureError('out of stock');
    }

    @Post('take-compensate')
    @SagaCompensate('mixFiltered')
    giveBack(@BranchContext() b: BranchInfo) {
      ran.push(`giveBack ${b.gid}`);
    }
  }

  @Controller('mix-filtered-ok')
  class FilteredFine {
    @Post('below')
    @SagaAction('mixFilteredBelow', { compensate: false })
    @UseFilters(ErrorsAsResults) // below: the module's filter is tried first, as for a controller's or a global one
    below() {
      throw new DtmFailureError('refused below');
    }

    @Post('specific')
    @UseFilters(QueryFailedIs503) // above, but catching a database's errors only
    @SagaAction('mixFilteredSpecific', { compensate: false })
    specific() {
      throw new DtmFailureError('refused specific');
    }
  }

  const start = async (controller: object) => {
    const moduleRef = await Test.createTestingModule({ imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl } })], controllers: [controller as never] }).compile();
    const app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    return app.listen(0, '127.0.0.1').then(
      () => ({ app, error: undefined }),
      async (error: unknown) => {
        await app.close().catch(() => undefined);
        return { app: undefined, error };
      },
    );
  };

  it('one catching everything, written above the branch decorator (before: it answered the action\'s FAILURE 200, DTM recorded the saga succeed and never compensated): start-up fails naming the handler and the filter', async () => {
    const { app, error } = await start(Filtered);
    if (app) {
      // what happens when it starts: DTM's outcome, for the record
      const dtm = app.get(DtmClient);
      const gid = await dtm.generateGid();
      await dtm.newSaga(gid).add('mixFiltered', {}).submitAndWait({ timeout: 5 }).catch(() => undefined);
      const record = await queryTrans(gid);
      await app.close();
      throw new Error(`started; DTM recorded ${record.transaction?.status}, branches ${record.branches.map((b) => `${b.op} ${b.status}`).join(', ')}; ran ${ran.join(', ')}`);
    }
    expect(error).toBeInstanceOf(DtmBranchRegistryError);
    expect((error as Error).message).toContain('Filtered.take has @UseFilters(ErrorsAsResults) above its branch decorator');
  });

  it('one written below the branch decorator, or one catching other errors only, is left alone: the FAILUREs reach DTM', async () => {
    const { app, error } = await start(FilteredFine);
    expect(error).toBeUndefined();
    try {
      const dtm = app!.get(DtmClient);
      for (const [name, reason] of [['mixFilteredBelow', 'refused below'], ['mixFilteredSpecific', 'refused specific']]) {
        const gid = await dtm.generateGid();
        await dtm.newSaga(gid).add(name, {}).submitAndWait({ timeout: 10 });
        expect((await queryTrans(gid)).transaction?.status).toBe('failed');
        expect((await queryTrans(gid)).transaction?.rollback_reason).toContain(reason);
      }
    } finally {
      await app!.close();
    }
  });
});

describe('a middleware of the app refusing requests without its credentials (CSRF, auth) in front of a branch route', () => {
  /** A CSRF check, as apps apply to every route: a POST without its token is refused 403. */
  function csrf(req: { method: string; headers: Record<string, string | undefined> }, res: { statusCode: number; setHeader(k: string, v: string): void; end(b: string): void }, next: () => void) {
    if (req.method !== 'POST' || req.headers['x-csrf-token']) return next();
    res.statusCode = 403;
    res.setHeader('content-type', 'application/json');
    res.end('{"message":"invalid csrf token"}');
  }

  @Controller('mix-mw')
  class Guarded {
    @Post('take')
    @SagaAction('mixMiddleware', { compensate: false })
    take() {}
  }

  const start = async (excludeBranches: boolean) => {
    @Module({ imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl } })], controllers: [Guarded] })
    class MiddlewareApp implements NestModule {
      configure(consumer: MiddlewareConsumer) {
        const applied = consumer.apply(csrf);
        (excludeBranches ? applied.exclude({ path: 'mix-mw/{*rest}', method: RequestMethod.ALL }) : applied).forRoutes('*');
      }
    }
    const moduleRef = await Test.createTestingModule({ imports: [MiddlewareApp] }).compile();
    const app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    await app.listen(0, '127.0.0.1');
    return app;
  };

  it('DTM retries its 403 and the diagnosis names a middleware as a possible cause, not only guards (before: "a global guard (APP_GUARD) or a guard of the controller refuses DTM\'s calls")', async () => {
    const app = await start(false);
    const dtm = app.get(DtmClient);
    const gid = await dtm.generateGid();
    try {
      const error = await dtm.newSaga(gid).add('mixMiddleware', {}).submitAndWait({ timeout: 3 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
      expect((error as DtmOutcomeUnknownError).unfinished[0]?.cause).toMatch(/^POST is refused with 403 before Guarded\.take \(invalid csrf token\): .*a middleware of the app \(app\.use, MiddlewareConsumer/);
      expect((await queryTrans(gid)).transaction?.status).toBe('submitted');
    } finally {
      await dtm.forceStop(gid).catch(() => undefined);
      await app.close();
    }
  });

  it('with the branch routes left out of it (exclude), as docs/branches.md advises, the saga succeeds', async () => {
    const app = await start(true);
    try {
      const dtm = app.get(DtmClient);
      const gid = await dtm.generateGid();
      await dtm.newSaga(gid).add('mixMiddleware', {}).submitAndWait({ timeout: 10 });
      expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    } finally {
      await app.close();
    }
  });
});
