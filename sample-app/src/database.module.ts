import { Global, Inject, Module, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { ensureBarrierSchema, mysqlBarrierDatabase, pgBarrierDatabase } from 'nestjs-dtm';

/** Injection token of the PostgreSQL pool (bank A). */
export const PG = 'PG_POOL';
/** Injection token of the MariaDB pool (bank B and the shop). */
export const MYSQL = 'MYSQL_POOL';

/** The sample app's two databases, from PG_URL and MYSQL_URL; creates their tables at start. */
@Global()
@Module({
  providers: [
    { provide: PG, useFactory: () => new pg.Pool({ connectionString: process.env.PG_URL }) },
    { provide: MYSQL, useFactory: () => mysql.createPool({ uri: process.env.MYSQL_URL }) },
  ],
  exports: [PG, MYSQL],
})
export class DatabaseModule implements OnModuleInit, OnApplicationShutdown {
  constructor(
    @Inject(PG) private readonly pgPool: pg.Pool,
    @Inject(MYSQL) private readonly mysqlPool: mysql.Pool,
  ) {}

  async onModuleInit(): Promise<void> {
    await this.pgPool.query('CREATE TABLE IF NOT EXISTS account (name varchar(32) PRIMARY KEY, balance int NOT NULL)');
    for (const sql of [
      'CREATE TABLE IF NOT EXISTS account (name varchar(32) PRIMARY KEY, balance int NOT NULL)',
      'CREATE TABLE IF NOT EXISTS product (sku varchar(32) PRIMARY KEY, stock int NOT NULL, reserved int NOT NULL DEFAULT 0)',
      'CREATE TABLE IF NOT EXISTS wallet (customer varchar(32) PRIMARY KEY, balance int NOT NULL, frozen int NOT NULL DEFAULT 0)',
      'CREATE TABLE IF NOT EXISTS shipment (order_id varchar(64) PRIMARY KEY, address varchar(128) NOT NULL)',
      'CREATE TABLE IF NOT EXISTS purchase (order_id varchar(64) PRIMARY KEY, sku varchar(32) NOT NULL, qty int NOT NULL)',
    ]) {
      await this.mysqlPool.query(sql);
    }
    // the sub-transaction barrier's table, in each database
    await ensureBarrierSchema(pgBarrierDatabase(this.pgPool));
    await ensureBarrierSchema(mysqlBarrierDatabase(this.mysqlPool));
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([this.pgPool.end(), this.mysqlPool.end()]);
  }
}
