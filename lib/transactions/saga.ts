import type { Payload, TransactionOptions } from '../client/dtm-client.types.js';
import { encodePayload } from '../client/dtm-wire.js';
import type { WireTransRequest } from '../client/dtm-wire.types.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmError } from '../errors/dtm-error.js';
import { TransactionBuilder } from './transaction-base.js';
import { isUrl, type TransactionRuntime } from './transaction-runtime.js';

/**
 * A saga: steps DTM runs in order (or concurrently), each an action with a compensation that DTM
 * runs, in reverse order, if a later action fails. Made by `DtmClient.newSaga(gid)`.
 */
export class Saga extends TransactionBuilder {
  private readonly steps: { action: string; compensate: string }[] = [];
  private readonly payloads: string[] = [];
  private readonly orders = new Map<number, number[]>();
  private concurrent = false;

  /** @internal use `DtmClient.newSaga` */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions) {
    super(runtime, gid, 'saga', options);
  }

  /** Adds the step of this app's `@SagaAction(name)` (and its `@SagaCompensate(name)`), with `payload`. */
  add(name: string, payload?: Payload): this;
  /** Adds a step: DTM POSTs `payload` to `action`, and to `compensate` if the saga rolls back. */
  add(action: string, compensate: string, payload?: Payload): this;
  add(target: string, compensateOrPayload?: string | Payload, payload?: Payload): this {
    if (isUrl(target)) {
      this.steps.push({ action: target, compensate: compensateOrPayload as string });
      this.payloads.push(encodePayload(payload));
    } else {
      const compensate = this.runtime.hasBranch('saga-compensate', target) ? this.runtime.branchUrl('saga-compensate', target) : '';
      this.steps.push({ action: this.runtime.branchUrl('saga-action', target), compensate });
      this.payloads.push(encodePayload(compensateOrPayload));
    }
    return this;
  }

  /** With {@link enableConcurrent}: step `step` (0-based) starts only after every step in `preSteps` succeeded. */
  addBranchOrder(step: number, preSteps: number[]): this {
    this.orders.set(step, [...preSteps]);
    return this;
  }

  /** Lets DTM run steps in parallel, subject to {@link addBranchOrder}. */
  enableConcurrent(): this {
    this.concurrent = true;
    return this;
  }

  /** How many times DTM re-runs a failing action before rolling the saga back (DTM `retry_limit`). */
  setRetryLimit(limit: number): this {
    return this.setOptions({ retryLimit: limit });
  }

  toRequest(): WireTransRequest {
    for (const [step, pre] of this.orders) {
      for (const index of [step, ...pre]) {
        if (!Number.isInteger(index) || index < 0 || index >= this.steps.length) throw new DtmError(MESSAGES.badStepIndex(index, this.steps.length));
      }
    }
    const customData = this.concurrent
      ? JSON.stringify({ concurrent: true, orders: Object.fromEntries([...this.orders].map(([k, v]) => [String(k), v])) })
      : undefined;
    return this.wireRequest({ customData, concurrent: this.concurrent, steps: this.steps.map((s) => ({ ...s })), payloads: [...this.payloads] });
  }
}
