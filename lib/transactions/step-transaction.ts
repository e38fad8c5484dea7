import type { FinalResult, TransactionOptions, WaitOptions } from '../transport/dtm.types.js';
import type { EncodedPayload, TransactionRequest } from '../transport/dtm-transport.js';
import { Transaction } from './transaction.js';

/** Saga and msg: steps DTM calls, given to it whole; the app submits and DTM drives the rest. */
export abstract class StepTransaction extends Transaction {
  protected readonly steps: Record<string, string>[] = [];
  protected readonly payloads: EncodedPayload[] = [];

  /** Sets more per-transaction options (merged with earlier ones; seconds); unset options take the module's `lynx.dtm` values. */
  setOptions(options: TransactionOptions): this {
    this.mergeOptions(options);
    return this;
  }

  /** Submits the transaction; DTM then drives it. With `waitResult`, resolves once DTM's first round succeeded. */
  async submit(): Promise<void> {
    await this.submitRequest(this.submission(), false);
  }

  /**
   * Submits and waits for the final status: resolves with `succeed` or `failed` (a rollback is a
   * result, with its reason); throws if DTM is unreachable, if the transaction is not final in
   * time, or if DTM refused the submit (`DtmGidInUseError`: DTM holds another transaction under the gid).
   */
  async submitAndWait(wait?: WaitOptions): Promise<FinalResult> {
    await this.submitRequest(this.submission(), true);
    return this.runtime.waitForFinal(this.gid, wait);
  }

  /** What submit sends. */
  protected abstract submission(): TransactionRequest;
}
