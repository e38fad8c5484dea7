import { Body, Controller, Get, Post } from '@nestjs/common';
import type { PoolConnection } from 'mysql2/promise';
import { BarrierTx, DtmFailureError, MsgBranch, MsgQueryPrepared, SagaAction, SagaCompensate, UseBarrier } from 'nestjs-dtm';
import type { Order } from './shop.types.js';
import { Shipping } from './shop.contract.js';

/** Addresses the shop does not ship to. */
const NOT_SERVED = ['atlantis'];

/** Shipments, on MariaDB: a saga step, a message branch, and the back-check of the order outbox. */
@Controller('shipping')
@UseBarrier('mysql')
export class ShippingController {
  @Post('ship')
  @SagaAction(Shipping.ship)
  async ship(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    if (NOT_SERVED.includes(o.address)) throw new DtmFailureError(`we do not ship to ${o.address}`);
    await tx.query('INSERT INTO shipment (order_id, address) VALUES (?, ?)', [o.orderId, o.address]);
  }

  @Post('ship-compensate')
  @SagaCompensate(Shipping.ship)
  async unship(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    await tx.query('DELETE FROM shipment WHERE order_id = ?', [o.orderId]);
  }

  /** Delivered by DTM once the order's local transaction committed (the outbox). */
  @Post('notify')
  @MsgBranch(Shipping.notify)
  async notify(@Body() o: Order, @BarrierTx() tx: PoolConnection) {
    await tx.query('INSERT INTO shipment (order_id, address) VALUES (?, ?)', [o.orderId, o.address]);
  }

  /** DTM asks here whether an order's local transaction committed; the barrier table answers. */
  @Get('order-check')
  @MsgQueryPrepared('orders.check')
  orderCheck() {}
}
