// The instrumentation seam itself: listeners in order, a listener that throws, unsubscribing,
// nothing observed (no listener, no OpenTelemetry SDK registered in this process, no debug log)
// meaning the transport passes DTM's promise straight through, the debug log's lines, and the
// abort after a failed TCC body reporting its error.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { DtmInstrumentation, DtmUsageError, type DtmEvents, type DtmHooks } from '../../lib/index.js';
import { MAX_PARKED } from '../../lib/observability/dtm-instrumentation.js';
import { InstrumentedTransport } from '../../lib/observability/instrumented-transport.js';
import type { DtmTransport, TransactionRequest } from '../../lib/transport/dtm-transport.js';
import { Tcc } from '../../lib/transactions/tcc.js';
import type { TransactionRuntime } from '../../lib/transactions/transaction-runtime.js';
import { resolveDtmConfig } from '../../lib/config/resolve-dtm-config.js';
import { LineLogger } from '../support/line-logger.js';

/** A transport whose every call answers `answer` (a fake DTM: only the seam is under test). */
function fakeTransport(answer: (operation: string) => Promise<unknown>): DtmTransport {
  const call = (operation: string) => () => answer(operation);
  return {
    protocol: 'http',
    encode: (payload) => JSON.stringify(payload ?? {}),
    checkTarget: () => undefined,
    checkTransaction: () => undefined,
    newGid: call('newGid'),
    prepare: call('prepare'),
    submit: call('submit'),
    abort: call('abort'),
    prepareWorkflow: call('prepareWorkflow'),
    registerBranch: call('registerBranch'),
    callBranch: call('callBranch'),
    query: call('query'),
    list: call('list'),
    forceStop: call('forceStop'),
    ping: call('ping'),
    close: () => undefined,
  } as DtmTransport;
}

const request = { gid: 'g-1', transType: 'saga', options: { timeoutToFail: 0, retryInterval: 10, branchTimeout: 3, branchHeaders: {} } } as TransactionRequest;

/** Runs `fn` with Nest's logger replaced by one that keeps the lines. */
async function withLines(fn: (lines: string[]) => Promise<void>): Promise<void> {
  const logger = new LineLogger();
  Logger.overrideLogger(logger);
  try {
    await fn(logger.lines);
  } finally {
    Logger.overrideLogger(false);
    Logger.overrideLogger(new Logger());
  }
}

describe('DtmInstrumentation', () => {
  it('is inactive with no listener, no OpenTelemetry SDK and no debug log: the transport hands back DTM\'s own promise, untouched', () => {
    const instrumentation = new DtmInstrumentation();
    expect(instrumentation.active).toBe(false);
    const answer = Promise.resolve();
    const transport = new InstrumentedTransport(fakeTransport(() => answer), instrumentation);
    expect(transport.submit(request)).toBe(answer);
  });

  it('calls the listeners of each event in order, with the call\'s operation, outcome and duration; unsubscribing makes it inactive again', async () => {
    const seen: string[] = [];
    const instrumentation = new DtmInstrumentation({ hooks: { 'dtm.call': (e) => seen.push(`hook ${e.operation} ${e.outcome}`) } });
    const off = instrumentation.on('dtm.call', (e) => seen.push(`on ${e.operation} ${e.gid} ${e.outcome} ${e.durationMs >= 0}`));
    const refused = new Error('refused');
    const transport = new InstrumentedTransport(fakeTransport((op) => (op === 'abort' ? Promise.reject(refused) : Promise.resolve())), instrumentation);
    await transport.prepare(request);
    await expect(transport.abort(request)).rejects.toBe(refused);
    expect(seen).toEqual(['hook prepare ok', 'on prepare g-1 ok true', 'hook abort error', 'on abort g-1 error true']);
    off();
    expect(instrumentation.active).toBe(true); // the hook is still there
  });

  it('reports every operation of the transport, under the name docs/observability.md gives it, with its gid, branch id and op when it has them', async () => {
    const seen: string[] = [];
    const instrumentation = new DtmInstrumentation({ hooks: { 'dtm.call': (e) => seen.push(`${e.operation} ${e.protocol} ${e.gid ?? '-'} ${e.branchId ?? '-'} ${e.op ?? '-'} ${e.outcome}`) } });
    const transport = new InstrumentedTransport(fakeTransport(() => Promise.resolve()), instrumentation);
    const registration = { gid: 'g-1', branchId: '01', transType: 'workflow', fields: { op: 'action' } } as unknown as Parameters<DtmTransport['registerBranch']>[0];
    const call = { gid: 'g-1', branchId: '02', op: 'try', target: { kind: 'http', value: 'http://b/try' } } as unknown as Parameters<DtmTransport['callBranch']>[0];
    const calls: Record<string, () => Promise<unknown>> = {
      newGid: () => transport.newGid(),
      prepare: () => transport.prepare(request),
      submit: () => transport.submit(request),
      abort: () => transport.abort(request),
      prepareWorkflow: () => transport.prepareWorkflow(request),
      registerBranch: () => transport.registerBranch(registration),
      callBranch: () => transport.callBranch(call),
      query: () => transport.query('g-1'),
      list: () => transport.list({}),
      forceStop: () => transport.forceStop('g-1'),
      ping: () => transport.ping(),
    };
    // every asynchronous method of the transport (the calls to DTM, and to a branch) is one of them; connected() waits for a channel, it calls nothing
    const local = ['constructor', 'observe', 'encode', 'checkTarget', 'checkTransaction', 'connected', 'close'];
    expect(Object.getOwnPropertyNames(InstrumentedTransport.prototype).filter((m) => !local.includes(m)).sort()).toEqual(Object.keys(calls).sort());
    for (const run of Object.values(calls)) await run();
    expect(seen).toEqual([
      'newGid http - - - ok',
      'prepare http g-1 - - ok',
      'submit http g-1 - - ok',
      'abort http g-1 - - ok',
      'prepareWorkflow http g-1 - - ok',
      'registerBranch http g-1 01 action ok',
      'callBranch http g-1 02 try ok',
      'query http g-1 - - ok',
      'list http - - - ok',
      'forceStop http g-1 - - ok',
      'ping http - - - ok',
    ]);
    // the operations the event table of docs/observability.md lists
    const docs = readFileSync(new URL('../../docs/observability.md', import.meta.url), 'utf8');
    const listed = /`operation` \(([^)]*)\)/.exec(docs)?.[1].match(/`(\w+)`/g)?.map((m) => m.slice(1, -1));
    expect(listed?.sort()).toEqual(Object.keys(calls).sort());
  });

  it('reports a call the transport refuses before sending it (it throws at once, as the gRPC transport does for metadata grpc-js refuses), and throws that error as before', () => {
    const seen: string[] = [];
    const instrumentation = new DtmInstrumentation({ hooks: { 'dtm.call': (e) => seen.push(`${e.operation} ${e.gid} ${e.branchId} ${e.outcome} ${String(e.error)}`) } });
    const refused = new Error('metadata refused');
    const inner = fakeTransport(() => Promise.resolve());
    inner.callBranch = () => {
      throw refused;
    };
    const transport = new InstrumentedTransport(inner, instrumentation);
    const call = { gid: 'g-1', branchId: '01', op: 'try', target: { kind: 'grpc', value: 'localhost:1/s.S/M' } } as unknown as Parameters<DtmTransport['callBranch']>[0];
    expect(() => transport.callBranch(call)).toThrow(refused);
    expect(seen).toEqual(['callBranch g-1 01 error Error: metadata refused']);
  });

  it('a listener that throws is logged and the others still run; the call goes on', async () => {
    await withLines(async (lines) => {
      const seen: DtmEvents['dtm.call'][] = [];
      const instrumentation = new DtmInstrumentation();
      const off = instrumentation.on('dtm.call', () => {
        throw new Error('listener broke');
      });
      instrumentation.on('dtm.call', (e) => seen.push(e));
      const transport = new InstrumentedTransport(fakeTransport(async () => 'gid-7'), instrumentation);
      expect(await transport.newGid()).toBe('gid-7');
      expect(seen.map((e) => e.operation)).toEqual(['newGid']);
      expect(lines).toContainEqual(expect.stringMatching(/^error \[DtmTrace\] a listener of dtm\.call threw \(ignored: the transaction goes on\): Error: listener broke/));
      off();
    });
  });

  it('refuses a hook of an unknown event or one that is not a function, naming the events', () => {
    expect(() => new DtmInstrumentation({ hooks: { 'branch.called': () => undefined } as unknown as DtmHooks })).toThrow(
      new DtmUsageError('instrumentation.hooks.branch.called: no such event; the events are transaction.start, transaction.end, dtm.call, branch.call, abort.failed, each with a function (event) => void'),
    );
    expect(() => new DtmInstrumentation({ hooks: { 'dtm.call': 'log' } as unknown as DtmHooks })).toThrow(/^instrumentation\.hooks\.dtm\.call: a string, not a function;/);
  });

  it('unsubscribing the only listener makes it inactive', () => {
    const instrumentation = new DtmInstrumentation();
    const off = instrumentation.on('branch.call', () => undefined);
    expect(instrumentation.active).toBe(true);
    off();
    expect(instrumentation.active).toBe(false);
  });

  it('debugLogs: one debug line per DTM call, with gid, outcome and duration; nothing at the default (debugLogs off)', async () => {
    await withLines(async (lines) => {
      const quiet = new InstrumentedTransport(fakeTransport(async () => undefined), new DtmInstrumentation());
      await quiet.submit(request);
      expect(lines).toEqual([]);
      const loud = new InstrumentedTransport(fakeTransport(async () => undefined), new DtmInstrumentation({ debugLogs: true }));
      await loud.submit(request);
      // a registration names its branch, and no op (it has none)
      await loud.registerBranch({ gid: 'g-1', transType: 'tcc', branchId: '01', fields: {} });
      expect(lines).toEqual([
        expect.stringMatching(/^debug \[DtmTrace\] submit over http gid=g-1: ok in \d+\.\d ms$/),
        expect.stringMatching(/^debug \[DtmTrace\] registerBranch over http gid=g-1 branch=01: ok in \d+\.\d ms$/),
      ]);
    });
  });

  it('openTelemetry: false never loads the API, and with no SDK registered the module stays inactive', () => {
    expect(new DtmInstrumentation({ openTelemetry: false }).otel()).toBe(null);
    expect(new DtmInstrumentation().otel()).toBe(null); // @opentelemetry/api is installed here, no SDK is registered
  });
});

describe('a transaction\'s observation', () => {
  it('ends once, whichever path comes first: a parked one (a message prepared, not submitted) at its bound or at endParked(), never again after', async () => {
    const ends: string[] = [];
    const instrumentation = new DtmInstrumentation({ hooks: { 'transaction.end': (e) => ends.push(`${e.gid} ${e.outcome}`) } });
    const timed = instrumentation.startTransaction('g-timed', 'msg', 'http', {}, true)!;
    const closing = instrumentation.startTransaction('g-closing', 'msg', 'http', {}, true)!;
    const submitted = instrumentation.startTransaction('g-submitted', 'msg', 'http', {}, true)!;
    instrumentation.park(timed, 0.01);
    instrumentation.park(closing, 600);
    instrumentation.park(submitted, 0.01);
    instrumentation.unpark(submitted); // a submit takes it off: it ends as the submit ends
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(ends).toEqual(['g-timed prepared']);
    instrumentation.endParked(); // the app closes
    expect(ends).toEqual(['g-timed prepared', 'g-closing prepared']);
    instrumentation.endTransaction(submitted, 'submitted');
    for (const o of [timed, closing, submitted]) instrumentation.endTransaction(o, 'error', new Error('a submit after the bound'));
    instrumentation.endParked();
    expect(ends).toEqual(['g-timed prepared', 'g-closing prepared', 'g-submitted submitted']);
  });

  it('parked ones are bounded: past MAX_PARKED messages prepared and never submitted (a long timeoutToFail), the oldest ends "prepared" at once', () => {
    const ends: string[] = [];
    const instrumentation = new DtmInstrumentation({ hooks: { 'transaction.end': (e) => ends.push(`${e.gid} ${e.outcome}`) } });
    const observations = Array.from({ length: MAX_PARKED + 3 }, (_, i) => instrumentation.startTransaction(`g-${i}`, 'msg', 'http', {}, true)!);
    for (const o of observations) instrumentation.park(o, 86_400);
    expect(ends).toEqual(['g-0 prepared', 'g-1 prepared', 'g-2 prepared']);
    expect(observations.filter((o) => o.parkTimer !== undefined)).toHaveLength(MAX_PARKED);
    instrumentation.endParked(); // the rest, at the app's close
    expect(ends).toHaveLength(MAX_PARKED + 3);
    expect(new Set(ends).size).toBe(MAX_PARKED + 3);
  });
});

describe('the abort after a failed TCC body', () => {
  it('is reported (event and warning) when it fails, and the caller gets the body\'s error', async () => {
    await withLines(async (lines) => {
      const instrumentation = new DtmInstrumentation();
      const reported: DtmEvents['abort.failed'][] = [];
      instrumentation.on('abort.failed', (e) => reported.push(e));
      const unreachable = new Error('connect ECONNREFUSED');
      const transport = new InstrumentedTransport(fakeTransport((op) => (op === 'abort' ? Promise.reject(unreachable) : Promise.resolve())), instrumentation);
      const runtime = { config: resolveDtmConfig({ config: { serverUrl: 'http://dtm:36789/api/dtmsvr' } }, {}), transport: () => transport, passThroughHeaders: () => ({}), instrumentation } as unknown as TransactionRuntime;
      const bodyError = new Error('payment service down');
      await expect(new Tcc(runtime, 'gid-abort').run(async () => Promise.reject(bodyError))).rejects.toBe(bodyError);
      expect(reported.map((e) => [e.gid, e.transType, e.protocol, e.error, e.cause])).toEqual([['gid-abort', 'tcc', 'http', unreachable, bodyError]]);
      expect(lines).toContainEqual(expect.stringContaining('warn [DtmTrace] abort of tcc gid=gid-abort failed after its body threw'));
    });
  });
});
