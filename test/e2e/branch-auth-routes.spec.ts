// Authenticated branch calls (lynx.dtm.branch_auth_keys) reached through every form of a route an
// attacker can write, on Express and Fastify, against the real DTM server: a token read back from
// DTM, replayed at another spelling of its branch's path (double slashes, a trailing slash, another
// case, percent-encoding, dot segments, the version or prefix spelt otherwise), runs nothing; and a
// branch handler that another transport of the app would also reach (a TCP message pattern of a
// hybrid app), where the module can check nothing, fails start-up.
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Body, Controller, Injectable, Post, VersioningType, type INestApplication } from '@nestjs/common';
import { ClientProxyFactory, MessagePattern, Transport, type ClientProxy } from '@nestjs/microservices';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import mysql from 'mysql2/promise';
import { BarrierTx, DtmBranchRegistryError, DtmClient, DtmFailureError, DtmModule, DtmOngoingError, ensureBarrierSchema, mysqlBarrierDatabase, mysqlXaDatabase, SagaAction, TccCancel, TccConfirm, TccTry, XaBranch } from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { harness, storedAuth, triggerCron, waitForTransStatus, type DtmQueryAnswer } from '../support/harness.js';
import { freePort, waitUntil } from '../support/services/process.js';
import { RecordingLogger } from '../support/recording-logger.js';
import { startDtmApp } from '../support/dtm-app.js';
import { startRecorder } from '../support/recorder.js';
import { firstCalls } from '../support/fixtures.js';
import { startBranchApp } from './branch-app.js';

const KEY = randomBytes(33).toString('base64');

/** What the handlers ran, by gid. */
@Injectable()
class Runs {
  readonly calls: { handler: string; gid: string; amount: unknown }[] = [];
  /** Gids whose first step answers ONGOING until released. */
  readonly held = new Set<string>();
}

@Controller({ path: 'sec', version: '1' })
class SecController {
  constructor(private readonly runs: Runs) {}

  @Post('hold')
  @SagaAction('hold', { compensate: false })
  hold(@Body() body: { gid: string }): object {
    if (this.runs.held.has(body.gid)) throw new DtmOngoingError('held');
    this.runs.calls.push({ handler: 'hold', gid: body.gid, amount: undefined });
    return {};
  }

  @Post('pay')
  @SagaAction('pay', { compensate: false })
  pay(@Body() body: { gid: string; amount: number }): object {
    this.runs.calls.push({ handler: 'pay', gid: body?.gid, amount: body?.amount });
    return {};
  }
}

/** A branch handler that is also a TCP message pattern (a hybrid app). */
@Controller('hybrid')
class HybridController {
  constructor(private readonly runs: Runs) {}

  @Post('pay')
  @SagaAction('hybridPay', { compensate: false })
  @MessagePattern('pay')
  pay(@Body() body: { gid: string; amount: number }): object {
    this.runs.calls.push({ handler: 'hybridPay', gid: body?.gid, amount: body?.amount });
    return {};
  }
}

/** One raw HTTP request, the path sent exactly as written (fetch would normalise dot segments). */
function raw(port: number, path: string, headers: Record<string, string>, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path, headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe.each(['express', 'fastify'] as const)('a token read back from DTM, at another spelling of its route, on %s', (adapter) => {
  let app: INestApplication;
  let runs: Runs;
  let client: DtmClient;
  let port: number;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, branchAuthKeys: [KEY] } })],
      controllers: [SecController],
      providers: [Runs],
    }).compile();
    app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter(), { forceCloseConnections: true }) : moduleRef.createNestApplication({ forceCloseConnections: true });
    app.useLogger(false);
    app.setGlobalPrefix('api');
    app.enableVersioning({ type: VersioningType.URI });
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as { port: number }).port;
    runs = app.get(Runs);
    client = app.get(DtmClient);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('runs nothing at any other spelling of the path; at its own path it is the call DTM makes (documented), run once', async () => {
    const gid = await client.generateGid();
    runs.held.add(gid);
    await client.newSaga(gid, { retryInterval: 1 }).add('hold', { gid }).add('pay', { gid, amount: 30 }).submit();
    const stored: DtmQueryAnswer = await waitForTransStatus(gid, 'submitted');
    const headers = storedAuth(stored);
    expect(headers['dtm-auth']).toContain('action.02=');
    const query = `?gid=${gid}&trans_type=saga&branch_id=02&op=action`;
    const body = JSON.stringify({ gid, amount: 30 });
    const variants = [
      '//api/v1/sec/pay',
      '/api//v1/sec/pay',
      '/api/v1//sec/pay',
      '/api/v1/sec//pay',
      '/api/v1/sec/pay/',
      '/API/v1/sec/pay',
      '/api/V1/sec/pay',
      '/api/v1/sec/PAY',
      '/api/v1/sec/%70ay',
      '/api/v1/%73ec/pay',
      '/api%2Fv1%2Fsec%2Fpay',
      '/api/v1/sec/./pay',
      '/api/v1/x/../sec/pay',
      '/api/v1/sec/pay;x',
      '/api/v1/sec/pay%00',
      '/api/v1/sec/pay%20',
      '/api/v1/sec/pay#x',
      // absolute-form request targets (RFC 9112 3.2.2): Express routes them by their path
      `http://127.0.0.1:${port}/api/v1/sec/pay`,
      'http://other.example/api/v1/sec/pay',
    ];
    const statuses: Record<string, number> = {};
    for (const path of variants) statuses[path] = await raw(port, `${path}${query}`, headers, body);
    for (const path of variants) expect([path, statuses[path] >= 400]).toEqual([path, true]);
    expect(runs.calls.filter((c) => c.handler === 'pay')).toEqual([]);

    // the token is a valid one: at the path it signs, the call runs (what DTM itself does next)
    expect(await raw(port, `/api/v1/sec/pay${query}`, headers, body)).toBe(200);
    expect(runs.calls.filter((c) => c.handler === 'pay')).toEqual([{ handler: 'pay', gid, amount: 30 }]);
    runs.held.delete(gid);
    await triggerCron();
    expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
  });
});

describe('a branch handler that is also a TCP message pattern of a hybrid app (branch_auth_keys set)', () => {
  it('fails start-up naming it: a TCP message would run it with nothing checked (before, an unsigned message of any amount ran it)', async () => {
    const tcpPort = await freePort();
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, branchAuthKeys: [KEY] } })],
      controllers: [HybridController],
      providers: [Runs],
    }).compile();
    const app = moduleRef.createNestApplication({ forceCloseConnections: true });
    app.useLogger(false);
    app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } });
    let started = false;
    try {
      await app.startAllMicroservices();
      await app.listen(0, '127.0.0.1');
      started = true;
      // what an attacker who reaches the TCP port does, had it started
      const tcp: ClientProxy = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: tcpPort } });
      await new Promise<void>((resolve) => tcp.send('pay', { gid: 'tcp-made-up', amount: 1_000_000 }).subscribe({ next: () => resolve(), error: () => resolve() }));
      await tcp.close();
    } catch (err) {
      expect(err).toBeInstanceOf(DtmBranchRegistryError);
      expect((err as Error).message).toContain('HybridController.pay is decorated as a DTM branch and is also a @MessagePattern');
    } finally {
      await app.close();
    }
    expect(app.get(Runs).calls).toEqual([]);
    expect(started).toBe(false);
  });
});

describe('a participant whose manifest points its branch at another service holding the same key (branch_auth_keys)', () => {
  it("the caller signs the call for the target the manifest names, and the other service runs it with the caller's payload: the keys do not tell services apart (docs/security.md)", async () => {
    const bank = await startBranchApp('express', { branchAuthKeys: [KEY] });
    const rogue = await startRecorder();
    try {
      // a compromised "shop": its branch "pay" is the bank's transIn step
      rogue.answer('/dtm/branches', {
        status: 200,
        body: { format: 'nestjs-dtm.branches/1', branches: [{ name: 'pay', kind: 'saga', ops: { action: { http: `${bank.url}/api/v1/bank/trans-in` } } }] },
      });
      const caller = await startDtmApp({ config: { branchAuthKeys: [KEY], services: { shop: { url: rogue.url } } } });
      try {
        const gid = await caller.client.generateGid();
        const final = await caller.client.newSaga(gid).add({ service: 'shop', branch: 'pay' }, { amount: 25 }).submitAndWait({ timeout: 20 });
        expect(final.status).toBe('succeed');
        expect(bank.ledger.callsOf(gid).map((c) => c.handler)).toEqual(['transIn']);
        expect(bank.ledger.balances.get('bob')).toBe(25);
      } finally {
        await caller.close();
      }
    } finally {
      await rogue.close();
      await bank.close();
    }
  });
});

describe('key rotation with transactions under way (branch_auth_keys)', () => {
  const OLD = randomBytes(33).toString('base64');
  const NEW = randomBytes(33).toString('base64');

  /** The sec app with `keys`, on `port` (0: any); its logger records the refusals. */
  async function secApp(keys: string[], port = 0): Promise<{ app: INestApplication; runs: Runs; client: DtmClient; port: number; logger: RecordingLogger }> {
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, branchAuthKeys: keys } })],
      controllers: [SecController],
      providers: [Runs],
    }).compile();
    const app = moduleRef.createNestApplication({ forceCloseConnections: true });
    const logger = new RecordingLogger();
    app.useLogger(logger);
    app.setGlobalPrefix('api');
    app.enableVersioning({ type: VersioningType.URI });
    await app.listen(port, '127.0.0.1');
    return { app, runs: app.get(Runs), client: app.get(DtmClient), port: (app.getHttpServer().address() as { port: number }).port, logger };
  }

  it("a transaction signed with the old key is refused for ever once the old key is dropped; it finishes when the old key is kept second (docs/security.md's rotation)", async () => {
    const before = await secApp([OLD]);
    const gid = await before.client.generateGid();
    before.runs.held.add(gid);
    await before.client.newSaga(gid, { retryInterval: 1 }).add('hold', { gid }).add('pay', { gid, amount: 30 }).submit();
    await waitForTransStatus(gid, 'submitted');
    const port = before.port;
    await before.app.close();

    // the old key dropped at once: DTM's retries carry the tokens signed with it
    const dropped = await secApp([NEW], port);
    try {
      await waitUntil(
        'a retry refused',
        async () => {
          await triggerCron();
          return dropped.logger.lines.some((l) => l.startsWith('warn') && l.includes(gid));
        },
        { timeoutMs: 20_000 },
      );
      expect(dropped.runs.calls).toEqual([]);
      expect((await waitForTransStatus(gid, 'submitted')).transaction?.status).toBe('submitted');
    } finally {
      await dropped.app.close();
    }

    // as the docs say to rotate: the new key first, the old one kept second
    const rotated = await secApp([NEW, OLD], port);
    try {
      await triggerCron();
      expect((await waitForTransStatus(gid, ['succeed', 'failed'])).transaction?.status).toBe('succeed');
      expect(firstCalls(rotated.runs.calls.map((c) => c.handler))).toEqual(['hold', 'pay']);
    } finally {
      await rotated.app.close();
    }
  });
});

/** An ingress in front of the app: it takes `prefix` off each path (`/svc/api/...` to `/api/...`) and passes the call on to `upstreamPort`. */
interface StripPathProxy {
  /** The proxy's port. */
  port: number;
  /** The app's port, set once it listens. */
  upstreamPort: number;
  /** The paths passed on, without their query. */
  proxied: string[];
  /** Closes the proxy and its connections. */
  close(): Promise<void>;
}

/** Starts a {@link StripPathProxy} taking `prefix` off. */
async function stripPathProxy(prefix: string): Promise<StripPathProxy> {
  const strip = new RegExp(`^${prefix}(?=/)`);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').replace(strip, '');
    proxy.proxied.push(path.split('?')[0]);
    const upstream = httpRequest({ host: '127.0.0.1', port: proxy.upstreamPort, method: req.method, path, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const proxy: StripPathProxy = {
    port: (server.address() as { port: number }).port,
    upstreamPort: 0,
    proxied: [],
    close: async () => {
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
    },
  };
  return proxy;
}

describe('app_url with a path, behind a proxy that strips it (branch_auth_keys)', () => {
  // an ingress path that is also the app's global prefix ('/api'): DTM calls /api/api/v1/sec/hold, the app gets /api/v1/sec/hold
  it.each([
    ['express', '/svc'],
    ['fastify', '/svc'],
    ['express', '/api'],
    ['fastify', '/api'],
  ] as const)('on %s, app_url path %s: DTM reaches the branches at app_url + route, the proxy passes /api/... on, and the signed calls run: DTM records the saga succeeded', async (adapter, ingress) => {
    const proxy = await stripPathProxy(ingress);
    const { proxied, port: proxyPort } = proxy;
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, branchAuthKeys: [KEY], appUrl: `http://127.0.0.1:${proxyPort}${ingress}` } })],
      controllers: [SecController],
      providers: [Runs],
    }).compile();
    const app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter(), { forceCloseConnections: true }) : moduleRef.createNestApplication({ forceCloseConnections: true });
    app.useLogger(false);
    app.setGlobalPrefix('api');
    app.enableVersioning({ type: VersioningType.URI });
    try {
      await app.listen(0, '127.0.0.1');
      proxy.upstreamPort = (app.getHttpServer().address() as { port: number }).port;
      const client = app.get(DtmClient);
      const gid = await client.generateGid();
      const final = await client.newSaga(gid, { retryInterval: 1 }).add('hold', { gid }).add('pay', { gid, amount: 5 }).submitAndWait({ timeout: 8 }).catch((err: unknown) => err as Error);
      expect(proxied).toContain('/api/v1/sec/hold');
      expect(final).toMatchObject({ status: 'succeed' });
      expect(firstCalls(app.get(Runs).calls.map((c) => c.handler))).toEqual(['hold', 'pay']);
    } finally {
      await app.close();
      await proxy.close();
    }
  });
});

describe('app_url with a path, the Nest app mounted under it (branch_auth_keys)', () => {
  it("DTM's calls arrive with app_url's path (req.originalUrl /api/api/v1/sec/...): the signed calls run, DTM records the saga succeeded", async () => {
    // what an Express app does for an app mounted at /api (parent.use('/api', nestExpressApp)): req.url without it, req.originalUrl with it
    let nest: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
    const listening = createServer((req, res) => {
      (req as IncomingMessage & { originalUrl?: string }).originalUrl = req.url;
      req.url = (req.url ?? '/').replace(/^\/api(?=\/)/, '');
      nest!(req, res);
    });
    await new Promise<void>((done) => listening.listen(0, '127.0.0.1', done));
    const port = (listening.address() as { port: number }).port;
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, branchAuthKeys: [KEY], appUrl: `http://127.0.0.1:${port}/api` } })],
      controllers: [SecController],
      providers: [Runs],
    }).compile();
    const app = moduleRef.createNestApplication({ forceCloseConnections: true });
    app.useLogger(false);
    app.setGlobalPrefix('api');
    app.enableVersioning({ type: VersioningType.URI });
    try {
      await app.init();
      nest = app.getHttpAdapter().getInstance();
      const client = app.get(DtmClient);
      const gid = await client.generateGid();
      const final = await client.newSaga(gid, { retryInterval: 1 }).add('hold', { gid }).add('pay', { gid, amount: 5 }).submitAndWait({ timeout: 8 }).catch((err: unknown) => err as Error);
      expect(final).toMatchObject({ status: 'succeed' });
      expect(firstCalls(app.get(Runs).calls.map((c) => c.handler))).toEqual(['hold', 'pay']);
    } finally {
      await app.close();
      listening.closeAllConnections();
      await new Promise((done) => listening.close(done));
    }
  });
});

/** TCC and XA branches, whose phase 2 (Confirm / Cancel, XA commit / rollback) DTM calls at the targets it registered. */
@Controller({ path: 'two-phase', version: '1' })
class TwoPhaseController {
  constructor(private readonly runs: Runs) {}

  @Post('hold-try')
  @TccTry('hold2')
  hold(@Body() body: { gid: string; refuse?: boolean }): object {
    this.runs.calls.push({ handler: 'try', gid: body.gid, amount: undefined });
    if (body.refuse) throw new DtmFailureError('refused');
    return {};
  }

  @Post('hold-confirm')
  @TccConfirm('hold2')
  confirm(@Body() body: { gid: string }): object {
    this.runs.calls.push({ handler: 'confirm', gid: body.gid, amount: undefined });
    return {};
  }

  @Post('hold-cancel')
  @TccCancel('hold2')
  cancel(@Body() body: { gid: string }): object {
    this.runs.calls.push({ handler: 'cancel', gid: body?.gid, amount: undefined });
    return {};
  }

  @Post('xa-pay')
  @XaBranch('xaPay', { db: 'mysql' })
  async xaPay(@Body() body: { gid: string; amount: number }, @BarrierTx() conn: mysql.Connection): Promise<object> {
    await conn.query('INSERT INTO paid (gid, amount) VALUES (?, ?)', [body.gid, body.amount]);
    return {};
  }
}

describe('app_url with a path, behind a proxy that strips it (branch_auth_keys): TCC Confirm / Cancel and XA commit / rollback', () => {
  let dbs: FileDatabases;
  beforeAll(async () => {
    dbs = await fileDatabases();
    const conn = await mysql.createConnection(dbs.mariadb.config);
    await conn.query('CREATE TABLE paid (gid VARCHAR(64) PRIMARY KEY, amount INT NOT NULL)');
    await conn.end();
    const pool = mysql.createPool(dbs.mariadb.config);
    await ensureBarrierSchema(mysqlBarrierDatabase(pool), { table: `${dbs.name}.dtm_barrier` });
    await pool.end();
  });

  it.each(['express', 'fastify'] as const)('on %s: DTM\'s phase-2 calls reach the handlers through the proxy and pass the check of their tokens: a TCC confirmed, one cancelled, an XA committed, one rolled back', async (adapter) => {
    const proxy = await stripPathProxy('/svc');
    const { proxied, port: proxyPort } = proxy;
    const moduleRef = await Test.createTestingModule({
      imports: [
        DtmModule.forRoot({
          config: { serverUrl: harness().dtm.serverUrl, branchAuthKeys: [KEY], appUrl: `http://127.0.0.1:${proxyPort}/svc`, retryInterval: 1, barrierTable: 'dtm_barrier' },
          xaConnections: { mysql: mysqlXaDatabase(() => mysql.createConnection(dbs.mariadb.config)) },
        }),
      ],
      controllers: [TwoPhaseController],
      providers: [Runs],
    }).compile();
    const app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter(), { forceCloseConnections: true }) : moduleRef.createNestApplication({ forceCloseConnections: true });
    app.useLogger(false);
    app.setGlobalPrefix('api');
    app.enableVersioning({ type: VersioningType.URI });
    try {
      await app.listen(0, '127.0.0.1');
      proxy.upstreamPort = (app.getHttpServer().address() as { port: number }).port;
      const client = app.get(DtmClient);
      const runs = app.get(Runs);
      const handlers = (gid: string) => runs.calls.filter((c) => c.gid === gid).map((c) => c.handler);
      const tccOk = await client.generateGid();
      const confirmed = await client.tccGlobalTransactionAndWait(tccOk, async (tcc) => tcc.callBranch({ gid: tccOk }, 'hold2'), undefined, { timeout: 15 });
      const tccNo = await client.generateGid();
      const cancelled = await client.tccGlobalTransactionAndWait(tccNo, async (tcc) => {
        await tcc.callBranch({ gid: tccNo }, 'hold2');
        await tcc.callBranch({ gid: tccNo, refuse: true }, 'hold2');
      }, undefined, { timeout: 15 });
      const xaOk = await client.generateGid();
      const committed = await client.xaGlobalTransactionAndWait(xaOk, async (xa) => xa.callBranch({ gid: xaOk, amount: 5 }, 'xaPay'), undefined, { timeout: 15 });
      const xaNo = await client.generateGid();
      const rolledBack = await client.xaGlobalTransactionAndWait(xaNo, async (xa) => {
        await xa.callBranch({ gid: xaNo, amount: 7 }, 'xaPay');
        throw new DtmFailureError('changed my mind');
      }, undefined, { timeout: 15 });

      expect([confirmed.status, cancelled.status, committed.status, rolledBack.status]).toEqual(['succeed', 'failed', 'succeed', 'failed']);
      expect(handlers(tccOk)).toEqual(['try', 'confirm']);
      expect(handlers(tccNo).sort()).toEqual(['cancel', 'cancel', 'try', 'try']);
      expect(proxied).toEqual(expect.arrayContaining(['/api/v1/two-phase/hold-confirm', '/api/v1/two-phase/hold-cancel', '/api/v1/two-phase/xa-pay']));
      const conn = await mysql.createConnection(dbs.mariadb.config);
      try {
        const [rows] = await conn.query('SELECT gid, amount FROM paid WHERE gid IN (?, ?)', [xaOk, xaNo]);
        expect(rows).toEqual([{ gid: xaOk, amount: 5 }]);
        const [prepared] = await conn.query('XA RECOVER');
        expect((prepared as { data: string }[]).filter((x) => x.data.includes(xaOk) || x.data.includes(xaNo))).toEqual([]);
      } finally {
        await conn.end();
      }
    } finally {
      await app.close();
      await proxy.close();
    }
  });
});
