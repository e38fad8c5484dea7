import type { BranchAnswer, Payload, TransactionOptions } from '../client/dtm-client.types.js';
import { GlobalTransaction } from './global-transaction.js';
import type { TransactionRuntime } from './transaction-runtime.js';

/** A TCC global transaction, handed to the callback of `DtmClient.tccGlobalTransaction`. */
export class Tcc extends GlobalTransaction {
  /** @internal use `DtmClient.tccGlobalTransaction` */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions, parentBranchId = '') {
    super(runtime, gid, 'tcc', options, parentBranchId);
  }

  /**
   * Registers a branch (its confirm and cancel URLs, and `payload` as their body) with DTM, then
   * calls its Try. Resolves with the Try's answer; throws `DtmFailureError` if the Try answered
   * FAILURE (the transaction is then cancelled), or another error if it could not be called.
   */
  async callBranch(payload: Payload, tryUrl: string, confirmUrl: string, cancelUrl: string): Promise<BranchAnswer> {
    const branchId = this.ids.next();
    const data = this.encode(payload);
    await this.callDtm('registerBranch', { gid: this.gid, trans_type: 'tcc', branch_id: branchId, data, confirm: confirmUrl, cancel: cancelUrl });
    return this.requestBranch(tryUrl, data, branchId, 'try');
  }
}
