import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
// a file of its own, e.g. test/orders-outbox.e2e-spec.ts (self-contained: its service and branches are here)
import { Body, Controller, Get, Injectable, Post, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { BarrierTx, DtmBranchRegistry, DtmClient, DtmModule, MsgBranch, MsgQueryPrepared, UseBarrier, ensureBarrierSchema, pgBarrierDatabase } from 'nestjs-dtm';
import { callBranch, startDtmServer, waitForTransaction, type DtmTestServer } from 'nestjs-dtm/testing';
import pg from 'pg';

/** An order: its row, and the message's payload. */
interface Order {
  id: number;
  sku: string;
}

/** Places an order: its row, and the message to shipping, commit together or not at all. */
@Injectable()
class Orders {
  constructor(
    private readonly dtm: DtmClient,
    private readonly pool: pg.Pool,
  ) {}

  async place(gid: string, order: Order): Promise<void> {
    await this.dtm
      .newMsg(gid)
      .add('shipping.notify', order)
      .doAndSubmitDb('orders.check', pgBarrierDatabase(this.pool), async (client) => {
        await client.query('INSERT INTO orders (id, sku) VALUES ($1, $2)', [order.id, order.sku]); // the local transaction
      });
  }
}

@Controller('outbox')
@UseBarrier('pg')
class OutboxBranches {
  @Post('shipping')
  @MsgBranch('shipping.notify')
  async notify(@Body() order: Order, @BarrierTx() tx: pg.PoolClient) {
    await tx.query('INSERT INTO shipments (order_id) VALUES ($1)', [order.id]); // once, however often DTM delivers
  }

  @Get('check')
  @MsgQueryPrepared('orders.check')
  check() {
    // never runs: the barrier answers DTM's back-check from its table (the local transaction's row, or none)
  }
}

describe('orders outbox (e2e, against a real DTM server and PostgreSQL)', () => {
  let dtm: DtmTestServer;
  let pool: pg.Pool;
  let app: INestApplication;

  beforeAll(async () => {
    dtm = await startDtmServer();
    // a database of the tests: its orders and shipments are emptied
    pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres:postgres@localhost:5432/postgres' });
    await ensureBarrierSchema(pgBarrierDatabase(pool));
    await pool.query('CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, sku text NOT NULL)');
    await pool.query('CREATE TABLE IF NOT EXISTS shipments (order_id int NOT NULL)');
    await pool.query('TRUNCATE orders, shipments');
    const moduleFixture = await Test.createTestingModule({
      imports: [DtmModule.forRoot({ config: { serverUrl: dtm.serverUrl }, barrierConnections: { pg: pgBarrierDatabase(pool) } })],
      controllers: [OutboxBranches],
      providers: [Orders, { provide: pg.Pool, useValue: pool }],
    }).compile();
    app = moduleFixture.createNestApplication();
    await app.listen(0, '127.0.0.1'); // DTM runs on this host: it reaches the branches at the listening address
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await pool?.end();
    await dtm?.stop();
  });

  /** DTM's back-check of the message `gid`, called as DTM calls it. */
  const backCheck = (gid: string) => callBranch(app.get(DtmBranchRegistry).target('msg-query-prepared', 'orders.check', 'http'), { gid, op: 'msg', transType: 'msg' });

  it('an order commits its row, and DTM delivers the message once', async () => {
    const gid = await app.get(DtmClient).generateGid(); // a gid of its own for each run: the barrier rows stay
    await app.get(Orders).place(gid, { id: 1, sku: 'book' });
    expect((await pool.query('SELECT sku FROM orders WHERE id = 1')).rows).toEqual([{ sku: 'book' }]);
    const final = await waitForTransaction(dtm.serverUrl, gid);
    expect(final.status).toBe('succeed');
    expect(final.branches.map((b) => `${b.op}:${b.status}`)).toEqual(['action:succeed']);
    expect((await pool.query('SELECT order_id FROM shipments')).rows).toEqual([{ order_id: 1 }]);
    // had the app died between its commit and the submit, DTM would have asked this, and delivered
    expect((await backCheck(gid)).outcome).toBe('SUCCESS');
  });

  it('an order whose local transaction fails: no row, DTM fails the message, nothing is delivered, and the back-check says so', async () => {
    await pool.query("INSERT INTO orders (id, sku) VALUES (2, 'taken')");
    const gid = await app.get(DtmClient).generateGid();
    // the database's own error, as it is: run the business again under a new gid, if at all
    await expect(app.get(Orders).place(gid, { id: 2, sku: 'pen' })).rejects.toMatchObject({ code: '23505' }); // unique_violation
    expect((await pool.query('SELECT sku FROM orders WHERE id = 2')).rows).toEqual([{ sku: 'taken' }]);
    expect((await waitForTransaction(dtm.serverUrl, gid)).status).toBe('failed');
    expect((await pool.query('SELECT order_id FROM shipments WHERE order_id = 2')).rows).toEqual([]);
    const answer = await backCheck(gid);
    expect([answer.status, answer.outcome]).toEqual([409, 'FAILURE']); // DTM would fail the message, never deliver it
  });
});
