// The participant of bench/xa-throughput.ts, run as a child process with PG_URL, MYSQL_URL, DTM_URL
// and GRPC_PORT in its environment. The same transfer leg three ways, per database (PostgreSQL takes
// 30 from row `id`, MariaDB adds 30 to it):
//   /xa/<store>     the module's @XaBranch (its local XA transaction: XA START / BEGIN, the barrier
//                   row, the handler's UPDATE, the registration with DTM, XA END + XA PREPARE /
//                   PREPARE TRANSACTION; phase 2 XA COMMIT / COMMIT PREPARED), also the gRPC
//                   methods bench.XaBench/Pg and /Mysql;
//   /hand/<store>   the same XA branch written by hand against the database's XA statements, on a
//                   plain Nest route (no module decorator): the steps of DTM's Go SDK
//                   (dtmimp.XaHandleLocalTrans, XaHandlePhaseB), the registration a POST to DTM's
//                   /registerBranch with axios; HTTP only;
//   /saga/<store>   a @SagaAction behind the sub-transaction barrier doing the same UPDATE in a local
//                   transaction (for sagas on the same accounts), also bench.XaBench/PgSaga, /MysqlSaga.
// Every XA branch gets a new connection per call (mysql.createConnection, a new pg.Client), as DTM's
// SDK does; with PG_XA_POOL=1 (bench:xa --pg-pool) PostgreSQL's XA branches, the module's
// (pgXaDatabase(pool)) and the hand-written ones, borrow a pool's client instead. The saga steps run
// on pools. Prints `grpc port N`, `port N`.
import 'reflect-metadata';
import http from 'node:http';
import { Body, Controller, HttpCode, HttpException, Inject, Module, Param, Post, Query, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import * as microservices from '@nestjs/microservices';
import axios from 'axios';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { BarrierTx, DtmModule, SagaAction, XaBranch, mysqlBarrierDatabase, mysqlXaDatabase, pgBarrierDatabase, pgXaDatabase } from 'nestjs-dtm';
import { listenBenchApp } from './bench-app.js';

/** What every leg moves. */
const AMOUNT = 30;
const TABLE = 'dtm_barrier';
const PG_UPDATE = `UPDATE account SET balance = balance - ${AMOUNT} WHERE id = $1`;
const MY_UPDATE = `UPDATE account SET balance = balance + ${AMOUNT} WHERE id = ?`;
const PG_BARRIER = `INSERT INTO ${TABLE} (trans_type, gid, branch_id, op, barrier_id, reason) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (gid, branch_id, op, barrier_id) DO NOTHING`;
const MY_BARRIER = `INSERT IGNORE INTO ${TABLE} (trans_type, gid, branch_id, op, barrier_id, reason) VALUES (?, ?, ?, ?, ?, ?)`;

const grpcPort = Number(process.env.GRPC_PORT);
const pgUrl = process.env.PG_URL!;
const myUrl = process.env.MYSQL_URL!;
/** One connection factory per database, the same for the module's branches and the hand-written ones. */
const connectPg = async () => {
  const client = new pg.Client({ connectionString: pgUrl });
  await client.connect();
  return client;
};
const connectMy = () => mysql.createConnection({ uri: myUrl });
const pgPool = new pg.Pool({ connectionString: pgUrl, max: 32 });
/** PG_XA_POOL=1: PostgreSQL's XA branches on a pool of their own. */
const pgXaPool = process.env.PG_XA_POOL === '1' ? new pg.Pool({ connectionString: pgUrl, max: 32 }) : undefined;
/** A PostgreSQL client for one hand-written XA branch call, and how to let it go: given back to the pool when the call left nothing open on it, else discarded (a new client is always ended). */
const borrowPg = async (): Promise<{ client: pg.ClientBase; done(clean: boolean): Promise<void> }> => {
  if (!pgXaPool) {
    const client = await connectPg();
    return { client, done: () => client.end() };
  }
  const client = await pgXaPool.connect();
  return { client, done: async (clean) => client.release(!clean) };
};
const myPool = mysql.createPool({ uri: myUrl, connectionLimit: 32 });

/** The module's branches: the handler does the business alone. */
@Controller('xa')
class ModuleXa {
  @Post('pg')
  @microservices.GrpcMethod('XaBench', 'Pg')
  @XaBranch('xa.pg', { db: 'pg' })
  async pg(@Body() body: { id: number }, @BarrierTx() client: pg.ClientBase) {
    await client.query(PG_UPDATE, [body.id]);
  }

  @Post('mysql')
  @microservices.GrpcMethod('XaBench', 'Mysql')
  @XaBranch('xa.mysql', { db: 'mysql' })
  async mysql(@Body() body: { id: number }, @BarrierTx() conn: mysql.Connection) {
    await conn.query(MY_UPDATE, [body.id]);
  }
}

/** The saga steps on the same accounts, behind the barrier (no compensation: the bench's sagas all succeed). */
function sagaController(): Type {
  @Controller('saga')
  class Saga {
    @Post('pg')
    @microservices.GrpcMethod('XaBench', 'PgSaga')
    @SagaAction('saga.pg', { compensate: false, barrier: 'pg' })
    async pg(@Body() body: { id: number }, @BarrierTx() client: pg.PoolClient) {
      await client.query(PG_UPDATE, [body.id]);
    }

    @Post('mysql')
    @microservices.GrpcMethod('XaBench', 'MysqlSaga')
    @SagaAction('saga.mysql', { compensate: false, barrier: 'mysql' })
    async mysql(@Body() body: { id: number }, @BarrierTx() conn: mysql.PoolConnection) {
      await conn.query(MY_UPDATE, [body.id]);
    }
  }
  return Saga;
}

/** DTM's query keys of an XA branch call. */
interface XaQuery {
  gid: string;
  branch_id: string;
  op: string;
  phase2_url?: string;
}

/** The XA branch by hand, as DTM's Go SDK runs it; the registration over HTTP with axios, as an app would. */
@Controller('hand')
class HandXa {
  constructor(@Inject('dtm') private readonly dtm: { url: string; agent: http.Agent }) {}

  @Post(':store')
  @HttpCode(200)
  async branch(@Param('store') store: string, @Query() q: XaQuery, @Body() body: { id: number }) {
    const xid = `${q.gid}-${q.branch_id}`;
    try {
      if (q.op === 'action') await (store === 'pg' ? this.pgAction(q, xid, body.id) : this.myAction(q, xid, body.id));
      else if (q.op === 'commit' || q.op === 'rollback') await (store === 'pg' ? this.pgPhase2(q, xid) : this.myPhase2(q, xid));
      else throw new Error(`op ${q.op}`);
    } catch (err) {
      // shown: a failed action fails its caller's run (the transaction aborts); a failed phase 2 is
      // retried by DTM, and the outcome check at the end fails if it never succeeded
      console.error(`hand ${store} ${q.op} ${xid}: ${String(err)}`);
      throw new HttpException(String(err), 500);
    }
    return { dtm_result: 'SUCCESS' };
  }

  private register(q: XaQuery) {
    return axios.post(`${this.dtm.url}/registerBranch`, { gid: q.gid, trans_type: 'xa', branch_id: q.branch_id, url: q.phase2_url }, { httpAgent: this.dtm.agent, timeout: 10_000 });
  }

  private async pgAction(q: XaQuery, xid: string, id: number) {
    const { client, done } = await borrowPg();
    let clean = false;
    try {
      await client.query('BEGIN');
      try {
        await client.query(PG_BARRIER, ['xa', q.gid, q.branch_id, 'action', '01', 'action']);
        await client.query(PG_UPDATE, [id]);
        await this.register(q);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      await client.query(`PREPARE TRANSACTION '${xid}'`);
      clean = true;
    } finally {
      await done(clean);
    }
  }

  private async myAction(q: XaQuery, xid: string, id: number) {
    const conn = await connectMy();
    try {
      await conn.query(`XA START '${xid}'`);
      try {
        await conn.execute(MY_BARRIER, ['xa', q.gid, q.branch_id, 'action', '01', 'action']);
        await conn.query(MY_UPDATE, [id]);
        await this.register(q);
      } catch (err) {
        await conn.query(`XA END '${xid}'`).catch(() => undefined);
        await conn.query(`XA ROLLBACK '${xid}'`).catch(() => undefined);
        throw err;
      }
      await conn.query(`XA END '${xid}'`);
      await conn.query(`XA PREPARE '${xid}'`);
    } finally {
      await conn.end();
    }
  }

  /** Phase 2; a rollback also writes the barrier's `rollback` row, as DTM's SDK does (the bench's transactions never roll back). */
  private async pgPhase2(q: XaQuery, xid: string) {
    const { client, done } = await borrowPg();
    let clean = false;
    try {
      await client.query(`${q.op === 'commit' ? 'COMMIT' : 'ROLLBACK'} PREPARED '${xid}'`);
      if (q.op === 'rollback') await client.query(PG_BARRIER, ['xa', q.gid, q.branch_id, 'action', '01', 'rollback']);
      clean = true;
    } finally {
      await done(clean);
    }
  }

  private async myPhase2(q: XaQuery, xid: string) {
    const conn = await connectMy();
    try {
      await conn.query(`XA ${q.op === 'commit' ? 'COMMIT' : 'ROLLBACK'} '${xid}'`);
      if (q.op === 'rollback') await conn.execute(MY_BARRIER, ['xa', q.gid, q.branch_id, 'action', '01', 'rollback']);
    } finally {
      await conn.end();
    }
  }
}

@Module({
  imports: [
    DtmModule.forRoot({
      config: { serverUrl: process.env.DTM_URL!, grpcServer: process.env.DTM_GRPC!, grpcAppAddress: `127.0.0.1:${grpcPort}`, barrierTable: TABLE },
      barrierConnections: { pg: pgBarrierDatabase(pgPool), mysql: mysqlBarrierDatabase(myPool) },
      xaConnections: { pg: pgXaPool ? pgXaDatabase(pgXaPool) : pgXaDatabase(connectPg), mysql: mysqlXaDatabase(connectMy) },
    }),
  ],
  controllers: [ModuleXa, HandXa, sagaController()],
  providers: [{ provide: 'dtm', useValue: { url: process.env.DTM_URL!, agent: new http.Agent({ keepAlive: true }) } }],
})
class XaBenchModule {}

// forceCloseConnections: DTM keeps its connections to a branch app alive and may be calling on one at the
// SIGTERM; without it app.close() waits until DTM lets it go (its idle timeout, 90 s), and the benchmark with it
const app = await NestFactory.create(XaBenchModule, { logger: ['error', 'warn'], forceCloseConnections: true });
await listenBenchApp(app, microservices, grpcPort);
process.on('SIGTERM', () => void app.close().then(() => Promise.all([pgPool.end(), myPool.end(), pgXaPool?.end()])).then(() => process.exit(0)));
