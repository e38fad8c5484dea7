// An OpenTelemetry SDK as an app registers it, exporting to nowhere, for the benchmarks' `--otel`
// variants: every span is really started, recorded, batched and handed to an exporter (which drops
// it), the context manager is Node's AsyncLocalStorage one (as NodeSDK's), and the metrics are
// really aggregated and collected every second by a reader whose exporter drops them.
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';

/** Success, as `@opentelemetry/core`'s `ExportResultCode.SUCCESS` (not a dependency of ours). */
const SUCCESS = 0;

/** Drops every span it is given. */
const dropSpans: SpanExporter = {
  export: (_spans, done) => done({ code: SUCCESS }),
  shutdown: async () => undefined,
};

/** Drops every batch of metrics it is given. */
const dropMetrics: PushMetricExporter = {
  export: (_metrics, done) => done({ code: SUCCESS }),
  forceFlush: async () => undefined,
  shutdown: async () => undefined,
};

/** Registers the SDK globally (once per process), before the module's first transaction or branch call. */
export function registerDroppingOtelSdk(): void {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(dropSpans)] }));
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter: dropMetrics, exportIntervalMillis: 1000 })] }));
}
