import { Module } from '@nestjs/common';
import { BankController } from './bank.controller.js';
import { BankService } from './bank.service.js';

/** The sample app: a bank whose transfer is a DTM saga. */
@Module({ controllers: [BankController], providers: [BankService] })
export class AppModule {}
