// src/transfers.service.ts
import { Injectable } from '@nestjs/common';
import { DtmClient, type FinalResult } from 'nestjs-dtm';

/** Starts transfers: a saga of two branches, withdraw then deposit. */
@Injectable()
export class Transfers {
  constructor(private readonly dtm: DtmClient) {}

  async transfer(from: string, to: string, amount: number): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    return this.dtm.newSaga(gid).add('withdraw', { account: from, amount }).add('deposit', { account: to, amount }).submitAndWait();
  }
}
