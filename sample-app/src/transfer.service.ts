import { Injectable } from '@nestjs/common';
import { DtmClient, type FinalResult } from 'nestjs-dtm';
import type { TransferRequest } from './bank.service.js';

/** Starts transfers as DTM sagas: take the money out of one account, put it into the other. */
@Injectable()
export class TransferService {
  constructor(private readonly dtm: DtmClient) {}

  /** Runs the transfer saga (its steps named by the bank's decorators) and waits for DTM's final status. */
  async transfer(req: TransferRequest): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    return this.dtm.newSaga(gid).add('transOut', req).add('transIn', req).submitAndWait({ timeoutMs: 30_000 });
  }
}
