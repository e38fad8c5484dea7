// A Nest app whose branches are written with the decorators, for test/e2e/branches.spec.ts. Each
// handler records what it received and does what the test scripted for its next call.
import 'reflect-metadata';
import type { IncomingHttpHeaders } from 'node:http';
import { Body, ConflictException, Controller, Get, Headers, HttpCode, Injectable, Post, Query, ServiceUnavailableException, VersioningType, type INestApplication, type LoggerService, type Provider } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { from, ignoreElements } from 'rxjs';
import { Test } from '@nestjs/testing';
import {
  BranchContext,
  DtmClient,
  DtmFailureError,
  DtmModule,
  DtmOngoingError,
  MsgBranch,
  MsgQueryPrepared,
  SagaAction,
  SagaCompensate,
  TccCancel,
  TccConfirm,
  TccTry,
  XaBranch,
  type BranchInfo,
  type DtmConfigInput,
} from 'nestjs-dtm';
import { harness } from '../support/harness.js';
import { keepConnectionsForDtm } from '../support/dtm-keep-alive.js';

/** What the next call of a handler does. */
export type Outcome = 'ok' | 'failure' | 'ongoing' | 'error' | 'failure-ongoing' | 'unavailable-saying-failure' | 'failure-long' | 'throw-no-prototype' | 'throw-bad-tostring' | 'failure-quotes' | 'conflict-long';

/** One call a decorated handler received. */
export interface HandlerCall {
  handler: string;
  body: unknown;
  branch: BranchInfo;
  /** Every inbound header (to prove what was and was not passed through). */
  headers: IncomingHttpHeaders;
}

/** Shared test state: balances, scripted outcomes, received calls. */
@Injectable()
export class Ledger {
  balances = new Map<string, number>();
  calls: HandlerCall[] = [];
  private scripts = new Map<string, Outcome[]>();

  reset(): void {
    this.balances = new Map([
      ['alice', 100],
      ['bob', 0],
    ]);
    this.calls = [];
    this.scripts.clear();
  }

  script(handler: string, ...outcomes: Outcome[]): void {
    this.scripts.set(handler, outcomes);
  }

  /** Records the call and applies the scripted outcome (throws for failure / ongoing / error). */
  enter(handler: string, body: unknown, branch: BranchInfo, headers: IncomingHttpHeaders): void {
    this.calls.push({ handler, body, branch, headers });
    const outcome = this.scripts.get(handler)?.shift() ?? 'ok';
    if (outcome === 'failure') throw new DtmFailureError(`${handler} refused: account frozen`);
    if (outcome === 'failure-ongoing') throw new DtmFailureError(`${handler} refused: review ONGOING`);
    if (outcome === 'failure-long') throw new DtmFailureError(`${handler} refused: "limits" 😀 ${'line over its limit; '.repeat(80)}`);
    if (outcome === 'failure-quotes') throw new DtmFailureError(`${handler} refused: ${'"'.repeat(1500)}`); // its 409 body twice as long: each quote escaped
    if (outcome === 'conflict-long') throw new ConflictException(`${handler} conflicts: "limits" 😀 ${'line over its limit; '.repeat(95)}`); // an app's own 409 of some 2000 characters
    if (outcome === 'ongoing') throw new DtmOngoingError(`${handler} not ready`);
    if (outcome === 'error') throw new Error(`${handler} crashed`);
    // values that are no Error and that String() cannot convert (it throws a TypeError, or what toString throws)
    if (outcome === 'throw-no-prototype') throw Object.assign(Object.create(null) as object, { handler });
    if (outcome === 'throw-bad-tostring') throw { toString: () => { throw new Error('toString broke'); } };
    if (outcome === 'unavailable-saying-failure') throw new ServiceUnavailableException(`${handler}: the card gateway answered FAILURE, try later`);
  }

  callsOf(gid: string): HandlerCall[] {
    return this.calls.filter((c) => c.branch.gid === gid);
  }

  add(account: string, delta: number): void {
    this.balances.set(account, (this.balances.get(account) ?? 0) + delta);
  }
}

interface Transfer {
  amount: number;
}

@Controller({ path: 'bank', version: '1' })
class BankController {
  constructor(private readonly ledger: Ledger) {}

  @Post('trans-out')
  @SagaAction('transOut')
  transOut(@Body() body: Transfer, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('transOut', body, branch, headers);
    this.ledger.add('alice', -body.amount);
    return { ok: true };
  }

  @Post('trans-out-compensate')
  @SagaCompensate('transOut')
  transOutCompensate(@Body() body: Transfer, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('transOutCompensate', body, branch, headers);
    this.ledger.add('alice', body.amount);
  }

  @Post('trans-in')
  @SagaAction('transIn')
  transIn(@Body() body: Transfer, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('transIn', body, branch, headers);
    this.ledger.add('bob', body.amount);
  }

  @Post('trans-in-compensate')
  @SagaCompensate('transIn')
  transInCompensate(@Body() body: Transfer, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('transInCompensate', body, branch, headers);
    this.ledger.add('bob', -body.amount);
  }

  /** A step whose account is in its target's query (`/credit?account=bob`), as an AP may register it: the handler reads it. */
  @Post('credit')
  @SagaAction('credit', { compensate: false })
  credit(@Body() body: Transfer, @Query('account') account: string, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter(`credit ${account}`, body, branch, headers);
    this.ledger.add(account, body.amount);
  }

  /** A step without compensation, stated on purpose. */
  @Post('audit')
  @SagaAction('audit', { compensate: false })
  audit(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('audit', body, branch, headers);
    return { audited: true };
  }

  /** Does its work in an Observable that completes without a value. */
  @Post('quiet')
  @SagaAction('quiet', { compensate: false })
  quiet(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    return from(Promise.resolve(this.ledger.enter('quiet', body, branch, headers))).pipe(ignoreElements());
  }

  /** Answers FAILURE in DTM's result protocol before v1.10 (a `dtm_result` body), which DTM v1.19 still reads. */
  @Post('old-protocol')
  @SagaAction('oldProtocol', { compensate: false })
  oldProtocol(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('oldProtocol', body, branch, headers);
    return { dtm_result: 'FAILURE', message: 'card declined' };
  }

  /** Returns a body DTM would misread. */
  @Post('chatty')
  @SagaAction('chatty', { compensate: false })
  chatty(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('chatty', body, branch, headers);
    return { note: 'no FAILURE here' };
  }
}

@Controller('inventory')
class InventoryController {
  constructor(
    private readonly ledger: Ledger,
    private readonly dtm: DtmClient,
  ) {}

  @Post('try')
  @TccTry('inventory')
  try(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('inventoryTry', body, branch, headers);
    return { reserved: true };
  }

  @Post('confirm')
  @TccConfirm('inventory')
  confirm(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('inventoryConfirm', body, branch, headers);
  }

  @Post('cancel')
  @TccCancel('inventory')
  cancel(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('inventoryCancel', body, branch, headers);
  }

  /** A Try that registers two sub-branches of its own branch (nested TCC). */
  @Post('order-try')
  @TccTry('order')
  async orderTry(@Body() body: { items: string[] }, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('orderTry', body, branch, headers);
    const tcc = this.dtm.tccFromBranch(branch);
    for (const item of body.items) await tcc.callBranch({ item }, 'inventory');
    return { items: body.items.length };
  }

  /** A Try that registers a sub-branch `order` of its own branch, which nests again (nested TCC, two levels). */
  @Post('bundle-try')
  @TccTry('bundle')
  async bundleTry(@Body() body: { items: string[] }, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('bundleTry', body, branch, headers);
    await this.dtm.tccFromBranch(branch).callBranch({ items: body.items }, 'order');
  }

  @Post('bundle-confirm')
  @TccConfirm('bundle')
  bundleConfirm(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('bundleConfirm', body, branch, headers);
  }

  @Post('bundle-cancel')
  @TccCancel('bundle')
  bundleCancel(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('bundleCancel', body, branch, headers);
  }

  @Post('order-confirm')
  @TccConfirm('order')
  orderConfirm(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('orderConfirm', body, branch, headers);
  }

  @Post('order-cancel')
  @TccCancel('order')
  orderCancel(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('orderCancel', body, branch, headers);
  }
}

@Controller('outbox')
class OutboxController {
  constructor(private readonly ledger: Ledger) {}

  @Post('notify')
  @MsgBranch('notify')
  notify(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('notify', body, branch, headers);
  }

  @Get('query-prepared')
  @MsgQueryPrepared('order')
  queryPrepared(@BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter('queryPrepared', undefined, branch, headers);
  }

  /** An XA branch that registers itself with DTM before answering the action, as DTM's Go SDK does. */
  @Post('xa')
  @XaBranch('bank')
  async xa(@Body() body: unknown, @BranchContext() branch: BranchInfo, @Headers() headers: IncomingHttpHeaders) {
    this.ledger.enter(`xa-${branch.op}`, body, branch, headers);
    if (branch.op !== 'action') return;
    const res = await fetch(`${branch.dtm}/registerBranch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ gid: branch.gid, trans_type: 'xa', branch_id: branch.branchId, url: branch.phase2Url }),
    });
    if (res.status !== 200) throw new Error(`registerBranch answered ${res.status}`);
  }
}

/** Plain (undecorated) endpoints that start transactions while serving a request. */
@Controller('start')
class StartController {
  constructor(private readonly dtm: DtmClient) {}

  @Post('transfer')
  @HttpCode(200)
  async transfer(@Body() body: { gid: string; amount: number }) {
    await this.dtm.newSaga(body.gid, { retryInterval: 1 }).add('transOut', { amount: body.amount }).add('transIn', { amount: body.amount }).submit();
    return { gid: body.gid };
  }

  @Post('reserve')
  @HttpCode(200)
  async reserve(@Body() body: { gid: string }) {
    await this.dtm.tccGlobalTransaction(body.gid, (tcc) => tcc.callBranch({ sku: 'x' }, 'inventory'));
    return { gid: body.gid };
  }

  /** A saga of one audit step whose branchHeaders set X-Tenant explicitly (spelled so). */
  @Post('audit-as')
  @HttpCode(200)
  async auditAs(@Body() body: { gid: string; tenant: string }) {
    await this.dtm.newSaga(body.gid, { branchHeaders: { 'X-Tenant': body.tenant } }).add('audit', {}).submit();
    return { gid: body.gid };
  }

  /** Echoes what the app's own body parsing made of the request body (`nothing`: no parser read it). */
  @Post('echo')
  @HttpCode(200)
  echo(@Body() body: unknown) {
    return { received: body === undefined ? 'nothing' : body };
  }
}

/** Collects what the app logs, for assertions on warnings. */
export class CapturingLogger implements LoggerService {
  readonly warnings: string[] = [];
  readonly errors: string[] = [];
  log(): void {}
  debug(): void {}
  verbose(): void {}
  warn(message: unknown): void {
    this.warnings.push(String(message));
  }
  error(message: unknown): void {
    this.errors.push(String(message));
  }
}

/** The running test app. */
export interface BranchApp {
  app: INestApplication;
  url: string;
  ledger: Ledger;
  client: DtmClient;
  logger: CapturingLogger;
  close(): Promise<void>;
}

/** Adapters every branch test runs on. */
export const ADAPTERS = ['express', 'fastify'] as const;
/** One of {@link ADAPTERS}. */
export type AdapterName = (typeof ADAPTERS)[number];

/**
 * Starts the branch test app on `adapter`, with global prefix `api` and URI versioning (the bank
 * controller is version 1), against the harness's DTM server. `providers`: more of the app's own (a workflow).
 */
export async function startBranchApp(adapter: AdapterName, config: DtmConfigInput = {}, providers: Provider[] = []): Promise<BranchApp> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, passThroughHeaders: ['X-Request-ID'], ...config } }),
    ],
    controllers: [BankController, InventoryController, OutboxController, StartController],
    providers: [Ledger, ...providers],
  }).compile();
  const app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter(), { forceCloseConnections: true }) : moduleRef.createNestApplication({ forceCloseConnections: true });
  const logger = new CapturingLogger();
  app.useLogger(logger);
  app.setGlobalPrefix('api');
  app.enableVersioning({ type: VersioningType.URI });
  keepConnectionsForDtm(app);
  await app.listen(0, '127.0.0.1');
  const ledger = app.get(Ledger);
  ledger.reset();
  const { port } = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${port}`, ledger, client: app.get(DtmClient), logger, close: () => app.close() };
}

