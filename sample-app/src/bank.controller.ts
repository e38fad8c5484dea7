import { Body, Controller, Post } from '@nestjs/common';
import { DtmFailureError, SagaAction, SagaCompensate } from 'nestjs-dtm';
import { BankService, type TransferRequest } from './bank.service.js';

/**
 * The saga branches of a transfer, written with nestjs-dtm's decorators: each answers 200 on
 * success, a thrown DtmFailureError is DTM's FAILURE (409) and rolls the saga back.
 * (The compensations here trust DTM to call them only after their action ran; the sub-transaction
 * barrier, which makes that true, comes with the database-backed banks.)
 */
@Controller('bank')
export class BankController {
  constructor(private readonly bank: BankService) {}

  @Post('trans-out')
  @SagaAction('transOut')
  transOut(@Body() req: TransferRequest) {
    if (!this.bank.canWithdraw(req.from, req.amount)) throw new DtmFailureError(`insufficient funds in ${req.from}`);
    return this.bank.deposit(req.from, -req.amount);
  }

  @Post('trans-out-compensate')
  @SagaCompensate('transOut')
  transOutCompensate(@Body() req: TransferRequest) {
    return this.bank.deposit(req.from, req.amount);
  }

  @Post('trans-in')
  @SagaAction('transIn')
  transIn(@Body() req: TransferRequest) {
    return this.bank.deposit(req.to, req.amount);
  }

  @Post('trans-in-compensate')
  @SagaCompensate('transIn')
  transInCompensate(@Body() req: TransferRequest) {
    return this.bank.deposit(req.to, -req.amount);
  }
}
