import { Injectable } from '@nestjs/common';
import { DtmClient, type FinalResult } from 'nestjs-dtm';
import type { TransferRequest } from './bank.service.js';

/** Starts transfers as DTM sagas: take the money out of one account, put it into the other. */
@Injectable()
export class TransferService {
  constructor(private readonly dtm: DtmClient) {}

  /** Runs the transfer saga against the bank at `bankUrl` and waits for DTM's final status. */
  async transfer(bankUrl: string, req: TransferRequest): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    return this.dtm
      .newSaga(gid)
      .add(`${bankUrl}/bank/trans-out`, `${bankUrl}/bank/trans-out-compensate`, req)
      .add(`${bankUrl}/bank/trans-in`, `${bankUrl}/bank/trans-in-compensate`, req)
      .submitAndWait({ timeoutMs: 30_000 });
  }
}
