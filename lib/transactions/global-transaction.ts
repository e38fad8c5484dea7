import type { BranchAnswer, Payload, TransactionOptions } from '../client/dtm-client.types.js';
import { encodePayload, toWireRequest } from '../client/dtm-wire.js';
import type { WireTransRequest } from '../client/dtm-wire.types.js';
import { BranchIdGenerator } from './branch-id.generator.js';
import { assertGid, effectiveOptions, type EffectiveOptions } from './transaction-base.js';
import type { TransactionRuntime } from './transaction-runtime.js';

/**
 * What TCC and XA share: prepared before the callback runs, branches called by the app itself,
 * then submitted if the callback succeeded or aborted (with the error as rollback reason) if not.
 */
export abstract class GlobalTransaction {
  /** The options sent to DTM (module defaults overridden by the transaction's). */
  readonly options: EffectiveOptions;
  protected readonly ids: BranchIdGenerator;

  protected constructor(
    protected readonly runtime: TransactionRuntime,
    /** The global transaction id. */
    readonly gid: string,
    /** `tcc` or `xa`. */
    readonly transType: 'tcc' | 'xa',
    options: TransactionOptions = {},
    parentBranchId = '',
    /** The DTM server of the transaction, when it is not the module's (a branch of another app's transaction). */
    private readonly dtmUrl?: string,
  ) {
    assertGid(gid);
    this.options = effectiveOptions(runtime, options);
    this.ids = new BranchIdGenerator(parentBranchId);
  }

  /** Runs `body` inside the global transaction: prepare, body, then submit or abort. Returns what `body` returned. */
  async run<T>(body: (self: this) => Promise<T>): Promise<T> {
    await this.callDtm('prepare', this.request());
    let result: T;
    try {
      result = await body(this);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      await this.callDtm('abort', { ...this.request(), rollback_reason: reason }).catch(() => undefined);
      throw err;
    }
    await this.callDtm('submit', this.request());
    return result;
  }

  /** Calls a branch the way DTM's SDKs do: POST with `gid, trans_type, branch_id, op, dtm` (and `extraQuery`). */
  protected async requestBranch(url: string, payload: string, branchId: string, op: string, extraQuery: Record<string, string> = {}): Promise<BranchAnswer> {
    return this.runtime.http.branch({
      method: 'POST',
      url,
      query: { dtm: this.dtmUrl ?? this.runtime.config.serverUrl, gid: this.gid, branch_id: branchId, trans_type: this.transType, op, ...extraQuery },
      headers: this.options.branchHeaders,
      body: payload,
      timeoutSeconds: this.options.requestTimeout,
      gid: this.gid,
      branchId,
    });
  }

  protected encode(payload: Payload): string {
    return encodePayload(payload);
  }

  protected async callDtm(operation: 'prepare' | 'submit' | 'abort' | 'registerBranch', body: object): Promise<void> {
    await this.runtime.http.operation(this.dtmUrl ? `${this.dtmUrl}/${operation}` : operation, body, { gid: this.gid, operation });
  }

  private request(): WireTransRequest {
    return toWireRequest(this.gid, this.transType, this.options);
  }
}
