import { Inject, Injectable } from '@nestjs/common';
import type { Pool, PoolConnection } from 'mysql2/promise';
import { DtmClient, DtmFailureError, mysqlBarrierDatabase, type FinalResult } from 'nestjs-dtm';
import { MYSQL } from '../database.module.js';
import type { Order } from './shop.types.js';
import { Inventory, Payment, Shipping } from './shop.contract.js';

/**
 * Starts the shop's transactions, adding its branches by name (the contracts of shop.contract.ts,
 * resolved from the manifest of the service `shop`: lynx.dtm.services in config.yaml), as a
 * separate orders service would; payloads are type-checked against the contracts.
 */
@Injectable()
export class ShopService {
  constructor(
    private readonly dtm: DtmClient,
    @Inject(MYSQL) private readonly mysql: Pool,
  ) {}

  /** Saga checkout: take the stock, charge the customer, ship; any refusal compensates the steps before it. */
  async checkout(order: Order): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    return this.dtm.newSaga(gid).add(Inventory.take, order).add(Payment.charge, order).add(Shipping.ship, order).submitAndWait();
  }

  /** TCC reservation: reserve the stock and freeze the money, then DTM confirms both, or cancels both if a Try refused. */
  async reserve(order: Order): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    try {
      await this.dtm.tccGlobalTransaction(gid, async (tcc) => {
        await tcc.callBranch(order, Inventory.reserve);
        await tcc.callBranch(order, Payment.freeze);
      });
    } catch (err) {
      if (!(err instanceof DtmFailureError)) throw err;
    }
    return this.dtm.waitForFinal(gid);
  }

  /** Outbox: record the purchase in a local transaction; DTM then tells shipping, at least once. */
  async placeOrder(order: Order): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    await this.dtm
      .newMsg(gid)
      .add(Shipping.notify, order)
      .doAndSubmitDb('orders.check', mysqlBarrierDatabase<PoolConnection>(this.mysql), async (tx) => {
        await tx.query('INSERT INTO purchase (order_id, sku, qty) VALUES (?, ?, ?)', [order.orderId, order.sku, order.qty]);
      });
    return this.dtm.waitForFinal(gid);
  }
}
