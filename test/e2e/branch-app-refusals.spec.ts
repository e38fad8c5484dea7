// What the app's own pipes, guards and request-scoped providers do to DTM's calls of branches
// behind the barrier and of a workflow's compensations, against the real DTM server: a
// compensation a pipe refuses (logged once, the barrier row left for a fixed deploy to run it), a
// workflow's compensation refused by a pipe or a guard, a request-scoped provider that fails, an
// interceptor that fails after the handler committed.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  BadRequestException,
  Body,
  Controller,
  Inject,
  Injectable,
  Post,
  Scope,
  SetMetadata,
  UseGuards,
  UseInterceptors,
  type CallHandler,
  type ArgumentMetadata,
  type CanActivate,
  type ExecutionContext,
  type INestApplication,
  type NestInterceptor,
  type PipeTransform,
} from '@nestjs/common';
import { REQUEST, Reflector } from '@nestjs/core';
import { GrpcMethod, Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import { recordBranchFailure, recordedBranchFailure } from '../../lib/diagnostics/branch-failures.js';
import { map } from 'rxjs';
import {
  BarrierTx,
  BranchContext,
  DtmClient,
  DtmFailureError,
  DtmModule,
  DtmOutcomeUnknownError,
  DtmWorkflow,
  DtmWorkflowPendingError,
  SagaAction,
  SagaCompensate,
  UseBarrier,
  ensureBarrierSchema,
  pgBarrierDatabase,
  type BranchInfo,
  type WorkflowContext,
} from 'nestjs-dtm';
import { fileDatabases } from '../support/databases.js';
import { testsGrpcOptions } from '../support/grpc.js';
import { cronUntilStatus, harness, queryTrans, triggerCron } from '../support/harness.js';
import { RecordingLogger } from '../support/recording-logger.js';
import { freePort } from '../support/services/process.js';
import { firstCalls } from '../support/fixtures.js';

/** The action's DTO. */
class Move {
  account!: number;
  amount!: number;
}

/** The compensation's DTO: a field the action's payload lacks (a pipe refuses it until the "fixed deploy"). */
class Refund {
  account!: number;
  amount!: number;
  reason!: string;
}

/** A validating pipe (as class-validator's ValidationPipe): Refund needs a reason, unless the app was fixed. */
class ValidateRefund implements PipeTransform {
  static fixed = false;

  transform(value: unknown, { metatype }: ArgumentMetadata): unknown {
    if (metatype !== Refund || ValidateRefund.fixed) return value;
    if (typeof (value as Partial<Refund> | undefined)?.reason !== 'string') throw new BadRequestException(['reason must be a string']);
    return value;
  }
}

let pool: pg.Pool;

/** Behind the barrier: debit, its refund validated by the pipe. */
@UseBarrier('pg')
@Controller('refusals-wallet')
class Wallet {
  static readonly calls: string[] = [];

  @Post('debit')
  @SagaAction('refusals.debit')
  async debit(@Body() m: Move & { refuse?: boolean }, @BranchContext() b: BranchInfo, @BarrierTx() tx: pg.PoolClient) {
    Wallet.calls.push(`debit ${b.gid}`);
    await tx.query('UPDATE account SET balance = balance - $1 WHERE id = $2', [m.amount, m.account]);
    if (m.refuse) throw new DtmFailureError('insufficient funds');
  }

  @Post('refund')
  @SagaCompensate('refusals.debit')
  async refund(@Body() m: Refund, @BranchContext() b: BranchInfo, @BarrierTx() tx: pg.PoolClient) {
    Wallet.calls.push(`refund ${b.gid}`);
    await tx.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
  }
}

/** A guard of the app refusing calls until the app is fixed. */
class DenyUntilFixed implements CanActivate {
  static fixed = false;

  canActivate(): boolean {
    return DenyUntilFixed.fixed;
  }
}

/** Behind the barrier: a debit whose refund a guard of the app refuses. */
@UseBarrier('pg')
@Controller('refusals-guarded')
class GuardedWallet {
  @Post('debit')
  @SagaAction('refusals.guarded')
  async debit(@Body() m: Move & { refuse?: boolean }, @BarrierTx() tx: pg.PoolClient) {
    await tx.query('UPDATE account SET balance = balance - $1 WHERE id = $2', [m.amount, m.account]);
    if (m.refuse) throw new DtmFailureError('insufficient funds');
  }

  @Post('refund')
  @UseGuards(DenyUntilFixed)
  @SagaCompensate('refusals.guarded')
  async refund(@Body() m: Move, @BarrierTx() tx: pg.PoolClient) {
    await tx.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
  }
}

/** An interceptor of the app that fails once the handler answered (an audit write, a check of the response), as the test sets per gid. */
@Injectable()
class FailAfter implements NestInterceptor {
  /** Per gid: fail the action's answer once with a plain error, or every time with a 400; or the compensation's, every time with a 400. */
  static readonly modes = new Map<string, 'error-once' | 'bad-request' | 'bad-request-undo'>();

  intercept(context: ExecutionContext, next: CallHandler) {
    const { gid, op } = context.switchToHttp().getRequest<{ query: Record<string, string> }>().query;
    return next.handle().pipe(
      map((value: unknown) => {
        const set = FailAfter.modes.get(gid);
        if (set === 'bad-request-undo') {
          if (op === 'compensate') throw new BadRequestException('the answer failed its check');
          return value;
        }
        const mode = op === 'action' ? set : undefined;
        if (mode === 'error-once') {
          FailAfter.modes.delete(gid);
          throw new Error('audit store unreachable');
        }
        if (mode === 'bad-request') throw new BadRequestException('the answer failed its check');
        return value;
      }),
    );
  }
}

/** Behind the barrier, under the interceptor that fails after it. */
@UseBarrier('pg')
@UseInterceptors(FailAfter)
@Controller('refusals-audited')
class Audited {
  static readonly calls: string[] = [];

  @Post('debit')
  @SagaAction('refusals.audited')
  async debit(@Body() m: Move & { refuse?: boolean }, @BranchContext() b: BranchInfo, @BarrierTx() tx: pg.PoolClient) {
    Audited.calls.push(`debit ${b.gid}`);
    await tx.query('UPDATE account SET balance = balance - $1 WHERE id = $2', [m.amount, m.account]);
    if (m.refuse) throw new BadRequestException(`account ${m.account} is closed`); // the handler's own 400: its write rolls back
  }

  /** The gids whose compensation the handler itself refuses (400, after its write, which rolls back). */
  static readonly refuseUndo = new Set<string>();

  @Post('credit')
  @SagaCompensate('refusals.audited')
  async credit(@Body() m: Move, @BranchContext() b: BranchInfo, @BarrierTx() tx: pg.PoolClient) {
    Audited.calls.push(`credit ${b.gid}`);
    await tx.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
    if (Audited.refuseUndo.has(b.gid)) throw new BadRequestException('the refund is not allowed');
  }
}

/** Without a local transaction, under the interceptor that fails after it: what the filter cannot tell from the handler's own 400. */
@UseInterceptors(FailAfter)
@Controller('refusals-audited-plain')
class AuditedPlain {
  static readonly calls: string[] = [];

  @Post('debit')
  @SagaAction('refusals.audited-plain')
  debit(@BranchContext() b: BranchInfo) {
    AuditedPlain.calls.push(`debit ${b.gid}`);
  }

  @Post('credit')
  @SagaCompensate('refusals.audited-plain')
  credit(@BranchContext() b: BranchInfo) {
    AuditedPlain.calls.push(`credit ${b.gid}`);
  }
}

/** A step that always refuses, its compensation a no-op. */
@Controller('refusals-fail')
class Refuser {
  @Post('try')
  @SagaAction('refusals.fail')
  refuse() {
    throw new DtmFailureError('refused by the second step');
  }

  @Post('undo')
  @SagaCompensate('refusals.fail')
  undo() {
    return undefined;
  }
}

/** A request-scoped provider whose construction fails while its database is down. */
@Injectable({ scope: Scope.REQUEST })
class TenantDb {
  static down = false;

  constructor(@Inject(REQUEST) readonly request: unknown) {
    if (TenantDb.down) throw new Error('tenant database unreachable');
  }
}

@Controller('refusals-scoped')
class Scoped {
  static readonly calls: string[] = [];

  constructor(private readonly tenant: TenantDb) {}

  @Post('act')
  @SagaAction('refusals.scoped', { compensate: false })
  act(@BranchContext() b: BranchInfo) {
    void this.tenant;
    Scoped.calls.push(b.gid);
  }
}

interface WfInput {
  base: string;
  amount: number;
  path: string;
}

@Injectable()
class Workflows {
  @DtmWorkflow('refusals.wf', { compensateFailedStep: true })
  async transfer(wf: WorkflowContext<WfInput>) {
    const { base, amount, path } = wf.input;
    await wf
      .step('debit')
      .onRollback((b) => b.http(`${base}/${path}/refund`, { account: 1, amount }))
      .http(`${base}/${path}/debit`, { account: 1, amount, refuse: true });
  }
}

const logger = new RecordingLogger();
let app: INestApplication;
let dtm: DtmClient;
let base: string;

beforeAll(async () => {
  const dbs = await fileDatabases();
  pool = new pg.Pool({ connectionString: dbs.postgres.url });
  pool.on('error', () => undefined);
  await pool.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
  await pool.query('INSERT INTO account VALUES (1, 1000)');
  await ensureBarrierSchema(pgBarrierDatabase(pool), { table: 'dtm_barrier' });
  const moduleRef = await Test.createTestingModule({
    imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, barrierTable: 'dtm_barrier' }, barrierConnections: { pg: pgBarrierDatabase(pool) } })],
    controllers: [Wallet, GuardedWallet, Refuser, Scoped, Audited, AuditedPlain],
    providers: [TenantDb, Workflows],
  }).compile();
  app = moduleRef.createNestApplication({ logger, forceCloseConnections: true });
  app.useGlobalPipes(new ValidateRefund());
  await app.listen(0, '127.0.0.1');
  dtm = app.get(DtmClient);
  base = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
});
afterAll(async () => {
  await app?.close();
  await pool?.end();
});

const balance = async () => Number((await pool.query('SELECT balance FROM account WHERE id = 1')).rows[0].balance);
const barrierRows = async (gid: string) => (await pool.query('SELECT branch_id, op, reason FROM dtm_barrier WHERE gid = $1 ORDER BY branch_id, op', [gid])).rows as unknown[];
const linesOf = (gid: string) => logger.lines.filter((l) => l.includes(gid) && !l.startsWith('log '));

it('a compensation behind the barrier whose payload the app\'s pipe refuses: the saga stays aborting, one error line, the wait\'s diagnosis says why; no barrier row of the compensation, so the fixed app\'s compensation runs and gives the money back', async () => {
  ValidateRefund.fixed = false;
  const before = await balance();
  const gid = await dtm.generateGid();
  const saga = dtm.newSaga(gid, { retryInterval: 1 }).add('refusals.debit', { account: 1, amount: 7 }).add('refusals.fail', {});
  const waited = await saga.submitAndWait({ timeout: 4 }).then(() => undefined, (e: unknown) => e);
  expect(waited).toBeInstanceOf(DtmOutcomeUnknownError);
  expect((waited as Error).message).toContain('Wallet.refund failed (HTTP 409): Wallet.refund (saga-compensate, saga gid');
  expect((waited as Error).message).toContain('a pipe refused its payload (reason must be a string), so this compensation did not run');
  // DTM's retries of the compensation, refused alike
  for (let i = 0; i < 3; i += 1) {
    await triggerCron();
    await new Promise((resolve) => setTimeout(resolve, 700));
  }
  const trans = await queryTrans(gid);
  expect(trans.transaction?.status).toBe('aborting');
  expect(trans.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`).sort()).toEqual(['01 action succeed', '01 compensate prepared', '02 action failed', '02 compensate succeed']);
  expect(await balance()).toBe(before - 7);
  expect(await barrierRows(gid)).toEqual([{ branch_id: '01', op: 'action', reason: 'action' }]);
  expect(linesOf(gid)).toEqual([expect.stringContaining(`error Wallet.refund (saga-compensate, saga gid ${gid}, branch 01, op compensate): a pipe refused its payload (reason must be a string)`)]);
  // a fixed deploy: DTM's next retry runs the compensation, once
  ValidateRefund.fixed = true;
  await cronUntilStatus(gid, 'failed');
  expect(await balance()).toBe(before);
  expect(Wallet.calls.filter((c) => c.endsWith(gid))).toEqual([`debit ${gid}`, `refund ${gid}`]);
  expect(await barrierRows(gid)).toEqual([
    { branch_id: '01', op: 'action', reason: 'action' },
    { branch_id: '01', op: 'compensate', reason: 'compensate' },
  ]);
  ValidateRefund.fixed = false;
}, 70_000);

describe('a workflow with compensateFailedStep whose failed step\'s compensation the app refuses', () => {
  it('by a pipe: the workflow stays pending (DTM holds it prepared); executeWorkflow and the one error line say why, as for a workflow (its callback\'s payload, resent at every resume; not "aborting"); fixed, DTM\'s resume ends it failed, the compensation a null one', async () => {
    ValidateRefund.fixed = false;
    const before = await balance();
    const gid = await dtm.generateGid();
    const error = await dtm.executeWorkflow('refusals.wf', gid, { base, amount: 3, path: 'refusals-wallet' }, { retryInterval: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmWorkflowPendingError);
    expect((error as Error).message).toContain('the rollback callback of step "debit" threw DtmFailureError (invalid payload for Wallet.refund: reason must be a string)');
    const trans = await queryTrans(gid);
    expect(trans.transaction?.status).toBe('prepared');
    expect(trans.branches.map((b) => `${b.branch_id} ${b.op} ${b.status}`)).toEqual(['01 action failed']);
    const errors = linesOf(gid).filter((l) => l.startsWith('error '));
    expect(errors).toEqual([expect.stringContaining(`error Wallet.refund (saga-compensate, workflow gid ${gid}, branch 01, op rollback): a pipe refused its payload (reason must be a string), so this compensation did not run`)]);
    expect(errors[0]).toContain("The workflow's onRollback callback of this step sent that payload and sends it again at every resume");
    expect(errors[0]).toContain('the workflow stays pending (DTM holds it prepared, executeWorkflow throws DtmWorkflowPendingError)');
    expect(errors[0]).not.toContain('the payload of its action');
    expect(errors[0]).not.toContain('aborting');
    ValidateRefund.fixed = true;
    await cronUntilStatus(gid, 'failed');
    // the action's debit rolled back with its FAILURE; its compensation, behind the barrier, a null one
    expect(await balance()).toBe(before);
    expect(await barrierRows(gid)).toEqual([
      { branch_id: '01', op: 'action', reason: 'rollback' },
      { branch_id: '01', op: 'rollback', reason: 'rollback' },
    ]);
    ValidateRefund.fixed = false;
  }, 60_000);

  it('by a guard of the app (403): the workflow stays pending, executeWorkflow names the 403; let through, DTM\'s resume ends it failed', async () => {
    DenyUntilFixed.fixed = false;
    const before = await balance();
    const gid = await dtm.generateGid();
    const error = await dtm.executeWorkflow('refusals.wf', gid, { base, amount: 3, path: 'refusals-guarded' }, { retryInterval: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DtmWorkflowPendingError);
    expect((error as Error).message).toContain(`${base}/refusals-guarded/refund answered HTTP 403`);
    expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
    DenyUntilFixed.fixed = true;
    await cronUntilStatus(gid, 'failed');
    expect(await balance()).toBe(before);
    expect(await barrierRows(gid)).toEqual([
      { branch_id: '01', op: 'action', reason: 'rollback' },
      { branch_id: '01', op: 'rollback', reason: 'rollback' },
    ]);
  }, 60_000);
});

it('a request-scoped provider Nest cannot make for a branch call: an error DTM retries (never FAILURE), logged and diagnosed with the call (before: a bare stack, and "POST answered 500: Internal server error"); once it can, the retry runs the handler', async () => {
  TenantDb.down = true;
  const gid = await dtm.generateGid();
  const waited = await dtm.newSaga(gid, { retryInterval: 1 }).add('refusals.scoped', {}).submitAndWait({ timeout: 4 }).then(() => undefined, (e: unknown) => e);
  expect(waited).toBeInstanceOf(DtmOutcomeUnknownError);
  expect((waited as Error).message).toContain('the branch call to /refusals-scoped/act, before its handler and the module\'s checks ran (a request-scoped controller or provider Nest could not make for it, or a guard of the app ahead of the module\'s), failed (HTTP 500): tenant database unreachable');
  const trans = await queryTrans(gid);
  expect(trans.transaction?.status).toBe('submitted');
  const lines = linesOf(gid);
  expect(lines.length).toBeGreaterThanOrEqual(1);
  expect(lines[0]).toContain(`error the branch call to /refusals-scoped/act, before its handler`);
  expect(lines[0]).toContain(`failed (http, saga gid ${gid}, branch 01, op action); DTM will retry the call: Error: tenant database unreachable`);
  expect(Scoped.calls).not.toContain(gid);
  TenantDb.down = false;
  await cronUntilStatus(gid, 'succeed');
  expect(Scoped.calls.filter((c) => c === gid).length).toBeGreaterThanOrEqual(1);
}, 60_000);

it("calls with made-up gids failing the same way (600, more than the 500 failures kept) push out no handler's failure kept for another transaction's diagnosis: nothing of them was checked, they are kept apart", async () => {
  const real = `real-${await dtm.generateGid()}`;
  // a handler's failure, as the filter keeps it for DTM's call of another transaction
  recordBranchFailure(real, '01', 'action', { handler: 'Wallet.debit', status: 500, message: 'ledger offline' });
  TenantDb.down = true;
  try {
    const forged = (i: number) => {
      const send = () =>
        fetch(`${base}/refusals-scoped/act?${new URLSearchParams({ gid: `${real}-forged-${i}`, trans_type: 'saga', branch_id: '01', op: 'action' })}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then((r) => r.status);
      // a pooled keep-alive connection the app closed as fetch reused it (a loaded machine: "read ECONNRESET"): sent again, once
      return send().catch((e: unknown) => ((e as { cause?: { code?: string } }).cause?.code === 'ECONNRESET' ? send() : Promise.reject(e)));
    };
    const statuses: number[] = [];
    for (let i = 0; i < 600; i += 50) statuses.push(...(await Promise.all(Array.from({ length: 50 }, (_, j) => forged(i + j)))));
    expect([...new Set(statuses)]).toEqual([500]);
  } finally {
    TenantDb.down = false;
  }
  expect(recordedBranchFailure(real, '01', 'action')).toMatchObject({ handler: 'Wallet.debit', message: 'ledger offline' });
  // such a call is still kept for its own diagnosis (the last 500 of them)
  expect(recordedBranchFailure(`${real}-forged-599`, '01', 'action')?.message).toBe('tenant database unreachable');
  expect(recordedBranchFailure(`${real}-forged-0`, '01', 'action')).toBeUndefined();
}, 60_000);

it('a call failing that way with a made-up op of 8 000 characters holding CR / LF: its error line shows the op quoted and cut to 200 characters, on one line', async () => {
  const gid = `long-op-${await dtm.generateGid()}`;
  const op = `${'o'.repeat(8000)}\r\nerror forged line`;
  TenantDb.down = true;
  try {
    const res = await fetch(`${base}/refusals-scoped/act?${new URLSearchParams({ gid, trans_type: 'saga', branch_id: '01', op })}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(500);
  } finally {
    TenantDb.down = false;
  }
  const lines = linesOf(gid);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(`failed (http, saga gid ${gid}, branch 01, op "${'o'.repeat(200)}…"); DTM will retry the call: Error: tenant database unreachable`);
  expect(lines[0]).not.toContain('o'.repeat(201));
  expect(lines[0]).not.toMatch(/[\r\n]error forged/);
});

describe('an interceptor of the app that fails after a handler behind the barrier committed', () => {
  it('with a plain error, once: DTM retries, the barrier skips the repeat (the debit applied once), the saga succeeds', async () => {
    const before = await balance();
    const gid = await dtm.generateGid();
    FailAfter.modes.set(gid, 'error-once');
    await dtm.newSaga(gid, { retryInterval: 1 }).add('refusals.audited', { account: 1, amount: 5 }).submit();
    await cronUntilStatus(gid, 'succeed');
    expect(await balance()).toBe(before - 5);
    expect(Audited.calls.filter((c) => c.endsWith(gid))).toEqual([`debit ${gid}`]);
    expect(await barrierRows(gid)).toEqual([{ branch_id: '01', op: 'action', reason: 'action' }]);
    expect(linesOf(gid)).toEqual([expect.stringContaining('Audited.debit failed (http, saga gid')]);
  }, 60_000);

  it('with a 400: answered FAILURE; DTM rolls back and the compensation gives back what the action committed, the rollback reason saying the app refused the answer after the action ran (before: "invalid payload for ...", while the payload had passed)', async () => {
    const before = await balance();
    const gid = await dtm.generateGid();
    FailAfter.modes.set(gid, 'bad-request');
    const final = await dtm.newSaga(gid, { retryInterval: 1 }).add('refusals.audited', { account: 1, amount: 5 }).submitAndWait({ timeout: 15 });
    FailAfter.modes.delete(gid);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toBe(
      'the app refused the answer of Audited.debit after it ran: an interceptor answered 400 (the answer failed its check) once its local transaction was done (committed, an XA branch prepared, or a call its barrier skipped); answered FAILURE, so DTM rolls the transaction back, undoing what it did',
    );
    expect(await balance()).toBe(before);
    expect(Audited.calls.filter((c) => c.endsWith(gid))).toEqual([`debit ${gid}`, `credit ${gid}`]);
  }, 60_000);

  it("the handler's own 400 (its write rolled back) is still the refusal of its payload, not the interceptor's: 'invalid payload for ...'", async () => {
    const before = await balance();
    const gid = await dtm.generateGid();
    const final = await dtm.newSaga(gid, { retryInterval: 1 }).add('refusals.audited', { account: 1, amount: 5, refuse: true }).submitAndWait({ timeout: 15 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toBe('invalid payload for Audited.debit: account 1 is closed');
    expect(await balance()).toBe(before);
    // the action's row rolled back with its write: the compensation found none (a null compensation, which writes both rows)
    expect(await barrierRows(gid)).toEqual([
      { branch_id: '01', op: 'action', reason: 'compensate' },
      { branch_id: '01', op: 'compensate', reason: 'compensate' },
    ]);
  }, 60_000);

  it('without a local transaction, where the module cannot tell the handler\'s own 400 from an interceptor\'s after it, the rollback reason says both, never "invalid payload": the handler ran', async () => {
    const gid = await dtm.generateGid();
    FailAfter.modes.set(gid, 'bad-request');
    const final = await dtm.newSaga(gid, { retryInterval: 1 }).add('refusals.audited-plain', {}).submitAndWait({ timeout: 15 });
    FailAfter.modes.delete(gid);
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toBe(
      "AuditedPlain.debit ran and was answered 400 (the answer failed its check): the handler's own refusal, or an interceptor of the app refusing its answer after it ran; answered FAILURE, so DTM rolls the transaction back",
    );
    expect(firstCalls(AuditedPlain.calls.filter((c) => c.endsWith(gid)))).toEqual([`debit ${gid}`, `credit ${gid}`]); // no barrier: DTM's calls, each at least once
  }, 60_000);
});

describe('an interceptor of the app that refuses, with a 400, the answer of a compensation behind the barrier', () => {
  it('the error line says the compensation ran and its local transaction committed, the interceptor refusing its answer (before: "a pipe refused its payload ..., so this compensation did not run"); let through, DTM\'s retry ends the saga failed, the compensation applied once', async () => {
    const before = await balance();
    const gid = await dtm.generateGid();
    FailAfter.modes.set(gid, 'bad-request-undo');
    const waited = await dtm.newSaga(gid, { retryInterval: 1 }).add('refusals.audited', { account: 1, amount: 4 }).add('refusals.fail', {}).submitAndWait({ timeout: 4 }).then(() => undefined, (e: unknown) => e);
    expect(waited).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((await queryTrans(gid)).transaction?.status).toBe('aborting');
    // the compensation ran and committed: the money is back, its barrier row written
    expect(await balance()).toBe(before);
    expect(Audited.calls.filter((c) => c.endsWith(gid))).toEqual([`debit ${gid}`, `credit ${gid}`]);
    expect(await barrierRows(gid)).toEqual([
      { branch_id: '01', op: 'action', reason: 'action' },
      { branch_id: '01', op: 'compensate', reason: 'compensate' },
    ]);
    const errors = linesOf(gid).filter((l) => l.startsWith('error '));
    expect(errors).toEqual([
      `error Audited.credit (saga-compensate, saga gid ${gid}, branch 01, op compensate): its handler ran (behind a barrier: its local transaction committed, or the barrier skipped a compensation already done), and then an interceptor of the app answered its answer with 400 (the answer failed its check): the module answers that FAILURE, which a compensation cannot roll back, so DTM retries the call until it answers success and the saga stays aborting (the compensations of the steps before it wait behind this one), for as long as the interceptor refuses the answer. Fix the interceptor: let DTM's branch calls through (isDtmBranchHandler). Logged once per transaction and branch (later refusals at debug level)`,
    ]);
    expect(errors[0]).not.toContain('did not run');
    FailAfter.modes.delete(gid);
    await cronUntilStatus(gid, 'failed');
    expect(await balance()).toBe(before);
    expect(Audited.calls.filter((c) => c.endsWith(gid))).toEqual([`debit ${gid}`, `credit ${gid}`]);
  }, 60_000);
});

describe('a compensation behind the barrier whose handler refuses its call with a 400 itself', () => {
  it('the error line says the handler refused it and its local transaction rolled back (before: "its handler ran (behind a barrier: its local transaction committed ...), and then an interceptor of the app answered its answer with 400"); once it lets the call through, DTM\'s retry ends the saga failed, the money given back once', async () => {
    const before = await balance();
    const gid = await dtm.generateGid();
    Audited.refuseUndo.add(gid);
    const waited = await dtm.newSaga(gid, { retryInterval: 1 }).add('refusals.audited', { account: 1, amount: 4 }).add('refusals.fail', {}).submitAndWait({ timeout: 4 }).then(() => undefined, (e: unknown) => e);
    expect(waited).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((await queryTrans(gid)).transaction?.status).toBe('aborting');
    // the compensation's write rolled back with its barrier row: the money is still out
    expect(await balance()).toBe(before - 4);
    expect(await barrierRows(gid)).toEqual([{ branch_id: '01', op: 'action', reason: 'action' }]);
    const errors = linesOf(gid).filter((l) => l.startsWith('error '));
    expect(errors).toEqual([
      `error Audited.credit (saga-compensate, saga gid ${gid}, branch 01, op compensate): its handler answered 400 itself (the refund is not allowed), which rolled its local transaction back, so this compensation did not apply: the module answers that FAILURE, which a compensation cannot roll back, so DTM retries the call until it answers success and the saga stays aborting (the compensations of the steps before it wait behind this one), for as long as the handler refuses it. Fix the handler: a compensation must not refuse its call (DTM sends it the payload of its action, the same at every retry): answer success when there is nothing to undo, or throw an error DTM retries while it cannot undo yet. Logged once per transaction and branch (later refusals at debug level)`,
    ]);
    Audited.refuseUndo.delete(gid);
    await cronUntilStatus(gid, 'failed');
    expect(await balance()).toBe(before);
  }, 60_000);
});

describe('over gRPC', () => {
  @Controller()
  class ScopedGrpc {
    static readonly calls: string[] = [];

    constructor(private readonly tenant: TenantDb) {}

    @GrpcMethod('Shop', 'Reserve')
    @SagaAction('refusals.scoped-grpc', { compensate: false })
    reserve(@Payload() _item: unknown, @BranchContext() b: BranchInfo) {
      void this.tenant;
      ScopedGrpc.calls.push(b.gid);
      return {};
    }
  }

  it('a request-scoped provider Nest cannot make for a gRPC branch call: an error DTM retries, logged and diagnosed with the call; once it can, the retry runs the handler', async () => {
    const grpcAddress = `127.0.0.1:${await freePort()}`;
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, grpcServer: harness().dtm.grpcAddress, grpcAppAddress: grpcAddress } })],
      controllers: [ScopedGrpc],
      providers: [TenantDb],
    }).compile();
    const grpcApp = moduleRef.createNestApplication({ logger, forceCloseConnections: true });
    grpcApp.connectMicroservice(testsGrpcOptions(grpcAddress), { inheritAppConfig: true });
    await grpcApp.startAllMicroservices();
    await grpcApp.listen(0, '127.0.0.1');
    try {
      TenantDb.down = true;
      const client = grpcApp.get(DtmClient);
      const gid = await client.generateGid();
      const waited = await client.newSaga(gid, { protocol: 'grpc', retryInterval: 1 }).add('refusals.scoped-grpc', {}).submitAndWait({ timeout: 4 }).then(() => undefined, (e: unknown) => e);
      expect(waited).toBeInstanceOf(DtmOutcomeUnknownError);
      expect((waited as Error).message).toContain("the branch call to /tests.Shop/Reserve, before its handler and the module's checks ran");
      expect((waited as Error).message).toContain('failed (gRPC status 13): tenant database unreachable');
      expect((await queryTrans(gid)).transaction?.status).toBe('submitted');
      expect(linesOf(gid)[0]).toContain(`failed (grpc, saga gid ${gid}, branch 01, op action); DTM will retry the call: Error: tenant database unreachable`);
      TenantDb.down = false;
      await cronUntilStatus(gid, 'succeed');
      expect(ScopedGrpc.calls).toContain(gid);
    } finally {
      TenantDb.down = false;
      await grpcApp.close();
    }
  }, 60_000);
});

describe('a guard of the app reading its metadata with Reflector', () => {
  const IS_PUBLIC = 'refusals:public';
  const Public = () => SetMetadata(IS_PUBLIC, true);

  /** An auth guard as Nest's docs write it: a route marked @Public() passes, any other needs credentials DTM never sends. */
  @Injectable()
  class AuthGuard implements CanActivate {
    constructor(private readonly reflector: Reflector) {}

    canActivate(context: ExecutionContext): boolean {
      return this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()]) === true;
    }
  }

  /** Behind the barrier (the class decorator wraps the handlers again), @Public() written above and below the branch decorators. */
  @UseBarrier('pg')
  @UseGuards(AuthGuard)
  @Controller('refusals-public')
  class PublicWallet {
    static readonly calls: string[] = [];

    @Public()
    @Post('debit')
    @SagaAction('refusals.public')
    debit(@BranchContext() b: BranchInfo) {
      PublicWallet.calls.push(`debit ${b.gid}`);
    }

    @Post('credit')
    @SagaCompensate('refusals.public')
    @Public()
    credit(@BranchContext() b: BranchInfo) {
      PublicWallet.calls.push(`credit ${b.gid}`);
    }

    @Post('refuse')
    @SagaAction('refusals.public-refuse')
    @Public()
    refuse() {
      throw new DtmFailureError('refused');
    }

    @Public()
    @Post('refuse-undo')
    @SagaCompensate('refusals.public-refuse')
    undo() {
      return undefined;
    }
  }

  it('@Public() above or below the branch decorator, on a controller behind @UseBarrier: the guard sees it on every handler; the saga rolls back through both', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, barrierTable: 'dtm_barrier' }, barrierConnections: { pg: pgBarrierDatabase(pool) } })],
      controllers: [PublicWallet],
      providers: [AuthGuard],
    }).compile();
    const publicApp = moduleRef.createNestApplication({ logger, forceCloseConnections: true });
    await publicApp.listen(0, '127.0.0.1');
    try {
      const client = publicApp.get(DtmClient);
      const gid = await client.generateGid();
      const final = await client.newSaga(gid).add('refusals.public', {}).add('refusals.public-refuse', {}).submitAndWait({ timeout: 10 });
      expect(final.status).toBe('failed');
      expect(final.rollbackReason).toContain('refused');
      expect(new Set(PublicWallet.calls.filter((c) => c.endsWith(gid)))).toEqual(new Set([`debit ${gid}`, `credit ${gid}`]));
    } finally {
      await publicApp.close();
    }
  }, 60_000);
});
