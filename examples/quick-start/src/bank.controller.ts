// src/bank.controller.ts: the branches DTM calls
import { Body, Controller, Post } from '@nestjs/common';
import { BarrierTx, DtmFailureError, SagaAction, SagaCompensate, UseBarrier } from 'nestjs-dtm';
import type { PoolClient } from 'pg';

/** One branch's payload: which account, how much. */
export interface Move {
  account: string;
  amount: number;
}

@Controller('bank')
@UseBarrier('pg') // each branch runs in a local transaction behind the barrier: at most once, in any order
export class BankController {
  @Post('withdraw')
  @SagaAction('withdraw')
  async withdraw(@Body() m: Move, @BarrierTx() tx: PoolClient) {
    const r = await tx.query('UPDATE account SET balance = balance - $1 WHERE name = $2 AND balance >= $1', [m.amount, m.account]);
    if (r.rowCount === 0) throw new DtmFailureError(`cannot take ${m.amount} from ${m.account}`); // DTM rolls the saga back
  }

  @Post('withdraw-compensate')
  @SagaCompensate('withdraw')
  async giveBack(@Body() m: Move, @BarrierTx() tx: PoolClient) {
    await tx.query('UPDATE account SET balance = balance + $1 WHERE name = $2', [m.amount, m.account]);
  }

  @Post('deposit')
  @SagaAction('deposit')
  async deposit(@Body() m: Move, @BarrierTx() tx: PoolClient) {
    const r = await tx.query('UPDATE account SET balance = balance + $1 WHERE name = $2', [m.amount, m.account]);
    if (r.rowCount === 0) throw new DtmFailureError(`no account ${m.account}`);
  }

  @Post('deposit-compensate')
  @SagaCompensate('deposit')
  async takeBack(@Body() m: Move, @BarrierTx() tx: PoolClient) {
    await tx.query('UPDATE account SET balance = balance - $1 WHERE name = $2', [m.amount, m.account]);
  }
}
