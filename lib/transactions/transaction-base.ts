import type { FinalResult, TransactionOptions, WaitOptions } from '../client/dtm-client.types.js';
import { toWireRequest, type WireRequestParts } from '../client/dtm-wire.js';
import type { WireTransRequest, WireTransType } from '../client/dtm-wire.types.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmError } from '../errors/dtm-error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import type { TransactionRuntime } from './transaction-runtime.js';

/** Throws unless `gid` is usable as a DTM global transaction id. */
export function assertGid(gid: unknown): asserts gid is string {
  if (typeof gid !== 'string' || gid.length === 0 || /[\s;]/.test(gid)) throw new DtmError(MESSAGES.badGid(gid));
}

/** Transaction options with the module's defaults filled in: the timeouts and the headers are always set. */
export type EffectiveOptions = TransactionOptions & Required<Pick<TransactionOptions, 'timeoutToFail' | 'retryInterval' | 'requestTimeout' | 'branchHeaders'>>;

/** The module's `lynx.dtm` defaults, overridden by per-transaction options. */
export function effectiveOptions(runtime: TransactionRuntime, overrides: TransactionOptions): EffectiveOptions {
  const { config } = runtime;
  const branchHeaders = { ...runtime.passThroughHeaders(), ...overrides.branchHeaders };
  return {
    timeoutToFail: overrides.timeoutToFail ?? config.transactionTimeout,
    retryInterval: overrides.retryInterval ?? config.retryInterval,
    requestTimeout: overrides.requestTimeout ?? config.branchTimeout,
    retryLimit: overrides.retryLimit,
    waitResult: overrides.waitResult,
    branchHeaders,
  };
}

/** Merges option objects; `branchHeaders` are merged key by key. */
export function mergeOptions(base: TransactionOptions, next: TransactionOptions): TransactionOptions {
  const merged = { ...base, ...next };
  if (base.branchHeaders || next.branchHeaders) merged.branchHeaders = { ...base.branchHeaders, ...next.branchHeaders };
  return merged;
}

/** What saga and msg builders share: the gid, the options, and talking to DTM. */
export abstract class TransactionBuilder {
  private overrides: TransactionOptions = {};

  protected constructor(
    protected readonly runtime: TransactionRuntime,
    /** The global transaction id. */
    readonly gid: string,
    /** DTM's transaction type. */
    readonly transType: WireTransType,
    options?: TransactionOptions,
  ) {
    assertGid(gid);
    if (options) this.setOptions(options);
  }

  /** Sets per-transaction options (merged with earlier ones); unset options take the module's `lynx.dtm` values. */
  setOptions(options: TransactionOptions): this {
    this.overrides = mergeOptions(this.overrides, options);
    return this;
  }

  /** The options this transaction is sent with: module defaults overridden by {@link setOptions}. */
  get options(): EffectiveOptions {
    return effectiveOptions(this.runtime, this.overrides);
  }

  /** The body DTM receives for this transaction (what `submit()` sends). */
  abstract toRequest(): WireTransRequest;

  /** Submits the transaction; DTM then drives it. With `waitResult`, fails unless DTM's first round succeeded. */
  submit(): Promise<void> {
    return this.sendSubmit(false);
  }

  /**
   * Submits and waits for the final status: resolves with `succeed` or `failed` (a rollback is a
   * result, with its reason); throws only if DTM is unreachable or the transaction is not final in time.
   */
  async submitAndWait(wait?: WaitOptions): Promise<FinalResult> {
    await this.sendSubmit(true);
    return this.runtime.waitForFinal(this.gid, wait);
  }

  /** The body of this transaction with `parts` (steps, payloads, ...), as DTM's Go SDK sends it. */
  protected wireRequest(parts: WireRequestParts): WireTransRequest {
    return toWireRequest(this.gid, this.transType, this.options, parts);
  }

  protected callDtm(operation: 'prepare' | 'submit' | 'abort', body: WireTransRequest): Promise<void> {
    return this.runtime.http.operation(operation, body, { gid: this.gid, operation });
  }

  private async sendSubmit(tolerateFirstRound: boolean): Promise<void> {
    const body = this.toRequest();
    try {
      await this.callDtm('submit', body);
    } catch (err) {
      if (body.wait_result && err instanceof DtmFailureError) {
        // wait_result answers 409 whenever DTM's first round did not end in success (even if merely ongoing)
        if (tolerateFirstRound) return;
        throw new DtmFailureError(MESSAGES.waitResultNotSucceeded(this.gid, err.reason), { gid: this.gid, status: 409, cause: err });
      }
      throw err;
    }
  }
}
