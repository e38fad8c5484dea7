// src/transfers.ts: starting the saga, and the route that does it
import { Body, Controller, HttpCode, Injectable, Post } from '@nestjs/common';
import { DtmClient, type FinalResult } from 'nestjs-dtm';

@Injectable()
export class Transfers {
  constructor(private readonly dtm: DtmClient) {}

  /** A saga of two branches: withdraw, then deposit; waits for DTM's final status. */
  async transfer(from: string, to: string, amount: number): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    return this.dtm.newSaga(gid).add('withdraw', { account: from, amount }).add('deposit', { account: to, amount }).submitAndWait();
  }
}

@Controller('transfers')
export class TransfersController {
  constructor(private readonly transfers: Transfers) {}

  @Post()
  @HttpCode(200)
  async create(@Body() t: { from: string; to: string; amount: number }) {
    const { gid, status, rollbackReason } = await this.transfers.transfer(t.from, t.to, t.amount);
    return { gid, status, rollbackReason }; // status: 'succeed', or 'failed' with the reason
  }
}
