import type { TransactionOptions, TransactionType } from '../transport/dtm.types.js';
import { Transaction, type ParentBranch } from './transaction.js';
import type { TransactionRuntime } from './transaction-runtime.js';

/**
 * TCC and XA: prepared before the app's callback runs, branches called by the app itself, then
 * submitted if the callback succeeded, or aborted (the error's message as rollback reason) if not.
 */
export abstract class GlobalTransaction extends Transaction {
  protected constructor(runtime: TransactionRuntime, gid: string, transType: TransactionType, options?: TransactionOptions, parent?: ParentBranch) {
    super(runtime, gid, transType, options, parent);
  }

  /** @internal Runs `body` inside the global transaction: prepare, body, then submit or abort. Returns what `body` returned. */
  async run<T>(body: (self: this) => Promise<T>): Promise<T> {
    await this.prepareInDtm(this.request());
    let result: T;
    try {
      result = await body(this);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      await this.transport.abort(this.request({ rollbackReason: reason })).catch(() => undefined);
      throw err;
    }
    await this.submitRequest(this.request(), false);
    return result;
  }
}
