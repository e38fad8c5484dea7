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

  /**
   * `call()` (operation `operation` of transaction `gid`): passed straight on when nothing observes
   * the calls to DTM, else timed from just before it starts and reported when it settles, or when
   * `call()` throws at once (as a call over `protocol`, by default this transport's).
   */
  private observe<T>(operation: string, gid: string | undefined, call: () => Promise<T>, branchId?: string, op?: string, protocol: DtmProtocol = this.protocol): Promise<T> {
    if (!this.instrumentation.observesDtmCalls) return call();
    const started = performance.now();
    let pending: Promise<T>;
    try {
      pending = call();
    } catch (err) {
      // refused before it was sent (the gRPC transport throws at once on metadata grpc-js refuses): a failed call all the same
      this.instrumentation.dtmCall(operation, protocol, gid, started, true, err, branchId, op);
      throw err;
    }
    return pending.then(
      (value) => {
        this.instrumentation.dtmCall(operation, protocol, gid, started, false, undefined, branchId, op);
        return value;
      },
      (err: unknown) => {
        this.instrumentation.dtmCall(operation, protocol, gid, started, true, err, branchId, op);
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
    return this.observe('newGid', undefined, () => this.inner.newGid());
  }
  prepare(request: TransactionRequest): Promise<void> {
    return this.observe('prepare', request.gid, () => this.inner.prepare(request));
  }
  submit(request: TransactionRequest): Promise<void> {
    return this.observe('submit', request.gid, () => this.inner.submit(request));
  }
  abort(request: TransactionRequest): Promise<void> {
    return this.observe('abort', request.gid, () => this.inner.abort(request));
  }
  prepareWorkflow(request: TransactionRequest): Promise<WorkflowProgress> {
    return this.observe('prepareWorkflow', request.gid, () => this.inner.prepareWorkflow(request));
  }
  registerBranch(registration: BranchRegistration): Promise<void> {
    // a workflow step's record names the op whose outcome it records (a TCC / XA registration has none)
    return this.observe('registerBranch', registration.gid, () => this.inner.registerBranch(registration), registration.branchId, registration.fields.op);
  }
  callBranch(call: DirectBranchCall): Promise<BranchAnswer> {
    // an http(s):// branch goes over HTTP whatever the transaction's protocol
    return this.observe('callBranch', call.gid, () => this.inner.callBranch(call), call.branchId, call.op, call.target.kind === 'http' ? 'http' : this.protocol);
  }
  query(gid: string, timeoutSeconds?: number): Promise<TransactionRecord | null> {
    return this.observe('query', gid, () => this.inner.query(gid, timeoutSeconds));
  }
  list(filter: ListFilter, timeoutSeconds?: number): Promise<ListPage> {
    return this.observe('list', undefined, () => this.inner.list(filter, timeoutSeconds));
  }
  forceStop(gid: string): Promise<void> {
    return this.observe('forceStop', gid, () => this.inner.forceStop(gid));
  }
  ping(): Promise<PingResult> {
    return this.observe('ping', undefined, () => this.inner.ping());
  }
  /** The inner transport's {@link DtmTransport.connected} (not a call to DTM: not reported); at once when it has none. */
  connected(withinMs: number): Promise<void> {
    return this.inner.connected?.(withinMs) ?? Promise.resolve();
  }
  close(): void {
    this.inner.close();
  }
}
