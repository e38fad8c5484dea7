// An XA participant (resource manager) for xa.spec.ts, run as its own process so that a test can
// kill it between XA PREPARE and phase 2. Environment: PORT, GRPC_PORT, PG_URL, MYSQL_URL, DTM_URL,
// DTM_GRPC, and BRANCH_AUTH_KEY for authenticated branch calls (BRANCH_AUTH_CHECK_ACTIONS=1: with branch_auth_check_actions, and a
// branch.call hook that warns `branch.call <gid> <branch> <op>: <outcome> <status>` of each call not answered success). Two XA branches, each an HTTP route and a gRPC method (service XaBank of
// test/e2e/protos/tests.proto): POST /xa/mysql (XaBank/Mysql) on MariaDB, POST /xa/pg (XaBank/Pg)
// on PostgreSQL; each adds `amount` to account `account`, and with `fail` set throws FAILURE after
// its write (which must roll back); /xa/pg with `fail: 'swallow'` runs a failing statement after its
// write and catches its error (the business swallows an SQL error), with `fail: 'commit'` commits its
// transaction itself after its write. POST /xa/pg-rx: the PostgreSQL branch answering with an Observable.
import 'reflect-metadata';
import { Body, Controller, Logger, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GrpcMethod } from '@nestjs/microservices';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { defer } from 'rxjs';
import { BarrierTx, DtmFailureError, DtmModule, XaBranch, mysqlXaDatabase } from 'nestjs-dtm';
import { testsGrpcOptions } from '../support/grpc.js';
import { pgXaAt } from '../support/pg-xa.js';

interface Move {
  account: number;
  amount: number;
  fail?: boolean | string;
}

@Controller('xa')
class XaBank {
  @Post('mysql')
  @GrpcMethod('XaBank', 'Mysql')
  @XaBranch('mysqlBank', { db: 'mysql' })
  async mysql(@Body() m: Move, @BarrierTx() conn: mysql.Connection) {
    await conn.query('UPDATE account SET balance = balance + ? WHERE id = ?', [m.amount, m.account]);
    if (m.fail) throw new DtmFailureError('mysql branch refused');
    return { ok: true };
  }

  @Post('pg')
  @GrpcMethod('XaBank', 'Pg')
  @XaBranch('pgBank', { db: 'pg' })
  async pg(@Body() m: Move, @BarrierTx() client: pg.Client) {
    await client.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
    // a business that catches an SQL error and goes on: PostgreSQL's transaction is aborted now
    if (m.fail === 'swallow') await client.query('SELECT 1 / 0').catch(() => undefined);
    // a business that ends the transaction itself (a helper running its own BEGIN / COMMIT on the client it gets)
    else if (m.fail === 'commit') await client.query('COMMIT');
    else if (m.fail) throw new DtmFailureError('pg branch refused');
    return { ok: true };
  }

  /** The PostgreSQL branch as an Observable (Nest allows one): its work must run before PREPARE. */
  @Post('pg-rx')
  @XaBranch('pgBankRx', { db: 'pg' })
  pgRx(@Body() m: Move, @BarrierTx() client: pg.Client) {
    return defer(async () => {
      await client.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
      if (m.fail) throw new DtmFailureError('pg branch refused');
      return { ok: true };
    });
  }
}

@Module({
  imports: [
    DtmModule.forRoot({
      config: {
        serverUrl: process.env.DTM_URL!,
        grpcServer: process.env.DTM_GRPC!,
        grpcAppAddress: `127.0.0.1:${process.env.GRPC_PORT}`,
        barrierTable: 'dtm_barrier',
        publishBranches: true, // xa.spec's caller of its branches by name reads them from its manifest
        // BRANCH_AUTH_KEY: authenticated branch calls
        ...(process.env.BRANCH_AUTH_KEY ? { branchAuthKeys: [process.env.BRANCH_AUTH_KEY] } : {}),
        // BRANCH_AUTH_CHECK_ACTIONS=1: branch_auth_check_actions too
        ...(process.env.BRANCH_AUTH_CHECK_ACTIONS === '1' ? { branchAuthCheckActions: true } : {}),
      },
      xaConnections: {
        mysql: mysqlXaDatabase(() => mysql.createConnection({ uri: process.env.MYSQL_URL })),
        pg: pgXaAt(process.env.PG_URL),
      },
      ...(process.env.BRANCH_AUTH_CHECK_ACTIONS === '1'
        ? { instrumentation: { hooks: { 'branch.call': (e) => void (e.outcome !== 'success' && new Logger('XaParticipant').warn(`branch.call ${e.gid} ${e.branchId} ${e.op}: ${e.outcome} ${e.status ?? '-'}`)) } } }
        : {}),
    }),
  ],
  controllers: [XaBank],
})
class XaParticipantModule {}

const app = await NestFactory.create(XaParticipantModule, { logger: ['error', 'warn'] });
app.connectMicroservice(testsGrpcOptions(`127.0.0.1:${process.env.GRPC_PORT}`), { inheritAppConfig: true });
await app.startAllMicroservices();
await app.listen(Number(process.env.PORT), '127.0.0.1');
process.stdout.write('ready\n');
