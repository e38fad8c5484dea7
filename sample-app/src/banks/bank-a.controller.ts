import { Body, Controller, Post } from '@nestjs/common';
import type { PoolClient } from 'pg';
import type { Client } from 'pg';
import { BarrierTx, DtmFailureError, SagaAction, SagaCompensate, UseBarrier, XaBranch } from 'nestjs-dtm';

/** A transfer's leg at one bank. */
export interface Leg {
  account: string;
  amount: number;
}

/**
 * Bank A, on PostgreSQL. Every saga branch runs behind the sub-transaction barrier (@UseBarrier):
 * retried, duplicated or out-of-order calls from DTM change the balance once, or not at all.
 */
@Controller('bank-a')
@UseBarrier('pg')
export class BankAController {
  @Post('withdraw')
  @SagaAction('bankA.withdraw')
  async withdraw(@Body() leg: Leg, @BarrierTx() tx: PoolClient) {
    const taken = await tx.query('UPDATE account SET balance = balance - $1 WHERE name = $2 AND balance >= $1', [leg.amount, leg.account]);
    if (taken.rowCount === 0) throw new DtmFailureError(`bank A: ${leg.account} cannot pay ${leg.amount}`);
  }

  @Post('withdraw-compensate')
  @SagaCompensate('bankA.withdraw')
  async withdrawCompensate(@Body() leg: Leg, @BarrierTx() tx: PoolClient) {
    await tx.query('UPDATE account SET balance = balance + $1 WHERE name = $2', [leg.amount, leg.account]);
  }

  /** The XA flavour: the module runs this inside the branch's local XA transaction. */
  @Post('xa-withdraw')
  @XaBranch('bankA.xaWithdraw', { db: 'pg' })
  async xaWithdraw(@Body() leg: Leg, @BarrierTx() client: Client) {
    const taken = await client.query('UPDATE account SET balance = balance - $1 WHERE name = $2 AND balance >= $1', [leg.amount, leg.account]);
    if (taken.rowCount === 0) throw new DtmFailureError(`bank A: ${leg.account} cannot pay ${leg.amount}`);
  }
}
