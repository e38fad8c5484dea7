// Where the request context (the pass-through headers of the call being served) rides when an
// OpenTelemetry SDK is registered: in the SDK's context, so that the process runs one
// AsyncLocalStorage, not two (on Node 20 each one slows down every promise). The choice is made
// once per process, at the first request with a context: this file is one process's story
// (request-context-own.spec.ts is the one with OpenTelemetry turned off).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentPassThroughHeaders, dtmContext } from '../../lib/context/dtm-context.js';
import { DtmInstrumentation } from '../../lib/observability/dtm-instrumentation.js';
import { OtelBridge } from '../../lib/observability/otel.js';

/** The key the module's request context has in OpenTelemetry's context (`createContextKey` is `Symbol.for`). */
const KEY = Symbol.for('nestjs-dtm request context');
const HEADERS = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'x-tenant': 'acme' };

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider());
  new DtmInstrumentation(); // what DtmModule makes: it offers OpenTelemetry's context as the carrier
});
afterAll(() => {
  trace.disable();
  context.disable();
});

describe('the request context with an OpenTelemetry SDK registered', () => {
  it("rides in OpenTelemetry's context, across awaits and timers, and survives a span made active inside it", async () => {
    const seen = await dtmContext.run({ headers: HEADERS }, async () => {
      const inOtel = context.active().getValue(KEY);
      await sleep(5);
      const afterAwait = currentPassThroughHeaders();
      const span = trace.getTracer('app').startSpan('inner');
      const underSpan = context.with(trace.setSpan(context.active(), span), () => currentPassThroughHeaders());
      span.end();
      return { inOtel, afterAwait, underSpan };
    });
    expect(seen).toEqual({ inOtel: { headers: HEADERS }, afterAwait: HEADERS, underSpan: HEADERS });
  });

  it('is gone outside the request, and each of two requests at once sees its own while code outside them sees none', async () => {
    expect(currentPassThroughHeaders()).toEqual({});
    const a = dtmContext.run({ headers: { 'x-tenant': 'a' } }, () => sleep(10).then(() => currentPassThroughHeaders()));
    const b = dtmContext.run({ headers: { 'x-tenant': 'b' } }, () => sleep(5).then(() => currentPassThroughHeaders()));
    expect(await Promise.all([a, b, sleep(1).then(() => currentPassThroughHeaders())])).toEqual([{ 'x-tenant': 'a' }, { 'x-tenant': 'b' }, {}]);
  });

  it("is not offered by a context manager that carries nothing (the API's no-op one), and is again once an SDK's is registered", () => {
    context.disable(); // the carrier above is already chosen; this asks the bridge again
    expect(context.with(ROOT_CONTEXT.setValue(KEY, 1), () => context.active().getValue(KEY))).toBeUndefined();
    expect(OtelBridge.probe()!.contextCarrier()).toBeUndefined();
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    expect(OtelBridge.probe()!.contextCarrier()).toBeDefined();
  });

  it("still reaches the request's code when the SDK's context manager is disabled after the choice (the module's own storage takes over)", async () => {
    context.disable();
    const seen = await dtmContext.run({ headers: { 'x-tenant': 'acme' } }, async () => {
      await sleep(5);
      return { headers: currentPassThroughHeaders(), inOtel: context.active().getValue(KEY) };
    });
    expect(seen).toEqual({ headers: { 'x-tenant': 'acme' }, inOtel: undefined });
    expect(currentPassThroughHeaders()).toEqual({});
  });
});
