// bank.controller.ts
import { Controller, Post } from '@nestjs/common';
import { GrpcMethod, Payload } from '@nestjs/microservices';
import { BarrierTx, BranchContext, DtmFailureError, SagaAction, SagaCompensate, UseBarrier, type BranchInfo } from 'nestjs-dtm';
import type { PoolClient } from 'pg';

interface Move {
  account: number;
  amount: number;
}

@Controller('bank')
@UseBarrier('pg')
export class BankController {
  @Post('withdraw') // optional: the same branch over HTTP too (its compensation needs a route as well)
  @GrpcMethod('Bank', 'Withdraw') // rpc Withdraw(Move) returns (Reply)
  @SagaAction('withdraw')
  async withdraw(@Payload() m: Move, @BarrierTx() tx: PoolClient, @BranchContext() branch: BranchInfo) {
    const r = await tx.query('UPDATE account SET balance = balance - $1 WHERE id = $2 AND balance >= $1', [m.amount, m.account]);
    if (r.rowCount === 0) throw new DtmFailureError(`insufficient funds (${branch.gid})`); // ABORTED
  } // returns nothing: the module answers an empty Reply

  @Post('withdraw-compensate') // with the action's @Post: without it an HTTP saga's add('withdraw') is refused (DtmUsageError)
  @GrpcMethod('Bank', 'Deposit')
  @SagaCompensate('withdraw')
  async giveBack(@Payload() m: Move, @BarrierTx() tx: PoolClient) {
    await tx.query('UPDATE account SET balance = balance + $1 WHERE id = $2', [m.amount, m.account]);
  }
}
