import { Module } from '@nestjs/common';
import { DtmModule } from 'nestjs-dtm';
import { BankController } from './bank.controller.js';
import { BankService } from './bank.service.js';
import { TransferService } from './transfer.service.js';

/** The sample app: a bank whose transfers are DTM sagas. Configured by sample-app/config.yaml. */
@Module({
  imports: [DtmModule.forRoot({ configFile: process.env.DTM_CONFIG_FILE ?? 'sample-app/config.yaml' })],
  controllers: [BankController],
  providers: [BankService, TransferService],
})
export class AppModule {}
