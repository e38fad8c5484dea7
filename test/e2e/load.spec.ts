// Many transactions at once from one app, behind the barrier on small database pools, against the
// real DTM server.
import 'reflect-metadata';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Body, Controller, Get, Injectable, Post, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import http from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { BarrierTx, BranchContext, DtmClient, DtmInstrumentation, DtmModule, DtmUnavailableError, ensureBarrierSchema, MsgBranch, MsgQueryPrepared, mysqlBarrierDatabase, pgBarrierDatabase, SagaAction, SagaCompensate, UseBarrier, TccCancel, TccConfirm, TccTry, type BranchInfo } from 'nestjs-dtm';
import { fileDatabases } from '../support/databases.js';
import { connectionsTo } from '../support/fixtures.js';
import { harness } from '../support/harness.js';
import { waitUntil } from '../support/services/process.js';

@Injectable()
class Own {
  url = '';
  tries = 0;
  subTries = 0;
  /** The `outer` Trys running now, each holding one of the pool's connections. */
  holding = 0;
  /** Whether two `outer` Trys held both of the pool's connections at once yet. */
  deadlocked = false;
}

@Controller('load')
class LoadController {
  constructor(
    private readonly dtm: DtmClient,
    private readonly own: Own,
  ) {}

  /** Behind the barrier: takes 1 from account 1, then nests a TCC whose sub-Try is behind the barrier on the same pool. */
  @Post('try')
  @TccTry('outer', { barrier: 'pg' })
  async try(@Body() _b: unknown, @BarrierTx() tx: pg.PoolClient, @BranchContext() branch: BranchInfo) {
    this.own.tries++;
    this.own.holding++;
    try {
      await tx.query('UPDATE account SET balance = balance - 1 WHERE id = 1');
      // the first Trys' sub-Trys ask for a connection once both of the pool's are held by Trys, as when the TCCs arrive at once:
      // under load the first Try, alone for a moment, took the other connection for its sub-Try, and its TCC succeeded (seen once
      // on Node 24 with busy loops: DTM recorded that TCC submitted 140 ms after it began)
      if (!this.own.deadlocked) await waitUntil("the pool's two connections held by Trys", async () => this.own.holding >= 2, { timeoutMs: 5_000, intervalMs: 20 }).catch(() => undefined);
      if (this.own.holding >= 2) this.own.deadlocked = true;
      await this.dtm.tccFromBranch(branch).callBranch({ n: 1 }, `${this.own.url}/load/sub-try`, `${this.own.url}/load/sub-confirm`, `${this.own.url}/load/sub-cancel`);
      return {};
    } finally {
      this.own.holding--;
    }
  }

  @Post('confirm')
  @TccConfirm('outer', { barrier: 'pg' })
  confirm() {}

  @Post('cancel')
  @TccCancel('outer', { barrier: 'pg' })
  async cancel(@BarrierTx() tx: pg.PoolClient) {
    await tx.query('UPDATE account SET balance = balance + 1 WHERE id = 1');
  }

  /** As `try`, but its sub-Try is behind the barrier on a pool of its own. */
  @Post('try-apart')
  @TccTry('outerApart', { barrier: 'pg' })
  async tryApart(@Body() _b: unknown, @BarrierTx() tx: pg.PoolClient, @BranchContext() branch: BranchInfo) {
    this.own.tries++;
    await tx.query('UPDATE account SET balance = balance - 1 WHERE id = 1');
    await this.dtm.tccFromBranch(branch).callBranch({ n: 1 }, `${this.own.url}/load/apart-try`, `${this.own.url}/load/apart-confirm`, `${this.own.url}/load/apart-cancel`);
    return {};
  }

  @Post('confirm-apart')
  @TccConfirm('outerApart', { barrier: 'pg' })
  confirmApart() {}

  @Post('cancel-apart')
  @TccCancel('outerApart', { barrier: 'pg' })
  async cancelApart(@BarrierTx() tx: pg.PoolClient) {
    await tx.query('UPDATE account SET balance = balance + 1 WHERE id = 1');
  }

  @Post('apart-try')
  @TccTry('apart', { barrier: 'pgApart' })
  async apartTry(@Body() _b: unknown, @BarrierTx() tx: pg.PoolClient) {
    this.own.subTries++;
    await tx.query('UPDATE account SET balance = balance - 1 WHERE id = 2');
    return {};
  }

  @Post('apart-confirm')
  @TccConfirm('apart', { barrier: 'pgApart' })
  apartConfirm() {}

  @Post('apart-cancel')
  @TccCancel('apart', { barrier: 'pgApart' })
  async apartCancel(@BarrierTx() tx: pg.PoolClient) {
    await tx.query('UPDATE account SET balance = balance + 1 WHERE id = 2');
  }

  @Post('sub-try')
  @TccTry('sub', { barrier: 'pg' })
  async subTry(@Body() _b: unknown, @BarrierTx() tx: pg.PoolClient) {
    this.own.subTries++;
    await tx.query('UPDATE account SET balance = balance - 1 WHERE id = 2');
    return {};
  }

  @Post('sub-confirm')
  @TccConfirm('sub', { barrier: 'pg' })
  subConfirm() {}

  @Post('sub-cancel')
  @TccCancel('sub', { barrier: 'pg' })
  async subCancel(@BarrierTx() tx: pg.PoolClient) {
    await tx.query('UPDATE account SET balance = balance + 1 WHERE id = 2');
  }
}

describe('load: nested TCC behind the barrier on a pool of 2', () => {
  let app: INestApplication;
  let client: DtmClient;
  let pool: pg.Pool;
  let apartPool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: (await fileDatabases()).postgres.url, max: 2 });
    apartPool = new pg.Pool({ connectionString: (await fileDatabases()).postgres.url, max: 2 });
    await pool.query('DROP TABLE IF EXISTS account');
    await pool.query('CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)');
    await pool.query('INSERT INTO account VALUES (1, 1000), (2, 1000)');
    const barrier = pgBarrierDatabase(pool);
    await ensureBarrierSchema(barrier, { table: 'dtm_barrier' });
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, barrierTable: 'dtm_barrier', branchTimeout: 3 }, barrierConnections: { pg: barrier, pgApart: pgBarrierDatabase(apartPool) } })],
      controllers: [LoadController],
      providers: [Own],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    await app.listen(0, '127.0.0.1');
    client = app.get(DtmClient);
    app.get(Own).url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
    await pool?.end();
    await apartPool?.end();
  });
  beforeEach(async () => {
    await pool.query('UPDATE account SET balance = 1000');
  });

  /** `n` TCCs at once, each with one branch `branch`: how each ended, what DTM holds at the end. */
  async function burst(n: number, branch: string): Promise<{ errors: unknown[]; statuses: string[] }> {
    const gids = await Promise.all(Array.from({ length: n }, () => client.generateGid()));
    const errors = await Promise.all(gids.map((gid) => client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ n: 1 }, branch)).then(() => undefined, (e: unknown) => e)));
    const statuses = await Promise.all(gids.map(async (gid) => (await client.waitForFinal(gid, { timeout: 30 })).status));
    return { errors, statuses };
  }

  it('a Try whose nested sub-Try is behind the barrier on the same pool: with as many TCCs at once as the pool has connections, every one waits for a connection no Try gives back, and all fail at branch_timeout (rolled back, nothing taken)', async () => {
    const { errors, statuses } = await burst(8, 'outer');
    expect(errors).toHaveLength(8);
    // each a timeout (DtmUnavailableError); any other error is shown whole
    expect(errors.filter((e) => !(e instanceof DtmUnavailableError)).map(String)).toEqual([]);
    expect(statuses).toEqual(Array(8).fill('failed'));
    expect((await pool.query('SELECT balance FROM account ORDER BY id')).rows).toEqual([{ balance: 1000 }, { balance: 1000 }]);
  }, 60_000);

  it('the same with the sub-Try on a pool of its own (docs/tcc.md): all succeed', async () => {
    const { errors, statuses } = await burst(8, 'outerApart');
    expect(errors).toEqual(Array(8).fill(undefined));
    expect(statuses).toEqual(Array(8).fill('succeed'));
    expect((await pool.query('SELECT balance FROM account ORDER BY id')).rows).toEqual([{ balance: 992 }, { balance: 992 }]);
  }, 60_000);
});

@Controller('slow')
class SlowController {
  @Post('try')
  @TccTry('slow')
  async try() {
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    return {};
  }

  @Post('confirm')
  @TccConfirm('slow')
  confirm() {}

  @Post('cancel')
  @TccCancel('slow')
  cancel() {}
}

describe('load: connections to DTM after a burst', () => {
  it('a call under way longer than a connection may stay idle is not cut: a Try answering after 7 s, the TCC succeeds', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, branchTimeout: 20 } })], controllers: [SlowController] }).compile();
    const app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    await app.listen(0, '127.0.0.1');
    try {
      const client = app.get(DtmClient);
      const gid = await client.generateGid();
      await client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ n: 1 }, 'slow'));
      expect((await client.waitForFinal(gid, { timeout: 20 })).status).toBe('succeed');
    } finally {
      await app.close();
    }
  }, 40_000);

  it('150 calls to DTM at once open up to 150 keep-alive connections; once idle for a while they are closed, not kept for the life of the app', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl } })] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    try {
      const client = app.get(DtmClient);
      const port = Number(new URL(harness().dtm.serverUrl).port);
      const before = connectionsTo(port);
      const gids = await Promise.all(Array.from({ length: 150 }, () => client.generateGid()));
      expect(new Set(gids).size).toBe(150);
      const afterBurst = connectionsTo(port) - before;
      expect(afterBurst).toBeGreaterThan(20);
      // closed after 5 s idle (the module's agent): waited for up to 20 s, the timer of a loaded CI machine firing late;
      // connections kept for the life of the app never close
      await waitUntil('the burst\'s idle connections to DTM closed', async () => connectionsTo(port) <= before, { timeoutMs: 20_000, intervalMs: 250 });
      expect(connectionsTo(port)).toBeLessThanOrEqual(before);
      // and the client still works, on a new connection
      await expect(client.generateGid()).resolves.toEqual(expect.any(String));
    } finally {
      await app.close();
    }
  }, 45_000);
});

@Controller('ship')
@UseBarrier('mysql')
class ShipController {
  @Post('notify')
  @MsgBranch('ship.notify')
  async notify(@Body() o: { id: number }, @BarrierTx() tx: mysql.PoolConnection) {
    await tx.execute('INSERT INTO shipment (order_id) VALUES (?)', [o.id]);
  }

  @Post('take')
  @SagaAction('ship.take')
  async take(@Body() o: { id: number }, @BarrierTx() tx: mysql.PoolConnection) {
    await tx.execute('UPDATE stock SET n = n - 1 WHERE id = 1');
    await tx.execute('INSERT INTO taken (order_id) VALUES (?)', [o.id]);
  }

  @Post('give')
  @SagaCompensate('ship.take')
  async give(@BarrierTx() tx: mysql.PoolConnection) {
    await tx.execute('UPDATE stock SET n = n + 1 WHERE id = 1');
  }

  @Get('check')
  @MsgQueryPrepared('ship.check')
  check() {}
}

describe('load: 100 messages and 100 sagas at once behind the barrier on a MariaDB pool of 2', () => {
  let app: INestApplication;
  let client: DtmClient;
  let pool: mysql.Pool;

  beforeAll(async () => {
    pool = mysql.createPool({ ...(await fileDatabases()).mariadb.config, connectionLimit: 2 });
    await pool.query('DROP TABLE IF EXISTS shipment, purchase, stock, taken');
    await pool.query('CREATE TABLE shipment (order_id int PRIMARY KEY)');
    await pool.query('CREATE TABLE purchase (id int PRIMARY KEY)');
    await pool.query('CREATE TABLE taken (order_id int PRIMARY KEY)');
    await pool.query('CREATE TABLE stock (id int PRIMARY KEY, n int NOT NULL)');
    await pool.query('INSERT INTO stock VALUES (1, 1000)');
    const barrier = mysqlBarrierDatabase(pool);
    await ensureBarrierSchema(barrier, { table: 'dtm_barrier' });
    const moduleRef = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl, barrierTable: 'dtm_barrier', branchTimeout: 10 }, barrierConnections: { mysql: barrier } })],
      controllers: [ShipController],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    await app.listen(0, '127.0.0.1');
    client = app.get(DtmClient);
  });
  afterAll(async () => {
    await app?.close();
    await pool?.end();
  });

  it('every message is delivered once and every saga succeeds: the pool of 2 queues the local transactions, nothing waits on itself', async () => {
    const ids = Array.from({ length: 100 }, (_, i) => i + 1);
    const db = mysqlBarrierDatabase(pool);
    const gids = await Promise.all(ids.map(() => client.generateGid()));
    const sagaGids = await Promise.all(ids.map(() => client.generateGid()));
    await Promise.all([
      ...ids.map((id, i) => client.newMsg(gids[i]).add('ship.notify', { id }).doAndSubmitDb('ship.check', db, (conn) => conn.execute('INSERT INTO purchase (id) VALUES (?)', [id]))),
      ...ids.map((id, i) => client.newSaga(sagaGids[i]).add('ship.take', { id }).submit()),
    ]);
    const statuses = await Promise.all([...gids, ...sagaGids].map(async (gid) => (await client.waitForFinal(gid, { timeout: 60 })).status));
    expect(statuses).toEqual(statuses.map(() => 'succeed'));
    const [[purchases], [shipments], [taken], [stock]] = await Promise.all(['SELECT count(*) AS n FROM purchase', 'SELECT count(*) AS n FROM shipment', 'SELECT count(*) AS n FROM taken', 'SELECT n FROM stock'].map((sql) => pool.query(sql)));
    expect([purchases, shipments, taken, stock]).toEqual([[{ n: 100 }], [{ n: 100 }], [{ n: 100 }], [{ n: 900 }]]);
  }, 120_000);
});

@Controller('mem')
class MemController {
  @Post('step')
  @SagaAction('mem.step')
  step() {
    throw new Error('x'.repeat(2_000)); // each call a failure the module records (a diagnosis) and reports
  }

  @Post('back')
  @SagaCompensate('mem.step')
  back() {}
}

setFlagsFromString('--expose-gc');

describe('load: a long run of branch calls with distinct gids', () => {
  it("5 000 failed branch calls, each of another gid, with a listener on the module's events: the heap after GC grows by less than 3 MB from the first 1 000 to the last", async () => {
    const gc = runInNewContext('gc', undefined) as () => void;
    expect(typeof gc).toBe('function');
    const moduleRef = await Test.createTestingModule({ imports: [DtmModule.forRoot({ config: { serverUrl: harness().dtm.serverUrl } })], controllers: [MemController] }).compile();
    const app = moduleRef.createNestApplication({ logger: false, forceCloseConnections: true });
    await app.listen(0, '127.0.0.1');
    let events = 0;
    app.get(DtmInstrumentation).on('branch.call', () => void events++);
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    const call = (i: number) =>
      new Promise<number>((resolve, reject) => {
        const gid = `mem${String(i).padStart(8, '0')}x${'g'.repeat(40)}`;
        const req = http.request(`${url}/mem/step?gid=${gid}&trans_type=saga&branch_id=01&op=action&dtm=${encodeURIComponent(harness().dtm.serverUrl)}`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end('{"n":1}');
      });
    const run = async (from: number, to: number) => {
      for (let i = from; i < to; i += 50) expect(new Set(await Promise.all(Array.from({ length: 50 }, (_, k) => call(i + k))))).toEqual(new Set([500]));
    };
    const heap = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    try {
      await run(0, 1_000);
      const after1k = heap();
      await run(1_000, 5_000);
      const after5k = heap();
      expect(events).toBe(5_000);
      // measured: under 1 MB (noise); anything kept per call of ~750 bytes or more would pass 3 MB
      expect(after5k - after1k).toBeLessThan(3 * 1024 * 1024);
    } finally {
      agent.destroy();
      await app.close();
    }
  }, 120_000);
});
