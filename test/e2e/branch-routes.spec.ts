// Decorated HTTP branches in apps that use ordinary Nest routing features (@HttpCode, versioning,
// controller hosts, @Res(), a route's method, a schema that throws), on Express and on Fastify: the
// module computes the URL DTM calls and answers DTM's protocol, or refuses at start-up what DTM
// could never call right.
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { Controller, Get, HttpCode, Post, Put, Res, Version, VERSION_NEUTRAL, VersioningType, type INestApplication, type Type } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import { DtmBranchRegistryError, DtmClient, DtmFailureError, DtmModule, MsgBranch, MsgQueryPrepared, SagaAction, SagaCompensate, ensureBarrierSchema, pgBarrierDatabase, type DtmConfigInput } from 'nestjs-dtm';
import { fileDatabases } from '../support/databases.js';
import { dtmPost, harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { freePort } from '../support/services/process.js';
import { firstCalls } from '../support/fixtures.js';
import { ADAPTERS, CapturingLogger, type AdapterName } from './branch-app.js';

/** The handlers that ran, in order. */
const ran: string[] = [];

@Controller('coded')
class CodedAbove {
  @Post('a')
  @HttpCode(204)
  @SagaAction('codedAbove', { compensate: false })
  a() {
    ran.push('codedAbove');
  }
}

@Controller('coded-below')
class CodedBelow {
  @Post('a')
  @SagaAction('codedBelow', { compensate: false })
  @HttpCode(204)
  a() {
    ran.push('codedBelow');
  }
}

@Controller('versioned')
class VersionedByDefault {
  @Post('a')
  @SagaAction('byDefault', { compensate: false })
  a() {
    ran.push('byDefault');
  }
}

@Controller({ path: 'neutral', version: VERSION_NEUTRAL })
class NeutralController {
  @Post('a')
  @SagaAction('neutral', { compensate: false })
  a() {
    ran.push('neutral');
  }
}

@Controller('neutral-too')
class NeutralMethod {
  @Post('a')
  @Version([VERSION_NEUTRAL, '2'])
  @SagaAction('neutralToo', { compensate: false })
  a() {
    ran.push('neutralToo');
  }
}

/** A response as both adapters give it to `@Res()`. */
interface AnyResponse {
  status(code: number): { send(body: string): unknown };
}

/** Routes DTM never calls: it calls a saga action (and a message branch) with POST, a back-check with GET. */
@Controller('wrong-method')
class WrongMethod {
  @Get('a')
  @SagaAction('byGet', { compensate: false })
  a() {
    ran.push('byGet');
    return {};
  }

  @Put('m')
  @MsgBranch('byPut')
  m() {
    ran.push('byPut');
    return {};
  }

  @Post('q')
  @MsgQueryPrepared('byPut')
  q() {
    ran.push('byPut back-check');
    return {};
  }
}

/** A Standard Schema whose validate throws (a bug of the schema) instead of returning issues. */
const throwingSchema = {
  '~standard': {
    version: 1 as const,
    vendor: 'test',
    validate: (): never => {
      throw new TypeError("Cannot read properties of undefined (reading 'currency')");
    },
  },
};

@Controller('throwing-schema')
class ThrowingSchema {
  @Post('a')
  @SagaAction('throwingSchema', { schema: throwingSchema })
  a() {
    ran.push('throwingSchema action');
    return {};
  }

  @Post('c')
  @SagaCompensate('throwingSchema')
  c() {
    ran.push('throwingSchema compensate');
    return {};
  }
}

/** Behind the barrier, answering its calls itself: its action refuses, so DTM's compensation finds no action to undo. */
@Controller('own-answer')
class OwnAnswer {
  @Post('a')
  @SagaAction('ownAnswer', { barrier: 'pg' })
  a(@Res() _res: AnyResponse) {
    ran.push('ownAnswer action');
    throw new DtmFailureError('refused');
  }

  @Post('c')
  @SagaCompensate('ownAnswer', { barrier: 'pg' })
  c(@Res() res: AnyResponse) {
    ran.push('ownAnswer compensate');
    res.status(200).send('');
  }
}

/** Without a barrier, its compensation answering itself: DTM's compensation of a refused action (a gid that breaks the key rule) is answered by the module without running it. */
@Controller('own-answer-plain')
class OwnAnswerPlain {
  @Post('a')
  @SagaAction('ownAnswerPlain')
  a() {
    ran.push('ownAnswerPlain action');
    return {};
  }

  @Post('c')
  @SagaCompensate('ownAnswerPlain')
  c(@Res() res: AnyResponse) {
    ran.push('ownAnswerPlain compensate');
    res.status(200).send('');
  }
}

/** The same with @Res({ passthrough: true }). */
@Controller('passthrough-plain')
class PassthroughPlain {
  @Post('a')
  @SagaAction('passthroughPlain')
  a() {
    ran.push('passthroughPlain action');
    return {};
  }

  @Post('c')
  @SagaCompensate('passthroughPlain')
  c(@Res({ passthrough: true }) _res: AnyResponse) {
    ran.push('passthroughPlain compensate');
    return {};
  }
}

/** The same with @Res({ passthrough: true }). */
@Controller('passthrough')
class Passthrough {
  @Post('a')
  @SagaAction('passthrough', { barrier: 'pg' })
  a(@Res({ passthrough: true }) _res: AnyResponse) {
    ran.push('passthrough action');
    throw new DtmFailureError('refused');
  }

  @Post('c')
  @SagaCompensate('passthrough', { barrier: 'pg' })
  c(@Res({ passthrough: true }) _res: AnyResponse) {
    ran.push('passthrough compensate');
  }
}

@Controller({ path: 'hosted', host: 'admin.example.com' })
class AdminHosted {
  @Post('a')
  @SagaAction('adminHosted', { compensate: false })
  a() {
    ran.push('adminHosted');
  }
}

@Controller({ path: 'local', host: ['127.0.0.1', /^localhost$/] })
class LocalHosted {
  @Post('a')
  @SagaAction('localHosted', { compensate: false })
  a() {
    ran.push('localHosted');
  }
}

@Controller('same')
class SameRouteA {
  @Post('x')
  @SagaAction('sameA', { compensate: false })
  a() {
    ran.push('sameA');
  }
}

@Controller('same')
class SameRouteB {
  @Post('x')
  @SagaAction('sameB', { compensate: false })
  b() {
    ran.push('sameB');
  }
}

/** A route whose path is not ASCII: DTM (Go) sends it percent-encoded. */
@Controller('café')
class NonAscii {
  @Post('a')
  @SagaAction('nonAscii', { compensate: false })
  a() {
    ran.push('nonAscii');
  }
}

let pool: pg.Pool | undefined;
/** This file's PostgreSQL database, with the barrier table. */
async function barrierPool(): Promise<pg.Pool> {
  if (!pool) {
    pool = new pg.Pool({ connectionString: (await fileDatabases()).postgres.url, max: 4 });
    await ensureBarrierSchema(pgBarrierDatabase(pool));
  }
  return pool;
}

const apps: INestApplication[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  ran.length = 0;
});
afterAll(async () => {
  await pool?.end();
});

/** Starts an app with `controllers` on `adapter` (after `setup`, listening on 127.0.0.1), or the error its start-up threw. */
/** The logger of the app start() made last. */
let lastLogger: CapturingLogger;

async function start(adapter: AdapterName, controllers: Type[], setup: (app: INestApplication) => void = () => undefined, config: DtmConfigInput = {}, port = 0): Promise<INestApplication | Error> {
  const moduleRef = await Test.createTestingModule({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, ...config }, barrierConnections: { pg: pgBarrierDatabase(await barrierPool()) } })],
    controllers,
  }).compile();
  const app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter(), { forceCloseConnections: true }) : moduleRef.createNestApplication({ forceCloseConnections: true });
  lastLogger = new CapturingLogger();
  app.useLogger(lastLogger);
  setup(app);
  apps.push(app);
  return app.listen(port, '127.0.0.1').then(
    () => app,
    (err: unknown) => err as Error,
  );
}

/** Runs a one-step saga on branch `name` and waits for its outcome: DTM's final status. */
async function sagaOutcome(app: INestApplication, name: string): Promise<string> {
  const client = app.get(DtmClient);
  const final = await client.newSaga(await client.generateGid()).add(name, { amount: 1 }).submitAndWait({ timeout: 8 });
  return (await queryTrans(final.gid)).transaction?.status ?? 'none';
}

describe.each(ADAPTERS)('decorated branches and Nest routing on %s', (adapter) => {
  it('an @HttpCode(204) written above the branch decorator fails start-up naming the handler (DTM reads every status but 200 as an error and would call it forever)', async () => {
    const started = await start(adapter, [CodedAbove]);
    expect(started).toBeInstanceOf(DtmBranchRegistryError);
    expect((started as Error).message).toContain('CodedAbove.a answers its success with 204 (@HttpCode(204)), but DTM reads every status but 200 as an error');
    expect(ran).toEqual([]);
  });

  it('an @HttpCode(204) written below the branch decorator is overridden: the branch answers 200 and DTM records the saga succeeded', async () => {
    const app = await start(adapter, [CodedBelow]);
    expect(app).not.toBeInstanceOf(Error);
    expect(await sagaOutcome(app as INestApplication, 'codedBelow')).toBe('succeed');
    expect(firstCalls(ran)).toEqual(['codedBelow']);
  });

  it("header versioning with a defaultVersion fails start-up for a branch route without a version of its own (Nest would answer DTM's calls, which name no version, 404)", async () => {
    const started = await start(adapter, [VersionedByDefault], (app) => app.enableVersioning({ type: VersioningType.HEADER, header: 'X-API-Version', defaultVersion: '1' }));
    expect(started).toBeInstanceOf(DtmBranchRegistryError);
    expect((started as Error).message).toContain('VersionedByDefault.a is versioned by HEADER (the defaultVersion of enableVersioning), which DTM cannot send per branch');
  });

  it('a version-neutral branch route under header or media-type versioning starts, and DTM records its saga succeeded', async () => {
    const byHeader = await start(adapter, [NeutralController], (app) => app.enableVersioning({ type: VersioningType.HEADER, header: 'X-API-Version', defaultVersion: '1' }));
    expect(byHeader).not.toBeInstanceOf(Error);
    expect(await sagaOutcome(byHeader as INestApplication, 'neutral')).toBe('succeed');
    const byMediaType = await start(adapter, [NeutralMethod], (app) => app.enableVersioning({ type: VersioningType.MEDIA_TYPE, key: 'v=' }));
    expect(byMediaType).not.toBeInstanceOf(Error);
    expect(await sagaOutcome(byMediaType as INestApplication, 'neutralToo')).toBe('succeed');
    expect(firstCalls(ran)).toEqual(['neutral', 'neutralToo']);
  });

  it('a branch route with a method DTM never calls (@Get saga action, @Put message branch, @Post back-check) fails start-up naming each (DTM would be answered 404 forever)', async () => {
    const started = await start(adapter, [WrongMethod]);
    expect(started).toBeInstanceOf(DtmBranchRegistryError);
    expect((started as Error).message).toContain("WrongMethod.a (saga-action 'byGet') is a @Get() route, but DTM calls it with POST");
    expect((started as Error).message).toContain("WrongMethod.m (msg 'byPut') is a @Put() route, but DTM calls it with POST");
    expect((started as Error).message).toContain("WrongMethod.q (msg-query-prepared 'byPut') is a @Post() route, but DTM calls it with GET");
    expect(ran).toEqual([]);
  });

  it('a schema whose validate throws: the action answers FAILURE naming the branch, the handler and the error, logged as an error; DTM rolls the saga back instead of retrying it forever', async () => {
    const app = await start(adapter, [ThrowingSchema]);
    expect(app).not.toBeInstanceOf(Error);
    const client = (app as INestApplication).get(DtmClient);
    const gid = await client.generateGid();
    const final = await client.newSaga(gid).add('throwingSchema', { amount: 1 }).submitAndWait({ timeout: 8 }).catch((e: unknown) => e);
    expect(final).toMatchObject({ status: 'failed' });
    const record = await queryTrans(gid);
    expect(record.transaction?.status).toBe('failed');
    expect(record.transaction?.rollback_reason).toContain("the schema of @SagaAction('throwingSchema') threw on the payload of ThrowingSchema.a (TypeError: Cannot read properties of undefined (reading 'currency'))");
    expect(firstCalls(ran)).toEqual(['throwingSchema compensate']); // the action never ran; DTM's rule runs the compensation
    expect(lastLogger.errors).toContainEqual(expect.stringContaining("the schema of @SagaAction('throwingSchema') threw on the payload of ThrowingSchema.a (TypeError: Cannot read properties of undefined (reading 'currency'))"));
  });

  it('a compensation without a barrier answering its calls itself (@Res() without passthrough) fails start-up naming it: its call for an action refused for its gid would get no answer at all', async () => {
    const started = await start(adapter, [OwnAnswerPlain]);
    expect(started).toBeInstanceOf(DtmBranchRegistryError);
    expect((started as Error).message).toContain('OwnAnswerPlain.c undoes an action (op compensate) and answers its calls itself (@Res() or @Next() without passthrough)');
    expect((started as Error).message).not.toContain('OwnAnswerPlain.a');
  });

  it('with @Res({ passthrough: true }) on a compensation without a barrier, a saga whose gid breaks the key rule (sent by another SDK) ends failed, the compensation answered without running', async () => {
    const app = (await start(adapter, [PassthroughPlain])) as INestApplication;
    expect(app).not.toBeInstanceOf(Error);
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    const gid = `x-${Date.now()}${Math.random().toString(36).slice(2)} `; // a trailing space: the action is refused FAILURE
    const submitted = await dtmPost('/submit', { gid, trans_type: 'saga', request_timeout: 2, steps: [{ action: `${url}/passthrough-plain/a`, compensate: `${url}/passthrough-plain/c` }], payloads: ['{}'] });
    expect(submitted.status).toBe(200);
    const final = await waitForTransStatus(gid, 'failed');
    expect(final.branches.map((b) => `${b.op} ${b.status}`)).toEqual(['compensate succeed', 'action failed']);
    expect(ran).toEqual([]);
  });

  it('a barrier branch answering its calls itself (@Res() without passthrough) fails start-up naming it: its compensation of an action that never ran would get no answer at all', async () => {
    const started = await start(adapter, [OwnAnswer]);
    expect(started).toBeInstanceOf(DtmBranchRegistryError);
    expect((started as Error).message).toContain('OwnAnswer.a runs in a local transaction (a barrier, or an XA branch\'s db) and answers its calls itself (@Res() or @Next() without passthrough)');
    expect((started as Error).message).toContain('OwnAnswer.c runs in a local transaction');
  });

  it('with @Res({ passthrough: true }) a barrier saga whose action refuses is rolled back: DTM records it failed, the compensation of the action that never ran answered without running', async () => {
    const app = await start(adapter, [Passthrough]);
    expect(app).not.toBeInstanceOf(Error);
    expect(await sagaOutcome(app as INestApplication, 'passthrough')).toBe('failed');
    expect(firstCalls(ran)).toEqual(['passthrough action']);
  });

  it("a branch in a controller bound to a host fails start-up naming it when DTM would call another host (app_url's, or the listening address without app_url): Nest answers such calls 404", async () => {
    const withoutAppUrl = await start(adapter, [AdminHosted]);
    expect(withoutAppUrl).toBeInstanceOf(DtmBranchRegistryError);
    expect((withoutAppUrl as Error).message).toContain('AdminHosted.a is in a controller bound to the host admin.example.com (@Controller({ host })), but DTM calls it at the address the app listens on');
    const elsewhere = await start(adapter, [AdminHosted], undefined, { appUrl: 'http://127.0.0.1:9' });
    expect(elsewhere).toBeInstanceOf(DtmBranchRegistryError);
    expect((elsewhere as Error).message).toContain("but DTM calls it at app_url's host 127.0.0.1");
  });

  it("a branch in a controller bound to app_url's host starts, and DTM records its saga succeeded", async () => {
    const port = await freePort();
    const app = await start(adapter, [LocalHosted], undefined, { appUrl: `http://127.0.0.1:${port}` }, port);
    expect(app).not.toBeInstanceOf(Error);
    expect(await sagaOutcome(app as INestApplication, 'localHosted')).toBe('succeed');
    expect(firstCalls(ran)).toEqual(['localHosted']);
  });

  it("two branch handlers on one route (same path and method) fail start-up naming both: Nest would run the first for the other's calls (Fastify refuses the second route itself)", async () => {
    const started = await start(adapter, [SameRouteA, SameRouteB]);
    if (adapter === 'fastify') {
      expect((started as Error).message).toContain("already declared for route '/same/x'");
      return;
    }
    expect(started).toBeInstanceOf(DtmBranchRegistryError);
    expect((started as Error).message).toContain('SameRouteA.a and SameRouteB.b serve the same route POST /same/x');
  });

  if (adapter === 'fastify') {
    it("Fastify: a branch route with a non-ASCII path gets its URL percent-encoded, as DTM sends it: with branch_auth_keys DTM's signed calls are accepted and DTM records the saga succeeded", async () => {
      const app = await start(adapter, [NonAscii], undefined, { branchAuthKeys: ['routes-spec-key-0123456789abcdefghijkl'] });
      expect(app).not.toBeInstanceOf(Error);
      expect(await sagaOutcome(app as INestApplication, 'nonAscii')).toBe('succeed');
      expect(firstCalls(ran)).toEqual(['nonAscii']);
    });
  }
});
