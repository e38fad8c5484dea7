// The app under load for bench/barrier-overhead.ts, run as a child process with the database URLs
// in its environment (PG_URL, MYSQL_URL). Per store two decorated saga actions doing the same one
// UPDATE in a local transaction: /<store>/with behind the sub-transaction barrier, /<store>/without not.
// With GRPC_PORT set it is a hybrid app (as the README's main.ts): the same handlers are also the
// gRPC methods bench.PgBench/With, /Without and bench.MysqlBench/With, /Without of
// bench/bench.proto (payload bench.Move { id }), served on 127.0.0.1:GRPC_PORT; it then prints
// `grpc port N` before `port N`. Without it, the app is what it was before gRPC (HTTP only).
// BENCH_ADAPTER=fastify: on Nest's Fastify adapter instead of Express.
import 'reflect-metadata';
import { Body, Controller, Inject, Module, Post, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { BarrierTx, DtmModule, SagaAction, mysqlBarrierDatabase, pgBarrierDatabase, type BarrierDatabase } from 'nestjs-dtm';
import { listenBenchApp } from './bench-app.js';

const UPDATE = 'UPDATE account SET balance = balance + 1 WHERE id = ?';
const pgPool = new pg.Pool({ connectionString: process.env.PG_URL, max: 32 });
// the barrier's inserts are prepared statements, after START TRANSACTION (see mysqlBarrierDatabase).
// trace: false, as in production: mysql2's default captures a stack trace per statement (6 % of this
// app's CPU in a profile of the branch alone); DTM's Go SDK pays nothing of the kind
const myPool = mysql.createPool({ uri: process.env.MYSQL_URL, connectionLimit: 32, trace: false });
const databases = { pg: pgBarrierDatabase(pgPool), mysql: mysqlBarrierDatabase(myPool) };
const grpcPort = Number(process.env.GRPC_PORT ?? 0);
// loaded only for gRPC, so that the HTTP-only app loads what it did before
const microservices = grpcPort ? await import('@nestjs/microservices') : undefined;
/** `@GrpcMethod(service, method)` when serving gRPC, else nothing. */
const grpcMethod = (service: string, method: string): MethodDecorator => (microservices ? microservices.GrpcMethod(service, method) : () => undefined);

async function update(store: 'pg' | 'mysql', handle: unknown, id: number): Promise<void> {
  if (store === 'pg') await (handle as pg.PoolClient).query(UPDATE.replace('?', '$1'), [id]);
  else await (handle as mysql.PoolConnection).query(UPDATE, [id]);
}

function controller(store: 'pg' | 'mysql'): Type {
  const service = store === 'pg' ? 'PgBench' : 'MysqlBench';

  @Controller(store)
  class Bench {
    constructor(@Inject(`${store}-db`) private readonly db: BarrierDatabase) {}

    @Post('with')
    @grpcMethod(service, 'With')
    @SagaAction(`${store}.with`, { compensate: false, barrier: store })
    async with(@Body() body: { id: number }, @BarrierTx() tx: unknown) {
      await update(store, tx, body.id);
    }

    @Post('without')
    @grpcMethod(service, 'Without')
    @SagaAction(`${store}.without`, { compensate: false })
    async without(@Body() body: { id: number }) {
      await this.db.transaction((handle) => update(store, handle, body.id));
    }
  }
  return Bench;
}

@Module({
  imports: [
    DtmModule.forRoot({
      config: { serverUrl: 'http://127.0.0.1:1/api/dtmsvr', barrierTable: 'dtm_barrier', ...(grpcPort ? { grpcAppAddress: `127.0.0.1:${grpcPort}` } : {}) },
      barrierConnections: databases,
    }),
  ],
  controllers: [controller('pg'), controller('mysql')],
  providers: [
    { provide: 'pg-db', useValue: databases.pg },
    { provide: 'mysql-db', useValue: databases.mysql },
  ],
})
class BenchModule {}

const fastify = process.env.BENCH_ADAPTER === 'fastify' ? await import('@nestjs/platform-fastify') : undefined;
// forceCloseConnections: DTM keeps its connections to a branch app alive and may be calling on one at the
// SIGTERM; without it app.close() waits until DTM lets it go (its idle timeout, 90 s), and the benchmark with it
const app = fastify
  ? await NestFactory.create(BenchModule, new fastify.FastifyAdapter(), { logger: ['error'], forceCloseConnections: true })
  : await NestFactory.create(BenchModule, { logger: ['error'], forceCloseConnections: true });
await listenBenchApp(app, microservices, grpcPort);
process.on('SIGTERM', () => void app.close().then(() => Promise.all([pgPool.end(), myPool.end()])).then(() => process.exit(0)));
