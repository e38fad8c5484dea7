// The events of the instrumentation seam (see dtm-instrumentation.ts): what users observe with
// hooks, what the OpenTelemetry bridge turns into spans and metrics, and what the debug log prints.
import type { DtmProtocol } from '../errors/dtm-error.js';
import type { BranchKind, TransactionType } from '../transport/dtm.types.js';

/** What the sub-transaction barrier decided for a branch call: run the business, or skip it (and why). */
export type DtmBarrierDecision = 'executed' | 'duplicate' | 'null-compensation' | 'hanging-prevented';

/** A call the module made to the DTM server (`newGid`, `prepare`, `submit`, `abort`, `registerBranch`, `query`, ...) or to a branch itself (`callBranch`: TCC Try, XA action, msg back-check). */
export interface DtmCallEvent {
  /** The `DtmTransport` operation: `newGid`, `prepare`, `submit`, `abort`, `prepareWorkflow`, `registerBranch`, `callBranch`, `query`, `list`, `forceStop`, `ping`. */
  operation: string;
  /** The protocol the call went over: the transaction's, except a `callBranch` of an http(s):// branch (HTTP, also in a gRPC transaction). */
  protocol: DtmProtocol;
  /** The transaction's gid, when the call has one. */
  gid?: string;
  /** `callBranch`, `registerBranch`: the branch id (a TCC branch id of authenticated calls without its token, `01-<token>`); `callBranch`: the op called; `registerBranch` of a workflow step: the op whose outcome it records. */
  branchId?: string;
  op?: string;
  /** `ok`, or `error` (then `error` is what the call threw). */
  outcome: 'ok' | 'error';
  error?: unknown;
  /** Milliseconds the call took. */
  durationMs: number;
}

/** A global transaction this app starts (saga, msg, TCC, XA, workflow), when the module first sends it to DTM. */
export interface DtmTransactionStartEvent {
  gid: string;
  transType: TransactionType;
  protocol: DtmProtocol;
}

/**
 * How a transaction ended for this app: `submitted` (DTM drives it now, also after a `waitResult` submit whose first round did not finish), `succeed` / `failed` (the
 * final status, when the app waited for it), `aborted` (a TCC / XA / msg body failed and the module
 * aborted it), `prepared` (a msg left prepared for DTM's back-check, also one `prepare()`d and not submitted
 * within its `timeoutToFail` or before the app closed), `error` (a call failed: `error`).
 */
export type DtmTransactionOutcome = 'submitted' | 'succeed' | 'failed' | 'aborted' | 'prepared' | 'error';

/** The end of a transaction this app started. */
export interface DtmTransactionEndEvent extends DtmTransactionStartEvent {
  outcome: DtmTransactionOutcome;
  /** The error thrown to the caller (`error`, `aborted`, a msg's `prepared`; `failed` and `submitted` after a `waitResult` submit that threw, and a `doAndSubmit` whose local transaction threw after it committed). */
  error?: unknown;
  durationMs: number;
}

/**
 * How a branch handler answered DTM: `success`, `failure` (DtmFailureError: roll back), `ongoing`
 * (DtmOngoingError: retry later), `error` (anything else: DTM retries); or `refused`: the module
 * refused the call before its handler ran, as not one the handler may serve (DTM's keys missing, an
 * XA action's phase2_url among them; an op it does not serve, a gid or branch id breaking the key
 * rule, a refused authentication, an XA action's branch called before with
 * `branch_auth_check_actions`).
 */
export type DtmBranchOutcome = 'success' | 'failure' | 'ongoing' | 'error' | 'refused';

/** A branch call DTM (or an app) made to one of this app's decorated branch handlers, once it was answered. */
export interface DtmBranchCallEvent {
  kind: BranchKind;
  /** The branch's name (`@SagaAction('withdraw')`: `withdraw`). */
  branch: string;
  /** `Class.method` of the handler. */
  handler: string;
  /** The call's gid; of a call breaking the key rule (`refused`, or an undo answered without its handler: a forged call's, of any length) cut to 200 characters and `…`. */
  gid: string;
  /** The call's branch id; a TCC branch id of authenticated calls without its token (`01-<token>`); cut as `gid` is. */
  branchId: string;
  /** The call's op; `''` for a `refused` call naming one its handler does not serve (or none). */
  op: string;
  /** The call's `trans_type`: `saga`, `msg`, `tcc`, `xa`, `workflow`, or `other` for any other value a caller sent. */
  transType: string;
  protocol: DtmProtocol;
  /** What the barrier decided, for a handler behind one (`@UseBarrier`, `{ barrier }`, or `DtmClient.barrier(branch)` used by hand; the last one's when several; `@XaBranch` has none). */
  barrier?: DtmBarrierDecision;
  outcome: DtmBranchOutcome;
  /** What the handler threw (outcomes other than `success`); `refused`: the refusal, with its reason. */
  error?: unknown;
  /** `refused`: what the call was answered, the HTTP status (400, 401, 409) or the gRPC code (3 INVALID_ARGUMENT, 16 UNAUTHENTICATED, 10 ABORTED). */
  status?: number;
  durationMs: number;
}

/** The abort after a failed TCC / XA / msg body failed too; the caller still gets the body's error (`cause`). */
export interface DtmAbortFailedEvent {
  gid: string;
  transType: TransactionType;
  protocol: DtmProtocol;
  /** What the abort threw. */
  error: unknown;
  /** The body's error, which is what the caller receives. */
  cause: unknown;
  /** When DTM refused the abort: the status it holds the transaction in (`failed`: rolled back already; `succeed` / `submitted`: going forward, a message delivered); undefined when not known. */
  currentStatus?: string;
}

/** The events of the module, by name, with their payloads. */
export interface DtmEvents {
  'transaction.start': DtmTransactionStartEvent;
  'transaction.end': DtmTransactionEndEvent;
  'dtm.call': DtmCallEvent;
  'branch.call': DtmBranchCallEvent;
  'abort.failed': DtmAbortFailedEvent;
}

/** A name of {@link DtmEvents}. */
export type DtmEventName = keyof DtmEvents;

/** A listener of event `E`; what it throws (or an async listener's promise rejects with) is logged, never passed on to the transaction or the branch call. */
export type DtmEventListener<E extends DtmEventName> = (event: DtmEvents[E]) => void;

/** Listeners by event name, as the module option `instrumentation.hooks` takes them. */
export type DtmHooks = { [E in DtmEventName]?: DtmEventListener<E> };

/** The module option `instrumentation`. */
export interface DtmInstrumentationOptions {
  /** Listeners registered when the module starts (more with `DtmInstrumentation.on`). */
  hooks?: DtmHooks;
  /**
   * Spans and metrics through `@opentelemetry/api` when it is installed and an SDK is registered
   * (checked once, at the first transaction or branch call). Default true; false: never load it.
   */
  openTelemetry?: boolean;
  /** Logs every DTM call and every branch call's decision with `Logger.debug` (context `DtmTrace`). Default false. */
  debugLogs?: boolean;
}
