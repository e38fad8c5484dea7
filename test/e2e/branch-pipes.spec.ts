// The app's pipes on branches whose request DTM sends empty (a message's back-check, an XA phase 2),
// against the real DTM server, over HTTP and gRPC: a global pipe that refuses an empty Move as
// class-validator's ValidationPipe does (400) must not make DTM fail a message whose local
// transaction committed, nor leave an XA branch prepared. With a barrier / an XA `db` the module
// answers those calls before the pipes run; without, the pipe's 400 is answered as an error DTM
// retries (not FAILURE) and logged.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { BadRequestException, Body, Controller, Get, Injectable, Post, type ArgumentMetadata, type INestApplication, type PipeTransform } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import {
  BarrierTx,
  BranchBarrier,
  BranchContext,
  DtmClient,
  DtmModule,
  DtmOutcomeUnknownError,
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
  type BranchInfo,
} from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { callGrpc, TESTS_GRPC_PROTOS, testsGrpcOptions } from '../support/grpc.js';
import { harness, queryTrans, triggerCron } from '../support/harness.js';
import { RecordingLogger } from '../support/recording-logger.js';
import { freePort, waitUntil } from '../support/services/process.js';
import { pgXaAt } from '../support/pg-xa.js';
import { firstCalls } from '../support/fixtures.js';

/** The DTO of every handler below (what a ValidationPipe would validate). */
class Move {
  account!: number;
  amount!: number;
}

/** What class-validator's ValidationPipe does for Move with @IsPositive() account (and `forbidNonWhitelisted`, naming a property the payload should not have; here only names no DTO could declare, as the gRPC messages decode with fields Move lacks): a 400 listing the problems. */
class ValidateMove implements PipeTransform {
  /** The `fail` field (a test's marker) of each payload refused. */
  static readonly refused: unknown[] = [];

  transform(value: unknown, { metatype }: ArgumentMetadata): unknown {
    if (metatype !== Move) return value;
    const account = (value as Partial<Move> | undefined)?.account;
    if (typeof account !== 'number' || account <= 0) {
      ValidateMove.refused.push((value as { fail?: unknown } | undefined)?.fail);
      throw new BadRequestException(['account must be a positive number']);
    }
    const extra = Object.keys(value as object).filter((key) => !/^\w+$/.test(key));
    if (extra.length > 0) throw new BadRequestException(extra.map((key) => `property ${key} should not exist`));
    return value;
  }
}

/** The gids the message branch delivered. */
@Injectable()
class Delivered {
  gids: string[] = [];
}

@Controller('pipes')
class PipedBank {
  constructor(private readonly delivered: Delivered) {}

  @Post('deliver')
  @GrpcMethod('PgBank', 'Deliver')
  @MsgBranch('pipes.deliver')
  deliver(@Body() _m: Move, @BranchContext() branch: BranchInfo) {
    this.delivered.gids.push(branch.gid);
  }

  @Get('query-prepared')
  @GrpcMethod('PgBank', 'QueryPrepared')
  @MsgQueryPrepared('pipes.outbox', { barrier: 'pg' })
  queryPrepared(@Body() _m: Move) {
    throw new Error('not called: the barrier answers');
  }

  /** A back-check without a barrier: its body answers (committed), but only once the pipe let the call through. */
  @Get('query-prepared-plain')
  @GrpcMethod('PgBank', 'Relay')
  @MsgQueryPrepared('pipes.plain-outbox')
  queryPreparedPlain(@Body() _m: Move) {
    return undefined;
  }

  @Post('xa')
  @GrpcMethod('XaBank', 'Pg')
  @XaBranch('pipes.xa', { db: 'pg' })
  async xa(@Body() m: Move, @BarrierTx() client: pg.Client) {
    await client.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
  }
}

/** A saga step without a barrier, its action and compensation validated alike (the guard answers an undo call whose gid breaks the key rule without its handler, but the app's pipes run first). */
@Controller('pipes-undo')
class PipedUndo {
  @Post('pay')
  @GrpcMethod('PgBank', 'TransIn')
  @SagaAction('pipes.refund')
  pay(@Body() _m: Move) {
    return undefined;
  }

  @Post('refund')
  @GrpcMethod('PgBank', 'TransInCompensate')
  @SagaCompensate('pipes.refund')
  refund(@Body() _m: Move) {
    return undefined;
  }
}

/** A TCC branch whose Try and Cancel are validated alike, HTTP only. */
@Controller('pipes-hold')
class PipedHold {
  @Post('try')
  @TccTry('pipes.hold')
  hold(@Body() _m: Move) {
    return undefined;
  }

  @Post('confirm')
  @TccConfirm('pipes.hold')
  confirm(@Body() _m: Move) {
    return undefined;
  }

  @Post('cancel')
  @TccCancel('pipes.hold')
  cancel(@Body() _m: Move) {
    return undefined;
  }
}

/** A saga's first step, its payloads valid: records the calls its handlers ran (the payload's `fail` marker). */
@Controller('pipes-reserve')
class PipedReserve {
  static readonly calls: string[] = [];

  @Post('reserve')
  @GrpcMethod('PgBank', 'TransOut')
  @SagaAction('pipes.reserve')
  reserve(@Body() m: Move) {
    PipedReserve.calls.push(`reserve ${(m as { fail?: string }).fail}`);
  }

  @Post('release')
  @GrpcMethod('PgBank', 'TransOutCompensate')
  @SagaCompensate('pipes.reserve')
  release(@Body() m: Move) {
    PipedReserve.calls.push(`release ${(m as { fail?: string }).fail}`);
  }
}

/** The compensation of a refused payload (docs/branches.md): the action validated by the pipe, the compensation typed so the pipe leaves it alone, behind the barrier; HTTP only. */
@UseBarrier('pg')
@Controller('pipes-undo-barrier')
class PipedUndoBehindBarrier {
  /** The payloads each op's handler received. */
  static readonly calls: string[] = [];

  @Post('pay')
  @SagaAction('pipes.refund-barrier')
  pay(@Body() m: Move) {
    PipedUndoBehindBarrier.calls.push(`pay ${JSON.stringify(m)}`);
  }

  @Post('refund')
  @SagaCompensate('pipes.refund-barrier')
  refund(@Body() m: Pick<Move, 'account' | 'amount'>) {
    PipedUndoBehindBarrier.calls.push(`refund ${JSON.stringify(m)}`);
  }
}

/** A back-check whose barrier is the controller's default (`@UseBarrier()`), HTTP only. */
@UseBarrier('pg')
@Controller('pipes-default')
class PipedOutbox {
  @Get('query-prepared')
  @MsgQueryPrepared('pipes.default-outbox')
  queryPrepared(@Body() _m: Move) {
    throw new Error('not called: the barrier answers');
  }
}

/** What the app logs. */
const logger = new RecordingLogger();

let dbs: FileDatabases;
let pgPool: pg.Pool;
let grpcAddress: string;

/** One app under test: HTTP on Express with the gRPC microservice, or HTTP on Fastify. */
interface PipedApp {
  app: INestApplication;
  client: DtmClient;
  url: string;
}
const apps: Partial<Record<'express' | 'fastify', PipedApp>> = {};

/** The gRPC method of each route. */
const GRPC_METHOD: Record<string, string> = { deliver: 'PgBank/Deliver', 'query-prepared': 'PgBank/QueryPrepared', 'query-prepared-plain': 'PgBank/Relay', xa: 'XaBank/Pg' };

/** Starts the app on `adapter` (Express: with the gRPC microservice too), with the global pipe. */
async function startApp(adapter: 'express' | 'fastify'): Promise<PipedApp> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({
        config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, ...(adapter === 'express' ? { grpcAppAddress: grpcAddress } : {}), barrierTable: 'dtm_barrier' },
        barrierConnections: { pg: pgBarrierDatabase(pgPool) },
        xaConnections: {
          pg: pgXaAt(dbs.postgres.url),
        },
        grpcProtos: TESTS_GRPC_PROTOS,
      }),
    ],
    controllers: [PipedBank, PipedOutbox, PipedUndo, PipedUndoBehindBarrier, PipedReserve, PipedHold],
    providers: [Delivered],
  }).compile();
  const options = { logger, forceCloseConnections: true };
  const app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter(), options) : moduleRef.createNestApplication(options);
  app.useGlobalPipes(new ValidateMove());
  if (adapter === 'express') {
    app.connectMicroservice(testsGrpcOptions(grpcAddress), { inheritAppConfig: true });
    await app.startAllMicroservices();
  }
  await app.listen(0, '127.0.0.1');
  return { app, client: app.get(DtmClient), url: `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}` };
}

beforeAll(async () => {
  dbs = await fileDatabases();
  pgPool = new pg.Pool({ connectionString: dbs.postgres.url });
  await pgPool.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
  await pgPool.query('INSERT INTO account VALUES (1, 100)');
  await ensureBarrierSchema(pgBarrierDatabase(pgPool), { table: 'dtm_barrier' });
  grpcAddress = `127.0.0.1:${await freePort()}`;
  apps.express = await startApp('express');
  apps.fastify = await startApp('fastify');
});
afterAll(async () => {
  await apps.express?.app.close();
  await apps.fastify?.app.close();
  await pgPool?.end();
});

async function balance(): Promise<number> {
  return Number((await pgPool.query('SELECT balance FROM account WHERE id = 1')).rows[0].balance);
}

const VARIANTS = [
  { name: 'HTTP on Express', adapter: 'express', protocol: 'http' },
  { name: 'HTTP on Fastify', adapter: 'fastify', protocol: 'http' },
  { name: 'gRPC', adapter: 'express', protocol: 'grpc' },
] as const;

describe.each(VARIANTS)('a validating pipe on a branch whose request DTM sends empty, $name', ({ adapter, protocol }) => {
  const ap = () => apps[adapter]!;
  /** The target of route `path`: its URL, or its gRPC method. */
  const target = (path: string) => (protocol === 'http' ? `${ap().url}/pipes/${path}` : `${grpcAddress}/tests.${GRPC_METHOD[path]}`);
  /** A back-check as DTM sends it (HTTP: GET without a body; gRPC: an empty message): the HTTP status, or the gRPC code. */
  const backCheck = async (path: string, gid: string): Promise<number> => {
    const query = { gid, trans_type: 'msg', branch_id: '00', op: 'msg' };
    if (protocol === 'grpc') return (await callGrpc(target(path), undefined, query)).code;
    return (await fetch(`${target(path)}?${new URLSearchParams(query)}`)).status;
  };
  let client: DtmClient;
  beforeAll(() => {
    client = ap().client;
  });

  it('back-check with a barrier: answered before the pipe; DTM delivers a message whose local transaction committed (its submit never sent)', async () => {
    const gid = await client.generateGid();
    await client.newMsg(gid, { protocol, timeoutToFail: 1, retryInterval: 1 }).add(target('deliver'), { account: 1, amount: 5 }).prepare(target('query-prepared'));
    await new BranchBarrier('msg', gid, '00', 'msg', { table: 'dtm_barrier' }).callWithDb(pgBarrierDatabase(pgPool), async () => undefined); // ...and the process dies before submit
    const final = await client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(ap().app.get(Delivered).gids).toContain(gid);
    expect(logger.errors.filter((l) => l.includes(gid))).toEqual([]);
  }, 30_000);

  it('back-check with a barrier before the local commit: still FAILURE (HTTP 409, gRPC ABORTED), the pipe decides nothing', async () => {
    const gid = await client.generateGid();
    expect(await backCheck('query-prepared', gid)).toBe(protocol === 'http' ? 409 : 10);
  });

  it('XA branch with { db }: phase 2 (commit) is answered before the pipe; the branch commits, nothing stays prepared', async () => {
    const before = await balance();
    const gid = await client.generateGid();
    await client.xaGlobalTransaction(gid, async (xa) => void (await xa.callBranch({ account: 1, amount: 7 }, target('xa'))), { protocol });
    const final = await client.waitForFinal(gid, { timeout: 20 });
    expect(final.status).toBe('succeed');
    expect(final.branches?.map((b) => `${b.branchId} ${b.op} ${b.status}`)).toEqual(['01 rollback prepared', '01 commit succeed']);
    expect(await balance()).toBe(before + 7);
    expect((await pgPool.query('SELECT gid FROM pg_prepared_xacts WHERE gid LIKE $1', [`${gid}%`])).rows).toEqual([]);
  }, 30_000);

  it('a message branch whose payload the pipe refuses: DTM retries it (a message cannot roll back), and the warning names the pipe\'s refusal and its message, not a DtmFailureError the handler never threw', async () => {
    const gid = await client.generateGid();
    await client.newMsg(gid, { protocol, retryInterval: 60 }).add(target('deliver'), { account: 0, amount: 5 }).submit();
    await waitUntil('DTM called the message branch', async () => logger.lines.some((l) => l.startsWith('warn ') && l.includes(`gid ${gid}`)), { timeoutMs: 15_000 });
    const warning = logger.lines.find((l) => l.startsWith('warn ') && l.includes(`gid ${gid}`))!;
    expect(warning).toContain('PipedBank.deliver (msg, msg gid');
    expect(warning).toContain('account must be a positive number');
    expect(warning).toContain('a pipe refused its payload');
    expect(warning).not.toContain('threw DtmFailureError');
    expect((await queryTrans(gid)).transaction?.status).toBe('submitted');
    expect(ap().app.get(Delivered).gids).not.toContain(gid);
    await client.forceStop(gid);
  });

  it('back-check without a barrier: the pipe\'s 400 is answered as an error DTM retries (HTTP 500, gRPC INTERNAL), logged with how to fix it; the message stays prepared, not failed', async () => {
    const direct = await client.generateGid();
    expect(await backCheck('query-prepared-plain', direct)).toBe(protocol === 'http' ? 500 : 13);
    expect(logger.errors.find((l) => l.includes(direct))).toContain(`PipedBank.queryPreparedPlain answered 400 (account must be a positive number) to DTM's back-check (msg gid ${direct}, branch 00, op msg)`);
    expect(logger.errors.find((l) => l.includes(direct))).toContain('a pipe (a global ValidationPipe with a DTO on @Body() / @Payload(), or a pipe of its own) refused it');
    expect(logger.errors.find((l) => l.includes(direct))).toContain('Fix the handler: take no payload on it (read the call with @BranchContext()), or give it a barrier');

    const gid = await client.generateGid();
    const msg = client.newMsg(gid, { protocol, timeoutToFail: 1, retryInterval: 1 }).add(target('deliver'), { account: 1, amount: 5 });
    await msg.prepare(target('query-prepared-plain'));
    await waitUntil('DTM back-checked the message', async () => {
      await triggerCron();
      return logger.errors.some((l) => l.includes(`gid ${gid}`));
    }, { timeoutMs: 15_000 });
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    // the message is not lost: its submit still delivers it
    await msg.submit();
    expect((await client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
  }, 30_000);
});

it.each(['express', 'fastify'] as const)('%s: a back-check whose barrier is the controller\'s @UseBarrier() is answered before the pipe too (200 once the local transaction committed, 409 before)', async (adapter) => {
  const { client, url } = apps[adapter]!;
  const check = async (gid: string) => (await fetch(`${url}/pipes-default/query-prepared?${new URLSearchParams({ gid, trans_type: 'msg', branch_id: '00', op: 'msg' })}`)).status;
  expect(await check(await client.generateGid())).toBe(409);
  const committed = await client.generateGid();
  await new BranchBarrier('msg', committed, '00', 'msg', { table: 'dtm_barrier' }).callWithDb(pgBarrierDatabase(pgPool), async () => undefined);
  expect(await check(committed)).toBe(200);
});

// a payload's property names are the caller's (gRPC messages carry only the fields of their type)
describe.each(VARIANTS.filter((v) => v.protocol === 'http'))('a pipe refusal naming what the payload holds, $name', ({ adapter }) => {
  it('a message branch whose payload the pipe refuses naming a property with CR / LF and an ANSI escape in its name: the warning forges no line', async () => {
    const gid = await apps[adapter]!.client.generateGid();
    const marker = `mk${Date.now().toString(36)}`;
    const forged = `x\r\n[Nest] 1 - ERROR [DtmBranch] \u001b[31m${marker} forged`;
    await apps[adapter]!.client.newMsg(gid, { protocol: 'http', retryInterval: 60 }).add(`${apps[adapter]!.url}/pipes/deliver`, { account: 1, amount: 5, [forged]: 1 }).submit();
    await waitUntil('DTM called the message branch', async () => logger.lines.some((l) => l.startsWith('warn ') && l.includes(`gid ${gid}`)), { timeoutMs: 15_000 });
    const warning = logger.lines.find((l) => l.startsWith('warn ') && l.includes(`gid ${gid}`))!;
    expect(warning).toContain('a pipe refused its payload (property x\\r\\n[Nest] 1 - ERROR [DtmBranch] \\u001b[31m');
    expect([warning.includes('\n'), warning.includes('\r'), warning.includes('\u001b')]).toEqual([false, false, false]);
    await apps[adapter]!.client.forceStop(gid);
  });
});

describe.each(VARIANTS.filter((v) => v.protocol === 'http'))('a pipe refusal of a call whose gid breaks the key rule, $name', ({ adapter }) => {
  it('a compensation whose gid and branch id carry CR / LF and an ANSI escape, its payload refused by the pipe: the warning shows them quoted and forges no line', async () => {
    const marker = `mk${Date.now().toString(36)}`;
    const gid = `${await apps[adapter]!.client.generateGid()}\r\n[Nest] 1 - ERROR [DtmBranch] \u001b[31m${marker} forged`;
    const keys = { gid, trans_type: 'saga', branch_id: `01\n${marker}`, op: 'compensate' };
    const res = await fetch(`${apps[adapter]!.url}/pipes-undo/refund?${new URLSearchParams(keys)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ account: 0, amount: 5 }) });
    expect(res.status).toBe(409); // the pipe's refusal, answered FAILURE
    const lines = logger.lines.filter((l) => l.includes(marker));
    expect(lines).toEqual([expect.stringContaining(`error PipedUndo.refund (saga-compensate, saga gid ${JSON.stringify(gid)}, branch ${JSON.stringify(keys.branch_id)}, op compensate): a pipe refused its payload`)]);
    expect(lines.filter((l) => l.includes('\r') || l.includes('\n') || l.includes('\u001b'))).toEqual([]);
  });
});

describe.each(VARIANTS.filter((v) => v.protocol === 'http'))('the undo of a payload its action\'s pipe refused, $name', ({ adapter }) => {
  it('a compensation the pipe leaves alone, behind the barrier: a null compensation, skipped; DTM records the saga failed with the pipe\'s reason', async () => {
    const client = apps[adapter]!.client;
    const gid = await client.generateGid();
    const final = await client.newSaga(gid, { protocol: 'http', retryInterval: 1 }).add('pipes.refund-barrier', { account: 0, amount: 5 }).submitAndWait({ timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toBe('invalid payload for PipedUndoBehindBarrier.pay: account must be a positive number');
    expect(final.branches.map((b) => `${b.op} ${b.status}`)).toEqual(['compensate succeed', 'action failed']);
    // neither handler ran: the pipe refused the action, the barrier skipped the compensation (its action never committed)
    expect(PipedUndoBehindBarrier.calls.filter((c) => c.includes('"account":0'))).toEqual([]);
    // the barrier's null compensation: its own row and the action's, both written by the compensation
    const rows = await pgPool.query('SELECT op, reason FROM dtm_barrier WHERE gid = $1 ORDER BY op', [gid]);
    expect(rows.rows).toEqual([
      { op: 'action', reason: 'compensate' },
      { op: 'compensate', reason: 'compensate' },
    ]);
  });
});

describe.each(VARIANTS)('a compensation whose payload the pipe refuses as it refused its action\'s, $name', ({ adapter, protocol }) => {
  it('never answered success (the saga stays aborting, the step before it not compensated yet); the wait\'s DtmOutcomeUnknownError and one error line (not one per retry) say why, naming the gid, the branch and what to do', async () => {
    const { client } = apps[adapter]!;
    const gid = await client.generateGid();
    const saga = client
      .newSaga(gid, { protocol, retryInterval: 1 })
      .add('pipes.reserve', { account: 1, amount: 5, fail: gid })
      .add('pipes.refund', { account: 0, amount: 5, fail: gid });
    const waited = await saga.submitAndWait({ timeout: 4 }).then(() => undefined, (err: unknown) => err);
    expect(waited).toBeInstanceOf(DtmOutcomeUnknownError);
    const unfinished = (waited as Error).message.slice((waited as Error).message.indexOf('branch 02'));
    expect(unfinished).toMatch(/^branch 02 "[^"]+" \(op compensate, [^)]+\): PipedUndo\.refund failed \((HTTP 409|gRPC status 10)\): PipedUndo\.refund \(saga-compensate, saga gid /);
    expect(unfinished).toContain('a pipe refused its payload (account must be a positive number), so this compensation did not run');
    // the action's refusal, then two of the compensation's at least (DTM's retries)
    await waitUntil('DTM retried the compensation', async () => {
      await triggerCron();
      return ValidateMove.refused.filter((r) => r === gid).length >= 3;
    }, { timeoutMs: 45_000, intervalMs: 500 });
    const trans = await queryTrans(gid);
    expect(trans.transaction?.status).toBe('aborting');
    expect(trans.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`).sort()).toEqual(['01 action succeed', '01 compensate prepared', '02 action failed', '02 compensate prepared']);
    expect(firstCalls(PipedReserve.calls.filter((c) => c.endsWith(gid)))).toEqual([`reserve ${gid}`]); // DTM's call, at least once; never its compensation's
    const lines = logger.lines.filter((l) => l.includes(gid) && !l.startsWith('log '));
    expect(lines).toEqual([
      expect.stringContaining(`error PipedUndo.refund (saga-compensate, saga gid ${gid}, branch 02, op compensate): a pipe refused its payload (account must be a positive number), so this compensation did not run`),
    ]);
    expect(lines[0]).toContain('the saga stays aborting');
    expect(lines[0]).toContain('forceStop');
    expect(lines[0]).not.toContain('Fix the payload the transaction sends');
    await client.forceStop(gid);
  }, 70_000);
});

it('start-up warns, once per handler, about a compensation that takes its action\'s DTO class under a pipe (naming the handlers, the class and the pipe), not about one typed so the pipe leaves it alone', () => {
  const warnings = logger.lines.filter((l) => l.startsWith('warn ') && l.includes('takes its payload as'));
  const refund = warnings.filter((l) => l.includes('PipedUndo.refund'));
  // one per app (Express, Fastify)
  expect(refund).toHaveLength(2);
  expect(refund[0]).toContain("PipedUndo.refund (@SagaCompensate('pipes.refund')) takes its payload as Move, as its action PipedUndo.pay does, under the pipe ValidateMove");
  expect(refund[0]).toContain('DTM retries it forever');
  expect(warnings.filter((l) => l.includes('PipedReserve.release'))).toHaveLength(2);
  expect(warnings.filter((l) => l.includes('PipedUndoBehindBarrier'))).toEqual([]);
});

it('a TCC whose Try and Cancel the pipe refuses alike: the Cancel is never answered success (the TCC stays aborting), one error line says it did not run', async () => {
  const { client } = apps.express!;
  const gid = await client.generateGid();
  const run = client.tccGlobalTransaction(gid, async (tcc) => void (await tcc.callBranch({ account: 0, amount: 5, fail: gid }, 'pipes.hold')), { retryInterval: 1 });
  await expect(run).rejects.toThrow();
  await waitUntil('DTM retried the Cancel', async () => {
    await triggerCron();
    return ValidateMove.refused.filter((r) => r === gid).length >= 3;
  }, { timeoutMs: 45_000, intervalMs: 500 });
  const trans = await queryTrans(gid);
  expect(trans.transaction?.status).toBe('aborting');
  expect(trans.branches.filter((b) => b.op === 'cancel').map((b) => b.status)).toEqual(['prepared']);
  const lines = logger.lines.filter((l) => l.includes(gid) && !l.startsWith('log '));
  expect(lines).toEqual([expect.stringContaining(`error PipedHold.cancel (tcc-cancel, tcc gid ${gid}, branch 01, op cancel): a pipe refused its payload (account must be a positive number), so this Cancel did not run`)]);
  expect(lines[0]).toContain('the TCC stays aborting');
  expect(lines[0]).toContain('DTM sends it the payload of its Try');
  expect(logger.lines.filter((l) => l.startsWith('warn ') && l.includes("PipedHold.cancel (@TccCancel('pipes.hold')) takes its payload as Move, as its Try PipedHold.hold does"))).toHaveLength(2);
  await client.forceStop(gid);
}, 70_000);
