import type { DtmProtocol } from '../errors/dtm-error.js';
import type { BranchTarget } from '../transport/branch-target.js';
import type { BranchAnswer, ListFilter, ListPage, Payload, PingResult, TransactionRecord } from '../transport/dtm.types.js';
import type { BranchRegistration, DirectBranchCall, DtmTransport, EncodedPayload, ResolvedOptions, TransactionRequest, WorkflowProgress } from '../transport/dtm-transport.js';
import type { DtmInstrumentation } from './dtm-instrumentation.js';

/**
 * A transport whose every call to DTM (and to a branch) goes through the instrumentation seam:
 * timed and reported (`dtm.call`, debug log) when something observes them, passed straight on
 * otherwise (no clock read, no object made).
 */
export class InstrumentedTransport implements DtmTransport {
  readonly protocol: DtmProtocol;

  constructor(
    private readonly inner: DtmTransport,
    private readonly instrumentation: DtmInstrumentation,
  ) {
    this.protocol = inner.protocol;
  }

  /** Runs `call` (operation `operation`), reported when something observes. */
  private observe<T>(operation: string, gid: string | undefined, call: Promise<T>, started: number, branchId?: string, op?: string): Promise<T> {
    return call.then(
      (value) => {
        this.instrumentation.dtmCall(operation, this.protocol, gid, started, false, undefined, branchId, op);
        return value;
      },
      (err: unknown) => {
        this.instrumentation.dtmCall(operation, this.protocol, gid, started, true, err, branchId, op);
        throw err;
      },
    );
  }

  encode(payload: Payload, target: BranchTarget): EncodedPayload {
    return this.inner.encode(payload, target);
  }
  checkTarget(target: BranchTarget, gid: string): void {
    this.inner.checkTarget(target, gid);
  }
  checkTransaction(gid: string, options: ResolvedOptions): void {
    this.inner.checkTransaction(gid, options);
  }
  newGid(): Promise<string> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.newGid();
    return this.observe('newGid', undefined, this.inner.newGid(), performance.now());
  }
  prepare(request: TransactionRequest): Promise<void> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.prepare(request);
    const started = performance.now();
    return this.observe('prepare', request.gid, this.inner.prepare(request), started);
  }
  submit(request: TransactionRequest): Promise<void> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.submit(request);
    const started = performance.now();
    return this.observe('submit', request.gid, this.inner.submit(request), started);
  }
  abort(request: TransactionRequest): Promise<void> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.abort(request);
    const started = performance.now();
    return this.observe('abort', request.gid, this.inner.abort(request), started);
  }
  prepareWorkflow(request: TransactionRequest): Promise<WorkflowProgress> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.prepareWorkflow(request);
    const started = performance.now();
    return this.observe('prepareWorkflow', request.gid, this.inner.prepareWorkflow(request), started);
  }
  registerBranch(registration: BranchRegistration): Promise<void> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.registerBranch(registration);
    const started = performance.now();
    return this.observe('registerBranch', registration.gid, this.inner.registerBranch(registration), started, registration.branchId);
  }
  callBranch(call: DirectBranchCall): Promise<BranchAnswer> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.callBranch(call);
    const started = performance.now();
    return this.observe('callBranch', call.gid, this.inner.callBranch(call), started, call.branchId, call.op);
  }
  query(gid: string): Promise<TransactionRecord | null> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.query(gid);
    const started = performance.now();
    return this.observe('query', gid, this.inner.query(gid), started);
  }
  list(filter: ListFilter): Promise<ListPage> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.list(filter);
    const started = performance.now();
    return this.observe('list', undefined, this.inner.list(filter), started);
  }
  forceStop(gid: string): Promise<void> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.forceStop(gid);
    const started = performance.now();
    return this.observe('forceStop', gid, this.inner.forceStop(gid), started);
  }
  ping(): Promise<PingResult> {
    if (!this.instrumentation.observesDtmCalls) return this.inner.ping();
    const started = performance.now();
    return this.observe('ping', undefined, this.inner.ping(), started);
  }
  close(): void {
    this.inner.close();
  }
}
