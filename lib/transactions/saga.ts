import type { Payload, TransactionOptions } from '../transport/dtm.types.js';
import type { EncodedPayload, TransactionRequest } from '../transport/dtm-transport.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { assertOneTransport, type BranchTarget } from '../transport/branch-target.js';
import { StepTransaction } from './step-transaction.js';
import { isRemoteBranch, type RemoteBranch } from '../contracts/branch-contract.js';
import type { TransactionRuntime } from './transaction-runtime.js';

const NO_TARGET: BranchTarget = { kind: 'none', value: '' };

/**
 * A saga: steps DTM runs in order (or concurrently), each an action with a compensation that DTM
 * runs, in reverse order, if a later action fails. Made by `DtmClient.newSaga(gid)`.
 */
export class Saga extends StepTransaction {
  private readonly orders = new Map<number, number[]>();
  private concurrent = false;

  /** @internal use `DtmClient.newSaga` */
  constructor(runtime: TransactionRuntime, gid: string, options?: TransactionOptions) {
    super(runtime, gid, 'saga', options);
  }

  /**
   * Adds a step with `payload`. `target` is the name of this app's `@SagaAction` (its
   * `@SagaCompensate` is the compensation), or a URL / gRPC target with no compensation; `''`
   * is a step with nothing to call (DTM records it as done). Before `submit()` only: after it,
   * `DtmUsageError` (DTM keeps the steps of the submit it took).
   */
  add(target: string, payload?: Payload): this;
  /**
   * Adds a step: DTM sends `payload` to `action`, and to `compensate` if the saga rolls back (`''`:
   * no compensation). Both are URLs or both gRPC targets: DTM sends the same bytes to each.
   */
  add(action: string, compensate: string, payload: Payload): this;
  /**
   * Adds a step of another service by name: `branch` is an entry of its contract (`Bank.withdraw`,
   * whose payload type `payload` must have) or `{ service, branch }`. Its action and compensation
   * come from the service's manifest (`lynx.dtm.services`), resolved when the saga is submitted.
   */
  add<P>(branch: RemoteBranch<'saga', P>, payload: NoInfer<P>): this;
  add(target: string | RemoteBranch, second?: unknown, third?: unknown): this {
    this.assertNotSent('add()');
    if (isRemoteBranch(target)) {
      this.addRemote(target, 'saga', second as Payload);
      return this;
    }
    // the number of arguments decides, as in DTM's Go SDK: (action, compensate, payload) or (target, payload)
    if (arguments.length >= 3) return this.step(target, second as string, third as Payload, true);
    return this.step(target, undefined, second as Payload, false);
  }

  private step(actionSpec: string, compensateSpec: string | undefined, payload: Payload, explicit: boolean): this {
    const action = this.target(actionSpec, 'saga-action', 'action');
    let compensate: BranchTarget = NO_TARGET;
    if (explicit) {
      if (typeof compensateSpec !== 'string') throw new DtmUsageError(MESSAGES.compensateNotString(compensateSpec), { gid: this.gid });
      compensate = this.target(compensateSpec, 'saga-compensate', 'compensation');
    } else if (actionSpec !== action.value && this.runtime.hasBranch('saga-compensate', actionSpec)) {
      // a branch name (it resolved to something else): its @SagaCompensate, when it has one
      compensate = this.target(actionSpec, 'saga-compensate', 'compensation');
    }
    assertOneTransport(() => `saga ${this.gid} step ${this.steps.length}${actionSpec !== action.value ? ` (${JSON.stringify(actionSpec)})` : ''}`, { action, compensate }, this.gid);
    // encoded for the op DTM calls: the compensation when the action is empty; a payload refused adds no step
    this.pushPayload(this.encode(payload, action.kind === 'none' ? compensate : action));
    this.steps.push({ action: action.value, compensate: compensate.value });
    return this;
  }

  /**
   * With {@link enableConcurrent}: step `step` (0-based) starts only after every step in `preSteps`
   * succeeded. Without it DTM runs the steps one after another and ignores the orders: one waiting
   * for a later step is refused at submit (`DtmUsageError`).
   */
  addBranchOrder(step: number, preSteps: number[]): this {
    this.assertNotSent('addBranchOrder()');
    if (!Array.isArray(preSteps)) throw new DtmUsageError(MESSAGES.preStepsNotArray(step, preSteps), { gid: this.gid });
    this.orders.set(step, [...preSteps]);
    return this;
  }

  /** Lets DTM run steps in parallel, subject to {@link addBranchOrder}; before `submit()` only, as {@link add}. */
  enableConcurrent(): this {
    this.assertNotSent('enableConcurrent()');
    this.concurrent = true;
    return this;
  }

  /** Refuses (`DtmUsageError`) a change of the steps once a submit of this saga may have reached DTM, which keeps the steps it took. */
  private assertNotSent(what: string): void {
    if (this.sentToDtm) throw new DtmUsageError(MESSAGES.sagaChangedAfterSubmit(this.gid, what), { gid: this.gid });
  }

  /** How many re-runs of failing actions DTM makes before rolling the saga back (DTM `retry_limit`: one count for the whole saga, not per action; 1 or more, 0 being DTM's "no limit" is refused); before `submit()` only, as {@link setOptions}. */
  setRetryLimit(limit: number): this {
    return this.setOptions({ retryLimit: limit });
  }

  /** Each step's action and compensation, as branch `01`, `02`, ... (DTM numbers saga steps from 1). */
  protected override signDtmCalls(sign: (op: string, branchId: string, target: string, payload: EncodedPayload | undefined) => void): void {
    this.steps.forEach((step, i) => {
      const branchId = String(i + 1).padStart(2, '0');
      if (step.action) sign('action', branchId, step.action, this.payloads[i]);
      if (step.compensate) sign('compensate', branchId, step.compensate, this.payloads[i]);
    });
  }

  protected submission(): TransactionRequest {
    for (const [step, pre] of this.orders) {
      for (const index of [step, ...pre]) {
        if (!Number.isInteger(index) || index < 0 || index >= this.steps.length) {
          throw new DtmUsageError(MESSAGES.badStepIndex(index, this.steps.length), { gid: this.gid });
        }
      }
    }
    const cycle = orderCycle(this.orders);
    if (cycle) throw new DtmUsageError(MESSAGES.branchOrderCycle(cycle), { gid: this.gid });
    if (!this.concurrent) {
      // DTM runs the steps of a saga that is not concurrent one after another and never reads its orders
      for (const [step, pre] of this.orders) {
        const later = pre.find((index) => index > step);
        if (later !== undefined) throw new DtmUsageError(MESSAGES.branchOrderNotConcurrent(step, pre, later), { gid: this.gid });
      }
    }
    const customData = this.concurrent
      ? JSON.stringify({ concurrent: true, orders: Object.fromEntries([...this.orders].map(([k, v]) => [String(k), v])) })
      : undefined;
    return this.request({ customData, concurrent: this.concurrent, steps: this.steps, payloads: this.payloads });
  }
}

/**
 * A circle in the saga's branch orders (step → a step it waits for → ... → the same step), if there
 * is one: DTM would start none of its steps, and the saga would never finish.
 */
function orderCycle(orders: ReadonlyMap<number, readonly number[]>): number[] | undefined {
  const state = new Map<number, 'open' | 'done'>();
  const path: number[] = [];
  const visit = (step: number): number[] | undefined => {
    if (state.get(step) === 'done') return undefined;
    if (state.get(step) === 'open') return [...path.slice(path.indexOf(step)), step];
    state.set(step, 'open');
    path.push(step);
    for (const pre of orders.get(step) ?? []) {
      const cycle = visit(pre);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(step, 'done');
    return undefined;
  };
  for (const step of orders.keys()) {
    const cycle = visit(step);
    if (cycle) return cycle;
  }
  return undefined;
}
