// The request context with OpenTelemetry turned off for the module (`openTelemetry: false`): even
// with an SDK registered, it rides in the module's own AsyncLocalStorage, and OpenTelemetry's
// context never holds it (request-context.spec.ts is the process with OpenTelemetry on).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentPassThroughHeaders, dtmContext } from '../../lib/context/dtm-context.js';
import { DtmInstrumentation } from '../../lib/observability/dtm-instrumentation.js';

const KEY = Symbol.for('nestjs-dtm request context');

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider());
  new DtmInstrumentation({ openTelemetry: false });
});
afterAll(() => {
  trace.disable();
  context.disable();
});

describe('the request context with openTelemetry: false', () => {
  it("rides in the module's own storage: carried across awaits, not in OpenTelemetry's context", async () => {
    const seen = await dtmContext.run({ headers: { 'x-tenant': 'acme' } }, async () => {
      await sleep(5);
      return { headers: currentPassThroughHeaders(), inOtel: context.active().getValue(KEY) };
    });
    expect(seen).toEqual({ headers: { 'x-tenant': 'acme' }, inOtel: undefined });
    expect(currentPassThroughHeaders()).toEqual({});
  });
});
