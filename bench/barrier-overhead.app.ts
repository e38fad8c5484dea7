// The app under load for bench/barrier-overhead.ts, run as a child process with the database URLs
// in its environment (PG_URL, MYSQL_URL). Per store two decorated saga actions doing the same one
// UPDATE in a local transaction: /<store>/with behind the sub-transaction barrier, /<store>/without not.
import 'reflect-metadata';
import { Body, Controller, Inject, Module, Post, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { BarrierTx, DtmModule, SagaAction, mysqlBarrierDatabase, pgBarrierDatabase, type BarrierDatabase } from 'nestjs-dtm';

const UPDATE = 'UPDATE account SET balance = balance + 1 WHERE id = ?';
const pgPool = new pg.Pool({ connectionString: process.env.PG_URL, max: 32 });
// multipleStatements: the barrier sends its inserts with START TRANSACTION (see mysqlBarrierDatabase)
const myPool = mysql.createPool({ uri: process.env.MYSQL_URL, connectionLimit: 32, multipleStatements: true });
const databases = { pg: pgBarrierDatabase(pgPool), mysql: mysqlBarrierDatabase(myPool) };

async function update(store: 'pg' | 'mysql', handle: unknown, id: number): Promise<void> {
  if (store === 'pg') await (handle as pg.PoolClient).query(UPDATE.replace('?', '$1'), [id]);
  else await (handle as mysql.PoolConnection).query(UPDATE, [id]);
}

function controller(store: 'pg' | 'mysql'): Type {
  @Controller(store)
  class Bench {
    constructor(@Inject(`${store}-db`) private readonly db: BarrierDatabase) {}

    @Post('with')
    @SagaAction(`${store}.with`, { compensate: false, barrier: store })
    async with(@Body() body: { id: number }, @BarrierTx() tx: unknown) {
      await update(store, tx, body.id);
    }

    @Post('without')
    @SagaAction(`${store}.without`, { compensate: false })
    async without(@Body() body: { id: number }) {
      await this.db.transaction((handle) => update(store, handle, body.id));
    }
  }
  return Bench;
}

@Module({
  imports: [DtmModule.forRoot({ config: { serverUrl: 'http://127.0.0.1:1/api/dtmsvr', barrierTable: 'dtm_barrier' }, barrierConnections: databases })],
  controllers: [controller('pg'), controller('mysql')],
  providers: [
    { provide: 'pg-db', useValue: databases.pg },
    { provide: 'mysql-db', useValue: databases.mysql },
  ],
})
class BenchModule {}

const app = await NestFactory.create(BenchModule, { logger: ['error'] });
await app.listen(0, '127.0.0.1');
process.stdout.write(`port ${(app.getHttpServer().address() as { port: number }).port}\n`);
process.on('SIGTERM', () => void app.close().then(() => Promise.all([pgPool.end(), myPool.end()])).then(() => process.exit(0)));
