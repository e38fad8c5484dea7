// src/app.module.ts
import { Module } from '@nestjs/common';
import { DtmModule } from 'nestjs-dtm';
import { Accounts } from './accounts';
import { BankController } from './bank.controller';
import { Transfers } from './transfers.service';

@Module({
  imports: [
    // read when the app starts, so a test can point it at the DTM server it started
    DtmModule.forRootAsync({ useFactory: () => ({ config: { serverUrl: process.env.DTM_SERVER_URL ?? 'http://localhost:36789/api/dtmsvr' } }) }),
  ],
  controllers: [BankController],
  providers: [Accounts, Transfers],
})
export class AppModule {}
