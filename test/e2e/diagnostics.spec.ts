// Diagnostics that name the cause, against the real DTM server: a transaction that does not finish
// in time names its unfinished branches and why (a wrong app_url host, a port nothing listens on, a
// global guard, a handler's plain Error, a barrier table that is missing); start-up
// checks (global guards, the barrier table, the start-up ping); the branch's own
// message in failures and rollback reasons, DTM v1.19's text on the raw fields.
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Body, ConflictException, Controller, ForbiddenException, Get, HttpException, Injectable, Module, ParseIntPipe, Post, Query, type CanActivate, type ExecutionContext, type INestApplication } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import {
  DtmAwareGuard,
  DtmClient,
  DtmFailureError,
  DtmModule,
  DtmOngoingError,
  DtmOutcomeUnknownError,
  DtmServerError,
  DtmUnavailableError,
  DtmUsageError,
  MsgBranch,
  MsgQueryPrepared,
  SagaAction,
  SagaCompensate,
  TccCancel,
  TccConfirm,
  TccTry,
  isDtmBranchHandler,
  pgBarrierDatabase,
  pgXaDatabase,
  type DtmBranchCallEvent,
  type XaDatabase,
  type DtmConfigInput,
} from 'nestjs-dtm';
import { CapturingLogger } from './branch-app.js';
import { fileDatabases } from '../support/databases.js';
import { dtmPost, harness, queryTrans, waitForTransStatus } from '../support/harness.js';
import { freePort, waitUntil } from '../support/services/process.js';
import { startTrap } from '../support/trap.js';

/** The gids each handler was called with (a keyless probe would show up as an undefined gid). */
const calls: Record<string, (string | undefined)[]> = {};
/** An error's text of over a megabyte, words of different lengths (its 500th character falls inside one). */
const LONG_ERROR = `ledger offline: ${Array.from({ length: 120_000 }, (_, i) => `entry${i}`).join(' ')}`;
/** What the diagnosis keeps of {@link LONG_ERROR}: its whole words within 500 characters, and `…`. */
const LONG_ERROR_KEPT = `${LONG_ERROR.slice(0, LONG_ERROR.lastIndexOf(' ', 500))}…`;
const called = (name: string, gid: string | undefined) => (calls[name] ??= []).push(gid);

@Controller('diag')
class DiagController {
  @SagaAction('debit', { compensate: false })
  @Post('debit')
  debit(@Query('gid') gid?: string) {
    called('debit', gid);
    return {};
  }

  @SagaAction('refund')
  @Post('refund-action')
  refundAction() {
    return {};
  }

  /** Its amount must be an integer (a pipe of the app): a compensation of a call that breaks the key rule is answered without its handler, after the pipes. */
  @SagaCompensate('refund')
  @Post('refund-compensate')
  refundCompensate(@Body('amount', ParseIntPipe) amount: number, @Query('gid') gid?: string) {
    called('refund-compensate', `${gid}:${amount}`);
    return {};
  }

  @SagaAction('slow', { compensate: false })
  @Post('slow')
  slow(@Query('gid') gid?: string) {
    called('slow', gid);
    throw new DtmOngoingError('still counting');
  }

  @SagaAction('explode', { compensate: false })
  @Post('explode')
  explode(@Query('gid') gid?: string) {
    called('explode', gid);
    throw new Error('ledger offline');
  }

  @SagaAction('explode-long', { compensate: false })
  @Post('explode-long')
  explodeLong(@Query('gid') gid?: string) {
    called('explode-long', gid);
    throw new Error(LONG_ERROR);
  }

  @SagaAction('slow-http', { compensate: false })
  @Post('slow-http')
  slowHttp(@Query('gid') gid?: string) {
    called('slow-http', gid);
    throw new HttpException({ message: 'still counting' }, 425);
  }

  @TccTry('pin')
  @Post('pin-try')
  pinTry() {
    return {};
  }

  @TccConfirm('pin')
  @Post('pin-confirm')
  pinConfirm(@Query('gid') gid?: string) {
    called('pin-confirm', gid);
    throw new ConflictException('ledger closed');
  }

  @TccCancel('pin')
  @Post('pin-cancel')
  pinCancel() {
    return {};
  }

  @SagaAction('zed', { compensate: false })
  @Post('zed')
  zed() {
    throw new DtmFailureError('no account zed');
  }

  @MsgBranch('ledger-notify')
  @Post('ledger-notify')
  ledgerNotify(@Query('gid') gid?: string) {
    called('ledger-notify', gid);
    return {};
  }

  @MsgQueryPrepared('ledger-check')
  @Get('ledger-check')
  ledgerCheck(@Query('gid') gid?: string) {
    called('ledger-check', gid);
    throw new Error('ledger offline');
  }

  @TccTry('refuse-long')
  @Post('refuse-long-try')
  refuseLongTry() {
    throw new DtmFailureError(LONG_ERROR);
  }

  @TccConfirm('refuse-long')
  @Post('refuse-long-confirm')
  refuseLongConfirm(@Query('gid') gid?: string) {
    called('refuse-long-confirm', gid);
    return {};
  }

  @TccCancel('refuse-long')
  @Post('refuse-long-cancel')
  refuseLongCancel(@Query('gid') gid?: string) {
    called('refuse-long-cancel', gid);
    return {};
  }

  @SagaAction('conflict-long', { compensate: false })
  @Post('conflict-long')
  conflictLong() {
    throw new ConflictException(LONG_ERROR);
  }

  @TccTry('answer-long')
  @Post('answer-long-try')
  answerLongTry(@Query('gid') gid?: string, @Body() body?: { script?: string }) {
    called('answer-long-try', gid);
    throw body?.script === 'conflict' ? new ConflictException(LONG_ERROR) : new DtmOngoingError(LONG_ERROR);
  }

  @TccConfirm('answer-long')
  @Post('answer-long-confirm')
  answerLongConfirm(@Query('gid') gid?: string) {
    called('answer-long-confirm', gid);
    return {};
  }

  @TccCancel('answer-long')
  @Post('answer-long-cancel')
  answerLongCancel(@Query('gid') gid?: string) {
    called('answer-long-cancel', gid);
    return {};
  }

  @TccTry('burn')
  @Post('burn-try')
  burnTry() {
    throw new Error('relation "ledger" does not exist');
  }

  @TccConfirm('burn')
  @Post('burn-confirm')
  burnConfirm() {
    return {};
  }

  @TccCancel('burn')
  @Post('burn-cancel')
  burnCancel() {
    return {};
  }

  @TccTry('hold')
  @Post('hold-try')
  holdTry() {
    throw new DtmFailureError('no account zed');
  }

  @TccConfirm('hold')
  @Post('hold-confirm')
  holdConfirm() {
    return {};
  }

  @TccCancel('hold')
  @Post('hold-cancel')
  holdCancel() {
    return {};
  }
}

@Controller('vault')
class VaultController {
  @SagaAction('stash', { compensate: false, barrier: 'pg' })
  @Post('stash')
  stash() {
    return {};
  }
}

@Injectable()
class DenyAllGuard implements CanActivate {
  canActivate(): boolean {
    throw new ForbiddenException('no session');
  }
}

/** A session guard written as docs/diagnostics.md shows: DTM's calls through, and marked so. */
@DtmAwareGuard()
@Injectable()
class SessionGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    if (isDtmBranchHandler(context.getHandler())) return true;
    throw new ForbiddenException('no session');
  }
}

interface DiagApp {
  app: INestApplication;
  client: DtmClient;
  logger: CapturingLogger;
  /** The address the app listens on. */
  url: string;
}

const apps: INestApplication[] = [];

/** A Nest app with DiagController (and what `extra` adds: `branchCalls` gets its `branch.call` events), listening on 127.0.0.1; `appUrl` may point elsewhere. */
async function diagApp(config: DtmConfigInput, extra: { guard?: boolean | 'aware'; vault?: pg.Pool; xa?: XaDatabase; port?: number; branchCalls?: DtmBranchCallEvent[] } = {}): Promise<DiagApp> {
  const branchCalls = extra.branchCalls;
  const instrumentation = branchCalls ? { hooks: { 'branch.call': (e: DtmBranchCallEvent) => void branchCalls.push(e) }, openTelemetry: false } : undefined;
  @Module({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, ...config }, barrierConnections: extra.vault ? { pg: pgBarrierDatabase(extra.vault) } : undefined, xaConnections: extra.xa ? { pg: extra.xa } : undefined, instrumentation })],
    controllers: extra.vault ? [DiagController, VaultController] : [DiagController],
    providers: extra.guard ? [{ provide: APP_GUARD, useClass: extra.guard === 'aware' ? SessionGuard : DenyAllGuard }] : [],
  })
  class DiagModule {}
  const module = await Test.createTestingModule({ imports: [DiagModule] }).compile();
  const app = module.createNestApplication({ forceCloseConnections: true });
  const logger = new CapturingLogger();
  app.useLogger(logger);
  apps.push(app);
  await app.listen(extra.port ?? 0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  return { app, client: app.get(DtmClient), logger, url: `http://127.0.0.1:${port}` };
}

/** What `submitAndWait` of a one-step saga to `name` throws after `timeout` seconds; the transaction is stopped afterwards. */
async function unfinished(app: DiagApp, name: string, timeout = 2): Promise<{ gid: string; error: DtmOutcomeUnknownError }> {
  const gid = await app.client.generateGid();
  let error: unknown;
  try {
    await app.client.newSaga(gid).add(name, { amount: 1 }).submitAndWait({ timeout });
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
  // what DTM recorded: still submitted, the action not done
  const stored = await queryTrans(gid);
  expect(stored.transaction?.status).toBe('submitted');
  expect(stored.branches.filter((b) => b.op === 'action').map((b) => b.status)).toEqual(['prepared']);
  await app.client.forceStop(gid);
  return { gid, error: error as DtmOutcomeUnknownError };
}

let pool: pg.Pool;
beforeAll(async () => {
  const dbs = await fileDatabases();
  pool = new pg.Pool({ connectionString: dbs.postgres.url, max: 4 });
  await pool.query('DROP SCHEMA IF EXISTS diag_missing CASCADE');
  await pool.query('DROP SCHEMA IF EXISTS diag_created CASCADE');
});
afterAll(async () => {
  for (const app of apps) await app.close().catch(() => undefined);
  for (const server of foreignServers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  await pool.end();
});

const foreignServers: Server[] = [];
/**
 * Another service's TCC branch (a plain node:http server, closed after the file): its Try answers
 * `status` with `body`, its Confirm and Cancel 200; `cancels` has the gid of each Cancel.
 */
async function foreignTry(status: number, body: object): Promise<{ base: string; cancels: string[] }> {
  const cancels: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    req.resume();
    if (url.pathname === '/try') {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
      return;
    }
    if (url.pathname === '/cancel') cancels.push(url.searchParams.get('gid') ?? '');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
  foreignServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, cancels };
}

describe('a transaction that does not finish in time names its unfinished branches and why', () => {
  it('app_url with a host that does not resolve: DNS', async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://no-such-host.invalid:${port}` }, { port });
    const { gid, error } = await unfinished(app, 'debit');
    expect(error.gid).toBe(gid);
    expect(error.unfinished).toEqual([
      { branchId: '01', op: 'action', name: 'debit', target: `http://no-such-host.invalid:${port}/diag/debit`, cause: expect.stringContaining('its host no-such-host.invalid does not resolve here') },
    ]);
    expect(error.message).toContain(`Unfinished: branch 01 "debit" (op action, http://no-such-host.invalid:${port}/diag/debit): its host no-such-host.invalid does not resolve`);
    expect(error.message).toContain('lynx.dtm.app_url');
    // before: nothing at start-up, though every call DTM made failed from the first one
    expect(app.logger.warnings.filter((w) => w.includes('does not resolve here'))).toEqual([
      "lynx.dtm.app_url names no-such-host.invalid, which does not resolve here (ENOTFOUND): if DTM cannot resolve it either, every branch call DTM makes fails and is retried forever, with nothing in this app's log until a wait for a transaction ends; set app_url to this service's address as DTM sees it (a typo in the host name?)",
    ]);
  });

  it("a start-up warning for grpc_app_address's host too; none for a host that resolves here, an IP address or the loopback", async () => {
    const grpcTypo = await warningsApp({ serverUrl: harness().dtm.serverUrl, grpcAppAddress: 'no-such-host.invalid:50051' });
    expect(grpcTypo.warnings.filter((w) => w.includes('does not resolve here'))).toEqual([expect.stringMatching(/^lynx\.dtm\.grpc_app_address names no-such-host\.invalid, which does not resolve here \(ENOTFOUND\)/)]);
    for (const config of [{ appUrl: `http://${hostname()}:3000`, grpcAppAddress: `${hostname()}:50051` }, { appUrl: 'http://10.0.0.7:3000', grpcAppAddress: '[fd00::7]:50051' }, { appUrl: 'http://localhost:3000', grpcAppAddress: '127.0.0.1:50051' }]) {
      const { warnings } = await warningsApp({ serverUrl: harness().dtm.serverUrl, ...config });
      expect(warnings.filter((w) => w.includes('does not resolve here'))).toEqual([]);
    }
  });

  it('app_url with a port nothing listens on: connection refused', async () => {
    const wrong = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${wrong}` });
    const { error } = await unfinished(app, 'debit');
    expect(error.unfinished).toEqual([expect.objectContaining({ name: 'debit', op: 'action', cause: expect.stringContaining(`connection refused at 127.0.0.1:${wrong}`) })]);
  });

  it('a global APP_GUARD that refuses DTM: 403 named, and a start-up warning naming the guard; the handler never ran', async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { guard: true, port });
    expect(app.logger.warnings).toContainEqual(expect.stringContaining('global guard DenyAllGuard (APP_GUARD or useGlobalGuards) runs before every DTM branch handler'));
    const { gid, error } = await unfinished(app, 'debit');
    expect(error.unfinished[0].cause).toMatch(/^POST is refused with 403 before DiagController\.debit \(no session\): a global guard \(APP_GUARD\)/);
    expect(calls.debit ?? []).not.toContain(gid); // this saga's (another test's transaction still called by DTM does not count)
  });

  it("a global guard marked @DtmAwareGuard() that lets DTM through: no start-up warning, and DTM's call runs the handler", async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { guard: 'aware', port });
    expect(app.logger.warnings.filter((w) => w.includes('global guard'))).toEqual([]);
    // the guard lets every call of a branch route through: one without DTM's keys is the module's to refuse (400)
    expect((await fetch(`${app.url}/diag/debit`, { method: 'POST' })).status).toBe(400);
    const gid = await app.client.generateGid();
    await expect(app.client.newSaga(gid).add('debit', { amount: 1 }).submitAndWait({ timeout: 10 })).resolves.toMatchObject({ status: 'succeed' });
    expect(calls.debit).toContain(gid);
    expect((await queryTrans(gid)).branches.filter((b) => b.op === 'action').map((b) => b.status)).toEqual(['succeed']);
  });

  it('a handler throwing a plain Error: its message and HTTP 500, from this process (DTM was answered without it)', async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { port });
    const { gid, error } = await unfinished(app, 'explode');
    expect(error.unfinished[0]).toMatchObject({ name: 'explode', op: 'action', cause: 'DiagController.explode failed (HTTP 500): ledger offline' });
    expect(calls.explode).toContain(gid);
  });

  it("a handler throwing a plain Error of a megabyte: the diagnosis keeps its whole words within 500 characters (before: cut inside a word), and its log line (written again at each of DTM's retries) its first 4000 characters with a note of its length, and its stack's frames (before: the megabyte)", async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { port });
    const { gid, error } = await unfinished(app, 'explode-long');
    expect(LONG_ERROR[500]).toMatch(/\S/); // the cut falls inside a word
    expect(LONG_ERROR_KEPT).toMatch(/ entry\d+…$/);
    expect(error.unfinished[0]).toMatchObject({ name: 'explode-long', op: 'action', cause: `DiagController.explodeLong failed (HTTP 500): ${LONG_ERROR_KEPT}` });
    const lines = app.logger.errors.filter((l) => l.includes(gid));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    for (const line of lines) {
      expect(line).toContain(`DiagController.explodeLong failed (http, saga gid ${gid}, branch 01, op action)`);
      expect(line).toContain(`Error: ledger offline: entry0 entry1 `);
      expect(line).toContain(`… [cut for the log: ${LONG_ERROR.length} characters in all]\n    at `);
      expect(line.length).toBeLessThan(6000);
    }
  });

  it('a prepared message whose back-check fails: the back-check is named (branch 00, op msg) with its handler\'s error, not the branches DTM has not called yet', async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { port });
    const gid = await app.client.generateGid();
    await app.client.newMsg(gid, { timeoutToFail: 1, retryInterval: 1 }).add('ledger-notify', { amount: 1 }).prepare('ledger-check');
    await waitUntil("DTM's back-check", async () => (calls['ledger-check'] ?? []).includes(gid), { timeoutMs: 15_000 });
    const error = (await app.client.waitForFinal(gid, { timeout: 1 }).catch((err: unknown) => err)) as DtmOutcomeUnknownError;
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect(error.lastStatus).toBe('prepared');
    expect(error.unfinished).toEqual([
      { branchId: '00', op: 'msg', name: 'ledger-check', target: `http://127.0.0.1:${port}/diag/ledger-check`, cause: 'DiagController.ledgerCheck failed (HTTP 500): ledger offline' },
    ]);
    expect(error.message).toContain('Unfinished: branch 00 "ledger-check" (op msg,');
    expect(calls['ledger-notify'] ?? []).not.toContain(gid);
    await app.client.forceStop(gid);
  });

  it('a reachable route whose handler answers ONGOING: reachable, the handler not run by the probe (every call had a gid)', async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { port });
    const { gid, error } = await unfinished(app, 'slow');
    expect(error.unfinished[0].cause).toBe("DiagController.slow is reachable and answers POST; the cause is in the handler or in DTM's log");
    expect(calls.slow).toContain(gid);
    expect(calls.slow!.every((g) => typeof g === 'string')).toBe(true);
  });

  it('a handler throwing an HttpException with status 425 answers ONGOING, as DtmOngoingError does: not recorded as its failure (the cause is the probe\'s), the hook reports ongoing', async () => {
    const port = await freePort();
    const branchCalls: DtmBranchCallEvent[] = [];
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { port, branchCalls });
    const { gid, error } = await unfinished(app, 'slow-http');
    expect(error.unfinished[0].cause).toBe("DiagController.slowHttp is reachable and answers POST; the cause is in the handler or in DTM's log");
    expect(calls['slow-http']).toContain(gid);
    const mine = branchCalls.filter((e) => e.gid === gid);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.map((e) => `${e.handler} ${e.op} ${e.outcome}`)).toEqual(mine.map(() => 'DiagController.slowHttp action ongoing'));
    expect(app.logger.errors.filter((l) => l.includes(gid))).toEqual([]);
  });

  it('a TCC Confirm throwing an HttpException with status 409 answers FAILURE, as DtmFailureError does: not recorded as its failure, a warning that it cannot roll back, the hook reports failure', async () => {
    const port = await freePort();
    const branchCalls: DtmBranchCallEvent[] = [];
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { port, branchCalls });
    const gid = await app.client.generateGid();
    const error = await app.client.tccGlobalTransactionAndWait(gid, (tcc) => tcc.callBranch({ amount: 1 }, 'pin'), undefined, { timeout: 2 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    // DTM read the 409 as FAILURE, which it retries on a Confirm: still submitted, the Confirm not done
    const stored = await queryTrans(gid);
    expect(stored.transaction?.status).toBe('submitted');
    expect(stored.branches.map((b) => `${b.op} ${b.status}`)).toEqual(['cancel prepared', 'confirm prepared']);
    await app.client.forceStop(gid);
    expect((error as DtmOutcomeUnknownError).unfinished).toEqual([
      expect.objectContaining({ name: 'pin', op: 'confirm', cause: "DiagController.pinConfirm is reachable and answers POST; the cause is in the handler or in DTM's log" }),
    ]);
    expect(calls['pin-confirm']).toContain(gid);
    expect(app.logger.warnings).toContainEqual(
      expect.stringContaining(`DiagController.pinConfirm (tcc-confirm, tcc gid ${gid}, branch 01, op confirm) threw an HttpException with status 409 (FAILURE), but a FAILURE here cannot roll anything back`),
    );
    const confirms = branchCalls.filter((e) => e.gid === gid && e.op === 'confirm');
    expect(confirms.length).toBeGreaterThan(0);
    expect(confirms.map((e) => e.outcome)).toEqual(confirms.map(() => 'failure'));
  });

  it('a barrier table that is missing: start-up fails naming ensureBarrierSchema and the sql/ file; dropped later, the cause is the database error', async () => {
    const port = await freePort();
    let startError: unknown;
    try {
      await diagApp({ appUrl: `http://127.0.0.1:${port}`, barrierTable: 'diag_missing.barrier' }, { vault: pool, port });
    } catch (err) {
      startError = err;
    }
    expect(startError).toBeInstanceOf(DtmUsageError);
    expect((startError as Error).message).toContain('the barrier table diag_missing.barrier does not exist on barrier connection "pg" (postgres)');
    expect((startError as Error).message).toContain("ensureBarrierSchema(db, { table: 'diag_missing.barrier' })");
    expect((startError as Error).message).toContain('sql/barrier.postgres.sql');

    // create_barrier_table: true creates it at start-up
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}`, barrierTable: 'diag_created.barrier', createBarrierTable: true }, { vault: pool, port });
    expect((await pool.query("SELECT to_regclass('diag_created.barrier') AS t")).rows[0].t).toBe('diag_created.barrier');
    // the table gone after start-up (another database, a migration): the cause is what the database said
    await pool.query('DROP SCHEMA diag_created CASCADE');
    const { error } = await unfinished(app, 'stash');
    expect(error.unfinished[0]).toMatchObject({ name: 'stash', op: 'action', cause: expect.stringMatching(/^VaultController\.stash failed \(HTTP 500\): .*relation "diag_created\.barrier" does not exist/) });
  });
});

describe('a TCC Try of this app whose handler throws', () => {
  it("the caller's DtmServerError names the handler and what it threw (DTM's rollback reason does not hold it); the handler's log line does not say that DTM retries the Try", async () => {
    const app = await diagApp({});
    const gid = await app.client.generateGid();
    const error = await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ amount: 1 }, 'burn')).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DtmServerError);
    expect((error as DtmServerError).status).toBe(500);
    expect((error as Error).message).toMatch(/^the branch http:\/\/127\.0\.0\.1:\d+\/diag\/burn-try answered HTTP 500: its handler DiagController\.burnTry, in this app, threw: relation "ledger" does not exist/);
    const final = await app.client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rawRollbackReason).toContain('answered HTTP 500');
    expect(final.rawRollbackReason).not.toContain('ledger');
    expect((await queryTrans(gid)).branches.map((b) => `${b.op} ${b.status}`)).toEqual(['cancel succeed', 'confirm prepared']);
    const lines = app.logger.errors.filter((l) => l.includes(gid));
    expect(lines).toEqual([expect.stringContaining('DiagController.burnTry failed (http, tcc gid')]);
    expect(lines[0]).toContain('the app running the transaction gets the error and aborts it');
    expect(lines[0]).not.toContain('DTM will retry');
  });
});

describe('a TCC Try whose FAILURE answer is larger than the caller reads (max_answer_bytes)', () => {
  it("of this app (a reason of a megabyte): answered with its reason cut to 4000 characters, so the caller gets the branch's DtmFailureError (before: 'answered more than 65536 bytes', a DtmServerError); DTM cancels", async () => {
    const app = await diagApp({ maxAnswerBytes: 65536 });
    const gid = await app.client.generateGid();
    const error = await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ amount: 1 }, 'refuse-long')).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DtmFailureError);
    const reason = (error as DtmFailureError).reason;
    expect(reason.length).toBeLessThanOrEqual(4001);
    expect(reason).toMatch(/^ledger offline: entry0 entry1 .* entry\d+…$/);
    expect(LONG_ERROR.startsWith(reason.slice(0, -1))).toBe(true);
    const final = await app.client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rawRollbackReason).toMatch(/^ledger offline: entry0 entry1 /);
    expect((await queryTrans(gid)).branches.map((b) => `${b.op} ${b.status}`)).toEqual(['cancel succeed', 'confirm prepared']);
    expect(calls['refuse-long-cancel']).toContain(gid);
    expect(calls['refuse-long-confirm'] ?? []).not.toContain(gid);
  });

  it("of another service (HTTP 409, a body of 100 KB): the caller gets a DtmFailureError saying the branch answered FAILURE with a body it did not read (before: 'answered more than 65536 bytes', a DtmServerError); DTM cancels", async () => {
    const { base, cancels } = await foreignTry(409, { dtm_result: 'FAILURE', message: 'x'.repeat(100_000) });
    const app = await diagApp({ maxAnswerBytes: 65536 });
    const gid = await app.client.generateGid();
    const error = await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ amount: 1 }, `${base}/try`, `${base}/confirm`, `${base}/cancel`)).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect((error as DtmFailureError).reason).toBe(`the branch ${base}/try answered FAILURE (HTTP 409) with a body of more than 65536 bytes (lynx.dtm.max_answer_bytes), not read: its reason is not known here`);
    expect((error as DtmFailureError).status).toBe(409);
    const final = await app.client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rawRollbackReason).toContain('answered FAILURE (HTTP 409) with a body of more than 65536 bytes');
    expect(cancels).toContain(gid);
    expect((await queryTrans(gid)).branches.map((b) => `${b.op} ${b.status}`)).toEqual(['cancel succeed', 'confirm prepared']);
  });
});

describe('a TCC Try of another service answering FAILURE with a long reason the caller reads (under max_answer_bytes)', () => {
  it("HTTP 409 with a reason of 30000 characters: the DtmFailureError keeps it whole in reason, its message cut within 4000 characters saying so (before: a message of 30000 characters, logged whole wherever the app logs it); DTM's rollback reason cut to 1024 characters; DTM cancels", async () => {
    const long = `card declined: ${'detail of the decline; '.repeat(1300)}`;
    const { base, cancels } = await foreignTry(409, { dtm_result: 'FAILURE', message: long });
    const app = await diagApp({});
    const gid = await app.client.generateGid();
    const error = await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ amount: 1 }, `${base}/try`, `${base}/confirm`, `${base}/cancel`)).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect((error as DtmFailureError).reason).toBe(long);
    const { message } = error as DtmFailureError;
    expect(message).toMatch(new RegExp(`^card declined: (detail of the decline; )+[a-z ]*… \\[cut: its reason has all ${long.length} characters\\]$`));
    expect(message.length).toBeLessThan(4100);
    const final = await app.client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rawRollbackReason).toMatch(/^card declined: detail of the decline; /);
    expect(Array.from(final.rawRollbackReason ?? '').length).toBeLessThanOrEqual(1024);
    expect(cancels).toContain(gid);
  });
});

describe('a TCC Try of another service answering ONGOING with a body larger than the caller reads (max_answer_bytes)', () => {
  it("HTTP 425 with a body of 2 MB: the caller gets a DtmOngoingError saying so, its text not read (before: 'answered more than 65536 bytes', a DtmServerError); DTM cancels", async () => {
    const { base, cancels } = await foreignTry(425, { dtm_result: 'ONGOING', message: 'y'.repeat(2_000_000) });
    const app = await diagApp({ maxAnswerBytes: 65536 });
    const gid = await app.client.generateGid();
    let tried: unknown;
    await app.client
      .tccGlobalTransaction(gid, (tcc) =>
        tcc.callBranch({ amount: 1 }, `${base}/try`, `${base}/confirm`, `${base}/cancel`).catch((err: unknown) => {
          tried = err;
          throw err;
        }),
      )
      .catch(() => undefined);
    expect(tried).toBeInstanceOf(DtmOngoingError);
    expect((tried as DtmOngoingError).message).toBe(`the branch ${base}/try answered ONGOING (HTTP 425): not finished yet, with a body of more than 65536 bytes (lynx.dtm.max_answer_bytes), not read`);
    expect((tried as DtmOngoingError).status).toBe(425);
    const final = await app.client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(cancels).toContain(gid);
  });
});

describe("this app's own ONGOING and HttpException answers of 1 MB (cut to 4000 characters, as its FAILURE reasons are)", () => {
  it("a TCC Try's DtmOngoingError: the caller reads it (max_answer_bytes 65536) and gets the branch's ONGOING with its text (before: a body over max_answer_bytes, not read); DTM cancels", async () => {
    const app = await diagApp({ maxAnswerBytes: 65536 });
    const gid = await app.client.generateGid();
    let tried: unknown;
    await app.client
      .tccGlobalTransaction(gid, (tcc) =>
        tcc.callBranch({ script: 'ongoing' }, 'answer-long').catch((err: unknown) => {
          tried = err;
          throw err;
        }),
      )
      .catch(() => undefined);
    expect(tried).toBeInstanceOf(DtmOngoingError);
    expect((tried as Error).message).toMatch(/answered ONGOING \(HTTP 425\): not finished yet, saying: ledger offline: entry0 entry1 .*…$/);
    expect((await app.client.waitForFinal(gid)).status).toBe('failed');
    expect(calls['answer-long-cancel']).toContain(gid);
  });

  it("a TCC Try's ConflictException (409): the caller reads it and gets the branch's FAILURE with its reason cut (before: a body over max_answer_bytes, its reason not read); DTM records the cut reason and cancels", async () => {
    const app = await diagApp({ maxAnswerBytes: 65536 });
    const gid = await app.client.generateGid();
    const error = await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ script: 'conflict' }, 'answer-long')).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DtmFailureError);
    const reason = (error as DtmFailureError).reason;
    expect(reason).toMatch(/^ledger offline: entry0 entry1 .* entry\d+…$/);
    expect(reason.length).toBeLessThanOrEqual(4001);
    const final = await app.client.waitForFinal(gid);
    expect(final.status).toBe('failed');
    expect(final.rawRollbackReason).toMatch(/^ledger offline: entry0 entry1 /);
    expect(final.rawRollbackReason?.length).toBeLessThanOrEqual(4001);
    expect(calls['answer-long-cancel']).toContain(gid);
    expect(calls['answer-long-confirm'] ?? []).not.toContain(gid);
  });

  it("a saga action's ConflictException (409): DTM's rollback reason, made of its answer, holds the message cut to fit DTM's SQL stores (1024 characters), answered as the module's FAILURE (before: the whole megabyte; then cut to 4000 characters only)", async () => {
    const app = await diagApp({});
    const gid = await app.client.generateGid();
    await app.client.newSaga(gid).add('conflict-long', { amount: 1 }).submit();
    const reason = (await waitForTransStatus(gid, 'failed')).transaction?.rollback_reason ?? '';
    expect(reason).toMatch(/^url:http:\/\/[^ ]+\/diag\/conflict-long return failed: \{"dtm_result":"FAILURE","message":"ledger offline: entry0 entry1 .*…"\} FAILURE$/);
    expect(Array.from(reason).length).toBeLessThanOrEqual(1024);
  });
});

describe('a step target with credentials', () => {
  it('a URL with credentials and no path: the unfinished branch is named without them', async () => {
    const app = await diagApp({});
    const dead = await freePort();
    const gid = await app.client.generateGid();
    const error = await app.client
      .newSaga(gid)
      .add(`http://payments:s3cret-pw@127.0.0.1:${dead}`, { amount: 1 })
      .submitAndWait({ timeout: 2 })
      .catch((err: unknown) => err);
    await app.client.forceStop(gid);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    const unfinishedBranches = (error as DtmOutcomeUnknownError).unfinished;
    expect(unfinishedBranches).toEqual([expect.objectContaining({ op: 'action', target: `http://***@127.0.0.1:${dead}` })]);
    expect(JSON.stringify(unfinishedBranches)).not.toContain('s3cret');
    expect((error as Error).message).not.toContain('s3cret');
  });
});

describe('with authenticated branch calls (lynx.dtm.branch_auth_keys): the failures kept for the diagnosis', () => {
  it("hold no forged call: one real failed branch, then 600 forged calls of the same route (refused, 401), and the diagnosis still names the real failure", async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}`, branchAuthKeys: [randomBytes(33).toString('base64')] }, { port });
    const gid = await app.client.generateGid();
    // DTM calls the step once (500: the handler's error is kept), then not before a minute
    await app.client.newSaga(gid, { retryInterval: 60 }).add('explode', { amount: 1 }).submit();
    await waitUntil('DTM calling the failing step', async () => (calls.explode ?? []).includes(gid), { timeoutMs: 10_000, intervalMs: 50 });
    // the attack: more forged calls than the 500 failures kept, each of its own made-up gid, without a token
    const statuses = await forgedCalls(600, (i) => `${app.url}/diag/explode?${new URLSearchParams({ gid: `forged-${i}`, trans_type: 'saga', branch_id: '01', op: 'action' })}`, '{"amount":1}');
    expect([...new Set(statuses)]).toEqual([401]);
    const error = await app.client.waitForFinal(gid, { timeout: 1 }).catch((err: unknown) => err);
    await app.client.forceStop(gid);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((error as DtmOutcomeUnknownError).unfinished).toEqual([expect.objectContaining({ name: 'explode', op: 'action', cause: 'DiagController.explode failed (HTTP 500): ledger offline' })]);
    expect((calls.explode ?? []).filter((g) => g?.startsWith('forged'))).toEqual([]);
  });

  it("hold no keyless compensation that breaks the key rule (answered without its handler or a token check) whose payload a pipe refused: 600 of them, and the diagnosis still names the real failure (before: pushed out, the route probed)", async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}`, branchAuthKeys: [randomBytes(33).toString('base64')] }, { port });
    const gid = await app.client.generateGid();
    await app.client.newSaga(gid, { retryInterval: 60 }).add('explode', { amount: 1 }).submit();
    await waitUntil('DTM calling the failing step', async () => (calls.explode ?? []).includes(gid), { timeoutMs: 10_000, intervalMs: 50 });
    // the attack: a compensation is let past the token check when its gid breaks the key rule (a space here), since its handler
    // never runs; the app's pipe refuses the payload first (FAILURE), and before the fix each refusal was kept among handler failures
    const statuses = await forgedCalls(600, (i) => `${app.url}/diag/refund-compensate?${new URLSearchParams({ gid: `forged ${i}`, trans_type: 'saga', branch_id: '01', op: 'compensate' })}`, '{"amount":"x"}');
    expect([...new Set(statuses)]).toEqual([409]);
    const error = await app.client.waitForFinal(gid, { timeout: 1 }).catch((err: unknown) => err);
    await app.client.forceStop(gid);
    expect(error).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((error as DtmOutcomeUnknownError).unfinished).toEqual([expect.objectContaining({ name: 'explode', op: 'action', cause: 'DiagController.explode failed (HTTP 500): ledger offline' })]);
    expect(calls['refund-compensate'] ?? []).toEqual([]);
  });

  it("a proxy in front of the app that rewrites DTM's calls (it strips app_url's path and spells the rest in capitals): every call is refused for its token, and the diagnosis names that refusal, not the route", async () => {
    const port = await freePort();
    // app_url http://127.0.0.1:<proxy>/svc: the proxy passes /svc/diag/debit on as /DIAG/debit, which Express routes
    // (without case) to the handler but no token signed (a proxy that only strips app_url's path is served: branch-auth-routes.spec)
    const proxy = createServer((req, res) => {
      const forwarded = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.url!.replace(/^\/svc\/diag\//, '/DIAG/'), headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      });
      forwarded.on('error', () => res.destroy());
      req.pipe(forwarded);
    });
    await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done));
    try {
      const app = await diagApp({ appUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/svc`, branchAuthKeys: [randomBytes(33).toString('base64')] }, { port });
      const { error } = await unfinished(app, 'debit');
      expect(error.unfinished).toEqual([expect.objectContaining({ name: 'debit', op: 'action', cause: expect.stringMatching(/^DiagController\.debit failed \(HTTP 401\): .*token/) })]);
      expect(calls.debit ?? []).not.toContain(error.gid);
    } finally {
      await new Promise<void>((done) => proxy.close(() => done()));
    }
  });
});

describe('start-up barrier check', () => {
  it('a barrier database that does not answer at start-up is a warning, not a failed start (it may come up later)', async () => {
    const dead = new pg.Pool({ connectionString: `postgres://nobody@127.0.0.1:${await freePort()}/none`, max: 1, connectionTimeoutMillis: 2000 });
    try {
      const app = await diagApp({ barrierTable: 'diag_any.barrier' }, { vault: dead });
      expect(app.logger.warnings).toContainEqual(expect.stringMatching(/^could not check the barrier table diag_any\.barrier on barrier connection "pg": .*ECONNREFUSED/));
    } finally {
      await dead.end();
    }
  });

  it('a barrier database and an XA database that accept the connection and never answer (a stalled server or proxy): warnings after lynx.dtm.timeout, not a start-up that never ends', async () => {
    const stalled = await startTrap({ hold: true });
    // pg's defaults: no connection timeout, no query timeout
    const vault = new pg.Pool({ connectionString: `postgres://nobody@${stalled.address}/none`, max: 1 });
    const xaClients: pg.Client[] = [];
    const xa = pgXaDatabase(async () => {
      const c = new pg.Client({ connectionString: `postgres://nobody@${stalled.address}/none` });
      xaClients.push(c);
      await c.connect();
      return c;
    });
    try {
      const started = Date.now();
      const app = await Promise.race([
        diagApp({ barrierTable: 'diag_any.barrier', timeout: 1 }, { vault, xa }),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20_000).unref()),
      ]);
      expect(app).toBeDefined();
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(app!.logger.warnings).toContainEqual(expect.stringMatching(/^could not check the barrier table diag_any\.barrier on barrier connection "pg": .*no answer within 1 s \(lynx\.dtm\.timeout\)/));
      expect(app!.logger.warnings).toContainEqual(expect.stringMatching(/^could not check max_prepared_transactions of XA database "pg" .*no answer within 1 s \(lynx\.dtm\.timeout\)/));
    } finally {
      await stalled.close();
      for (const c of xaClients) await c.end().catch(() => undefined);
      await vault.end().catch(() => undefined);
    }
  });

  it('with create_barrier_table, a barrier database that accepts the connection and never answers fails start-up after lynx.dtm.timeout with DtmUnavailableError naming the connection', async () => {
    const stalled = await startTrap({ hold: true });
    const vault = new pg.Pool({ connectionString: `postgres://nobody@${stalled.address}/none`, max: 1 });
    try {
      const started = Date.now();
      const error = await Promise.race([
        diagApp({ barrierTable: 'diag_any.barrier', timeout: 1, createBarrierTable: true }, { vault }).then(() => 'started', (e: unknown) => e),
        new Promise<string>((resolve) => setTimeout(() => resolve('hung'), 20_000).unref()),
      ]);
      expect(error).toBeInstanceOf(DtmUnavailableError);
      expect((error as Error).message).toMatch(/^could not create the barrier table diag_any\.barrier on barrier connection "pg" \(lynx\.dtm\.create_barrier_table\): no answer within 1 s/);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await stalled.close();
      await vault.end().catch(() => undefined);
    }
  });
});

describe('start-up ping', () => {
  it('passes against the real DTM, and fails start-up after its attempts when nothing answers', async () => {
    await diagApp({ startupPing: true });
    const dead = await freePort();
    const started = Date.now();
    let error: unknown;
    try {
      await diagApp({ serverUrl: `http://127.0.0.1:${dead}/api/dtmsvr`, startupPing: true, startupPingAttempts: 3, startupPingDelay: 0.2 });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(DtmUnavailableError);
    expect((error as Error).message).toMatch(/^DTM did not answer the start-up ping \(lynx\.dtm\.startup_ping\) after 3 attempts: .*ECONNREFUSED/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
  });

  it('stops when the app is closed while it retries: start-up fails at once, and DTM is not called after the close', async () => {
    const trap = await startTrap(); // a DTM that accepts and closes: every ping fails fast
    @Module({ imports: [DtmModule.forRoot({ config: { serverUrl: trap.url, startupPing: true, startupPingAttempts: 1000, startupPingDelay: 0.3, timeout: 2 } })] })
    class PingModule {}
    const module = await Test.createTestingModule({ imports: [PingModule] }).compile();
    const app = module.createNestApplication({ forceCloseConnections: true });
    const logger = new CapturingLogger();
    app.useLogger(logger);
    let settled: { error?: unknown } | undefined;
    void app.init().then(
      () => (settled = {}),
      (error: unknown) => (settled = { error }),
    );
    try {
      await waitUntil('a start-up ping retried', () => Promise.resolve(logger.warnings.some((w) => w.includes('(attempt 2 of 1000)'))), { timeoutMs: 20_000 });
      await app.close();
      const atClose = trap.connections;
      // before: the pings went on (attempt after attempt, 0.3 s apart, for up to 1000 x (0.3 s + timeout)) and the start-up never ended
      await waitUntil('the start-up ended', () => Promise.resolve(settled !== undefined), { timeoutMs: 5_000 }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(trap.connections - atClose).toBeLessThanOrEqual(1); // at most the ping in flight at the close
      expect(settled?.error).toBeInstanceOf(DtmUnavailableError);
      expect((settled?.error as Error).message).toMatch(/^the app closed during the start-up ping \(lynx\.dtm\.startup_ping\), at attempt \d+ of 1000: DTM did not answer/);
    } finally {
      await trap.close();
    }
  });
});

/** Sends `count` forged branch calls (POST `body` to `url(i)`, without a token), 50 at a time; their statuses. */
async function forgedCalls(count: number, url: (i: number) => string, body: string): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i += 50) {
    statuses.push(...(await Promise.all(Array.from({ length: 50 }, (_, j) => fetch(url(i + j), { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then((r) => r.status)))));
  }
  return statuses;
}

/** A module talking to DTM with `config` (the defaults where not given), and its start-up warnings. */
async function warningsApp(config: DtmConfigInput): Promise<{ client: DtmClient; warnings: string[] }> {
  @Module({ imports: [DtmModule.forRoot({ config })] })
  class WarningsDtmModule {}
  const module = await Test.createTestingModule({ imports: [WarningsDtmModule] }).compile();
  const app = module.createNestApplication({ forceCloseConnections: true });
  const logger = new CapturingLogger();
  app.useLogger(logger);
  apps.push(app);
  await app.init();
  return { client: app.get(DtmClient), warnings: logger.warnings };
}

describe('server_url left at its default beside grpc_server', () => {
  const grpcApp = warningsApp;
  const defaultUrl = 'http://localhost:36789/api/dtmsvr';

  it('warns at start-up, naming server_url: the transactions go to grpc_server, but query, the waits and ping to localhost', async () => {
    const { client, warnings } = await grpcApp({ protocol: 'grpc', grpcServer: harness().dtm.grpcAddress, timeout: 2 });
    // the trap: the saga is taken over gRPC (DTM holds it), the wait for it asks localhost, where DTM is not
    const gid = await client.generateGid();
    await client.newSaga(gid).add(`${harness().dtm.serverUrl}/no-such-branch`, `${harness().dtm.serverUrl}/no-such-branch`, { a: 1 }).submit();
    expect((await queryTrans(gid)).transaction?.protocol).toBe('grpc');
    // asked at localhost:36789: nothing there (DtmUnavailableError), or, as once in a clean-clone CI, a test's
    // own server given that port by listen(0) (36789 is in Linux's ephemeral range), which is not DTM (DtmServerError)
    const error = await client.query(gid).catch((err: unknown) => err);
    expect([error instanceof DtmUnavailableError || error instanceof DtmServerError, (error as Error).message]).toEqual([true, expect.stringContaining('localhost:36789')]);
    await dtmPost('/forceStop', { gid });
    // before: no word at start-up
    const warned = warnings.filter((w) => w.includes('lynx.dtm.server_url'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain(`lynx.dtm.grpc_server is ${harness().dtm.grpcAddress}`);
    expect(warned[0]).toContain(defaultUrl);
    expect(warned[0]).toMatch(/query\(\), list\(\), forceStop\(\), the waits .*ping\(\), startup_ping and the health indicator/);
  });

  it('does not warn when server_url is set, or when both are left at their defaults (one DTM on this host)', async () => {
    const set = await grpcApp({ protocol: 'grpc', grpcServer: harness().dtm.grpcAddress, serverUrl: harness().dtm.serverUrl });
    expect(set.warnings.filter((w) => w.includes('lynx.dtm.server_url'))).toEqual([]);
    const defaults = await grpcApp({ protocol: 'grpc' });
    expect(defaults.warnings.filter((w) => w.includes('lynx.dtm.server_url'))).toEqual([]);
  });
});

describe('grpc_server left at its default beside server_url, with protocol grpc', () => {
  /** A module with `config` and its start-up warnings that name grpc_server. */
  async function grpcApp(config: DtmConfigInput): Promise<{ client: DtmClient; warned: string[] }> {
    const { client, warnings } = await warningsApp(config);
    return { client, warned: warnings.filter((w) => w.includes('lynx.dtm.grpc_server is not set')) };
  }

  it('warns at start-up, naming grpc_server: query and the waits reach server_url, the transactions go to localhost:36790', async () => {
    const { client, warned } = await grpcApp({ protocol: 'grpc', serverUrl: harness().dtm.serverUrl, timeout: 2 });
    // the trap: the saga never reaches server_url's DTM, whatever localhost:36790 makes of it
    const gid = `grpc-server-default-${randomBytes(6).toString('hex')}`;
    await client.newSaga(gid).add(`${harness().dtm.serverUrl}/no-such-branch`, `${harness().dtm.serverUrl}/no-such-branch`, { a: 1 }).submit().catch(() => undefined);
    expect((await queryTrans(gid)).transaction).toBeFalsy();
    // before: no word at start-up
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain(`lynx.dtm.server_url is ${harness().dtm.serverUrl}`);
    expect(warned[0]).toContain('its default localhost:36790');
    expect(warned[0]).toContain('Set lynx.dtm.grpc_server');
  });

  it('does not warn when grpc_server is set, with protocol http, or when server_url is the default DTM\'s', async () => {
    expect((await grpcApp({ protocol: 'grpc', serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress })).warned).toEqual([]);
    expect((await grpcApp({ serverUrl: harness().dtm.serverUrl })).warned).toEqual([]);
    expect((await grpcApp({ protocol: 'grpc', serverUrl: 'http://127.0.0.1:36789/api/dtmsvr' })).warned).toEqual([]);
  });
});

describe('failures give the branch\'s own message; DTM\'s text stays on the raw fields', () => {
  it("a saga's rollback reason: the branch's message, and DTM v1.19's text as rawRollbackReason", async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { port });
    const gid = await app.client.generateGid();
    const final = await app.client.newSaga(gid).add('zed', { account: 'zed' }).submitAndWait({ timeout: 10 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toBe('no account zed');
    // how DTM v1.19 forms it (dtmsvr/trans_status.go): pinned
    expect(final.rawRollbackReason).toBe(`url:http://127.0.0.1:${port}/diag/zed return failed: {"dtm_result":"FAILURE","message":"no account zed"} FAILURE`);
    expect((await queryTrans(gid)).transaction?.rollback_reason).toBe(final.rawRollbackReason);
  });

  it("a saga submitted with waitResult: DtmFailureError's message is the branch's, raw is DTM's", async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { port });
    const gid = await app.client.generateGid();
    const error = await app.client.newSaga(gid, { waitResult: true }).add('zed', { account: 'zed' }).submit().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect((error as DtmFailureError).message).toBe('no account zed');
    expect((error as DtmFailureError).raw).toContain('return failed: {"dtm_result":"FAILURE","message":"no account zed"}');
  });

  it("a TCC Try's FAILURE: the error's message and the transaction's rollback reason are the branch's; raw is the answer", async () => {
    const port = await freePort();
    const app = await diagApp({ appUrl: `http://127.0.0.1:${port}` }, { port });
    const gid = await app.client.generateGid();
    const error = await app.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ account: 'zed' }, 'hold')).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DtmFailureError);
    expect((error as DtmFailureError).message).toBe('no account zed');
    expect((error as DtmFailureError).raw).toBe('{"dtm_result":"FAILURE","message":"no account zed"}');
    const final = await app.client.waitForFinal(gid, { timeout: 10 });
    expect(final).toMatchObject({ status: 'failed', rollbackReason: 'no account zed', rawRollbackReason: 'no account zed' });
  });
});
