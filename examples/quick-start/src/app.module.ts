// src/app.module.ts
import { Module } from '@nestjs/common';
import { DtmModule, pgBarrierDatabase } from 'nestjs-dtm';
import pg from 'pg';
import { BankController } from './bank.controller.js';
import { Transfers, TransfersController } from './transfers.js';

export const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres:postgres@localhost:5432/postgres' });
// pg emits 'error' on the pool when the server ends an idle client (a restart, a failover): unheard, it ends the process
pool.on('error', (err) => console.error('pg pool:', err.message));

@Module({
  imports: [DtmModule.forRoot({ configFile: 'config.yaml', isGlobal: true, barrierConnections: { pg: pgBarrierDatabase(pool) } })],
  controllers: [BankController, TransfersController],
  providers: [Transfers],
})
export class AppModule {}
