// An XA participant (resource manager) for xa.spec.ts, run as its own process so that a test can
// kill it between XA PREPARE and phase 2. Environment: PORT, PG_URL, MYSQL_URL, DTM_URL.
// Two XA branches: POST /xa/mysql on MariaDB, POST /xa/pg on PostgreSQL; each adds `amount` to
// account `account`, and with `fail: true` throws FAILURE after its write (which must roll back).
import 'reflect-metadata';
import { Body, Controller, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { BarrierTx, DtmFailureError, DtmModule, XaBranch, mysqlXaDatabase, pgXaDatabase } from 'nestjs-dtm';

interface Move {
  account: number;
  amount: number;
  fail?: boolean;
}

@Controller('xa')
class XaBank {
  @Post('mysql')
  @XaBranch('mysqlBank', { db: 'mysql' })
  async mysql(@Body() m: Move, @BarrierTx() conn: mysql.Connection) {
    await conn.query('UPDATE account SET balance = balance + ? WHERE id = ?', [m.amount, m.account]);
    if (m.fail) throw new DtmFailureError('mysql branch refused');
    return { ok: true };
  }

  @Post('pg')
  @XaBranch('pgBank', { db: 'pg' })
  async pg(@Body() m: Move, @BarrierTx() client: pg.Client) {
    await client.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
    if (m.fail) throw new DtmFailureError('pg branch refused');
    return { ok: true };
  }
}

@Module({
  imports: [
    DtmModule.forRoot({
      config: { serverUrl: process.env.DTM_URL!, barrierTable: 'dtm_barrier' },
      xaConnections: {
        mysql: mysqlXaDatabase(() => mysql.createConnection({ uri: process.env.MYSQL_URL })),
        pg: pgXaDatabase(async () => {
          const client = new pg.Client({ connectionString: process.env.PG_URL });
          await client.connect();
          return client;
        }),
      },
    }),
  ],
  controllers: [XaBank],
})
class XaParticipantModule {}

const app = await NestFactory.create(XaParticipantModule, { logger: ['error', 'warn'] });
await app.listen(Number(process.env.PORT), '127.0.0.1');
process.stdout.write('ready\n');
