import type { BranchAnswer, Payload, TransactionOptions } from '../client/dtm-client.types.js';
import { GlobalTransaction } from './global-transaction.js';
import { isUrl, type TransactionRuntime } from './transaction-runtime.js';

/** An XA global transaction, handed to the callback of `DtmClient.xaGlobalTransaction`. */
export class Xa extends GlobalTransaction {
  /** @internal use `DtmClient.xaGlobalTransaction` */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions) {
    super(runtime, gid, 'xa', options);
  }

  /**
   * Calls an XA branch's action (`op=action`, `phase2_url` = its URL): the branch runs its local XA
   * transaction, registers itself with DTM and prepares. `target` is a URL or the name of this
   * app's `@XaBranch`. Resolves with its answer.
   */
  async callBranch(payload: Payload, target: string): Promise<BranchAnswer> {
    const url = isUrl(target) ? target : this.runtime.branchUrl('xa', target);
    const branchId = this.ids.next();
    return this.requestBranch(url, this.encode(payload), branchId, 'action', { phase2_url: url });
  }
}
