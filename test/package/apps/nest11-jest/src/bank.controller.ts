// src/bank.controller.ts
import { Body, Controller, Post } from '@nestjs/common';
import { BranchContext, DtmFailureError, SagaAction, SagaCompensate } from 'nestjs-dtm';
import { Accounts } from './accounts';

/** One branch's payload: which account, how much. */
export interface Move {
  account: string;
  amount: number;
}

/** What DTM tells a branch about the call (the part used here). */
interface Call {
  gid: string;
  branchId: string;
}

/** The saga's branches, which DTM calls. */
@Controller('bank')
export class BankController {
  constructor(private readonly accounts: Accounts) {}

  @Post('withdraw')
  @SagaAction('withdraw')
  withdraw(@Body() move: Move, @BranchContext() call: Call) {
    if (!this.accounts.apply(`${call.gid}/${call.branchId}`, move.account, -move.amount)) {
      throw new DtmFailureError(`cannot take ${move.amount} from ${move.account}`); // 409: DTM rolls the saga back
    }
  }

  @Post('withdraw-compensate')
  @SagaCompensate('withdraw')
  giveBack(@Body() move: Move, @BranchContext() call: Call) {
    this.accounts.undo(`${call.gid}/${call.branchId}`, move.account, -move.amount);
  }

  @Post('deposit')
  @SagaAction('deposit')
  deposit(@Body() move: Move, @BranchContext() call: Call) {
    if (!this.accounts.apply(`${call.gid}/${call.branchId}`, move.account, move.amount)) {
      throw new DtmFailureError(`no account ${move.account}`);
    }
  }

  @Post('deposit-compensate')
  @SagaCompensate('deposit')
  takeBack(@Body() move: Move, @BranchContext() call: Call) {
    this.accounts.undo(`${call.gid}/${call.branchId}`, move.account, move.amount);
  }
}
