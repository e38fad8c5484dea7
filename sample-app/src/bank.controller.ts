import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { BankService, type TransferRequest } from './bank.service.js';

/**
 * The saga branches of a transfer. Every branch answers exactly HTTP 200 on success (DTM retries
 * anything else, and Nest's @Post() default is 201); a 409 is DTM's FAILURE and rolls the saga back.
 * (The compensations here trust DTM to call them only after their action ran; the sub-transaction
 * barrier, which makes that true, comes with the database-backed banks.)
 */
@Controller('bank')
export class BankController {
  constructor(private readonly bank: BankService) {}

  @Post('trans-out')
  @HttpCode(200)
  transOut(@Body() req: TransferRequest) {
    return this.bank.withdraw(req.from, req.amount);
  }

  @Post('trans-out-compensate')
  @HttpCode(200)
  transOutCompensate(@Body() req: TransferRequest) {
    return this.bank.deposit(req.from, req.amount);
  }

  @Post('trans-in')
  @HttpCode(200)
  transIn(@Body() req: TransferRequest) {
    return this.bank.deposit(req.to, req.amount);
  }

  @Post('trans-in-compensate')
  @HttpCode(200)
  transInCompensate(@Body() req: TransferRequest) {
    return this.bank.deposit(req.to, -req.amount);
  }
}
