// Which span a branch call's attributes go on, with the real OpenTelemetry SDK: the call's server
// span when an HTTP / gRPC instrumentation made one (active, recording, in the trace of the call's
// traceparent but not the traceparent's own span), a span of the module's own otherwise.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { context, ROOT_CONTEXT, SpanKind, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { OtelBridge, type BranchSpanSlot, type OtelSpan } from '../../lib/observability/otel.js';

const exporter = new InMemorySpanExporter();
let otel: OtelBridge;
beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  otel = OtelBridge.probe()!;
});
afterAll(() => {
  trace.disable();
  context.disable();
});
beforeEach(() => exporter.reset());

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE}-${CALLER}-01`;
const tracer = () => trace.getTracer('an-instrumentation');
/** branchSpan for a saga action of branch transOut carrying `traceparent`, with `active` as the active span (none: no active span): what it set on the call. */
function branchSpanUnder(active: Span | undefined, traceparent = TRACEPARENT): { span: OtelSpan; own: boolean; context?: object } {
  const call: BranchSpanSlot = { transType: 'saga', op: 'action', branch: 'transOut' };
  context.with(active ? trace.setSpan(ROOT_CONTEXT, active) : ROOT_CONTEXT, () => otel.branchSpan(call, traceparent, () => 'vendor=1'));
  return { span: call.span!, own: call.ownSpan!, context: call.context };
}
/** The ended span `span` as the exporter has it. */
const ended = (span: OtelSpan): ReadableSpan => exporter.getFinishedSpans().find((s) => s.spanContext().spanId === span.spanContext().spanId)!;

describe('the span of a branch call', () => {
  it("an instrumentation's server span of the call: it gets the attributes when the call ends, no second span is made, and the module does not end it", () => {
    const remote = trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE, spanId: CALLER, traceFlags: 1, isRemote: true });
    const server = tracer().startSpan('POST /bank/trans-out', { kind: SpanKind.SERVER }, remote);
    const made = branchSpanUnder(server);
    expect([made.own, made.span === server, made.context]).toEqual([false, true, undefined]);
    otel.endSpan(made.span, { 'dtm.op': 'action', 'dtm.outcome': 'failure' }, new Error('frozen'), true, made.own);
    expect(exporter.getFinishedSpans()).toEqual([]);
    server.end();
    expect(exporter.getFinishedSpans().map((s) => [s.name, s.attributes, s.status.code, s.events.map((e) => e.name)])).toEqual([['POST /bank/trans-out', { 'dtm.op': 'action', 'dtm.outcome': 'failure' }, 2, ['exception']]]);
  });

  it("the caller's own span (an app calling its own branch): a child span of it, which the module ends", () => {
    const ap = tracer().startSpan('DTM tcc');
    const { traceId, spanId } = ap.spanContext();
    const made = branchSpanUnder(ap, `00-${traceId}-${spanId}-01`);
    expect(made.own).toBe(true);
    otel.endSpan(made.span, { 'dtm.outcome': 'success' }, undefined, false, made.own);
    expect([ended(made.span).name, ended(made.span).spanContext().traceId, ended(made.span).parentSpanContext?.spanId]).toEqual(['DTM saga action transOut', traceId, spanId]);
  });

  it('an active span of another trace: a child span of it', () => {
    const job = tracer().startSpan('nightly job');
    const made = branchSpanUnder(job);
    expect(made.own).toBe(true);
    made.span.end();
    expect([ended(made.span).spanContext().traceId, ended(made.span).parentSpanContext?.spanId]).toEqual([job.spanContext().traceId, job.spanContext().spanId]);
  });

  it("no active span: a span of the module's own, a child of the call's traceparent, with its tracestate", () => {
    const made = branchSpanUnder(undefined);
    expect(made.own).toBe(true);
    made.span.end();
    const span = ended(made.span);
    expect([span.name, span.spanContext().traceId, span.parentSpanContext?.spanId, span.parentSpanContext?.isRemote, span.spanContext().traceState?.serialize()]).toEqual([
      'DTM saga action transOut',
      TRACE,
      CALLER,
      true,
      'vendor=1',
    ]);
  });

  it('an active span that does not record (sampled out), or a malformed traceparent: a span of its own', () => {
    const sampledOut = trace.wrapSpanContext({ traceId: TRACE, spanId: 'aaaaaaaaaaaaaaaa', traceFlags: 0 });
    expect(branchSpanUnder(sampledOut).own).toBe(true);
    const remote = trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE, spanId: CALLER, traceFlags: 1, isRemote: true });
    const server = tracer().startSpan('POST', { kind: SpanKind.SERVER }, remote);
    expect(branchSpanUnder(server, `00-${TRACE}`).own).toBe(true);
    expect(branchSpanUnder(server, 'garbage').own).toBe(true);
  });
});
