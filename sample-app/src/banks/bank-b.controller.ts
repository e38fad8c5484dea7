import { Body, Controller, Post } from '@nestjs/common';
import type { ResultSetHeader } from 'mysql2';
import type { Connection, PoolConnection } from 'mysql2/promise';
import { BarrierTx, DtmFailureError, SagaAction, SagaCompensate, UseBarrier, XaBranch } from 'nestjs-dtm';
import type { Leg } from './bank-a.controller.js';

/** Bank B, on MariaDB: the receiving side of transfers. */
@Controller('bank-b')
@UseBarrier('mysql')
export class BankBController {
  @Post('deposit')
  @SagaAction('bankB.deposit')
  async deposit(@Body() leg: Leg, @BarrierTx() tx: PoolConnection) {
    await tx.query('UPDATE account SET balance = balance + ? WHERE name = ?', [leg.amount, leg.account]);
  }

  @Post('deposit-compensate')
  @SagaCompensate('bankB.deposit')
  async depositCompensate(@Body() leg: Leg, @BarrierTx() tx: PoolConnection) {
    await tx.query('UPDATE account SET balance = balance - ? WHERE name = ?', [leg.amount, leg.account]);
  }

  @Post('xa-deposit')
  @XaBranch('bankB.xaDeposit', { db: 'mysql' })
  async xaDeposit(@Body() leg: Leg, @BarrierTx() conn: Connection) {
    const [r] = await conn.query<ResultSetHeader>('UPDATE account SET balance = balance + ? WHERE name = ?', [leg.amount, leg.account]);
    if (r.affectedRows === 0) throw new DtmFailureError(`bank B has no account ${leg.account}`);
  }
}
