// The one instrumentation seam: every call to DTM, every transaction this app starts and every
// branch call it serves passes through here, and is turned into hook events, OpenTelemetry spans
// and metrics, and debug log lines. When nothing observes (no listener, no OpenTelemetry SDK, no
// debug log), `active` is false and the callers skip all of it: no event object, no clock read.
import { Logger } from '@nestjs/common';
import type { DtmProtocol } from '../errors/dtm-error.js';
import { dtmResultOfAnsweredError, dtmResultOfBody } from '../branches/branch-result.js';
import { DtmUsageError } from '../errors/dtm-usage.error.js';
import { offerContextCarrier } from '../context/dtm-context.js';
import { MESSAGES } from '../dtm.messages.js';
import { shownCallerValue } from '../redact.js';
import { shownBranchId } from '../auth/branch-auth.js';
import type { TransactionType } from '../transport/dtm.types.js';
import type {
  DtmBranchCallEvent,
  DtmBranchOutcome,
  DtmEventListener,
  DtmEventName,
  DtmEvents,
  DtmInstrumentationOptions,
  DtmTransactionOutcome,
} from './dtm-events.js';
import { OtelBridge, type BranchSpanSlot, type OtelContext, type OtelSpan } from './otel.js';
import { textOf } from '../errors/text-of.js';
import { NODE_TIMER_MAX_MS } from '../config/dtm-config.keys.js';

/** @internal An observed transaction: its start, span and the trace headers DTM carries to its branches. */
export interface TransactionObservation {
  gid: string;
  transType: TransactionType;
  protocol: DtmProtocol;
  started: number;
  span?: OtelSpan;
  /** The context with the span, under which the app's body runs. */
  context?: OtelContext;
  /** `traceparent` (and `tracestate`) of the span. */
  headers?: Record<string, string>;
  /** Set once it ended: it ends once, whichever path comes first (a message left prepared, see {@link DtmInstrumentation.park}). */
  ended?: boolean;
  /** While parked ({@link DtmInstrumentation.park}): the timer that ends it. */
  parkTimer?: NodeJS.Timeout;
}

/** @internal An observed branch call, filled in as it runs: what its `branch.call` event reports (a TCC branch id without its token, `01-<token>`), and its start and span. */
export interface BranchObservation extends Pick<DtmBranchCallEvent, 'kind' | 'branch' | 'handler' | 'gid' | 'branchId' | 'op' | 'transType' | 'protocol' | 'barrier'>, BranchSpanSlot {
  started: number;
}

/**
 * @internal Most messages left prepared the instrumentation keeps open ({@link DtmInstrumentation.park}):
 * past it the oldest ends `prepared` at once (an app that prepares a message per request, never
 * submitted, with a long `timeoutToFail`, would otherwise hold an open span per request that long).
 */
export const MAX_PARKED = 10_000;

/** The names of the events ({@link DtmEvents}). */
const EVENT_NAMES: readonly DtmEventName[] = ['transaction.start', 'transaction.end', 'dtm.call', 'branch.call', 'abort.failed'];

/**
 * What branch call `o`'s outcome is, from what its handler threw (`failed`; as the module's filter
 * answers it, a `BadRequestException` being FAILURE), else from the body it answered over HTTP (one DTM
 * reads as FAILURE or ONGOING: see `dtmResultOfBody`).
 */
export function branchOutcomeOf(o: Pick<BranchObservation, 'kind' | 'op'>, error: unknown, failed: boolean, httpBody?: unknown): DtmBranchOutcome {
  const result = failed ? dtmResultOfAnsweredError(error, o.kind, o.op) : httpBody === undefined || httpBody === null ? 'SUCCESS' : (dtmResultOfBody(httpBody)?.result ?? 'SUCCESS');
  if (result === 'SUCCESS') return 'success';
  return result === 'FAILURE' ? 'failure' : result === 'ONGOING' ? 'ongoing' : 'error';
}

/**
 * The module's instrumentation (injectable): subscribe to its events with {@link on}, or give them
 * as the module option `instrumentation.hooks`. An error a listener throws is logged and never
 * reaches the transaction or the branch call.
 */
export class DtmInstrumentation {
  private readonly listeners: { [E in DtmEventName]?: DtmEventListener<E>[] } = {};
  private listening = false;
  private readonly logger = new Logger('DtmTrace');
  private readonly debugLogs: boolean;
  private readonly openTelemetry: boolean;
  /** undefined: not probed yet; null: no OpenTelemetry SDK (or turned off). */
  private otelBridge?: OtelBridge | null;
  /** The observations of messages left prepared by `prepare()` ({@link park}), which the app's close ends. */
  private readonly parked = new Set<TransactionObservation>();

  constructor(options: DtmInstrumentationOptions = {}) {
    this.debugLogs = options.debugLogs === true;
    this.openTelemetry = options.openTelemetry !== false;
    for (const name in options.hooks ?? {}) {
      const listener = options.hooks![name as DtmEventName];
      if (!(EVENT_NAMES as readonly string[]).includes(name)) throw new DtmUsageError(MESSAGES.badHook(name, EVENT_NAMES, 'no such event'));
      if (listener === undefined) continue;
      if (typeof listener !== 'function') throw new DtmUsageError(MESSAGES.badHook(name, EVENT_NAMES, `a ${typeof listener}, not a function`));
      this.on(name as DtmEventName, listener as DtmEventListener<DtmEventName>);
    }
    // with an SDK, the request context rides in OpenTelemetry's context (one AsyncLocalStorage, not two)
    if (this.openTelemetry) offerContextCarrier(() => this.otel()?.contextCarrier());
  }

  /**
   * Calls `listener` with every event `name`; returns the function that unsubscribes it. The list is
   * replaced, never changed in place: an event being emitted reaches the listeners it started with,
   * also when one of them unsubscribes (itself or another) or subscribes one.
   */
  on<E extends DtmEventName>(name: E, listener: DtmEventListener<E>): () => void {
    const listeners = this.listeners as Record<DtmEventName, DtmEventListener<E>[] | undefined>;
    listeners[name] = [...(listeners[name] ?? []), listener];
    this.listening = true;
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      const list: DtmEventListener<E>[] = listeners[name] ?? [];
      const at = list.indexOf(listener);
      if (at >= 0) listeners[name] = [...list.slice(0, at), ...list.slice(at + 1)];
      this.listening = Object.values(this.listeners).some((l) => l.length > 0);
    };
  }

  /** @internal Whether anything observes: a listener, an OpenTelemetry SDK, the debug log. */
  get active(): boolean {
    return this.listening || this.debugLogs || this.otel() !== null;
  }

  /**
   * @internal Whether anything observes the calls to DTM: a listener or the debug log. OpenTelemetry
   * does not: an HTTP client instrumentation times them, a gRPC one gives each a span (a metric
   * record per DTM call would cost the app more than the call's own client code).
   */
  get observesDtmCalls(): boolean {
    return this.listening || this.debugLogs;
  }

  /** @internal The OpenTelemetry bridge, probed once; null without an SDK. */
  otel(): OtelBridge | null {
    if (this.otelBridge === undefined) this.otelBridge = (this.openTelemetry && OtelBridge.probe()) || null;
    return this.otelBridge;
  }

  /** @internal Calls the listeners of `name` (what they throw, or the promise they return rejects with, is logged). */
  emit<E extends DtmEventName>(name: E, event: DtmEvents[E]): void {
    const list = this.listeners[name];
    if (!list) return;
    for (const listener of list) {
      try {
        // typed as returning nothing, but an async listener returns a promise: its rejection must not go unhandled
        const returned: unknown = (listener as DtmEventListener<E>)(event);
        if (isThenable(returned)) returned.then(undefined, (err: unknown) => this.listenerFailed(name, event, err));
      } catch (err) {
        this.listenerFailed(name, event, err);
      }
    }
  }

  /** Logs what a listener of `name` threw on `event`, naming the event's gid, branch and op when it has them. */
  private listenerFailed(name: DtmEventName, event: DtmEvents[DtmEventName], err: unknown): void {
    const { gid, branchId, op } = event as { gid?: string; branchId?: string; op?: string };
    // a refused branch call's gid and branch id are what its caller sent: CR / LF must not forge a line
    const where = gid ? ` for gid=${shownCallerValue(gid)}${branchId !== undefined ? ` branch=${shownCallerValue(branchId)}` : ''}${op !== undefined ? ` op=${shownCallerValue(op)}` : ''}` : '';
    this.logger.error(`a listener of ${name} threw${where} (ignored: the transaction goes on): ${err instanceof Error ? (err.stack ?? err.message) : textOf(err)}`);
  }

  /**
   * @internal A call to DTM (or to a branch) that took from `started` (performance.now()) and ended
   * with `error` if `failed`; a TCC branch id is reported without its token (`01-<token>`).
   */
  dtmCall(operation: string, protocol: DtmProtocol, gid: string | undefined, started: number, failed: boolean, error?: unknown, fullBranchId?: string, op?: string): void {
    const durationMs = performance.now() - started;
    const branchId = fullBranchId === undefined ? undefined : shownBranchId(fullBranchId);
    const outcome = failed ? 'error' : 'ok';
    if (this.debugLogs) {
      const at = gid ? ` gid=${gid}${branchId !== undefined ? ` branch=${branchId}` : ''}${op !== undefined ? ` op=${op}` : ''}` : '';
      this.logger.debug(`${operation} over ${protocol}${at}: ${outcome} in ${durationMs.toFixed(1)} ms${failed ? ` (${errorText(error)})` : ''}`);
    }
    if (this.listening) this.emit('dtm.call', { operation, protocol, gid, branchId, op, outcome, error, durationMs });
  }

  /** @internal Starts observing a transaction (its span a child of the active context, else of the inbound trace headers); undefined when nothing observes. */
  startTransaction(gid: string, transType: TransactionType, protocol: DtmProtocol, inbound: Record<string, string>, carryTrace: boolean): TransactionObservation | undefined {
    if (!this.active) return undefined;
    const observation: TransactionObservation = { gid, transType, protocol, started: performance.now() };
    const otel = this.otel();
    if (otel?.tracing) {
      const parent = otel.parent(carryTrace ? inbound.traceparent : undefined, inbound.tracestate);
      const span = otel.startSpan(`DTM ${transType}`, parent, { 'dtm.gid': gid, 'dtm.trans_type': transType, 'dtm.protocol': protocol });
      if (span) {
        observation.span = span;
        observation.context = otel.withSpan(parent, span);
        if (carryTrace) observation.headers = otel.traceHeaders(span);
      }
    }
    if (this.debugLogs) this.logger.debug(`${transType} gid=${gid} started over ${protocol}`);
    if (this.listening) this.emit('transaction.start', { gid, transType, protocol });
    return observation;
  }

  /** @internal Runs `fn` with the span of a transaction or branch call active (the app's code, so its own spans are children). */
  within<T>(observation: { context?: OtelContext } | undefined, fn: () => T): T {
    const ctx = observation?.context;
    return ctx ? this.otel()!.run(ctx, fn) : fn();
  }

  /**
   * @internal Parks the observation of a message its app prepared with `prepare()` and has not
   * submitted: it ends `prepared` after `seconds` (when DTM's back-check takes the message over), or
   * when the app closes ({@link endParked}), unless a submit ends it first ({@link unpark}); past
   * {@link MAX_PARKED} parked, the oldest ends `prepared` at once.
   */
  park(observation: TransactionObservation, seconds: number): void {
    this.unpark(observation);
    if (observation.ended) return;
    observation.parkTimer = setTimeout(() => this.endTransaction(observation, 'prepared'), Math.min(seconds * 1000, NODE_TIMER_MAX_MS)).unref();
    this.parked.add(observation);
    // bounded: the oldest parked (the first in the set's order) ends now, as its timeoutToFail would end it
    if (this.parked.size > MAX_PARKED) this.endTransaction(this.parked.values().next().value!, 'prepared');
  }

  /** @internal Takes `observation` off the parked ones (a submit of the message goes on with it). */
  unpark(observation: TransactionObservation): void {
    if (observation.parkTimer === undefined) return;
    clearTimeout(observation.parkTimer);
    observation.parkTimer = undefined;
    this.parked.delete(observation);
  }

  /** @internal The app closes: the messages left prepared end `prepared` (their spans exported, counted). */
  endParked(): void {
    for (const observation of [...this.parked]) this.endTransaction(observation, 'prepared');
  }

  /** @internal Ends observing a transaction (once: nothing when it ended already). */
  endTransaction(observation: TransactionObservation, outcome: DtmTransactionOutcome, error?: unknown): void {
    if (observation.ended) return;
    observation.ended = true;
    this.unpark(observation);
    const { gid, transType, protocol } = observation;
    const durationMs = performance.now() - observation.started;
    const failed = outcome === 'failed' || outcome === 'aborted' || outcome === 'error';
    const otel = this.otel();
    if (otel) {
      if (observation.span) otel.endSpan(observation.span, { 'dtm.outcome': outcome }, error, failed);
      otel.transaction(transType, protocol, outcome, durationMs / 1000);
    }
    if (this.debugLogs) this.logger.debug(`${transType} gid=${gid}: ${outcome} in ${durationMs.toFixed(1)} ms${error !== undefined ? ` (${errorText(error)})` : ''}`);
    if (this.listening) this.emit('transaction.end', { gid, transType, protocol, outcome, error, durationMs });
  }

  /**
   * @internal The abort after a failed body failed: logged (warning) and reported; the caller gets
   * the body's error. `currentStatus`: what DTM holds when it refused the abort (read after the
   * refusal; undefined when unknown), which says what became of the transaction.
   */
  abortFailed(gid: string, transType: TransactionType, protocol: DtmProtocol, error: unknown, cause: unknown, currentStatus?: string): void {
    this.logger.warn(MESSAGES.abortFailed(transType, gid, errorText(error), currentStatus));
    if (this.listening) this.emit('abort.failed', { gid, transType, protocol, error, cause, currentStatus });
  }

  /**
   * @internal Starts observing a branch call that carries `traceparent` (`tracestate()` read only if
   * needed): its attributes go on the call's server span when an HTTP / gRPC instrumentation made
   * one, else on a span of its own (a child of the active span, else of `traceparent`).
   */
  startBranch(observation: BranchObservation, traceparent: string | undefined, tracestate: () => string | undefined): void {
    const otel = this.otel();
    if (otel?.tracing) otel.branchSpan(observation, traceparent, tracestate);
  }

  /**
   * @internal Ends observing a branch call: its outcome from what the handler threw (`failed`), or
   * from the HTTP `body` it answered; `refused` when the module refused it with `error` before its
   * handler ran, answering `refusedWith` (the HTTP status or gRPC code).
   */
  endBranch(o: BranchObservation, failed: boolean, error?: unknown, body?: unknown, refusedWith?: number): void {
    const durationMs = performance.now() - o.started;
    const outcome = refusedWith !== undefined ? 'refused' : branchOutcomeOf(o, error, failed, o.protocol === 'http' ? body : undefined);
    const otel = this.otel();
    if (otel) {
      if (o.span) {
        annotateBranchSpan(o.span, o, outcome);
        otel.endSpan(o.span, undefined, error, outcome !== 'success', o.ownSpan);
      }
      otel.branchCall(o.kind, o.op, outcome, o.barrier, durationMs / 1000);
    }
    if (this.debugLogs) {
      this.logger.debug(
        `${o.handler} (${o.kind} ${o.branch}) gid=${shownCallerValue(o.gid)} branch=${shownCallerValue(o.branchId)} op=${o.op} trans_type=${o.transType} over ${o.protocol}: ${outcome}${o.barrier ? `, barrier ${o.barrier}` : ''} in ${durationMs.toFixed(1)} ms`,
      );
    }
    if (this.listening) {
      const event: DtmBranchCallEvent = { kind: o.kind, branch: o.branch, handler: o.handler, gid: o.gid, branchId: o.branchId, op: o.op, transType: o.transType, protocol: o.protocol, outcome, durationMs };
      if (o.barrier) event.barrier = o.barrier;
      if (failed) event.error = error;
      if (refusedWith !== undefined) event.status = refusedWith;
      this.emit('branch.call', event);
    }
  }
}

/**
 * Sets the `dtm.*` attributes of a branch call on its span (the module's own, or the call's server
 * span) when the call ended: one `setAttribute` each, the barrier decision only when the barrier
 * decided. Those of `docs/observability.md`, no more: every attribute costs every call (the server
 * span's `http.route` / `rpc.method`, or the own span's name, already say which handler).
 */
function annotateBranchSpan(span: OtelSpan, o: BranchObservation, outcome: DtmBranchOutcome): void {
  span.setAttribute('dtm.gid', o.gid);
  span.setAttribute('dtm.trans_type', o.transType);
  span.setAttribute('dtm.branch_id', o.branchId);
  span.setAttribute('dtm.op', o.op);
  span.setAttribute('dtm.branch.name', o.branch);
  span.setAttribute('dtm.protocol', o.protocol);
  span.setAttribute('dtm.outcome', outcome);
  if (o.barrier) span.setAttribute('dtm.barrier.decision', o.barrier);
}

/** Whether `value` is a promise (or another thenable). */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** An error's message for a log line (no stack, no request data). */
function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : textOf(error);
}

/** @internal What a runtime without a module's instrumentation uses (a transaction made outside DtmModule): logs, nothing else. */
export const UNOBSERVED = new DtmInstrumentation({ openTelemetry: false });
