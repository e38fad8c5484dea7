import { Injectable } from '@nestjs/common';
import { DtmClient, DtmFailureError, type FinalResult } from 'nestjs-dtm';

/** Transfers from bank A (PostgreSQL) to bank B (MariaDB), as a saga or as an XA transaction. */
@Injectable()
export class TransfersService {
  constructor(private readonly dtm: DtmClient) {}

  /** Saga: withdraw at bank A, then deposit at bank B; DTM compensates if a step fails. */
  async saga(from: string, to: string, amount: number): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    return this.dtm
      .newSaga(gid)
      .add('bankA.withdraw', { account: from, amount })
      .add('bankB.deposit', { account: to, amount })
      .submitAndWait();
  }

  /** XA: both legs prepared in their databases, then committed together, or both rolled back. */
  async xa(from: string, to: string, amount: number): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    try {
      await this.dtm.xaGlobalTransaction(gid, async (xa) => {
        await xa.callBranch({ account: from, amount }, 'bankA.xaWithdraw');
        await xa.callBranch({ account: to, amount }, 'bankB.xaDeposit');
      });
    } catch (err) {
      if (!(err instanceof DtmFailureError)) throw err; // a refused branch: DTM rolls back; the result says so
    }
    return this.dtm.waitForFinal(gid);
  }
}
