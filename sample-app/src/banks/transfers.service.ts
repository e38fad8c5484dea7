import { Injectable } from '@nestjs/common';
import { DtmClient, DtmFailureError, DtmWorkflow, type FinalResult, type WorkflowContext } from 'nestjs-dtm';

/** Transfers from bank A (PostgreSQL) to bank B (MariaDB), as a saga, an XA transaction or a workflow. */
@Injectable()
export class TransfersService {
  constructor(private readonly dtm: DtmClient) {}

  /**
   * The same transfer as a workflow: plain code whose steps DTM records as they complete (and
   * replays if the app dies midway). The banks' saga branches serve its calls: a step's action is
   * their action, its rollback their compensation.
   */
  @DtmWorkflow('transfer.v1')
  async transferWorkflow(wf: WorkflowContext<{ from: string; to: string; amount: number }>): Promise<string> {
    const { from, to, amount } = wf.input;
    const app = this.dtm.config.appUrl;
    await wf
      .step('withdraw')
      .onRollback((b) => b.http(`${app}/bank-a/withdraw-compensate`, { account: from, amount }))
      .http(`${app}/bank-a/withdraw`, { account: from, amount });
    await wf
      .step('deposit')
      .onRollback((b) => b.http(`${app}/bank-b/deposit-compensate`, { account: to, amount }))
      .http(`${app}/bank-b/deposit`, { account: to, amount });
    return `moved ${amount}`;
  }

  /** Runs the workflow transfer; its outcome as DTM recorded it (a rollback is a result). */
  async workflow(from: string, to: string, amount: number): Promise<FinalResult> {
    const gid = await this.dtm.generateGid();
    await this.dtm.executeWorkflow('transfer.v1', gid, { from, to, amount }).catch((err: unknown) => {
      if (!(err instanceof DtmFailureError)) throw err;
    });
    return this.dtm.waitForFinal(gid);
  }

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
