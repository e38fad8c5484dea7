// The module's metrics with the real OpenTelemetry SDK: transactions and branch calls counted in
// cells the SDK reads when it collects, shared by every module (bridge) of the process on the same
// meter provider, and histograms without attributes.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { metrics } from '@opentelemetry/api';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import { METRIC_NAMES, OtelBridge } from '../../lib/observability/otel.js';

const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 });
beforeAll(() => {
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
});
afterAll(async () => {
  await reader.shutdown();
  metrics.disable();
});

/** The metric `name` of the last collection. */
async function collected(name: string): Promise<MetricData | undefined> {
  const { resourceMetrics } = await reader.collect();
  return resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
}

/** A counter's points as `attribute values joined: value`. */
const points = (metric: MetricData | undefined) => Object.fromEntries((metric?.dataPoints ?? []).map((p) => [Object.values(p.attributes).join(' '), p.value as number]));

describe('the module metrics', () => {
  it('two modules of one process count branch calls in the same cells; the duration histogram has every call and no attributes', async () => {
    const [a, b] = [OtelBridge.probe()!, OtelBridge.probe()!];
    expect(a).not.toBe(b);
    a.branchCall('saga-action', 'action', 'success', 'executed', 0.25);
    b.branchCall('saga-action', 'action', 'success', 'executed', 0.5);
    b.branchCall('saga-compensate', 'compensate', 'success', 'null-compensation', 0.125);
    a.branchCall('saga-action', 'action', 'failure', undefined, 1);

    expect(points(await collected(METRIC_NAMES.branchCalls))).toEqual({
      'saga-action action success executed': 2,
      'saga-compensate compensate success null-compensation': 1,
      'saga-action action failure': 1,
    });
    expect(points(await collected(METRIC_NAMES.branchTime))).toEqual({
      'saga-action action success executed': 0.75,
      'saga-compensate compensate success null-compensation': 0.125,
      'saga-action action failure': 1,
    });
    const duration = await collected(METRIC_NAMES.branchDuration);
    expect(duration?.dataPoints.map((p) => [p.attributes, (p.value as { count: number; sum: number }).count, (p.value as { sum: number }).sum])).toEqual([[{}, 4, 1.875]]);
  });

  it('a call with a barrier decision and one without, otherwise alike, are counted apart, each with its own attributes', async () => {
    const bridge = OtelBridge.probe()!;
    bridge.branchCall('tcc-try', 'try', 'success', undefined, 1);
    bridge.branchCall('tcc-try', 'try', 'success', 'executed', 2);
    bridge.branchCall('tcc-try', 'try', 'success', undefined, 4);

    const tried = (await collected(METRIC_NAMES.branchTime))?.dataPoints.filter((p) => p.attributes['dtm.op'] === 'try');
    expect(tried?.map((p) => [p.attributes, p.value])).toEqual([
      [{ 'dtm.branch.kind': 'tcc-try', 'dtm.op': 'try', 'dtm.outcome': 'success' }, 5],
      [{ 'dtm.branch.kind': 'tcc-try', 'dtm.op': 'try', 'dtm.outcome': 'success', 'dtm.barrier.decision': 'executed' }, 2],
    ]);
  });

  it('transactions: counted by type, protocol and outcome, across modules; the histogram without attributes', async () => {
    const [a, b] = [OtelBridge.probe()!, OtelBridge.probe()!];
    a.transaction('saga', 'http', 'succeeded', 2);
    b.transaction('saga', 'http', 'succeeded', 1);
    b.transaction('tcc', 'grpc', 'failed', 0.5);

    expect(points(await collected(METRIC_NAMES.transactions))).toEqual({ 'saga http succeeded': 2, 'tcc grpc failed': 1 });
    expect(points(await collected(METRIC_NAMES.transactionTime))).toEqual({ 'saga http succeeded': 3, 'tcc grpc failed': 0.5 });
    const duration = await collected(METRIC_NAMES.transactionDuration);
    expect(duration?.dataPoints.map((p) => [p.attributes, (p.value as { count: number }).count])).toEqual([[{}, 3]]);
  });
});
