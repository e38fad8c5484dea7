// `node --import .build/test/e2e/observability-instrumented.preload.js`: registers, before the app
// loads, the OpenTelemetry SDK as an app sets it up with NodeSDK's auto-instrumentations: W3C trace
// context, the AsyncLocalStorage context manager, and OpenTelemetry's own HTTP and gRPC
// instrumentations (a server span per inbound call, a client span per outbound one) and the Express
// one (spans of the route's handlers under an HTTP call's server span; through OpenTelemetry's ESM
// loader hook, since Nest 12 imports express), every span kept in memory for
// observability-instrumented.app.ts to report.
import { register } from 'node:module';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

/** Every span that ended in this process. */
export const exporter = new InMemorySpanExporter();

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
registerInstrumentations({ instrumentations: [new HttpInstrumentation(), new GrpcInstrumentation(), new ExpressInstrumentation()] });
