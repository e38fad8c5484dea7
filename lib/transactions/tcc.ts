import type { BranchAnswer, Payload, TransactionOptions } from '../client/dtm-client.types.js';
import { GlobalTransaction } from './global-transaction.js';
import { isUrl, type TransactionRuntime } from './transaction-runtime.js';

/** A TCC global transaction, handed to the callback of `DtmClient.tccGlobalTransaction`. */
export class Tcc extends GlobalTransaction {
  /** @internal use `DtmClient.tccGlobalTransaction` or `DtmClient.tccFromBranch` */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions, parentBranchId = '', dtmUrl?: string) {
    super(runtime, gid, 'tcc', options, parentBranchId, dtmUrl);
  }

  /** Registers and tries this app's TCC branch `name` (`@TccTry(name)`, `@TccConfirm(name)`, `@TccCancel(name)`). */
  callBranch(payload: Payload, name: string): Promise<BranchAnswer>;
  /**
   * Registers a branch (its confirm and cancel URLs, and `payload` as their body) with DTM, then
   * calls its Try. Resolves with the Try's answer; throws `DtmFailureError` if the Try answered
   * FAILURE (the transaction is then cancelled), or another error if it could not be called.
   */
  callBranch(payload: Payload, tryUrl: string, confirmUrl: string, cancelUrl: string): Promise<BranchAnswer>;
  async callBranch(payload: Payload, tryOrName: string, confirm?: string, cancel?: string): Promise<BranchAnswer> {
    const named = confirm === undefined && !isUrl(tryOrName);
    const tryUrl = named ? this.runtime.branchUrl('tcc-try', tryOrName) : tryOrName;
    const confirmUrl = named ? this.runtime.branchUrl('tcc-confirm', tryOrName) : (confirm ?? '');
    const cancelUrl = named ? this.runtime.branchUrl('tcc-cancel', tryOrName) : (cancel ?? '');
    const branchId = this.ids.next();
    const data = this.encode(payload);
    await this.callDtm('registerBranch', { gid: this.gid, trans_type: 'tcc', branch_id: branchId, data, confirm: confirmUrl, cancel: cancelUrl });
    return this.requestBranch(tryUrl, data, branchId, 'try');
  }
}
