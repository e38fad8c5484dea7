import { Module } from '@nestjs/common';
import type mysql from 'mysql2/promise';
import type pg from 'pg';
import { DtmModule, mysqlBarrierDatabase, mysqlXaDatabase, pgBarrierDatabase, pgXaDatabase } from 'nestjs-dtm';
import { createConnection } from 'mysql2/promise';
import { Client } from 'pg';
import { BankAController } from './banks/bank-a.controller.js';
import { BankBController } from './banks/bank-b.controller.js';
import { TransfersService } from './banks/transfers.service.js';
import { DatabaseModule, MYSQL, PG } from './database.module.js';
import { InventoryController } from './shop/inventory.controller.js';
import { PaymentController } from './shop/payment.controller.js';
import { ShippingController } from './shop/shipping.controller.js';
import { ShopService } from './shop/shop.service.js';

/**
 * The sample app: two banks (A on PostgreSQL, B on MariaDB) and a small shop (inventory, payment,
 * shipping, on MariaDB). DTM settings come from sample-app/config.yaml; the databases from PG_URL
 * and MYSQL_URL.
 */
@Module({
  imports: [
    DatabaseModule,
    DtmModule.forRootAsync({
      isGlobal: true,
      inject: [PG, MYSQL],
      useFactory: (pgPool: pg.Pool, mysqlPool: mysql.Pool) => ({
        configFile: process.env.DTM_CONFIG_FILE ?? 'sample-app/config.yaml',
        // the barrier of every branch: one transaction on these pools
        barrierConnections: { pg: pgBarrierDatabase<pg.PoolClient>(pgPool), mysql: mysqlBarrierDatabase(mysqlPool) },
        // XA branches: a dedicated connection per branch call
        xaConnections: {
          pg: pgXaDatabase(async () => {
            const client = new Client({ connectionString: process.env.PG_URL });
            await client.connect();
            return client;
          }),
          mysql: mysqlXaDatabase(() => createConnection({ uri: process.env.MYSQL_URL })),
        },
      }),
    }),
  ],
  controllers: [BankAController, BankBController, InventoryController, PaymentController, ShippingController],
  providers: [TransfersService, ShopService],
})
export class AppModule {}
