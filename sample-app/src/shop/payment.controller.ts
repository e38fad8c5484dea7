import { Body, Controller, Post } from '@nestjs/common';
import type { PoolConnection } from 'mysql2/promise';
import type { ResultSetHeader } from 'mysql2';
import { BarrierTx, DtmFailureError, SagaAction, SagaCompensate, TccCancel, TccConfirm, TccTry, UseBarrier } from 'nestjs-dtm';
import type { Order } from './shop.types.js';
import { Payment } from './shop.contract.js';

/** Customers' wallets, on MariaDB: a saga step (charge, refund) and a TCC branch (freeze, then pay or unfreeze). */
@Controller('payment')
@UseBarrier('mysql')
export class PaymentController {
  @Post('charge')
  @SagaAction(Payment.charge)
  async charge(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    const [r] = await tx.query<ResultSetHeader>('UPDATE wallet SET balance = balance - ? WHERE customer = ? AND balance >= ?', [o.amount, o.customer, o.amount]);
    if (r.affectedRows === 0) throw new DtmFailureError(`${o.customer} cannot pay ${o.amount}`);
  }

  @Post('charge-compensate')
  @SagaCompensate(Payment.charge)
  async refund(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    await tx.query('UPDATE wallet SET balance = balance + ? WHERE customer = ?', [o.amount, o.customer]);
  }

  @Post('freeze-try')
  @TccTry(Payment.freeze)
  async freeze(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    const [r] = await tx.query<ResultSetHeader>('UPDATE wallet SET balance = balance - ?, frozen = frozen + ? WHERE customer = ? AND balance >= ?', [
      o.amount,
      o.amount,
      o.customer,
      o.amount,
    ]);
    if (r.affectedRows === 0) throw new DtmFailureError(`${o.customer} cannot pay ${o.amount}`);
  }

  @Post('freeze-confirm')
  @TccConfirm(Payment.freeze)
  async pay(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    await tx.query('UPDATE wallet SET frozen = frozen - ? WHERE customer = ?', [o.amount, o.customer]);
  }

  @Post('freeze-cancel')
  @TccCancel(Payment.freeze)
  async unfreeze(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    await tx.query('UPDATE wallet SET balance = balance + ?, frozen = frozen - ? WHERE customer = ?', [o.amount, o.amount, o.customer]);
  }
}
