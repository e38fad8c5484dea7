// The OpenTelemetry bridge: spans and metrics through `@opentelemetry/api`, an optional peer
// dependency loaded on first use (never when the option `openTelemetry` is false), and used only
// when an SDK registered a tracer provider and/or a meter provider (checked once).
import { createRequire } from 'node:module';
import { isValidTracestate, parseTraceparent, type DtmRequestContext, type RequestContextCarrier } from '../context/dtm-context.js';
import { textOf } from '../errors/text-of.js';

// The types of @opentelemetry/api appear only inside this file: the declarations the package ships
// must not name a package an app may not have installed.
type OtelApi = typeof import('@opentelemetry/api');
type ApiContext = import('@opentelemetry/api').Context;
type ApiSpan = import('@opentelemetry/api').Span;
/** A span, as the module holds it (what it uses of `@opentelemetry/api`'s `Span`). */
export interface OtelSpan {
  spanContext(): { traceId: string; spanId: string; traceFlags: number; traceState?: { serialize(): string } };
  isRecording(): boolean;
  setAttributes(attributes: Attributes): unknown;
  setAttribute(key: string, value: string): unknown;
  recordException(exception: Error): void;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
}
/** A context (`@opentelemetry/api`'s `Context`), opaque to the module. */
export type OtelContext = object;
/** A branch call as {@link OtelBridge.branchSpan} sees it: what names its span, and where the span goes. */
export interface BranchSpanSlot {
  transType: string;
  op: string;
  branch: string;
  span?: OtelSpan;
  /** Whether `span` is the module's own (it ends it), not the call's server span (which only gets the attributes). */
  ownSpan?: boolean;
  /** The context with the module's own span, under which the handler runs (none when the call's server span is active already). */
  context?: OtelContext;
}
/** Span and metric attributes, as the module sets them. */
type Attributes = Record<string, string>;

/**
 * Whether the span of `sc` is a server span of the call that carried `traceparent`
 * (`00-<trace id>-<span id>-<flags>`): in its trace, not its parent span. Only its length and
 * separators are checked: a server instrumentation would not have continued a malformed one, so
 * its trace id matches no server span.
 */
const isServerSpanOf = (sc: { traceId: string; spanId: string }, traceparent: string): boolean =>
  traceparent.length >= 55 && traceparent[35] === '-' && sc.traceId.length === 32 && traceparent.startsWith(sc.traceId, 3) && !(sc.spanId.length === 16 && traceparent.startsWith(sc.spanId, 36));

/**
 * The context key under which OpenTelemetry's HTTP server instrumentation keeps the call's server
 * span (`@opentelemetry/core`'s RPC metadata, `{ type, span, route? }`). The API makes context keys
 * with `Symbol.for(description)`, so the same key is found without depending on `@opentelemetry/core`.
 */
const RPC_METADATA = Symbol.for('OpenTelemetry SDK Context Key RPC_METADATA');

/** One attribute set's counts so far: how many, and their total time. */
interface CountCell {
  attributes: Attributes;
  count: number;
  seconds: number;
}

/** The map under `key` in `map`, made on first use. */
function mapUnder<K, V>(map: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let next = map.get(key);
  if (!next) map.set(key, (next = new Map<K, V>()));
  return next;
}

/**
 * Transactions or branch calls counted by the module: one cell per attribute set, which the SDK
 * reads when it collects, as two observable counters (the number, the total time). Counting is an
 * addition; a histogram record with attributes would make the SDK hash them every time. A cell is
 * found by its attributes' values, one map per attribute (no key string is made per call).
 */
class Counted {
  private readonly cells: CountCell[] = [];
  /** The cells by their first, second, third and fourth value (undefined: that attribute not set). */
  private readonly byValues = new Map<string, Map<string, Map<string, Map<string | undefined, CountCell>>>>();

  /** `names`: the attributes (three or four), in the order {@link add} gives their values. */
  constructor(
    meter: import('@opentelemetry/api').Meter,
    private readonly names: readonly string[],
    count: { name: string; unit: string; description: string },
    time: { name: string; description: string },
  ) {
    const counter = meter.createObservableCounter(count.name, { unit: count.unit, description: count.description });
    const timer = meter.createObservableCounter(time.name, { unit: 's', description: time.description });
    meter.addBatchObservableCallback(
      (result) => {
        for (const cell of this.cells) {
          result.observe(counter, cell.count, cell.attributes);
          result.observe(timer, cell.seconds, cell.attributes);
        }
      },
      [counter, timer],
    );
  }

  /** Counts one that took `seconds`, with the attributes of `names` set to `a`, `b`, `c` and `d` (unset when undefined). */
  add(seconds: number, a: string, b: string, c: string, d?: string): void {
    const byFourth = mapUnder(mapUnder(mapUnder(this.byValues, a), b), c);
    let cell = byFourth.get(d);
    if (!cell) byFourth.set(d, (cell = this.cell(a, b, c, d)));
    cell.count++;
    cell.seconds += seconds;
  }

  /** A new cell for these values (see {@link add}). */
  private cell(a: string, b: string, c: string, d: string | undefined): CountCell {
    const values = [a, b, c, d];
    const attributes: Attributes = {};
    this.names.forEach((name, i) => {
      if (values[i] !== undefined) attributes[name] = values[i]!;
    });
    const cell = { attributes, count: 0, seconds: 0 };
    this.cells.push(cell);
    return cell;
  }
}

/**
 * The names of the module's metrics (`docs/observability.md`): transactions and branch calls,
 * each counted by the module by their attributes (number and total time) and timed by a
 * histogram without attributes. Calls to DTM are left to the HTTP / gRPC client instrumentations.
 */
export const METRIC_NAMES = {
  transactions: 'dtm.transactions',
  transactionTime: 'dtm.transaction.time',
  transactionDuration: 'dtm.transaction.duration',
  branchCalls: 'dtm.branch.calls',
  branchTime: 'dtm.branch.time',
  branchDuration: 'dtm.branch.duration',
} as const;

/** The module's metrics on one meter. */
interface Instruments {
  transactions: Counted;
  transactionDuration: import('@opentelemetry/api').Histogram;
  branchCalls: Counted;
  branchDuration: import('@opentelemetry/api').Histogram;
}

/**
 * The instruments of each meter (one per meter provider): every module of the process counts in the
 * same cells, which one callback per meter reports (two callbacks reporting the same attributes
 * would overwrite each other's figures).
 */
const instrumentsOf = new WeakMap<object, Instruments>();

/** The module's instruments on `meter`, made on first use. */
function instrumentsFor(meter: import('@opentelemetry/api').Meter): Instruments {
  let instruments = instrumentsOf.get(meter);
  if (instruments) return instruments;
  instruments = {
    transactions: new Counted(
      meter,
      ['dtm.trans_type', 'dtm.protocol', 'dtm.outcome'],
      { name: METRIC_NAMES.transactions, unit: '{transaction}', description: 'Global transactions this app started, by type, protocol and outcome' },
      { name: METRIC_NAMES.transactionTime, description: 'Time those transactions took, from the first call to DTM to the outcome (divided by dtm.transactions: the mean)' },
    ),
    transactionDuration: meter.createHistogram(METRIC_NAMES.transactionDuration, { unit: 's', description: 'Global transactions this app started: time from the first call to DTM to the outcome (by type and outcome: dtm.transactions, dtm.transaction.time)' }),
    branchCalls: new Counted(
      meter,
      ['dtm.branch.kind', 'dtm.op', 'dtm.outcome', 'dtm.barrier.decision'],
      { name: METRIC_NAMES.branchCalls, unit: '{call}', description: 'Branch calls served by this app, by kind, op, outcome and barrier decision' },
      { name: METRIC_NAMES.branchTime, description: 'Time the handlers of those branch calls took, barrier included (divided by dtm.branch.calls: the mean)' },
    ),
    branchDuration: meter.createHistogram(METRIC_NAMES.branchDuration, { unit: 's', description: 'Branch calls served by this app: time the handler took, barrier included (by kind, op and outcome: dtm.branch.calls, dtm.branch.time)' }),
  };
  instrumentsOf.set(meter, instruments);
  return instruments;
}

/** What the module uses of OpenTelemetry, once an SDK is known to be registered. */
export class OtelBridge {
  private readonly tracer?: import('@opentelemetry/api').Tracer;
  private readonly instruments?: Instruments;

  private constructor(
    private readonly api: OtelApi,
    tracing: boolean,
    meter: import('@opentelemetry/api').Meter | undefined,
  ) {
    if (tracing) this.tracer = api.trace.getTracer('nestjs-dtm');
    if (meter) this.instruments = instrumentsFor(meter);
  }

  /**
   * The bridge when `@opentelemetry/api` is installed and an SDK registered a tracer provider or a
   * meter provider; undefined otherwise (then the module never asks OpenTelemetry anything again).
   */
  static probe(): OtelBridge | undefined {
    let api: OtelApi;
    try {
      api = createRequire(import.meta.url)('@opentelemetry/api') as OtelApi;
    } catch {
      return undefined;
    }
    const provider = api.trace.getTracerProvider() as { getDelegate?(): unknown };
    // without an SDK, the global provider is a proxy whose delegate is the API's no-op provider
    const tracing = typeof provider.getDelegate === 'function' && provider.getDelegate() !== new api.ProxyTracerProvider().getDelegate();
    const meter = api.metrics.getMeter('nestjs-dtm');
    const metering = meter !== api.createNoopMeter();
    return tracing || metering ? new OtelBridge(api, tracing, metering ? meter : undefined) : undefined;
  }

  /**
   * A carrier for the module's request context in OpenTelemetry's context, when the registered
   * context manager carries values (an SDK's; the API's no-op one does not): the pass-through
   * headers then ride in the SDK's AsyncLocalStorage instead of a second one of the module's own.
   */
  contextCarrier(): RequestContextCarrier | undefined {
    const { context, createContextKey, ROOT_CONTEXT } = this.api;
    const key = createContextKey('nestjs-dtm request context');
    if (context.with(ROOT_CONTEXT.setValue(key, true), () => context.active().getValue(key)) !== true) return undefined;
    return {
      run: (value, fn) => context.with(context.active().setValue(key, value), fn),
      get: () => context.active().getValue(key) as DtmRequestContext | undefined,
    };
  }

  /** Whether spans are made. */
  get tracing(): boolean {
    return this.tracer !== undefined;
  }

  /** The active context. */
  active(): OtelContext {
    return this.api.context.active();
  }

  /**
   * The parent of a span: the active context when it has a span (an HTTP / gRPC instrumentation's),
   * else the W3C `traceparent` / `tracestate` given (the inbound call's), checked as the
   * pass-through checks them (malformed ones are ignored).
   */
  parent(traceparent: string | undefined, tracestate: string | undefined): OtelContext {
    const active: ApiContext = this.api.context.active();
    if (this.api.trace.getSpan(active) || traceparent === undefined) return active;
    return this.remoteParent(active, traceparent, tracestate);
  }

  /** `active` with the span context of `traceparent` / `tracestate` (a remote parent); `active` when `traceparent` is malformed. */
  private remoteParent(active: ApiContext, traceparent: string, tracestate: string | undefined): ApiContext {
    const parsed = parseTraceparent(traceparent);
    if (!parsed) return active;
    return this.api.trace.setSpanContext(active, {
      traceId: parsed.traceId,
      spanId: parsed.spanId,
      traceFlags: parsed.flags & 1,
      isRemote: true,
      traceState: tracestate && isValidTracestate(tracestate) ? this.api.createTraceState(tracestate) : undefined,
    });
  }

  /**
   * The span of the branch call `call`, which carries `traceparent` (`tracestate()` read only when
   * needed), set on `call`:
   * - the call's own server span, when the active span is one: recording, in the trace of
   *   `traceparent` but not its span (what an HTTP / gRPC server instrumentation starts for the
   *   call; the caller's own span, active when an app calls its own branch, is not). The branch
   *   call's attributes go on it (`ownSpan: false`: the module never ends it), and no second span
   *   is made for the same call;
   * - otherwise a new span named `DTM <trans type> <op> <branch>`, a child of the active span if
   *   there is one, else of `traceparent` (`ownSpan: true`, with the context to run the handler in).
   */
  branchSpan(call: BranchSpanSlot, traceparent: string | undefined, tracestate: () => string | undefined): void {
    if (!this.tracer) return;
    const active: ApiContext = this.api.context.active();
    const current = this.api.trace.getSpan(active);
    if (current && traceparent !== undefined && current.isRecording() && isServerSpanOf(current.spanContext(), traceparent)) {
      // under other instrumentations (Express's, Nest's) the active span is one of theirs, below the
      // HTTP instrumentation's server span: that one is in the context's RPC metadata
      const server = (active.getValue(RPC_METADATA) as { span?: ApiSpan } | undefined)?.span;
      call.span = server !== undefined && server !== current && server.isRecording() && isServerSpanOf(server.spanContext(), traceparent) ? server : current;
      call.ownSpan = false;
      return;
    }
    const parent = current || traceparent === undefined ? active : this.remoteParent(active, traceparent, tracestate());
    const span = this.tracer.startSpan(`DTM ${call.transType} ${call.op} ${call.branch}`, undefined, parent);
    call.span = span;
    call.ownSpan = true;
    call.context = this.api.trace.setSpan(parent, span);
  }

  /** Starts a span named `name` under `parent`. */
  startSpan(name: string, parent: OtelContext, attributes: Attributes): OtelSpan | undefined {
    return this.tracer?.startSpan(name, { attributes }, parent as ApiContext);
  }

  /** `parent` with `span` as its active span. */
  withSpan(parent: OtelContext, span: OtelSpan): OtelContext {
    return this.api.trace.setSpan(parent as ApiContext, span as import('@opentelemetry/api').Span);
  }

  /** Runs `fn` with `ctx` active. */
  run<T>(ctx: OtelContext, fn: () => T): T {
    return this.api.context.with(ctx as ApiContext, fn);
  }

  /** The W3C trace context of the active span (undefined without one, or when it is not valid). */
  activeTraceHeaders(): Record<string, string> | undefined {
    const span = this.api.trace.getActiveSpan();
    return span && this.traceHeaders(span);
  }

  /** The W3C trace context of `span` (what goes into DTM's `branch_headers`), undefined when it is not valid. */
  traceHeaders(span: OtelSpan): Record<string, string> | undefined {
    const sc = span.spanContext();
    if (!this.api.isSpanContextValid(sc as import('@opentelemetry/api').SpanContext)) return undefined;
    const headers: Record<string, string> = { traceparent: `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}` };
    const state = sc.traceState?.serialize();
    if (state) headers.tracestate = state;
    return headers;
  }

  /** Ends `span` with `attributes` added (none when not given), in error status with `error` when `failed`; `own: false` (the call's server span, which its instrumentation ends): only annotates it. */
  endSpan(span: OtelSpan, attributes: Attributes | undefined, error: unknown, failed: boolean, own = true): void {
    if (attributes) span.setAttributes(attributes);
    if (failed) {
      if (error instanceof Error) span.recordException(error);
      span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : error === undefined ? undefined : textOf(error) });
    }
    if (own) span.end();
  }

  /** Counts a transaction by type, protocol and outcome, and records its duration. */
  transaction(transType: string, protocol: string, outcome: string, seconds: number): void {
    const instruments = this.instruments;
    if (!instruments) return;
    instruments.transactions.add(seconds, transType, protocol, outcome);
    instruments.transactionDuration.record(seconds);
  }

  /** Counts a branch call by kind, op, outcome and barrier decision (when the barrier decided), and records its duration. */
  branchCall(kind: string, op: string, outcome: string, barrier: string | undefined, seconds: number): void {
    const instruments = this.instruments;
    if (!instruments) return;
    // every value is bounded: the kinds, the ops the guard let through, the outcomes, the decisions
    instruments.branchCalls.add(seconds, kind, op, outcome, barrier);
    instruments.branchDuration.record(seconds);
  }
}
