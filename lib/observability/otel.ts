// The OpenTelemetry bridge: spans and metrics through `@opentelemetry/api`, an optional peer
// dependency loaded on first use (never when the option `openTelemetry` is false), and used only
// when an SDK registered a tracer provider and/or a meter provider (checked once).
import { createRequire } from 'node:module';
import { isValidTracestate, parseTraceparent } from '../context/dtm-context.js';

// The types of @opentelemetry/api appear only inside this file: the declarations the package ships
// must not name a package an app may not have installed.
type OtelApi = typeof import('@opentelemetry/api');
type ApiContext = import('@opentelemetry/api').Context;
/** A span, as the module holds it (what it uses of `@opentelemetry/api`'s `Span`). */
export interface OtelSpan {
  spanContext(): { traceId: string; spanId: string; traceFlags: number; traceState?: { serialize(): string } };
  setAttributes(attributes: Attributes): unknown;
  recordException(exception: Error): void;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
}
/** A context (`@opentelemetry/api`'s `Context`), opaque to the module. */
export type OtelContext = object;
/** Span and metric attributes, as the module sets them. */
type Attributes = Record<string, string>;

/** The instruments of the module's metrics. */
interface Instruments {
  transactions: import('@opentelemetry/api').Counter;
  transactionDuration: import('@opentelemetry/api').Histogram;
  branchCalls: import('@opentelemetry/api').Counter;
  branchDuration: import('@opentelemetry/api').Histogram;
  barrierDecisions: import('@opentelemetry/api').Counter;
  dtmCalls: import('@opentelemetry/api').Counter;
  dtmCallDuration: import('@opentelemetry/api').Histogram;
}

/** The names of the module's metrics (`docs/observability.md`). */
export const METRIC_NAMES = {
  transactions: 'dtm.transactions',
  transactionDuration: 'dtm.transaction.duration',
  branchCalls: 'dtm.branch.calls',
  branchDuration: 'dtm.branch.duration',
  barrierDecisions: 'dtm.barrier.decisions',
  dtmCalls: 'dtm.client.calls',
  dtmCallDuration: 'dtm.client.duration',
} as const;

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
    if (meter) {
      const seconds = { unit: 's' };
      this.instruments = {
        transactions: meter.createCounter(METRIC_NAMES.transactions, { description: 'Global transactions this app started, by type and outcome' }),
        transactionDuration: meter.createHistogram(METRIC_NAMES.transactionDuration, { ...seconds, description: 'Time from the first call to DTM to the outcome' }),
        branchCalls: meter.createCounter(METRIC_NAMES.branchCalls, { description: 'Branch calls served by this app, by kind, op and outcome' }),
        branchDuration: meter.createHistogram(METRIC_NAMES.branchDuration, { ...seconds, description: 'Time a branch handler took, barrier included' }),
        barrierDecisions: meter.createCounter(METRIC_NAMES.barrierDecisions, { description: 'Decisions of the sub-transaction barrier' }),
        dtmCalls: meter.createCounter(METRIC_NAMES.dtmCalls, { description: 'Calls this app made to DTM, by operation and outcome' }),
        dtmCallDuration: meter.createHistogram(METRIC_NAMES.dtmCallDuration, { ...seconds, description: 'Time a call to DTM took' }),
      };
    }
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

  /** The W3C trace context of `span` (what goes into DTM's `branch_headers`), undefined when it is not valid. */
  traceHeaders(span: OtelSpan): Record<string, string> | undefined {
    const sc = span.spanContext();
    if (!this.api.isSpanContextValid(sc as import('@opentelemetry/api').SpanContext)) return undefined;
    const headers: Record<string, string> = { traceparent: `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}` };
    const state = sc.traceState?.serialize();
    if (state) headers.tracestate = state;
    return headers;
  }

  /** Ends `span` with `attributes` added, in error status with `error` when given. */
  endSpan(span: OtelSpan, attributes: Attributes, error: unknown, failed: boolean): void {
    span.setAttributes(attributes);
    if (failed) {
      if (error instanceof Error) span.recordException(error);
      span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : error === undefined ? undefined : String(error) });
    }
    span.end();
  }

  /** Counts a transaction and records its duration. */
  transaction(attributes: Attributes, seconds: number): void {
    this.instruments?.transactions.add(1, attributes);
    this.instruments?.transactionDuration.record(seconds, attributes);
  }

  /** Counts a branch call (and its barrier decision) and records its duration. */
  branchCall(attributes: Attributes, barrier: Attributes | undefined, seconds: number): void {
    const i = this.instruments;
    if (!i) return;
    i.branchCalls.add(1, attributes);
    i.branchDuration.record(seconds, attributes);
    if (barrier) i.barrierDecisions.add(1, barrier);
  }

  /** Counts a call to DTM and records its duration. */
  dtmCall(attributes: Attributes, seconds: number): void {
    this.instruments?.dtmCalls.add(1, attributes);
    this.instruments?.dtmCallDuration.record(seconds, attributes);
  }
}
