import { Body, Controller, Post } from '@nestjs/common';
import type { PoolConnection } from 'mysql2/promise';
import type { ResultSetHeader } from 'mysql2';
import { BarrierTx, DtmFailureError, SagaAction, SagaCompensate, TccCancel, TccConfirm, TccTry, UseBarrier } from 'nestjs-dtm';
import type { Order } from './shop.types.js';
import { Inventory } from './shop.contract.js';

/** Stock, on MariaDB: a saga step (take, put back) and a TCC branch (reserve, then sell or release). */
@Controller('inventory')
@UseBarrier('mysql')
export class InventoryController {
  @Post('take')
  @SagaAction(Inventory.take)
  async take(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    const [r] = await tx.query<ResultSetHeader>('UPDATE product SET stock = stock - ? WHERE sku = ? AND stock >= ?', [o.qty, o.sku, o.qty]);
    if (r.affectedRows === 0) throw new DtmFailureError(`out of ${o.sku}`);
  }

  @Post('take-compensate')
  @SagaCompensate(Inventory.take)
  async putBack(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    await tx.query('UPDATE product SET stock = stock + ? WHERE sku = ?', [o.qty, o.sku]);
  }

  @Post('reserve-try')
  @TccTry(Inventory.reserve)
  async reserve(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    const [r] = await tx.query<ResultSetHeader>('UPDATE product SET stock = stock - ?, reserved = reserved + ? WHERE sku = ? AND stock >= ?', [o.qty, o.qty, o.sku, o.qty]);
    if (r.affectedRows === 0) throw new DtmFailureError(`out of ${o.sku}`);
  }

  @Post('reserve-confirm')
  @TccConfirm(Inventory.reserve)
  async sell(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    await tx.query('UPDATE product SET reserved = reserved - ? WHERE sku = ?', [o.qty, o.sku]);
  }

  @Post('reserve-cancel')
  @TccCancel(Inventory.reserve)
  async release(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    await tx.query('UPDATE product SET stock = stock + ?, reserved = reserved - ? WHERE sku = ?', [o.qty, o.qty, o.sku]);
  }
}
