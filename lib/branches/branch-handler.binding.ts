import { BadRequestException, createParamDecorator, HttpException, InternalServerErrorException, type ExecutionContext } from '@nestjs/common';
import { concat, defaultIfEmpty, defer, EMPTY, isObservable, last, lastValueFrom, map, tap, type Observable } from 'rxjs';
import { BranchBarrier } from '../barrier/branch-barrier.js';
import type { BarrierConnection } from '../barrier/barrier.types.js';
import { MESSAGES } from '../dtm.messages.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { NESTED_FAILURE, type NestedFailure } from '../transactions/transaction.js';
import { branchContextFactory } from './branch-context.decorator.js';
import { branchMetadataOf, branchSpecOf, ROUTE_ARGS_METADATA, workflowOpsOf } from './branch-metadata.accessor.js';
import type { BranchCarrier } from './branch-transport.js';
import { branchTransportOf } from './branch-transports.js';
import { barrierDecisionsInto, branchCallOf, isRefusal, refusal } from './branch-call.js';
import { GRPC_CODE, grpcCodeOfHttpException, isGrpcCall } from './grpc/grpc-branch.transport.js';
import { dtmResultOfBody, errorOfResultBody } from './branch-result.js';
import { handlerName, shownTransType } from './branch.types.js';
import type { BranchCallState } from './branch-call.js';
import type { BranchObservation, DtmInstrumentation } from '../observability/dtm-instrumentation.js';
import type { BranchKind } from '../transport/dtm.types.js';
import type { DtmProtocol } from '../errors/dtm-error.js';
import { TRACE_CONTEXT_HEADERS } from '../config/dtm-config.keys.js';
import { shownBranchId } from '../auth/branch-auth.js';
import { messageOf } from '../errors/text-of.js';
import { shorten } from '../redact.js';

// Every decorated branch handler is wrapped here, when its decorator runs, instead of by a Nest
// interceptor: any interceptor on a route makes Nest run the call through an RxJS pipeline (defer,
// mergeAll, an AsyncResource per call, lastValueFrom), which cost more CPU per branch call than the
// barrier's own work (bench/barrier-overhead). The wrapped handler is what Nest's router (or its
// gRPC server) calls, after the guard, the pipes and the parameter decorators, so everything else
// about the route stays Nest's. The wrapper:
// - answers a gRPC call whose handler returned nothing with an empty message of the method's
//   response type (`{}`), where Nest would fail with "Error serializing response", which DTM
//   retries forever;
// - answers a handler's Observable that completes without a value as `undefined` (gRPC: the empty
//   message), where Nest's gRPC server would never answer and its router would fail with a 500;
// - with a barrier connection or an XA database, runs the handler inside that local transaction;
// - in production, on a branch whose FAILURE cannot roll anything back (a compensation, Confirm,
//   Cancel, message branch, XA phase 2) without a local transaction, throws an HTTP answer DTM reads
//   as FAILURE / ONGOING as that error, so that the filter warns (development: the body interceptor);
// - does not run the handler of an undo op the guard found with keys that break the rule (it
//   answers success: the action of those keys was refused, so there is nothing to undo; reported
//   as a null compensation).
// The calls the module answers without the handler's body (a back-check with a barrier, an XA
// phase 2 with `{ db }`: DTM sends their request empty) must not wait for the pipes, which run
// before the wrapped handler and would refuse that empty request: on those handlers only,
// DtmModuleAnswerInterceptor (module-answer.interceptor.ts) calls the wrapped handler with the
// carrier alone ({@link answerByModule}) before the pipes run.

/** Where a handler's local transaction comes from: a barrier connection, or an XA database. */
export type LocalTransactionSource = { barrier: string; queryPrepared: boolean } | { xa: string };

/** How a wrapped handler was made: what it runs in, what it wraps, where its arguments are. */
interface Binding {
  /** Its local transaction, if any. */
  source?: LocalTransactionSource;
  /** Made by a controller's `@UseBarrier()` (a subclass's may replace it), not by the method's own decorator. */
  byController: boolean;
  original: Handler;
  /** What the wrapper calls: {@link original}, or for a TCC Try taking its `@BranchContext()`, {@link original} then the nested-TCC check ({@link nestedChecked}). */
  run: Handler;
  /** Index of the hidden last argument carrying the call (the HTTP request, the gRPC call). */
  carrierIndex?: number;
  /** Indexes of the `@BarrierTx()` arguments. */
  txIndexes: number[];
  /** Without a local transaction, over HTTP: an answer DTM reads as FAILURE or ONGOING is thrown as that error ({@link resultBodyChecked}). */
  checksResultBody?: boolean;
  /** What the instrumentation needs of the handler, once it has observed a call. */
  observed?: ObservedHandler;
}

/** On a wrapped handler: its {@link Binding}. */
const BINDING = Symbol('nestjs-dtm:branch-handler');

/** What `@BarrierTx()` resolves to until the wrapped handler puts the transaction's handle in its place. */
const TX_PLACEHOLDER = Object.freeze({ '@BarrierTx()': 'replaced by the local transaction when the handler runs' });

/**
 * What a gRPC handler that returned nothing answers: the method's response type, every field at its
 * default. A new object per answer, not a shared frozen one: the app's interceptors run on it and may
 * set a field (a frozen object would throw there, an error DTM retries forever, running the handler again).
 */
const emptyMessage = (): object => ({});

type Handler = ((...args: unknown[]) => unknown) & { [BINDING]?: Binding };

/** The factory of `@BarrierTx()`: a placeholder on handlers in a local transaction, a clear error elsewhere. */
export function barrierTxFactory(_data: unknown, context: ExecutionContext): unknown {
  if ((context.getHandler() as Handler)[BINDING]?.source) return TX_PLACEHOLDER;
  throw new InternalServerErrorException(MESSAGES.noBarrierTx(handlerName(context)));
}

/**
 * The hidden last argument of a wrapped handler: the call's carrier, which says the transport to
 * answer on and holds what the guard left (the router passes nothing else a handler did not ask for).
 */
const CarrierArgument = createParamDecorator((_data: unknown, context: ExecutionContext) => branchTransportOf(context)?.carrier(context));

/** Whether the module answers calls to a handler bound to `source` with op `op` without its body (a back-check with a barrier, an XA phase 2 with `{ db }`). */
export function answersWithoutHandler(source: LocalTransactionSource | undefined, op: string): boolean {
  return source !== undefined && ('xa' in source ? op === 'commit' || op === 'rollback' : source.queryPrepared);
}

/**
 * Answers the call on `carrier` to the wrapped handler `handler` as the wrapped handler does, with
 * the carrier as its only argument: for a call {@link answersWithoutHandler} says the module
 * answers, whose handler body (and so its other arguments) is never used.
 */
export function answerByModule(handler: unknown, carrier: BranchCarrier): unknown {
  const { carrierIndex } = (handler as Handler)[BINDING]!;
  const args: unknown[] = new Array(carrierIndex! + 1);
  args[carrierIndex!] = carrier;
  return (handler as Handler)(...args);
}

/** Whether `handler` is a wrapped branch handler with a `@BarrierTx()` parameter (which needs a local transaction). */
export function takesBarrierTx(handler: unknown): boolean {
  return typeof handler === 'function' && ((handler as Handler)[BINDING]?.txIndexes.length ?? 0) > 0;
}

/** Whether `handler` was wrapped to run in a local transaction, and in which. */
export function localTransactionOf(handler: unknown): LocalTransactionSource | undefined {
  return typeof handler === 'function' ? (handler as Handler)[BINDING]?.source : undefined;
}

/**
 * Wraps the branch handler of `descriptor` (see the note at the top of this file), in the local
 * transaction of `source` if given: a barrier-guarded one on a barrier connection, or the local XA
 * transaction on an XA database; its `@BarrierTx()` parameters then receive the transaction's
 * handle. Called by the branch decorators (once per method), and by `@UseBarrier()`, whose source a
 * subclass's `@UseBarrier()` replaces (on the subclass only); a method's own source stays.
 */
export function bindBranchHandler(target: object, key: string | symbol, descriptor: PropertyDescriptor, source?: LocalTransactionSource, byController = false, checksResultBody = false, nestsTcc = false): void {
  const current = descriptor.value as Handler;
  if (typeof current !== 'function') return;
  const bound = current[BINDING];
  if (bound && (!source || (bound.source && !(byController && bound.byController)))) return;
  const controller = target.constructor;
  const original = bound?.original ?? current;
  const where = `${controller.name}.${String(key)}`;
  const binding: Binding = bound ? { ...bound, source, byController } : { source, byController, original, run: original, txIndexes: [], checksResultBody };
  if (binding.carrierIndex === undefined) {
    const declared = Object.values((Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, key) ?? {}) as Record<string, { index: number; factory?: unknown }>);
    binding.carrierIndex = Math.max(original.length, ...declared.map((arg) => arg.index + 1));
    binding.txIndexes = declared.filter((arg) => arg.factory === barrierTxFactory).map((arg) => arg.index);
    // a Try that can start a nested TCC (it takes the BranchInfo tccFromBranch() needs) is checked once it answered; no other handler is
    const infoIndex = nestsTcc ? declared.find((arg) => arg.factory === branchContextFactory)?.index : undefined;
    if (infoIndex !== undefined) binding.run = nestedChecked(original, infoIndex, where);
    CarrierArgument()(target, key, binding.carrierIndex);
  }
  const { carrierIndex, txIndexes, checksResultBody: checksBody, run } = binding;
  // with something observing (hooks, OpenTelemetry, debug log) the call goes through the
  // instrumentation seam; otherwise straight on (nothing made, no clock read)
  const wrapped: Handler = source
    ? function (this: unknown, ...args: unknown[]) {
        const carrier = args[carrierIndex] as BranchCarrier | undefined;
        args.length = carrierIndex;
        const call = branchCallOf(carrier);
        if (call?.skip !== undefined) return answered(carrier, skipped(call, carrier, binding));
        if (call) call.ran = true;
        const business = (handle: unknown) => {
          for (const index of txIndexes) args[index] = handle;
          return run.apply(this, args);
        };
        const instrumentation = call?.runtime?.instrumentation;
        const observation = instrumentation?.active ? observeBranch(instrumentation, call!, carrier!, binding) : undefined;
        if (!observation) return answered(carrier, runInLocalTransaction(carrier, source, where, business));
        call!.observation = observation;
        return answered(carrier, observed(instrumentation!, observation, () => runInLocalTransaction(carrier, source, where, business, observation)));
      }
    : function (this: unknown, ...args: unknown[]) {
        const carrier = args[carrierIndex] as BranchCarrier | undefined;
        args.length = carrierIndex;
        const call = branchCallOf(carrier);
        if (call?.skip !== undefined) return answered(carrier, skipped(call, carrier, binding));
        if (call) call.ran = true;
        const instrumentation = call?.runtime?.instrumentation;
        const observation = instrumentation?.active ? observeBranch(instrumentation, call!, carrier!, binding) : undefined;
        if (!observation) return answered(carrier, checksBody ? resultBodyChecked(carrier, run.apply(this, args), where) : run.apply(this, args));
        call!.observation = observation;
        return answered(carrier, observed(instrumentation!, observation, () => (checksBody ? resultBodyChecked(carrier, run.apply(this, args), where) : run.apply(this, args))));
      };
  for (const metadataKey of Reflect.getOwnMetadataKeys(current)) {
    Reflect.defineMetadata(metadataKey, Reflect.getOwnMetadata(metadataKey, current), wrapped);
  }
  Object.defineProperty(wrapped, 'name', { value: original.name });
  wrapped[BINDING] = binding;
  descriptor.value = wrapped;
}

/**
 * `handler` (a TCC Try whose argument `infoIndex` is its `@BranchContext()`), checked once it
 * answered: when a nested TCC it started (`tccFromBranch()` with that `BranchInfo`) saw a sub-branch
 * call fail ({@link NESTED_FAILURE}) and the handler went on and answered success, it throws a
 * `DtmFailureError` naming that failure instead, which the filter answers FAILURE: DTM then rolls
 * the transaction back, cancelling the sub-branch, where the success would have had it confirm a
 * sub-branch whose Try failed. In a local transaction (a barrier) the check runs before it commits.
 * A promise or an Observable is checked once it ends; an error of the handler goes on as it is.
 */
function nestedChecked(handler: Handler, infoIndex: number, where: string): Handler {
  const check = (info: unknown, value: unknown) => {
    const failure = (info as { [NESTED_FAILURE]?: NestedFailure } | undefined)?.[NESTED_FAILURE];
    if (failure === undefined) return value;
    const cause = messageOf(failure.error);
    throw new DtmFailureError(MESSAGES.nestedTccFailureSwallowed(where, failure.gid, shownBranchId(failure.branchId), failure.op, cause), { gid: failure.gid, branchId: failure.branchId, cause: failure.error });
  };
  const checkObservable = (info: unknown, value: Observable<unknown>) => concat(value, defer(() => (check(info, undefined), EMPTY)));
  return function (this: unknown, ...args: unknown[]) {
    const info = args[infoIndex];
    const result = handler.apply(this, args);
    if (result instanceof Promise) return result.then((value: unknown) => (isObservable(value) ? checkObservable(info, value) : check(info, value)));
    return isObservable(result) ? checkObservable(info, result) : check(info, result);
  };
}

/** What observing a wrapped handler's calls needs of it that does not change from call to call (read on its first observed call, per controller class). */
interface ObservedHandler {
  controller: unknown;
  kind: BranchKind;
  branch: string;
  handler: string;
}

/**
 * Starts observing the branch call `call` on `carrier` (see {@link DtmInstrumentation.startBranch}),
 * with the op it carries unless `op` is given; undefined when it is not a decorated branch call.
 */
function observeBranch(instrumentation: DtmInstrumentation, call: BranchCallState, carrier: BranchCarrier, cache: { observed?: ObservedHandler }, op?: string): BranchObservation | undefined {
  const transport = branchTransportOf(call.context);
  if (!transport) return undefined;
  let known = cache.observed;
  if (known?.controller !== call.context.getClass()) {
    const branch = branchMetadataOf(call.context.getHandler());
    if (!branch) return undefined;
    known = cache.observed = { controller: call.context.getClass(), kind: branch.kind, branch: branch.name, handler: handlerName(call.context) };
  }
  const observation: BranchObservation = {
    kind: known.kind,
    branch: known.branch,
    handler: known.handler,
    gid: transport.gid(carrier),
    branchId: shownBranchId(transport.branchId(carrier)), // a TCC branch id's token (`01-<token>`) goes nowhere
    op: op ?? transport.completeOp(carrier) ?? '',
    transType: shownTransType(transport.transType(carrier)), // a caller's made-up type names no span of its own
    protocol: transport.protocol,
    started: performance.now(),
    // set as the call goes on; named here, so that every observation has the same shape
    barrier: undefined,
    span: undefined,
    ownSpan: undefined,
    context: undefined,
  };
  const [parentHeader, stateHeader] = TRACE_CONTEXT_HEADERS;
  if (call.runtime?.config.passTraceContext === false) instrumentation.startBranch(observation, undefined, noHeader);
  else instrumentation.startBranch(observation, transport.header(carrier, parentHeader), () => transport.header(carrier, stateHeader));
  return observation;
}

/**
 * Reports the branch call `call` when it was answered with `error` before its wrapped handler ran
 * (a pipe's or an interceptor's error, the guard's `{ schema }` check): observed and ended at once,
 * as the handler's own error would be; `refusedWith` (what was answered: the HTTP status or gRPC
 * code) when `error` is the module's refusal of the call (see `refusal`): reported `refused`, with
 * an empty op when the call named one the handler does not serve (the refusal names it; every
 * metric attribute stays bounded). Nothing when nothing observes, or when the handler ran (it
 * reported the call itself).
 */
export function observeUnhandledCall(call: BranchCallState, carrier: BranchCarrier, error: unknown, refusedWith?: number): void {
  if (call.observation) return;
  const instrumentation = call.runtime?.instrumentation;
  if (!instrumentation?.active) return;
  const observation = observeBranch(instrumentation, call, carrier, {}, refusedWith === undefined ? undefined : servedOp(call, carrier));
  if (!observation) return;
  cutKeys(observation);
  call.observation = observation;
  instrumentation.endBranch(observation, true, error, undefined, refusedWith);
}

/**
 * `observation` of a call whose gid and branch id may break the key rule (refused, or an undo
 * answered without its handler: up to the request's header limit from a forged call) with both cut
 * to 200 characters and `…` (`shorten`), for its span attributes, `branch.call` event and debug line
 * (set when it ends). A call that passed the guard has keys of at most 128 characters: not called
 * for it, nothing added to the hot path.
 */
function cutKeys(observation: BranchObservation): void {
  observation.gid = shorten(observation.gid);
  observation.branchId = shorten(observation.branchId);
}

/** The op of the call on `carrier` if its handler serves it (in a workflow's call or not), else ''. */
function servedOp(call: BranchCallState, carrier: BranchCarrier): string {
  const op = branchTransportOf(call.context)?.completeOp(carrier) ?? '';
  const handler = call.context.getHandler();
  return branchSpecOf(handler).ops.includes(op) || workflowOpsOf(handler).includes(op) ? op : '';
}

/**
 * Answers an undo call (compensate, cancel, rollback) whose gid or branch id breaks the key rule
 * without running its handler: its action was refused, so there is nothing to undo. Reported (when
 * something observes) as the success it is answered, with the decision a barrier would make of it,
 * a null compensation.
 */
function skipped(call: BranchCallState, carrier: BranchCarrier | undefined, cache: { observed?: ObservedHandler }): undefined {
  const instrumentation = call.runtime?.instrumentation;
  const observation = instrumentation?.active && carrier ? observeBranch(instrumentation, call, carrier, cache) : undefined;
  if (observation) {
    cutKeys(observation);
    observation.barrier = 'null-compensation';
    call.observation = observation;
    instrumentation!.endBranch(observation, false);
  }
  return undefined;
}

/** A header the call does not pass on. */
const noHeader = (): undefined => undefined;

/** Runs `run` (the handler, with the call's span active) and ends `observation` when it answered: a value, a promise or an Observable. */
function observed(instrumentation: DtmInstrumentation, observation: BranchObservation, run: () => unknown): unknown {
  let result: unknown;
  try {
    result = instrumentation.within(observation, run);
  } catch (err) {
    endFailed(instrumentation, observation, err);
    throw err;
  }
  if (result instanceof Promise) {
    return result.then(
      (value: unknown) => {
        // an async handler's Observable (as Nest answers it: its last value, or its error): observed until it ends
        if (isObservable(value)) return observedObservable(instrumentation, observation, value);
        instrumentation.endBranch(observation, false, undefined, value);
        return value;
      },
      (err: unknown) => {
        endFailed(instrumentation, observation, err);
        throw err;
      },
    );
  }
  if (isObservable(result)) return observedObservable(instrumentation, observation, result);
  instrumentation.endBranch(observation, false, undefined, result);
  return result;
}

/**
 * Ends `observation` of a call whose wrapped handler failed with `err`: as the handler's error, or,
 * when `err` is the module's refusal raised inside the wrapped handler (an XA action's second call
 * with `branch_auth_check_actions`, refused before its business ran), as `refused` with what it is
 * answered. Failure paths only.
 */
function endFailed(instrumentation: DtmInstrumentation, observation: BranchObservation, err: unknown): void {
  instrumentation.endBranch(observation, true, err, undefined, isRefusal(err) ? refusalAnswer(err, observation.protocol) : undefined);
}

/** What the module's refusal of a call (see `refusal`) is answered: the HTTP status (409 for FAILURE), or the gRPC code (ABORTED for FAILURE). */
export function refusalAnswer(refusal: unknown, protocol: DtmProtocol): number {
  if (refusal instanceof HttpException) return protocol === 'grpc' ? grpcCodeOfHttpException(refusal) : refusal.getStatus();
  return protocol === 'grpc' ? GRPC_CODE.ABORTED : 409; // a DtmFailureError
}

/**
 * `result` (a handler's Observable), ending `observation` when it errors or completes (its last value
 * the answer), or, unsubscribed before either (an interceptor's `timeout()` gave up on it), as an error.
 * Nest subscribes to a handler's Observable in the microtasks after the handler answered, or never:
 * when the call was answered meanwhile (an interceptor gave up before an async handler answered), Nest
 * drops it. One not subscribed by the next turn of the event loop ends then, as an error saying so:
 * only for an Observable answered while something observes. Ended once, whichever comes first.
 */
function observedObservable(instrumentation: DtmInstrumentation, observation: BranchObservation, result: Observable<unknown>): Observable<unknown> {
  let last: unknown;
  let subscribed = false;
  let ended = false;
  const once = (end: () => void) => {
    if (ended) return;
    ended = true;
    end();
  };
  setImmediate(() => {
    if (!subscribed) once(() => instrumentation.endBranch(observation, true, new Error(MESSAGES.observableNeverSubscribed(observation.handler))));
  });
  return result.pipe(
    tap({
      subscribe: () => void (subscribed = true),
      next: (value: unknown) => void (last = value),
      error: (err: unknown) => once(() => endFailed(instrumentation, observation, err)),
      complete: () => once(() => instrumentation.endBranch(observation, false, undefined, last)),
      unsubscribe: () => once(() => instrumentation.endBranch(observation, true, new Error(MESSAGES.observableAbandoned(observation.handler)))),
    }),
  );
}

/**
 * A handler's result as the transport of `carrier` must answer it: over gRPC, nothing becomes an
 * empty message. An Observable that completes without a value answers as `undefined` would (as
 * with a barrier, see {@link settled}): Nest's gRPC server would send no answer at all (DTM times
 * the call out and retries it, running the handler again), and its HTTP router would fail with
 * "no elements in sequence" (500, retried too).
 */
function answered(carrier: BranchCarrier | undefined, result: unknown): unknown {
  if (!isGrpcCall(carrier)) return isObservable(result) ? answeredObservable(false, result) : result; // an HTTP promise as it is: no step added per call
  if (result instanceof Promise) return result.then((value: unknown) => (isObservable(value) ? answeredObservable(true, value) : (value ?? emptyMessage())));
  if (isObservable(result)) return answeredObservable(true, result);
  return result ?? emptyMessage();
}

/**
 * An Observable a handler answered, as {@link answered} says: at least one value; over gRPC, only its
 * last one (or its error), never `undefined`. Nest's gRPC server answers a unary call with the first
 * value an Observable emits, so one that emits and then fails would answer success (DTM goes on,
 * nothing rolls back) where Nest's HTTP router, which waits for the last value, answers the error.
 */
function answeredObservable(grpc: boolean, result: Observable<unknown>): Observable<unknown> {
  if (!grpc) return result.pipe(defaultIfEmpty(undefined));
  return result.pipe(
    last(null, undefined),
    map((value: unknown) => value ?? emptyMessage()),
  );
}

/**
 * A handler's result (a value, a promise or an Observable) over HTTP, with an answer DTM reads as
 * FAILURE or ONGOING (a string or `{ dtm_result }` body holding the word, see `dtmResultOfBody`)
 * thrown as that error, as {@link settled} does in a local transaction: the module's filter then
 * answers it 409 / 425 (what DTM reads in that body anyway) and warns when a FAILURE cannot roll
 * anything back. Over gRPC (read by its status alone) the result as it is.
 */
function resultBodyChecked(carrier: BranchCarrier | undefined, result: unknown, where: string): unknown {
  if (isGrpcCall(carrier)) return result;
  const check = (value: unknown) => {
    const body = value === undefined || value === null ? undefined : dtmResultOfBody(value);
    if (body) throw errorOfResultBody(where, body);
    return value;
  };
  if (result instanceof Promise) return result.then((value: unknown) => (isObservable(value) ? value.pipe(map(check)) : check(value)));
  return isObservable(result) ? result.pipe(map(check)) : check(result);
}

/**
 * `@UseBarrier(connection)`: wraps every branch handler of `controller` (inherited ones included)
 * that has no barrier of its own, does not opt out with `{ barrier: false }` and is not an XA
 * branch (which runs its own local XA transaction). An inherited handler a base class's
 * `@UseBarrier()` wrapped is wrapped again for this class, on this connection. Returns the handlers it wrapped.
 */
export function bindControllerBarrier(controller: { prototype: object }, connection: string): object[] {
  const seen = new Set<string | symbol>();
  const wrapped: Handler[] = [];
  for (let owner = controller.prototype; owner && owner !== Object.prototype; owner = Object.getPrototypeOf(owner) as object) {
    for (const key of Reflect.ownKeys(owner)) {
      if (key === 'constructor' || seen.has(key)) continue;
      seen.add(key);
      const descriptor = Object.getOwnPropertyDescriptor(owner, key);
      const handler = descriptor?.value as Handler | undefined;
      const branch = typeof handler === 'function' ? branchMetadataOf(handler) : undefined;
      if (!branch || branch.kind === 'xa' || branch.options.barrier !== undefined) continue;
      const own = { ...descriptor! };
      bindBranchHandler(controller.prototype, key, own, { barrier: connection, queryPrepared: branch.kind === 'msg-query-prepared' }, true);
      if (own.value !== handler) {
        Object.defineProperty(controller.prototype, key, own);
        wrapped.push(own.value as Handler);
      }
    }
  }
  return wrapped;
}

/** Whether a barrier connection is a Redis client rather than a SQL database. */
export function isRedisConnection(connection: BarrierConnection): connection is Extract<BarrierConnection, { redis: unknown }> {
  return 'redis' in connection;
}

async function runInLocalTransaction(
  carrier: BranchCarrier | undefined,
  source: LocalTransactionSource,
  where: string,
  business: (handle: unknown) => unknown,
  observation?: BranchObservation,
): Promise<unknown> {
  const call = branchCallOf(carrier);
  if (!call) throw new DtmUsageError(MESSAGES.notInBranchCall(where)); // the guard leaves the call's state on every branch call
  const runtime = call.runtime;
  // the guard has refused the call if a key of DTM's branch call is missing
  const info = carrier ? branchTransportOf(call.context)?.branchInfo(carrier, {}) : undefined;
  if (!runtime || !info) throw new InternalServerErrorException(MESSAGES.noBranchRuntime(where));
  if ('xa' in source) {
    const db = runtime.xaDatabases.get(source.xa);
    if (!db) throw new InternalServerErrorException(MESSAGES.unknownXaDb(where, source.xa, [...runtime.xaDatabases.keys()]));
    // an XA action call without phase2_url (which the app calling it always sends) is not one the handler may serve: refused
    // (400, gRPC INVALID_ARGUMENT) as a call without DTM's keys is, not a failure of the handler's (500, logged, recorded)
    if (info.op === 'action' && !info.phase2Url) throw refusal(new BadRequestException(MESSAGES.xaActionWithoutPhase2Url(where)));
    return runtime.xaLocalTransaction(info, db, (handle) => settled(business, handle, carrier, where));
  }
  const connection = runtime.barrierConnections.get(source.barrier);
  if (!connection) throw new InternalServerErrorException(MESSAGES.unknownBarrier(where, source.barrier, [...runtime.barrierConnections.keys()]));
  // what the barrier decides goes to the observation (a skipped action: a repeat, or one arriving after its compensation)
  const onDecision = barrierDecisionsInto(observation);
  const barrier = BranchBarrier.from(info, { table: runtime.config.barrierTable, timeoutSeconds: runtime.config.branchTimeout, onDecision });
  if (source.queryPrepared) {
    // the back-check is answered from the barrier table; the handler does not run
    await (isRedisConnection(connection) ? barrier.redisQueryPrepared(connection.redis) : barrier.queryPrepared(connection));
    return undefined;
  }
  if (isRedisConnection(connection)) throw new InternalServerErrorException(MESSAGES.redisBarrierOnHandler(where, source.barrier));
  const outcome = await barrier.callWithDb(connection, (handle) => settled(business, handle, carrier, where));
  return outcome.executed ? outcome.result : undefined;
}

/**
 * What a handler in a local transaction answered (`business` run with `handle`), settled before the
 * transaction ends: a promise awaited, an Observable (Nest allows one; awaiting it would not run it)
 * subscribed to and waited for, its last value the answer (undefined if it completes without one),
 * as Nest answers it. Its error rolls the transaction back, barrier rows included, so DTM's retry
 * runs the business again; it is remembered as the handler's own ({@link answeredBy}). Over
 * HTTP, an answer DTM reads as FAILURE or ONGOING (a string or `{ dtm_result }` body holding the
 * word, see {@link dtmResultOfBody}) is that error thrown: the transaction rolls back, as for a
 * thrown `DtmFailureError`, instead of committing work DTM then rolls back or retries.
 */
async function settled(business: (handle: unknown) => unknown, handle: unknown, carrier: BranchCarrier | undefined, where: string): Promise<unknown> {
  let value: unknown;
  try {
    value = await business(handle);
    if (isObservable(value)) value = await lastValueFrom(value, { defaultValue: undefined });
  } catch (err) {
    // failure path only: an error answered once the handler ran (an interceptor's) is told from the handler's own
    if (typeof err === 'object' && err !== null) handlerErrors.add(err);
    throw err;
  }
  if (value !== undefined && value !== null && !isGrpcCall(carrier)) {
    const body = dtmResultOfBody(value);
    if (body) throw errorOfResultBody(where, body);
  }
  return value;
}

/** The errors handlers in a local transaction threw (see {@link settled}). */
const handlerErrors = new WeakSet<object>();

/**
 * Who answered `error` (a pipe's or an interceptor's 400, say) for the call `call`: `before` its
 * handler ran (a pipe, an interceptor before it), the `handler` itself, or `after` it answered (an
 * interceptor of the app refusing its answer). A handler in a local transaction (a barrier, an XA
 * database) tells its own errors apart ({@link settled}); for another handler that ran, whose own
 * errors go to Nest untouched (telling them apart would cost a promise step on every call), it is
 * not known: undefined. Failure paths only.
 */
export function answeredBy(call: BranchCallState, error: unknown): 'before' | 'handler' | 'after' | undefined {
  if (call.ran !== true) return 'before';
  if (localTransactionOf(call.context.getHandler()) === undefined) return undefined;
  return typeof error === 'object' && error !== null && handlerErrors.has(error) ? 'handler' : 'after';
}
