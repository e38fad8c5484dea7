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
  transactions: import('@opentelemetry/api').Histogram;
  branchCalls: import('@opentelemetry/api').Histogram;
  dtmCalls: import('@opentelemetry/api').Histogram;
}

/**
 * The names of the module's metrics (`docs/observability.md`): duration histograms, whose counts
 * are the numbers of transactions, branch calls (and barrier decisions, an attribute) and DTM calls,
 * as OpenTelemetry's semantic conventions count requests (one record per call: each record hashes
 * its attributes).
 */
export const METRIC_NAMES = {
  transactions: 'dtm.transaction.duration',
  branchCalls: 'dtm.branch.duration',
  dtmCalls: 'dtm.client.duration',
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
        transactions: meter.createHistogram(METRIC_NAMES.transactions, { ...seconds, description: 'Global transactions this app started, by type and outcome: time from the first call to DTM to the outcome' }),
        branchCalls: meter.createHistogram(METRIC_NAMES.branchCalls, { ...seconds, description: 'Branch calls served by this app, by kind, op, outcome and barrier decision: time the handler took, barrier included' }),
        dtmCalls: meter.createHistogram(METRIC_NAMES.dtmCalls, { ...seconds, description: 'Calls this app made to DTM, by operation and outcome: time each took' }),
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

  /** Records a transaction's duration (which counts it). */
  transaction(attributes: Attributes, seconds: number): void {
    this.instruments?.transactions.record(seconds, attributes);
  }

  /** Records a branch call's duration (which counts it, with its barrier decision among the attributes). */
  branchCall(attributes: Attributes, seconds: number): void {
    this.instruments?.branchCalls.record(seconds, attributes);
  }

  /** Records a call to DTM's duration (which counts it). */
  dtmCall(attributes: Attributes, seconds: number): void {
    this.instruments?.dtmCalls.record(seconds, attributes);
  }
}
