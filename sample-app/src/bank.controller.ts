import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { BankService, type TransferRequest } from './bank.service.js';

/**
 * The saga branches of a two-account transfer: every branch answers exactly HTTP 200 on success
 * (DTM retries anything else; Nest's @Post() default would be 201).
 */
@Controller('bank')
export class BankController {
  constructor(private readonly bank: BankService) {}

  @Post('trans-out')
  @HttpCode(200)
  transOut(@Body() req: TransferRequest) {
    return this.bank.adjust(req.from, -req.amount);
  }

  @Post('trans-out-compensate')
  @HttpCode(200)
  transOutCompensate(@Body() req: TransferRequest) {
    return this.bank.adjust(req.from, req.amount);
  }

  @Post('trans-in')
  @HttpCode(200)
  transIn(@Body() req: TransferRequest) {
    return this.bank.adjust(req.to, req.amount);
  }

  @Post('trans-in-compensate')
  @HttpCode(200)
  transInCompensate(@Body() req: TransferRequest) {
    return this.bank.adjust(req.to, -req.amount);
  }
}
