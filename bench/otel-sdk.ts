// An OpenTelemetry SDK as an app registers it, exporting to nowhere, for the benchmarks' OTel
// variants: every span is really started, recorded, batched and handed to an exporter (which drops
// it), the context manager is Node's AsyncLocalStorage one and the propagator W3C's trace context
// (as NodeSDK's), and the metrics are
// really aggregated and collected every second by a reader whose exporter drops them.
//   - `registerDroppingOtelSdk()`: the SDK alone (nothing else makes spans: the module's are the
//     only ones, and nothing else ever makes a context active);
//   - `registerDroppingOtelSdk({ instrumented: true })`: the SDK with OpenTelemetry's HTTP and gRPC
//     instrumentations, as NodeSDK's auto-instrumentations give an app: a server span (and metric)
//     per inbound call, a client span per outbound one. It must run before `http` / `@grpc/grpc-js`
//     are loaded: apps get it with `node --import` ({@link OTEL_PRELOAD}), as apps do.
import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Drops every span it is given. */
const dropSpans: SpanExporter = {
  export: (_spans, done) => done({ code: ExportResultCode.SUCCESS }),
  shutdown: async () => undefined,
};

/** Drops every batch of metrics it is given. */
const dropMetrics: PushMetricExporter = {
  export: (_metrics, done) => done({ code: ExportResultCode.SUCCESS }),
  forceFlush: async () => undefined,
  shutdown: async () => undefined,
};

/** The `--import` argument that registers the SDK with its HTTP and gRPC instrumentations before the app loads (bench/otel-preload.ts). */
export const OTEL_PRELOAD = ['--import', pathToFileURL(join(import.meta.dirname, 'otel-preload.js')).href];

/** Registers the SDK globally (once per process), before the module's first transaction or branch call; `instrumented`: with the HTTP and gRPC instrumentations. */
export function registerDroppingOtelSdk({ instrumented = false } = {}): void {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(dropSpans)] }));
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter: dropMetrics, exportIntervalMillis: 1000 })] }));
  if (instrumented) registerInstrumentations({ instrumentations: [new HttpInstrumentation(), new GrpcInstrumentation()] });
}
