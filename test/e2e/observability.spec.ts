// The instrumentation seam against the real DTM server, with the real OpenTelemetry SDK
// (in-memory span exporter, a metric reader collected on demand): one trace from the AP's
// transaction span through DTM to every branch call (compensations DTM makes later included),
// over HTTP and gRPC, for saga, TCC, msg and XA, and for a workflow (an execution DTM resumes
// included); the counters against what DTM recorded; hooks in order, hooks that throw, and the
// aborts whose errors were once swallowed.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { context, diag, DiagLogLevel, metrics, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan, type Span, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { defineBranches, DtmFailureError, DtmGidInUseError, DtmUsageError, DtmOngoingError, DtmOutcomeUnknownError, DtmRemoteBranchError, sagaBranch, DtmWorkflowPendingError, METRIC_NAMES, readFailureReason, TransactionHelper, type DtmEventName, type DtmEvents, type DtmProtocol } from 'nestjs-dtm';
import { fileDatabases, type FileDatabases } from '../support/databases.js';
import { PROTOCOLS } from '../support/fixtures.js';
import { callGrpc } from '../support/grpc.js';
import { cronUntilStatus as cronUntilStatusOn, harness, queryTrans as queryTransOn, type TransStatus } from '../support/harness.js';
import { startDtm, stopDtm, type RunningDtm } from '../support/services/dtm.js';
import { freePort, runDirFrom, waitUntil } from '../support/services/process.js';
import { startObservedApp, type Move, type ObservedApp } from './observability.app.js';

/** A metric reader the test collects when it wants. */
class OnDemandReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** The module's spans started and not ended yet (a span processor's onStart / onEnd): each must end once, on every path. */
class OpenSpans implements SpanProcessor {
  readonly open = new Set<ReadableSpan>();
  onStart(span: Span): void {
    if (span.instrumentationScope.name === 'nestjs-dtm') this.open.add(span);
  }
  onEnd(span: ReadableSpan): void {
    this.open.delete(span);
  }
  async forceFlush(): Promise<void> {}
  async shutdown(): Promise<void> {}
}

const exporter = new InMemorySpanExporter();
const openSpans = new OpenSpans();
/** What the SDK said of a span used once it ended (a second end(), an attribute set after it): none must be. */
const endedSpanUses: string[] = [];
const reader = new OnDemandReader();
/** Every event the module emitted, in order. */
const events: { name: DtmEventName; event: DtmEvents[DtmEventName] }[] = [];
const record =
  <E extends DtmEventName>(name: E) =>
  (event: DtmEvents[E]) =>
    events.push({ name, event });

/** The hooks of the apps: every event into `events`. */
const hooks = {
  'transaction.start': record('transaction.start'),
  'transaction.end': record('transaction.end'),
  'dtm.call': record('dtm.call'),
  'branch.call': record('branch.call'),
  'abort.failed': record('abort.failed'),
};

/**
 * This file's own DTM server: its tests count every branch call DTM makes (events, spans, metrics), and another test
 * file's /resetCronTime on the shared one can have DTM's cron call a branch again meanwhile (DTM calls at least once).
 */
let dtm: RunningDtm;
/** The configuration that points an app at {@link dtm}. */
const onOwnDtm = () => ({ serverUrl: dtm.info.serverUrl, grpcServer: dtm.info.grpcAddress });
const queryTrans = (gid: string) => queryTransOn(gid, dtm.info.serverUrl);
const cronUntilStatus = (gid: string, status: TransStatus) => cronUntilStatusOn(gid, status, { serverUrl: dtm.info.serverUrl });

let t: ObservedApp;
let dbs: FileDatabases;
beforeAll(async () => {
  dtm = await startDtm(runDirFrom(harness().runDir), { name: 'dtm-observability' });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const used = (message: string) => {
    if (/ended Span|call end\(\) on a span once/.test(message)) endedSpanUses.push(message);
  };
  diag.setLogger({ error: used, warn: used, info: () => undefined, debug: () => undefined, verbose: () => undefined }, DiagLogLevel.WARN);
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter), openSpans] }));
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  dbs = await fileDatabases();
  t = await startObservedApp(dbs, { hooks }, onOwnDtm());
});
afterAll(async () => {
  await t?.close();
  if (dtm) await stopDtm(dtm);
});
beforeEach(async () => {
  await t.sql('UPDATE account SET balance = 100');
  t.logger.lines.length = 0;
});
// every span the module started in a test ended by its end (a branch call DTM makes meanwhile, of this test or an
// earlier one, may still be under way: it ends within its handler's time)
afterEach(async () => {
  await waitUntil('the module\'s spans to end', async () => openSpans.open.size === 0, { timeoutMs: 10_000, intervalMs: 50 }).catch(() => undefined);
  const left = [...openSpans.open].map((s) => `${s.name} ${String(s.attributes['dtm.gid'] ?? '')}`);
  openSpans.open.clear(); // reported once, by the test that left it
  expect(left).toEqual([]);
  expect(endedSpanUses.splice(0)).toEqual([]);
  // no metric attribute carries a gid, a branch id or a caller's text: every value is one of a bounded set
  const { resourceMetrics } = await reader.collect();
  const unbounded: string[] = [];
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      for (const point of metric.dataPoints) {
        for (const [key, value] of Object.entries(point.attributes)) if (!BOUNDED_ATTRIBUTES[key]?.includes(String(value))) unbounded.push(`${metric.descriptor.name} ${key}=${String(value)}`);
      }
    }
  }
  expect(unbounded).toEqual([]);
});

/** The values each metric attribute may take (docs/observability.md, Metrics). */
const BOUNDED_ATTRIBUTES: Record<string, readonly string[]> = {
  'dtm.trans_type': ['saga', 'msg', 'tcc', 'xa', 'workflow'],
  'dtm.protocol': ['http', 'grpc'],
  'dtm.outcome': ['submitted', 'succeed', 'failed', 'aborted', 'prepared', 'error', 'success', 'failure', 'ongoing', 'refused'],
  'dtm.branch.kind': ['saga-action', 'saga-compensate', 'tcc-try', 'tcc-confirm', 'tcc-cancel', 'xa', 'msg', 'msg-query-prepared'],
  'dtm.op': ['action', 'compensate', 'try', 'confirm', 'cancel', 'msg', 'rollback', 'commit', ''],
  'dtm.barrier.decision': ['executed', 'duplicate', 'null-compensation', 'hanging-prevented'],
};

/** The `branch.call` events recorded from event `from` on, of `gid` only when given. */
function branchCalls(from: number, gid?: string): DtmEvents['branch.call'][] {
  const calls = events.slice(from).filter((e) => e.name === 'branch.call').map((e) => e.event as DtmEvents['branch.call']);
  return gid === undefined ? calls : calls.filter((e) => e.gid === gid);
}

/** The spans of `gid`: the AP's transaction span first, then its branch calls in the order they ended. */
function spansOf(gid: string): { ap: ReadableSpan; branches: ReadableSpan[] } {
  const all = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid);
  const ap = all.filter((s) => s.attributes['dtm.op'] === undefined);
  expect(ap).toHaveLength(1);
  return { ap: ap[0], branches: all.filter((s) => s !== ap[0]) };
}

/** A branch span as `branch op name barrier outcome`. */
const line = (s: ReadableSpan) => `${s.attributes['dtm.branch_id']} ${s.attributes['dtm.op']} ${s.attributes['dtm.branch.name']} ${s.attributes['dtm.barrier.decision'] ?? '-'} ${s.attributes['dtm.outcome']}`;

/** Asserts that the AP's span and every branch span of `gid` are one trace, the branch spans children of the AP's. */
function expectOneTrace(gid: string): { ap: ReadableSpan; branches: ReadableSpan[] } {
  const spans = spansOf(gid);
  const { traceId, spanId } = spans.ap.spanContext();
  expect(spans.branches.length).toBeGreaterThan(0);
  for (const s of spans.branches) expect([s.name, s.spanContext().traceId, s.parentSpanContext?.spanId]).toEqual([s.name, traceId, spanId]);
  return spans;
}

/** The counts of the metric `name` (a histogram's count, a counter's value) by the values of `keys` (points without one of them left out). */
async function counter(name: string, keys: string[]): Promise<Map<string, number>> {
  const { resourceMetrics } = await reader.collect();
  const points = new Map<string, number>();
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== name) continue;
      for (const point of metric.dataPoints) {
        if (keys.some((k) => point.attributes[k] === undefined)) continue;
        const key = keys.map((k) => String(point.attributes[k])).join(' ');
        // a histogram's count, or a counter's value
        points.set(key, (points.get(key) ?? 0) + (typeof point.value === 'number' ? point.value : (point.value as { count: number }).count));
      }
    }
  }
  return points;
}

/** What `counter` grew by between `before` and `after` (only the keys that grew). */
function growth(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const grown: Record<string, number> = {};
  for (const [key, value] of after) if (value !== (before.get(key) ?? 0)) grown[key] = value - (before.get(key) ?? 0);
  return grown;
}

/**
 * Runs `call`, a submit of `gid` that throws, and checks how it was reported: DTM holds `dtmStatus`,
 * one `transaction.end` event with `outcome` and the error thrown, the AP span's outcome and status
 * code, and the transactions counter grown by one `<transType> <outcome>`. Resolves with the error.
 */
async function expectEndReported(gid: string, call: () => Promise<unknown>, transType: string, outcome: string, dtmStatus: string, spanCode: SpanStatusCode): Promise<unknown> {
  const from = events.length;
  const before = await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome']);
  const err = await call().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeDefined();
  expect((await queryTrans(gid)).transaction?.status).toBe(dtmStatus);
  const end = events.slice(from).filter((e) => e.name === 'transaction.end' && (e.event as DtmEvents['transaction.end']).gid === gid).map((e) => e.event as DtmEvents['transaction.end']);
  expect(end.map((e) => [e.outcome, e.error])).toEqual([[outcome, err]]);
  const { ap } = spansOf(gid);
  expect([ap.attributes['dtm.outcome'], ap.status.code]).toEqual([outcome, spanCode]);
  expect(growth(before, await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome']))).toEqual({ [`${transType} ${outcome}`]: 1 });
  return err;
}

/** What DTM recorded of `gid`'s branches that ran (`branch op status`), sorted. */
async function dtmBranches(gid: string): Promise<string[]> {
  return (await queryTrans(gid)).branches
    .filter((b) => b.status !== 'prepared')
    .map((b) => `${b.branch_id} ${b.op} ${b.status}`)
    .sort();
}

/** The branch spans of `gid` as DTM records branches (`branch op status`), sorted; `ops`: only these ops. */
const asDtm = (branches: ReadableSpan[], ops?: string[]) =>
  branches
    .filter((s) => !ops || ops.includes(String(s.attributes['dtm.op'])))
    .map((s) => `${s.attributes['dtm.branch_id']} ${s.attributes['dtm.op']} ${s.attributes['dtm.outcome'] === 'success' ? 'succeed' : 'failed'}`)
    .sort();

const BRANCH_KEYS = ['dtm.branch.kind', 'dtm.op', 'dtm.outcome'];

describe.each(PROTOCOLS)('OpenTelemetry over %s', (protocol) => {
  it('a saga that rolls back: one trace, the AP span and the branch spans of its actions and compensations, counters as DTM recorded', async () => {
    const gid = await t.client.generateGid();
    const [callsBefore, txBefore, barrierBefore] = [await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS), await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol']), await counter(METRIC_NAMES.branchCalls, ['dtm.op', 'dtm.barrier.decision'])];
    const [timeBefore, durationBefore] = [await counter(METRIC_NAMES.branchTime, BRANCH_KEYS), await counter(METRIC_NAMES.branchDuration, [])];
    const [txTimeBefore, txDurationBefore] = [await counter(METRIC_NAMES.transactionTime, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol']), await counter(METRIC_NAMES.transactionDuration, [])];
    const final = await t.client.newSaga(gid, { protocol }).add('transOut', { account: 1, amount: 30 }).add('transIn', { account: 2, amount: 30, fail: 'yes' }).submitAndWait();

    expect(final.status).toBe('failed');
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
    const { ap, branches } = expectOneTrace(gid);
    expect([ap.name, ap.attributes, ap.status.code]).toEqual(['DTM saga', { 'dtm.gid': gid, 'dtm.trans_type': 'saga', 'dtm.protocol': protocol, 'dtm.outcome': 'failed' }, SpanStatusCode.ERROR]);
    expect(branches.map(line)).toEqual([
      '01 action transOut executed success',
      '02 action transIn - failure',
      '02 compensate transIn null-compensation success',
      '01 compensate transOut executed success',
    ]);
    expect(branches[1].status.code).toBe(SpanStatusCode.ERROR);
    expect(branches[0].attributes).toEqual({ 'dtm.gid': gid, 'dtm.trans_type': 'saga', 'dtm.branch_id': '01', 'dtm.op': 'action', 'dtm.branch.name': 'transOut', 'dtm.protocol': protocol, 'dtm.outcome': 'success', 'dtm.barrier.decision': 'executed' });
    expect(asDtm(branches)).toEqual(await dtmBranches(gid));

    expect(growth(callsBefore, await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS))).toEqual({
      'saga-action action success': 1,
      'saga-action action failure': 1,
      'saga-compensate compensate success': 2,
    });
    expect(growth(txBefore, await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol']))).toEqual({ [`saga failed ${protocol}`]: 1 });
    const txTime = growth(txTimeBefore, await counter(METRIC_NAMES.transactionTime, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol']));
    expect(Object.keys(txTime)).toEqual([`saga failed ${protocol}`]);
    expect(txTime[`saga failed ${protocol}`] > 0 && txTime[`saga failed ${protocol}`] < 30).toBe(true);
    expect(growth(txDurationBefore, await counter(METRIC_NAMES.transactionDuration, []))).toEqual({ '': 1 });
    expect(growth(barrierBefore, await counter(METRIC_NAMES.branchCalls, ['dtm.op', 'dtm.barrier.decision']))).toEqual({
      'action executed': 1,
      'compensate null-compensation': 1,
      'compensate executed': 1,
    });
    // the handlers' time by the same attributes, and the duration histogram of all four calls
    const time = growth(timeBefore, await counter(METRIC_NAMES.branchTime, BRANCH_KEYS));
    expect(Object.keys(time).sort()).toEqual(['saga-action action failure', 'saga-action action success', 'saga-compensate compensate success']);
    for (const seconds of Object.values(time)) expect(seconds > 0 && seconds < 10).toBe(true);
    expect(growth(durationBefore, await counter(METRIC_NAMES.branchDuration, []))).toEqual({ '': 4 });
  });

  it('a TCC transaction that rolls back: the Try calls the AP makes and the cancels DTM makes are one trace', async () => {
    const gid = await t.client.generateGid();
    const callsBefore = await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS);
    const outcome = await t.client.tccGlobalTransactionAndWait(
      gid,
      async (tcc) => {
        await tcc.callBranch({ account: 1, amount: 30 }, 'tccOut');
        await tcc.callBranch({ account: 2, amount: 500 }, 'tccOut'); // insufficient: FAILURE
      },
      { protocol },
    );

    expect(outcome.status).toBe('failed');
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
    const { ap, branches } = expectOneTrace(gid);
    expect([ap.name, ap.attributes['dtm.outcome'], ap.status.code]).toEqual(['DTM tcc', 'failed', SpanStatusCode.ERROR]);
    expect(branches.map(line).sort()).toEqual(['01 cancel tccOut executed success', '01 try tccOut executed success', '02 cancel tccOut null-compensation success', '02 try tccOut - failure']);
    // DTM records the branches it calls (cancel, confirm); the Try calls are the AP's own
    expect(asDtm(branches, ['cancel', 'confirm'])).toEqual(await dtmBranches(gid));
    expect(growth(callsBefore, await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS))).toEqual({
      'tcc-try try success': 1,
      'tcc-try try failure': 1,
      'tcc-cancel cancel success': 2,
    });
  });

  it('a two-phase message: the AP span (prepare, local transaction, submit) and the branch DTM delivers are one trace', async () => {
    const gid = await t.client.generateGid();
    const [callsBefore, txBefore] = [await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS), await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol'])];
    let activeInBody: string | undefined;
    await t.client
      .newMsg(gid, { protocol })
      .add('deliver', { account: 3, amount: 7 })
      .doAndSubmit('outbox', async () => {
        activeInBody = trace.getActiveSpan()?.spanContext().spanId;
      });
    expect((await t.client.waitForFinal(gid)).status).toBe('succeed');
    expect(await t.balances([3])).toEqual({ 3: 107 });
    const { ap, branches } = expectOneTrace(gid);
    expect([ap.name, ap.attributes['dtm.outcome'], ap.status.code]).toEqual(['DTM msg', 'submitted', SpanStatusCode.UNSET]);
    expect(activeInBody).toBe(ap.spanContext().spanId); // the local transaction runs under the AP's span
    expect(branches.map(line)).toEqual(['01 action deliver executed success']);
    expect(asDtm(branches)).toEqual(await dtmBranches(gid));
    expect(growth(callsBefore, await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS))).toEqual({ 'msg action success': 1 });
    expect(growth(txBefore, await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol']))).toEqual({ [`msg submitted ${protocol}`]: 1 });
  });

  it('an XA transaction that rolls back: the actions the AP calls and the rollback DTM makes are one trace', async () => {
    const gid = await t.client.generateGid();
    const [callsBefore, txBefore] = [await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS), await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol'])];
    const outcome = await t.client.xaGlobalTransactionAndWait(
      gid,
      async (xa) => {
        await xa.callBranch({ account: 1, amount: 5 }, 'xaPg');
        await xa.callBranch({ account: 2, amount: 5, fail: 'yes' }, 'xaPg');
      },
      { protocol },
    );

    expect(outcome.status).toBe('failed');
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
    const { ap, branches } = expectOneTrace(gid);
    expect([ap.name, ap.attributes['dtm.outcome']]).toEqual(['DTM xa', 'failed']);
    expect(branches.map(line).sort()).toEqual(['01 action xaPg - success', '01 rollback xaPg - success', '02 action xaPg - failure']);
    expect(asDtm(branches, ['rollback', 'commit'])).toEqual(await dtmBranches(gid));
    expect(growth(callsBefore, await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS))).toEqual({ 'xa action success': 1, 'xa action failure': 1, 'xa rollback success': 1 });
    expect(growth(txBefore, await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol']))).toEqual({ [`xa failed ${protocol}`]: 1 });
  });

  it('a message prepared and never submitted: its span ends "prepared" once its timeout_to_fail passed (when DTM\'s back-check takes it over), once, counted; the back-check DTM makes then is a child of it', async () => {
    const gid = await t.client.generateGid();
    const from = events.length;
    const txBefore = await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol']);
    const outer = trace.getTracer('test').startSpan('the app that gave up');
    const msg = t.client.newMsg(gid, { protocol, timeoutToFail: 1 }).add('deliver', { account: 3, amount: 7 });
    await context.with(trace.setSpan(context.active(), outer), () => msg.prepare('outbox'));
    outer.end();
    // a prepare again with another back-check is refused before anything is sent: the message stays as it was, left to its bound
    await expect(msg.prepare(`http://127.0.0.1:${await freePort()}/query-prepared`)).rejects.toThrow(DtmUsageError);
    const ended = () => exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined);
    expect(ended()).toEqual([]); // prepared, not ended: the app may still submit it
    await waitUntil('the message\'s span to end', async () => ended().length > 0, { timeoutMs: 5_000, intervalMs: 50 });
    const [ap] = ended();
    expect([ap.name, ap.attributes['dtm.outcome'], ap.status.code, ap.parentSpanContext?.spanId]).toEqual(['DTM msg', 'prepared', SpanStatusCode.UNSET, outer.spanContext().spanId]);
    const ends = () => events.slice(from).filter((e) => e.name === 'transaction.end' && (e.event as DtmEvents['transaction.end']).gid === gid).map((e) => (e.event as DtmEvents['transaction.end']).outcome);
    expect(ends()).toEqual(['prepared']);
    expect(growth(txBefore, await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome', 'dtm.protocol']))).toEqual({ [`msg prepared ${protocol}`]: 1 });
    // DTM asks a prepared message's back-check once its timeout_to_fail passed, at its next cron pass
    await cronUntilStatus(gid, 'failed'); // DTM asking the back-check
    expect(await t.balances([3])).toEqual({ 3: 100 });
    // the barrier answered FAILURE: the local transaction never committed
    expect(branchCalls(from, gid).map((e) => `${e.kind} ${e.branchId} ${e.op} ${e.barrier ?? '-'} ${e.outcome}`)).toContain('msg-query-prepared 00 msg - failure');
    const checks = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === 'msg');
    expect(checks.length).toBeGreaterThan(0);
    for (const check of checks) expect([check.spanContext().traceId, check.parentSpanContext?.spanId]).toEqual([outer.spanContext().traceId, ap.spanContext().spanId]);
    expect(ends()).toEqual(['prepared']); // ended once
  });

  it('a message prepared and then submitted before its timeout_to_fail: one span, ended "submitted" at the submit, one transaction.end', async () => {
    const gid = await t.client.generateGid();
    const from = events.length;
    const msg = t.client.newMsg(gid, { protocol, timeoutToFail: 1 }).add('deliver', { account: 3, amount: 7 });
    await msg.prepare('outbox');
    await msg.submit();
    await waitUntil('DTM delivering the message', async () => (await queryTrans(gid)).transaction?.status === 'succeed', { timeoutMs: 20_000, intervalMs: 100 });
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // past the timeout_to_fail the message was prepared with: nothing ends it again
    const ap = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined);
    expect(ap.map((s) => s.attributes['dtm.outcome'])).toEqual(['submitted']);
    expect(events.slice(from).filter((e) => e.name === 'transaction.end' && (e.event as DtmEvents['transaction.end']).gid === gid).map((e) => (e.event as DtmEvents['transaction.end']).outcome)).toEqual(['submitted']);
  });

  it('a compensation DTM calls again after /resetCronTime (its first call crashed, retry interval 60 s) is in the AP span\'s trace, a child of the AP\'s span', async () => {
    const gid = await t.client.generateGid();
    const from = events.length;
    await t.client.newSaga(gid, { protocol, retryInterval: 60 }).add('transOut', { account: 1, amount: 30, fail: 'undo-once' }).add('transIn', { account: 2, amount: 30, fail: 'yes' }).submit();
    const undo = () => branchCalls(from, gid).filter((e) => e.op === 'compensate' && e.branchId === '01');
    await waitUntil('the first compensation of transOut to crash', async () => undo().length > 0, { timeoutMs: 20_000, intervalMs: 100 });
    // DTM holds it aborting until its next retry, 60 s away: /resetCronTime makes it now
    expect((await queryTrans(gid)).transaction?.status).toBe('aborting');
    await cronUntilStatus(gid, 'failed'); // DTM calling the compensation again
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
    expect(undo().map((e) => e.outcome)).toEqual(['error', 'success']);
    const { ap, branches } = expectOneTrace(gid);
    expect([ap.name, ap.attributes['dtm.outcome']]).toEqual(['DTM saga', 'submitted']);
    // the crashed call has no barrier decision: its barrier row rolled back with the handler's work
    expect(branches.filter((s) => s.attributes['dtm.branch_id'] === '01' && s.attributes['dtm.op'] === 'compensate').map(line)).toEqual([
      '01 compensate transOut - error',
      '01 compensate transOut executed success',
    ]);
  });
});

describe('OpenTelemetry for a nested TCC (tccFromBranch)', () => {
  it('the sub-branch\'s Try, which the outer Try calls, is a child of the outer Try\'s span; DTM\'s confirms are children of the AP\'s span, one trace', async () => {
    const gid = await t.client.generateGid();
    const outcome = await t.client.tccGlobalTransactionAndWait(gid, (tcc) => tcc.callBranch({ account: 1, amount: 10 }, 'nestOut'));
    expect(outcome.status).toBe('succeed');
    expect(await t.balances([1])).toEqual({ 1: 90 });
    const { ap, branches } = spansOf(gid);
    const byLine = new Map(branches.map((s) => [`${s.attributes['dtm.branch_id']} ${s.attributes['dtm.op']}`, s]));
    expect([...byLine.keys()].sort()).toEqual(['01 confirm', '01 try', '0101 confirm', '0101 try']);
    const parentOf = (key: string) => [key, byLine.get(key)!.spanContext().traceId, byLine.get(key)!.parentSpanContext?.spanId];
    const { traceId, spanId } = ap.spanContext();
    expect(['01 try', '0101 try', '01 confirm', '0101 confirm'].map(parentOf)).toEqual([
      ['01 try', traceId, spanId],
      ['0101 try', traceId, byLine.get('01 try')!.spanContext().spanId],
      ['01 confirm', traceId, spanId],
      ['0101 confirm', traceId, spanId],
    ]);
  });
});

describe('OpenTelemetry for a workflow', () => {
  it('a workflow that rolls back: the AP span and the steps it calls, their rollback included, are one trace', async () => {
    const gid = await t.client.generateGid();
    await expect(t.client.executeWorkflow('observed.transfer', gid, { base: t.url, fail: 'yes' })).rejects.toBeInstanceOf(DtmFailureError);
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
    const { ap, branches } = expectOneTrace(gid);
    expect([ap.name, ap.attributes['dtm.trans_type'], ap.attributes['dtm.outcome'], ap.status.code]).toEqual(['DTM workflow', 'workflow', 'failed', SpanStatusCode.ERROR]);
    expect(branches.map(line)).toEqual(['01 action transOut executed success', '02 action transIn - failure', '01 rollback transOut executed success']);
  });

  it('a workflow under a gid DTM holds for a saga is refused (DtmGidInUseError, a DtmFailureError): reported error, not failed, as nothing rolled back', async () => {
    const gid = await t.client.generateGid();
    expect((await t.client.newSaga(gid).add('transOut', { account: 1, amount: 10 }).submitAndWait()).status).toBe('succeed');
    const from = events.length;
    const before = await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome']);
    const err = await t.client.executeWorkflow('observed.transfer', gid, { base: t.url, fail: '' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DtmGidInUseError);
    // the saga DTM holds stays as it was, and no step of the workflow ran
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    expect(await t.balances([1, 2])).toEqual({ 1: 90, 2: 100 });
    const ends = events.slice(from).filter((e) => e.name === 'transaction.end').map((e) => e.event as DtmEvents['transaction.end']);
    expect(ends.map((e) => [e.gid, e.transType, e.outcome, e.error])).toEqual([[gid, 'workflow', 'error', err]]);
    const spans = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.trans_type'] === 'workflow');
    expect(spans.map((s) => [s.name, s.attributes['dtm.outcome'], s.status.code])).toEqual([['DTM workflow', 'error', SpanStatusCode.ERROR]]);
    expect(growth(before, await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome']))).toEqual({ 'workflow error': 1 });
  });

  it.each(PROTOCOLS)('a workflow DTM resumes (%s): the resumed execution and the step it runs join the first execution\'s trace', async (protocol) => {
    const gid = await t.client.generateGid();
    const first = await t.client.executeWorkflow('observed.transfer', gid, { base: t.url, fail: '', pauseOnce: true }, { protocol, retryInterval: 1 }).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(DtmWorkflowPendingError);
    await cronUntilStatus(gid, 'succeed'); // DTM resuming the workflow
    expect(await t.balances([1, 2])).toEqual({ 1: 80, 2: 120 });
    // the spans of gid in the order they ended: the first execution's step and span, then the resumed one's
    const all = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid);
    const [firstAp, resumedAp, ...more] = all.filter((s) => s.attributes['dtm.op'] === undefined);
    expect(more).toEqual([]);
    expect([firstAp.attributes['dtm.outcome'], resumedAp.attributes['dtm.outcome']]).toEqual(['error', 'succeed']);
    const traceId = firstAp.spanContext().traceId;
    // DTM's resume call carries the trace headers the first execution gave the workflow
    expect([resumedAp.spanContext().traceId, resumedAp.parentSpanContext?.spanId]).toEqual([traceId, firstAp.spanContext().spanId]);
    const steps = all.filter((s) => s.attributes['dtm.op'] !== undefined);
    expect(steps.map((s) => [line(s), s.spanContext().traceId, s.parentSpanContext?.spanId])).toEqual([
      ['01 action transOut executed success', traceId, firstAp.spanContext().spanId],
      ['02 action transIn executed success', traceId, resumedAp.spanContext().spanId],
    ]);
  });

  it.each(PROTOCOLS)('a workflow executed again by gid after its first execution recorded a step (a re-attach over %s, run with DTM\'s stored options): one transaction.start, one transaction.end, one span, counted once', async (protocol) => {
    const gid = await t.client.generateGid();
    // retryInterval 60: DTM does not resume it meanwhile; this app executes it again itself
    const first = await t.client.executeWorkflow('observed.transfer', gid, { base: t.url, fail: '', pauseOnce: true }, { protocol, retryInterval: 60 }).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(DtmWorkflowPendingError);
    const from = events.length;
    const spansBefore = exporter.getFinishedSpans().length;
    const before = await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome']);
    const again = await t.client.executeWorkflow('observed.transfer', gid, { base: t.url, fail: '', pauseOnce: true }, { protocol, retryInterval: 60 });
    expect(again).toEqual({ status: 'succeed', result: 'moved' });
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    expect(await t.balances([1, 2])).toEqual({ 1: 80, 2: 120 });
    const mine = events.slice(from).filter((e) => (e.event as { gid?: string }).gid === gid && e.name.startsWith('transaction.'));
    expect(mine.map((e) => `${e.name} ${(e.event as DtmEvents['transaction.end']).outcome ?? ''}`.trim())).toEqual(['transaction.start', 'transaction.end succeed']);
    const aps = exporter.getFinishedSpans().slice(spansBefore).filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined);
    expect(aps.map((s) => [s.name, s.attributes['dtm.outcome']])).toEqual([['DTM workflow', 'succeed']]);
    const steps = exporter.getFinishedSpans().slice(spansBefore).filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] !== undefined);
    expect(steps.map((s) => [line(s), s.parentSpanContext?.spanId])).toEqual([['02 action transIn executed success', aps[0].spanContext().spanId]]);
    expect(growth(before, await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome']))).toEqual({ 'workflow succeed': 1 });
  });
});

describe('hooks', () => {
  /** The events of `gid` from `from` on, as `name detail`; calls to DTM apart (their order against DTM's own calls to the branches is DTM's). */
  function eventsOf(gid: string, from: number): { flow: string[]; dtmCalls: string[] } {
    const mine = events.slice(from).filter(({ event }) => (event as { gid?: string }).gid === gid);
    const flow: string[] = [];
    const dtmCalls: string[] = [];
    for (const { name, event } of mine) {
      const e = event as unknown as Record<string, string>;
      if (name === 'dtm.call') {
        if (e.operation !== 'query') dtmCalls.push(`${e.operation}${e.op ? ` ${e.branchId} ${e.op}` : ''} ${e.outcome}`);
      } else if (name === 'branch.call') flow.push(`branch.call ${e.branchId} ${e.op} ${e.handler} ${e.barrier ?? '-'} ${e.outcome}`);
      else flow.push(`${name} ${e.transType} ${e.outcome ?? ''}`.trim());
    }
    return { flow, dtmCalls };
  }

  /** The protocols the events of `gid` from `from` on name (but DTM's status queries', always over HTTP). */
  const protocolsOf = (gid: string, from: number) =>
    new Set(events.slice(from).filter(({ event }) => (event as { gid?: string }).gid === gid && (event as Partial<DtmEvents['dtm.call']>).operation !== 'query').map(({ event }) => (event as { protocol: string }).protocol));

  it.each(PROTOCOLS)('receive every event of a saga over %s, in order', async (protocol) => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid, { protocol }).add('transOut', { account: 1, amount: 10 }).add('transIn', { account: 2, amount: 10 }).submitAndWait();
    expect(final.status).toBe('succeed');
    expect(eventsOf(gid, from)).toEqual({
      flow: ['transaction.start saga', 'branch.call 01 action Bank.transOut executed success', 'branch.call 02 action Bank.transIn executed success', 'transaction.end saga succeed'],
      dtmCalls: ['submit ok'],
    });
    expect(protocolsOf(gid, from)).toEqual(new Set([protocol]));
    const end = events.slice(from).find((e) => e.name === 'transaction.end')!.event as DtmEvents['transaction.end'];
    expect(end.durationMs).toBeGreaterThan(0);
    expect(t.logger.lines.filter((l) => l.includes(gid))).toEqual([]); // nothing logged per call on the success path by default
  });

  it.each(['saga', 'msg'] as const)('TransactionHelper.execute* of a %s with waitForFinal: reported with the final status it resolves (succeed), as a submitAndWait is, not submitted', async (kind) => {
    const helper = t.app.get(TransactionHelper);
    const gid = await t.client.generateGid();
    const from = events.length;
    const result =
      kind === 'saga'
        ? await helper.executeSaga(gid, [{ action: 'transOut', data: { account: 1, amount: 10 } }], { waitForFinal: { timeout: 20 } })
        : await helper.executeMsg(gid, 'outbox', [{ action: 'deliver', data: { account: 2, amount: 10 } }], { waitForFinal: { timeout: 20 } });
    expect(result.final?.status).toBe('succeed');
    expect((await queryTrans(gid)).transaction?.status).toBe('succeed');
    const ends = events.slice(from).filter((e) => e.name === 'transaction.end' && (e.event as DtmEvents['transaction.end']).gid === gid);
    expect(ends.map((e) => `${(e.event as DtmEvents['transaction.end']).transType} ${(e.event as DtmEvents['transaction.end']).outcome}`)).toEqual([`${kind} succeed`]);
  });

  it('a saga submitted with waitResult that DTM rolls back in its first round: submit() throws the rollback (DtmFailureError), reported failed as DTM holds it, not error', async () => {
    const gid = await t.client.generateGid();
    const submit = () => t.client.newSaga(gid, { waitResult: true }).add('transOut', { account: 1, amount: 10 }).add('transIn', { account: 2, amount: 10, fail: 'yes' }).submit();
    const err = await expectEndReported(gid, submit, 'saga', 'failed', 'failed', SpanStatusCode.ERROR);
    expect(err).toBeInstanceOf(DtmFailureError);
    expect((err as DtmFailureError).reason).toBe('account 2 is frozen');
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
  });

  it('a saga submitted with waitResult whose first round DTM did not finish (a step answered an error, which DTM retries): submit() throws DtmOngoingError, reported submitted (DTM took it and drives it), not error', async () => {
    const gid = await t.client.generateGid();
    const submit = () => t.client.newSaga(gid, { waitResult: true, retryInterval: 60 }).add('transIn', { account: 2, amount: 10, fail: 'crash' }).submit();
    try {
      const err = await expectEndReported(gid, submit, 'saga', 'submitted', 'submitted', SpanStatusCode.UNSET);
      expect(err).toBeInstanceOf(DtmOngoingError);
      expect(err).not.toBeInstanceOf(DtmOutcomeUnknownError);
    } finally {
      await t.client.forceStop(gid);
    }
    expect(await t.balances([2])).toEqual({ 2: 100 });
  });

  it('a message submitted with waitResult whose branch answered an error in DTM\'s first round (DTM passes it on as HTTP 500 and delivers on): submit() throws DtmOutcomeUnknownError "submitted", not a bare DtmServerError; reported submitted, not error', async () => {
    const gid = await t.client.generateGid();
    const submit = () => t.client.newMsg(gid, { waitResult: true, retryInterval: 60 }).add('deliver', { account: 2, amount: 10, fail: 'crash' }).submit();
    try {
      const err = await expectEndReported(gid, submit, 'msg', 'submitted', 'submitted', SpanStatusCode.UNSET);
      expect(err).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(err).toMatchObject({ gid, lastStatus: 'submitted' });
      expect((err as Error).message).toMatch(new RegExp(`^DTM took the submit of ${gid} and holds it "submitted", but its first round did not finish`));
    } finally {
      await t.client.forceStop(gid);
    }
    expect(await t.balances([2])).toEqual({ 2: 100 });
  });

  it('a message\'s doAndSubmit() with waitResult whose branch answered FAILURE in DTM\'s first round (DTM answers the submit FAILURE and delivers on): transaction.end carries the DtmOutcomeUnknownError "submitted" thrown to the caller, not the DtmOngoingError it restates; reported submitted', async () => {
    const gid = await t.client.generateGid();
    const run = () => t.client.newMsg(gid, { waitResult: true, retryInterval: 60 }).add('deliver', { account: 2, amount: 10, fail: 'yes' }).doAndSubmit('outbox', async () => 'committed');
    try {
      const err = await expectEndReported(gid, run, 'msg', 'submitted', 'submitted', SpanStatusCode.UNSET);
      expect(err).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(err).toMatchObject({ gid, lastStatus: 'submitted' });
      expect((err as DtmOutcomeUnknownError).cause).toBeInstanceOf(DtmOngoingError);
    } finally {
      await t.client.forceStop(gid);
    }
    expect(await t.balances([2])).toEqual({ 2: 100 });
  });

  it('a message\'s doAndSubmit() whose local transaction threw and whose back-check could not be asked (left prepared for DTM\'s own): transaction.end "prepared" carries the local transaction\'s error, the one thrown to the caller, not the back-check\'s', async () => {
    const gid = await t.client.generateGid();
    const from = events.length;
    const unreachable = `http://127.0.0.1:${await freePort()}/query-prepared`;
    const localError = new Error('the ledger write timed out');
    const err = await t.client
      .newMsg(gid, { timeoutToFail: 60 })
      .add('deliver', { account: 2, amount: 10 })
      .doAndSubmit(unreachable, async () => {
        throw localError;
      })
      .catch((e: unknown) => e);
    try {
      expect(err).toBe(localError);
      expect((await queryTrans(gid)).transaction?.status).toBe('prepared');
      const end = events.slice(from).filter((e) => e.name === 'transaction.end' && (e.event as DtmEvents['transaction.end']).gid === gid);
      expect(end.map((e) => [(e.event as DtmEvents['transaction.end']).outcome, (e.event as DtmEvents['transaction.end']).error])).toEqual([['prepared', localError]]);
    } finally {
      await t.client.forceStop(gid);
    }
  });

  it('a message\'s doAndSubmit() whose local transaction threw after it committed (its back-check answers success): submitted, and transaction.end carries the local transaction\'s error, the one thrown to the caller', async () => {
    const gid = await t.client.generateGid();
    const from = events.length;
    // a back-check that finds the local transaction committed
    const checked = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    await new Promise<void>((resolve) => checked.listen(0, '127.0.0.1', resolve));
    const localError = new Error('the receipt mail failed after the commit');
    try {
      const err = await t.client
        .newMsg(gid)
        .add('deliver', { account: 2, amount: 10 })
        .doAndSubmit(`http://127.0.0.1:${(checked.address() as AddressInfo).port}/query-prepared`, async () => {
          throw localError;
        })
        .catch((e: unknown) => e);
      expect(err).toBe(localError);
      await waitUntil('DTM delivering the message', async () => (await queryTrans(gid)).transaction?.status === 'succeed', { timeoutMs: 20_000, intervalMs: 200 });
      expect(await t.balances([2])).toEqual({ 2: 110 });
      const end = events.slice(from).filter((e) => e.name === 'transaction.end' && (e.event as DtmEvents['transaction.end']).gid === gid);
      expect(end.map((e) => [(e.event as DtmEvents['transaction.end']).outcome, (e.event as DtmEvents['transaction.end']).error])).toEqual([['submitted', localError]]);
    } finally {
      checked.close();
    }
  });

  it('a TCC submitted with waitResult whose Confirm of DTM\'s first round answered an error (DTM retries it): the body\'s result is not returned (DtmOutcomeUnknownError "submitted"), reported submitted (DTM took it and confirms on), not error', async () => {
    const gid = await t.client.generateGid();
    const run = () => t.client.tccGlobalTransaction(gid, (tcc) => tcc.callBranch({ account: 1, amount: 10, fail: 'confirm' }, 'tccOut'), { waitResult: true, retryInterval: 60 });
    try {
      const err = await expectEndReported(gid, run, 'tcc', 'submitted', 'submitted', SpanStatusCode.UNSET);
      expect(err).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(err).toMatchObject({ gid, lastStatus: 'submitted' });
    } finally {
      await t.client.forceStop(gid);
    }
  });

  it.each(PROTOCOLS)('receive every event of a TCC transaction over %s, in order', async (protocol) => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const outcome = await t.client.tccGlobalTransactionAndWait(gid, (tcc) => tcc.callBranch({ account: 1, amount: 10 }, 'tccOut'), { protocol });
    expect(outcome.status).toBe('succeed');
    expect(await t.balances([1])).toEqual({ 1: 90 });
    expect(eventsOf(gid, from)).toEqual({
      flow: ['transaction.start tcc', 'branch.call 01 try Bank.tccOutTry executed success', 'branch.call 01 confirm Bank.tccOutConfirm executed success', 'transaction.end tcc succeed'],
      dtmCalls: ['prepare ok', 'registerBranch ok', 'callBranch 01 try ok', 'submit ok'],
    });
    expect(protocolsOf(gid, from)).toEqual(new Set([protocol]));
  });

  it.each(PROTOCOLS)('receive every event of an XA transaction over %s, in order', async (protocol) => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const outcome = await t.client.xaGlobalTransactionAndWait(gid, (xa) => xa.callBranch({ account: 1, amount: 4 }, 'xaPg'), { protocol });
    expect(outcome.status).toBe('succeed');
    expect(await t.balances([1])).toEqual({ 1: 104 });
    expect(eventsOf(gid, from)).toEqual({
      flow: ['transaction.start xa', 'branch.call 01 action XaBank.pg - success', 'branch.call 01 commit XaBank.pg - success', 'transaction.end xa succeed'],
      dtmCalls: ['prepare ok', 'registerBranch ok', 'callBranch 01 action ok', 'submit ok'],
    });
    expect(protocolsOf(gid, from)).toEqual(new Set([protocol]));
  });

  it.each(PROTOCOLS)('receive every event of a workflow over %s, in order', async (protocol) => {
    const from = events.length;
    const gid = await t.client.generateGid();
    expect(await t.client.executeWorkflow('observed.transfer', gid, { base: t.url, fail: '' }, { protocol })).toEqual({ status: 'succeed', result: 'moved' });
    expect(await t.balances([1, 2])).toEqual({ 1: 80, 2: 120 });
    const { flow, dtmCalls } = eventsOf(gid, from);
    expect(flow).toEqual([
      'transaction.start workflow',
      'branch.call 01 action Bank.transOut executed success',
      'branch.call 02 action Bank.transIn executed success',
      'transaction.end workflow succeed',
    ]);
    // the app calls the steps itself (callBranch), then records each step's outcome in DTM
    expect(dtmCalls).toEqual(['prepareWorkflow ok', 'callBranch 01 action ok', 'registerBranch 01 action ok', 'callBranch 02 action ok', 'registerBranch 02 action ok', 'submit ok']);
    // every event over the workflow's protocol, but the calls of its http:// steps
    const protocols = events
      .slice(from)
      .filter((e) => e.name !== 'branch.call' && (e.event as { gid?: string }).gid === gid && (e.event as Partial<DtmEvents['dtm.call']>).operation !== 'query')
      .map((e) => `${e.name === 'dtm.call' ? (e.event as DtmEvents['dtm.call']).operation : e.name} ${(e.event as { protocol: string }).protocol}`);
    expect(new Set(protocols)).toEqual(new Set(['transaction.start', 'prepareWorkflow', 'registerBranch', 'submit', 'transaction.end'].map((n) => `${n} ${protocol}`).concat('callBranch http')));
  });

  it('dtm.call names the protocol a branch call went over: an http:// Try of a TCC transaction on gRPC is an HTTP call', async () => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const outcome = await t.client.tccGlobalTransactionAndWait(
      gid,
      (tcc) => tcc.callBranch({ account: 1, amount: 10 }, `${t.url}/bank/tcc-out-try`, `${t.url}/bank/tcc-out-confirm`, `${t.url}/bank/tcc-out-cancel`),
      { protocol: 'grpc' },
    );
    expect(outcome.status).toBe('succeed');
    const calls = events
      .slice(from)
      .filter((e) => e.name === 'dtm.call' && (e.event as DtmEvents['dtm.call']).gid === gid && (e.event as DtmEvents['dtm.call']).operation !== 'query')
      .map((e) => e.event as DtmEvents['dtm.call'])
      .map((e) => `${e.operation} ${e.protocol} ${e.outcome}`);
    expect(calls).toEqual(['prepare grpc ok', 'registerBranch grpc ok', 'callBranch http ok', 'submit grpc ok']);
  });

  it('a hook that throws never breaks a transaction: the error is logged, DTM and the database have the outcome', async () => {
    const offs = (['transaction.start', 'transaction.end', 'dtm.call', 'branch.call'] as const).map((name) =>
      t.instrumentation.on(name, () => {
        throw new Error(`hook ${name} broke`);
      }),
    );
    try {
      const gid = await t.client.generateGid();
      const final = await t.client.newSaga(gid).add('transOut', { account: 1, amount: 10 }).add('transIn', { account: 2, amount: 10 }).submitAndWait();
      expect(final.status).toBe('succeed');
      expect((await queryTrans(gid)).transaction!.status).toBe('succeed');
      expect(await t.balances([1, 2])).toEqual({ 1: 90, 2: 110 });
      const tcc = await t.client.generateGid();
      expect((await t.client.tccGlobalTransactionAndWait(tcc, (x) => x.callBranch({ account: 3, amount: 1 }, 'tccOut'))).status).toBe('succeed');
      expect(await t.balances([3])).toEqual({ 3: 99 });
      // each line names the gid (and the branch and op) of the event the listener threw on
      for (const [name, where] of [
        ['transaction.start', `gid=${gid}`],
        ['transaction.end', `gid=${gid}`],
        ['dtm.call', `gid=${gid}`],
        ['branch.call', `gid=${gid} branch=01 op=action`],
        ['branch.call', `gid=${tcc} branch=01 op=try`],
        ['dtm.call', `gid=${tcc} branch=01 op=try`],
      ]) {
        expect(t.logger.lines).toContainEqual(expect.stringContaining(`error [DtmTrace] a listener of ${name} threw for ${where} (ignored: the transaction goes on): Error: hook ${name} broke`));
      }
    } finally {
      for (const off of offs) off();
    }
  });

  it('an async hook whose promise rejects never breaks a transaction either: the rejection is logged, never left unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const offs = (['transaction.start', 'transaction.end', 'dtm.call', 'branch.call'] as const).map((name) =>
      t.instrumentation.on(name, async () => {
        await Promise.resolve();
        throw new Error(`async hook ${name} broke`);
      }),
    );
    try {
      const gid = await t.client.generateGid();
      const final = await t.client.newSaga(gid).add('transOut', { account: 1, amount: 10 }).add('transIn', { account: 2, amount: 10 }).submitAndWait();
      expect(final.status).toBe('succeed');
      expect(await t.balances([1, 2])).toEqual({ 1: 90, 2: 110 });
      const expected = ['transaction.start', 'transaction.end', 'dtm.call', 'branch.call'].map((name) => `error [DtmTrace] a listener of ${name} threw for gid=${gid}`);
      await waitUntil('the rejections logged', async () => expected.every((e) => t.logger.lines.some((l) => l.includes(e))), { timeoutMs: 5_000, intervalMs: 20 }).catch(() => undefined);
      expect([expected.filter((e) => !t.logger.lines.some((l) => l.includes(e))), unhandled.map(String)]).toEqual([[], []]);
    } finally {
      for (const off of offs) off();
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a hook that throws (or rejects with) a value String() cannot convert (an object without a prototype) breaks no transaction and is never left unhandled: logged as such', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const offs = [
      ...(['transaction.start', 'transaction.end', 'dtm.call', 'branch.call'] as const).map((name) =>
        t.instrumentation.on(name, () => {
          throw Object.assign(Object.create(null) as object, { hook: name });
        }),
      ),
      t.instrumentation.on('transaction.end', async () => {
        await Promise.resolve();
        throw Object.create(null) as object;
      }),
    ];
    try {
      const gid = await t.client.generateGid();
      // before: submitAndWait() threw "TypeError: Cannot convert object to primitive value", from the module's log line of the hook's error
      const final = await t.client.newSaga(gid).add('transOut', { account: 1, amount: 10 }).add('transIn', { account: 2, amount: 10 }).submitAndWait();
      expect(final.status).toBe('succeed');
      expect(await t.balances([1, 2])).toEqual({ 1: 90, 2: 110 });
      const expected = ['transaction.start', 'transaction.end', 'dtm.call', 'branch.call'].map((name) => `error [DtmTrace] a listener of ${name} threw for gid=${gid}`);
      await waitUntil('the errors logged', async () => expected.every((e) => t.logger.lines.filter((l) => l.includes(e)).length >= (e.includes('transaction.end') ? 2 : 1)), { timeoutMs: 5_000, intervalMs: 20 }).catch(() => undefined);
      expect(expected.filter((e) => !t.logger.lines.some((l) => l.includes(e)))).toEqual([]);
      expect(t.logger.lines.filter((l) => l.includes(`a listener of transaction.end threw for gid=${gid} (ignored: the transaction goes on): a value that cannot be converted to text`))).toHaveLength(2);
      expect(unhandled).toHaveLength(0);
    } finally {
      for (const off of offs) off();
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a listener that unsubscribes itself while the event is emitted does not keep the next listener from receiving it', async () => {
    const seen: string[] = [];
    const offFirst: () => void = t.instrumentation.on('transaction.start', (e) => {
      seen.push(`first ${e.transType}`);
      offFirst();
    });
    const offSecond = t.instrumentation.on('transaction.start', (e) => void seen.push(`second ${e.transType}`));
    try {
      const gid = await t.client.generateGid();
      expect((await t.client.newSaga(gid).add('transOut', { account: 1, amount: 1 }).submitAndWait()).status).toBe('succeed');
      const again = await t.client.generateGid();
      expect((await t.client.newSaga(again).add('transOut', { account: 1, amount: 1 }).submitAndWait()).status).toBe('succeed');
      expect(seen).toEqual(['first saga', 'second saga', 'second saga']);
    } finally {
      offSecond();
    }
  });
});

describe('a barrier handler throwing a BadRequestException (or a 422) itself (answered FAILURE by the module, as a pipe\'s 400)', () => {
  it.each([
    ['a BadRequestException', 'bad-request'],
    ['an UnprocessableEntityException (422)', 'unprocessable'],
  ])('%s: the hooks report the call as a failure, as DTM reads the answer, not as an error: its write rolls back, DTM rolls the saga back with its message', async (_what, fail) => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const final = await t.client
      .newSaga(gid, { protocol: 'http', retryInterval: 1 })
      .add('transOut', { account: 1, amount: 10 })
      .add('transIn', { account: 2, amount: 10, fail })
      .submitAndWait({ timeout: 20 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('account 2 is closed');
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
    const calls = branchCalls(from, gid);
    expect(calls.map((e) => `${e.branchId} ${e.op} ${e.handler} ${e.outcome}`)).toEqual([
      '01 action Bank.transOut success',
      '02 action Bank.transIn failure',
      '02 compensate Bank.transInCompensate success',
      '01 compensate Bank.transOutCompensate success',
    ]);
  });
});

describe('a barrier handler answering a body DTM reads as FAILURE ({ dtm_result: \'FAILURE\' }, DTM\'s result protocol before v1.10)', () => {
  it('is a FAILURE as if thrown: its write rolls back with the barrier, DTM rolls the saga back with its message; a step without compensation leaves no money behind', async () => {
    const from = events.length;
    const gid = await t.client.generateGid();
    // transIn as a step without compensation: nothing would undo a write committed under the barrier
    const final = await t.client
      .newSaga(gid, { protocol: 'http', retryInterval: 1 })
      .add('transOut', { account: 1, amount: 10 })
      .add(`${t.url}/bank/trans-in`, '', { account: 2, amount: 10, fail: 'old-protocol' })
      .submitAndWait({ timeout: 20 });
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('account 2 is frozen');
    expect(final.branches.map((b) => `${b.branchId} ${b.op} ${b.status}`)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
    const calls = branchCalls(from, gid);
    expect(calls.map((e) => `${e.branchId} ${e.op} ${e.handler} ${e.outcome}`)).toEqual(['01 action Bank.transOut success', '02 action Bank.transIn failure', '01 compensate Bank.transOutCompensate success']);
  });
});

describe("in production, a barrier handler answering a body that holds FAILURE outside DTM's result protocol (no dtm_result: not read on a success, a documented limit)", () => {
  it("pins what DTM v1.19 does with it: reads FAILURE, rolls the saga back with the body as its reason; the module reported success and the barrier executed, and the write stays committed (a step without compensation: nothing undoes it)", async () => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const final = await t.client
      .newSaga(gid, { protocol: 'http', retryInterval: 1 })
      .add('transOut', { account: 1, amount: 10 })
      .add(`${t.url}/prod-bank/trans-in`, '', { account: 2, amount: 10 })
      .submitAndWait({ timeout: 20 });
    expect(final.status).toBe('failed');
    expect(final.rawRollbackReason).toMatch(/^url:http:\/\/[^ ]+\/prod-bank\/trans-in return failed: \{"account":2,"note":"last check: no FAILURE"\} FAILURE$/);
    expect(final.branches.map((b) => `${b.branchId} ${b.op} ${b.status}`)).toEqual(['01 compensate succeed', '01 action succeed', '02 compensate succeed', '02 action failed']);
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 110 });
    expect(branchCalls(from, gid).map((e) => `${e.branchId} ${e.op} ${e.handler} ${e.barrier} ${e.outcome}`)).toEqual([
      '01 action Bank.transOut executed success',
      '02 action ProdBank.transIn executed success',
      '01 compensate Bank.transOutCompensate executed success',
    ]);
  });
});

describe('a branch call the module answers FAILURE before its handler runs (a pipe\'s 400, the decorator\'s { schema })', () => {
  it.each([
    ['a pipe', 'pipedIn', 'CheckedBank.pipedIn'],
    ['a pipe answering 422 (ValidationPipe\'s errorHttpStatusCode: 422)', 'piped422In', 'CheckedBank.piped422In'],
    ['the schema', 'schemaIn', 'CheckedBank.schemaIn'],
  ])('refused by %s: the hooks, the span and the counters have the call, a failure, as DTM has it', async (_by, branch, handler) => {
    const from = events.length;
    const callsBefore = await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS);
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid).add('transOut', { account: 1, amount: 10 }).add(branch, { account: 2, amount: 500 }).submitAndWait();
    expect(final.status).toBe('failed');
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
    const calls = branchCalls(from, gid).map((e) => `${e.branchId} ${e.op} ${e.handler} ${e.outcome}`);
    expect(calls).toEqual(['01 action Bank.transOut success', `02 action ${handler} failure`, `02 compensate ${handler}Compensate success`, '01 compensate Bank.transOutCompensate success']);
    const { branches } = expectOneTrace(gid);
    expect(branches.map(line)).toEqual(['01 action transOut executed success', `02 action ${branch} - failure`, `02 compensate ${branch} - success`, '01 compensate transOut executed success']);
    expect(branches[1].status.code).toBe(SpanStatusCode.ERROR);
    expect(growth(callsBefore, await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS))).toEqual({
      'saga-action action success': 1,
      'saga-action action failure': 1,
      'saga-compensate compensate success': 2,
    });
  });
});

describe('an async handler answering an Observable (a Promise of one)', () => {
  it('is observed until the Observable ends: its FAILURE is a failure in the hooks and the span, and its time includes the Observable\'s', async () => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid).add('transOut', { account: 1, amount: 10 }).add('reactiveIn', { account: 2, amount: 10, fail: 'yes' }).submitAndWait();
    expect(final.status).toBe('failed');
    expect(final.rollbackReason).toContain('account 2 refused the deposit');
    const calls = branchCalls(from, gid);
    expect(calls.map((e) => `${e.branchId} ${e.op} ${e.handler} ${e.outcome}`)).toEqual([
      '01 action Bank.transOut success',
      '02 action ReactiveBank.reactiveIn failure',
      '02 compensate ReactiveBank.reactiveInCompensate success',
      '01 compensate Bank.transOutCompensate success',
    ]);
    expect(calls[1].error).toBeInstanceOf(DtmFailureError);
    expect(calls[1].durationMs).toBeGreaterThanOrEqual(15); // the Observable's 20 ms delay
    const { branches } = expectOneTrace(gid);
    expect(branches.map(line)).toEqual(['01 action transOut executed success', '02 action reactiveIn - failure', '02 compensate reactiveIn - success', '01 compensate transOut executed success']);
    expect(branches[1].status.code).toBe(SpanStatusCode.ERROR);
  });

  it('given up by an interceptor of the app before it ended (a timeout()): reported once, as an error saying so, and its span ended', async () => {
    const from = events.length;
    const gid = `slow-${randomBytes(6).toString('hex')}`;
    const keys = { gid, trans_type: 'saga', branch_id: '01', op: 'action' };
    const res = await fetch(`${t.url}/reactive/slow?${new URLSearchParams(keys)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(408);
    const calls = branchCalls(from, gid);
    expect(calls.map((e) => `${e.branchId} ${e.op} ${e.handler} ${e.outcome}`)).toEqual(['01 action ReactiveBank.reactiveSlow error']);
    expect((calls[0].error as Error).message).toBe('the Observable ReactiveBank.reactiveSlow answered was unsubscribed before it ended (an interceptor of the app gave up on it, a timeout() say): the call was answered without the handler\'s outcome, which the handler may still reach');
    const spans = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid);
    expect(spans.map((s) => [s.name, s.attributes['dtm.outcome'], s.status.code])).toEqual([['DTM saga action reactiveSlow', 'error', SpanStatusCode.ERROR]]);
  });

  it('answered only after an interceptor of the app gave up on the call (Nest drops it, never subscribed): reported once, as an error saying so, and its span ended', async () => {
    const from = events.length;
    const gid = `late-${randomBytes(6).toString('hex')}`;
    const keys = { gid, trans_type: 'saga', branch_id: '01', op: 'action' };
    const res = await fetch(`${t.url}/reactive/late?${new URLSearchParams(keys)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(408);
    await waitUntil('the late call to be reported', async () => branchCalls(from, gid).length > 0, { timeoutMs: 5_000, intervalMs: 20 });
    const calls = branchCalls(from, gid);
    expect(calls.map((e) => `${e.branchId} ${e.op} ${e.handler} ${e.outcome}`)).toEqual(['01 action ReactiveBank.reactiveLate error']);
    expect((calls[0].error as Error).message).toBe(
      "the Observable ReactiveBank.reactiveLate answered was never subscribed (the call was answered before the handler answered: an interceptor of the app gave up on it, a timeout() say): the call was answered without the handler's outcome",
    );
    expect(calls[0].durationMs).toBeGreaterThanOrEqual(250); // the handler's 300 ms
    const spans = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid);
    expect(spans.map((s) => [s.name, s.attributes['dtm.outcome'], s.status.code])).toEqual([['DTM saga action reactiveLate', 'error', SpanStatusCode.ERROR]]);
  });
});

describe('barrier decisions', () => {
  it('a cancel arriving before its Try is a null compensation, and the late Try is reported as hanging prevented (not a duplicate)', async () => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const call = (path: string, op: string) =>
      fetch(`${t.url}/bank/${path}?${new URLSearchParams({ gid, trans_type: 'tcc', branch_id: '01', op })}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ account: 1, amount: 10 }),
      });
    expect((await call('tcc-out-cancel', 'cancel')).status).toBe(200);
    expect((await call('tcc-out-try', 'try')).status).toBe(200);
    expect((await call('tcc-out-try', 'try')).status).toBe(200);
    expect(await t.balances([1])).toEqual({ 1: 100 });
    const decisions = branchCalls(from).map((e) => `${e.op} ${e.barrier} ${e.outcome}`);
    expect(decisions).toEqual(['cancel null-compensation success', 'try hanging-prevented success', 'try hanging-prevented success']);
    const hung = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === 'try');
    expect(hung.map((s) => s.attributes['dtm.barrier.decision'])).toEqual(['hanging-prevented', 'hanging-prevented']);
  });

  it('an action delivered twice: the second is a duplicate', async () => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const call = () =>
      fetch(`${t.url}/bank/trans-out?${new URLSearchParams({ gid, trans_type: 'saga', branch_id: '01', op: 'action' })}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ account: 1, amount: 10 }),
      });
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(200);
    expect(await t.balances([1])).toEqual({ 1: 90 });
    const decisions = branchCalls(from).map((e) => e.barrier);
    expect(decisions).toEqual(['executed', 'duplicate']);
  });
});

describe('barrier decisions of a barrier used by hand (DtmClient.barrier)', () => {
  /** The barrier decisions of `gid`'s branch calls from event `from` on (`branch op barrier`, sorted), and the same from their spans. */
  function decisionsOf(gid: string, from: number): { events: string[]; spans: string[] } {
    return {
      events: branchCalls(from, gid)
        .map((e) => `${e.branchId} ${e.op} ${e.barrier ?? '-'}`)
        .sort(),
      spans: exporter
        .getFinishedSpans()
        .filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] !== undefined)
        .map((s) => `${s.attributes['dtm.branch_id']} ${s.attributes['dtm.op']} ${s.attributes['dtm.barrier.decision'] ?? '-'}`)
        .sort(),
    };
  }

  /** Calls `path` of the manual bank as DTM would (saga branch 01). */
  const call = (path: string, gid: string, op: string) =>
    fetch(`${t.url}/manual/${path}?${new URLSearchParams({ gid, trans_type: 'saga', branch_id: '01', op })}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ account: 1, amount: 10 }),
    });

  it.each([
    ['PostgreSQL (callWithDb)', 'out'],
    ['Redis (redisCheckAdjustAmount)', 'redis-out'],
  ])('%s: executed, duplicate, null compensation and hanging prevented, as the declared barrier reports them', async (_store, path) => {
    const { client, prefix } = t.redis!;
    await client.set(`${prefix}account-1`, '100');
    const balance = async () => (path === 'out' ? (await t.balances([1]))[1] : Number(await client.get(`${prefix}account-1`)));
    const from = events.length;
    const [ran, hung] = [await t.client.generateGid(), await t.client.generateGid()];
    expect([(await call(path, ran, 'action')).status, (await call(path, ran, 'action')).status]).toEqual([200, 200]);
    expect(await balance()).toBe(90);
    expect([(await call(`${path}-compensate`, hung, 'compensate')).status, (await call(path, hung, 'action')).status]).toEqual([200, 200]);
    expect(await balance()).toBe(90);
    const twice = ['01 action duplicate', '01 action executed'];
    expect(decisionsOf(ran, from)).toEqual({ events: twice, spans: twice });
    const late = ['01 action hanging-prevented', '01 compensate null-compensation'];
    expect(decisionsOf(hung, from)).toEqual({ events: late, spans: late });
  });

  it.each(PROTOCOLS)('a saga over %s that rolls back: the action and compensation by hand report executed, the failed action\'s compensation a null compensation', async (protocol) => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const final = await t.client.newSaga(gid, { protocol }).add('manualOut', { account: 1, amount: 10 }).add('transIn', { account: 2, amount: 10, fail: 'yes' }).submitAndWait();
    expect(final.status).toBe('failed');
    expect(await t.balances([1, 2])).toEqual({ 1: 100, 2: 100 });
    expect(await dtmBranches(gid)).toEqual(['01 action succeed', '01 compensate succeed', '02 action failed', '02 compensate succeed']);
    // 02's action failed (its write and barrier rows rolled back): no decision of its own
    const decided = ['01 action executed', '01 compensate executed', '02 action -', '02 compensate null-compensation'];
    expect(decisionsOf(gid, from)).toEqual({ events: decided, spans: decided });
  });
});

describe('a branch call the module refuses before its handler runs, and an undo call it answers without its handler', () => {
  /** Calls `method` of the bank (`trans-out` over HTTP, `TransOut` over gRPC) with `keys` as DTM's keys and `move` as its body: the answer's status (HTTP) or code (gRPC). */
  async function callBank(protocol: DtmProtocol, [path, method]: [string, string], keys: Record<string, string>, move: Move = { account: 1, amount: 10 }): Promise<number> {
    if (protocol === 'grpc') return (await callGrpc(`${t.grpcAddress}/tests.PgBank/${method}`, move, keys)).code;
    const res = await fetch(`${t.url}/bank/${path}?${new URLSearchParams(keys)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(move) });
    return res.status;
  }

  it.each(PROTOCOLS)('over %s: a call without DTM\'s keys, with an op the handler does not serve, with a gid breaking the key rule are refused (reason and answer in the hooks, span and counters); the undo of such a gid is a null compensation', async (protocol) => {
    const from = events.length;
    const [callsBefore, decisionsBefore] = [await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS), await counter(METRIC_NAMES.branchCalls, ['dtm.op', 'dtm.barrier.decision'])];
    const gid = await t.client.generateGid();
    const bad = `${gid};x`; // DTM strips ';' from gids: refused by the key rule
    const out: [string, string] = ['trans-out', 'TransOut'];
    const answers = [
      await callBank(protocol, out, { gid, op: 'action' }),
      await callBank(protocol, out, { gid, trans_type: 'saga', branch_id: '01', op: 'bogus' }),
      await callBank(protocol, out, { gid: bad, trans_type: 'saga', branch_id: '01', op: 'action' }),
      await callBank(protocol, ['trans-out-compensate', 'TransOutCompensate'], { gid: bad, trans_type: 'saga', branch_id: '01', op: 'compensate' }),
    ];
    // HTTP 400, 400, 409 (FAILURE), 200; gRPC INVALID_ARGUMENT, INVALID_ARGUMENT, ABORTED, OK
    const expected = protocol === 'http' ? [400, 400, 409, 200] : [3, 3, 10, 0];
    expect(answers).toEqual(expected);
    expect(await t.balances([1])).toEqual({ 1: 100 }); // no handler ran

    const calls = branchCalls(from).filter((e) => e.gid.startsWith(gid));
    expect(calls.map((e) => `${e.gid === gid ? 'gid' : 'bad-gid'} ${e.branchId || '-'} ${e.op || '-'} ${e.handler} ${e.barrier ?? '-'} ${e.outcome} ${e.status ?? '-'}`)).toEqual([
      `gid - - Bank.transOut - refused ${expected[0]}`,
      `gid 01 - Bank.transOut - refused ${expected[1]}`,
      `bad-gid 01 action Bank.transOut - refused ${expected[2]}`,
      'bad-gid 01 compensate Bank.transOutCompensate null-compensation success -',
    ]);
    // each refusal carries its reason
    expect(calls.slice(0, 3).map((e) => (e.error as Error).message)).toEqual([
      expect.stringMatching(/this call lacks (dtm-)?trans_type, (dtm-)?branch_id/),
      expect.stringContaining('this call has op=bogus'),
      expect.stringContaining("a ';' (DTM strips it from gids)"),
    ]);
    const spans = exporter.getFinishedSpans().filter((s) => String(s.attributes['dtm.gid']).startsWith(gid));
    expect(spans.map((s) => `${s.attributes['dtm.op'] || '-'} ${s.attributes['dtm.outcome']} ${s.status.code === SpanStatusCode.ERROR ? s.status.message : 'ok'}`)).toEqual([
      expect.stringMatching(/^- refused .*lacks (dtm-)?trans_type, (dtm-)?branch_id/),
      expect.stringMatching(/^- refused .*this call has op=bogus/),
      expect.stringMatching(/^action refused branch call refused: the gid/),
      'compensate success ok',
    ]);
    expect(growth(callsBefore, await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS))).toEqual({
      'saga-action  refused': 2,
      'saga-action action refused': 1,
      'saga-compensate compensate success': 1,
    });
    expect(growth(decisionsBefore, await counter(METRIC_NAMES.branchCalls, ['dtm.op', 'dtm.barrier.decision']))).toEqual({ 'compensate null-compensation': 1 });
  });

  it.each(PROTOCOLS)('over %s: a forged call\'s gid, branch id and op of thousands of characters reach no span attribute, hook event or metric whole: gid and branch id cut to 200 characters and …, the op not served left out', async (protocol) => {
    const from = events.length;
    const callsBefore = await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS);
    const gid = await t.client.generateGid();
    // two to a call, as long as the transport takes: Node's HTTP header limit is 16 KiB (the query included), grpc-js's metadata limit 8 KiB
    const long = (c: string) => c.repeat(protocol === 'http' ? 7_000 : 3_500);
    /** Whether `text` holds more than 200 characters of one of the caller's values. */
    const holdsWhole = (text: string) => ['g', 'b', 'o'].some((c) => text.includes(c.repeat(201)));
    const [longGid, longBranch, longOp] = [`${gid}${long('g')}`, `01${long('b')}`, `bogus${long('o')}`];
    const out: [string, string] = ['trans-out', 'TransOut'];
    const answers = [
      await callBank(protocol, out, { gid: longGid, trans_type: 'saga', branch_id: '01', op: 'action' }),
      await callBank(protocol, out, { gid, trans_type: 'saga', branch_id: longBranch, op: 'action' }),
      await callBank(protocol, out, { gid: longGid, trans_type: 'saga', branch_id: '01', op: longOp }),
      await callBank(protocol, out, { gid: longGid, op: 'action' }),
      await callBank(protocol, ['trans-out-compensate', 'TransOutCompensate'], { gid: longGid, trans_type: 'saga', branch_id: longBranch, op: 'compensate' }),
    ];
    expect(answers).toEqual(protocol === 'http' ? [409, 409, 400, 400, 200] : [10, 10, 3, 3, 0]);
    const [cutGid, cutBranch] = [`${longGid.slice(0, 200)}…`, `${longBranch.slice(0, 200)}…`];
    const calls = branchCalls(from).filter((e) => e.gid.startsWith(gid));
    expect(calls.map((e) => [e.gid, e.branchId, e.op, e.outcome])).toEqual([
      [cutGid, '01', 'action', 'refused'],
      [gid, cutBranch, 'action', 'refused'],
      [cutGid, '01', '', 'refused'],
      [cutGid, '', '', 'refused'],
      [cutGid, cutBranch, 'compensate', 'success'],
    ]);
    // the refusals name what is wrong, the caller's values in them cut too
    expect(calls.filter((e) => holdsWhole(String((e.error as Error | undefined)?.message)))).toEqual([]);
    const spans = exporter.getFinishedSpans().filter((s) => String(s.attributes['dtm.gid']).startsWith(gid));
    expect(spans.map((s) => [s.attributes['dtm.gid'], s.attributes['dtm.branch_id'], s.attributes['dtm.op']])).toEqual(calls.map((e) => [e.gid, e.branchId, e.op]));
    // nothing of the span holds more than a cut value: its name, attributes, status, recorded exception
    const texts = spans.flatMap((s) => [s.name, s.status.message ?? '', ...Object.values(s.attributes).map(String), ...s.events.flatMap((e) => Object.values(e.attributes ?? {}).map(String))]);
    expect(texts.filter(holdsWhole).map((text) => text.slice(0, 80))).toEqual([]);
    expect(growth(callsBefore, await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS))).toEqual({
      'saga-action action refused': 2,
      'saga-action  refused': 2,
      'saga-compensate compensate success': 1,
    });
  });

  it.each(PROTOCOLS)('over %s: an XA action call without phase2_url (the app calling a branch always sends one) is refused before its business runs (400, INVALID_ARGUMENT; before: 500, INTERNAL), reported refused with its reason, and logged as no error of the handler', async (protocol) => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const keys = { gid, trans_type: 'xa', branch_id: '01', op: 'action' };
    const move = { account: 1, amount: 10 };
    const answer =
      protocol === 'grpc'
        ? (await callGrpc(`${t.grpcAddress}/tests.XaBank/Pg`, move, keys)).code
        : (await fetch(`${t.url}/xa/pg?${new URLSearchParams(keys)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(move) })).status;
    expect(answer).toBe(protocol === 'grpc' ? 3 : 400);
    expect(await t.balances([1])).toEqual({ 1: 100 });
    const calls = branchCalls(from, gid);
    expect(calls.map((e) => `${e.op} ${e.handler} ${e.outcome} ${e.status ?? '-'}`)).toEqual([`action XaBank.pg refused ${answer}`]);
    expect((calls[0].error as Error).message).toContain('XaBank.pg refused an XA action call without phase2_url');
    expect(t.logger.lines.filter((l) => l.includes(gid))).toEqual([]);
  });

  it.each(PROTOCOLS)('over %s: a made-up trans_type (one per call, CR / LF and ANSI escapes over HTTP) names no span, hook event or log line: shown as `other`, on a call refused for its op and on one refused for its trans_type (FAILURE: none reaches a handler)', async (protocol) => {
    const from = events.length;
    const linesFrom = t.logger.lines.length;
    const marker = `mk${randomBytes(6).toString('hex')}`;
    // over HTTP the query may carry any character; gRPC metadata only printable ASCII
    const forged = protocol === 'http' ? `saga\r\n[Nest] 1 - ERROR [DtmBranch] \u001b[32m${marker} forged` : `saga-${marker}`;
    const [opGid, typeGid] = [await t.client.generateGid(), await t.client.generateGid()];
    const answers = [
      await callBank(protocol, ['trans-out', 'TransOut'], { gid: opGid, trans_type: forged, branch_id: '01', op: 'bogus' }),
      await callBank(protocol, ['trans-in', 'TransIn'], { gid: typeGid, trans_type: forged, branch_id: '01', op: 'action' }, { account: 2, amount: 0, fail: 'crash' }), // its handler would throw: it never runs
    ];
    expect(answers).toEqual(protocol === 'http' ? [400, 409] : [3, 10]);
    const calls = branchCalls(from).filter((e) => e.gid === opGid || e.gid === typeGid);
    expect(calls.map((e) => `${e.handler} ${e.transType} ${e.outcome}`)).toEqual(['Bank.transOut other refused', 'Bank.transIn other refused']);
    expect((calls[1].error as Error).message).toBe('branch call refused: the trans_type is none DTM sends (saga, msg, tcc, xa, workflow, in lower case); the handler did not run and nothing was written');
    const spans = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === opGid || s.attributes['dtm.gid'] === typeGid);
    expect(spans.map((s) => `${s.name} | ${s.attributes['dtm.trans_type']}`)).toEqual(['DTM other  transOut | other', 'DTM other action transIn | other']);
    expect(t.logger.lines.slice(linesFrom).filter((l) => l.includes(marker))).toEqual([]);
  });

  it('a saga whose compensation URL points at its action\'s handler: DTM\'s compensate call is refused (400, reported with its reason), DTM retries it', async () => {
    const from = events.length;
    const gid = await t.client.generateGid();
    await t.client
      .newSaga(gid)
      .add(`${t.url}/bank/trans-out`, `${t.url}/bank/trans-out`, { account: 1, amount: 10 })
      .add('transIn', { account: 2, amount: 10, fail: 'yes' })
      .submit();
    await waitUntil('the refused compensation', async () => branchCalls(from, gid).some((e) => e.outcome === 'refused'), { timeoutMs: 10_000, intervalMs: 50 });
    const stored = await queryTrans(gid);
    await t.client.forceStop(gid);
    expect(stored.transaction?.status).toBe('aborting');
    expect(stored.branches.filter((b) => b.branch_id === '01' && b.op === 'compensate').map((b) => b.status)).toEqual(['prepared']);
    const refused = branchCalls(from, gid).find((e) => e.outcome === 'refused')!;
    expect([refused.branchId, refused.op, refused.handler, refused.status]).toEqual(['01', '', 'Bank.transOut', 400]);
    expect((refused.error as Error).message).toContain('Bank.transOut serves op=action, but this call has op=compensate');
  });
});

describe('branch-handler errors in the log', () => {
  const call = (path: string, op: string, gid: string, branchId: string, body: object) =>
    fetch(`${t.url}/bank/${path}?${new URLSearchParams({ gid, trans_type: 'saga', branch_id: branchId, op })}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('name the handler, transaction type, gid, branch id and op: a crash (retried by DTM) and a FAILURE that cannot roll back', async () => {
    const gid = await t.client.generateGid();
    expect((await call('trans-in', 'action', gid, '02', { account: 2, amount: 5, fail: 'crash' })).status).toBe(500);
    expect(await t.balances([2])).toEqual({ 2: 100 }); // the crashed action's write rolled back
    expect((await call('trans-in', 'action', gid, '03', { account: 2, amount: 5 })).status).toBe(200);
    expect((await call('trans-in-compensate', 'compensate', gid, '03', { account: 2, amount: 5, fail: 'compensate' })).status).toBe(409);
    expect(await t.balances([2])).toEqual({ 2: 105 }); // the refused compensation undid nothing
    expect(t.logger.lines).toContainEqual(expect.stringContaining(`error [DtmBranch] Bank.transIn failed (http, saga gid ${gid}, branch 02, op action); DTM will retry the call: Error: ledger disk full`));
    expect(t.logger.lines).toContainEqual(expect.stringContaining(`warn [DtmBranch] Bank.transInCompensate (saga-compensate, saga gid ${gid}, branch 03, op compensate) threw DtmFailureError`));
  });
});

describe('the abort after a failed body reports its error', () => {
  it('TCC: DTM refuses the abort (the transaction was stopped); the caller gets the body\'s error, the hook and the log get the abort\'s', async () => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const bodyError = new Error('payment service down');
    await expect(
      t.client.tccGlobalTransaction(gid, async () => {
        await t.client.forceStop(gid);
        throw bodyError;
      }),
    ).rejects.toBe(bodyError);
    const reported = events.slice(from).filter((e) => e.name === 'abort.failed');
    expect(reported).toHaveLength(1);
    const event = reported[0].event as DtmEvents['abort.failed'];
    expect([event.gid, event.transType, event.cause, event.error instanceof Error, event.currentStatus]).toEqual([gid, 'tcc', bodyError, true, 'failed']);
    // what DTM holds, read after its refusal: rolled back already, not a prepared transaction it fails at its timeout
    expect(t.logger.lines).toContainEqual(expect.stringContaining(`warn [DtmTrace] DTM refused the abort of tcc gid=${gid}: it holds it failed, rolled back already`));
    expect((await queryTrans(gid)).transaction!.status).toBe('failed');
    const end = events.slice(from).find((e) => e.name === 'transaction.end')!.event as DtmEvents['transaction.end'];
    expect([end.outcome, end.error]).toEqual(['aborted', bodyError]);
  });

  it('msg: DTM refuses the abort after a FAILURE of the local transaction; the caller gets the FAILURE, the hook and the log get the abort\'s error', async () => {
    const from = events.length;
    const gid = await t.client.generateGid();
    const failure = new DtmFailureError('order refused');
    await expect(
      t.client
        .newMsg(gid)
        .add('deliver', { account: 3, amount: 1 })
        .doAndSubmit('outbox', async () => {
          await t.client.forceStop(gid);
          throw failure;
        }),
    ).rejects.toBe(failure);
    const reported = events.slice(from).filter((e) => e.name === 'abort.failed').map((e) => e.event as DtmEvents['abort.failed']);
    expect(reported.map((e) => [e.gid, e.transType, e.cause, e.currentStatus])).toEqual([[gid, 'msg', failure, 'failed']]);
    expect(t.logger.lines).toContainEqual(expect.stringContaining(`warn [DtmTrace] DTM refused the abort of msg gid=${gid}: it holds it failed, rolled back already (the message is not delivered)`));
    expect(await t.balances([3])).toEqual({ 3: 100 });
  });
});

// near the end: a second app replaces Nest's global logger (the first app's lines go to it from then
// on) and the hand-written barrier's database (ManualBarrierBank's tests run before)
describe('authenticated branch calls (lynx.dtm.branch_auth_keys)', () => {
  let a: ObservedApp;
  beforeAll(async () => {
    a = await startObservedApp(dbs, { hooks }, { ...onOwnDtm(), branchAuthKeys: [randomBytes(33).toString('base64')] });
  });
  afterAll(async () => {
    await a?.close();
  });

  it.each(PROTOCOLS)('a forged call over %s (no token) is refused before its handler: reported refused with its reason and answer (401, UNAUTHENTICATED) in the hooks, span and counters', async (protocol) => {
    const from = events.length;
    const callsBefore = await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS);
    const gid = await a.client.generateGid();
    const keys = { gid, trans_type: 'saga', branch_id: '01', op: 'action' };
    const move = { account: 1, amount: 10 };
    const answer =
      protocol === 'grpc'
        ? (await callGrpc(`${a.grpcAddress}/tests.PgBank/TransOut`, move, keys)).code
        : (await fetch(`${a.url}/bank/trans-out?${new URLSearchParams(keys)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(move) })).status;
    expect(answer).toBe(protocol === 'grpc' ? 16 : 401);
    expect(await a.balances([1])).toEqual({ 1: 100 });
    const calls = branchCalls(from, gid);
    expect(calls.map((e) => `${e.branchId} ${e.op} ${e.handler} ${e.outcome} ${e.status}`)).toEqual([`01 action Bank.transOut refused ${answer}`]);
    expect((calls[0].error as Error).message).toContain('carries no token');
    const spans = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid);
    expect(spans.map((s) => [s.attributes['dtm.outcome'], s.status.code])).toEqual([['refused', SpanStatusCode.ERROR]]);
    expect(growth(callsBefore, await counter(METRIC_NAMES.branchCalls, BRANCH_KEYS))).toEqual({ 'saga-action action refused': 1 });
  });

  it.each(PROTOCOLS)('TCC over %s whose confirm keeps failing, and one whose Try fails: the token in the branch id (01-<token>) is in no event, span, metric, log line or error', async (protocol) => {
    const [from, spansFrom, linesFrom] = [events.length, exporter.getFinishedSpans().length, a.logger.lines.length];
    const gid = await a.client.generateGid();
    const waited = await a.client
      .tccGlobalTransactionAndWait(gid, (tcc) => tcc.callBranch({ account: 1, amount: 10, fail: 'confirm' }, 'tccOut'), { protocol, retryInterval: 1 }, { timeout: 3 })
      .catch((e: unknown) => e);
    const stored = await queryTrans(gid);
    const stoppedFrom = events.length;
    await a.client.forceStop(gid);
    const refusedGid = await a.client.generateGid();
    const refused = await a.client.tccGlobalTransaction(refusedGid, (tcc) => tcc.callBranch({ account: 2, amount: 500 }, 'tccOut'), { protocol }).catch((e: unknown) => e);
    const tokens = [stored.branches[0].branch_id.slice(3), (await queryTrans(refusedGid)).branches[0].branch_id.slice(3)];
    expect(tokens.map((token) => token.length)).toEqual([22, 22]);

    // DTM called the confirm (and retried it); its failure is the diagnosis's cause; the Try's FAILURE is the caller's error
    expect(stored.transaction?.status).toBe('submitted');
    expect(waited).toBeInstanceOf(DtmOutcomeUnknownError);
    expect((waited as DtmOutcomeUnknownError).unfinished).toEqual([expect.objectContaining({ branchId: '01-<token>', op: 'confirm', cause: expect.stringContaining('Bank.tccOutConfirm failed') })]);
    expect((waited as Error).message).toMatch(/Unfinished: branch 01-<token> "\w+" \(op confirm/);
    expect(refused).toBeInstanceOf(DtmFailureError);
    expect((refused as DtmFailureError).branchId).toBe('01-<token>');
    const confirms = branchCalls(from, gid).filter((e) => e.op === 'confirm');
    expect(confirms.length).toBeGreaterThan(0);
    // each failed; a retry of DTM's (its cron, every second here, or another test file's /resetCronTime) that reached the app
    // after the forceStop is refused instead, the branch auth finding DTM's record ended
    const afterStop = new Set(branchCalls(stoppedFrom, gid));
    expect(confirms.map((e) => `${e.branchId} ${e.outcome}`)).toEqual(confirms.map((e) => (afterStop.has(e) && e.outcome === 'refused' ? '01-<token> refused' : '01-<token> error')));
    expect(confirms[0].outcome).toBe('error');
    const spans = exporter.getFinishedSpans().slice(spansFrom).filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === 'confirm');
    expect(spans.map((s) => s.attributes['dtm.branch_id'])).toEqual(spans.map(() => '01-<token>'));

    const seen = inspect(
      {
        events: events.slice(from),
        spans: exporter
          .getFinishedSpans()
          .slice(spansFrom)
          .map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })),
        metrics: (await reader.collect()).resourceMetrics,
        lines: a.logger.lines.slice(linesFrom),
        errors: [waited, refused],
      },
      { depth: 12, maxArrayLength: null, maxStringLength: null },
    );
    expect(seen).toContain(gid);
    expect(seen).toContain(refusedGid);
    for (const token of tokens) expect(seen).not.toContain(token);
  });
});

// last: a second app replaces Nest's global logger (the first app's lines go to it from then on)
describe('a saga step whose target URL holds credentials (user:password@)', () => {
  it('its FAILURE reads without them: DtmFailureError.raw and readFailureReason().target show ***@, and no event, span or log line holds the password', async () => {
    const [from, spansFrom, linesFrom] = [events.length, exporter.getFinishedSpans().length, t.logger.lines.length];
    const secret = `s3cret${randomBytes(4).toString('hex')}`;
    const base = t.url.replace('://', `://bank:${secret}@`);
    const gid = await t.client.generateGid();
    const err = await t.client
      .newSaga(gid, { waitResult: true })
      .add(`${base}/bank/trans-in`, `${base}/bank/trans-in-compensate`, { account: 2, amount: 10, fail: 'yes' })
      .submit()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DtmFailureError);
    expect((err as DtmFailureError).reason).toBe('account 2 is frozen');
    // DTM's own record names the target with its credentials (it stores what it was given)
    const rollback = (await queryTrans(gid)).transaction!.rollback_reason!;
    expect(rollback).toContain(secret);
    expect(readFailureReason(rollback).target).toBe(`${t.url.replace('://', '://***@')}/bank/trans-in`);
    expect((err as DtmFailureError).raw).toContain(`url:${t.url.replace('://', '://***@')}/bank/trans-in return failed`);
    expect(inspect(err, { depth: 8 })).not.toContain(secret);
    expect(inspect(events.slice(from), { depth: 8 })).not.toContain(secret);
    expect(inspect(exporter.getFinishedSpans().slice(spansFrom).map((s) => [s.name, s.attributes, s.status, s.events]), { depth: 8 })).not.toContain(secret);
    expect(t.logger.lines.slice(linesFrom).filter((l) => l.includes(secret))).toEqual([]);
  });
});

// a second app (after the tests reading the first one's log lines): a service of its own, by name
describe('a saga step of another service by name, from its contract', () => {
  // (over gRPC the manifest is fetched at the same place; this app's gRPC server does not serve it)
  it('the manifest fetch and the contract\'s payload check run with the saga\'s span active, as the rest of its preparation, and a refused payload ends it in error', async () => {
    /** The span active each time the contract's schema checked a payload. */
    const activeInCheck: (string | undefined)[] = [];
    const checked = {
      '~standard': {
        version: 1 as const,
        vendor: 'observability-test',
        validate: (value: unknown) => {
          activeInCheck.push(trace.getActiveSpan()?.spanContext().spanId);
          return (value as Move).amount > 100 ? { issues: [{ message: 'amount over 100', path: ['amount'] }] } : { value: value as Move };
        },
      },
    };
    const Self = defineBranches('self', { transOut: sagaBranch(checked) });
    const s = await startObservedApp(dbs, { hooks }, (own) => ({ ...onOwnDtm(), publishBranches: true, services: { self: { url: own.url } } }));
    try {
      const gid = await s.client.generateGid();
      const final = await s.client.newSaga(gid).add(Self.transOut, { account: 1, amount: 10 }).submitAndWait();
      expect(final.status).toBe('succeed');
      expect(await s.balances([1])).toEqual({ 1: 90 });
      const { ap } = expectOneTrace(gid);
      expect(activeInCheck).toEqual([ap.spanContext().spanId]);

      const refusedGid = await s.client.generateGid();
      const from = events.length;
      const err = await s.client.newSaga(refusedGid).add(Self.transOut, { account: 1, amount: 500 }).submitAndWait().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DtmRemoteBranchError);
      expect((err as DtmRemoteBranchError).problems.map((p) => p.problem)).toEqual(['payload']);
      expect((await queryTrans(refusedGid)).transaction ?? null).toBeNull(); // nothing reached DTM
      const refused = exporter.getFinishedSpans().filter((sp) => sp.attributes['dtm.gid'] === refusedGid);
      expect(refused.map((sp) => [sp.name, sp.attributes['dtm.outcome'], sp.status.code])).toEqual([['DTM saga', 'error', SpanStatusCode.ERROR]]);
      expect(activeInCheck).toEqual([ap.spanContext().spanId, refused[0].spanContext().spanId]);
      const ends = events.slice(from).filter((e) => e.name === 'transaction.end').map((e) => e.event as DtmEvents['transaction.end']);
      expect(ends.map((e) => [e.gid, e.outcome, e.error])).toEqual([[refusedGid, 'error', err]]);
    } finally {
      await s.close();
    }
  });
});

describe('logs at the default level (no debugLogs, no hook)', () => {
  it.each(PROTOCOLS)('a saga, a TCC, a msg, an XA transaction and a workflow over %s that succeed log nothing, at any level', async (protocol) => {
    const quiet = await startObservedApp(dbs, {}, onOwnDtm());
    try {
      quiet.logger.lines.length = 0; // what Nest logs at start-up
      const gids: string[] = [];
      const next = async () => {
        const gid = await quiet.client.generateGid();
        gids.push(gid);
        return gid;
      };
      expect((await quiet.client.newSaga(await next(), { protocol }).add('transOut', { account: 1, amount: 10 }).add('transIn', { account: 2, amount: 10 }).submitAndWait()).status).toBe('succeed');
      expect((await quiet.client.tccGlobalTransactionAndWait(await next(), (tcc) => tcc.callBranch({ account: 1, amount: 10 }, 'tccOut'), { protocol })).status).toBe('succeed');
      const msg = await next();
      await quiet.client.newMsg(msg, { protocol }).add('deliver', { account: 3, amount: 5 }).doAndSubmit('outbox', async () => undefined);
      expect((await quiet.client.waitForFinal(msg)).status).toBe('succeed');
      expect((await quiet.client.xaGlobalTransactionAndWait(await next(), (xa) => xa.callBranch({ account: 3, amount: 5 }, 'xaPg'), { protocol })).status).toBe('succeed');
      expect(await quiet.client.executeWorkflow('observed.transfer', await next(), { base: quiet.url, fail: '' }, { protocol })).toEqual({ status: 'succeed', result: 'moved' });
      for (const gid of gids) expect([gid, (await queryTrans(gid)).transaction?.status]).toEqual([gid, 'succeed']);
      expect(await quiet.balances([1, 2, 3])).toEqual({ 1: 60, 2: 130, 3: 110 });
      expect(quiet.logger.lines).toEqual([]);
    } finally {
      await quiet.close();
    }
  });
});

describe('every transaction span ends once, when DTM cannot be reached or the app closes mid-wait', () => {
  /** The `transaction.end` outcomes of `gid` from event `from` on. */
  const endsOf = (from: number, gid: string) => events.slice(from).filter((e) => e.name === 'transaction.end' && (e.event as DtmEvents['transaction.end']).gid === gid).map((e) => (e.event as DtmEvents['transaction.end']).outcome);
  /** The ended transaction spans of `gid`, as `name outcome status`. */
  const apSpansOf = (gid: string) => exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined).map((s) => `${s.name} ${String(s.attributes['dtm.outcome'])} ${s.status.code}`);

  it.each(PROTOCOLS)('DTM unreachable over %s: a saga, a msg (prepare, doAndSubmit), a TCC, an XA transaction and a workflow each end "error" once, their spans ended in error', async (protocol) => {
    const closed = await freePort(); // nothing listens there
    const lost = await startObservedApp(dbs, { hooks }, { serverUrl: `http://127.0.0.1:${closed}/api/dtmsvr`, grpcServer: `127.0.0.1:${closed}`, timeout: 2, protocol });
    try {
      const from = events.length;
      const gid = (kind: string) => `lost-${kind}-${randomBytes(6).toString('hex')}`;
      const runs: Record<string, (g: string) => Promise<unknown>> = {
        saga: (g) => lost.client.newSaga(g).add('transOut', { account: 1, amount: 1 }).submitAndWait(),
        msg: (g) => lost.client.newMsg(g).add('deliver', { account: 1, amount: 1 }).prepare('outbox'),
        msgDo: (g) => lost.client.newMsg(g).add('deliver', { account: 1, amount: 1 }).doAndSubmit('outbox', async () => 'never run'),
        tcc: (g) => lost.client.tccGlobalTransaction(g, (tcc) => tcc.callBranch({ account: 1, amount: 1 }, 'tccOut')),
        xa: (g) => lost.client.xaGlobalTransaction(g, (xa) => xa.callBranch({ account: 1, amount: 1 }, 'xaPg')),
        workflow: (g) => lost.client.executeWorkflow('observed.transfer', g, { base: lost.url, fail: '' }),
      };
      for (const [kind, run] of Object.entries(runs)) {
        const g = gid(kind);
        const err = await run(g).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect([kind, err]).toEqual([kind, expect.any(Error)]);
        expect([kind, endsOf(from, g)]).toEqual([kind, ['error']]);
        expect([kind, apSpansOf(g)]).toEqual([kind, [`DTM ${kind.replace('Do', '')} error ${SpanStatusCode.ERROR}`]]);
      }
    } finally {
      await lost.close();
    }
  });

  it('a submitAndWait() under way when its app closes: ends "error" once (DtmOutcomeUnknownError), its span ended', async () => {
    const closing = await startObservedApp(dbs, { hooks }, onOwnDtm());
    let closed = false;
    const gid = await t.client.generateGid();
    const from = events.length;
    try {
      // its step crashes and DTM retries it in 60 s: the wait goes on until the app closes
      const waiting = closing.client.newSaga(gid, { retryInterval: 60 }).add('transIn', { account: 2, amount: 1, fail: 'crash' }).submitAndWait().catch((e: unknown) => e);
      await waitUntil('DTM calling the step', async () => branchCalls(from, gid).length > 0, { timeoutMs: 20_000, intervalMs: 50 });
      closed = true;
      await closing.close();
      expect(await waiting).toBeInstanceOf(DtmOutcomeUnknownError);
      expect(endsOf(from, gid)).toEqual(['error']);
      expect(apSpansOf(gid)).toEqual([`DTM saga error ${SpanStatusCode.ERROR}`]);
    } finally {
      if (!closed) await closing.close();
      await t.client.forceStop(gid);
    }
  });
});

describe('a workflow resume that fails for want of DTM (answered 500)', () => {
  it('is logged with the workflow\'s name and gid', async () => {
    const closed = await freePort(); // nothing listens there
    const lost = await startObservedApp(dbs, {}, { serverUrl: `http://127.0.0.1:${closed}/api/dtmsvr`, grpcServer: `127.0.0.1:${closed}`, timeout: 2 });
    try {
      lost.logger.lines.length = 0;
      const gid = `resume-${randomBytes(6).toString('hex')}`;
      const answer = await fetch(`${lost.url}/dtm/workflow/resume?gid=${gid}&op=observed.transfer&trans_type=workflow&branch_id=00`, { method: 'POST' });
      expect(answer.status).toBe(500);
      const errors = lost.logger.lines.filter((l) => l.startsWith('error '));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toContain(`workflow observed.transfer gid=${gid}: `);
    } finally {
      await lost.close();
    }
  });
});

describe('the debug log (instrumentation.debugLogs)', () => {
  it.each(PROTOCOLS)('a ping over %s is reported as every other call to DTM: one dtm.call with operation "ping" and the protocol, one debug line "ping over <protocol>"', async (protocol) => {
    const seen: DtmEvents['dtm.call'][] = [];
    const pinging = await startObservedApp(dbs, { debugLogs: true, openTelemetry: false, hooks: { 'dtm.call': (e) => seen.push(e) } }, { ...onOwnDtm(), protocol });
    try {
      pinging.logger.lines.length = 0;
      seen.length = 0;
      expect(await pinging.client.ping()).toMatchObject({ protocol });
      expect(seen.map((e) => [e.operation, e.protocol, e.gid, e.branchId, e.op, e.outcome])).toEqual([['ping', protocol, undefined, undefined, undefined, 'ok']]);
      expect(pinging.logger.lines.map((l) => l.replace(/\d+\.\d ms/, 'N ms'))).toEqual([`debug [DtmTrace] ping over ${protocol}: ok in N ms`]);
      // a submit is named the same way
      const gid = await pinging.client.generateGid();
      pinging.logger.lines.length = 0;
      await pinging.client.newSaga(gid).add('transOut', { account: 1, amount: 1 }).submit();
      expect(pinging.logger.lines.filter((l) => l.includes(' over ')).map((l) => l.replace(/\d+\.\d ms/, 'N ms'))).toContain(`debug [DtmTrace] submit over ${protocol} gid=${gid}: ok in N ms`);
      await waitUntil('the saga to end', async () => (await queryTrans(gid)).transaction?.status === 'succeed', { timeoutMs: 20_000, intervalMs: 100 });
    } finally {
      await pinging.close();
    }
  });

  it('shows every DTM call and every branch decision, with gid, branch and op', async () => {
    const debug = await startObservedApp(dbs, { debugLogs: true, openTelemetry: false }, onOwnDtm());
    try {
      const gid = await debug.client.generateGid();
      const final = await debug.client.newSaga(gid).add('transOut', { account: 1, amount: 10 }).add('transIn', { account: 2, amount: 10, fail: 'yes' }).submitAndWait();
      expect(final.status).toBe('failed');
      const lines = debug.logger.lines.filter((l) => l.includes(gid)).map((l) => l.replace(/\d+\.\d ms/, 'N ms'));
      expect(lines).toEqual(
        expect.arrayContaining([
          `debug [DtmTrace] saga gid=${gid} started over http`,
          `debug [DtmTrace] submit over http gid=${gid}: ok in N ms`,
          `debug [DtmTrace] Bank.transOut (saga-action transOut) gid=${gid} branch=01 op=action trans_type=saga over http: success, barrier executed in N ms`,
          `debug [DtmTrace] Bank.transIn (saga-action transIn) gid=${gid} branch=02 op=action trans_type=saga over http: failure in N ms`,
          `debug [DtmTrace] Bank.transInCompensate (saga-compensate transIn) gid=${gid} branch=02 op=compensate trans_type=saga over http: success, barrier null-compensation in N ms`,
          `debug [DtmTrace] Bank.transOutCompensate (saga-compensate transOut) gid=${gid} branch=01 op=compensate trans_type=saga over http: success, barrier executed in N ms`,
        ]),
      );
      expect(lines.filter((l) => l.includes(`query over http gid=${gid}: ok`)).length).toBeGreaterThan(0);
      expect(lines[lines.length - 1]).toMatch(new RegExp(`^debug \\[DtmTrace\\] saga gid=${gid}: failed in N ms`));
    } finally {
      await debug.close();
    }
  });

  it('shows a workflow\'s step records (registerBranch) with the op each records: an action, then its rollback', async () => {
    const debug = await startObservedApp(dbs, { debugLogs: true, openTelemetry: false }, onOwnDtm());
    try {
      const gid = await debug.client.generateGid();
      await expect(debug.client.executeWorkflow('observed.transfer', gid, { base: debug.url, fail: 'yes' })).rejects.toBeInstanceOf(DtmFailureError);
      const records = debug.logger.lines.filter((l) => l.includes(`registerBranch over http gid=${gid}`)).map((l) => l.replace(/: ok in \d+\.\d ms$/, ''));
      expect(records).toEqual([
        `debug [DtmTrace] registerBranch over http gid=${gid} branch=01 op=action`,
        `debug [DtmTrace] registerBranch over http gid=${gid} branch=02 op=action`,
        `debug [DtmTrace] registerBranch over http gid=${gid} branch=01 op=rollback`,
      ]);
    } finally {
      await debug.close();
    }
  });

  it('a refused call whose gid and branch id carry CR / LF and an ANSI escape forges no line: its debug line and the error of a listener that threw on it show them quoted', async () => {
    const debug = await startObservedApp(dbs, { debugLogs: true, openTelemetry: false, hooks: { 'branch.call': () => { throw new Error('hook broke'); } } }, onOwnDtm());
    try {
      const marker = `mk${randomBytes(6).toString('hex')}`;
      const gid = `${await debug.client.generateGid()}\r\n[Nest] 1 - ERROR [DtmBranch] \u001b[32m${marker} forged`;
      const keys = { gid, trans_type: 'saga', branch_id: `01\n${marker}`, op: 'action' };
      const res = await fetch(`${debug.url}/bank/trans-out?${new URLSearchParams(keys)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ account: 1, amount: 10 }) });
      expect(res.status).toBe(409); // the gid breaks the rule of keys: FAILURE, nothing ran
      const lines = debug.logger.lines.filter((l) => l.includes(marker)).map((l) => l.replace(/\d+\.\d ms/, 'N ms'));
      const [shownGid, shownBranch] = [JSON.stringify(gid), JSON.stringify(keys.branch_id)];
      expect(lines).toEqual([
        `debug [DtmTrace] Bank.transOut (saga-action transOut) gid=${shownGid} branch=${shownBranch} op=action trans_type=saga over http: refused in N ms`,
        expect.stringContaining(`error [DtmTrace] a listener of branch.call threw for gid=${shownGid} branch=${shownBranch} op=action (ignored`),
      ]);
      // (the listener's line goes on with its error's stack, on lines of its own)
      expect(lines.filter((l) => l.includes('\r') || l.includes('\u001b') || l.includes('\n[Nest]') || l.includes(`\n${marker}`))).toEqual([]);
    } finally {
      await debug.close();
    }
  });
});

describe('a message prepared and never submitted when its app closes', () => {
  it('ends "prepared" at the close (its span exported, one transaction.end, counted), well before its timeout_to_fail', async () => {
    const closing = await startObservedApp(dbs, { hooks }, onOwnDtm());
    let closed = false;
    const gid = await t.client.generateGid();
    const from = events.length;
    const txBefore = await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome']);
    try {
      await closing.client.newMsg(gid, { timeoutToFail: 600 }).add('deliver', { account: 3, amount: 7 }).prepare('outbox');
      expect([...openSpans.open].filter((s) => s.attributes['dtm.gid'] === gid).map((s) => s.name)).toEqual(['DTM msg']);
      closed = true;
      await closing.close();
      const ap = exporter.getFinishedSpans().filter((s) => s.attributes['dtm.gid'] === gid && s.attributes['dtm.op'] === undefined);
      expect(ap.map((s) => [s.name, s.attributes['dtm.outcome'], s.status.code])).toEqual([['DTM msg', 'prepared', SpanStatusCode.UNSET]]);
      expect(events.slice(from).filter((e) => e.name === 'transaction.end').map((e) => [(e.event as DtmEvents['transaction.end']).gid, (e.event as DtmEvents['transaction.end']).outcome])).toEqual([[gid, 'prepared']]);
      expect(growth(txBefore, await counter(METRIC_NAMES.transactions, ['dtm.trans_type', 'dtm.outcome']))).toEqual({ 'msg prepared': 1 });
      expect((await queryTrans(gid)).transaction?.status).toBe('prepared'); // DTM's back-check decides it
    } finally {
      if (!closed) await closing.close();
      await t.client.forceStop(gid);
    }
  });
});
