import type { BranchAnswer, Payload, TransactionOptions } from '../transport/dtm.types.js';
import { parseTarget } from '../transport/branch-target.js';
import { GlobalTransaction } from './global-transaction.js';
import type { ParentBranch } from './transaction.js';
import type { TransactionRuntime } from './transaction-runtime.js';

/** A TCC global transaction, handed to the callback of `DtmClient.tccGlobalTransaction`. */
export class Tcc extends GlobalTransaction {
  /** @internal use `DtmClient.tccGlobalTransaction` or `DtmClient.tccFromBranch` */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions, parent?: ParentBranch) {
    super(runtime, gid, 'tcc', options, parent);
  }

  /** Registers and tries this app's TCC branch `name` (`@TccTry(name)`, `@TccConfirm(name)`, `@TccCancel(name)`). */
  callBranch(payload: Payload, name: string): Promise<BranchAnswer>;
  /**
   * Registers a branch (its confirm and cancel targets, and `payload` as their body) with DTM, then
   * calls its Try. Targets are URLs or, in a gRPC transaction, gRPC targets too. Resolves with the
   * Try's answer; throws `DtmFailureError` if the Try answered FAILURE (the transaction is then
   * cancelled), or another error if it could not be called.
   */
  callBranch(payload: Payload, tryTarget: string, confirmTarget: string, cancelTarget: string): Promise<BranchAnswer>;
  async callBranch(payload: Payload, tryOrName: string, confirm?: string, cancel?: string): Promise<BranchAnswer> {
    const named = confirm === undefined && parseTarget(tryOrName, this.gid).kind === 'name';
    const tryTarget = this.target(tryOrName, 'tcc-try', 'try', true);
    const confirmTarget = this.target(named ? tryOrName : (confirm ?? ''), 'tcc-confirm', 'confirm');
    const cancelTarget = this.target(named ? tryOrName : (cancel ?? ''), 'tcc-cancel', 'cancel');
    const data = this.encode(payload, tryTarget);
    // with authenticated calls the id carries the token of its confirm and cancel (registered after branch_headers were fixed)
    const branchId = this.auth ? this.auth.tccBranchId(this.ids.next(), this.gid, confirmTarget.value, cancelTarget.value, data) : this.ids.next();
    await this.transport.registerBranch({ gid: this.gid, transType: 'tcc', branchId, payload: data, fields: { confirm: confirmTarget.value, cancel: cancelTarget.value } });
    return this.invokeBranch(tryTarget, data, branchId, 'try');
  }
}
